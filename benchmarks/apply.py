#!/usr/bin/env python
"""Apply-mode benchmark: a trained model on a 6-hour, 19-channel, 256 Hz recording, end to end.

One run of this script

1. writes a synthetic recording (19 SzCORE channels ``Fp1-Avg`` ... at 256 Hz, EDF+, no events.tsv)
   inside a minimal BIDS dataset: pink-ish noise, alpha, 50 Hz mains and a 4 Hz discharge at 20-21 min;
2. makes the model folders: ``--model DIR`` (a group level's ``group/model/``), or by default three, all with
   untrained weights, ``model.onnx`` and a valid model card: the default ``neurocare`` preset's network
   (CNN-BiLSTM with spectral and per-channel feature branches, 4 s windows at 128 Hz, stride 2 s) alone, and
   the default model as the group level ships it, that network **stacked** with the feature baseline
   (``features.joblib``: the gradient boosting, 200 trees, fitted on generated windows) at the configured
   weight, both with ``model_consecutive.onnx`` as every export writes it (and the stacked one with
   ``classifier.onnx``); and, as the stacked default's peers, a copy of it without ``model_consecutive.onnx`` (every
   window through ``model.onnx``, as before 2026-12-04) and one without ``classifier.onnx`` (the classifier
   unpickled from ``features.joblib`` with scikit-learn, as before that evening); their runs alternate with the
   default's. The work per window does not depend on the weights, so the timing is that of a trained
   model; the events it finds are meaningless;
3. runs ``neurocare-bids BIDS OUT participant --model MODEL --engine onnx --skip-bids-validation`` (this
   checkout's code) as a separate process (interpreter start, imports, model loading, reading, filtering,
   prediction, writing the events: all a user waits for) ``--repeats`` times per model folder, and reports the
   fastest: wall time, CPU time (user + sys of the process), the real-time factor (recording duration / wall
   time; target ≥ 3,000×, judged on the default, stacked model), peak RSS, the phase timings from the run log,
   and the CPU time other processes took meanwhile (``foreign load``, in cores: above 0 the wall time is
   inflated by them);
4. runs the network alone with ``--engine keras`` (TensorFlow on the CPU) once, and, when a GPU is visible
   (``nvidia-smi -L``), with ``--engine keras`` on the GPU;
5. times each engine's start-up alone: a process that imports apply mode, loads the model folder and
   predicts one window (best of ``--repeats``), and prints both engines' figures as ratios.

Peak RSS and CPU time come from ``wait4`` on the process, through the helper of
``benchmarks/preprocess.py`` (see there why a helper is needed).

Usage::

    python benchmarks/apply.py                         # 6 h recording, 3 repeats, both engines
    python benchmarks/apply.py --hours 1 --repeats 1 --skip-keras
    python benchmarks/apply.py --model demo/derivatives/group/model --json apply.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))  # this checkout's neurocare_bids

from preprocess import measure  # noqa: E402  (the exact-rusage helper)

from neurocare_bids.config import SZCORE_ELECTRODES  # noqa: E402

SFREQ = 256.0
CHANNELS = [f"{e}-Avg" for e in SZCORE_ELECTRODES]
SEIZURE = (1200.0, 1260.0)
BLOCK_SECONDS = 300
TARGET = 3000.0
CHECKOUT = HERE.parent
# start-up alone: interpreter, imports, the model folder checked and loaded, one window predicted
STARTUP = ("import sys, numpy as np; from neurocare_bids.detection.apply import load_model; "
           "m = load_model(sys.argv[1], sys.argv[2]); "
           "m.predict(np.zeros((1, m.window_samples, len(m.channels)), np.float32))")


def generate(root: Path, hours: float, seed: int) -> Path:
    """A minimal BIDS dataset holding one synthetic recording (no events.tsv); returns the EDF path."""
    import numpy as np

    from neurocare_bids.io.edf import write_edf

    rng = np.random.default_rng(seed)
    n = int(round(hours * 3600 * SFREQ))
    n_ch = len(CHANNELS)
    root.mkdir(parents=True)
    spool = root.parent / "signals.npy"
    signals = np.lib.format.open_memmap(spool, mode="w+", dtype=np.float32, shape=(n_ch, n))
    alpha = rng.uniform(3, 12, n_ch)
    mains = rng.uniform(3, 12, n_ch)
    for s0 in range(0, n, int(BLOCK_SECONDS * SFREQ)):
        s1 = min(n, s0 + int(BLOCK_SECONDS * SFREQ))
        t = np.arange(s0, s1) / SFREQ
        white = rng.standard_normal((n_ch + 1, s1 - s0))
        x = 15 * white[:-1] + 8 * white[-1]  # own + common noise (µV)
        x += alpha[:, None] * np.sin(2 * np.pi * 10 * t) + mains[:, None] * np.sin(2 * np.pi * 50 * t)
        inside = (t >= SEIZURE[0]) & (t < SEIZURE[1])
        x[:6] += 60 * np.sin(2 * np.pi * 4 * t) * inside
        signals[:, s0:s1] = x
    signals.flush()
    eeg = root / "sub-01" / "ses-01" / "eeg"
    eeg.mkdir(parents=True)
    (root / "dataset_description.json").write_text(json.dumps(
        {"Name": "NeuroCare-BIDS apply benchmark (synthetic)", "BIDSVersion": "1.9.0", "DatasetType": "raw"}))
    stem = "sub-01_ses-01_task-szMonitoring_run-00"
    edf = write_edf(eeg / f"{stem}_eeg.edf", signals, SFREQ, CHANNELS, physical_ranges=(-2000.0, 2000.0))
    (eeg / f"{stem}_eeg.json").write_text(json.dumps(
        {"TaskName": "szMonitoring", "SamplingFrequency": SFREQ, "PowerLineFrequency": 50,
         "EEGReference": "Avg", "SoftwareFilters": "n/a", "RecordingDuration": hours * 3600}))
    del signals
    spool.unlink()
    return edf


def build_untrained_model(folder: Path, seed: int = 0, stacked: bool = False) -> None:
    """The default preset with untrained weights and a model card as the group level writes it; ``stacked``: with
    the feature baseline beside it, as the default configuration ships it (:func:`fit_baseline`)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    from neurocare_bids import __version__
    from neurocare_bids.config import Config
    from neurocare_bids.io.derivatives import CARD_FORMAT
    from neurocare_bids.training.models import build_model, model_summary
    from neurocare_bids.training.onnx_export import export_onnx

    cfg = Config()
    keras.utils.set_random_seed(seed)
    window = cfg.window_samples
    model = build_model(len(CHANNELS), 2, window, cfg.preprocessing.sfreq, cfg.model)
    folder.mkdir(parents=True)
    model.save(folder / "model.keras")
    onnx_entry = export_onnx(model, folder, cfg.window_stride_samples)  # model.onnx and model_consecutive.onnx
    p = cfg.preprocessing
    card = {
        "Name": "NeuroCare-BIDS seizure detector (UNTRAINED: benchmark only)",
        "CardFormat": CARD_FORMAT, "Version": __version__, "ModelFile": "model.keras", "Preset": cfg.model.preset,
        "Architecture": model_summary(model),
        "Input": {"Channels": CHANNELS, "SamplingFrequency": p.sfreq, "WindowSamples": window,
                  "WindowDuration": cfg.windows.duration, "WindowStride": cfg.window_stride_samples / p.sfreq,
                  "dtype": "float32, z-scored per channel"},
        "Preprocessing": {
            "montage": {"montage": "average", "electrodes": list(SZCORE_ELECTRODES)},
            "preprocessing": {k: getattr(p, k) for k in (
                "l_freq", "h_freq", "filter_order", "notch", "notch_harmonics", "notch_quality", "zscore", "sfreq",
                "line_freq", "block_duration")},
            "windows": {"duration": cfg.windows.duration, "overlap": cfg.windows.overlap},
            "output": {"dtype": "float32"}},
        "PostProcessing": {"threshold": 0.5, "min_duration": 10.0, "smoothing": 3, "merge_gap": 30.0,
                           "tuned": False},
        "ONNX": onnx_entry,
    }
    if stacked:  # the baseline's file and card entry as the group level writes them
        from neurocare_bids.detection.stacking import BASELINE_FILE, StackedDetector

        from neurocare_bids.training.baseline_onnx import export_classifier

        baseline = fit_baseline(seed)
        baseline.save(folder / BASELINE_FILE)
        card["ONNX"]["Classifier"] = export_classifier(baseline, folder)  # classifier.onnx
        card["Name"] += ", stacked with the feature baseline"
        card["Stacking"] = StackedDetector(model, baseline, cfg.model.stacking_weight).summary()
    (folder / "model_card.json").write_text(json.dumps(card, indent=2) + "\n")


def copy_without(folder: Path, target: Path, part: str) -> None:
    """A copy of a stacked model folder without one of its optional ONNX files, the card's ``ONNX`` entry ``part``
    removed with it: ``"Consecutive"``, every window through ``model.onnx`` (as apply mode ran before 2026-12-04);
    ``"Classifier"``, the feature baseline's classifier unpickled from ``features.joblib`` with scikit-learn (as
    before that evening). The peers of the shipped default."""
    shutil.copytree(folder, target)
    card = json.loads((target / "model_card.json").read_text())
    (target / card["ONNX"].pop(part)["File"]).unlink()
    (target / "model_card.json").write_text(json.dumps(card, indent=2) + "\n")


def fit_baseline(seed: int = 0):
    """The ``features`` preset's gradient boosting fitted on generated windows (noise, half of them with a 3 Hz
    rhythm added): its 200 trees cost what a trained baseline's do; its scores are meaningless."""
    import numpy as np

    from neurocare_bids.config import Config
    from neurocare_bids.training.baseline import FeatureBaseline

    cfg = Config()
    rng = np.random.default_rng(seed)
    n, n_times, sfreq = 600, cfg.window_samples, cfg.preprocessing.sfreq
    windows = rng.standard_normal((n, n_times, len(CHANNELS))).astype(np.float32)
    labels = np.arange(n) % 2
    rhythm = 2.0 * np.sin(2 * np.pi * 3.0 * np.arange(n_times) / sfreq).astype(np.float32)
    windows[labels == 1] += rhythm[None, :, None] * rng.uniform(0.5, 1.5, (int(labels.sum()), 1, len(CHANNELS)))
    return FeatureBaseline().fit(windows, labels, sfreq, seed=seed)


def checkout_env(env: dict | None = None) -> dict:
    """The environment that makes ``python -m neurocare_bids`` run this checkout (not another editable install)."""
    env = dict(env or os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(CHECKOUT), env.get("PYTHONPATH", "")) if p)
    return env


def run_app(work: Path, bids: Path, model: Path, tag: str, engine: str, env: dict | None = None) -> dict:
    out = work / f"out-{tag}"
    shutil.rmtree(out, ignore_errors=True)
    log = work / f"{tag}.log"
    cmd = [sys.executable, "-m", "neurocare_bids", str(bids), str(out), "participant", "--model", str(model),
           "--engine", engine, "--skip-bids-validation", "-w", str(work / "scratch")]
    r = measure(cmd, log, checkout_env(env))
    if r["returncode"] != 0:
        raise RuntimeError(f"{tag} failed ({r['returncode']}):\n{log.read_text()[-3000:]}")
    events = list(out.rglob("*_desc-neurocare_events.tsv"))
    series = list(out.rglob("*_desc-seizureprob_timeseries.tsv.gz"))
    if len(events) != 1 or len(series) != 1 or not list((out / "szcore").rglob("*_events.tsv")):
        raise RuntimeError(f"{tag}: outputs missing in {out}")
    timings = re.search(r"timings: read \+ filter ([\d.]+) s, predict ([\d.]+) s \((\d+) windows, ([\w +]+) engine",
                        "\n".join(p.read_text() for p in out.glob("logs/apply_*/neurocare.log")))
    if timings:
        r.update(filter_s=float(timings[1]), predict_s=float(timings[2]), windows=int(timings[3]),
                 engine=timings[4])
    print(f"  {tag}: {r['wall_s']:.2f} s wall, {r['cpu_s']:.2f} s CPU, peak RSS {r['peak_rss_mib']:.0f} MiB, "
          f"foreign load {r.get('foreign_load', float('nan')):.2f} cores"
          + (f"; read+filter {r['filter_s']:.2f} s, predict {r['predict_s']:.2f} s ({r['windows']} windows)"
             if timings else ""), flush=True)
    return r


def startup(work: Path, model: Path, engine: str, repeats: int, env: dict | None = None) -> dict:
    """The fastest of ``repeats`` start-ups alone (interpreter, imports, model loading, one window)."""
    runs = [measure([sys.executable, "-c", STARTUP, str(model), engine], work / f"startup-{engine}.log",
                    checkout_env(env)) for _ in range(max(1, repeats))]
    best = min(runs, key=lambda r: r["wall_s"])
    if any(r["returncode"] != 0 for r in runs):
        log = (work / f"startup-{engine}.log").read_text()
        raise RuntimeError(f"start-up with --engine {engine} failed:\n{log[-3000:]}")
    print(f"  start-up, {engine}: {best['wall_s']:.2f} s wall, {best['cpu_s']:.2f} s CPU, "
          f"peak RSS {best['peak_rss_mib']:.0f} MiB", flush=True)
    return best


def gpu_name() -> str | None:
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hours", type=float, default=6.0, help="recording length (default: 6)")
    p.add_argument("--repeats", type=int, default=3,
                   help="timed runs of the ONNX engine, and of its start-up (default: 3)")
    p.add_argument("--model", type=Path, help="a trained model folder (default: untrained default preset)")
    p.add_argument("--skip-keras", action="store_true", help="do not time the Keras engine")
    p.add_argument("--workdir", type=Path, help="keep the data here (default: a temporary folder)")
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the figures as JSON")
    p.add_argument("--_build-model", type=Path, dest="build_model", help=argparse.SUPPRESS)
    p.add_argument("--_stacked", action="store_true", dest="stacked", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.build_model:
        build_untrained_model(args.build_model, stacked=args.stacked)
        return 0

    work = args.workdir or Path(tempfile.mkdtemp(prefix="neurocare-apply-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    bids = work / "bids"
    duration = args.hours * 3600
    if not bids.exists():
        print(f"writing a {args.hours:g} h recording (19 channels, {SFREQ:g} Hz) ...", flush=True)
        generate(bids, args.hours, seed=0)
    model, stacked, plain, pickled = args.model, None, None, None
    if model is None:
        model, stacked = work / "model", work / "model-stacked"
        plain, pickled = work / "model-stacked-per-window", work / "model-stacked-joblib"
        for folder, extra in ((model, []), (stacked, ["--_stacked"])):
            if not folder.exists():
                subprocess.run([sys.executable, __file__, "--_build-model", str(folder), *extra], check=True)
        for copy, part in ((plain, "Consecutive"), (pickled, "Classifier")):
            if not copy.exists():
                copy_without(stacked, copy, part)
    cpus = len(os.sched_getaffinity(0))
    print(f"{args.hours:g} h recording, model {model}{f' and {stacked}' if stacked else ''}, {cpus} CPUs",
          flush=True)

    def fastest(*pairs: tuple[Path, str]) -> None:
        """``--repeats`` ONNX runs of each ``(folder, key)``, alternating between the folders (so that a drift in
        the machine's speed affects each alike): the fastest as ``results[key]``, every wall time beside it."""
        runs: dict = {key: [] for _, key in pairs}
        for i in range(args.repeats):
            for folder, key in pairs:
                runs[key].append(run_app(work, bids, folder, f"{key.replace('_', '-')}-{i + 1}", "onnx"))
        for key, done in runs.items():
            results[f"{key}_walls"] = [r["wall_s"] for r in done]
            results[key] = min(done, key=lambda r: r["wall_s"])

    results: dict = {"hours": args.hours, "cpus": cpus}
    fastest((model, "onnx"))
    best = results["onnx"]
    results["startup"] = {"onnx": startup(work, model, "onnx", args.repeats)}
    if stacked is not None:  # the default as shipped (the target is judged on it) and its peer, alternating
        fastest((stacked, "stacked_onnx"), (plain, "stacked_per_window_onnx"), (pickled, "stacked_joblib_onnx"))
        results["startup"]["stacked onnx"] = startup(work, stacked, "onnx", args.repeats)
        results["startup"]["stacked onnx, classifier from features.joblib"] = startup(
            work, pickled, "onnx", args.repeats)
    cpu_only = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    if not args.skip_keras:
        results["keras_cpu"] = run_app(work, bids, model, "keras-cpu", "keras", cpu_only)
        results["startup"]["keras"] = startup(work, model, "keras", 1, cpu_only)
    gpu = gpu_name()
    if gpu and not args.skip_keras:
        results["gpu"] = gpu
        results["keras_gpu"] = run_app(work, bids, model, "keras-gpu", "keras")

    import numpy
    import onnxruntime
    import scipy

    from neurocare_bids import __version__

    print()
    print("| engine | wall (s) | CPU (s) | real time × | peak RSS (MiB) | read + filter (s) | predict (s) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    alone = ", the network alone" if stacked is not None else ""
    for name, key in ((f"ONNX Runtime {onnxruntime.__version__} (default), fastest of {args.repeats}{alone}", "onnx"),
                      ("Keras / TensorFlow, CPU" + alone, "keras_cpu"), (f"Keras / TensorFlow, {gpu}{alone}", "keras_gpu"),
                      (f"ONNX Runtime, **the stacked default** (network + features + gradient boosting), fastest of "
                       f"{args.repeats}", "stacked_onnx"),
                      (f"ONNX Runtime, the stacked default with model.onnx alone (every window's first convolution "
                       f"computed in full, as before 2026-12-04), fastest of {args.repeats}", "stacked_per_window_onnx"),
                      (f"ONNX Runtime, the stacked default with its classifier from features.joblib (scikit-learn, "
                       f"as before 2026-12-04 evening), fastest of {args.repeats}", "stacked_joblib_onnx")):
        if key in results:
            r = results[key]
            print(f"| {name} | {r['wall_s']:.2f} | {r['cpu_s']:.2f} | {duration / r['wall_s']:,.0f} | "
                  f"{r['peak_rss_mib']:.0f} | {r.get('filter_s', float('nan')):.2f} | "
                  f"{r.get('predict_s', float('nan')):.2f} |")
    print("\n| start-up (imports, model loading, one window) | wall (s) | CPU (s) | peak RSS (MiB) |")
    print("| --- | ---: | ---: | ---: |")
    for engine, r in results["startup"].items():
        print(f"| {engine} | {r['wall_s']:.2f} | {r['cpu_s']:.2f} | {r['peak_rss_mib']:.0f} |")
    ratio = duration / best["wall_s"]
    cpu_bound = duration / (best["cpu_s"] / cpus)
    results.update(real_time_factor=ratio, cpu_bound_factor=cpu_bound)
    print(f"\nreal-time factor{alone} {ratio:,.0f}× (ONNX engine, best of {args.repeats}: "
          f"{', '.join(f'{w:.2f}' for w in results['onnx_walls'])} s); CPU time {best['cpu_s']:.2f} s, so "
          f"{cpu_bound:,.0f}× if the work spread evenly over {cpus} idle cores; foreign load "
          f"{best.get('foreign_load', 0):.2f} cores (other processes' CPU use during the run)")
    judged = ratio
    if stacked is not None:
        top = results["stacked_onnx"]
        judged = duration / top["wall_s"]
        results.update(stacked_real_time_factor=judged)
        print(f"real-time factor of the stacked default {judged:,.0f}× (target ≥ {TARGET:,.0f}×; best of "
              f"{args.repeats}: {', '.join(f'{w:.2f}' for w in results['stacked_onnx_walls'])} s); CPU time "
              f"{top['cpu_s']:.2f} s; foreign load {top.get('foreign_load', 0):.2f} cores")
        per_window = results["stacked_per_window_onnx"]
        results.update(consecutive_speedup=per_window["wall_s"] / top["wall_s"])
        print(f"the consecutive-window graph: {per_window['wall_s']:.2f} s with model.onnx alone / "
              f"{top['wall_s']:.2f} s = {per_window['wall_s'] / top['wall_s']:.2f}× faster end to end (CPU time "
              f"{per_window['cpu_s']:.2f} / {top['cpu_s']:.2f} s)")
        pickled_run, starts = results["stacked_joblib_onnx"], results["startup"]
        joblib_start = starts["stacked onnx, classifier from features.joblib"]
        results.update(classifier_speedup=pickled_run["wall_s"] / top["wall_s"],
                       classifier_startup_ratio=joblib_start["wall_s"] / starts["stacked onnx"]["wall_s"])
        print(f"classifier.onnx: {pickled_run['wall_s']:.2f} s with features.joblib / {top['wall_s']:.2f} s = "
              f"{pickled_run['wall_s'] / top['wall_s']:.2f}× faster end to end (CPU time {pickled_run['cpu_s']:.2f} / "
              f"{top['cpu_s']:.2f} s); start-up {joblib_start['wall_s']:.2f} / {starts['stacked onnx']['wall_s']:.2f} s "
              f"= {joblib_start['wall_s'] / starts['stacked onnx']['wall_s']:.2f}× shorter")
    if "keras_cpu" in results:
        keras_cpu, starts = results["keras_cpu"], results["startup"]
        print(f"ONNX Runtime / Keras (CPU): real-time factor {ratio:,.0f}× / {duration / keras_cpu['wall_s']:,.0f}× "
              f"= {keras_cpu['wall_s'] / best['wall_s']:.1f}× faster end to end; "
              f"start-up {starts['onnx']['wall_s']:.2f} s / {starts['keras']['wall_s']:.2f} s = {starts['keras']['wall_s'] / starts['onnx']['wall_s']:.1f}× "
              f"shorter")
        results.update(speedup=keras_cpu["wall_s"] / best["wall_s"],
                       startup_ratio=starts["keras"]["wall_s"] / starts["onnx"]["wall_s"])
    if judged < TARGET:
        print(f"TARGET MISSED: {judged:,.0f}× < {TARGET:,.0f}×")
    print(f"Machine: {platform.machine()} {platform.processor() or ''}, {cpus} CPUs, Linux {platform.release()}; "
          f"{dt.date.today()}; Python {platform.python_version()}, NumPy {numpy.__version__}, "
          f"SciPy {scipy.__version__}, ONNX Runtime {onnxruntime.__version__}, NeuroCare-BIDS {__version__}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
