"""TFRecord files of ``tf.train.Example`` protos, written and read without importing TensorFlow.

The participant level runs as thousands of small HPC jobs; importing TensorFlow costs seconds and
hundreds of MB in each, for nothing but a file format. The format is small and stable: each record is
``uint64 length | uint32 masked CRC32C(length) | data | uint32 masked CRC32C(data)`` and an Example is a
protobuf map of named lists. Encoding here is deterministic (features sorted by name), so the same
windows give byte-identical files. The tests read these files back with TensorFlow's own reader.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Iterator
from pathlib import Path

import google_crc32c
import numpy as np

from .errors import DataError

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


def iter_records(path: str | Path) -> Iterator[bytes]:
    """Yield each record's payload, checking both checksums (a truncated or corrupt file raises)."""
    with open(path, "rb") as fh:
        index = 0
        while True:
            header = fh.read(12)
            if not header:
                return
            if len(header) < 12:
                raise DataError(f"{path}: truncated TFRecord header at record {index}")
            (length,) = struct.unpack("<Q", header[:8])
            if struct.unpack("<I", header[8:])[0] != masked_crc32c(header[:8]):
                raise DataError(f"{path}: corrupt length checksum at record {index}")
            data = fh.read(length)
            footer = fh.read(4)
            if len(data) < length or len(footer) < 4:
                raise DataError(f"{path}: truncated TFRecord at record {index}")
            if struct.unpack("<I", footer)[0] != masked_crc32c(data):
                raise DataError(f"{path}: corrupt data checksum at record {index}")
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
            raise DataError("unexpected protobuf wire type in tf.train.Example")
        length, pos = _read_varint(buf, pos)
        yield key >> 3, buf[pos:pos + length]
        pos += length


def decode_example(data: bytes) -> dict[str, bytes | int | float]:
    """Inverse of :func:`encode_example` for single-valued features (for tests and tools without TF)."""
    out: dict[str, bytes | int | float] = {}
    for _, features in _iter_fields(data):
        for _, entry in _iter_fields(features):
            parts = dict(_iter_fields(entry))
            name = parts[1].decode()
            (kind, payload), = _iter_fields(parts[2])
            (_, values), = _iter_fields(payload)
            if kind == 1:
                out[name] = values
            elif kind == 2:
                out[name] = struct.unpack("<f", values)[0]
            else:
                value, _ = _read_varint(values, 0)
                out[name] = value - (1 << 64) if value >= 1 << 63 else value
    return out
