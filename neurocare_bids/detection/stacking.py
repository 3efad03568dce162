"""Stacking: the CNN-BiLSTM and the feature baseline as one detector, combined on their log-odds.

Why: on the hard benchmark (documentation, Performance) neither ranks every patient's windows well: the
network ranks the seizures of the patients with right-sided onsets far better than the baseline, the
baseline those of other patients. A weighted mean of their log-odds keeps what each does well. The weight is
fixed (``model.stacking_weight``), or chosen per training on the inner validation subjects only (never the test
fold; ``model.tune_stacking_weight``) from a short grid that includes 0 and 1. Either way every weight's
validation PR-AUC is recorded, so a card shows what the choice would have been.

The combined probability is ``sigmoid(w · logit(p_features) + (1 − w) · logit(p_network))``; centring,
smoothing and thresholds then apply to it as to any model's probabilities.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from .postprocess import log_odds

#: Weights of the feature baseline tried on the inner validation subjects: 0 = the network alone,
#: 1 = the baseline alone. Coarse on purpose: two or three validation subjects cannot tell finer steps apart.
WEIGHTS: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)

#: The baseline's file in a fold or model folder, next to the network's model.keras.
BASELINE_FILE = "features.joblib"


def combine(network_probs, baseline_probs, weight: float) -> np.ndarray:
    """``sigmoid(weight · logit(baseline) + (1 − weight) · logit(network))``, element-wise (float64)."""
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"weight must lie in [0, 1], got {weight}")
    a, b = np.asarray(network_probs, dtype=float), np.asarray(baseline_probs, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"{a.shape} network probabilities but {b.shape} baseline probabilities")
    z = weight * log_odds(b) + (1.0 - weight) * log_odds(a)
    return 1.0 / (1.0 + np.exp(-z))


def choose_weight(network: Sequence[dict], baseline: Sequence[dict],
                  detection_scores: Callable[[list[dict]], list[np.ndarray]],
                  weights: Sequence[float] = WEIGHTS) -> tuple[float, dict[float, float | None]]:
    """The baseline weight whose combination ranks the validation windows best, and every weight's score.

    ``network`` and ``baseline``: the two models' predictions of the same validation recordings, in the
    same order (dicts with ``probs`` and ``labels``). ``detection_scores`` turns combined predictions into
    the scores the threshold will see (centred and smoothed, as the post-processing does), so the weight
    is chosen on what detection uses. Score = PR-AUC of the pooled windows; ties go to the smaller weight
    (the network). Without seizure windows in validation there is nothing to rank: the weight is 0.5.
    """
    from sklearn.metrics import average_precision_score

    labels = np.concatenate([np.asarray(p["labels"]) for p in network]) if network else np.zeros(0)
    if not 0 < labels.sum() < labels.size:
        return 0.5, {float(w): None for w in weights}
    scores: dict[float, float | None] = {}
    for w in weights:
        combined = [{**n, "probs": combine(n["probs"], b["probs"], w)} for n, b in zip(network, baseline)]
        scores[float(w)] = float(average_precision_score(labels, np.concatenate(detection_scores(combined))))
    best = max(scores.values())
    return next(w for w, s in scores.items() if s == best), scores


def stacking_weight(network: Sequence[dict], baseline: Sequence[dict],
                    detection_scores: Callable[[list[dict]], list[np.ndarray]], *, fixed: float,
                    tune: bool) -> tuple[float, dict[float, float | None]]:
    """The weight to stack with: ``fixed``, or (``tune``) :func:`choose_weight`'s; and every weight's validation
    PR-AUC, computed either way."""
    chosen, scores = choose_weight(network, baseline, detection_scores)
    if not 0.0 <= fixed <= 1.0:
        raise ValueError(f"weight must lie in [0, 1], got {fixed}")
    return (chosen if tune else float(fixed)), scores


@dataclass
class StackedDetector:
    """A trained network and feature baseline with the weight chosen for them: predicts like either."""

    network: Any
    baseline: Any  # baseline.FeatureBaseline
    weight: float
    validation_pr_auc: dict[float, float | None] | None = None
    tuned: bool = False  # the weight was chosen on the validation subjects (else fixed by the configuration)

    def summary(self) -> dict:
        """What fold.json and the model card record about the combination."""
        return {"BaselineFile": BASELINE_FILE, "BaselineWeight": self.weight,
                "WeightChosenBy": "validation PR-AUC" if self.tuned else "configuration (model.stacking_weight)",
                "WeightsTried": list(WEIGHTS),
                "ValidationPRAUC": {f"{w:g}": s for w, s in (self.validation_pr_auc or {}).items()}}
