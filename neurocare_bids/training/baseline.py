"""A classic feature-based seizure detector: the non-deep baseline the CNN-BiLSTM is compared with.

It reads the same z-scored windows (n_windows, n_times, n_channels) and is trained on the same
subject-wise folds, so any gain of the CNN-BiLSTM is measured against hand-crafted EEG features
(spectral band powers, line length, Hjorth parameters, amplitude statistics) and a gradient-boosted
tree ensemble or a logistic regression, not against chance.

The features are those of :mod:`.features` (re-exported here); apply mode runs the classifier from its ONNX copy
(:mod:`.baseline_onnx`) and never unpickles it.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ..io.fsutils import atomic_open
from .features import (BANDS, PER_CHANNEL, _channel_features, _safe_div, _welch, feature_names,  # noqa: F401
                       n_features, window_features)

_FORMAT = "neurocare-feature-baseline/1"


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
