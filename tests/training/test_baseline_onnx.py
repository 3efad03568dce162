"""classifier.onnx: the feature baseline's classifier as one ONNX tree ensemble, branching exactly as scikit-learn."""

import numpy as np
import pytest

from neurocare_bids.training import baseline_onnx
from neurocare_bids.training.baseline import FeatureBaseline
from neurocare_bids.training.features import n_features


def test_scaling_is_scikit_learns_float32_arithmetic():
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(0)
    x = (rng.standard_normal((500, 7)) * [1e-6, 1, 3, 1e3, 5e5, 0.1, 0] + [0, 5, -2, 1e4, 0, 1, 3]).astype(np.float32)
    scaler = StandardScaler().fit(x)
    new = (rng.standard_normal((2000, 7)) * 1e3).astype(np.float32)
    assert np.array_equal(baseline_onnx._scaled(new, scaler.mean_, scaler.scale_), scaler.transform(new))


def test_raw_thresholds_are_the_last_float32_at_or_below_each_edge():
    """x <= threshold exactly when scaled(x) <= edge: the threshold scales to at most the edge, the next float32
    above it to more (the bisection is exact, not approximate)."""
    rng = np.random.default_rng(1)
    n = 4000
    mean = rng.standard_normal(n) * 10.0 ** rng.integers(-6, 6, n)
    scale = np.abs(rng.standard_normal(n)) * 10.0 ** rng.integers(-6, 6, n) + 1e-30
    edges = rng.standard_normal(n) * 3
    edges[:10] = [np.inf, -np.inf, 0.0, -0.0, 1e30, -1e30, 1e-40, 3.0, -3.0, 0.5]
    t = baseline_onnx.raw_thresholds(edges, mean, scale)
    assert t.dtype == np.float32
    at = baseline_onnx._scaled(t, mean, scale).astype(np.float64)
    above = baseline_onnx._scaled(np.nextafter(t, np.float32(np.inf)), mean, scale).astype(np.float64)
    assert np.all(at <= edges)
    assert np.all((above > edges)[t < np.inf])
    assert t[0] == np.inf and t[1] == -np.inf  # every number scales to at most inf; only -inf to -inf


def _fitted(kind="hgb", seed=0, n_channels=3, max_iter=40):
    """A baseline fitted on generated features: seizure windows have more power on some channels, plus noise
    features and a few repeated values (bins of one value each)."""
    rng = np.random.default_rng(seed)
    n = 600
    y = rng.integers(0, 2, n)
    x = rng.standard_normal((n, n_features(n_channels))).astype(np.float32)
    x[:, :5] += 1.5 * y[:, None]
    x[:, 7] = np.round(x[:, 7])  # few distinct values
    x[:, 9] *= 1e4
    return FeatureBaseline(kind, max_iter=max_iter).fit_features(x, y, seed=seed), x


# scikit-learn's finiteness check sums the features first: +3e38 and -3e38 overflow to inf - inf there
@pytest.mark.filterwarnings("ignore:invalid value encountered in reduce:RuntimeWarning")
def test_export_matches_scikit_learn_everywhere(tmp_path):
    """The copy gives scikit-learn's probabilities (float32 leaf sums: within 1e-6) on new features, on features
    placed on every threshold and just above, on the extremes and on NaN (the last bin, as NumPy sorts it)."""
    import onnxruntime as ort

    baseline, x = _fitted()
    entry = baseline_onnx.export_classifier(baseline, tmp_path)
    assert entry["File"] == "classifier.onnx" and entry["MaxAbsDifference"] <= 1e-5 and entry["CheckedOn"] > 512
    session = ort.InferenceSession(str(tmp_path / "classifier.onnx"), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(9)
    new = np.concatenate([x + rng.standard_normal(x.shape).astype(np.float32) * 0.3,
                          baseline_onnx.check_features(baseline_onnx.classifier_graph(baseline.pipeline, x.shape[1]),
                                                       baseline.pipeline, x.shape[1], seed=3)])
    new[:40, rng.integers(0, x.shape[1], 40)] = np.nan
    new[40:50] = np.float32(3e38)  # scales to inf or beyond the last edge
    new[50:60] = np.float32(-3e38)
    expected = baseline.predict_proba_features(new)
    got = baseline_onnx.log_odds_to_probability(session.run(["log_odds"], {"features": new})[0])
    assert np.ptp(expected) > 0.5  # a classifier that tells the windows apart
    np.testing.assert_allclose(got, expected, atol=1e-6, rtol=0)
    # the same fit writes the same bytes
    (tmp_path / "again").mkdir()
    assert baseline_onnx.export_classifier(baseline, tmp_path / "again")["SHA256"] == entry["SHA256"]


def test_a_split_below_the_first_bin_sends_everything_right_even_minus_infinity():
    """A split ``bin <= -1`` sends every window right, -inf included: -inf falls in bin 0 like the lowest float32.
    scikit-learn never makes such a split (its thresholds lie between observed bins), so the test sets one by hand
    on each tree's root; and scikit-learn refuses -inf, so -inf is compared with -3e38 (bin 0 as well)."""
    import onnxruntime as ort

    baseline, x = _fitted()
    trees = baseline.pipeline.steps[-1][1]
    roots = [predictor.nodes[0] for (predictor,) in trees._predictors if not predictor.nodes[0]["is_leaf"]]
    for root in roots:
        root["num_threshold"] = -0.5
    graph = baseline_onnx.classifier_graph(baseline.pipeline, x.shape[1])
    session = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    lowest = np.repeat(x[:20], len(roots), axis=0)
    for k, root in enumerate(roots):
        lowest[k * 20:(k + 1) * 20, root["feature_idx"]] = np.float32(-3e38)
    minus_inf = np.where(lowest == np.float32(-3e38), np.float32(-np.inf), lowest)

    def onnx(features):
        return baseline_onnx.log_odds_to_probability(session.run(["log_odds"], {"features": features})[0])

    np.testing.assert_allclose(onnx(lowest), baseline.predict_proba_features(lowest), atol=1e-6, rtol=0)
    np.testing.assert_array_equal(onnx(minus_inf), onnx(lowest))


def test_what_does_not_export_says_why_and_writes_nothing(tmp_path):
    baseline, _ = _fitted("logistic")
    (tmp_path / "classifier.onnx").write_bytes(b"of an earlier model")
    entry = baseline_onnx.export_classifier(baseline, tmp_path)
    assert entry["File"] is None and "only the gradient-boosting baseline exports" in entry["Reason"]
    assert not (tmp_path / "classifier.onnx").exists()


def test_a_copy_that_differs_is_not_written(tmp_path, monkeypatch):
    """The check is real: thresholds one float32 step too low send the points on them the other way, the export
    finds it and writes no file."""
    baseline, _ = _fitted()
    exact = baseline_onnx.raw_thresholds
    monkeypatch.setattr(baseline_onnx, "raw_thresholds",
                        lambda *a: np.nextafter(exact(*a), np.float32(-np.inf)))
    entry = baseline_onnx.export_classifier(baseline, tmp_path)
    assert entry["File"] is None and "differs from scikit-learn" in entry["Reason"]
    assert not (tmp_path / "classifier.onnx").exists()
