"""A group-level training killed mid-way resumes from its epoch checkpoint and ends as if never killed: the CLI as
a subprocess, killed by observed states of the checkpoint on disk, outputs read back. (In its own file so that the
parallel test workers can run it beside test_group_cli.py, the longest file.)"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import read_tsv, run_cli


def _checkpoint_state(path) -> dict | None:
    """The state a fold's ``checkpoint.npz`` records (epochs done, stopped...), or None while there is none."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            return json.loads(str(npz["state"]))
    except (OSError, ValueError, KeyError):
        return None


def _kill_fold_when(bids, out, config, fold: int | None, moment, sig=signal.SIGKILL) -> dict:
    """Run a ``--fold`` job (``fold`` None: a plain group run, whose final model is what trains); as soon as its
    checkpoint shows ``moment(state)``, stop the job's process group (SIGSTOP, so that nothing changes on disk), check
    the fold (the final model) is not done, and send it ``sig``: SIGKILL, or SIGTERM (a scheduler's time limit), which
    the job must answer as documented: exit 143, one line, no traceback, the checkpoint kept as it was and nothing
    else left in the fold's folder. Returns the state at the stop."""
    from conftest import read_only_input

    folder = out / "group" / (f"fold-{fold}" if fold else "model")
    checkpoint, done = folder / "checkpoint.npz", folder / ("fold.json" if fold else "model_card.json")
    args = ["--fold", str(fold)] if fold else []
    with read_only_input(bids):
        proc = subprocess.Popen([sys.executable, "-m", "neurocare_bids", bids, out, "group", "--config", config,
                                 *args, "--omp-nthreads", "1"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"},
                                start_new_session=True)
        deadline = time.monotonic() + 600
        while True:
            assert proc.poll() is None, f"the fold ended before it could be killed: {proc.communicate()[1][-2000:]}"
            assert time.monotonic() < deadline
            state = _checkpoint_state(checkpoint)
            if state is not None and moment(state):
                os.killpg(proc.pid, signal.SIGSTOP)
                state = _checkpoint_state(checkpoint)  # the last one written before the stop
                break
            time.sleep(0.01)
        assert not done.exists()
        before = sorted(p.name for p in folder.iterdir())
        os.killpg(proc.pid, sig)
        if sig != signal.SIGKILL:
            os.killpg(proc.pid, signal.SIGCONT)  # a stopped process acts on SIGTERM once continued
        _, stderr = proc.communicate(timeout=120)
    if sig == signal.SIGTERM:
        assert proc.returncode == 143 and "Traceback" not in stderr, stderr
        assert stderr.strip().splitlines()[-1] == ("neurocare-bids: terminated (SIGTERM): finished outputs are kept; "
                                                   "rerun to complete the rest")
        assert _checkpoint_state(checkpoint) == state  # what the next run resumes from
        assert sorted(p.name for p in folder.iterdir()) == [n for n in before if ".tmp" not in n], before
        assert not done.exists()
    return state


@pytest.mark.parametrize("pipeline", ["tf.data", "numpy"])
def test_a_fold_killed_mid_training_resumes_after_its_last_epoch_and_ends_as_if_never_killed(prepared, tmp_path,
                                                                                             pipeline, caplog):
    """A job's time limit or a preempted node stops a fold's training (SIGTERM, then SIGKILL after Slurm's grace
    time): the rerun resumes after the last epoch the checkpoint recorded, not from the first, and the fold ends with
    the same history, predictions and tuned post-processing as a run never killed. Killed twice here: mid-training
    while early stopping waits for an improvement (SIGTERM in the numpy run: exit 143, the checkpoint kept; SIGKILL
    in the tf.data run), and once the training had ended (early stopping, or the last
    epoch) but before the fold was written. A checkpoint of another training or a damaged one is not used."""
    bids, participant_out, quick = prepared
    config = tmp_path / "epochs.toml"
    config.write_text(quick.read_text().replace("epochs = 1", "epochs = 12\nearly_stopping_patience = 3\n"
                                                "lr_patience = 1\n" f'input_pipeline = "{pipeline}"'))
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    for out in (reference, killed):
        shutil.copytree(participant_out, out)
    result = run_cli(bids, reference, "group", "--config", config, "--fold", 1, "--omp-nthreads", 1, timeout=600)
    assert result.returncode == 0, result.stderr
    history = read_tsv(reference / "group" / "fold-1" / "history.tsv")
    assert len(history) > 3
    if pipeline == "tf.data":  # here the schedule halves the learning rate: its state crosses the restarts too
        assert len({row["learning_rate"] for row in history}) > 1

    # killed mid-training where the callbacks' state matters most: early stopping waiting for an improvement (the
    # learning-rate schedule about to halve the rate), at the first such epoch of the reference; else after epoch 2
    scores, best, waiting = [float(row["val_pr_auc"]) for row in history], -1.0, []
    for epoch, score in enumerate(scores[:-1], 1):
        if score <= best:  # no improvement: early stopping's and the schedule's counters run
            waiting.append(epoch)
        best = max(best, score)
    target = waiting[0] if waiting else 2
    # the numpy run gets SIGTERM there (Slurm's time limit, before its SIGKILL), the tf.data run SIGKILL
    mid = _kill_fold_when(bids, killed, config, 1, lambda s: s["epochs_done"] >= target and not s["stopped"],
                          signal.SIGTERM if pipeline == "numpy" else signal.SIGKILL)
    checkpoint = killed / "group" / "fold-1" / "checkpoint.npz"
    saved = checkpoint.read_bytes()
    ended = _kill_fold_when(bids, killed, config, 1, lambda s: s["stopped"] or s["epochs_done"] == 12)
    assert ended["epochs_done"] == len(history) and ended["stopped"] == (len(history) < 12)
    result = run_cli(bids, killed, "group", "--config", config, "--fold", 1, "--omp-nthreads", 1, timeout=600)
    assert result.returncode == 0, result.stderr
    assert f"resuming after epoch {len(history)} of 12" in result.stderr
    for name in ("history.tsv", "predictions.tsv"):
        assert (killed / "group" / "fold-1" / name).read_bytes() == (reference / "group" / "fold-1" / name).read_bytes()
    folds = [json.loads((out / "group" / "fold-1" / "fold.json").read_text()) for out in (reference, killed)]
    assert folds[0]["postprocessing"] == folds[1]["postprocessing"] and folds[0]["epochs"] == folds[1]["epochs"]
    assert folds[1]["compute"]["epochs"] == len(history)  # the epochs of every process that trained the fold
    assert not checkpoint.exists()  # the fold is done: nothing left to resume
    assert target <= mid["epochs_done"] < len(history)
    if pipeline != "tf.data":
        return
    # The first kill's checkpoint: read as another training's (another fingerprint) or damaged, it is not used (one
    # line says why); put back damaged, the fold is trained again from its first epoch: the same fold as never killed.
    from neurocare_bids.training.checkpoints import read_checkpoint

    key = json.loads(str(np.load(io.BytesIO(saved))["state"]))["fingerprint"]
    damaged = tmp_path / "damaged.npz"
    damaged.write_bytes(saved[: len(saved) // 2])
    copy = tmp_path / "copy.npz"
    copy.write_bytes(saved)
    assert read_checkpoint(copy, key).epochs_done == mid["epochs_done"]
    caplog.clear()
    assert read_checkpoint(copy, "another training") is None and read_checkpoint(damaged, key) is None
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2 and "written by another training" in lines[0] and "is unreadable" in lines[1]
    shutil.rmtree(killed / "group")
    checkpoint.parent.mkdir(parents=True)
    shutil.copy(damaged, checkpoint)
    result = run_cli(bids, killed, "group", "--config", config, "--fold", 1, "--omp-nthreads", 1, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "resuming" not in result.stderr and "is unreadable" in result.stderr and not checkpoint.exists()
    assert (killed / "group" / "fold-1" / "history.tsv").read_bytes() == \
        (reference / "group" / "fold-1" / "history.tsv").read_bytes()


def test_the_final_model_killed_before_its_card_resumes_and_is_the_model_never_killed(prepared, sequential,
                                                                                     tmp_path):
    """The final model (every subject: a group run's longest training) keeps its checkpoint in ``group/model/``:
    killed once its training had ended but before its model card was written, the rerun resumes after its last epoch
    and writes the same weights and operating points as the run never killed (``sequential``)."""
    import keras

    import neurocare_bids.training.models  # noqa: F401 - registers the model's own layers for loading

    bids, done, _ = sequential
    config = prepared[2]
    out = tmp_path / "out"
    shutil.copytree(done, out)
    shutil.rmtree(out / "group" / "model")
    ended = _kill_fold_when(bids, out, config, None, lambda s: s["epochs_done"] >= 1)
    result = run_cli(bids, out, "group", "--config", config, "--omp-nthreads", 1, timeout=600)
    assert result.returncode == 0, result.stderr
    assert f"resuming after epoch {ended['epochs_done']} of 1" in result.stderr
    assert not (out / "group" / "model" / "checkpoint.npz").exists()
    cards = [json.loads((root / "group" / "model" / "model_card.json").read_text()) for root in (done, out)]
    for key in ("PostProcessing", "OperatingPoints", "Stacking"):
        assert cards[0][key] == cards[1][key]
    weights = [keras.models.load_model(root / "group" / "model" / "model.keras", compile=False).get_weights()
               for root in (done, out)]
    assert len(weights[0]) == len(weights[1]) and all(np.array_equal(a, b) for a, b in zip(*weights))
