"""From window probabilities to seizure events: centring, smoothing, threshold, merging, minimum duration.

The model scores overlapping windows; SzCORE scores events. The steps in between (smoothing,
threshold, merging, minimum duration) decide much of the event-level F1, so threshold and minimum
duration are tuned on the inner validation subjects with the scorer's own rules
(:mod:`neurocare_bids.evaluation.tuning`, :mod:`neurocare_bids.evaluation.metrics`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

# The post-processing settings probabilities_to_events takes (a PostProcessing dict also says whether to centre).
EVENT_SETTINGS = ("threshold", "min_duration", "merge_gap", "smoothing")
_CLIP = 1e-7  # probabilities are clipped to [_CLIP, 1 - _CLIP] before taking log-odds


def event_settings(post: dict) -> dict:
    """The keys of a PostProcessing dict that :func:`probabilities_to_events` takes."""
    return {key: post[key] for key in EVENT_SETTINGS}


def threshold_text(threshold: float) -> str:
    """A threshold as people read it: ``0.75``; above 0.95, with the decimals that tell it from 1 and its log-odds
    (``0.99995 (log-odds 9.9)``), since the tuning grid reaches 1 - 1e-7 and two decimals would print ``1.00``."""
    t = float(threshold)
    if t <= 0.95 or t >= 1.0:
        return f"{t:.2f}"
    decimals = int(np.ceil(-np.log10(1.0 - t))) + 1
    return f"{t:.{decimals}f} (log-odds {float(log_odds(t)):.1f})"


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


def as_intervals(events: Iterable) -> list[tuple[float, float]]:
    """``(onset, offset)`` pairs from pairs or from objects with ``onset`` and ``duration`` (Event).

    The offset is ``onset + duration`` in floating point, as epilepsy2bids computes it.
    """
    out = []
    for e in events:
        if hasattr(e, "onset"):
            out.append((float(e.onset), float(e.onset) + float(e.duration)))
        else:
            on, off = e
            out.append((float(on), float(off)))
    return out


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


def event_intervals(onsets: np.ndarray, smoothed: np.ndarray, raw: np.ndarray, window_duration: float,
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


def prepare_scores(onsets, probs, smoothing: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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
    onsets, smoothed, raw = prepare_scores(onsets, probs, smoothing)
    start, end, conf = event_intervals(onsets, smoothed, raw, float(window_duration),
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
    onsets, smoothed, _ = prepare_scores(onsets, probs, smoothing)
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
