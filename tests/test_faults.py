"""Faults: the app killed (SIGKILL) or stopped (SIGTERM) at random points, a full disk, an unwritable output.

After any of them, finished outputs are intact, no temporary file is left, and a rerun gives exactly what
an uninterrupted run gives. (Group-level kills during fold training: test_group_cli.py.)
"""

from __future__ import annotations

import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import read_only_input, run_cli
from hostile import recording
from test_hostile import assert_clean, assert_valid_windows

RECORDINGS = ("01", "02", "03", "04")


def _outputs(out: Path) -> dict[str, str]:
    """Checksums of the derivative dataset without what each run rewrites: its logs and HTML reports."""
    from conftest import tree_checksums

    return {k: v for k, v in tree_checksums(out).items() if not k.startswith("logs/") and not k.endswith(".html")}


def _complete_outputs_only(out: Path) -> int:
    """Every sidecar present describes a complete TFRecord; return how many there are."""
    sidecars = sorted(out.glob("sub-*/**/*_desc-preproc_windows.json"))
    for sidecar in sidecars:
        assert_valid_windows(sidecar.with_suffix(".tfrecord"), sidecar)
    return len(sidecars)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """Four 10-minute recordings at 256 Hz (a couple of seconds of processing), and their uninterrupted outputs."""
    root = tmp_path_factory.mktemp("faults")
    bids = root / "bids"
    for subject in RECORDINGS:
        recording(bids, subject, duration=600.0, sfreq=256.0, seizures=[(200.0, 40.0, "sz")])
    reference = root / "reference"
    result = run_cli(bids, reference, "participant", "--skip-bids-validation", "--nprocs", "2")
    assert result.returncode == 0, result.stderr
    return bids, reference


# (signal, sent to the main process only or to its whole process group as Slurm and Ctrl-C do)
KILLS = [(signal.SIGTERM, "process"), (signal.SIGKILL, "group"), (signal.SIGTERM, "group")]


def test_killed_or_terminated_at_random_points_then_rerun_equals_an_uninterrupted_run(dataset, tmp_path):
    bids, reference = dataset
    out, work = tmp_path / "out", tmp_path / "work"
    rng = random.Random(20261126)
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    for sig, target in KILLS:
        scratch = set(work.iterdir()) if work.exists() else set()  # SIGKILL leaves the killed run's behind
        with read_only_input(bids):
            proc = subprocess.Popen([sys.executable, "-m", "neurocare_bids", bids, out, "participant",
                                     "--skip-bids-validation", "--nprocs", "2", "-w", work], env=env,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                    start_new_session=True)
            deadline = time.time() + 120
            while time.time() < deadline and not any(work.glob("*/*")):  # processing has started
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, 0.6))
            assert proc.poll() is None, "the run ended before it could be interrupted"
            (os.killpg if target == "group" else os.kill)(proc.pid, sig)
            _, stderr = proc.communicate(timeout=60)
        if sig == signal.SIGTERM:
            assert proc.returncode == 143, stderr
            assert stderr.strip().splitlines()[-1] == ("neurocare-bids: terminated (SIGTERM): finished outputs "
                                                       "are kept; rerun to complete the rest")
            assert "Traceback" not in stderr
            assert_clean(out)  # the temporaries being written were removed...
            assert set(work.iterdir()) == scratch  # ...and the scratch files
        else:
            assert proc.returncode == -signal.SIGKILL
        _complete_outputs_only(out)

    result = run_cli(bids, out, "participant", "--skip-bids-validation", "--nprocs", "2", "-w", work)
    assert result.returncode == 0, result.stderr
    assert_clean(out)  # a killed run's temporaries are removed by the next one
    assert _complete_outputs_only(out) == len(RECORDINGS)
    assert _outputs(out) == _outputs(reference)


def _file_size_limit(limit: int):
    def apply() -> None:  # in the child, before exec: a write past the limit fails with EFBIG
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def test_file_size_limit_exits_74_and_corrupts_nothing(dataset, tmp_path):
    """RLIMIT_FSIZE stands for a full disk: the recordings done before stay as they were, nothing partial."""
    bids, reference = dataset
    out, work = tmp_path / "out", tmp_path / "work"
    shutil.copytree(reference, out)
    for subject in RECORDINGS[1:]:
        shutil.rmtree(out / f"sub-{subject}")
    before = _outputs(out)
    limited = run_cli(bids, out, "participant", "--skip-bids-validation", "--nprocs", "2", "-w", work,
                      preexec_fn=_file_size_limit(1 << 20))
    assert limited.returncode == 74, limited.stderr
    errors = [line for line in limited.stderr.splitlines() if line.startswith("neurocare-bids: error:")]
    assert len(errors) == 3 and all("File too large" in line for line in errors), limited.stderr
    assert "Traceback" not in limited.stderr and "internal error" not in limited.stderr
    assert _outputs(out) == before  # sub-01 untouched, nothing of the others
    assert_clean(out)
    assert not list(work.iterdir())


def test_unwritable_output_exits_73_and_the_rest_is_processed(dataset, tmp_path):
    bids, reference = dataset
    out = tmp_path / "out"
    out.mkdir()
    (out / "sub-02").write_text("a file where the subject's output folder should be\n")
    result = run_cli(bids, out, "participant", "--skip-bids-validation", "--nprocs", "2")
    assert result.returncode == 73, result.stderr
    [error] = [line for line in result.stderr.splitlines() if line.startswith("neurocare-bids: error:")]
    assert error.startswith("neurocare-bids: error: sub-02/ses-01/eeg/sub-02_ses-01_task-szMonitoring_run-00_eeg.edf:")
    assert "cannot write" in error and "Traceback" not in result.stderr
    assert_clean(out)
    assert _complete_outputs_only(out) == 3
    produced = {k: v for k, v in _outputs(out).items() if k != "sub-02"}
    assert produced == {k: v for k, v in _outputs(reference).items() if not k.startswith("sub-02/")}

    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("not a folder\n")
    result = run_cli(bids, not_a_folder, "participant", "--skip-bids-validation")
    assert result.returncode == 73 and "exists and is not a folder" in result.stderr, result.stderr
    assert not_a_folder.read_text() == "not a folder\n"
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    (blocked / "logs").write_text("a file where the log folder should be\n")
    result = run_cli(bids, blocked, "participant", "--skip-bids-validation")
    assert result.returncode == 73 and "cannot create log folder" in result.stderr, result.stderr
    assert not list(blocked.glob("sub-*"))
    for result in (result,):
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
