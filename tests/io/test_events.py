"""events.tsv parsing and window labelling."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import EVENTS_HEADER
from neurocare_bids.config import InputConfig
from neurocare_bids.errors import DataError
from neurocare_bids.io.annotations import merge_intervals, read_seizures, seizure_fraction, window_labels


def _events(tmp_path, rows, header=EVENTS_HEADER):
    path = tmp_path / "sub-01_task-x_events.tsv"
    path.write_text(header + "".join(rows))
    return path


def test_every_sz_type_is_a_seizure(tmp_path):
    rows = [f"{10 * i}\t5\t{kind}\tn/a\tn/a\tn/a\t300\n"
            for i, kind in enumerate(["sz", "sz_foc_ia", "SZ_GEN_M", "sz_foc_f2b", "bckg", "seizure", "impd"])]
    result = read_seizures(_events(tmp_path, rows), 300.0, InputConfig())
    np.testing.assert_array_equal(result.intervals, [[0, 5], [10, 15], [20, 25], [30, 35], [50, 55]])
    assert result.event_count == 5
    assert result.warnings == ["sub-01_task-x_events.tsv: 1 event(s) of unknown type 'impd' ignored (not a seizure)"]


def test_trial_type_column_and_clipping(tmp_path):
    path = _events(tmp_path, ["-5\t10\tseizure\n", "95\t10\tsz\n", "200\t1\tsz\n"], "onset\tduration\ttrial_type\n")
    result = read_seizures(path, 100.0, InputConfig())
    np.testing.assert_array_equal(result.intervals, [[0, 5], [95, 100]])
    assert any("clipped" in w for w in result.warnings) and any("outside" in w for w in result.warnings)


@pytest.mark.parametrize("content, message", [
    ("", "empty events file"),
    ("onset\tduration\n1\t2\n", "no event type column"),
    ("onset\teventType\n1\tsz\n", "no 'duration' column"),
    (EVENTS_HEADER + "1\t-2\tsz\tn/a\tn/a\tn/a\t9\n", "negative duration"),
    (EVENTS_HEADER + "1\tn/a\tsz\tn/a\tn/a\tn/a\t9\n", "'n/a' is not a number"),
    (EVENTS_HEADER + "1\t2\tsz\n", "3 columns, header has 7"),
    (EVENTS_HEADER + "inf\t2\tsz\tn/a\tn/a\tn/a\t9\n", "not a finite number"),
])
def test_malformed_events_are_data_errors(tmp_path, content, message):
    path = tmp_path / "e_events.tsv"
    path.write_text(content)
    with pytest.raises(DataError, match=message):
        read_seizures(path, 100.0, InputConfig())


def test_missing_events_file_means_background_with_warning():
    result = read_seizures(None, 100.0, InputConfig())
    assert result.intervals.shape == (0, 2) and "no events.tsv" in result.warnings[0]


intervals_strategy = st.lists(st.tuples(st.floats(0, 500), st.floats(0.01, 100)), max_size=8)


@settings(max_examples=200, deadline=None)
@given(events=intervals_strategy, duration=st.sampled_from([1.0, 2.5, 4.0, 10.0]),
       stride=st.sampled_from([0.5, 1.0, 2.0, 4.0]))
def test_fraction_matches_a_sample_mask(events, duration, stride):
    """The analytic overlap equals counting samples of a 1 kHz mask (to mask resolution)."""
    intervals = merge_intervals([(o, o + d) for o, d in events])
    onsets = np.arange(0, 600 - duration, stride)
    fs = 1000
    t = (np.arange(int(600 * fs)) + 0.5) / fs
    mask = np.zeros(t.size, bool)
    for a, b in intervals:
        mask[(t >= a) & (t < b)] = True
    n = int(duration * fs)
    starts = np.round(onsets * fs).astype(int)
    expected = np.array([mask[s:s + n].mean() for s in starts])
    got = seizure_fraction(onsets, duration, intervals)
    np.testing.assert_allclose(got, expected, atol=2.0 / n)
    assert np.all((got >= 0) & (got <= 1 + 1e-12))


def test_labels_threshold_and_merge():
    intervals = merge_intervals([(10, 12), (11, 14), (14, 15), (30, 30)])
    np.testing.assert_array_equal(intervals, [[10, 15]])
    fractions = seizure_fraction(np.array([6.0, 8.0, 10.0, 13.0, 14.0]), 4.0, intervals)
    np.testing.assert_allclose(fractions, [0, 0.5, 1.0, 0.5, 0.25])
    np.testing.assert_array_equal(window_labels(fractions, 0.5), [0, 1, 1, 1, 0])
