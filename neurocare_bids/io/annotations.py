"""Seizure annotations: events.tsv → seizure intervals → per-window labels.

Every event whose type starts with a seizure prefix (``sz``, ``sz_foc_ia``, ``sz_gen_m`` ...) is a
seizure. The seed code mapped only ``sz_foc_ia``, so 14 of Siena's 47 seizures were trained as
background; here the whole HED-SCORE family counts.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..config import InputConfig
from ..errors import DataError


@dataclass
class SeizureAnnotations:
    intervals: np.ndarray  # (k, 2) sorted, merged [start, stop) in seconds
    event_count: int  # seizure events read (before merging)
    warnings: list[str] = field(default_factory=list)


def read_seizures(path: Path | None, recording_duration: float, cfg: InputConfig) -> SeizureAnnotations:
    """Read the seizures of one recording. A missing file means no annotated seizure (with a warning)."""
    if path is None:
        return SeizureAnnotations(np.zeros((0, 2)), 0,
                                  ["no events.tsv: every window is labelled background"])
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.reader(fh, delimiter="\t"))
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path.name}: cannot read events file ({exc})") from None
    if not rows or not any(cell.strip() for cell in rows[0]):
        raise DataError(f"{path.name}: empty events file (a header with onset and duration is required)")
    header = [h.strip() for h in rows[0]]
    for required in ("onset", "duration"):
        if required not in header:
            raise DataError(f"{path.name}: no '{required}' column (columns: {', '.join(header)})")
    type_column = next((c for c in cfg.event_type_columns if c in header), None)
    if type_column is None:
        raise DataError(f"{path.name}: no event type column; expected one of "
                        f"{', '.join(cfg.event_type_columns)} (columns: {', '.join(header)})")
    i_onset, i_duration, i_type = header.index("onset"), header.index("duration"), header.index(type_column)
    prefixes = tuple(p.lower() for p in cfg.seizure_prefixes)
    background = {t.lower() for t in cfg.background_types}
    seizures, warnings, unknown = [], [], {}
    outside = clipped = 0
    for line_no, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise DataError(f"{path.name} line {line_no}: {len(row)} columns, header has {len(header)}")
        kind = row[i_type].strip()
        is_seizure = kind.lower().startswith(prefixes)
        if not is_seizure:
            if kind.lower() not in background:
                unknown[kind] = unknown.get(kind, 0) + 1
            continue
        onset = _number(row[i_onset], "onset", path, line_no)
        duration = _number(row[i_duration], "duration", path, line_no)
        if duration < 0:
            raise DataError(f"{path.name} line {line_no}: negative duration {duration:g}")
        start, stop = onset, onset + duration
        if stop <= 0 or start >= recording_duration:
            outside += 1
            continue
        if start < 0 or stop > recording_duration:
            clipped += 1
            start, stop = max(start, 0.0), min(stop, recording_duration)
        seizures.append((start, stop))
    for kind, count in sorted(unknown.items()):
        warnings.append(f"{path.name}: {count} event(s) of unknown type '{kind}' ignored (not a seizure)")
    if outside:
        warnings.append(f"{path.name}: {outside} seizure event(s) outside the recording "
                        f"(0-{recording_duration:g} s) ignored")
    if clipped:
        warnings.append(f"{path.name}: {clipped} seizure event(s) extend past the recording; clipped")
    return SeizureAnnotations(merge_intervals(seizures), len(seizures), warnings)


def _number(text: str, column: str, path: Path, line_no: int) -> float:
    try:
        value = float(text)
    except ValueError:
        raise DataError(f"{path.name} line {line_no}: {column} '{text}' is not a number") from None
    if not math.isfinite(value):
        raise DataError(f"{path.name} line {line_no}: {column} '{text}' is not a finite number")
    return value


def merge_intervals(intervals) -> np.ndarray:
    """Sort and merge overlapping or touching ``[start, stop)`` intervals."""
    merged: list[list[float]] = []
    for start, stop in sorted(intervals):
        if stop <= start:
            continue
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], stop)
        else:
            merged.append([start, stop])
    return np.array(merged, dtype=float).reshape(-1, 2)


def seizure_fraction(onsets: np.ndarray, duration: float, intervals: np.ndarray) -> np.ndarray:
    """Fraction of each window ``[onset, onset + duration)`` covered by the (merged) intervals.

    Uses the cumulative seizure time ``F(t)``, piecewise linear between interval edges, so each
    window's overlap is ``F(onset + duration) - F(onset)``: exact, vectorised, no per-sample mask.
    """
    onsets = np.asarray(onsets, dtype=float)
    if len(intervals) == 0:
        return np.zeros(len(onsets))
    edges = intervals.ravel()
    cumulative = np.concatenate([[0.0], np.cumsum(intervals[:, 1] - intervals[:, 0])])
    knots_y = np.empty(len(edges))
    knots_y[0::2] = cumulative[:-1]
    knots_y[1::2] = cumulative[1:]

    def f(t):
        return np.interp(t, edges, knots_y, left=0.0, right=cumulative[-1])

    return (f(onsets + duration) - f(onsets)) / duration


def window_labels(fractions: np.ndarray, threshold: float) -> np.ndarray:
    """1 where at least ``threshold`` of the window is seizure (a small tolerance absorbs rounding)."""
    return (fractions >= threshold - 1e-9).astype(np.int64)
