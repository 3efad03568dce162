"""Training one group-level model in-process: the moving average of the weights (``training.weight_averaging``)
is what validation sees, what early stopping keeps and what is returned, and it leaves the training itself
(the last step's weights, hence the losses) untouched."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from neurocare_bids.config import Config
from neurocare_bids.evaluation.group import predict_files
from neurocare_bids.evaluation.plan import collect_window_files
from neurocare_bids.training.fit import train_keras

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def _train(prepared, tmp_path, averaging: float, name: str):
    _, participant_out, config = prepared
    cfg = Config.from_toml(config)
    cfg.update({"training": {"epochs": 2, "steps_per_epoch": 4, "weight_averaging": averaging,
                             "early_stopping_patience": 5, "lr_patience": 5}})
    files, geometry = collect_window_files(participant_out, [])
    train = [f for f in files if f.subject in ("01", "02")]
    validation = [f for f in files if f.subject == "03"]
    model, history = train_keras(cfg, train, validation, geometry, seed=7, log_dir=tmp_path / name, label=name)
    return model, history, validation, geometry


def _validation_pr_auc(model, validation, geometry) -> float:
    predictions = predict_files(model, validation, geometry)
    y = np.concatenate([p["labels"] for p in predictions])
    return float(average_precision_score(y, np.concatenate([p["probs"] for p in predictions])))


def test_weight_averaging_is_validated_kept_and_leaves_training_alone(prepared, tmp_path):
    averaged, avg_history, validation, geometry = _train(prepared, tmp_path, 0.9, "averaged")
    plain, plain_history, _, _ = _train(prepared, tmp_path, 0.0, "plain")

    # The optimizer keeps the average; the last step's weights drive training, so the losses are the same.
    assert averaged.optimizer.use_ema and not plain.optimizer.use_ema
    np.testing.assert_allclose(avg_history["loss"], plain_history["loss"], rtol=1e-5)
    # The returned model is the best epoch's averaged weights: validating it again gives that epoch's PR-AUC,
    # and those weights are not the last step's.
    best = int(np.argmax(avg_history["val_pr_auc"]))
    assert _validation_pr_auc(averaged, validation, geometry) == pytest.approx(avg_history["val_pr_auc"][best],
                                                                                abs=1e-9)
    assert _validation_pr_auc(plain, validation, geometry) == pytest.approx(max(plain_history["val_pr_auc"]),
                                                                             abs=1e-9)
    differs = [not np.allclose(a, p) for a, p in zip(averaged.get_weights(), plain.get_weights())]
    assert any(differs)


def test_seed_preset_never_averages():
    from neurocare_bids.training.fit import build_optimizer

    cfg = Config()
    assert cfg.training.weight_averaging == 0.98
    optimizer = build_optimizer(cfg, 1e-3)
    assert optimizer.use_ema and optimizer.ema_momentum == pytest.approx(0.98)
    cfg.model.preset = "seed"
    assert not build_optimizer(cfg, 1e-4).use_ema
    cfg.model.preset, cfg.training.weight_averaging = "neurocare", 0.0
    assert not build_optimizer(cfg, 1e-3).use_ema


def test_a_sigterm_swallowed_on_the_way_still_ends_the_training(prepared, tmp_path, monkeypatch):
    """The SIGTERM handler raises ``Terminated`` wherever the main thread is; a library's bare ``except:`` (or a
    ``__del__``) on the way can swallow it, and the run would go on with SIGTERM ignored. Once it has come, the
    training ends at its next batch with ``Terminated``."""
    from neurocare_bids import errors

    monkeypatch.setattr(errors, "_termination_requested", None)
    errors.request_termination()  # the state after the handler ran and its exception was swallowed
    with pytest.raises(errors.Terminated):
        _train(prepared, tmp_path, 0.0, "terminated")
