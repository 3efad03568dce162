"""BIDS validation through the real ``bids-validator-deno`` (no mocks).

Each validator run takes about 1 s. Network access is cut off for the validator in every test
(proxy variables pointing at a closed local port), so the results are those of an offline HPC node
whether or not the machine running the tests has a network.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from neurocare_bids.io.edf import write_edf
from neurocare_bids.io.validation import (HED_DOWNLOAD_NOTE, ValidatorUnavailable, _is_offline_hed_download,
                                          find_validator, validate_dataset)

requires_validator = pytest.mark.skipif(
    find_validator() is None,
    reason="bids-validator-deno is not installed (pip install bids-validator-deno)",
)

STEM = "sub-01_ses-01_task-szMonitoring_run-00"
EVENTS_HEADER = "onset\tduration\teventType\tconfidence\tchannels\tdateTime\trecordingDuration\n"
# What our derivative output writes to its .bidsignore (kept in step with the writer).
DERIVATIVE_BIDSIGNORE = "*_windows.tfrecord\n*_windows.json\n/sub-*.html\n/group\n"


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """Make every download fail fast, as on a compute node without network."""
    for var in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "https_proxy", "http_proxy", "all_proxy"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    for var in ("NO_PROXY", "no_proxy", "BIDS_SCHEMA"):
        monkeypatch.delenv(var, raising=False)


def make_raw(root: Path, *, hed_version=None, hed_tags: bool = False) -> Path:
    root.mkdir(parents=True)
    description = {
        "Name": "validation test",
        "BIDSVersion": "1.9.0",
        "DatasetType": "raw",
        "License": "CC0",
        "Authors": ["A. Tester", "B. Tester"],
    }
    if hed_version is not None:
        description["HEDVersion"] = hed_version
    (root / "dataset_description.json").write_text(json.dumps(description, indent=2))
    (root / "participants.tsv").write_text("participant_id\nsub-01\n")
    (root / "README").write_text("Synthetic two-channel EEG recording used to test BIDS validation.\n")
    eeg = root / "sub-01" / "ses-01" / "eeg"
    eeg.mkdir(parents=True)
    rng = np.random.default_rng(0)
    write_edf(eeg / f"{STEM}_eeg.edf", rng.normal(0, 20, (2, 256 * 4)), 256, ["Fp1-Avg", "Fp2-Avg"])
    sidecar = {
        "TaskName": "szMonitoring",
        "SamplingFrequency": 256,
        "PowerLineFrequency": 50,
        "EEGReference": "Avg",
        "SoftwareFilters": "n/a",
    }
    (eeg / f"{STEM}_eeg.json").write_text(json.dumps(sidecar))
    (eeg / f"{STEM}_events.tsv").write_text(
        EVENTS_HEADER + "0.0\t4.0\tbckg\tn/a\tn/a\t2020-01-01 00:00:00\t4.0\n"
    )
    if hed_tags:  # HED validation (and a schema load) only happens when something carries HED
        (root / "task-szMonitoring_events.json").write_text(
            json.dumps({"eventType": {"HED": {"bckg": "Sensory-event"}}})
        )
    return root


def make_derivative(root: Path, bidsignore: str | None = DERIVATIVE_BIDSIGNORE) -> Path:
    eeg = root / "sub-01" / "ses-01" / "eeg"
    eeg.mkdir(parents=True)
    (root / "dataset_description.json").write_text(json.dumps({
        "Name": "NeuroCare-BIDS seizure detection",
        "BIDSVersion": "1.9.0",
        "DatasetType": "derivative",
        "GeneratedBy": [{"Name": "neurocare-bids", "Version": "0.1.0",
                         "CodeURL": "https://github.com/neurocare-bids/neurocare-bids"}],
        "SourceDatasets": [{"URL": "file:///data/raw"}],
    }, indent=2))
    (eeg / f"{STEM}_desc-preproc_windows.tfrecord").write_bytes(b"\0" * 64)
    (eeg / f"{STEM}_desc-preproc_windows.json").write_text(json.dumps({"WindowLength": 4.0}))
    (root / "logs").mkdir()
    (root / "logs" / "run-20250101T000000.log").write_text("log line\n")
    (root / "sub-01.html").write_text("<html></html>\n")
    (root / "group").mkdir()
    (root / "group" / "summary.tsv").write_text("subject\tn\n01\t1\n")
    if bidsignore is not None:
        (root / ".bidsignore").write_text(bidsignore)
    return root


def snapshot(root: Path) -> dict[str, tuple]:
    out = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
        out[str(path.relative_to(root))] = (digest, st.st_mode, st.st_mtime_ns)
    return out


@requires_validator
def test_valid_dataset_is_ok(tmp_path):
    report = validate_dataset(make_raw(tmp_path / "raw"))
    assert report.ok, report.summary()
    assert report.errors == [] and report.downgraded == []
    assert report.summary().startswith("no errors")
    assert report.validator_version[0].isdigit()
    assert report.dataset_summary.get("subjects") == ["01"]


@requires_validator
@pytest.mark.parametrize("breakage, code", [
    ("empty_edf", "EMPTY_FILE"),
    ("no_taskname", "SIDECAR_KEY_REQUIRED"),
    ("bad_name", "FILENAME_MISMATCH"),
])
def test_real_errors_fail(tmp_path, breakage, code):
    root = make_raw(tmp_path / "raw")
    eeg = root / "sub-01" / "ses-01" / "eeg"
    if breakage == "empty_edf":
        (eeg / f"{STEM}_eeg.edf").write_bytes(b"")
    elif breakage == "no_taskname":
        sidecar = json.loads((eeg / f"{STEM}_eeg.json").read_text())
        del sidecar["TaskName"]
        (eeg / f"{STEM}_eeg.json").write_text(json.dumps(sidecar))
    else:
        (eeg / f"{STEM}_eeg.edf").rename(eeg / "sub-01_ses-01_task-sz_monitoring_eeg.edf")
    report = validate_dataset(root)
    assert not report.ok
    codes = [issue.code for issue in report.errors]
    assert code in codes
    line = report.summary(max_items=len(codes))
    assert "\n" not in line and code in line and line.split()[1].startswith("error")
    issue = report.errors[codes.index(code)]
    assert issue.location and issue.location.startswith("sub-01/ses-01/eeg/")
    if breakage == "no_taskname":
        assert "TaskName" in issue.sub_codes


@requires_validator
def test_bundled_hed_schema_needs_no_network(tmp_path):
    report = validate_dataset(make_raw(tmp_path / "raw", hed_version="8.2.0", hed_tags=True))
    assert report.ok, report.summary()
    assert report.downgraded == []


@requires_validator
def test_hed_schema_download_failure_is_only_a_warning(tmp_path):
    # score 1.0.0 is not bundled with the validator, so it must be downloaded: impossible offline.
    root = make_raw(tmp_path / "raw", hed_version=["8.2.0", "sc:score_1.0.0"], hed_tags=True)
    report = validate_dataset(root)
    assert report.ok, report.summary()
    assert [i.code for i in report.downgraded] == ["HED_ERROR"]
    issue = report.downgraded[0]
    assert issue.severity == "warning" and issue.note == HED_DOWNLOAD_NOTE
    assert "SCHEMA_LOAD_FAILED" in issue.sub_codes
    assert "downgraded" in report.summary() and "HED_ERROR" in report.summary()
    assert "HED_ERROR" not in [i.code for i in report.warnings]


def test_only_remote_hed_schema_failures_are_downgraded():
    remote = ('ERROR: [SCHEMA_LOAD_FAILED] Could not load HED schema "{"prefix":"","version":"8.5.0",'
              '"library":"","localPath":""}" from remote repository - "fetch failed".')
    base = {"code": "HED_ERROR", "subCode": "SCHEMA_LOAD_FAILED", "severity": "error"}
    assert _is_offline_hed_download({**base, "issueMessage": remote})
    not_found = remote.replace(
        "fetch failed", "I/O error when reading from network - server responded to URL "
        '"https://raw.githubusercontent.com/x.xml" with HTTP status code 404 Not Found.')
    assert not _is_offline_hed_download({**base, "issueMessage": not_found})
    local = 'Could not load HED schema from path "/data/HED.xml" - "No such file".'
    assert not _is_offline_hed_download({**base, "issueMessage": local})
    assert not _is_offline_hed_download({**base, "code": "EMPTY_FILE", "issueMessage": remote})
    assert not _is_offline_hed_download({**base, "subCode": "TAG_INVALID", "issueMessage": remote})


@requires_validator
def test_derivative_output_with_bidsignore_is_valid(tmp_path):
    assert not validate_dataset(make_derivative(tmp_path / "bare", bidsignore=None)).ok
    report = validate_dataset(make_derivative(tmp_path / "out"))
    assert report.ok, report.summary()


@requires_validator
def test_validator_writes_nothing_into_dataset_or_home(tmp_path, monkeypatch):
    root = make_raw(tmp_path / "raw", hed_version=["8.2.0", "sc:score_1.0.0"], hed_tags=True)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("DENO_DIR", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    before = snapshot(root)
    validate_dataset(root)
    assert snapshot(root) == before
    assert list(home.iterdir()) == []


def test_missing_validator_raises(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    assert find_validator() is None
    with pytest.raises(ValidatorUnavailable, match="bids-validator-deno not found"):
        validate_dataset(tmp_path)


@requires_validator
def test_timeout_and_bad_root_raise(tmp_path):
    root = make_raw(tmp_path / "raw")
    with pytest.raises(ValidatorUnavailable, match="did not finish"):
        validate_dataset(root, timeout=0.01)
    with pytest.raises(ValidatorUnavailable, match="not a directory"):
        validate_dataset(tmp_path / "missing")
    assert os.path.isfile(find_validator())
