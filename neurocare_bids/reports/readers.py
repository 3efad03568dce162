"""What the reports read from the outputs already on disk, cheaply enough for a 24-hour recording.

* Window labels come from the TFRecord itself without decoding the EEG: each record's framing gives its
  length, the ``eeg`` feature comes first (features are written sorted by name), so one small read per
  record reaches the features after it. A day of 4-s windows is 43,200 small reads, not 1.7 GB.
* Example windows are read by skipping from record header to record header up to the ones wanted.
* Power spectra before and after filtering use a few short stretches of the source recording, filtered
  with the participant level's own code (same filters, same block margins), so memory and time do not
  depend on the recording's length.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import struct
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..io.tfrecord import _iter_fields, _read_varint, _varint, decode_example

SPECTRUM_SEGMENTS = 4
SPECTRUM_SEGMENT_SECONDS = 30.0
SPECTRUM_RESOLUTION_SECONDS = 4.0  # Welch segment length: 0.25 Hz resolution


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def read_tsv(path: Path) -> list[dict[str, str]]:
    return list(iter_tsv(path))


def iter_tsv(path: Path):
    """The rows of a TSV file one at a time (none when it cannot be read), for files too long to hold as dicts."""
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            yield from csv.DictReader(fh, delimiter="\t")
    except OSError:
        return


def source_relpath(meta: dict) -> str:
    """The source recording of a windows sidecar, relative to BIDS_DIR."""
    return meta["Sources"][0].split(":", 2)[-1]


def _record_offsets(fd: int):
    """``(data_offset, data_length)`` of each record, reading only the 12-byte headers."""
    size, pos = os.fstat(fd).st_size, 0
    while pos + 12 <= size:
        (length,) = struct.unpack("<Q", os.pread(fd, 8, pos))
        yield pos + 12, length
        pos += 12 + length + 4


def _after_eeg(head: bytes) -> int | None:
    """Offset, within a record's data, of the features after ``eeg`` (None if ``eeg`` is not first)."""
    try:
        if head[0] != 0x0A:
            return None
        _, pos = _read_varint(head, 1)  # Example.features length
        if head[pos] != 0x0A:
            return None
        entry_len, start = _read_varint(head, pos + 1)  # first map entry
        if head[start:start + 5] != b"\x0a\x03eeg":
            return None
        return start + entry_len
    except IndexError:
        return None


_LABEL_FEATURES = ("label", "onset", "seizure_fraction")


def _tail_layout(tail: bytes) -> dict[str, tuple[int, bytes, int, int]] | None:
    """Where the value of each label feature sits in the features after ``eeg``: ``{name: (offset, bytes before
    the value, kind, value length)}``. The same in every record of a file (the constant strings do not change,
    and ``window_index``, whose length grows, comes last); each record is checked against it."""
    layout, pos = {}, 0
    try:
        while pos < len(tail):
            _, p = _read_varint(tail, pos)
            length, start = _read_varint(tail, p)
            end = start + length
            parts = dict(_iter_fields(tail[start:end]))
            name = parts[1].decode()
            if name in _LABEL_FEATURES:
                ((kind, payload),) = _iter_fields(parts[2])
                ((_, values),) = _iter_fields(payload)
                layout[name] = (pos, tail[pos:end - len(values)], kind, len(values))
            pos = end
    except (IndexError, KeyError, ValueError, UnicodeDecodeError, DataError):
        return None
    return layout if len(layout) == len(_LABEL_FEATURES) else None


def _values(tail: bytes, layout: dict) -> dict | None:
    out = {}
    for name, (pos, prefix, kind, size) in layout.items():
        start = pos + len(prefix)
        if tail[pos:start] != prefix or start + size > len(tail):
            return None
        raw = tail[start:start + size]
        out[name] = struct.unpack("<f", raw)[0] if kind == 2 else _read_varint(raw, 0)[0]
    return out


def window_labels(tfrecord: Path) -> dict[str, np.ndarray]:
    """``onset``, ``label`` and ``seizure_fraction`` of every window, in file order, read from the TFRecord."""
    onsets, labels, fractions = [], [], []
    layout = None
    with open(tfrecord, "rb", buffering=0) as fh:
        fd, size, pos = fh.fileno(), os.fstat(fh.fileno()).st_size, 0
        while pos + 12 <= size:  # two small unbuffered reads per record: its header and its tail
            head = os.pread(fd, 12 + 32, pos)
            (length,) = struct.unpack_from("<Q", head)
            offset = pos + 12
            pos = offset + length + 4
            skip = _after_eeg(head[12:12 + min(length, 32)])
            example = None
            if skip is not None:
                tail = os.pread(fd, length - skip, offset + skip)
                layout = layout or _tail_layout(tail)
                example = _values(tail, layout) if layout else None
                if example is None:
                    example = decode_example(b"\x0a" + _varint(len(tail)) + tail)
            if example is None:  # another layout: decode the whole record
                example = decode_example(os.pread(fd, length, offset))
            onsets.append(example["onset"])
            labels.append(example["label"])
            fractions.append(example.get("seizure_fraction", float("nan")))
    return {"onset": np.array(onsets, dtype=float), "label": np.array(labels, dtype=int),
            "seizure_fraction": np.array(fractions, dtype=float)}


def read_windows(tfrecord: Path, indices: list[int], schema: dict) -> dict[int, np.ndarray]:
    """The EEG (samples × channels, float32) of the windows at ``indices``."""
    wanted, out = set(indices), {}
    dtype, shape = np.dtype(schema["dtype"]), tuple(schema["shape"])
    with open(tfrecord, "rb", buffering=0) as fh:
        for index, (offset, length) in enumerate(_record_offsets(fh.fileno())):
            if index > max(wanted, default=-1):
                break
            if index in wanted:
                example = decode_example(os.pread(fh.fileno(), length, offset))
                out[index] = np.frombuffer(example["eeg"], dtype=dtype).reshape(shape).astype(np.float32)
    return out


def label_runs(onsets: np.ndarray, labels: np.ndarray, window_duration: float, stride: float
               ) -> list[tuple[float, float]]:
    """Consecutive seizure-labelled windows as ``(start, end)`` seconds."""
    runs: list[tuple[float, float]] = []
    for onset, label in zip(onsets, labels):
        if not label:
            continue
        if runs and onset <= runs[-1][1] - window_duration + stride + 1e-6:
            runs[-1] = (runs[-1][0], onset + window_duration)
        else:
            runs.append((onset, onset + window_duration))
    return runs


# ---------------------------------------------------------------------- spectra
def _entities(filename: str) -> dict[str, str]:
    keys = {"sub": "subject", "ses": "session", "task": "task", "acq": "acquisition", "run": "run"}
    out = {}
    for part in filename.split("_")[:-1]:
        key, _, value = part.partition("-")
        if key in keys and value:
            out[keys[key]] = value
    return out


def power_spectra(bids_dir: Path, meta: dict, montage_cfg) -> dict:
    """Mean PSD over channels before (raw, montage applied) and after the participant level's filters.

    Reads ``SPECTRUM_SEGMENTS`` stretches of ``SPECTRUM_SEGMENT_SECONDS`` spread over the recording (each
    with the filters' margins). Returns ``{"before": (freqs, psd), "after": (freqs, psd), "band", "notches"}``
    or ``{"note": why not}``.
    """
    from scipy import signal

    from ..io.bids_input import Recording, open_source, open_with_mne
    from ..io.signal_reader import EDFSource
    from ..preprocessing.filters import plan_from_sidecar, process_block
    from ..preprocessing.montage import build_montage

    relpath = source_relpath(meta)
    path = bids_dir / relpath
    if not path.is_file():
        return {"note": f"source recording {relpath} not found in {bids_dir}"}
    recording = Recording(path, bids_dir, _entities(path.name))
    source = open_source(recording, [])
    montage_cfg = dataclasses.replace(montage_cfg, montage=meta.get("Montage", montage_cfg.montage),
                                      allow_missing_channels=True)
    montage = build_montage(source.ch_names, montage_cfg)
    if isinstance(source, EDFSource) and not source.can_read(montage.picks):
        source = open_with_mne(recording)
        montage = build_montage(source.ch_names, montage_cfg)
    if list(montage.names) != list(meta["Channels"]):
        return {"note": "the recording's channels no longer give the sidecar's montage: spectra skipped"}
    pre = meta["Preprocessing"]
    plan = plan_from_sidecar(meta, source.sfreq)

    def read(start: int, stop: int) -> np.ndarray:
        return source.read(montage.picks, start, stop)

    n_in, fs_in, fs_out = source.n_times, source.sfreq, plan.sfreq_out
    duration = n_in / fs_in
    length = min(SPECTRUM_SEGMENT_SECONDS, duration / SPECTRUM_SEGMENTS)
    used = [i for i, name in enumerate(montage.names) if name not in montage.filled]
    before, after = [], []
    for k in range(SPECTRUM_SEGMENTS):
        start = (k + 0.5) * duration / SPECTRUM_SEGMENTS - length / 2
        a_in, a_out = max(0, int(start * fs_in)), max(0, int(start * fs_out))
        b_in, b_out = min(n_in, a_in + int(length * fs_in)), min(plan.n_out(n_in), a_out + int(length * fs_out))
        if b_in - a_in < 8 or b_out - a_out < 8:
            continue
        raw = (montage.matrix @ read(a_in, b_in))[used]
        filtered = (montage.matrix @ process_block(read, n_in, plan, a_out, b_out))[used]
        for x, fs, out in ((raw, fs_in, before), (filtered, fs_out, after)):
            nperseg = min(x.shape[1], int(SPECTRUM_RESOLUTION_SECONDS * fs))
            freqs, psd = signal.welch(x, fs=fs, nperseg=nperseg, axis=1)
            out.append((freqs, psd.mean(axis=0)))
    if not before:
        return {"note": "recording too short for a spectrum"}
    return {"before": (before[0][0], np.mean([p for _, p in before], axis=0)),
            "after": (after[0][0], np.mean([p for _, p in after], axis=0)),
            "band": (float(pre.get("l_freq", 0.0)), float(pre.get("h_freq", 0.0))),
            "notches": list(pre.get("NotchFrequencies", [])),
            "segments": len(before), "segment_seconds": length}
