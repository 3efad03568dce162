"""``group --fold-jobs N`` and array tasks (``--fold K``): folds trained side by side as separate processes, then
aggregated. The CLI as a subprocess; its jobs found among this machine's processes, killed (a job, the run: SIGKILL,
SIGTERM) once both are seen training, outputs read back and compared with a run of the folds one after the other."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import read_only_input, run_cli, run_cli_concurrently

JOBS_ARGS = ("--fold-jobs", "2", "--omp-nthreads", "1")


def _jobs_of(pid: int) -> dict[int, int]:
    """The running ``--fold K`` children of process ``pid``: ``{K: child pid}``."""
    jobs = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:  # ended meanwhile
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid and b"--fold" in argv:
            jobs[int(argv[argv.index(b"--fold") + 1])] = int(entry.name)
    return jobs


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _environment(pid: int) -> dict[str, str]:
    pairs = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace").split("\0")
    return dict(pair.split("=", 1) for pair in pairs if "=" in pair)


def _start_and_wait_for_two_trainings(bids, out, config, **env) -> tuple[subprocess.Popen, dict[int, int]]:
    """Start ``group --fold-jobs 2``; return once folds 1 and 2 both train (their TensorBoard folders, removed first,
    exist again) while no fold is done yet, which only jobs side by side can show, with the jobs' pids. Checks that
    the run itself has not loaded TensorFlow meanwhile."""
    shutil.rmtree(out / "group" / "tensorboard", ignore_errors=True)
    proc = subprocess.Popen([sys.executable, "-m", "neurocare_bids", bids, out, "group", "--config", config,
                             *JOBS_ARGS], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONWARNINGS": "ignore", **env}, start_new_session=True)
    deadline = time.monotonic() + 300
    boards = [out / "group" / "tensorboard" / f"fold-{k}" for k in (1, 2)]
    try:
        while not all(b.exists() for b in boards):
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert not list(out.glob("group/fold-*/fold.json"))
        jobs = _jobs_of(proc.pid)
        assert sorted(jobs) == [1, 2], jobs
        # the run waiting for its jobs has not loaded TensorFlow, which it would hold idle (about 0.8 GB) meanwhile
        assert b"tensorflow" not in Path(f"/proc/{proc.pid}/maps").read_bytes()
    except BaseException:
        _kill_all(proc)
        raise
    return proc, jobs


def _kill_all(proc: subprocess.Popen) -> None:
    """A failed test leaves no run behind: the group run and its jobs (its session) killed."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.communicate()


def test_fold_jobs_and_array_tasks_stop_together_resume_and_equal_a_sequential_run(prepared, sequential, tmp_path):
    """Same seed, same data, one thread per training (``--omp-nthreads 1``, as ``sequential``) → the same folds and
    the identical metrics.json, whether the folds ran one after the other in one process, as array tasks
    (``--fold K`` side by side) or as ``--fold-jobs`` whose runs were killed or stopped mid-training and run again."""
    bids, participant_out, config = prepared
    out = tmp_path / "out"
    shutil.copytree(participant_out, out)

    with read_only_input(bids):
        # a job dies (as by the kernel's out-of-memory killer): the other is stopped, one line, exit 1. With two
        # GPUs named (none is there: the jobs train on the CPU), each job is given one of its own
        proc, jobs = _start_and_wait_for_two_trainings(bids, out, config, CUDA_VISIBLE_DEVICES="0,1")
        try:
            assert sorted(_environment(pid)["CUDA_VISIBLE_DEVICES"] for pid in jobs.values()) == ["0", "1"]
            os.kill(jobs[1], signal.SIGKILL)
            _, stderr = proc.communicate(timeout=180)
        finally:
            _kill_all(proc)
        assert proc.returncode == 1, stderr
        assert "Traceback" not in stderr
        assert stderr.strip().splitlines()[-1].startswith("neurocare-bids: error: fold 1 was killed by SIGKILL")
        assert not _alive(jobs[2]) and not list(out.glob("group/fold-*/fold.json"))
        assert not (out / "group" / "tensorboard" / "fold-3").exists()  # no new job after the failure

        # SIGTERM to the group run alone (a scheduler's time limit, `kill`): its jobs stop with it, 143
        proc, jobs = _start_and_wait_for_two_trainings(bids, out, config)
        try:
            proc.send_signal(signal.SIGTERM)
            _, stderr = proc.communicate(timeout=180)
        finally:
            _kill_all(proc)
        assert proc.returncode == 143 and "Traceback" not in stderr, stderr
        assert stderr.strip().splitlines()[-1].startswith("neurocare-bids: terminated (SIGTERM)")
        assert not any(_alive(pid) for pid in jobs.values())
        assert not list(out.glob("group/fold-*/fold.json"))
        assert not [p for p in out.rglob(".*") if ".tmp" in p.name]

        # SIGKILL to the group run alone (nothing it could catch): its jobs stop by themselves
        proc, jobs = _start_and_wait_for_two_trainings(bids, out, config)
        try:
            os.kill(proc.pid, signal.SIGKILL)
            proc.communicate(timeout=60)
            deadline = time.monotonic() + 120
            while any(_alive(pid) for pid in jobs.values()) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert not any(_alive(pid) for pid in jobs.values())
        finally:
            _kill_all(proc)
        assert not list(out.glob("group/fold-*/fold.json"))

    # folds 3 and 4 as array tasks (a Slurm array: --fold K side by side in the same output folder) ...
    tasks = run_cli_concurrently(*[((bids, out, "group", "--config", config, "--fold", k, "--omp-nthreads", 1),
                                    {"timeout": 600}) for k in (3, 4)])
    for result in tasks:
        assert result.returncode == 0, result.stderr
    assert not (out / "group" / "metrics.json").exists()
    # ... then the plain run with --fold-jobs trains the folds left (1 and 2, killed three times) as jobs, reuses the
    # others, and aggregates
    result = run_cli(bids, out, "group", "--config", config, *JOBS_ARGS, "-v", timeout=900)
    assert result.returncode == 0, result.stderr
    assert "Event level (SzCORE)" in result.stdout and result.stderr.count("already done") == 2
    for k in (1, 2, 3, 4):  # each fold trained by a process of its own, with its own log
        assert len(list((out / "logs").glob(f"group-fold{k}_*"))) == (4 if k < 3 else 1)
        for name in ("predictions.tsv", "history.tsv"):  # a job's or a task's fold is exactly the sequential run's
            ours, theirs = (root / "group" / f"fold-{k}" / name for root in (out, sequential[1]))
            assert ours.read_bytes() == theirs.read_bytes()
    assert (out / "group" / "metrics.json").read_text() == (sequential[1] / "group" / "metrics.json").read_text()
    assert not [p for p in out.rglob(".*") if ".tmp" in p.name]  # the killed jobs', removed by a later run
