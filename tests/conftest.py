"""Shared helpers: tiny BIDS EEG datasets written to disk, and the CLI run as a real subprocess."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from neurocare_bids.config import SZCORE_ELECTRODES
from neurocare_bids.edf import write_edf

SIENA_LABELS = [f"{e}-Avg" for e in SZCORE_ELECTRODES]
EVENTS_HEADER = "onset\tduration\teventType\tconfidence\tchannels\tdateTime\trecordingDuration\n"


def synthetic_eeg(n_channels: int, n_samples: int, sfreq: float, seed: int = 0,
                  seizures=(), line_freq: float = 50.0) -> np.ndarray:
    """Noise + alpha + mains, with a focal 4 Hz rhythm (first 5 channels) inside each (onset, duration).

    Focal on purpose: a rhythm common to all channels would vanish in the average reference.
    """
    rng = np.random.default_rng(seed)
    t = np.arange(n_samples) / sfreq
    x = rng.standard_normal((n_channels, n_samples)) * 10
    x += 15 * np.sin(2 * np.pi * 10 * t + rng.uniform(0, 6, (n_channels, 1)))
    if line_freq < sfreq / 2:
        x += 5 * np.sin(2 * np.pi * line_freq * t)
    for onset, duration in seizures:
        inside = (t >= onset) & (t < onset + duration)
        x[:5, inside] += 80 * np.sin(2 * np.pi * 4 * t[inside])
    return x


def write_dataset_description(root: Path, **extra) -> None:
    root.mkdir(parents=True, exist_ok=True)
    desc = {"Name": "test", "BIDSVersion": "1.9.0", "DatasetType": "raw", **extra}
    (root / "dataset_description.json").write_text(json.dumps(desc))


def add_recording(root: Path, subject: str = "01", *, session: str | None = "01", task: str = "szMonitoring",
                  run: str | None = "00", duration: float = 120.0, sfreq: float = 256.0,
                  labels: list[str] | None = None, seizures=((40.0, 20.0, "sz"),), events: str | None = "auto",
                  line_freq: float | str = 50, seed: int = 0, ext: str = ".edf", data: np.ndarray | None = None,
                  sidecar_extra: dict | None = None) -> Path:
    """Write one recording (EDF by default) with its sidecar and SzCORE events.tsv; return its path."""
    if not (root / "dataset_description.json").exists():
        write_dataset_description(root)
    labels = list(labels or SIENA_LABELS)
    entities = [f"sub-{subject}"] + ([f"ses-{session}"] if session else []) + [f"task-{task}"]
    entities += [f"run-{run}"] if run is not None else []
    stem = "_".join(entities)
    folder = root / f"sub-{subject}" / (f"ses-{session}" if session else "") / "eeg"
    folder.mkdir(parents=True, exist_ok=True)
    n = int(round(duration * sfreq))
    if data is None:
        data = synthetic_eeg(len(labels), n, sfreq, seed, [(o, d) for o, d, _ in seizures],
                             line_freq if isinstance(line_freq, (int, float)) else 50.0)
    path = folder / f"{stem}_eeg{ext}"
    if ext in (".edf", ".bdf"):
        write_edf(path, data, sfreq, labels)
    else:
        import mne

        info = mne.create_info(labels, sfreq, "eeg")
        raw = mne.io.RawArray(data * 1e-6, info, verbose="error")
        fmt = {".vhdr": "brainvision", ".set": "eeglab"}[ext]
        mne.export.export_raw(path, raw, fmt=fmt, verbose="error")
    sidecar = {"TaskName": task, "SamplingFrequency": sfreq, "PowerLineFrequency": line_freq,
               "EEGReference": "Avg", "SoftwareFilters": "n/a", "RecordingDuration": duration,
               **(sidecar_extra or {})}
    (folder / f"{stem}_eeg.json").write_text(json.dumps(sidecar))
    if events == "auto":
        rows = [f"{o:.2f}\t{d:.2f}\t{kind}\tn/a\tn/a\t2000-01-01 00:00:00\t{duration:.2f}\n"
                for o, d, kind in seizures]
        if not rows:
            rows = [f"0.00\t{duration:.2f}\tbckg\tn/a\tn/a\t2000-01-01 00:00:00\t{duration:.2f}\n"]
        events = EVENTS_HEADER + "".join(rows)
    if events is not None:
        (folder / f"{stem}_events.tsv").write_text(events)
    return path


def run_cli(*args, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m neurocare_bids ARGS`` as a user would; return the completed process."""
    full_env = {**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})}
    return subprocess.run([sys.executable, "-m", "neurocare_bids", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env=full_env)


def tree_checksums(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` (to prove nothing in it changed)."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def read_windows(path: Path) -> list[dict]:
    """Decode every example of a TFRecord with our own reader (TF's is used in test_tfrecord.py)."""
    from neurocare_bids.tfrecord import decode_example, iter_records

    return [decode_example(r) for r in iter_records(path)]


@pytest.fixture
def siena(tmp_path) -> Path:
    """Two subjects in the SzCORE BIDS Siena layout, one with a seizure, one without."""
    root = tmp_path / "bids"
    add_recording(root, "01", seizures=[(40.0, 20.0, "sz_foc_ia")], seed=1)
    add_recording(root, "02", seizures=[], seed=2)
    return root
