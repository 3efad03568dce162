"""Training losses for the softmax detectors, written against ``keras`` and ``keras.ops`` alone.

Both losses accept the two label conventions the training code produces: integer class labels, shape
``(batch,)`` or ``(batch, 1)``, and one-hot or soft labels, shape ``(batch, n_outputs)`` (mixup mixes
labels, so they are not one-hot). Predictions are softmax probabilities ``(batch, n_outputs)``; they are
clipped to ``[epsilon, 1 - epsilon]`` before the logarithm. Each loss returns one value per window, so
Keras's reductions and sample weights apply as usual. Both are registered Keras serializables: a saved
model reloads with its loss, no ``custom_objects`` needed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
from keras import ops

from ..config import TrainingConfig

_PACKAGE = "neurocare"


def _one_hot_targets(y_true, y_pred):
    """``y_true`` as per-class targets shaped like ``y_pred``, whichever label convention it uses."""
    n_outputs = y_pred.shape[-1]
    if len(y_true.shape) == len(y_pred.shape) and y_true.shape[-1] != 1:
        return ops.cast(y_true, y_pred.dtype)  # one-hot or soft labels
    labels = ops.cast(ops.reshape(y_true, (-1,)), "int32")  # integer labels, (batch,) or (batch, 1)
    return ops.one_hot(labels, n_outputs, dtype=y_pred.dtype)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class FocalLoss(keras.losses.Loss):
    """Focal loss (Lin et al., 2017) for softmax outputs: ``-Σ_c w_c y_c (1 - p_c)^γ log p_c``.

    ``(1 - p)^γ`` shrinks the loss of windows the model already gets right, so the thousands of easy
    background windows do not drown the few seizure ones; ``alpha`` is the weight of the seizure class
    (class 1 and above) and ``1 - alpha`` that of background (class 0). ``gamma = 0`` is alpha-weighted
    cross-entropy; ``alpha = None`` weighs every class 1.
    """

    def __init__(self, gamma: float = 2.0, alpha: float | None = 0.75, epsilon: float = 1e-7,
                 name: str = "focal_loss", reduction: str = "sum_over_batch_size", dtype: Any = None) -> None:
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        if gamma < 0:
            raise ValueError(f"gamma must be non-negative; got {gamma}")
        if alpha is not None and not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must lie in [0, 1]; got {alpha}")
        self.gamma = float(gamma)
        self.alpha = None if alpha is None else float(alpha)
        self.epsilon = float(epsilon)

    def call(self, y_true, y_pred):
        targets = _one_hot_targets(y_true, y_pred)
        p = ops.clip(y_pred, self.epsilon, 1.0 - self.epsilon)
        terms = targets * ops.power(1.0 - p, self.gamma) * ops.log(p)
        if self.alpha is not None:
            is_background = ops.arange(y_pred.shape[-1]) == 0
            weights = ops.cast(ops.where(is_background, 1.0 - self.alpha, self.alpha), y_pred.dtype)
            terms = terms * weights
        return -ops.sum(terms, axis=-1)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "gamma": self.gamma, "alpha": self.alpha, "epsilon": self.epsilon}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class WeightedCrossEntropy(keras.losses.Loss):
    """Cross-entropy with one weight per class: ``-Σ_c w_c y_c log p_c`` (the ``cross_entropy`` ablation).

    A loss rather than ``fit(class_weight=...)`` because Keras's class weights need integer labels and
    mixup produces soft ones. ``class_weights = None`` is plain cross-entropy.
    """

    def __init__(self, class_weights: Sequence[float] | None = None, epsilon: float = 1e-7,
                 name: str = "weighted_cross_entropy", reduction: str = "sum_over_batch_size",
                 dtype: Any = None) -> None:
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        if class_weights is not None and any(w < 0 for w in class_weights):
            raise ValueError(f"class weights must be non-negative; got {list(class_weights)}")
        self.class_weights = None if class_weights is None else [float(w) for w in class_weights]
        self.epsilon = float(epsilon)

    def call(self, y_true, y_pred):
        targets = _one_hot_targets(y_true, y_pred)
        terms = targets * ops.log(ops.clip(y_pred, self.epsilon, 1.0 - self.epsilon))
        if self.class_weights is not None:
            if len(self.class_weights) != y_pred.shape[-1]:
                raise ValueError(f"{len(self.class_weights)} class weights for a model with "
                                 f"{y_pred.shape[-1]} outputs")
            terms = terms * ops.convert_to_tensor(self.class_weights, dtype=y_pred.dtype)
        return -ops.sum(terms, axis=-1)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "class_weights": self.class_weights, "epsilon": self.epsilon}


def inverse_frequency_weights(class_frequencies: Sequence[float]) -> list[float]:
    """``w_c = 1 / (n_classes × f_c)`` (scikit-learn's "balanced"): every class weighs the same in total,
    and the average weight over the training windows is 1, so the learning rate keeps its meaning.
    Frequencies may be counts or fractions."""
    total = float(sum(class_frequencies))
    if len(class_frequencies) < 2 or total <= 0 or any(f <= 0 for f in class_frequencies):
        raise ValueError("inverse-frequency class weights need every class present in the training windows; "
                         f"got class frequencies {list(class_frequencies)}")
    n = len(class_frequencies)
    return [total / (n * float(f)) for f in class_frequencies]


def build_loss(cfg: TrainingConfig, class_frequencies: Sequence[float] | None = None) -> keras.losses.Loss:
    """The loss ``cfg.loss`` names: focal (default), or cross-entropy, class-weighted by inverse frequency
    when ``cfg.class_weighting`` (then ``class_frequencies``, counts or fractions per class, is needed)."""
    if cfg.loss == "focal":
        return FocalLoss(gamma=cfg.focal_gamma, alpha=cfg.focal_alpha)
    if cfg.loss == "cross_entropy":
        if not cfg.class_weighting:
            return WeightedCrossEntropy()
        if class_frequencies is None:
            raise ValueError("training.class_weighting needs the class frequencies of the training windows")
        return WeightedCrossEntropy(inverse_frequency_weights(class_frequencies))
    raise ValueError(f"unknown loss '{cfg.loss}' (known: focal, cross_entropy)")
