"""Live input: ``neurocare-bids stream --lsl NAME --model MODEL`` runs the streaming detector on a Lab Streaming
Layer (LSL) EEG stream and pushes every alarm and event to an LSL marker outlet.

The samples are pulled with :class:`mne_lsl.lsl.StreamInlet` (the inlet that :class:`mne_lsl.stream.StreamLSL`
wraps) rather than through ``StreamLSL``'s ring buffer: the detector needs every sample exactly once and each
sample's timestamp, to notice gaps and clock jumps, which a buffer read by window length would hide. The channels
are mapped by name onto the model's montage (:meth:`TrainedModel.montage_for`, as for a file) and converted to µV
from the units the stream declares; the detector itself (:class:`StreamingDetector`) is the file replay's.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import tempfile
import time
from pathlib import Path

import numpy as np

from ..errors import DataError, NoInputError, UsageError
from ..io.signal_reader import _TO_MICROVOLT
from .apply import load_model
from .streaming import (DetectedEvent, NonFiniteSamples, StreamingDetector, describe_latency, event_record,
                        format_event, report_channel_changes, say, stream_latency)

log = logging.getLogger("neurocare")

DEFAULT_ALARM_OUTLET = "neurocare-alarms"
POLL_SECONDS = 0.05  # sleep between empty pulls
# liblsl sends pushed samples asynchronously: an outlet destroyed at once can drop its last markers before a
# connected consumer has them (seen under load). With consumers connected, the outlet lives this long after the end.
MARKER_LINGER_SECONDS = 1.0
GAP_TOLERANCE = 0.5  # seconds of timestamp discrepancy tolerated as jitter before a gap or jump is reported
# LSL's unit names and mne-lsl's power-of-ten multipliers of volts ("-6": µV), to µV
_LSL_UNITS = {"microvolts": 1.0, "millivolts": 1e3, "volts": 1e6, "nanovolts": 1e-3,
              "0": 1e6, "-3": 1e3, "-6": 1.0, "-9": 1e-3}


def quiet_liblsl() -> None:
    """liblsl prints INFO lines (and a reconnection message per lost stream) on stderr; without a configuration
    of the user's own (``LSLAPICFG`` or a standard place), give it one that lets only fatal errors through: the
    detector reports what happens to the stream in its own one-line messages."""
    standard = [Path("lsl_api.cfg"), Path.home() / "lsl_api" / "lsl_api.cfg", Path("/etc/lsl_api/lsl_api.cfg")]
    if os.environ.get("LSLAPICFG") or any(p.is_file() for p in standard):
        return
    path = Path(tempfile.gettempdir()) / f"neurocare-bids-lsl_api-{os.getuid()}.cfg"
    if not path.is_file():
        path.write_text("[log]\nlevel = -3\n", encoding="utf-8")
    os.environ["LSLAPICFG"] = str(path)


def microvolt_scale(units: list[str | None] | None, n_channels: int) -> np.ndarray:
    """Per-channel factors to µV from the stream's declared units; µV (LSL's convention for EEG) when none."""
    if not units:
        return np.ones(n_channels)
    scale = []
    for unit in units:
        key = (unit or "").strip().lower().replace(" ", "")
        scale.append(_LSL_UNITS.get(key, _TO_MICROVOLT.get(key, 1.0)))
    return np.asarray(scale, dtype=float)


class _Stop:
    """SIGINT and SIGTERM end the loop (then the detector is flushed) instead of unwinding the program."""

    def __init__(self):
        self.reason: str | None = None
        self._previous = {}

    def __enter__(self):
        for sig, name in ((signal.SIGINT, "SIGINT"), (signal.SIGTERM, "SIGTERM")):
            self._previous[sig] = signal.signal(sig, lambda *_, name=name: self._set(f"stopped by {name}"))
        return self

    def _set(self, reason: str) -> None:
        self.reason = self.reason or reason

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def stream_lsl(args) -> int:
    """``neurocare-bids stream --lsl NAME --model MODEL``: detect seizures on a live LSL stream until it stops."""
    if args.lsl_timeout <= 0 or args.calibration < 0:
        raise UsageError("--lsl-timeout must be positive, --calibration at least 0")
    quiet_liblsl()
    try:
        from mne_lsl.lsl import StreamInfo, StreamInlet, StreamOutlet, resolve_streams
    except ImportError:
        raise UsageError("live input needs mne-lsl: pip install 'mne-lsl>=1.10,<2'") from None
    model = load_model(args.model, args.engine)  # a bad model folder fails before any waiting
    model.use_operating_point(args.operating_point)
    name = args.lsl
    found = [s for s in resolve_streams(timeout=args.lsl_timeout, name=name) if s.dtype != "string"]
    if not found:
        raise NoInputError(f"no LSL stream named '{name}' with numeric samples appeared within "
                           f"{args.lsl_timeout:g} s")
    if len({s.uid for s in found}) > 1:
        log.warning("%d LSL streams are named '%s'; using the one from %s", len(found), name, found[0].hostname)
    # recover (liblsl's default): a lost connection is retried, and the samples already received are all read
    # before the silence ends the loop (an inlet that raised LostError instead would drop them)
    inlet = StreamInlet(found[0], max_buffered=360)
    try:
        inlet.open_stream(timeout=args.lsl_timeout)
    except Exception as exc:  # liblsl's timeout or lost-stream errors: it went away between resolving and opening
        raise NoInputError(f"LSL stream '{name}' could not be opened within {args.lsl_timeout:g} s "
                           f"({type(exc).__name__})") from None
    sinfo = inlet.get_sinfo()
    ch_names, sfreq = sinfo.get_channel_names(), float(sinfo.sfreq)
    if not ch_names or None in ch_names:
        raise DataError(f"LSL stream '{name}' does not name its channels; the model's montage needs them")
    if sfreq <= 0:
        raise DataError(f"LSL stream '{name}' has an irregular sampling rate; the detector needs a nominal one")
    try:
        detector = StreamingDetector(model, ch_names, sfreq, line_freq=args.line_freq, calibration=args.calibration)
    except DataError as exc:
        raise DataError(f"LSL stream '{name}': {exc}") from None
    scale = microvolt_scale(sinfo.get_channel_units(), len(ch_names))
    outlet = StreamOutlet(StreamInfo(args.alarm_outlet, "Markers", 1, 0.0, "string", f"neurocare-bids-{os.getpid()}"))
    say(args, {"kind": "start", "stream": name, "channels": len(ch_names), "sfreq": sfreq,
               "alarm_outlet": args.alarm_outlet, **{k: round(v, 3) for k, v in stream_latency(detector).items()}},
        f"LSL stream '{name}': {len(ch_names)} channels at {sfreq:g} Hz; model {model.folder} ({model.engine} "
        f"engine); {describe_latency(detector)}; alarms pushed to LSL outlet '{args.alarm_outlet}'")

    def report(events: list[DetectedEvent]) -> None:
        for event in events:
            record = event_record(event, time.time())
            outlet.push_sample([json.dumps(record)])
            say(args, record, format_event(event))

    last_ts, last_data = None, time.monotonic()
    non_finite = NonFiniteSamples(f"LSL stream '{name}'", sfreq)
    with _Stop() as stop:
        try:
            while stop.reason is None:
                data, stamps = inlet.pull_chunk(timeout=0.0)
                if len(stamps) == 0:
                    if time.monotonic() - last_data > args.lsl_timeout:
                        stop.reason = f"LSL stream '{name}' silent for {args.lsl_timeout:g} s"
                    else:
                        time.sleep(POLL_SECONDS)
                    continue
                last_data = time.monotonic()
                _check_timing(name, np.asarray(stamps, dtype=float), last_ts, sfreq, detector.n_in)
                last_ts = float(stamps[-1])
                data = non_finite.zeroed(np.asarray(data, dtype=float) * scale, detector.n_in)
                report(detector.feed(data))
                report_channel_changes(args, detector, f"LSL stream '{name}'")
        finally:  # whatever ends the loop, the events already detected (and the open one) are reported
            report(detector.flush())
            inlet.close_stream()
    seconds = detector.n_in / sfreq
    say(args, {"kind": "end", "reason": stop.reason, "seizures": len(detector.events),
               "signal_seconds": round(seconds, 3)},
        f"end of stream: {stop.reason}: {len(detector.events)} seizure(s) in {seconds:.1f} s of signal")
    if outlet.has_consumers:  # let the last alarms and events reach them (see MARKER_LINGER_SECONDS)
        time.sleep(MARKER_LINGER_SECONDS)
    del outlet
    return 0


def _check_timing(name: str, stamps: np.ndarray, last: float | None, sfreq: float, n_before: int) -> None:
    """Warn (and go on) where the timestamps jump forward (samples lost) or backward (the source's clock moved)."""
    steps = np.diff(stamps, prepend=stamps[0] if last is None else last) - 1.0 / sfreq
    for i in np.flatnonzero(np.abs(steps) > GAP_TOLERANCE):
        at = (n_before + i) / sfreq
        if steps[i] > 0:
            log.warning("LSL stream '%s': gap of %.2f s in the timestamps at %.1f s of signal (samples lost?); "
                        "detection goes on as if the signal were continuous", name, steps[i], at)
        else:
            log.warning("LSL stream '%s': the timestamps jumped back %.2f s at %.1f s of signal (the source's "
                        "clock was reset?); detection goes on", name, -steps[i], at)
