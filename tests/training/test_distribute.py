"""Distributed training on CPU: MirroredStrategy over two logical devices, two multi-worker processes and JAX's
data parallelism over two devices agree with one device, after training that visibly moves the network."""

from __future__ import annotations

import csv
import json
import os
import shutil
import socket
import subprocess
import sys

import numpy as np
import pytest

from conftest import NATIVE_LOG, run_cli, run_cli_concurrently


# Enough training that it visibly moves the network's outputs (20 steps of 64 windows: the window probabilities move
# by about 0.19 on average on TensorFlow, 0.067 on JAX, whose initial weights differ), with nothing random on the
# model's side that depends on the devices: no dropout (its masks are drawn per replica on TensorFlow) and no weight averaging (the last step's weights are saved). The network
# alone: with stacking the tiny network may get weight 0 and the gradient boosting (not distributed) decide alone.
MOVING_CONFIG = """
[training]
epochs = 1
steps_per_epoch = 20
batch_size = 64
weight_averaging = 0.0
[model]
conv_filters = [4, 8]
lstm_units = [4]
dense_units = 4
dropout = 0.0
stacking = false
"""

# The network a fold's training starts from (group.initial_network, the same seed), scoring the fold's validation
# and test windows: run in a child process on the Keras backend the fold was trained on.
INITIAL_PROBABILITIES = """
import json, sys
from pathlib import Path
from neurocare_bids.config import Config
from neurocare_bids.evaluation.group import predict_files
from neurocare_bids.evaluation.plan import collect_window_files
from neurocare_bids.training.fit import initial_network
out, cfg, fold = Path(sys.argv[1]), Config.from_toml(sys.argv[2]), int(sys.argv[3])
files, geometry = collect_window_files(out, [])
summary = json.loads((out / "group" / f"fold-{fold}" / "fold.json").read_text())
scored = [f for f in files if f.subject in summary["test"] + summary["validation"]]
model = initial_network(cfg, geometry, summary["seed"])
print(json.dumps({p["source"]: p["probs"].tolist() for p in predict_files(model, scored, geometry)}))
"""


def _initial_probabilities(out, config, env: dict | None = None) -> dict[str, list[float]]:
    result = subprocess.run([sys.executable, "-c", INITIAL_PROBABILITIES, str(out), str(config), "1"],
                            capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})})
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def _fold_probabilities(out, initial: dict[str, list[float]]) -> tuple[np.ndarray, np.ndarray]:
    """Fold 1's window probabilities (predictions.tsv: validation and test windows) and the initial network's for
    the same windows."""
    with open(out / "group" / "fold-1" / "predictions.tsv", newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    trained = np.array([float(r["probability"]) for r in rows])
    start = np.array([initial[r["recording"]][int(r["window_index"])] for r in rows])
    return trained, start


def _compare_with_one_device(root, prepared, name: str, env: dict, extra: str = "",
                             config: str = MOVING_CONFIG) -> dict:
    """Fold 1 trained on one device and as ``name`` (``env`` and ``extra`` configuration), at the same time as two
    jobs would, from the same initial network on the same global batches: how far training moved the window
    probabilities on each, and how far the two trained networks differ."""
    bids, out, _ = prepared
    one = root / "one.toml"
    one.write_text(config)
    other = root / f"{name}.toml"
    other.write_text(config + extra)
    backend = {"KERAS_BACKEND": env["KERAS_BACKEND"]} if "KERAS_BACKEND" in env else {}
    targets = {"single": root / "single", name: root / name}
    for target in targets.values():
        shutil.copytree(out, target)
    results = run_cli_concurrently(
        *[((bids, targets[run], "group", "--config", cfg, "--fold", "1", "-v"), {"timeout": 600, "env": run_env})
          for run, cfg, run_env in (("single", one, backend), (name, other, env))])
    for result in results:
        assert result.returncode == 0, result.stderr
    runs = {run: (targets[run], result.stderr) for run, result in zip(targets, results)}
    initial = _initial_probabilities(runs["single"][0], one, backend)
    single, start = _fold_probabilities(runs["single"][0], initial)
    several, start_too = _fold_probabilities(runs[name][0], initial)
    assert len(single) > 100 and np.array_equal(start, start_too)
    return {"moved": np.abs(single - start).mean(), "moved_too": np.abs(several - start).mean(),
            "difference": np.abs(single - several).mean(), "single": single, "several": several,
            "stderr": {k: v[1] for k, v in runs.items()}, "dirs": {k: v[0] for k, v in runs.items()},
            "initial": initial}


def _summary(found: dict) -> dict:
    return {k: found[k] for k in ("moved", "moved_too", "difference")}


@pytest.fixture(scope="module")
def mirrored(prepared, tmp_path_factory) -> dict:
    """Fold 1 on one TensorFlow CPU device and mirrored over two (run at once): the mirrored test's comparison,
    whose one-device run and initial network the multi-worker test compares with too."""
    return _compare_with_one_device(tmp_path_factory.mktemp("mirrored"), prepared, "mirrored", {},
                                    "[execution]\ncpu_replicas = 2\n")


def test_mirrored_over_two_cpu_devices_matches_a_single_device(mirrored):
    found = mirrored
    assert "distributed training: mirrored, 2 replica(s)" in found["stderr"]["mirrored"]
    assert "distributed training" not in found["stderr"]["single"]
    # Training moved the probabilities visibly on both (measured: 0.19 on average), and the mirrored network differs
    # from the one-device network by far less than that (measured: 0.0065; batch-norm statistics are per half batch,
    # so not bit for bit). A run that never updated its weights differs by the whole movement.
    assert found["moved"] > 0.04 and found["moved_too"] > 0.04, _summary(found)
    assert found["difference"] < found["moved"] / 8, (found["difference"], found["moved"])
    assert not np.array_equal(found["single"], found["several"])  # it really ran on two replicas
    fold = json.loads((found["dirs"]["mirrored"] / "group" / "fold-1" / "fold.json").read_text())
    assert fold["trained_on"] == {"KerasBackend": "tensorflow", "Distribution": "mirrored", "Replicas": 2,
                                  "Workers": 1}


def test_jax_data_parallel_over_two_cpu_devices_matches_one_device(prepared, tmp_path):
    """KERAS_BACKEND=jax with two CPU devices (XLA_FLAGS): keras.distribution.DataParallel splits each global batch
    across them; the same numbers as on one JAX device, and training moved them. The batches come from tf.data (what
    ``auto`` picks where TensorFlow is installed); Keras splits them as it does the NumPy pipeline's (JAX without
    TensorFlow, tested on one device in test_jax.py): both reach it as NumPy arrays."""
    pytest.importorskip("jax", reason="the optional 'jax' extra is not installed (pip install -e '.[jax]'; "
                                      "make install installs it)")
    pipeline = "tf.data"
    config = MOVING_CONFIG.replace("[training]\n", f'[training]\ninput_pipeline = "{pipeline}"\n')
    found = _compare_with_one_device(tmp_path, prepared, "data-parallel",
                                     {"KERAS_BACKEND": "jax",
                                      "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}, config=config)
    assert "distributed training: data-parallel, 2 replica(s)" in found["stderr"]["data-parallel"]
    assert "distributed training" not in found["stderr"]["single"]
    assert found["moved"] > 0.04 and found["moved_too"] > 0.04, _summary(found)  # measured: 0.067
    # JAX computes the global batch as one program split across the devices (batch norm over the whole batch):
    # equal to float32 rounding.
    assert found["difference"] < 1e-4, (found["difference"], found["moved"])
    fold = json.loads((found["dirs"]["data-parallel"] / "group" / "fold-1" / "fold.json").read_text())
    assert fold["trained_on"] == {"KerasBackend": "jax", "Distribution": "data-parallel", "Replicas": 2,
                                  "Workers": 1}
    assert fold["onnx"]["File"] == "model.onnx" and fold["compute"]["input_pipeline"] == pipeline


RELEASE_MODELS = """
import json, keras
from neurocare_bids.config import Config
from neurocare_bids.training.distribute import placement, release_models
place = placement(Config())
first = keras.layers.Dense(1).name
keras.layers.Dense(1)
before = keras.distribution.distribution()
release_models()
print(json.dumps({"kind": place.kind, "kept": before is not None and keras.distribution.distribution() is before,
                  "first": first, "after": keras.layers.Dense(1).name}))
"""


def test_release_between_folds_keeps_the_jax_distribution():
    """Between folds the group level drops Keras's global state (memory grows with every fold otherwise); on JAX
    that state holds the data-parallel distribution, which must survive for the next fold."""
    pytest.importorskip("jax", reason="the optional 'jax' extra is not installed")
    env = {**os.environ, "KERAS_BACKEND": "jax", "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    result = subprocess.run([sys.executable, "-c", RELEASE_MODELS], capture_output=True, text=True, env=env,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found == {"kind": "data-parallel", "kept": True, "first": "dense", "after": "dense"}


def test_distributed_outside_a_cluster_is_a_usage_error(prepared, tmp_path):
    bids, out, config = prepared
    target = tmp_path / "out"
    shutil.copytree(out, target)
    env = {"SLURM_JOB_ID": "", "SLURM_NTASKS": "", "TF_CONFIG": ""}
    result = run_cli(bids, target, "group", "--config", config, "--distributed", env=env)
    assert result.returncode == 64, result.stderr
    assert "--distributed needs a multi-task Slurm job" in result.stderr and "Traceback" not in result.stderr
    result = run_cli(bids, target, "group", "--config", config, "--distributed", "--fold-jobs", 2, env=env)
    assert result.returncode == 64 and "--fold-jobs trains folds as separate processes" in result.stderr
    assert not list(target.glob("group/fold-*")), "refused before any fold started"
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


def test_multi_worker_training_two_processes_on_loopback(prepared, mirrored, tmp_path):
    """--distributed with a two-worker cluster (TF_CONFIG, as Slurm's resolver would give): both train in step,
    only the chief writes the fold's outputs, and they agree with a one-device run (the mirrored test's) within the
    tolerance."""
    bids, out, _ = prepared
    base = tmp_path / "quick.toml"
    base.write_text(MOVING_CONFIG)
    single, initial = mirrored["dirs"]["single"], mirrored["initial"]
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
                                                      "model_consecutive.onnx", "predictions.tsv"]
    assert json.loads((fold / "fold.json").read_text())["onnx"]["File"] == "model.onnx"  # exported by the chief
    one, start = _fold_probabilities(single, initial)
    two, _ = _fold_probabilities(target, initial)
    moved, moved_too, difference = (np.abs(a - b).mean() for a, b in ((one, start), (two, start), (one, two)))
    # Both trainings moved the probabilities visibly; each worker draws its half of every global batch from its own
    # files, so the batches are not the one-device run's, but the networks still differ by far less than training
    # moved them (a run whose workers never updated their weights differs by the whole movement).
    assert moved > 0.04 and moved_too > 0.04, (moved, moved_too)
    assert difference < moved / 3, (difference, moved)
    assert json.loads((fold / "fold.json").read_text())["trained_on"] == {
        "KerasBackend": "tensorflow", "Distribution": "multi-worker", "Replicas": 2, "Workers": 2}
