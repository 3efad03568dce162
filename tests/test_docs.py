"""The documentation site (mkdocs.yml, docs/): its generated references are complete, the README is short and its
links resolve, and the strict build passes, while a copy of the docs with one broken link or anchor fails it."""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from neurocare_bids.config import Config
from neurocare_bids.errors import EXIT_CODES

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
HAS_MKDOCS = all(importlib.util.find_spec(name) for name in ("mkdocs", "material", "mkdocstrings_handlers"))
NO_MKDOCS = ("mkdocs, mkdocs-material or mkdocstrings-python is not installed (the 'docs' extra, which the 'test' "
             "extra and `make install` include; CI builds the site with `make docs` in any case)")


def load_hooks():
    spec = importlib.util.spec_from_file_location("neurocare_docs_hooks", DOCS / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


hooks = load_hooks()


# ---------------------------------------------------------------------- the generated references
def test_configuration_reference_lists_every_option_exactly_once():
    text = hooks.configuration_markdown()
    keys = [f"{section}.{key}" for section, values in Config().to_dict().items() for key in values]
    rows = re.findall(r"^\| `([\w.]+)` \|", text, re.MULTILINE)
    assert sorted(rows) == sorted(keys) and len(rows) == len(set(rows))
    toml = hooks.default_config_markdown()
    assert all(f"\n[{section}]\n" in toml for section in Config().to_dict())


def test_cli_reference_lists_every_option_of_every_parser():
    parsers = hooks.command_parsers()
    # the parsers the command line itself dispatches to (cli/run.py's imports) are the ones documented
    run_source = (ROOT / "neurocare_bids" / "cli" / "run.py").read_text()
    dispatched = {alias.name for node in ast.walk(ast.parse(run_source)) if isinstance(node, ast.ImportFrom)
                  and node.module == "parser" for alias in node.names if alias.name.endswith("parser")}
    assert len(parsers) == len(dispatched) >= 4
    text = hooks.cli_markdown()
    for parser in parsers:
        assert f"### `{parser.prog}`" in text
        for action in parser._actions:
            names = action.option_strings or [action.metavar or action.dest]
            for name in names:
                assert f"`{name}`" in text, (parser.prog, name)
            if action.help and action.option_strings:
                assert " ".join(action.help.split())[:40].replace("|", "\\|") in text, (parser.prog, names)


def test_exit_codes_table_has_every_exit_code():
    page = (DOCS / "usage" / "cli.md").read_text()
    table = page.split("## Exit codes", 1)[1].split("\n\n", 2)[1]
    assert [int(code) for code in re.findall(r"^\| (\d+) \|", table, re.MULTILINE)] == sorted(EXIT_CODES)


def test_api_walker_finds_every_public_module_without_importing_it():
    package = ROOT / "neurocare_bids"
    expected = {"neurocare_bids"}
    for path in package.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if not any(part.startswith("_") for part in parts[1:]):
            expected.add(".".join(parts))
    found = hooks.public_modules()
    assert set(found) == expected and len(found) == len(expected)
    assert {"neurocare_bids.config", "neurocare_bids.cli.parser", "neurocare_bids.reports.group"} <= set(found)
    assert "neurocare_bids.__main__" not in found
    nav = json.dumps(hooks.api_nav(found))
    assert all(f'"api/{name}.md"' in nav for name in found)
    modules_table = hooks.api_modules_markdown()
    assert all(f"[`{name}`]({name}.md)" in modules_table for name in found)


def test_the_generators_import_no_tensorflow():
    """The documentation build must not load TensorFlow (slow, and absent where docs are built): every generator
    runs in a fresh interpreter, which then holds none of the heavy modules."""
    code = ("import importlib.util, sys;"
            f"spec = importlib.util.spec_from_file_location('h', {str(DOCS / 'hooks.py')!r});"
            "h = importlib.util.module_from_spec(spec); spec.loader.exec_module(h);"
            "[f() for f in h.GENERATORS.values()]; h.public_modules();"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in h.HEAVY_MODULES + ('mne', 'scipy')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_every_generated_section_is_placed_once():
    markers = [name for page in DOCS.rglob("*.md") for name in hooks.MARKER.findall(page.read_text())]
    assert sorted(markers) == sorted(hooks.GENERATORS)
    with pytest.raises(ValueError, match="unknown generated section 'nope'"):
        hooks.expand_markers("<!-- generate: nope -->\n")


def test_repository_links_become_github_links_and_missing_ones_stay():
    url = "https://github.com/o/r"
    text = ("[a](../../examples/pytorch_windows.py) [b](../../examples/hpc/) [c](../outputs.md#layout) "
            "[d](../../benchmarks/README.md#x) [e](../../no/such/file.py) [f](https://x.org/y) [h](#here)\n"
            "```\n[g](../../examples/demo.toml)\n```\n")
    out = hooks.rewrite_repository_links(text, "docs/usage/page.md", "usage/page.md", url,
                                         generated={"benchmarks/README.md": "benchmarks.md"})
    assert f"[a]({url}/blob/main/examples/pytorch_windows.py)" in out and f"[b]({url}/tree/main/examples/hpc)" in out
    assert "[c](../outputs.md#layout)" in out and "[d](../benchmarks.md#x)" in out and "[h](#here)" in out
    assert "[e](../../no/such/file.py)" in out and "[f](https://x.org/y)" in out  # left for MkDocs to report
    assert "[g](../../examples/demo.toml)" in out  # code, not a link
    # a generated page keeps the links of the file it is made from: benchmarks/README.md -> benchmarks.md
    out = hooks.rewrite_repository_links("[p](../docs/performance.md#alarm-latency) [s](scale.py)",
                                         "benchmarks/README.md", "benchmarks.md", url)
    assert out == f"[p](performance.md#alarm-latency) [s]({url}/blob/main/benchmarks/scale.py)"


# ---------------------------------------------------------------------- the README
def test_readme_is_short_and_its_relative_links_resolve():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 150
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    relative = [link for link in links if not re.match(r"[a-z]+:", link) and not link.startswith("#")]
    assert len(relative) >= 10
    for link in relative:
        path, _, fragment = link.partition("#")
        assert (ROOT / path).exists(), link
        if fragment and path.endswith(".md"):
            headings = re.findall(r"^#+ (.+)$", (ROOT / path).read_text(), re.MULTILINE)
            slugs = {re.sub(r"[\s]+", "-", re.sub(r"[^\w\s-]", "", h).strip().lower()) for h in headings}
            assert fragment in slugs, link
    for page in ("docs/getting-started.md", "docs/usage/cli.md", "docs/configuration.md", "docs/citing.md"):
        assert f"]({page})" in text, page


# ---------------------------------------------------------------------- the strict build
def build(root: Path, site: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(root / "mkdocs.yml"),
                           "-d", str(site)], capture_output=True, text=True, timeout=300, cwd=root, env=env)


@pytest.mark.skipif(not HAS_MKDOCS, reason=NO_MKDOCS)
def test_the_site_builds_strictly_with_the_generated_pages(tmp_path):
    result = build(ROOT, tmp_path / "site")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "WARNING" not in result.stderr, result.stderr
    site = tmp_path / "site"
    configuration = (site / "configuration.html").read_text()
    assert "preprocessing.causal" in configuration and "execution.wandb_project" in configuration
    assert "--lsl-timeout" in (site / "usage" / "cli.html").read_text()
    assert "iter_windows" in (site / "api" / "neurocare_bids.io.tfrecord.html").read_text()
    assert (site / "benchmarks.html").is_file() and (site / "images" / "demo-group.png").is_file()
    for page in site.rglob("*.html"):  # offline: no script, style sheet or font from another site
        html = page.read_text()
        assert not re.search(r"<script[^>]+src=\"(?:https?:)?//", html), page
        links = re.findall(r"<link[^>]+href=\"(?:https?:)?//[^>]*>", html)
        assert all('rel="canonical"' in link for link in links), (page, links)
        assert "fonts.googleapis" not in html and "fonts.gstatic" not in html, page


def docs_copy(tmp_path: Path) -> Path:
    """A copy of the documentation (mkdocs.yml, docs/) beside links to the rest of the repository."""
    copy = tmp_path / "repo"
    copy.mkdir()
    for entry in ROOT.iterdir():
        if entry.name in ("docs", "mkdocs.yml", "site", ".git", ".venv") or entry.name.startswith("."):
            continue
        (copy / entry.name).symlink_to(entry)
    shutil.copy(ROOT / "mkdocs.yml", copy / "mkdocs.yml")
    shutil.copytree(DOCS, copy / "docs", ignore=shutil.ignore_patterns("__pycache__"))
    return copy


@pytest.mark.skipif(not HAS_MKDOCS, reason=NO_MKDOCS)
@pytest.mark.parametrize("breakage, message", [
    ("[broken](no-such-page.md)", "no-such-page.md"),
    ("[broken anchor](configuration.md#no-such-section)", "no-such-section"),
    ("[broken file](../examples/no_such_example.py)", "no_such_example.py"),
])
def test_a_broken_link_fails_the_strict_build(tmp_path, breakage, message):
    copy = docs_copy(tmp_path)
    page = copy / "docs" / "troubleshooting.md"
    page.write_text(page.read_text() + f"\nSee {breakage}.\n")
    result = build(copy, tmp_path / "site")
    assert result.returncode != 0, result.stdout + result.stderr
    output = result.stdout + result.stderr
    assert message in result.stderr and "Aborted with 1 warnings in strict mode" in output, output


@pytest.mark.skipif(not HAS_MKDOCS, reason=NO_MKDOCS)
def test_the_copy_of_the_docs_builds(tmp_path):
    """The control for the test above: the unbroken copy passes, so the failures are the broken links'."""
    result = build(docs_copy(tmp_path), tmp_path / "site")
    assert result.returncode == 0, result.stdout + result.stderr
