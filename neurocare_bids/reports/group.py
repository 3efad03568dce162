"""``OUT/group.html``: the cross-validation as a person checks it, from the group level's files on disk.

Every number in the page is read from ``group/metrics.json`` (and the fold files it summarises) and shown
rounded to three decimals; the curves are recomputed from ``group/predictions.tsv``, the out-of-fold
window scores those metrics were computed from.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..evaluation.metrics import MERGE_BELOW, SPLIT_ABOVE, TOLERANCE_END, TOLERANCE_START
from . import figures
from .readers import iter_tsv, read_json, read_tsv, source_relpath
from .render import write_html

log = logging.getLogger("neurocare")

ABLATIONS = "ablations.tsv"
MAX_CURVE_POINTS = 2000
# Points per line that all the probability traces of one page share: each trace gets an equal share, between
# MIN_TRACE_POINTS and figures.MAX_POINTS (about one min/max pair per pixel of the 690-pixel-wide plot). Siena
# (41 recordings, 128 h) keeps full resolution; CHB-MIT (686 recordings, 980 h) gets 218 points per trace (109
# min/max pairs: a one-window peak still shows), so its group.html is about 14 MB instead of 55.
TRACE_PAGE_POINTS = 150_000
MIN_TRACE_POINTS = 200


def build_group_report(out_dir: Path, methods=None) -> Path:
    """Write ``OUT/group.html`` from ``OUT/group/`` (needs ``metrics.json``: the group level's aggregation)."""
    group_dir = out_dir / "group"
    metrics = read_json(group_dir / "metrics.json")
    if metrics is None:
        raise FileNotFoundError(f"{group_dir / 'metrics.json'} is missing or unreadable: the group level has not "
                                "aggregated its folds yet")
    fold_of = {r["participant_id"]: int(r["fold"]) for r in read_tsv(group_dir / "folds.tsv")}
    folds = _folds(group_dir, metrics)
    recordings = _recordings(out_dir, set(fold_of))
    predictions = _predictions(group_dir / "predictions.tsv")
    if methods is None:
        from .citation import saved_methods

        methods = saved_methods(out_dir)
    context = {
        "title": "group", "metrics": metrics, "folds": folds, "fold_of": fold_of,
        "dataset": _dataset(recordings, fold_of), "recordings": recordings,
        "curves": _curves(predictions, fold_of, metrics),
        "confusion_figure": figures.confusion(metrics["window"]["confusion_matrix"], "confusion"),
        "latency_figure": _latency_figure(metrics),
        "traces": _traces(out_dir, recordings, predictions, folds, fold_of),
        "training": _training(group_dir, folds),
        "ablations": read_tsv(group_dir / ABLATIONS) if (group_dir / ABLATIONS).is_file() else None,
        "card": read_json(group_dir / "model" / "model_card.json"),
        "szcore": {"tolerance_start": TOLERANCE_START, "tolerance_end": TOLERANCE_END, "merge_below": MERGE_BELOW,
                   "split_above": SPLIT_ABOVE},
        "methods": methods,
    }
    return write_html(out_dir / "group.html", "group.html.j2", context)


def _latency_figure(metrics: dict):
    """The histogram of the detected seizures' latencies (None when none was detected, or metrics.json was
    written before latencies were measured)."""
    values = [row["latency_s"] for row in metrics.get("latencies", [])]
    return figures.latency_histogram(values, "latency") if values else None


def _folds(group_dir: Path, metrics: dict) -> list[dict]:
    out = []
    for row in metrics["folds"]:
        summary = read_json(group_dir / f"fold-{row['fold']}" / "fold.json") or {}
        out.append({**row, "validation": [f"sub-{s}" for s in summary.get("validation", [])],
                    "train": [f"sub-{s}" for s in summary.get("train", [])], "epochs": summary.get("epochs"),
                    "compute": _compute_text(summary.get("compute"))})
    return out


def _compute_text(compute: dict | None) -> str:
    """A fold's cost as the folds table shows it: ``12.5 min (348 windows/s)``; n/a for folds trained before
    fold.json recorded it."""
    if not compute:
        return "n/a"
    text = f"{compute['fit_seconds'] / 60:.1f} min"
    rate = compute.get("training_windows_per_second")
    return f"{text} ({rate:,.0f} windows/s)" if rate else text


def _recordings(out_dir: Path, participants: set[str]) -> list[dict]:
    recordings = []
    for sidecar in sorted(out_dir.glob("sub-*/**/*_desc-preproc_windows.json")):
        participant = sidecar.relative_to(out_dir).parts[0]
        meta = read_json(sidecar)
        if meta is None or participant not in participants:
            continue
        source = source_relpath(meta)
        stem = sidecar.name[: -len("_desc-preproc_windows.json")]
        recordings.append({"participant_id": participant, "source": source, "stem": stem,
                           "duration": float(meta["RecordingDuration"]), "windows": int(meta["WindowCount"]),
                           "seizure_windows": int(meta["SeizureWindowCount"]),
                           "seizures": [tuple(s) for s in meta.get("SeizureIntervals", [])],
                           "window_duration": float(meta["WindowDuration"]),
                           "events_tsv": sidecar.with_name(f"{stem}_desc-neurocare_events.tsv")})
    return recordings


def _dataset(recordings: list[dict], fold_of: dict[str, int]) -> dict:
    subjects = {}
    for r in recordings:
        s = subjects.setdefault(r["participant_id"], {"participant_id": r["participant_id"], "recordings": 0,
                                                      "duration": 0.0, "seizures": 0, "windows": 0,
                                                      "seizure_windows": 0, "fold": fold_of.get(r["participant_id"])})
        s["recordings"] += 1
        s["duration"] += r["duration"]
        s["seizures"] += len(r["seizures"])
        s["windows"] += r["windows"]
        s["seizure_windows"] += r["seizure_windows"]
    rows = sorted(subjects.values(), key=lambda s: s["participant_id"])
    total = {key: sum(s[key] for s in rows) for key in ("recordings", "duration", "seizures", "windows",
                                                        "seizure_windows")}
    total["subjects"] = len(rows)
    total["with_seizures"] = sum(1 for s in rows if s["seizures"])
    return {"subjects": rows, "total": total}


def _predictions(path: Path) -> dict[str, dict]:
    """Out-of-fold predictions per recording, in window order: onsets, labels, detection probabilities (centred
    per recording with postprocessing.centre) and scores (those smoothed: what the threshold applies to and the
    window metrics are computed from; the detection probabilities in files written before they existed)."""
    out: dict[str, dict] = {}
    for row in iter_tsv(path):  # streamed: 980 h of windows are 1.8 million rows, a list of dicts ~3 GB
        item = out.setdefault(row["recording"], {"participant_id": row["participant_id"], "onsets": [], "labels": [],
                                                 "probs": [], "scores": []})
        item["onsets"].append(float(row["onset"]))
        item["labels"].append(int(row["label"]))
        item["probs"].append(float(row.get("detection_probability") or row["probability"]))
        item["scores"].append(float(row.get("smoothed_probability") or item["probs"][-1]))
    for item in out.values():
        order = np.argsort(item["onsets"], kind="stable")
        for key in ("onsets", "labels", "probs", "scores"):
            item[key] = np.asarray(item[key])[order]
    return out


def trace_points(n_traces: int) -> int:
    """Points per line of each of ``n_traces`` probability traces on one page (see TRACE_PAGE_POINTS)."""
    return int(min(figures.MAX_POINTS, max(MIN_TRACE_POINTS, TRACE_PAGE_POINTS // max(1, n_traces))))


def _thin(*arrays: np.ndarray) -> list[np.ndarray]:
    n = len(arrays[0])
    if n <= MAX_CURVE_POINTS:
        return list(arrays)
    keep = np.unique(np.linspace(0, n - 1, MAX_CURVE_POINTS).round().astype(int))
    return [a[keep] for a in arrays]


def _curves(predictions: dict[str, dict], fold_of: dict[str, int], metrics: dict) -> dict:
    from sklearn.metrics import precision_recall_curve, roc_curve

    if not predictions:
        return {"note": "group/predictions.tsv is missing: no curves"}
    by_fold: dict[int, list[dict]] = {}
    for item in predictions.values():
        by_fold.setdefault(fold_of.get(item["participant_id"], 0), []).append(item)
    fold_metrics = {row["fold"]: row["window"] for row in metrics["folds"]}
    groups = [("all folds (pooled)", list(predictions.values()), metrics["window"], True)]
    groups += [(f"fold {k}", items, fold_metrics.get(k, {}), False) for k, items in sorted(by_fold.items())]
    curves, skipped = [], []
    for label, items, window, pooled in groups:
        y = np.concatenate([i["labels"] for i in items])
        p = np.concatenate([i["scores"] for i in items])
        if not 0 < y.sum() < len(y):
            skipped.append(label)
            continue
        fpr, tpr, _ = roc_curve(y, p)
        precision, recall, _ = precision_recall_curve(y, p)
        fpr, tpr = _thin(fpr, tpr)
        precision, recall = _thin(precision, recall)
        curves.append({"label": label, "pooled": pooled, "fpr": fpr, "tpr": tpr, "precision": precision,
                       "recall": recall,
                       "roc_label": f"{label}: AUC {_fmt(window.get('roc_auc'))}",
                       "pr_label": f"{label}: AUC {_fmt(window.get('pr_auc'))}"})
    figure = figures.roc_pr(curves, "roc-pr") if curves else None
    return {"figure": figure, "skipped": skipped}


def _fmt(value) -> str:
    from .render import number

    return number(value)


def _traces(out_dir: Path, recordings: list[dict], predictions: dict[str, dict], folds: list[dict],
            fold_of: dict[str, int]) -> list[dict]:
    from ..detection.postprocess import smooth
    from ..detection.szcore import read_events_tsv

    params = {row["fold"]: row["postprocessing"] for row in folds}
    max_points = trace_points(sum(1 for rec in recordings if rec["source"] in predictions))
    traces = []
    for rec in recordings:
        item = predictions.get(rec["source"])
        fold = fold_of.get(rec["participant_id"])
        if item is None or fold not in params:
            continue
        post = params[fold]
        try:
            events, _ = read_events_tsv(rec["events_tsv"])
            detected = [(e.onset, e.onset + e.duration) for e in events]
            note = ""
        except (OSError, ValueError, KeyError) as exc:
            detected, note = [], f"detected events not readable ({type(exc).__name__})"
        smoothed = smooth(item["probs"], int(post.get("smoothing", 1)))
        traces.append({
            "participant_id": rec["participant_id"], "source": rec["source"], "fold": fold,
            "threshold": post["threshold"], "min_duration": post.get("min_duration"), "seizures": rec["seizures"],
            "detected": detected, "note": note,
            "figure": figures.probability_trace(item["onsets"] + rec["window_duration"] / 2, item["probs"], smoothed,
                                                rec["duration"], rec["seizures"], detected, post["threshold"],
                                                f"trace-{rec['stem']}", max_points),
        })
    return traces


def _training(group_dir: Path, folds: list[dict]) -> dict:
    histories = {}
    for row in folds:
        rows = read_tsv(group_dir / f"fold-{row['fold']}" / "history.tsv")
        columns = [c for c in (rows[0] if rows else {}) if c != "epoch"]
        history = {c: [float(r[c]) for r in rows if r.get(c) not in (None, "")] for c in columns}
        if history.get("loss"):
            histories[f"fold {row['fold']}"] = history
    if not histories:
        return {"note": "no training history (the features baseline trains no network)"}
    return {"figure": figures.training_curves(histories, "training"),
            "epochs": {label: len(h["loss"]) for label, h in histories.items()}}
