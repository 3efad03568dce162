"""Streaming (real-time) detection: feed samples as they arrive, get seizure events as soon as they are known.

:class:`StreamingDetector` runs the batch pipeline (:mod:`neurocare_bids.detection.apply`) incrementally:

* **Filtering.** The batch filters are zero-phase (forward-backward), so an output sample depends on
  input after it. Output sample ``s`` is computed once the input reaches ``s`` plus the block margin of
  the participant level (``SignalPlan.margin``: the time the slowest filter pole needs to decay below
  1e-9: 17.8 s for the default 0.5 Hz high-pass at 128 Hz) plus the resampling filter's reach. With that
  look-ahead, ``preprocess.process_block`` gives the very samples batch mode computes (float rounding
  aside). A shorter ``lookahead`` lowers the latency and treats the newest samples as the recording's
  end, which changes the last seconds of each block a little. A model trained with
  ``preprocessing.causal`` filters forward only, carrying the filter state from chunk to chunk as batch
  mode carries it from block to block: no look-ahead (only the resampling filter's reach), the same samples.
* **Z-score.** Batch mode uses each channel's mean and standard deviation over the whole recording,
  which a live stream does not have. Each window is z-scored with the statistics of everything received
  up to its end (running estimate), after an initial ``calibration`` period (default 60 s) during which
  windows wait; so the first windows of a stream are scored against a shorter history than in batch
  mode. Given the whole recording's ``channel_mean`` / ``channel_std`` (e.g. from an earlier recording
  of the same setup, or from batch mode), the detector uses them instead and reproduces batch mode.
* **Post-processing.** The same smoothing, threshold, merging and minimum duration as
  :func:`postprocess.probabilities_to_events`, as a state machine over the windows in time order: a
  seizure is reported (``final=False``) as soon as it has lasted ``min_duration``, and reported again,
  complete (``final=True``), once ``merge_gap`` has passed without another positive window. The final
  events equal batch mode's events.
* **Centring** (``PostProcessing.centre``). Batch mode centres a recording's probabilities on the median
  log-odds of all its windows. The stream centres each window on the median of the windows up to it, after
  ``calibration`` seconds of windows (which wait, and are centred on their common median). Given batch
  mode's value (``probability_offset``, the ``ProbabilityCentring.MedianLogOdds`` of its timeseries
  sidecar), the detector uses it and reproduces batch mode.
* **Electrodes.** Batch mode judges each recorded channel over the whole recording (flat, clipped). The stream
  judges the montage's recorded channels on every 10 s of signal and reports changes: a channel turning flat or
  clipped mid-stream (an electrode that came loose or saturates), and turning back (``take_channel_changes``).

Every event carries ``detected_at``: how much of the stream (seconds of input) had to arrive before it
could be reported, whatever the chunk sizes; ``latency = detected_at - onset`` (for ``final=False``).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UsageError
from ..preprocessing.filters import RunningStats, SignalPlan, causal_filter, process_block
from ..preprocessing.montage import Montage
from ..preprocessing.participant import zscore_scale
from ..preprocessing.quality import ChannelWatch
from .apply import TrainedModel, load_model, zscore_windows
from .postprocess import centre_probabilities, event_settings, log_odds

DEFAULT_CALIBRATION = 60.0  # seconds of signal collected before the first window is scored (running z-score)
MIN_STEP_SECONDS = 0.25  # output filtered at least this much at a time (fewer, larger filter calls)


@dataclass
class DetectedEvent:
    """A seizure seen by the streaming detector; times in seconds from the start of the stream."""

    onset: float
    duration: float  # so far, when ``final`` is False
    confidence: float  # mean window probability from its first positive window to its last (so far)
    detected_at: float  # seconds of input that had to arrive before this report was possible
    final: bool  # False: alarm for an ongoing seizure; True: the complete event (as batch mode reports it)

    @property
    def offset(self) -> float:
        return self.onset + self.duration

    @property
    def latency(self) -> float:
        """Seconds from the event's onset to its report."""
        return self.detected_at - self.onset


class EventTracker:
    """:func:`postprocess.probabilities_to_events` over windows arriving one at a time.

    ``push(probability, ready_at)`` adds the next window's raw probability (``ready_at``: stream time at
    which it was known); ``finish(recording_duration)`` closes the stream. Both return new reports.
    """

    def __init__(self, window_duration: float, window_stride_samples: int, sfreq: float, *, threshold: float,
                 min_duration: float, merge_gap: float, smoothing: int):
        self.window_duration, self.stride, self.sfreq = float(window_duration), window_stride_samples, sfreq
        self.threshold, self.min_duration, self.merge_gap = threshold, min_duration, merge_gap
        self.k = max(1, int(smoothing))
        self.before, self.after = (self.k - 1) // 2, self.k // 2
        self.raw: list[float] = []
        self.ready: list[float] = []
        self.smoothed: list[float] = []
        self.events: list[DetectedEvent] = []
        self._group: dict | None = None  # the open event: first, last window; start, end seconds; alarmed
        self._in_run = False

    def onset(self, i: int) -> float:
        return i * self.stride / self.sfreq  # as batch mode computes window onsets

    def push(self, probability: float, ready_at: float) -> list[DetectedEvent]:
        self.raw.append(float(probability))
        self.ready.append(float(ready_at))
        reports = []
        while len(self.smoothed) + self.after < len(self.raw):  # window i's smoothing window is complete
            reports += self._settle(len(self.smoothed), end=None)
        return reports

    def finish(self, recording_duration: float) -> list[DetectedEvent]:
        """Settle the last windows (smoothing over the windows that exist, as batch mode) and close."""
        reports = []
        while len(self.smoothed) < len(self.raw):
            reports += self._settle(len(self.smoothed), end=len(self.raw))
        if self._group is not None:  # known when the stream ended
            reports += self._close(self._group, recording_duration, recording_duration)
            self._group = None
        return reports

    def _smoothed(self, i: int, end: int | None) -> float:
        """The centred moving average of window ``i`` with the arithmetic of ``postprocess.smooth``."""
        if self.k <= 1:
            return self.raw[i]
        n = len(self.raw) if end is None else end
        lo, hi = i - self.before, i + self.after + 1
        values = np.array([self.raw[j] if 0 <= j < n else 0.0 for j in range(lo, hi)])
        present = np.array([1.0 if 0 <= j < n else 0.0 for j in range(lo, hi)])
        ones = np.ones(self.k)
        total = np.convolve(values, ones, mode="valid")[0]
        count = np.convolve(present, ones, mode="valid")[0]
        return float(total / count)

    def _settle(self, i: int, end: int | None) -> list[DetectedEvent]:
        value = self._smoothed(i, end)
        self.smoothed.append(value)
        # the value is known once the last window it averages is known
        known = self.ready[min(i + self.after, len(self.ready) - 1)]
        reports = []
        onset = self.onset(i)
        group = self._group
        if group is not None and not self._in_run:
            gap = onset - group["end"]
            if gap > 0 and gap >= self.merge_gap:
                reports += self._close(group, known, None)
                group = self._group = None
        positive = value >= self.threshold
        if positive:
            if group is None:
                group = self._group = {"first": i, "last": i, "start": onset, "end": onset + self.window_duration,
                                       "alarmed": False}
            group["last"] = i
            group["end"] = max(group["end"], onset + self.window_duration)
            if not group["alarmed"] and group["end"] - group["start"] >= self.min_duration:
                group["alarmed"] = True
                reports.append(DetectedEvent(group["start"], group["end"] - group["start"],
                                             self._confidence(group), known, False))
        self._in_run = positive
        return reports

    def _confidence(self, group: dict) -> float:
        first, last = group["first"], group["last"]
        raw = np.append(np.asarray(self.raw[first:last + 1], dtype=float), 0.0)
        return float(np.add.reduceat(raw, [0, last + 1 - first])[0] / (last + 1 - first))

    def _close(self, group: dict, known: float, recording_duration: float | None) -> list[DetectedEvent]:
        start, end = group["start"], group["end"]
        if recording_duration is not None:  # batch mode clips events to the recording
            start = min(max(start, 0.0), recording_duration)
            end = min(max(end, 0.0), recording_duration)
        if end <= start or end - start < self.min_duration:
            return []
        event = DetectedEvent(start, end - start, self._confidence(group), known, True)
        self.events.append(event)
        return [event]


class StreamingDetector:
    """Seizure detection on a live stream of EEG samples, with a trained model folder.

    ``ch_names`` and ``sfreq`` describe the incoming samples (as in the recording's header); ``feed(chunk)``
    takes ``(n_samples, n_channels)`` arrays in that channel order, in µV, and returns the events that
    became known; ``flush()`` ends the stream. See the module docstring for what differs from batch mode.
    """

    def __init__(self, model: TrainedModel | str | Path, ch_names: list[str], sfreq: float, *,
                 line_freq: float | None = None, calibration: float = DEFAULT_CALIBRATION,
                 channel_mean=None, channel_std=None, lookahead: float | None = None,
                 allow_missing_channels: bool = False, probability_offset: float | None = None):
        self.model = model if isinstance(model, TrainedModel) else load_model(model)
        self.ch_names, self.sfreq_in = list(ch_names), float(sfreq)
        self.montage: Montage = self.model.montage_for(self.ch_names, allow_missing_channels)
        self.plan: SignalPlan = self.model.plan_for(self.sfreq_in, line_freq)
        plan = self.plan
        self.lookahead = (plan.lookahead if lookahead is None
                          else min(plan.lookahead, max(0, round(lookahead * plan.sfreq_out))))
        self._filter = causal_filter(plan)  # a causal model's filter state, carried from chunk to chunk
        n_ch = len(self.montage.names)
        if (channel_mean is None) != (channel_std is None):
            raise UsageError("give both channel_mean and channel_std, or neither")
        self.fixed_stats = channel_mean is not None
        if self.fixed_stats:
            mean, std = np.asarray(channel_mean, float), np.asarray(channel_std, float)
            if mean.shape != (n_ch,) or std.shape != (n_ch,):
                raise UsageError(f"channel_mean and channel_std need {n_ch} values (the model's channels)")
            self._fixed = (mean.astype(np.float32), zscore_scale(std).astype(np.float32))
        if not self.model.preprocessing.zscore:
            self.fixed_stats = True
            self._fixed = (np.zeros(n_ch, np.float32), np.ones(n_ch, np.float32))
        self.calibration = 0 if self.fixed_stats else max(int(round(calibration * plan.sfreq_out)),
                                                          self.model.window_samples)
        post = self.model.postprocessing
        self.tracker = EventTracker(self.model.window_duration, self.model.stride_samples, plan.sfreq_out,
                                    **event_settings(post))
        # Probability centring (PostProcessing.centre): on the given offset (batch mode's median log-odds), or on
        # the median log-odds of the windows so far, once `calibration` seconds of windows exist.
        self._centre = bool(post.get("centre"))
        self._offset = None if probability_offset is None else float(probability_offset)
        self._warmup = max(1, int(calibration * plan.sfreq_out) // self.model.stride_samples)
        self._logits: list[float] = []  # sorted log-odds of the windows centred so far
        self._held: list[tuple[float, float]] = []  # (probability, ready) of windows waiting for the warm-up
        self._model_probs: list[float] = []
        # input: picked channels (channels x samples) from absolute sample `_in_start`
        self._in = np.zeros((len(self.montage.picks), 0))
        self._in_start = 0
        self.n_in = 0
        # output: filtered montage channels (samples x channels, float32) from absolute sample `_out_start`
        self._out = np.zeros((0, n_ch), np.float32)
        self._out_start = 0
        self.n_out = 0
        self._stats = RunningStats(n_ch)
        self._stats_upto = 0
        self.channel_watch = ChannelWatch([self.ch_names[i] for i in self.montage.picks], self.sfreq_in)
        self._channel_changes: list[dict] = []
        self._next_window = 0
        self._done = False

    # ------------------------------------------------------------------ public API
    @property
    def events(self) -> list[DetectedEvent]:
        """The complete events so far (``final=True``), as batch mode reports them."""
        return list(self.tracker.events)

    @property
    def probabilities(self) -> tuple[np.ndarray, np.ndarray]:
        """``(onsets, probabilities)`` of the windows scored so far (the model's output, before centring)."""
        n = len(self._model_probs)
        return np.arange(n) * self.model.stride_samples / self.plan.sfreq_out, np.asarray(self._model_probs)

    @property
    def centring_offset(self) -> float | None:
        """The log-odds the windows are centred on: the given offset, or the median of the windows so far
        (None before the warm-up, or when the model's post-processing does not centre)."""
        if not self._centre:
            return None
        if self._offset is not None:
            return self._offset
        return _median(self._logits) if self._logits else None

    def feed(self, chunk: np.ndarray) -> list[DetectedEvent]:
        """Add ``(n_samples, n_channels)`` samples; return the events that became known."""
        if self._done:
            raise UsageError("the stream was flushed; start a new StreamingDetector")
        chunk = np.asarray(chunk, dtype=float)
        if chunk.ndim != 2 or chunk.shape[1] != len(self.ch_names):
            raise UsageError(f"feed() takes (n_samples, {len(self.ch_names)}) arrays; got {chunk.shape}")
        if not np.isfinite(chunk).all():
            raise UsageError("feed() got non-finite samples")
        picked = chunk[:, self.montage.picks].T
        self._channel_changes += self.channel_watch.update(picked)
        self._in = np.concatenate([self._in, picked], axis=1)
        self.n_in += len(chunk)
        return self._advance(final=False)

    def flush(self) -> list[DetectedEvent]:
        """End of the stream: process the last samples (as batch mode treats a recording's end)."""
        if self._done:
            return []
        reports = self._advance(final=True)
        reports += self._push([], [], final=True)  # windows still waiting for the centring warm-up
        self._done = True
        return reports + self.tracker.finish(self.n_in / self.sfreq_in)

    def take_channel_changes(self) -> list[dict]:
        """The recorded channels that turned flat or clipped, or back to ok, since the last call
        (:class:`~neurocare_bids.preprocessing.quality.ChannelWatch`: ``channel``, ``status``, ``since``,
        ``detected_at``, ``detail``)."""
        changes, self._channel_changes = self._channel_changes, []
        return changes

    def input_needed(self, n_out: int) -> int:
        """Input samples that must have arrived before output samples ``[0, n_out)`` are final."""
        plan = self.plan
        edge = n_out + self.lookahead
        if plan.fir is None:
            return edge
        return -(-(edge - 1) * plan.down // plan.up) + plan.fir_margin_in + 1

    # ------------------------------------------------------------------ internals
    def _available_out(self) -> int:
        """Output samples computable now with the full look-ahead (the inverse of ``input_needed``)."""
        plan = self.plan
        if plan.fir is None:
            edge = self.n_in
        else:
            edge = (self.n_in - plan.fir_margin_in - 1) * plan.up // plan.down + 1
        return max(0, min(plan.n_out(self.n_in), edge - self.lookahead))

    def _read(self, start: int, stop: int) -> np.ndarray:
        return self._in[:, start - self._in_start:stop - self._in_start]

    def _advance(self, final: bool) -> list[DetectedEvent]:
        plan = self.plan
        stop = plan.n_out(self.n_in) if final else self._available_out()
        step = max(1, int(MIN_STEP_SECONDS * plan.sfreq_out))
        if stop > self.n_out and (final or stop - self.n_out >= step):
            y = self.montage.matrix @ process_block(self._read, self.n_in, plan, self.n_out, stop, self._filter)
            self._out = np.concatenate([self._out, y.T.astype(np.float32)])
            self.n_out = stop
            self._trim_input()
        return self._score(final)

    def _trim_input(self) -> None:
        plan = self.plan
        ea = max(0, self.n_out - (0 if plan.causal else plan.margin))  # causal: the state replaces the margin
        if plan.fir is None:
            first = ea
        else:  # process_block's first input sample for a block starting at n_out
            first = max(0, (ea * plan.down // plan.up - plan.fir_margin_in) // plan.down * plan.down)
        if first > self._in_start:
            self._in = self._in[:, first - self._in_start:]
            self._in_start = first

    def _score(self, final: bool) -> list[DetectedEvent]:
        win, stride = self.model.window_samples, self.model.stride_samples
        reports: list[DetectedEvent] = []
        first = self._next_window
        last = first
        while last * stride + win <= self.n_out:
            last += 1
        if last == first:
            return reports
        if not self.fixed_stats and self.n_out < self.calibration and not final:
            return reports  # still calibrating: these windows wait
        # when each window's score could first be known (at the latest: now, which matters at the stream's end)
        ready = [min(self.input_needed(k * stride + win), self.n_in) / self.sfreq_in for k in range(first, last)]
        if self.fixed_stats:
            mean32, scale32 = self._fixed
            segment = self._out[first * stride - self._out_start:(last - 1) * stride + win - self._out_start]
            windows = zscore_windows(segment, mean32, scale32, self.model, last - first)
        else:
            windows = np.empty((last - first, win, self._out.shape[1]), np.float32)
            # each window with the statistics of [0, max(its end, calibration)): independent of chunk sizes
            calibrated = min(self.calibration, self.n_out)
            for k in range(first, last):
                self._update_stats(max(k * stride + win, calibrated))
                mean32 = self._stats.mean.astype(np.float32)
                scale32 = zscore_scale(self._stats.std).astype(np.float32)
                segment = self._out[k * stride - self._out_start:k * stride + win - self._out_start]
                windows[k - first] = zscore_windows(segment, mean32, scale32, self.model, 1)[0]
            calibration_time = min(self.input_needed(calibrated), self.n_in) / self.sfreq_in
            ready = [max(r, calibration_time) for r in ready]
        probs = self.model.predict(windows)
        self._model_probs += [float(p) for p in probs]
        reports += self._push(probs, ready, final)
        self._next_window = last
        keep = last * stride if self.fixed_stats else min(last * stride, self._stats_upto)
        if keep > self._out_start:
            self._out = self._out[keep - self._out_start:]
            self._out_start = keep
        return reports

    def _push(self, probs, ready: list[float], final: bool) -> list[DetectedEvent]:
        """Hand the windows to the event tracker, centred as PostProcessing.centre asks."""
        reports: list[DetectedEvent] = []
        if not self._centre or self._offset is not None:
            if self._centre:
                probs = centre_probabilities(probs, self._offset)[0]
            for p, r in zip(probs, ready):
                reports += self.tracker.push(float(p), r)
            return reports
        self._held += list(zip((float(p) for p in probs), ready))
        if not self._held:
            return reports
        if not self._logits:
            if len(self._held) < self._warmup and not final:
                return reports  # warming up: these windows wait, as during the z-score calibration
            # the first windows together, on their common median (known when the last of them is)
            held, self._held = self._held, []
            self._logits = sorted(log_odds([p for p, _ in held]).tolist())
            known = max(r for _, r in held)
            centred, _ = centre_probabilities([p for p, _ in held], _median(self._logits))
            for q, (_, r) in zip(centred, held):
                reports += self.tracker.push(float(q), max(r, known))
            return reports
        held, self._held = self._held, []
        for p, r in held:  # then each window on the median of all windows up to it
            bisect.insort(self._logits, float(log_odds([p])[0]))
            reports += self.tracker.push(float(centre_probabilities([p], _median(self._logits))[0][0]), r)
        return reports

    def _update_stats(self, end: int) -> None:
        if end > self._stats_upto:
            block = self._out[self._stats_upto - self._out_start:end - self._out_start]
            self._stats.update(block.T.astype(np.float64))
            self._stats_upto = end


def _median(ordered: list[float]) -> float:
    n = len(ordered)
    return ordered[n // 2] if n % 2 else 0.5 * (ordered[n // 2 - 1] + ordered[n // 2])


def stream_latency(detector: StreamingDetector) -> dict:
    """When a seizure can be reported, in seconds after the start of its first seizure window, and the parts
    of that delay (``earliest``; no report comes before the ``calibration`` period has ended either)."""
    model, plan = detector.model, detector.plan
    post = model.postprocessing
    smoothing = (post["smoothing"] // 2) * model.window_stride
    parts = {"lookahead": detector.lookahead / plan.sfreq_out, "window": model.window_duration,
             "smoothing": smoothing, "min_duration": post["min_duration"],
             "calibration": 0.0 if detector.fixed_stats else detector.calibration / plan.sfreq_out,
             "resampling": 0.0 if plan.fir is None else plan.fir_margin_in / plan.sfreq_in}
    parts["earliest"] = (parts["lookahead"] + max(parts["window"], parts["min_duration"]) + smoothing
                         + parts["resampling"])
    return parts


def event_record(event: DetectedEvent, wall_clock: float) -> dict:
    """The JSON line (``stream --json``; the live marker too) of an alarm or event."""
    return {"kind": "event" if event.final else "alarm", "onset": round(event.onset, 4),
            "duration": round(event.duration, 4), "confidence": round(event.confidence, 4),
            "detected_at": round(event.detected_at, 4), "latency": round(event.latency, 4),
            "wall_clock": round(wall_clock, 3)}


class NonFiniteSamples:
    """Non-finite samples set to 0 before the detector, with one warning the first time: live input and the replay of
    a float file (BrainVision, EEGLAB) go on so (batch mode refuses such a recording)."""

    def __init__(self, source: str, sfreq: float):
        self.source, self.sfreq, self.warned = source, sfreq, False

    def zeroed(self, samples: np.ndarray, first: int) -> np.ndarray:
        """``samples`` (samples × channels, starting at sample ``first`` of the stream), non-finite ones set to 0."""
        finite = np.isfinite(samples)
        if finite.all():
            return samples
        if not self.warned:
            import logging

            at = (first + int(np.flatnonzero(~finite.all(axis=1))[0])) / self.sfreq
            logging.getLogger("neurocare").warning("%s: non-finite samples (at %.1f s of signal) are set to 0",
                                                   self.source, at)
            self.warned = True
        return np.nan_to_num(samples, nan=0.0, posinf=0.0, neginf=0.0)


def report_channel_changes(args, detector: StreamingDetector, source: str) -> None:
    """Each recorded channel of the montage that turned flat or clipped, or back to ok: a ``WARNING:`` line on
    stderr, and with ``--json`` an ``electrode`` record on stdout (``source``: the file's or stream's name)."""
    import json
    import logging
    import time

    for change in detector.take_channel_changes():
        state = f"is {change['status']}" if change["status"] != "ok" else "is ok again"
        logging.getLogger("neurocare").warning("%s: recorded channel %s %s from %.1f s of signal (%s)", source,
                                               change["channel"], state, change["since"], change["detail"])
        if args.json:
            print(json.dumps({"kind": "electrode", "channel": change["channel"], "status": change["status"],
                              "since": round(change["since"], 4), "detected_at": round(change["detected_at"], 4),
                              "wall_clock": round(time.time(), 3)}), flush=True)


def say(args, record: dict, text: str) -> None:
    """One line of the ``stream`` command on stdout: the JSON object with ``--json``, else the text."""
    import json

    print(json.dumps(record) if args.json else text, flush=True)


def describe_latency(detector: StreamingDetector) -> str:
    """:func:`stream_latency` in words, for the first line of the ``stream`` command."""
    parts = stream_latency(detector)
    point = {"alarm": "alarm operating point; ", "f1": "F1 operating point; "}.get(detector.model.operating_point, "")
    return (f"{point}a seizure is reported {parts['earliest']:.1f} s after its first window starts (filter look-ahead "
            f"{parts['lookahead']:.1f} s{' (causal filters)' if detector.plan.causal else ''} + the longer of "
            f"window {parts['window']:g} s and minimum duration {parts['min_duration']:g} s + smoothing "
            f"{parts['smoothing']:g} s)"
            + (f", not before {parts['calibration']:g} s of calibration" if parts["calibration"] else ""))


# ---------------------------------------------------------------------- command line
def open_recording_file(path: Path, notes: list[str], through_mne: bool = False):
    """A plain EEG file (no BIDS dataset needed) for block reads: EDF/BDF directly (unless ``through_mne``), other
    formats via MNE."""
    from ..errors import DataError, NoInputError
    from ..io.signal_reader import EDFSource, MNESource, read_edf_header

    if path.is_symlink() and not path.exists():  # a DataLad/git-annex file whose content was never fetched
        from ..io.bids_input import NOT_FETCHED

        raise NoInputError(f"{path.name}: broken symbolic link ({NOT_FETCHED})")
    if not path.is_file():
        raise NoInputError(f"EEG file not found: {path}")
    if path.suffix.lower() in (".edf", ".bdf") and not through_mne:
        header = read_edf_header(path)
        if not header.reserved.upper().startswith(("EDF+D", "BDF+D")):
            return EDFSource(path, header, notes)
    import warnings

    import mne

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            raw = mne.io.read_raw(path, preload=False, verbose="error")
    except Exception as exc:  # MNE raises many kinds for unreadable files
        raise DataError(f"{path.name}: unreadable EEG file ({str(exc).strip().splitlines()[0][:200]})") from None
    return MNESource(raw, path.name)


def _sidecar(path: Path, notes: list[str]) -> dict:
    """The file's BIDS sidecar (``*_eeg.json`` next to it), or {} when there is none; one that cannot be read is a
    note (the replay goes on with the defaults)."""
    from ..io.bids_input import read_json, source_stem

    sidecar = path.with_name(f"{source_stem(path.name)}_eeg.json") if "_" in path.name else None
    if sidecar is None or not (sidecar.exists() or sidecar.is_symlink()):
        return {}
    meta, reason = read_json(sidecar)
    if reason is not None:
        notes.append(f"sidecar {sidecar.name} is unreadable: {reason}; mains frequency from --line-freq or the model")
    return meta if isinstance(meta, dict) else {}


def format_event(event: DetectedEvent) -> str:
    if event.final:
        return (f"[{event.detected_at:9.1f} s] seizure {event.onset:.1f}-{event.offset:.1f} s "
                f"({event.duration:.1f} s), confidence {event.confidence:.2f}")
    return (f"[{event.detected_at:9.1f} s] seizure detected: onset {event.onset:.1f} s, latency {event.latency:.1f} s, "
            f"confidence {event.confidence:.2f}")


def stream_file(args) -> int:
    """``neurocare-bids stream FILE --model MODEL``: replay a recording as if live; print each event as found."""
    import logging
    import time

    from ..errors import DataError
    from ..preprocessing.participant import check_sidecar_rate, mains_frequency

    if args.speed <= 0 or (args.chunk is not None and args.chunk <= 0) or args.calibration < 0:
        raise UsageError("--speed and --chunk must be positive, --calibration at least 0")
    notes: list[str] = []
    source = open_recording_file(args.file, notes)
    model = load_model(args.model, args.engine)
    model.use_operating_point(args.operating_point)
    sidecar = _sidecar(args.file, notes)
    line_freq = mains_frequency(sidecar, notes) or args.line_freq

    def detector_for(source) -> StreamingDetector:
        try:
            return StreamingDetector(model, source.ch_names, source.sfreq, line_freq=line_freq,
                                     calibration=args.calibration)
        except DataError as exc:
            raise DataError(f"{args.file.name}: {exc}") from None

    detector = detector_for(source)
    if hasattr(source, "can_read") and not source.can_read(detector.montage.picks):
        # as batch mode does: MNE brings every channel to the highest rate
        notes.append("montage channels recorded at different rates: read through MNE")
        source = open_recording_file(args.file, notes, through_mne=True)
        detector = detector_for(source)
    check_sidecar_rate(sidecar, source.sfreq, notes)
    for note in notes:  # what batch mode keeps in the output sidecar's Warnings
        logging.getLogger("neurocare").warning(note if note.startswith(f"{args.file.name}: ") else
                                               f"{args.file.name}: {note}")
    say(args, {"kind": "start", "file": args.file.name, "channels": len(source.ch_names), "sfreq": source.sfreq,
         **{k: round(v, 3) for k, v in stream_latency(detector).items()}},
        f"{args.file.name}: {len(source.ch_names)} channels at {source.sfreq:g} Hz, "
        f"{source.n_times / source.sfreq:.1f} s; model {model.folder} ({model.engine} engine); "
        f"{describe_latency(detector)}")

    def report(events: list[DetectedEvent]) -> None:
        for event in events:
            say(args, event_record(event, time.time()), format_event(event))

    chunk = max(1, round((args.chunk or (1.0 if args.realtime else 10.0)) * source.sfreq))
    # Only the model's channels are read (the others stay zero: the detector ignores them). A hospital export's
    # EKG or SpO2 at another rate cannot be read as blocks of the EEG's rate, and need not be.
    needed = sorted(set(detector.montage.picks))
    started = time.monotonic()
    non_finite = NonFiniteSamples(args.file.name, source.sfreq)
    try:
        for start in range(0, source.n_times, chunk):
            stop = min(source.n_times, start + chunk)
            data = np.zeros((len(source.ch_names), stop - start))
            data[needed] = source.read(needed, start, stop)
            samples = data.T if source.integer_samples else non_finite.zeroed(data.T, start)  # EDF/BDF: integers
            if args.realtime:  # the samples "arrive" once their time has come
                time.sleep(max(0.0, started + stop / source.sfreq / args.speed - time.monotonic()))
            report(detector.feed(samples))
            report_channel_changes(args, detector, args.file.name)
        report(detector.flush())
        if not detector.tracker.raw:  # as batch mode warns: "0 seizures" alone would read as a clean result
            logging.getLogger("neurocare").warning(
                "%s: recording (%.1f s) is shorter than one window (%g s): no windows", args.file.name,
                source.n_times / source.sfreq, model.window_duration)
        seconds = source.n_times / source.sfreq
        say(args, {"kind": "end", "reason": "end of file", "seizures": len(detector.events),
             "signal_seconds": round(seconds, 3)},
            f"end of stream: {len(detector.events)} seizure(s) in {seconds:.1f} s of signal (replayed in "
            f"{time.monotonic() - started:.1f} s)")
    except BrokenPipeError:  # the reader went away (`| head`): stop quietly, as command-line tools do
        import os
        import sys

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0
