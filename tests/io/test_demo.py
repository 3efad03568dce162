"""Tests for the synthetic SzCORE/BIDS-Siena demo dataset."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import warnings
from datetime import datetime
from pathlib import Path

import mne
import numpy as np
import pandas as pd
import pytest
from scipy.signal import welch

from conftest import run_cli
from neurocare_bids.io import demo
from neurocare_bids.io.demo import CHANNELS, EVENT_COLUMNS, SEIZURE_TYPES, make_demo_dataset

SMALL = dict(n_subjects=2, recordings_per_subject=1, recording_duration=300.0)


def _files(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    root = tmp_path_factory.mktemp("demo") / "bids"
    return root, make_demo_dataset(root, **SMALL)


def test_deterministic_per_seed(small, tmp_path: Path) -> None:
    root, recordings = small
    again = make_demo_dataset(tmp_path / "same", **SMALL)
    assert _files(tmp_path / "same") == _files(root)
    assert [{**r, "path": None} for r in again] == [{**r, "path": None} for r in recordings]
    make_demo_dataset(tmp_path / "other", **SMALL, seed=7)
    other = _files(tmp_path / "other")
    edfs = [name for name in other if name.endswith(".edf")]
    assert edfs and all(other[name] != _files(root)[name] for name in edfs)


def test_refuses_foreign_directory_but_replaces_demo(small, tmp_path: Path) -> None:
    root, _ = small
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("real data")
    with pytest.raises(FileExistsError, match="not a NeuroCare-BIDS demo"):
        make_demo_dataset(foreign, **SMALL)
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]
    with pytest.raises(FileExistsError):
        make_demo_dataset(foreign / "notes.txt", **SMALL)

    previous = tmp_path / "previous"
    shutil.copytree(root, previous)
    (previous / "sub-09").mkdir()  # a stale subject from a bigger earlier demo
    make_demo_dataset(previous, **SMALL)
    assert _files(previous) == _files(root)


def test_layout_matches_szcore_siena(small) -> None:
    from bids import BIDSLayout

    root, recordings = small
    layout = BIDSLayout(root)
    assert layout.get_subjects() == ["01", "02"]
    assert layout.get_sessions() == ["01"]
    assert layout.get_tasks() == ["szMonitoring"]
    edfs = layout.get(suffix="eeg", extension=".edf")
    assert [f.get_entities()["run"] for f in edfs] == [0, 0]
    assert [Path(f.path) for f in edfs] == [r["path"] for r in recordings]
    assert recordings[0]["path"].name == "sub-01_ses-01_task-szMonitoring_run-00_eeg.edf"
    assert not list(root.rglob("*channels.tsv"))  # SzCORE has none
    for name in ("dataset_description.json", "README", "participants.tsv", "participants.json"):
        assert (root / name).is_file()

    description = json.loads((root / "dataset_description.json").read_text())
    assert description["BIDSVersion"] == "1.9.0" and description["DatasetType"] == "raw"
    assert "ynthetic" in description["Name"]
    participants = pd.read_csv(root / "participants.tsv", sep="\t")
    assert list(participants.columns) == ["participant_id", "age", "sex"]
    assert set(participants["sex"]) <= {"m", "f"}

    sidecar = json.loads(recordings[0]["path"].with_suffix(".json").read_text())
    assert sidecar["TaskName"] == "szMonitoring"
    assert sidecar["SamplingFrequency"] == 256 and sidecar["PowerLineFrequency"] == 50
    assert sidecar["EEGReference"] == "Common Average" and sidecar["SoftwareFilters"] == "n/a"
    assert sidecar["EEGChannelCount"] == 19 and sidecar["RecordingDuration"] == 300.0
    assert sidecar["RecordingType"] == "continuous"


def test_read_raw_bids(small) -> None:
    from mne_bids import BIDSPath, read_raw_bids

    root, recordings = small
    for rec in recordings:
        path = BIDSPath(
            root=root,
            subject=rec["subject"],
            session=rec["session"],
            task="szMonitoring",
            run=rec["run"],
            datatype="eeg",
            suffix="eeg",
            extension=".edf",
        )
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Did not find any channels.tsv")
            raw = read_raw_bids(path, verbose="error")
        assert raw.ch_names == list(CHANNELS)
        assert set(raw.get_channel_types()) == {"eeg"}
        assert raw.info["sfreq"] == 256.0
        assert raw.n_times == 300 * 256
        assert raw.info["line_freq"] == 50


def test_events_tsv(small) -> None:
    root, recordings = small
    for rec in recordings:
        events_path = Path(str(rec["path"]).replace("_eeg.edf", "_events.tsv"))
        lines = events_path.read_text().splitlines()
        assert lines[0].split("\t") == list(EVENT_COLUMNS)
        events = pd.read_csv(events_path, sep="\t", keep_default_na=False)
        assert len(events) == len(rec["seizures"]) >= 1
        raw = mne.io.read_raw_edf(rec["path"], verbose="error")
        start = raw.info["meas_date"].replace(tzinfo=None)
        for line, (onset, duration, kind) in zip(lines[1:], rec["seizures"]):
            fields = line.split("\t")
            assert fields == [
                f"{onset:.2f}",
                f"{duration:.2f}",
                kind,
                "n/a",
                "n/a",
                start.strftime("%Y-%m-%d %H:%M:%S"),
                "300.00",
            ]
            assert kind in SEIZURE_TYPES
            assert 60 <= onset and onset + duration <= 300 - 60
            assert 20 <= duration <= 120


def test_background_only_recording_has_one_bckg_row() -> None:
    text = demo._events_tsv([], datetime(2024, 5, 6, 7, 8, 9), 1200.0)
    assert text.splitlines()[1] == "0.00\t1200.00\tbckg\tn/a\tn/a\t2024-05-06 07:08:09\t1200.00"


def test_seizure_placement_rules() -> None:
    counts = []
    for seed in range(200):
        rng = np.random.default_rng(seed)
        n = int(rng.integers(0, 4))
        placed = demo._place_seizures(rng, 1200, n)
        counts.append(len(placed))
        for onset, duration in placed:
            assert 60 <= onset and onset + duration <= 1140 and 20 <= duration <= 120
        for (a, da), (b, _) in zip(placed, placed[1:]):
            assert b - (a + da) >= 240
    assert set(counts) == {0, 1, 2, 3}
    assert demo._place_seizures(np.random.default_rng(0), 150, 2) == []


def test_seizures_carry_2_10_hz_power(small) -> None:
    """The annotated seizures really are there: rhythmic 2-10 Hz power on the onset channels."""
    _, recordings = small
    for rec in recordings:
        raw = mne.io.read_raw_edf(rec["path"], preload=True, verbose="error")
        data, fs = raw.get_data() * 1e6, raw.info["sfreq"]
        picks = [raw.ch_names.index(ch) for ch in rec["focus"]]
        ictal = np.zeros(raw.n_times, bool)
        for onset, duration, _ in rec["seizures"]:
            ictal[int(onset * fs) : int((onset + duration) * fs)] = True
        freqs, background = welch(data[picks][:, ~ictal], fs, nperseg=512)
        band = (freqs >= 2) & (freqs <= 10)
        for onset, duration, _ in rec["seizures"]:
            segment = data[picks, int(onset * fs) : int((onset + duration) * fs)]
            _, seizure = welch(segment, fs, nperseg=512)
            ratio = seizure[:, band].sum(axis=1) / background[:, band].sum(axis=1)
            assert np.median(ratio) > 3, ratio


def _slow_power_per_4s(path: Path, ictal_margin: float, seizures) -> np.ndarray:
    """1-7 Hz power of every background 4 s segment (mean over channels), seizures and margins left out."""
    raw = mne.io.read_raw_edf(path, preload=True, verbose="error")
    data, fs = raw.get_data() * 1e6, raw.info["sfreq"]
    n = int(4 * fs)
    powers = []
    for start in range(0, raw.n_times - n, n):
        t0, t1 = start / fs, (start + n) / fs
        if any(t0 < on + du + ictal_margin and on - ictal_margin < t1 for on, du, _ in seizures):
            continue
        freqs, psd = welch(data[:, start:start + n], fs, nperseg=n)
        powers.append(psd[:, (freqs >= 1) & (freqs <= 7)].sum(axis=1).mean())
    return np.array(powers)


def test_mimics_add_slow_wave_bursts_to_the_background(tmp_path: Path) -> None:
    """``--mimics`` puts seizure-like 1-7 Hz power where there is no seizure; the default has none of it."""
    options = dict(n_subjects=1, recordings_per_subject=1, recording_duration=900.0)
    plain = make_demo_dataset(tmp_path / "plain", **options)[0]
    hard = make_demo_dataset(tmp_path / "hard", seizure_mimics=True, **options)[0]
    assert plain["seizures"] == hard["seizures"]  # same timing, only the signal differs
    base = _slow_power_per_4s(plain["path"], 30, plain["seizures"])
    mimic = _slow_power_per_4s(hard["path"], 30, hard["seizures"])
    # Blinks and electrode pops give a few slow-power peaks in both; the bursts add several more.
    threshold = 4 * np.median(base)
    assert (mimic > threshold).sum() >= (base > threshold).sum() + 3, (mimic > threshold).sum()
    assert "--mimics" in (tmp_path / "hard" / "README").read_text()


def test_rejects_bad_parameters() -> None:
    with pytest.raises(ValueError):
        make_demo_dataset("/nonexistent/never", sfreq=255.5)
    with pytest.raises(ValueError):
        make_demo_dataset("/nonexistent/never", line_freq=200.0)


def _validator() -> str | None:
    found = shutil.which("bids-validator-deno")
    local = Path(sys.executable).parent / "bids-validator-deno"
    return found or (str(local) if local.exists() else None)


@pytest.mark.skipif(_validator() is None, reason="bids-validator-deno is not installed")
def test_bids_validator_reports_no_errors(small) -> None:
    root, _ = small
    result = subprocess.run(
        [_validator(), str(root), "--json"], capture_output=True, text=True, timeout=300
    )
    report = json.loads(result.stdout)
    errors = [i for i in report["issues"]["issues"] if i["severity"] == "error"]
    assert errors == [], errors
    assert result.returncode == 0
    assert sorted(report["summary"]["subjects"]) == ["01", "02"]


# --- the hard variant (`--difficulty hard`) -------------------------------------------------------------------

HARD_SMALL = dict(n_subjects=3, recordings_per_subject=1, recording_duration=900.0, difficulty="hard")


def _content_digest(root: Path) -> str:
    """SHA-256 of every file but dataset_description.json (which carries the package version)."""
    digest = hashlib.sha256()
    for name, data in _files(root).items():
        if name != "dataset_description.json":
            digest.update(name.encode() + b"\0" + data)
    return digest.hexdigest()


@pytest.mark.parametrize("mimics,expected", [
    (False, "d47de53a5ecb64ab787d0a74f302af4c34ba0bcc5271163d7dadf1bcf2de1af0"),
    (True, "4b4637ee2a75d4619e42383774bfaa4c60c1cfd4250824876dfab15b5c388812"),
])
def test_standard_demo_is_byte_identical_to_before_the_hard_variant(tmp_path: Path, mimics, expected) -> None:
    """The digests were taken from the generator before the hard variant was added (2026-12-02): the demo
    every README figure comes from must not change when the generator grows."""
    make_demo_dataset(tmp_path / "d", seizure_mimics=mimics, **SMALL)
    assert _content_digest(tmp_path / "d") == expected


@pytest.fixture(scope="module")
def hard(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    root = tmp_path_factory.mktemp("hard") / "bids"
    return root, make_demo_dataset(root, **HARD_SMALL)


def test_hard_variant_is_deterministic_and_seeded(hard, tmp_path: Path) -> None:
    root, recordings = hard
    again = make_demo_dataset(tmp_path / "same", **HARD_SMALL)
    assert _files(tmp_path / "same") == _files(root)
    assert [{**r, "path": None} for r in again] == [{**r, "path": None} for r in recordings]
    other = make_demo_dataset(tmp_path / "other", **{**HARD_SMALL, "seed": 7})
    assert all(a["path"].read_bytes() != b["path"].read_bytes() for a, b in zip(recordings, other))
    # Not the standard demo with another name: same subjects and seizure types, other signals and focus.
    plain = make_demo_dataset(tmp_path / "plain", **{**HARD_SMALL, "difficulty": "standard"})
    assert [r["subject"] for r in plain] == [r["subject"] for r in recordings]
    assert all(a["path"].read_bytes() != b["path"].read_bytes() for a, b in zip(recordings, plain))
    assert "--difficulty hard" in (root / "README").read_text()


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x**2)))


def test_hard_seizures_are_subtle_and_often_focal(hard) -> None:
    """Seizures peak at 1-3x the background on their focus, and a focal seizure that does not spread leaves
    the far side of the head at background level."""
    subject = demo._draw_hard_subject(np.random.default_rng(3), demo._draw_subject(
        np.random.default_rng(4), 0, "sz_foc_ia"))
    assert 1 <= len(subject.focus) <= 3
    fs, n, brain_rms = 256.0, 256 * 60, 10.0
    ratios, far_ratios = [], []
    for seed in range(24):
        eeg = np.zeros((len(CHANNELS), n))
        demo._add_hard_seizure(np.random.default_rng(seed), eeg, subject, "sz_foc_ia", 0, n, fs, brain_rms)
        focus = eeg[list(subject.focus)]
        peak = max(_rms(focus[:, i:i + int(4 * fs)]) for i in range(0, n - int(4 * fs), int(fs)))
        ratios.append(peak / brain_rms)
        far = demo._DIST[:, list(subject.focus)].min(axis=1) > 1.2
        far_ratios.append(_rms(eeg[far]) / brain_rms)
    assert 0.5 < min(ratios) and max(ratios) < 3.5, ratios
    assert np.median(ratios) < 2.5
    assert sum(r < 0.05 for r in far_ratios) >= 4, far_ratios  # some stay focal...
    assert sum(r > 0.2 for r in far_ratios) >= 4, far_ratios  # ...some spread


def test_hard_patients_differ_in_background(tmp_path: Path) -> None:
    subjects = [demo._draw_hard_subject(np.random.default_rng([42, 11, i]),
                                        demo._draw_subject(np.random.default_rng([42, 1, i]), i, "sz"))
                for i in range(8)]
    amplitudes = [s.background_uv for s in subjects]
    assert max(amplitudes) / min(amplitudes) > 1.8
    assert max(s.alpha_hz for s in subjects) - min(s.alpha_hz for s in subjects) > 1.5
    assert max(s.slope for s in subjects) - min(s.slope for s in subjects) > 0.5
    assert len({s.hard.onset for s in subjects}) >= 2


def test_vigilance_states_cover_the_recording() -> None:
    fs, n = 8.0, 8 * 4 * 3600
    awake, drowsy, asleep = demo._vigilance(np.random.default_rng(0), n, fs, sleepiness=0.6)
    np.testing.assert_allclose(awake + drowsy + asleep, 1.0)
    for state in (awake, drowsy, asleep):
        assert (state > 0.9).mean() > 0.05  # each state is reached and held for a while


def test_hard_background_has_the_mimics_of_a_monitoring_unit(hard) -> None:
    """Away from seizures, the hard background holds far more seizure-like rhythmic power (2-8 Hz) and
    sharper sleep transients than the standard background of the same subjects."""
    root, recordings = hard
    hard_power, plain_power = [], []
    for rec in recordings:
        hard_power += list(_slow_power_per_4s(rec["path"], 30, rec["seizures"]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = make_demo_dataset(root.parent / "plain", **{**HARD_SMALL, "difficulty": "standard"})
    for rec in plain:
        plain_power += list(_slow_power_per_4s(rec["path"], 30, rec["seizures"]))
    hard_power, plain_power = np.array(hard_power), np.array(plain_power)
    # Relative to each dataset's own typical window: bursts of slow rhythmic power stand out in the hard one.
    hard_outliers = (hard_power > 4 * np.median(hard_power)).mean()
    plain_outliers = (plain_power > 4 * np.median(plain_power)).mean()
    assert hard_outliers > 2 * plain_outliers + 0.01, (hard_outliers, plain_outliers)


def test_hard_rejects_mixing_with_mimics_and_unknown_difficulty(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="own mimics"):
        make_demo_dataset(tmp_path / "x", difficulty="hard", seizure_mimics=True)
    with pytest.raises(ValueError, match="difficulty"):
        make_demo_dataset(tmp_path / "x", difficulty="extreme")
    assert not (tmp_path / "x").exists()


def test_demo_data_cli_hard(tmp_path: Path) -> None:
    result = run_cli("demo-data", tmp_path / "h", "--difficulty", "hard", "--subjects", "2", "--recordings", "1",
                     "--duration", "300")
    assert result.returncode == 0, result.stderr
    assert "2 subjects, 2 recordings (0.2 h)" in result.stdout
    assert len(list((tmp_path / "h").rglob("*_eeg.edf"))) == 2
    bad = run_cli("demo-data", tmp_path / "m", "--difficulty", "hard", "--mimics")
    assert bad.returncode == 64 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    assert "Traceback" not in bad.stderr and not (tmp_path / "m").exists()
