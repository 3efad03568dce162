#!/usr/bin/env python3
"""Download the wheels a GPU node without TensorFlow lacks to run the whole pipeline from a source checkout.

GPU nodes (and this project's lent GPU machine) often hold JAX, PyTorch and the scientific stack but no
TensorFlow, and cannot reach PyPI. This script, run where pip can download, walks this environment's installed
requirements of ``neurocare-bids`` (TensorFlow and tf2onnx left out: the NumPy input pipeline stands in for
``tf.data``, see docs/usage/group.md "Without TensorFlow"), drops what the target already has (``--have``: a
file of distribution names, one per line or separated by spaces; by default the lent H200 machine's list of
2026-11-17), and downloads each remaining one at the version installed here, as a binary wheel for the target's
Python (``--python-version``, default 3.12) and x86-64 Linux, without its dependencies (they are in the walk).

    python benchmarks/device_wheels.py .whl                      # then, there:
    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
    PYTHONPATH=$PWD:/tmp/site KERAS_BACKEND=jax python3 -m neurocare_bids ...

``--list`` prints the distributions and versions without downloading. The BIDS validator's Deno build, the
live-streaming and viewer packages (mne-lsl, pyqtgraph, qtpy) are left out unless ``--all``: the participant
level runs with ``--skip-bids-validation`` there.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import re
import subprocess
import sys
from pathlib import Path

# The lent nvidia-h200 machine's Python packages (/work/.library/device/KINDS.md, as read on 2026-11-17).
DEVICE_HAS = """absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch build
certifi charset-normalizer chex click cloudpickle cmake colorama contourpy coverage cycler cython diffrax einops
equinox etils execnet filelock flatbuffers flax fonttools formulaic frozenlist fsspec gpytorch grpcio h11 h5py hf-xet
httpcore httpx huggingface-hub humanize hypothesis idna imageio iniconfig interface-meta jax jaxlib jaxtyping jinja2
joblib kiwisolver lazy-loader lightning lightning-utilities linear-operator lineax llvmlite lxml markdown
markdown-it-py markupsafe matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack multidict multipledispatch
mypy-extensions nanobind narwhals networkx ninja numba numpy numpyro onnx onnx-ir onnxruntime onnxscript
opencv-python-headless optax opt-einsum optimistix orbax-checkpoint packaging pandas pathspec patsy peft pillow pip
pluggy portalocker prometheus-client propcache protobuf psutil pyarrow pybind11 py-cpuinfo pygments pyparsing
pyproject-hooks pyre-extensions pytest python-dateutil pyyaml regex requests rich safetensors scikit-image
scikit-learn scipy seaborn sentencepiece setuptools shellingham simplejson six sortedcontainers statsmodels sympy
tabulate tensorboard tensorstore threadpoolctl tifffile tokenizers toolz torch tqdm transformers treescope triton
typer typing-extensions typing-inspect urllib3 uvloop wadler-lindig werkzeug wheel wrapt xarray xxhash yarl zipp"""

NEVER = {"tensorflow", "tf2onnx"}  # what the target is without
OPTIONAL = {"bids-validator-deno", "deno", "mne-lsl", "pyqtgraph", "qtpy"}  # validation, live input, viewers
PLATFORMS = [f"manylinux_2_{n}_x86_64" for n in range(17, 40)] + ["manylinux2014_x86_64", "manylinux1_x86_64"]


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def missing(have: set[str], everything: bool) -> list[tuple[str, str]]:
    """``(distribution, version installed here)`` of every requirement of neurocare-bids, direct or not, that the
    target lacks, sorted by name."""
    from packaging.requirements import Requirement

    skip = {normalise(n) for n in have} | NEVER | (set() if everything else OPTIONAL)
    seen: set[str] = set()
    todo, found = ["neurocare-bids"], {}
    while todo:
        name = todo.pop()
        if normalise(name) in seen:
            continue
        seen.add(normalise(name))
        if name != "neurocare-bids":
            found[normalise(name)] = (name, md.version(name))
        for text in md.requires(name) or []:
            requirement = Requirement(text)
            if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
                continue
            if normalise(requirement.name) not in skip:
                todo.append(requirement.name)
    return sorted(found.values(), key=lambda item: normalise(item[0]))


def pure_python_wheel(name: str, version: str, dest: Path) -> bool:
    """Build a wheel from a source-only release (docopt 0.6.2 has none on PyPI); keep it only if it is pure Python
    (``-none-any``), which installs on any Python 3 and platform."""
    before = set(dest.glob("*.whl"))
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(dest),
                             f"{name}=={version}"], capture_output=True, text=True)
    built = set(dest.glob("*.whl")) - before
    if result.returncode == 0 and built and all(p.name.endswith("-none-any.whl") for p in built):
        return True
    for path in built:
        path.unlink()
    return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dest", type=Path, nargs="?", default=Path(".whl"), help="folder for the wheels (.whl)")
    parser.add_argument("--have", type=Path, help="the target's distributions (default: the lent H200 machine's)")
    parser.add_argument("--python-version", default="3.12", help="the target's Python (default 3.12)")
    parser.add_argument("--all", action="store_true", help="also the validator, live-input and viewer packages")
    parser.add_argument("--list", action="store_true", help="print what is missing; download nothing")
    args = parser.parse_args()
    have = set((args.have.read_text() if args.have else DEVICE_HAS).split())
    needed = missing(have, args.all)
    for name, version in needed:
        print(f"{name}=={version}")
    if args.list:
        return 0
    args.dest.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version",
               args.python_version, "--implementation", "cp", "-d", str(args.dest), "--quiet"]
    for platform in PLATFORMS:
        command += ["--platform", platform]
    for name, version in needed:  # one at a time: a pure-Python wheel matches any platform, a compiled one one
        result = subprocess.run([*command, f"{name}=={version}"], capture_output=True, text=True)
        if result.returncode != 0 and not pure_python_wheel(name, version, args.dest):
            print(f"no wheel of {name}=={version} for Python {args.python_version} on x86-64 Linux:\n"
                  f"{result.stderr.strip()[-800:]}", file=sys.stderr)
            return 1
    size = sum(p.stat().st_size for p in args.dest.glob("*.whl"))
    print(f"{len(needed)} wheels, {size / 2 ** 20:.1f} MiB in {args.dest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
