"""A classic feature-based seizure detector: the non-deep baseline the CNN-BiLSTM is compared with.

It reads the same z-scored windows (n_windows, n_times, n_channels) and is trained on the same
subject-wise folds, so any gain of the CNN-BiLSTM is measured against hand-crafted EEG features
(spectral band powers, line length, Hjorth parameters, amplitude statistics) and a gradient-boosted
tree ensemble or a logistic regression, not against chance.

Feature order (see :func:`feature_names`): for each channel, in channel order, the
``PER_CHANNEL`` features below; then the mean over channels of each of them; then the maximum over
channels. The per-channel block lets the classifier see focal seizures, the summaries make global
changes visible whatever the channel.
"""

from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import scipy.fft
from numpy.lib.stride_tricks import sliding_window_view
from scipy.signal import get_window
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ..io.fsutils import atomic_open

#: Frequency bands in Hz, ``[low, high)``; together they span the 0.5–30 Hz pass band of the
#: participant level, so relative powers are shares of all the power the filters kept.
BANDS: dict[str, tuple[float, float]] = {
    "delta": (0.5, 4.0),
    "theta": (4.0, 8.0),
    "alpha": (8.0, 13.0),
    "beta": (13.0, 30.0),
}

#: Per-channel features, in output order.
PER_CHANNEL: tuple[str, ...] = (
    *(f"log_power_{b}" for b in BANDS),       # log of the band power (Welch PSD integrated over the band)
    *(f"rel_power_{b}" for b in BANDS),       # band power / power in 0.5–30 Hz
    "line_length",                            # mean |x[t+1] - x[t]|
    "log_variance",                           # log of the window variance
    "hjorth_mobility",                        # sqrt(var(dx) / var(x)), radians per sample
    "hjorth_complexity",                      # mobility(dx) / mobility(x)
    "zero_crossing_rate",                     # sign changes of x - mean(x) per sample step
    "skewness",
    "kurtosis",                               # excess (Fisher) kurtosis: 0 for a Gaussian
    "max_abs",                                # max |x|
)

_EPS = 1e-12          # floor inside logarithms: a zero-filled (missing) channel has no power at all
_FLAT = 1e-10         # variance below which a channel is flat: shape features are set to 0, not NaN
# Windows per block. The dozen temporaries of a block (0.6 MB each at 512 x 19 float32) stay in a core's L2
# cache: 16 computed the features in 0.136 ms per window against 0.26 ms with blocks of 64 or 128 (AMD EPYC
# VM, one thread, 2026-12-04; identical results, since each window's features depend on that window only).
_CHUNK = 16
_FORMAT = "neurocare-feature-baseline/1"


def feature_names(n_channels: int, channel_names: list[str] | None = None) -> list[str]:
    """Names of the columns of :func:`window_features`, e.g. ``ch00_log_power_delta`` … ``max_kurtosis``."""
    if channel_names is None:
        channel_names = [f"ch{i:02d}" for i in range(n_channels)]
    if len(channel_names) != n_channels:
        raise ValueError(f"{len(channel_names)} channel names for {n_channels} channels")
    names = [f"{ch}_{f}" for ch in channel_names for f in PER_CHANNEL]
    return names + [f"mean_{f}" for f in PER_CHANNEL] + [f"max_{f}" for f in PER_CHANNEL]


def n_features(n_channels: int) -> int:
    return (n_channels + 2) * len(PER_CHANNEL)


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.zeros_like(num), where=den > _FLAT)


def _welch(x: np.ndarray, sfreq: float) -> tuple[np.ndarray, np.ndarray]:
    """Welch PSD along the last axis, equal to ``scipy.signal.welch`` with its defaults (Hann window,
    50 % overlap, per-segment mean removal, one-sided density) but several times faster on many
    short signals. Segments of 2 s give 0.5 Hz bins and average 3 segments in a 4 s window."""
    nperseg = min(x.shape[-1], round(2 * sfreq))
    segments = sliding_window_view(x, nperseg, axis=-1)[..., ::nperseg - nperseg // 2, :]
    taper = get_window("hann", nperseg).astype(x.dtype)
    spectrum = scipy.fft.rfft((segments - segments.mean(-1, keepdims=True)) * taper, axis=-1)
    psd = np.square(np.abs(spectrum)).mean(-2)
    psd *= 2.0 / (sfreq * float(np.square(taper).sum()))
    psd[..., 0] /= 2                      # DC and (even length) Nyquist are not folded
    if nperseg % 2 == 0:
        psd[..., -1] /= 2
    return np.fft.rfftfreq(nperseg, 1.0 / sfreq), psd


def _channel_features(x: np.ndarray, sfreq: float) -> np.ndarray:
    """Per-channel features (n_windows, n_channels, len(PER_CHANNEL)) of x (n_windows, n_channels, n_times)."""
    freqs, psd = _welch(x, sfreq)
    df = freqs[1] - freqs[0]
    band_power = np.stack([psd[..., (freqs >= lo) & (freqs < hi)].sum(-1) * df
                           for lo, hi in BANDS.values()], axis=-1)
    total = np.broadcast_to(band_power.sum(-1, keepdims=True), band_power.shape)

    xc = x - x.mean(-1, keepdims=True)
    xc2 = xc * xc
    var = xc2.mean(-1)
    dx = np.diff(x, axis=-1)
    var_dx = dx.var(-1)
    var_ddx = np.diff(dx, axis=-1).var(-1)
    mobility = np.sqrt(_safe_div(var_dx, var))
    complexity = _safe_div(np.sqrt(_safe_div(var_ddx, var_dx)), mobility)
    sign = np.signbit(xc)
    zcr = np.count_nonzero(sign[..., 1:] != sign[..., :-1], axis=-1) / (x.shape[-1] - 1)
    skew = _safe_div((xc2 * xc).mean(-1), var ** 1.5)
    kurt = np.where(var > _FLAT, _safe_div((xc2 * xc2).mean(-1), var * var) - 3, 0)

    return np.concatenate([
        np.log(band_power + _EPS),
        _safe_div(band_power, total),
        np.stack([np.abs(dx).mean(-1), np.log(var + _EPS), mobility, complexity, zcr, skew, kurt,
                  np.abs(x).max(-1)], axis=-1),
    ], axis=-1)


def window_features(windows: np.ndarray, sfreq: float, *, n_threads: int | None = None) -> np.ndarray:
    """Features of each window: (n_windows, n_times, n_channels) → (n_windows, n_features) float32.

    Vectorised over windows and channels. Blocks of windows bound the memory of the temporaries and
    run in ``n_threads`` threads (default: the CPUs this process may use; numpy and scipy's FFT
    release the GIL); blocks are independent, so the result does not depend on the thread count.
    """
    windows = np.asarray(windows)
    if windows.ndim != 3:
        raise ValueError(f"windows must be (n_windows, n_times, n_channels), got shape {windows.shape}")
    n, n_times, n_channels = windows.shape
    if n_times < 3:
        raise ValueError(f"windows need at least 3 samples, got {n_times}")
    out = np.empty((n, n_features(n_channels)), dtype=np.float32)

    def block(start: int) -> None:
        x = np.ascontiguousarray(windows[start:start + _CHUNK].transpose(0, 2, 1), dtype=np.float32)
        per = _channel_features(x, float(sfreq))
        out[start:start + len(x)] = np.concatenate(
            [per.reshape(len(x), -1), per.mean(1), per.max(1)], axis=1)

    starts = range(0, n, _CHUNK)
    if n_threads is None:
        n_threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if n_threads > 1 and n > _CHUNK:
        with ThreadPoolExecutor(n_threads) as pool:
            list(pool.map(block, starts))
    else:
        for start in starts:
            block(start)
    return out


class QuantileBins(TransformerMixin, BaseEstimator):
    """Each feature → the index of its training quantile bin: at most ``max_bins`` distinct values.

    HistGradientBoosting bins its input the same way, but with sample weights (which ``class_weight``
    becomes) scikit-learn 1.9 computes every one of the 254 edges of every feature with a separate
    weighted-percentile call over up to 200,000 rows: minutes for a few hundred features. Input that
    already has at most ``max_bins`` distinct values per feature takes its fast path instead. Edges
    come from at most ``subsample`` rows, as in HistGradientBoosting, to bound memory and time.
    """

    def __init__(self, max_bins: int = 255, subsample: int = 200_000, random_state: int = 0):
        self.max_bins = max_bins
        self.subsample = subsample
        self.random_state = random_state

    def fit(self, X, y=None):
        X = np.asarray(X)
        if len(X) > self.subsample:
            rows = np.random.default_rng(self.random_state).choice(len(X), self.subsample, replace=False)
            X = X[np.sort(rows)]
        quantiles = np.quantile(X, np.arange(1, self.max_bins) / self.max_bins, axis=0).T
        self.edges_ = []
        for col, edges in zip(X.T, quantiles):
            edges = np.unique(edges)
            if len(edges) < self.max_bins - 1:      # repeated quantiles: maybe few distinct values
                values = np.unique(col)
                if len(values) <= self.max_bins:    # then each value gets its own bin, as in HGB
                    edges = (values[:-1] + values[1:]) / 2
            self.edges_.append(edges)
        return self

    def transform(self, X):
        columns = np.asarray(X).T.copy()            # one contiguous row per feature, binned in place
        for col, edges in zip(columns, self.edges_):
            col[:] = np.searchsorted(edges, col)
        return columns.astype(np.float32, copy=False).T


class FeatureBaseline:
    """Standardised window features → gradient-boosted trees (``kind="hgb"``) or logistic regression.

    ``fit`` / ``predict_proba`` take windows; ``fit_features`` / ``predict_proba_features`` take
    precomputed :func:`window_features`, so cross-validation extracts features once for all folds.
    """

    KINDS = ("hgb", "logistic")

    def __init__(self, kind: str = "hgb", *, max_iter: int | None = None):
        if kind not in self.KINDS:
            raise ValueError(f"kind must be one of {self.KINDS}, got {kind!r}")
        self.kind = kind
        self.max_iter = max_iter
        self.sfreq: float | None = None
        self.n_channels: int | None = None
        self.pipeline = None

    def _make_pipeline(self, seed: int):
        if self.kind == "logistic":
            return make_pipeline(StandardScaler(), LogisticRegression(
                class_weight="balanced", max_iter=2000 if self.max_iter is None else self.max_iter,
                random_state=seed))
        # No early stopping: its validation split would be drawn from the training windows, mixing
        # subjects; a fixed number of iterations keeps the fit a deterministic function of the fold.
        hgb = HistGradientBoostingClassifier(
            max_iter=200 if self.max_iter is None else self.max_iter, class_weight="balanced",
            early_stopping=False, random_state=seed)
        return make_pipeline(StandardScaler(), QuantileBins(random_state=seed), hgb)

    def fit(self, X_windows: np.ndarray, y: np.ndarray, sfreq: float, *, seed: int = 42) -> FeatureBaseline:
        return self.fit_features(window_features(X_windows, sfreq), y, seed=seed, sfreq=sfreq)

    def fit_features(self, features: np.ndarray, y: np.ndarray, *, seed: int = 42,
                     sfreq: float | None = None) -> FeatureBaseline:
        """Fit on precomputed features; ``sfreq`` (recommended) lets ``predict_proba`` check its windows."""
        features = np.asarray(features)
        y = np.asarray(y).astype(np.int64).ravel()
        if features.ndim != 2 or features.shape[1] % len(PER_CHANNEL):
            raise ValueError(f"features must be window_features output, got shape {features.shape}")
        if len(y) != len(features):
            raise ValueError(f"{len(features)} windows but {len(y)} labels")
        if set(np.unique(y)) != {0, 1}:
            raise ValueError("training needs both seizure (1) and background (0) windows")
        self.sfreq = None if sfreq is None else float(sfreq)
        self.n_channels = features.shape[1] // len(PER_CHANNEL) - 2
        self.pipeline = self._make_pipeline(seed).fit(features, y)
        return self

    def predict_proba(self, X_windows: np.ndarray, sfreq: float) -> np.ndarray:
        """Seizure probability of each window, shape (n_windows,)."""
        X_windows = np.asarray(X_windows)
        if self.sfreq is not None and not np.isclose(sfreq, self.sfreq):
            raise ValueError(f"model trained at {self.sfreq:g} Hz, windows are at {sfreq:g} Hz")
        if self.n_channels is not None and X_windows.shape[2] != self.n_channels:
            raise ValueError(f"model trained on {self.n_channels} channels, windows have {X_windows.shape[2]}")
        return self.predict_proba_features(window_features(X_windows, sfreq))

    def predict_proba_features(self, features: np.ndarray) -> np.ndarray:
        if self.pipeline is None:
            raise RuntimeError("FeatureBaseline is not fitted")
        proba = self.pipeline.predict_proba(features)
        return proba[:, list(self.pipeline.classes_).index(1)]

    def save(self, path: str | Path) -> None:
        """Write the fitted model with joblib, atomically (a reader never sees half a file)."""
        import joblib
        import sklearn

        state = {"format": _FORMAT, "sklearn": sklearn.__version__, "kind": self.kind,
                 "max_iter": self.max_iter, "sfreq": self.sfreq, "n_channels": self.n_channels,
                 "pipeline": self.pipeline}
        with atomic_open(path) as fh:
            joblib.dump(state, fh)

    @classmethod
    def load(cls, path: str | Path) -> FeatureBaseline:
        """Read a model written by :meth:`save` (joblib = pickle: load only files you trust)."""
        import joblib

        with open(path, "rb") as fh, warnings.catch_warnings():
            # saved before the package was laid out by stage, the pickle names neurocare_bids.baseline: found at its
            # new place (neurocare_bids.MOVED_MODULES), nothing the user of an old model needs to be warned about
            warnings.filterwarnings("ignore", r"neurocare_bids\.\w+ is neurocare_bids\.", DeprecationWarning)
            state = joblib.load(fh)
        if not isinstance(state, dict) or state.get("format") != _FORMAT:
            raise ValueError(f"{path} is not a saved FeatureBaseline")
        model = cls(state["kind"], max_iter=state["max_iter"])
        model.sfreq, model.n_channels, model.pipeline = state["sfreq"], state["n_channels"], state["pipeline"]
        return model
