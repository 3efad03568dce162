"""The participant level's exit code when several recordings fail differently, through the CLI.

README, exit codes: the run goes on after a recording fails and "exits with the highest of their codes (65 for bad
data, 73/74 for output problems, 1 if any failed because of a bug or ran out of memory)". Every failure here is
real: a folder where a sidecar should be, a file where an output folder should be, and a recording whose one block
does not fit in the memory the process may use (RLIMIT_AS, as a cluster's memory limit; the same way test_faults.py
stands a file size limit in for a full disk).
"""

from __future__ import annotations

import resource

import numpy as np

from conftest import SIENA_LABELS, run_cli
from hostile import recording
from neurocare_bids.io.edf import write_edf

STEM = "sub-{0}/ses-01/eeg/sub-{0}_ses-01_task-szMonitoring_run-00"
MEMORY_LIMIT = 16 << 30  # address space: ample for a run (a few GB), not for the 39 GB block below


def _memory_limit() -> None:  # in the child, before exec
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def _errors(stderr: str) -> dict[str, str]:
    """The one error line of each failed recording: subject → message."""
    lines = [line.removeprefix("neurocare-bids: error: ") for line in stderr.splitlines()
             if line.startswith("neurocare-bids: error: sub-")]
    by_subject = {line[4:6]: line.split(": ", 1)[1] for line in lines}
    assert len(by_subject) == len(lines), stderr
    return by_subject


def test_internal_error_wins_else_the_highest_code(tmp_path):
    bids, out, config = tmp_path / "bids", tmp_path / "out", tmp_path / "blocks.toml"
    recording(bids, "01")  # fine
    sidecar = bids / f"{STEM.format('02')}_eeg.json"  # 65: a folder where the sidecar should be
    recording(bids, "02")
    sidecar.unlink()
    sidecar.mkdir()
    recording(bids, "03")  # 73: a file where its output folder should be
    out.mkdir()
    (out / "sub-03").write_text("not a folder\n")
    # 1: 20 000 samples at 0.01 Hz (a 2 MB file, 2e6 s), one block (block_duration), upsampled to 128 Hz: 19
    # channels x 2.56e8 samples of float64 are 39 GB, more than MEMORY_LIMIT
    edf = recording(bids, "04", seizures=[])
    samples = np.random.default_rng(4).standard_normal((len(SIENA_LABELS), 20_000)) * 10
    write_edf(edf, samples, 0.01, SIENA_LABELS, record_duration=100.0)
    config.write_text("[preprocessing]\nblock_duration = 1e7\n")

    def run(*subjects):
        return run_cli(bids, out, "participant", "--skip-bids-validation", "--nprocs", "1", "--no-reports",
                       "--config", config, "--participant-label", *subjects, preexec_fn=_memory_limit)

    everything = run("01", "02", "03", "04")
    assert everything.returncode == 1, everything.stderr
    errors = _errors(everything.stderr)
    assert sorted(errors) == ["02", "03", "04"], everything.stderr
    assert errors["02"] == "sub-02_ses-01_task-szMonitoring_run-00_eeg.json: not a file"
    assert "cannot write" in errors["03"]
    assert errors["04"] == "out of memory (lower preprocessing.block_duration)"
    assert "1 written, 0 up to date, 3 failed" in everything.stdout
    assert (out / f"{STEM.format('01')}_desc-preproc_windows.json").is_file()
    assert "Traceback" not in everything.stderr

    without_memory = run("01", "02", "03")  # 65 and 73: the highest
    assert without_memory.returncode == 73, without_memory.stderr
    assert sorted(_errors(without_memory.stderr)) == ["02", "03"]
    assert "0 written, 1 up to date, 2 failed" in without_memory.stdout

    bad_data = run("01", "02")
    assert bad_data.returncode == 65, bad_data.stderr
    assert sorted(_errors(bad_data.stderr)) == ["02"]
