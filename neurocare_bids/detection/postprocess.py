"""From window probabilities to seizure events, and the choice of threshold and minimum duration.

The model scores overlapping windows; SzCORE scores events. The steps in between (smoothing,
threshold, merging, minimum duration) decide much of the event-level F1, so threshold and minimum
duration are tuned on the inner validation subjects with the scorer's own rules (see metrics.py).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

DEFAULT_THRESHOLDS = tuple(round(0.05 * i, 2) for i in range(1, 20))  # 0.05 ... 0.95
DEFAULT_MIN_DURATIONS = (0.0, 4.0, 8.0, 12.0, 20.0, 30.0)
ALARM_SMOOTHINGS = (1, 2, 3, 5)  # moving-average lengths tried for the alarm operating point
OBJECTIVES = ("f1", "alarm")
# The post-processing settings probabilities_to_events takes (a PostProcessing dict also says whether to centre).
EVENT_SETTINGS = ("threshold", "min_duration", "merge_gap", "smoothing")
_CLIP = 1e-7  # probabilities are clipped to [_CLIP, 1 - _CLIP] before taking log-odds


def event_settings(post: dict) -> dict:
    """The keys of a PostProcessing dict that :func:`probabilities_to_events` takes."""
    return {key: post[key] for key in EVENT_SETTINGS}


def log_odds(probs) -> np.ndarray:
    p = np.clip(np.asarray(probs, dtype=float), _CLIP, 1 - _CLIP)
    return np.log(p) - np.log1p(-p)


def centre_probabilities(probs, offset: float | None = None) -> tuple[np.ndarray, float]:
    """Probabilities moved so that the recording's median window sits at 0.5, and the shift (log-odds).

    ``sigmoid(logit(p) - offset)`` with ``offset`` = the median log-odds of ``probs`` (or the one given).
    Rank order within the recording is unchanged; what changes is where its background lies relative to a
    fixed threshold. ``sigmoid(logit(q) + offset)`` gives the model's probabilities back.
    """
    z = log_odds(probs)
    if offset is None:
        offset = float(np.median(z)) if z.size else 0.0
    return 1.0 / (1.0 + np.exp(-(z - offset))), float(offset)


@dataclass
class Event:
    """A detected seizure: seconds from the recording start, and a confidence in [0, 1].

    ``confidence`` is the mean *raw* probability of the windows from the event's first positive window
    to its last one (windows in merged gaps included): the model's own output, whatever the smoothing.
    """

    onset: float
    duration: float
    confidence: float

    @property
    def offset(self) -> float:
        return self.onset + self.duration


def smooth(probs, k: int) -> np.ndarray:
    """Centred moving average over ``k`` windows: ``(k - 1) // 2`` before window ``i``, ``k // 2`` after.

    Near the edges it averages the windows that exist instead of padding with zeros, which would pull
    the first and last windows towards background and shorten events touching the recording's ends.
    """
    p = np.asarray(probs, dtype=float).ravel()
    k = int(k)
    if k <= 1 or p.size == 0:
        return p.copy()
    before, after = (k - 1) // 2, k // 2
    ones = np.ones(k)
    # direct k-term sums, not a cumulative sum whose rounding error grows along a long recording
    sums = np.convolve(np.pad(p, (before, after)), ones, mode="valid")
    counts = np.convolve(np.pad(np.ones(p.size), (before, after)), ones, mode="valid")
    return sums / counts


def _groups(onsets: np.ndarray, smoothed: np.ndarray, window_duration: float, recording_duration: float,
            threshold: float, merge_gap: float) -> tuple[np.ndarray, ...]:
    """Start, end, first and last window of the merged events (before the minimum-duration filter)."""
    pos = smoothed >= threshold
    edges = np.diff(np.concatenate(([0], pos.astype(np.int8), [0])))
    first = np.flatnonzero(edges == 1)
    last = np.flatnonzero(edges == -1) - 1
    if first.size == 0:
        return np.empty(0), np.empty(0), first, last
    start = np.clip(onsets[first], 0.0, recording_duration)
    end = np.clip(onsets[last] + window_duration, 0.0, recording_duration)
    # Runs separated by a negative window still overlap in time when stride < duration: gap <= 0 merges.
    gap = start[1:] - np.maximum.accumulate(end)[:-1]
    group = np.flatnonzero(np.concatenate(([True], (gap > 0) & (gap >= merge_gap))))
    return (start[group], np.maximum.reduceat(end, group), first[group], np.maximum.reduceat(last, group))


def _intervals(onsets: np.ndarray, smoothed: np.ndarray, raw: np.ndarray, window_duration: float,
               recording_duration: float, threshold: float, merge_gap: float
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Start, end and confidence of the merged events (before the minimum-duration filter)."""
    start, end, first, last = _groups(onsets, smoothed, window_duration, recording_duration, threshold, merge_gap)
    if first.size == 0:
        return start, end, np.empty(0)
    # sum of raw[first:last + 1] per event (raw ends with a 0 so that last + 1 is a valid index)
    conf = np.add.reduceat(raw, np.column_stack((first, last + 1)).ravel())[::2] / (last + 1 - first)
    keep = end > start
    return start[keep], end[keep], conf[keep]


def _prepare(onsets, probs, smoothing: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    onsets = np.asarray(onsets, dtype=float).ravel()
    probs = np.asarray(probs, dtype=float).ravel()
    if onsets.shape != probs.shape:
        raise ValueError(f"{onsets.size} onsets but {probs.size} probabilities")
    if onsets.size > 1 and np.any(np.diff(onsets) < 0):
        order = np.argsort(onsets, kind="stable")
        onsets, probs = onsets[order], probs[order]
    return onsets, smooth(probs, smoothing), np.append(probs, 0.0)


def probabilities_to_events(onsets, probs, window_duration: float, recording_duration: float, *,
                            threshold: float, min_duration: float, merge_gap: float,
                            smoothing: int) -> list[Event]:
    """Seizure events from window probabilities.

    Smooth over ``smoothing`` consecutive windows, call windows at or above ``threshold`` positive, turn
    each run of positive windows into [first onset, last onset + window_duration] clipped to the
    recording, merge events less than ``merge_gap`` seconds apart (overlapping or touching ones always),
    then drop events shorter than ``min_duration``. Merging comes first so that a seizure detected in
    pieces survives as one event.
    """
    onsets, smoothed, raw = _prepare(onsets, probs, smoothing)
    start, end, conf = _intervals(onsets, smoothed, raw, float(window_duration),
                                  float(recording_duration), threshold, merge_gap)
    keep = end - start >= min_duration
    return [Event(float(a), float(b - a), float(c)) for a, b, c in zip(start[keep], end[keep], conf[keep])]


def alarm_times(onsets, probs, window_duration: float, recording_duration: float, *, threshold: float,
                min_duration: float, merge_gap: float, smoothing: int, lookahead: float = 0.0) -> list[float]:
    """When each event of :func:`probabilities_to_events` (same arguments, same order) could first be reported,
    in seconds of signal from the recording start: when the streaming detector raises its alarm.

    An event exists once it has lasted ``min_duration``: at its first positive window ``j`` (smoothed score at
    or above ``threshold``, merged gaps included) with ``onset[j] + window_duration - event onset >=
    min_duration``. Window ``j``'s smoothed score needs the ``smoothing // 2`` windows after it, so the alarm
    time is the end of window ``j + smoothing // 2`` (the last window, at most), plus ``lookahead``: the seconds
    of signal the filters need after a sample (``SignalPlan.lookahead_seconds``: 17.8 s of zero-phase filter
    margin by default, none with causal filters beyond the resampling filter's reach); never after the end of
    the recording. Signal needed, not computing time.
    """
    onsets, smoothed, _ = _prepare(onsets, probs, smoothing)
    start, end, first, last = _groups(onsets, smoothed, float(window_duration), float(recording_duration),
                                      threshold, merge_gap)
    positive = smoothed >= threshold
    ends = np.minimum(onsets + window_duration, recording_duration)
    alarms = []
    for a, b, i, k in zip(start, end, first, last):
        if b <= a or b - a < min_duration:
            continue  # no event: probabilities_to_events drops it
        long_enough = positive[i:k + 1] & (ends[i:k + 1] - a >= min_duration)
        j = i + int(np.argmax(long_enough))
        known = ends[min(j + int(smoothing) // 2, len(onsets) - 1)]
        alarms.append(float(min(known + lookahead, recording_duration)))
    return alarms


TIE_RULES = ("centre", "conservative")


def tune(recordings: Sequence[dict[str, Any]], *, thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
         min_durations: Sequence[float] = DEFAULT_MIN_DURATIONS, smoothing: int,
         merge_gap: float, ties: str = "centre") -> dict[str, Any]:
    """Threshold and minimum duration maximising SzCORE's event F1, averaged per subject.

    ``recordings``: ``[{"subject", "onsets", "probs", "window_duration", "recording_duration",
    "seizures": [(onset, offset), ...]}]``. Each setting is scored as szcore-evaluation would score the
    TSV files it would produce (2-decimal rounding, 1 Hz masks, timescoring's event rules, per-subject
    sums, nanmean over subjects).

    A few validation subjects often reach their best F1 (often 1.0) over a whole range of settings.
    ``ties="centre"`` takes the middle of that range: the median of the tied thresholds, then the median
    of the minimum durations tied at that threshold (the lower middle of an even count). A new subject's
    probabilities sit a little higher or lower than the validation subjects', and the middle of the range
    is the setting that such a shift is least likely to push off it. ``ties="conservative"`` takes the
    highest tied threshold, then the longest minimum duration: the edge of the range, which misses the
    seizures of a subject scored a little lower. Where F1 is undefined everywhere (no seizures and no
    false positives), the most conservative setting is returned with ``f1`` None, whatever ``ties``.
    """
    if ties not in TIE_RULES:
        raise ValueError(f"ties must be one of {TIE_RULES}, got {ties!r}")
    from ..evaluation.metrics import EventCounter, mask_runs, timescoring_scores, union_runs
    from .szcore import tsv_arrays

    thresholds = [float(t) for t in thresholds]
    min_durations = [float(m) for m in min_durations]
    if not recordings or not thresholds or not min_durations:
        raise ValueError("tune needs recordings, thresholds and min_durations")
    n_rec, n_t, n_m = len(recordings), len(thresholds), len(min_durations)
    tp = np.zeros((n_rec, n_t, n_m))
    fp = np.zeros((n_rec, n_t, n_m))
    ref_true = np.zeros(n_rec)
    seconds = np.zeros(n_rec)
    for r, rec in enumerate(recordings):
        duration = float(rec["recording_duration"])
        counter = EventCounter(mask_runs(rec["seizures"], duration), int(duration))
        ref_true[r], seconds[r] = counter.ref_true, counter.n
        onsets, smoothed, raw = _prepare(rec["onsets"], rec["probs"], smoothing)
        memo: dict[tuple, tuple[int, int]] = {(): (0, 0)}
        for ti, t in enumerate(thresholds):
            start, end, _ = _intervals(onsets, smoothed, raw, float(rec["window_duration"]),
                                       duration, t, merge_gap)
            # the 1 Hz mask spans szcore-evaluation builds from the file we would write (onsets >= 0)
            on, off, index = tsv_arrays(start, end, duration)
            first, stop = (np.minimum(x.astype(np.int64), counter.n).tolist() for x in (on, off))
            spans = list(zip((end - start)[index].tolist(), first, stop))
            for mi, m in enumerate(min_durations):
                runs = tuple(union_runs((a, b) for length, a, b in spans if length >= m))
                if runs not in memo:
                    memo[runs] = counter.counts(runs)
                tp[r, ti, mi], fp[r, ti, mi] = memo[runs]

    subjects, idx = np.unique([str(rec["subject"]) for rec in recordings], return_inverse=True)
    sub_tp = np.zeros((len(subjects), n_t, n_m))
    sub_fp = np.zeros_like(sub_tp)
    np.add.at(sub_tp, idx, tp)
    np.add.at(sub_fp, idx, fp)
    sub_ref = np.bincount(idx, ref_true)[:, None, None]
    sub_sec = np.bincount(idx, seconds)[:, None, None]
    with warnings.catch_warnings():  # all-NaN grid points are expected (no seizure, no false alarm)
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = {k: np.nanmean(v, axis=0) for k, v in timescoring_scores(sub_tp, sub_fp, sub_ref, sub_sec).items()}

    f1 = np.where(np.isnan(mean["f1"]), -np.inf, mean["f1"])
    best_i, best_j = _pick(f1, thresholds, min_durations, ties)
    pick = {k: _none(v[best_i, best_j]) for k, v in mean.items()}
    return {
        "threshold": thresholds[best_i],
        "min_duration": min_durations[best_j],
        "smoothing": int(smoothing),
        "merge_gap": float(merge_gap),
        **pick,
        "n_recordings": n_rec,
        "n_subjects": len(subjects),
        "grid": [{"threshold": t, "min_duration": m, "f1": _none(mean["f1"][i, j]),
                  "sensitivity": _none(mean["sensitivity"][i, j]), "fp_per_24h": _none(mean["fp_per_24h"][i, j])}
                 for i, t in enumerate(thresholds) for j, m in enumerate(min_durations)],
    }


def _pick(f1: np.ndarray, thresholds: list[float], min_durations: list[float], ties: str) -> tuple[int, int]:
    """Grid indices of the chosen setting among those with the best F1 (see :func:`tune`)."""
    best = f1.max()
    tied = np.isinf(f1) if np.isinf(best) else f1 >= best - 1e-12
    if ties == "conservative" or np.isinf(best):
        return max(zip(*np.nonzero(tied)), key=lambda ij: (thresholds[ij[0]], min_durations[ij[1]]))
    rows = sorted(np.flatnonzero(tied.any(axis=1)), key=lambda i: thresholds[i])
    i = rows[(len(rows) - 1) // 2]
    cols = sorted(np.flatnonzero(tied[i]), key=lambda j: min_durations[j])
    return int(i), int(cols[(len(cols) - 1) // 2])


def _none(x: float) -> float | None:
    x = float(x)
    return x if np.isfinite(x) else None


def tune_alarm(recordings: Sequence[dict[str, Any]], *, max_fp_per_24h: float, merge_gap: float,
               smoothings: Sequence[int] = ALARM_SMOOTHINGS, thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
               min_durations: Sequence[float] = DEFAULT_MIN_DURATIONS, lookahead: float = 0.0) -> dict[str, Any]:
    """The alarm operating point: threshold, smoothing and minimum duration that raise the alarm soonest
    while false alarms stay at most ``max_fp_per_24h`` (SzCORE's count, averaged per subject, as :func:`tune`).

    ``recordings`` as for :func:`tune` (``probs``: the detection probabilities). "Soonest" is the median, over
    every validation seizure, of the delay from its annotated onset to the alarm (:func:`alarm_times`: signal
    needed, ``lookahead`` included), a missed seizure counting as an alarm never raised; an alarm raised before
    the onset (an event already under way) counts as 0 s, so that early false alarms are not rewarded. A
    setting that misses half the seizures therefore cannot win on speed. Ties: more seizures detected, then
    fewer false alarms, then the higher threshold. Where no setting meets the false-alarm bound, the one with
    the fewest false alarms (then the soonest) is returned with ``constraint_met`` False.
    """
    from ..evaluation.metrics import seizure_latencies

    if not recordings:
        raise ValueError("tune_alarm needs recordings")
    candidates = []
    for k in smoothings:
        grid = tune(recordings, thresholds=thresholds, min_durations=min_durations, smoothing=int(k),
                    merge_gap=merge_gap)["grid"]
        for point in grid:
            settings = {"threshold": point["threshold"], "min_duration": point["min_duration"],
                        "merge_gap": float(merge_gap), "smoothing": int(k)}
            delays = []
            for rec in recordings:
                args = (rec["onsets"], rec["probs"], float(rec["window_duration"]), float(rec["recording_duration"]))
                events = probabilities_to_events(*args, **settings)
                alarms = alarm_times(*args, **settings, lookahead=lookahead)
                delays += [np.inf if t is None else max(t, 0.0)
                           for t in seizure_latencies(rec["seizures"], events, alarms)]
            delays = np.asarray(delays, dtype=float)
            fp = point["fp_per_24h"] if point["fp_per_24h"] is not None else 0.0
            candidates.append({**settings, "latency_median_s": float(np.median(delays)) if delays.size else np.inf,
                               "detected": int(np.isfinite(delays).sum()), "n_seizures": int(delays.size),
                               "sensitivity": point["sensitivity"], "fp_per_24h": fp, "f1": point["f1"]})
    feasible = [c for c in candidates if c["fp_per_24h"] <= max_fp_per_24h + 1e-9]
    if feasible:
        best = min(feasible, key=lambda c: (c["latency_median_s"], -c["detected"], c["fp_per_24h"], -c["threshold"]))
    else:
        best = min(candidates, key=lambda c: (c["fp_per_24h"], c["latency_median_s"], -c["detected"], -c["threshold"]))
    return {**best, "latency_median_s": _none(best["latency_median_s"]), "max_fp_per_24h": float(max_fp_per_24h),
            "constraint_met": bool(feasible), "lookahead_s": float(lookahead)}
