"""Focal and weighted cross-entropy losses: the formulas on hand-computed values, both label conventions,
serialisation and a save/load round trip."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest

from neurocare_bids.config import TrainingConfig
from neurocare_bids.training.losses import FocalLoss, WeightedCrossEntropy, build_loss, inverse_frequency_weights

P = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]], dtype="float32")  # softmax outputs
LABELS = np.array([0, 1, 1])
# Keras's TensorFlow backend converts tensors with np.array(x, copy=False) semantics NumPy 2 warns about.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def per_sample(loss: keras.losses.Loss, y_true, y_pred=P) -> np.ndarray:
    return keras.ops.convert_to_numpy(loss.call(keras.ops.convert_to_tensor(y_true, "float32"),
                                                keras.ops.convert_to_tensor(y_pred)))


def reduced(loss: keras.losses.Loss, y_true, y_pred=P, **kwargs) -> float:
    return float(keras.ops.convert_to_numpy(loss(y_true, y_pred, **kwargs)))


# ---------------------------------------------------------------------- focal loss
def test_focal_matches_hand_computed_values():
    # -w_c (1 - p_c)^2 log p_c for the true class, alpha = 0.75 (class 1), 0.25 (class 0):
    #   window 1, class 0, p = 0.9: -0.25 * 0.1^2 * ln 0.9 = 0.25 * 0.01 * 0.1053605 = 0.000263401
    #   window 2, class 1, p = 0.8: -0.75 * 0.2^2 * ln 0.8 = 0.75 * 0.04 * 0.2231436 = 0.006694307
    #   window 3, class 1, p = 0.4: -0.75 * 0.6^2 * ln 0.4 = 0.75 * 0.36 * 0.9162907 = 0.247398496
    expected = np.array([0.000263401, 0.006694307, 0.247398496])
    loss = FocalLoss(gamma=2.0, alpha=0.75)
    np.testing.assert_allclose(per_sample(loss, LABELS), expected, rtol=1e-5)
    assert reduced(loss, LABELS) == pytest.approx(expected.mean(), rel=1e-5)  # mean over the batch


def test_focal_with_gamma_zero_is_alpha_weighted_cross_entropy():
    expected = np.array([-0.25 * math.log(0.9), -0.75 * math.log(0.8), -0.75 * math.log(0.4)])
    np.testing.assert_allclose(per_sample(FocalLoss(gamma=0.0, alpha=0.75), LABELS), expected, rtol=1e-5)
    # alpha = None and gamma = 0: plain cross-entropy, as Keras computes it.
    plain = keras.losses.categorical_crossentropy(np.eye(2, dtype="float32")[LABELS], P)
    np.testing.assert_allclose(per_sample(FocalLoss(gamma=0.0, alpha=None), LABELS),
                               keras.ops.convert_to_numpy(plain), rtol=1e-5)


@pytest.mark.parametrize("loss", [FocalLoss(gamma=2.0, alpha=0.75), FocalLoss(gamma=0.5, alpha=0.3),
                                  WeightedCrossEntropy([0.6, 3.0]), WeightedCrossEntropy()])
def test_integer_and_one_hot_labels_agree(loss):
    as_int = reduced(loss, LABELS)
    assert reduced(loss, LABELS.reshape(-1, 1)) == pytest.approx(as_int, rel=1e-6)
    assert reduced(loss, np.eye(2, dtype="float32")[LABELS]) == pytest.approx(as_int, rel=1e-6)
    assert reduced(loss, LABELS.astype("float32")) == pytest.approx(as_int, rel=1e-6)


def test_focal_soft_labels():
    # mixup target (0.3, 0.7) on p = (0.6, 0.4), gamma = 2, alpha = 0.75:
    #   -(0.25 * 0.3 * 0.4^2 * ln 0.6 + 0.75 * 0.7 * 0.6^2 * ln 0.4)
    #   = 0.012 * 0.5108256 + 0.189 * 0.9162907 = 0.006129908 + 0.173178951 = 0.179308859
    got = per_sample(FocalLoss(2.0, 0.75), np.array([[0.3, 0.7]]), P[2:])
    np.testing.assert_allclose(got, [0.179308859], rtol=1e-5)
    # a soft label is the same mix of the two hard-label losses
    hard = per_sample(FocalLoss(2.0, 0.75), np.eye(2)[[0, 1]], P[[2, 2]])
    np.testing.assert_allclose(got, 0.3 * hard[0] + 0.7 * hard[1], rtol=1e-5)


def test_clipping_keeps_the_loss_finite():
    p = np.array([[1.0, 0.0]], dtype="float32")
    eps = 1e-7
    got = per_sample(FocalLoss(2.0, 0.75, epsilon=eps), np.array([1]), p)
    np.testing.assert_allclose(got, [-0.75 * (1 - eps) ** 2 * math.log(eps)], rtol=1e-4)
    assert per_sample(FocalLoss(2.0, 0.75), np.array([0]), p)[0] == pytest.approx(0.0, abs=1e-9)


def test_sample_weights_apply():
    w = np.array([1.0, 0.0, 2.0], dtype="float32")
    loss = FocalLoss(2.0, 0.75)
    expected = float(np.sum(per_sample(loss, LABELS) * w) / 3)
    assert reduced(loss, LABELS, sample_weight=w) == pytest.approx(expected, rel=1e-5)


def test_focal_rejects_bad_parameters():
    with pytest.raises(ValueError):
        FocalLoss(gamma=-1.0)
    with pytest.raises(ValueError):
        FocalLoss(alpha=1.5)


# ---------------------------------------------------------------------- weighted cross-entropy
def test_weighted_cross_entropy_matches_hand_computed_values():
    #   -0.6 ln 0.9 = 0.063216, -3 ln 0.8 = 0.669431, -3 ln 0.4 = 2.748872
    expected = np.array([0.0632163, 0.6694307, 2.7488722])
    np.testing.assert_allclose(per_sample(WeightedCrossEntropy([0.6, 3.0]), LABELS), expected, rtol=1e-5)
    np.testing.assert_allclose(per_sample(WeightedCrossEntropy(), LABELS),
                               [-math.log(0.9), -math.log(0.8), -math.log(0.4)], rtol=1e-5)
    # soft label (0.3, 0.7) on (0.6, 0.4): -(0.6 * 0.3 ln 0.6 + 3 * 0.7 ln 0.4) = 0.091949 + 1.924210
    got = per_sample(WeightedCrossEntropy([0.6, 3.0]), np.array([[0.3, 0.7]]), P[2:])
    np.testing.assert_allclose(got, [2.0161590], rtol=1e-5)


def test_weighted_cross_entropy_checks_the_number_of_weights():
    with pytest.raises(ValueError, match="3 class weights"):
        reduced(WeightedCrossEntropy([1.0, 2.0, 3.0]), LABELS)
    with pytest.raises(ValueError):
        WeightedCrossEntropy([1.0, -1.0])


# ---------------------------------------------------------------------- build_loss
def test_inverse_frequency_weights():
    # 90 % background, 10 % seizure: 1 / (2 * 0.9) = 0.5556 and 1 / (2 * 0.1) = 5
    np.testing.assert_allclose(inverse_frequency_weights([0.9, 0.1]), [1 / 1.8, 5.0])
    np.testing.assert_allclose(inverse_frequency_weights([900, 100]), [1 / 1.8, 5.0])  # counts work too
    with pytest.raises(ValueError, match="every class present"):
        inverse_frequency_weights([1.0, 0.0])


def test_build_loss():
    focal = build_loss(TrainingConfig())
    assert isinstance(focal, FocalLoss) and (focal.gamma, focal.alpha) == (2.0, 0.75)
    focal = build_loss(TrainingConfig(focal_gamma=0.0, focal_alpha=0.5), [0.5, 0.5])
    assert (focal.gamma, focal.alpha) == (0.0, 0.5)
    ce = build_loss(TrainingConfig(loss="cross_entropy"), [0.8, 0.2])
    assert isinstance(ce, WeightedCrossEntropy)
    np.testing.assert_allclose(ce.class_weights, [0.625, 2.5])
    assert build_loss(TrainingConfig(loss="cross_entropy", class_weighting=False)).class_weights is None
    with pytest.raises(ValueError, match="class frequencies"):
        build_loss(TrainingConfig(loss="cross_entropy"), None)


# ---------------------------------------------------------------------- serialisation
@pytest.mark.parametrize("loss", [FocalLoss(gamma=1.5, alpha=0.6, epsilon=1e-6),
                                  WeightedCrossEntropy([0.7, 2.5], name="wce")])
def test_losses_serialise(loss):
    restored = keras.losses.deserialize(keras.losses.serialize(loss))
    assert type(restored) is type(loss) and restored.get_config() == loss.get_config()
    assert reduced(restored, LABELS) == pytest.approx(reduced(loss, LABELS), rel=1e-7)
    assert keras.saving.get_registered_name(type(loss)).startswith("neurocare>")


def test_losses_survive_model_save_and_load(tmp_path):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,), name="eeg")
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(inputs))
    model.compile(optimizer="adam", loss=FocalLoss(gamma=1.5, alpha=0.6))
    x = np.random.default_rng(0).standard_normal((8, 4)).astype("float32")
    y = np.array([0, 1] * 4)
    model.fit(x, y, epochs=1, verbose=0)  # a trained model, optimizer state included, is what gets saved
    path = tmp_path / "model.keras"
    model.save(path)
    restored = keras.models.load_model(path)  # no custom_objects: the loss is registered
    assert isinstance(restored.loss, FocalLoss)
    assert restored.loss.get_config() == model.loss.get_config()
    assert restored.evaluate(x, y, verbose=0) == pytest.approx(model.evaluate(x, y, verbose=0), rel=1e-6)

    model.compile(optimizer="adam", loss=WeightedCrossEntropy([0.5, 5.0]))
    model.fit(x, y, epochs=1, verbose=0)
    model.save(path)
    restored = keras.models.load_model(path)
    assert isinstance(restored.loss, WeightedCrossEntropy) and restored.loss.class_weights == [0.5, 5.0]
