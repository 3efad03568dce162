"""Weights & Biases logging: offline runs written by the real wandb package, read back from their files."""

from __future__ import annotations

import shutil
import struct

import pytest

from conftest import run_cli, run_cli_concurrently

wandb = pytest.importorskip("wandb", reason="wandb is in the test extra; install it to test W&B logging")


def _records(path):
    """The protobuf records of a ``.wandb`` file (LevelDB log format: 32 KiB blocks, 7-byte chunk headers)."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    block, pos, pending = 32768, 7, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:  # block trailer
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if length == 0 and kind == 0:
            pos += left
            continue
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind in (1, 2):  # full, first
            pending = chunk
        else:  # middle, last
            pending += chunk
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            yield record


def _history(path) -> list[dict]:
    rows = []
    for record in _records(path):
        if record.WhichOneof("record_type") == "history":
            rows.append({item.key or ".".join(item.nested_key): item.value_json for item in record.history.item})
    return rows


def test_offline_wandb_logs_every_epoch_and_changes_no_output(prepared, tmp_path):
    bids, out, config = prepared
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    epochs = tmp_path / "epochs.toml"
    epochs.write_text(config.read_text().replace("epochs = 1", "epochs = 2"))
    # The same fold with and without logging, at once (independent jobs).
    plain = tmp_path / "plain"
    shutil.copytree(out, plain)
    result, without = run_cli_concurrently(
        ((bids, copy, "group", "--config", epochs, "--fold", "1", "--wandb", "offline"),
         {"env": {"WANDB_SILENT": "true", "HOME": str(tmp_path)}, "timeout": 600}),
        ((bids, plain, "group", "--config", epochs, "--fold", "1"), {"timeout": 600}))
    assert result.returncode == 0, result.stderr
    runs = list((copy / "group" / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 1
    records = list(_records(runs[0]))
    run = next(r.run for r in records if r.WhichOneof("record_type") == "run")
    assert run.display_name == "fold-1" and run.project == "neurocare-bids" and run.run_group.startswith("neurocare-")
    history = [h for h in _history(runs[0]) if "loss" in h]
    assert [int(h["_step"]) for h in history] == [1, 2]
    assert all(0 <= float(h["val_pr_auc"]) <= 1 and float(h["learning_rate"]) > 0 for h in history)
    # Logging reads, never changes: the fold trains exactly as without it.
    assert without.returncode == 0, without.stderr
    for name in ("predictions.tsv", "history.tsv"):
        assert (copy / "group" / "fold-1" / name).read_bytes() == (plain / "group" / "fold-1" / name).read_bytes()
    assert not (plain / "group" / "wandb").exists()


def test_wandb_requested_without_the_package_is_a_usage_error(prepared, tmp_path):
    bids, out, config = prepared
    hidden = tmp_path / "site"
    (hidden / "wandb").mkdir(parents=True)
    (hidden / "wandb" / "__init__.py").write_text("raise ImportError('No module named wandb')\n")
    result = run_cli(bids, tmp_path / "never", "group", "--config", config, "--wandb", "offline",
                     env={"PYTHONPATH": str(hidden)})
    assert result.returncode == 64, result.stderr
    assert "needs the wandb package" in result.stderr and "Traceback" not in result.stderr
    result = run_cli(bids, tmp_path / "never", "group", "--config", config, "--wandb", "online",
                     env={"WANDB_API_KEY": "", "HOME": str(tmp_path), "NETRC": str(tmp_path / "none")})
    assert result.returncode == 64 and "needs a W&B login" in result.stderr
    assert not (tmp_path / "never").exists()
