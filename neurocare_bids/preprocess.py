"""Resampling and zero-phase filtering in bounded memory.

A Siena recording can last a day, so nothing here ever holds a whole recording. Each output block
``[a, b)`` is computed from the input samples it depends on plus a margin on both sides:

* resampling is a polyphase FIR (``scipy.signal.resample_poly``) with an anti-alias filter designed so
  that nothing aliases into the pass band by more than -80 dB; a FIR has finite support, so a margin of
  half its length makes the block exact;
* the Butterworth band-pass and the mains notches run forward and backward (``sosfiltfilt``); an IIR
  response never ends, so the margin is chosen from the slowest pole such that the transient of the
  block edge has decayed below ``MARGIN_TOLERANCE`` before it reaches the block.

The recording's true start and end are handled exactly as whole-signal processing handles them, so the
blocked result equals ``process_block(0, n_out)`` on the whole recording within float tolerance
(tests/test_preprocess.py checks it).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from scipy import signal

from .config import PreprocessingConfig

MARGIN_TOLERANCE = 1e-9
ALIAS_ATTENUATION_DB = 80.0

# read(start, stop) -> float64 array (n_channels, stop - start) of input samples.
Reader = Callable[[int, int], np.ndarray]


@dataclass(frozen=True)
class SignalPlan:
    """Every filter of a recording, designed once from its sampling rate and the configuration."""

    sfreq_in: float
    sfreq_out: float
    up: int
    down: int
    fir: np.ndarray | None  # anti-alias / anti-image FIR at sfreq_in * up; None when not resampling
    sos: np.ndarray | None  # band-pass and notches at sfreq_out; None when nothing to filter
    notches: tuple[float, ...]
    margin: int  # output samples computed on each side of a block and discarded
    notes: tuple[str, ...]

    def n_out(self, n_in: int) -> int:
        return -(-n_in * self.up // self.down)

    @property
    def fir_margin_in(self) -> int:
        """Input samples the FIR reaches on each side of an output sample."""
        if self.fir is None:
            return 0
        return (len(self.fir) // 2) // self.up + 2

    def describe(self) -> dict:
        """The plan as it goes into sidecars and reports."""
        return {
            "InputSamplingFrequency": self.sfreq_in,
            "ResamplingFactor": f"{self.up}/{self.down}",
            "AntiAliasFilterTaps": 0 if self.fir is None else int(len(self.fir)),
            "NotchFrequencies": list(self.notches),
            "BlockMarginSamples": self.margin,
        }


def design_plan(sfreq_in: float, cfg: PreprocessingConfig, line_freq: float | None) -> SignalPlan:
    """Design the filters for one recording; ``line_freq`` comes from its sidecar (None = config)."""
    notes: list[str] = []
    ratio = (Fraction(cfg.sfreq).limit_denominator(10**6) /
             Fraction(sfreq_in).limit_denominator(10**6)).limit_denominator(4096)
    up, down = ratio.numerator, ratio.denominator
    actual = sfreq_in * up / down
    if not math.isclose(actual, cfg.sfreq, rel_tol=1e-6):
        notes.append(f"input rate {sfreq_in:g} Hz resampled by {up}/{down} = {actual:.6f} Hz, "
                     f"not exactly {cfg.sfreq:g} Hz")
    if up > down:
        notes.append(f"input rate {sfreq_in:g} Hz is below {cfg.sfreq:g} Hz: upsampled")
    fir = None if up == down else _antialias_fir(sfreq_in, cfg.sfreq, up, cfg.h_freq)

    nyquist = min(sfreq_in, cfg.sfreq) / 2
    sections = []
    if cfg.l_freq > 0 and cfg.h_freq > 0:
        sections.append(signal.butter(cfg.filter_order, [cfg.l_freq, cfg.h_freq], "bandpass",
                                      fs=cfg.sfreq, output="sos"))
    elif cfg.l_freq > 0:
        sections.append(signal.butter(cfg.filter_order, cfg.l_freq, "highpass", fs=cfg.sfreq, output="sos"))
    elif cfg.h_freq > 0:
        sections.append(signal.butter(cfg.filter_order, cfg.h_freq, "lowpass", fs=cfg.sfreq, output="sos"))
    notches: list[float] = []
    if cfg.notch:
        base = line_freq or cfg.line_freq
        if base >= nyquist:
            notes.append(f"notch at {base:g} Hz skipped: at or above the Nyquist frequency ({nyquist:g} Hz)")
        harmonics = range(1, int(nyquist // base) + 1) if cfg.notch_harmonics else [1]
        for k in harmonics:
            freq = k * base
            if freq >= nyquist:
                continue
            b, a = signal.iirnotch(freq, cfg.notch_quality, fs=cfg.sfreq)
            sections.append(signal.tf2sos(b, a))
            notches.append(freq)
    sos = np.concatenate(sections) if sections else None
    return SignalPlan(sfreq_in, cfg.sfreq, up, down, fir, sos, tuple(notches), _iir_margin(sos), tuple(notes))


def _antialias_fir(sfreq_in: float, sfreq_out: float, up: int, h_freq: float) -> np.ndarray:
    """Kaiser low-pass at ``sfreq_in * up`` keeping the band and rejecting all that would alias into it.

    Content above the output Nyquist folds back to ``sfreq_out - f``. The pass edge is the band-pass's
    own high edge (``h_freq``; the Butterworth already attenuates above it), and a stop edge at
    ``2 * nyquist - f_pass`` keeps every alias above ``f_pass``, where the band-pass removes it. That
    wide transition gives a short, fast filter instead of a long brick wall at Nyquist.
    """
    nyquist = min(sfreq_in, sfreq_out) / 2
    f_pass = min(h_freq, 0.8 * nyquist) if h_freq > 0 else 0.8 * nyquist
    f_stop = 2 * nyquist - f_pass
    fs_up = sfreq_in * up
    numtaps, beta = signal.kaiserord(ALIAS_ATTENUATION_DB, (f_stop - f_pass) / (fs_up / 2))
    numtaps |= 1  # odd: a whole-sample delay
    return signal.firwin(numtaps, (f_pass + f_stop) / 2, window=("kaiser", beta), fs=fs_up)


def _iir_margin(sos: np.ndarray | None) -> int:
    if sos is None:
        return 0
    radius = max(float(np.max(np.abs(np.roots(section[3:])))) for section in sos)
    decay = math.log(MARGIN_TOLERANCE) / math.log(radius)
    return int(math.ceil(decay)) + 3 * (2 * len(sos) + 1)


def process_block(read: Reader, n_in: int, plan: SignalPlan, a: int, b: int) -> np.ndarray:
    """Output samples ``[a, b)`` (float64, channels × samples) of the resampled, filtered signal."""
    n_out = plan.n_out(n_in)
    ea, eb = max(0, a - plan.margin), min(n_out, b + plan.margin)
    if plan.fir is None:
        y = read(ea, eb)
    else:
        up, down, reach = plan.up, plan.down, plan.fir_margin_in
        start = max(0, (ea * down // up - reach) // down * down)  # a multiple of `down`: same phase
        stop = min(n_in, -(-(eb - 1) * down // up) + reach + 1)
        x = read(start, stop)
        y = signal.resample_poly(x, up, down, axis=1, window=plan.fir)
        offset = start * up // down
        y = y[:, ea - offset:eb - offset]
    if plan.sos is not None and y.shape[1] > 1:
        padlen = min(3 * (2 * len(plan.sos) + 1), y.shape[1] - 1)
        y = signal.sosfiltfilt(plan.sos, y, axis=1, padlen=padlen)
    return y[:, a - ea:b - ea]


def block_bounds(n_out: int, block: int) -> list[tuple[int, int]]:
    """``[start, stop)`` output-sample ranges of ``block`` samples covering a recording."""
    return [(a, min(n_out, a + block)) for a in range(0, n_out, block)]


def iter_blocks(read: Reader, n_in: int, plan: SignalPlan, block: int) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(start, samples)`` blocks of the processed signal covering the whole recording."""
    for a, b in block_bounds(plan.n_out(n_in), block):
        yield a, process_block(read, n_in, plan, a, b)


class RunningStats:
    """Per-channel mean and standard deviation over blocks (Chan et al.'s pairwise update)."""

    def __init__(self, n_channels: int):
        self.count = 0
        self.mean = np.zeros(n_channels)
        self.m2 = np.zeros(n_channels)

    def update(self, block: np.ndarray) -> None:
        """Add a (channels × samples) block."""
        n = block.shape[1]
        if n == 0:
            return
        other = RunningStats(len(block))
        other.count, other.mean = n, block.mean(axis=1)
        other.m2 = ((block - other.mean[:, None]) ** 2).sum(axis=1)
        self.merge(other)

    def merge(self, other: RunningStats) -> None:
        """Combine with the statistics of other samples (order-independent up to rounding)."""
        if other.count == 0:
            return
        total = self.count + other.count
        delta = other.mean - self.mean
        self.mean = self.mean + delta * other.count / total
        self.m2 = self.m2 + other.m2 + delta**2 * self.count * other.count / total
        self.count = total

    @property
    def std(self) -> np.ndarray:
        return np.sqrt(self.m2 / max(self.count, 1))
