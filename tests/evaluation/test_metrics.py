"""Window metrics and SzCORE event scoring (checked against timescoring itself)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from timescoring import scoring
from timescoring.annotations import Annotation

from neurocare_bids.detection.postprocess import Event
from neurocare_bids.evaluation.metrics import (EventCounter, event_scores, mask_runs, sample_scores, szcore_mask,
                                               szcore_summary, timescoring_scores, window_metrics)


# ---------------------------------------------------------------------- window level
def test_window_metrics_hand_computed():
    y = [0, 0, 0, 0, 1, 1, 1, 0, 1, 0]
    p = [0.1, 0.6, 0.2, 0.3, 0.9, 0.5, 0.4, 0.05, 0.7, 0.45]
    m = window_metrics(y, p, threshold=0.5)
    # calls at >= 0.5: windows 1, 4, 5, 8 -> tp 3 (4, 5, 8), fp 1 (1), fn 1 (6), tn 5
    assert m["confusion_matrix"] == {"tn": 5, "fp": 1, "fn": 1, "tp": 3}
    assert (m["n_windows"], m["n_seizure_windows"]) == (10, 4)
    assert m["accuracy"] == pytest.approx(0.8)
    assert m["precision"] == pytest.approx(0.75)
    assert m["recall"] == m["sensitivity"] == pytest.approx(0.75)
    assert m["specificity"] == pytest.approx(5 / 6)
    assert m["f1"] == pytest.approx(0.75)
    # ROC AUC: of the 24 (seizure, background) pairs the seizure window ranks higher in 6 + 6 + 5 + 4
    assert m["roc_auc"] == pytest.approx(21 / 24)
    # ranking 0.9+ 0.7+ 0.6- 0.5+ 0.45- 0.4+ ...: AP = (1 + 1 + 3/4 + 4/6) / 4
    assert m["pr_auc"] == pytest.approx((1 + 1 + 0.75 + 4 / 6) / 4)


def test_aucs_use_probabilities_not_hard_labels():
    y = [0, 0, 1, 1]
    p = [0.1, 0.2, 0.3, 0.8]
    m = window_metrics(y, p, threshold=0.5)
    hard = window_metrics(y, (np.asarray(p) >= 0.5).astype(float), threshold=0.5)
    assert m["roc_auc"] == 1.0 and m["pr_auc"] == 1.0  # the ranking is perfect
    assert hard["roc_auc"] == pytest.approx(0.75) and hard["pr_auc"] == pytest.approx(0.75)
    assert m["confusion_matrix"] == hard["confusion_matrix"]


def test_window_metrics_missing_class_is_none_and_json_safe():
    m = window_metrics([0, 0, 0], [0.1, 0.7, 0.2], 0.5)
    assert m["roc_auc"] is None and m["pr_auc"] is None and m["recall"] is None and m["f1"] == 0.0
    json.dumps(m, allow_nan=False)
    m = window_metrics([1, 1], [0.9, 0.2], 0.5)
    assert m["roc_auc"] is None and m["pr_auc"] == 1.0 and m["specificity"] is None
    m = window_metrics([], [], 0.5)
    assert m["n_windows"] == 0 and m["accuracy"] is None and m["f1"] is None
    json.dumps(m, allow_nan=False)
    assert window_metrics([1], [0.5], 0.5)["confusion_matrix"]["tp"] == 1  # at the threshold is seizure
    with pytest.raises(ValueError):
        window_metrics([0, 1], [0.5], 0.5)


# ---------------------------------------------------------------------- masks
def test_szcore_mask_truncates_like_epilepsy2bids():
    mask = szcore_mask([(1.5, 3.9), Event(4.99, 0.02, 1.0)], 5.7)
    np.testing.assert_array_equal(mask, [0, 1, 1, 0, 1])  # [1, 3) and [4, 5): 4.99 + 0.02 = 5.01 -> 5
    assert mask.dtype == bool and szcore_mask([(2, 100)], 4.2).tolist() == [False, False, True, True]


def test_mask_runs_equal_the_mask():
    rng = np.random.default_rng(0)
    for _ in range(300):
        n = float(rng.uniform(1, 60))
        events = [tuple(sorted(rng.uniform(-5, 70, 2))) for _ in range(rng.integers(0, 6))]
        mask = szcore_mask(events, n)
        rebuilt = np.zeros_like(mask)
        for a, b in mask_runs(events, n):
            assert not rebuilt[a:b].any()
            rebuilt[a:b] = True
        np.testing.assert_array_equal(rebuilt, mask)
        assert len(mask_runs(events, n)) == int(np.sum(np.diff(np.r_[0, mask.astype(int)]) == 1))


# ---------------------------------------------------------------------- event scoring
def _random_mask(rng, n):
    mask = np.zeros(n, dtype=bool)
    for _ in range(rng.integers(0, 8)):
        a = int(rng.integers(0, n))
        mask[a:a + int(rng.choice([1, 5, 30, 80, 200, 400, 700]))] = True
    return mask


def _runs(mask):
    return mask_runs([(a, b) for a, b in Annotation(mask, 1).events], len(mask))


def test_event_counter_equals_timescoring():
    rng = np.random.default_rng(1)
    for _ in range(400):
        n = int(rng.choice([50, 400, 1200, 3000]))
        ref, hyp = _random_mask(rng, n), _random_mask(rng, n)
        expected = scoring.EventScoring(Annotation(ref, 1), Annotation(hyp, 1))
        counter = EventCounter(_runs(ref), n)
        assert counter.ref_true == expected.refTrue
        assert counter.counts(_runs(hyp)) == (expected.tp, expected.fp)


def test_event_scores_hand_computed():
    ref = [(100.0, 160.0)]
    hyp = [(90.0, 170.0), (1000.0, 1010.0)]
    s = event_scores(ref, hyp, 3600.0)
    assert (s["tp"], s["fp"], s["ref_true"], s["duration_s"]) == (1, 1, 1, 3600.0)
    assert s["sensitivity"] == 1.0 and s["precision"] == 0.5 and s["f1"] == pytest.approx(2 / 3)
    assert s["fp_per_24h"] == pytest.approx(24.0)  # one false alarm in one hour
    # a detection 25 s early but inside the 30 s tolerance is a hit; 95 s after the end is not
    assert event_scores(ref, [(75.0, 80.0)], 3600.0)["tp"] == 1
    assert event_scores(ref, [(255.0, 260.0)], 3600.0)["tp"] == 0
    # detections less than 90 s apart are one event: one hit, no false alarm
    s = event_scores(ref, [(110.0, 120.0), (200.0, 210.0)], 3600.0)
    assert (s["tp"], s["fp"]) == (1, 0)
    sample = sample_scores(ref, hyp, 3600.0)
    assert (sample["tp"], sample["fp"], sample["ref_true"]) == (60, 30, 60)


def test_fp_rate_is_per_day_like_timescoring():
    ref = np.zeros(7200, dtype=bool)
    hyp = np.zeros(7200, dtype=bool)
    hyp[[100, 1000, 5000]] = True
    ts = scoring.EventScoring(Annotation(ref, 1), Annotation(hyp, 1))
    ours = event_scores([], [(100, 101), (1000, 1001), (5000, 5001)], 7200)
    assert ours["fp_per_24h"] == pytest.approx(ts.fpRate) == pytest.approx(36.0)
    assert ours["f1"] == 0.0 and ours["sensitivity"] is None and ours["precision"] == 0.0


def test_scores_formula_equals_timescoring():
    rng = np.random.default_rng(2)
    for _ in range(100):
        n = 1200
        ref, hyp = _random_mask(rng, n), _random_mask(rng, n)
        for ts in (scoring.EventScoring(Annotation(ref, 1), Annotation(hyp, 1)),
                   scoring.SampleScoring(Annotation(ref, 1), Annotation(hyp, 1))):
            ours = timescoring_scores(ts.tp, ts.fp, ts.refTrue, ts.numSamples / ts.fs)
            for key, attr in (("sensitivity", "sensitivity"), ("precision", "precision"), ("f1", "f1"),
                              ("fp_per_24h", "fpRate")):
                np.testing.assert_allclose(ours[key], getattr(ts, attr), rtol=1e-12)


def test_szcore_summary_sums_per_subject_then_averages():
    per_recording = [
        # sub-01: 2 seizures over 2 recordings, both found, one false alarm -> f1 0.8
        {"subject": "01", "ref": [(100, 160)], "hyp": [(110, 150)], "duration": 3600},
        {"subject": "01", "ref": [(500, 530)], "hyp": [(505, 520), (2000, 2010)], "duration": 3600},
        # sub-02: one seizure missed -> f1 0
        {"subject": "sub-02", "ref": [(100, 160)], "hyp": [], "duration": 1800},
        # sub-03: no seizure, no alarm -> f1 undefined, left out of the f1 mean
        {"subject": "03", "ref": [], "hyp": [], "duration": 1800},
    ]
    out = szcore_summary(per_recording)
    json.dumps(out, allow_nan=False)
    subs = {s["participant_id"]: s for s in out["subjects"]}
    assert list(subs) == ["sub-01", "sub-02", "sub-03"] and subs["sub-01"]["n_recordings"] == 2
    assert [subs["sub-01"]["event"][k] for k in ("tp", "fp", "ref_true", "duration_s")] == [2, 1, 2, 7200.0]
    assert subs["sub-01"]["event"]["f1"] == pytest.approx(0.8)
    assert subs["sub-01"]["event"]["fp_per_24h"] == pytest.approx(12.0)
    assert subs["sub-02"]["event"]["f1"] == 0.0 and subs["sub-03"]["event"]["f1"] is None
    assert out["event"]["f1"] == pytest.approx(0.4) and out["event"]["f1_std"] == pytest.approx(0.4)
    assert out["event"]["sensitivity"] == pytest.approx(0.5)
    assert out["event"]["precision"] == pytest.approx(2 / 3)  # sub-02 and sub-03: no detection -> NaN
    assert out["event"]["fp_per_24h"] == pytest.approx(4.0) and out["event"]["n_subjects"] == 3
    assert subs["sub-01"]["sample"]["tp"] == 40 + 15 and subs["sub-01"]["sample"]["ref_true"] == 90
    assert szcore_summary([])["event"]["f1"] is None


def test_window_metrics_with_one_threshold_per_window():
    """Pooled cross-validation windows are each called at their own fold's threshold."""
    from neurocare_bids.evaluation.metrics import window_metrics

    y = [1, 0, 1, 0]
    p = [0.6, 0.6, 0.3, 0.2]
    per_window = window_metrics(y, p, [0.5, 0.7, 0.25, 0.25])
    assert per_window["f1"] == 1.0 and per_window["confusion_matrix"] == {"tn": 2, "fp": 0, "fn": 0, "tp": 2}
    assert per_window["threshold"] == "per window"
    assert window_metrics(y, p, 0.5)["f1"] == pytest.approx(0.5)


# ---------------------------------------------------------------------- detection latency
def test_seizure_latencies_computed_by_hand():
    from neurocare_bids.evaluation.metrics import latency_summary, seizure_latencies

    events = [Event(20.0, 24.0, 0.9), Event(60.0, 30.0, 0.9), Event(150.0, 50.0, 0.9)]
    alarms = [30.0, 75.0, 190.0]
    seizures = [(22.0, 50.0),  # inside the first event, alarmed 8 s after the onset
                (125.0, 140.0),  # the third event starts after it ended, within SzCORE's 60 s: detected late
                (300.0, 320.0),  # nothing within [270, 380]: missed
                (52.0, 58.0),  # the first two events overlap [22, 118]: the earlier alarm counts, before onset
                (230.0, 250.0)]  # [200, 310] touches the third event's end only: not an overlap, missed
    latencies = seizure_latencies(seizures, events, alarms)
    assert latencies == [8.0, 65.0, None, -22.0, None]
    assert latency_summary(latencies) == {"latency_median_s": 8.0, "latency_mean_s": pytest.approx(17.0),
                                          "latency_n_seizures": 3}
    assert latency_summary([None]) == {"latency_median_s": None, "latency_mean_s": None, "latency_n_seizures": 0}
    with pytest.raises(ValueError):
        seizure_latencies(seizures, events, alarms[:2])


def test_latencies_are_summarised_over_seizures_and_per_subject():
    from neurocare_bids.evaluation.metrics import with_latencies

    per_recording = [
        {"subject": "01", "ref": [(100, 160)], "hyp": [(110, 150)], "duration": 3600, "latencies": [12.0]},
        {"subject": "01", "ref": [(500, 530), (900, 920)], "hyp": [(505, 520)], "duration": 3600,
         "latencies": [20.0, None]},
        {"subject": "02", "ref": [(100, 160)], "hyp": [(80, 150)], "duration": 1800, "latencies": [-4.0]},
        {"subject": "03", "ref": [(100, 160)], "hyp": [], "duration": 1800, "latencies": [None]},
    ]
    out = with_latencies(szcore_summary(per_recording), per_recording)
    json.dumps(out, allow_nan=False)
    assert out["event"]["latency_median_s"] == 12.0 and out["event"]["latency_n_seizures"] == 3
    assert out["event"]["latency_mean_s"] == pytest.approx(28 / 3)
    subs = {s["participant_id"]: s["event"] for s in out["subjects"]}
    assert (subs["sub-01"]["latency_median_s"], subs["sub-01"]["latency_mean_s"]) == (16.0, 16.0)
    assert subs["sub-02"]["latency_median_s"] == -4.0 and subs["sub-03"]["latency_median_s"] is None


def test_predictions_tsv_keeps_the_ranking_of_windows_near_certainty(tmp_path):
    """The centred and smoothed columns keep 9 significant digits: windows at 1 - 1e-8 and 1 - 1e-7 (common for
    the gradient boosting's confident windows) stay apart, and the model's probability reads back exactly."""
    import csv

    from neurocare_bids.evaluation.group import _predictions_tsv, _read_predictions

    probs = np.array([0.2, 1 - 1e-7, 1 - 1e-8, 3e-9], dtype=np.float32).astype(float)
    detection = np.array([0.4, 1 - 1e-7, 1 - 1e-8, 1e-9])
    p = {"subject": "01", "source": "sub-01_run-01", "onsets": np.arange(4) * 2.0, "labels": np.array([0, 1, 1, 0]),
         "probs": probs, "detection": detection, "scores": detection}
    path = tmp_path / "predictions.tsv"
    path.write_text(_predictions_tsv([("test", p)]))
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    column = [float(r["smoothed_probability"]) for r in rows]
    assert len(set(column)) == 4 and np.argsort(column).tolist() == np.argsort(detection).tolist()
    np.testing.assert_allclose([float(r["detection_probability"]) for r in rows], detection, rtol=1e-8)
    read = np.asarray(_read_predictions(path, "test")["sub-01_run-01"]["probs"], dtype=np.float32)
    np.testing.assert_array_equal(read, probs.astype(np.float32))  # every digit of the float32 output
