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
    from neurocare_bids.training.losses import build_loss
    from neurocare_bids.training.models import build_model

    cfg = Config()
    cfg.augmentation.enabled = not args.no_augmentation
    try:
        files, geometry = load_outputs(args.derivatives)
    except FileNotFoundError as exc:
        parser.error(str(exc))
    pipeline, _, batches = time_pipeline(files, geometry, cfg.augmentation, args.batch_size, args.batches)

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


def load_outputs(derivatives: Path, subjects: set[str] | None = None):
    """The participant-level outputs under ``derivatives`` (only ``subjects``' when given, labels without
    ``sub-``): their ``WindowFile``s and common geometry."""
    from neurocare_bids.training.input_pipeline import WindowFile, check_geometry

    sidecars = sorted(derivatives.glob("sub-*/**/*_desc-preproc_windows.json"))
    if subjects is not None:
        sidecars = [p for p in sidecars if p.relative_to(derivatives).parts[0][4:] in subjects]
    if not sidecars:
        raise FileNotFoundError(f"no participant-level outputs under {derivatives}")
    loaded = [WindowFile.from_sidecar(p, p.relative_to(derivatives).parts[0][4:]) for p in sidecars]
    return [f for f, _ in loaded], check_geometry([(p, meta) for p, (_, meta) in zip(sidecars, loaded)])


def time_pipeline(files, geometry, augmentation, batch_size: int, n_batches: int):
    """Windows/s the training stream delivers alone (after 3 batches that fill the shuffle buffers), windows per
    CPU-second of this process over the same stretch (all its threads: the rate per core), and the batches."""
    import resource

    from neurocare_bids.training.input_pipeline import training_dataset

    stream = iter(training_dataset(files, geometry, augmentation, batch_size, seed=1))
    for _ in range(3):  # fill the shuffle buffers
        next(stream)
    cpu0, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    batches = [next(stream) for _ in range(n_batches)]
    wall = time.perf_counter() - start
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    windows = n_batches * batch_size
    return windows / wall, windows / max(cpu, 1e-9), batches


if __name__ == "__main__":
    raise SystemExit(main())
