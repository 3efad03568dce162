"""Distributed training on CPU: MirroredStrategy over two logical devices agrees with one device."""

from __future__ import annotations

import csv
import json
import os
import shutil
import socket
import subprocess
import sys

import numpy as np
from sklearn.metrics import average_precision_score

from conftest import NATIVE_LOG, run_cli


def _labels(path) -> np.ndarray:
    with open(path, newline="") as fh:
        return np.array([int(row["label"]) for row in csv.DictReader(fh, delimiter="\t")])


def _probabilities(path) -> np.ndarray:
    with open(path, newline="") as fh:
        return np.array([float(row["probability"]) for row in csv.DictReader(fh, delimiter="\t")])


def test_mirrored_over_two_cpu_devices_matches_a_single_device(prepared, tmp_path):
    bids, out, config = prepared
    two = tmp_path / "two.toml"
    # One epoch (early stopping has nothing to choose), 64-window batches (32 per replica).
    # The network alone: with stacking the tiny network may get weight 0 and the gradient boosting (not distributed)
    # decide alone. The config's last section is [model].
    base = config.read_text().replace("batch_size = 16", "batch_size = 64") + "stacking = false\n"
    two.write_text(base + "[execution]\ncpu_replicas = 2\n")
    one = tmp_path / "one.toml"
    one.write_text(base)
    runs = {}
    for name, cfg in (("single", one), ("mirrored", two)):
        target = tmp_path / name
        shutil.copytree(out, target)
        result = run_cli(bids, target, "group", "--config", cfg, "--fold", "1", "-v", timeout=600)
        assert result.returncode == 0, result.stderr
        runs[name] = (target, result.stderr)
    assert "distributed training: mirrored, 2 replica(s)" in runs["mirrored"][1]
    assert "distributed training" not in runs["single"][1]
    single = _probabilities(runs["single"][0] / "group" / "fold-1" / "predictions.tsv")
    mirrored = _probabilities(runs["mirrored"][0] / "group" / "fold-1" / "predictions.tsv")
    assert single.shape == mirrored.shape and len(single) > 100
    # Same initial weights, same global batches; only the batch-norm statistics are per half batch, so the
    # tolerance README states: mean |difference| of the window probabilities below 0.05, PR-AUC within 0.05.
    difference = np.abs(single - mirrored)
    assert difference.mean() < 0.05, (difference.mean(), difference.max())
    labels = _labels(runs["single"][0] / "group" / "fold-1" / "predictions.tsv")
    assert abs(average_precision_score(labels, single) - average_precision_score(labels, mirrored)) < 0.05
    assert not np.array_equal(single, mirrored)  # it really ran on two replicas


def test_distributed_outside_a_cluster_is_a_usage_error(prepared, tmp_path):
    bids, out, config = prepared
    target = tmp_path / "out"
    shutil.copytree(out, target)
    env = {"SLURM_JOB_ID": "", "SLURM_NTASKS": "", "TF_CONFIG": ""}
    result = run_cli(bids, target, "group", "--config", config, "--distributed", env=env)
    assert result.returncode == 64, result.stderr
    assert "--distributed needs a multi-task Slurm job" in result.stderr and "Traceback" not in result.stderr
    result = run_cli(bids, target, "participant", "--distributed", "--skip-bids-validation")
    assert result.returncode == 64 and "group level only" in result.stderr


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def test_multi_worker_training_two_processes_on_loopback(prepared, tmp_path):
    """--distributed with a two-worker cluster (TF_CONFIG, as Slurm's resolver would give): both train in step,
    only the chief writes the fold's outputs, and they agree with a one-device run within the tolerance."""
    bids, out, config = prepared
    base = tmp_path / "quick.toml"
    base.write_text(config.read_text().replace("batch_size = 16", "batch_size = 64") + "stacking = false\n")
    single = tmp_path / "single"
    shutil.copytree(out, single)
    assert run_cli(bids, single, "group", "--config", base, "--fold", "1", timeout=600).returncode == 0
    target = tmp_path / "multi"
    shutil.copytree(out, target)
    workers = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    procs = []
    for index in range(2):
        env = {**os.environ, "PYTHONWARNINGS": "ignore",
               "TF_CONFIG": json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})}
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "neurocare_bids", str(bids), str(target), "group", "--config", str(base),
             "--fold", "1", "--distributed", "-v", "--work-dir", str(tmp_path / f"work{index}")],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env))
    outputs = [proc.communicate(timeout=600) for proc in procs]
    for proc, (_, err) in zip(procs, outputs):
        assert proc.returncode == 0, err[-3000:]
    assert "multi-worker, 2 replica(s), worker 1 of 2" in outputs[0][1]
    assert "multi-worker, 2 replica(s), worker 2 of 2" in outputs[1][1]
    # progress from the chief only (a Slurm log merges every task's output); no native TensorFlow or gRPC line
    assert "] fold 1 epoch 1/1: " in outputs[0][1] and "] fold 1 epoch" not in outputs[1][1]
    assert not NATIVE_LOG.search(outputs[0][1] + outputs[1][1])
    assert not list((tmp_path / "work1").glob("neurocare-worker-*"))  # the worker's scratch is gone
    fold = target / "group" / "fold-1"
    assert sorted(p.name for p in fold.iterdir()) == ["fold.json", "history.tsv", "model.keras", "model.onnx",
                                                      "predictions.tsv"]
    assert json.loads((fold / "fold.json").read_text())["onnx"]["File"] == "model.onnx"  # exported by the chief
    one = _probabilities(single / "group" / "fold-1" / "predictions.tsv")
    two = _probabilities(fold / "predictions.tsv")
    assert np.abs(one - two).mean() < 0.05, np.abs(one - two).mean()
