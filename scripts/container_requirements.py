#!/usr/bin/env python3
"""Print the container image's requirements: pyproject.toml's dependencies with TensorFlow per variant.

Why: the project depends on ``tensorflow``, whose Linux wheel (about 600 MB) carries GPU support code. The CPU
image installs ``tensorflow-cpu`` (same version range, same Python API, a 270 MB wheel) instead, and the GPU
image ``tensorflow[and-cuda]`` (CUDA and cuDNN as pip wheels, so the image needs no CUDA base). The Dockerfile
and the container smoke test (which fills the wheelhouse) both call this, so they cannot disagree.

Usage: ``python scripts/container_requirements.py {cpu,gpu} [pyproject.toml]``
"""

from __future__ import annotations

import re
import sys
import tomllib

TENSORFLOW = {"cpu": "tensorflow-cpu", "gpu": "tensorflow[and-cuda]"}


def image_requirements(variant: str, pyproject: str = "pyproject.toml") -> list[str]:
    with open(pyproject, "rb") as fh:
        dependencies = tomllib.load(fh)["project"]["dependencies"]
    requirements, replaced = [], False
    for dependency in dependencies:
        match = re.fullmatch(r"tensorflow\s*((?:[<>=!~].*)?)", dependency.strip())
        if match:
            requirements.append(TENSORFLOW[variant] + match.group(1))
            replaced = True
        else:
            requirements.append(dependency)
    if not replaced:
        raise SystemExit(f"{pyproject}: no 'tensorflow' dependency to replace")
    return requirements


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3) or sys.argv[1] not in TENSORFLOW:
        raise SystemExit(f"usage: {sys.argv[0]} {{cpu,gpu}} [pyproject.toml]")
    print("\n".join(image_requirements(*sys.argv[1:])))
