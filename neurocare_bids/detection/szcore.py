"""SzCORE hypothesis files: one ``events.tsv`` per recording, readable by epilepsy2bids.

szcore-evaluation pairs each reference ``events.tsv`` with the hypothesis file at the same relative
path and compares 1 Hz masks, so a hypothesis must (1) sit at that path, (2) carry the same
``recordingDuration`` (masks of different lengths make it score the file as all background), (3) use
an event type epilepsy2bids knows (anything else crashes its ``getMask``), and (4) have at least one row
(an empty file is an ``IndexError``, scored as all background): a ``bckg`` row stands for "no seizure".
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path, PurePosixPath

import numpy as np

from ..io.fsutils import atomic_write
from .postprocess import Event, as_intervals

COLUMNS = ("onset", "duration", "eventType", "confidence", "channels", "dateTime", "recordingDuration")
DATETIME_FORMAT = "%Y-%m-%d %H:%M:%S"  # epilepsy2bids' format


def _centi(seconds: float) -> int:
    return int(round(float(seconds) * 100))


def _fmt(centi: int) -> str:
    return f"{centi // 100}.{centi % 100:02d}"


def tsv_centiseconds(onsets, offsets, recording_duration: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Written onsets and durations in hundredths of a second, in time order, with their input indices.

    Onset and offset are rounded (as ``round(x * 100)``), in integers, and the offset is clipped to the
    written recording duration, so no written event can end past ``recordingDuration``; events left
    without duration are dropped.
    """
    rec = _centi(recording_duration)
    on = np.maximum(np.rint(np.asarray(onsets, dtype=float) * 100), 0).astype(np.int64)
    off = np.minimum(np.rint(np.asarray(offsets, dtype=float) * 100), rec).astype(np.int64)
    index = np.flatnonzero(off > on)
    dur = off[index] - on[index]
    order = np.lexsort((dur, on[index]))
    return on[index][order], dur[order], index[order]


def tsv_arrays(onsets, offsets, recording_duration: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Onsets and ``onset + duration`` exactly as a reader parses them back from our file, and indices.

    ``float("1234.56")`` and ``123456 / 100`` are both the double nearest to the decimal, so this
    needs no text round trip.
    """
    on, dur, index = tsv_centiseconds(onsets, offsets, recording_duration)
    start = on / 100
    return start, start + dur / 100, index


def tsv_intervals(events: Iterable, recording_duration: float) -> list[tuple[float, float]]:
    """``(onset, onset + duration)`` pairs as a reader parses them back from the file we would write."""
    pairs = np.array(as_intervals(events), dtype=float).reshape(-1, 2)
    start, end, _ = tsv_arrays(pairs[:, 0], pairs[:, 1], recording_duration)
    return list(zip(start.tolist(), end.tolist()))


def format_events_tsv(events: Sequence, recording_duration: float, date_time: datetime | None = None) -> str:
    """The TSV text: one ``sz`` row per event, or a single ``bckg`` row when there is none."""
    rec = _centi(recording_duration)
    if rec <= 0:
        raise ValueError(f"recording duration must be positive, got {recording_duration}")
    when = date_time.strftime(DATETIME_FORMAT) if date_time is not None else "n/a"
    tail = f"n/a\t{when}\t{_fmt(rec)}"
    events = list(events)
    lines = ["\t".join(COLUMNS)]
    pairs = np.array(as_intervals(events), dtype=float).reshape(-1, 2)
    confidence = [float(getattr(e, "confidence", math.nan)) for e in events]
    for a, d, i in zip(*tsv_centiseconds(pairs[:, 0], pairs[:, 1], recording_duration)):
        conf = confidence[i]
        conf_txt = f"{min(max(conf, 0.0), 1.0):.4f}" if math.isfinite(conf) else "n/a"
        lines.append(f"{_fmt(int(a))}\t{_fmt(int(d))}\tsz\t{conf_txt}\t{tail}")
    if len(lines) == 1:
        lines.append(f"0.00\t{_fmt(rec)}\tbckg\tn/a\t{tail}")
    return "\n".join(lines) + "\n"


def write_events_tsv(path: str | Path, events: Sequence, recording_duration: float,
                     date_time: datetime | None = None) -> None:
    """Write a SzCORE hypothesis file atomically (a killed run never leaves half a file to be scored)."""
    atomic_write(path, format_events_tsv(events, recording_duration, date_time))


def read_events_tsv(path: str | Path) -> tuple[list[Event], float]:
    """Seizure events (every ``sz*`` type) and ``recordingDuration`` of a SzCORE ``events.tsv``.

    Parsed with pandas as epilepsy2bids does, so onsets and durations are the very floats it masks.
    """
    import pandas as pd

    df = pd.read_csv(path, sep="\t")
    if df.empty:
        raise ValueError(f"{path}: no rows")
    duration = float(df["recordingDuration"].iloc[0])
    events = []
    for on, dur, kind, conf in zip(df["onset"], df["duration"], df["eventType"].astype(str),
                                   df["confidence"] if "confidence" in df else [math.nan] * len(df)):
        if kind.startswith("sz"):
            events.append(Event(float(on), float(dur), float(conf)))
    return events, duration


def export_tree(out_root: str | Path, items: Iterable[tuple], *, bids_dir: str | Path | None = None
                ) -> list[Path]:
    """Write each hypothesis at ``out_root / relpath``, the reference ``events.tsv``'s path in BIDS_DIR.

    ``items``: ``(relpath, events, recording_duration, date_time)``. With ``bids_dir`` the reference
    file's own ``recordingDuration`` (and dateTime, when none is given) is written instead, so that the
    scorer's mask lengths agree even when our duration differs from theirs by a rounding.
    """
    out_root = Path(out_root)
    written = []
    for relpath, events, duration, date_time in items:
        rel = PurePosixPath(Path(relpath).as_posix())
        if rel.is_absolute() or ".." in rel.parts or not rel.parts:
            raise ValueError(f"not a path relative to the BIDS dataset: {relpath}")
        if bids_dir is not None and (ref := Path(bids_dir, rel)).is_file():
            ref_duration, date_time = _reference_header(ref, date_time)
            duration = ref_duration or duration
        target = out_root / rel
        write_events_tsv(target, events, duration, date_time)
        written.append(target)
    return written


def _reference_header(path: Path, date_time: datetime | None) -> tuple[float | None, datetime | None]:
    """The reference file's recordingDuration (None when unreadable) and dateTime."""
    import pandas as pd

    try:
        row = pd.read_csv(path, sep="\t", nrows=1).iloc[0]
        duration = float(row["recordingDuration"])
    except (IndexError, KeyError, ValueError, pd.errors.ParserError, pd.errors.EmptyDataError):
        return None, date_time
    if date_time is None and isinstance(row.get("dateTime"), str):
        try:
            date_time = datetime.strptime(row["dateTime"], DATETIME_FORMAT)
        except ValueError:
            pass
    return (duration if math.isfinite(duration) and duration > 0 else None), date_time
