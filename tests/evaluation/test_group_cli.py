"""The group level end to end on a tiny generated dataset: CLI as a subprocess, outputs read back."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import NATIVE_LOG, as_a_foreground_job, read_tsv, run_cli
from szcore_reference import evaluate_dataset

CLEAR_REFS = os.access("/proc/self/clear_refs", os.W_OK)  # Linux: a process can reset its peak memory


def _copy(prepared, tmp_path, name):
    bids, out, config = prepared
    target = tmp_path / name
    shutil.copytree(out, target)
    return bids, target, config


def test_folds_are_subject_wise_and_validation_never_tests(sequential):
    _, out, _ = sequential
    folds = read_tsv(out / "group" / "folds.tsv")
    assert sorted(r["participant_id"] for r in folds) == ["sub-01", "sub-02", "sub-03", "sub-04"]
    assert sorted(int(r["fold"]) for r in folds) == [1, 2, 3, 4]  # fewer subjects than folds: LOSO
    splits = read_tsv(out / "group" / "splits.tsv")
    for fold in {r["fold"] for r in splits}:
        roles = {}
        for r in splits:
            if r["fold"] == fold:
                roles.setdefault(r["role"], set()).add(r["participant_id"])
        assert len(roles["test"]) == 1 and len(roles["validation"]) >= 1
        assert not roles["test"] & roles["validation"] and not roles["test"] & roles["train"]
        assert not roles["validation"] & roles["train"]
        assert roles["test"] | roles["validation"] | roles["train"] == {r["participant_id"] for r in folds}
        summary = json.loads((sequential[1] / "group" / f"fold-{fold}" / "fold.json").read_text())
        assert summary["postprocessing"]["tuned"] and sorted(summary["validation"]) == sorted(
            s[4:] for s in roles["validation"])


def test_metrics_predictions_events_and_model(sequential):
    bids, out, result = sequential
    metrics = json.loads((out / "group" / "metrics.json").read_text())
    for key in ("accuracy", "f1", "roc_auc", "pr_auc"):
        assert key in metrics["window"]
    for key in ("sensitivity", "precision", "f1", "fp_per_24h"):
        assert key in metrics["event"]
    assert len(metrics["folds"]) == 4 and len(metrics["subjects"]) == 4
    assert "PR-AUC" in result.stdout and "Event level (SzCORE)" in result.stdout

    predictions = read_tsv(out / "group" / "predictions.tsv")  # out of fold: every window once
    sidecars = sorted(out.glob("sub-*/**/*_desc-preproc_windows.json"))
    assert len(predictions) == sum(json.loads(p.read_text())["WindowCount"] for p in sidecars)
    assert all(0.0 <= float(r["probability"]) <= 1.0 for r in predictions)
    # postprocessing.centre (default): each recording's detection probabilities are its probabilities moved so
    # that its median log-odds is 0, and the window metrics are computed from them
    from sklearn.metrics import average_precision_score

    by_recording: dict[str, list] = {}
    for r in predictions:
        by_recording.setdefault(r["recording"], []).append(r)
    full_labels, full_detection, full_scores = [], [], []  # from the full-precision probabilities
    for rows in by_recording.values():
        rows = sorted(rows, key=lambda r: int(r["window_index"]))
        p = np.clip([float(r["probability"]) for r in rows], 1e-7, 1 - 1e-7)
        z = np.log(p) - np.log1p(-p)
        expected = 1 / (1 + np.exp(-(z - np.median(z))))
        np.testing.assert_allclose([float(r["detection_probability"]) for r in rows], expected, atol=2e-6)
        full_labels += [int(r["label"]) for r in rows]
        full_detection += list(expected)
        full_scores += [expected[max(0, i - 1):i + 2].mean() for i in range(len(expected))]
        # the scores the threshold applies to: the detection probabilities averaged over each window and its
        # neighbours (postprocessing.smoothing = 3), the windows that exist at the recording's ends
        d = np.array([float(r["detection_probability"]) for r in rows])
        expected = [d[max(0, i - 1):i + 2].mean() for i in range(len(d))]
        np.testing.assert_allclose([float(r["smoothed_probability"]) for r in rows], expected, atol=2e-6)
    labels = [int(r["label"]) for r in predictions]
    detection = [float(r["detection_probability"]) for r in predictions]
    scores = [float(r["smoothed_probability"]) for r in predictions]
    assert metrics["window"]["pr_auc"] == pytest.approx(average_precision_score(labels, scores), abs=1e-4)
    assert metrics["window"]["unsmoothed"]["pr_auc"] == pytest.approx(average_precision_score(labels, detection),
                                                                      abs=1e-4)
    # ... and exactly, from the full-precision probabilities (the rounded columns could tie windows that differ
    # beyond their last digit near 0 or 1)
    assert metrics["window"]["pr_auc"] == pytest.approx(average_precision_score(full_labels, full_scores),
                                                        abs=1e-6)  # metrics.json keeps 6 decimals
    assert metrics["window"]["unsmoothed"]["pr_auc"] == pytest.approx(
        average_precision_score(full_labels, full_detection), abs=1e-6)
    # thresholded window metrics: each window's score at its fold's tuned threshold
    folds_of = {r["participant_id"]: int(r["fold"]) for r in read_tsv(out / "group" / "folds.tsv")}
    threshold = {f["fold"]: f["postprocessing"]["threshold"] for f in metrics["folds"]}
    called = [s >= threshold[folds_of[r["participant_id"]]] for s, r in zip(scores, predictions)]
    assert metrics["window"]["confusion_matrix"]["tp"] == sum(c and y for c, y in zip(called, labels))
    assert metrics["window"]["confusion_matrix"]["fp"] == sum(c and not y for c, y in zip(called, labels))

    events = sorted(out.glob("sub-*/**/*_desc-neurocare_events.tsv"))
    assert len(events) == 4 and all(e.with_suffix(".json").exists() for e in events)
    header = events[0].read_text().splitlines()[0].split("\t")
    assert header == ["onset", "duration", "eventType", "confidence", "channels", "dateTime", "recordingDuration"]
    exported = sorted(p.relative_to(out / "szcore") for p in (out / "szcore").rglob("*.tsv"))
    assert exported == sorted(p.relative_to(bids) for p in bids.rglob("sub-*/**/*_events.tsv"))

    card = json.loads((out / "group" / "model" / "model_card.json").read_text())
    assert card["Input"]["SamplingFrequency"] == 128.0 and len(card["Input"]["Channels"]) == 19
    assert 0 < card["PostProcessing"]["threshold"] < 1 and card["Software"]["keras"]
    assert card["PostProcessing"]["centre"] is True  # apply mode and streaming centre as the tuning did
    # both operating points, tuned on the validation subjects: best F1 (the default objective, = PostProcessing)
    # and soonest alarms within postprocessing.max_fp_per_24h
    points = card["OperatingPoints"]
    assert {k: points["f1"][k] for k in card["PostProcessing"]} == card["PostProcessing"]
    alarm = points["alarm"]
    assert alarm["smoothing"] in (1, 2, 3, 5) and alarm["max_fp_per_24h"] == 2.0 and alarm["tuned"] is True
    assert alarm["constraint_met"] == (alarm["validation_fp_per_24h"] <= 2.0)
    # how little the validation hours establish about the rate, in the alarm point and the card's limitations
    from neurocare_bids.evaluation.tuning import fp_rate_upper_bound
    assert 0 < alarm["validation_hours"] and alarm["validation_fp_count"] >= 0
    assert alarm["fp_per_24h_upper95"] == pytest.approx(  # the card rounds its floats
        fp_rate_upper_bound(alarm["validation_fp_count"], alarm["validation_hours"]), rel=1e-4)
    note = [t for t in card["ModelCard"]["Limitations"] if t.startswith("The alarm point")]
    assert len(note) == 1 and f"on {alarm['validation_hours']:.1f} h of validation recordings" in note[0]
    assert ("too few hours to establish the bound" in note[0]) == (alarm["constraint_met"]
                                                                  and alarm["fp_per_24h_upper95"] > 2.0)
    for fold in metrics["folds"]:
        summary = json.loads((out / "group" / f"fold-{fold['fold']}" / "fold.json").read_text())
        assert set(summary["operating_points"]) == {"f1", "alarm"}
        assert summary["operating_points"]["f1"] == summary["postprocessing"]
    import keras

    # In a fresh interpreter: plain Keras cannot load the model, one import of ours is all it takes (README).
    script = ("import sys, keras\n"
              "try:\n    keras.models.load_model(sys.argv[1])\nexcept TypeError as e:\n"
              "    assert 'SpectralFeatures' in str(e) or 'ChannelFeatures' in str(e), e\nelse:\n    sys.exit('loaded without our layer')\n"
              "import neurocare_bids.training.models\nprint(keras.models.load_model(sys.argv[1]).output_shape)\n")
    loaded = subprocess.run([sys.executable, "-c", script, str(out / "group" / "model" / card["ModelFile"])],
                            capture_output=True, text=True, timeout=300)
    assert loaded.returncode == 0 and loaded.stdout.strip() == "(None, 2)", loaded.stderr[-2000:]
    import neurocare_bids.training.models  # noqa: F401 - registers our layers and the focal loss

    model = keras.models.load_model(out / "group" / "model" / card["ModelFile"])
    assert model.output_shape == (None, 2)
    assert list((out / "group" / "tensorboard").iterdir())


ELAPSED = r"\[(\d+):(\d\d):(\d\d)\] "


def test_each_fold_records_what_it_cost(sequential):
    """fold.json's ``compute``: the training steps' seconds are its per-epoch ones summed, the windows they trained
    are epochs x batches x batch size of the configuration, and the parts fit inside the fold's wall time;
    group.html's folds table shows them; metrics.json and history.tsv, identical between runs, carry no timing."""
    _, out, _ = sequential
    for fold in sorted((out / "group").glob("fold-*")):
        summary = json.loads((fold / "fold.json").read_text())
        compute = summary["compute"]
        assert compute["backend"] == os.environ.get("KERAS_BACKEND", "tensorflow")
        assert compute["epochs"] == summary["epochs"] == 1 and compute["batches_per_epoch"] == 3
        assert compute["batch_size"] == 16 and compute["training_windows"] == 48
        history = read_tsv(fold / "history.tsv")
        assert len(history) == 1 and not [c for c in history[0] if "seconds" in c]
        assert compute["training_seconds"] == pytest.approx(sum(compute["epoch_training_seconds"]), abs=1e-3)
        assert compute["validation_seconds"] == pytest.approx(sum(compute["epoch_validation_seconds"]), abs=1e-3)
        assert len(compute["epoch_training_seconds"]) == len(compute["epoch_validation_seconds"]) == 1
        assert 0 < compute["training_seconds"] and 0 < compute["validation_seconds"]
        assert compute["training_seconds"] + compute["validation_seconds"] < compute["fit_seconds"]
        assert compute["training_windows_per_second"] == pytest.approx(48 / compute["training_seconds"], rel=1e-2)
        test_windows = sum(1 for r in read_tsv(fold / "predictions.tsv") if r["split"] == "test")
        assert compute["test_windows"] == test_windows and compute["test_prediction_seconds"] > 0
        assert compute["cpu_seconds"] > 0 and compute["peak_rss_mib"] > 100
        assert compute["threads"] == 1  # --omp-nthreads 1 (every core it may use without: the alarm test)
        assert compute["peak_rss_since"] == ("training start" if CLEAR_REFS else "process start")
        assert f"{compute['fit_seconds'] / 60:.1f} min ({compute['training_windows_per_second']:,.0f} windows/s)" in (
            out / "group.html").read_text()
    assert "seconds" not in (out / "group" / "metrics.json").read_text()
    # the final model's training, in its card: no test subjects, the same accounting
    card = json.loads((out / "group" / "model" / "model_card.json").read_text())
    compute = card["Compute"]
    assert "test_windows" not in compute and compute["epochs"] == 1 and compute["training_windows"] == 48
    assert compute["training_seconds"] + compute["validation_seconds"] < compute["fit_seconds"]
    assert compute["backend"] == card["TrainedOn"]["KerasBackend"] and compute["peak_rss_mib"] > 100


@pytest.mark.skipif(not CLEAR_REFS, reason="needs Linux's /proc/self/clear_refs")
def test_a_trainings_peak_memory_starts_at_its_start():
    """reset_peak_rss: once 400 MiB were touched and freed, the peak memory starts again from what the process
    holds now, so a later fold does not report an earlier fold's peak."""
    import resource

    from neurocare_bids.evaluation.group import reset_peak_rss

    block = np.ones(400 * 2 ** 20 // 8)
    del block
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert reset_peak_rss()
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert after < before - 300 * 2 ** 10  # KiB


def test_group_log_without_a_terminal_is_readable(sequential):
    """The shared run's captured output (no terminal, default verbosity, what a Slurm output file holds): no native
    TensorFlow line, and plain progress lines on stderr (README: Logs and progress): each fold's start and end,
    its epochs, the final model's; the results table alone on stdout."""
    _, _, result = sequential
    for stream in (result.stdout, result.stderr):
        assert not NATIVE_LOG.search(stream), NATIVE_LOG.search(stream).group(0)
    assert not re.search(ELAPSED, result.stdout)
    prefixes = [re.match(ELAPSED, line) for line in result.stderr.splitlines()]
    assert prefixes and all(prefixes), result.stderr  # nothing else at all
    elapsed = [[int(n) for n in p.groups()] for p in prefixes]
    assert elapsed == sorted(elapsed)  # since the run started
    text = [p.string[p.end():] for p in prefixes]
    trained = r"\(1 epoch, threshold [01]\.\d\d(\d+ \(log-odds \d+\.\d\))?, min duration [\d.]+ s\)"
    expected = []
    for fold in (1, 2, 3, 4):
        left = rf"; {4 - fold} fold\(s\) left, ETA \d+:\d\d:\d\d" if fold < 4 else ""
        expected += [rf"fold {fold}/4: test sub-0\d; training on 2 subject\(s\), validation on 1",
                     rf"fold {fold} epoch 1/1: loss \d+\.\d{{4}}, validation PR-AUC \d\.\d{{3}}",
                     rf"fold {fold}/4 done in \d+:\d\d:\d\d {trained}{left}"]
    expected += [r"final model: training on 3 subject\(s\), validation on 1",
                 r"final model epoch 1/1: loss \d+\.\d{4}, validation PR-AUC \d\.\d{3}",
                 r"final model done in \d+:\d\d:\d\d " + trained]
    assert len(text) == len(expected), result.stderr
    for line, pattern in zip(text, expected):
        assert re.fullmatch(pattern, line), (line, pattern)


def test_latency_of_each_detected_seizure_follows_from_predictions_tsv(sequential):
    """metrics.json's detection latencies recomputed from the files: each recording's out-of-fold detection
    probabilities (predictions.tsv) replayed through the streaming detector's event tracker with its fold's
    post-processing, each window known once its end plus the recording's filter look-ahead had arrived (from its
    sidecar: the zero-phase filters' block margin and the resampling filter's reach), the alarms matched to the
    reference seizures with SzCORE's tolerances; overall, per subject (metrics_subjects.tsv) and in group.html."""
    from neurocare_bids.detection.streaming import EventTracker
    from neurocare_bids.detection.szcore import read_events_tsv

    bids, out, _ = sequential
    metrics = json.loads((out / "group" / "metrics.json").read_text())
    fold_of = {r["participant_id"]: r["fold"] for r in read_tsv(out / "group" / "folds.tsv")}
    by_recording: dict[str, list] = {}
    for r in read_tsv(out / "group" / "predictions.tsv"):
        by_recording.setdefault(r["recording"], []).append(r)
    expected = []
    for source, rows in sorted(by_recording.items()):
        rows.sort(key=lambda r: int(r["window_index"]))
        participant = rows[0]["participant_id"]
        post = json.loads((out / "group" / f"fold-{fold_of[participant]}" / "fold.json").read_text())["postprocessing"]
        stem = source[:-len("_eeg.edf")]
        meta = json.loads((out / f"{stem}_desc-preproc_windows.json").read_text())
        pre, sfreq, window = meta["Preprocessing"], meta["SamplingFrequency"], meta["WindowDuration"]
        up = int(pre["ResamplingFactor"].split("/")[0])
        reach = ((pre["AntiAliasFilterTaps"] // 2) // up + 2) / pre["InputSamplingFrequency"]
        lookahead = pre["BlockMarginSamples"] / sfreq + reach
        assert 17 < lookahead < 19  # zero-phase filters at 128 Hz (the demo is recorded at 256 Hz)
        tracker = EventTracker(window, round(meta["WindowStride"] * sfreq), sfreq,
                               **{k: post[k] for k in ("threshold", "min_duration", "merge_gap", "smoothing")})
        duration = meta["RecordingDuration"]
        reports = []
        for r in rows:
            reports += tracker.push(float(r["detection_probability"]),
                                    min(float(r["onset"]) + window + lookahead, duration))
        reports += tracker.finish(duration)
        alarms = [r.detected_at for r in reports if not r.final]
        written, _ = read_events_tsv(out / f"{stem}_desc-neurocare_events.tsv")
        assert len(alarms) == len(tracker.events) == len(written)  # the events group wrote, one alarm each
        assert np.allclose([e.onset for e in tracker.events], [e.onset for e in written], atol=0.006)
        for seizure in read_events_tsv(bids / f"{stem}_events.tsv")[0]:
            hits = [t for t, e in zip(alarms, tracker.events)
                    if e.onset < seizure.onset + seizure.duration + 60 and e.offset > seizure.onset - 30]
            if hits:
                expected.append((participant, source, seizure.onset, min(hits) - seizure.onset))
    got = [(r["participant_id"], r["recording"], r["onset"], r["latency_s"]) for r in metrics["latencies"]]
    assert [g[:3] for g in sorted(got)] == [e[:3] for e in sorted(expected)] and expected
    np.testing.assert_allclose([g[3] for g in sorted(got)], [e[3] for e in sorted(expected)], atol=1e-5)
    values = [e[3] for e in expected]
    event = metrics["event"]
    assert event["latency_n_seizures"] == len(values) <= sum(s["event"]["tp"] for s in metrics["subjects"])
    assert event["latency_median_s"] == pytest.approx(np.median(values), abs=1e-5)
    assert event["latency_mean_s"] == pytest.approx(np.mean(values), abs=1e-5)
    table = {r["participant_id"]: r for r in read_tsv(out / "group" / "metrics_subjects.tsv")}
    for participant in table:
        mine = [e[3] for e in expected if e[0] == participant]
        cell = table[participant]["latency_median_s"]
        assert cell == (f"{np.median(mine):.4f}" if mine else "n/a")
        assert table[participant]["latency_mean_s"] == (f"{np.mean(mine):.4f}" if mine else "n/a")
    html = (out / "group.html").read_text()
    assert "<h3>Detection latency</h3>" in html and 'aria-label="latency"' in html


def test_per_subject_window_ranking_recomputed_from_the_predictions(sequential):
    """``subjects[].window`` and ``window.subject_mean``: each subject's AUCs of its own out-of-fold smoothed
    scores, as sklearn computes them from predictions.tsv, their mean, and the same in metrics_subjects.tsv."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    _, out, _ = sequential
    metrics = json.loads((out / "group" / "metrics.json").read_text())
    rows = [r for r in read_tsv(out / "group" / "predictions.tsv") if r["split"] == "test"]
    table = {r["participant_id"]: r for r in read_tsv(out / "group" / "metrics_subjects.tsv")}
    expected = {}
    for sub in {r["participant_id"] for r in rows}:
        y = np.array([int(r["label"]) for r in rows if r["participant_id"] == sub])
        p = np.array([float(r["smoothed_probability"]) for r in rows if r["participant_id"] == sub])
        if 0 < y.sum() < y.size:
            expected[sub] = (roc_auc_score(y, p), average_precision_score(y, p))
    assert expected, "the quick group run should have subjects with seizure windows"
    got = {s["participant_id"]: s["window"] for s in metrics["subjects"] if s.get("window", {}).get("pr_auc")}
    assert sorted(got) == sorted(expected)
    for sub, (roc, pr) in expected.items():  # predictions.tsv keeps 9 significant digits
        assert got[sub]["roc_auc"] == pytest.approx(roc, abs=1e-6)
        assert got[sub]["pr_auc"] == pytest.approx(pr, abs=1e-6)
        assert float(table[sub]["window_pr_auc"]) == pytest.approx(pr, abs=6e-5)  # 4 decimals
    mean = metrics["window"]["subject_mean"]
    assert mean["n_subjects"] == len(expected)
    assert mean["pr_auc"] == pytest.approx(np.mean([pr for _, pr in expected.values()]), abs=2e-4)
    assert mean["roc_auc"] == pytest.approx(np.mean([roc for roc, _ in expected.values()]), abs=2e-4)


def test_szcore_export_scored_by_szcore_evaluation_matches_metrics(sequential):
    bids, out, _ = sequential
    metrics = json.loads((out / "group" / "metrics.json").read_text())
    scored = evaluate_dataset(bids, out / "szcore")
    for ours, theirs in (("sensitivity", "sensitivity"), ("precision", "precision"), ("f1", "f1"),
                         ("fp_per_24h", "fpRate")):
        expected = scored["event_results"][theirs]
        if expected != expected:  # NaN: undefined for every subject
            assert metrics["event"][ours] is None
        else:
            assert metrics["event"][ours] == pytest.approx(expected, abs=1e-6)


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs a process allowed two CPU cores")
def test_omp_nthreads_makes_a_fold_job_equal_whatever_cores_it_runs_on(prepared, tmp_path):
    """TensorFlow's CPU kernels split their sums by thread, so the same fold trained on one core and on two differs
    in the last digits of its probabilities (the quick model of these tests too). With ``--omp-nthreads 1`` a job
    pinned to one core and a job free to use two both train with one thread: identical predictions and history,
    and each fold records the threads it ran with."""
    bids, one_core, config = _copy(prepared, tmp_path, "one-core")
    _, two_cores, _ = _copy(prepared, tmp_path, "two-cores")
    core = min(os.sched_getaffinity(0))
    pinned = run_cli(bids, one_core, "group", "--config", config, "--fold", 1, "--omp-nthreads", 1, timeout=600,
                     preexec_fn=lambda: os.sched_setaffinity(0, {core}))
    free = run_cli(bids, two_cores, "group", "--config", config, "--fold", 1, "--omp-nthreads", 1, timeout=600)
    for result in (pinned, free):
        assert result.returncode == 0, result.stderr
    for name in ("predictions.tsv", "history.tsv"):
        one, two = (out / "group" / "fold-1" / name for out in (one_core, two_cores))
        assert one.read_bytes() == two.read_bytes()
    for out in (one_core, two_cores):
        assert json.loads((out / "group" / "fold-1" / "fold.json").read_text())["compute"]["threads"] == 1
    assert "omp_nthreads = 1" in next((one_core / "logs").glob("group-fold1_*/config.toml")).read_text()


def test_alarm_objective_makes_the_alarm_point_the_folds_post_processing(prepared, tmp_path):
    """``postprocessing.objective = "alarm"``: the fold's events and metrics use the alarm operating point, whose
    smoothing is also the one the fold's smoothed scores were computed with."""
    bids, participant_out, config = prepared
    out = tmp_path / "out"
    shutil.copytree(participant_out, out)
    alarm = tmp_path / "alarm.toml"
    alarm.write_text(config.read_text() + "stacking = false\n[postprocessing]\nobjective = \"alarm\"\n"
                     "max_fp_per_24h = 30\n")
    result = run_cli(bids, out, "group", "--config", alarm, "--fold", "1", "--no-reports")
    assert result.returncode == 0, result.stderr
    summary = json.loads((out / "group" / "fold-1" / "fold.json").read_text())
    assert summary["compute"]["threads"] == len(os.sched_getaffinity(0))  # no --omp-nthreads: every core it may use
    points = summary["operating_points"]
    assert summary["postprocessing"] == points["alarm"] != points["f1"]
    assert points["alarm"]["max_fp_per_24h"] == 30.0
    rows = [r for r in read_tsv(out / "group" / "fold-1" / "predictions.tsv") if r["split"] == "test"]
    rows.sort(key=lambda r: (r["recording"], int(r["window_index"])))
    from neurocare_bids.detection.postprocess import smooth

    k = points["alarm"]["smoothing"]
    for recording in {r["recording"] for r in rows}:
        mine = [r for r in rows if r["recording"] == recording]
        detection = np.array([float(r["detection_probability"]) for r in mine])
        np.testing.assert_allclose([float(r["smoothed_probability"]) for r in mine], smooth(detection, k), atol=2e-6)


def _lists_tensorflow_import(text: str) -> bool:
    """Whether ``text`` holds the line ``PYTHONPROFILEIMPORTTIME`` writes for the ``tensorflow`` package."""
    return any(line.rstrip().endswith("| tensorflow") for line in text.splitlines())


def _imports_tensorflow(result, out) -> bool:
    """Whether a run (with ``PYTHONPROFILEIMPORTTIME`` set: Python lists every import on stderr) imported TensorFlow.
    Its own lines are held back into the run's log with TensorFlow's start-up messages, so both are read."""
    logs = "".join(p.read_text() for p in out.glob("logs/group*/neurocare.log"))
    return _lists_tensorflow_import(result.stderr + logs)


def _message_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if not line.startswith("import time:")]


def test_group_level_errors(prepared, tmp_path):
    """Bad input: one line, its exit code. The inputs and folds are checked before TensorFlow is imported, so such
    an error comes at once; one found after it (multi-worker training without tf.data) holds its start-up lines back."""
    bids, out, config = prepared
    imports = {**os.environ, "PYTHONPROFILEIMPORTTIME": "1"}
    empty = tmp_path / "empty"
    result = run_cli(bids, empty, "group", "--config", config)
    assert result.returncode == 66 and "run the participant level first" in result.stderr
    copy = _copy(prepared, tmp_path, "out")[1]
    result = run_cli(bids, copy, "group", "--config", config, "--fold", "9", env=imports)
    assert result.returncode == 64 and "--fold 9 does not exist" in result.stderr
    assert len(_message_lines(result.stderr)) == 1 and not _imports_tensorflow(result, copy)
    result = run_cli(bids, copy, "group", "--config", config, "--participant-label", "01", "02", env=imports)
    assert result.returncode == 65 and "at least 3 subjects" in result.stderr
    assert len(_message_lines(result.stderr)) == 1 and not _imports_tensorflow(result, copy)
    result = run_cli(bids, copy, "participant", "--fold", "1", "--skip-bids-validation")
    assert result.returncode == 64 and "group level only" in result.stderr
    # found once TensorFlow is loaded: its start-up lines (and its imports) went to the log, not the console
    late = _copy(prepared, tmp_path, "late")[1]
    multi_worker = tmp_path / "multi-worker.toml"
    multi_worker.write_text(config.read_text().replace("[training]\n", '[training]\ninput_pipeline = "numpy"\n')
                            .replace("[execution]\n", '[execution]\ndistribution = "multi-worker"\n'))
    result = run_cli(bids, late, "group", "--config", multi_worker, env=imports)
    assert result.returncode == 64 and "multi-worker training needs training.input_pipeline" in result.stderr
    assert len(_message_lines(result.stderr)) == 1 and _imports_tensorflow(result, late)
    assert not _lists_tensorflow_import(result.stderr)
    assert all("Traceback" not in r for r in (result.stderr,))


def test_a_finished_fold_is_not_reused_with_another_group_configuration_or_seed(prepared, sequential, tmp_path):
    """README: a later group run "skips the folds already done (same data, seed and group configuration)" (the
    reuse itself: test_fold_jobs.py). On a copy of a finished group
    level, a changed group option trains fold 1 again and its fold.json records the new option; a changed seed,
    which assigns other folds, is refused (64) with the finished folds left as they were, never mixed."""
    bids, config = prepared[0], prepared[2]
    out = tmp_path / "out"
    shutil.copytree(sequential[1], out)
    fold = out / "group" / "fold-1"
    before = json.loads((fold / "fold.json").read_text())
    assert before["group_config"]["postprocessing"]["merge_gap"] == 30.0

    changed = tmp_path / "changed.toml"
    changed.write_text(config.read_text() + "[postprocessing]\nmerge_gap = 20.0\n")
    result = run_cli(bids, out, "group", "--config", changed, "--fold", "1", "--no-reports", "-v", timeout=600)
    assert result.returncode == 0, result.stderr
    assert "already done" not in result.stderr and "fold 1/4: test" in result.stderr
    after = json.loads((fold / "fold.json").read_text())
    assert after["group_config"]["postprocessing"]["merge_gap"] == 20.0
    assert {k: v for k, v in after["group_config"].items() if k != "postprocessing"} == \
        {k: v for k, v in before["group_config"].items() if k != "postprocessing"}

    trained = {p: p.read_bytes() for p in (out / "group").rglob("*") if p.is_file()}
    result = run_cli(bids, out, "group", "--config", changed, "--seed", "7", "--fold", "1", "--no-reports",
                     timeout=600)
    assert result.returncode == 64, result.stderr
    assert "folds.tsv was made for other subjects or settings; use --overwrite" in result.stderr
    assert {p: p.read_bytes() for p in (out / "group").rglob("*") if p.is_file()} == trained


# SIGTERM (or Ctrl-C) swallowed as the group level starts to aggregate the folds, as a garbage-collector callback
# swallows it (JAX registers one): the aggregation that was under way finishes, then the run stops instead of
# training the final model and building the reports as if no signal had come.
SIGNAL_SWALLOWED_IN_AGGREGATION = """
import gc, os, signal, sys
from neurocare_bids.cli import run
from neurocare_bids.evaluation import group

sig, aggregate = getattr(signal, sys.argv[4]), group.aggregate
def collecting(phase, info):
    if phase == "start":
        gc.callbacks.remove(collecting)
        os.kill(os.getpid(), sig)
        for _ in range(10 ** 6):  # the handler runs, and raises, in here: Python drops it
            pass
def aggregate_after_a_swallowed_signal(*args, **kwargs):
    gc.callbacks.append(collecting)
    gc.collect()
    return aggregate(*args, **kwargs)
group.aggregate = aggregate_after_a_swallowed_signal
sys.exit(run.main([sys.argv[1], sys.argv[2], "group", "--config", sys.argv[3], "--skip-bids-validation"]))
"""


@pytest.mark.parametrize("sig, code, line", [
    ("SIGTERM", 143, "neurocare-bids: terminated (SIGTERM): finished outputs are kept; rerun to complete the rest"),
    ("SIGINT", 130, "neurocare-bids: interrupted")])
def test_a_signal_swallowed_while_aggregating_stops_the_run_before_the_final_model(prepared, tmp_path, sig, code,
                                                                                    line):
    """The feature baseline (no training batches to check at): exit 143 or 130 with the one line, no traceback; the
    metrics and events, whose writing was under way, complete; no final model, no report, no temporary. (Before,
    the run went on to the end and exited 0.)"""
    bids, out, _ = _copy(prepared, tmp_path, "out")
    config = tmp_path / "features.toml"
    config.write_text('[model]\npreset = "features"\n[cv]\nfolds = 2\n')
    proc = subprocess.run([sys.executable, "-c", SIGNAL_SWALLOWED_IN_AGGREGATION, bids, out, config, sig],
                          capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONWARNINGS": "ignore"},
                          preexec_fn=as_a_foreground_job)
    assert proc.returncode == code, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == line
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr, proc.stderr
    group = out / "group"
    metrics = json.loads((group / "metrics.json").read_text())
    assert len(metrics["folds"]) == 2 and metrics["n_windows"] > 0
    assert len(list(out.glob("sub-*/**/*_desc-neurocare_events.tsv"))) == len(list(out.glob("sub-*/**/*.tfrecord")))
    assert not (group / "model").exists() and not (out / "group.html").exists() and not list(out.rglob(".*.tmp"))
