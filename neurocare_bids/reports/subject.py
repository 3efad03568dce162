"""``OUT/sub-<label>.html``: what the participant level did with one subject's recordings.

Built from the outputs on disk (sidecars and TFRecords), plus short stretches of the source recordings
for the power spectra; a recording whose outputs were already up to date is reported like a new one.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..preprocessing.quality import NOISY_RATIO
from . import figures
from .readers import label_runs, power_spectra, read_json, read_windows, source_relpath, window_labels
from .render import write_html

log = logging.getLogger("neurocare")

MAX_SEIZURE_EXAMPLES = 2
EDGE_WINDOWS = 5


def subject_sidecars(out_dir: Path, subject: str) -> list[Path]:
    return sorted((out_dir / f"sub-{subject}").glob("**/*_desc-preproc_windows.json"))


def build_subject_report(out_dir: Path, subject: str, *, bids_dir: Path | None = None, montage_cfg=None,
                         results=(), methods=None) -> Path:
    """Write ``OUT/sub-<subject>.html``; ``results`` (this run's per-recording results) add statuses and failures."""
    from ..config import MontageConfig

    montage_cfg = montage_cfg or MontageConfig()
    prefix = f"sub-{subject}/"
    results = [r for r in results if r.recording.startswith(prefix)]
    status = {r.recording: r.status for r in results}
    recordings = []
    for sidecar in subject_sidecars(out_dir, subject):
        meta = read_json(sidecar)
        try:
            recordings.append(_recording(out_dir, sidecar, meta, bids_dir, montage_cfg, status))
        except (KeyError, TypeError, ValueError, IndexError):  # not JSON, or not a windows sidecar
            recordings.append({"name": sidecar.name, "unreadable": True})
    readable = [r for r in recordings if not r.get("unreadable")]
    examples = _examples(readable)
    failed = [{"recording": r.recording, "message": r.message} for r in results if r.status == "failed"]
    warnings = [(r["source"], w) for r in readable for w in r["warnings"]]
    if methods is None:
        from .citation import saved_methods

        methods = saved_methods(out_dir)
    context = {
        "title": f"sub-{subject}", "subject": subject, "recordings": recordings, "readable": readable,
        "failed": failed, "examples": examples, "warnings": warnings, "methods": methods,
        "totals": {
            "duration": sum(r["duration"] for r in readable),
            "windows": sum(r["windows"] for r in readable),
            "seizure_windows": sum(r["seizure_windows"] for r in readable),
            "seizures": sum(r["seizures"] for r in readable),
        },
    }
    return write_html(out_dir / f"sub-{subject}.html", "subject.html.j2", context)


def _recording(out_dir: Path, sidecar: Path, meta: dict, bids_dir: Path | None, montage_cfg, status: dict) -> dict:
    source = source_relpath(meta)
    stem = sidecar.name[: -len("_desc-preproc_windows.json")]
    pre = meta.get("Preprocessing", {})
    windows, seizure_windows = int(meta["WindowCount"]), int(meta["SeizureWindowCount"])
    rec = {
        "source": source, "stem": stem, "sidecar": str(sidecar.relative_to(out_dir)), "unreadable": False,
        "status": status.get(source, "on disk"),
        "duration": float(meta["RecordingDuration"]), "sfreq_in": pre.get("InputSamplingFrequency"),
        "sfreq": meta["SamplingFrequency"], "channels": meta["Channels"], "montage": meta.get("Montage", ""),
        "seizures": int(meta.get("SeizureEventCount", len(meta.get("SeizureIntervals", [])))),
        "seizure_intervals": meta.get("SeizureIntervals", []),
        "windows": windows, "seizure_windows": seizure_windows,
        "balance": seizure_windows / windows if windows else None,
        "warnings": list(meta.get("Warnings", [])), "filled": meta.get("FilledChannels", []),
        "notches": pre.get("NotchFrequencies", []), "band": (pre.get("l_freq"), pre.get("h_freq")),
        "meta": meta, "tfrecord": sidecar.with_name(meta["TFRecord"]["File"]),
    }
    quality = meta.get("ChannelQuality")
    rec["quality"] = quality
    if quality:
        rec["quality_figure"] = figures.channel_quality(quality["Channels"], f"quality-{stem}", NOISY_RATIO)
    rec["spectra"] = _spectra(bids_dir, meta, montage_cfg, stem)
    try:
        labels = window_labels(rec["tfrecord"])
    except (OSError, ValueError, KeyError, IndexError) as exc:
        rec["labels"] = None
        rec["timeline_note"] = f"windows not readable ({exc})"
        labels = None
    if labels is not None:
        rec["labels"] = labels
        rec["label_count"] = int(labels["label"].sum())
        runs = label_runs(labels["onset"], labels["label"], float(meta["WindowDuration"]), float(meta["WindowStride"]))
        rec["timeline"] = figures.timeline(rec["duration"], rec["seizure_intervals"], runs, f"timeline-{stem}")
    return rec


def _spectra(bids_dir: Path | None, meta: dict, montage_cfg, stem: str) -> dict:
    if bids_dir is None:
        return {"note": "no BIDS folder given to the report: spectra need the source recording"}
    try:
        result = power_spectra(bids_dir, meta, montage_cfg)
    except Exception as exc:  # a damaged or moved source must not cost the rest of the report
        log.debug("spectra of %s: %s", stem, exc, exc_info=True)
        return {"note": f"source recording not readable ({type(exc).__name__}: {exc})"}
    if "note" in result:
        return result
    result["figure"] = figures.power_spectra(result["before"], result["after"], result["band"], result["notches"],
                                             f"psd-{stem}")
    return result


def _examples(recordings: list[dict]) -> list[dict]:
    """Seizure windows (the most ictal one of up to ``MAX_SEIZURE_EXAMPLES`` recordings) and one background."""
    picks = []
    for rec in recordings:
        labels = rec.get("labels")
        if labels is None or not labels["label"].any() or len([p for p in picks if p[2]]) >= MAX_SEIZURE_EXAMPLES:
            continue
        ictal = np.flatnonzero(labels["label"] == 1)
        fraction = np.nan_to_num(labels["seizure_fraction"][ictal], nan=1.0)
        best = ictal[fraction == fraction.max()]
        picks.append((rec, int(best[len(best) // 2]), True))
    for rec in recordings:
        labels = rec.get("labels")
        if labels is None or not (labels["label"] == 0).any():
            continue
        background = np.flatnonzero(labels["label"] == 0)
        inner = background[(background >= EDGE_WINDOWS) & (background < len(labels["label"]) - EDGE_WINDOWS)]
        background = inner if len(inner) else background  # away from the recording's edges when possible
        ictal = np.flatnonzero(labels["label"] == 1)
        if len(ictal):
            distance = np.abs(background[:, None] - ictal[None, :]).min(axis=1)
            index = int(background[np.argmax(distance)])
        else:
            index = int(background[len(background) // 2])
        picks.append((rec, index, False))
        break
    examples = []
    for rec, index, ictal in picks:
        meta = rec["meta"]
        try:
            eeg = read_windows(rec["tfrecord"], [index], meta["TFRecord"]["Schema"]["eeg"])[index]
        except (OSError, ValueError, KeyError) as exc:
            log.debug("example window %d of %s: %s", index, rec["stem"], exc)
            continue
        onset = float(rec["labels"]["onset"][index])
        kind = "seizure" if ictal else "background"
        title = f"{kind} window at {onset:g} s"
        examples.append({
            "kind": kind, "source": rec["source"], "index": index, "onset": onset,
            "fraction": float(rec["labels"]["seizure_fraction"][index]),
            "figure": figures.eeg_window(eeg, rec["channels"], float(meta["SamplingFrequency"]), title,
                                         f"window-{rec['stem']}-{index}",
                                         figures.SEIZURE if ictal else "k"),
        })
    return examples
