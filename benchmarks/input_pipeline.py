#!/usr/bin/env python3
"""Is the tf.data input pipeline fast enough to keep training busy? (target: ≥ 5× the train step)

Builds the real training stream (interleave, parsing, shuffling, seizure oversampling, balanced sampling,
augmentation) over participant-level outputs and measures windows/s it delivers alone, then the training
step's windows/s on batches already in memory, in the same process, and prints the ratio.

    python benchmarks/input_pipeline.py demo/derivatives           # after `make demo`
    python benchmarks/input_pipeline.py OUT --batches 50 --batch-size 64 --json result.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("derivatives", type=Path, help="output folder of the participant level")
    parser.add_argument("--batches", type=int, default=40, help="batches timed for each side")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--no-augmentation", action="store_true", help="time the unaugmented stream")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON")
    args = parser.parse_args()

    import keras
    import numpy as np

    from neurocare_bids.config import Config
    from neurocare_bids.input_pipeline import WindowFile, check_geometry, training_dataset
    from neurocare_bids.losses import build_loss
    from neurocare_bids.models import build_model

    cfg = Config()
    cfg.augmentation.enabled = not args.no_augmentation
    sidecars = sorted(args.derivatives.glob("sub-*/**/*_desc-preproc_windows.json"))
    if not sidecars:
        parser.error(f"no participant-level outputs under {args.derivatives}")
    loaded = [WindowFile.from_sidecar(p, p.relative_to(args.derivatives).parts[0][4:]) for p in sidecars]
    files = [f for f, _ in loaded]
    geometry = check_geometry([(p, meta) for p, (_, meta) in zip(sidecars, loaded)])

    stream = iter(training_dataset(files, geometry, cfg.augmentation, args.batch_size, seed=1))
    for _ in range(3):  # fill the shuffle buffers
        next(stream)
    start = time.perf_counter()
    batches = [next(stream) for _ in range(args.batches)]
    pipeline = args.batches * args.batch_size / (time.perf_counter() - start)

    keras.utils.set_random_seed(1)
    model = build_model(geometry.n_chans, 2, geometry.n_times, geometry.sfreq, cfg.model)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=build_loss(cfg.training))
    x = np.concatenate([b[0].numpy() for b in batches])
    y = np.concatenate([b[1].numpy() for b in batches])
    model.fit(x[: 2 * args.batch_size], y[: 2 * args.batch_size], batch_size=args.batch_size, verbose=0)
    start = time.perf_counter()
    model.fit(x, y, batch_size=args.batch_size, epochs=1, verbose=0, shuffle=False)
    train = len(x) / (time.perf_counter() - start)

    ratio = pipeline / train
    figures = {"pipeline_windows_per_s": round(pipeline, 1), "train_step_windows_per_s": round(train, 1),
               "ratio": round(ratio, 2), "augmentation": cfg.augmentation.enabled, "batch_size": args.batch_size,
               "seizure_fraction_delivered": round(float(y.mean()), 3), "backend": keras.backend.backend(),
               "cpus": os.cpu_count(), "machine": platform.processor() or platform.machine(),
               "date": time.strftime("%Y-%m-%d")}
    print(f"input pipeline: {pipeline:,.0f} windows/s; training step: {train:,.0f} windows/s; "
          f"ratio {ratio:.1f}x (target >= 5x)")
    print(f"seizure share of the delivered windows: {y.mean():.2f} (balanced sampling target "
          f"{cfg.augmentation.seizure_fraction if cfg.augmentation.enabled else 'off'})")
    if ratio < 5:
        print(f"TARGET MISSED: pipeline/train = {ratio:.2f}x < 5x")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
