"""Models saved before the package was laid out by stage still load and predict the same numbers.

``tests/data/flat-layout/`` holds what the flat layout's modules saved (0.1.0 at df6a798; ``make_artefacts.py``
there says how): a Keras model with every layer of ours, compiled with the focal loss, and a feature baseline pickled
by joblib, whose pickle names ``neurocare_bids.baseline.QuantileBins``; with the windows and the probabilities they
gave at the time. Keras finds our layers by their registered names (``neurocare>SpectralFeatures``: package and
class, no module path), and pickles find the old module paths through ``neurocare_bids.MOVED_MODULES``.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest

import neurocare_bids

DATA = Path(__file__).resolve().parents[1] / "data" / "flat-layout"
PACKAGE_DIR = Path(neurocare_bids.__file__).parent


@pytest.fixture(scope="module")
def expected() -> dict:
    return json.loads((DATA / "expected.json").read_text())


@pytest.fixture(scope="module")
def windows() -> np.ndarray:
    with np.load(DATA / "windows.npz") as saved:
        return saved["eeg"]


def test_the_artefacts_name_the_old_module_paths():
    """What makes this test worth having: the files really are the old layout's."""
    config = zipfile.ZipFile(DATA / "model.keras").read("config.json").decode()
    assert '"module": "neurocare_bids.models"' in config and '"module": "neurocare_bids.losses"' in config
    for name in ("SpectralFeatures", "ChannelFeatures", "FocalLoss"):
        assert f'"registered_name": "neurocare>{name}"' in config
    assert b"neurocare_bids.baseline" in (DATA / "features.joblib").read_bytes()


@pytest.mark.filterwarnings("ignore:Skipping variable loading for optimizer")  # compiled, never trained
def test_a_keras_model_saved_by_the_flat_layout_loads_and_predicts_the_same(expected, windows):
    import keras

    from neurocare_bids.training import models  # our layers and loss, registered under the names the file gives

    model = keras.models.load_model(DATA / "model.keras")  # compiled: the focal loss is deserialised too
    assert isinstance(model.get_layer("spectral_features"), models.SpectralFeatures)
    assert isinstance(model.get_layer("channel_features"), models.ChannelFeatures)
    assert model.get_layer("block1_conv").__class__.__name__ == "Conv2D"  # the per-channel encoder
    assert type(model.loss).__module__ == "neurocare_bids.training.losses"
    probs = keras.ops.convert_to_numpy(model(windows, training=False))[:, 1]
    np.testing.assert_allclose(probs, expected["network"], rtol=1e-5, atol=1e-6)


def test_a_feature_baseline_pickled_by_the_flat_layout_loads_and_predicts_the_same(expected, windows):
    from neurocare_bids.detection.stacking import combine
    from neurocare_bids.training.baseline import FeatureBaseline, QuantileBins

    sys.modules.pop("neurocare_bids.baseline", None)  # as in a new process: the pickle imports the old path
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # an old model is no reason to warn its user
        baseline = FeatureBaseline.load(DATA / "features.joblib")  # what apply mode calls for a stacked model
    assert isinstance(baseline.pipeline.named_steps["quantilebins"], QuantileBins)
    features = baseline.predict_proba(windows, expected["sfreq"])
    np.testing.assert_allclose(features, expected["features"], rtol=1e-9, atol=1e-12)
    stacked = combine(expected["network"], features, expected["weight"])
    np.testing.assert_allclose(stacked, expected["stacked"], rtol=1e-9, atol=1e-12)


def test_old_artefacts_load_in_a_fresh_interpreter_through_the_old_paths(tmp_path):
    """As a script written for the flat layout would: joblib alone (the pickle imports the package itself), and the
    old documentation's ``import neurocare_bids.models`` before loading the Keras model."""
    code = ("import sys, joblib\n"
            "state = joblib.load(sys.argv[1] + '/features.joblib')\n"
            "print(type(state['pipeline'].named_steps['quantilebins']).__module__)\n")
    env = {**os.environ, "PYTHONWARNINGS": "ignore::DeprecationWarning"}
    done = subprocess.run([sys.executable, "-c", code, str(DATA)], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "neurocare_bids.training.baseline"
    code = ("import sys, keras, neurocare_bids.models\n"
            "model = keras.models.load_model(sys.argv[1] + '/model.keras')\n"
            "print(type(model.get_layer('spectral_features')).__module__)\n")
    done = subprocess.run([sys.executable, "-c", code, str(DATA)], capture_output=True, text=True,
                          env={**env, "TF_CPP_MIN_LOG_LEVEL": "3"}, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "neurocare_bids.training.models"


@pytest.mark.parametrize("old", sorted(neurocare_bids.MOVED_MODULES))
def test_every_old_module_path_is_the_module_at_its_new_place(old):
    new = f"neurocare_bids.{neurocare_bids.MOVED_MODULES[old]}"
    assert (PACKAGE_DIR / (new.split(".", 1)[1].replace(".", "/") + ".py")).is_file()
    assert not (PACKAGE_DIR / f"{old}.py").exists() and not (PACKAGE_DIR / old).exists()  # never shadows a file
    sys.modules.pop(f"neurocare_bids.{old}", None)
    with pytest.warns(DeprecationWarning, match=f"neurocare_bids.{old} is {new}"):
        module = importlib.import_module(f"neurocare_bids.{old}")
    assert module is importlib.import_module(new)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert importlib.import_module(f"neurocare_bids.{old}") is module  # once imported, silently
