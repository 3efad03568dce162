"""Window-level and SzCORE event-level metrics.

The event-level numbers must equal those of SzCORE's ``szcore-evaluation``, which is what users and
papers report. So the masks are built as epilepsy2bids' ``Annotations.getMask(1)`` builds them (1 Hz,
``int()`` truncation of onset, offset and recording duration) and scored by timescoring itself with its
default parameters; per-subject sums and the per-subject mean follow ``evaluate_dataset``.
``EventCounter`` is an exact interval re-implementation of timescoring's ``EventScoring`` used where
thousands of scorings are needed (threshold tuning); the tests check it against timescoring.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from ..detection.postprocess import as_intervals

SECONDS_PER_DAY = 86400.0
# timescoring's EventScoring defaults, which szcore-evaluation uses.
TOLERANCE_START = 30
TOLERANCE_END = 60
MERGE_BELOW = 90
SPLIT_ABOVE = 300
_METRICS = ("sensitivity", "precision", "f1", "fp_per_24h")


# ---------------------------------------------------------------------- window level
def window_metrics(y_true, prob, threshold: float | np.ndarray = 0.5) -> dict[str, Any]:
    """Window classification metrics; the AUCs use the probabilities (a hard-label AUC hides ranking).

    A window is called seizure when its probability is at or above ``threshold`` (one value, or one per
    window, e.g. each cross-validation fold's own tuned threshold). Metrics that are undefined (a class
    absent, no positive call) are None, so the result is JSON-safe.
    """
    y = np.asarray(y_true).astype(bool).ravel()
    p = np.asarray(prob, dtype=float).ravel()
    if y.shape != p.shape:
        raise ValueError(f"y_true has {y.size} windows but prob has {p.size}")
    pred = p >= np.broadcast_to(np.asarray(threshold, dtype=float), p.shape)
    tp = int(np.sum(y & pred))
    fp = int(np.sum(~y & pred))
    fn = int(np.sum(y & ~pred))
    tn = int(np.sum(~y & ~pred))
    n_pos = tp + fn
    return {
        "threshold": float(threshold) if np.ndim(threshold) == 0 else "per window",
        "n_windows": int(y.size),
        "n_seizure_windows": n_pos,
        "accuracy": _ratio(tp + tn, y.size),
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, n_pos),
        "sensitivity": _ratio(tp, n_pos),
        "specificity": _ratio(tn, tn + fp),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        **ranking_metrics(y, p),
        "confusion_matrix": {"tn": tn, "fp": fp, "fn": fn, "tp": tp},
    }


def ranking_metrics(y_true, scores) -> dict[str, float | None]:
    """ROC-AUC and PR-AUC (average precision) of ``scores``; None where undefined (one class absent)."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    y = np.asarray(y_true).astype(bool).ravel()
    p = np.asarray(scores, dtype=float).ravel()
    n_pos = int(y.sum())
    return {"roc_auc": float(roc_auc_score(y, p)) if 0 < n_pos < y.size else None,
            "pr_auc": float(average_precision_score(y, p)) if n_pos else None}


def _ratio(num: float, den: float) -> float | None:
    return float(num / den) if den else None


# ---------------------------------------------------------------------- SzCORE masks
def szcore_mask(events: Iterable, recording_duration: float) -> np.ndarray:
    """The 1 Hz boolean mask epilepsy2bids' ``getMask(1)`` gives for these events (int truncation)."""
    mask = np.zeros(int(recording_duration), dtype=bool)
    for on, off in as_intervals(events):
        mask[int(on):int(off)] = True
    return mask


def mask_runs(events: Iterable, recording_duration: float) -> list[tuple[int, int]]:
    """Runs ``[start, stop)`` (seconds) of :func:`szcore_mask`, computed without building the mask."""
    n = int(recording_duration)
    spans = (range(n)[int(on):int(off)] for on, off in as_intervals(events))  # numpy's slice semantics
    return union_runs((r.start, r.stop) for r in spans if len(r))


def union_runs(spans: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Disjoint sorted runs covering the integer spans ``[start, stop)``; touching spans join."""
    runs: list[tuple[int, int]] = []
    for a, b in sorted(spans):
        if b <= a:
            continue
        if runs and a <= runs[-1][1]:
            runs[-1] = (runs[-1][0], max(runs[-1][1], b))
        else:
            runs.append((a, b))
    return runs


# ---------------------------------------------------------------------- timescoring
def _timescoring(ref_events, hyp_events, recording_duration: float):
    from timescoring import scoring
    from timescoring.annotations import Annotation

    if int(recording_duration) < 1:
        raise ValueError(f"recording of {recording_duration} s is shorter than one 1 Hz sample")
    ref = Annotation(szcore_mask(ref_events, recording_duration), 1)
    hyp = Annotation(szcore_mask(hyp_events, recording_duration), 1)
    return scoring.SampleScoring(ref, hyp), scoring.EventScoring(ref, hyp)


def timescoring_scores(tp, fp, ref_true, seconds):
    """timescoring's ``computeScores`` (0.0.7), vectorised: sensitivity, precision, f1, FP per 24 h.

    NaN where undefined: sensitivity without reference events, precision without detections, F1 when
    there are neither reference events nor false positives (that subject then drops out of the mean).
    """
    tp, fp, ref_true, seconds = (np.asarray(x, dtype=float) for x in (tp, fp, ref_true, seconds))
    with np.errstate(divide="ignore", invalid="ignore"):
        sens = np.where(ref_true > 0, tp / ref_true, np.nan)
        prec = np.where(tp + fp > 0, tp / (tp + fp), np.nan)
        f1 = np.where(ref_true + fp > 0, 2 * tp / (tp + fp + ref_true), np.nan)
        rate = np.where(seconds > 0, fp / (seconds / SECONDS_PER_DAY), np.nan)
    return {"sensitivity": sens, "precision": prec, "f1": f1, "fp_per_24h": rate}


def _summary(tp, fp, ref_true, seconds) -> dict[str, Any]:
    out = {"tp": int(tp), "fp": int(fp), "ref_true": int(ref_true), "duration_s": float(seconds)}
    out.update({k: _json(v) for k, v in timescoring_scores(tp, fp, ref_true, seconds).items()})
    return out


def event_scores(ref_events, hyp_events, recording_duration: float) -> dict[str, Any]:
    """SzCORE event scores of one recording (timescoring defaults on epilepsy2bids-style 1 Hz masks).

    Events are ``(onset, offset)`` pairs or Events; give them as read back from the TSV files
    (:func:`neurocare_bids.detection.szcore.read_events_tsv`) to get szcore-evaluation's numbers to the bit.
    """
    _, ev = _timescoring(ref_events, hyp_events, recording_duration)
    return _summary(ev.tp, ev.fp, ev.refTrue, ev.numSamples / ev.fs)


def sample_scores(ref_events, hyp_events, recording_duration: float) -> dict[str, Any]:
    """SzCORE sample (1 s) scores of one recording; counts are in seconds."""
    sa, _ = _timescoring(ref_events, hyp_events, recording_duration)
    return _summary(sa.tp, sa.fp, sa.refTrue, sa.numSamples / sa.fs)


def szcore_summary(per_recording: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """szcore-evaluation's ``evaluate_dataset`` (per-subject average) on in-memory annotations.

    ``per_recording``: ``[{"subject", "ref": [(on, off)], "hyp": [(on, off)], "duration"}]``. Counts
    are summed per subject, scored, then averaged over subjects with nanmean/nanstd.
    """
    totals: dict[str, dict[str, np.ndarray]] = {}
    for rec in per_recording:
        sa, ev = _timescoring(rec["ref"], rec["hyp"], rec["duration"])
        sub = totals.setdefault(_participant_id(rec["subject"]),
                                {"event": np.zeros(4), "sample": np.zeros(4), "n_recordings": 0})
        sub["n_recordings"] += 1
        for level, s in (("event", ev), ("sample", sa)):
            sub[level] += (s.tp, s.fp, s.refTrue, s.numSamples / s.fs)
    subjects = [{"participant_id": pid, "n_recordings": t["n_recordings"],
                 "event": _summary(*t["event"]), "sample": _summary(*t["sample"])}
                for pid, t in sorted(totals.items())]
    out: dict[str, Any] = {}
    for level in ("event", "sample"):
        agg: dict[str, Any] = {"n_subjects": len(subjects)}
        for metric in _METRICS:
            values = np.array([np.nan if s[level][metric] is None else s[level][metric] for s in subjects])
            agg[metric], agg[f"{metric}_std"] = nan_mean_std(values)
        out[level] = agg
    out["subjects"] = subjects
    return out


# ---------------------------------------------------------------------- detection latency
def seizure_latencies(seizures: Iterable, events: Iterable, alarms: Sequence[float]) -> list[float | None]:
    """Detection latency of each annotated seizure, in seconds; None for a seizure that was not detected.

    ``seizures`` and ``events`` are ``(onset, offset)`` pairs or Events; ``alarms[i]`` is when event ``i`` could
    first be reported (:func:`neurocare_bids.detection.postprocess.alarm_times`). A seizure is detected, as SzCORE's
    event scoring counts it, when an event overlaps it extended by ``TOLERANCE_START`` seconds before and
    ``TOLERANCE_END`` after; its latency is the earliest alarm of those events minus the annotated onset.
    Negative when that event was already under way at the onset (it began less than ``TOLERANCE_START``
    seconds before, or covers an earlier seizure too): the alarm came first.
    """
    hyp = as_intervals(events)
    if len(hyp) != len(alarms):
        raise ValueError(f"{len(hyp)} events but {len(alarms)} alarm times")
    out: list[float | None] = []
    for on, off in as_intervals(seizures):
        hits = [t for (a, b), t in zip(hyp, alarms) if a < off + TOLERANCE_END and b > on - TOLERANCE_START]
        out.append(min(hits) - on if hits else None)
    return out


def latency_summary(latencies: Iterable[float | None]) -> dict[str, Any]:
    """Median and mean latency over the detected seizures (None where none was detected), and their count."""
    values = np.array([x for x in latencies if x is not None], dtype=float)
    return {"latency_median_s": _json(np.median(values)) if values.size else None,
            "latency_mean_s": _json(np.mean(values)) if values.size else None,
            "latency_n_seizures": int(values.size)}


def with_latencies(summary: dict[str, Any], per_recording: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """:func:`szcore_summary`'s ``summary`` with :func:`latency_summary` added to its event level, over all
    seizures and per subject; each record's ``"latencies"`` (from :func:`seizure_latencies`) pair with its
    ``"ref"`` seizures."""
    by_subject: dict[str, list] = {}
    for rec in per_recording:
        by_subject.setdefault(_participant_id(rec["subject"]), []).extend(rec["latencies"])
    summary["event"].update(latency_summary(x for values in by_subject.values() for x in values))
    for sub in summary["subjects"]:
        sub["event"].update(latency_summary(by_subject.get(sub["participant_id"], [])))
    return summary


def nan_mean_std(values) -> tuple[float | None, float | None]:
    """np.nanmean and np.nanstd (population, as szcore-evaluation) without the all-NaN warning."""
    values = np.asarray(values, dtype=float)
    if not np.any(~np.isnan(values)):
        return None, None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return _json(np.nanmean(values)), _json(np.nanstd(values))


def _participant_id(subject: str) -> str:
    subject = str(subject)
    return subject if subject.startswith("sub-") else f"sub-{subject}"


def _json(x) -> Any:
    x = float(x)
    return x if math.isfinite(x) else None


# ---------------------------------------------------------------------- fast exact event scoring
class EventCounter:
    """timescoring ``EventScoring`` (default parameters) on whole-second runs, without 10 Hz masks.

    From 1 Hz masks every event boundary is a whole second, so timescoring's 10 Hz rounding is exact and
    its mask operations reduce to interval tests. Built once per reference, it scores many hypotheses.
    """

    def __init__(self, ref_runs: Sequence[tuple[int, int]], n_seconds: int):
        self.n = int(n_seconds)
        ref = _split(_merge(ref_runs))
        self.ref_true = len(ref)
        self._extended = [(max(0, a - TOLERANCE_START), min(self.n, b + TOLERANCE_END)) for a, b in ref]

    def counts(self, hyp_runs: Sequence[tuple[int, int]]) -> tuple[int, int]:
        """``(tp, fp)`` for a hypothesis given as sorted, disjoint runs (:func:`mask_runs`)."""
        if not hyp_runs:
            return 0, 0
        merged = _merge(hyp_runs)
        hits = [(a, b) for a, b in self._extended if any(s < b and e > a for s, e in merged)]
        fp = sum(1 for s, e in _split(merged) if not any(s < b and e > a for a, b in hits))
        return len(hits), fp


def _merge(runs: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for a, b in runs:
        if out and a - out[-1][1] < MERGE_BELOW:
            out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out


def _split(runs: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    out = []
    for a, b in runs:
        while b - a > SPLIT_ABOVE:
            out.append((a, a + SPLIT_ABOVE))
            a += SPLIT_ABOVE
        out.append((a, b))
    return out
