"""TFRecord files of ``tf.train.Example`` protos, written and read without importing TensorFlow.

The participant level runs as thousands of small HPC jobs; importing TensorFlow costs seconds and
hundreds of MB in each, for nothing but a file format. The format is small and stable: each record is
``uint64 length | uint32 masked CRC32C(length) | data | uint32 masked CRC32C(data)`` and an Example is a
protobuf map of named lists. Encoding here is deterministic (features sorted by name), so the same
windows give byte-identical files. The tests read these files back with TensorFlow's own reader.

:func:`read_windows` and :func:`iter_windows` are the public reader of the participant level's windows, for
users of NumPy or PyTorch who should not need TensorFlow for the derivatives (see the documentation, Outputs).
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import google_crc32c
import numpy as np

from ..errors import DataError

_MASK_DELTA = 0xA282EAD8


def _mask(crc: int) -> int:
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    return _mask(google_crc32c.value(data))


def _frame_parts(data: bytes) -> list[bytes]:
    """A TFRecord record around a serialized message, as byte parts (length, its CRC, data, its CRC)."""
    length = struct.pack("<Q", len(data))
    return [length, struct.pack("<I", masked_crc32c(length)), data, struct.pack("<I", masked_crc32c(data))]


def frame_record(data: bytes) -> bytes:
    """One TFRecord record around a serialized message."""
    return b"".join(_frame_parts(data))


def _record_length(header: bytes, path, index: int) -> int:
    """The payload length a record's 12-byte header gives, checked against the header's checksum."""
    if len(header) < 12:
        raise DataError(f"{path}: truncated TFRecord header at record {index}")
    (length,) = struct.unpack("<Q", header[:8])
    if struct.unpack("<I", header[8:])[0] != masked_crc32c(header[:8]):
        raise DataError(f"{path}: corrupt length checksum at record {index}")
    return length


def _check_payload(data: bytes, footer: bytes, path, index: int) -> None:
    """A record's payload against its 4-byte footer checksum."""
    if len(footer) < 4 or struct.unpack("<I", footer[:4])[0] != masked_crc32c(data):
        raise DataError(f"{path}: corrupt data checksum at record {index}")


def iter_records(path: str | Path) -> Iterator[bytes]:
    """Yield each record's payload, checking both checksums (a truncated or corrupt file raises)."""
    with open(path, "rb") as fh:
        index = 0
        while True:
            header = fh.read(12)
            if not header:
                return
            length = _record_length(header, path, index)
            data = fh.read(length)
            footer = fh.read(4)
            if len(data) < length or len(footer) < 4:
                raise DataError(f"{path}: truncated TFRecord at record {index}")
            _check_payload(data, footer, path, index)
            yield data
            index += 1


# ---------------------------------------------------------------------- protobuf encoding
def _varint(value: int) -> bytes:
    value &= 0xFFFFFFFFFFFFFFFF  # int64 two's complement, as protobuf encodes negative int64
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _header(number: int, length: int) -> bytes:
    """Key and length of a length-delimited field (wire type 2)."""
    return _varint(number << 3 | 2) + _varint(length)


def _field(number: int, payload: bytes) -> bytes:
    return _header(number, len(payload)) + payload


@functools.lru_cache(maxsize=1024)
def _entry_prefix(name: str, kind: int, value_len: int) -> bytes:
    """Everything of a ``map<string, Feature>`` entry before its single value's bytes.

    kind: 1 bytes_list, 2 float_list, 3 int64_list; the value sits in the list's field 1 (packed for
    numbers). Cached, so encoding a record costs a few dictionary look-ups per feature.
    """
    list_body = _header(1, value_len)
    feature_body_len = len(list_body) + value_len
    feature = _header(kind, feature_body_len) + list_body
    key = _field(1, name.encode())
    value_header = _header(2, len(feature) + value_len)
    entry_len = len(key) + len(value_header) + len(feature) + value_len
    return _header(1, entry_len) + key + value_header + feature


def _feature_entry(name: str, value) -> list[bytes]:
    """One feature entry as byte parts (a large bytes value is not copied)."""
    if isinstance(value, (bytes, str)):
        raw = value.encode() if isinstance(value, str) else value
        return [_entry_prefix(name, 1, len(raw)), raw]
    if isinstance(value, (float, np.floating)):
        return [_entry_prefix(name, 2, 4), struct.pack("<f", value)]
    if isinstance(value, (int, np.integer)):
        raw = _varint(int(value))
        return [_entry_prefix(name, 3, len(raw)), raw]
    raise TypeError(f"unsupported feature value {type(value).__name__}")


class ExampleEncoder:
    """Frames ``tf.train.Example`` records whose features are partly the same in every record.

    Constant features are encoded once; features are written sorted by name, as TensorFlow's
    deterministic serialisation does, so identical windows give identical bytes.
    """

    def __init__(self, constants: dict[str, bytes | str | int | float] | None = None):
        self.constants = {name: b"".join(_feature_entry(name, v)) for name, v in (constants or {}).items()}

    def record(self, features: dict[str, bytes | str | int | float]) -> list[bytes]:
        """The framed record (length, CRCs, Example) as byte parts, ready for ``b"".join``."""
        parts: list[bytes] = []
        for name in sorted({*features, *self.constants}):
            if name in features:
                parts += _feature_entry(name, features[name])
            else:
                parts.append(self.constants[name])
        return _frame_parts(_example(parts))


def encode_example(features: dict[str, bytes | str | int | float]) -> bytes:
    """Serialize a ``tf.train.Example`` with one scalar (or one bytes string) per feature."""
    parts: list[bytes] = []
    for name in sorted(features):
        parts += _feature_entry(name, features[name])
    return _example(parts)


def _example(entries: list[bytes]) -> bytes:
    """``Example { Features features = 1 }`` around the encoded feature-map entries."""
    body = b"".join(entries)
    return _header(1, len(body)) + body


# ---------------------------------------------------------------------- protobuf decoding
def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _iter_fields(buf: bytes) -> Iterator[tuple[int, bytes]]:
    pos = 0
    while pos < len(buf):
        key, pos = _read_varint(buf, pos)
        if key & 7 != 2:
            raise DataError("unexpected protobuf wire type")
        length, pos = _read_varint(buf, pos)
        if pos + length > len(buf):
            raise DataError("truncated protobuf field")
        yield key >> 3, buf[pos:pos + length]
        pos += length


# Why decoding failed, by the Python error it raised (UnicodeDecodeError before its base ValueError).
_MALFORMED = {IndexError: "truncated varint", KeyError: "a feature entry without its name or value",
              UnicodeDecodeError: "a feature name that is not UTF-8", ValueError: "a feature without exactly one value"}


def decode_example(data: bytes) -> dict[str, bytes | int | float]:
    """Inverse of :func:`encode_example` for single-valued features (for tests and tools without TF).

    Bytes that are not such an Example raise :class:`DataError` (a record can pass its CRC and still be
    something else). Slices are memoryviews until the end, so a large ``eeg`` value is copied once.
    """
    try:
        return _decode_example(memoryview(data))
    except DataError as exc:
        reason = str(exc)
    except tuple(_MALFORMED) as exc:
        reason = next(text for kind, text in _MALFORMED.items() if isinstance(exc, kind))
    raise DataError(f"not a tf.train.Example of single-valued features: {reason}")


def _decode_example(data: memoryview) -> dict[str, bytes | int | float]:
    out: dict[str, bytes | int | float] = {}
    for _, features in _iter_fields(data):
        for _, entry in _iter_fields(features):
            parts = dict(_iter_fields(entry))
            name = bytes(parts[1]).decode()
            (kind, payload), = _iter_fields(parts[2])
            (_, values), = _iter_fields(payload)
            if kind == 1:
                out[name] = bytes(values)
            elif kind == 2:
                if len(values) != 4:  # packed floats, 4 bytes each: not one value
                    raise ValueError(name)
                out[name] = struct.unpack("<f", values)[0]
            elif kind == 3:
                value, end = _read_varint(values, 0)
                if end != len(values):  # packed varints: more than one value
                    raise ValueError(name)
                out[name] = value - (1 << 64) if value >= 1 << 63 else value
            else:
                raise DataError(f"unknown feature kind {kind}")
    return out


# ---------------------------------------------------------------------- participant-level windows
# The feature types of a windows sidecar's ``TFRecord.Schema``, as decode_example returns their values.
_FEATURE_TYPES = {"bytes": bytes, "int64": int, "float32": float}
_COLUMN_DTYPES = {"int64": np.int64, "float32": np.float32}  # read_windows' arrays of scalar features (as TF)


@dataclass(frozen=True)
class _WindowsFile:
    """A ``*_desc-preproc_windows`` TFRecord with what its sidecar says about it."""

    tfrecord: Path
    count: int
    types: dict[str, str]  # feature name -> schema type
    arrays: dict[str, tuple[np.dtype, tuple[int, ...]]]  # bytes features holding an array (eeg)


def _open_windows(path: str | Path) -> _WindowsFile:
    """Find the TFRecord and sidecar of ``path`` (either one) and check the sidecar against the file."""
    path = Path(path)
    sidecar = path if path.suffix == ".json" else path.with_suffix(".json")
    try:
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"{sidecar}: cannot read the windows sidecar (it gives the eeg dtype and shape): "
                        f"{getattr(exc, 'strerror', None) or exc}") from None
    try:
        tfrecord = path if path != sidecar else sidecar.with_name(meta["TFRecord"]["File"])
        expected, count, schema = int(meta["TFRecord"]["Bytes"]), int(meta["WindowCount"]), meta["TFRecord"]["Schema"]
        types = {name: feature["type"] for name, feature in schema.items()}
        arrays = {name: (np.dtype(feature["dtype"]), tuple(int(n) for n in feature["shape"]))
                  for name, feature in schema.items() if "dtype" in feature}
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise DataError(f"{sidecar}: not a windows sidecar (bad TFRecord schema: {type(exc).__name__} {exc})") from None
    bad = [f"{name} ({kind})" for name, kind in types.items()
           if kind not in _FEATURE_TYPES or (name in arrays and kind != "bytes")]
    if bad:
        raise DataError(f"{sidecar}: unsupported feature types in the TFRecord schema: {', '.join(bad)}")
    try:
        size = tfrecord.stat().st_size
    except OSError as exc:
        raise DataError(f"{tfrecord}: cannot read the windows: {exc.strerror}") from None
    if size != expected:
        raise DataError(f"{tfrecord} has {size} bytes but its sidecar records {expected}: incomplete or "
                        "replaced file; rerun the participant level")
    return _WindowsFile(tfrecord, count, types, arrays)


def _window(data: bytes, spec: _WindowsFile, index: int) -> dict:
    """One record as ``{feature: value}``, checked against the schema (arrays read-only, bytes as str)."""
    def fail(problem: str) -> DataError:
        return DataError(f"{spec.tfrecord}: {problem} at record {index}")

    try:
        example = decode_example(data)
    except DataError as exc:
        raise fail(str(exc)) from None
    window: dict = {}
    for name, kind in spec.types.items():
        if name not in example:
            raise fail(f"missing feature {name!r}")
        value = example[name]
        if type(value) is not _FEATURE_TYPES[kind]:
            raise fail(f"feature {name!r} is not {kind}")
        if name in spec.arrays:
            dtype, shape = spec.arrays[name]
            if len(value) != dtype.itemsize * math.prod(shape):
                raise fail(f"{name} holds {len(value)} bytes, not {dtype.itemsize * math.prod(shape)} "
                           f"({dtype.str} x {list(shape)})")
            value = np.frombuffer(value, dtype).reshape(shape)
        elif kind == "bytes":
            try:
                value = value.decode()
            except UnicodeDecodeError:
                raise fail(f"feature {name!r} is not UTF-8 text") from None
        window[name] = value
    return window


def _windows(spec: _WindowsFile) -> Iterator[dict]:
    count = 0
    for index, data in enumerate(iter_records(spec.tfrecord)):
        if index == spec.count:
            raise DataError(f"{spec.tfrecord}: more records than the sidecar's WindowCount ({spec.count})")
        yield _window(data, spec, index)
        count += 1
    if count != spec.count:
        raise DataError(f"{spec.tfrecord}: {count} records, the sidecar's WindowCount is {spec.count}")


def iter_windows(path: str | Path) -> Iterator[dict]:
    """The windows of a participant-level ``*_desc-preproc_windows.tfrecord``, one at a time, without TensorFlow.

    ``path`` is the TFRecord or its JSON sidecar (which gives the schema). Each window is a dict with every
    feature of the sidecar's ``TFRecord.Schema``: ``eeg`` as a read-only array (WindowSamples, channels) of the
    sidecar's dtype, ``label``/``window_index`` int, ``onset``/``seizure_fraction`` float, the entity labels
    as str. Only one record is in memory at a time, so this suits files larger than memory and streaming
    loaders (PyTorch's ``IterableDataset``: examples/pytorch_windows.py). The file is checked against its
    sidecar when this is called; a corrupt record, a missing feature or a wrong size raises
    :class:`DataError` when it is reached.
    """
    return _windows(_open_windows(path))


#: Whether this system can tell the kernel what will be read soon (Linux, most Unixes; not macOS or Windows).
_FADVISE = hasattr(os, "posix_fadvise")


class WindowReader:
    """Random access to the windows of a participant-level TFRecord, by index, without TensorFlow: the records'
    offsets are found once from their 12-byte headers (each length checked against its checksum), and each
    window read is checked as :func:`iter_windows` checks it. Reads are ``os.pread`` calls: threads may share
    one reader. ``path`` is the TFRecord or its JSON sidecar.

    ``keep_open=False`` opens the file for each read instead of holding it open (a few microseconds a read):
    for readers of more recordings than the process may hold open at once (a CHB-MIT-sized training set).
    """

    def __init__(self, path: str | Path, *, keep_open: bool = True):
        self.spec = _open_windows(path)
        self._keep_open, self._closed = keep_open, False
        fd = os.open(self.spec.tfrecord, os.O_RDONLY)
        try:
            self._offsets, self._lengths = self._index(fd)
        except BaseException:
            os.close(fd)
            raise
        if keep_open:
            self._fd = fd
        else:
            os.close(fd)
            self._fd = -1

    def _index(self, fd: int) -> tuple[np.ndarray, np.ndarray]:
        path, size = self.spec.tfrecord, os.fstat(fd).st_size
        offsets, lengths, position = [], [], 0
        while position < size:
            length = _record_length(os.pread(fd, 12, position), path, len(offsets))
            offsets.append(position + 12)
            lengths.append(length)
            position += 16 + length
        if position != size:
            raise DataError(f"{path}: truncated TFRecord at record {len(offsets) - 1}")
        if len(offsets) != self.spec.count:
            raise DataError(f"{path}: {len(offsets)} records, the sidecar's WindowCount is {self.spec.count}")
        return np.array(offsets, np.int64), np.array(lengths, np.int64)

    def __len__(self) -> int:
        return self.spec.count

    @contextlib.contextmanager
    def _descriptor(self) -> Iterator[int]:
        """The file's descriptor for one call: the one held open, or (``keep_open=False``) one opened for it."""
        if self._closed:
            raise ValueError(f"{self.spec.tfrecord}: read from a closed WindowReader")
        if self._keep_open:
            yield self._fd
            return
        fd = os.open(self.spec.tfrecord, os.O_RDONLY)
        try:
            yield fd
        finally:
            os.close(fd)

    def advise(self, indices) -> None:
        """Tell the kernel that the windows ``indices`` will be read soon (``posix_fadvise`` WILLNEED), so that it
        starts reading them from disk now and a later :meth:`window` finds them in memory; a no-op where the
        system has no such call. Random reads of a training set larger than the page cache, or on a network
        file system, wait on the disk for each window otherwise."""
        if not _FADVISE or self._closed:
            return
        chosen = np.unique(np.asarray(indices, np.int64))
        if not chosen.size:
            return
        starts = self._offsets[chosen] - 12
        ends = self._offsets[chosen] + self._lengths[chosen] + 4
        breaks = np.flatnonzero(starts[1:] > ends[:-1]) + 1  # consecutive records make one range: one call
        with self._descriptor() as fd:
            for first, last in zip(np.concatenate([[0], breaks]), np.concatenate([breaks, [chosen.size]]) - 1):
                start = int(starts[first])
                os.posix_fadvise(fd, start, int(ends[last]) - start, os.POSIX_FADV_WILLNEED)

    def window(self, index: int) -> dict:
        """Window ``index`` as :func:`iter_windows` gives it."""
        length = int(self._lengths[index])
        with self._descriptor() as fd:
            raw = os.pread(fd, length + 4, int(self._offsets[index]))
        _check_payload(raw[:length], raw[length:], self.spec.tfrecord, index)
        return _window(raw[:length], self.spec, index)

    def close(self) -> None:
        self._closed = True
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> WindowReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_windows(path: str | Path) -> dict[str, np.ndarray]:
    """All windows of a ``*_desc-preproc_windows.tfrecord`` as NumPy arrays, one per schema feature.

    ``eeg`` is (WindowCount, WindowSamples, channels) of the sidecar's dtype (``<f4``, or ``<f2`` with
    ``output.dtype = "float16"``); ``label`` and ``window_index`` int64, ``onset`` and ``seizure_fraction``
    float32 (as ``tf.io.parse_single_example`` gives them); ``subject``, ``session``, ``task``, ``run`` str.
    Checked as :func:`iter_windows` checks; the eeg array is allocated once from the sidecar's WindowCount.
    """
    spec = _open_windows(path)
    columns: dict[str, list] = {name: [] for name in spec.types if name not in spec.arrays}
    arrays = {name: np.empty((spec.count, *shape), dtype) for name, (dtype, shape) in spec.arrays.items()}
    for index, window in enumerate(_windows(spec)):
        for name, value in window.items():
            if name in arrays:
                arrays[name][index] = value
            else:
                columns[name].append(value)
    for name, values in columns.items():
        arrays[name] = np.array(values, dtype=_COLUMN_DTYPES.get(spec.types[name], str))
    return {name: arrays[name] for name in spec.types}
