"""The streaming EDF/BDF reader returns exactly what MNE reads, and refuses broken files."""

from __future__ import annotations

from datetime import datetime

import mne
import numpy as np
import pytest

from neurocare_bids.errors import DataError
from neurocare_bids.io.edf import write_edf
from neurocare_bids.io.signal_reader import EDFSource, read_edf_header


def _open(path):
    notes: list[str] = []
    return EDFSource(path, read_edf_header(path), notes), notes


@pytest.mark.parametrize("suffix", [".edf", ".bdf"])
def test_blocks_equal_mne(tmp_path, suffix):
    rng = np.random.default_rng(0)
    data = rng.standard_normal((5, 256 * 37)) * [[10], [50], [200], [1], [1000]]
    names = ["EEG Fp1", "EEG Fp2", "C3", "T3-T5", "T3-T5"]  # a duplicate label, as in CHB-MIT
    path = tmp_path / f"r{suffix}"
    write_edf(path, data, 256.0, names, units=["uV", "uV", "mV", "uV", "uV"],
              annotations=[(3.0, 1.0, "event")], start=datetime(2020, 5, 6, 7, 8, 9))
    source, notes = _open(path)
    raw = mne.io.read_raw(path, preload=False, verbose="error")
    assert source.ch_names == raw.ch_names and source.sfreq == raw.info["sfreq"] and source.n_times == raw.n_times
    assert notes == []
    for picks, start, stop in [([0, 1, 2, 3, 4], 0, raw.n_times), ([4, 0], 300, 301), ([2], 255, 5000),
                               ([1, 3], raw.n_times - 17, raw.n_times)]:
        np.testing.assert_allclose(source.read(picks, start, stop), raw.get_data(picks, start, stop) * 1e6,
                                   rtol=1e-12, atol=1e-9)


def test_truncated_trailing_and_garbage_files(tmp_path):
    path = tmp_path / "r.edf"
    write_edf(path, np.zeros((2, 2560)), 256.0, ["Fp1", "Fp2"])
    good = path.read_bytes()
    path.write_bytes(good[:-100])
    with pytest.raises(DataError, match="truncated file"):
        _open(path)
    path.write_bytes(good + b"\0" * 10)
    source, notes = _open(path)
    assert source.n_times == 2560 and "10 bytes after the last data record" in notes[0]
    for garbage in (b"", b"0" * 100, b"not an edf" * 300, good[:300]):
        path.write_bytes(garbage)
        with pytest.raises(DataError, match="not a valid EDF/BDF header"):
            _open(path)


def test_mixed_rates_are_detected_for_the_mne_fallback(tmp_path):
    path = tmp_path / "r.edf"
    write_edf(path, [np.zeros(512 * 4), np.zeros(256 * 4), np.zeros(4)], [512.0, 256.0, 1.0], ["Fp1", "Fp2", "SpO2"])
    source, _ = _open(path)
    assert source.sfreq == 512.0 and source.can_read([0]) and not source.can_read([0, 1])
