"""Per-channel quality of the raw recording: flat, noisy and clipped electrodes, measured while reading.

The participant level reads every raw block once (pass 1). These statistics ride along at almost no
cost: the exact minimum and maximum of every block are already computed there, and everything else is
measured on short contiguous probes (``PROBE_LENGTH`` samples out of every ``PROBE_EVERY``, about 3 %
of the samples), so a 24-hour recording adds a few milliseconds, not a pass over the data.

* **flat**: the whole recording spans less than ``FLAT_RANGE`` µV, or its standard deviation is below
  ``FLAT_STD_UV`` (scalp EEG is tens of µV; a disconnected electrode shows only amplifier noise);
* **clipped**: at least ``CLIPPED_FRACTION`` of the probed samples sit exactly at the channel's own
  minimum or maximum over the recording (an amplifier or ADC rail: a continuous signal reaches its
  extremes once, a clipped one stays there);
* **noisy**: standard deviation or line length (mean absolute sample-to-sample difference: high
  frequencies, muscle, loose contacts) more than ``NOISY_RATIO`` times the median over the recording's
  other channels (a robust reference that one bad channel cannot move).

:class:`ChannelWatch` applies the flat and clipped criteria to every sample of each 10 s of a stream (``stream``),
reporting when a channel turns bad and when it recovers. Not the noisy one: over 10 s an ictal rhythm raises a
channel's amplitude and line length as a loose contact does.
"""

from __future__ import annotations

import numpy as np

PROBE_EVERY = 2048
PROBE_LENGTH = 64
FLAT_RANGE = 1e-6  # µV: far below any EEG (16-bit EDF quantisation is ~0.005 µV), far above float noise
FLAT_STD_UV = 0.5
CLIPPED_FRACTION = 1e-3
CLIPPED_MIN_SAMPLES = 4
NOISY_RATIO = 5.0

METHOD = (f"raw recorded channels in µV; standard deviation, line length (mean |Δ| between consecutive samples) "
          f"and the share of samples at the channel's own minimum or maximum, measured on {PROBE_LENGTH} of every "
          f"{PROBE_EVERY} samples; flat: range < {FLAT_RANGE:g} µV or std < {FLAT_STD_UV:g} µV; clipped: "
          f"≥ {CLIPPED_FRACTION:.1%} of samples at a rail; noisy: std or line length > {NOISY_RATIO:g}× the "
          "median channel")


def _probe(data: np.ndarray) -> tuple[np.ndarray, int]:
    """Short contiguous stretches of every channel, end to end (channels × samples, a compact copy),
    and the length of each stretch."""
    n = data.shape[1]
    if n < 2 * PROBE_EVERY:
        return np.ascontiguousarray(data), max(n, 1)
    count = n // PROBE_EVERY
    s0, s1 = data.strides
    stretches = np.lib.stride_tricks.as_strided(data, (data.shape[0], count, PROBE_LENGTH),
                                                (s0, PROBE_EVERY * s1, s1), writeable=False)
    return np.ascontiguousarray(stretches).reshape(data.shape[0], -1), PROBE_LENGTH


class RawChannelStats:
    """Accumulates the statistics of raw blocks (channels × samples, µV); blocks may be merged in any order."""

    def __init__(self, n_channels: int):
        self.low = np.full(n_channels, np.inf)
        self.high = np.full(n_channels, -np.inf)
        self.at_low = np.zeros(n_channels)
        self.at_high = np.zeros(n_channels)
        self.count = 0
        self.total = np.zeros(n_channels)
        self.squares = np.zeros(n_channels)
        self.steps = 0
        self.line = np.zeros(n_channels)

    def update(self, data: np.ndarray, every_sample: bool = False) -> None:
        """Add a block (channels × samples): its exact per-channel extremes, and the statistics of its probes (or of
        every sample)."""
        probe, stretch = (data, max(data.shape[1], 1)) if every_sample else _probe(data)
        if probe.shape[1] == 0:
            return
        low, high = data.min(axis=1), data.max(axis=1)
        other = RawChannelStats(len(data))
        other.low, other.high = low, high
        other.at_low = (probe == low[:, None]).sum(axis=1)
        other.at_high = (probe == high[:, None]).sum(axis=1)
        other.count = probe.shape[1]
        other.total = probe.sum(axis=1)
        other.squares = np.einsum("ij,ij->i", probe, probe)
        steps = np.diff(probe, axis=1)
        np.abs(steps, out=steps)
        other.steps = probe.shape[1] - probe.shape[1] // stretch
        other.line = steps.sum(axis=1) - steps[:, stretch - 1::stretch].sum(axis=1)  # not across stretches
        self.merge(other)

    def merge(self, other: RawChannelStats) -> None:
        if other.count == 0:
            return
        for side, better in (("low", np.less), ("high", np.greater)):
            mine, theirs = getattr(self, side), getattr(other, side)
            mine_count, theirs_count = getattr(self, f"at_{side}"), getattr(other, f"at_{side}")
            count = np.where(better(theirs, mine), theirs_count,
                             np.where(theirs == mine, mine_count + theirs_count, mine_count))
            setattr(self, f"at_{side}", count)
            setattr(self, side, np.where(better(theirs, mine), theirs, mine))
        self.count += other.count
        self.total = self.total + other.total
        self.squares = self.squares + other.squares
        self.steps += other.steps
        self.line = self.line + other.line

    def std(self) -> np.ndarray:
        n = max(self.count, 1)
        return np.sqrt(np.maximum(self.squares / n - (self.total / n) ** 2, 0.0))

    def flat_and_clipped(self, clipped_fraction: float = CLIPPED_FRACTION) -> tuple[np.ndarray, np.ndarray,
                                                                                     np.ndarray]:
        """Per channel: flat, clipped (at least ``clipped_fraction`` of the samples at a rail), and the share of
        samples at a rail."""
        span = self.high - self.low
        flat = (span < FLAT_RANGE) | (self.std() < FLAT_STD_UV)
        at_rail = self.at_low + np.where(span > 0, self.at_high, 0)
        clipped = ~flat & (at_rail >= max(CLIPPED_MIN_SAMPLES, clipped_fraction * self.count))
        return flat, clipped, at_rail / max(self.count, 1)

    def summary(self, names: list[str]) -> dict:
        """The sidecar's ``ChannelQuality``: per-channel values, and which channels are flagged and why."""
        std, line = self.std(), self.line / max(self.steps, 1)
        flat, clipped, at_rail = self.flat_and_clipped()
        noisy = np.zeros(len(names), dtype=bool)
        good = ~flat
        if good.sum() >= 3:
            for value in (std, line):
                reference = np.median(value[good])
                noisy |= good & (value > NOISY_RATIO * reference)
        channels = []
        for i, name in enumerate(names):
            status = [s for s, mask in (("flat", flat), ("clipped", clipped), ("noisy", noisy)) if mask[i]]
            channels.append({"Name": name, "Min": _r(self.low[i]), "Max": _r(self.high[i]), "Std": _r(std[i]),
                             "LineLength": _r(line[i]), "ClippedFraction": _r(at_rail[i]),
                             "Status": status or ["ok"]})
        return {"Method": METHOD, "Channels": channels,
                "Flat": [names[i] for i in np.flatnonzero(flat)],
                "Clipped": [names[i] for i in np.flatnonzero(clipped)],
                "Noisy": [names[i] for i in np.flatnonzero(noisy)]}


def _r(value: float) -> float | None:
    value = float(value)
    return round(value, 6) if np.isfinite(value) else None


def channel_warnings(summary: dict, low: np.ndarray, high: np.ndarray) -> list[str]:
    """One line per recorded channel that is flat, clipped or noisy, from :meth:`RawChannelStats.summary` and
    the exact per-channel minimum / maximum over the whole recording (``RawChannelStats.low`` / ``high``; the
    summary's are rounded), the same lines in every mode."""
    warnings = []
    for i, channel in enumerate(summary["Channels"]):
        name, status = channel["Name"], channel["Status"]
        constant = high[i] - low[i] < FLAT_RANGE
        if constant or "flat" in status:
            verb = "is flat" if constant else "carries almost no signal"
            warnings.append(f"recorded channel {name} {verb} ({flat_level(low[i], high[i], channel['Std'])}): "
                            "check the electrode")
        if "clipped" in status:
            warnings.append(f"recorded channel {name} is clipped ({channel['ClippedFraction']:.1%} of samples at "
                            "its minimum or maximum)")
        if "noisy" in status:
            warnings.append(f"recorded channel {name} is noisy (standard deviation {channel['Std']:.3g} µV, line "
                            f"length {channel['LineLength']:.3g} µV per sample; over {NOISY_RATIO:g}x the median "
                            "channel)")
    return warnings


def flat_level(low: float, high: float, std: float) -> str:
    """How a flat channel is worded, in every mode: a constant one by its value (its standard deviation is rounding
    noise, such as 1e-11 µV of a float32 live stream, not a measure), one that barely moves by its standard
    deviation."""
    return f"constant {low:g} µV" if high - low < FLAT_RANGE else f"standard deviation {std:.2g} µV"


WATCH_SECONDS = 10.0
WATCH_CLIPPED_FRACTION = 0.01  # of a period's samples at its rail: a 10-s stretch is far shorter than a recording


class ChannelWatch:
    """Flat or clipped recorded channels of a stream, judged on each ``period`` seconds of signal: a live
    electrode comes loose or saturates mid-recording, which the whole-recording summary of batch mode cannot time.
    Only changes are reported (a channel turning flat or clipped, and turning back to ok), once each."""

    def __init__(self, names: list[str], sfreq: float, period: float = WATCH_SECONDS):
        self.names, self.sfreq = list(names), float(sfreq)
        self.period = max(1, round(period * sfreq))
        self.status = ["ok"] * len(self.names)
        self._stats = RawChannelStats(len(self.names))
        self._start = 0  # the current period's first sample
        self._filled = 0

    def update(self, data: np.ndarray) -> list[dict]:
        """Add samples (channels × samples, µV); return the changes of the periods completed: ``channel``,
        ``status`` (flat, clipped or ok), ``since`` (the period's start, seconds of signal), ``detected_at`` (its
        end: when it was judged) and ``detail``."""
        changes = []
        at = 0
        while at < data.shape[1]:
            take = min(self.period - self._filled, data.shape[1] - at)
            self._stats.update(data[:, at:at + take], every_sample=True)  # the same, however chunked
            self._filled += take
            at += take
            if self._filled == self.period:
                changes += self._judge()
                self._start += self._filled
                self._stats, self._filled = RawChannelStats(len(self.names)), 0
        return changes

    def _judge(self) -> list[dict]:
        flat, clipped, at_rail = self._stats.flat_and_clipped(WATCH_CLIPPED_FRACTION)
        std = self._stats.std()
        changes = []
        for i, name in enumerate(self.names):
            status = "flat" if flat[i] else "clipped" if clipped[i] else "ok"
            if status == self.status[i]:
                continue
            level = flat_level(self._stats.low[i], self._stats.high[i], std[i])
            detail = {"flat": f"{level}: check the electrode",
                      "clipped": f"{at_rail[i]:.1%} of samples at its minimum or maximum",
                      "ok": f"no longer {self.status[i]}"}[status]
            self.status[i] = status
            changes.append({"channel": name, "status": status, "since": self._start / self.sfreq,
                            "detected_at": (self._start + self.period) / self.sfreq, "detail": detail})
        return changes
