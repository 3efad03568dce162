"""The package's layout by pipeline stage and its import rules (pyproject.toml, ``[tool.importlinter]``).

* ``lint-imports`` (import-linter) keeps both contracts: a stage imports only the stages below it in the ``stages``
  layers and the shared modules, every module of the package is in a layer, and no package's modules import each
  other in a cycle. It reads every import statement, those inside functions too (grimp's static analysis).
* No import cycle between any two modules at all (the acyclic contract compares siblings; this compares modules).
* Each stage's docstring states the same rule as the contract, in words, and its title comes first.
* The contracts are not vacuous: a copy of the package with one backward import, or one cycle, breaks them.
* Importing the package or a stage's ``__init__`` imports nothing heavy.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "neurocare_bids"
SHARED = ("config", "console", "errors")


def contracts(root: Path = ROOT) -> dict[str, dict]:
    config = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["importlinter"]
    return {contract["id"]: contract for contract in config["contracts"]}


def stages() -> list[str]:
    """The stage subpackages from the last to the first (the ``stages`` layers without the shared modules)."""
    names = [name.strip() for layer in contracts()["stages"]["layers"] for name in re.split(r"[|:]", layer)]
    return [name for name in names if name not in SHARED and not name.startswith("_")]


def lint_imports(cwd: Path) -> subprocess.CompletedProcess:
    """``lint-imports`` on the package under ``cwd`` (its pyproject.toml), nothing cached."""
    script = Path(sys.executable).with_name("lint-imports")
    command = [str(script)] if script.exists() else [sys.executable, "-c",
                                                     "import sys; from importlinter.cli import lint_imports_command; "
                                                     "sys.exit(lint_imports_command())"]
    return subprocess.run([*command, "--no-cache"], cwd=cwd, env=_on_path(cwd), capture_output=True, text=True,
                          timeout=300)


def _on_path(root: Path) -> dict[str, str]:
    """The environment, with the package under ``root`` first on the module path."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}


def import_cycles(root: Path = ROOT) -> list[list[str]]:
    """Every set of modules of the package under ``root`` that import each other in a cycle (strongly connected
    components of the import graph that grimp reads, lazy imports included)."""
    code = (f"import json, grimp; g = grimp.build_graph({PACKAGE!r}, cache_dir=None); "
            "print(json.dumps({m: sorted(g.find_modules_directly_imported_by(m)) for m in g.modules}))")
    done = subprocess.run([sys.executable, "-c", code], cwd=root, env=_on_path(root), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    imports: dict[str, list[str]] = json.loads(done.stdout)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(module: str) -> None:  # Tarjan's algorithm; the package has ~50 modules, recursion is fine
        index[module] = low[module] = len(index)
        stack.append(module)
        for imported in imports[module]:
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in sorted(imports):
        if module not in index:
            visit(module)
    return cycles


def docstring(path: Path) -> str:
    return ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""


@pytest.fixture(scope="module")
def package_copy(tmp_path_factory) -> Path:
    """A copy of the package and of pyproject.toml, to break on purpose."""
    root = tmp_path_factory.mktemp("layout")
    shutil.copytree(ROOT / PACKAGE, root / PACKAGE, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", root)
    return root


def test_lint_imports_keeps_every_contract():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"Contracts: 2 kept, 0 broken", result.stdout), result.stdout


def test_no_two_modules_import_each_other():
    assert import_cycles() == []


def test_every_module_belongs_to_a_stage_or_is_shared():
    known = set(stages())
    for path in sorted((ROOT / PACKAGE).rglob("*.py")):
        parts = path.relative_to(ROOT / PACKAGE).parts
        if len(parts) == 1:
            assert path.stem in (*SHARED, "__init__", "__main__"), f"{path.name} is in no stage: move it into one"
        else:
            assert parts[0] in known, f"{'/'.join(parts)}: {parts[0]} is not a stage of the contract"


def test_the_layers_are_the_stages_in_the_order_data_flow():
    assert stages() == ["cli", "reports", "evaluation", "detection", "training", "preprocessing", "io"]
    assert contracts()["stages"]["exhaustive"] is True


@pytest.mark.parametrize("stage", ["io", "preprocessing", "training", "detection", "evaluation", "reports", "cli"])
def test_each_stage_docstring_gives_its_title_and_the_contract_s_rule(stage):
    text = docstring(ROOT / PACKAGE / stage / "__init__.py")
    title = text.splitlines()[0]
    assert re.fullmatch(r"[A-Z][\w ,-]*:? .*\S[.)]", title), f"{stage}: the first line is the stage's title: {title!r}"
    order = stages()[::-1]  # the first stage first
    rule = next((p for p in text.split("\n\n") if p.startswith("Stage ")), "")
    assert rule.startswith(f"Stage {order.index(stage) + 1} of {len(order)}"), f"{stage}: {rule!r}"
    named = set(re.findall(r"`(\w+)`", rule)) - set(SHARED)
    assert named == set(order[:order.index(stage)]), f"{stage}'s docstring allows {sorted(named)}: {rule!r}"
    assert all(f"`{name}`" in rule for name in SHARED), f"{stage}'s docstring does not name the shared modules"


def test_the_contracts_catch_a_backward_import_and_a_cycle(package_copy):
    tfrecord = package_copy / PACKAGE / "io" / "tfrecord.py"
    postprocess = package_copy / PACKAGE / "detection" / "postprocess.py"
    original = tfrecord.read_text(), postprocess.read_text()
    try:
        # io importing training inside a function: the kind of import that is easy to miss
        tfrecord.write_text(original[0] + "\n\ndef _late():\n    from ..training import models  # noqa: F401\n")
        result = lint_imports(package_copy)
        assert result.returncode == 1
        assert "neurocare_bids.io is not allowed to import neurocare_bids.training" in result.stdout, result.stdout
        tfrecord.write_text(original[0])
        # the cycle the layout broke: postprocess importing szcore again
        postprocess.write_text(original[1] + "\n\ndef _late():\n    from .szcore import tsv_arrays  # noqa: F401\n")
        result = lint_imports(package_copy)
        assert result.returncode == 1 and "Contracts: 1 kept, 1 broken" in result.stdout, result.stdout
        assert ["neurocare_bids.detection.postprocess", "neurocare_bids.detection.szcore"] in import_cycles(
            package_copy)
    finally:
        tfrecord.write_text(original[0])
        postprocess.write_text(original[1])


def test_importing_the_package_and_its_stages_imports_nothing_heavy():
    heavy = ("numpy", "scipy", "pandas", "sklearn", "mne", "tensorflow", "keras", "jax", "matplotlib", "onnxruntime")
    code = (f"import sys, {PACKAGE}; " + "; ".join(f"import {PACKAGE}.{s}" for s in stages())
            + f"; print(sorted(m for m in {heavy!r} if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_the_test_files_run_first_exist():
    """conftest.HEAVY_FILES orders the suite for pytest-xdist: a renamed file would silently drop out of it."""
    from conftest import HEAVY_FILES

    assert HEAVY_FILES and [name for name in HEAVY_FILES if not (ROOT / "tests" / name).is_file()] == []
