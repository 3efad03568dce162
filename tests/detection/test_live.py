"""Live input over Lab Streaming Layer on loopback: ``neurocare-bids stream --lsl NAME`` as a real process, fed by
mne-lsl's ``PlayerLSL`` in another process (``lsl_player.py``), its alarms read back from the marker outlet.

liblsl is confined to this machine (``ResolveScope = machine`` in the configuration every process here loads), and
every test names its streams uniquely, so parallel runs never see each other's streams.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from conftest import add_recording, run_cli
from test_streaming import _stream, model_folder  # noqa: F401 (the streaming tests' detector model)

_CFG = Path(tempfile.mkdtemp(prefix="lsl-cfg-")) / "lsl_api.cfg"
_CFG.write_text("[log]\nlevel = -3\n[multicast]\nResolveScope = machine\n")
os.environ["LSLAPICFG"] = str(_CFG)  # before liblsl loads in this process
ENV = {"LSLAPICFG": str(_CFG), "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).parents[2]),
                                                                             os.environ.get("PYTHONPATH")]))}
PLAYER = Path(__file__).with_name("lsl_player.py")
SEIZURES = [(40.0, 30.0, "sz")]
CALIBRATION = "20"


def _loopback_problem() -> str | None:
    """Why liblsl cannot serve a stream on loopback here, or None when it can."""
    try:
        from mne_lsl.lsl import StreamInfo, StreamOutlet, resolve_streams
    except Exception as exc:  # the package or its bundled liblsl
        return f"mne-lsl/liblsl unavailable: {exc}"
    name = f"probe-{uuid.uuid4().hex[:8]}"
    try:
        outlet = StreamOutlet(StreamInfo(name, "Markers", 1, 0.0, "string", name))
        found = resolve_streams(timeout=5, name=name)
        del outlet
    except Exception as exc:
        return f"liblsl cannot open a loopback outlet: {exc}"
    return None if found else "liblsl cannot resolve its own outlet on loopback"


_PROBLEM = _loopback_problem()
pytestmark = [pytest.mark.skipif(_PROBLEM is not None, reason=str(_PROBLEM)),
              pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")]


@pytest.fixture(scope="module")
def live_recording(tmp_path_factory):
    """100 s with one seizure (40-70 s)."""
    root = tmp_path_factory.mktemp("live") / "bids"
    return add_recording(root, "01", duration=100.0, seizures=SEIZURES, events=None, seed=3)


def _player(path: Path, name: str, *extra) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(PLAYER), str(path), name, "--chunk", "32", "--speed", "5", *extra],
                            env={**os.environ, **ENV}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _live(name: str, model: Path, *extra) -> subprocess.Popen:
    command = [sys.executable, "-m", "neurocare_bids", "stream", "--lsl", name, "--model", str(model), "--json",
               "--lsl-timeout", "3", "--calibration", CALIBRATION, "--line-freq", "50", *extra]
    return subprocess.Popen(command, env={**os.environ, "PYTHONWARNINGS": "ignore", **ENV}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _finish(process: subprocess.Popen, *others: subprocess.Popen, timeout: float = 120) -> tuple[str, str]:
    try:
        out, err = process.communicate(timeout=timeout)
    finally:
        for other in others:
            if other.poll() is None:
                other.kill()
            other.communicate()
    return out, err


def _name(tag: str) -> str:
    return f"nc-test-{tag}-{uuid.uuid4().hex[:10]}"


KEYS = {"kind", "onset", "duration", "confidence", "detected_at", "latency", "wall_clock"}


def test_live_stream_reports_the_file_replays_events_and_pushes_them_as_markers(model_folder, live_recording):
    from mne_lsl.lsl import StreamInlet, resolve_streams

    name, alarms = _name("eeg"), _name("alarms")
    player = _player(live_recording, name)
    started = time.time()
    live = _live(name, model_folder, "--alarm-outlet", alarms)
    # the marker outlet appears once the detector has connected; subscribe before the first alarm (~70 s of
    # signal, 14 s at 5x)
    found = resolve_streams(timeout=30, name=alarms)
    assert found, "the detector's marker outlet did not appear"
    inlet = StreamInlet(found[0])
    inlet.open_stream(timeout=10)
    markers = []
    while live.poll() is None or inlet.samples_available:
        sample, _ = inlet.pull_sample(timeout=0.2)
        if sample is not None and len(sample):
            markers.append(json.loads(sample[0]))
    out, err = _finish(live, player)
    assert live.returncode == 0, err
    lines = [json.loads(line) for line in out.strip().splitlines()]
    assert lines[0]["kind"] == "start" and lines[0]["channels"] == 19 and lines[0]["sfreq"] == 256.0
    assert lines[-1]["kind"] == "end" and lines[-1]["signal_seconds"] == pytest.approx(100.0)
    assert lines[-1]["reason"] == f"LSL stream '{name}' silent for 3 s"
    reports = lines[1:-1]
    assert reports and all(set(r) == KEYS for r in reports)
    assert all(started <= r["wall_clock"] <= time.time() for r in reports)
    # The file replay (the same detector, fed from the file) on the same recording: the player sends the file's
    # samples in float64 (volts; the file reader gives µV: the same numbers up to the last bit of the scaling) and
    # from the first sample (it waits for its consumer), and the detector's results do not depend on chunk
    # sizes, so the reports are the same to float rounding: times exactly, confidences within 1e-6.
    from neurocare_bids.detection.apply import load_model

    model = load_model(model_folder)
    model.use_operating_point("alarm")  # what `stream` detects with unless told otherwise
    _, expected = _stream(model, live_recording, 10.0, calibration=float(CALIBRATION), line_freq=50.0)
    assert [r["kind"] for r in reports] == ["event" if e.final else "alarm" for e in expected]
    for got, want in zip(reports, expected):
        assert got["onset"] == pytest.approx(want.onset, abs=1e-4)
        assert got["duration"] == pytest.approx(want.duration, abs=1e-4)
        assert got["detected_at"] == pytest.approx(want.detected_at, abs=1e-4)
        assert got["latency"] == pytest.approx(want.latency, abs=1e-4)
        assert got["confidence"] == pytest.approx(want.confidence, abs=1e-4)  # printed with 4 decimals
    assert [r["kind"] for r in reports] == ["alarm", "event"]  # the generated seizure, alarmed then complete
    assert reports[0]["onset"] <= SEIZURES[0][0] <= reports[0]["onset"] + 4.0
    # every report reached the marker outlet as the same JSON object
    assert markers == reports


def test_a_stream_lacking_montage_channels_is_refused_in_one_line(model_folder, live_recording):
    name = _name("missing")
    player = _player(live_recording, name, "--drop-channel", "Fp1-Avg")
    live = _live(name, model_folder)
    out, err = _finish(live, player)
    assert live.returncode == 65, err
    assert err.strip().splitlines() == [err.strip()] and "missing electrode" in err and name in err
    assert "Traceback" not in err


def test_no_stream_of_that_name_within_the_timeout(model_folder):
    name = _name("absent")
    started = time.monotonic()
    result = run_cli("stream", "--lsl", name, "--model", model_folder, "--lsl-timeout", "1", env=ENV, timeout=60)
    assert result.returncode == 66 and "Traceback" not in result.stderr
    assert result.stderr.strip() == (f"neurocare-bids: error: no LSL stream named '{name}' with numeric samples "
                                     "appeared within 1 s")
    assert time.monotonic() - started < 30


def test_a_stream_at_too_low_a_rate_is_refused(model_folder, tmp_path):
    low = add_recording(tmp_path / "bids", "02", sfreq=50.0, duration=20.0, events=None)
    name = _name("low")
    player = _player(low, name)
    live = _live(name, model_folder)
    out, err = _finish(live, player)
    assert live.returncode == 65 and "too low" in err and len(err.strip().splitlines()) == 1, err


def test_a_stream_that_stops_mid_seizure_still_reports_its_event(model_folder, live_recording):
    name = _name("vanish")
    player = _player(live_recording, name, "--stop-after", "60")  # the seizure runs 40-70 s
    live = _live(name, model_folder)
    out, err = _finish(live, player)
    assert live.returncode == 0, err
    lines = [json.loads(line) for line in out.strip().splitlines()]
    assert lines[-1]["kind"] == "end" and lines[-1]["signal_seconds"] == pytest.approx(60.0)
    events = [r for r in lines if r["kind"] == "event"]
    # detected only at the flush (the alarm needed 17.8 s of filter look-ahead past 60 s): ends with the signal
    assert len(events) == 1 and events[0]["onset"] <= SEIZURES[0][0] <= events[0]["onset"] + 4.0
    assert events[0]["onset"] + events[0]["duration"] == pytest.approx(60.0)
    assert lines[-1]["seizures"] == 1


def test_sigterm_stops_the_detector_which_flushes_and_exits_0(model_folder, live_recording):
    """SIGTERM (a service manager stopping it) after the alarm: the open seizure is reported, then the reason."""
    import signal

    name = _name("term")
    player = _player(live_recording, name)
    live = _live(name, model_folder)
    lines = []
    for line in live.stdout:  # until the alarm (~68 s of signal, 14 s at 5x)
        lines.append(json.loads(line))
        if lines[-1]["kind"] == "alarm":
            break
    live.send_signal(signal.SIGTERM)
    out, err = _finish(live, player)
    assert live.returncode == 0, err
    lines += [json.loads(line) for line in out.strip().splitlines()]
    assert [r["kind"] for r in lines] == ["start", "alarm", "event", "end"], lines
    assert lines[-1]["reason"] == "stopped by SIGTERM" and lines[-1]["seizures"] == 1
    assert lines[2]["onset"] == lines[1]["onset"] and lines[-1]["signal_seconds"] < 100.0


def test_gaps_and_clock_jumps_are_warned_about_and_detection_goes_on(model_folder):
    """A hand-made outlet whose timestamps skip 5 s forward, then 3 s back: one warning line each, exit 0."""
    from mne_lsl.lsl import StreamInfo, StreamOutlet, local_clock

    from neurocare_bids.config import SZCORE_ELECTRODES

    name, sfreq = _name("gaps"), 256.0
    info = StreamInfo(name, "EEG", len(SZCORE_ELECTRODES), sfreq, "float32", f"{name}-src")
    info.set_channel_names([f"{e}-Avg" for e in SZCORE_ELECTRODES])
    info.set_channel_units("microvolts")
    outlet = StreamOutlet(info, chunk_size=64)
    live = _live(name, model_folder)
    assert outlet.wait_for_consumers(timeout=60)
    rng = np.random.default_rng(0)
    t0 = local_clock()
    for k in range(40):  # 10 s of noise in 0.25 s chunks
        shift = 5.0 if 15 <= k < 30 else 2.0 if k >= 30 else 0.0  # +5 s at chunk 15, then back 3 s at 30
        stamps = t0 + shift + (k * 64 + np.arange(64)) / sfreq
        outlet.push_chunk(rng.standard_normal((64, len(SZCORE_ELECTRODES))).astype(np.float32) * 10,
                          timestamp=stamps)
        time.sleep(0.01)
    out, err = _finish(live, timeout=60)
    del outlet
    assert live.returncode == 0, err
    warnings = err.strip().splitlines()
    assert len(warnings) == 2 and "Traceback" not in err, err
    assert "gap of 5.00 s" in warnings[0] and "jumped back 3.00 s" in warnings[1]
    end = json.loads(out.strip().splitlines()[-1])
    assert end["kind"] == "end" and end["signal_seconds"] == pytest.approx(10.0) and end["seizures"] == 0


def test_stream_needs_a_file_or_a_live_stream(tmp_path):
    result = run_cli("stream", "--model", tmp_path)
    assert result.returncode == 64 and "give an EEG FILE to replay or --lsl NAME" in result.stderr
    result = run_cli("stream", tmp_path / "x.edf", "--lsl", "x", "--model", tmp_path)
    assert result.returncode == 64 and "not both" in result.stderr


def test_declared_units_become_microvolts():
    """As the EDF reader scales a file's physical units: LSL's unit names, mne-lsl's powers of ten of volts (what
    ``PlayerLSL`` declares, "0": its samples are volts), the EDF spellings; µV when the stream declares none."""
    from neurocare_bids.detection.live import microvolt_scale

    units = ["microvolts", "volts", "0", "-6", "mV", "uV", "nanovolts", None]
    np.testing.assert_array_equal(microvolt_scale(units, 8), [1, 1e6, 1e6, 1, 1e3, 1, 1e-3, 1])
    np.testing.assert_array_equal(microvolt_scale(None, 3), [1, 1, 1])

