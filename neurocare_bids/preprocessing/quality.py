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

    def update(self, data: np.ndarray) -> None:
        """Add a block (channels × samples): its exact per-channel extremes, and the statistics of its probes."""
        probe, stretch = _probe(data)
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

    def summary(self, names: list[str]) -> dict:
        """The sidecar's ``ChannelQuality``: per-channel values, and which channels are flagged and why."""
        n = max(self.count, 1)
        mean = self.total / n
        std = np.sqrt(np.maximum(self.squares / n - mean**2, 0.0))
        line = self.line / max(self.steps, 1)
        span = self.high - self.low
        flat = (span < FLAT_RANGE) | (std < FLAT_STD_UV)
        at_rail = self.at_low + np.where(span > 0, self.at_high, 0)
        clipped = ~flat & (at_rail >= max(CLIPPED_MIN_SAMPLES, CLIPPED_FRACTION * n))
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
                             "LineLength": _r(line[i]), "ClippedFraction": _r(at_rail[i] / n),
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
        if high[i] - low[i] < FLAT_RANGE:
            warnings.append(f"recorded channel {name} is flat (constant {low[i]:g} µV): check the electrode")
        elif "flat" in status:
            warnings.append(f"recorded channel {name} carries almost no signal (standard deviation "
                            f"{channel['Std']:.2g} µV): check the electrode")
        if "clipped" in status:
            warnings.append(f"recorded channel {name} is clipped ({channel['ClippedFraction']:.1%} of samples at "
                            "its minimum or maximum)")
        if "noisy" in status:
            warnings.append(f"recorded channel {name} is noisy (standard deviation {channel['Std']:.3g} µV, line "
                            f"length {channel['LineLength']:.3g} µV per sample; over {NOISY_RATIO:g}x the median "
                            "channel)")
    return warnings
