"""Epoch checkpoints of a network's training: a fold (or the final model) killed mid-training by a job's time limit,
a preempted node or Ctrl-C resumes at its last completed epoch and ends exactly as an uninterrupted training does.

The scale rehearsal projected a CHB-MIT-sized fold at 30-40 h of training on a 2-core VM's CPU (docs: Performance),
beyond the time limit of many clusters; without checkpoints every rerun would start the fold again and never end.

After every epoch one file is written atomically (``checkpoint.npz`` in the fold's folder) with everything the rest
of the training depends on: every variable of the model (weights, batch-norm statistics, the dropout layers' random
generator states) and of the optimiser (step count, learning rate, moments, the weights' moving average); the state
of early stopping (best score and weights, patience used) and of the learning-rate schedule; the history so far; and
a fingerprint of the training (configuration, seed, subjects, backend, devices, batches). Both input pipelines make
batch *n* from the seed and *n* alone, so the resumed training starts its stream at the next epoch's first batch.
A checkpoint whose fingerprint differs is not used (the training starts again and replaces it).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

from ..io.fsutils import atomic_open

log = logging.getLogger("neurocare")

CHECKPOINT_FILE = "checkpoint.npz"
_FORMAT = 1


def fingerprint(**what) -> str:
    """A short digest of what makes a training what it is (JSON of ``what``, keys sorted)."""
    text = json.dumps(what, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


@dataclass
class Resumed:
    """A checkpoint read back: the epochs done, whether training had stopped, and what the callbacks held."""

    epochs_done: int
    stopped: bool
    history: dict[str, list]
    early_stopping: dict
    lr_schedule: dict
    best_weights: list[np.ndarray] | None
    model_variables: list[np.ndarray] = field(repr=False)
    optimizer_variables: list[np.ndarray] = field(repr=False)


def read_checkpoint(path: Path, key: str) -> Resumed | None:
    """The checkpoint at ``path`` if it exists, is readable and belongs to the training ``key`` identifies; else
    None (with one line saying why, where there was a file)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            state = json.loads(str(npz["state"]))
            if state.get("format") != _FORMAT or state.get("fingerprint") != key:
                log.warning("%s was written by another training (other settings, data or software): this training "
                            "starts from its first epoch and replaces it", path)
                return None
            arrays = {name: npz[name] for name in npz.files if name != "state"}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as exc:
        log.warning("%s is unreadable (%s: %s): this training starts from its first epoch and replaces it", path,
                    type(exc).__name__, exc)
        return None

    def listed(prefix: str, n: int) -> list[np.ndarray]:
        return [arrays[f"{prefix}_{i}"] for i in range(n)]

    return Resumed(epochs_done=state["epochs_done"], stopped=state["stopped"], history=state["history"],
                   early_stopping=state["early_stopping"], lr_schedule=state["lr_schedule"],
                   best_weights=listed("best", state["best_weights"]) if state["best_weights"] is not None else None,
                   model_variables=listed("model", state["model_variables"]),
                   optimizer_variables=listed("optimizer", state["optimizer_variables"]))


def restore_variables(model, resumed: Resumed) -> bool:
    """Put the checkpoint's model and optimiser variables in place (the optimiser is built first); False, changing
    nothing, if they do not fit this model (then the training starts again)."""
    optimizer = model.optimizer
    if not optimizer.built:
        optimizer.build(model.trainable_variables)
    pairs = list(zip(model.variables, resumed.model_variables)) + list(zip(optimizer.variables,
                                                                           resumed.optimizer_variables))
    if (len(model.variables) != len(resumed.model_variables)
            or len(optimizer.variables) != len(resumed.optimizer_variables)
            or any(tuple(v.shape) != a.shape for v, a in pairs)):
        log.warning("the checkpoint's variables do not fit this model: this training starts from its first epoch")
        return False
    for variable, value in pairs:
        variable.assign(value)
    return True


class SaveCheckpoint(keras.callbacks.Callback):
    """Writes the checkpoint at the end of every epoch, last of the callbacks (after early stopping and the
    learning-rate schedule have decided, and with the training weights, not their average, in the model)."""

    def __init__(self, path: Path, key: str, early_stopping, lr_schedule, resumed: Resumed | None):
        super().__init__()
        self.path, self.key, self.early_stopping, self.lr_schedule = path, key, early_stopping, lr_schedule
        self.resumed = resumed
        self.history: dict[str, list] = {k: list(v) for k, v in resumed.history.items()} if resumed else {}

    def on_train_begin(self, logs=None):
        if self.resumed is None:
            return
        # after early stopping's and the schedule's own on_train_begin, which reset them
        for name, value in self.resumed.early_stopping.items():
            setattr(self.early_stopping, name, _from_json(value))
        self.early_stopping.best_weights = self.resumed.best_weights
        for name, value in self.resumed.lr_schedule.items():
            setattr(self.lr_schedule, name, _from_json(value))

    def on_epoch_end(self, epoch, logs=None):
        for name, value in (logs or {}).items():
            self.history.setdefault(name, []).append(_number(value))
        es, schedule = self.early_stopping, self.lr_schedule
        best_weights = es.best_weights
        state = {
            "format": _FORMAT, "fingerprint": self.key, "epochs_done": epoch + 1,
            "stopped": bool(self.model.stop_training), "history": self.history,
            "early_stopping": {"wait": es.wait, "best": _number(es.best), "best_epoch": es.best_epoch,
                               "stopped_epoch": es.stopped_epoch},
            "lr_schedule": {"wait": schedule.wait, "best": _number(schedule.best),
                            "cooldown_counter": schedule.cooldown_counter},
            "best_weights": None if best_weights is None else len(best_weights),
            "model_variables": len(self.model.variables),
            "optimizer_variables": len(self.model.optimizer.variables),
        }
        arrays = {f"model_{i}": keras.ops.convert_to_numpy(v) for i, v in enumerate(self.model.variables)}
        arrays.update({f"optimizer_{i}": keras.ops.convert_to_numpy(v)
                       for i, v in enumerate(self.model.optimizer.variables)})
        arrays.update({f"best_{i}": np.asarray(w) for i, w in enumerate(best_weights or [])})
        with atomic_open(self.path) as fh:
            np.savez(fh, state=np.array(json.dumps(state)), **arrays)


def _number(value):
    """A JSON-safe copy of a number the callbacks hold (NumPy scalars, infinities as strings JSON reads back)."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else str(value)


def _from_json(value):
    return float(value) if isinstance(value, str) else value


def history_of(resumed: Resumed | None, history: dict) -> dict:
    """The whole training's history: the epochs before the checkpoint, then those run since."""
    if resumed is None:
        return history
    return {k: list(resumed.history.get(k, [])) + list(history.get(k, [])) for k in {*resumed.history, *history}}
