"""MkDocs hooks (``hooks:`` in mkdocs.yml): the parts of the site that are generated from the code at every build.

Nothing generated here is committed, and nothing is copied by hand, so it cannot drift from the code:

- ``<!-- generate: NAME -->`` markers in a page are replaced by :data:`GENERATORS` ``[NAME]``: the configuration
  reference (read from ``neurocare_bids.config``'s dataclasses), the command-line reference (read from the
  argparse parsers themselves), the defaults as a TOML file, the list of modules of the Python API, the package's
  stages with their import rules (the stages' docstrings and pyproject.toml's import-linter contract), and the
  references of the methods text (``boilerplate/references.bib``).
- The Python API pages (``api/<module>.md``, one ``::: module`` directive each for mkdocstrings) are made for every
  public module found by walking the package on disk (:func:`public_modules`), and the nav's ``api/index.md``
  entry is expanded to list them; a module added, moved or renamed is documented at the next build.
- ``benchmarks.md`` is ``benchmarks/README.md``, its relative links made to work from the site.
- A relative link to a file of the repository outside ``docs/`` (``../examples/hpc/submit.sh``, which works on
  GitHub) becomes a link to that file on GitHub; a link to a file that does not exist is left alone, so that
  MkDocs reports it and the strict build fails.

Only public hook events of MkDocs are used (no monkey-patching). The build imports ``neurocare_bids.config`` and
``neurocare_bids.cli.parser``, never TensorFlow: ``on_post_build`` fails the build if anything imported it.
"""

from __future__ import annotations

import argparse
import pkgutil
import re
import sys
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "neurocare_bids"
if str(ROOT) not in sys.path:  # document this checkout's code, whichever installed copy the interpreter has
    sys.path.insert(0, str(ROOT))

MARKER = re.compile(r"^<!-- generate: ([\w-]+) -->$", re.MULTILINE)
HEAVY_MODULES = ("tensorflow", "keras", "jax", "torch")
API_DIR = "api"


# ---------------------------------------------------------------------- Python API: the package walked on disk
def public_modules(package: str = PACKAGE, root: Path = ROOT) -> list[str]:
    """Every public module and subpackage of ``package`` (dotted names, sorted), found on disk with
    :func:`pkgutil.iter_modules` and nothing imported: names starting with ``_`` (``__main__`` included) and
    everything below them are left out."""
    found = [package]

    def walk(path: Path, prefix: str) -> None:
        for info in pkgutil.iter_modules([str(path)], prefix):
            if info.name.rsplit(".", 1)[-1].startswith("_"):
                continue
            found.append(info.name)
            if info.ispkg:
                walk(path / info.name.rsplit(".", 1)[-1], info.name + ".")

    walk(root / package.replace(".", "/"), package + ".")
    return sorted(found)


def _first_docstring_line(module: str, root: Path = ROOT) -> str:
    """The first sentence of a module's docstring, read with :mod:`ast` (no import)."""
    import ast

    path = root / module.replace(".", "/")
    path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    first = " ".join(doc.split("\n\n")[0].split())
    return first.replace("|", "\\|")


def api_page_path(module: str) -> str:
    return f"{API_DIR}/{module}.md"


def api_page(module: str) -> str:
    return f"# `{module}`\n\n::: {module}\n"


def api_nav(modules: list[str]) -> list:
    """The nav entries of the API pages: a package's modules in a section of their own, nested as the package is."""
    def children(prefix: str) -> list:
        entries = []
        for name in modules:
            if not name.startswith(prefix + ".") or "." in name[len(prefix) + 1:]:
                continue
            below = children(name)
            entries.append({name: [api_page_path(name), *below]} if below else {name: api_page_path(name)})
        return entries

    return [f"{API_DIR}/index.md", {PACKAGE: api_page_path(PACKAGE)}, *children(PACKAGE)]


def api_modules_markdown() -> str:
    rows = ["| module | what it is |", "| --- | --- |"]
    for name in public_modules():
        rows.append(f"| [`{name}`]({name}.md) | {_first_docstring_line(name)} |")
    return "\n".join(rows)


# ---------------------------------------------------------------------- the package's layout: stages and their rules
def stage_layers(root: Path = ROOT) -> list[list[str]]:
    """The layers of pyproject.toml's ``stages`` import-linter contract, first stage first, each a list of names."""
    import tomllib

    config = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["importlinter"]
    layers = next(c for c in config["contracts"] if c["id"] == "stages")["layers"]
    return [[name.strip() for name in re.split(r"[|:]", layer)] for layer in reversed(layers)]


def _docstring(module: str, root: Path = ROOT) -> str:
    import ast

    path = root / module.replace(".", "/")
    path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    return ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""


def package_layout_markdown() -> str:
    """The stages in the order data flow, each with its title and rule (its ``__init__`` docstring's first line and
    "Stage N" paragraph) and its modules (their docstrings' first paragraph), then the shared modules: a table and a
    tree, nothing written by hand. Links go to the API pages, which this page sits beside."""
    modules = public_modules()
    rows = ["| stage | what it is | may import |", "| --- | --- | --- |"]
    tree, shared = [], []
    for layer in stage_layers():
        for name in layer:
            dotted = f"{PACKAGE}.{name}"
            if name.startswith("_"):
                continue
            if not (ROOT / PACKAGE / name).is_dir():
                shared.append(name)
                continue
            text = _docstring(dotted)
            rule = next((p for p in text.split("\n\n") if p.startswith("Stage ")), "")
            allowed = re.sub(r"^Stage \d+ of \d+(, the last)?\. ", "", " ".join(rule.split()))
            rows.append(f"| [`{name}`]({api_page_path(dotted)}) | {_first_docstring_line(dotted)} | {_cell(allowed)} |")
            tree.append(f"- [`{name}/`]({api_page_path(dotted)})")
            tree += [f"    - [`{child.rsplit('.', 1)[1]}.py`]({api_page_path(child)}): {_first_docstring_line(child)}"
                     for child in modules if child.startswith(dotted + ".")]
    tree += [f"- [`{name}.py`]({api_page_path(f'{PACKAGE}.{name}')}): {_first_docstring_line(f'{PACKAGE}.{name}')}"
             for name in sorted(shared)]
    return "\n".join(rows) + "\n\n" + "\n".join(tree) + "\n"


# ---------------------------------------------------------------------- command line: the parsers themselves
def command_parsers() -> list[argparse.ArgumentParser]:
    """Every parser of the command line: the ``build_*parser`` functions of ``neurocare_bids.cli.parser``, in the
    order they are defined (the BIDS-App's own parser first)."""
    from neurocare_bids.cli import parser as module

    return [fn() for name, fn in vars(module).items()
            if re.fullmatch(r"build_\w*parser", name) and callable(fn)]


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _argument(action: argparse.Action) -> str:
    if action.nargs == 0:
        return ""
    if action.metavar is not None:
        meta = action.metavar if isinstance(action.metavar, str) else " ".join(action.metavar)
    elif action.choices is not None:
        meta = "{" + ",".join(map(str, action.choices)) + "}"
    else:
        meta = action.dest.upper()
    if action.nargs in ("+", "*"):
        meta += " ..."
    return f"`{meta}`"


def _default(action: argparse.Action) -> str:
    if action.default in (None, argparse.SUPPRESS) or action.nargs == 0 or isinstance(action.default, bool):
        return ""
    return f"`{action.default}`"


def _help(action: argparse.Action) -> str:
    text = action.help or ""
    if "%(" in text:
        text = text % {**vars(action), "prog": ""}
    return _cell(text)


def parser_markdown(parser: argparse.ArgumentParser, heading_level: int = 3) -> str:
    """One parser as Markdown: its usage (at a fixed width), description, and a table per argument group."""
    formatter = argparse.HelpFormatter(parser.prog, width=100)
    formatter.add_usage(parser.usage, parser._actions, parser._mutually_exclusive_groups, prefix="")
    out = [f"{'#' * heading_level} `{parser.prog}`", "", "```text", formatter.format_help().strip(), "```", ""]
    if parser.description:
        out += [" ".join(parser.description.split()), ""]
    for group in parser._action_groups:
        actions = [a for a in group._group_actions if a.help != argparse.SUPPRESS]
        if not actions:
            continue
        out += [f"**{group.title[:1].upper()}{group.title[1:]}**", "",
                "| option | argument | default | meaning |", "| --- | --- | --- | --- |"]
        for action in actions:
            names = ", ".join(f"`{o}`" for o in action.option_strings) or f"`{action.metavar or action.dest}`"
            out.append(f"| {names} | {_argument(action)} | {_default(action)} | {_help(action)} |")
        out.append("")
    return "\n".join(out)


def cli_markdown() -> str:
    return "\n".join(parser_markdown(p) for p in command_parsers())


# ---------------------------------------------------------------------- configuration: the dataclasses
def configuration_markdown() -> str:
    from neurocare_bids.config import reference_markdown

    return reference_markdown(heading_level=3)


def default_config_markdown() -> str:
    from neurocare_bids.config import Config

    return "```toml\n" + Config().to_toml().strip() + "\n```\n"


def references_markdown() -> str:
    """The references every methods text draws from, as the package ships them (``boilerplate/references.bib``)."""
    text = (ROOT / "boilerplate" / "references.bib").read_text(encoding="utf-8")
    return "```bibtex\n" + text.strip() + "\n```\n"


GENERATORS: dict[str, Callable[[], str]] = {
    "configuration": configuration_markdown,
    "config-toml": default_config_markdown,
    "cli": cli_markdown,
    "api-modules": api_modules_markdown,
    "package-layout": package_layout_markdown,
    "references": references_markdown,
}


def expand_markers(markdown: str, where: str = "page") -> tuple[str, list[str]]:
    """Replace every ``<!-- generate: NAME -->`` line by its generator's output; an unknown NAME is an error."""
    used = []

    def replace(match: re.Match) -> str:
        name = match.group(1)
        if name not in GENERATORS:
            raise ValueError(f"{where}: unknown generated section '{name}' (known: {', '.join(GENERATORS)})")
        used.append(name)
        return GENERATORS[name]()

    return MARKER.sub(replace, markdown), used


# ---------------------------------------------------------------------- links to the repository's other files
LINK = re.compile(r"(!?\[[^\]\n]*\]\()([^)\s]+)(\))")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)


def rewrite_repository_links(markdown: str, source: str, page: str, code_url: str, docs_dir: str = "docs",
                              generated: dict[str, str] | None = None) -> str:
    """Relative links of the page ``page`` (its path in the site) whose text is the repository file ``source``
    (POSIX paths from the root), resolved from ``source``: a link into ``docs_dir`` becomes relative to the page,
    and so does a link to a file that a page of the site is generated from (``generated``: repository path ->
    page); a link to another file or folder of the repository becomes its GitHub address; a link to nothing is
    left as it is (MkDocs reports it, and the strict build fails)."""
    import posixpath

    page_dir = posixpath.dirname(source)
    site_dir = posixpath.dirname(page)

    def fix(match: re.Match) -> str:
        target = match.group(2)
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith(("#", "/")):
            return match.group(0)
        path, _, fragment = target.partition("#")
        resolved = posixpath.normpath(posixpath.join(page_dir, path))
        if resolved.startswith(".."):
            return match.group(0)
        if resolved in (generated or {}):
            new = posixpath.relpath(generated[resolved], site_dir or ".")
        elif resolved == docs_dir or resolved.startswith(docs_dir + "/"):
            if source.startswith(docs_dir + "/"):  # a page of docs/ linking to another: MkDocs checks it as it is
                return match.group(0)
            new = posixpath.relpath(posixpath.relpath(resolved, docs_dir), site_dir or ".")
        elif (ROOT / resolved).exists():
            kind = "tree" if (ROOT / resolved).is_dir() else "blob"
            new = f"{code_url}/{kind}/main/{resolved}"
        else:
            return match.group(0)
        return match.group(1) + new + (f"#{fragment}" if fragment else "") + match.group(3)

    pieces, last = [], 0
    for fence in FENCE.finditer(markdown):  # links inside code blocks are code, not links
        pieces += [LINK.sub(fix, markdown[last:fence.start()]), fence.group(0)]
        last = fence.end()
    pieces.append(LINK.sub(fix, markdown[last:]))
    return "".join(pieces)


def code_url() -> str:
    from neurocare_bids import CODE_URL

    return CODE_URL


# ---------------------------------------------------------------------- MkDocs events
_used: dict[str, list[str]] = {}
GENERATED_PAGES = {"benchmarks.md": "benchmarks/README.md"}  # site page -> the repository file it is


def on_files(files, config):
    from mkdocs.structure.files import File

    for module in public_modules():
        files.append(File.generated(config, api_page_path(module), content=api_page(module)))
    for page, source in GENERATED_PAGES.items():
        files.append(File.generated(config, page, content=(ROOT / source).read_text(encoding="utf-8")))

    nav = config["nav"] or []
    expanded = _expand_api_nav(nav, api_nav(public_modules()))
    if not expanded:
        from mkdocs.exceptions import PluginError

        raise PluginError(f"hooks.py: the nav has no '{API_DIR}/index.md' entry to list the Python API under")
    return files


def _expand_api_nav(nav: list, entries: list) -> bool:
    for i, item in enumerate(nav):
        if isinstance(item, dict):
            (title, value), = item.items()
            index = f"{API_DIR}/index.md"
            if value == index or (isinstance(value, list) and value[:1] == [index]):  # again on a rebuild
                nav[i] = {title: entries}
                return True
            if isinstance(value, list) and _expand_api_nav(value, entries):
                return True
    return False


def on_page_markdown(markdown, page, config, files):
    from mkdocs.exceptions import PluginError

    where = page.file.src_uri
    try:
        markdown, used = expand_markers(markdown, where)
    except ValueError as exc:
        raise PluginError(str(exc)) from None
    for name in used:
        _used.setdefault(name, []).append(where)
    docs_dir = Path(config["docs_dir"]).relative_to(ROOT).as_posix()
    source = GENERATED_PAGES.get(where, f"{docs_dir}/{where}")
    return rewrite_repository_links(markdown, source, where, code_url(), docs_dir,
                                    {source: page for page, source in GENERATED_PAGES.items()})


def on_post_build(config):
    from mkdocs.exceptions import PluginError

    missing = [name for name in GENERATORS if name not in _used]
    twice = {name: pages for name, pages in _used.items() if len(pages) > 1}
    _used.clear()
    if missing or twice:
        raise PluginError(f"hooks.py: generated sections not placed in any page: {missing}; placed twice: {twice}")
    heavy = [name for name in HEAVY_MODULES if name in sys.modules]
    if heavy:
        raise PluginError(f"hooks.py: the documentation build imported {', '.join(heavy)}; keep those imports lazy")
