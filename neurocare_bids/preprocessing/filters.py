"""Resampling and zero-phase (or causal) filtering in bounded memory.

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
(tests/preprocessing/test_preprocess.py checks it).

With ``preprocessing.causal`` the band-pass and notches run forward only (``sosfilt``), so that no output
sample depends on later input: what a live stream needs to filter without waiting. The filter state is
carried from one block to the next (:class:`CausalFilter`), so the blocked result is the one-shot
``sosfilt`` of the whole recording. Only the resampling FIR, when the input rate differs from the output
rate, still reaches ``fir_margin_in`` input samples (a few tens of milliseconds) ahead.
"""

from __future__ import annotations

import dataclasses
import math
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from scipy import signal

from ..config import PreprocessingConfig, recorded_settings

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
    causal: bool = False  # band-pass and notches forward only (sosfilt), not forward and backward

    def n_out(self, n_in: int) -> int:
        return -(-n_in * self.up // self.down)

    @property
    def lookahead(self) -> int:
        """Output samples after an output sample that the band-pass and notches need: the block margin for
        zero-phase filters (their response reaches back in time), none for causal ones."""
        return 0 if self.causal else self.margin

    def lookahead_seconds(self) -> float:
        """Seconds of signal after a sample that its filtered value needs: :attr:`lookahead` plus the
        resampling FIR's reach (within a sample of what the streaming detector waits for)."""
        fir = 0.0 if self.fir is None else self.fir_margin_in / self.sfreq_in
        return self.lookahead / self.sfreq_out + fir

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
    return SignalPlan(sfreq_in, cfg.sfreq, up, down, fir, sos, tuple(notches), _iir_margin(sos), tuple(notes),
                      cfg.causal)


def plan_from_sidecar(meta: dict, sfreq_in: float | None = None) -> SignalPlan:
    """The filters a participant-level sidecar describes (its ``Preprocessing`` settings, output rate and mains
    frequency), for a recording at ``sfreq_in`` (default: the sidecar's input rate)."""
    pre = recorded_settings("preprocessing", meta["Preprocessing"])
    fields = {f.name for f in dataclasses.fields(PreprocessingConfig)}
    settings = {k: v for k, v in pre.items() if k in fields}
    settings["sfreq"] = float(meta["SamplingFrequency"])
    settings["line_freq"] = float(pre.get("LineFrequency") or 50.0)
    cfg = PreprocessingConfig(**settings)
    return design_plan(float(sfreq_in or pre["InputSamplingFrequency"]), cfg, cfg.line_freq)


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


class CausalFilter:
    """A causal plan's band-pass and notches over the consecutive blocks of one recording, the filter state
    carried from each block to the next: the blocked result is the one-shot ``sosfilt`` of the recording.

    The filter starts in the steady state of a signal that had always been at the first sample's value (what
    ``sosfilt_zi`` gives), so a DC offset causes no start-up transient, and no later sample is used. Blocks
    may be read and resampled in parallel threads: each waits here for its turn, the block that ends where
    it starts; a block that fails releases the ones waiting behind it (they raise), so none waits forever.
    """

    def __init__(self, sos: np.ndarray | None):
        self.sos = sos
        self.position = 0  # output samples filtered so far
        self._zi: np.ndarray | None = None
        self._turn = threading.Condition()
        self._failed = False

    def __call__(self, y: np.ndarray, start: int) -> np.ndarray:
        """Filter output samples ``[start, start + len)`` (channels × samples), once those before are done."""
        with self._turn:
            self._turn.wait_for(lambda: self.position >= start or self._failed)
            if self._failed:
                raise RuntimeError("an earlier block of this recording failed")
            if start != self.position:
                raise ValueError(f"causal filtering needs consecutive blocks: got sample {start}, "
                                 f"expected {self.position}")
            if self.sos is not None and y.shape[1]:
                if self._zi is None:
                    self._zi = signal.sosfilt_zi(self.sos)[:, None, :] * y[None, :, :1]
                y, self._zi = signal.sosfilt(self.sos, y, axis=1, zi=self._zi)
            self.position += y.shape[1]
            self._turn.notify_all()
        return y

    def fail(self) -> None:
        """A block will never arrive: wake the blocks waiting for their turn (they raise)."""
        with self._turn:
            self._failed = True
            self._turn.notify_all()


def causal_filter(plan: SignalPlan) -> CausalFilter | None:
    """The filter state one recording's blocks share when ``plan`` is causal (None for zero phase)."""
    return CausalFilter(plan.sos) if plan.causal else None


def process_block(read: Reader, n_in: int, plan: SignalPlan, a: int, b: int,
                  state: CausalFilter | None = None) -> np.ndarray:
    """Output samples ``[a, b)`` (float64, channels × samples) of the resampled, filtered signal.

    A causal plan filters forward only: with ``state`` (:func:`causal_filter`, one per recording, given every
    block in order) exactly as one pass over the whole recording; without it, from ``plan.margin`` samples
    before ``a`` (the same result within float tolerance, for a block on its own).
    """
    if plan.causal:
        try:
            return _causal_block(read, n_in, plan, a, b, state)
        except BaseException:
            if state is not None:
                state.fail()
            raise
    n_out = plan.n_out(n_in)
    ea, eb = max(0, a - plan.margin), min(n_out, b + plan.margin)
    y = _resampled(read, n_in, plan, ea, eb)
    if plan.sos is not None and y.shape[1] > 1:
        padlen = min(3 * (2 * len(plan.sos) + 1), y.shape[1] - 1)
        y = signal.sosfiltfilt(plan.sos, y, axis=1, padlen=padlen)
    return y[:, a - ea:b - ea]


def _causal_block(read: Reader, n_in: int, plan: SignalPlan, a: int, b: int,
                  state: CausalFilter | None) -> np.ndarray:
    ea = a if state is not None else max(0, a - plan.margin)
    y = _resampled(read, n_in, plan, ea, b)
    if state is None:
        state = CausalFilter(plan.sos)
        state.position = ea
    return state(y, ea)[:, a - ea:]


def _resampled(read: Reader, n_in: int, plan: SignalPlan, ea: int, eb: int) -> np.ndarray:
    """Output samples ``[ea, eb)`` of the resampled, not yet filtered signal."""
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
    return y


def block_bounds(n_out: int, block: int) -> list[tuple[int, int]]:
    """``[start, stop)`` output-sample ranges of ``block`` samples covering a recording."""
    return [(a, min(n_out, a + block)) for a in range(0, n_out, block)]


def iter_blocks(read: Reader, n_in: int, plan: SignalPlan, block: int) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(start, samples)`` blocks of the processed signal covering the whole recording."""
    state = causal_filter(plan)
    for a, b in block_bounds(plan.n_out(n_in), block):
        yield a, process_block(read, n_in, plan, a, b, state)


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
