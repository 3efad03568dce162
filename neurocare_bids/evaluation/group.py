"""Group level: subject-wise cross-validation of the detector, its metrics, models and SzCORE outputs.

Flow (each step writes its own outputs atomically, so a killed run resumes where it stopped):

1. the participant-level sidecars under ``OUT`` → the recordings, their subjects and seizure counts;
2. subjects → folds (``group/folds.tsv``; the same on every run for the same data and seed);
3. per fold (``--fold K`` runs one, as one HPC array task): train on the training subjects, early-stop
   and tune the post-processing on the inner validation subjects, predict the test subjects →
   ``group/fold-K/`` (model, history, predictions; ``fold.json`` last, as the "done" marker);
4. once every fold is done: pooled out-of-fold metrics (window level from probabilities, event level
   with SzCORE's rules averaged per subject), predicted seizures per recording as BIDS derivatives and
   as an ``OUT/szcore/`` tree that szcore-evaluation scores unchanged, and a final model trained on all
   subjects with its model card (``group/model/``).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import platform
import sys
import time
from pathlib import Path

import keras
import numpy as np

from .. import __version__
from ..config import Config, PostprocessingConfig, recorded_settings
from ..console import PROGRESS, duration, tensorflow_installed
from ..detection.postprocess import (alarm_times, centre_probabilities, event_settings, probabilities_to_events, smooth,
                                     threshold_text)
from ..detection.stacking import BASELINE_FILE, StackedDetector, combine, stacking_weight
from ..detection.szcore import export_tree, read_events_tsv, tsv_intervals, write_events_tsv
from ..errors import UsageError, raise_if_terminated
from ..io.bids_input import source_stem
from ..io.derivatives import CARD_FORMAT
from ..io.fsutils import atomic_write, temp_path
from ..preprocessing.filters import plan_from_sidecar
from ..training.checkpoints import CHECKPOINT_FILE
from ..training.distribute import placement, release_models, set_training_threads, training_threads
from ..training.fit import (TIMING_KEYS, batch_plan, input_pipeline, predict_windows, scorer, train_features,
                            train_keras)
from ..training.input_pipeline import WindowFile, WindowGeometry
from ..training.tracking import Tracker, check_tracking, start_tracking
from .cv import Fold, split_validation
from .fold_jobs import plan_and_train_jobs, stop_with_parent
from .metrics import ranking_metrics, seizure_latencies, szcore_summary, window_metrics, with_latencies
from .model_card import model_card_sections
from .plan import (GROUP, GroupPlan, check_fold_index, multi_worker, needs_training, plan_folds,
                   seizure_windows_per_subject)
from .tuning import tune, tune_alarm

log = logging.getLogger("neurocare")
progress = logging.getLogger(PROGRESS)  # fold and epoch lines: see console.py for where they are shown

# ---------------------------------------------------------------------- training and prediction
def _scorer(model, geometry: WindowGeometry):
    """The function from a batch of windows to their seizure probabilities, for each kind of model."""
    if isinstance(model, StackedDetector):
        network, baseline = _scorer(model.network, geometry), _scorer(model.baseline, geometry)
        return lambda eeg: combine(network(eeg), baseline(eeg), model.weight)
    return scorer(model, geometry)


def predict_files(model, files: list[WindowFile], geometry: WindowGeometry) -> list[dict]:
    """Seizure probability of every window of each file, in order, with labels and onsets."""
    return predict_windows(_scorer(model, geometry), files, geometry)


def with_detection(predictions: list[dict], post: PostprocessingConfig) -> list[dict]:
    """Each recording's ``detection`` probabilities (centred on the recording's median log-odds when
    ``postprocessing.centre``; the model's probabilities otherwise) and its ``scores``: the detection
    probabilities smoothed over ``postprocessing.smoothing`` windows, which is what the threshold applies to."""
    for p in predictions:
        p["detection"] = _detection(p["probs"], post.centre)
        p["scores"] = smooth(p["detection"], post.smoothing)
    return predictions


def _detection(probs, centre: bool):
    """A recording's detection probabilities: its probabilities centred on its median log-odds, or as they are."""
    return centre_probabilities(probs)[0] if centre else probs


def fit_and_tune(cfg: Config, train: list[WindowFile], validation: list[WindowFile], geometry: WindowGeometry,
                 seed: int, tensorboard_dir: Path, label: str, tracker: Tracker | None = None,
                 checkpoint: Path | None = None):
    """Train a model (a network resuming from ``checkpoint`` where a killed run left one), then choose the
    post-processing (and a stacked model's weight) on the validation subjects only."""
    post = cfg.postprocessing
    if cfg.model.preset == "features":
        model, history = train_features(cfg, train, geometry, seed)
        val_predictions = with_detection(predict_files(model, validation, geometry), post)
    else:
        model, history = train_keras(cfg, train, validation, geometry, seed, tensorboard_dir, label, tracker,
                                     checkpoint)
        val_predictions = predict_files(model, validation, geometry)
        if stacks(cfg):
            model, val_predictions = _stack(cfg, model, train, validation, val_predictions, geometry, seed, label)
        val_predictions = with_detection(val_predictions, post)
    params, points = tune_operating_points(cfg, val_predictions, validation)
    return model, history, val_predictions, params, points


def tune_operating_points(cfg: Config, val_predictions: list[dict], validation: list[WindowFile]
                          ) -> tuple[dict, dict[str, dict]]:
    """The F1 and alarm operating points chosen on the validation predictions (``with_detection`` applied),
    and the one ``postprocessing.objective`` names, whose smoothing the predictions' ``scores`` then follow."""
    post = cfg.postprocessing
    params = {"threshold": post.threshold, "min_duration": post.min_duration, "smoothing": post.smoothing,
              "merge_gap": post.merge_gap, "centre": post.centre, "tuned": False}
    points = {"f1": params}
    if post.tune and val_predictions:
        recordings = [{**p, "probs": p["detection"]} for p in val_predictions]
        chosen = tune(recordings, smoothing=post.smoothing, merge_gap=post.merge_gap, ties=post.ties)
        params.update(threshold=float(chosen["threshold"]), min_duration=float(chosen["min_duration"]),
                      tuned=True, validation_f1=chosen.get("f1"))
        alarm = tune_alarm(recordings, max_fp_per_24h=post.max_fp_per_24h, merge_gap=post.merge_gap,
                           lookahead=_lookahead(validation), latency_slack=post.alarm_latency_slack)
        points["alarm"] = {**{k: alarm[k] for k in ("threshold", "min_duration", "smoothing", "merge_gap")},
                           "centre": post.centre, "tuned": True, "max_fp_per_24h": alarm["max_fp_per_24h"],
                           "constraint_met": alarm["constraint_met"], "latency_slack_s": alarm["latency_slack_s"],
                           "validation_latency_median_s": alarm["latency_median_s"],
                           "validation_sensitivity": alarm["sensitivity"],
                           "validation_fp_per_24h": alarm["fp_per_24h"], "validation_f1": alarm["f1"],
                           # how little the validation hours pin the false-alarm rate down (model card)
                           "validation_hours": alarm["validation_hours"], "validation_fp_count": alarm["fp_count"],
                           "fp_per_24h_upper95": alarm["fp_per_24h_upper95"]}
        if not alarm["constraint_met"]:
            log.warning("no alarm operating point gives at most %g false alarms per 24 h on the validation subjects; "
                        "the one with the fewest (%.1f) is kept", post.max_fp_per_24h, alarm["fp_per_24h"])
    params = dict(points[post.objective] if post.objective in points else points["f1"])
    if params["smoothing"] != post.smoothing:  # the alarm point's own smoothing: what the threshold applies to
        for p in val_predictions:
            p["scores"] = smooth(p["detection"], params["smoothing"])
    return params, points


def _lookahead(files: list[WindowFile]) -> float:
    """Seconds of signal the recordings' filters need after a sample (what an alarm waits for)."""
    if not files:
        return 0.0
    return plan_from_sidecar(json.loads(files[0].sidecar.read_text(encoding="utf-8"))).lookahead_seconds()


def stacks(cfg: Config) -> bool:
    """Whether this configuration trains a stacked detector (``model.stacking``; the CNN-BiLSTM only)."""
    return cfg.model.stacking and cfg.model.preset == "neurocare"


def _stack(cfg: Config, network, train: list[WindowFile], validation: list[WindowFile], val_network: list[dict],
           geometry: WindowGeometry, seed: int, label: str) -> tuple[StackedDetector, list[dict]]:
    """Train the feature baseline on the same windows and weigh it against the network on validation."""
    started = time.monotonic()
    baseline, _ = train_features(cfg, train, geometry, seed)
    val_baseline = predict_files(baseline, validation, geometry)

    def detection_scores(predictions: list[dict]) -> list[np.ndarray]:
        return [p["scores"] for p in with_detection(predictions, cfg.postprocessing)]

    weight, scores = stacking_weight(val_network, val_baseline, detection_scores, fixed=cfg.model.stacking_weight,
                                     tune=cfg.model.tune_stacking_weight)
    stacked = StackedDetector(network, baseline, weight, scores, tuned=cfg.model.tune_stacking_weight)
    combined = [{**n, "probs": combine(n["probs"], b["probs"], weight)} for n, b in zip(val_network, val_baseline)]
    log.info("%s: feature baseline trained in %s; its weight in the stack: %g (validation PR-AUC %s)", label,
             duration(time.monotonic() - started), weight,
             ", ".join(f"{w:g}: {'n/a' if v is None else f'{v:.3f}'}" for w, v in scores.items()))
    return stacked, combined


def _save_model(cfg: Config, model, folder: Path, label: str, stride: int, onnx: bool = True) -> tuple[Path, dict]:
    """Save the trained model, then its ONNX copies (unless ``onnx`` is false: a fold with
    ``execution.fold_onnx`` off): the model file and the ONNX entry for the card (``stride``: samples between
    window onsets, for the consecutive-window graph)."""
    from ..training.baseline_onnx import CLASSIFIER_FILE, export_baseline
    from ..training.onnx_export import export_trained, not_exported

    classifier = None
    if isinstance(model, StackedDetector):
        model.baseline.save(folder / BASELINE_FILE)
        classifier = export_baseline(model.baseline, folder, label) if onnx else None
        model = model.network
    else:  # of an earlier, stacked training of this folder
        (folder / BASELINE_FILE).unlink(missing_ok=True)
    if cfg.model.preset == "features":
        path = folder / "model.joblib"
        model.save(path)
        classifier = export_baseline(model, folder, label) if onnx else None
    else:
        path = folder / "model.keras"
        tmp = temp_path(path, ".keras")  # Keras insists on the suffix; renamed when complete
        try:
            model.save(tmp)
            tmp.replace(path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    entry = (export_trained(model, folder, cfg.model.preset, label, saved=path, stride=stride) if onnx
             else not_exported(folder))
    if classifier is None:  # a network alone: no classifier, nor an earlier training's copy
        (folder / CLASSIFIER_FILE).unlink(missing_ok=True)
    else:
        entry["Classifier"] = classifier
    return path, entry


def run_fold(cfg: Config, fold: Fold, files: list[WindowFile], geometry: WindowGeometry, group_dir: Path) -> dict:
    """Train, tune and test one fold; ``fold-K/fold.json`` is written last and marks it done."""
    folder = group_dir / f"fold-{fold.index}"
    folder.mkdir(parents=True, exist_ok=True)
    by_role = {role: [f for f in files if f.subject in members]
               for role, members in (("train", fold.train), ("validation", fold.validation), ("test", fold.test))}
    seed = cfg.execution.seed * 1000 + fold.index
    label = f"fold {fold.index}"
    tracker = start_tracking(cfg, group_dir, f"fold-{fold.index}", "fold",
                             {"fold": fold.index, "test": list(fold.test), "validation": list(fold.validation)})
    started, cpu_started, peak_reset = time.monotonic(), time.process_time(), reset_peak_rss()
    try:
        model, history, val_predictions, params, points = fit_and_tune(
            cfg, by_role["train"], by_role["validation"], geometry, seed,
            group_dir / "tensorboard" / f"fold-{fold.index}", label, tracker, folder / CHECKPOINT_FILE)
        tracker.summary({"epochs": len(history.get("loss", [])), **_tracked(params)})
    finally:
        tracker.finish()
    fitted = time.monotonic()
    test_predictions = with_detection(predict_files(model, by_role["test"], geometry), cfg.postprocessing)
    compute = training_compute(cfg, by_role["train"], history, fit_seconds=fitted - started,
                               cpu_seconds=time.process_time() - cpu_started, peak_reset=peak_reset,
                               test_seconds=time.monotonic() - fitted,
                               test_windows=sum(len(p["probs"]) for p in test_predictions))
    for p in test_predictions:
        p["scores"] = smooth(p["detection"], params["smoothing"])
    _, onnx = _save_model(cfg, model, folder, label, geometry.stride, onnx=cfg.execution.fold_onnx)
    atomic_write(folder / "history.tsv", _history_tsv(history))
    atomic_write(folder / "predictions.tsv", _predictions_tsv(
        [("validation", p) for p in val_predictions] + [("test", p) for p in test_predictions]))
    summary = {"fold": fold.index, "test": list(fold.test), "validation": list(fold.validation),
               "train": list(fold.train), "postprocessing": params, "operating_points": points, "seed": seed,
               "epochs": len(history.get("loss", [])), "group_config": _group_config(cfg),
               "version": __version__, "onnx": onnx, "window_stride": geometry.stride,
               "trained_on": _training_entry(cfg),
               "stacking": model.summary() if isinstance(model, StackedDetector) else None, "compute": compute}
    atomic_write(folder / "fold.json", json.dumps(summary, indent=2) + "\n")
    (folder / CHECKPOINT_FILE).unlink(missing_ok=True)  # the fold is done: nothing to resume
    return summary


def reset_peak_rss() -> bool:
    """Start this process's peak-memory count again (Linux: ``/proc/self/clear_refs`` ``5``), so that a fold's
    ``peak_rss_mib`` is its own and not an earlier fold's; False where the system cannot (the peak is then the
    process's so far)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def training_compute(cfg: Config, train: list[WindowFile], history: dict, *, fit_seconds: float, cpu_seconds: float,
                     peak_reset: bool, test_seconds: float | None = None, test_windows: int | None = None) -> dict:
    """What a training cost, for sizing jobs and comparing machines (``fold.json`` ``compute``, the model card's
    ``Compute``): wall seconds of the fit (training, validation, stacking, tuning) and, for a fold, of predicting
    its test subjects; this process's CPU seconds over them; the peak memory since the training started
    (``peak_reset``, else since the process started); and for a network the training steps' own seconds and rate
    (windows/s: epochs × batches × batch size over the seconds of the training steps, input pipeline included),
    and each epoch's seconds of training steps and of validation."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (2 ** 20 if sys.platform == "darwin" else 2 ** 10)
    out = {"backend": "scikit-learn" if cfg.model.preset == "features" else keras.backend.backend(),
           "fit_seconds": round(fit_seconds, 3)}
    if test_seconds is not None:
        out.update(test_prediction_seconds=round(test_seconds, 3), test_windows=int(test_windows))
    out.update(cpu_seconds=round(cpu_seconds, 3), threads=training_threads(), peak_rss_mib=round(peak, 1),
               peak_rss_since="training start" if peak_reset else "process start")
    train_seconds, validation_seconds = ([float(t) for t in history.get(key) or []] for key in TIMING_KEYS)
    if train_seconds:
        steps, batch = batch_plan(cfg, train)
        windows = len(train_seconds) * steps * batch
        out.update(input_pipeline=input_pipeline(cfg), epochs=len(train_seconds), batches_per_epoch=steps,
                   batch_size=batch, training_windows=windows,
                   training_seconds=round(sum(train_seconds), 3), validation_seconds=round(sum(validation_seconds), 3),
                   training_windows_per_second=float(f"{windows / max(sum(train_seconds), 1e-9):.4g}"),
                   epoch_training_seconds=[round(t, 3) for t in train_seconds],
                   epoch_validation_seconds=[round(t, 3) for t in validation_seconds])
    return out


def _outcome(epochs: int, params: dict) -> str:
    """What a training ended with, for its progress line (the feature baseline has no epochs)."""
    ran = f"{epochs} epoch{'' if epochs == 1 else 's'}, " if epochs else ""
    return f"{ran}threshold {threshold_text(params['threshold'])}, min duration {params['min_duration']:g} s"


def _tracked(params: dict) -> dict:
    return {f"postprocessing/{k}": v for k, v in params.items() if isinstance(v, (int, float)) and v is not None}


def _group_config(cfg: Config) -> dict:
    return cfg.group_settings()


# ---------------------------------------------------------------------- outputs
def _history_tsv(history: dict) -> str:
    keys = sorted(k for k in history if k not in TIMING_KEYS)
    rows = ["epoch\t" + "\t".join(keys)]
    for i in range(len(history[keys[0]]) if keys else 0):
        rows.append(f"{i + 1}\t" + "\t".join(f"{float(history[k][i]):.6g}" for k in keys))
    return "\n".join(rows) + "\n"


def _predictions_tsv(items: list[tuple[str, dict]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter="\t", lineterminator="\n")
    writer.writerow(["participant_id", "recording", "split", "window_index", "onset", "label", "probability",
                     "detection_probability", "smoothed_probability"])
    for split, p in items:
        for i, (onset, label, prob, detection, score) in enumerate(zip(p["onsets"], p["labels"], p["probs"],
                                                                       p["detection"], p["scores"])):
            # The model's probability with every digit of its float32 value: small probabilities keep their
            # relative precision (fixed decimals would not), so the centring can be recomputed from the file.
            writer.writerow([f"sub-{p['subject']}", p["source"], split, i, f"{onset:.3f}", int(label),
                             f"{prob:.9g}", f"{detection:.9g}", f"{score:.9g}"])
    return buf.getvalue()


def _read_predictions(path: Path, split: str) -> dict[str, dict]:
    out: dict[str, dict] = {}
    with open(path, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            if row["split"] != split:
                continue
            item = out.setdefault(row["recording"], {"subject": row["participant_id"][4:], "source": row["recording"],
                                                     "onsets": [], "labels": [], "probs": [], "detection": []})
            item["onsets"].append(float(row["onset"]))
            item["labels"].append(int(row["label"]))
            item["probs"].append(float(row["probability"]))
            item["detection"].append(float(row.get("detection_probability") or row["probability"]))
    return out


def aggregate(cfg: Config, folds: list[Fold], files: list[WindowFile], geometry: WindowGeometry,
              bids_dir: Path, out_dir: Path) -> dict:
    """Pooled out-of-fold metrics, predicted events (BIDS derivatives + SzCORE tree), metrics.json."""
    group_dir = out_dir / GROUP
    by_source = {f.source: f for f in files}
    fold_rows, per_recording, exports = [], [], []
    pooled = {"labels": [], "scores": [], "detection": [], "thresholds": []}
    out_of_fold, latencies = [], []
    by_subject: dict[str, tuple[list, list]] = {}  # participant_id -> (labels, scores) of its test windows
    for fold in folds:
        summary = json.loads((group_dir / f"fold-{fold.index}" / "fold.json").read_text(encoding="utf-8"))
        params = summary["postprocessing"]
        tests = _read_predictions(group_dir / f"fold-{fold.index}" / "predictions.tsv", "test")
        fold_labels, fold_scores, fold_detection, fold_records = [], [], [], []
        for source, p in sorted(tests.items()):
            f = by_source[source]
            # The detection probabilities and the scores the threshold applies to: computed again from the
            # model's full-precision probabilities, not read from the rounded columns (the AUCs rank windows whose
            # probabilities differ beyond the sixth decimal, e.g. 1 - 1e-8 and 1 - 1e-7; the files of older
            # versions round them to 6 decimals and lack the scores), as with_detection computed them.
            labels = np.array(p["labels"])
            detection = p["detection"] = _detection(np.array(p["probs"]), bool(params.get("centre")))
            p["scores"] = smooth(detection, params["smoothing"])
            events = probabilities_to_events(np.array(p["onsets"]), detection, geometry.duration,
                                             f.recording_duration, threshold=params["threshold"],
                                             min_duration=params["min_duration"], merge_gap=params["merge_gap"],
                                             smoothing=params["smoothing"])
            record = _scored_record(bids_dir, f, events)
            record["latencies"] = _latencies(f, record, events, np.array(p["onsets"]), detection, geometry, params)
            latencies += [{"participant_id": f"sub-{f.subject}", "recording": source, "onset": on, "latency_s": t}
                          for (on, _), t in zip(record["ref"], record["latencies"]) if t is not None]
            per_recording.append(record)
            fold_records.append(record)
            fold_labels.append(labels)
            fold_scores.append(p["scores"])
            subject = by_subject.setdefault(f"sub-{f.subject}", ([], []))
            subject[0].append(labels)
            subject[1].append(p["scores"])
            fold_detection.append(detection)
            pooled["thresholds"].append(np.full(len(labels), params["threshold"]))
            _write_recording_events(out_dir, f, events, params, summary.get("operating_points"), fold.index)
            exports.append((_reference_events_relpath(f), events, f.recording_duration, None))
        out_of_fold += [("test", _as_prediction(p)) for p in tests.values()]
        y, scores, detection = (np.concatenate(a) for a in (fold_labels, fold_scores, fold_detection))
        for key, values in (("labels", y), ("scores", scores), ("detection", detection)):
            pooled[key].append(values)
        fold_rows.append({"fold": fold.index, "test": [f"sub-{s}" for s in fold.test],
                          "postprocessing": params, "window": _window_metrics(y, scores, detection,
                                                                               params["threshold"]),
                          "event": szcore_summary(fold_records)["event"]})
    y, scores, detection = (np.concatenate(pooled[key]) for key in ("labels", "scores", "detection"))
    # Each fold has its own tuned threshold: pooled window metrics count each window at its fold's one.
    window = _window_metrics(y, scores, detection, np.concatenate(pooled["thresholds"]))
    window["threshold"] = "per fold (tuned on inner validation)"
    events = with_latencies(szcore_summary(per_recording), per_recording)
    window["subject_mean"] = _subject_ranking(by_subject, events["subjects"])
    export_tree(out_dir / "szcore", exports, bids_dir=bids_dir)
    metrics = {"window": window, "event": events["event"], "sample": events["sample"], "folds": fold_rows,
               "subjects": events["subjects"], "latencies": latencies, "model": cfg.model.preset,
               "n_windows": int(len(y)), "n_seizure_windows": int(y.sum())}
    metrics = _json_safe(metrics)
    atomic_write(group_dir / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    atomic_write(group_dir / "metrics_folds.tsv", _table(
        ["fold", "window_f1", "roc_auc", "pr_auc", "event_sensitivity", "event_precision", "event_f1", "fp_per_24h"],
        [[r["fold"], r["window"].get("f1"), r["window"].get("roc_auc"), r["window"].get("pr_auc"),
          r["event"].get("sensitivity"), r["event"].get("precision"), r["event"].get("f1"),
          r["event"].get("fp_per_24h")] for r in metrics["folds"]]))
    atomic_write(group_dir / "metrics_subjects.tsv", _table(
        ["participant_id", "event_sensitivity", "event_precision", "event_f1", "fp_per_24h", "latency_median_s",
         "latency_mean_s", "window_roc_auc", "window_pr_auc"],
        [[s["participant_id"], s["event"].get("sensitivity"), s["event"].get("precision"), s["event"].get("f1"),
          s["event"].get("fp_per_24h"), s["event"].get("latency_median_s"), s["event"].get("latency_mean_s"),
          s.get("window", {}).get("roc_auc"), s.get("window", {}).get("pr_auc")]
         for s in metrics["subjects"]]))
    out_of_fold.sort(key=lambda item: item[1]["source"])
    atomic_write(group_dir / "predictions.tsv", _predictions_tsv(out_of_fold))
    return metrics


def _subject_ranking(by_subject: dict[str, tuple[list, list]], subjects: list[dict]) -> dict:
    """Each subject's window ROC-AUC and PR-AUC of its own test windows (into ``subjects[].window``) and their
    means over the subjects with seizure windows. Why: the pooled AUCs also ask that scores be comparable across
    patients and folds (one threshold for all); these ask only how well each patient's windows are ranked, and
    weigh every patient alike, as SzCORE's event scores do."""
    for sub in subjects:
        labels, scores = by_subject.get(sub["participant_id"], ([], []))
        if labels:
            sub["window"] = ranking_metrics(np.concatenate(labels), np.concatenate(scores))
    out = {}
    for key in ("roc_auc", "pr_auc"):
        values = [sub["window"][key] for sub in subjects if sub.get("window", {}).get(key) is not None]
        out[key] = float(np.mean(values)) if values else None
    out["n_subjects"] = sum(1 for sub in subjects if sub.get("window", {}).get("pr_auc") is not None)
    return out


def _window_metrics(labels, scores, detection, threshold) -> dict:
    """Window metrics of the smoothed scores the threshold applies to, and (``unsmoothed``) the AUCs of the
    probabilities before smoothing: how well the model ranks single windows without its neighbours."""
    return {**window_metrics(labels, scores, threshold), "unsmoothed": ranking_metrics(labels, detection)}


def _latencies(f: WindowFile, record: dict, events, onsets, detection, geometry: WindowGeometry,
               params: dict) -> list[float | None]:
    """Detection latency of each reference seizure of the record (None: missed), as the streaming detector
    would raise its alarms with the recording's filters (their look-ahead: zero-phase or causal)."""
    plan = plan_from_sidecar(json.loads(f.sidecar.read_text(encoding="utf-8")))
    alarms = alarm_times(onsets, detection, geometry.duration, f.recording_duration, **event_settings(params),
                         lookahead=plan.lookahead_seconds())
    return seizure_latencies(record["ref"], events, alarms)


def _scored_record(bids_dir: Path, f: WindowFile, events) -> dict:
    """What szcore-evaluation will compare for this recording: the reference events.tsv as it reads it,
    and our events as it will read them back from the exported TSV (2 decimals, its duration)."""
    reference = bids_dir / _reference_events_relpath(f)
    try:
        ref_events, duration = read_events_tsv(reference)
        ref = [(e.onset, e.onset + e.duration) for e in ref_events]
    except (OSError, ValueError, KeyError):
        ref, duration = list(f.seizure_intervals), f.recording_duration
    return {"subject": f.subject, "ref": ref, "hyp": tsv_intervals(events, duration), "duration": duration}


def _as_prediction(p: dict) -> dict:
    return {**p, "onsets": np.array(p["onsets"]), "labels": np.array(p["labels"]), "probs": np.array(p["probs"]),
            "detection": np.array(p["detection"]), "scores": np.array(p["scores"])}


def _reference_events_relpath(f: WindowFile) -> str:
    source = Path(f.source)
    return str(source.with_name(f"{source_stem(source.name)}_events.tsv"))


def _write_recording_events(out_dir: Path, f: WindowFile, events, params: dict, points: dict | None,
                            fold: int) -> None:
    source = Path(f.source)
    path = out_dir / source.parent / f"{source_stem(source.name)}_desc-neurocare_events.tsv"
    write_events_tsv(path, events, f.recording_duration)
    sidecar = {
        "Description": "Seizures predicted by NeuroCare-BIDS (out-of-fold: the model never saw this subject)",
        "Sources": [f"bids:raw:{f.source}"],
        "eventType": {"Description": "sz = predicted seizure; bckg = no seizure predicted in the recording"},
        "confidence": {"Description": "mean seizure probability of the windows inside the event"},
        "CrossValidationFold": fold,
        "PostProcessing": params,
        "GeneratedBy": {"Name": "NeuroCare-BIDS", "Version": __version__},
    }
    atomic_write(path.with_suffix(".json"), json.dumps(sidecar, indent=2) + "\n")


def _table(header: list[str], rows: list[list]) -> str:
    def cell(v):
        if v is None:
            return "n/a"
        return f"{v:.4f}" if isinstance(v, float) else str(v)

    return "\t".join(header) + "\n" + "".join("\t".join(cell(v) for v in row) + "\n" for row in rows)


def _json_safe(obj):
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return None if not math.isfinite(float(obj)) else round(float(obj), 6)
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def train_final_model(cfg: Config, files: list[WindowFile], geometry: WindowGeometry, group_dir: Path,
                      metrics: dict, bids_dir: Path | None = None) -> Path:
    """The model to apply to new recordings: all subjects, an inner validation split for stopping/tuning.

    Its card records what apply mode needs, and (``ModelCard``, see model_card.py) the sections of a model card
    for people: details, intended use, factors, training data, metrics over the folds, limitations."""
    seizures = seizure_windows_per_subject(files)
    subjects = sorted(seizures)
    _, held_out = split_validation(subjects, seizures, cfg.cv.validation_fraction,
                                   np.random.default_rng([cfg.execution.seed, 0]))
    validation = set(held_out)
    train_files = [f for f in files if f.subject not in validation]
    val_files = [f for f in files if f.subject in validation]
    folder = group_dir / "model"
    folder.mkdir(parents=True, exist_ok=True)
    progress.info("final model: training on %d subject(s), validation on %d", len(subjects) - len(validation),
                  len(validation))
    started, cpu_started, peak_reset = time.monotonic(), time.process_time(), reset_peak_rss()
    tracker = start_tracking(cfg, group_dir, "final", "final", {"validation": sorted(validation)})
    try:
        model, history, _, params, points = fit_and_tune(cfg, train_files, val_files, geometry,
                                                         cfg.execution.seed * 1000, group_dir / "tensorboard" / "final",
                                                         "final model", tracker, folder / CHECKPOINT_FILE)
        tracker.summary({"epochs": len(history.get("loss", [])), **_tracked(params)})
    finally:
        tracker.finish()
    compute = training_compute(cfg, train_files, history, fit_seconds=time.monotonic() - started,
                               cpu_seconds=time.process_time() - cpu_started, peak_reset=peak_reset)
    path, onnx = _save_model(cfg, model, folder, "final model", geometry.stride)
    architecture = _architecture(model)
    stacking = model.summary() if isinstance(model, StackedDetector) else None
    training_subjects = [f"sub-{s}" for s in subjects if s not in validation]
    validation_subjects = [f"sub-{s}" for s in sorted(validation)]
    card = {
        "Name": "NeuroCare-BIDS seizure detector",
        "CardFormat": CARD_FORMAT,  # apply mode refuses cards of another layout
        "Version": __version__,
        "ModelFile": path.name,
        "ONNX": onnx,  # model.onnx: its SHA-256, opset and tensor names, or why there is none
        "Preset": cfg.model.preset,
        "Architecture": architecture,
        # the feature baseline stacked with the network (its file, weight and how the weight was chosen)
        "Stacking": stacking,
        "Input": {"Channels": list(geometry.channels), "SamplingFrequency": geometry.sfreq,
                  "WindowSamples": geometry.n_times, "WindowDuration": geometry.duration,
                  "WindowStride": geometry.stride / geometry.sfreq, "dtype": "float32, z-scored per channel"},
        "Preprocessing": _preprocessing_card(cfg, files, geometry),
        "PostProcessing": params,
        # both tuned operating points: best SzCORE F1 ("f1") and soonest alarms within the false-alarm bound ("alarm")
        "OperatingPoints": points,
        "TrainingSubjects": training_subjects,
        "ValidationSubjects": validation_subjects,
        "CrossValidation": {"window": metrics["window"], "event": metrics["event"]},
        "Configuration": _group_config(cfg),
        "Software": _versions(),
        # the Keras backend and devices it was trained on (not read by apply mode: model.keras loads on any backend)
        "TrainedOn": _training_entry(cfg),
        # what the training cost on that machine (as a fold's compute in fold.json; not read by apply mode)
        "Compute": compute,
        # for people, not read by apply mode: the sections of Mitchell et al.'s model cards (model_card.py)
        "ModelCard": model_card_sections(cfg, files, metrics, architecture, stacking, training_subjects,
                                         validation_subjects, bids_dir, alarm_point=points.get("alarm")),
    }
    atomic_write(folder / "model_card.json", json.dumps(_json_safe(card), indent=2) + "\n")
    (folder / CHECKPOINT_FILE).unlink(missing_ok=True)  # the model is done: nothing to resume
    progress.info("final model done in %s (%s)", duration(time.monotonic() - started),
                  _outcome(len(history.get("loss", [])), params))
    return folder


def _preprocessing_card(cfg: Config, files: list[WindowFile], geometry: WindowGeometry) -> dict:
    """How the training windows were made, as configuration sections: what apply mode must redo exactly.

    Filter settings come from the participant-level sidecars (what was done, whatever configuration this
    group run has); the default mains frequency and block length, which sidecars do not record, from the
    configuration.
    """
    meta = json.loads(files[0].sidecar.read_text(encoding="utf-8"))
    done = recorded_settings("preprocessing", meta["Preprocessing"])  # older sidecars omit causal = false
    filters = ("l_freq", "h_freq", "filter_order", "notch", "notch_harmonics", "notch_quality", "zscore", "causal")
    for f in files[1:]:
        other = json.loads(f.sidecar.read_text(encoding="utf-8"))
        if (any(recorded_settings("preprocessing", other["Preprocessing"]).get(k) != done.get(k) for k in filters)
                or other.get("Montage") != meta.get("Montage")):
            log.warning("%s was filtered differently from %s; the model card records the latter's settings",
                        f.sidecar.name, files[0].sidecar.name)
            break
    montage = meta.get("Montage", "average")
    electrodes = ([c.rsplit("-", 1)[0] for c in geometry.channels] if montage == "average"
                  else list(cfg.montage.electrodes))
    return {
        "montage": {"montage": montage, "electrodes": electrodes},
        "preprocessing": {**{k: done[k] for k in filters}, "sfreq": geometry.sfreq,
                          "line_freq": cfg.preprocessing.line_freq,
                          "block_duration": cfg.preprocessing.block_duration},
        "windows": {"duration": geometry.duration, "overlap": 1 - geometry.stride / geometry.n_times},
        "output": {"dtype": "float16" if geometry.dtype == "<f2" else "float32"},
    }


def _architecture(model) -> dict:
    if isinstance(model, StackedDetector):
        model = model.network
    if hasattr(model, "predict_proba_features"):
        return {"kind": f"window features + {model.kind}"}
    from ..training.models import model_summary

    return model_summary(model)


def _training_entry(cfg: Config) -> dict | None:
    """How the network was trained: Keras backend, distribution and replicas (None for the features preset)."""
    return None if cfg.model.preset == "features" else placement(cfg).card()


def _versions() -> dict:
    import importlib.metadata as md

    out = {"python": platform.python_version(), "neurocare-bids": __version__, "keras-backend": keras.config.backend()}
    tensorflow = ("tensorflow",) if tensorflow_installed() else ()  # optional on JAX and PyTorch
    for name in (*tensorflow, "keras", *(("jax", "jaxlib") if keras.config.backend() == "jax" else ()),
                 "numpy", "scikit-learn", "mne", "timescoring"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return out


# ---------------------------------------------------------------------- entry point
def run_group_level(cfg: Config, bids_dir: Path, out_dir: Path, fold_index: int | None, *,
                    verbosity: int = 0, plan: GroupPlan | None = None) -> dict | None:
    """Train the missing folds (or only ``fold_index``; ``execution.fold_jobs`` at a time as ``--fold K`` processes,
    which print at ``verbosity``); aggregate once all are done. Returns metrics. ``plan``: the inputs and folds, where
    the caller planned them (and ran the fold jobs) before loading Keras, as the CLI does."""
    check_tracking(cfg)  # also when called from Python, not the CLI
    if fold_index is not None:
        stop_with_parent()  # a job of --fold-jobs ends with its run
    set_training_threads(cfg.execution.omp_nthreads)  # before TensorFlow starts its thread pools
    if multi_worker(cfg):  # a configuration this machine cannot train: said before any training
        if input_pipeline(cfg) == "numpy":
            raise UsageError("multi-worker training needs training.input_pipeline = 'tf.data' (tf.distribute shards "
                             "its input)")
        if cfg.execution.fold_jobs > 1 and fold_index is None:
            raise UsageError("--fold-jobs trains folds as separate processes on this node; multi-worker training "
                             "spreads each training over the tasks of a Slurm job: choose one")
    if plan is None:  # before this process takes any device (placement): fold jobs are the ones training
        plan = plan_and_train_jobs(cfg, bids_dir, out_dir, fold_index, verbosity=verbosity)
    files, geometry, jobs_done = plan.files, plan.geometry, plan.trained_by_jobs
    group_dir = out_dir / GROUP
    place = placement(cfg) if cfg.model.preset != "features" else None
    if place is not None and not place.is_chief:
        return _run_as_worker(cfg, files, geometry, group_dir, fold_index)
    folds = plan_folds(cfg, files, group_dir) if plan.folds is None else plan.folds
    check_fold_index(fold_index, folds)
    todo = [f for f in folds if fold_index in (None, f.index) and f.index not in jobs_done]
    started, trained = time.monotonic(), 0
    for position, fold in enumerate(todo):
        raise_if_terminated()  # a SIGTERM swallowed since the last check (the feature baseline has no batches)
        if not needs_training(cfg, group_dir, fold):
            log.info("fold %d already done", fold.index)
            continue
        progress.info("fold %d/%d: test %s; training on %d subject(s), validation on %d", fold.index, len(folds),
                      ", ".join(f"sub-{s}" for s in fold.test), len(fold.train), len(fold.validation))
        fold_started = time.monotonic()
        summary = run_fold(cfg, fold, files, geometry, group_dir)
        _release(cfg)
        trained += 1
        left = sum(needs_training(cfg, group_dir, f) for f in todo[position + 1:])
        eta = (f"; {left} fold(s) left, ETA {duration((time.monotonic() - started) / trained * left)}"
               if left else "")
        progress.info("fold %d/%d done in %s (%s)%s", fold.index, len(folds), duration(time.monotonic() - fold_started),
                      _outcome(summary["epochs"], summary["postprocessing"]), eta)
    if fold_index is not None:
        return None
    raise_if_terminated()
    metrics = aggregate(cfg, folds, files, geometry, bids_dir, out_dir)
    if cfg.cv.final_model:
        raise_if_terminated()  # the metrics are written; the final model is another training
        train_final_model(cfg, files, geometry, group_dir, metrics, bids_dir)
    return metrics


def _release(cfg: Config) -> None:
    """After a fold: the next training starts without the earlier models in memory (a network's only: the
    feature baseline holds nothing global)."""
    if cfg.model.preset != "features":
        release_models()


def _run_as_worker(cfg: Config, files: list[WindowFile], geometry: WindowGeometry, group_dir: Path,
                   fold_index: int | None) -> None:
    """A non-chief worker of multi-worker training: the same trainings in the same order as the chief (their
    collectives must meet), every output into a scratch folder that is deleted; the chief writes OUT."""
    import copy
    import shutil
    import tempfile

    quiet = copy.deepcopy(cfg)
    quiet.execution.wandb = "off"  # one W&B run per training, from the chief
    if cfg.execution.work_dir:
        Path(cfg.execution.work_dir).mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="neurocare-worker-", dir=cfg.execution.work_dir or None))
    progress_level = progress.level
    progress.setLevel(logging.WARNING)  # the chief reports progress; a Slurm log merges every task's output
    try:
        for fold in plan_folds(quiet, files, scratch):
            if fold_index in (None, fold.index) and needs_training(quiet, group_dir, fold):
                run_fold(quiet, fold, files, geometry, scratch)
                _release(quiet)
        if fold_index is None and cfg.cv.final_model:
            train_final_model(quiet, files, geometry, scratch, {"window": {}, "event": {}})
    finally:
        progress.setLevel(progress_level)
        shutil.rmtree(scratch, ignore_errors=True)
    return None
