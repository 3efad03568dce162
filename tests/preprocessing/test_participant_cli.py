"""The participant level end to end: generated EDF files in, CLI as a subprocess, outputs read back."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import (EVENTS_HEADER, SIENA_LABELS, add_recording, read_windows, run_cli, tree_checksums,
                      write_dataset_description)

STEM = "sub-01_ses-01_task-szMonitoring_run-00"


def outputs_of(out, subject="01", stem=STEM):
    folder = out / f"sub-{subject}" / "ses-01" / "eeg"
    return folder / f"{stem}_desc-preproc_windows.tfrecord", folder / f"{stem}_desc-preproc_windows.json"


def test_siena_layout_end_to_end(siena, tmp_path):
    out = tmp_path / "out"
    before = tree_checksums(siena)
    result = run_cli(siena, out, "participant", "--skip-bids-validation")
    assert result.returncode == 0, result.stderr
    assert tree_checksums(siena) == before  # nothing written into BIDS_DIR

    desc = json.loads((out / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "derivative"
    assert desc["GeneratedBy"][0]["Name"] == "NeuroCare-BIDS" and desc["GeneratedBy"][0]["CodeURL"]
    assert desc["SourceDatasets"][0]["URL"].startswith("file://")
    assert "*_windows.tfrecord" in (out / ".bidsignore").read_text()
    configs = list((out / "logs").glob("participant_*/config.toml"))
    assert len(configs) == 1 and "[preprocessing]" in configs[0].read_text()

    tfrecord, sidecar = outputs_of(out)
    meta = json.loads(sidecar.read_text())
    assert meta["SamplingFrequency"] == 128.0 and meta["Channels"] == SIENA_LABELS
    assert meta["RecordingDuration"] == 120.0 and meta["WindowDuration"] == 4.0 and meta["WindowStride"] == 2.0
    assert meta["WindowCount"] == (120 - 4) // 2 + 1
    assert meta["Preprocessing"]["l_freq"] == 0.5 and meta["Preprocessing"]["NotchFrequencies"] == [50.0]
    assert list(meta["SourceChecksums"]) == [
        "sub-01/ses-01/eeg/sub-01_ses-01_task-szMonitoring_run-00_eeg.edf",
        "sub-01/ses-01/eeg/sub-01_ses-01_task-szMonitoring_run-00_eeg.json",
        "sub-01/ses-01/eeg/sub-01_ses-01_task-szMonitoring_run-00_events.tsv"]
    assert meta["TFRecord"]["Schema"]["eeg"]["shape"] == [512, 19]

    windows = read_windows(tfrecord)
    assert len(windows) == meta["WindowCount"]
    onsets = np.array([w["onset"] for w in windows])
    np.testing.assert_allclose(onsets, np.arange(len(windows)) * 2.0)
    labels = np.array([w["label"] for w in windows])
    # seizure 40-60 s: windows starting at 38..58 s overlap it by at least half their length
    np.testing.assert_array_equal(np.flatnonzero(labels), np.arange(19, 30))
    assert meta["SeizureWindowCount"] == 11
    assert {w["subject"] for w in windows} == {b"01"} and windows[0]["run"] == b"00"
    eeg = np.stack([np.frombuffer(w["eeg"], "<f4").reshape(512, 19) for w in windows])
    assert np.isfinite(eeg).all()
    # z-scored per channel over the recording (windows overlap, so check the non-overlapping halves)
    signal_ = np.concatenate([eeg[0][:256]] + [w[256:] for w in eeg])
    np.testing.assert_allclose(signal_.mean(axis=0), 0, atol=0.05)
    np.testing.assert_allclose(signal_.std(axis=0), 1, atol=0.05)
    # the seizure (a 4 Hz rhythm) stands out in the labelled windows
    power = (eeg[:, :, :5] ** 2).mean(axis=(1, 2))
    assert power[labels == 1].mean() > 3 * power[labels == 0].mean()

    # no seizure in sub-02: all background, but windows are still written
    meta2 = json.loads(outputs_of(out, "02", STEM.replace("01", "02", 1))[1].read_text())
    assert meta2["SeizureWindowCount"] == 0 and meta2["WindowCount"] == 59


def test_rerun_skips_up_to_date_and_outputs_are_byte_identical(siena, tmp_path):
    out = tmp_path / "out"
    assert run_cli(siena, out, "participant", "--skip-bids-validation").returncode == 0
    tfrecord, sidecar = outputs_of(out)
    first = {p: p.read_bytes() for p in (tfrecord, sidecar)}
    mtimes = {p: p.stat().st_mtime_ns for p in first}

    again = run_cli(siena, out, "participant", "--skip-bids-validation")
    assert again.returncode == 0 and "up-to-date" in again.stdout
    assert {p: p.stat().st_mtime_ns for p in first} == mtimes  # not rewritten

    forced = run_cli(siena, out, "participant", "--skip-bids-validation", "--overwrite", "--nprocs", "2")
    assert forced.returncode == 0 and "written" in forced.stdout
    assert {p: p.read_bytes() for p in first} == first  # identical bytes from a fresh computation

    # a changed input makes the output stale
    events = siena / "sub-01/ses-01/eeg" / f"{STEM}_events.tsv"
    events.write_text(EVENTS_HEADER + "10.00\t20.00\tsz\tn/a\tn/a\t2000-01-01 00:00:10\t120.00\n")
    changed = run_cli(siena, out, "participant", "--skip-bids-validation", "--participant-label", "sub-01")
    assert changed.returncode == 0 and "written" in changed.stdout
    assert json.loads(sidecar.read_text())["SeizureIntervals"] == [[10.0, 30.0]]


def test_physionet_style_512hz_with_extra_channels_and_t7_names(tmp_path):
    root = tmp_path / "bids"
    electrodes = ["Fp1", "F3", "C3", "P3", "O1", "F7", "T7", "P7", "Fz", "Cz", "Pz",
                  "Fp2", "F4", "C4", "P4", "O2", "F8", "T8", "P8"]
    labels = [f"EEG {e}" for e in electrodes] + ["EEG Fc1", "EEG Fc5", "EEG Cp1", "EKG EKG", "SPO2", "HR",
                                                  "EEG A1", "EEG A2", "MK", "EEG F9"]
    add_recording(root, "01", sfreq=512.0, labels=labels, duration=60.0, seizures=[(20.0, 10.0, "sz_gen")])
    out = tmp_path / "out"
    result = run_cli(root, out, "participant", "--skip-bids-validation")
    assert result.returncode == 0, result.stderr
    meta = json.loads(outputs_of(out)[1].read_text())
    assert meta["Channels"] == SIENA_LABELS and meta["SamplingFrequency"] == 128.0
    assert meta["ChannelSources"]["T3-Avg"] == "EEG T7" and meta["ChannelSources"]["T6-Avg"] == "EEG P8"
    assert meta["Preprocessing"]["ResamplingFactor"] == "1/4"
    assert meta["SeizureWindowCount"] > 0


@pytest.mark.parametrize("sfreq, notches", [(100.0, []), (160.0, [50.0]), (2048.0, [50.0])])
def test_sampling_rates_from_100_hz_to_2_khz(tmp_path, sfreq, notches):
    """EEGMMIDB-style labels ('Fc5.', 'T7..'); a notch at or above Nyquist is skipped with a note."""
    root = tmp_path / "bids"
    electrodes = ["Fp1", "F3", "C3", "P3", "O1", "F7", "T7", "P7", "Fz", "Cz", "Pz",
                  "Fp2", "F4", "C4", "P4", "O2", "F8", "T8", "P8"]
    labels = [f"{e}{'.' * (4 - len(e))}" for e in electrodes] + ["Fc5."]
    add_recording(root, "01", sfreq=sfreq, labels=labels, duration=30.0, seizures=[])
    out = tmp_path / "out"
    result = run_cli(root, out, "participant", "--skip-bids-validation")
    assert result.returncode == 0, result.stderr
    meta = json.loads(outputs_of(out)[1].read_text())
    assert meta["Preprocessing"]["NotchFrequencies"] == notches
    assert meta["WindowCount"] == 14
    if sfreq == 100.0:
        assert any("skipped" in w for w in meta["Warnings"]) and any("upsampled" in w for w in meta["Warnings"])
    windows = read_windows(outputs_of(out)[0])
    assert len(windows[0]["eeg"]) == 512 * 19 * 4


def test_bipolar_chbmit_recording_with_bipolar_montage(tmp_path):
    root = tmp_path / "bids"
    pairs = ["FP1-F7", "F7-T7", "T7-P7", "P7-O1", "FP1-F3", "F3-C3", "C3-P3", "P3-O1", "FP2-F4", "F4-C4",
             "C4-P4", "P4-O2", "FP2-F8", "F8-T8", "T8-P8", "P8-O2", "FZ-CZ", "CZ-PZ"]
    add_recording(root, "01", labels=pairs, duration=40.0, line_freq=60, seizures=[])
    out = tmp_path / "out"
    default = run_cli(root, out, "participant", "--skip-bids-validation")
    assert default.returncode == 65
    assert "bipolar" in default.stderr and "Traceback" not in default.stderr
    assert not outputs_of(out)[0].exists()

    config = tmp_path / "bipolar.toml"
    config.write_text('[montage]\nmontage = "bipolar"\n')
    result = run_cli(root, out, "participant", "--skip-bids-validation", "--config", config)
    assert result.returncode == 0, result.stderr
    meta = json.loads(outputs_of(out)[1].read_text())
    assert meta["Channels"][:2] == ["Fp1-F7", "F7-T3"] and len(meta["Channels"]) == 18
    assert meta["Preprocessing"]["NotchFrequencies"] == [60.0]


def test_missing_electrode_fails_unless_filling_is_allowed(tmp_path):
    root = tmp_path / "bids"
    add_recording(root, "01", labels=SIENA_LABELS[:-1], duration=30.0, seizures=[])
    out = tmp_path / "out"
    failed = run_cli(root, out, "participant", "--skip-bids-validation")
    assert failed.returncode == 65 and "T6" in failed.stderr
    config = tmp_path / "fill.toml"
    config.write_text("[montage]\nallow_missing_channels = true\n")
    result = run_cli(root, out, "participant", "--skip-bids-validation", "--config", config)
    assert result.returncode == 0, result.stderr
    meta = json.loads(outputs_of(out)[1].read_text())
    assert meta["FilledChannels"] == ["T6-Avg"] and any("T6-Avg" in w for w in meta["Warnings"])
    eeg = np.frombuffer(read_windows(outputs_of(out)[0])[0]["eeg"], "<f4").reshape(512, 19)
    assert np.all(eeg[:, -1] == 0) and eeg[:, 0].std() > 0.1


@pytest.mark.parametrize("ext", [".bdf", ".vhdr", ".set"])
def test_bdf_brainvision_and_eeglab_inputs(tmp_path, ext):
    root = tmp_path / "bids"
    add_recording(root, "01", ext=ext, duration=30.0, seizures=[(10.0, 6.0, "sz")])
    out = tmp_path / "out"
    result = run_cli(root, out, "participant", "--skip-bids-validation")
    assert result.returncode == 0, result.stderr
    meta = json.loads(outputs_of(out)[1].read_text())
    assert meta["WindowCount"] == 14 and meta["SeizureWindowCount"] == 4
    assert any(k.endswith(ext) for k in meta["SourceChecksums"])


def test_non_finite_samples_of_a_float_format_fail_that_recording_alone_with_exit_65(tmp_path):
    """BrainVision stores float samples, which can be NaN (an amplifier's dropout, an export's gap): that recording
    is refused in one line (its windows would be NaN), the other one is processed."""
    from conftest import synthetic_eeg

    root = tmp_path / "bids"
    data = synthetic_eeg(19, 256 * 30, 256.0, seed=6)
    data[4, 256 * 12:256 * 13] = np.nan
    add_recording(root, "01", ext=".vhdr", duration=30.0, seizures=[], data=data)
    add_recording(root, "02", ext=".vhdr", duration=30.0, seizures=[])
    out = tmp_path / "out"
    result = run_cli(root, out, "participant", "--skip-bids-validation")
    assert result.returncode == 65, result.stderr
    [error] = [line for line in result.stderr.splitlines() if line.startswith("neurocare-bids: error:")]
    assert error.startswith("neurocare-bids: error: sub-01/ses-01/eeg/sub-01_ses-01_task-szMonitoring_run-00_eeg.vhdr:")
    assert "non-finite samples between" in error and "Traceback" not in result.stderr
    assert not (out / "sub-01").exists() and len(list((out / "sub-02").glob("ses-01/eeg/*_windows.*"))) == 2


def test_float16_output(siena, tmp_path):
    config = tmp_path / "f16.toml"
    config.write_text('[output]\ndtype = "float16"\n[windows]\nduration = 2\noverlap = 0\n')
    out = tmp_path / "out"
    result = run_cli(siena, out, "participant", "--skip-bids-validation", "--config", config,
                     "--participant_label", "01")
    assert result.returncode == 0, result.stderr
    tfrecord, sidecar = outputs_of(out)
    meta = json.loads(sidecar.read_text())
    assert meta["TFRecord"]["Schema"]["eeg"]["dtype"] == "<f2" and meta["WindowCount"] == 60
    assert len(read_windows(tfrecord)[0]["eeg"]) == 256 * 19 * 2
    assert not (out / "sub-02").exists()  # --participant_label selected sub-01 only


def test_bad_recordings_fail_alone_with_exit_65(tmp_path):
    root = tmp_path / "bids"
    good = add_recording(root, "01", duration=30.0, seizures=[])
    truncated = add_recording(root, "02", duration=30.0, seizures=[])
    truncated.write_bytes(truncated.read_bytes()[:-20000])
    garbage = add_recording(root, "03", duration=30.0, seizures=[])
    garbage.write_bytes(b"this is not an EDF file" * 100)
    empty = add_recording(root, "04", duration=30.0, seizures=[])
    empty.write_bytes(b"")
    add_recording(root, "05", duration=30.0, events="onset\tdur\teventType\n1\t2\tsz\n")
    add_recording(root, "06", duration=30.0, events=EVENTS_HEADER + "abc\t2\tsz\tn/a\tn/a\tn/a\t30\n")
    add_recording(root, "07", duration=30.0, events=EVENTS_HEADER +
                  "5\t2\tartifact\tn/a\tn/a\tn/a\t30\n500\t10\tsz\tn/a\tn/a\tn/a\t30\n")
    out = tmp_path / "out"
    before = tree_checksums(root)
    result = run_cli(root, out, "participant", "--skip-bids-validation", "--nprocs", "2")
    assert result.returncode == 65, result.stderr
    assert "Traceback" not in result.stderr
    for subject in ("02", "03", "04", "05", "06"):
        assert f"sub-{subject}" in result.stderr
        assert not outputs_of(out, subject, STEM.replace("01", subject, 1))[0].exists()
    assert "no 'duration' column" in result.stderr and "'abc' is not a number" in result.stderr
    for subject in ("01", "07"):
        assert outputs_of(out, subject, STEM.replace("01", subject, 1))[1].exists()
    warnings = json.loads(outputs_of(out, "07", STEM.replace("01", "07", 1))[1].read_text())["Warnings"]
    assert any("unknown type 'artifact'" in w for w in warnings)
    assert any("outside the recording" in w for w in warnings)
    assert tree_checksums(root) == before
    assert not list(out.rglob(".*.tmp")) and good.exists()


@pytest.mark.parametrize("args, code, message", [
    (["--participant_label", "99"], 18, "not found: 99"),
    (["--participant_label", "../x"], 64, "invalid participant label"),
    (["--task_label", "rest"], 18, "selected no recording"),
    (["--nprocs", "many"], 64, "invalid int value"),
    (["--bogus"], 64, "unrecognized arguments"),
])
def test_usage_and_selection_errors(siena, tmp_path, args, code, message):
    out = tmp_path / "out"
    result = run_cli(siena, out, "participant", "--skip-bids-validation", *args)
    assert result.returncode == code, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not out.exists()  # nothing created for a run that could not start


def test_input_and_output_location_errors(siena, tmp_path):
    cases = [
        ((siena, siena, "participant"), 73, "never writes into its input"),
        ((siena, siena / "derivatives" / "nc", "participant"), 73, "inside the BIDS dataset"),
        ((siena, tmp_path / "out", "subject"), 17, "unknown analysis level"),
        ((tmp_path / "nope", tmp_path / "out", "participant"), 66, "does not exist"),
        ((tmp_path, tmp_path / "out", "participant"), 66, "not a BIDS dataset"),
    ]
    no_eeg = tmp_path / "noeeg"
    write_dataset_description(no_eeg)
    cases.append(((no_eeg, tmp_path / "out", "participant"), 66, "no EEG recordings"))
    for args, code, message in cases:
        result = run_cli(*args, "--skip-bids-validation")
        assert result.returncode == code, (args, result.stderr)
        assert message in result.stderr and "Traceback" not in result.stderr
    assert not (siena / "derivatives").exists()
    foreign = tmp_path / "foreign"
    write_dataset_description(foreign)
    result = run_cli(siena, foreign, "participant", "--skip-bids-validation")
    assert result.returncode == 73 and "not made by NeuroCare-BIDS" in result.stderr


def test_traceback_only_with_vv(tmp_path):
    result = run_cli(tmp_path / "nope", tmp_path / "out", "participant", "-vv")
    assert result.returncode == 66 and "Traceback" in result.stderr


def test_config_file_errors_and_print_config(siena, tmp_path):
    config = tmp_path / "c.toml"
    config.write_text("[preprocessing]\nl_frq = 1.0\n")
    result = run_cli(siena, tmp_path / "out", "participant", "--config", config)
    assert result.returncode == 64 and "did you mean 'l_freq'" in result.stderr
    config.write_text('[preprocessing]\nl_freq = 1.0\n[execution]\nnprocs = 3\n')
    printed = run_cli(siena, tmp_path / "out", "participant", "--config", config, "--nprocs", "1",
                      "--print-config")
    assert printed.returncode == 0
    assert "l_freq = 1.0" in printed.stdout and "nprocs = 1" in printed.stdout  # CLI beats the file


def test_version():
    result = run_cli("--version")
    assert result.returncode == 0 and result.stdout.startswith("NeuroCare-BIDS ")


def test_killed_run_leaves_no_partial_output_and_rerun_completes(tmp_path):
    root = tmp_path / "bids"
    add_recording(root, "01", duration=1800.0, seizures=[(600.0, 60.0, "sz")])
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "neurocare_bids", root, out, "participant",
                             "--skip-bids-validation", "--nprocs", "1"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    tfrecord, sidecar = outputs_of(out)
    deadline = time.time() + 60
    while time.time() < deadline and not list(tfrecord.parent.glob(".*.tmp")):
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not tfrecord.exists() and not sidecar.exists()
    result = run_cli(root, out, "participant", "--skip-bids-validation")
    assert result.returncode == 0, result.stderr
    assert not list(tfrecord.parent.glob(".*.tmp"))  # the dead run's temporary file was cleaned up
    assert len(read_windows(tfrecord)) == json.loads(sidecar.read_text())["WindowCount"] == 899


def test_parallel_single_subject_jobs_share_one_output(tmp_path):
    """Eight one-subject jobs started at once into one OUT, as an HPC array does: every output valid, the
    shared files written once and whole, one log folder per job."""
    from neurocare_bids.io.derivatives import BIDSIGNORE, dataset_description

    from conftest import read_only_input

    subjects = [f"{i:02d}" for i in range(1, 9)]
    root = tmp_path / "bids"
    for subject in subjects:
        add_recording(root, subject, duration=20.0, sfreq=128.0, seizures=[(6.0, 6.0, "sz")], seed=int(subject))
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    with read_only_input(root):
        procs = [subprocess.Popen([sys.executable, "-m", "neurocare_bids", root, out, "participant",
                                   "--skip-bids-validation", "--participant-label", s], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for s in subjects]
        results = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0] * len(subjects), [err for _, err in results]
    assert json.loads((out / "dataset_description.json").read_text()) == json.loads(
        json.dumps(dataset_description(root)))
    assert (out / ".bidsignore").read_text() == BIDSIGNORE
    logs = sorted((out / "logs").glob("participant_*"))
    assert len(logs) == len(subjects)
    for log in logs:  # each job's own log folder, complete
        assert "[preprocessing]" in (log / "config.toml").read_text()
        summary = (log / "summary.tsv").read_text().splitlines()
        assert len(summary) == 2 and "\twritten\t" in summary[1]
        assert "participant" in (log / "neurocare.log").read_text()
    for subject in subjects:
        tfrecord, sidecar = outputs_of(out, subject, STEM.replace("01", subject, 1))
        meta = json.loads(sidecar.read_text())
        assert len(read_windows(tfrecord)) == meta["WindowCount"] == 9 and meta["SeizureWindowCount"] == 4
    assert not list(out.rglob(".*.tmp"))


def test_pybids_indexes_the_derivatives(siena, tmp_path):
    from bids import BIDSLayout

    out = tmp_path / "out"
    assert run_cli(siena, out, "participant", "--skip-bids-validation").returncode == 0
    layout = BIDSLayout(siena, derivatives=out, validate=False)
    files = layout.get(scope="derivatives", suffix="windows", extension=".tfrecord")
    assert len(files) == 2
    ents = files[0].get_entities()
    assert (ents["subject"], ents["session"], ents["task"], ents["desc"]) == ("01", "01", "szMonitoring", "preproc")
    assert str(ents["run"]) == "00"
    assert len(layout.get(scope="derivatives", suffix="windows", extension=".json", subject="02")) == 1


def test_clinical_edf_plus_with_annotations_mixed_rates_and_odd_header(tmp_path):
    """A hospital export: EDF+ annotations, EKG and SpO2 at other rates, odd header text."""
    from datetime import datetime

    from conftest import synthetic_eeg
    from neurocare_bids.io.edf import write_edf

    root = tmp_path / "bids"
    add_recording(root, "01", duration=60.0, seizures=[(20.0, 10.0, "sz")])
    path = root / "sub-01/ses-01/eeg" / f"{STEM}_eeg.edf"
    eeg = synthetic_eeg(19, 500 * 60, 500.0, seed=4, seizures=[(20.0, 10.0)])
    signals = list(eeg) + [np.sin(np.arange(250 * 60) / 40) * 1000, np.full(60, 97.0)]
    names = [f"EEG {e}-Ref" for e in ["Fp1", "F3", "C3", "P3", "O1", "F7", "T3", "T5", "Fz", "Cz", "Pz", "Fp2",
                                      "F4", "C4", "P4", "O2", "F8", "T4", "T6"]] + ["ECG EKG", "SpO2"]
    write_edf(path, signals, [500.0] * 19 + [250.0, 1.0], names, start=datetime(2021, 3, 4, 22, 15, 0),
              annotations=[(5.0, 0.0, "Eyes closed"), (21.0, 9.0, "Pt. reports aura ä"), (50.0, 0.0, "Recording paused")],
              patient_id="MCH-0234567 F 02-MAY-1951 Haagse_Harry", prefilter="HP:0.1Hz LP:75Hz N:50Hz",
              units=["uV"] * 19 + ["mV", "%"])
    out = tmp_path / "out"
    result = run_cli(root, out, "participant", "--skip-bids-validation")
    assert result.returncode == 0, result.stderr
    meta = json.loads(outputs_of(out)[1].read_text())
    assert meta["Preprocessing"]["InputSamplingFrequency"] == 500.0
    assert meta["ChannelSources"]["Fp1-Avg"] == "EEG Fp1-Ref" and meta["WindowCount"] == 29
    labels = [w["label"] for w in read_windows(outputs_of(out)[0])]
    assert sum(labels) == 6  # the seizure comes from events.tsv, not from the EDF annotations


def test_block_size_does_not_change_the_windows(tmp_path):
    """Chunked processing (60 s blocks) equals processing the 15-minute recording in one block."""
    root = tmp_path / "bids"
    add_recording(root, "01", duration=900.0, sfreq=512.0, seizures=[(300.0, 40.0, "sz")])
    small, large = tmp_path / "small.toml", tmp_path / "large.toml"
    small.write_text("[preprocessing]\nblock_duration = 60\n")
    large.write_text("[preprocessing]\nblock_duration = 1000\n")
    windows = []
    for config in (small, large):
        out = tmp_path / config.stem
        assert run_cli(root, out, "participant", "--skip-bids-validation", "--config", config).returncode == 0
        windows.append(np.stack([np.frombuffer(w["eeg"], "<f4") for w in read_windows(outputs_of(out)[0])]))
    assert windows[0].shape == windows[1].shape == (449, 512 * 19)
    np.testing.assert_allclose(windows[0], windows[1], rtol=0, atol=1e-5)


def test_montage_channels_at_different_rates_are_read_through_mne(tmp_path):
    from conftest import synthetic_eeg
    from neurocare_bids.io.edf import write_edf

    root = tmp_path / "bids"
    add_recording(root, "01", duration=30.0, seizures=[])
    eeg = synthetic_eeg(19, 256 * 30, 256.0, seed=5)
    signals = list(eeg[:18]) + [eeg[18][::2]]  # T6 recorded at half the rate
    write_edf(root / "sub-01/ses-01/eeg" / f"{STEM}_eeg.edf", signals, [256.0] * 18 + [128.0], SIENA_LABELS)
    out = tmp_path / "out"
    result = run_cli(root, out, "participant", "--skip-bids-validation")
    assert result.returncode == 0, result.stderr
    meta = json.loads(outputs_of(out)[1].read_text())
    assert any("read through MNE" in w for w in meta["Warnings"]) and meta["WindowCount"] == 14


def test_work_dir_inside_the_input_is_refused_before_writing(siena, tmp_path):
    out = tmp_path / "out"
    result = run_cli(siena, out, "participant", "--skip-bids-validation", "-w", siena / "work")
    assert result.returncode == 64 and "inside the BIDS dataset" in result.stderr
    assert not out.exists() and not (siena / "work").exists()


def test_flat_electrode_is_reported(tmp_path):
    from conftest import synthetic_eeg
    from neurocare_bids.io.edf import write_edf

    root = tmp_path / "bids"
    add_recording(root, "01", duration=30.0, seizures=[])
    data = synthetic_eeg(19, 256 * 30, 256.0, seed=3)
    data[4] = 12.5  # O1 stuck at a constant value
    write_edf(root / "sub-01/ses-01/eeg" / f"{STEM}_eeg.edf", data, 256.0, SIENA_LABELS)
    out = tmp_path / "out"
    result = run_cli(root, out, "participant", "--skip-bids-validation")
    assert result.returncode == 0, result.stderr
    warnings = json.loads(outputs_of(out)[1].read_text())["Warnings"]
    assert [w for w in warnings if "flat" in w] == [
        "recorded channel O1-Avg is flat (constant 12.5 µV): check the electrode"]


def test_causal_preprocessing_windows_need_no_later_signal(tmp_path):
    """``preprocessing.causal = true``: other, valid windows, recomputed (the output hash changes) and recorded in
    the sidecar, the same from blocks of 30 s as from one block; two recordings that are the same up to 70 s give
    the same windows up to 70 s, where zero-phase windows differ (their filters look ahead). ``causal = false`` is
    the default: outputs made before the option existed stay up to date. The group level's model card records it."""
    import shutil

    from conftest import synthetic_eeg
    from neurocare_bids.config import Config
    from neurocare_bids.evaluation.group import _preprocessing_card
    from neurocare_bids.preprocessing.filters import plan_from_sidecar
    from neurocare_bids.training.input_pipeline import WindowFile, check_geometry

    root, change, sfreq = tmp_path / "bids", 70.0, 256.0
    t = np.arange(int(120 * sfreq)) / sfreq
    x = synthetic_eeg(len(SIENA_LABELS), len(t), sfreq, seed=5)
    y = x.copy()
    y[:5, t >= change] += 80 * np.sin(2 * np.pi * 4 * t[t >= change])
    x[:, -1] = y[:, -1] = 1000.0  # the same peak in both files: the same EDF scaling, the same samples before 70 s
    add_recording(root, "01", data=x, seizures=[])
    add_recording(root, "02", data=y, seizures=[(change, 49.0, "sz")])
    configs = {"zero": "[preprocessing]\nzscore = false\nblock_duration = 30\n"}
    configs.update(causal=configs["zero"] + "causal = true\n", default=configs["zero"] + "causal = false\n",
                   one_block="[preprocessing]\nzscore = false\ncausal = true\nblock_duration = 600\n")
    for name, text in configs.items():
        (tmp_path / f"{name}.toml").write_text(text)

    def run(out, config, *extra):
        result = run_cli(root, out, "participant", "--skip-bids-validation", "--config", tmp_path / f"{config}.toml",
                         *extra)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def windows(out, subject):
        tfrecord = outputs_of(out, subject, STEM.replace("sub-01", f"sub-{subject}"))[0]
        return np.stack([np.frombuffer(w["eeg"], "<f4").reshape(512, 19) for w in read_windows(tfrecord)])

    def sidecar(out, subject="01"):
        return json.loads(outputs_of(out, subject, STEM.replace("sub-01", f"sub-{subject}"))[1].read_text())

    zero, causal, one_block = tmp_path / "zero", tmp_path / "causal", tmp_path / "one"
    run(zero, "zero")
    shutil.copytree(zero, causal)
    stdout = run(causal, "causal", "--nprocs", "1")  # blocks read in two threads, filtered in order
    assert "2 written, 0 up to date" in stdout
    run(one_block, "one_block")
    stdout = run(zero, "default")  # causal = false said explicitly: the zero-phase outputs are up to date
    assert "0 written, 2 up to date" in stdout

    before, after = sidecar(zero)["Preprocessing"], sidecar(causal)["Preprocessing"]
    assert before["causal"] is False and "zero-phase" in before["FilterType"]
    assert after["causal"] is True and after["FilterType"] == "Butterworth band-pass, causal (forward only)"
    assert sidecar(zero)["ConfigHash"] != sidecar(causal)["ConfigHash"]
    # the group level: no filter look-ahead (only the resampling filter's few taps), and the card says causal
    assert plan_from_sidecar(sidecar(causal)).lookahead_seconds() < 0.05
    assert plan_from_sidecar(sidecar(zero)).lookahead_seconds() > 17
    for out, expected in ((zero, False), (causal, True)):
        files = [WindowFile.from_sidecar(outputs_of(out, s, STEM.replace("sub-01", f"sub-{s}"))[1], s)
                 for s in ("01", "02")]
        geometry = check_geometry([(f.sidecar, meta) for f, meta in files])
        card = _preprocessing_card(Config(), [f for f, _ in files], geometry)
        assert card["preprocessing"]["causal"] is expected

    for subject in ("01", "02"):
        w_zero, w_causal = windows(zero, subject), windows(causal, subject)
        assert w_zero.shape == w_causal.shape == (59, 512, 19) and np.isfinite(w_causal).all()
        assert np.abs(w_causal - w_zero).max() > 1.0  # other filters, other windows (µV: not z-scored)
        np.testing.assert_array_equal(windows(one_block, subject), w_causal)
    # windows 0-32 end by 68 s, before the recordings part: causal ones are equal, zero-phase ones not all
    np.testing.assert_array_equal(windows(causal, "01")[:33], windows(causal, "02")[:33])
    assert np.abs(windows(causal, "01")[36] - windows(causal, "02")[36]).max() > 10
    assert np.abs(windows(zero, "01")[32] - windows(zero, "02")[32]).max() > 1e-3


@pytest.mark.parametrize("causal", [False, True])
def test_filters_are_the_documented_ones(tmp_path, causal):
    """README: Butterworth band-pass 0.5-30 Hz, order 4 per edge, and a notch (Q 30) at the sidecar's
    PowerLineFrequency (50 Hz; 100 Hz is above Nyquist), forward and backward (zero phase) or, with
    ``preprocessing.causal``, forward only. Sines at frequencies in the pass band, at its edges, in the
    transition and stop bands and at the mains frequency go in, one per electrode, as an EDF at the output rate
    (no resampling); the gain and phase of each, read back from the TFRecord, must be those of the filters
    designed here from the documented numbers, not from the app's."""
    from scipy import signal as sig

    from neurocare_bids.io.tfrecord import read_windows as read_all

    sfreq, duration, amplitude = 128.0, 600.0, 100.0
    freqs = np.array([0.1, 0.3, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 28.0, 30.0, 35.0, 40.0, 50.0, 55.0, 60.0])
    rng = np.random.default_rng(7)
    phases = rng.uniform(0, 2 * np.pi, len(freqs))
    t = np.arange(int(duration * sfreq)) / sfreq
    data = np.zeros((len(SIENA_LABELS), len(t)))
    data[:len(freqs)] = amplitude * np.sin(2 * np.pi * freqs[:, None] * t + phases[:, None])
    root = tmp_path / "bids"
    add_recording(root, "01", data=data, sfreq=sfreq, duration=duration, seizures=[], line_freq=50)
    config = tmp_path / "raw.toml"
    config.write_text(f"[preprocessing]\nzscore = false\ncausal = {str(causal).lower()}\n")  # µV out: amplitudes
    out = tmp_path / "out"
    result = run_cli(root, out, "participant", "--skip-bids-validation", "--config", config)
    assert result.returncode == 0, result.stderr

    tfrecord, sidecar = outputs_of(out)
    windows = read_all(sidecar)["eeg"]  # (299, 512, 19): windows of 4 s every 2 s
    y = np.concatenate(windows[::2]).astype(np.float64)  # every other window: the recording, end to end
    assert y.shape == (len(t), len(SIENA_LABELS))
    # the average reference: output channel i = x_i - mean(x), so x_i contributes (1 - 1/19) of itself.
    # Fit every frequency's sine and cosine at once in the steady state (away from the edges) of each channel.
    keep = (t >= 100) & (t < 500)
    basis = np.concatenate([np.sin(2 * np.pi * freqs[:, None] * t[keep]),
                            np.cos(2 * np.pi * freqs[:, None] * t[keep])]).T
    coef, *_ = np.linalg.lstsq(basis, y[keep, :len(freqs)], rcond=None)
    own = np.arange(len(freqs))
    response = (coef[own, own] + 1j * coef[own + len(freqs), own]) / (
        amplitude * (1 - 1 / len(SIENA_LABELS)) * np.exp(1j * phases))  # A sin(wt+p): A cos p sin, A sin p cos

    band = sig.butter(4, [0.5, 30.0], "bandpass", fs=sfreq, output="sos")
    notch = sig.tf2sos(*sig.iirnotch(50.0, 30.0, fs=sfreq))
    _, h = sig.sosfreqz(np.concatenate([band, notch]), worN=freqs, fs=sfreq)
    if causal:  # forward only: the filters' own gain and phase
        passed = np.abs(h) > 0.1
        np.testing.assert_allclose(np.abs(response), np.abs(h), rtol=0.01, atol=2e-3)
        np.testing.assert_allclose(np.abs(response[[2, 9]]), np.sqrt(0.5), rtol=0.01)  # -3 dB at each edge
        np.testing.assert_allclose(response[passed], h[passed], rtol=0.01, atol=2e-3)  # phase delay included
        assert np.abs(np.angle(response[freqs == 1.0])) > 0.1  # not zero phase
    else:
        expected = np.abs(h) ** 2  # forward and backward: the magnitude squared, no phase shift
        np.testing.assert_allclose(np.abs(response), expected, rtol=0.01, atol=2e-3)
        np.testing.assert_allclose(np.abs(response[[2, 9]]), 0.5, rtol=0.01)  # -3 dB per pass at each edge
        passed = expected > 0.1
        np.testing.assert_allclose(np.angle(response[passed]), 0.0, atol=0.01)  # zero phase
    assert np.abs(response[freqs == 50.0]) < 1e-3  # the mains frequency removed


def test_rerun_with_a_changed_configuration_recomputes_and_the_same_one_reuses(siena, tmp_path):
    """README: a rerun skips a recording whose sidecar records the same input checksums and configuration hash;
    the hash covers the input, montage, preprocessing, windows and output sections, not the execution options nor
    the group level's sections. A changed option must give what a fresh run with it gives, never stale outputs."""
    def config(name: str, text: str):
        path = tmp_path / f"{name}.toml"
        path.write_text(text)
        return path

    def run(out, cfg, *extra):
        result = run_cli(siena, out, "participant", "--skip-bids-validation", "--no-reports", "--config", cfg, *extra)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def outputs(out):
        return {k: v for k, v in tree_checksums(out).items() if k.startswith("sub-")}

    base = "[windows]\nseizure_overlap = 0.5\n"
    out = tmp_path / "out"
    assert "2 written, 0 up to date" in run(out, config("base", base))
    first = outputs(out)
    mtimes = {p: p.stat().st_mtime_ns for p in out.glob("sub-*/ses-01/eeg/*")}
    # the same output configuration: execution options and group-level sections changed, nothing recomputed
    same = config("same", base + "[training]\nepochs = 3\n[postprocessing]\nthreshold = 0.7\n[execution]\nseed = 7\n")
    assert "0 written, 2 up to date" in run(out, same, "--nprocs", "1")
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes and outputs(out) == first

    changes = {"labels": "[windows]\nseizure_overlap = 0.25\n",  # the same signal, other labels
               "filter": "[windows]\nseizure_overlap = 0.25\n[preprocessing]\nh_freq = 20.0\n"}  # other samples
    for name, text in changes.items():
        changed = config(name, text)
        assert "2 written, 0 up to date" in run(out, changed), name
        run(tmp_path / name, changed)  # a fresh run with that configuration
        assert outputs(out) == outputs(tmp_path / name) != first, name
    assert json.loads(outputs_of(out)[1].read_text())["Preprocessing"]["h_freq"] == 20.0
    assert "0 written, 2 up to date" in run(out, changed)  # the new outputs are up to date with their configuration
