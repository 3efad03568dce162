"""Property-based tests (hypothesis): labelling, events <-> window masks, chunked filtering under any
configuration, and the SzCORE TSV round trip. Complements test_events.py (seizure fraction vs a sample
mask) and test_preprocess.py (blocked vs whole filtering at the default configuration)."""

from __future__ import annotations

import io
import math

import numpy as np
import pandas as pd
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from conftest import EVENTS_HEADER
from neurocare_bids.config import InputConfig, PreprocessingConfig
from neurocare_bids.detection.postprocess import Event, probabilities_to_events
from neurocare_bids.detection.szcore import format_events_tsv, read_events_tsv, tsv_intervals
from neurocare_bids.io.annotations import merge_intervals, read_seizures, seizure_fraction, window_labels
from neurocare_bids.preprocessing.filters import design_plan, iter_blocks, process_block

seconds = st.floats(0, 400, allow_nan=False, allow_infinity=False)
events = st.lists(st.tuples(st.floats(-50, 450), st.floats(0, 120)), max_size=8)
geometry = st.sampled_from([(4.0, 2.0), (4.0, 4.0), (2.0, 1.0), (10.0, 5.0), (1.0, 0.25)])  # window, stride


# ---------------------------------------------------------------------- windowing and labelling
@settings(max_examples=150, deadline=None)
@given(rows=events, duration=st.floats(10, 400), geo=geometry, threshold=st.sampled_from([0.25, 0.5, 1.0]))
def test_events_file_to_window_labels(tmp_path_factory, rows, duration, geo, threshold):
    """Whatever events.tsv holds (overlaps, negative onsets, events past the end), the intervals read are
    sorted, disjoint and inside the recording, and each window's label says whether at least ``threshold``
    of it lies inside a seizure row of the file."""
    window, stride = geo
    path = tmp_path_factory.getbasetemp() / "sub-01_task-x_events.tsv"
    path.write_text(EVENTS_HEADER + "".join(f"{o!r}\t{d!r}\tsz\tn/a\tn/a\tn/a\t{duration}\n" for o, d in rows))
    intervals = read_seizures(path, duration, InputConfig()).intervals
    assert np.all(intervals[:, 0] >= 0) and np.all(intervals[:, 1] <= duration)
    assert np.all(intervals[:, 1] > intervals[:, 0]) and np.all(intervals[1:, 0] > intervals[:-1, 1])

    onsets = np.arange(int((duration - window) // stride) + 1) * stride if duration >= window else np.zeros(0)
    labels = window_labels(seizure_fraction(onsets, window, intervals), threshold)
    # the same from the rows themselves: the covered length of each window, on an exact grid of edges
    covered = np.zeros(len(onsets))
    for k, start in enumerate(onsets):
        inside = [(max(o, start, 0.0), min(o + d, start + window, duration)) for o, d in rows]
        covered[k] = _union_length(inside)
    np.testing.assert_array_equal(labels, covered >= threshold * window - 1e-9 * window)


def _union_length(spans) -> float:
    total, end = 0.0, -math.inf
    for a, b in sorted(s for s in spans if s[1] > s[0]):
        if b > end:
            total += b - max(a, end)
            end = b
    return total


@settings(max_examples=150, deadline=None)
@given(rows=events, geo=geometry, low=st.floats(0.05, 1.0), high=st.floats(0.05, 1.0))
def test_labels_are_monotonic_and_merging_changes_nothing(rows, geo, low, high):
    window, stride = geo
    spans = [(o, o + d) for o, d in rows]
    onsets = np.arange(0, 500, stride)
    fractions = seizure_fraction(onsets, window, merge_intervals(spans))
    # the same events cut in pieces, or given twice, cover the same time
    pieces = [p for a, b in spans for p in ((a, (a + b) / 2), ((a + b) / 2, b))] + spans
    np.testing.assert_allclose(seizure_fraction(onsets, window, merge_intervals(pieces)), fractions, atol=1e-9)
    low, high = sorted((low, high))
    assert np.all(window_labels(fractions, high) <= window_labels(fractions, low))


# ---------------------------------------------------------------------- events <-> window masks
@settings(max_examples=200, deadline=None)
@given(starts=st.lists(st.floats(0, 3000), max_size=6), lengths=st.lists(st.floats(0.5, 200), min_size=6,
                                                                          max_size=6), geo=geometry)
def test_seizures_to_window_labels_and_back_to_events(starts, lengths, geo):
    """Seizures -> window labels -> events (labels as probabilities): every event found overlaps a
    seizure, and each seizure at least one window long comes back with its edges within half a window
    or a stride (seizures more than two windows apart, so that none merge)."""
    window, stride = geo
    recording = 3600.0
    seizures = merge_intervals([(s, min(s + d, recording)) for s, d in zip(starts, lengths)])
    assume(len(seizures) < 2 or np.all(seizures[1:, 0] - seizures[:-1, 1] > 2 * window + stride))
    onsets = np.arange(int((recording - window) // stride) + 1) * stride
    labels = window_labels(seizure_fraction(onsets, window, seizures), 0.5)
    found = probabilities_to_events(onsets, labels.astype(float), window, recording, threshold=0.5,
                                    min_duration=0.0, merge_gap=0.0, smoothing=1)
    for event in found:
        assert any(event.onset < b and event.offset > a for a, b in seizures)
        assert event.confidence == 1.0
    tolerance = max(window / 2, stride) + 1e-6
    for a, b in seizures:
        if b - a < window:
            continue
        [match] = [e for e in found if e.onset < b and e.offset > a]
        assert abs(match.onset - a) <= tolerance and abs(match.offset - b) <= tolerance


# ---------------------------------------------------------------------- chunked vs whole-signal filtering
@settings(max_examples=20, deadline=None)
@given(sfreq=st.sampled_from([100.0, 173.61, 250.0, 256.0, 400.0, 1000.0]),
       sfreq_out=st.sampled_from([64.0, 128.0, 200.0, 256.0]), l_freq=st.sampled_from([0.0, 0.1, 0.5, 2.0]),
       h_freq=st.sampled_from([0.0, 20.0, 30.0, 45.0]), order=st.integers(1, 6), notch=st.booleans(),
       line=st.sampled_from([50.0, 60.0, None]), seconds_=st.integers(30, 200), block=st.integers(50, 5000),
       seed=st.integers(0, 100))
def test_blocks_equal_whole_signal_under_any_filter_configuration(sfreq, sfreq_out, l_freq, h_freq, order, notch,
                                                                   line, seconds_, block, seed):
    assume(h_freq == 0 or h_freq < min(sfreq, sfreq_out) / 2)
    cfg = PreprocessingConfig(sfreq=sfreq_out, l_freq=l_freq, h_freq=h_freq, filter_order=order, notch=notch)
    plan = design_plan(sfreq, cfg, line)
    rng = np.random.default_rng(seed)
    n = int(sfreq * seconds_)
    x = rng.standard_normal((2, n)).cumsum(axis=1) * 0.2 + rng.standard_normal((2, n)) * 5

    def read(start, stop):
        return x[:, start:stop]

    whole = process_block(read, n, plan, 0, plan.n_out(n))
    blocked = np.concatenate([b for _, b in iter_blocks(read, n, plan, block)], axis=1)
    assert blocked.shape == whole.shape
    np.testing.assert_allclose(blocked, whole, rtol=0, atol=1e-7 * np.abs(whole).max())


# ---------------------------------------------------------------------- SzCORE TSV round trip
@settings(max_examples=150, deadline=None)
@given(raw=st.lists(st.tuples(seconds, st.floats(0, 300), st.floats(0, 1)), max_size=10),
       duration=st.floats(0.01, 100000))
def test_szcore_tsv_round_trip(raw, duration):
    """Events -> TSV -> events: what a reader parses is what tsv_intervals predicts, every event lies inside
    [0, recordingDuration] (to the centisecond: a reader's onset + duration may exceed it by a rounding
    error, which the scorer's int() truncation absorbs), and writing what was read gives the same file."""
    found = [Event(o, d, c) for o, d, c in raw]
    text = format_events_tsv(found, duration)
    back, written_duration = read_events_tsv(io.StringIO(text))
    assert written_duration == round(duration * 100) / 100
    pairs = [(e.onset, e.onset + e.duration) for e in back]
    assert pairs == tsv_intervals(found, duration)
    centi = [(round(a * 100), round(b * 100)) for a, b in pairs]
    assert all(0 <= a < b <= round(written_duration * 100) for a, b in centi) and pairs == sorted(pairs)
    table = pd.read_csv(io.StringIO(text), sep="\t")
    assert list(table.columns) == ["onset", "duration", "eventType", "confidence", "channels", "dateTime",
                                   "recordingDuration"]
    assert (table["eventType"] == "sz").sum() == len(back) and len(table) == max(1, len(back))
    assert format_events_tsv(back, written_duration) == text
