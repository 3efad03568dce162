"""The feature baseline: features against direct numpy/scipy computations, and the classifier end to end."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal, stats
from sklearn.metrics import roc_auc_score
from threadpoolctl import threadpool_limits

from neurocare_bids.training.baseline import (BANDS, PER_CHANNEL, FeatureBaseline, QuantileBins, feature_names,
                                              n_features, window_features)

SFREQ = 128.0
N_TIMES = 512
T = np.arange(N_TIMES) / SFREQ


def per_channel(features: np.ndarray, n_channels: int) -> dict[str, np.ndarray]:
    """Feature name → (n_windows, n_channels) array, read through feature_names (so the order is tested)."""
    names = feature_names(n_channels)
    return {f: features[:, [names.index(f"ch{c:02d}_{f}") for c in range(n_channels)]] for f in PER_CHANNEL}


def reference_features(x: np.ndarray, sfreq: float) -> np.ndarray:
    """Straightforward float64 computation of the per-channel features of one window (n_times, n_channels)."""
    freqs, psd = signal.welch(x.astype(np.float64), fs=sfreq, nperseg=min(len(x), round(2 * sfreq)), axis=0)
    df = freqs[1] - freqs[0]
    power = np.array([psd[(freqs >= lo) & (freqs < hi)].sum(0) * df for lo, hi in BANDS.values()])
    dx, ddx = np.diff(x, axis=0), np.diff(x, n=2, axis=0)
    mobility = np.sqrt(dx.var(0) / x.var(0))
    xc = x - x.mean(0)
    return np.column_stack([
        *np.log(power), *(power / power.sum(0)),
        np.abs(dx).mean(0), np.log(x.var(0)), mobility, np.sqrt(ddx.var(0) / dx.var(0)) / mobility,
        (np.diff(np.sign(xc), axis=0) != 0).sum(0) / (len(x) - 1),
        stats.skew(x, axis=0), stats.kurtosis(x, axis=0), np.abs(x).max(0),
    ])


def test_names_shapes_and_order():
    names = feature_names(19)
    assert len(names) == len(set(names)) == n_features(19) == (19 + 2) * len(PER_CHANNEL)
    assert names[0] == "ch00_log_power_delta" and names[-1] == "max_max_abs"
    assert feature_names(2, ["Fp1", "Fp2"])[len(PER_CHANNEL)] == "Fp2_log_power_delta"
    f = window_features(np.zeros((3, N_TIMES, 19), np.float32), SFREQ)
    assert f.shape == (3, len(names)) and f.dtype == np.float32
    with pytest.raises(ValueError):
        feature_names(3, ["a"])
    with pytest.raises(ValueError):
        window_features(np.zeros((N_TIMES, 19)), SFREQ)


def test_random_windows_match_reference():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((300, N_TIMES, 5)).astype(np.float32)
    x[:, :, 1] += 2 * np.sin(2 * np.pi * 6 * T)[None] + 0.5  # an offset and a rhythm: skew, ZCR, theta
    x[:, :, 2] = x[:, :, 2] ** 3                               # heavy tails: kurtosis, max
    f = window_features(x, SFREQ)
    per = np.stack([reference_features(w, SFREQ) for w in x.astype(np.float64)])  # (n, channels, features)
    expected = np.concatenate([per.reshape(len(x), -1), per.mean(1), per.max(1)], axis=1)
    np.testing.assert_allclose(f, expected, rtol=2e-4, atol=2e-5)
    # blocks and threads do not change anything: a window alone gives the same features
    np.testing.assert_array_equal(window_features(x, SFREQ, n_threads=1), f)
    np.testing.assert_allclose(window_features(x[7:8], SFREQ), f[7:8], rtol=1e-6)


def test_sine_alpha_and_hjorth():
    freq, amplitude = 10.0, 3.0
    phases = np.array([0.0, 1.0, 2.5])
    x = (amplitude * np.sin(2 * np.pi * freq * T[:, None] + phases))[None].astype(np.float32)
    f = per_channel(window_features(x, SFREQ), 3)
    assert np.all(f["rel_power_alpha"] > 0.95)
    log_powers = np.stack([f[f"log_power_{b}"] for b in BANDS])
    assert np.all(log_powers.argmax(0) == list(BANDS).index("alpha"))
    # Parseval: the band powers add up to the variance of the sine, A² / 2 (Hann leakage stays in band)
    total = sum(np.exp(f[f"log_power_{b}"]) for b in BANDS)
    np.testing.assert_allclose(total, amplitude ** 2 / 2, rtol=1e-3)
    # Hjorth mobility of a sampled sine: 2 sin(π f / fs) ≈ 2π f / fs, complexity 1 (up to the edges:
    # the 511 differences do not span whole periods)
    omega = 2 * np.pi * freq / SFREQ
    np.testing.assert_allclose(f["hjorth_mobility"], 2 * np.sin(omega / 2), rtol=2e-3)
    np.testing.assert_allclose(f["hjorth_mobility"], omega, rtol=0.02)
    np.testing.assert_allclose(f["hjorth_complexity"], 1.0, rtol=5e-3)
    np.testing.assert_allclose(f["log_variance"], np.log(amplitude ** 2 / 2), atol=1e-4)
    # 40 whole periods, 2 crossings each (±1 at the window's edge, depending on the phase)
    assert np.all(np.abs(f["zero_crossing_rate"] * (N_TIMES - 1) - 2 * freq * N_TIMES / SFREQ) <= 1)
    np.testing.assert_allclose(f["kurtosis"], -1.5, atol=1e-3)  # a sine's excess kurtosis
    np.testing.assert_array_equal(f["max_abs"][0], np.abs(x[0]).max(0))
    assert np.all(f["max_abs"] > amplitude * np.cos(omega / 2))  # a sample within half a step of each peak


def test_ramp_and_flat_channel():
    slope = 0.01
    ramp = slope * (np.arange(N_TIMES) - (N_TIMES - 1) / 2)
    x = np.stack([ramp, np.zeros(N_TIMES)], axis=1)[None].astype(np.float32)
    f = per_channel(window_features(x, SFREQ), 2)
    np.testing.assert_allclose(f["line_length"][0], [slope, 0], rtol=1e-5)
    np.testing.assert_allclose(f["max_abs"][0, 0], slope * (N_TIMES - 1) / 2, rtol=1e-6)
    np.testing.assert_allclose(f["zero_crossing_rate"][0], [1 / (N_TIMES - 1), 0])
    np.testing.assert_allclose(f["skewness"][0, 0], 0, atol=1e-4)
    np.testing.assert_allclose(f["kurtosis"][0, 0], -1.2, atol=1e-3)  # uniform distribution
    # a zero-filled (missing) channel gives finite values, its shape features 0
    flat = window_features(x, SFREQ)
    assert np.isfinite(flat).all()
    for name in ("hjorth_mobility", "hjorth_complexity", "skewness", "kurtosis", "rel_power_alpha"):
        assert f[name][0, 1] == 0


def synthetic_task(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Background noise, and windows (30 %) where a 4 Hz rhythm of random amplitude runs on 3 random channels."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, N_TIMES, 8))
    y = (rng.random(n) < 0.3).astype(int)
    for i in np.flatnonzero(y):
        channels = rng.choice(8, 3, replace=False)
        x[i, :, channels] += rng.uniform(0.25, 0.6) * np.sin(2 * np.pi * 4 * T + rng.uniform(0, 2 * np.pi))
    return x.astype(np.float32), y


@pytest.fixture(autouse=True)
def one_openmp_thread():
    """On a few hundred windows OpenMP's thread start-up and spinning cost more than the work, and on a
    busy machine they make a 1 s fit take 20 s."""
    with threadpool_limits(1, user_api="openmp"):
        yield


@pytest.fixture(scope="module")
def task():
    return synthetic_task(400, seed=0), synthetic_task(300, seed=1)


@pytest.mark.parametrize("kind", ["hgb", "logistic"])
def test_classifier_separates_and_is_deterministic(task, kind, tmp_path):
    (x_train, y_train), (x_test, y_test) = task
    model = FeatureBaseline(kind, max_iter=100 if kind == "hgb" else None).fit(x_train, y_train, SFREQ, seed=3)
    proba = model.predict_proba(x_test, SFREQ)
    assert proba.shape == (len(x_test),) and np.all((proba >= 0) & (proba <= 1))
    assert roc_auc_score(y_test, proba) > 0.9

    again = FeatureBaseline(kind, max_iter=100 if kind == "hgb" else None).fit(x_train, y_train, SFREQ, seed=3)
    np.testing.assert_array_equal(again.predict_proba(x_test, SFREQ), proba)

    path = tmp_path / "models" / "baseline.joblib"
    model.save(path)
    assert [p.name for p in path.parent.iterdir()] == ["baseline.joblib"]  # no temporary left behind
    loaded = FeatureBaseline.load(path)
    assert loaded.kind == kind and loaded.sfreq == SFREQ and loaded.n_channels == 8
    np.testing.assert_array_equal(loaded.predict_proba(x_test, SFREQ), proba)


def test_precomputed_features_and_errors(task, tmp_path):
    (x_train, y_train), (x_test, _) = task
    model = FeatureBaseline("logistic").fit(x_train, y_train, SFREQ, seed=0)
    on_features = FeatureBaseline("logistic").fit_features(window_features(x_train, SFREQ), y_train, seed=0,
                                                           sfreq=SFREQ)
    assert (on_features.sfreq, on_features.n_channels) == (SFREQ, 8)
    np.testing.assert_array_equal(on_features.predict_proba_features(window_features(x_test, SFREQ)),
                                  model.predict_proba(x_test, SFREQ))
    with pytest.raises(ValueError, match="Hz"):
        model.predict_proba(x_test, 256.0)
    with pytest.raises(ValueError, match="channels"):
        model.predict_proba(x_test[:, :, :4], SFREQ)
    with pytest.raises(ValueError, match="both"):
        FeatureBaseline().fit(x_train[:5], np.zeros(5), SFREQ)
    with pytest.raises(ValueError):
        FeatureBaseline("svm")
    with pytest.raises(RuntimeError):
        FeatureBaseline().predict_proba_features(np.zeros((1, n_features(8))))
    (tmp_path / "other.joblib").write_bytes(b"not a model")
    with pytest.raises(Exception):
        FeatureBaseline.load(tmp_path / "other.joblib")


def test_quantile_bins_keep_gradient_boosting_on_its_fast_path():
    """At most 255 values per feature: HistGradientBoosting then bins by unique values, not by 254
    weighted-percentile calls per feature (minutes at the group level's sizes)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3000, 4)) * [1, 10, 1e-3, 1]
    x[:, 3] = np.round(x[:, 3])            # few distinct values, rare ones too: each keeps its own bin
    binned = QuantileBins().fit(x).transform(x)
    assert all(len(np.unique(col)) <= 255 for col in binned.T)
    assert len(np.unique(binned[:, 3])) == len(np.unique(x[:, 3]))
    assert np.all(np.diff(binned[np.argsort(x[:, 0]), 0]) >= 0)   # monotone: trees see the same order
    # edges from a random subsample of the rows, drawn reproducibly
    sub = QuantileBins(subsample=1000, random_state=1).fit(x).transform(x)
    assert len(np.unique(sub[:, 0])) == 255 and not np.array_equal(sub, binned)
    np.testing.assert_array_equal(QuantileBins(subsample=1000, random_state=1).fit(x).transform(x), sub)
