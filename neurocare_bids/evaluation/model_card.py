"""The ``ModelCard`` entry of ``group/model/model_card.json``: the sections of "Model Cards for Model Reporting"
(Mitchell et al., FAT* 2019), built from what the group level read and computed, never from fixed numbers.

Sections (keys of ``ModelCard``): ``ModelDetails``, ``IntendedUse``, ``Factors``, ``TrainingData``, ``Metrics``,
``EvaluationData``, ``Limitations``, ``EthicalConsiderations``. The numbers come from the participant-level
sidecars the group level read (training data, factors), the BIDS events files (seizure types), and
``group/metrics.json`` (pooled metrics and their spread over the cross-validation folds). Apply mode does not
read this entry; the report shows it (``group.html``, section "Model card").
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
from pathlib import Path

from .. import CODE_URL, __version__

log = logging.getLogger("neurocare")

REFERENCE = ("Mitchell M, Wu S, Zaldivar A, et al. Model Cards for Model Reporting. FAT* 2019. "
             "doi:10.1145/3287560.3287596")
LICENSE = "Apache-2.0"  # as pyproject.toml says (tested)
SMALL_DATASET_SUBJECTS = 20  # fewer subjects than this: the card says its numbers are rough
SMALL_DATASET_SEIZURES = 50
LARGE_SPREAD_SD = 0.1  # SD over folds of a 0-1 metric from which the card calls the spread large
LARGE_SPREAD_CV = 0.5  # the same for false alarms per 24 h, as SD / mean

# (key, label, level in metrics.json, its key there, 0-1 metric)
CARD_METRICS = (
    ("event_f1", "event F1", "event", "f1", True),
    ("event_sensitivity", "event sensitivity", "event", "sensitivity", True),
    ("event_precision", "event precision", "event", "precision", True),
    ("fp_per_24h", "false alarms per 24 h", "event", "fp_per_24h", False),
    ("window_pr_auc", "window PR-AUC", "window", "pr_auc", True),
    ("window_roc_auc", "window ROC-AUC", "window", "roc_auc", True),
)


def model_card_sections(cfg, files, metrics: dict, architecture: dict, stacking: dict | None,
                        training_subjects: list[str], validation_subjects: list[str],
                        bids_dir: Path | None = None, alarm_point: dict | None = None) -> dict:
    """The ``ModelCard`` entry: what the model is, what it is for and not for, what it was trained and
    evaluated on, how well it did over the folds, and what that does not show."""
    metas = [_sidecar(f) for f in files]
    data = training_data(files)
    factors = _factors(files, metas, cfg, bids_dir)
    spread = metric_spread(metrics)
    return {
        "Reference": REFERENCE,
        "ModelDetails": _details(cfg, architecture, stacking),
        "IntendedUse": _intended_use(factors),
        "Factors": factors,
        "TrainingData": {**data, "FinalModel": {"TrainingSubjects": len(training_subjects),
                                                "ValidationSubjects": len(validation_subjects)}},
        "Metrics": spread,
        "EvaluationData": _evaluation(cfg, metrics),
        "Limitations": _limitations(data, factors, spread, cfg.postprocessing, alarm_point),
        "EthicalConsiderations": _ethics(factors),
    }


def training_data(files) -> dict:
    """Counts over the participant-level outputs the group level read (``WindowFile``: subject, seizure
    intervals after merging, recording duration)."""
    subjects = sorted({f.subject for f in files})
    with_seizures = sorted({f.subject for f in files if f.seizure_intervals})
    seconds = sum(f.recording_duration for f in files)
    seizure_seconds = sum(b - a for f in files for a, b in f.seizure_intervals)
    return {
        "Subjects": len(subjects), "SubjectsWithSeizures": len(with_seizures), "Recordings": len(files),
        "Hours": seconds / 3600, "Seizures": sum(len(f.seizure_intervals) for f in files),
        "SeizureHours": seizure_seconds / 3600,
        "Windows": sum(f.window_count for f in files), "SeizureWindows": sum(f.seizure_window_count for f in files),
        "Source": "the participant-level sidecars (*_desc-preproc_windows.json) the group level read; seizures "
                  "as annotated, overlapping ones merged",
    }


def metric_spread(metrics: dict) -> dict:
    """Each metric pooled over the cross-validation (as ``metrics.json``) and its spread over the folds: mean,
    sample SD, minimum and maximum of the folds where it is defined (``metrics["folds"]``)."""
    rows = []
    folds = metrics.get("folds") or []
    for key, label, level, name, bounded in CARD_METRICS:
        overall = (metrics.get(level) or {}).get(name)
        values = [v for v in ((r.get(level) or {}).get(name) for r in folds)
                  if isinstance(v, (int, float)) and math.isfinite(v)]
        mean = sum(values) / len(values) if values else None
        sd = (math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else None)
        large = sd is not None and (sd >= LARGE_SPREAD_SD if bounded
                                    else mean > 0 and sd / mean >= LARGE_SPREAD_CV)
        rows.append({"Metric": key, "Label": label, "Overall": overall,
                     "OverallSD": (metrics.get(level) or {}).get(f"{name}_std") if level == "event" else None,
                     "FoldMean": mean, "FoldSD": sd, "FoldMin": min(values, default=None),
                     "FoldMax": max(values, default=None), "FoldsWithValue": len(values), "Folds": len(folds),
                     "LargeSpread": large})
    return {
        "Rows": rows,
        "Overall": "event metrics: SzCORE scoring, counts summed per subject, then the mean (OverallSD: SD) over "
                   "subjects; window metrics: pooled over every out-of-fold window",
        "FoldSpread": "over the cross-validation folds, each fold's test subjects scored alone; mean, sample SD "
                      "(n - 1), minimum and maximum of the folds where the metric is defined (a fold whose test "
                      "subjects have no seizure has no sensitivity); LargeSpread: SD >= "
                      f"{LARGE_SPREAD_SD:g} (0-1 metrics) or SD >= {LARGE_SPREAD_CV:g} x mean (false alarms)",
    }


# ---------------------------------------------------------------------- sections
def _details(cfg, architecture: dict, stacking: dict | None) -> dict:
    return {
        "Name": "NeuroCare-BIDS seizure detector",
        "Description": _architecture_text(cfg, architecture, stacking),
        "Preset": cfg.model.preset,
        "Version": __version__,
        "DateTrained": dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat(),
        "Developers": "NeuroCare-BIDS contributors",
        "License": f"{LICENSE} (the software; the model's weights derive from the training data, whose terms apply)",
        "Citation": "logs/CITATION.md (and CITATION.bib) in this output folder: the methods text and references "
                    "for this run",
        "Code": CODE_URL,
        "Questions": f"{CODE_URL}/issues",
    }


def _architecture_text(cfg, architecture: dict, stacking: dict | None) -> str:
    m = cfg.model
    parameters = architecture.get("parameters")
    if m.preset == "features":
        text = (f"{architecture.get('kind', 'window features + gradient boosting')}: classic per-window EEG "
                "features (band powers, line length, Hjorth parameters ...) classified by gradient boosting")
    elif m.preset == "seed":
        text = "the original NeuroCare network (Conv1D(8) → LSTM(16) → Dense(16) → softmax), for comparison"
    else:
        lstm = (f"{'bidirectional ' if m.bidirectional else ''}LSTM {'/'.join(map(str, m.lstm_units))} units"
                if m.lstm_units else "no LSTM")
        text = (f"CNN-{'Bi' if m.bidirectional and m.lstm_units else ''}LSTM: Conv1D blocks of "
                f"{', '.join(map(str, m.conv_filters))} filters ({m.encoder.replace('_', '-')} encoder) → {lstm}")
        if m.spectral_units:
            text += f", a spectral branch ({m.spectral_units} units)"
        if m.channel_features:
            text += f", a per-channel feature branch ({m.channel_features} units)"
        text += " → dense softmax (seizure probability per window)"
    if parameters is not None:
        text += f"; {parameters:,} parameters"
    if stacking:
        how = ("chosen on the inner validation subjects" if str(stacking.get("WeightChosenBy", "validation"))
               .startswith("validation") else "fixed by model.stacking_weight")
        text += (f"; stacked with the feature baseline on their log-odds (baseline weight "
                 f"{stacking.get('BaselineWeight')}, {how})")
    return text


def _intended_use(factors: dict) -> dict:
    montage = factors.get("Montage") or "its training"
    rate = factors.get("ModelSamplingFrequency")
    return {
        "PrimaryUses": [
            "research on automated seizure detection in scalp EEG (benchmarking, method development, "
            "reproducing results with SzCORE scoring)",
            "retrospective review of recorded scalp EEG: marking candidate seizures for an expert to check",
            "research monitoring: flagging candidate seizures in recordings of research studies, each "
            "reviewed by a qualified person",
        ],
        "PrimaryUsers": ["researchers in EEG and epilepsy", "clinical research teams, under expert review"],
        "OutOfScope": [
            "NOT a medical device: it is not certified or cleared by any regulator",
            "not for clinical decisions (diagnosis, treatment, medication changes) on any patient",
            "not for unsupervised alarms or unattended monitoring: missed seizures and false alarms happen",
            "not validated on neonatal EEG, on intracranial EEG (ECoG, SEEG), or on montages, channel sets or "
            f"sampling rates other than those of its training data ({montage} montage, "
            f"{factors.get('Channels')} channels at {rate if rate is None else format(rate, 'g')} Hz after resampling)",
            "not validated on populations, centres or equipment other than those of its training data",
        ],
    }


def _sidecar(f) -> dict:
    try:
        return json.loads(Path(f.sidecar).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _factors(files, metas: list[dict], cfg, bids_dir: Path | None) -> dict:
    rates = sorted({float(m.get("Preprocessing", {}).get("InputSamplingFrequency")) for m in metas
                    if m.get("Preprocessing", {}).get("InputSamplingFrequency") is not None})
    montages = sorted({m.get("Montage", "average") for m in metas})
    filled = sum(1 for m in metas if m.get("FilledChannels"))
    channels = metas[0].get("Channels", []) if metas else []
    return {
        "Subjects": sorted({f"sub-{f.subject}" for f in files}),
        "Montage": ", ".join(montages) or None,
        "Channels": len(channels),
        "ChannelNames": list(channels),
        "InputSamplingFrequencies": rates,
        "ModelSamplingFrequency": metas[0].get("SamplingFrequency") if metas else None,
        "RecordingsWithFilledChannels": filled,
        "SeizureTypes": seizure_types(files, bids_dir, cfg.input) if bids_dir is not None else None,
        "NotRecorded": "age, sex, epilepsy syndrome, vigilance state and medication are not in the inputs the "
                       "group level reads: results cannot be broken down by them",
    }


def seizure_types(files, bids_dir: Path, input_cfg) -> dict[str, int] | None:
    """Seizure events per ``eventType`` (or the configured type column) in the recordings' BIDS events files;
    None when none of them can be read."""
    import csv

    from ..io.bids_input import source_stem

    prefixes = tuple(p.lower() for p in input_cfg.seizure_prefixes)
    counts: dict[str, int] = {}
    read = 0
    for f in files:
        source = Path(f.source)
        path = bids_dir / source.with_name(f"{source_stem(source.name)}_events.tsv")
        try:
            with open(path, newline="", encoding="utf-8-sig") as fh:
                rows = list(csv.DictReader(fh, delimiter="\t"))
        except (OSError, UnicodeDecodeError, csv.Error):
            continue
        read += 1
        column = next((c for c in input_cfg.event_type_columns if rows and c in rows[0]), None)
        for row in rows if column else ():
            kind = (row.get(column) or "").strip()
            if kind.lower().startswith(prefixes):
                counts[kind] = counts.get(kind, 0) + 1
    return dict(sorted(counts.items())) if read else None


def _evaluation(cfg, metrics: dict) -> dict:
    from .metrics import MERGE_BELOW, SPLIT_ABOVE, TOLERANCE_END, TOLERANCE_START

    folds = metrics.get("folds") or []
    return {
        "Procedure": f"subject-wise cross-validation over {len(folds) or cfg.cv.folds} folds (group/folds.tsv: no "
                     f"subject in two folds; seed {cfg.execution.seed}): each fold's model is trained without its "
                     "test subjects and scored on them only",
        "InnerValidation": f"in each fold {cfg.cv.validation_fraction:g} of the training subjects (at least one) "
                           "are held out to choose early stopping, the learning-rate schedule, the stacking weight "
                           "and the post-processing (threshold, minimum duration); never the test subjects",
        "Scoring": f"SzCORE event scoring (timescoring, as szcore-evaluation): a detection counts when it overlaps "
                   f"a reference seizure extended {TOLERANCE_START} s before and {TOLERANCE_END} s after; events "
                   f"less than {MERGE_BELOW} s apart are merged, events longer than {SPLIT_ABOVE} s split; counts "
                   "summed per subject, then averaged over subjects. Window metrics from the out-of-fold window "
                   "scores pooled over all folds",
        "Files": "group/metrics.json, group/metrics_folds.tsv, group/metrics_subjects.tsv, group/predictions.tsv",
        "Subjects": len(metrics.get("subjects") or []),
    }


def _limitations(data: dict, factors: dict, spread: dict, post, alarm_point: dict | None = None) -> list[str]:
    objective, max_fp = getattr(post, "objective", "f1"), getattr(post, "max_fp_per_24h", 2.0)
    out = [f"Every metric is from cross-validation on this dataset only ({data['Subjects']} subjects, "
           f"{data['Recordings']} recordings, {data['Hours']:.1f} h of EEG): not an external validation. "
           "Performance on other centres, equipment, populations or annotators is unknown.",
           "The final model (group/model/) is trained on all subjects and was not itself tested: the "
           "cross-validated metrics estimate how a model trained this way performs."]
    if data["Subjects"] < SMALL_DATASET_SUBJECTS or data["Seizures"] < SMALL_DATASET_SEIZURES:
        out.append(f"Small dataset: {data['Subjects']} subjects ({data['SubjectsWithSeizures']} with seizures) and "
                   f"{data['Seizures']} seizures ({60 * data['SeizureHours']:.1f} min). Each fold scores few "
                   "seizures, so results can differ widely between folds and the pooled numbers are rough estimates.")
    for row in spread["Rows"]:
        if row["LargeSpread"]:
            out.append(f"The {row['Label']} varies widely over the folds (mean {row['FoldMean']:.3f} ± "
                       f"{row['FoldSD']:.3f} SD, {row['FoldMin']:.3f} to {row['FoldMax']:.3f}): performance "
                       "depends on the subjects; expect the same on new ones.")
        elif row["Folds"] and row["FoldsWithValue"] < row["Folds"]:
            out.append(f"The {row['Label']} is undefined in {row['Folds'] - row['FoldsWithValue']} of "
                       f"{row['Folds']} folds (no seizure, or no detection, among their test subjects).")
    if factors.get("RecordingsWithFilledChannels"):
        out.append(f"{factors['RecordingsWithFilledChannels']} training recording(s) lacked some of the montage's "
                   "channels, which were filled in (sidecars: FilledChannels).")
    types = factors.get("SeizureTypes")
    if types is not None and len(types) <= 1:
        out.append("The training data annotate " + (f"one seizure type only ({next(iter(types))})" if types else
                   "no seizure type") + ": detection of other seizure types is untested.")
    if objective == "alarm":
        out.append("The operating point (PostProcessing) gives the soonest alarms within "
                   f"{max_fp:g} false alarms per 24 h on the inner validation subjects, not the best event F1 "
                   "(OperatingPoints.f1); on new subjects the false-alarm bound may not hold.")
    else:
        out.append("The operating point (PostProcessing) maximises SzCORE event F1 on the inner validation subjects; "
                   "fewer false alarms cost sensitivity (OperatingPoints.alarm: soonest alarms within "
                   f"{max_fp:g} false alarms per 24 h on those subjects).")
    upper = (alarm_point or {}).get("fp_per_24h_upper95")
    if upper is not None:
        hours, count = alarm_point["validation_hours"], alarm_point["validation_fp_count"]
        met = alarm_point.get("constraint_met", True)
        said = (f"The alarm point (OperatingPoints.alarm, what `stream` uses) {'met' if met else 'could not meet'} its "
                f"bound of {max_fp:g} false alarms per 24 h on {hours:.1f} h of validation recordings, which showed "
                f"{count} false alarm{'' if count == 1 else 's'} at that point")
        if not met:
            out.append(f"{said} (the setting with the fewest was kept). On new recordings its rate may be up to "
                       f"{upper:.1f} per 24 h (one-sided 95 % bound).")
        elif upper > max_fp:
            out.append(f"{said}: too few hours to establish the bound. On new recordings its rate may be up to "
                       f"{upper:.1f} per 24 h (one-sided 95 % bound); more validation hours narrow it.")
        else:
            out.append(f"{said}: its rate on recordings like these is at most {upper:.1f} per 24 h (one-sided 95 % "
                       "bound).")
    out.append("Results on the easy synthetic demo data do not carry over to clinical EEG; for harder data (subtle "
               "seizures, differing backgrounds, artefact mimics) see the documentation, Performance: "
               "'The hard benchmark'.")
    return out


def _ethics(factors: dict) -> list[str]:
    return [
        "Patient data stay local: the app reads the BIDS dataset read-only, writes only to the output folder and "
        "makes no network connection; outputs (and the model's weights) derive from patient recordings and "
        "should be shared under the same data-protection terms.",
        "Missed seizures and false alarms both do harm (an unnoticed seizure; alarm fatigue and needless "
        "interventions): every detection needs review by a qualified person.",
        f"Bias from the training population: {len(factors.get('Subjects') or [])} subjects, whose age, syndromes "
        "and recording conditions are not described in the inputs; performance may be worse for "
        "groups they under-represent (e.g. children, rare seizure types, other equipment).",
        "Annotations are one reader's (or centre's) judgement; disagreement between experts bounds what any "
        "detector trained on them can reach.",
    ]
