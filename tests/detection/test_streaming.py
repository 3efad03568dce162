"""Streaming detection: the incremental post-processing equals batch mode's, the streaming detector reproduces
batch apply mode on a generated recording, its latency is what the data allow, and the ``stream`` CLI."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest

from conftest import add_recording, run_cli, trained_model_folder
from neurocare_bids.detection.postprocess import alarm_times, probabilities_to_events
from neurocare_bids.detection.streaming import EventTracker, StreamingDetector
from test_apply import apply_api, centred_copy

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # Keras's own

SEIZURES = [(200.0, 60.0, "sz"), (420.0, 45.0, "sz")]


def _bursty(rng, n):
    """Probabilities with runs of high values, single spikes and near-threshold noise."""
    p = rng.uniform(0, 0.4, n)
    for _ in range(rng.integers(1, 8)):
        a = rng.integers(0, n)
        p[a:a + rng.integers(1, 30)] = rng.uniform(0.5, 1.0)
    p[rng.integers(0, n, 5)] = rng.uniform(0.4, 0.7, 5)
    return p


@pytest.mark.parametrize("seed", range(12))
def test_event_tracker_equals_batch_postprocessing(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 400))
    probs = _bursty(rng, n)
    stride, sfreq = int(rng.choice([64, 128, 256])), 128.0
    window = float(rng.choice([2.0, 4.0]))
    params = {"threshold": float(rng.choice([0.3, 0.5, 0.55, 0.8])),
              "min_duration": float(rng.choice([0, 4, 10, 30])),
              "merge_gap": float(rng.choice([0, 5, 30])), "smoothing": int(rng.choice([1, 2, 3, 5]))}
    onsets = np.arange(n) * stride / sfreq
    duration = float(onsets[-1] + window + rng.uniform(0, 3))
    expected = probabilities_to_events(onsets, probs, window, duration, **params)

    tracker = EventTracker(window, stride, sfreq, **params)
    reports = []
    for i, p in enumerate(probs):
        reports += tracker.push(p, ready_at=float(onsets[i] + window))
    reports += tracker.finish(duration)
    finals = [r for r in reports if r.final]
    assert [(e.onset, e.duration) for e in finals] == [(e.onset, e.duration) for e in expected]
    assert np.allclose([e.confidence for e in finals], [e.confidence for e in expected], rtol=1e-12)
    assert tracker.events == finals
    # every complete event was announced first, once, with its onset, no later than its final report
    alarms = [r for r in reports if not r.final]
    assert [a.onset for a in alarms] == [e.onset for e in finals]
    for alarm, event in zip(alarms, finals):
        assert alarm.detected_at <= event.detected_at and alarm.duration >= params["min_duration"]
    assert [r.detected_at for r in reports] == sorted(r.detected_at for r in reports)
    # ... when the group level's latency says an event could first be reported
    assert [a.detected_at for a in alarms] == alarm_times(onsets, probs, window, duration, **params)


@pytest.fixture(scope="module")
def model_folder(prepared, tmp_path_factory):
    """A model folder whose card is the trained model's and whose network detects the generated seizures.

    The session's tiny trained model cannot tell seizures from background (it trains for seconds), which
    would leave these tests comparing noise. This network, with set weights, scores a window by its mean
    rectified 4 Hz content on the seizure channel (a 0.5 s Hann-windowed 4 Hz filter, ReLU of it and of its
    negation, average over time, softmax): a real Keras file, run through the real card and pipeline.
    """
    import keras

    from neurocare_bids.training.onnx_export import export_model_folder

    trained = trained_model_folder(prepared, tmp_path_factory)
    folder = tmp_path_factory.mktemp("detector") / "model"
    shutil.copytree(trained, folder)
    card = json.loads((folder / "model_card.json").read_text())
    sfreq, n_times = card["Input"]["SamplingFrequency"], card["Input"]["WindowSamples"]
    n_chans = len(card["Input"]["Channels"])
    t = (np.arange(64) - 31.5) / sfreq
    fir = np.hanning(64) * np.cos(2 * np.pi * 4.0 * t)
    fir /= np.abs(np.sum(fir * np.exp(-2j * np.pi * 4.0 * t)))  # unit gain at 4 Hz
    kernel = np.zeros((64, n_chans, 2), np.float32)
    kernel[:, 0, 0], kernel[:, 0, 1] = fir, -fir
    inputs = keras.Input((n_times, n_chans), name="eeg")
    x = keras.layers.Conv1D(2, 64, padding="same", use_bias=False, name="band")(inputs)
    x = keras.layers.Activation("relu")(x)
    x = keras.layers.GlobalAveragePooling1D()(x)
    outputs = keras.layers.Dense(2, activation="softmax", name="probabilities")(x)
    net = keras.Model(inputs, outputs)
    net.get_layer("band").set_weights([kernel])
    # logit(seizure) = 10 x (mean |4 Hz| - 0.5): background ~0.1, a window inside a seizure ~2 (z-score units)
    net.get_layer("probabilities").set_weights([np.array([[0, 10], [0, 10]], np.float32), np.array([0, -5.0])])
    net.save(folder / "model.keras")
    card["PostProcessing"].update(threshold=0.5, min_duration=10.0, merge_gap=30.0, smoothing=3)
    # its operating points: F1 = PostProcessing; the alarm point reports from the first window above 0.5
    card["OperatingPoints"] = {"f1": dict(card["PostProcessing"]),
                               "alarm": {**card["PostProcessing"], "min_duration": 0.0, "smoothing": 1}}
    (folder / "model_card.json").write_text(json.dumps(card, indent=2))
    export_model_folder(folder)  # its model.onnx and card entry, as the group level ships them (the default engine)
    return folder


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    """A generated 10-minute recording with two seizures, without events.tsv."""
    root = tmp_path_factory.mktemp("stream") / "bids"
    return add_recording(root, "09", duration=600.0, seizures=SEIZURES, events=None, seed=9)


def _stream(model, path, chunk_seconds, **kwargs):
    source, eeg = _whole_recording(path)
    detector = StreamingDetector(model, source.ch_names, source.sfreq, **kwargs)
    data = eeg.T
    step = max(1, int(chunk_seconds * source.sfreq))
    reports = []
    for start in range(0, len(data), step):
        reports += detector.feed(data[start:start + step])
    reports += detector.flush()
    return detector, reports


def _whole_recording(path):
    """The EDF file's reader and all its samples (channels × samples, µV)."""
    from neurocare_bids.io.signal_reader import EDFSource, read_edf_header

    source = EDFSource(path, read_edf_header(path), [])
    return source, source.read(list(range(len(source.ch_names))), 0, source.n_times)


@pytest.mark.parametrize("centre", [False, True])
def test_stream_equals_batch_with_the_recordings_statistics(model_folder, recording, tmp_path, centre):
    from neurocare_bids.detection.apply import load_model

    model = load_model(centred_copy(model_folder, tmp_path / "centred") if centre else model_folder)
    batch = apply_api(model, recording, tmp_path)
    assert (batch.centring_offset is not None) == centre
    _stream_as_batch(model, recording, batch, channel_mean=batch.channel_mean, channel_std=batch.channel_std,
                     line_freq=50.0, probability_offset=batch.centring_offset)
    assert batch.events, "the model should find the generated seizures, or this test compares nothing"


def _stream_as_batch(model, path, batch, **kwargs) -> list:
    """Stream the recording in chunks of 1.9 s and of 13 s: both give batch mode's probabilities and events, and
    report at the same times (they depend on the data, not on how it was chunked). Returns both runs."""
    runs = [_stream(model, path, chunk, **kwargs) for chunk in (1.9, 13.0)]
    for detector, _ in runs:
        onsets, probs = detector.probabilities
        np.testing.assert_array_equal(onsets, batch.onsets)
        np.testing.assert_allclose(probs, batch.probabilities, atol=2e-6)
        assert [(e.onset, e.duration) for e in detector.events] == [(e.onset, e.duration) for e in batch.events]
        assert np.allclose([e.confidence for e in detector.events], [e.confidence for e in batch.events], atol=1e-5)
    assert [r.detected_at for r in runs[0][1]] == [r.detected_at for r in runs[1][1]]
    return runs


def test_stream_centres_on_the_median_of_the_windows_so_far(model_folder, recording, tmp_path):
    """Without batch mode's offset, the stream centres each window on the median log-odds of the windows up to
    it: at the end of the stream that is batch mode's offset, and the centred windows end where batch's do."""
    from neurocare_bids.detection.apply import load_model
    from neurocare_bids.detection.postprocess import centre_probabilities

    model = load_model(centred_copy(model_folder, tmp_path / "centred"))
    batch = apply_api(model, recording, tmp_path)
    detector, _ = _stream(model, recording, 7.0, line_freq=50.0, channel_mean=batch.channel_mean,
                          channel_std=batch.channel_std, calibration=60.0)
    assert detector.centring_offset == pytest.approx(batch.centring_offset, abs=1e-9)
    onsets, probs = detector.probabilities
    np.testing.assert_allclose(probs, batch.probabilities, atol=2e-6)
    # the first minute of windows waited for the warm-up and shares one median; every later window has its own
    warmup = int(60.0 / model.window_stride)
    centred = np.asarray(detector.tracker.raw)
    first, _ = centre_probabilities(probs[:warmup])
    np.testing.assert_allclose(centred[:warmup], first, atol=1e-9)
    k = len(probs) - 1
    np.testing.assert_allclose(centred[k], centre_probabilities(probs[k:], batch.centring_offset)[0][0], atol=1e-6)
    # a fixed offset is what the stream reports when it was given one
    fixed, _ = _stream(model, recording, 7.0, line_freq=50.0, channel_mean=batch.channel_mean,
                       channel_std=batch.channel_std, probability_offset=-1.5)
    assert fixed.centring_offset == -1.5
    uncentred, _ = _stream(load_model(model_folder), recording, 7.0, line_freq=50.0)
    assert uncentred.centring_offset is None


def test_latency_is_the_data_the_detection_needs(model_folder, recording):
    from neurocare_bids.detection.apply import load_model
    from neurocare_bids.detection.streaming import stream_latency

    model = load_model(model_folder)
    detector, reports = _stream(model, recording, 1.0, line_freq=50.0, calibration=60.0)
    alarms = [r for r in reports if not r.final]
    parts = stream_latency(detector)
    # the look-ahead is the participant level's block margin: 17.8 s for the 0.5 Hz high-pass at 128 Hz
    assert parts["lookahead"] == pytest.approx(detector.plan.margin / 128.0) and 15 < parts["lookahead"] < 20
    assert len(alarms) == len(SEIZURES)
    for alarm, (onset, _, _) in zip(alarms, SEIZURES):
        # the event starts with the first window that holds enough seizure, and is reported as soon as the
        # data that confirm it (min_duration, the smoothing's next window, the filters' look-ahead) are in
        assert onset - model.window_duration <= alarm.onset <= onset
        assert alarm.detected_at == pytest.approx(alarm.onset + parts["earliest"], abs=0.01)
        assert alarm.latency == pytest.approx(29.9, abs=0.05)  # the README's figure
    # a shorter look-ahead reports the same seizures that much sooner
    _, quick = _stream(model, recording, 1.0, line_freq=50.0, calibration=60.0, lookahead=2.0)
    quick_alarms = [r for r in quick if not r.final]
    assert len(quick_alarms) == len(alarms)
    for fast, exact in zip(quick_alarms, alarms):
        assert abs(fast.onset - exact.onset) <= model.window_stride
        sooner = parts["lookahead"] - 2.0 + exact.onset - fast.onset
        assert exact.detected_at - fast.detected_at == pytest.approx(sooner, abs=0.05)


def test_a_causal_model_streams_without_filter_lookahead_as_batch_mode_applies_it(model_folder, recording,
                                                                                   tmp_path):
    """A card saying ``preprocessing.causal``: apply mode and the stream both filter forward only (the stream
    carrying the filter state from chunk to chunk), so they give the same probabilities and events, and the
    alarms wait for no filter look-ahead: they come when :func:`alarm_times` (the group level's latency) says."""
    from neurocare_bids.detection.apply import load_model
    from neurocare_bids.detection.postprocess import event_settings
    from neurocare_bids.detection.streaming import stream_latency

    folder = tmp_path / "causal"
    shutil.copytree(model_folder, folder)
    card = json.loads((folder / "model_card.json").read_text())
    card["Preprocessing"]["preprocessing"]["causal"] = True
    (folder / "model_card.json").write_text(json.dumps(card, indent=2))
    model = load_model(folder)
    batch = apply_api(model, recording, tmp_path)
    zero_phase = apply_api(load_model(model_folder), recording, tmp_path)
    assert model.preprocessing.causal and len(batch.events) == len(SEIZURES)
    assert not np.allclose(batch.probabilities, zero_phase.probabilities, atol=1e-3)  # the card's filters ran
    kwargs = {"channel_mean": batch.channel_mean, "channel_std": batch.channel_std, "line_freq": 50.0}
    runs = _stream_as_batch(model, recording, batch, **kwargs)
    for detector, _ in runs:
        assert detector.plan.causal and detector.lookahead == 0 and stream_latency(detector)["lookahead"] == 0
    detector, reports = runs[0]
    alarms = [r.detected_at for r in reports if not r.final]
    expected = alarm_times(batch.onsets, batch.probabilities, model.window_duration, batch.duration,
                           lookahead=detector.plan.lookahead_seconds(), **event_settings(model.postprocessing))
    np.testing.assert_allclose(alarms, expected, atol=1 / 256 + 1e-9)  # within an input sample
    # the same seizures reported 17.8 s sooner than with the zero-phase filters, whose look-ahead is gone: 10 s
    # after the generated onsets (the event starts with the window 2 s before the onset and exists once 10 s
    # long, the minimum duration; then the smoothing's 2 s and 0.04 s of resampling reach)
    zero_phase_detector, exact = _stream(load_model(model_folder), recording, 1.9, **kwargs)
    zero_phase_alarms = [r.detected_at for r in exact if not r.final]
    assert len(alarms) == len(zero_phase_alarms) == len(SEIZURES)
    for fast, slow, (onset, _, _) in zip(alarms, zero_phase_alarms, SEIZURES):
        assert slow - fast == pytest.approx(zero_phase_detector.plan.margin / 128.0, abs=model.window_stride)
        assert fast - onset == pytest.approx(10.05, abs=0.05)
    cli = run_cli("stream", recording, "--model", folder, "--operating-point", "f1")  # the command line says so
    assert cli.returncode == 0, cli.stderr
    assert "is reported 12.0 s after its first window starts (filter look-ahead 0.0 s (causal filters)" in cli.stdout
    assert f"end of stream: {len(SEIZURES)} seizure(s)" in cli.stdout


def test_a_card_or_sidecar_from_before_causal_filters_existed_still_means_zero_phase(model_folder, prepared,
                                                                                     recording, tmp_path):
    """Records written before ``preprocessing.causal`` existed do not mention it; they were filtered zero phase,
    whatever the default is now: the model streams with the zero-phase look-ahead and gives the same
    probabilities as a card that says ``causal = false``, and the participant sidecar's plan looks ahead."""
    from neurocare_bids.detection.apply import load_model
    from neurocare_bids.preprocessing.filters import plan_from_sidecar

    folder, said = tmp_path / "old", tmp_path / "said"
    for target in (folder, said):
        shutil.copytree(model_folder, target)
    card = json.loads((folder / "model_card.json").read_text())
    card["Preprocessing"]["preprocessing"]["causal"] = False
    (said / "model_card.json").write_text(json.dumps(card, indent=2))
    del card["Preprocessing"]["preprocessing"]["causal"]
    (folder / "model_card.json").write_text(json.dumps(card, indent=2))
    old, explicit = load_model(folder), load_model(said)
    assert old.preprocessing.causal is False
    np.testing.assert_array_equal(apply_api(old, recording, tmp_path).probabilities,
                                  apply_api(explicit, recording, tmp_path).probabilities)
    plan = old.plan_for(256.0, 50.0)  # what apply mode and the stream filter with
    assert not plan.causal and plan.lookahead == plan.margin > 0
    sidecar = json.loads(next(prepared[1].glob("sub-*/**/*_windows.json")).read_text())
    sidecar["Preprocessing"].pop("causal", None)
    assert plan_from_sidecar(sidecar).lookahead_seconds() > 1.0


def test_running_zscore_matches_batch_after_the_first_minutes(model_folder, recording, tmp_path):
    from neurocare_bids.detection.apply import load_model

    model = load_model(model_folder)
    batch = apply_api(model, recording, tmp_path)
    detector, _ = _stream(model, recording, 5.0, line_freq=50.0, calibration=60.0)
    onsets, probs = detector.probabilities
    assert len(probs) == len(batch.probabilities)
    # the windows are called the same (seizure or not) almost everywhere; differences sit at seizure edges
    agree = (probs >= 0.5) == (batch.probabilities >= 0.5)
    assert agree.mean() >= 0.97, np.flatnonzero(~agree)
    # the same seizures, boundaries within two windows
    stride = model.window_stride
    assert len(detector.events) == len(batch.events) == len(SEIZURES)
    for a, b in zip(detector.events, batch.events):
        assert abs(a.onset - b.onset) <= 2 * stride and abs(a.offset - b.offset) <= 2 * stride


def test_stream_cli_prints_events_as_detected(model_folder, recording, tmp_path):
    from neurocare_bids.detection.apply import load_model

    batch = apply_api(load_model(model_folder), recording, tmp_path)
    result = run_cli("stream", recording, "--model", model_folder, "--realtime", "--speed", "1000", "--chunk", "10",
                     "--operating-point", "f1")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert "F1 operating point; a seizure is reported 29.9 s after its first window starts" in lines[0]
    assert lines[-1].startswith("end of stream")
    finals = [re.search(r"seizure ([\d.]+)-([\d.]+) s", line) for line in lines if "confidence" in line]
    finals = [(float(m[1]), float(m[2])) for m in finals if m]
    alarms = [line for line in lines if "seizure detected" in line]
    assert len(finals) == len(batch.events) == len(alarms)
    for (on, off), event in zip(finals, batch.events):
        assert abs(on - event.onset) <= 3 * 2.0 and abs(off - event.offset) <= 3 * 2.0
    replayed = float(re.search(r"replayed in ([\d.]+) s", lines[-1])[1])
    assert replayed >= 600 / 1000 * 0.9  # --realtime: it waited for the samples' time


def test_stream_cli_json_of_a_file_carries_the_text_lines_events(model_folder, recording):
    """``stream FILE --json``: the replay's start, alarms, events and end as JSON objects, the same events (and
    signal times) as its text lines, alarms before their events (what benchmarks/latency.py reads)."""
    text = run_cli("stream", recording, "--model", model_folder, "--operating-point", "f1")
    result = run_cli("stream", recording, "--model", model_folder, "--operating-point", "f1", "--json")
    assert result.returncode == 0 and text.returncode == 0, result.stderr + text.stderr
    records = [json.loads(line) for line in result.stdout.strip().splitlines()]
    assert records[0]["kind"] == "start" and records[0]["file"] == recording.name
    assert records[0]["earliest"] == pytest.approx(29.891, abs=1e-3)  # as the text line says (29.9 s)
    assert records[-1] == {"kind": "end", "reason": "end of file", "seizures": len(
        [r for r in records if r["kind"] == "event"]), "signal_seconds": 600.0}
    finals = [m for m in (re.search(r"seizure ([\d.]+)-([\d.]+) s", line) for line in text.stdout.splitlines()
                          if "confidence" in line) if m]
    events = [r for r in records if r["kind"] == "event"]
    assert len(events) == len(finals) >= 1
    for r, m in zip(events, finals):
        assert r["onset"] == pytest.approx(float(m[1]), abs=0.05)
        assert r["onset"] + r["duration"] == pytest.approx(float(m[2]), abs=0.05)
        assert r["latency"] == pytest.approx(r["detected_at"] - r["onset"], abs=1e-3)
    for event in events:  # each complete event was alarmed first, at the same onset
        alarm = next(r for r in records if r["kind"] == "alarm" and r["onset"] == event["onset"])
        assert alarm["detected_at"] <= event["detected_at"] and records.index(alarm) < records.index(event)


def test_stream_cli_uses_the_alarm_operating_point(model_folder, recording, tmp_path):
    """Without --operating-point, stream detects with the card's alarm point (tuned for the soonest alarms),
    exactly as batch mode does with that point; a card without it is refused for --operating-point alarm."""
    from neurocare_bids.detection.apply import load_model

    model = load_model(model_folder)
    assert model.use_operating_point() == "alarm"
    assert model.postprocessing == {k: model.card["OperatingPoints"]["alarm"][k] for k in model.postprocessing}
    batch = apply_api(model, recording, tmp_path)
    result = run_cli("stream", recording, "--model", model_folder)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert "alarm operating point; " in lines[0]
    finals = [re.search(r"seizure ([\d.]+)-([\d.]+) s", line) for line in lines if "confidence" in line]
    finals = [(float(m[1]), float(m[2])) for m in finals if m]
    assert len(finals) == len(batch.events)
    for (on, off), event in zip(finals, batch.events):
        assert abs(on - event.onset) <= 3 * 2.0 and abs(off - event.offset) <= 3 * 2.0

    old = tmp_path / "old-card"
    shutil.copytree(model_folder, old)
    card = json.loads((old / "model_card.json").read_text())
    del card["OperatingPoints"]
    (old / "model_card.json").write_text(json.dumps(card))
    assert load_model(old).use_operating_point() == "card"  # the card's PostProcessing, as before
    result = run_cli("stream", recording, "--model", old, "--operating-point", "alarm")
    assert result.returncode == 64 and "no 'alarm' operating point" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_stream_cli_refuses_what_the_model_cannot_use(model_folder, tmp_path):
    root = tmp_path / "bids"
    low = add_recording(root, "01", sfreq=50.0, duration=120.0, events=None)
    result = run_cli("stream", low, "--model", model_folder)
    assert result.returncode == 65 and "too low" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    labels = [f"{e}-Avg" for e in ("Fp1", "F3", "C3", "P3", "O1", "F7")]
    few = add_recording(root, "02", labels=labels, duration=120.0, events=None)
    result = run_cli("stream", few, "--model", model_folder)
    assert result.returncode == 65 and "missing electrode" in result.stderr
    result = run_cli("stream", few, "--model", tmp_path / "no-model")
    assert result.returncode == 66 and "does not exist" in result.stderr


def test_stream_cli_reads_a_hospital_export_with_other_channels_at_other_rates(model_folder, recording, tmp_path):
    """An EDF whose EKG (half the EEG's rate) and SpO2 (1 Hz) follow the EEG, as hospital exports have them:
    ``stream FILE`` reads the model's channels only and reports what it reports for the EEG alone (it used to
    fail with an internal error when such a channel came last)."""
    from neurocare_bids.io.edf import write_edf

    source, eeg = _whole_recording(recording)
    seconds = int(source.n_times / source.sfreq)
    alone, export = tmp_path / "eeg.edf", tmp_path / "export.edf"
    write_edf(alone, eeg, source.sfreq, source.ch_names)
    write_edf(export, list(eeg) + [np.sin(np.arange(seconds * int(source.sfreq) // 2) / 9.0) * 800.0,
                                   np.full(seconds, 97.0)],
              [source.sfreq] * len(eeg) + [source.sfreq / 2, 1.0], [*source.ch_names, "ECG EKG", "SpO2"],
              units=["uV"] * len(eeg) + ["uV", "%"])
    records = []
    for path in (alone, export):
        result = run_cli("stream", path, "--model", model_folder, "--json")
        assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
        records.append([json.loads(line) for line in result.stdout.strip().splitlines()])
    assert records[1][0]["channels"] == len(eeg) + 2
    drop = ("file", "channels", "wall_clock")
    assert [{k: v for k, v in r.items() if k not in drop} for r in records[1]] == [
        {k: v for k, v in r.items() if k not in drop} for r in records[0]]
    assert any(r["kind"] == "event" for r in records[1])  # the generated seizures are found in both


def test_stream_cli_reads_montage_channels_at_different_rates_through_mne(model_folder, recording, tmp_path):
    """One electrode of the montage recorded at half the others' rate: as batch mode, ``stream FILE`` reads the file
    through MNE (which brings it to the highest rate), says so, and finds the same seizures (it used to refuse)."""
    from neurocare_bids.io.edf import write_edf

    source, eeg = _whole_recording(recording)
    mixed = tmp_path / "mixed.edf"
    write_edf(mixed, list(eeg[:-1]) + [eeg[-1][::2]], [source.sfreq] * (len(eeg) - 1) + [source.sfreq / 2],
              source.ch_names)
    runs = [run_cli("stream", path, "--model", model_folder, "--json") for path in (recording, mixed)]
    for result in runs:
        assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert [line for line in runs[1].stderr.splitlines() if line.startswith("WARNING: ")] == [
        "WARNING: mixed.edf: montage channels recorded at different rates: read through MNE"]
    events = [[json.loads(line) for line in result.stdout.splitlines() if '"event"' in line] for result in runs]
    assert len(events[1]) == len(events[0]) >= 1
    for ours, theirs in zip(*events):
        assert abs(ours["onset"] - theirs["onset"]) <= 2.0 and abs(ours["duration"] - theirs["duration"]) <= 4.0


def test_stream_cli_reports_electrodes_that_go_flat_or_clip_and_come_back(model_folder, recording, tmp_path):
    """An electrode flat (constant: disconnected) from 120 to 240 s and another clipped at a rail from 300 to 400 s
    of the 10-minute recording: each change is one WARNING line and, with ``--json``, one ``electrode`` record, at
    the 10-s period where it happened; no other channel of the 19 is reported in any of the 60 periods."""
    from neurocare_bids.io.edf import write_edf

    source, eeg = _whole_recording(recording)
    sfreq = int(source.sfreq)
    loose, saturated = source.ch_names[3], source.ch_names[11]
    eeg[3, 120 * sfreq:240 * sfreq] = 0.0
    clipped = eeg[11, 300 * sfreq:400 * sfreq]
    rail = 0.5 * clipped.std()
    eeg[11, 300 * sfreq:400 * sfreq] = np.clip(clipped, -rail, rail)
    path = tmp_path / "electrodes.edf"
    write_edf(path, eeg, source.sfreq, source.ch_names)
    result = run_cli("stream", path, "--model", model_folder, "--json")
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    changes = [(r["channel"], r["status"], r["since"], r["detected_at"]) for r in records if r["kind"] == "electrode"]
    assert changes == [(loose, "flat", 120.0, 130.0), (loose, "ok", 240.0, 250.0),
                       (saturated, "clipped", 300.0, 310.0), (saturated, "ok", 400.0, 410.0)]
    # each record comes before the events of the signal received after it
    order = [(r["kind"], r.get("detected_at")) for r in records if r["kind"] in ("alarm", "event", "electrode")]
    assert [t for _, t in order] == sorted(t for _, t in order)
    warnings = [line for line in result.stderr.splitlines() if line.startswith("WARNING: ")]
    # the zeros come back as the EDF's nearest digital value, as batch mode reports them
    flat = re.fullmatch(rf"WARNING: electrodes\.edf: recorded channel {re.escape(loose)} is flat from 120\.0 s of "
                        r"signal \(constant (\S+) µV: check the electrode\)", warnings[0])
    assert flat and abs(float(flat[1])) < 0.01, warnings[0]
    assert warnings[1] == (f"WARNING: electrodes.edf: recorded channel {loose} is ok again from 240.0 s of signal "
                           "(no longer flat)")
    assert len(warnings) == 4 and warnings[2].startswith(
        f"WARNING: electrodes.edf: recorded channel {saturated} is clipped from 300.0 s of signal (")
    # fed 3.3 s at a time (periods end mid-chunk), the same changes
    odd = run_cli("stream", path, "--model", model_folder, "--json", "--chunk", "3.3")
    assert [(r["channel"], r["status"], r["since"], r["detected_at"]) for r in map(json.loads, odd.stdout.splitlines())
            if r["kind"] == "electrode"] == changes
    # the untouched recording: no electrode is reported
    result = run_cli("stream", recording, "--model", model_folder, "--json")
    assert result.returncode == 0 and '"electrode"' not in result.stdout and "WARNING" not in result.stderr


def test_stream_cli_sets_non_finite_samples_of_a_float_file_to_zero_with_a_warning(model_folder, recording,
                                                                                     tmp_path):
    """A BrainVision file (float samples) with a second of NaN on one channel: ``stream FILE`` warns once and goes
    on with zeros there, as live input does (it stopped with a usage error, exit 2); the seizures, far from it, are
    reported as in the same file without the NaN. (Batch mode refuses such a recording: test_participant_cli.)"""
    import mne


    source, eeg = _whole_recording(recording)
    sfreq = int(source.sfreq)
    paths = {}
    for name in ("clean", "gap"):
        data = eeg.copy()
        if name == "gap":
            data[4, 100 * sfreq:101 * sfreq] = np.nan
        raw = mne.io.RawArray(data * 1e-6, mne.create_info(source.ch_names, source.sfreq, "eeg"), verbose="error")
        paths[name] = tmp_path / f"{name}.vhdr"
        mne.export.export_raw(paths[name], raw, fmt="brainvision", verbose="error")
    runs = {name: run_cli("stream", path, "--model", model_folder, "--json") for name, path in paths.items()}
    for result in runs.values():
        assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert [line for line in runs["gap"].stderr.splitlines() if line.startswith("WARNING: ")] == [
        "WARNING: gap.vhdr: non-finite samples (at 100.0 s of signal) are set to 0"]
    assert "WARNING" not in runs["clean"].stderr
    events = [[{k: v for k, v in r.items() if k != "wall_clock"} for r in map(json.loads, result.stdout.splitlines())
               if r["kind"] == "event"] for result in runs.values()]
    assert events[1] == events[0] and len(events[0]) == 2


def test_feed_checks_its_input(model_folder):
    from neurocare_bids.config import SZCORE_ELECTRODES
    from neurocare_bids.errors import UsageError

    names = [f"{e}-Avg" for e in SZCORE_ELECTRODES]
    detector = StreamingDetector(model_folder, names, 256.0)
    with pytest.raises(UsageError):
        detector.feed(np.zeros((10, 3)))
    with pytest.raises(UsageError):
        detector.feed(np.full((10, len(names)), np.nan))
    assert detector.feed(np.zeros((256, len(names)))) == []
    detector.flush()
    with pytest.raises(UsageError):
        detector.feed(np.zeros((10, len(names))))
    assert json.loads((model_folder / "model_card.json").read_text())["CardFormat"] == 1
