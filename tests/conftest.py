"""Shared helpers: tiny BIDS EEG datasets written to disk, and the CLI run as a real subprocess."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from neurocare_bids.config import SZCORE_ELECTRODES
from neurocare_bids.io.edf import write_edf

SIENA_LABELS = [f"{e}-Avg" for e in SZCORE_ELECTRODES]

# The test files that run the group level many times (2-5 min each in CI, 2026-12-06), longest first. They run before
# the others, so that CI's two workers end on short files: `make test` has pytest-xdist (``--dist loadfile``) hand
# whole files out in collection order (``--no-loadscope-reorder``; by default it sorts them by their number of tests,
# which put the two longest, one test each, last and side by side).
HEAVY_FILES = ["evaluation/test_group_resume.py", "training/test_distribute.py", "training/test_onnx.py",
               "detection/test_stacking.py", "training/test_jax.py", "detection/test_apply.py",
               "evaluation/test_fold_jobs.py", "evaluation/test_group_cli.py", "cli/test_hostile.py"]


def pytest_collection_modifyitems(config, items):
    """The files of :data:`HEAVY_FILES` first, in that order; the rest, and the tests within a file, as collected."""
    rank = {name: position for position, name in enumerate(HEAVY_FILES)}
    tests = Path(__file__).resolve().parent

    def key(item) -> int:
        try:
            return rank.get(item.path.resolve().relative_to(tests).as_posix(), len(rank))
        except ValueError:  # a test outside this folder
            return len(rank)

    items.sort(key=key)


EVENTS_HEADER = "onset\tduration\teventType\tconfidence\tchannels\tdateTime\trecordingDuration\n"


def synthetic_eeg(n_channels: int, n_samples: int, sfreq: float, seed: int = 0,
                  seizures=(), line_freq: float = 50.0) -> np.ndarray:
    """Noise + alpha + mains, with a focal 4 Hz rhythm (first 5 channels) inside each (onset, duration).

    Focal on purpose: a rhythm common to all channels would vanish in the average reference.
    """
    rng = np.random.default_rng(seed)
    t = np.arange(n_samples) / sfreq
    x = rng.standard_normal((n_channels, n_samples)) * 10
    x += 15 * np.sin(2 * np.pi * 10 * t + rng.uniform(0, 6, (n_channels, 1)))
    if line_freq < sfreq / 2:
        x += 5 * np.sin(2 * np.pi * line_freq * t)
    for onset, duration in seizures:
        inside = (t >= onset) & (t < onset + duration)
        x[:5, inside] += 80 * np.sin(2 * np.pi * 4 * t[inside])
    return x


def write_dataset_description(root: Path, **extra) -> None:
    root.mkdir(parents=True, exist_ok=True)
    desc = {"Name": "test", "BIDSVersion": "1.9.0", "DatasetType": "raw", **extra}
    (root / "dataset_description.json").write_text(json.dumps(desc))


def add_recording(root: Path, subject: str = "01", *, session: str | None = "01", task: str = "szMonitoring",
                  run: str | None = "00", duration: float = 120.0, sfreq: float = 256.0,
                  labels: list[str] | None = None, seizures=((40.0, 20.0, "sz"),), events: str | None = "auto",
                  line_freq: float | str = 50, seed: int = 0, ext: str = ".edf", data: np.ndarray | None = None,
                  sidecar_extra: dict | None = None) -> Path:
    """Write one recording (EDF by default) with its sidecar and SzCORE events.tsv; return its path."""
    if not (root / "dataset_description.json").exists():
        write_dataset_description(root)
    labels = list(labels or SIENA_LABELS)
    entities = [f"sub-{subject}"] + ([f"ses-{session}"] if session else []) + [f"task-{task}"]
    entities += [f"run-{run}"] if run is not None else []
    stem = "_".join(entities)
    folder = root / f"sub-{subject}" / (f"ses-{session}" if session else "") / "eeg"
    folder.mkdir(parents=True, exist_ok=True)
    n = int(round(duration * sfreq))
    if data is None:
        data = synthetic_eeg(len(labels), n, sfreq, seed, [(o, d) for o, d, _ in seizures],
                             line_freq if isinstance(line_freq, (int, float)) else 50.0)
    path = folder / f"{stem}_eeg{ext}"
    if ext in (".edf", ".bdf"):
        write_edf(path, data, sfreq, labels)
    else:
        import mne

        info = mne.create_info(labels, sfreq, "eeg")
        raw = mne.io.RawArray(data * 1e-6, info, verbose="error")
        fmt = {".vhdr": "brainvision", ".set": "eeglab"}[ext]
        mne.export.export_raw(path, raw, fmt=fmt, verbose="error")
    sidecar = {"TaskName": task, "SamplingFrequency": sfreq, "PowerLineFrequency": line_freq,
               "EEGReference": "Avg", "SoftwareFilters": "n/a", "RecordingDuration": duration,
               **(sidecar_extra or {})}
    (folder / f"{stem}_eeg.json").write_text(json.dumps(sidecar))
    if events == "auto":
        rows = [f"{o:.2f}\t{d:.2f}\t{kind}\tn/a\tn/a\t2000-01-01 00:00:00\t{duration:.2f}\n"
                for o, d, kind in seizures]
        if not rows:
            rows = [f"0.00\t{duration:.2f}\tbckg\tn/a\tn/a\t2000-01-01 00:00:00\t{duration:.2f}\n"]
        events = EVENTS_HEADER + "".join(rows)
    if events is not None:
        (folder / f"{stem}_events.tsv").write_text(events)
    return path


# What TensorFlow, XLA, absl, CUDA and gRPC print natively: absl/glog lines (I0000 00:00:17… or a date first) and
# known messages. The CLI shows none of them below -vv (neurocare_bids/console.py).
NATIVE_LOG = re.compile(r"^(?:[IWEF]\d{4} \d\d:\d\d|\d{4}-\d\d-\d\d[ T]\d\d:\d\d)|cuInit|oneDNN|"
                        r"This TensorFlow binary is optimized|absl::InitializeLog|^WARNING:(?:tensorflow|absl):", re.M)


def read_tsv(path) -> list[dict]:
    """The rows of a TSV file with a header line, as dicts (the app's tables: predictions, history, events)."""
    import csv

    with open(path, newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def run_cli(*args, timeout: float = 300, env: dict | None = None, **popen) -> subprocess.CompletedProcess:
    """Run ``python -m neurocare_bids ARGS`` as a user would; return the completed process.

    When the first argument is a BIDS dataset (``BIDS_DIR``), it is made read-only for the run and must be
    bit for bit the same afterwards (see :func:`read_only_input`): every CLI test also proves that the app
    never writes into its input.
    """
    bids_dir = _bids_dir(args)
    if bids_dir is None:
        return _run_command(args, timeout=timeout, env=env, **popen)
    with read_only_input(bids_dir):
        return _run_command(args, timeout=timeout, env=env, **popen)


def run_cli_concurrently(*calls: tuple[tuple, dict]) -> list[subprocess.CompletedProcess]:
    """Several independent CLI runs at once, as separate jobs would run: ``calls`` are ``(args, kwargs)`` pairs
    for :func:`run_cli`; returns their completed processes in order. Each BIDS dataset among the first
    arguments is read-only (and checked unchanged) once around all of them, since the runs overlap."""
    from concurrent.futures import ThreadPoolExecutor

    bids_dirs = {root for root in (_bids_dir(args) for args, _ in calls) if root is not None}
    with contextlib.ExitStack() as stack:
        for root in sorted(bids_dirs):
            stack.enter_context(read_only_input(root))
        with ThreadPoolExecutor(len(calls)) as pool:
            futures = [pool.submit(_run_command, args, **kwargs) for args, kwargs in calls]
            return [f.result() for f in futures]


def _bids_dir(args) -> Path | None:
    """The BIDS dataset a CLI call reads (its first argument, when that is one), or None."""
    root = Path(args[0]) if args and isinstance(args[0], (str, Path)) else None
    return root if root is not None and (root / "dataset_description.json").is_file() else None


def _run_command(args, timeout: float = 300, env: dict | None = None, **popen) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})}
    command = [sys.executable, "-m", "neurocare_bids", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=full_env, **popen)


def input_state(root: Path) -> dict[str, tuple]:
    """Every entry under ``root`` (links not followed): folders, link targets, and file contents (sha256)."""
    state: dict[str, tuple] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder, name)
            key = str(path.relative_to(root))
            if path.is_symlink():
                state[key] = ("link", os.readlink(path))
            elif path.is_dir():
                state[key] = ("dir",)
            else:
                state[key] = ("file", hashlib.sha256(path.read_bytes()).hexdigest())
    return state


def as_a_foreground_job() -> None:
    """``preexec_fn`` of a child that must act on Ctrl-C: SIGINT's default action, as a terminal's foreground job
    has it. A shell without job control starts background jobs (``make test &``) with SIGINT ignored; children
    inherit that, Python then installs no KeyboardInterrupt, and the run rightly ignores Ctrl-C."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


@contextlib.contextmanager
def read_only_input(root: Path):
    """``root`` read-only (every folder and file, write bits cleared) for the block, then restored; the
    block must leave every entry under it as it found it.

    Root ignores permissions (CI runs as root), so the checksums, not the permissions, are the proof.
    Permissions are restored as soon as the block ends: tests may change the dataset between two runs.
    """
    before = input_state(root)
    modes: dict[str, int] = {}
    for folder, dirs, files in os.walk(root):
        for path in [Path(folder)] + [Path(folder, n) for n in files]:
            if not path.is_symlink():
                modes[str(path)] = path.stat().st_mode & 0o7777
                path.chmod(modes[str(path)] & ~0o222)
    try:
        yield
    finally:
        for path, mode in modes.items():
            os.chmod(path, mode)
    after = input_state(root)
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert not changed, f"files under BIDS_DIR {root} changed: {changed[:10]}"


def tree_checksums(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` (to prove nothing in it changed)."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def read_windows(path: Path) -> list[dict]:
    """Decode every example of a TFRecord with our own reader (TF's is used in test_tfrecord.py)."""
    from neurocare_bids.io.tfrecord import decode_example, iter_records

    return [decode_example(r) for r in iter_records(path)]


@pytest.fixture
def siena(tmp_path) -> Path:
    """Two subjects in the SzCORE BIDS Siena layout, one with a seizure, one without."""
    root = tmp_path / "bids"
    add_recording(root, "01", seizures=[(40.0, 20.0, "sz_foc_ia")], seed=1)
    add_recording(root, "02", seizures=[], seed=2)
    return root


# A tiny model and training budget for group-level tests: seconds per fold on 2 CPU cores.
def move_batchnorm_statistics(model, rng: np.random.Generator):
    """BatchNorm statistics and scales away from their initial 0/1, so that an engine or export that mishandles
    inference-mode normalisation shows; returns the model."""
    import keras

    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.moving_mean.shape[0]
            layer.moving_mean.assign(rng.normal(0, 0.5, n))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, n))
            layer.gamma.assign(rng.uniform(0.5, 1.5, n))
            layer.beta.assign(rng.normal(0, 0.3, n))
    return model


# No ONNX copies of the folds' models (about 5 s each on a CPU: tf2onnx's tracing and graph optimiser, the parity
# check): the final model's are still exported. The tests of fold copies set it back to true (test_jax) or use
# configurations of their own (test_distribute, the container test).
QUICK_GROUP_CONFIG = """
[execution]
fold_onnx = false
[training]
epochs = 1
steps_per_epoch = 3
batch_size = 16
[model]
conv_filters = [4, 8]
lstm_units = [4]
dense_units = 4
"""


# The columns of an SzCORE events.tsv, in order.
EVENT_COLUMNS = ["onset", "duration", "eventType", "confidence", "channels", "dateTime", "recordingDuration"]


def shared_folder(tmp_path_factory, name: str) -> Path:
    """Where a session's expensive fixture output is made once for all the pytest-xdist workers of a run (each
    worker's temporary folder is a subfolder of the run's), or for this session without xdist."""
    base = tmp_path_factory.getbasetemp()
    return (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / name


@contextlib.contextmanager
def made_once(folder: Path):
    """Yield True where ``folder`` is still to be made (empty, created), False where another worker (or an earlier
    fixture of this session) made it; the workers take turns on a lock, so that one makes it while the others
    wait, and the block marks it complete only when it ends without an error."""
    import fcntl

    folder.parent.mkdir(parents=True, exist_ok=True)
    done = folder.parent / f"{folder.name}.done"
    with open(folder.parent / f"{folder.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if done.exists():
            yield False
            return
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
        yield True
        done.touch()


def trained_model_folder(prepared, tmp_path_factory) -> Path:
    """``group/model/`` of a group-level run on the session's demo dataset (made once for the whole run, all
    workers): the model the apply, streaming, live and hostile-input tests use."""
    bids, participant_out, config = prepared
    root = shared_folder(tmp_path_factory, "apply-trained")
    with made_once(root) as to_make:
        if to_make:
            shutil.copytree(participant_out, root / "out")
            quick = root / "quick.toml"
            # Uncentred post-processing: the streaming tests' 10-minute recording is 17 % seizure, not the mostly
            # background recording that centring on the median assumes; centring is tested on copies of the card.
            # The network alone, without the per-channel feature branch (the default has both): small and quick for
            # the ONNX and streaming tests; stacked models are tested in test_apply.py on a derived folder and in
            # test_stacking.py.
            quick.write_text(QUICK_GROUP_CONFIG + "stacking = false\nchannel_features = 0\n"
                             "[cv]\nfolds = 2\n[postprocessing]\ncentre = false\n")
            result = run_cli(bids, root / "out", "group", "--config", quick, timeout=900)
            assert result.returncode == 0, result.stderr
    return root / "out" / "group" / "model"


@pytest.fixture(scope="session")
def prepared(tmp_path_factory):
    """Four demo subjects with the participant level done once for the whole run (all workers), and a quick
    group-level config: ``(bids_dir, participant_out, config_path)``. Copy the output before writing to it."""
    root = shared_folder(tmp_path_factory, "group")
    bids, out, config = root / "bids", root / "participant", root / "quick.toml"
    with made_once(root) as to_make:
        if to_make:
            assert run_cli("demo-data", bids, "--subjects", "4", "--recordings", "1", "--duration",
                           "300").returncode == 0
            result = run_cli(bids, out, "participant", "--skip-bids-validation")
            assert result.returncode == 0, result.stderr
            config.write_text(QUICK_GROUP_CONFIG)
    return bids, out, config


@pytest.fixture(scope="session")
def sequential(prepared, tmp_path_factory):
    """One plain group-level run on a copy of ``prepared``'s output (once for the whole run), shared by every test
    that only reads it: ``(bids_dir, out_dir, completed_process)``. Its trainings run on one thread
    (``--omp-nthreads 1``), so that a fold trained elsewhere with one thread (a ``--fold`` job, a resumed training)
    can be compared with it byte for byte."""
    bids, participant_out, config = prepared
    root = shared_folder(tmp_path_factory, "seq")
    out, record = root / "out", root / "result.json"
    with made_once(root) as to_make:
        if to_make:
            shutil.copytree(participant_out, out)
            result = run_cli(bids, out, "group", "--config", config, "--omp-nthreads", 1, timeout=900)
            assert result.returncode == 0, result.stderr
            record.write_text(json.dumps({"args": [str(a) for a in result.args], "returncode": result.returncode,
                                          "stdout": result.stdout, "stderr": result.stderr}))
    result = subprocess.CompletedProcess(**json.loads(record.read_text()))
    return bids, out, result


def resident_pages(path) -> np.ndarray:
    """Which pages of ``path`` are in the page cache (``mincore`` over a read-only mapping)."""
    import ctypes
    import mmap

    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]
    size, page = os.path.getsize(path), mmap.PAGESIZE
    fd = os.open(path, os.O_RDONLY)
    try:
        address = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        assert address not in (None, ctypes.c_void_p(-1).value), ctypes.get_errno()
        try:
            vec = ctypes.create_string_buffer((size + page - 1) // page)
            assert libc.mincore(address, size, vec) == 0, ctypes.get_errno()
            return np.frombuffer(vec.raw, np.uint8) & 1
        finally:
            libc.munmap(address, size)
    finally:
        os.close(fd)
