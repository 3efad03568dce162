#!/usr/bin/env python3
"""Are the input pipelines fast enough to keep training busy? (target: ≥ 5× the train step)

Builds the real training stream (interleave, parsing, shuffling, seizure oversampling, balanced sampling,
augmentation) over participant-level outputs and measures windows/s it delivers alone, then the training
step's windows/s on batches already in memory, in the same process, and prints the ratio. Both pipelines by
default: ``tf.data`` and the NumPy one used where TensorFlow is not installed (``training.input_pipeline``), each
against the same training step, and the NumPy one's rate over ``tf.data``'s.

    python benchmarks/input_pipeline.py demo/derivatives           # after `make demo`
    python benchmarks/input_pipeline.py OUT --batches 50 --batch-size 64 --pipeline numpy --json result.json
    python benchmarks/input_pipeline.py OUT --cold    # as if the training set were larger than memory

``--cold`` evicts the TFRecords from the page cache before each pipeline starts (``posix_fadvise`` DONTNEED: no
root needed), so that windows come from disk, as they do when the training set is larger than memory (CHB-MIT's
64 GiB of windows) or on a network file system.
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
    parser.add_argument("--pipeline", choices=("both", "tf.data", "numpy"), default="both",
                        help="the input pipeline(s) to time (default: both, in this order)")
    parser.add_argument("--cold", action="store_true",
                        help="evict the windows from the page cache before each pipeline starts")
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
    pipelines = ("tf.data", "numpy") if args.pipeline == "both" else (args.pipeline,)
    timed = {name: time_pipeline(files, geometry, cfg.augmentation, args.batch_size, args.batches, name, args.cold)
             for name in pipelines}
    batches = timed[pipelines[0]][2]

    keras.utils.set_random_seed(1)
    model = build_model(geometry.n_chans, 2, geometry.n_times, geometry.sfreq, cfg.model)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=build_loss(cfg.training))
    x = np.concatenate([b[0] for b in batches])
    y = np.concatenate([b[1] for b in batches])
    model.fit(x[: 2 * args.batch_size], y[: 2 * args.batch_size], batch_size=args.batch_size, verbose=0)
    start = time.perf_counter()
    model.fit(x, y, batch_size=args.batch_size, epochs=1, verbose=0, shuffle=False)
    train = len(x) / (time.perf_counter() - start)

    figures = {"train_step_windows_per_s": round(train, 1), "augmentation": cfg.augmentation.enabled,
               "batch_size": args.batch_size, "backend": keras.backend.backend(), "cpus": os.cpu_count(),
               "page_cache": "evicted" if args.cold else "as found",
               "machine": platform.processor() or platform.machine(), "date": time.strftime("%Y-%m-%d")}
    print(f"training step: {train:,.0f} windows/s")
    for name, (rate, per_cpu, got) in timed.items():
        ratio = rate / train
        share = float(np.concatenate([b[1] for b in got]).mean())
        figures[name] = {"pipeline_windows_per_s": round(rate, 1), "windows_per_cpu_s": round(per_cpu, 1),
                         "ratio": round(ratio, 2), "seizure_fraction_delivered": round(share, 3)}
        print(f"{name} input pipeline: {rate:,.0f} windows/s ({per_cpu:,.0f} per CPU-second); ratio {ratio:.1f}x "
              f"the training step (target >= 5x); seizure share {share:.2f} (balanced sampling target "
              f"{cfg.augmentation.seizure_fraction if cfg.augmentation.enabled else 'off'})")
        if ratio < 5:
            print(f"TARGET MISSED: {name} pipeline/train = {ratio:.2f}x < 5x")
    if len(timed) == 2:
        figures["numpy_over_tf_data"] = round(timed["numpy"][0] / timed["tf.data"][0], 2)
        print(f"numpy / tf.data: {figures['numpy_over_tf_data']:.2f}x")
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


def time_pipeline(files, geometry, augmentation, batch_size: int, n_batches: int, pipeline: str = "tf.data",
                  cold: bool = False):
    """Windows/s the training stream (``tf.data`` or ``numpy``) delivers alone (after 3 batches that fill the
    shuffle buffers or the threads' queue), windows per CPU-second of this process over the same stretch (all its
    threads: the rate per core), and the batches as NumPy ``(windows, labels)``. ``cold``: the files are evicted
    from the page cache just before the stream starts."""
    import resource

    if pipeline == "numpy":
        from neurocare_bids.training.numpy_pipeline import NumpyTrainingBatches

        source = NumpyTrainingBatches(files, geometry, augmentation, batch_size, seed=1)
        if cold:
            evict(files)
        stream = iter(source)
    else:
        from neurocare_bids.training.input_pipeline import training_dataset

        if cold:
            evict(files)
        source, stream = None, iter(training_dataset(files, geometry, augmentation, batch_size, seed=1))
    for _ in range(3):
        next(stream)
    cpu0, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    batches = [next(stream) for _ in range(n_batches)]
    wall = time.perf_counter() - start
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    if source is not None:
        stream.close()
        source.close()
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    windows = n_batches * batch_size
    return windows / wall, windows / max(cpu, 1e-9), [(_numpy(x), _numpy(y)) for x, y in batches]


def evict(files) -> None:
    """Drop the recordings' TFRecords from the page cache (clean pages only: nothing is lost)."""
    for f in files:
        fd = os.open(f.tfrecord, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def _numpy(array):
    import numpy as np

    return array.numpy() if hasattr(array, "numpy") else np.asarray(array)


if __name__ == "__main__":
    raise SystemExit(main())
