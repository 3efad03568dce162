"""From window probabilities to events, and threshold tuning."""

from __future__ import annotations

import time

import numpy as np
import pytest

from neurocare_bids.detection.postprocess import Event, probabilities_to_events, smooth, threshold_text
from neurocare_bids.detection.szcore import tsv_intervals
from neurocare_bids.evaluation.metrics import szcore_summary
from neurocare_bids.evaluation.tuning import DEFAULT_THRESHOLDS, tune


def _events(onsets, probs, window=4.0, recording=1000.0, *, threshold=0.5, min_duration=0.0, merge_gap=0.0,
            smoothing=1):
    return probabilities_to_events(onsets, probs, window, recording, threshold=threshold,
                                   min_duration=min_duration, merge_gap=merge_gap, smoothing=smoothing)


def _spans(events):
    return [(e.onset, e.offset) for e in events]


# ---------------------------------------------------------------------- smoothing
def test_smooth_hand_values_and_edges():
    np.testing.assert_allclose(smooth([0, 0, 3, 0, 0], 3), [0, 1, 1, 1, 0])
    np.testing.assert_allclose(smooth([3, 0, 0], 3), [1.5, 1, 0])  # edge: mean of the 2 existing windows
    np.testing.assert_allclose(smooth([0, 0, 0, 0, 5], 5), [0, 0, 1, 5 / 4, 5 / 3])
    np.testing.assert_allclose(smooth([1, 3, 5], 2), [2, 4, 5])  # even k: window i and i + 1
    np.testing.assert_array_equal(smooth([0.2, 0.7], 1), [0.2, 0.7])
    assert smooth([], 3).size == 0


def test_smooth_keeps_the_level_at_the_edges():
    for value in (0.5, 0.1, 0.3, 0.7):
        out = smooth(np.full(50, value), 7)
        assert out.shape == (50,)
        np.testing.assert_allclose(out, value, rtol=1e-15, atol=0)


# ---------------------------------------------------------------------- event extraction
def test_overlapping_windows_cover_first_onset_to_last_end():
    onsets = np.arange(0, 100, 1.0)  # 4 s windows every second
    probs = np.zeros(100)
    probs[5:8] = 0.9
    (event,) = _events(onsets, probs)
    assert (event.onset, event.duration) == (5.0, 6.0)  # 5 .. 7 + 4
    assert event.confidence == pytest.approx(0.9)


def test_runs_that_overlap_in_time_are_one_event_even_without_merge_gap():
    onsets = np.arange(0, 100, 1.0)
    probs = np.zeros(100)
    probs[[5, 7]] = 0.9  # [5, 9) and [7, 11) overlap; window 6 is negative
    (event,) = _events(onsets, probs, merge_gap=0.0)
    assert _spans([event]) == [(5.0, 11.0)]
    assert event.confidence == pytest.approx(1.8 / 3)  # raw mean over windows 5, 6, 7


def test_touching_events_are_merged():
    onsets = np.arange(0, 100, 4.0)  # no overlap
    probs = np.zeros(25)
    probs[[2, 4]] = 0.9  # [8, 12) and [16, 20): gap 4
    assert _spans(_events(onsets, probs)) == [(8.0, 12.0), (16.0, 20.0)]
    probs[3] = 0.0
    probs[[2, 3]] = 0.9
    assert _spans(_events(onsets, probs)) == [(8.0, 20.0)]


def test_merge_gap_is_strict():
    onsets = np.arange(0, 200, 2.0)
    probs = np.zeros(100)
    probs[10:12] = 0.9  # [20, 26)
    probs[18:20] = 0.8  # [36, 42): gap 10
    assert _spans(_events(onsets, probs, merge_gap=10.0)) == [(20.0, 26.0), (36.0, 42.0)]
    (merged,) = _events(onsets, probs, merge_gap=10.5)
    assert _spans([merged]) == [(20.0, 42.0)]
    assert merged.confidence == pytest.approx((2 * 0.9 + 2 * 0.8) / 10)  # windows 10..19, gap included


def test_min_duration_applies_after_merging():
    onsets = np.arange(0, 200, 2.0)
    probs = np.zeros(100)
    probs[10] = 0.9  # [20, 24): 4 s
    probs[15] = 0.9  # [30, 34): 4 s, 6 s later
    probs[60:63] = 0.9  # [120, 128): 8 s
    assert _spans(_events(onsets, probs, min_duration=8.0)) == [(120.0, 128.0)]
    assert _events(onsets, probs, min_duration=8.01) == []
    assert _spans(_events(onsets, probs, min_duration=10.0, merge_gap=10.0)) == [(20.0, 34.0)]


def test_clipped_at_the_recording_end_and_start():
    onsets = np.arange(-2, 100, 2.0)  # a first window that starts before the recording
    probs = np.zeros(onsets.size)
    probs[0] = 0.9
    probs[-1] = 0.9  # [98, 102) in a 100.5 s recording
    assert _spans(_events(onsets, probs, recording=100.5)) == [(0.0, 2.0), (98.0, 100.5)]
    probs[:] = 0.0
    probs[-1] = 0.9
    assert _events(onsets, probs, recording=98.0) == []  # entirely past the end: nothing


def test_empty_and_below_threshold():
    assert _events([], []) == []
    assert _events(np.arange(10.0), np.full(10, 0.49)) == []
    (event,) = _events(np.arange(10.0), np.full(10, 0.5))  # at the threshold counts
    assert _spans([event]) == [(0.0, 13.0)]


def test_confidence_is_the_raw_mean_not_the_smoothed_one():
    onsets = np.arange(0, 40, 2.0)
    probs = np.zeros(20)
    probs[8:11] = [0.6, 1.0, 0.6]
    (event,) = _events(onsets, probs, smoothing=3, threshold=0.5)
    # smoothed: 0.2, 0.533, 0.733, 0.533, 0.2 -> windows 8..10 positive
    assert _spans([event]) == [(16.0, 24.0)]
    assert event.confidence == pytest.approx(2.2 / 3)


def test_unsorted_windows_are_put_in_time_order():
    rng = np.random.default_rng(3)
    onsets = np.arange(0, 600, 2.0)
    probs = rng.uniform(size=onsets.size)
    order = rng.permutation(onsets.size)
    kw = dict(threshold=0.6, smoothing=3, merge_gap=5.0, min_duration=6.0)
    assert _events(onsets[order], probs[order], **kw) == _events(onsets, probs, **kw)


def test_length_mismatch_is_an_error():
    with pytest.raises(ValueError):
        _events(np.arange(3.0), np.zeros(4))


# ---------------------------------------------------------------------- tuning
def _synthetic_recording(subject, rng, *, seizure_prob, fp_prob, fp_len, duration=3600.0):
    """Background 0.1, seizures at ``seizure_prob``, false-positive bursts at ``fp_prob``."""
    onsets = np.arange(0, duration - 4 + 1e-9, 2.0)
    probs = np.full(onsets.size, 0.1)
    seizures = []
    for start in rng.choice(np.arange(200, duration - 300, 600), size=2, replace=False):
        seizures.append((float(start), float(start) + 60.0))
        probs[(onsets >= start) & (onsets + 4 <= start + 60)] = seizure_prob
    for start in rng.choice(np.arange(500, duration - 300, 600), size=2, replace=False):
        probs[(onsets >= start) & (onsets < start + fp_len)] = fp_prob
    return {"subject": subject, "onsets": onsets, "probs": probs, "window_duration": 4.0,
            "recording_duration": duration, "seizures": seizures}


def test_tune_finds_the_separating_threshold():
    rng = np.random.default_rng(0)
    recs = [_synthetic_recording(s, rng, seizure_prob=0.62, fp_prob=0.58, fp_len=40)
            for s in ("01", "01", "02", "03")]
    result = tune(recs, smoothing=1, merge_gap=30.0)
    assert result["threshold"] == pytest.approx(0.6)
    assert result["f1"] == pytest.approx(1.0)
    assert result["min_duration"] == 8.0  # every duration ties: the middle one (lower middle of 6)
    conservative = tune(recs, smoothing=1, merge_gap=30.0, ties="conservative")
    assert (conservative["threshold"], conservative["min_duration"]) == (pytest.approx(0.6), 30.0)  # the longest
    assert result["fp_per_24h"] == 0.0 and result["n_subjects"] == 3
    grid = {(g["threshold"], g["min_duration"]): g["f1"] for g in result["grid"]}
    assert grid[(0.65, 0.0)] == 0.0  # no detection left, seizures missed
    assert grid[(0.55, 0.0)] < 1.0  # the bursts are false positives


def test_tune_uses_min_duration_against_short_bursts():
    rng = np.random.default_rng(1)
    recs = [_synthetic_recording(s, rng, seizure_prob=0.9, fp_prob=0.95, fp_len=6) for s in ("a", "b")]
    result = tune(recs, thresholds=[0.5, 0.8, 0.92], min_durations=[0, 8, 12, 90], smoothing=1, merge_gap=0.0)
    # bursts (8 s events) survive every threshold; 12 s removes them; 90 s removes the seizures too;
    # 0.5 and 0.8 tie (0.92 misses the seizures): the lower middle of two, or the higher when conservative
    assert (result["threshold"], result["min_duration"], result["f1"]) == (0.5, 12.0, 1.0)
    conservative = tune(recs, thresholds=[0.5, 0.8, 0.92], min_durations=[0, 8, 12, 90], smoothing=1,
                        merge_gap=0.0, ties="conservative")
    assert (conservative["threshold"], conservative["min_duration"]) == (0.8, 12.0)


def test_tune_takes_the_middle_of_a_tied_range_which_carries_to_a_subject_scored_lower():
    rng = np.random.default_rng(3)
    validation = [_synthetic_recording(s, rng, seizure_prob=0.9, fp_prob=0.1, fp_len=40) for s in ("01", "02")]
    centre = tune(validation, smoothing=1, merge_gap=30.0)
    edge = tune(validation, smoothing=1, merge_gap=30.0, ties="conservative")
    # every threshold from 0.1 (exclusive) to 0.9 (inclusive) separates: 0.15 ... 0.9 tie at F1 1
    tied = sorted({g["threshold"] for g in centre["grid"] if g["f1"] == 1.0})
    assert tied[0] == pytest.approx(0.15) and tied[-1] == pytest.approx(0.9)
    assert centre["threshold"] == pytest.approx(tied[(len(tied) - 1) // 2]) == pytest.approx(0.5)
    assert edge["threshold"] == pytest.approx(0.9) and centre["f1"] == edge["f1"] == 1.0
    # A new subject whose model scores everything 0.15 lower: the middle still finds its seizures, the edge not.
    test = _synthetic_recording("03", rng, seizure_prob=0.75, fp_prob=0.1, fp_len=40)
    found = {}
    for name, chosen in (("centre", centre), ("edge", edge)):
        events = probabilities_to_events(test["onsets"], test["probs"], 4.0, test["recording_duration"],
                                         threshold=chosen["threshold"], min_duration=chosen["min_duration"],
                                         merge_gap=30.0, smoothing=1)
        found[name] = len(events)
    assert found == {"centre": len(test["seizures"]), "edge": 0}
    with pytest.raises(ValueError, match="ties"):
        tune(validation, smoothing=1, merge_gap=30.0, ties="middle")


def test_tune_all_undefined_picks_the_most_conservative():
    rec = {"subject": "01", "onsets": np.arange(0, 600, 2.0), "probs": np.zeros(300), "window_duration": 4.0,
           "recording_duration": 600.0, "seizures": []}
    result = tune([rec], smoothing=3, merge_gap=30.0)
    assert result["f1"] is None and result["threshold"] == max(DEFAULT_THRESHOLDS) and result["min_duration"] == 30.0


def test_tune_reaches_the_thresholds_a_confident_model_needs():
    """Gradient boosting scores mimics 0.99 and seizures 0.99999: only a threshold between them separates them,
    and the grid has them (log-odds up to 16), where a grid stopping at 0.95 gave a false alarm per burst."""
    rng = np.random.default_rng(4)
    recs = [_synthetic_recording(s, rng, seizure_prob=0.99999, fp_prob=0.99, fp_len=40) for s in ("01", "02")]
    result = tune(recs, smoothing=1, merge_gap=30.0)
    assert 0.99 < result["threshold"] < 0.99999 and result["f1"] == 1.0 and result["fp_per_24h"] == 0.0
    capped = tune(recs, thresholds=[t for t in DEFAULT_THRESHOLDS if t <= 0.95], smoothing=1, merge_gap=30.0)
    assert capped["f1"] == pytest.approx(2 / 3) and capped["fp_per_24h"] == pytest.approx(48.0)
    top = max(DEFAULT_THRESHOLDS)
    assert top == pytest.approx(1 / (1 + np.exp(-16.0))) and list(DEFAULT_THRESHOLDS) == sorted(DEFAULT_THRESHOLDS)
    assert len(set(DEFAULT_THRESHOLDS)) == len(DEFAULT_THRESHOLDS) == 19 + 26


def test_threshold_text_tells_high_thresholds_from_one():
    assert threshold_text(0.75) == "0.75" and threshold_text(0.95) == "0.95" and threshold_text(1.0) == "1.00"
    assert threshold_text(1 / (1 + np.exp(-3.5))) == "0.971 (log-odds 3.5)"
    assert threshold_text(1 / (1 + np.exp(-16.0))) == "0.99999989 (log-odds 16.0)"
    assert all(not threshold_text(t).startswith("1.0") for t in DEFAULT_THRESHOLDS)


def test_tune_scores_equal_szcore_summary_of_the_written_events():
    rng = np.random.default_rng(5)
    recs = []
    for i in range(8):
        duration = float(rng.integers(900, 2400)) + 0.37
        onsets = np.arange(0, duration - 4, 1.5)
        probs = np.clip(rng.normal(0.2, 0.15, onsets.size), 0, 1)
        seizures = []
        for start in rng.uniform(50, duration - 200, 2):
            length = float(rng.uniform(10, 400))
            seizures.append((round(float(start), 2), round(float(start) + length, 2)))
            probs[(onsets >= start) & (onsets < start + length)] += rng.uniform(0.2, 0.6)
        recs.append({"subject": f"s{i % 3}", "onsets": onsets, "probs": probs, "window_duration": 4.0,
                     "recording_duration": duration, "seizures": seizures})
    result = tune(recs, thresholds=[0.3, 0.45, 0.6], min_durations=[0, 10], smoothing=3, merge_gap=20.0)
    for point in result["grid"]:
        per_recording = []
        for rec in recs:
            events = probabilities_to_events(rec["onsets"], rec["probs"], 4.0, rec["recording_duration"],
                                             threshold=point["threshold"], min_duration=point["min_duration"],
                                             merge_gap=20.0, smoothing=3)
            per_recording.append({"subject": rec["subject"], "ref": rec["seizures"],
                                  "hyp": tsv_intervals(events, rec["recording_duration"]),
                                  "duration": rec["recording_duration"]})
        expected = szcore_summary(per_recording)["event"]["f1"]
        assert point["f1"] == pytest.approx(expected, abs=1e-12), point


def test_tune_is_fast_on_hundreds_of_recordings():
    rng = np.random.default_rng(2)
    recs = []
    for i in range(300):
        onsets = np.arange(0, 3600 - 4, 2.0)
        probs = np.clip(rng.normal(0.15, 0.12, onsets.size), 0, 1)
        probs[600:640] = 0.8
        recs.append({"subject": f"{i % 30}", "onsets": onsets, "probs": probs, "window_duration": 4.0,
                     "recording_duration": 3600.0, "seizures": [(1200.0, 1280.0)]})
    t0 = time.perf_counter()
    result = tune(recs, smoothing=3, merge_gap=30.0)
    assert time.perf_counter() - t0 < 30  # about 2 s on a laptop core
    assert len(result["grid"]) == len(DEFAULT_THRESHOLDS) * 6 and result["f1"] > 0.5


def test_event_is_a_plain_dataclass():
    e = Event(1.0, 2.5, 0.7)
    assert e.offset == 3.5 and e == Event(1.0, 2.5, 0.7)


def test_centring_moves_the_median_window_to_one_half_and_keeps_the_order():
    from neurocare_bids.detection.postprocess import centre_probabilities, log_odds

    rng = np.random.default_rng(4)
    probs = np.concatenate([rng.uniform(0.01, 0.2, 200), rng.uniform(0.6, 0.99, 21)])  # background + a seizure
    centred, offset = centre_probabilities(probs)
    assert np.median(centred) == pytest.approx(0.5)
    assert offset == pytest.approx(np.median(np.log(probs / (1 - probs))))
    np.testing.assert_array_equal(np.argsort(centred, kind="stable"), np.argsort(probs, kind="stable"))
    # the model's probabilities come back from the centred ones and the offset
    back = 1 / (1 + np.exp(-(log_odds(centred) + offset)))
    np.testing.assert_allclose(back, probs, rtol=1e-9)
    # the same seizure windows on a background scored higher: the centred values agree, the raw ones do not
    shifted = 1 / (1 + np.exp(-(np.log(probs / (1 - probs)) + 2.0)))
    np.testing.assert_allclose(centre_probabilities(shifted)[0], centred, atol=1e-9)
    # a given offset is used as it is; extremes are clipped, not infinite
    assert centre_probabilities([0.5], 0.0)[0][0] == pytest.approx(0.5)
    assert np.isfinite(centre_probabilities([0.0, 1.0, 0.3])[0]).all()
    assert centre_probabilities([])[1] == 0.0


# ---------------------------------------------------------------------- alarm times (detection latency)
def _alarms(probs, *, smoothing=1, min_duration=10.0, merge_gap=0.0, lookahead=0.0, recording=1000.0):
    """Alarm times of windows 4 s long every 2 s (onsets 0, 2, 4 ...), threshold 0.5."""
    onsets = 2.0 * np.arange(len(probs))
    kwargs = {"threshold": 0.5, "min_duration": min_duration, "merge_gap": merge_gap, "smoothing": smoothing}
    from neurocare_bids.detection.postprocess import alarm_times

    alarms = alarm_times(onsets, probs, 4.0, recording, lookahead=lookahead, **kwargs)
    return _spans(probabilities_to_events(onsets, probs, 4.0, recording, **kwargs)), alarms


def test_alarm_times_computed_by_hand():
    probs = np.full(60, 0.1)
    probs[10:21] = 0.9  # windows 10-20: an event from 20 s (window 10's onset) to 44 s (window 20's end)
    # min_duration 10: the event exists from the first window whose end is 10 s past 20 s: window 13 (26-30 s)
    assert _alarms(probs) == ([(20.0, 44.0)], [30.0])
    # smoothing 3: windows 9 and 21 average to 0.37, windows 10-20 to 0.63 or more (the same event), and window
    # 13's smoothed score needs window 14: known at its end, 32 s; zero-phase filters add their look-ahead
    assert _alarms(probs, smoothing=3) == ([(20.0, 44.0)], [32.0])
    assert _alarms(probs, smoothing=3, lookahead=17.8) == ([(20.0, 44.0)], [pytest.approx(49.8)])
    # no minimum duration: the first window (20-24 s); smoothing 5 looks two windows (4 s) ahead
    assert _alarms(probs, min_duration=0.0) == ([(20.0, 44.0)], [24.0])
    assert _alarms(probs, min_duration=0.0, smoothing=5)[1] == [28.0]
    # never after the recording's end
    assert _alarms(probs, smoothing=3, lookahead=17.8, recording=45.0)[1] == [45.0]


def test_alarm_times_of_merged_runs_and_at_the_recordings_end():
    probs = np.full(30, 0.1)
    probs[[10, 11, 12]] = 0.9  # 20-28 s
    probs[16:] = 0.9  # 32 s to the end (29 * 2 + 4 = 62 s), merged with the first run (gap 4 s < 10 s)
    # min_duration 12: 32 s is reached at window 14 (28-32 s), but window 14 is negative: the event grows again
    # only with window 16 (32-36 s), when the alarm goes
    assert _alarms(probs, min_duration=12.0, merge_gap=10.0) == ([(20.0, 62.0)], [36.0])
    # without merging, the first run (8 s) is too short: the second is an event of its own, 30 s long
    assert _alarms(probs, min_duration=12.0) == ([(32.0, 62.0)], [44.0])
    # the last windows have fewer windows after them to average: window 27 (54 s) averages windows 24-29 to 0.5,
    # and is known when the last window is (62 s), not three windows later
    late = np.full(30, 0.1)
    late[27:] = 0.9
    assert _alarms(late, min_duration=0.0, smoothing=7) == ([(54.0, 62.0)], [62.0])
    assert _alarms(np.full(30, 0.1)) == ([], [])


def test_tune_alarm_slack_moves_off_the_edge_for_one_window_of_delay():
    from neurocare_bids.evaluation.tuning import tune_alarm

    # each seizure's windows score 0.5, then 0.7, then 0.9 (one 2-s stride each); bursts at 0.3 elsewhere bar
    # thresholds up to 0.3 (a window is seizure from its threshold up). The soonest setting (4 s) is the highest
    # threshold that the first window reaches, 0.5; a slack of one stride admits the 6-s settings, whose most
    # cautious is 0.7
    recs = []
    for subject in ("01", "02"):
        rec = _ramping_recording(subject, burst_prob=0.3)
        onsets, probs = rec["onsets"], rec["probs"]
        for start, _ in rec["seizures"]:
            probs[onsets == start] = 0.5
            probs[onsets == start + 2] = 0.7
            probs[(onsets >= start + 4) & (onsets + 4 <= start + 60)] = 0.9
        recs.append(rec)
    soonest = tune_alarm(recs, max_fp_per_24h=2.0, merge_gap=30.0, smoothings=(1,))
    assert soonest["latency_median_s"] == pytest.approx(4.0) and soonest["threshold"] == pytest.approx(0.5)
    assert soonest["latency_slack_s"] == 0.0
    slack = tune_alarm(recs, max_fp_per_24h=2.0, merge_gap=30.0, smoothings=(1,), latency_slack=2.0)
    assert slack["latency_median_s"] == pytest.approx(6.0) and slack["threshold"] == pytest.approx(0.7)
    assert slack["fp_per_24h"] == 0.0 and slack["detected"] == 4 and slack["latency_slack_s"] == 2.0
    # a slack short of a stride changes nothing
    assert tune_alarm(recs, max_fp_per_24h=2.0, merge_gap=30.0, smoothings=(1,),
                      latency_slack=1.5)["threshold"] == pytest.approx(0.5)


def _ramping_recording(subject, *, burst_prob, duration=3600.0):
    """Seizures whose first 10 s score 0.5 and the rest 0.9; two 40 s bursts at ``burst_prob`` elsewhere."""
    onsets = np.arange(0, duration - 4 + 1e-9, 2.0)
    probs = np.full(onsets.size, 0.1)
    seizures = []
    for start in (600.0, 2400.0):
        seizures.append((start, start + 60.0))
        probs[(onsets >= start) & (onsets < start + 10)] = 0.5
        probs[(onsets >= start + 10) & (onsets + 4 <= start + 60)] = 0.9
    for start in (1200.0, 3000.0):
        probs[(onsets >= start) & (onsets < start + 40)] = burst_prob
    return {"subject": subject, "onsets": onsets, "probs": probs, "window_duration": 4.0,
            "recording_duration": duration, "seizures": seizures}


def test_tune_alarm_is_soonest_within_the_false_alarm_bound():
    from neurocare_bids.evaluation.tuning import tune_alarm

    recs = [_ramping_recording(s, burst_prob=0.6) for s in ("01", "02")]
    # the bursts give 48 false alarms per 24 h to any threshold up to 0.6: a bound of 2 forces a threshold above
    # them, so the alarm waits for the strong part of the seizure: the end of the first window at 0.9, 14 s in
    strict = tune_alarm(recs, max_fp_per_24h=2.0, merge_gap=30.0)
    assert strict["constraint_met"] and strict["fp_per_24h"] == 0.0
    assert 0.6 < strict["threshold"] <= 0.9 and strict["smoothing"] == 1 and strict["min_duration"] == 0.0
    assert strict["latency_median_s"] == pytest.approx(14.0) and strict["sensitivity"] == 1.0
    # allowed the bursts' false alarms, it alarms on the weak first windows: 4 s after the onset
    loose = tune_alarm(recs, max_fp_per_24h=100.0, merge_gap=30.0)
    assert loose["threshold"] <= 0.5 and loose["latency_median_s"] == pytest.approx(4.0)
    assert loose["fp_per_24h"] == pytest.approx(48.0)
    # what two hours of validation establish: with no false alarm seen, a rate of up to 24 ln(20) / 2 per 24 h
    assert strict["validation_hours"] == pytest.approx(2.0) and strict["fp_count"] == 0
    assert strict["fp_per_24h_upper95"] == pytest.approx(24 * np.log(20) / 2)
    # with the bursts' four: the exact Poisson bound, found here by root-finding on the Poisson CDF
    from scipy.optimize import brentq
    from scipy.stats import poisson
    rate = brentq(lambda mu: poisson.cdf(4, mu) - 0.05, 1e-6, 100.0, xtol=1e-12)
    assert loose["fp_count"] == 4 and loose["fp_per_24h_upper95"] == pytest.approx(rate * 24 / 2, rel=1e-9)
    # the filters' look-ahead delays every alarm alike
    assert tune_alarm(recs, max_fp_per_24h=2.0, merge_gap=30.0, lookahead=5.0)["latency_median_s"] == \
        pytest.approx(19.0)
    # bursts as strong as the seizures: within the bound nothing is detected, and it says so
    mimics = [_ramping_recording(s, burst_prob=0.9) for s in ("01", "02")]
    none = tune_alarm(mimics, max_fp_per_24h=2.0, merge_gap=30.0)
    assert none["constraint_met"] and none["latency_median_s"] is None and none["detected"] == 0
    # no setting within a bound of 0 when even the highest threshold alarms on a burst
    flat = [{**r, "probs": np.where(r["probs"] > 0.1, 1.0, 0.1)} for r in mimics]
    fewest = tune_alarm(flat, max_fp_per_24h=0.0, merge_gap=30.0)
    assert not fewest["constraint_met"] and fewest["fp_per_24h"] > 0 and fewest["latency_median_s"] is not None
