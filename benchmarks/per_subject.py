#!/usr/bin/env python3
"""Why a detector fails where it fails: per-subject ranking, calibration and the effect of centring.

Reads the out-of-fold predictions of finished group-level runs (``RUN/group/predictions.tsv`` and
``RUN/group/metrics_subjects.tsv``) and prints one table per run with, for every test subject: its seizure
windows, the window ROC-AUC and PR-AUC of the model's raw probability, of the centred probability and of the
smoothed scores the threshold applies to, the median raw probability of its background and of its seizure
windows (calibration across subjects: a threshold is shared by all of them), and its event sensitivity and
false alarms per 24 h.

    python benchmarks/per_subject.py ablations/neurocare ablations/features [--json out.json]

A subject ranked well within its own recordings (high ROC-AUC) whose seizure windows stay below the other
subjects' background (low seizure median against high background medians) is a calibration failure that
centring can repair; a low ROC-AUC is a representation failure no threshold repairs.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np

from neurocare_bids.evaluation.metrics import ranking_metrics


def subject_rows(run: Path) -> list[dict]:
    """One row per test subject of a finished group-level run."""
    columns: dict[str, list] = {}
    with open(run / "group" / "predictions.tsv", newline="") as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            for key, value in row.items():
                columns.setdefault(key, []).append(value)
    subject = np.array(columns["participant_id"])
    label = np.array(columns["label"], dtype=int)
    scores = {name: np.array(columns[name], dtype=float)
              for name in ("probability", "detection_probability", "smoothed_probability")}
    events = {}
    with open(run / "group" / "metrics_subjects.tsv", newline="") as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            events[row[next(iter(row))]] = row
    rows = []
    for sid in sorted(set(subject)):
        pick = subject == sid
        y = label[pick]
        row = {"subject": sid, "seizure_windows": int(y.sum()), "windows": int(pick.sum())}
        for name, short in (("probability", "raw"), ("detection_probability", "centred"),
                            ("smoothed_probability", "smoothed")):
            r = ranking_metrics(y, scores[name][pick])
            row[f"roc_{short}"], row[f"pr_{short}"] = r["roc_auc"], r["pr_auc"]
        raw = scores["probability"][pick]
        row["median_background"] = float(np.median(raw[y == 0]))
        row["median_seizure"] = float(np.median(raw[y == 1])) if y.any() else None
        ev = events.get(sid, {})
        for key in ("sensitivity", "fp_per_24h"):
            found = [v for k, v in ev.items() if k.endswith(key)]
            row[key] = float(found[0]) if found and found[0] not in ("", "n/a", "None") else None
        rows.append(row)
    return rows


def markdown(run: Path, rows: list[dict]) -> str:
    keys = ["subject", "seizure_windows", "roc_raw", "roc_centred", "roc_smoothed", "pr_raw", "pr_smoothed",
            "median_background", "median_seizure", "sensitivity", "fp_per_24h"]

    def cell(v) -> str:
        return "n/a" if v is None else f"{v:.3g}" if isinstance(v, float) else str(v)

    lines = [f"### {run}", "", "| " + " | ".join(keys) + " |", "|" + " --- |" * len(keys)]
    lines += ["| " + " | ".join(cell(r[k]) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="output folders of finished group-level runs")
    parser.add_argument("--json", type=Path, help="also write every table as JSON")
    args = parser.parse_args()
    found = {str(run): subject_rows(run) for run in args.runs}
    for run, rows in found.items():
        print(markdown(Path(run), rows), end="\n\n")
    if args.json:
        args.json.write_text(json.dumps(found, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
