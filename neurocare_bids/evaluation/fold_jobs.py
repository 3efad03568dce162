"""Cross-validation folds trained side by side, each in its own process (``--fold-jobs N``).

On CPUs, TensorFlow spreads one small model's training over several cores less well than separate processes use
a few cores each: on the 2-core VM the demo's folds trained 1.5 times faster as two one-thread ``--fold K`` jobs than
in one process (Performance, "How long make demo takes"). Each job here *is* such a ``--fold K`` run, the same command
an HPC array task runs, with the run's effective configuration and ``--omp-nthreads`` fixed, so its outputs are those
of that run; the calling group run then aggregates and trains the final model as after array tasks.

The jobs' lines are passed on as they come (progress lines stamped with this run's clock). The first job to fail
stops the others, and the run exits with the failed jobs' code (an internal error wins, else the highest). SIGTERM
or Ctrl-C stops every job the same way, and a job whose run was killed outright stops by itself; their epoch
checkpoints let a rerun resume them. On a machine with GPUs each job gets the least busy one to itself
(``CUDA_VISIBLE_DEVICES``), taking its memory as it needs it, so that jobs sharing a GPU do not starve each other.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..config import Config
from ..console import PROGRESS, duration
from ..errors import EXIT_CODES, EXIT_INTERNAL, NeuroCareError, combined_exit_code, raise_if_terminated
from ..preprocessing.participant import available_cpus
from .plan import GROUP, GroupPlan, multi_worker, needs_training, plan_group_run

log = logging.getLogger("neurocare")
progress = logging.getLogger(PROGRESS)

PARENT_ENV = "NEUROCARE_FOLD_JOB_OF"  # a job's environment: the pid of the run that started it (stop_with_parent)
POLL_SECONDS = 0.2
STOP_GRACE_SECONDS = 60.0  # a job told to stop (SIGTERM) gets this long to remove its temporaries, then SIGKILL
_STAMP = re.compile(r"^\[\d+:\d\d:\d\d\] ")  # a progress line's "[elapsed] ", as console.ConsoleFormatter writes it


def job_threads(cfg: Config, jobs: int) -> int:
    """Threads of each job: ``execution.omp_nthreads`` where set, else an equal share of this process's cores."""
    return cfg.execution.omp_nthreads or max(1, available_cpus() // jobs)


@dataclass
class _Job:
    fold: int
    process: subprocess.Popen
    gpu: str | None = None
    relays: list[threading.Thread] = field(default_factory=list)
    stopped: bool = False  # told to stop by this run (its exit code is not a failure of its own)


def runs_fold_jobs(cfg: Config, fold_index: int | None) -> bool:
    """Whether this group run trains its folds as ``--fold K`` jobs: ``--fold-jobs`` above 1, for the whole run (not
    one ``--fold``), and not multi-worker training (which the group level refuses with it)."""
    return fold_index is None and cfg.execution.fold_jobs > 1 and not multi_worker(cfg)


def plan_and_train_jobs(cfg: Config, bids_dir: Path, out_dir: Path, fold_index: int | None, *,
                        verbosity: int = 0) -> GroupPlan:
    """The group run's inputs and folds (:func:`.plan.plan_group_run`) and, for ``--fold-jobs``, the folds not done
    yet trained as jobs when more than one is left (a single fold trains in the run itself, as it would alone); they
    are recorded in ``trained_by_jobs`` (with ``--overwrite`` too: retrained).

    The CLI calls this before it loads Keras and TensorFlow, so that an error in the inputs comes at once and the run
    waiting for its jobs holds no framework's memory (about 0.8 GB on a CPU)."""
    plan = plan_group_run(cfg, out_dir, fold_index)
    if runs_fold_jobs(cfg, fold_index):
        group_dir = out_dir / GROUP
        pending = [f.index for f in plan.folds if needs_training(cfg, group_dir, f)]
        if len(pending) > 1:
            train_fold_jobs(cfg, bids_dir, out_dir, pending, cfg.execution.fold_jobs, verbosity=verbosity)
            plan.trained_by_jobs.update(pending)
    return plan


def train_fold_jobs(cfg: Config, bids_dir: Path, out_dir: Path, folds: list[int], jobs: int, *,
                    verbosity: int = 0) -> None:
    """Train ``folds`` as ``--fold K`` processes, at most ``jobs`` at a time; return once all are done.

    Raises :class:`NeuroCareError` with the jobs' exit code if any fails (the others are stopped then)."""
    jobs = min(jobs, len(folds))
    threads, gpus = job_threads(cfg, jobs), visible_gpus()
    progress.info("training fold(s) %s as %d job(s) at a time, %d thread(s) each (--fold K --omp-nthreads %d)%s",
                  ", ".join(map(str, folds)), jobs, threads, threads,
                  f"; {len(gpus)} GPU(s), each job on the least busy one" if gpus else "")
    if cfg.execution.work_dir:
        Path(cfg.execution.work_dir).mkdir(parents=True, exist_ok=True)
    workspace = Path(tempfile.mkdtemp(prefix="neurocare-fold-jobs-", dir=cfg.execution.work_dir or None))
    config_file = workspace / "config.toml"
    config_file.write_text(cfg.to_toml(with_docs=False), encoding="utf-8")
    command = [sys.executable, "-m", "neurocare_bids", str(bids_dir), str(out_dir), "group", "--config",
               str(config_file), "--omp-nthreads", str(threads), *(["-" + "v" * verbosity] if verbosity else [])]
    waiting, running, failed = list(folds), {}, {}
    output_lock = threading.Lock()
    try:
        while waiting or running:
            while waiting and len(running) < jobs and not failed:
                fold = waiting.pop(0)
                gpu = min(gpus, key=lambda g: sum(j.gpu == g for j in running.values())) if gpus else None
                running[fold] = _start(fold, [*command, "--fold", str(fold)], gpu, output_lock)
            time.sleep(POLL_SECONDS)
            raise_if_terminated()
            for fold, job in list(running.items()):
                code = job.process.poll()
                if code is None:
                    continue
                del running[fold]
                for relay in job.relays:
                    relay.join()
                if code != 0 and not job.stopped:
                    failed[fold] = code
            if failed:  # the first failure stops the rest (below; they resume on a rerun)
                break
    finally:
        for job in running.values():  # SIGTERM or Ctrl-C here, or a bug: no job outlives this run
            _stop(job)
        for job in running.values():
            _wait(job)
        shutil.rmtree(workspace, ignore_errors=True)
    if failed:
        raise _failure(failed, out_dir)


def visible_gpus() -> list[str]:
    """The GPUs this run may use, named as ``CUDA_VISIBLE_DEVICES`` takes them, found without starting CUDA here (a
    framework that starts it may take a GPU's memory): ``CUDA_VISIBLE_DEVICES`` where set, else nvidia-smi's list
    (by UUID, which no device ordering can confuse), else none."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        names = [name.strip() for name in visible.split(",") if name.strip()]
        return [] if not names or names[0].startswith("-") else names  # "-1" (or empty): no GPU
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        listed = subprocess.run([smi, "--query-gpu=uuid", "--format=csv,noheader"], capture_output=True, text=True,
                                timeout=30)
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in listed.stdout.splitlines() if line.strip().startswith("GPU-")]


def _start(fold: int, argv: list[str], gpu: str | None, output_lock: threading.Lock) -> _Job:
    env = {**os.environ, PARENT_ENV: str(os.getpid())}
    if gpu is not None:  # one GPU per job (several per GPU when there are more jobs), memory taken as needed
        env.update({"CUDA_VISIBLE_DEVICES": gpu, "TF_FORCE_GPU_ALLOW_GROWTH": "true",
                    "XLA_PYTHON_CLIENT_PREALLOCATE": "false"})
    process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, bufsize=1, errors="replace", env=env)
    log.debug("fold %d: job %d started%s: %s", fold, process.pid, f" on GPU {gpu}" if gpu else "", " ".join(argv))
    job = _Job(fold, process, gpu)
    for source, target in ((process.stdout, sys.stdout), (process.stderr, sys.stderr)):
        relay = threading.Thread(target=_relay, args=(source, target, output_lock), daemon=True,
                                 name=f"fold-{fold}-relay")
        relay.start()
        job.relays.append(relay)
    return job


def stop_with_parent() -> None:
    """In a job (its environment names the run that started it): SIGTERM when that run ends, however it ends (on
    Linux), so that a group run killed outright (SIGKILL) leaves no job training on. A job whose run has already
    gone stops at once."""
    parent = os.environ.get(PARENT_ENV)
    if not parent or not sys.platform.startswith("linux"):
        return
    import ctypes

    PR_SET_PDEATHSIG = 1
    try:
        ctypes.CDLL(None, use_errno=True).prctl(ctypes.c_int(PR_SET_PDEATHSIG), ctypes.c_ulong(signal.SIGTERM))
    except (OSError, AttributeError):  # pragma: no cover - a libc without prctl
        return
    if os.getppid() != int(parent):  # it ended before the request was made
        os.kill(os.getpid(), signal.SIGTERM)


def _relay(source, target, lock: threading.Lock) -> None:
    """Pass a job's lines on whole, progress lines stamped with this run's clock instead of the job's."""
    for line in source:
        stamp = _STAMP.match(line)
        if stamp:
            line = f"[{_elapsed()}] {line[stamp.end():]}"
        with lock:
            try:
                target.write(line)
                target.flush()
            except (OSError, ValueError):  # a closed console: the job's own log file still has everything
                pass
    source.close()


def _elapsed() -> str:
    """Time since this process started logging, as this run's own progress lines show it."""
    return duration(logging.makeLogRecord({}).relativeCreated / 1000)


def _stop(job: _Job) -> None:
    if job.process.poll() is None and not job.stopped:
        job.stopped = True
        try:
            job.process.send_signal(signal.SIGTERM)  # the job removes its temporaries and exits 143
        except ProcessLookupError:
            pass


def _wait(job: _Job) -> None:
    try:
        job.process.wait(STOP_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        log.warning("fold %d: job %d did not stop within %.0f s of SIGTERM: killed", job.fold, job.process.pid,
                    STOP_GRACE_SECONDS)
        job.process.kill()
        job.process.wait()
    for relay in job.relays:
        relay.join(5)


def _failure(failed: dict[int, int], out_dir: Path) -> NeuroCareError:
    """One line for the failed jobs, with the run's exit code: an internal error (or a job killed by a signal, such as
    the kernel's out-of-memory killer) wins, else the highest code."""
    parts, codes = [], set()
    for fold, code in sorted(failed.items()):
        if code < 0:
            name = signal.Signals(-code).name
            parts.append(f"fold {fold} was killed by {name}"
                         + (" (out of memory? each job holds its own: try fewer --fold-jobs)" if name == "SIGKILL"
                            else ""))
            codes.add(EXIT_INTERNAL)
        else:
            parts.append(f"fold {fold} failed with exit code {code} ({EXIT_CODES.get(code, 'unknown')})")
            codes.add(code)
    logs = out_dir / "logs" / "group-fold<K>_*"
    return NeuroCareError(f"{'; '.join(parts)} (messages above, logs in {logs}); folds still training were "
                          "stopped, a rerun resumes them",
                          exit_code=combined_exit_code(codes))
