#!/usr/bin/env python
"""What the group level's epoch checkpoints cost (``neurocare_bids.training.checkpoints``), against the training
they protect, measured in one run on the participant-level output of a dataset.

For the configured model (default: the default configuration) and the training windows of every subject it times:

* writing one checkpoint (model and optimiser variables, early stopping's best weights), its size, and reading it
  back into a fresh model; against the training steps of one epoch (one pass over the windows), timed on
  ``--steps`` batches and scaled;
* on resuming, the input pipeline's catching up: ``tf.data`` draws the batches of the epochs already done without
  augmenting them (``training_dataset(start_batch=N)``), against drawing and augmenting them as training does;
  the NumPy pipeline starts at batch N directly (each batch is a function of the seed and its number).

Usage::

    python benchmarks/checkpoint_cost.py OUT_DIR [--config FILE] [--steps 20] [--skip-batches 200]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir", type=Path, help="a participant-level output folder")
    parser.add_argument("--config", type=Path, help="a group-level configuration file (default: the defaults)")
    parser.add_argument("--steps", type=int, default=20, help="training batches timed (after 3 of warm-up)")
    parser.add_argument("--skip-batches", type=int, default=200, help="batches the resumed input pipeline skips")
    args = parser.parse_args()

    import keras
    import numpy as np

    from neurocare_bids.config import Config
    from neurocare_bids.evaluation.plan import collect_window_files
    from neurocare_bids.training.checkpoints import SaveCheckpoint, read_checkpoint, restore_variables
    from neurocare_bids.training.fit import batch_plan, build_optimizer, initial_network
    from neurocare_bids.training.input_pipeline import training_dataset
    from neurocare_bids.training.losses import build_loss

    cfg = Config.from_toml(args.config) if args.config else Config()
    files, geometry = collect_window_files(args.out_dir, [])
    steps_per_epoch, batch = batch_plan(cfg, files)

    def first_batch_after(start: int) -> float:
        started = time.perf_counter()
        next(iter(training_dataset(files, geometry, cfg.augmentation, batch, 1, start_batch=start)))
        return time.perf_counter() - started

    def batches(n: int) -> float:
        started = time.perf_counter()
        for _ in training_dataset(files, geometry, cfg.augmentation, batch, 1).take(n):
            pass
        return time.perf_counter() - started

    base = first_batch_after(0)  # the stream's start-up (shuffle buffers filled), paid by any training
    skip = first_batch_after(args.skip_batches) - base
    drawn = batches(args.skip_batches + 1) - base

    model = initial_network(cfg, geometry, 1)
    model.compile(optimizer=build_optimizer(cfg, cfg.training.learning_rate),
                  loss=build_loss(cfg.training, [1000, 10]))
    data = training_dataset(files, geometry, cfg.augmentation, batch, 1)
    model.fit(data, epochs=1, steps_per_epoch=3, verbose=0, shuffle=False)
    started = time.perf_counter()
    model.fit(data, epochs=1, steps_per_epoch=args.steps, verbose=0, shuffle=False)
    step = (time.perf_counter() - started) / args.steps

    early_stopping = keras.callbacks.EarlyStopping(monitor="val_pr_auc", mode="max", restore_best_weights=True)
    lr_schedule = keras.callbacks.ReduceLROnPlateau(monitor="val_pr_auc", mode="max")
    for callback in (early_stopping, lr_schedule):
        callback.set_model(model)
        callback.on_train_begin()
    early_stopping.on_epoch_end(0, {"val_pr_auc": 0.5})
    lr_schedule.on_epoch_end(0, {"val_pr_auc": 0.5})
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "checkpoint.npz"
        save = SaveCheckpoint(path, "benchmark", early_stopping, lr_schedule, None)
        save.set_model(model)
        writes = []
        for epoch in range(5):
            started = time.perf_counter()
            save.on_epoch_end(epoch, {"loss": 0.1, "val_pr_auc": 0.5})
            writes.append(time.perf_counter() - started)
        size = path.stat().st_size
        fresh = initial_network(cfg, geometry, 2)
        fresh.compile(optimizer=build_optimizer(cfg, cfg.training.learning_rate),
                      loss=build_loss(cfg.training, [1000, 10]))
        started = time.perf_counter()
        restored = restore_variables(fresh, read_checkpoint(path, "benchmark"))
        read = time.perf_counter() - started
    assert restored
    same = all(np.array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
               for a, b in zip(model.variables, fresh.variables))

    epoch = step * steps_per_epoch
    write = float(np.median(writes))
    print(f"# checkpoint cost, {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC, {_cpu()}, "
          f"{len(os.sched_getaffinity(0))} cores, Keras {keras.__version__} ({keras.backend.backend()})")
    print(f"model: {model.count_params():,} parameters; all {len(files)} recordings' windows, {steps_per_epoch} batches "
          f"of {batch} per epoch")
    print("| measure | value |\n| --- | ---: |")
    print(f"| one training step (batch {batch}) | {step * 1000:.0f} ms |")
    print(f"| one epoch of training steps ({steps_per_epoch} batches, scaled) | {epoch:.1f} s |")
    print(f"| checkpoint file | {size / 2**20:.2f} MiB |")
    print(f"| writing it (median of 5) | {write * 1000:.0f} ms = {write / epoch:.2e} of an epoch |")
    print(f"| reading it into a fresh model | {read * 1000:.0f} ms (variables equal: {same}) |")
    print(f"| resuming tf.data: skipping {args.skip_batches} batches | {skip:.2f} s "
          f"({skip / args.skip_batches * 1000:.1f} ms per batch) |")
    print(f"| peer: drawing and augmenting them as training does | {drawn:.2f} s "
          f"({drawn / args.skip_batches * 1000:.1f} ms per batch; skipping costs {skip / drawn:.2f} of it) |")
    print(f"| skipping one epoch's batches against training it | {skip / args.skip_batches * steps_per_epoch:.1f} s "
          f"= {skip / args.skip_batches / step:.3f} of the epoch |")


def _cpu() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
        return next(line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


if __name__ == "__main__":
    main()
