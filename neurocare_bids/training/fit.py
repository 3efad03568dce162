"""Fitting a fold's models on its training windows: the Keras network (loss, optimiser with weight averaging,
early stopping and learning-rate schedule on the validation PR-AUC, distribution, progress) and the feature baseline.

What the group level (:mod:`neurocare_bids.evaluation.group`) calls for every fold and the final model; it chooses
nothing after training (post-processing and stacking weights are tuned there, on the validation predictions).
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import keras
import numpy as np

from ..config import Config
from ..console import PROGRESS, duration, epoch_line_due, tensorflow_installed
from ..errors import UsageError, raise_if_terminated
from .distribute import fit_multi_worker, placement, worker_share
from .input_pipeline import WindowFile, WindowGeometry, read_windows, training_dataset
from .numpy_pipeline import NumpyTrainingBatches
from .tracking import Tracker

progress = logging.getLogger(PROGRESS)  # fold and epoch lines: see console.py for where they are shown

PREDICTION_BATCH = 512


def _setup_determinism(seed: int) -> None:
    import keras

    keras.utils.set_random_seed(seed)
    if tensorflow_installed():  # its ops (tf.data's, and the model's on that backend) run deterministically
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()


def input_pipeline(cfg: Config) -> str:
    """The input pipeline that makes the training batches (``training.input_pipeline``, ``auto`` resolved):
    ``tf.data`` or ``numpy``."""
    choice = cfg.training.input_pipeline
    if choice == "auto":
        return "tf.data" if tensorflow_installed() else "numpy"
    if choice == "tf.data" and not tensorflow_installed():
        raise UsageError("training.input_pipeline = 'tf.data' needs TensorFlow, which is not installed here: "
                         "use 'numpy' or 'auto'")
    return choice


def scorer(model, geometry: WindowGeometry):
    """The function from a batch of windows to their seizure probabilities: a Keras network's, or the feature
    baseline's (a stacked detector combines the two: :func:`neurocare_bids.evaluation.group.predict_files`)."""
    if hasattr(model, "predict_proba_features"):  # the classic baseline
        from .baseline import window_features

        return lambda eeg: model.predict_proba_features(window_features(eeg, geometry.sfreq))

    def score(eeg):
        # Keras's compiled predict step, 3-4x faster than an eager call on CPUs; a short last batch is
        # padded to the full size so that the step is traced once (windows are scored independently).
        n = len(eeg)
        if n < PREDICTION_BATCH:
            eeg = np.concatenate([eeg, np.zeros((PREDICTION_BATCH - n, *eeg.shape[1:]), eeg.dtype)])
        return np.asarray(model.predict_on_batch(eeg))[:n, 1]

    return score


def predict_windows(score, files: list[WindowFile], geometry: WindowGeometry) -> list[dict]:
    """Seizure probability (``score`` of a batch of windows) of every window of each file, in order, with labels
    and onsets."""
    out = []
    for f in files:
        probs, labels, onsets = [], [], []
        for batch in read_windows([f], geometry, PREDICTION_BATCH):
            probs.append(score(batch["eeg"]))
            labels.append(batch["label"])
            onsets.append(batch["onset"])
        out.append(_prediction(f, geometry, np.concatenate(probs), np.concatenate(labels), np.concatenate(onsets)))
    return out


def _prediction(f: WindowFile, geometry: WindowGeometry, probs, labels, onsets) -> dict:
    return {"subject": f.subject, "source": f.source, "probs": probs.astype(np.float64), "labels": labels,
            "onsets": onsets.astype(np.float64), "window_duration": geometry.duration,
            "recording_duration": f.recording_duration, "seizures": list(f.seizure_intervals)}


def train_keras(cfg: Config, train: list[WindowFile], validation: list[WindowFile], geometry: WindowGeometry,
                seed: int, log_dir: Path, label: str, tracker: Tracker | None = None,
                checkpoint: Path | None = None):
    """Train the configured Keras model; early stopping and LR schedule on validation PR-AUC.

    ``checkpoint``: the file saved after every epoch, from which a rerun resumes (:mod:`.checkpoints`); none for
    multi-worker training."""
    from .checkpoints import SaveCheckpoint, fingerprint, history_of, read_checkpoint, restore_variables
    from .losses import build_loss
    from .models import SEED_TRAINING

    place = placement(cfg)
    seed_preset = cfg.model.preset == "seed"
    lr = SEED_TRAINING["learning_rate"] if seed_preset else cfg.training.learning_rate
    steps, batch = batch_plan(cfg, train)
    n_windows = sum(f.window_count for f in train)
    n_seizure = sum(f.seizure_window_count for f in train)
    loss = build_loss(cfg.training, [max(n_windows - n_seizure, 1), max(n_seizure, 1)])
    if place.backend == "jax" and batch % place.replicas:
        raise UsageError(f"training.batch_size ({batch}) must be a multiple of the {place.replicas} devices "
                         "that JAX trains on")
    pipeline = input_pipeline(cfg)
    if place.kind == "multi-worker":
        checkpoint = None
    key, resumed = None, None
    if checkpoint is not None:
        key = fingerprint(settings=cfg.group_settings(), seed=seed, backend=place.backend, placement=place.kind,
                          replicas=place.replicas, input_pipeline=pipeline, steps=steps, batch=batch,
                          train=[(f.subject, f.source, f.window_count) for f in train],
                          validation=[(f.subject, f.source, f.window_count) for f in validation])
        if cfg.execution.overwrite:
            checkpoint.unlink(missing_ok=True)  # --overwrite: every training starts again
        resumed = read_checkpoint(checkpoint, key)
    with place.scope():  # variables on every replica; batches split across them
        model = initial_network(cfg, geometry, seed)
        optimizer = build_optimizer(cfg, lr)
        model.compile(optimizer=optimizer, loss=loss)
        # its variables made now, not while TensorFlow traces the first training step: a trace that creates
        # variables is traced twice, which doubled the step's compile time (about 3 s per training on a CPU)
        optimizer.build(model.trainable_variables)
        if resumed is not None and not restore_variables(model, resumed):
            resumed = None
    # a finished training (stopped early, or every epoch run) runs no more epochs: early stopping's end restores
    # its best weights, as it did at the end of the training that wrote the checkpoint
    first_epoch = 0 if resumed is None else cfg.training.epochs if resumed.stopped else resumed.epochs_done
    if resumed is not None:
        progress.info("%s: resuming after epoch %d of %d (%s)", label, resumed.epochs_done, cfg.training.epochs,
                      checkpoint)
    batches = None
    if pipeline == "numpy":  # not multi-worker: run_group_level refuses that combination
        batches = NumpyTrainingBatches(train, geometry, cfg.augmentation, batch, seed)
        data = batches.stream(start=first_epoch * steps)
    else:
        data = training_dataset(worker_share(train, place), geometry, cfg.augmentation, batch,
                                seed + 7919 * place.worker_index, shard_by_file=place.workers > 1,
                                start_batch=first_epoch * steps)
    averaged = _AveragedWeights() if optimizer.use_ema else None
    early_stopping = keras.callbacks.EarlyStopping(monitor="val_pr_auc", mode="max",
                                                   patience=cfg.training.early_stopping_patience,
                                                   restore_best_weights=True)
    lr_schedule = keras.callbacks.ReduceLROnPlateau(monitor="val_pr_auc", mode="max", factor=0.5,
                                                    patience=cfg.training.lr_patience, min_lr=lr / 64)
    callbacks = [
        _StopWhenTerminated(),
        _EpochTimer(),  # its epoch end comes straight after the epoch's training steps
        *([averaged.use_average] if averaged else []),
        _ValidationPRAUC(validation, geometry),
        early_stopping,
        lr_schedule,
        # Keras writes TensorBoard logs through TensorFlow's summaries: none where it is not installed
        *([keras.callbacks.TensorBoard(log_dir=str(log_dir), write_graph=False, profile_batch=0)]
          if tensorflow_installed() else []),
        _EpochLog(label, cfg.training.epochs, tracker or Tracker(), first_epoch),
        *([averaged.resume_training] if averaged else []),
        # last: the state after every other callback's decision, with the training weights back in the model
        *([SaveCheckpoint(checkpoint, key, early_stopping, lr_schedule, resumed)] if checkpoint is not None else []),
    ]
    if place.kind == "multi-worker":
        return model, fit_multi_worker(model, data, epochs=cfg.training.epochs, steps=steps, batch_size=batch,
                                       callbacks=callbacks, place=place)
    try:
        history = model.fit(data, epochs=cfg.training.epochs, initial_epoch=first_epoch, steps_per_epoch=steps,
                            callbacks=callbacks, verbose=0, shuffle=False)
    finally:
        if batches is not None:
            data.close()  # the threads stop building batches ahead
            batches.close()
    return model, history_of(resumed, history.history)


def batch_plan(cfg: Config, train: list[WindowFile]) -> tuple[int, int]:
    """Training batches per epoch and windows per batch: ``training.steps_per_epoch`` (0 = one pass over the
    training windows) and ``training.batch_size`` (the seed preset's own batch size)."""
    from .models import SEED_TRAINING

    batch = int(SEED_TRAINING["batch_size"]) if cfg.model.preset == "seed" else cfg.training.batch_size
    return cfg.training.steps_per_epoch or max(1, sum(f.window_count for f in train) // batch), batch


def initial_network(cfg: Config, geometry: WindowGeometry, seed: int):
    """The network as a training with ``seed`` starts it (every random generator seeded first): the same
    weights on every number of devices, for one Keras backend (tests measure how far training moves them)."""
    from .models import build_model

    _setup_determinism(seed)
    return build_model(geometry.n_chans, 2, geometry.n_times, geometry.sfreq, cfg.model)


def build_optimizer(cfg: Config, learning_rate: float):
    """Adam, keeping a moving average of the weights (``training.weight_averaging``) except for the seed preset,
    which is trained as the original code was."""
    averaging = 0.0 if cfg.model.preset == "seed" else cfg.training.weight_averaging
    if averaging:
        return keras.optimizers.Adam(learning_rate, use_ema=True, ema_momentum=averaging)
    return keras.optimizers.Adam(learning_rate)


class _AveragedWeights:
    """Swaps the optimizer's moving average of the weights in at the end of every epoch, for the callbacks
    between ``use_average`` and ``resume_training`` (validation, early stopping: which keeps the best epoch's
    averaged weights and restores them at the end), and the last step's weights back before training goes on."""

    def __init__(self):
        self.last_step: list | None = None
        self.use_average = keras.callbacks.LambdaCallback(on_epoch_end=self._swap_in)
        self.resume_training = keras.callbacks.LambdaCallback(on_epoch_end=self._swap_out)

    def _swap_in(self, epoch, logs=None):
        model = self.use_average.model
        self.last_step = [keras.ops.convert_to_numpy(v) for v in model.trainable_variables]
        model.optimizer.finalize_variable_values(model.trainable_variables)  # the average → the weights
        if keras.backend.backend() == "jax":
            # a copy of its own: on JAX the assignment shares the average's buffer, which the next compiled
            # predict or train step donates (deletes), leaving the optimizer's average unreadable (model.save)
            for variable in model.trainable_variables:
                variable.assign(keras.ops.convert_to_numpy(variable))

    def _swap_out(self, epoch, logs=None):
        model = self.resume_training.model
        if not model.stop_training:  # stopping: leave the averaged weights (early stopping restores its best)
            for variable, value in zip(model.trainable_variables, self.last_step):
                variable.assign(value)


class _StopWhenTerminated(keras.callbacks.Callback):
    """Ends the training at the next batch once SIGTERM has come, in case Keras swallowed the first
    :class:`~neurocare_bids.errors.Terminated` (a bare ``except:`` while the first step is traced)."""

    def on_train_batch_end(self, batch, logs=None):
        raise_if_terminated()

    def on_epoch_end(self, epoch, logs=None):
        raise_if_terminated()


#: The per-epoch timings :class:`_EpochTimer` and :class:`_ValidationPRAUC` add to the training history: fold.json's
#: ``compute`` keeps them, history.tsv leaves them out (two runs with the same seed write it identically).
TIMING_KEYS = ("train_seconds", "validation_seconds")


class _EpochTimer(keras.callbacks.Callback):
    """Seconds of each epoch's training steps (input pipeline included, validation not), as ``train_seconds``
    (what a job's time limit must allow for)."""

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["train_seconds"] = time.monotonic() - self.started


class _ValidationPRAUC(keras.callbacks.Callback):
    """PR-AUC of the validation windows (from probabilities) after every epoch, as ``val_pr_auc``, and the
    seconds that took, as ``validation_seconds``."""

    def __init__(self, files: list[WindowFile], geometry: WindowGeometry):
        super().__init__()
        self.files, self.geometry = files, geometry

    def on_epoch_end(self, epoch, logs=None):
        from sklearn.metrics import average_precision_score

        started = time.monotonic()
        predictions = predict_windows(scorer(self.model, self.geometry), self.files, self.geometry)
        y = np.concatenate([p["labels"] for p in predictions])
        p = np.concatenate([p["probs"] for p in predictions])
        logs["val_pr_auc"] = float(average_precision_score(y, p)) if 0 < y.sum() < len(y) else 0.0
        logs["validation_seconds"] = time.monotonic() - started


class _EpochLog(keras.callbacks.Callback):
    """Progress over the epochs of one training: a bar on a terminal, and a progress record per epoch with the
    time left if every epoch runs (early stopping may end sooner). All go to the log file and, from -v, to the
    console; where no bar is drawn, the console shows those :func:`epoch_line_due` picks at any verbosity."""

    def __init__(self, label: str, epochs: int, tracker: Tracker, first_epoch: int = 0):
        super().__init__()
        self.label, self.epochs, self.tracker, self.bar = label, epochs, tracker, None
        self.first_epoch = first_epoch  # of a resumed training: the epochs before it ran in an earlier process
        self.started = self.last_line = 0.0

    def on_train_begin(self, logs=None):
        from tqdm import tqdm

        self.bar = tqdm(total=self.epochs, initial=self.first_epoch, desc=self.label, unit="epoch", leave=False,
                        disable=None)
        self.started = self.last_line = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        loss, pr_auc = logs.get("loss", math.nan), logs.get("val_pr_auc", math.nan)
        self.bar.set_postfix(loss=f"{loss:.4f}", val_pr_auc=f"{pr_auc:.3f}")
        self.bar.update()
        now, stopping = time.monotonic(), bool(self.model.stop_training)  # early stopping has decided by now
        milestone = epoch_line_due(epoch, self.epochs, stopping, now - self.last_line)
        if milestone:
            self.last_line = now
        left = 0 if stopping else self.epochs - epoch - 1
        eta = f"; ETA {duration((now - self.started) / (epoch + 1 - self.first_epoch) * left)}" if left else ""
        progress.info("%s epoch %d/%d: loss %.4f, validation PR-AUC %.3f%s", self.label, epoch + 1, self.epochs,
                      loss, pr_auc, eta, extra={"milestone": milestone})
        self.tracker.epoch_end(epoch, {**logs, "learning_rate": float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))})

    def on_train_end(self, logs=None):
        self.bar.close()


def train_features(cfg: Config, train: list[WindowFile], geometry: WindowGeometry, seed: int):
    """The classic baseline: window features → gradient boosting, on the same folds."""
    from .baseline import FeatureBaseline

    features, labels = _features(train, geometry)
    return FeatureBaseline("hgb").fit_features(features, labels, seed=seed, sfreq=geometry.sfreq), {}


def _features(files: list[WindowFile], geometry: WindowGeometry) -> tuple[np.ndarray, np.ndarray]:
    from .baseline import window_features

    feats, labels = [], []
    for batch in read_windows(files, geometry, PREDICTION_BATCH):
        feats.append(window_features(batch["eeg"], geometry.sfreq))
        labels.append(batch["label"])
    return np.concatenate(feats), np.concatenate(labels)
