"""benchmarks/onset_visibility.py: the signals it analyses are the ones ``demo-data`` writes, and its times measure
what they claim (the end of the first window in which the seizure is as large as the rest)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from neurocare_bids.io import demo
from neurocare_bids.io.signal_reader import EDFSource, read_edf_header

_PATH = Path(__file__).parent.parent / "benchmarks" / "onset_visibility.py"
_spec = importlib.util.spec_from_file_location("onset_visibility", _PATH)
visibility = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(visibility)

SIZE = {"n_subjects": 2, "recordings": 1, "duration": 600.0}


@pytest.fixture(scope="module")
def hard_in_memory():
    return visibility.generate("hard", 5, **SIZE)


def test_the_signals_in_memory_are_those_demo_data_writes(hard_in_memory, tmp_path):
    """Replacing the EDF writer and recording each seizure's addition changes no random draw."""
    written = demo.make_demo_dataset(tmp_path / "bids", n_subjects=2, recordings_per_subject=1,
                                     recording_duration=600.0, seed=5, difficulty="hard")
    assert len(written) == len(hard_in_memory) == 2
    for on_disk, in_memory in zip(written, hard_in_memory):
        assert on_disk["seizures"] == in_memory["seizures"]
        source = EDFSource(on_disk["path"], read_edf_header(on_disk["path"]), [])
        samples = source.read(list(range(len(source.ch_names))), 0, source.n_times)
        resolution = float(np.max(source.gain))  # one digital step, in µV
        assert np.max(np.abs(samples - in_memory["data"])) <= resolution
    assert sum(len(r["seizures"]) for r in hard_in_memory) == sum(len(r["contributions"]) for r in hard_in_memory)


def test_each_contribution_is_its_seizure_and_nothing_else(hard_in_memory):
    """A recorded contribution has the seizure's length and is zero nowhere on its strongest channel."""
    for rec in hard_in_memory:
        for (onset, duration, _), added in zip(rec["seizures"], rec["contributions"]):
            assert added.shape == (len(demo.CHANNELS), int(duration * visibility.FS))
            strongest = np.argmax((added ** 2).sum(axis=1))
            assert np.count_nonzero(added[strongest]) > 0.99 * added.shape[1]


def test_times_are_window_ends_and_grow_with_the_ratio(hard_in_memory):
    rows = [row for rec in hard_in_memory for row in visibility.visibility(rec, 4.0, ratios=(0.0, 0.5, 1.0, 1e9))]
    assert rows
    for row in rows:
        assert row["ratio_0"] == 4.0  # the first window already holds "zero times the rest"
        assert row["ratio_1e+09"] is None  # never a billion times the rest
        reached = [row[k] for k in ("ratio_0", "ratio_0.5", "ratio_1") if row[k] is not None]
        assert reached == sorted(reached)
        assert all(t <= row["duration"] and float(t).is_integer() for t in reached)


def test_a_seizure_added_to_silence_is_visible_in_its_first_window():
    """With nothing but the seizure in the signal, any ratio is reached by the first window."""
    fs = visibility.FS
    n = int(60 * fs)
    added = np.zeros((len(demo.CHANNELS), n))
    added[3] = np.sin(2 * np.pi * 5 * np.arange(n) / fs) * 50
    data = np.zeros((len(demo.CHANNELS), int(300 * fs)))
    data[:, int(100 * fs):int(100 * fs) + n] = added - added.mean(axis=0)
    data += np.random.default_rng(0).normal(0, 1e-3, data.shape)
    rec = {"data": data, "seizures": [(100.0, 60.0, "sz")], "contributions": [added], "patterns": ["standard"],
           "subject": "01", "run": "00"}
    (row,) = visibility.visibility(rec, 2.0)
    assert row["channel"] == demo.CHANNELS[3]
    assert row["ratio_0.5"] == row["ratio_1"] == row["ratio_2"] == 2.0


def test_command_line_prints_the_table(tmp_path):
    out = tmp_path / "rows.json"
    result = subprocess.run([sys.executable, str(_PATH), "--subjects", "1", "--recordings", "1", "--duration", "600",
                             "--json", str(out)], capture_output=True, text=True, check=True)
    assert "| all |" in result.stdout
    assert out.read_text().startswith("[")
