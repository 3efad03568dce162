#!/usr/bin/env python
"""Are two output folders of the app byte for byte the same? For changes that must not change the outputs.

    PYTHONPATH=/path/to/old/checkout neurocare-bids BIDS OUT_OLD participant --skip-bids-validation
    PYTHONPATH=/path/to/new/checkout neurocare-bids BIDS OUT_NEW participant --skip-bids-validation
    python benchmarks/compare_outputs.py OUT_OLD OUT_NEW

Compares every file (TFRecords, sidecars, reports, ``logs/CITATION.*`` ...) except the per-run log folders
``logs/<level>_<time>_<host>_<id>/``, whose names and timings differ from run to run. Exit status 0 when both
folders hold the same files with the same bytes, 1 otherwise.
"""

from __future__ import annotations

import sys
from pathlib import Path


def output_files(root: Path) -> set[Path]:
    """Paths relative to ``root``, without the per-run log folders."""
    files = set()
    for path in root.rglob("*"):
        rel = path.relative_to(root)
        if path.is_file() and not (rel.parts[0] == "logs" and len(rel.parts) > 2):
            files.add(rel)
    return files


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    a, b = map(Path, argv)
    files_a, files_b = output_files(a), output_files(b)
    problems = [f"only in {a}: {rel}" for rel in sorted(files_a - files_b)]
    problems += [f"only in {b}: {rel}" for rel in sorted(files_b - files_a)]
    same = 0
    for rel in sorted(files_a & files_b):
        if (a / rel).read_bytes() == (b / rel).read_bytes():
            same += 1
        else:
            problems.append(f"differs: {rel}")
    for line in problems:
        print(line)
    print(f"{same} identical file(s), {len(problems)} difference(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
