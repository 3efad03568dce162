#!/usr/bin/env python
"""Training and inference throughput of the group-level models, on whatever device and Keras backend.

For each preset (``neurocare`` at batch 256, ``seed`` at batch 16, its original batch size) this script
builds the model for synthetic windows of the real shape (4 s × 128 Hz × 19 channels by default),
compiles it with the default focal loss and Adam, trains for ``--warmup`` steps (graph tracing, XLA or
cuDNN autotuning, memory pools), then times ``--steps`` training steps with ``model.fit`` and
``--predict-windows`` predictions with ``model.predict`` at batch ``--predict-batch`` (1024). It prints
training and inference windows per second, the device, backend, versions and parameter counts, and a
Markdown table ready to paste; ``--json FILE`` also writes the figures.

Only ``keras``, ``numpy`` and ``neurocare_bids.{config,models,losses}`` are imported (the latter from
this checkout, so no install is needed), never a backend directly: the script runs unchanged on a
machine that has only TensorFlow, only JAX or only PyTorch. The backend is Keras's: ``KERAS_BACKEND``
or ``--backend``. Device names are read from the backend module Keras has already loaded.

Usage::

    python benchmarks/gpu_train.py                                  # both presets, 100 timed steps each
    KERAS_BACKEND=jax python benchmarks/gpu_train.py --steps 200 --json jax.json
    python benchmarks/gpu_train.py --presets neurocare --batch 512 --policy mixed_bfloat16
    python benchmarks/gpu_train.py --steps 5 --warmup 2 --predict-windows 2048   # CPU smoke test

How it measures: the training data is a pool of at most ``--pool`` distinct batches already in memory,
fed to ``model.fit`` as NumPy arrays (host → device copy each step, as in real training); the timed fit
runs whole epochs over the pool, so the steps actually timed are rounded up to a multiple of the pool
size and reported. Timings include Keras's per-epoch overhead but not compilation, which the warm-up
pays. Random data and labels: the throughput does not depend on the values.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's neurocare_bids

DEFAULT_BATCH = {"neurocare": 256, "seed": 16}
BACKEND_PACKAGES = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch", "numpy": "numpy"}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", nargs="+", default=["neurocare", "seed"], choices=sorted(DEFAULT_BATCH),
                   help="models to measure (default: neurocare seed)")
    p.add_argument("--sfreq", type=float, default=128.0, help="sampling rate in Hz (default: 128)")
    p.add_argument("--seconds", type=float, default=4.0, help="window length in s (default: 4)")
    p.add_argument("--channels", type=int, default=19, help="channels per window (default: 19)")
    p.add_argument("--batch", type=int, help="training batch size for every preset (default: 256 for "
                   "neurocare, 16 for seed)")
    p.add_argument("--steps", type=int, default=100, help="timed training steps (default: 100)")
    p.add_argument("--warmup", type=int, default=10, help="untimed training steps first (default: 10)")
    p.add_argument("--pool", type=int, default=8, help="distinct training batches held in memory "
                   "(default: 8)")
    p.add_argument("--predict-batch", type=int, default=1024, help="inference batch size (default: 1024)")
    p.add_argument("--predict-windows", type=int, default=16384, help="windows predicted in the timed "
                   "inference, rounded up to whole batches (default: 16384)")
    p.add_argument("--jit", choices=("auto", "on", "off"), default="auto",
                   help="Keras jit_compile: XLA on TensorFlow/JAX, torch.compile on PyTorch (default: auto, "
                        "Keras's choice)")
    p.add_argument("--policy", default="float32", choices=("float32", "mixed_float16", "mixed_bfloat16"),
                   help="Keras dtype policy (default: float32)")
    p.add_argument("--backend", choices=("tensorflow", "jax", "torch"),
                   help="Keras backend (default: KERAS_BACKEND, else Keras's default)")
    p.add_argument("--seed", type=int, default=0, help="random seed of weights and data (default: 0)")
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the figures as JSON to FILE")
    args = p.parse_args(argv)
    for name in ("steps", "warmup", "pool", "predict_batch", "predict_windows", "channels"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.batch is not None and args.batch < 1:
        p.error("--batch must be at least 1")
    n_times = args.seconds * args.sfreq
    if args.sfreq <= 0 or args.seconds <= 0 or not math.isclose(n_times, round(n_times)):
        p.error("--seconds × --sfreq must be a positive whole number of samples")
    return args


# ---------------------------------------------------------------------------------------------- machine
def versions(backend: str) -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in ("keras", "numpy", BACKEND_PACKAGES.get(backend, backend)):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "n/a"
    return out


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def nvidia_smi() -> list[str]:
    """GPU names and memory from nvidia-smi, whatever the backend sees (empty without NVIDIA GPUs)."""
    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version",
                              "--format=csv,noheader"], capture_output=True, text=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.stdout.splitlines() if line.strip()]


def backend_device(backend: str) -> str:
    """The device the backend computes on, from the backend module Keras already imported."""
    module = sys.modules.get(backend)
    try:
        if backend == "tensorflow" and module is not None:
            gpus = module.config.list_physical_devices("GPU")
            if gpus:
                details = module.config.experimental.get_device_details(gpus[0])
                return f"GPU: {details.get('device_name', gpus[0].name)} ({len(gpus)} visible)"
        elif backend == "jax" and module is not None:
            device = module.devices()[0]
            if device.platform != "cpu":
                return f"{device.platform.upper()}: {device.device_kind} ({len(module.devices())} visible)"
        elif backend == "torch" and module is not None:
            if module.cuda.is_available():
                return f"GPU: {module.cuda.get_device_name(0)} ({module.cuda.device_count()} visible)"
    except Exception as exc:  # a device query must never stop the benchmark
        return f"unknown ({type(exc).__name__}: {exc})"
    return f"CPU: {cpu_name()} ({os.cpu_count()} logical cores)"


# ---------------------------------------------------------------------------------------------- measuring
def bench_preset(preset: str, batch: int, args: argparse.Namespace) -> dict[str, Any]:
    import keras
    import numpy as np

    from neurocare_bids.config import ModelConfig, TrainingConfig
    from neurocare_bids.training.losses import build_loss
    from neurocare_bids.training.models import SEED_TRAINING, build_model, model_summary

    n_times = round(args.seconds * args.sfreq)
    keras.utils.set_random_seed(args.seed)
    model = build_model(args.channels, 2, n_times, args.sfreq, ModelConfig(preset=preset))
    lr = SEED_TRAINING["learning_rate"] if preset == "seed" else TrainingConfig().learning_rate
    jit = {"auto": "auto", "on": True, "off": False}[args.jit]
    model.compile(optimizer=keras.optimizers.Adam(lr), loss=build_loss(TrainingConfig()), jit_compile=jit)

    rng = np.random.default_rng(args.seed)
    pool = min(args.pool, args.steps)
    x = rng.standard_normal((pool * batch, n_times, args.channels), dtype=np.float32)
    y = (rng.random(pool * batch) < 0.3).astype("int32")

    t0 = time.perf_counter()
    warmup = min(args.warmup, pool)
    for _ in range(math.ceil(args.warmup / warmup)):
        model.fit(x, y, batch_size=batch, epochs=1, steps_per_epoch=warmup, shuffle=False, verbose=0)
    warmup_s = time.perf_counter() - t0

    epochs = math.ceil(args.steps / pool)
    t0 = time.perf_counter()
    history = model.fit(x, y, batch_size=batch, epochs=epochs, shuffle=False, verbose=0)
    train_s = time.perf_counter() - t0
    steps = epochs * pool

    n_predict = math.ceil(args.predict_windows / args.predict_batch) * args.predict_batch
    xp = rng.standard_normal((n_predict, n_times, args.channels), dtype=np.float32)
    t0 = time.perf_counter()
    model.predict(xp[: args.predict_batch], batch_size=args.predict_batch, verbose=0)  # trace / compile
    predict_warmup_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    probabilities = model.predict(xp, batch_size=args.predict_batch, verbose=0)
    predict_s = time.perf_counter() - t0
    if not np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-3):
        raise RuntimeError(f"{preset}: predictions are not probabilities")

    summary = model_summary(model)
    return {
        "preset": preset,
        "parameters": summary["parameters"],
        "trainable_parameters": summary["trainable_parameters"],
        "window_shape": [n_times, args.channels],
        "batch": batch,
        "jit_compile": model.jit_compile,
        "warmup_steps": math.ceil(args.warmup / warmup) * warmup,
        "warmup_s": warmup_s,
        "train_steps": steps,
        "train_s": train_s,
        "train_ms_per_step": 1000 * train_s / steps,
        "train_windows_per_s": steps * batch / train_s,
        "final_loss": float(history.history["loss"][-1]),
        "predict_batch": args.predict_batch,
        "predict_windows": n_predict,
        "predict_warmup_s": predict_warmup_s,
        "predict_s": predict_s,
        "predict_windows_per_s": n_predict / predict_s,
    }


def markdown(results: dict[str, Any]) -> str:
    rows = ["| model | parameters | train batch | train windows/s | ms/step | predict windows/s (batch "
            f"{results['args']['predict_batch']}) |",
            "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in results["presets"]:
        rows.append(f"| `{r['preset']}` | {r['parameters']:,} | {r['batch']} | {r['train_windows_per_s']:,.0f} | "
                    f"{r['train_ms_per_step']:.1f} | {r['predict_windows_per_s']:,.0f} |")
    v = results["versions"]
    backend_pkg = BACKEND_PACKAGES.get(results["backend"], results["backend"])
    rows += ["", f"Device: {results['device']}. Keras {v['keras']} on {results['backend']} "
                 f"{v.get(backend_pkg, 'n/a')}, {results['policy']}, jit_compile={results['args']['jit']}; "
                 f"Python {v['python']}, NumPy {v['numpy']}; {results['date']}. Windows of "
                 f"{results['args']['seconds']:g} s × {results['args']['sfreq']:g} Hz × "
                 f"{results['args']['channels']} channels, synthetic."]
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.backend:
        os.environ["KERAS_BACKEND"] = args.backend  # read by Keras at import, so set before it
    import keras

    keras.config.set_floatx("float32")
    keras.config.set_dtype_policy(args.policy)
    backend = keras.config.backend()
    results: dict[str, Any] = {
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "backend": backend,
        "device": backend_device(backend),
        "nvidia_smi": nvidia_smi(),
        "cpu": f"{cpu_name()} ({os.cpu_count()} logical cores)",
        "platform": f"{platform.system()} {platform.release()}",
        "versions": versions(backend),
        "policy": args.policy,
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "presets": [],
    }
    print(f"Backend: {backend}   Device: {results['device']}", flush=True)
    for line in results["nvidia_smi"]:
        print(f"nvidia-smi: {line}")
    print("Versions: " + ", ".join(f"{k} {v}" for k, v in results["versions"].items()), flush=True)
    failed = []
    for preset in args.presets:
        batch = args.batch or DEFAULT_BATCH[preset]
        try:
            r = bench_preset(preset, batch, args)
        except Exception as exc:  # e.g. a backend kernel without this dtype: report it, measure the others
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            failed.append({"preset": preset, "batch": batch, "error": f"{type(exc).__name__}: {message}"})
            print(f"{preset:>9}: FAILED on {backend} ({args.policy}): {failed[-1]['error']}", flush=True)
            continue
        results["presets"].append(r)
        print(f"{preset:>9}: {r['parameters']:,} parameters, jit_compile={r['jit_compile']}; warm-up "
              f"{r['warmup_steps']} steps in {r['warmup_s']:.1f} s; train {r['train_steps']} steps × {batch} in "
              f"{r['train_s']:.2f} s = {r['train_windows_per_s']:,.0f} windows/s "
              f"({r['train_ms_per_step']:.1f} ms/step); predict {r['predict_windows']} windows in "
              f"{r['predict_s']:.2f} s = {r['predict_windows_per_s']:,.0f} windows/s", flush=True)
    results["failed"] = failed
    if results["presets"]:
        print()
        print(markdown(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
        print(f"\nFigures written to {args.json}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
