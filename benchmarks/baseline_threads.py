#!/usr/bin/env python3
"""The feature baseline's fit alone and beside a second process, with every core and with one thread each.

Why: the gradient boosting (scikit-learn, OpenMP) waits on its threads many times per tree; two processes that
each take every core then hold the cores their partners wait for. This measures what that costs on the machine at
hand, so that the advice in docs/usage/group.md (runs sharing a machine set ``--omp-nthreads``) rests on numbers.

    python benchmarks/baseline_threads.py DERIVATIVES            # participant-level outputs (any size)
    python benchmarks/baseline_threads.py DERIVATIVES --fits 5 --json threads.json

Features are computed once from every window of DERIVATIVES (as the group level's ``train_features``) and saved
to a temporary file; each case then starts fresh processes that fit ``FeatureBaseline("hgb")`` ``--fits`` times,
with the threads set as ``--omp-nthreads`` sets them (``threadpoolctl``): ``all`` (the default, every core) or 1.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CASES = (("alone", 1, 0), ("alone", 1, 1), ("side by side", 2, 0), ("side by side", 2, 1))


def _child(features: Path, threads: int, fits: int) -> None:
    """Fit ``fits`` times and print one JSON line of fit seconds (the timed part starts after the imports)."""
    import numpy as np
    from threadpoolctl import threadpool_limits

    from neurocare_bids.training.baseline import FeatureBaseline

    if threads:
        threadpool_limits(limits=threads)
    with np.load(features) as npz:
        X, y, sfreq = npz["X"], npz["y"], float(npz["sfreq"])
    seconds = []
    for seed in range(fits):
        start = time.perf_counter()
        FeatureBaseline("hgb").fit_features(X, y, seed=seed, sfreq=sfreq)
        seconds.append(time.perf_counter() - start)
    print(json.dumps(seconds), flush=True)


def _run_case(features: Path, processes: int, threads: int, fits: int) -> list[float]:
    cmd = [sys.executable, __file__, "--child", str(features), str(threads), str(fits)]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for _ in range(processes)]
    seconds = []
    for proc in procs:
        out, err = proc.communicate()
        if proc.returncode:
            raise SystemExit(f"a fitting process failed:\n{err[-2000:]}")
        seconds += json.loads(out.strip().splitlines()[-1])
    return seconds


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        _child(Path(argv[1]), int(argv[2]), int(argv[3]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("derivatives", type=Path, help="participant-level output folder")
    parser.add_argument("--fits", type=int, default=3, help="fits per process and case (default 3)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)

    import numpy as np

    from neurocare_bids.evaluation.plan import collect_window_files
    from neurocare_bids.training.fit import _features

    files, geometry = collect_window_files(args.derivatives, [])
    X, y = _features(files, geometry)
    cores = len(os.sched_getaffinity(0))
    print(f"{X.shape[0]} windows x {X.shape[1]} features from {len(files)} recordings; {cores} cores; "
          f"{args.fits} fits per process")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        features = Path(tmp) / "features.npz"
        np.savez(features, X=X, y=y, sfreq=geometry.sfreq)
        for label, processes, threads in CASES:
            seconds = _run_case(features, processes, threads, args.fits)
            rows.append({"case": label, "processes": processes, "threads": threads or cores,
                         "fit_seconds": seconds, "median_s": statistics.median(seconds)})
            print(f"  {label:<13} {processes} process(es) x {threads or cores} thread(s): fit "
                  f"{min(seconds):.2f}-{max(seconds):.2f} s, median {statistics.median(seconds):.2f} s", flush=True)
    base = rows[0]["median_s"]
    print(f"side by side, every core: {rows[2]['median_s'] / base:.1f}x the time alone; one thread each: "
          f"{rows[3]['median_s'] / base:.1f}x")
    if args.json:
        args.json.write_text(json.dumps({"windows": int(X.shape[0]), "features": int(X.shape[1]), "cores": cores,
                                         "cases": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
