"""BIDS validation as the CLI runs it: input validated before anything is written, output valid too."""

from __future__ import annotations

import json

import pytest

from conftest import add_recording, run_cli
from neurocare_bids.io.validation import find_validator, validate_dataset

pytestmark = pytest.mark.skipif(find_validator() is None, reason="bids-validator-deno is not installed")
OFFLINE = {var: "http://127.0.0.1:9" for var in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy")}


def complete_dataset(root, **description):
    root.mkdir(parents=True)
    (root / "dataset_description.json").write_text(json.dumps(
        {"Name": "t", "BIDSVersion": "1.9.0", "DatasetType": "raw", "License": "CC0",
         "Authors": ["A. Tester", "B. Tester"], **description}))
    (root / "participants.tsv").write_text("participant_id\nsub-01\nsub-02\n")
    (root / "README").write_text("A test dataset for NeuroCare-BIDS.\n")
    add_recording(root, "01", duration=30.0, seizures=[(10.0, 5.0, "sz")])
    add_recording(root, "02", duration=30.0, seizures=[])
    return root


def test_valid_input_gives_valid_derivative_output(tmp_path):
    root = complete_dataset(tmp_path / "bids")
    out = tmp_path / "out"
    result = run_cli(root, out, "participant", env=OFFLINE)
    assert result.returncode == 0, result.stderr
    report = validate_dataset(out)
    assert report.ok, report.summary()


def test_invalid_input_exits_16_before_writing_anything(tmp_path):
    root = complete_dataset(tmp_path / "bids")
    sidecar = root / "sub-01/ses-01/eeg/sub-01_ses-01_task-szMonitoring_run-00_eeg.json"
    meta = json.loads(sidecar.read_text())
    del meta["TaskName"], meta["EEGReference"]
    sidecar.write_text(json.dumps(meta))
    out = tmp_path / "out"
    result = run_cli(root, out, "participant", env=OFFLINE)
    assert result.returncode == 16, result.stderr
    assert "not valid BIDS" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not out.exists()
    skipped = run_cli(root, out, "participant", "--skip-bids-validation", env=OFFLINE)
    assert skipped.returncode == 0, skipped.stderr


def test_hed_schema_that_cannot_be_downloaded_does_not_fail_the_run(tmp_path):
    root = complete_dataset(tmp_path / "bids", HEDVersion="8.5.0")
    (root / "task-szMonitoring_events.json").write_text(json.dumps({"eventType": {"HED": {"bckg": "Sensory-event"}}}))
    out = tmp_path / "out"
    result = run_cli(root, out, "participant", env=OFFLINE)
    assert result.returncode == 0, result.stderr
    assert "HED" in result.stderr  # reported as a warning
