"""Block access to a recording's samples, in µV, whatever the file format.

EDF and BDF (every SzCORE release) are read by a small streaming reader: it parses the header once and
then reads only the data records a block needs, converting the picked channels' integers to µV. This
is what makes the participant level several times faster than going through MNE, whose EDF reader
scans the whole annotation channel when it opens a file and converts every channel on each read; the
tests check that both give the same samples. Other formats (BrainVision, EEGLAB), and EDF/BDF files
that use features this reader leaves to MNE (discontinuous EDF+D, picked channels at different rates),
are read through mne-bids / MNE.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError

_ANNOTATION_LABELS = ("EDF Annotations", "BDF Annotations")
_TO_MICROVOLT = {"uv": 1.0, "µv": 1.0, "μv": 1.0, "microv": 1.0, "mv": 1e3, "v": 1e6, "nv": 1e-3}


class SignalSource:
    """What the pipeline needs of a recording: names, rate, length, and blocks of samples."""

    ch_names: list[str]
    sfreq: float
    n_times: int
    integer_samples: bool  # samples cannot be NaN/inf (EDF/BDF); float formats are checked

    def read(self, picks: list[int], start: int, stop: int) -> np.ndarray:
        """Samples ``[start, stop)`` of the picked channels, float64 µV, shape (len(picks), stop-start)."""
        raise NotImplementedError


@dataclass
class EDFHeader:
    version: bytes
    reserved: str
    header_bytes: int
    n_records: int
    record_duration: float
    labels: list[str]
    units: list[str]
    physical_min: np.ndarray
    physical_max: np.ndarray
    digital_min: np.ndarray
    digital_max: np.ndarray
    samples_per_record: np.ndarray
    sample_width: int

    @property
    def record_bytes(self) -> int:
        return int(self.samples_per_record.sum()) * self.sample_width

    @property
    def expected_size(self) -> int:
        return self.header_bytes + self.n_records * self.record_bytes


def read_edf_header(path: Path) -> EDFHeader:
    """Parse an EDF/EDF+/BDF/BDF+ header; :class:`DataError` if it is not one."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(256)
            if len(head) < 256:
                raise ValueError("shorter than an EDF header")
            ns = int(head[252:256])
            if not 0 < ns < 100000:
                raise ValueError(f"{ns} signals")
            raw = fh.read(ns * 256)
            if len(raw) < ns * 256:
                raise ValueError("header cut short")
    except (OSError, ValueError) as exc:
        raise DataError(f"{path.name}: not a valid EDF/BDF header ({exc})") from None

    def fields(offset: int, width: int) -> list[str]:
        start = offset * ns
        return [raw[start + i * width:start + (i + 1) * width].decode("latin-1").strip() for i in range(ns)]

    try:
        labels, units = fields(0, 16), fields(16 + 80, 8)
        numbers = [np.array(fields(off, 8), dtype=float) for off in (104, 112, 120, 128)]
        samples = np.array(fields(216, 8), dtype=np.int64)
        header = EDFHeader(
            version=head[:8], reserved=head[192:236].decode("latin-1").strip(),
            header_bytes=int(head[184:192]), n_records=int(head[236:244]),
            record_duration=float(head[244:252]), labels=labels, units=units,
            physical_min=numbers[0], physical_max=numbers[1], digital_min=numbers[2], digital_max=numbers[3],
            samples_per_record=samples, sample_width=3 if head[:1] == b"\xff" else 2)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"{path.name}: not a valid EDF/BDF header ({exc})") from None
    if header.header_bytes != 256 * (ns + 1) or (samples <= 0).any():
        raise DataError(f"{path.name}: inconsistent EDF/BDF header")
    return header


class EDFSource(SignalSource):
    """Streaming reader of a continuous EDF/BDF file (see the module docstring)."""

    integer_samples = True

    def __init__(self, path: Path, header: EDFHeader, notes: list[str]):
        self.path = path
        self.header = header
        signals = [i for i, label in enumerate(header.labels) if label not in _ANNOTATION_LABELS]
        self.signals = signals
        self.ch_names = _unique([header.labels[i] for i in signals])
        size = path.stat().st_size
        n_records = header.n_records
        if n_records < 0:  # "-1": unknown, derived from the file size as EDF readers do
            n_records = (size - header.header_bytes) // header.record_bytes
        elif size < header.expected_size:
            raise DataError(f"{path.name}: truncated file ({size} bytes; its header announces "
                            f"{header.expected_size})")
        elif size > header.expected_size:
            notes.append(f"{path.name}: {size - header.expected_size} bytes after the last data record ignored")
        if n_records <= 0 or header.record_duration <= 0:
            raise DataError(f"{path.name}: the file holds no samples")
        self.n_records = n_records
        spr = header.samples_per_record
        self.spr = int(spr[signals].max())
        self.sfreq = self.spr / header.record_duration
        self.n_times = n_records * self.spr
        self.column = np.concatenate([[0], np.cumsum(spr)])[:-1]  # first sample of each signal in a record
        gain = (header.physical_max - header.physical_min) / (header.digital_max - header.digital_min)
        with np.errstate(invalid="ignore", divide="ignore"):
            offset = header.physical_max - gain * header.digital_max
        scale = np.array([_TO_MICROVOLT.get(u.lower().replace(" ", ""), 1.0) for u in header.units])
        self.gain, self.offset = gain * scale, offset * scale
        if not np.all(np.isfinite(self.gain[signals])) or np.any(self.gain[signals] == 0):
            raise DataError(f"{path.name}: invalid physical/digital range in the header")

    def can_read(self, picks: list[int]) -> bool:
        return all(self.header.samples_per_record[self.signals[p]] == self.spr for p in picks)

    def read(self, picks: list[int], start: int, stop: int) -> np.ndarray:
        spr, width = self.spr, self.header.sample_width
        first, last = start // spr, -(-stop // spr)
        count = (last - first) * self.header.record_bytes
        with open(self.path, "rb") as fh:
            fh.seek(self.header.header_bytes + first * self.header.record_bytes)
            buffer = fh.read(count)
        if len(buffer) < count:
            raise DataError(f"{self.path.name}: file ends early (records {first}-{last})")
        records = np.frombuffer(buffer, dtype=np.uint8).reshape(last - first, self.header.record_bytes)
        out = np.empty((len(picks), (last - first) * spr))
        for row, pick in enumerate(picks):
            signal = self.signals[pick]
            col = int(self.column[signal]) * width
            chunk = records[:, col:col + spr * width]
            if width == 2:
                digital = np.ascontiguousarray(chunk).view("<i2").reshape(-1)
            else:
                b = chunk.reshape(-1, 3).astype(np.int32)
                digital = (b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16))
                digital = np.where(digital >= 1 << 23, digital - (1 << 24), digital)
            np.multiply(digital, self.gain[signal], out=out[row])
            out[row] += self.offset[signal]
        return out[:, start - first * spr:stop - first * spr]


class MNESource(SignalSource):
    """Any format MNE reads, through an MNE ``Raw`` opened without loading its samples."""

    integer_samples = False

    def __init__(self, raw, label: str):
        self.raw = raw
        self.label = label
        self.ch_names = list(raw.ch_names)
        self.sfreq = float(raw.info["sfreq"])
        self.n_times = int(raw.n_times)

    def read(self, picks: list[int], start: int, stop: int) -> np.ndarray:
        try:
            data = self.raw.get_data(picks=picks, start=start, stop=stop)
        except Exception as exc:  # MNE raises many kinds on a damaged file
            raise DataError(f"{self.label}: cannot read samples {start}-{stop} ({exc})") from None
        if data.shape[1] != stop - start:
            raise DataError(f"{self.label}: file ends early (samples {start}-{stop} requested)")
        return data * 1e6


def _unique(names: list[str]) -> list[str]:
    """MNE's renaming of duplicate labels (``T8-P8`` twice → ``T8-P8-0``, ``T8-P8-1``)."""
    counts = {n: names.count(n) for n in names}
    seen: dict[str, int] = {}
    out = []
    for name in names:
        if counts[name] > 1:
            out.append(f"{name}-{seen.get(name, 0)}")
            seen[name] = seen.get(name, 0) + 1
        else:
            out.append(name)
    return out
