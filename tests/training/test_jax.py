"""The group level on Keras's JAX backend (the optional ``jax`` extra), end to end on the tiny demo dataset: CLI as a
subprocess with ``KERAS_BACKEND=jax``, outputs read back, and the trained model applied. Data-parallel training over
several JAX devices is compared with one device in test_distribute.py."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import NATIVE_LOG, QUICK_GROUP_CONFIG, add_recording, run_cli, run_cli_concurrently

pytest.importorskip("jax", reason="the optional 'jax' extra is not installed (pip install -e '.[jax]'; "
                                  "make install installs it)")

JAX = {"KERAS_BACKEND": "jax"}


def _probabilities(out, bids, recording) -> np.ndarray:
    stem = recording.name[: recording.name.rindex("_")]
    series = out / recording.parent.relative_to(bids) / f"{stem}_desc-seizureprob_timeseries.tsv.gz"
    return np.loadtxt(gzip.open(series, "rt"), delimiter="\t", ndmin=2)[:, 1]


def test_multi_worker_is_refused_on_jax(prepared, tmp_path):
    bids, participant_out, config = prepared
    out = tmp_path / "out"
    shutil.copytree(participant_out, out)
    result = run_cli(bids, out, "group", "--config", config, "--distributed", env=JAX)
    assert result.returncode == 64, result.stderr
    assert "needs Keras's TensorFlow backend" in result.stderr and "Traceback" not in result.stderr


NO_TENSORFLOW = Path(__file__).resolve().parents[1] / "no_tensorflow"  # its sitecustomize hides TensorFlow


def test_group_level_on_jax_with_and_without_tensorflow_then_apply(prepared, tmp_path):
    """The group level on JAX, end to end (two folds and the final model, stacked, weight averaging on, which swaps
    weights between the optimizer and the model at every epoch's end), twice side by side:

    - where TensorFlow is installed, with ``input_pipeline = "numpy"``: ``model.onnx`` beside every model, exported
      from ``model.keras`` by tf2onnx on TensorFlow in a child process and checked there and against the JAX model;
    - on a machine without TensorFlow (a GPU node with JAX alone; here an import hook hides it): the NumPy input
      pipeline (``auto``), no TensorBoard logs and no ONNX copy (saying why), and the same predictions.

    Then apply mode on a new recording gives the same probabilities with ONNX Runtime (the default engine, no Keras
    backend involved), with ``--engine keras`` on JAX, and with ``--engine keras`` still without TensorFlow; the
    model without ONNX copy is refused by the default engine, with the way out."""
    bids, participant_out, _ = prepared
    # the default, stacked; the folds' ONNX copies exported as by default (or why not)
    base = (QUICK_GROUP_CONFIG.replace("fold_onnx = false", "fold_onnx = true")
            + "channel_features = 0\n[cv]\nfolds = 2\n")
    runs = {}
    for name, pipeline in (("without", "auto"), ("numpy", "numpy")):
        runs[name] = tmp_path / name
        shutil.copytree(participant_out, runs[name])
        (tmp_path / f"{name}.toml").write_text(base.replace("[model]", f'input_pipeline = "{pipeline}"\n[model]'))
    attempts = tmp_path / "attempts.txt"
    hidden = {**JAX, "PYTHONPATH": f"{NO_TENSORFLOW}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
              "NO_TENSORFLOW_LOG": str(attempts)}
    without, numpy = run_cli_concurrently(
        ((bids, runs["without"], "group", "--config", tmp_path / "without.toml"), {"env": hidden, "timeout": 900}),
        ((bids, runs["numpy"], "group", "--config", tmp_path / "numpy.toml"), {"env": JAX, "timeout": 900}))
    for result in (without, numpy):
        assert result.returncode == 0, result.stderr
        assert "Traceback" not in result.stderr and not NATIVE_LOG.search(result.stderr), result.stderr
    assert "hidden in process" in attempts.read_text()  # the hook was in place
    group, with_tf = runs["without"] / "group", runs["numpy"] / "group"
    assert (group / "predictions.tsv").read_bytes() == (with_tf / "predictions.tsv").read_bytes()
    metrics = json.loads((with_tf / "metrics.json").read_text())
    assert len(metrics["folds"]) == 2 and 0 <= metrics["window"]["pr_auc"] <= 1
    assert not (group / "tensorboard").exists() and (with_tf / "tensorboard").is_dir()
    for folder in (group / "fold-1", group / "fold-2", group / "model"):
        assert (folder / "model.keras").is_file() and not (folder / "model.onnx").exists()
        assert (folder / "classifier.onnx").is_file()  # the stacked baseline's copy needs no TensorFlow
        assert (with_tf / folder.name / "model.onnx").is_file()
    fold = json.loads((group / "fold-1" / "fold.json").read_text())
    assert fold["compute"]["input_pipeline"] == "numpy" and fold["onnx"]["File"] is None
    assert "TensorFlow" in fold["onnx"]["Reason"] and fold["stacking"]
    assert fold["trained_on"] == {"KerasBackend": "jax", "Distribution": "single", "Replicas": 1, "Workers": 1}
    card = json.loads((group / "model" / "model_card.json").read_text())
    assert "tensorflow" not in card["Software"] and card["Compute"]["input_pipeline"] == "numpy"
    assert without.stderr.count("no ONNX copy: exporting needs TensorFlow") == 3  # two folds, the final model
    numpy_fold = json.loads((with_tf / "fold-1" / "fold.json").read_text())
    assert numpy_fold["compute"]["input_pipeline"] == "numpy" and numpy_fold["onnx"]["File"] == "model.onnx"
    card = json.loads((with_tf / "model" / "model_card.json").read_text())
    assert card["TrainedOn"]["KerasBackend"] == "jax" and card["Software"]["keras-backend"] == "jax"
    assert card["Software"]["jax"] and card["Software"]["jaxlib"]
    # ONNX: exported from model.keras by tf2onnx on TensorFlow, checked there and against the JAX model here
    onnx = card["ONNX"]
    assert onnx["File"] == "model.onnx" and "jax backend" in onnx["Exporter"], onnx
    assert onnx["MaxAbsDifference"] <= 1e-5
    assert hashlib.sha256((with_tf / "model" / "model.onnx").read_bytes()).hexdigest() == onnx["SHA256"]

    new = tmp_path / "new"
    recording = add_recording(new, "11", duration=300.0, seizures=[(120.0, 30.0, "sz")], events=None, seed=11)
    applies = {"onnx": (with_tf, None), "keras": (with_tf, JAX), "keras-without": (group, hidden)}
    results = run_cli_concurrently(*[((new, tmp_path / f"applied-{name}", "participant", "--model", folder / "model",
                                       "--engine", name.split("-")[0], "--skip-bids-validation"), {"env": env})
                                     for name, (folder, env) in applies.items()])
    probabilities = {}
    for name, result in zip(applies, results):
        assert result.returncode == 0, result.stderr
        probabilities[name] = _probabilities(tmp_path / f"applied-{name}", new, recording)
    assert len(probabilities["onnx"]) == (300 - 4) // 2 + 1
    np.testing.assert_allclose(probabilities["onnx"], probabilities["keras"], atol=1e-5)
    np.testing.assert_allclose(probabilities["keras-without"], probabilities["keras"], atol=1e-6)
    refused = run_cli(new, tmp_path / "refused", "participant", "--model", group / "model", "--skip-bids-validation",
                      env=hidden)
    assert refused.returncode != 0 and "has no ONNX model" in refused.stderr and "--engine keras" in refused.stderr
