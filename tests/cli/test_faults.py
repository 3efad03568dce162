"""Faults: the app killed (SIGKILL) or stopped (SIGTERM) in states seen on disk, a full disk, an unwritable output.

After any of them, finished outputs are intact, no temporary file is left, and a rerun gives exactly what
an uninterrupted run gives. (Group-level kills during fold training: test_group_cli.py.)
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import as_a_foreground_job, read_only_input, run_cli
from hostile import recording
from test_hostile import assert_clean, assert_valid_windows

RECORDINGS = ("01", "02", "03", "04", "05", "06")
TFRECORD = "sub-{0}/ses-01/eeg/sub-{0}_ses-01_task-szMonitoring_run-00_desc-preproc_windows.tfrecord"
SIDECAR = "sub-{0}/ses-01/eeg/sub-{0}_ses-01_task-szMonitoring_run-00_desc-preproc_windows.json"


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
    """Six 20-minute recordings at 256 Hz (a fraction of a second of processing each), and their uninterrupted
    outputs."""
    root = tmp_path_factory.mktemp("faults")
    bids = root / "bids"
    for subject in RECORDINGS:
        recording(bids, subject, duration=1200.0, sfreq=256.0, seizures=[(200.0, 40.0, "sz")])
    reference = root / "reference"
    result = run_cli(bids, reference, "participant", "--skip-bids-validation", "--nprocs", "2")
    assert result.returncode == 0, result.stderr
    return bids, reference


# ---------------------------------------------------------------- kills triggered by what is on disk
def _group_members(pgid: int) -> dict[int, str]:
    """Every live process of the process group: pid → state letter (from /proc/PID/stat)."""
    members = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # ended meanwhile
            continue
        fields = text[text.rindex(")") + 2:].split()  # after "pid (comm) ": state, ppid, pgrp, ...
        if int(fields[2]) == pgid:
            members[int(stat.parent.name)] = fields[0]
    return members


def _freeze(pgid: int) -> None:
    """SIGSTOP the whole process group and wait until every member is stopped: the files seen from now on are
    the files at the moment of the kill."""
    os.killpg(pgid, signal.SIGSTOP)
    deadline = time.monotonic() + 30
    while any(state not in "TtZX" for state in _group_members(pgid).values()):
        assert time.monotonic() < deadline, f"process group {pgid} did not stop: {_group_members(pgid)}"
        time.sleep(0.001)


def _temporaries(out: Path) -> set[str]:
    """The hidden temporary files of atomic writes under OUT (``.NAME.HOST.PID.tmp``)."""
    return {str(p.relative_to(out)) for p in out.rglob(".*.tmp")}


def _finished(out: Path) -> dict[str, str]:
    """Checksums of the per-recording files under OUT that carry their final names (no temporary)."""
    return {k: v for k, v in _outputs(out).items() if k.startswith("sub-") and not Path(k).name.startswith(".")}


def _done(out: Path) -> set[str]:
    """Recordings whose sidecar, written last, is there: their outputs are complete."""
    return {s for s in RECORDINGS if (out / SIDECAR.format(s)).exists()}


def _partial(out: Path, stale: set[str]) -> list[str] | None:
    """State (a): TFRecords being written by this run (their temporary there, not one a killed run left behind)
    with neither the final TFRecord nor the sidecar yet; the recordings in that state."""
    found = []
    for subject in RECORDINGS:
        final = out / TFRECORD.format(subject)
        if not final.parent.is_dir():
            continue
        fresh = [t for t in final.parent.glob(f".{final.name}.*.tmp") if str(t.relative_to(out)) not in stale]
        if fresh and not final.exists() and not (out / SIDECAR.format(subject)).exists():
            found.append(subject)
    return found or None


def _one_more_complete(out: Path, before: set[str]) -> list[str] | None:
    """State (b): outputs completed by this run (their sidecar, written last, is there); the recordings."""
    return sorted(_done(out) - before) or None


def _interrupt_when(proc: subprocess.Popen, observe, what: str, timeout: float = 300.0):
    """Poll the output folder until ``observe()`` sees the state, freeze the run, and return what ``observe()``
    sees while it is frozen. If the state is gone by the time the run stopped (a rename in between), let it go on
    and wait for the next recording to reach the state. The run ending first fails the test."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            _, stderr = proc.communicate()
            pytest.fail(f"the run ended (code {proc.returncode}) before {what} was observed: {stderr[-2000:]}")
        assert time.monotonic() < deadline, f"{what} not observed within {timeout:.0f} s"
        if observe():
            _freeze(proc.pid)
            frozen = observe()
            if frozen:
                return frozen
            os.killpg(proc.pid, signal.SIGCONT)
        time.sleep(0.001)


# (signal, sent to the main process only or to the whole process group as Slurm and Ctrl-C do, state, --nprocs)
KILLS = [(signal.SIGKILL, "group", "partial", "1"), (signal.SIGTERM, "process", "partial", "2"),
         (signal.SIGTERM, "group", "partial", "1"), (signal.SIGKILL, "group", "completed", "1"),
         (signal.SIGTERM, "group", "completed", "1")]


def test_killed_or_terminated_in_observed_states_then_rerun_equals_an_uninterrupted_run(dataset, tmp_path):
    """Each run is interrupted in a state seen on disk, and the state is checked while the run is stopped
    (SIGSTOP), so it is the state the kill hits: (a) a TFRecord half written (its temporary there, no final
    file), (b) an output just completed while others are pending. The outputs finished by then are those of an
    uninterrupted run and are kept; a rerun reuses them, completes the rest, and equals an uninterrupted run."""
    bids, reference = dataset
    expected = _outputs(reference)
    out, work = tmp_path / "out", tmp_path / "work"
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    for sig, target, state, nprocs in KILLS:
        scratch = set(work.iterdir()) if work.exists() else set()  # SIGKILL leaves the killed run's behind
        before, stale = _done(out), _temporaries(out) if out.exists() else set()
        assert len(before) < len(RECORDINGS) - 1, "too few recordings left to interrupt: add recordings"
        with read_only_input(bids):
            proc = subprocess.Popen([sys.executable, "-m", "neurocare_bids", bids, out, "participant",
                                     "--skip-bids-validation", "--nprocs", nprocs, "-w", work], env=env,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                    start_new_session=True)
            try:
                if state == "partial":
                    seen = _interrupt_when(proc, lambda: _partial(out, stale), "a TFRecord being written")
                else:
                    seen = _interrupt_when(proc, lambda: _one_more_complete(out, before), "a completed output")
                # the run is stopped: this is the state the signal hits
                done, finished, temporaries = _done(out), _finished(out), _temporaries(out)
                assert done < set(RECORDINGS), f"every recording was done: nothing pending ({state})"
                assert finished == {k: expected[k] for k in finished}, "a finished output differs from the reference"
                assert {k for k in finished if k.endswith("_windows.json")} == {SIDECAR.format(s) for s in done}
                if state == "partial":
                    assert temporaries - stale and not set(seen) & done, (seen, temporaries)
                else:
                    assert set(seen) <= done and len(done) > len(before), (seen, before, done)
                (os.killpg if target == "group" else os.kill)(proc.pid, sig)
            finally:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGCONT)  # a stopped process acts on SIGTERM once continued
                _, stderr = proc.communicate(timeout=120)
        if sig == signal.SIGTERM:
            assert proc.returncode == 143, stderr
            assert stderr.strip().splitlines()[-1] == ("neurocare-bids: terminated (SIGTERM): finished outputs "
                                                       "are kept; rerun to complete the rest")
            assert "Traceback" not in stderr
            assert_clean(out)  # the temporaries being written were removed, the workers' included...
            assert set(work.iterdir()) == scratch  # ...and the scratch files
            # finished outputs are kept (a worker may have finished one before the signal reached it)
            assert _done(out) >= done and _finished(out).items() >= finished.items()
        else:
            assert proc.returncode == -signal.SIGKILL
            assert _temporaries(out) == temporaries  # a half-written TFRecord is left as it was, never renamed
            assert _done(out) == done and _finished(out) == finished
        assert _complete_outputs_only(out) == len(_done(out))
        assert _finished(out) == {k: expected[k] for k in _finished(out)}

    done = _done(out)
    result = run_cli(bids, out, "participant", "--skip-bids-validation", "--nprocs", "2", "-w", work, "--no-reports")
    assert result.returncode == 0, result.stderr
    # the finished outputs are reused, the rest written
    assert f"{len(RECORDINGS) - len(done)} written, {len(done)} up to date, 0 failed" in result.stdout
    assert_clean(out)  # a killed run's temporaries are removed by the next one
    assert _complete_outputs_only(out) == len(RECORDINGS)
    assert _outputs(out) == expected


# SIGTERM or Ctrl-C while the garbage collector runs a callback (JAX registers one): Python cannot raise the
# handler's exception there, prints it as "Exception ignored" and goes on. The run neither prints that traceback nor
# carries on as if the signal had not come: it stops after the recording in progress.
SIGNAL_IN_A_GC_CALLBACK = """
import gc, os, signal, sys
from neurocare_bids.cli import run

sig = getattr(signal, sys.argv[3])
def collecting(phase, info):  # the first collection once the run's handlers are in place (before any recording)
    if phase == "start" and signal.getsignal(signal.SIGTERM) is run._terminate:
        gc.callbacks.remove(collecting)
        os.kill(os.getpid(), sig)
        for _ in range(10 ** 6):  # the handler runs, and raises, in here
            pass
gc.callbacks.append(collecting)
sys.exit(run.main([sys.argv[1], sys.argv[2], "participant", "--skip-bids-validation", "--nprocs", "1"]))
"""


@pytest.mark.parametrize("sig, code, line", [
    ("SIGTERM", 143, "neurocare-bids: terminated (SIGTERM): finished outputs are kept; rerun to complete the rest"),
    ("SIGINT", 130, "neurocare-bids: interrupted")])
def test_a_signal_swallowed_by_a_gc_callback_still_stops_the_run_after_the_recording_in_progress(
        dataset, tmp_path, sig, code, line):
    bids, reference = dataset
    expected = _outputs(reference)
    out = tmp_path / "out"
    with read_only_input(bids):
        proc = subprocess.run([sys.executable, "-c", SIGNAL_IN_A_GC_CALLBACK, bids, out, sig], capture_output=True,
                              text=True, timeout=300, env={**os.environ, "PYTHONWARNINGS": "ignore"},
                              preexec_fn=as_a_foreground_job)
    assert proc.returncode == code, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == line
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr, proc.stderr
    assert_clean(out)
    assert _done(out) == {"01"}  # the first recording, which was in progress, and no other
    assert _complete_outputs_only(out) == 1
    assert _finished(out) == {k: expected[k] for k in _finished(out)}


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
    assert len(errors) == len(RECORDINGS) - 1 and all("File too large" in line for line in errors), limited.stderr
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
    assert _complete_outputs_only(out) == len(RECORDINGS) - 1
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


def test_ctrl_c_while_a_tfrecord_is_written_exits_130_and_keeps_finished_outputs(dataset, tmp_path):
    """SIGINT to the process group (what Ctrl-C sends), workers included, while TFRecords are half written: code
    130, one line, the temporaries and the scratch files removed, finished outputs kept and complete."""
    bids, reference = dataset
    expected = _outputs(reference)
    out, work = tmp_path / "out", tmp_path / "work"
    with read_only_input(bids):
        proc = subprocess.Popen([sys.executable, "-m", "neurocare_bids", bids, out, "participant",
                                 "--skip-bids-validation", "--nprocs", "2", "-w", work],
                                env={**os.environ, "PYTHONWARNINGS": "ignore"}, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True,
                                preexec_fn=as_a_foreground_job)
        try:
            seen = _interrupt_when(proc, lambda: _partial(out, set()), "a TFRecord being written")
            done, finished = _done(out), _finished(out)
            assert _temporaries(out) and not set(seen) & done and done < set(RECORDINGS)
            os.killpg(proc.pid, signal.SIGINT)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGCONT)
            _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert stderr.strip().splitlines()[-1] == "neurocare-bids: interrupted" and "Traceback" not in stderr, stderr
    assert_clean(out)
    assert not list(work.iterdir())
    assert _done(out) >= done and _finished(out).items() >= finished.items()
    assert _complete_outputs_only(out) == len(_done(out))
    assert _finished(out) == {k: expected[k] for k in _finished(out)}  # (the rerun: the test above)


def test_nprocs_1_and_2_write_identical_bytes(dataset, tmp_path):
    """One recording at a time (its blocks filtered in two threads) or two at a time (one thread each): the
    same TFRecords and sidecars, byte for byte."""
    bids, reference = dataset
    out = tmp_path / "out"
    result = run_cli(bids, out, "participant", "--skip-bids-validation", "--nprocs", "1", "--no-reports")
    assert result.returncode == 0, result.stderr
    assert f"{len(RECORDINGS)} written" in result.stdout
    mine, theirs = _outputs(out), _outputs(reference)
    assert sum(k.endswith("_windows.tfrecord") for k in mine) == sum(k.endswith("_windows.json") for k in mine) \
        == len(RECORDINGS)
    assert mine == theirs
