#!/usr/bin/env python
"""Alarm latency: the zero-phase batch pipeline against the causal alarm pipeline, then a live LSL run.

One run of this script

1. generates the demo dataset (``neurocare-bids demo-data``; ``--difficulty hard`` for the hard variant), or uses
   ``--bids DIR``, and a **new patient** the models never see (``demo-data --subjects 1 --recordings 2`` with
   another seed) for the compute and live measurements;
2. runs the participant level twice on the dataset: zero-phase filters (the default) and
   ``preprocessing.causal = true``;
3. runs the group level (``--config``, default ``examples/demo.toml``: the demo's training budget) once per
   pipeline and seed, all on the same folds:

   - ``batch``: zero-phase filters, the F1 operating point: batch mode as it is;
   - ``causal-f1``: causal filters, the F1 operating point (what causal filtering alone costs);
   - ``alarm``: causal filters, ``postprocessing.objective = "alarm"``: the threshold, smoothing and minimum
     duration with the lowest median latency and at most ``max_fp_per_24h`` false alarms per 24 h on the inner
     validation subjects;

   and reads the out-of-fold event F1, false alarms per 24 h and the latency of every detected seizure (from the
   annotated onset to the first moment the alarm could be raised: signal needed, not compute) from each run's
   ``metrics.json``: median and 90th percentile;
4. measures **compute per second of signal** on the new patient's recordings: ``participant --model`` (apply mode)
   with the ``batch`` run's final model, and ``stream FILE --json`` (the file replay, chunk by chunk) with the
   ``alarm`` run's; each as its own process (exact CPU time from ``wait4``), less the CPU time of its start-up
   alone (imports, model loading, one window), divided by the seconds of signal;
5. **live**: plays one seizure of the new patient (from ``--lead`` seconds before its onset to ``--tail``
   seconds after its end) in real time with mne-lsl's ``PlayerLSL`` in one process, runs
   ``neurocare-bids stream --lsl NAME --model ALARM_MODEL --json`` in another, and measures the wall-clock alarm
   latency: the alarm's ``wall_clock`` minus the moment the seizure's first sample was played (the player
   records when it started pushing). LSL is confined to this machine (``ResolveScope = machine``);
6. prints a Markdown table (machine, date, versions), ``TARGET MISSED`` lines (median latency of the alarm
   pipeline <= 10 s, moonshot <= 5 s, with event F1 within 0.05 of the batch pipeline's), and ``--json FILE``.

Usage::

    python benchmarks/latency.py                          # demo, seed 42, ~30 min on 2 cores
    python benchmarks/latency.py --seeds 42 1 2 --json latency.json
    python benchmarks/latency.py --difficulty hard --config examples/hard.toml   # hours on 2 cores
    python benchmarks/latency.py --workdir runs/latency   # keep the runs; a finished run is not repeated

The exit status is 0 whether or not the targets are met; 1 when a run failed.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))  # this checkout's neurocare_bids

from ablations import _merge  # noqa: E402  (TOML sections merged)
from preprocess import app_command as app  # noqa: E402  (the installed entry point)
from preprocess import measure  # noqa: E402  (the exact-rusage helper)

PIPELINES = {
    "batch": ("zero-phase filters, F1 operating point (batch mode)", False, "f1"),
    "causal-f1": ("causal filters, F1 operating point", True, "f1"),
    "alarm": ("causal filters, alarm operating point", True, "alarm"),
}
TARGET_LATENCY, MOONSHOT_LATENCY, F1_MARGIN = 10.0, 5.0, 0.05
TOLERANCE_START, TOLERANCE_END = 30.0, 60.0  # SzCORE: an alarm this close to a seizure detects it
NEW_PATIENT_SEED = 2718  # the new patient's generator seed: not the dataset's
STARTUP_APPLY = ("import sys, numpy as np; from neurocare_bids.detection.apply import load_model; "
                 "m = load_model(sys.argv[1]); "
                 "m.predict(np.zeros((1, m.window_samples, len(m.channels)), np.float32))")
STARTUP_STREAM = ("import sys, numpy as np; from neurocare_bids.detection.apply import load_model; "
                  "from neurocare_bids.detection.streaming import StreamingDetector; "
                  "m = load_model(sys.argv[1]); m.use_operating_point('alarm'); "
                  "d = StreamingDetector(m, list(sys.argv[2].split(',')), float(sys.argv[3]), line_freq=50.0); "
                  "m.predict(np.zeros((1, m.window_samples, len(m.channels)), np.float32))")


# ---------------------------------------------------------------------- summaries (pure; tested)
def percentile(values: list[float], q: float) -> float | None:
    """The ``q``-th percentile (NumPy's, linear interpolation); None for no values."""
    import numpy as np

    return float(np.percentile(values, q)) if len(values) else None


def run_summary(metrics: dict) -> dict:
    """What the table needs from one group run's ``metrics.json``: event F1, FP/24 h, sensitivity and the
    latencies of the detected seizures (median, 90th percentile, count)."""
    latencies = [x["latency_s"] for x in metrics.get("latencies", [])]
    return {"event_f1": metrics["event"]["f1"], "fp_per_24h": metrics["event"]["fp_per_24h"],
            "sensitivity": metrics["event"]["sensitivity"], "latency_median_s": percentile(latencies, 50),
            "latency_p90_s": percentile(latencies, 90), "n_detected": len(latencies)}


def mean_sd(rows: list[dict], key: str) -> tuple[float | None, float | None]:
    """Mean and sample SD of ``key`` over the runs (SD None for one run or a missing value)."""
    values = [r[key] for r in rows if r.get(key) is not None]
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def alarm_latencies(records: list[dict], seizures: list[tuple[float, float]], offset: float = 0.0,
                    started: float | None = None) -> list[dict]:
    """For each annotated seizure ``(onset, offset)`` (seconds of the played signal), the first alarm of the
    detector's JSON ``records`` that detects it (SzCORE's tolerance: it begins before the seizure's end + 60 s and
    ends after its onset - 30 s): the signal latency (``detected_at`` - onset) and, when ``started`` (the Unix
    time the first sample was played) is given, the wall-clock latency (``wall_clock`` - the Unix time the onset
    was played). ``offset`` is subtracted from the seizures' times (a recording played from ``offset`` s)."""
    alarms = [r for r in records if r.get("kind") == "alarm"]
    out = []
    for on, off in seizures:
        on, off = on - offset, off - offset
        hits = [a for a in alarms if a["onset"] < off + TOLERANCE_END and a["onset"] + a["duration"] > on -
                TOLERANCE_START]
        first = min(hits, key=lambda a: a["detected_at"]) if hits else None
        row = {"onset": on, "detected": first is not None,
               "signal_latency_s": None if first is None else first["detected_at"] - on}
        if started is not None:
            row["wall_latency_s"] = None if first is None else first["wall_clock"] - (started + on)
        out.append(row)
    return out


# ---------------------------------------------------------------------- the runs
def run(cmd: list[str], what: str, env: dict | None = None) -> None:
    start = time.perf_counter()
    result = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if result.returncode:
        tail = (result.stderr.strip() or result.stdout.strip()).splitlines()[-5:]
        raise RuntimeError(f"{what} failed ({result.returncode}): " + " | ".join(tail))
    print(f"{what}: done in {time.perf_counter() - start:.0f} s", flush=True)


def seizures_of(events_tsv: Path) -> list[tuple[float, float]]:
    with events_tsv.open(newline="") as f:
        return [(float(r["onset"]), float(r["onset"]) + float(r["duration"])) for r in csv.DictReader(f, delimiter="\t")
                if r["eventType"].startswith("sz")]


def participant(args, bids: Path, causal: bool) -> Path:
    out = args.workdir / f"participant-{'causal' if causal else 'zero-phase'}"
    if not (out / "dataset_description.json").exists():
        shutil.rmtree(out, ignore_errors=True)
        config = args.workdir / f"{out.name}.toml"
        config.write_text(f"[preprocessing]\ncausal = {str(causal).lower()}\n")
        run([*app(), str(bids), str(out), "participant", "--config", str(config), "--skip-bids-validation",
             "--nprocs", str(args.nprocs), "-w", str(args.workdir / "work")], out.name)
    return out


def group(args, bids: Path, derivatives: Path, name: str, seed: int) -> dict:
    _, causal, objective = PIPELINES[name]
    out = args.workdir / f"{name}-seed{seed}"
    if not (out / "group" / "metrics.json").exists():
        shutil.rmtree(out, ignore_errors=True)
        shutil.copytree(derivatives, out, ignore=shutil.ignore_patterns("group", "szcore", "logs"))
        final = name != "causal-f1" and seed == args.seeds[0]  # the models the compute and live parts use
        config = args.workdir / f"{out.name}.toml"
        config.write_text(_merge(args.config.read_text(), f"[preprocessing]\ncausal = {str(causal).lower()}\n"
                                 f"[postprocessing]\nobjective = \"{objective}\"\n"
                                 f"[cv]\nfinal_model = {str(final).lower()}\n"))
        run([*app(), str(bids), str(out), "group", "--config", str(config), "--seed", str(seed), "--no-reports"],
            out.name)
    return {"pipeline": name, "seed": seed, "dir": str(out),
            **run_summary(json.loads((out / "group" / "metrics.json").read_text()))}


def new_patient(args) -> list[dict]:
    """The recordings of a patient none of the models saw: path, seizures, duration, channels, rate."""
    import mne

    root = args.workdir / "new-patient"
    if not (root / "dataset_description.json").exists():
        shutil.rmtree(root, ignore_errors=True)
        run([*app(), "demo-data", str(root), "--subjects", "1", "--recordings", "2", "--seed",
             str(NEW_PATIENT_SEED), "--difficulty", args.difficulty], "new patient")
    out = []
    for edf in sorted(root.rglob("*_eeg.edf")):
        raw = mne.io.read_raw_edf(edf, preload=False, verbose="error")
        sidecar = json.loads(edf.with_name(edf.name.replace("_eeg.edf", "_eeg.json")).read_text())
        out.append({"path": edf, "seizures": seizures_of(edf.with_name(edf.name.replace("_eeg.edf", "_events.tsv"))),
                    "duration": raw.n_times / raw.info["sfreq"], "channels": raw.ch_names, "sfreq": raw.info["sfreq"],
                    "line_freq": sidecar.get("PowerLineFrequency", 50)})
    return out


def measured(cmd: list[str], log: Path) -> dict:
    """:func:`measure` (exact CPU time and peak RSS of the process), failing loudly when the command failed."""
    result = measure(cmd, log)
    if result["returncode"]:
        tail = log.read_text(errors="replace").strip().splitlines()[-3:]
        raise RuntimeError(f"{' '.join(cmd[:3])} ... failed ({result['returncode']}): " + " | ".join(tail))
    return result


def compute(args, recordings: list[dict], batch_model: Path, alarm_model: Path) -> dict:
    """CPU seconds per second of signal: apply mode (batch) and the file replay (alarm), start-up excluded."""
    logs = args.workdir / "logs"
    logs.mkdir(exist_ok=True)
    signal = sum(r["duration"] for r in recordings)
    bids = recordings[0]["path"].parents[3]
    out = args.workdir / "apply-out"
    shutil.rmtree(out, ignore_errors=True)
    batch = measured([*app(), str(bids), str(out), "participant", "--model", str(batch_model),
                     "--skip-bids-validation", "--nprocs", "1", "-w", str(args.workdir / "work")], logs / "apply.log")
    batch_start = measured([sys.executable, "-c", STARTUP_APPLY, str(batch_model)], logs / "apply-startup.log")
    stream_cpu, stream_start, replays = 0.0, None, []
    for r in recordings:
        log = logs / f"stream-{r['path'].stem}.log"
        m = measured([*app(), "stream", str(r["path"]), "--model", str(alarm_model), "--json"], log)
        stream_cpu += m["cpu_s"]
        replays.append({"recording": r["path"].name,
                        "latencies": alarm_latencies(_json_lines(log.read_text()), r["seizures"])})
        if stream_start is None:
            stream_start = measured([sys.executable, "-c", STARTUP_STREAM, str(alarm_model), ",".join(r["channels"]),
                                    str(r["sfreq"])], logs / "stream-startup.log")
    n = len(recordings)
    return {"signal_s": signal,
            "batch_cpu_per_signal_s": max(0.0, batch["cpu_s"] - batch_start["cpu_s"]) / signal,
            "alarm_cpu_per_signal_s": max(0.0, stream_cpu - n * stream_start["cpu_s"]) / signal,
            "batch_cpu_s": batch["cpu_s"], "batch_startup_cpu_s": batch_start["cpu_s"],
            "alarm_cpu_s": stream_cpu, "alarm_startup_cpu_s": stream_start["cpu_s"] * n,
            "foreign_load": max(batch.get("foreign_load", 0.0), 0.0), "replays": replays}


def _json_lines(text: str) -> list[dict]:
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out


def live(args, recordings: list[dict], model: Path) -> dict | None:
    """One seizure of the new patient played in real time over LSL on loopback; the live detector's alarm."""
    for r in recordings:
        for on, off in r["seizures"]:
            if on >= args.lead:
                break
        else:
            continue
        break
    else:
        print("live: no seizure of the new patient starts late enough; skipped")
        return None
    tmin, tmax = on - args.lead, min(r["duration"], off + args.tail)
    cfg = args.workdir / "lsl_api.cfg"
    cfg.write_text("[log]\nlevel = -3\n[multicast]\nResolveScope = machine\n")
    env = {**os.environ, "LSLAPICFG": str(cfg), "PYTHONWARNINGS": "ignore"}
    name = f"neurocare-latency-{os.getpid()}"
    player = subprocess.Popen([sys.executable, __file__, "--play", str(r["path"]), name, str(tmin), str(tmax)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    detector = subprocess.Popen([*app(), "stream", "--lsl", name, "--model", str(model), "--json", "--lsl-timeout",
                                 "5", "--alarm-outlet", f"{name}-alarms", "--line-freq", str(r["line_freq"])],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    timeout = tmax - tmin + 120
    out, err = detector.communicate(timeout=timeout)
    p_out, p_err = player.communicate(timeout=60)
    if detector.returncode:
        raise RuntimeError(f"live detector failed ({detector.returncode}): {err.strip()[-500:]}")
    started = next((float(line.split()[1]) for line in p_out.splitlines() if line.startswith("started ")), None)
    if started is None:
        raise RuntimeError(f"live player never started: {p_err.strip()[-500:]}")
    records = _json_lines(out)
    rows = alarm_latencies(records, [(on, off)], offset=tmin, started=started)
    return {"recording": r["path"].name, "played": [tmin, tmax], **rows[0], "onset": on,
            "stream_onset": rows[0]["onset"],
            "start": next((x for x in records if x.get("kind") == "start"), None)}


def play(path: str, name: str, tmin: float, tmax: float) -> None:
    """The player process: ``PlayerLSL`` once through ``[tmin, tmax]`` of the file at the recorded speed, from the
    moment a consumer connects; prints ``started UNIX_TIME`` when the first chunk goes out."""
    import warnings

    import mne
    from mne_lsl.lsl import local_clock
    from mne_lsl.player import PlayerLSL

    class Player(PlayerLSL):
        def _stream(self) -> None:
            if not getattr(self, "_ready", False):
                self._outlet.wait_for_consumers(timeout=60)
                self._target_timestamp = local_clock()
                self._ready = True
                print(f"started {time.time():.6f}", flush=True)
            super()._stream()

        def _del_outlets(self) -> None:
            time.sleep(0.5)
            super()._del_outlets()

    warnings.simplefilter("ignore")
    raw = mne.io.read_raw(path, preload=True, verbose="error").crop(tmin, tmax, include_tmax=False)
    player = Player(raw, chunk_size=16, n_repeat=1, name=name, source_id=f"{name}-src")
    player.start()
    deadline = time.monotonic() + (tmax - tmin) + 120
    while player.running and time.monotonic() < deadline:
        time.sleep(0.05)


# ---------------------------------------------------------------------- report
def table(rows: list[dict], comp: dict | None, live_row: dict | None, seeds: list[int], n_seizures: int) -> str:
    def cell(name: str, key: str, fmt: str = "{:.3f}") -> str:
        mean, sd = mean_sd([r for r in rows if r["pipeline"] == name], key)
        if mean is None:
            return "n/a"
        return fmt.format(mean) + ("" if sd is None else " ± " + fmt.format(sd))

    cpu = {"batch": "batch_cpu_per_signal_s", "alarm": "alarm_cpu_per_signal_s"}
    lines = [f"Seeds {' '.join(map(str, seeds))}; mean ± SD over seeds.", "",
             "| pipeline | event F1 | FP/24 h | sensitivity | median latency (s) | 90th pct latency (s) | "
             f"detected seizures (of {n_seizures}) | CPU s per h of signal |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, (description, _, _) in PIPELINES.items():
        if not any(r["pipeline"] == name for r in rows):
            continue
        cpu_cell = f"{comp[cpu[name]] * 3600:.1f}" if comp and name in cpu else "—"
        lines.append(f"| {description} | {cell(name, 'event_f1')} | {cell(name, 'fp_per_24h', '{:.1f}')} | "
                     f"{cell(name, 'sensitivity')} | {cell(name, 'latency_median_s', '{:.1f}')} | "
                     f"{cell(name, 'latency_p90_s', '{:.1f}')} | {cell(name, 'n_detected', '{:.1f}')} | {cpu_cell} |")
    if comp:
        for replay in comp["replays"]:
            for x in replay["latencies"]:
                lines.append("")
                lines.append(f"New patient, file replay (alarm pipeline), {replay['recording']} seizure at "
                             f"{x['onset']:.0f} s: " + (f"alarm {x['signal_latency_s']:.1f} s after the onset"
                                                        if x["detected"] else "missed"))
    if live_row:
        lines.append("")
        if live_row["detected"]:
            lines.append(f"Live (PlayerLSL → stream --lsl, loopback), {live_row['recording']} seizure at "
                         f"{live_row['onset']:.0f} s: alarm {live_row['wall_latency_s']:.2f} s (wall clock) after the "
                         f"onset was played; {live_row['signal_latency_s']:.2f} s of signal.")
        else:
            lines.append(f"Live (PlayerLSL → stream --lsl, loopback), {live_row['recording']}: seizure missed.")
    return "\n".join(lines)


def targets(rows: list[dict]) -> list[str]:
    missed = []
    alarm_median, _ = mean_sd([r for r in rows if r["pipeline"] == "alarm"], "latency_median_s")
    batch_f1, _ = mean_sd([r for r in rows if r["pipeline"] == "batch"], "event_f1")
    alarm_f1, _ = mean_sd([r for r in rows if r["pipeline"] == "alarm"], "event_f1")
    if alarm_median is None or alarm_median > TARGET_LATENCY:
        missed.append(f"TARGET MISSED: median latency of the alarm pipeline {alarm_median} s > {TARGET_LATENCY} s")
    elif alarm_median > MOONSHOT_LATENCY:
        print(f"moonshot missed: median latency {alarm_median:.1f} s > {MOONSHOT_LATENCY} s")
    if batch_f1 is not None and alarm_f1 is not None and alarm_f1 < batch_f1 - F1_MARGIN:
        missed.append(f"TARGET MISSED: event F1 of the alarm pipeline {alarm_f1:.3f} is more than {F1_MARGIN} "
                      f"below the batch pipeline's {batch_f1:.3f}")
    return missed


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--play":
        play(sys.argv[2], sys.argv[3], float(sys.argv[4]), float(sys.argv[5]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bids", type=Path, help="BIDS dataset to use (default: generate the demo)")
    parser.add_argument("--difficulty", choices=("standard", "hard"), default="standard")
    parser.add_argument("--config", type=Path, default=HERE.parent / "examples" / "demo.toml",
                        help="group-level configuration (training budget) shared by the pipelines")
    parser.add_argument("--seeds", nargs="+", type=int, default=[42])
    parser.add_argument("--pipelines", nargs="+", default=list(PIPELINES), choices=list(PIPELINES))
    parser.add_argument("--workdir", type=Path, help="keep the runs here (default: a temporary folder)")
    parser.add_argument("--nprocs", type=int, default=2)
    parser.add_argument("--lead", type=float, default=150.0, help="seconds played live before the seizure's onset")
    parser.add_argument("--tail", type=float, default=20.0, help="seconds played live after the seizure's end")
    parser.add_argument("--skip-live", action="store_true")
    parser.add_argument("--skip-compute", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    keep = args.workdir is not None
    args.workdir = (args.workdir or Path(tempfile.mkdtemp(prefix="neurocare-latency-"))).resolve()
    args.workdir.mkdir(parents=True, exist_ok=True)
    try:
        bids = args.bids
        if bids is None:
            bids = args.workdir / "bids"
            if not (bids / "dataset_description.json").exists():
                shutil.rmtree(bids, ignore_errors=True)
                run([*app(), "demo-data", str(bids), "--difficulty", args.difficulty], "dataset")
        n_seizures = sum(len(seizures_of(t)) for t in bids.rglob("*_events.tsv"))
        derivatives = {causal: participant(args, bids, causal) for causal in
                       sorted({PIPELINES[p][1] for p in args.pipelines})}
        rows = [group(args, bids, derivatives[PIPELINES[p][1]], p, seed) for seed in args.seeds
                for p in args.pipelines]
        comp = live_row = None
        models = {p: args.workdir / f"{p}-seed{args.seeds[0]}" / "group" / "model" for p in ("batch", "alarm")}
        if not (args.skip_compute and args.skip_live) and all(m.is_dir() for m in models.values()):
            recordings = new_patient(args)
            if not args.skip_compute:
                comp = compute(args, recordings, models["batch"], models["alarm"])
            if not args.skip_live:
                live_row = live(args, recordings, models["alarm"])
    except RuntimeError as exc:
        print(exc, file=sys.stderr)
        return 1
    finally:
        if not keep:
            shutil.rmtree(args.workdir, ignore_errors=True)
    print()
    print(f"{platform.node()} ({os.cpu_count()} CPUs), {dt.date.today()}, Python {platform.python_version()}")
    print(table(rows, comp, live_row, args.seeds, n_seizures))
    for line in targets(rows):
        print(line)
    if args.json:
        args.json.write_text(json.dumps({"runs": rows, "compute": comp, "live": live_row,
                                         "date": str(dt.date.today())}, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
