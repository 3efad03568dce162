#!/usr/bin/env python
"""Full-scale rehearsal: a Siena-sized (or CHB-MIT-sized) run, participant level as per-subject jobs, group level
measured piece by piece, and the wall time of a full cross-validation projected from it.

1. **Data, one subject at a time** (never all of it on disk): Siena-like recordings (29 channels at 512 Hz, EDF+,
   ``benchmarks/preprocess.py``'s generator, one 60-s seizure per recording) of at most ``--recording-hours``
   each, ``--hours`` / ``--subjects`` hours per subject, in one BIDS dataset.
2. **Participant level as a Slurm array would run it**: ``neurocare-bids BIDS OUT participant --participant-label
   XX --skip-bids-validation --nprocs 1`` per subject, a separate process each, ``--jobs`` at a time, measured
   with ``preprocess.measure`` (wall, CPU, exact peak RSS). A subject's EDFs are deleted once its job has ended
   (``--keep`` keeps them); its derivatives stay (the group measurements read them).
3. **Group level, without a full cross-validation**, on ``--sample-subjects`` subjects' outputs, in one measured
   process: the training input pipeline's windows/s and windows per CPU-second (``input_pipeline.py``'s
   functions), ``--steps`` training steps of the default model on the CPU fed by that pipeline (an epoch's time
   extrapolated from them), prediction windows/s, and that process's peak RSS.
4. **Output sizes**: ``predictions.tsv`` written by the group level's own writer for synthetic scores of every
   sampled window (bytes per window, then × the full run's windows), and the probability traces of
   ``group.html`` drawn by the report's own code (``reports.group._traces``) at the point budget of the full
   run's recording count (bytes per trace, then × its recordings). ``metrics.json`` is not measured (it holds
   per-fold, per-subject and per-seizure rows: it grows with subjects and seizures, not with hours).
5. **Projection** of a full cross-validation (``cv.folds`` folds, each training up to ``training.epochs`` epochs
   over its training subjects' windows, plus the final model): on this CPU from the measured training rate; on
   one GPU from the measured 29,354 train / 148,410 predict windows/s (``neurocare`` model, JAX, one H200,
   ``benchmarks/gpu_train.py``, 2026-11-26); on N array tasks (one fold per GPU task, then the final model).
   Input-pipeline cores needed to feed that GPU = 29,354 / windows per CPU-second.

Usage::

    python benchmarks/scale.py --hours 8 --subjects 4 --json scale.json   # a reduced rehearsal
    python benchmarks/scale.py                                            # Siena-sized: 14 subjects, 128 h
    python benchmarks/scale.py --chbmit --jobs 4 --sample-subjects 3      # CHB-MIT-sized: 24 subjects, 980 h
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime as dt
import json
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import preprocess as pre  # noqa: E402  (benchmarks/preprocess.py: measure, generator, machine, versions)

GPU_TRAIN_WPS = 29_354.0  # docs/performance.md, group level: neurocare, JAX 0.11.2, one H200, batch 256
GPU_PREDICT_WPS = 148_410.0
SIENA = {"hours": 128.0, "subjects": 14, "recording_hours": 3.0}  # 41 recordings, 47 seizures
CHBMIT = {"hours": 980.0, "subjects": 24, "recording_hours": 1.0}  # 686 recordings (mostly 1 h), 198 seizures


# ---------------------------------------------------------------------------------------------- data
def subject_plan(hours: float, subjects: int, recording_hours: float) -> list[list[float]]:
    """Per subject, the durations (h) of its recordings: equal shares, each at most ``recording_hours``."""
    per_subject = hours / subjects
    n = max(1, math.ceil(per_subject / recording_hours - 1e-9))
    return [[per_subject / n] * n for _ in range(subjects)]


def write_subject(bids: Path, workdir: Path, label: str, durations: list[float], seed: int) -> int:
    """Write one subject's recordings (EDF+, sidecar, events); returns their bytes."""
    from neurocare_bids.io.edf import write_edf

    eeg_dir = bids / f"sub-{label}" / "ses-01" / "eeg"
    eeg_dir.mkdir(parents=True, exist_ok=True)
    total = 0
    for run, hours in enumerate(durations):
        signals_path = workdir / f"signals-{label}.npy"
        signals = pre.generate_signals(signals_path, hours, seed + run)
        stem = f"sub-{label}_ses-01_task-szMonitoring_run-{run:02d}"
        edf = write_edf(eeg_dir / f"{stem}_eeg.edf", signals, pre.SFREQ, pre.CHANNELS,
                        physical_ranges=pre.PHYSICAL_RANGE, start=dt.datetime(2000, 1, 1 + run, 0, 0, 0))
        del signals
        signals_path.unlink()
        total += Path(edf).stat().st_size
        duration = hours * 3600
        (eeg_dir / f"{stem}_eeg.json").write_text(json.dumps({
            "TaskName": "szMonitoring", "SamplingFrequency": pre.SFREQ, "PowerLineFrequency": 50,
            "EEGReference": "common", "SoftwareFilters": "n/a", "RecordingDuration": duration,
            "EEGChannelCount": 27, "ECGChannelCount": 1, "MiscChannelCount": 1}, indent=2) + "\n")
        onset, length = pre.SEIZURE if duration >= pre.SEIZURE[1] else (0.4 * duration, min(60.0, 0.2 * duration))
        when = dt.datetime(2000, 1, 1 + run) + dt.timedelta(seconds=onset)
        (eeg_dir / f"{stem}_events.tsv").write_text(
            "onset\tduration\teventType\tconfidence\tchannels\tdateTime\trecordingDuration\n"
            f"{onset:.2f}\t{length:.2f}\tsz\tn/a\tn/a\t{when:%Y-%m-%d %H:%M:%S}\t{duration:.2f}\n")
    return total


def _tree_bytes(paths) -> int:
    return sum(p.stat().st_size for root in paths if root.exists() for p in root.rglob("*") if p.is_file())


def run_participants(args, workdir: Path, bids: Path, out: Path, plan: list[list[float]]) -> list[dict]:
    """Generate each subject, then run its participant job (``--jobs`` at a time); delete its EDFs after."""
    (bids / "dataset_description.json").write_text(json.dumps({
        "Name": "NeuroCare-BIDS scale rehearsal (synthetic)", "BIDSVersion": "1.9.0", "DatasetType": "raw",
        "Authors": ["benchmarks/scale.py"]}, indent=2) + "\n")
    logs = workdir / "logs"
    logs.mkdir(exist_ok=True)
    results: list[dict] = []

    def job(label: str, raw_bytes: int, gen_s: float) -> dict:
        scratch = workdir / "scratch" / label
        scratch.mkdir(parents=True, exist_ok=True)
        cmd = [*pre.app_command(), str(bids), str(out), "participant", "--participant-label", label,
               "--skip-bids-validation", "--nprocs", str(args.nprocs), "-w", str(scratch)]
        r = pre.measure(cmd, logs / f"participant-{label}.log", pre._ENV)
        r.update(subject=label, raw_bytes=raw_bytes, generate_s=gen_s,
                 derivative_bytes=_tree_bytes([out / f"sub-{label}"]))
        if r["returncode"] != 0:
            r["error"] = pre._tail(logs / f"participant-{label}.log")
        shutil.rmtree(scratch, ignore_errors=True)
        if not args.keep:
            shutil.rmtree(bids / f"sub-{label}", ignore_errors=True)
        status = "ok" if r["returncode"] == 0 else f"FAILED ({r['returncode']})"
        print(f"  sub-{label}: {sum(plan[int(label) - 1]):.2f} h, participant job {r['wall_s']:.1f} s wall, "
              f"{r['cpu_s']:.1f} s CPU, {r['peak_rss_mib']:.0f} MiB peak, {status}", flush=True)
        return r

    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
        pending = []
        for i, durations in enumerate(plan):
            label = f"{i + 1:02d}"
            # at most `jobs` subjects' raw data on disk: wait for a slot before generating the next one
            while len([f for f in pending if not f.done()]) >= args.jobs:
                concurrent.futures.wait(pending, return_when=concurrent.futures.FIRST_COMPLETED)
            t0 = time.perf_counter()
            raw = write_subject(bids, workdir, label, durations, seed=1000 * (i + 1))
            gen_s = time.perf_counter() - t0
            print(f"  sub-{label}: generated {len(durations)} recording(s), {raw / 2**20:.0f} MiB in {gen_s:.1f} s",
                  flush=True)
            pending.append(pool.submit(job, label, raw, gen_s))
        for f in pending:
            results.append(f.result())
    return results


# ---------------------------------------------------------------------------------------------- group probe
def group_probe(derivatives: Path, subjects: list[str], steps: int, batches: int, result: Path) -> None:
    """Runs in its own measured process: input pipeline, training steps and prediction of the default model."""
    import resource

    import input_pipeline as ip
    import keras
    import numpy as np

    from neurocare_bids.config import Config
    from neurocare_bids.training.input_pipeline import training_dataset
    from neurocare_bids.training.losses import build_loss
    from neurocare_bids.training.models import build_model

    cfg = Config()
    files, geometry = ip.load_outputs(derivatives, set(subjects))
    batch = cfg.training.batch_size
    pipe_wps, pipe_wpcs, got = ip.time_pipeline(files, geometry, cfg.augmentation, batch, batches)
    # the pipeline of a GPU node without TensorFlow (training.input_pipeline = "numpy"), over the same recordings
    numpy_wps, numpy_wpcs, _ = ip.time_pipeline(files, geometry, cfg.augmentation, batch, batches, pipeline="numpy")

    keras.utils.set_random_seed(1)
    n_windows = sum(f.window_count for f in files)
    n_seizure = sum(f.seizure_window_count for f in files)
    model = build_model(geometry.n_chans, 2, geometry.n_times, geometry.sfreq, cfg.model)
    model.compile(optimizer=keras.optimizers.Adam(cfg.training.learning_rate),
                  loss=build_loss(cfg.training, [max(n_windows - n_seizure, 1), max(n_seizure, 1)]))
    data = training_dataset(files, geometry, cfg.augmentation, batch, seed=2)
    model.fit(data, epochs=1, steps_per_epoch=3, verbose=0)  # compile and warm up
    cpu0, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    model.fit(data, epochs=1, steps_per_epoch=steps, verbose=0)
    train_s = time.perf_counter() - start
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    x = np.concatenate([b[0] for b in got])
    x = np.concatenate([x] * max(1, math.ceil(2048 / len(x))))[:2048]
    model.predict(x[:1024], batch_size=1024, verbose=0)
    start = time.perf_counter()
    model.predict(x, batch_size=1024, verbose=0)
    predict_wps = len(x) / (time.perf_counter() - start)
    result.write_text(json.dumps({
        "sample_windows": n_windows, "sample_recordings": len(files), "batch_size": batch,
        "pipeline_windows_per_s": pipe_wps, "pipeline_windows_per_cpu_s": pipe_wpcs,
        "numpy_pipeline_windows_per_s": numpy_wps, "numpy_pipeline_windows_per_cpu_s": numpy_wpcs,
        "train_steps": steps, "train_s": train_s, "train_windows_per_s": steps * batch / train_s,
        "train_cpu_s": (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime),
        "predict_windows_per_s": predict_wps, "backend": keras.backend.backend(),
        "parameters": int(model.count_params())}) + "\n")


# ---------------------------------------------------------------------------------------------- output sizes
def output_sizes(out: Path, subjects: list[str], full_windows: int, full_recordings: int) -> dict:
    """predictions.tsv and group.html's traces for synthetic scores of the sampled windows, then per window /
    per trace × the full run (the group level's writer and the report's own drawing code)."""
    import numpy as np

    from neurocare_bids.evaluation.group import _predictions_tsv
    from neurocare_bids.reports import group as report

    participants = {f"sub-{s}" for s in subjects}
    recordings = report._recordings(out, participants)
    rng = np.random.default_rng(0)
    items, predictions = [], {}
    for rec in recordings:
        n = rec["windows"]
        onsets = np.arange(n) * (rec["duration"] - rec["window_duration"]) / max(n - 1, 1)
        labels = np.zeros(n, dtype=int)
        for a, b in rec["seizures"]:
            labels[(onsets + rec["window_duration"] > a) & (onsets < b)] = 1
        probs = np.clip(0.05 * rng.random(n) + 0.9 * labels * rng.random(n), 0, 1).astype(np.float32)
        p = {"subject": rec["participant_id"][4:], "source": rec["source"], "onsets": onsets, "labels": labels,
             "probs": probs, "detection": probs, "scores": probs}
        items.append(("test", p))
        predictions[rec["source"]] = {"participant_id": rec["participant_id"], "onsets": onsets, "labels": labels,
                                      "probs": probs.astype(float), "scores": probs.astype(float)}
    tsv_bytes = len(_predictions_tsv(items).encode())
    sample_windows = sum(r["windows"] for r in recordings)
    folds = [{"fold": 0, "postprocessing": {"threshold": 0.5, "smoothing": 3, "min_duration": 8.0}}]
    fold_of = {p: 0 for p in participants}
    t0 = time.perf_counter()
    traces = report._traces(out, recordings, predictions, folds, fold_of)
    draw_s = time.perf_counter() - t0
    # the full run's traces: recordings of its mean length, at the page-wide point budget of its recording count
    # (what _traces gives each of them), drawn by the report's code from synthetic scores with one seizure
    from neurocare_bids.reports import figures

    points = report.trace_points(full_recordings)
    n = max(2, round(full_windows / full_recordings))
    stride, length = recordings[0]["window_duration"] / 2, recordings[0]["window_duration"]
    sized = []
    for k in range(3):
        onsets = np.arange(n) * stride
        probs = 0.05 * rng.random(n)
        probs[n // 3 + k: n // 3 + k + 30] = 0.95
        sized.append(len(str(figures.probability_trace(onsets + length / 2, probs, probs, n * stride + length,
                                                        [(onsets[n // 3], onsets[n // 3] + 60)], [], 0.5,
                                                        f"trace-{k}", points))))
    per_trace = sum(sized) / len(sized)
    return {"predictions_tsv_bytes_sample": tsv_bytes, "predictions_tsv_bytes_per_window": tsv_bytes / sample_windows,
            "predictions_tsv_bytes_full": tsv_bytes / sample_windows * full_windows,
            "trace_bytes_sample": [len(str(t["figure"])) for t in traces], "trace_points_full": points,
            "trace_windows_full": n,
            "trace_bytes_full_each": per_trace, "traces_bytes_full": per_trace * full_recordings,
            "trace_draw_s_each": draw_s / max(len(traces), 1),
            "traces_draw_s_full": draw_s / max(len(traces), 1) * full_recordings}


# ---------------------------------------------------------------------------------------------- projection
def project(windows: int, subjects: int, cfg, train_wps: float, predict_wps: float, tasks: int | None) -> dict:
    """Upper bound of a full cross-validation's wall time (every fold runs all ``training.epochs``; early stopping
    usually ends sooner), with validation predicted after every epoch and the test subjects once, plus the final
    model on every subject. ``tasks``: folds run that many at a time (one per array task), then the final model."""
    folds = min(cfg.cv.folds, subjects)
    epochs = cfg.training.epochs
    vf = cfg.cv.validation_fraction
    train_share = (folds - 1) / folds * (1 - vf)
    val_share = (folds - 1) / folds * vf
    fold_s = epochs * (windows * train_share / train_wps + windows * val_share / predict_wps) \
        + windows / folds / predict_wps
    final_s = epochs * (windows * (1 - vf) / train_wps + windows * vf / predict_wps)
    waves = folds if not tasks else math.ceil(folds / tasks)
    return {"folds": folds, "epochs": epochs, "fold_s": fold_s, "final_s": final_s, "wall_s": waves * fold_s + final_s}


# ---------------------------------------------------------------------------------------------- report
def _h(seconds: float) -> str:
    if seconds >= 2 * 3600:
        return f"{seconds / 3600:,.1f} h"
    if seconds >= 120:
        return f"{seconds / 60:,.1f} min"
    return f"{seconds:,.1f} s"


def _mib(n: float) -> str:
    return f"{n / 2**20:,.1f} MiB" if n >= 2**20 else f"{n / 1024:,.0f} KiB"


def markdown(res: dict) -> str:
    m, run, g, s = res["machine"], res["run"], res["group_probe"], res["sizes"]
    parts = res["participant"]
    lines = [f"Scale rehearsal ({run['hours']:g} h, {run['subjects']} subjects, {run['recordings']} recordings of "
             f"29 channels at 512 Hz; group measurements on {len(run['sample_subjects'])} subject(s)), "
             f"{m['cpu']}, {m['usable_cores']} cores, {m['ram_gib']} GiB, {res['date']}:", "",
             "| measure | value |", "| --- | ---: |"]
    walls = [p["wall_s"] for p in parts]
    rows = [
        ("participant jobs (one per subject, `--nprocs 1`)", f"{len(parts)} × {_h(sum(walls) / len(walls))} "
         f"(max {_h(max(walls))}), {run['jobs']} at a time"),
        ("generating the data and the participant jobs, wall / the jobs' CPU",
         f"{_h(run['participant_wall_s'])} / {_h(sum(p['cpu_s'] for p in parts))}"),
        ("participant throughput per job", f"{run['hours'] / sum(walls):.3f} EEG-h/s"),
        ("participant peak RSS (max over jobs)", f"{max(p['peak_rss_mib'] for p in parts):,.0f} MiB"),
        ("raw EDF generated (deleted after each job)", _mib(sum(p["raw_bytes"] for p in parts))),
        ("derivatives", f"{_mib(run['derivative_bytes'])} ({run['windows']:,} windows)"),
        ("input pipeline (augmented, balanced), `tf.data`", f"{g['pipeline_windows_per_s']:,.0f} windows/s, "
         f"{g['pipeline_windows_per_cpu_s']:,.0f} per CPU-second"),
        ("the same without TensorFlow (`numpy`)", f"{g['numpy_pipeline_windows_per_s']:,.0f} windows/s, "
         f"{g['numpy_pipeline_windows_per_cpu_s']:,.0f} per CPU-second"),
        ("training on the CPU (default model, batch "
         f"{g['batch_size']}, {g['backend']})", f"{g['train_windows_per_s']:,.0f} windows/s"),
        ("one epoch on the CPU (this run's training windows)", _h(res["projection"]["epoch_cpu_s"])),
        ("prediction on the CPU", f"{g['predict_windows_per_s']:,.0f} windows/s"),
        ("group probe peak RSS (pipeline + training)", f"{res['group_probe_run']['peak_rss_mib']:,.0f} MiB"),
        ("predictions.tsv", f"{s['predictions_tsv_bytes_per_window']:.1f} B/window → "
         f"{_mib(s['predictions_tsv_bytes_full'])}"),
        ("group.html probability traces", f"{_mib(s['traces_bytes_full'])} ({run['recordings']} × "
         f"{s['trace_windows_full']:,} windows, at most {s['trace_points_full']} points per line)"),
    ]
    lines += [f"| {a} | {b} |" for a, b in rows]
    lines += ["", "| projected full cross-validation (upper bound: all epochs) | this size | Siena 128 h | "
              "CHB-MIT 980 h |", "| --- | ---: | ---: | ---: |"]
    for key, label in (("cpu", "this CPU"), ("gpu", "one H200 (docs, Performance: 29,354 train windows/s)"),
                       ("tasks", f"{res['tasks']} GPU array tasks (one fold each) + final model")):
        lines.append(f"| {label} | " + " | ".join(_h(res["projection"][size][key]["wall_s"])
                                                  for size in ("run", "siena", "chbmit")) + " |")
    cores = GPU_TRAIN_WPS / g["pipeline_windows_per_cpu_s"]
    numpy_cores = GPU_TRAIN_WPS / g["numpy_pipeline_windows_per_cpu_s"]
    lines += ["", f"Input-pipeline CPU cores to feed one H200 at {GPU_TRAIN_WPS:,.0f} windows/s: {cores:.1f} "
              f"(`tf.data`), {numpy_cores:.1f} (`numpy`)."]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- main
def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hours", type=float, default=None, help="total hours of EEG (default 128: Siena)")
    p.add_argument("--subjects", type=int, default=None, help="subjects (default 14: Siena)")
    p.add_argument("--recording-hours", type=float, default=None, help="longest recording (default 3 h; 1 h with "
                   "--chbmit)")
    p.add_argument("--chbmit", action="store_true", help="CHB-MIT-sized: 980 h, 24 subjects, 1-h recordings")
    p.add_argument("--workdir", type=Path, help="where data and outputs go (default: a temporary folder)")
    p.add_argument("--keep", action="store_true", help="keep the EDFs, outputs and logs")
    p.add_argument("--jobs", type=int, default=1, help="participant jobs at a time")
    p.add_argument("--nprocs", type=int, default=1, help="--nprocs of each participant job")
    p.add_argument("--sample-subjects", type=int, default=None, help="subjects the group measurements use "
                   "(default all)")
    p.add_argument("--steps", type=int, default=20, help="training steps timed on the CPU")
    p.add_argument("--batches", type=int, default=40, help="input-pipeline batches timed")
    p.add_argument("--tasks", type=int, default=10, help="GPU array tasks of the projection")
    p.add_argument("--json", type=Path, help="also write every figure as JSON")
    p.add_argument("--_group-probe", nargs=5, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    size = CHBMIT if args.chbmit else SIENA
    args.hours = size["hours"] if args.hours is None else args.hours
    args.subjects = size["subjects"] if args.subjects is None else args.subjects
    args.recording_hours = size["recording_hours"] if args.recording_hours is None else args.recording_hours
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if args._group_probe:
        deriv, subjects, steps, batches, result = args._group_probe
        group_probe(Path(deriv), subjects.split(","), int(steps), int(batches), Path(result))
        return 0
    from neurocare_bids.config import Config

    cfg = Config()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="neurocare-scale-"))
    workdir.mkdir(parents=True, exist_ok=True)
    bids, out = workdir / "bids", workdir / "out"
    bids.mkdir(exist_ok=True)
    plan = subject_plan(args.hours, args.subjects, args.recording_hours)
    n_rec = sum(len(d) for d in plan)
    print(f"Scale rehearsal: {args.hours:g} h, {args.subjects} subjects, {n_rec} recordings, {args.jobs} job(s) at "
          f"a time, in {workdir}", flush=True)
    try:
        t0 = time.perf_counter()
        parts = run_participants(args, workdir, bids, out, plan)
        participant_wall = time.perf_counter() - t0
        failed = [p for p in parts if p["returncode"] != 0]
        if failed:
            for p in failed:
                print(f"participant job sub-{p['subject']} failed:\n{p.get('error', '')}", file=sys.stderr)
            return 1
        labels = [p["subject"] for p in parts]
        sample = labels[: args.sample_subjects] if args.sample_subjects else labels
        sidecars = sorted(out.glob("sub-*/**/*_desc-preproc_windows.json"))
        windows = sum(json.loads(p.read_text())["WindowCount"] for p in sidecars)
        print(f"Group probe on {len(sample)} subject(s): {args.batches} pipeline batches, {args.steps} training "
              "steps ...", flush=True)
        probe_json = workdir / "group-probe.json"
        probe = pre.measure([sys.executable, str(Path(__file__).resolve()), "--_group-probe", str(out),
                             ",".join(sample), str(args.steps), str(args.batches), str(probe_json)],
                            workdir / "logs" / "group-probe.log", pre._ENV)
        if probe["returncode"] != 0:
            print(f"group probe failed:\n{pre._tail(workdir / 'logs' / 'group-probe.log')}", file=sys.stderr)
            return 1
        g = json.loads(probe_json.read_text())
        windows_per_h = windows / args.hours
        full = {"run": (windows, args.subjects), "siena": (round(128 * windows_per_h), 14),
                "chbmit": (round(980 * windows_per_h), 24)}
        full_rec = {"run": n_rec, "siena": 41, "chbmit": 686}
        sizes = output_sizes(out, sample, windows, n_rec)
        sizes_full = {k: output_sizes(out, sample, full[k][0], full_rec[k]) for k in ("siena", "chbmit")}
        projection = {}
        for key, (w, s) in full.items():
            projection[key] = {
                "windows": w,
                "cpu": project(w, s, cfg, g["train_windows_per_s"], g["predict_windows_per_s"], None),
                "gpu": project(w, s, cfg, GPU_TRAIN_WPS, GPU_PREDICT_WPS, None),
                "tasks": project(w, s, cfg, GPU_TRAIN_WPS, GPU_PREDICT_WPS, args.tasks)}
        folds = min(cfg.cv.folds, args.subjects)
        projection["epoch_cpu_s"] = windows * (folds - 1) / folds * (1 - cfg.cv.validation_fraction) \
            / g["train_windows_per_s"]
        res = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": pre.machine(),
               "versions": pre.versions(),
               "run": {"hours": args.hours, "subjects": args.subjects, "recordings": n_rec, "jobs": args.jobs,
                       "sample_subjects": sample, "participant_wall_s": participant_wall, "windows": windows,
                       "derivative_bytes": _tree_bytes([out])},
               "participant": parts, "group_probe_run": probe, "group_probe": g, "sizes": sizes,
               "sizes_full": sizes_full, "projection": projection, "tasks": args.tasks,
               "gpu_reference": {"train_windows_per_s": GPU_TRAIN_WPS, "predict_windows_per_s": GPU_PREDICT_WPS,
                                 "source": "docs/performance.md, group level: neurocare, JAX 0.11.2, one H200"}}
        print()
        print(markdown(res))
        for k in ("siena", "chbmit"):
            print(f"projected {k}: predictions.tsv {_mib(sizes_full[k]['predictions_tsv_bytes_full'])}, group.html "
                  f"traces {_mib(sizes_full[k]['traces_bytes_full'])} ({full_rec[k]} × "
                  f"{sizes_full[k]['trace_windows_full']:,} windows at most {sizes_full[k]['trace_points_full']} "
                  f"points per line), drawn in ~{_h(sizes_full[k]['traces_draw_s_full'])}")
        if args.json:
            args.json.write_text(json.dumps(res, indent=2, default=str) + "\n")
        return 0
    finally:
        if not args.keep and not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
        elif not args.keep:
            shutil.rmtree(bids, ignore_errors=True)
            shutil.rmtree(workdir / "scratch", ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
