"""The stacked detector (``model.stacking``): the CNN-BiLSTM and the feature baseline combined on their log-odds.

A group-level run with stacking on the session's demo dataset is checked against its own saved parts: each
fold's test probabilities are the combination of its saved network and baseline on the stored windows, the
weight is one of the grid's and is the validation subjects' best, and apply mode runs the final model's two
parts as the group level did.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import QUICK_GROUP_CONFIG, add_recording, run_cli, run_cli_concurrently

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # Keras's own


def test_combine_is_a_weighted_mean_of_log_odds():
    from neurocare_bids.detection.stacking import combine

    net, base = np.array([0.1, 0.5, 0.9, 0.99]), np.array([0.8, 0.2, 0.5, 0.01])
    np.testing.assert_allclose(combine(net, base, 0.0), net, rtol=1e-12)
    np.testing.assert_allclose(combine(net, base, 1.0), base, rtol=1e-12)
    logit = np.log(net / (1 - net)) * 0.75 + np.log(base / (1 - base)) * 0.25
    np.testing.assert_allclose(combine(net, base, 0.25), 1 / (1 + np.exp(-logit)), rtol=1e-12)
    with pytest.raises(ValueError):
        combine(net, base, 1.5)
    with pytest.raises(ValueError):
        combine(net, base[:2], 0.5)


def _predictions(labels, probs):
    return [{"labels": np.asarray(labels), "probs": np.asarray(probs, float)}]


def test_choose_weight_follows_the_validation_ranking():
    from neurocare_bids.detection.stacking import WEIGHTS, choose_weight

    rng = np.random.default_rng(0)
    labels = np.r_[np.zeros(200, int), np.ones(20, int)]
    good = np.clip(0.05 + 0.9 * labels + rng.normal(0, 0.05, labels.size), 0.01, 0.99)
    noise = rng.uniform(0.01, 0.99, labels.size)
    as_is = lambda predictions: [p["probs"] for p in predictions]  # noqa: E731 - no centring or smoothing here

    weight, scores = choose_weight(_predictions(labels, noise), _predictions(labels, good), as_is)
    assert set(scores) == set(WEIGHTS) and weight == max(scores, key=scores.get) and weight >= 0.75
    assert scores[1.0] > scores[0.0]
    weight, scores = choose_weight(_predictions(labels, good), _predictions(labels, noise), as_is)
    assert weight <= 0.25 and scores[0.0] > scores[1.0]
    # two equally perfect models: every weight ranks perfectly, and the tie goes to the network
    weight, scores = choose_weight(_predictions(labels, good), _predictions(labels, good), as_is)
    assert weight == 0.0 and set(scores.values()) == {1.0}
    # no seizure in validation: nothing to choose by
    weight, scores = choose_weight(_predictions(np.zeros(5, int), good[:5]), _predictions(np.zeros(5, int), good[:5]),
                                   as_is)
    assert weight == 0.5 and set(scores.values()) == {None}


def test_stacking_weight_is_fixed_unless_tuned():
    from neurocare_bids.detection.stacking import choose_weight, stacking_weight

    labels = np.array([0] * 40 + [1] * 10)
    rng = np.random.default_rng(3)
    good, noise = np.clip(labels * 0.8 + 0.1 + rng.normal(0, 0.05, labels.size), 0.01, 0.99), rng.uniform(0.01, 0.99, labels.size)
    as_is = lambda preds: [p["probs"] for p in preds]  # noqa: E731
    net, base = _predictions(labels, noise), _predictions(labels, good)
    chosen, scores = choose_weight(net, base, as_is)
    assert chosen > 0.25  # the good baseline wins on validation ...
    weight, recorded = stacking_weight(net, base, as_is, fixed=0.25, tune=False)
    assert weight == 0.25 and recorded == scores  # ... but the fixed weight stands, its evidence kept
    assert stacking_weight(net, base, as_is, fixed=0.25, tune=True) == (chosen, scores)
    with pytest.raises(ValueError):
        stacking_weight(net, base, as_is, fixed=1.5, tune=False)


@pytest.fixture(scope="module")
def stacked_run(prepared, tmp_path_factory):
    """A group-level run of the tiny model with stacking on (two folds and the final model)."""
    bids, participant_out, _ = prepared
    root = tmp_path_factory.mktemp("stacked")
    out = root / "out"
    shutil.copytree(participant_out, out)
    config = root / "stacked.toml"
    # [model] is the last section; the folds' ONNX copies as by default (the classifier's checked per fold below)
    config.write_text(QUICK_GROUP_CONFIG.replace("fold_onnx = false", "fold_onnx = true")
                      + "stacking = true\n[cv]\nfolds = 2\n")
    result = run_cli(bids, out, "group", "--config", config, "--no-reports", timeout=900)
    assert result.returncode == 0, result.stderr
    return bids, out


def _fold_windows(out: Path, subjects: list[str]):
    """The stored windows of these subjects, in the order the group level reads them, as one array."""
    from neurocare_bids.evaluation.plan import collect_window_files
    from neurocare_bids.training.input_pipeline import read_windows

    files, geometry = collect_window_files(out, [])
    chosen = sorted((f for f in files if f.subject in subjects), key=lambda f: f.source)
    return np.concatenate([b["eeg"] for b in read_windows(chosen, geometry, 512)]), geometry


def test_fold_probabilities_are_the_saved_parts_combined(stacked_run):
    import csv

    import keras

    from neurocare_bids.detection.stacking import BASELINE_FILE, WEIGHTS, combine
    from neurocare_bids.training import models  # noqa: F401 - our layers, for loading
    from neurocare_bids.training.baseline import FeatureBaseline, window_features

    _, out = stacked_run
    fold = out / "group" / "fold-1"
    summary = json.loads((fold / "fold.json").read_text())
    stacking = summary["stacking"]
    # the default: the configured weight, with every weight's validation PR-AUC recorded beside it
    assert stacking["BaselineFile"] == BASELINE_FILE and stacking["BaselineWeight"] == 0.25
    assert stacking["WeightChosenBy"].startswith("configuration")
    scores = {float(w): s for w, s in stacking["ValidationPRAUC"].items()}
    assert set(scores) == set(WEIGHTS)
    assert summary["group_config"]["model"]["stacking"] is True

    windows, geometry = _fold_windows(out, summary["test"])
    network = keras.models.load_model(fold / "model.keras", compile=False)
    baseline = FeatureBaseline.load(fold / BASELINE_FILE)
    expected = combine(keras.ops.convert_to_numpy(network(windows, training=False))[:, 1],
                       baseline.predict_proba_features(window_features(windows, geometry.sfreq)),
                       stacking["BaselineWeight"])
    with open(fold / "predictions.tsv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh, delimiter="\t") if r["split"] == "test"]
    rows.sort(key=lambda r: (r["recording"], int(r["window_index"])))
    np.testing.assert_allclose([float(r["probability"]) for r in rows], expected, rtol=2e-5, atol=1e-6)


def test_final_model_card_and_apply_run_both_parts(stacked_run, tmp_path):
    import keras

    from neurocare_bids.detection.apply import load_model
    from neurocare_bids.detection.stacking import combine
    from neurocare_bids.training import models  # noqa: F401
    from neurocare_bids.training.baseline import FeatureBaseline, window_features

    _, out = stacked_run
    folder = out / "group" / "model"
    card = json.loads((folder / "model_card.json").read_text())
    stacking = card["Stacking"]
    assert (folder / stacking["BaselineFile"]).is_file() and card["ModelFile"] == "model.keras"
    model = load_model(folder)
    assert model.engine.endswith(" + features")
    assert model.describe()["BaselineWeight"] == stacking["BaselineWeight"]
    # the classifier ships as ONNX beside its joblib file, in the final model and every fold, and apply runs it
    for where in (folder, out / "group" / "fold-1"):
        entry = json.loads((where / ("model_card.json" if where == folder else "fold.json")).read_text())
        entry = entry["ONNX" if where == folder else "onnx"]["Classifier"]
        assert entry["File"] == "classifier.onnx" and (where / "classifier.onnx").is_file(), entry
        assert entry["MaxAbsDifference"] <= 1e-5
    assert model.onnx_classifier and model.describe()["ONNXClassifierSHA256"] == card["ONNX"]["Classifier"]["SHA256"]
    from neurocare_bids.reports.group import build_group_report

    report = build_group_report(out).read_text()  # the report's model card names the file and its checksum
    assert f"classifier.onnx (SHA-256 <code>{card['ONNX']['Classifier']['SHA256']}</code>)" in report
    n_times, n_chans = model.window_samples, len(model.channels)
    windows = np.random.default_rng(3).standard_normal((40, n_times, n_chans)).astype(np.float32)
    windows[20:, :, :4] *= 5
    net = keras.models.load_model(folder / "model.keras", compile=False)
    expected = combine(keras.ops.convert_to_numpy(net(windows, training=False))[:, 1],
                       FeatureBaseline.load(folder / stacking["BaselineFile"]).predict_proba_features(
                           window_features(windows, model.sfreq)), stacking["BaselineWeight"])
    np.testing.assert_allclose(model.predict(windows), expected, rtol=1e-5, atol=1e-6)

    # and through the CLI: a new recording gets its events from the stacked model
    bids = tmp_path / "bids"
    add_recording(bids, "31", duration=120.0, seizures=[(40.0, 30.0, "sz")], events=None, seed=31)
    result = run_cli(bids, tmp_path / "applied", "participant", "--model", folder, "--skip-bids-validation")
    assert result.returncode == 0, result.stderr
    sidecar = json.loads(next((tmp_path / "applied").glob("sub-31/**/*_desc-seizureprob_timeseries.json")).read_text())
    assert "features" in json.dumps(sidecar)
    citation = (out / "logs" / "CITATION.md").read_text()
    assert "stacked with a feature baseline" in citation and "inner validation subjects" in citation


def test_export_model_writes_the_classifier_of_an_older_stacked_folder(stacked_run, tmp_path):
    """A stacked folder from before classifier.onnx: export-model writes it beside the network's copies, names it in
    the card and says so; apply mode then runs it."""
    from neurocare_bids.detection.apply import load_model
    from neurocare_bids.io.fsutils import sha256_file

    _, out = stacked_run
    folder = tmp_path / "model"
    shutil.copytree(out / "group" / "model", folder)
    card = json.loads((folder / "model_card.json").read_text())
    (folder / card["ONNX"].pop("Classifier")["File"]).unlink()
    (folder / "model_card.json").write_text(json.dumps(card))
    assert not load_model(folder).onnx_classifier
    result = run_cli("export-model", folder)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 2 and "model.onnx" in lines[0] and "classifier.onnx" in lines[1]
    entry = json.loads((folder / "model_card.json").read_text())["ONNX"]["Classifier"]
    assert entry["SHA256"] == sha256_file(folder / "classifier.onnx") and entry["SHA256"] in lines[1]
    assert load_model(folder).onnx_classifier


@pytest.mark.parametrize("damage", ["missing", "weight"])
def test_apply_refuses_a_stacked_folder_without_its_baseline(stacked_run, tmp_path, damage):
    _, out = stacked_run
    folder = tmp_path / "model"
    shutil.copytree(out / "group" / "model", folder)
    card = json.loads((folder / "model_card.json").read_text())
    if damage == "missing":  # the classifier in neither form (classifier.onnx alone would serve)
        (folder / card["Stacking"]["BaselineFile"]).unlink()
        (folder / card["ONNX"]["Classifier"]["File"]).unlink()
    else:
        card["Stacking"]["BaselineWeight"] = 2.0
        (folder / "model_card.json").write_text(json.dumps(card))
    bids = tmp_path / "bids"
    add_recording(bids, "32", duration=60.0, events=None, seed=32)
    result = run_cli(bids, tmp_path / "applied", "participant", "--model", folder, "--skip-bids-validation")
    assert result.returncode == (66 if damage == "missing" else 65), result.stderr
    assert "features.joblib is missing" in result.stderr if damage == "missing" else "BaselineWeight" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "applied" / "sub-32").exists()


def test_stacking_two_finished_runs_gives_the_stacked_runs_metrics(stacked_run, prepared, tmp_path):
    """benchmarks/stack_runs.py, given a run of the network alone and a run of the features preset (same seed and
    folds), finds the stacked run's weights, post-processing and metrics: the ablation table may derive the
    stacked detector's row from those two runs."""
    import sys

    bids, participant_out, _ = prepared
    runs, calls = {}, []
    for name, section in (("network", "stacking = false\n"), ("features", 'preset = "features"\n')):
        out = tmp_path / name
        shutil.copytree(participant_out, out)
        config = tmp_path / f"{name}.toml"
        config.write_text(QUICK_GROUP_CONFIG + section + "[cv]\nfolds = 2\nfinal_model = false\n")
        calls.append(((bids, out, "group", "--config", config, "--no-reports"), {"timeout": 900}))
        runs[name] = out
    for result in run_cli_concurrently(*calls):  # two independent runs: at once
        assert result.returncode == 0, result.stderr
    compute = json.loads((runs["features"] / "group" / "fold-1" / "fold.json").read_text())["compute"]
    assert compute["backend"] == "scikit-learn" and compute["fit_seconds"] > 0  # trees: no epochs, no steps
    assert "training_seconds" not in compute and "epochs" not in compute
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "stack_runs.py"
    import subprocess

    result = subprocess.run([sys.executable, str(script), str(bids), str(runs["network"]), str(runs["features"]),
                             str(tmp_path / "derived")], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("stacked: event F1")
    _, stacked_out = stacked_run
    for fold in ("fold-1", "fold-2"):
        real = json.loads((stacked_out / "group" / fold / "fold.json").read_text())
        derived = json.loads((tmp_path / "derived" / "group" / fold / "fold.json").read_text())
        assert derived["stacking"]["BaselineWeight"] == real["stacking"]["BaselineWeight"]
        for key in ("threshold", "min_duration"):
            assert derived["postprocessing"][key] == real["postprocessing"][key]
        for point in ("f1", "alarm"):  # both operating points, as the group level tunes them
            for key in ("threshold", "min_duration", "smoothing"):
                assert derived["operating_points"][point][key] == real["operating_points"][point][key], (point, key)
    real = json.loads((stacked_out / "group" / "metrics.json").read_text())
    derived = json.loads((tmp_path / "derived" / "group" / "metrics.json").read_text())
    for level, key in (("event", "f1"), ("event", "fp_per_24h"), ("window", "pr_auc"), ("window", "roc_auc")):
        assert derived[level][key] == pytest.approx(real[level][key], abs=1e-5), (level, key)
    # with --tune-stacking-weight, each fold's weight is the one the real run's validation PR-AUCs favour
    tuned = subprocess.run([sys.executable, str(script), str(bids), str(runs["network"]), str(runs["features"]),
                            str(tmp_path / "tuned"), "--tune-stacking-weight"], capture_output=True, text=True,
                           timeout=600)
    assert tuned.returncode == 0, tuned.stderr
    for fold in ("fold-1", "fold-2"):
        real = json.loads((stacked_out / "group" / fold / "fold.json").read_text())["stacking"]
        scores = {float(w): s for w, s in real["ValidationPRAUC"].items()}
        best = min(w for w, s in scores.items() if s == max(scores.values())) if None not in scores.values() else 0.5
        derived = json.loads((tmp_path / "tuned" / "group" / fold / "fold.json").read_text())["stacking"]
        assert derived["BaselineWeight"] == best and derived["WeightChosenBy"].startswith("validation")
    # with --objective alarm, every fold runs at the alarm point the real run chose, and the metrics are taken there
    alarm = subprocess.run([sys.executable, str(script), str(bids), str(runs["network"]), str(runs["features"]),
                            str(tmp_path / "alarm"), "--objective", "alarm"], capture_output=True, text=True,
                           timeout=600)
    assert alarm.returncode == 0, alarm.stderr
    f1_metrics = json.loads((tmp_path / "derived" / "group" / "metrics.json").read_text())
    alarm_metrics = json.loads((tmp_path / "alarm" / "group" / "metrics.json").read_text())
    for fold in ("fold-1", "fold-2"):
        real = json.loads((stacked_out / "group" / fold / "fold.json").read_text())["operating_points"]["alarm"]
        derived = json.loads((tmp_path / "alarm" / "group" / fold / "fold.json").read_text())["postprocessing"]
        for key in ("threshold", "min_duration", "smoothing"):
            assert derived[key] == real[key], (fold, key)
    assert "median latency" in alarm.stdout
    # benchmarks/stacking_weights.py judges each weight on the validation subjects alone: given the two runs with
    # their test rows removed, its PR-AUCs are the ones the stacked run recorded for its weights
    for name, out in runs.items():
        copy = tmp_path / f"{name}-validation-only"
        shutil.copytree(out, copy)
        for table in (copy / "group").glob("fold-*/predictions.tsv"):
            lines = table.read_text().splitlines(keepends=True)
            table.write_text("".join(line for line in lines if line.split("\t")[2] != "test"))
    weights = subprocess.run([sys.executable, str(script.with_name("stacking_weights.py")),
                              str(tmp_path / "network-validation-only"), str(tmp_path / "features-validation-only"),
                              "--json", str(tmp_path / "weights.json")], capture_output=True, text=True, timeout=600)
    assert weights.returncode == 0, weights.stderr
    figures = json.loads((tmp_path / "weights.json").read_text())
    assert [row["fold"] for row in figures["folds"]] == [1, 2] and "mean (2 folds)" in weights.stdout
    for row in figures["folds"]:
        real = json.loads((stacked_out / "group" / f"fold-{row['fold']}" / "fold.json").read_text())["stacking"]
        ours = {float(w): score for w, score in row["pr_auc"].items()}
        for w, score in real["ValidationPRAUC"].items():  # the run's from full precision, ours from the files
            assert ours[float(w)] == (None if score is None else pytest.approx(score, abs=1e-6)), (row["fold"], w)
        assert set(ours) == {0.0, 0.1, 0.25, 0.5, 0.75, 1.0} and all(f is None or 0 <= f <= 1 for f in row["f1"].values())
    # the same stacked scores: the window ranking before smoothing does not depend on the operating point
    assert alarm_metrics["window"]["unsmoothed"]["pr_auc"] == f1_metrics["window"]["unsmoothed"]["pr_auc"]
    # benchmarks/ensemble_runs.py: a run's own row is its metrics.json's pooled PR-AUC (the same scores), and an
    # "ensemble" of a run with itself is that run
    ensembled = subprocess.run([sys.executable, str(script.with_name("ensemble_runs.py")), "--networks",
                                str(runs["network"]), str(runs["network"]), "--features", str(runs["features"])],
                               capture_output=True, text=True, timeout=600)
    assert ensembled.returncode == 0, ensembled.stderr
    rows = {line.split(" | ")[0].lstrip("| "): line.split(" | ")[1:] for line in ensembled.stdout.splitlines()[2:]}
    pooled = json.loads((runs["network"] / "group" / "metrics.json").read_text())["window"]["pr_auc"]
    assert float(rows["network network"][0]) == pytest.approx(pooled, abs=5e-4)
    assert rows["ensemble of 2 networks"] == rows["network network"]
    assert rows["ensemble + features features"] == rows["network network + features features"]
    # a network run and a features run of other folds are refused
    bad = subprocess.run([sys.executable, str(script), str(bids), str(runs["features"]), str(runs["features"]),
                          str(tmp_path / "bad")], capture_output=True, text=True, timeout=600)
    assert bad.returncode != 0 and "not a run of the network alone" in bad.stderr
