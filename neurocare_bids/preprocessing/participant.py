"""Participant level: each EEG recording → one TFRecord of preprocessed, labelled windows + a sidecar.

Per recording, in two streaming passes whose memory does not depend on the recording's length:

1. read blocks (mne-bids) → montage → resample → band-pass + notch, accumulating per-channel statistics
   and spooling the processed float32 signal to a scratch file in the work folder;
2. read the spool back, z-score it with the whole-recording statistics, cut overlapping windows, label
   them from events.tsv and write them as ``tf.train.Example`` records.

The TFRecord and then the sidecar are renamed into place; the sidecar (written last) records the input
checksums and the configuration hash, which is how a rerun knows an output is complete and up to date.
"""

from __future__ import annotations

import errno
import json
import logging
import math
import os
import signal
import time
import traceback
from collections import deque
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import google_crc32c
import numpy as np

from .. import __version__
from ..config import Config
from ..errors import EXIT_IO, DataError, NeuroCareError, OutputError, raise_if_terminated
from ..io.annotations import read_seizures, seizure_fraction, window_labels
from ..io.bids_input import Recording, open_source, open_with_mne
from ..io.derivatives import APP_NAME, recording_outputs
from ..io.fsutils import atomic_open, atomic_write, crc32c_file, exit_on_sigterm, is_within, remove_stale_temporaries
from ..io.signal_reader import EDFSource, SignalSource
from ..io.tfrecord import ExampleEncoder
from .filters import RunningStats, SignalPlan, block_bounds, causal_filter, design_plan, process_block
from .montage import Montage, build_montage
from .quality import RawChannelStats, channel_warnings

log = logging.getLogger("neurocare")

WINDOWS_PER_BATCH = 256
# Standard deviation of a montage channel after filtering below which it is flat (z-scored to zero, not divided
# by ~0). Recorded channels are judged in quality.py (FLAT_RANGE, FLAT_STD_UV).
FLAT_STD = 1e-6


@dataclass
class RecordingResult:
    recording: str
    status: str  # "written", "up-to-date" or "failed"
    message: str = ""
    exit_code: int = 0
    windows: int = 0
    seizure_windows: int = 0
    warnings: list[str] = field(default_factory=list)
    traceback: str = ""


def tfrecord_schema(window_samples: int, n_channels: int, dtype: str) -> dict:
    """The features of every ``tf.train.Example``, as documented (Outputs: TFRecord schema)."""
    return {
        "eeg": {"type": "bytes", "dtype": np.dtype(dtype).newbyteorder("<").str,
                "shape": [window_samples, n_channels],
                "description": "window samples, time-major (row = sample, column = channel), little-endian"},
        "label": {"type": "int64", "description": "1 = seizure window, 0 = background"},
        "seizure_fraction": {"type": "float32", "description": "fraction of the window inside a seizure"},
        "onset": {"type": "float32", "description": "window start in seconds from the recording start"},
        "window_index": {"type": "int64", "description": "0-based index; onset = index × WindowStride"},
        "subject": {"type": "bytes", "description": "subject label (no 'sub-')"},
        "session": {"type": "bytes", "description": "session label, empty if none"},
        "task": {"type": "bytes", "description": "task label"},
        "run": {"type": "bytes", "description": "run label as in the file name, empty if none"},
    }


def source_checksums(recording: Recording) -> dict[str, str]:
    """Size and CRC-32C of every input file: how a rerun recognises unchanged inputs."""
    recording.check_usable()
    return {str(p.relative_to(recording.root)): f"crc32c:{crc32c_file(p)} bytes:{p.stat().st_size}"
            for p in recording.source_files()}


def _reusable_sidecar(sidecar: Path, tfrecord: Path, config_hash: str) -> dict | None:
    """The existing sidecar when its output is complete and made with this configuration."""
    try:
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
        if meta.get("ConfigHash") == config_hash and tfrecord.stat().st_size == meta["TFRecord"]["Bytes"]:
            return meta
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def process_recording(recording: Recording, out_dir: Path, cfg: Config, work_dir: Path,
                      threads: int = 1) -> RecordingResult:
    """Process one recording; every expected failure becomes a ``failed`` result, never an exception."""
    try:
        return _process(recording, out_dir, cfg, work_dir, threads)
    except NeuroCareError as exc:
        return RecordingResult(recording.label, "failed", str(exc), exc.exit_code)
    except MemoryError:
        return RecordingResult(recording.label, "failed", "out of memory (lower preprocessing.block_duration)",
                               1)
    except Exception as exc:  # a bug: report it, keep processing the other recordings
        if _is_output_error(exc, out_dir, work_dir):  # a full disk, a file where a folder should be ...
            code = EXIT_IO if exc.errno in _DISK_FULL else OutputError.exit_code
            return RecordingResult(recording.label, "failed", f"cannot write {exc.filename or 'in the work folder'}: "
                                   f"{exc.strerror}", code)
        return RecordingResult(recording.label, "failed", f"internal error: {type(exc).__name__}: {exc}", 1,
                               traceback=traceback.format_exc())


_DISK_FULL = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)


def _is_output_error(exc: Exception, out_dir: Path, work_dir: Path) -> bool:
    """An OSError from writing the outputs or the scratch files, not a bug (exit 73/74, not 1)."""
    if not isinstance(exc, OSError):
        return False
    if exc.filename is None:
        return exc.errno in _DISK_FULL
    return any(is_within(Path(exc.filename), folder) for folder in (out_dir, work_dir))


def _process(recording: Recording, out_dir: Path, cfg: Config, work_dir: Path, threads: int) -> RecordingResult:
    tfrecord_path, sidecar_path = recording_outputs(out_dir, recording.relpath, recording.stem)
    remove_stale_temporaries(tfrecord_path.parent)
    config_hash = cfg.output_hash()
    with ThreadPoolExecutor(max(1, threads)) as pool:
        # Checksumming the inputs overlaps with the processing.
        checksums_future = pool.submit(source_checksums, recording)
        existing = None if cfg.execution.overwrite else _reusable_sidecar(sidecar_path, tfrecord_path, config_hash)
        if existing is not None and existing.get("SourceChecksums") == checksums_future.result():
            return RecordingResult(recording.label, "up-to-date", windows=existing["WindowCount"],
                                   seizure_windows=existing["SeizureWindowCount"])
        return _preprocess(recording, cfg, work_dir, pool, threads, checksums_future, tfrecord_path, sidecar_path)


def _preprocess(recording: Recording, cfg: Config, work_dir: Path, pool: ThreadPoolExecutor, threads: int,
                checksums_future, tfrecord_path: Path, sidecar_path: Path) -> RecordingResult:
    warnings: list[str] = []
    source, montage = open_mapped(recording, partial(build_montage, cfg=cfg.montage), warnings)
    sfreq_in, n_in = source.sfreq, source.n_times
    duration = n_in / sfreq_in
    line_freq = mains_frequency(recording.metadata, warnings)
    plan = design_plan(sfreq_in, cfg.preprocessing, line_freq)
    state = causal_filter(plan)  # causal filters: the blocks are filtered in order, carrying the state
    warnings += list(plan.notes)
    seizures = read_seizures(recording.events, duration, cfg.input)
    warnings += seizures.warnings
    check_sidecar_rate(recording.metadata, sfreq_in, warnings)

    def read(start: int, stop: int) -> np.ndarray:
        data = source.read(montage.picks, start, stop)
        if not source.integer_samples and not np.isfinite(data).all():
            raise DataError(f"{recording.label}: non-finite samples between {start} and {stop}")
        return data

    block = partial(spool_block, read, n_in, plan, montage, state)

    n_out = plan.n_out(n_in)
    sfreq = plan.sfreq_out
    win, stride = cfg.window_samples, cfg.window_stride_samples
    n_windows = 0 if n_out < win else (n_out - win) // stride + 1
    if n_windows == 0:
        warnings.append(f"recording ({duration:.1f} s) is shorter than one window "
                        f"({cfg.windows.duration:g} s): no windows")
    n_ch = len(montage.names)
    block_len = max(win, int(cfg.preprocessing.block_duration * sfreq))
    bounds = block_bounds(n_out, block_len)

    work_dir.mkdir(parents=True, exist_ok=True)
    spool = work_dir / f"{recording.stem}.{os.getpid()}.f32"
    try:
        stats = RunningStats(n_ch)
        started = time.perf_counter()
        with open(spool, "wb") as fh:  # pass 1: filter, measure, spool (time-major float32)
            raw_stats = RawChannelStats(len(montage.picks))
            for data, derived, raw in ordered_map(pool, block, bounds, ahead=threads):
                raw_stats.merge(raw)
                stats.merge(derived)
                fh.write(data)
        timings = {"filter": time.perf_counter() - started}
        mean, std = stats.mean, stats.std
        quality = channel_quality(source, montage, raw_stats, stats, warnings)
        if not cfg.preprocessing.zscore:
            mean, std = np.zeros(n_ch), np.ones(n_ch)
        scale = zscore_scale(std)

        onsets = np.arange(n_windows) * stride / sfreq
        fractions = seizure_fraction(onsets, cfg.windows.duration, seizures.intervals)
        labels = window_labels(fractions, cfg.windows.seizure_overlap)
        encoder = ExampleEncoder({
            "subject": recording.entities.get("subject", ""), "session": recording.entities.get("session", ""),
            "task": recording.entities.get("task", ""), "run": recording.entities.get("run", "")})
        dtype = np.dtype(cfg.output.dtype).newbyteorder("<")

        sidecar_path.unlink(missing_ok=True)  # an old sidecar must never describe the new file
        mean32, scale32 = mean.astype(np.float32), scale.astype(np.float32)
        spool_fd = os.open(spool, os.O_RDONLY)

        def encode(first: int) -> bytes:
            """Windows ``first`` .. ``first + WINDOWS_PER_BATCH`` as framed records; runs in a worker thread."""
            last = min(n_windows, first + WINDOWS_PER_BATCH)
            start, stop = first * stride, (last - 1) * stride + win
            raw = os.pread(spool_fd, (stop - start) * n_ch * 4, start * n_ch * 4)
            seg = np.frombuffer(raw, dtype="<f4").reshape(-1, n_ch)
            seg = ((seg - mean32) * scale32).astype(dtype)
            parts: list[bytes] = []
            for k in range(first, last):
                offset = (k - first) * stride
                parts += encoder.record({
                    "eeg": seg[offset:offset + win].tobytes(), "label": int(labels[k]),
                    "seizure_fraction": float(fractions[k]), "onset": float(onsets[k]), "window_index": k})
            return b"".join(parts)

        crc = 0
        try:  # pass 2: normalise, window, encode (in threads), write in order
            with atomic_open(tfrecord_path) as out:
                for chunk in ordered_map(pool, encode, list(range(0, n_windows, WINDOWS_PER_BATCH)), ahead=threads):
                    crc = google_crc32c.extend(crc, chunk)
                    out.write(chunk)
        finally:
            os.close(spool_fd)
        timings["windows"] = time.perf_counter() - started - timings["filter"]
    finally:
        spool.unlink(missing_ok=True)

    sidecar = {
        "Description": "Preprocessed, labelled EEG windows for seizure detection",
        "Sources": [f"bids:raw:{recording.relpath.as_posix()}"],
        "SamplingFrequency": sfreq,
        "Channels": montage.names,
        "ChannelSources": montage.sources,
        "FilledChannels": montage.filled,
        "Montage": cfg.montage.montage,
        "RecordingDuration": round(duration, 6),
        "WindowDuration": cfg.windows.duration,
        "WindowStride": stride / sfreq,
        "WindowSamples": win,
        "WindowCount": n_windows,
        "SeizureWindowCount": int(labels.sum()),
        "SeizureLabelThreshold": cfg.windows.seizure_overlap,
        "SeizureEventCount": seizures.event_count,
        "SeizureIntervals": [[round(a, 6), round(b, 6)] for a, b in seizures.intervals.tolist()],
        "Preprocessing": {
            **{key: getattr(cfg.preprocessing, key) for key in (
                "l_freq", "h_freq", "filter_order", "notch", "notch_harmonics", "notch_quality", "zscore")},
            "causal": plan.causal,  # sidecars written before the option existed omit it: zero phase
            "FilterType": ("Butterworth band-pass, causal (forward only)" if plan.causal
                           else "Butterworth band-pass, zero-phase (forward-backward)"),
            "LineFrequency": line_freq or cfg.preprocessing.line_freq,
            **plan.describe(),
            "ChannelMean": [round(v, 6) for v in stats.mean.tolist()],
            "ChannelStd": [round(v, 6) for v in stats.std.tolist()],
        },
        "SourceChecksums": checksums_future.result(),
        "ConfigHash": cfg.output_hash(),
        "TFRecord": {
            "File": tfrecord_path.name,
            "Bytes": tfrecord_path.stat().st_size,
            "CRC32C": f"{crc:08x}",
            "Schema": tfrecord_schema(win, n_ch, cfg.output.dtype),
        },
        "ChannelQuality": quality,
        "Warnings": warnings,
        "GeneratedBy": {"Name": APP_NAME, "Version": __version__},
    }
    atomic_write(sidecar_path, json.dumps(sidecar, indent=2) + "\n")
    log.debug("%s: filtering %.2f s, windows %.2f s", recording.label, timings["filter"], timings["windows"])
    return RecordingResult(recording.label, "written", windows=n_windows, seizure_windows=int(labels.sum()),
                           warnings=warnings)


def open_mapped(recording: Recording, map_channels, warnings: list[str]) -> tuple[SignalSource, Montage]:
    """Open a recording for block reads and map its channels (``map_channels(names) -> Montage``), as the
    participant level and apply mode both do: an EDF whose montage channels were recorded at different rates is read
    through MNE instead; each channel the montage fills with zeros gets a warning."""
    source = open_source(recording, warnings)
    montage = map_channels(source.ch_names)
    if isinstance(source, EDFSource) and not source.can_read(montage.picks):
        warnings.append("montage channels recorded at different rates: read through MNE")
        source = open_with_mne(recording)
        montage = map_channels(source.ch_names)
    warnings += [f"channel {name} missing: filled with zeros" for name in montage.filled]
    return source, montage


def zscore_scale(std: np.ndarray) -> np.ndarray:
    """1 / std, and 0 for a flat channel (written as zeros); apply mode and streaming scale as the windows were."""
    return np.where(std < FLAT_STD, 0.0, 1.0 / np.where(std < FLAT_STD, 1.0, std))


def channel_quality(source: SignalSource, montage: Montage, raw_stats: RawChannelStats, stats: RunningStats,
                    warnings: list[str]) -> dict:
    """The recorded channels' quality summary (the sidecar's ``ChannelQuality``), after the first pass; warns of
    flat or clipped recorded channels and of montage channels flat after filtering (written as zeros)."""
    quality = raw_stats.summary([source.ch_names[i] for i in montage.picks])
    warnings += channel_warnings(quality, raw_stats.low, raw_stats.high)
    flat = [montage.names[i] for i in np.flatnonzero(stats.std < FLAT_STD) if montage.names[i] not in montage.filled]
    warnings += [f"montage channel {name} is flat (constant after filtering)" for name in flat]
    return quality


def spool_block(read, n_in: int, plan: SignalPlan, montage: Montage, state, bounds: tuple[int, int]
                ) -> tuple[bytes, RunningStats, RawChannelStats]:
    """One block of output samples ``bounds``, ready to spool (time-major float32), with the quality statistics of
    each recorded channel (extremes included) and the statistics of the montage channels; runs in a worker thread.
    The participant level and apply mode both make their windows with it. ``read(start, stop)``: the picked
    channels' input samples; ``state``: the causal filters' state, or None (``filters.causal_filter``)."""
    raw = RawChannelStats(len(montage.picks))

    def tracked(start: int, stop: int) -> np.ndarray:
        data = read(start, stop)
        raw.update(data)
        return data

    # The montage is linear, so it commutes with resampling and filtering: apply it last, at the
    # (usually lower) output rate.
    y = montage.matrix @ process_block(tracked, n_in, plan, *bounds, state)
    derived = RunningStats(len(y))
    derived.update(y)
    return np.ascontiguousarray(y.T, dtype="<f4").tobytes(), derived, raw


def ordered_map(pool: ThreadPoolExecutor, func, items: Iterable, ahead: int):
    """``pool.map`` that keeps at most ``ahead`` results in flight, so memory stays bounded (``items`` may be
    endless: it is read as the results are taken). Left early (the consumer failed or closed it), the calls not
    started yet are cancelled: nothing works on for results no one will take."""
    pending: deque = deque()
    try:
        for item in items:
            pending.append(pool.submit(func, item))
            if len(pending) > ahead:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for future in pending:
            future.cancel()


def mains_frequency(metadata: dict, warnings: list[str]) -> float | None:
    """The sidecar's ``PowerLineFrequency``; None (use the configured default) when absent or not a frequency."""
    value = metadata.get("PowerLineFrequency")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0:
        return float(value)
    if value not in (None, "n/a"):
        warnings.append(f"PowerLineFrequency {value!r} in the sidecar is not a frequency; using the default")
    return None


def check_sidecar_rate(metadata: dict, sfreq: float, warnings: list[str]) -> None:
    """Warn when the sidecar's ``SamplingFrequency`` disagrees with the file's rate (the file's wins)."""
    declared = metadata.get("SamplingFrequency")
    if isinstance(declared, (int, float)) and not math.isclose(declared, sfreq, rel_tol=1e-3):
        warnings.append(f"sidecar SamplingFrequency {declared:g} Hz disagrees with the file ({sfreq:g} Hz); "
                        "using the file's rate")


def run_participant_level(cfg: Config, recordings: list[Recording], out_dir: Path,
                          work_dir: Path) -> list[RecordingResult]:
    """Process recordings, ``execution.nprocs`` at a time; one failure never stops the others.

    The CPUs left over (one recording on a 2-core machine, say) filter blocks of a recording in threads.
    """
    clashes = _output_clashes(recordings, out_dir)
    recordings = [r for r in recordings if r.label not in clashes]
    cpus = available_cpus()
    nprocs = min(cfg.execution.nprocs or cpus, len(recordings))
    threads = max(1, cpus // max(1, nprocs))
    results: list[RecordingResult] = []
    progress = _progress(len(recordings))
    if nprocs <= 1:
        limit_threads()
        for recording in recordings:
            results.append(_report(process_recording(recording, out_dir, cfg, work_dir, threads)))
            progress.update()
            raise_if_terminated()
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        context = multiprocessing.get_context("forkserver")
        with ProcessPoolExecutor(nprocs, mp_context=context, initializer=_init_worker) as pool:
            futures = [pool.submit(process_recording, r, out_dir, cfg, work_dir, threads) for r in recordings]
            try:
                for future in futures:
                    results.append(_report(future.result()))
                    progress.update()
                    raise_if_terminated()
            except BaseException:  # SIGTERM, Ctrl-C: stop the workers now, not after the queued recordings
                workers = list((getattr(pool, "_processes", None) or {}).values())
                pool.shutdown(wait=False, cancel_futures=True)
                for worker in workers:
                    worker.terminate()  # each deletes its temporaries and exits (fsutils.exit_on_sigterm)
                for worker in workers:
                    worker.join(30)
                raise
    progress.close()
    results += [_report(result) for result in clashes.values()]
    return sorted(results, key=lambda r: r.recording)


def _output_clashes(recordings: list[Recording], out_dir: Path) -> dict[str, RecordingResult]:
    """Failed results for recordings that would write the same output (one run in two formats, say)."""
    clashes = output_clashes(recordings, lambda r: recording_outputs(out_dir, r.relpath, r.stem)[0])
    return {label: RecordingResult(label, "failed", message, DataError.exit_code) for label, message in clashes.items()}


def output_clashes(recordings: list[Recording], output_of) -> dict[str, str]:
    """Recordings whose ``output_of`` path is the same (one run saved in two formats, say): label → message.
    Each would overwrite the other's output, so every mode refuses them all."""
    by_output: dict[Path, list[Recording]] = {}
    for r in recordings:
        by_output.setdefault(output_of(r), []).append(r)
    return {r.label: f"{', '.join(o.path.name for o in group)} are one recording (same entities) and would write "
                     "the same output: keep one"
            for group in by_output.values() if len(group) > 1 for r in group}


def available_cpus() -> int:
    """CPUs this process may use (respects taskset, cgroups cpusets and Slurm's binding)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _init_worker() -> None:
    # Ctrl-C reaches the whole process group: the parent stops the workers (SIGTERM, exit_on_sigterm), so a worker
    # does not die of it on its own, printing a traceback, in the middle of its start (threadpoolctl's library scan)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    limit_threads()
    exit_on_sigterm()


def limit_threads() -> None:
    """One BLAS thread per worker: the parallelism comes from our own processes and threads."""
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        pass


def _report(result: RecordingResult) -> RecordingResult:
    return log_result(result, f"{result.status} ({result.windows} windows, {result.seizure_windows} seizure)")


def log_result(result, done: str):
    """Log one recording's warnings, then its failure (traceback at debug level) or ``done``."""
    for warning in result.warnings:
        log.warning("%s: %s", result.recording, warning)
    if result.status == "failed":
        log.error("%s: %s", result.recording, result.message)
        if result.traceback:
            log.debug("%s", result.traceback)
    else:
        log.info("%s: %s", result.recording, done)
    return result


def _progress(total: int):
    from tqdm import tqdm

    return tqdm(total=total, unit="recording", desc="participant", disable=None, leave=False)
