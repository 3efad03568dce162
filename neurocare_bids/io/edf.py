"""A small, exact EDF/EDF+ and BDF/BDF+ writer.

Written in-house rather than through pyedflib/edfio so that every byte is under
our control: output is deterministic for a given input (test fixtures and the
demo dataset are byte-reproducible), the file appears atomically, and the
8-character header numbers are chosen so that readers such as MNE rebuild the
very gain/offset used for quantisation.

Conventions
-----------
* 16-bit digital range ``-32768..32767`` for every signal in EDF; BDF (BioSemi)
  stores 3-byte little-endian two's complement samples with the 24-bit range
  ``-8388608..8388607``. The format follows the file suffix (``.bdf`` means
  BDF, case-insensitive) unless ``bdf=`` says otherwise.
* Samples that do not fill the last data record are padded with physical zero
  (the file is then slightly longer than the input; pass whole records to avoid
  it).
* Values outside a channel's physical range are clipped, as EDF requires.
* Annotations are stored in the data record that contains their onset (clipped
  to the first/last record); every record reserves as many annotation bytes as
  the fullest record needs.
"""

from __future__ import annotations

import math
import os
import uuid
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, Decimal
from pathlib import Path

import numpy as np

__all__ = ["BDF_DIGITAL_MAX", "BDF_DIGITAL_MIN", "DIGITAL_MAX", "DIGITAL_MIN", "write_edf"]

DIGITAL_MIN = -32768
DIGITAL_MAX = 32767
BDF_DIGITAL_MIN = -(2**23)
BDF_DIGITAL_MAX = 2**23 - 1
_ANNOTATION_LABELS = {False: "EDF Annotations", True: "BDF Annotations"}
_BLOCK_BYTES = 16 * 2**20  # bytes of data records quantised and written at once

Annotation = tuple[float, float, str]


def write_edf(
    path: str | os.PathLike[str],
    signals: np.ndarray | Sequence[np.ndarray],
    sfreqs: float | Sequence[float],
    ch_names: Sequence[str],
    *,
    units: str | Sequence[str] = "uV",
    start: datetime = datetime(2000, 1, 1, 0, 0, 0),
    record_duration: float = 1.0,
    annotations: Iterable[Annotation] = (),
    edf_plus: bool = True,
    patient_id: str = "X X X X",
    recording_id: str = "Startdate X X X X",
    physical_ranges: tuple[float, float] | Sequence[tuple[float, float]] | None = None,
    transducer: str | Sequence[str] = "",
    prefilter: str | Sequence[str] = "",
    ch_types: Sequence[str] | None = None,
    bdf: bool | None = None,
) -> Path:
    """Write ``signals`` (physical units) to an EDF (``edf_plus=False``) or EDF+C file.

    ``bdf`` selects BioSemi BDF (24-bit samples) instead of EDF (16-bit); the
    default ``None`` follows the suffix of ``path`` (``.bdf``, any case, means
    BDF), and an explicit ``True``/``False`` overrides the suffix. For BDF,
    ``edf_plus=True`` writes BDF+C (reserved field ``"BDF+C"``, annotations in a
    ``"BDF Annotations"`` signal) and ``edf_plus=False`` plain BDF (``"24BIT"``).

    ``signals`` is a 2-D array ``(n_channels, n_samples)`` with a scalar
    ``sfreqs``, or a sequence of 1-D arrays with one rate per channel (mixed
    rates, as in clinical files). Every channel must span the same number of
    data records. ``physical_ranges`` is one ``(min, max)`` pair for all
    channels or one per channel; by default each channel gets a symmetric range
    around its peak absolute value (1 unit for a flat-zero channel). ``units``,
    ``transducer`` and ``prefilter`` are one string for all channels or one per
    channel. ``ch_types`` prefixes EDF+ style type labels (``"EEG Fp1"``).
    ``annotations`` are ``(onset_s, duration_s, text)`` and need EDF+.
    The file is written to a temporary sibling and moved into place, so an
    interrupted write never leaves a partial ``path``.
    """
    path = Path(path)
    if bdf is None:
        bdf = path.suffix.lower() == ".bdf"
    bdf = bool(bdf)
    dmin, dmax = (BDF_DIGITAL_MIN, BDF_DIGITAL_MAX) if bdf else (DIGITAL_MIN, DIGITAL_MAX)
    chans = [np.asarray(s) for s in signals]
    n_ch = len(chans)
    if n_ch == 0:
        raise ValueError("at least one signal is required")
    if any(c.ndim != 1 for c in chans):
        raise ValueError("signals must be a 2-D array or a sequence of 1-D arrays")
    rates = _per_channel(sfreqs, n_ch, "sfreqs", scalar=(int, float, np.number))
    names = list(ch_names)
    if len(names) != n_ch:
        raise ValueError(f"{len(names)} ch_names for {n_ch} signals")
    for label in _ANNOTATION_LABELS.values():
        if label in names:
            raise ValueError(f"{label!r} is reserved for the annotation signal")
    types = [""] * n_ch if ch_types is None else list(ch_types)
    if len(types) != n_ch:
        raise ValueError(f"{len(types)} ch_types for {n_ch} signals")
    labels = [f"{t} {n}" if t else n for t, n in zip(types, names)]

    duration_str = _format_number(record_duration, ROUND_HALF_EVEN)
    if float(duration_str) != float(record_duration) or record_duration <= 0:
        raise ValueError(
            f"record_duration {record_duration!r} must be positive and exact in 8 characters"
        )
    spr = [_samples_per_record(float(f), record_duration) for f in rates]
    n_records_each = {math.ceil(c.size / s) for c, s in zip(chans, spr)}
    if len(n_records_each) != 1 or 0 in n_records_each:
        raise ValueError(
            "every signal must be non-empty and span the same number of data records "
            f"(got {sorted(n_records_each)} records of {record_duration} s)"
        )
    n_records = n_records_each.pop()

    ranges = _physical_ranges(chans, physical_ranges)
    scale = []  # (gain, offset) per channel, rebuilt from the header strings
    for lo, hi in ranges:
        gain = (float(hi) - float(lo)) / (dmax - dmin)
        scale.append((gain, float(lo) - dmin * gain))

    plus_name = "BDF+" if bdf else "EDF+"
    annots = list(annotations)
    if not edf_plus and annots:
        raise ValueError(f"annotations need {plus_name} (edf_plus=True)")
    if edf_plus and not recording_id.startswith("Startdate "):
        raise ValueError(f"a {plus_name} recording_id must start with 'Startdate '")
    if not 1985 <= start.year <= 2084 or start.microsecond:
        raise ValueError("start must lie in 1985..2084 with whole seconds (EDF dates)")
    sample_bytes = 3 if bdf else 2
    tals = _annotation_records(annots, n_records, duration_str, sample_bytes) if edf_plus else None

    signal_fields = {
        "label": labels,
        "transducer": _per_channel(transducer, n_ch, "transducer"),
        "unit": _per_channel(units, n_ch, "units"),
        "pmin": [lo for lo, _ in ranges],
        "pmax": [hi for _, hi in ranges],
        "dmin": [str(dmin)] * n_ch,
        "dmax": [str(dmax)] * n_ch,
        "prefilter": _per_channel(prefilter, n_ch, "prefilter"),
        "spr": [str(s) for s in spr],
    }
    if tals is not None:
        annotation_signal = {
            "label": _ANNOTATION_LABELS[bdf],
            "transducer": "",
            "unit": "",
            "pmin": "-1",
            "pmax": "1",
            "dmin": str(dmin),
            "dmax": str(dmax),
            "prefilter": "",
            "spr": str(tals.shape[1] // sample_bytes),
        }
        for key, value in annotation_signal.items():
            signal_fields[key].append(value)
    if bdf:
        version, reserved = b"\xffBIOSEMI", "BDF+C" if edf_plus else "24BIT"
    else:
        version, reserved = _ascii("0", 8, "version"), "EDF+C" if edf_plus else ""
    header = _header(
        signal_fields,
        version=version,
        patient_id=patient_id,
        recording_id=recording_id,
        start=start,
        reserved=reserved,
        n_records=n_records,
        duration_str=duration_str,
    )
    body = _data_records(chans, spr, scale, n_records, tals, (dmin, dmax), sample_bytes)
    _write_atomically(path, header, body)
    return path


def _per_channel(value, n_ch: int, name: str, scalar: tuple[type, ...] = (str,)) -> list:
    """Broadcast a per-file value to all channels, or check a per-channel list."""
    if isinstance(value, scalar):
        return [value] * n_ch
    values = list(value)
    if len(values) != n_ch:
        raise ValueError(f"{len(values)} {name} for {n_ch} signals")
    return values


def _format_number(x: float, rounding: str, width: int = 8) -> str:
    """The most precise decimal form of ``x`` that fits in ``width`` characters.

    Rounding is directed (up for maxima, down for minima) so a physical range
    written to the header still contains the data it was computed from.
    """
    if not math.isfinite(x) or abs(x) >= 10**width:
        raise ValueError(f"{x!r} does not fit in a {width}-character EDF header field")
    exact = Decimal(repr(float(x)))
    for places in range(width - 1, -1, -1):
        text = format(exact.quantize(Decimal(1).scaleb(-places), rounding=rounding), "f")
        if "." in text:
            text = text.rstrip("0").rstrip(".")
        if text == "-0":
            text = "0"
        if len(text) <= width:
            return text
    raise ValueError(f"{x!r} does not fit in a {width}-character EDF header field")


def _samples_per_record(sfreq: float, record_duration: float) -> int:
    """Samples of one channel in a data record; EDF needs a whole number."""
    n = sfreq * record_duration
    if not math.isfinite(n) or n < 1 or abs(n - round(n)) > 1e-9 * max(1.0, n):
        raise ValueError(
            f"sampling rate {sfreq} Hz x record duration {record_duration} s "
            "must be a whole number of samples"
        )
    return int(round(n))


def _physical_ranges(chans: list[np.ndarray], given) -> list[tuple[str, str]]:
    """Header strings ``(physical_min, physical_max)`` for each channel."""
    if given is not None:
        pairs = [given] * len(chans) if np.ndim(given) == 1 else list(given)
        if len(pairs) != len(chans):
            raise ValueError(f"{len(pairs)} physical_ranges for {len(chans)} signals")
        out = []
        for lo, hi in pairs:
            lo_s, hi_s = _format_number(lo, ROUND_FLOOR), _format_number(hi, ROUND_CEILING)
            if Decimal(lo_s) >= Decimal(hi_s):
                raise ValueError(f"physical range ({lo}, {hi}) must have min < max")
            out.append((lo_s, hi_s))
        for c in chans:
            _check_finite(c)
        return out
    out = []
    for c in chans:
        peak = max(abs(float(c.max())), abs(float(c.min())))
        _check_finite(c, peak)
        # A flat-zero channel would give min == max, an invalid header.
        hi = _format_number(peak if peak > 0 else 1.0, ROUND_CEILING, width=7)
        out.append(("-" + hi, hi))
    return out


def _check_finite(c: np.ndarray, peak: float | None = None) -> None:
    """Reject NaN/inf, which have no digital representation."""
    if peak is None:
        peak = max(abs(float(c.max())), abs(float(c.min())))
    if not math.isfinite(peak):
        raise ValueError("signals must be finite")


def _tal(onset: Decimal | float, text: str = "", duration: float | None = None) -> bytes:
    """One EDF+ time-stamped annotation list (TAL)."""
    onset_s = _plain_decimal(onset)
    sign = "" if onset_s.startswith("-") else "+"
    dur = "" if duration is None else "\x15" + _plain_decimal(duration)
    return f"{sign}{onset_s}{dur}\x14{text}\x14\x00".encode()


def _plain_decimal(x: Decimal | float) -> str:
    """Exact decimal text without exponent (EDF+ forbids ``1e-05``)."""
    if isinstance(x, Decimal):
        text = format(x.normalize(), "f")
    else:
        text = np.format_float_positional(float(x), trim="-")
    return "0" if text in ("-0", "") else text


def _annotation_records(
    annotations: list[Annotation], n_records: int, duration_str: str, sample_bytes: int = 2
) -> np.ndarray:
    """``(n_records, n_bytes)`` uint8 contents of the EDF+/BDF+ annotation signal."""
    step = Decimal(duration_str)
    per_record: list[list[bytes]] = [[_tal(step * i)] for i in range(n_records)]
    for onset, duration, text in sorted(annotations, key=lambda a: float(a[0])):
        onset, duration = float(onset), float(duration)
        if not (math.isfinite(onset) and math.isfinite(duration) and duration >= 0):
            raise ValueError(f"invalid annotation timing ({onset}, {duration})")
        if any(ord(ch) < 32 for ch in text):
            raise ValueError(f"annotation text {text!r} contains control characters")
        record = min(max(int(onset // float(step)), 0), n_records - 1)
        per_record[record].append(_tal(onset, text, duration))
    joined = [b"".join(r) for r in per_record]
    n_bytes = max(len(r) for r in joined)
    n_bytes += -n_bytes % sample_bytes  # whole 16-bit (EDF) or 24-bit (BDF) samples
    flat = np.frombuffer(b"".join(r.ljust(n_bytes, b"\x00") for r in joined), np.uint8)
    return flat.reshape(n_records, n_bytes)


def _header(
    fields: dict[str, list[str]],
    *,
    version: bytes,
    patient_id: str,
    recording_id: str,
    start: datetime,
    reserved: str,
    n_records: int,
    duration_str: str,
) -> bytes:
    """Fixed-width ASCII header: 256 bytes plus 256 per signal."""
    ns = len(fields["label"])
    parts = [
        version,
        _ascii(patient_id, 80, "patient_id"),
        _ascii(recording_id, 80, "recording_id"),
        _ascii(start.strftime("%d.%m.%y"), 8, "startdate"),
        _ascii(start.strftime("%H.%M.%S"), 8, "starttime"),
        _ascii(str(256 * (ns + 1)), 8, "header bytes"),
        _ascii(reserved, 44, "reserved"),
        _ascii(str(n_records), 8, "number of data records"),
        _ascii(duration_str, 8, "record duration"),
        _ascii(str(ns), 4, "number of signals"),
    ]
    widths = {
        "label": 16,
        "transducer": 80,
        "unit": 8,
        "pmin": 8,
        "pmax": 8,
        "dmin": 8,
        "dmax": 8,
        "prefilter": 80,
        "spr": 8,
    }
    for key, width in widths.items():
        parts.extend(_ascii(v, width, key) for v in fields[key])
    parts.append(b" " * (32 * ns))
    header = b"".join(parts)
    assert len(header) == 256 * (ns + 1)
    return header


def _ascii(value: str, width: int, name: str) -> bytes:
    """Space-padded printable-ASCII field, as the EDF header requires."""
    if len(value) > width or any(not 32 <= ord(ch) <= 126 for ch in value):
        raise ValueError(f"{name} {value!r} must be printable ASCII of at most {width} characters")
    return value.ljust(width).encode("ascii")


def _data_records(
    chans: list[np.ndarray],
    spr: list[int],
    scale: list[tuple[float, float]],
    n_records: int,
    tals: np.ndarray | None,
    digital_range: tuple[int, int] = (DIGITAL_MIN, DIGITAL_MAX),
    sample_bytes: int = 2,
) -> Iterator[np.ndarray]:
    """Yield blocks of data records as uint8 arrays of little-endian samples.

    EDF samples are int16; BDF samples (``sample_bytes=3``) are the low three
    bytes of little-endian int32, i.e. 24-bit two's complement. Working block
    by block keeps peak memory at the input plus one block.
    """
    dmin, dmax = digital_range
    widths = spr + ([tals.shape[1] // sample_bytes] if tals is not None else [])
    record_len = sum(widths)
    per_block = max(1, _BLOCK_BYTES // (sample_bytes * record_len))
    for r0 in range(0, n_records, per_block):
        r1 = min(r0 + per_block, n_records)
        nr = r1 - r0
        block = np.empty((nr, record_len * sample_bytes), dtype=np.uint8)
        samples = block.view("<i2") if sample_bytes == 2 else block.reshape(nr, record_len, 3)
        col = 0
        for sig, n, (gain, offset) in zip(chans, spr, scale):
            seg = sig[r0 * n : r1 * n].astype(np.float64)  # always a fresh buffer
            if seg.size < nr * n:  # last record: pad with physical zero
                seg = np.concatenate([seg, np.zeros(nr * n - seg.size)])
            seg -= offset
            seg /= gain
            np.rint(seg, out=seg)
            np.clip(seg, dmin, dmax, out=seg)
            if sample_bytes == 2:
                samples[:, col : col + n] = seg.reshape(nr, n)
            else:
                digital = seg.astype("<i4").view(np.uint8).reshape(nr, n, 4)
                samples[:, col : col + n] = digital[:, :, :3]
            col += n
        if tals is not None:
            block[:, col * sample_bytes :] = tals[r0:r1]
        yield block


def _write_atomically(path: Path, header: bytes, blocks: Iterable[np.ndarray]) -> None:
    """Write to a temporary sibling, fsync, then ``os.replace`` onto ``path``."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "xb") as f:
            f.write(header)
            for block in blocks:
                f.write(memoryview(block).cast("B"))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
