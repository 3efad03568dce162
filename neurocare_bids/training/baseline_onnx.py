"""The feature baseline's classifier as ONNX (``classifier.onnx``): what apply mode runs instead of unpickling it.

A stacked model's feature baseline is saved with joblib, that is pickle: loading it imports scikit-learn (a third
of a second, with pandas) and runs whatever code the file names, so a model folder from elsewhere must be trusted
like a program. Its classifier (standardisation, :class:`~.baseline.QuantileBins`, gradient-boosted trees) is
therefore also written as one ONNX ``TreeEnsembleRegressor`` that ONNX Runtime (or any ONNX runtime) evaluates on
the raw :func:`~.features.window_features`, giving the trees' summed log-odds.

The standardisation and the bins are folded into the trees' thresholds, exactly: a split "bin <= j" on a feature
is "scaled value <= edge j", and since scikit-learn's scaling (``(x - mean) / scale`` in float32) never decreases
as ``x`` grows, it holds exactly for the float32 values ``x`` up to the largest one that scales to at most the
edge, found by bisection over the float32 numbers. The copy therefore takes the same branch as scikit-learn for
every input, not most; only the sum of the leaves is float32 (log-odds within about 1e-6). skl2onnx is not used:
1.20 fails on scikit-learn 1.9's HistGradientBoosting with onnx 1.23 (``TypeError`` on a boolean attribute), and
it has no converter for our binning.

Each export is checked against scikit-learn (<= :data:`PARITY_TOLERANCE` in probability) on
random feature vectors and on vectors placed on each threshold and just above it, then described in the model
card's ``ONNX.Classifier`` entry (file, SHA-256, output).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

CLASSIFIER_FILE = "classifier.onnx"
INPUT_NAME, OUTPUT_NAME = "features", "log_odds"
# ONNX-ML opset 3 (ONNX 1.5, 2019): TreeEnsembleRegressor as every ONNX Runtime since 1.0 reads it
ML_OPSET = 3
# The largest difference in probability from scikit-learn an export may show: the branches are the same, the leaf
# sums float32 (about 1e-7); a threshold off by one rounding step sends a whole tree the other way (about 1e-2).
PARITY_TOLERANCE = 1e-5


def _scaled(x: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """scikit-learn's StandardScaler on float32 input: ``(x - mean) / scale`` in float32 arithmetic."""
    return (x.astype(np.float32) - mean.astype(np.float32)) / scale.astype(np.float32)


def _scaler_parameters(scaler, n_features: int) -> tuple[np.ndarray, np.ndarray]:
    """A fitted StandardScaler's mean and scale (zeros and ones where it was told not to centre or scale)."""
    mean = np.zeros(n_features) if scaler.mean_ is None else np.asarray(scaler.mean_)
    return mean, np.ones(n_features) if scaler.scale_ is None else np.asarray(scaler.scale_)


def _order(x: np.ndarray) -> np.ndarray:
    """float32 → uint32 keys that sort as the numbers do (-inf lowest, +inf highest)."""
    u = np.asarray(x, np.float32).view(np.uint32).astype(np.int64)
    return np.where(u & 0x80000000, 0xFFFFFFFF - u, u | 0x80000000)


def _number(key: np.ndarray) -> np.ndarray:
    key = np.asarray(key, np.int64)
    u = np.where(key & 0x80000000, key & 0x7FFFFFFF, 0xFFFFFFFF - key)
    return u.astype(np.uint32).view(np.float32)


def raw_thresholds(edges: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """For each ``edges[i]`` (a bin edge of the scaled feature whose scaler parameters are ``mean[i]``,
    ``scale[i]``), the largest float32 ``x`` whose scaled value is at most the edge: so that, for every float32
    ``x``, ``x <= threshold`` exactly when ``scaled(x) <= edge``. Bisection over the float32 numbers in order."""
    edges, mean, scale = (np.asarray(a, np.float64) for a in (edges, mean, scale))
    lo = np.full(edges.shape, _order(np.float32(-np.inf)), np.int64)  # scaled(-inf) = -inf: always at most
    hi = np.full(edges.shape, _order(np.float32(np.inf)), np.int64)
    top = _scaled(_number(hi), mean, scale).astype(np.float64) <= edges
    while True:
        open_ = ~top & (hi - lo > 1)
        if not open_.any():
            break
        mid = (lo + hi) // 2
        ok = _scaled(_number(mid), mean, scale).astype(np.float64) <= edges
        lo = np.where(open_ & ok, mid, lo)
        hi = np.where(open_ & ~ok, mid, hi)
    return _number(np.where(top, hi, lo))


def classifier_graph(pipeline, n_features: int):
    """The fitted ``StandardScaler → QuantileBins → HistGradientBoostingClassifier`` pipeline of a
    :class:`~.baseline.FeatureBaseline` as an ``onnx.ModelProto`` taking ``features`` (n, n_features) float32 and
    giving ``log_odds`` (n, 1): the trees' raw score, whose logistic is ``predict_proba``'s seizure column.
    Raises ``ValueError`` for another pipeline (the logistic-regression kind, categorical splits, more classes)."""
    from onnx import TensorProto, helper

    names = [type(step).__name__ for _, step in getattr(pipeline, "steps", [(None, pipeline)])]
    if names != ["StandardScaler", "QuantileBins", "HistGradientBoostingClassifier"]:
        raise ValueError(f"only the gradient-boosting baseline exports, not {' → '.join(names)}")
    scaler, bins, trees = (step for _, step in pipeline.steps)
    if list(trees.classes_) != [0, 1] or trees.n_trees_per_iteration_ != 1:
        raise ValueError(f"a two-class classifier is needed, got classes {list(trees.classes_)}")
    mean, scale = _scaler_parameters(scaler, n_features)
    parts: dict[str, list[np.ndarray]] = {}

    def add(**columns):
        for key, value in columns.items():
            parts.setdefault(key, []).append(np.asarray(value))

    edges = [np.asarray(e, np.float64) for e in bins.edges_]
    n_edges = np.array([len(e) for e in edges])
    for tree, (predictor,) in enumerate(trees._predictors):
        nodes = predictor.nodes
        if nodes["is_categorical"].any():
            raise ValueError("categorical splits do not export")
        ids = np.arange(len(nodes))
        leaf = nodes["is_leaf"].astype(bool)
        feature = np.where(leaf, 0, nodes["feature_idx"]).astype(np.int64)
        j = np.floor(nodes["num_threshold"]).astype(np.int64)  # bins are whole numbers: bin <= 12.5 is bin <= 12
        inside = ~leaf & (j >= 0) & (j < n_edges[feature])
        edge = np.array([edges[f][k] if ok else 0.0 for f, k, ok in zip(feature, j, inside)])
        # a split beyond the last edge sends every number left, one below bin 0 none: x < -inf, not x <= -inf,
        # which would send -inf (bin 0) left
        value = np.where(leaf, 0.0, np.where(j < 0, -np.inf, np.inf))
        value[inside] = raw_thresholds(edge[inside], mean[feature[inside]], scale[feature[inside]])
        add(nodes_treeids=np.full(len(nodes), tree), nodes_nodeids=ids, nodes_featureids=feature,
            nodes_modes=np.where(leaf, "LEAF", np.where(j < 0, "BRANCH_LT", "BRANCH_LEQ")), nodes_values=value,
            nodes_truenodeids=np.where(leaf, 0, nodes["left"]), nodes_falsenodeids=np.where(leaf, 0, nodes["right"]),
            # NaN falls in the last bin (NumPy sorts it last): left exactly when that bin is
            nodes_missing_value_tracks_true=(~leaf & (n_edges[feature] <= j)).astype(np.int64),
            target_treeids=np.full(leaf.sum(), tree), target_nodeids=ids[leaf], target_ids=np.zeros(leaf.sum()),
            target_weights=nodes["value"][leaf])
    attrs = {key: np.concatenate(value).tolist() for key, value in parts.items()}
    for key in attrs:
        if key not in ("nodes_modes", "nodes_values", "target_weights"):
            attrs[key] = [int(v) for v in attrs[key]]
    node = helper.make_node("TreeEnsembleRegressor", [INPUT_NAME], [OUTPUT_NAME], domain="ai.onnx.ml", n_targets=1,
                            aggregate_function="SUM", post_transform="NONE",
                            base_values=[float(np.ravel(trees._baseline_prediction)[0])], **attrs)
    graph = helper.make_graph([node], "neurocare_feature_classifier",
                              [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [None, n_features])],
                              [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, [None, 1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml",
                                                                                                    ML_OPSET)],
                              producer_name="neurocare-bids")
    model.ir_version = 8
    return model


def check_features(model, pipeline, n_features: int, seed: int = 0) -> np.ndarray:
    """Feature vectors to check the copy ``model`` of ``pipeline`` on: random ones around the training features,
    and for every split one on its threshold and one just above it (where a copy whose thresholds were off by
    one rounding step would branch the other way)."""
    from onnx import helper

    mean, scale = _scaler_parameters(pipeline.steps[0][1], n_features)
    base = (mean + 2.0 * scale * np.random.default_rng(seed).standard_normal((512, n_features))).astype(np.float32)
    attrs = {a.name: helper.get_attribute_value(a) for a in model.graph.node[0].attribute}
    rows = []
    for i, (mode, feature, value) in enumerate(zip(attrs["nodes_modes"], attrs["nodes_featureids"],
                                                   attrs["nodes_values"])):
        if mode != b"BRANCH_LEQ" or not np.isfinite(value):
            continue
        for x in (np.float32(value), np.nextafter(np.float32(value), np.float32(np.inf))):
            row = base[i % len(base)].copy()
            row[feature] = x
            rows.append(row)
    return np.concatenate([base, np.array(rows, np.float32).reshape(-1, n_features)])


def log_odds_to_probability(log_odds: np.ndarray) -> np.ndarray:
    """The seizure probability of the trees' summed log-odds, in float64 as scikit-learn computes it."""
    z = np.asarray(log_odds, np.float64).reshape(-1)
    return 1.0 / (1.0 + np.exp(-z))


def export_classifier(baseline, folder: Path) -> dict:
    """Write ``folder/classifier.onnx`` from a fitted :class:`~.baseline.FeatureBaseline`, checked against
    scikit-learn, and return its card entry; ``{"File": None, "Reason": ...}`` (and no file) when it does not
    export or does not match."""
    import onnxruntime as ort

    from ..io.fsutils import atomic_write, sha256_file

    path = Path(folder) / CLASSIFIER_FILE
    n_features = baseline.pipeline[0].n_features_in_  # the scaler's: every step sees the features it did
    try:
        model = classifier_graph(baseline.pipeline, n_features)
    except (ValueError, AttributeError, TypeError) as exc:
        path.unlink(missing_ok=True)
        return {"File": None, "Reason": f"not exported: {exc}"}
    data = model.SerializeToString()
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    x = check_features(model, baseline.pipeline, n_features)
    ours = log_odds_to_probability(session.run([OUTPUT_NAME], {INPUT_NAME: x})[0])
    difference = float(np.max(np.abs(ours - baseline.predict_proba_features(x))))
    if not difference <= PARITY_TOLERANCE:
        path.unlink(missing_ok=True)
        return {"File": None, "Reason": f"the ONNX copy differs from scikit-learn by {difference:.2g}"}
    atomic_write(path, data)
    return {"File": CLASSIFIER_FILE, "SHA256": sha256_file(path), "Input": INPUT_NAME, "Output": OUTPUT_NAME,
            "OutputMeaning": "log-odds of seizure (the probability is its logistic)", "Features": n_features,
            "Opset": {"ai.onnx.ml": ML_OPSET}, "MaxAbsDifference": difference, "CheckedOn": len(x)}


def export_baseline(baseline, folder: Path, label: str) -> dict:
    """:func:`export_classifier` for a model just trained: a failure is a warning and an entry saying why, never a
    failed run (apply mode then loads the joblib file, with the same probabilities)."""
    import logging

    try:
        entry = export_classifier(baseline, folder)
    except Exception as exc:  # noqa: BLE001 - any exporter failure; Ctrl-C and SIGTERM still stop the run
        (Path(folder) / CLASSIFIER_FILE).unlink(missing_ok=True)
        entry = {"File": None, "Reason": f"export failed: {type(exc).__name__}: {exc}"}
    if entry["File"] is None:
        logging.getLogger("neurocare").warning("%s: the feature baseline's classifier was not written as ONNX (%s); "
                                               "apply mode will load its joblib file", label, entry["Reason"])
    return entry
