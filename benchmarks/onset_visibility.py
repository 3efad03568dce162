#!/usr/bin/env python
"""How soon after its annotated onset does each generated seizure stand out from the background?

The alarm-latency target (issue 15: median <= 10 s after the annotated onset) is met on the demo and missed on
the hard benchmark. This script separates what the data allow from what the detector does: it generates a demo
dataset in memory with the same seeds as ``neurocare-bids demo-data`` (nothing is written), keeps each seizure's
own contribution to the signal apart from the rest, filters both as the participant level does (0.5-30 Hz,
Butterworth order 4, zero phase), and finds, on the channel where the seizure is strongest, the end of the first
``--window``-second window (1-s steps) from the onset in which the seizure's RMS reaches ``--ratio`` times the
RMS of everything else in that window (the background, the artefacts and the mimics). That end is the earliest
moment a detector that sees one window could judge the seizure "as large as the background": a reference for
the latency metric, which is measured the same way (signal needed from the onset), not a bound on it (a detector
can recognise a rhythm below the background's amplitude, or need more than one window).

It prints, per onset pattern and over all seizures, the median (the lower middle value of an even count; a seizure
that never reaches a ratio counts as the latest) and range of those times at ratios 0.5, 1 and 2,
and the share of seizures that reach each within 10 s; ``--json FILE`` also writes every seizure's times.

Usage::

    python benchmarks/onset_visibility.py --difficulty hard              # the hard design data (seed 42)
    python benchmarks/onset_visibility.py --difficulty hard --seed 2027  # the held-out variant
    python benchmarks/onset_visibility.py                                # the demo
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
from scipy import signal

from neurocare_bids.config import PreprocessingConfig
from neurocare_bids.io import demo
from neurocare_bids.preprocessing.filters import design_plan

RATIOS = (0.5, 1.0, 2.0)
TARGET_S = 10.0  # issue 15's median-latency target
FS = 256.0  # make_demo_dataset's default rate, used by demo-data


def generate(difficulty: str, seed: int, n_subjects: int | None, recordings: int | None,
             duration: float | None) -> list[dict]:
    """The dataset's recordings in memory: signal, seizures, each seizure's own signal and its onset pattern.

    ``make_demo_dataset`` runs unchanged (the same random draws, so the same signals as on disk); its EDF writer is
    replaced by one that keeps the array, and each seizure's addition is recorded as the difference it makes, with
    the onset pattern of the subject it is drawn for ("standard" outside the hard variant).
    """
    contributions: list[tuple[np.ndarray, str]] = []
    signals: list[np.ndarray] = []
    add_names = ("_add_hard_seizure", "_add_seizure")
    originals = {name: getattr(demo, name) for name in add_names}
    original_writer = demo.write_edf

    def recording(add):
        def wrapped(rng, eeg, subject, kind, start, n, *args, **kwargs):
            before = eeg[:, start:start + n].copy()
            add(rng, eeg, subject, kind, start, n, *args, **kwargs)
            pattern = subject.hard.onset if subject.hard is not None else "standard"
            contributions.append((eeg[:, start:start + n] - before, pattern))
        return wrapped

    def keep(path, data, *args, **kwargs):
        signals.append(np.asarray(data, dtype=float))
        return Path(path)

    try:
        for name in add_names:
            setattr(demo, name, recording(originals[name]))
        demo.write_edf = keep
        with tempfile.TemporaryDirectory() as tmp:
            described = demo.make_demo_dataset(Path(tmp) / "bids", n_subjects=n_subjects,
                                               recordings_per_subject=recordings, recording_duration=duration,
                                               seed=seed, difficulty=difficulty)
    finally:
        for name, func in originals.items():
            setattr(demo, name, func)
        demo.write_edf = original_writer

    out, used = [], 0
    for rec, data in zip(described, signals):
        n = len(rec["seizures"])
        added = contributions[used:used + n]
        out.append({**rec, "data": data, "contributions": [a for a, _ in added], "patterns": [p for _, p in added]})
        used += n
    if used != len(contributions):
        raise RuntimeError("seizure contributions do not match the described seizures")
    return out


def visibility(rec: dict, window_s: float, ratios=RATIOS) -> list[dict]:
    """Per seizure of one recording: its strongest channel and the window ends (s after the onset) at which its
    RMS first reaches each ratio of the rest's RMS (None: never during the seizure)."""
    data, fs = rec["data"], FS
    # The participant level's band-pass (its default edges and order), at the generator's rate, without the notches
    band = dataclasses.replace(PreprocessingConfig(), sfreq=fs, notch=False)
    sos = design_plan(fs, band, None).sos
    win = int(window_s * fs)
    rows = []
    for (onset, duration, _), added, pattern in zip(rec["seizures"], rec["contributions"], rec["patterns"]):
        start, n = int(onset * fs), added.shape[1]
        added = added - added.mean(axis=0, keepdims=True)  # the generator re-references to the common average
        pad = int(60 * fs)  # filter edge effects stay outside the seizure
        a, b = max(0, start - pad), min(data.shape[1], start + n + pad)
        seizure = np.zeros((data.shape[0], b - a))
        seizure[:, start - a:start - a + n] = added
        rest = data[:, a:b] - seizure
        seizure, rest = signal.sosfiltfilt(sos, seizure, axis=1), signal.sosfiltfilt(sos, rest, axis=1)
        lo, hi = start - a, start - a + n
        channel = int(np.argmax((seizure[:, lo:hi] ** 2).sum(axis=1)))
        found: dict[float, float | None] = {r: None for r in ratios}
        for end in range(lo + win, hi + 1, int(fs)):
            s = np.sqrt(np.mean(seizure[channel, end - win:end] ** 2))
            r_ = np.sqrt(np.mean(rest[channel, end - win:end] ** 2))
            for ratio in ratios:
                if found[ratio] is None and s >= ratio * r_:
                    found[ratio] = (end - lo) / fs
            if all(v is not None for v in found.values()):
                break
        rows.append({"subject": rec["subject"], "run": rec["run"], "onset": onset, "duration": duration,
                     "pattern": pattern, "channel": demo.CHANNELS[channel],
                     **{f"ratio_{r:g}": found[r] for r in ratios}})
    return rows


def summarise(rows: list[dict], ratios=RATIOS) -> list[str]:
    lines = ["| onset pattern | seizures | " + " | ".join(
        f"ratio {r:g}: median (range) s, share <= {TARGET_S:g} s" for r in ratios) + " |",
        "| --- | ---: |" + " ---: |" * len(ratios)]
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(row["pattern"], []).append(row)
    for name, group in [*sorted(groups.items()), ("all", rows)]:
        cells = []
        for r in ratios:
            times = [row[f"ratio_{r:g}"] for row in group]
            reached = sorted(t for t in times if t is not None)
            # Seizures that never reach the ratio count as later than any that do (the median stays defined).
            ranked = reached + [float("inf")] * (len(times) - len(reached))
            median = statistics.median_low(ranked) if ranked else None
            within = sum(t <= TARGET_S for t in reached) / len(times)
            text = "never" if median in (None, float("inf")) else f"{median:.0f}"
            span = f"{reached[0]:.0f}-{reached[-1]:.0f}" if reached else "-"
            never = len(times) - len(reached)
            cells.append(f"{text} ({span}{f', {never} never' if never else ''}), {within:.0%}")
        lines.append(f"| {name} | {len(group)} | " + " | ".join(cells) + " |")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--difficulty", choices=demo.DIFFICULTIES, default="standard")
    p.add_argument("--seed", type=int, default=42, help="the generator's seed (demo-data --seed; default 42)")
    p.add_argument("--subjects", type=int, help="subjects (default: the difficulty's)")
    p.add_argument("--recordings", type=int, help="recordings per subject (default: the difficulty's)")
    p.add_argument("--duration", type=float, help="recording length in s (default: the difficulty's)")
    p.add_argument("--window", type=float, default=4.0, help="window length in s (default 4, the model's)")
    p.add_argument("--json", type=Path, metavar="FILE", help="also write every seizure's times as JSON")
    args = p.parse_args(argv)

    recordings = generate(args.difficulty, args.seed, args.subjects, args.recordings, args.duration)
    rows = [row for rec in recordings for row in visibility(rec, args.window)]
    print(f"{args.difficulty} demo, seed {args.seed}: {len(rows)} seizures in {len(recordings)} recordings; "
          f"{args.window:g}-s windows on each seizure's strongest channel, 0.5-30 Hz\n")
    print("\n".join(summarise(rows)))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
