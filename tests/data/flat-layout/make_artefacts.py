"""How the artefacts in this folder were made: by NeuroCare-BIDS 0.1.0 before the package was laid out by
stage (commit df6a798, flat modules ``neurocare_bids.models``, ``neurocare_bids.baseline`` ...), so that
``tests/training/test_legacy_artefacts.py`` can prove that models saved by earlier versions still load and predict
the same numbers. Kept for the record; it imports the old module paths on purpose and is not run by the tests.

    PYTHONPATH=/path/to/checkout-of-df6a798 python tests/data/flat-layout/make_artefacts.py tests/data/flat-layout

* ``model.keras``: a tiny CNN-BiLSTM with every layer of ours (per-channel encoder, ``ChannelFeatures``,
  ``SpectralFeatures``), compiled with the focal loss; weights drawn at random (so that the outputs are not all
  0.5) and BatchNorm statistics moved away from 0/1.
* ``features.joblib``: a tiny feature baseline (gradient boosting, 10 iterations, 16 quantile bins instead of 255
  to keep the file small), saved by ``FeatureBaseline.save`` as a stacked model's ``features.joblib`` is: its
  pickle names ``neurocare_bids.baseline.QuantileBins``.
* ``windows.npz``: the z-scored windows ``(12, 128, 4)`` (64 Hz) the numbers below were computed on.
* ``expected.json``: network, baseline and stacked (weight 0.25) seizure probabilities of those windows, and the
  versions that computed them.
"""

import json
import sys
from pathlib import Path

import joblib
import keras
import numpy as np
import sklearn

import neurocare_bids
from neurocare_bids.baseline import FeatureBaseline
from neurocare_bids.config import ModelConfig, TrainingConfig
from neurocare_bids.losses import build_loss
from neurocare_bids.models import build_model
from neurocare_bids.stacking import combine

SFREQ, N_TIMES, N_CHANS, WEIGHT = 64.0, 128, 4, 0.25


def windows(rng: np.random.Generator, n: int, seizure: np.ndarray) -> np.ndarray:
    t = np.arange(N_TIMES) / SFREQ
    x = rng.standard_normal((n, N_TIMES, N_CHANS))
    x[seizure, :, :2] += 3 * np.sin(2 * np.pi * 4 * t)[None, :, None]  # a focal 4 Hz rhythm
    return x.astype(np.float32)


def main(folder: Path) -> None:
    rng = np.random.default_rng(20261203)
    keras.utils.set_random_seed(0)
    cfg = ModelConfig(encoder="per_channel", conv_filters=[2], conv_kernel_size=3, lstm_units=[2],
                      spectral_units=2, channel_features=2, dense_units=2)
    model = build_model(N_CHANS, 2, N_TIMES, SFREQ, cfg)
    names = {type(layer).__name__ for layer in model.layers}
    assert {"SpectralFeatures", "ChannelFeatures", "Conv2D"} <= names, names  # Conv2D: the per-channel encoder
    for variable in model.trainable_weights:
        variable.assign(rng.normal(0, 0.5, variable.shape))
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.moving_mean.shape[0]
            layer.moving_mean.assign(rng.normal(0, 0.5, n))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, n))
    model.compile(optimizer="adam", loss=build_loss(TrainingConfig()))
    model.save(folder / "model.keras")

    labels = np.arange(64) % 2
    baseline = FeatureBaseline("hgb", max_iter=10)
    make_pipeline = baseline._make_pipeline
    baseline._make_pipeline = lambda seed: make_pipeline(seed).set_params(quantilebins__max_bins=16)
    baseline.fit(windows(rng, 64, labels == 1), labels, SFREQ, seed=0)
    del baseline._make_pipeline  # the instance as FeatureBaseline made it (save() pickles its state, not itself)
    baseline.save(folder / "features.joblib")

    test = windows(rng, 12, np.arange(12) % 3 == 0)
    np.savez_compressed(folder / "windows.npz", eeg=test)
    network = keras.ops.convert_to_numpy(model(test, training=False))[:, 1].astype(np.float64)
    features = baseline.predict_proba(test, SFREQ)
    expected = {
        "made_by": {"neurocare_bids": neurocare_bids.__version__, "commit": "df6a798", "keras": keras.__version__,
                    "backend": keras.backend.backend(), "numpy": np.__version__, "sklearn": sklearn.__version__,
                    "joblib": joblib.__version__},
        "sfreq": SFREQ, "weight": WEIGHT,
        "network": network.tolist(), "features": features.tolist(),
        "stacked": combine(network, features, WEIGHT).tolist(),
    }
    (folder / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
