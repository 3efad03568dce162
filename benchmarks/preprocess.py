#!/usr/bin/env python
"""Participant-level preprocessing benchmark: NeuroCare-BIDS against a plain MNE pipeline.

One run of this script

1. writes a synthetic Siena-like recording (29 channels at 512 Hz, PhysioNet channel names) as EDF+
   inside a minimal BIDS dataset;
2. runs ``neurocare-bids BIDS OUT participant --skip-bids-validation --nprocs 1 --no-reports`` on it as a separate
   process (imports, checksums, filtering, TFRecord writing: everything a user waits for);
3. runs a plain MNE pipeline on the same EDF as a separate process: ``read_raw_edf(preload=True)`` →
   the same 19 electrodes → ``filter(0.5, 30)`` → ``notch_filter(50)`` (MNE default FIR filters,
   ``n_jobs=1``) → ``make_fixed_length_epochs(4 s, overlap 2 s)`` → ``get_data`` → per-channel z-score →
   ``np.save`` of the windows (float32, the app's output type), so both sides read and write files;
4. reports each side's wall time, CPU time, throughput in hours of EEG per second and peak RSS, and the
   throughput ratio (target: the app ≥ 8× MNE, issue 18; it was 5× before);
5. runs the app on recordings of ``--memory-hours`` (default 1 h and 6 h) and reports the peak RSS ratio
   longest/shortest (target ≤ 1.2: memory must not grow with the recording length);
6. prints a Markdown table (machine, date, versions) ready to paste, and writes the figures as JSON with
   ``--json FILE``.

Peak RSS is measured exactly, not sampled: a tiny helper process (one per measurement) starts the
measured command and collects its ``rusage`` with ``os.wait4``. The helper matters: Linux carries the
high-water RSS of the address space a process had before ``exec`` into the new program's ``ru_maxrss``
(``fs/exec.c``, ``setmax_mm_hiwater_rss``), so a child spawned straight from this script, which holds
signal data while it writes the EDF files, could report this script's peak instead of its own. A
``python -c pass`` is measured the same way as a floor of the method.

The exit status is 0 whether or not the targets are met; a missed target prints ``TARGET MISSED: ...``.
A failed run (non-zero exit, missing outputs) exits with 1.

Usage::

    python benchmarks/preprocess.py                    # 3 h comparison + 1 h / 6 h memory scaling
    python benchmarks/preprocess.py --skip-memory      # comparison only
    python benchmarks/preprocess.py --hours 0.5 --memory-hours 0.25 1 --json bench.json

Only the standard library is imported at the top, so that ``--_mne-peer`` (the MNE side, run in its own
process) loads nothing the plain pipeline would not.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SFREQ = 512.0
# The 19 electrodes of the 10-20 system, named as in the PhysioNet Siena originals.
EEG19 = [
    "EEG Fp1", "EEG F3", "EEG C3", "EEG P3", "EEG O1", "EEG F7", "EEG T3", "EEG T5", "EEG Fz", "EEG Cz",
    "EEG Pz", "EEG Fp2", "EEG F4", "EEG C4", "EEG P4", "EEG O2", "EEG F8", "EEG T4", "EEG T6",
]  # fmt: skip
OTHERS = ["EEG Fc1", "EEG Fc2", "EEG Fc5", "EEG Fc6", "EEG Cp1", "EEG Cp2", "EEG Cp5", "EEG Cp6", "EKG", "SPO2"]
CHANNELS = EEG19 + OTHERS
PHYSICAL_RANGE = (-2000.0, 2000.0)  # µV; 0.06 µV resolution in 16 bits
SEIZURE = (1200.0, 1260.0)  # seconds; used when the recording is long enough
BLOCK_SECONDS = 60  # generation block: 29 channels × 60 s × 512 Hz × 8 B ≈ 7 MB

THROUGHPUT_TARGET = 8.0  # app / MNE, in EEG-hours per second (issue 18; 5.0 until 2026-12-04)
MEMORY_TARGET = 1.2  # peak RSS of the longest / the shortest recording
FOREIGN_LOAD_WARN = 0.25  # cores used by other processes during a timed run before the timings are flagged

# The measuring helper: start argv[2:], wait for it with wait4, print wall time and rusage as JSON.
# Its own address space stays tiny, so the measured program inherits no foreign RSS high-water mark.
_HELPER = r"""
import json, os, subprocess, sys, time
log = open(sys.argv[1], "wb")
t0 = time.perf_counter()
proc = subprocess.Popen(sys.argv[2:], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
_, status, ru = os.wait4(proc.pid, 0)
wall = time.perf_counter() - t0
proc.returncode = os.waitstatus_to_exitcode(status)
print(json.dumps({"wall_s": wall, "returncode": proc.returncode, "maxrss_kib": ru.ru_maxrss,
                  "user_s": ru.ru_utime, "sys_s": ru.ru_stime, "majflt": ru.ru_majflt,
                  "inblock": ru.ru_inblock, "oublock": ru.ru_oublock}))
"""


# ---------------------------------------------------------------------------------------------- measuring
def measure(cmd: list[str], log_path: Path, env: dict[str, str] | None = None) -> dict:
    """Run ``cmd`` under the helper; wall time and the child's own peak RSS (ru_maxrss: KiB on Linux)."""
    busy0 = _busy_cpu_s()
    out = subprocess.run([sys.executable, "-c", _HELPER, str(log_path), *cmd], capture_output=True,
                         text=True, env=env, check=False)
    busy1 = _busy_cpu_s()
    if out.returncode != 0:
        raise RuntimeError(f"measuring helper failed ({out.returncode}): {out.stderr.strip()}")
    result = json.loads(out.stdout)
    result["peak_rss_mib"] = result["maxrss_kib"] / 1024.0  # Linux reports KiB (macOS would be bytes)
    result["cpu_s"] = result["user_s"] + result["sys_s"]
    if busy0 is not None and busy1 is not None:
        # CPU time the whole machine spent outside the measured process (and the tiny helper) while it ran,
        # in cores: > 0 means something else competed for the CPUs and the wall time is inflated.
        result["foreign_load"] = max(0.0, busy1 - busy0 - result["cpu_s"]) / max(result["wall_s"], 1e-9)
    return result


def _busy_cpu_s() -> float | None:
    """Non-idle CPU seconds of the whole machine since boot, from /proc/stat (None elsewhere)."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
        ticks = [int(v) for v in fields[:8]]  # user nice system idle iowait irq softirq steal
        return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def compile_app() -> str | None:
    """Compile the app's modules to bytecode, as pip does when it installs a package; the folder, or None.

    An editable install under ``PYTHONDONTWRITEBYTECODE`` (a development container, say) would otherwise
    compile every module of the app from source in every timed run, a cost no installed copy has (the
    container image is precompiled) and that the peer's libraries, installed from wheels, do not pay."""
    import importlib.util

    spec = importlib.util.find_spec("neurocare_bids")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = list(spec.submodule_search_locations)[0]
    subprocess.run([sys.executable, "-m", "compileall", "-q", folder], check=False, stdout=subprocess.DEVNULL)
    return folder


def app_command() -> list[str]:
    """The installed ``neurocare-bids`` entry point of this interpreter's environment."""
    script = Path(sys.executable).with_name("neurocare-bids")
    if script.exists():
        return [str(script)]
    found = shutil.which("neurocare-bids")
    return [found] if found else [sys.executable, "-m", "neurocare_bids"]


# ---------------------------------------------------------------------------------------------- data
def generate_signals(path: Path, hours: float, seed: int):
    """Write ``hours`` of synthetic EEG (µV, float32, channels × samples) to a memmap, block by block.

    Each electrode: pink-ish noise (own + a share common to all electrodes, ~25 µV), a 10 Hz alpha
    rhythm with slowly varying amplitude (~8 µV, posterior-weighted), 50 Hz mains (3-12 µV) and, during
    ``SEIZURE``, a 4 Hz rhythmic discharge (~60 µV). EKG: 1.2 Hz spikes; SPO2: ~97 with slow noise.
    Memory: one block (~7 MB of float64), whatever ``hours``.
    """
    import numpy as np
    from scipy import signal as sps

    rng = np.random.default_rng(seed)
    n = int(round(hours * 3600 * SFREQ))
    n_ch = len(CHANNELS)
    n_eeg = len(EEG19) + 8
    data = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n_ch, n))

    # J. O. Smith's 3-pole/3-zero 1/f approximation; normalised to unit output variance.
    b = np.array([0.049922035, -0.095993537, 0.050612699, -0.004408786])
    a = np.array([1.0, -2.494956002, 2.017265875, -0.522189400])
    impulse = np.zeros(1 << 16)
    impulse[0] = 1.0
    gain = 1.0 / np.sqrt(np.sum(sps.lfilter(b, a, impulse) ** 2))
    zi = np.zeros((n_eeg + 1, len(a) - 1))  # one extra row: the common component

    own = rng.uniform(18.0, 26.0, n_eeg)
    common = rng.uniform(8.0, 14.0, n_eeg)
    alpha = rng.uniform(3.0, 6.0, n_eeg)
    alpha[[4, 15, 10, 3, 14]] *= 2.5  # O1, O2, Pz, P3, P4: posterior alpha
    alpha_phase = rng.uniform(0, 2 * np.pi, n_eeg)
    mains = rng.uniform(3.0, 12.0, n_eeg)
    mains_phase = rng.uniform(0, 2 * np.pi, n_eeg)
    sz_gain = rng.uniform(0.5, 1.5, n_eeg)
    seizure_on = n / SFREQ >= SEIZURE[1]

    step = int(BLOCK_SECONDS * SFREQ)
    for s0 in range(0, n, step):
        s1 = min(n, s0 + step)
        t = np.arange(s0, s1) / SFREQ
        white = rng.standard_normal((n_eeg + 1, s1 - s0))
        pink, zi = sps.lfilter(b, a, white, axis=1, zi=zi)
        pink *= gain
        eeg = own[:, None] * pink[:-1] + common[:, None] * pink[-1]
        envelope = 1.0 + 0.5 * np.sin(2 * np.pi * t / 37.0)
        eeg += alpha[:, None] * envelope * np.sin(2 * np.pi * 10.0 * t + alpha_phase[:, None])
        eeg += mains[:, None] * np.sin(2 * np.pi * 50.0 * t + mains_phase[:, None])
        if seizure_on and s0 < SEIZURE[1] * SFREQ and s1 > SEIZURE[0] * SFREQ:
            inside = (t >= SEIZURE[0]) & (t < SEIZURE[1])
            spike_wave = np.sin(2 * np.pi * 4.0 * t) + 0.5 * np.sin(2 * np.pi * 8.0 * t)
            eeg += 60.0 * sz_gain[:, None] * (spike_wave * inside)
        data[:n_eeg, s0:s1] = eeg
        phase = (t * 1.2) % 1.0
        data[n_eeg, s0:s1] = 800.0 * np.exp(-((phase - 0.5) ** 2) / 2e-4) - 60.0 + 20.0 * white[0]
        data[n_eeg + 1, s0:s1] = 97.0 + 2.0 * pink[1]
    data.flush()
    return data


def write_bids(root: Path, signals, hours: float) -> Path:
    """A minimal BIDS dataset around one recording; returns the EDF path."""
    from neurocare_bids.io.edf import write_edf

    eeg_dir = root / "sub-01" / "ses-01" / "eeg"
    eeg_dir.mkdir(parents=True)
    (root / "dataset_description.json").write_text(json.dumps({
        "Name": "NeuroCare-BIDS preprocessing benchmark (synthetic)", "BIDSVersion": "1.9.0",
        "DatasetType": "raw", "Authors": ["benchmarks/preprocess.py"]}, indent=2) + "\n")
    stem = "sub-01_ses-01_task-szMonitoring_run-00"
    edf = write_edf(eeg_dir / f"{stem}_eeg.edf", signals, SFREQ, CHANNELS,
                    physical_ranges=PHYSICAL_RANGE, start=dt.datetime(2000, 1, 1, 0, 0, 0))
    (eeg_dir / f"{stem}_eeg.json").write_text(json.dumps({
        "TaskName": "szMonitoring", "SamplingFrequency": SFREQ, "PowerLineFrequency": 50,
        "EEGReference": "common", "SoftwareFilters": "n/a", "RecordingDuration": hours * 3600,
        "EEGChannelCount": 27, "ECGChannelCount": 1, "MiscChannelCount": 1}, indent=2) + "\n")
    duration = hours * 3600
    onset, length = SEIZURE if duration >= SEIZURE[1] else (0.4 * duration, min(60.0, 0.2 * duration))
    when = dt.datetime(2000, 1, 1) + dt.timedelta(seconds=onset)
    rows = ["onset\tduration\teventType\tconfidence\tchannels\tdateTime\trecordingDuration",
            f"{onset:.2f}\t{length:.2f}\tsz\tn/a\tn/a\t{when:%Y-%m-%d %H:%M:%S}\t{duration:.2f}"]
    (eeg_dir / f"{stem}_events.tsv").write_text("\n".join(rows) + "\n")
    return edf


def make_datasets(workdir: Path, hours_list: list[float], seed: int) -> dict[float, Path]:
    """One BIDS dataset per distinct duration, all cut from the same generated signal."""
    longest = max(hours_list)
    print(f"Generating {longest:g} h of synthetic EEG ({len(CHANNELS)} channels, {SFREQ:g} Hz) ...",
          flush=True)
    t0 = time.perf_counter()
    signals_path = workdir / "signals.npy"
    signals = generate_signals(signals_path, longest, seed)
    edfs = {}
    for hours in sorted(set(hours_list)):
        n = int(round(hours * 3600 * SFREQ))
        edfs[hours] = write_bids(workdir / f"bids-{hours:g}h", signals[:, :n], hours)
    del signals
    signals_path.unlink()
    sizes = ", ".join(f"{h:g} h: {p.stat().st_size / 2**20:.0f} MiB" for h, p in edfs.items())
    print(f"  done in {time.perf_counter() - t0:.1f} s ({sizes})", flush=True)
    return edfs


# ---------------------------------------------------------------------------------------------- the runs
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
                    "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")
_ENV: dict[str, str] | None = None  # environment of the measured commands (None: this one's)


def set_threads(n: int | None) -> None:
    """Cap the BLAS/OpenMP threads of both sides (None: library defaults, usually one per core)."""
    global _ENV
    _ENV = None if n is None else {**os.environ, **{name: str(n) for name in THREAD_VARIABLES}}


def run_app(workdir: Path, edf: Path, hours: float, tag: str, keep: bool) -> dict:
    bids = edf.parents[3]
    out = workdir / f"out-app-{tag}"
    scratch = workdir / "scratch"
    scratch.mkdir(exist_ok=True)
    # Like for like: the MNE peer writes no HTML report either (the report's cost is measured apart: docs).
    cmd = [*app_command(), str(bids), str(out), "participant", "--skip-bids-validation", "--nprocs", "1",
           "--no-reports", "-w", str(scratch)]
    log = workdir / f"app-{tag}.log"
    print(f"Running the app on {hours:g} h: {' '.join(cmd)}", flush=True)
    r = measure(cmd, log, _ENV)
    tfrecords = sorted(out.rglob("*.tfrecord"))
    sidecars = [p.with_suffix(".json") for p in tfrecords]
    r.update(hours=hours, log=str(log), output_bytes=sum(p.stat().st_size for p in tfrecords))
    if r["returncode"] != 0 or len(tfrecords) != 1 or not sidecars[0].exists():
        r["error"] = _tail(log)
    else:
        meta = json.loads(sidecars[0].read_text())
        r.update(windows=meta["WindowCount"], seizure_windows=meta["SeizureWindowCount"],
                 window_shape=[meta["WindowSamples"], len(meta["Channels"])],
                 output_sfreq=meta["SamplingFrequency"])
    _report_run("app", r)
    if not keep:
        shutil.rmtree(out, ignore_errors=True)
    return r


def run_mne(workdir: Path, edf: Path, hours: float, keep: bool) -> dict:
    npy = workdir / "mne-windows.npy"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--_mne-peer", str(edf), str(npy)]
    log = workdir / "mne.log"
    print(f"Running plain MNE on {hours:g} h", flush=True)
    r = measure(cmd, log, _ENV)
    r.update(hours=hours, log=str(log))
    if r["returncode"] != 0 or not npy.exists():
        r["error"] = _tail(log)
    else:
        import numpy as np

        windows = np.load(npy, mmap_mode="r")
        r.update(windows=int(windows.shape[0]), window_shape=[int(windows.shape[2]), int(windows.shape[1])],
                 output_bytes=npy.stat().st_size, output_sfreq=SFREQ)
        del windows
    _report_run("mne", r)
    if not keep:
        npy.unlink(missing_ok=True)
    return r


def mne_peer(edf: str, npy: str) -> None:
    """The plain MNE pipeline (runs in its own process under the helper)."""
    import mne
    import numpy as np

    raw = mne.io.read_raw_edf(edf, preload=True, verbose="error")
    raw.pick(EEG19)
    raw.filter(0.5, 30.0, n_jobs=1, verbose="error")
    raw.notch_filter(50.0, n_jobs=1, verbose="error")
    epochs = mne.make_fixed_length_epochs(raw, duration=4.0, overlap=2.0, verbose="error")
    data = epochs.get_data(verbose="error")  # (windows, channels, samples), float64
    mean = data.mean(axis=(0, 2), keepdims=True)
    std = data.std(axis=(0, 2), keepdims=True)
    data -= mean
    data /= std
    np.save(npy, data.astype(np.float32))
    print(f"{data.shape[0]} windows of {data.shape[1]} channels x {data.shape[2]} samples -> {npy}")


def _tail(log: Path, lines: int = 25) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return str(exc)


def _report_run(name: str, r: dict) -> None:
    if "error" in r:
        print(f"  {name} FAILED (exit {r['returncode']}); last lines of {r['log']}:\n{r['error']}", flush=True)
        return
    print(f"  {name}: {r['wall_s']:.1f} s wall, {r['cpu_s']:.1f} s CPU, peak RSS {r['peak_rss_mib']:.0f} MiB, "
          f"{r['windows']} windows, {_eeg_hps(r):.3f} EEG-h/s, other load {_fmt(r.get('foreign_load'), '.2f')} "
          "cores", flush=True)


def _best(runs: list[dict]) -> dict:
    """The fastest successful run, with every run's wall time and the highest peak RSS attached."""
    good = [r for r in runs if "error" not in r]
    if not good:
        return runs[0]
    best = dict(min(good, key=lambda r: r["wall_s"]))
    if len(runs) > 1:
        best["all_wall_s"] = [r["wall_s"] for r in good]
        best["peak_rss_mib"] = max(r["peak_rss_mib"] for r in good)
    return best


def _eeg_hps(r: dict) -> float:
    return r["hours"] / r["wall_s"]


# ---------------------------------------------------------------------------------------------- environment
def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram_gib = int(line.split()[1]) / 2**20
                break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {"cpu": cpu, "cores": os.cpu_count(), "usable_cores": usable,
            "ram_gib": None if ram_gib is None else round(ram_gib, 1),
            "os": f"{platform.system()} {platform.release()}"}


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for dist in ("numpy", "scipy", "mne", "mne-bids", "neurocare-bids"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "not installed"
    return out


# ---------------------------------------------------------------------------------------------- report
def markdown(results: dict) -> str:
    app, peer, m = results["app"], results["mne"], results["machine"]
    v = results["versions"]
    h = app["hours"]

    def ok(r: dict, key: str, fmt: str) -> str:
        return "failed" if "error" in r else format(r[key], fmt)

    def shape(r: dict) -> str:
        if "error" in r:
            return "failed"
        return (f"{r['windows']} × {r['window_shape'][0]} samples × {r['window_shape'][1]} ch "
                f"@ {r['output_sfreq']:g} Hz, {r['output_bytes'] / 2**20:.0f} MiB")

    lines = [
        f"Participant-level preprocessing of one {h:g} h recording ({len(CHANNELS)} channels at {SFREQ:g} Hz, "
        f"EDF+ {results['edf_mib'][str(h)]:.0f} MiB), one process, page cache warm.",
        "",
        "| | NeuroCare-BIDS | plain MNE |",
        "|---|---:|---:|",
        f"| Wall time (s) | {ok(app, 'wall_s', '.1f')} | {ok(peer, 'wall_s', '.1f')} |",
        f"| CPU time, user + sys (s) | {ok(app, 'cpu_s', '.1f')} | {ok(peer, 'cpu_s', '.1f')} |",
        f"| Throughput (EEG-hours/s) | {_fmt(results.get('app_eeg_hps'), '.3f')} "
        f"| {_fmt(results.get('mne_eeg_hps'), '.3f')} |",
        f"| Peak RSS (MiB) | {ok(app, 'peak_rss_mib', '.0f')} | {ok(peer, 'peak_rss_mib', '.0f')} |",
        f"| Output | {shape(app)} TFRecord | {shape(peer)} `.npy` |",
        "",
        f"Throughput ratio app / MNE: **{_fmt(results.get('throughput_ratio'), '.1f')}×** "
        f"(target ≥ {THROUGHPUT_TARGET:g}×); CPU time MNE / app: "
        f"{_fmt(results.get('cpu_ratio_mne_over_app'), '.1f')}×; peak RSS MNE / app: "
        f"{_fmt(results.get('rss_ratio_mne_over_app'), '.1f')}×.",
    ]
    mem = results.get("memory")
    if mem:
        cols = [f"{r['hours']:g} h" for r in mem["runs"]]
        lines += [
            "",
            "Memory scaling of the app (peak RSS, whole process):",
            "",
            "| Recording | " + " | ".join(cols) + " | ratio longest / shortest |",
            "|---|" + "---:|" * (len(cols) + 1),
            "| Peak RSS (MiB) | " + " | ".join(ok(r, "peak_rss_mib", ".0f") for r in mem["runs"])
            + f" | {_fmt(mem.get('ratio'), '.2f')} (target ≤ {MEMORY_TARGET:g}) |",
            "| Wall time (s) | " + " | ".join(ok(r, "wall_s", ".1f") for r in mem["runs"]) + " | |",
        ]
    lines += [
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores ({m['usable_cores']} usable), {_fmt(m['ram_gib'], '.0f')} GiB RAM, "
        f"{m['os']}. Date: {results['date']}. Floor of the RSS measurement (`python -c pass`): "
        f"{results['floor_rss_mib']:.0f} MiB. Other load on the machine during the timed runs: up to "
        f"{_fmt(results.get('max_foreign_load'), '.2f')} cores"
        + (f"; fastest of {results['repeat']} runs per side" if results["repeat"] > 1 else "")
        + (f"; BLAS/OpenMP threads capped at {results['threads']}." if results["threads"] else
           "; BLAS/OpenMP threads: library defaults."),
        f"Versions: Python {v['python']}, NumPy {v['numpy']}, SciPy {v['scipy']}, MNE {v['mne']}, "
        f"MNE-BIDS {v['mne-bids']}, NeuroCare-BIDS {v['neurocare-bids']}.",
    ]
    return "\n".join(lines)


def _fmt(value, fmt: str) -> str:
    return "n/a" if value is None else format(value, fmt)


# ---------------------------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hours", type=float, default=3.0, help="recording length of the app-vs-MNE comparison "
                   "(default: 3)")
    p.add_argument("--memory-hours", type=float, nargs="+", default=[1.0, 6.0], metavar="H",
                   help="recording lengths of the memory-scaling runs (default: 1 6)")
    p.add_argument("--skip-memory", action="store_true", help="skip the memory-scaling runs")
    p.add_argument("--workdir", type=Path, help="folder for the data and outputs (default: a temporary "
                   "folder)")
    p.add_argument("--keep", action="store_true", help="keep the generated datasets, outputs and logs")
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the figures as JSON to FILE")
    p.add_argument("--repeat", type=int, default=1, metavar="N",
                   help="run the app and MNE N times each (interleaved) and report the fastest run, for a "
                        "machine with other load (default: 1)")
    p.add_argument("--threads", type=int, metavar="N",
                   help="cap BLAS/OpenMP threads of both sides at N (sets OMP_NUM_THREADS, "
                        "OPENBLAS_NUM_THREADS, ...; default: the libraries' defaults)")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic signal (default: 0)")
    p.add_argument("--_mne-peer", nargs=2, metavar=("EDF", "NPY"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.threads is not None and args.threads < 1:
        p.error("--threads must be at least 1")
    if args.repeat < 1:
        p.error("--repeat must be at least 1")
    if args.hours <= 0 or any(h <= 0 for h in args.memory_hours):
        p.error("--hours and --memory-hours must be positive")
    if args.hours * 3600 < 8:
        p.error("--hours is too short for a 4-second window")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args._mne_peer:
        mne_peer(*args._mne_peer)
        return 0

    if args.workdir is None:
        workdir = Path(tempfile.mkdtemp(prefix="neurocare-bench-"))
        created = [workdir]
    else:
        workdir = args.workdir.absolute()
        workdir.mkdir(parents=True, exist_ok=True)
        existing = set(workdir.iterdir())
        created = None
    print(f"Work folder: {workdir}", flush=True)
    set_threads(args.threads)
    compiled = compile_app()
    t_start = time.perf_counter()
    failed = False
    try:
        memory_hours = [] if args.skip_memory else sorted(args.memory_hours)
        edfs = make_datasets(workdir, [args.hours, *memory_hours], args.seed)
        results: dict = {
            "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            "machine": machine(),
            "versions": versions(),
            "edf_mib": {str(h): p.stat().st_size / 2**20 for h, p in edfs.items()},
            "floor_rss_mib": measure([sys.executable, "-c", "pass"], workdir / "floor.log")["peak_rss_mib"],
            "repeat": args.repeat,
            "threads": args.threads,
            "app_bytecode": compiled,  # the app's folder, compiled before the timed runs (None: not found)
            "targets": {"throughput_ratio_min": THROUGHPUT_TARGET, "memory_ratio_max": MEMORY_TARGET},
        }

        app_runs, peer_runs = [], []
        for i in range(args.repeat):  # interleaved, so that a burst of foreign load hits both sides
            tag = f"{args.hours:g}h" + (f"-{i + 1}" if args.repeat > 1 else "")
            app_runs.append(run_app(workdir, edfs[args.hours], args.hours, tag, args.keep))
            peer_runs.append(run_mne(workdir, edfs[args.hours], args.hours, args.keep))
        app, peer = _best(app_runs), _best(peer_runs)
        results.update(app=app, mne=peer)
        failed |= "error" in app or "error" in peer
        if "error" not in app:
            results["app_eeg_hps"] = _eeg_hps(app)
        if "error" not in peer:
            results["mne_eeg_hps"] = _eeg_hps(peer)
        if "error" not in app and "error" not in peer:
            results["throughput_ratio"] = results["app_eeg_hps"] / results["mne_eeg_hps"]
            results["rss_ratio_mne_over_app"] = peer["peak_rss_mib"] / app["peak_rss_mib"]
            results["cpu_ratio_mne_over_app"] = peer["cpu_s"] / app["cpu_s"]

        if memory_hours:
            runs = []
            for hours in memory_hours:
                if hours == args.hours and "error" not in app:
                    runs.append(app)  # the same command on the same file: no need to run it twice
                else:
                    runs.append(run_app(workdir, edfs[hours], hours, f"mem-{hours:g}h", args.keep))
            results["memory"] = {"runs": runs}
            failed |= any("error" in r for r in runs)
            if not any("error" in r for r in runs) and len(runs) > 1:
                results["memory"]["ratio"] = runs[-1]["peak_rss_mib"] / runs[0]["peak_rss_mib"]

        timed_named = [("app", app), ("MNE", peer)] + [
            ("app (memory)", r) for r in results.get("memory", {}).get("runs", []) if r is not app]
        results["max_foreign_load"] = max((r["foreign_load"] for _, r in timed_named if "foreign_load" in r),
                                          default=None)
        table = markdown(results)
        results["markdown"] = table
        results["total_s"] = time.perf_counter() - t_start
        print()
        print(table)
        print()
        missed = []
        ratio = results.get("throughput_ratio")
        if ratio is not None and ratio < THROUGHPUT_TARGET:
            missed.append(f"throughput app/MNE = {ratio:.2f}x < {THROUGHPUT_TARGET:g}x")
        mem_ratio = results.get("memory", {}).get("ratio")
        if mem_ratio is not None and mem_ratio > MEMORY_TARGET:
            runs = results["memory"]["runs"]
            missed.append(f"peak RSS {runs[-1]['hours']:g} h / {runs[0]['hours']:g} h = {mem_ratio:.2f} "
                          f"> {MEMORY_TARGET:g}")
        for line in missed:
            print(f"TARGET MISSED: {line}")
        loaded = [f"{name} {r['hours']:g} h ({r['foreign_load']:.2f} cores)" for name, r in timed_named
                  if r.get("foreign_load", 0.0) > FOREIGN_LOAD_WARN]
        if loaded:
            print(f"WARNING: other processes competed for the {results['machine']['usable_cores']} cores during: "
                  f"{', '.join(loaded)}; those wall times are inflated (peak RSS is not affected). Rerun on "
                  "an idle machine, or with --repeat N.")
        if not missed and not failed:
            print("All targets met.")
        if failed:
            print("RUN FAILED: see the errors above (figures of failed runs are missing).")
        results["targets_missed"] = missed
        print(f"Total benchmark time: {results['total_s']:.0f} s")
        if args.json:
            args.json.write_text(json.dumps(results, indent=2) + "\n")
            print(f"Figures written to {args.json}")
    finally:
        if args.keep:
            print(f"Kept {workdir}")
        elif created is not None:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            for path in set(workdir.iterdir()) - existing:
                shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
