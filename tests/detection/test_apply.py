"""Apply mode (``participant --model``): a model trained by the group level, applied to new recordings.

A tiny model is trained once per session through the group CLI on the shared demo dataset; the tests apply
it through the CLI (outputs, refusals, exit codes), compare apply mode's probabilities with the model run on
the participant level's own training windows (same preprocessing), and ONNX Runtime (the default engine) with
Keras.
"""

from __future__ import annotations

import gzip
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import (EVENT_COLUMNS, add_recording, move_batchnorm_statistics, read_tsv, read_windows, run_cli,
                      trained_model_folder)

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # Keras's own

SEIZURES = [(300.0, 60.0, "sz"), (600.0, 45.0, "sz")]


def centred_copy(model_folder: Path, target: Path) -> Path:
    """A copy of the model folder whose card asks for probability centring (same model and thresholds)."""
    shutil.copytree(model_folder, target)
    card = json.loads((target / "model_card.json").read_text())
    card["PostProcessing"]["centre"] = True
    (target / "model_card.json").write_text(json.dumps(card, indent=2))
    return target


def apply_api(model, path: Path, tmp_path: Path):
    """Batch apply mode on one recording through the Python API (for comparisons with streaming)."""
    from neurocare_bids.detection.apply import open_for_model, predict_recording
    from neurocare_bids.preprocessing.participant import mains_frequency

    warnings: list[str] = []
    recording = _recording(path)
    source, montage = open_for_model(recording, model, warnings)
    plan = model.plan_for(source.sfreq, mains_frequency(recording.metadata, warnings))
    return predict_recording(source, montage, plan, model, tmp_path / "work", 2, warnings)


def _recording(path: Path):
    from neurocare_bids.io.bids_input import Recording, source_stem

    root = path.parents[3]
    entities = dict(part.split("-", 1) for part in source_stem(path.name).split("_"))
    names = {"sub": "subject", "ses": "session", "task": "task", "run": "run"}
    sidecar = json.loads(path.with_name(f"{source_stem(path.name)}_eeg.json").read_text())
    return Recording(path, root, {names[k]: v for k, v in entities.items()}, sidecar)


@pytest.fixture(scope="module")
def model_folder(prepared, tmp_path_factory):
    return trained_model_folder(prepared, tmp_path_factory)


@pytest.fixture(scope="module")
def applied(model_folder, tmp_path_factory):
    """A new dataset (no events.tsv) with one usable recording and two the model cannot use, applied once."""
    root = tmp_path_factory.mktemp("apply")
    bids, out = root / "bids", root / "out"
    good = add_recording(bids, "11", duration=900.0, seizures=SEIZURES, events=None, seed=11)
    add_recording(bids, "12", duration=120.0, events=None, labels=[f"{e}-Avg" for e in ("Fp1", "F3", "C3", "P3")])
    add_recording(bids, "13", duration=120.0, events=None, sfreq=50.0)
    result = run_cli(bids, out, "participant", "--model", model_folder, "--skip-bids-validation")
    return bids, out, good, result


def test_model_card_records_the_preprocessing(model_folder, prepared):
    card = json.loads((model_folder / "model_card.json").read_text())
    assert card["CardFormat"] == 1 and card["Version"]
    sidecar = json.loads(next(prepared[1].glob("sub-*/**/*_desc-preproc_windows.json")).read_text())
    done = sidecar["Preprocessing"]
    section = card["Preprocessing"]["preprocessing"]
    for key in ("l_freq", "h_freq", "filter_order", "notch", "notch_harmonics", "notch_quality", "zscore"):
        assert section[key] == done[key]
    assert section["sfreq"] == sidecar["SamplingFrequency"]
    assert card["Preprocessing"]["montage"]["montage"] == sidecar["Montage"]
    assert [f"{e}-Avg" for e in card["Preprocessing"]["montage"]["electrodes"]] == sidecar["Channels"]
    assert card["Preprocessing"]["output"]["dtype"] == "float32"


def test_apply_writes_events_probabilities_and_szcore_tree(applied, model_folder):
    bids, out, good, result = applied
    assert result.returncode == 65, result.stderr  # two recordings could not be used; the good one was
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("neurocare-bids: error: ")]
    assert len(errors) == 2
    assert "sub-12" in errors[0] and "missing electrode" in errors[0]
    assert "sub-13" in errors[1] and "sampling rate 50 Hz is too low" in errors[1]

    stem = good.name[: good.name.rindex("_")]
    folder = out / good.parent.relative_to(bids)
    card = json.loads((model_folder / "model_card.json").read_text())
    post = card["PostProcessing"]

    series = folder / f"{stem}_desc-seizureprob_timeseries.tsv.gz"
    meta = json.loads(series.with_name(f"{stem}_desc-seizureprob_timeseries.json").read_text())
    rows = np.loadtxt(gzip.open(series, "rt"), delimiter="\t", ndmin=2)
    assert meta["Columns"] == ["onset", "probability", "smoothed_probability"]
    assert rows.shape == ((900 - 4) // 2 + 1, 3)  # 4 s windows every 2 s over 900 s
    np.testing.assert_allclose(rows[:, 0], np.arange(len(rows)) * 2.0)
    assert meta["SamplingFrequency"] == 0.5 and meta["StartTime"] == 0 and meta["WindowDuration"] == 4.0
    assert ((rows[:, 1:] >= 0) & (rows[:, 1:] <= 1)).all()
    from neurocare_bids.detection.postprocess import probabilities_to_events, smooth

    np.testing.assert_allclose(rows[:, 2], smooth(rows[:, 1], post["smoothing"]), atol=2e-6)
    assert meta["Model"]["ModelFile"] == "model.keras" and meta["Model"]["Engine"] == "onnx"
    assert meta["Model"]["ONNXSHA256"] == card["ONNX"]["SHA256"]
    # the run of windows went through the consecutive-window graph (same numbers to 1e-5, see below)
    assert meta["Model"]["ONNXConsecutiveSHA256"] == card["ONNX"]["Consecutive"]["SHA256"]
    assert meta["PostProcessing"]["centre"] is False and meta["ProbabilityCentring"] is None

    events = folder / f"{stem}_desc-neurocare_events.tsv"
    table = read_tsv(events)
    assert events.read_text().splitlines()[0].split("\t") == EVENT_COLUMNS
    assert all(r["recordingDuration"] == "900.00" for r in table)
    expected = probabilities_to_events(rows[:, 0], rows[:, 1], 4.0, 900.0, threshold=post["threshold"],
                                       min_duration=post["min_duration"], merge_gap=post["merge_gap"],
                                       smoothing=post["smoothing"])
    if expected:
        written = [(float(r["onset"]), float(r["duration"])) for r in table]
        assert np.allclose(written, [(e.onset, e.duration) for e in expected], atol=0.006)
    else:
        assert [r["eventType"] for r in table] == ["bckg"]
    sidecar = json.loads(events.with_suffix(".json").read_text())
    assert sidecar["PostProcessing"]["threshold"] == post["threshold"]

    exported = sorted(p.relative_to(out / "szcore") for p in (out / "szcore").rglob("*.tsv"))
    assert exported == [good.relative_to(bids).with_name(f"{stem}_events.tsv")]
    assert (out / "szcore" / exported[0]).read_text() == events.read_text()
    # nothing for the recordings that failed, and no training windows in this mode
    assert not (out / "sub-12").exists() and not (out / "sub-13").exists()
    assert not list(out.rglob("*.tfrecord"))
    summary = read_tsv(next(out.glob("logs/apply_*/summary.tsv")))
    assert [r["status"] for r in summary] == ["written", "failed", "failed"]


def test_apply_centres_as_the_card_says(model_folder, tmp_path):
    """A card with ``PostProcessing.centre``: events come from the probabilities centred on the recording's median
    log-odds, which the timeseries sidecar records (the raw column stays the model's output)."""
    from neurocare_bids.detection.postprocess import centre_probabilities, probabilities_to_events, smooth

    centred_model = centred_copy(model_folder, tmp_path / "model")
    bids, out = tmp_path / "bids", tmp_path / "out"
    good = add_recording(bids, "11", duration=900.0, seizures=SEIZURES, events=None, seed=11)
    result = run_cli(bids, out, "participant", "--model", centred_model, "--skip-bids-validation")
    assert result.returncode == 0, result.stderr
    stem = good.name[: good.name.rindex("_")]
    folder = out / good.parent.relative_to(bids)
    series = folder / f"{stem}_desc-seizureprob_timeseries.tsv.gz"
    meta = json.loads(series.with_name(f"{stem}_desc-seizureprob_timeseries.json").read_text())
    rows = np.loadtxt(gzip.open(series, "rt"), delimiter="\t", ndmin=2)
    post = meta["PostProcessing"]
    assert post["centre"] is True
    centred, offset = centre_probabilities(rows[:, 1])
    assert meta["ProbabilityCentring"]["MedianLogOdds"] == pytest.approx(offset, abs=1e-4)
    np.testing.assert_allclose(rows[:, 2], smooth(centred, post["smoothing"]), atol=1e-4)
    expected = probabilities_to_events(rows[:, 0], centred, 4.0, 900.0, threshold=post["threshold"],
                                       min_duration=post["min_duration"], merge_gap=post["merge_gap"],
                                       smoothing=post["smoothing"])
    table = read_tsv(folder / f"{stem}_desc-neurocare_events.tsv")
    if expected:
        written = [(float(r["onset"]), float(r["duration"])) for r in table]
        assert np.allclose(written, [(e.onset, e.duration) for e in expected], atol=0.006)
    else:
        assert [r["eventType"] for r in table] == ["bckg"]


def test_apply_reproduces_the_training_windows_probabilities(model_folder, prepared, tmp_path):
    """On a training recording, apply mode's probabilities are the model's on the participant level's own
    windows: the preprocessing is the same, to the float32 sample."""
    import keras

    from neurocare_bids.training import models  # noqa: F401 - our layers, for loading (run alone, no other test did)

    bids, participant_out, _ = prepared
    out = tmp_path / "out"
    result = run_cli(bids, out, "participant", "--model", model_folder, "--participant-label", "01",
                     "--skip-bids-validation")
    assert result.returncode == 0, result.stderr
    sidecar = next(participant_out.glob("sub-01/**/*_desc-preproc_windows.json"))
    meta = json.loads(sidecar.read_text())
    shape = meta["TFRecord"]["Schema"]["eeg"]["shape"]
    windows = np.stack([np.frombuffer(w["eeg"], "<f4").reshape(shape)
                        for w in read_windows(sidecar.with_name(meta["TFRecord"]["File"]))])
    series = next(out.glob("sub-01/**/*_desc-seizureprob_timeseries.tsv.gz"))
    rows = np.loadtxt(gzip.open(series, "rt"), delimiter="\t", ndmin=2)
    assert len(rows) == len(windows) == meta["WindowCount"]

    model = keras.models.load_model(model_folder / "model.keras", compile=False)
    expected = keras.ops.convert_to_numpy(model(windows, training=False))[:, 1]
    np.testing.assert_allclose(rows[:, 1], expected, atol=1e-5)  # ONNX Runtime's numbers, Keras's to 1e-5

    # and the windows apply mode feeds its model are the training windows, to the bit
    from neurocare_bids.detection.apply import load_model

    trained = load_model(model_folder)
    seen = []
    trained._predict = lambda x, threads, consecutive=False: seen.append(np.array(x)) or np.zeros(len(x))
    source = next(bids.glob("sub-01/**/*_eeg.edf"))
    apply_api(trained, source, tmp_path)
    np.testing.assert_array_equal(np.concatenate(seen), windows)


def test_refuses_an_output_folder_with_group_results(model_folder, prepared):
    bids = prepared[0]
    out = model_folder.parents[1]  # the training OUT: apply mode would overwrite its events files
    result = run_cli(bids, out, "participant", "--model", model_folder, "--skip-bids-validation")
    assert result.returncode == 73 and "group-level results" in result.stderr


def _broken_copy(model_folder: Path, target: Path, change) -> Path:
    shutil.copytree(model_folder, target)
    change(target)
    return target


def _edit_card(**values):
    def change(folder: Path):
        card = json.loads((folder / "model_card.json").read_text())
        for key, value in values.items():
            if value is None:
                card.pop(key, None)
            else:
                card[key] = value
        (folder / "model_card.json").write_text(json.dumps(card))
    return change


def _unreadable_onnx(folder: Path):
    """A model.onnx that is not ONNX but whose card records its checksum (as export-model would)."""
    from neurocare_bids.training.onnx_export import sha256_file

    (folder / "model.onnx").write_bytes(b"not ONNX")
    _edit_card(ONNX={**json.loads((folder / "model_card.json").read_text())["ONNX"],
                     "SHA256": sha256_file(folder / "model.onnx")})(folder)


BROKEN_FOLDERS = {  # what is done to a copy of the model folder, the error's fragment and exit code
    "no model file": (lambda f: (f / "model.keras").unlink(), "model.keras is missing", 66),
    "no card": (lambda f: (f / "model_card.json").unlink(), "model_card.json is missing", 66),
    "damaged ONNX model": (lambda f: (f / "model.onnx").write_bytes(b"not ONNX"), "SHA-256 differs", 65),
    "no ONNX model": (lambda f: (f / "model.onnx").unlink(), "model.onnx is missing", 66),
    "card without ONNX": (_edit_card(ONNX=None), "records no ONNX model", 65),
    "ONNX export failed": (_edit_card(ONNX={"File": None, "Reason": "export failed: KeyError: 'x'"}),
                           r"has no ONNX model \(export failed: KeyError: 'x'\)", 65),
    "ONNX entry damaged": (_edit_card(ONNX={"File": "model.onnx"}), "ONNX entry is damaged", 65),
    "unreadable ONNX model": (_unreadable_onnx, "cannot be loaded by ONNX Runtime", 65),
    "card not JSON": (lambda f: (f / "model_card.json").write_text("{ not JSON"), "is unreadable", 65),
    "card before CardFormat": (_edit_card(CardFormat=None), "retrain the model", 65),
    "other card format": (_edit_card(CardFormat=99), "card format 99", 65),
    "newer major version": (_edit_card(Version="99.0.0"), "newer major version", 65),
    "incomplete card": (_edit_card(Preprocessing=None), "incomplete or damaged", 65),
}


@pytest.mark.parametrize("name", ["no model file", "other card format", "no ONNX model", "ONNX export failed"])
def test_cli_refuses_an_unusable_model_folder(model_folder, tmp_path, name):
    change, message, code = BROKEN_FOLDERS[name]
    bids = tmp_path / "bids"
    add_recording(bids, "01", duration=60.0, events=None)
    broken = _broken_copy(model_folder, tmp_path / "model", change)
    out = tmp_path / "out"
    result = run_cli(bids, out, "participant", "--model", broken, "--skip-bids-validation")
    assert result.returncode == code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and re.search(message, lines[0]) and "Traceback" not in result.stderr
    assert "ONNX" not in name or f"neurocare-bids export-model {broken}" in lines[0] and "--engine keras" in lines[0]
    assert not out.exists()  # refused before anything was written


@pytest.mark.parametrize("name", list(BROKEN_FOLDERS))
def test_load_model_refuses_an_unusable_model_folder(model_folder, tmp_path, name):
    from neurocare_bids.detection.apply import ModelError, load_model

    change, message, code = BROKEN_FOLDERS[name]
    broken = _broken_copy(model_folder, tmp_path / "model", change)
    with pytest.raises(ModelError, match=message) as refused:
        load_model(broken)
    assert refused.value.exit_code == code and "\n" not in str(refused.value)


def test_model_option_is_for_the_participant_level(model_folder, prepared, tmp_path):
    result = run_cli(prepared[0], tmp_path / "out", "group", "--model", model_folder)
    assert result.returncode == 64 and "participant level only" in result.stderr


def _network_folder(model_folder: Path, target: Path, stacked: bool = False):
    """A copy of the model folder with another network (the per-channel feature branch, which the session's model
    lacks; BatchNorm statistics moved so that inference-mode normalisation counts) saved and exported as the group
    level does; ``stacked``: with a feature baseline and a Stacking entry as a stacked run's card has. Returns the
    folder and the network."""
    import keras

    from neurocare_bids.config import ModelConfig
    from neurocare_bids.detection.stacking import BASELINE_FILE
    from neurocare_bids.training.baseline import FeatureBaseline
    from neurocare_bids.training.models import build_model
    from neurocare_bids.training.onnx_export import export_model_folder

    shutil.copytree(model_folder, target)
    card = json.loads((target / "model_card.json").read_text())
    n_times, n_chans = int(card["Input"]["WindowSamples"]), len(card["Input"]["Channels"])
    sfreq = float(card["Input"]["SamplingFrequency"])
    keras.utils.set_random_seed(4)
    net = build_model(n_chans, 2, n_times, sfreq, ModelConfig(conv_filters=[4, 4], lstm_units=[4], channel_features=6))
    move_batchnorm_statistics(net, np.random.default_rng(4))
    net.save(target / card["ModelFile"])
    if stacked:
        rng = np.random.default_rng(5)
        windows = rng.standard_normal((60, n_times, n_chans)).astype(np.float32)
        windows[30:, :, :5] *= 4
        FeatureBaseline("hgb", max_iter=20).fit(windows, np.repeat([0, 1], 30), sfreq).save(target / BASELINE_FILE)
        card["Stacking"] = {"BaselineFile": BASELINE_FILE, "BaselineWeight": 0.25}
        (target / "model_card.json").write_text(json.dumps(card))
    export_model_folder(target)  # model.onnx and the card's ONNX entry, as neurocare-bids export-model writes them
    return target, net


@pytest.mark.parametrize("stacked", [False, True], ids=["network", "stacked"])
def test_load_model_runs_onnx_runtime_with_keras_numbers(model_folder, tmp_path, stacked):
    """The default engine is ONNX Runtime, on every layer the presets use (here the per-channel feature branch),
    alone or stacked with the feature baseline, and gives Keras's probabilities to 1e-5, in any batch or thread
    count; ``--engine keras`` runs the same folder on Keras."""
    import keras

    from neurocare_bids.detection.apply import ONNX_BATCH, load_model
    from neurocare_bids.detection.stacking import combine
    from neurocare_bids.training.baseline import FeatureBaseline, window_features

    folder, net = _network_folder(model_folder, tmp_path / "model", stacked)
    onnx_model, keras_model = load_model(folder), load_model(folder, "keras")
    suffix = " + features" if stacked else ""
    assert (onnx_model.engine, keras_model.engine) == (f"onnx{suffix}", f"keras{suffix}")
    # a stacked model's classifier runs from classifier.onnx on the ONNX engine, from its joblib file on Keras's
    assert (onnx_model.onnx_classifier, keras_model.onnx_classifier) == (stacked, False)
    if stacked:
        entry = json.loads((folder / "model_card.json").read_text())["ONNX"]["Classifier"]
        assert entry["File"] == "classifier.onnx" and entry["MaxAbsDifference"] <= 1e-5
        assert onnx_model.describe()["ONNXClassifierSHA256"] == entry["SHA256"]
    n_times, n_chans = onnx_model.window_samples, len(onnx_model.channels)
    rng = np.random.default_rng(2)
    windows = rng.standard_normal((ONNX_BATCH + 3, n_times, n_chans)) * rng.uniform(0.5, 3, n_chans)
    windows = windows.astype(np.float32)
    expected = keras.ops.convert_to_numpy(net(windows, training=False))[:, 1]
    if stacked:
        baseline = FeatureBaseline.load(folder / "features.joblib")
        expected = combine(expected, baseline.predict_proba_features(window_features(windows, onnx_model.sfreq)), 0.25)
    assert np.ptp(expected) > 1e-3  # windows told apart: not a constant output
    for threads in (1, 2):
        np.testing.assert_allclose(onnx_model.predict(windows, threads), expected, atol=1e-5, rtol=0)
    np.testing.assert_allclose(onnx_model.predict(windows[1:2]), expected[1:2], atol=1e-5, rtol=0)
    np.testing.assert_allclose(keras_model.predict(windows), expected, atol=1e-6, rtol=0)

    # a run of consecutive windows, as apply mode cuts them, through the consecutive-window graph (in several
    # ONNX Runtime calls: each slice is itself a run)
    assert onnx_model.consecutive_graph and not keras_model.consecutive_graph
    stride = onnx_model.stride_samples
    signal = rng.standard_normal(((ONNX_BATCH + 2) * stride + n_times, n_chans)) * rng.uniform(0.5, 3, n_chans)
    run = np.lib.stride_tricks.sliding_window_view(signal.astype(np.float32), (n_times, n_chans))[::stride, 0]
    expected = keras.ops.convert_to_numpy(net(np.ascontiguousarray(run), training=False))[:, 1]
    if stacked:
        expected = combine(expected, baseline.predict_proba_features(window_features(run, onnx_model.sfreq)), 0.25)
    for threads in (1, 2):
        np.testing.assert_allclose(onnx_model.predict(run, threads, consecutive=True), expected, atol=1e-5, rtol=0)
    np.testing.assert_allclose(keras_model.predict(run, consecutive=True), expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("damage", ["missing", "altered", "damaged entry"])
def test_a_missing_or_altered_consecutive_graph_falls_back_to_model_onnx(model_folder, tmp_path, damage):
    """model_consecutive.onnx only saves work: without it (or with a copy its card does not name, or a card entry
    that does not say which) apply mode warns once, runs every window through model.onnx and writes the same
    probabilities (to 1e-5)."""
    def change(folder: Path):
        if damage == "missing":
            (folder / "model_consecutive.onnx").unlink()
        elif damage == "altered":
            (folder / "model_consecutive.onnx").write_bytes((model_folder / "model.onnx").read_bytes())
        else:
            onnx = json.loads((folder / "model_card.json").read_text())["ONNX"]
            _edit_card(ONNX={**onnx, "Consecutive": {"File": "model_consecutive.onnx"}})(folder)

    broken = _broken_copy(model_folder, tmp_path / "model", change)
    bids = tmp_path / "bids"
    add_recording(bids, "01", duration=180.0, events=None, seed=3)
    outputs = {}
    for name, folder in (("shipped", model_folder), (damage, broken)):
        result = run_cli(bids, tmp_path / name, "participant", "--model", folder, "--skip-bids-validation")
        assert result.returncode == 0, result.stderr
        outputs[name] = (result.stderr, next((tmp_path / name).rglob("*_desc-seizureprob_timeseries.tsv.gz")))
    stderr = outputs[damage][0]
    reason = {"missing": "model_consecutive.onnx is missing: using model.onnx alone",
              "altered": "model_consecutive.onnx is not the file its card records (SHA-256 differs): using model.onnx "
                         "alone",
              "damaged entry": "the ONNX entry's Consecutive part is damaged ('SHA256' missing): using model.onnx "
                               "alone"}[damage]
    assert outputs["shipped"][0] == ""
    assert stderr.count("\n") == 1 and reason in stderr
    assert "Traceback" not in stderr
    rows = {name: np.loadtxt(gzip.open(path, "rt"), delimiter="\t", ndmin=2) for name, (_, path) in outputs.items()}
    assert len(rows["shipped"]) == (180 - 4) // 2 + 1
    np.testing.assert_allclose(rows[damage], rows["shipped"], atol=2e-6)  # 6 decimals written
    meta = json.loads(next((tmp_path / damage).rglob("*_desc-seizureprob_timeseries.json")).read_text())
    assert "ONNXConsecutiveSHA256" not in meta["Model"]  # the outputs name the graphs that computed them


def test_a_missing_or_altered_classifier_falls_back_to_the_joblib_file(model_folder, tmp_path, caplog):
    """classifier.onnx only spares scikit-learn's import and the unpickling: without it (or with a copy its card
    does not name, or an entry that does not say which) the stacked model loads features.joblib, with one warning,
    and predicts the same (to 1e-5); a card from before the file existed loads the joblib file without a word."""
    from neurocare_bids.detection.apply import load_model

    shipped, _ = _network_folder(model_folder, tmp_path / "shipped", stacked=True)
    model = load_model(shipped)
    rng = np.random.default_rng(6)
    windows = (rng.standard_normal((40, model.window_samples, len(model.channels))) * 3).astype(np.float32)
    expected = model.predict(windows)
    reasons = {"missing": "classifier.onnx is missing: using the joblib file",
               "altered": "classifier.onnx is not the file its card records (SHA-256 differs): using the joblib file",
               "damaged entry": "the ONNX entry's Classifier part is damaged ('SHA256' missing): using the joblib file",
               "none recorded": None}
    for damage, reason in reasons.items():
        folder = tmp_path / damage.replace(" ", "-")
        shutil.copytree(shipped, folder)
        card = json.loads((folder / "model_card.json").read_text())
        if damage == "missing":
            (folder / "classifier.onnx").unlink()
        elif damage == "altered":
            (folder / "classifier.onnx").write_bytes((folder / "model.onnx").read_bytes())
        elif damage == "damaged entry":
            card["ONNX"]["Classifier"] = {"File": "classifier.onnx"}
        else:
            del card["ONNX"]["Classifier"]
            (folder / "classifier.onnx").unlink()
        (folder / "model_card.json").write_text(json.dumps(card))
        caplog.clear()
        with caplog.at_level("WARNING", logger="neurocare"):
            fallback = load_model(folder)
        warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
        assert not fallback.onnx_classifier and fallback.engine == "onnx + features", damage
        assert (warned == []) if reason is None else (len(warned) == 1 and reason in warned[0]), (damage, warned)
        assert "ONNXClassifierSHA256" not in fallback.describe()
        np.testing.assert_allclose(fallback.predict(windows), expected, atol=1e-5, rtol=0)
    # with neither file the folder is incomplete, and says so
    (tmp_path / "missing" / "features.joblib").unlink()
    with pytest.raises(Exception, match="not a complete model folder: features.joblib is missing"):
        load_model(tmp_path / "missing")


def test_the_onnx_engine_does_not_import_tensorflow(model_folder, tmp_path):
    """What makes apply mode start fast: loading and running the model imports neither TensorFlow nor Keras, and
    a stacked model's feature baseline neither scikit-learn nor joblib (its classifier.onnx is run instead of
    unpickling features.joblib, which is removed here to show it is not read)."""
    stacked, _ = _network_folder(model_folder, tmp_path / "stacked", stacked=True)
    (stacked / "features.joblib").unlink()
    code = ("import sys, numpy as np; from neurocare_bids.detection.apply import load_model; "
            "m = load_model(sys.argv[1]); m.predict(np.zeros((2, m.window_samples, len(m.channels)), np.float32)); "
            "print(m.engine.replace(' ', ''), "
            "sorted(k for k in ('tensorflow', 'keras', 'tf2onnx', 'sklearn', 'joblib') if k in sys.modules))")
    for folder, engine in ((model_folder, "onnx"), (stacked, "onnx+features")):
        result = subprocess.run([sys.executable, "-c", code, str(folder)], capture_output=True, text=True,
                                timeout=120, cwd=Path(__file__).resolve().parents[2])
        assert result.returncode == 0, result.stderr
        assert result.stdout.split() == [engine, "[]"] and result.stderr == ""


@pytest.mark.parametrize("engine, message", [("numpy", "the NumPy engine was removed: use --engine onnx"),
                                             ("tflite", "unknown engine 'tflite' (choose onnx or keras)")])
def test_refuses_an_engine_that_does_not_exist(model_folder, tmp_path, engine, message):
    from neurocare_bids.detection.apply import load_model
    from neurocare_bids.errors import UsageError

    with pytest.raises(UsageError, match=re.escape(message)):
        load_model(model_folder, engine)
    assert load_model(model_folder, "auto").engine == "onnx"  # the former default's name, kept for old scripts
    bids = tmp_path / "bids"
    add_recording(bids, "01", duration=60.0, events=None)
    result = run_cli(bids, tmp_path / "out", "participant", "--model", model_folder, "--engine", engine,
                     "--skip-bids-validation")
    assert result.returncode == 64 and result.stderr.count("\n") == 1 and message in result.stderr
    assert not (tmp_path / "out").exists()


def test_keras_engine_refuses_a_damaged_keras_file(model_folder, tmp_path):
    from neurocare_bids.detection.apply import ModelError, load_model

    broken = _broken_copy(model_folder, tmp_path / "model", lambda f: (f / "model.keras").write_bytes(b"not a zip"))
    assert load_model(broken).engine == "onnx"  # the ONNX engine does not read model.keras
    with pytest.raises(ModelError, match="cannot be loaded by Keras") as refused:
        load_model(broken, "keras")
    assert refused.value.exit_code == 65 and "\n" not in str(refused.value)


def test_applies_the_feature_baseline(model_folder, tmp_path):
    """A ``features`` preset folder (gradient boosting on window features) is applied the same way."""
    from neurocare_bids.detection.apply import load_model
    from neurocare_bids.training.baseline import FeatureBaseline

    folder = tmp_path / "features"
    shutil.copytree(model_folder, folder)
    (folder / "model.keras").unlink()
    card = json.loads((folder / "model_card.json").read_text())
    rng = np.random.default_rng(0)
    n_times, n_chans = card["Input"]["WindowSamples"], len(card["Input"]["Channels"])
    windows = rng.standard_normal((60, n_times, n_chans)).astype(np.float32)
    windows[30:, :, :5] *= 4  # "seizure" windows: more power on five channels
    labels = np.repeat([0, 1], 30)
    FeatureBaseline("hgb", max_iter=20).fit(windows, labels, card["Input"]["SamplingFrequency"]).save(
        folder / "model.joblib")
    card.update(ModelFile="model.joblib", Preset="features")
    del card["ONNX"]  # a features folder from before classifier.onnx: its joblib file serves
    (folder / "model_card.json").write_text(json.dumps(card))
    pickled = load_model(folder)
    assert pickled.engine == "features" and not pickled.onnx_classifier
    # export-model writes its classifier.onnx (no network to export), which apply mode then runs
    result = run_cli("export-model", folder)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert result.stdout.count("\n") == 1 and "classifier.onnx" in result.stdout
    entry = json.loads((folder / "model_card.json").read_text())["ONNX"]
    assert entry["File"] is None and entry["Classifier"]["File"] == "classifier.onnx"
    model = load_model(folder)
    assert model.engine == "features" and model.onnx_classifier
    np.testing.assert_allclose(model.predict(windows), pickled.predict(windows), atol=1e-6, rtol=0)
    assert np.ptp(model.predict(windows)) > 0.5
    path = add_recording(tmp_path / "bids", "21", duration=120.0, events=None, seed=21)
    prediction = apply_api(model, path, tmp_path)
    assert len(prediction.probabilities) == (120 - 4) // 2 + 1
    assert ((prediction.probabilities >= 0) & (prediction.probabilities <= 1)).all()


def test_benchmark_script_runs(model_folder, tmp_path):
    """benchmarks/apply.py end to end on a short recording (the speed itself is measured by running it)."""
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[2] / "benchmarks" / "apply.py"
    result = subprocess.run([sys.executable, str(script), "--hours", "0.1", "--repeats", "1", "--skip-keras",
                             "--model", str(model_folder), "--workdir", str(tmp_path / "bench"),
                             "--json", str(tmp_path / "bench.json")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "real-time factor" in result.stdout
    figures = json.loads((tmp_path / "bench.json").read_text())
    assert figures["onnx"]["windows"] == (360 - 4) // 2 + 1 and figures["onnx"]["engine"] == "onnx"
    assert figures["startup"]["onnx"]["wall_s"] > 0


def test_benchmark_script_times_the_stacked_default_by_default(tmp_path):
    """Without --model the benchmark builds the network alone and the default as shipped, stacked with the feature
    baseline, and judges the target on the stacked one (it computes the features of every window too)."""
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[2] / "benchmarks" / "apply.py"
    result = subprocess.run([sys.executable, str(script), "--hours", "0.05", "--repeats", "1", "--skip-keras",
                             "--workdir", str(tmp_path / "bench"), "--json", str(tmp_path / "bench.json")],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    figures = json.loads((tmp_path / "bench.json").read_text())
    windows = (180 - 4) // 2 + 1
    assert figures["onnx"]["engine"] == "onnx" and figures["onnx"]["windows"] == windows
    assert figures["stacked_onnx"]["engine"] == "onnx + features" and figures["stacked_onnx"]["windows"] == windows
    card = json.loads((tmp_path / "bench" / "model-stacked" / "model_card.json").read_text())
    assert card["Stacking"]["BaselineFile"] == "features.joblib"
    assert (tmp_path / "bench" / "model-stacked" / "features.joblib").is_file()
    assert "real-time factor of the stacked default" in result.stdout
    assert figures["stacked_real_time_factor"] == pytest.approx(180.0 / figures["stacked_onnx"]["wall_s"])
    # the shipped default runs its windows through the consecutive-window graph; its peer, model.onnx alone
    assert card["ONNX"]["Consecutive"]["File"] == "model_consecutive.onnx"
    peer = json.loads((tmp_path / "bench" / "model-stacked-per-window" / "model_card.json").read_text())
    assert "Consecutive" not in peer["ONNX"]
    assert not (tmp_path / "bench" / "model-stacked-per-window" / "model_consecutive.onnx").exists()
    assert figures["stacked_per_window_onnx"]["windows"] == windows
    assert figures["consecutive_speedup"] == pytest.approx(
        figures["stacked_per_window_onnx"]["wall_s"] / figures["stacked_onnx"]["wall_s"])
    # the classifier from classifier.onnx; its peer unpickles features.joblib
    assert card["ONNX"]["Classifier"]["File"] == "classifier.onnx"
    pickled = json.loads((tmp_path / "bench" / "model-stacked-joblib" / "model_card.json").read_text())
    assert "Classifier" not in pickled["ONNX"]
    assert not (tmp_path / "bench" / "model-stacked-joblib" / "classifier.onnx").exists()
    assert figures["stacked_joblib_onnx"]["windows"] == windows
    assert figures["classifier_speedup"] == pytest.approx(
        figures["stacked_joblib_onnx"]["wall_s"] / figures["stacked_onnx"]["wall_s"])
    assert figures["startup"]["stacked onnx, classifier from features.joblib"]["wall_s"] > 0


def test_a_trained_model_finds_the_seizures_of_a_new_recording(tmp_path):
    """The whole way through the CLI: participant level on three generated subjects, the group level trains the
    feature baseline (``model.preset = "features"``, seconds to train), apply mode on a new subject's recording.
    Each annotated seizure of the new recording is found, near its onset, and nothing else is."""
    train, new = tmp_path / "train", tmp_path / "new"
    for i, subject in enumerate(("01", "02", "03")):
        add_recording(train, subject, duration=240.0, seizures=[(40.0 + 20 * i, 30.0, "sz"), (160.0, 40.0, "sz")],
                      seed=31 + i)
    seizures = [(70.0, 30.0), (190.0, 35.0)]
    add_recording(new, "21", duration=300.0, seizures=[(o, d, "sz") for o, d in seizures], events=None, seed=41)
    out, applied, config = tmp_path / "out", tmp_path / "applied", tmp_path / "features.toml"
    # Recordings a quarter seizure: no centring on the median (README: for recordings that are not mostly background)
    config.write_text('[model]\npreset = "features"\n[cv]\nfolds = 3\n[postprocessing]\ncentre = false\n')
    for args in ((train, out, "participant"), (train, out, "group", "--config", config),
                 (new, applied, "participant", "--model", out / "group" / "model")):
        result = run_cli(*args, *(["--skip-bids-validation"] if "participant" in args else []), "--no-reports",
                         timeout=600)
        assert result.returncode == 0, result.stderr

    # the trained classifier ships as classifier.onnx, which apply mode ran (the outputs name it)
    card = json.loads((out / "group" / "model" / "model_card.json").read_text())
    assert card["ONNX"]["File"] is None and card["ONNX"]["Classifier"]["File"] == "classifier.onnx"
    assert json.loads((out / "group" / "fold-1" / "fold.json").read_text())["onnx"]["Classifier"]["File"]
    meta = json.loads(next(applied.rglob("*_desc-seizureprob_timeseries.json")).read_text())
    assert meta["Model"]["ONNXClassifierSHA256"] == card["ONNX"]["Classifier"]["SHA256"]
    from neurocare_bids.reports.group import build_group_report

    report = build_group_report(out).read_text()  # the report's card: no network file, the classifier's
    assert "none: the features preset" in report
    assert f"classifier.onnx (SHA-256 <code>{card['ONNX']['Classifier']['SHA256']}</code>)" in report
    [events] = applied.glob("sub-21/ses-01/eeg/*_desc-neurocare_events.tsv")
    found = [(float(r["onset"]), float(r["duration"])) for r in read_tsv(events)]
    assert all(r["eventType"] == "sz" for r in read_tsv(events)), found
    for onset, duration in seizures:  # found, starting within 10 s of the onset, and overlapping the seizure
        assert any(abs(o - onset) <= 10 and o < onset + duration and o + d > onset for o, d in found), (onset, found)
    for o, d in found:  # and no false alarm
        assert any(o < onset + duration and o + d > onset for onset, duration in seizures), (o, d, found)
