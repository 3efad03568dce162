#!/usr/bin/env python
"""The consecutive-window graph against ``model.onnx``, per window on one core: what it saves apply mode.

Apply mode predicts consecutive windows that overlap by half (4 s windows, 2 s stride), so through ``model.onnx``
every sample passes the network's first convolution (64 taps x 19 channels, about half of the network's work)
twice. Since 2026-12-04 every export also writes ``model_consecutive.onnx`` (``consecutive_graph`` in
``neurocare_bids/training/onnx_export.py``): a rewritten graph that takes a run of consecutive windows, cuts it
into half-window blocks, convolves each block once (zero-padded by the kernel on both sides) and adds the two
partial sums where a window's halves meet (each block's convolution computed through the DFT, as three matrix
products). By linearity the result is the window-by-window convolution, up to float32 rounding; the rest of the
graph is unchanged. Apply mode runs its windows through it.

One run builds the default network (untrained weights: the work per window does not depend on them), exports it
as the group level does (both files), checks that both graphs give the same probabilities on runs of 1, 2 and
``--windows`` consecutive windows (largest difference printed; above 1e-5 the script fails), and times both on
one ONNX Runtime thread, fastest of ``--repeats``, in batches of ``--windows`` (apply mode's 64)::

    python benchmarks/onnx_overlap.py                  # ~30 s on 2 cores
    python benchmarks/onnx_overlap.py --repeats 1 --windows 8 --json overlap.json

``benchmarks/apply.py`` measures the same change end to end (the stacked default with and without the file).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # this checkout's neurocare_bids


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--windows", type=int, default=64, help="consecutive windows per call (default: 64)")
    p.add_argument("--repeats", type=int, default=5, help="timed passes of 20 calls, fastest kept (default: 5)")
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the figures as JSON")
    args = p.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import numpy as np
    import onnxruntime as ort

    from neurocare_bids.config import Config
    from neurocare_bids.training.models import build_model
    from neurocare_bids.training.onnx_export import PARITY_TOLERANCE, consecutive_windows, export_onnx

    cfg = Config()
    keras.utils.set_random_seed(0)
    n_times, stride, n_chans = cfg.window_samples, cfg.window_stride_samples, 19
    if 2 * stride != n_times:
        raise SystemExit(f"the default windows overlap by {1 - stride / n_times:g}, not by half")
    with tempfile.TemporaryDirectory() as tmp:
        network = build_model(n_chans, 2, n_times, cfg.preprocessing.sfreq, cfg.model)
        entry = export_onnx(network, Path(tmp), stride)
        if entry["Consecutive"]["File"] is None:
            raise SystemExit(f"no consecutive-window graph: {entry['Consecutive']['Reason']}")
        graphs = {name: (Path(tmp) / file).read_bytes()
                  for name, file in (("per window", entry["File"]), ("overlapped", entry["Consecutive"]["File"]))}
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = 1, 1
    sessions = {name: ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
                for name, data in graphs.items()}
    windows = consecutive_windows(args.windows, n_times, n_chans, stride)
    name = sessions["per window"].get_inputs()[0].name
    difference = 0.0
    for n in sorted({1, 2, args.windows}):
        a, b = (s.run(None, {name: windows[:n]})[0] for s in sessions.values())
        difference = max(difference, float(np.abs(a - b).max()))
    if not difference <= PARITY_TOLERANCE:
        raise SystemExit(f"the overlapped graph differs from the per-window graph by {difference:.2g}")
    ms = {}
    for label, session in sessions.items():
        best = np.inf
        for _ in range(max(1, args.repeats)):
            start = time.perf_counter()
            for _ in range(20):
                session.run(None, {name: windows})
            best = min(best, (time.perf_counter() - start) / (20 * len(windows)))
        ms[label] = 1e3 * best
    saving = 1 - ms["overlapped"] / ms["per window"]
    print(f"largest difference {difference:.2g} (tolerance {PARITY_TOLERANCE:g}); one ONNX Runtime {ort.__version__} thread, "
          f"batches of {len(windows)} consecutive windows: {ms['per window']:.3f} ms per window as exported, "
          f"{ms['overlapped']:.3f} ms overlapped ({saving:.1%} less)")
    if args.json:
        args.json.write_text(json.dumps({"max_abs_difference": difference, "ms_per_window": ms, "saving": saving,
                                         "windows": len(windows), "onnxruntime": ort.__version__}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
