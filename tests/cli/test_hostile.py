"""The hostile-input corpus (tests/cli/hostile.py) through every mode it concerns, the CLI run as a subprocess.

For each case: the documented exit code, a clear one-line message and no traceback, no output (and no
temporary file) for what failed, and everything else in the run processed with valid outputs.

Cost: cases are batched. In participant and apply (``participant --model``) modes, all the cases that
share an exit code are subjects of one dataset, processed by one run next to two good subjects, so that
run must end with exactly that code (0 for the cases processed with a warning, 65 for the failing ones).
Group mode fails on the first damaged file, a damaged model folder is refused before anything is done, and
stream mode (``stream FILE --model MODEL``) replays one file, so each of those cases is one run. Apply and
stream modes use the model that conftest.trained_model_folder trains once per session. The datasets lie under a
path with spaces and non-ASCII letters, and BIDS_DIR is read-only during each run, which must not change it.

A new mode joins with a runner in ``RUNNERS`` and a check in ``CHECKS`` (and in ``BATCHED`` if it goes on
after a failed recording); the cases that name it in ``modes`` then run through it.
"""

from __future__ import annotations

import csv
import gzip
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from conftest import EVENT_COLUMNS, QUICK_GROUP_CONFIG, read_only_input, read_windows, run_cli, trained_model_folder
from hostile import CASES, Case, recording

GOOD = ("good1", "good2")
UNICODE_SPACES = "dätä sets ü"  # every dataset and output folder lies under this folder


@dataclass
class Run:
    """One CLI run over a dataset holding one or more cases."""

    bids: Path
    out: Path
    proc: object
    made: dict[str, list[Path]] = field(default_factory=dict)  # case name -> the files it made or damaged

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.proc.stderr.splitlines() if line.startswith("neurocare-bids: error:")]


class Runs:
    """Runs made on demand and shared by every test of the module."""

    def __init__(self, root: Path, model: Callable[[], Path]):
        self.root = root / UNICODE_SPACES
        self.model = model  # the trained model folder (trained on first use)
        self.cache: dict[tuple, Run] = {}

    def get(self, mode: str, case: Case) -> Run:
        batched = mode in BATCHED and case.target == "dataset"
        key = (mode, case.code_in(mode)) if batched else (mode, case.name)
        if key not in self.cache:
            self.cache[key] = RUNNERS[mode](self, case)
        return self.cache[key]

    def _dataset(self, mode: str, code: int) -> tuple[Path, dict[str, list[Path]]]:
        """The good subjects and every dataset case of ``mode`` with this exit code there, in one dataset."""
        bids = self.root / f"bïds {mode} {code}"
        for subject in GOOD:
            recording(bids, subject)
        made = {c.name: c.build(bids, c.subject) for c in CASES
                if mode in c.modes and c.target == "dataset" and c.code_in(mode) == code}
        return bids, made

    def participant(self, case: Case) -> Run:
        """Every participant case with this exit code, in one dataset next to the good subjects."""
        code = case.code_in("participant")
        bids, made = self._dataset("participant", code)
        out = self.root / f"öut participant {code}"
        proc = run_cli(bids, out, "participant", "--skip-bids-validation", "--nprocs", "2",
                       "-w", self.root / f"wörk participant {code}")
        return Run(bids, out, proc, made)

    def participant_outputs(self) -> Run:
        """The participant-level outputs of the good subjects and the cases processed with a warning."""
        return self.get("participant", next(c for c in CASES if c.code_in("participant") == 0
                                            and "participant" in c.modes))

    def apply(self, case: Case) -> Run:
        """Every apply case with this exit code in one dataset, or the good dataset with a damaged model."""
        if case.target == "model":
            folder, damaged = self.damaged_model("apply", case)
            bids = self.good_dataset()
            out = self.root / f"öut apply {case.name}"
            proc = run_cli(bids, out, "participant", "--model", folder, "--skip-bids-validation")
            return Run(bids, out, proc, {case.name: damaged})
        code = case.code_in("apply")
        bids, made = self._dataset("apply", code)
        out = self.root / f"öut apply {code}"
        proc = run_cli(bids, out, "participant", "--model", self.model(), "--skip-bids-validation",
                       "--nprocs", "2", "-w", self.root / f"wörk apply {code}")
        return Run(bids, out, proc, made)

    def stream(self, case: Case) -> Run:
        """``stream FILE --model MODEL`` on the case's recording, or on a good one with a damaged model."""
        if case.target == "model":
            folder, damaged = self.damaged_model("stream", case)
            bids, made = self.good_dataset(), {case.name: damaged}
            [edf] = bids.glob(f"sub-{GOOD[0]}/**/*_eeg.edf")
        else:
            folder, bids = self.model(), self.root / f"bïds stream {case.name}"
            made = {case.name: case.build(bids, case.subject)}
            [edf] = made[case.name]
        with read_only_input(bids):
            proc = run_cli("stream", edf, "--model", folder)
        return Run(bids, bids, proc, made)

    def good_dataset(self) -> Path:
        bids = self.root / "bïds good"
        if not bids.exists():
            recording(bids, GOOD[0])
        return bids

    def damaged_model(self, mode: str, case: Case) -> tuple[Path, list[Path]]:
        folder = self.root / f"mödel {mode} {case.name}"
        shutil.copytree(self.model(), folder)
        return folder, case.build(folder, GOOD[0])

    def group(self, case: Case) -> Run:
        """The group level over a copy of the participant outputs, one of them damaged by the case."""
        source = self.participant_outputs()
        out = self.root / f"group {case.name}"
        shutil.copytree(source.out, out, symlinks=True)
        damaged = case.build(out, GOOD[0])
        config = self.root / "quick.toml"
        config.write_text(QUICK_GROUP_CONFIG)
        proc = run_cli(source.bids, out, "group", "--config", config, timeout=600)
        return Run(source.bids, out, proc, {case.name: damaged})


RUNNERS = {"participant": Runs.participant, "group": Runs.group, "apply": Runs.apply, "stream": Runs.stream}
BATCHED = {"participant", "apply"}  # modes that go on after a failure: their cases share runs (one per exit code)


@pytest.fixture(scope="module")
def runs(request, tmp_path_factory) -> Runs:
    def model() -> Path:  # trained (or found) only when a case needs it
        return trained_model_folder(request.getfixturevalue("prepared"), tmp_path_factory)
    return Runs(tmp_path_factory.mktemp("hostile"), model)


def _outputs(run: Run, edf: Path) -> tuple[Path, Path]:
    rel = edf.relative_to(run.bids)
    base = rel.name[: rel.name.rindex("_")] + "_desc-preproc_windows"
    folder = run.out / rel.parent
    return folder / f"{base}.tfrecord", folder / f"{base}.json"


def _summary(run: Run, level: str = "participant") -> dict[str, dict]:
    [summary] = run.out.glob(f"logs/{level}_*/summary.tsv")
    with open(summary, newline="", encoding="utf-8") as fh:
        return {row["recording"]: row for row in csv.DictReader(fh, delimiter="\t")}


def assert_valid_windows(tfrecord: Path, sidecar: Path) -> dict:
    """A complete output: the sidecar describes the TFRecord, whose every window reads back finite."""
    from neurocare_bids.io.fsutils import crc32c_file

    meta = json.loads(sidecar.read_text(encoding="utf-8"))
    assert tfrecord.stat().st_size == meta["TFRecord"]["Bytes"]
    assert crc32c_file(tfrecord) == meta["TFRecord"]["CRC32C"]
    windows = read_windows(tfrecord)
    assert len(windows) == meta["WindowCount"]
    shape = meta["TFRecord"]["Schema"]["eeg"]["shape"]
    for w in windows:
        eeg = np.frombuffer(w["eeg"], meta["TFRecord"]["Schema"]["eeg"]["dtype"]).reshape(shape)
        assert np.isfinite(eeg).all()
    assert sum(w["label"] for w in windows) == meta["SeizureWindowCount"]
    return meta


def assert_clean(out: Path) -> None:
    """No temporary file of an atomic write, no scratch file, anywhere in OUT (stream mode: in the dataset, whose own
    DataLad/git-annex ``.git`` is not one)."""
    leftovers = [p for p in out.rglob(".*") if p.name not in (".bidsignore", ".neurocare.lock", ".lock")
                 and p.relative_to(out).parts[0] != ".git"]
    assert not leftovers, leftovers


def _recording_error(run: Run, label: str, message: str) -> None:
    """Exactly one error line about the recording, holding the case's message."""
    lines = [line for line in run.error_lines if line.startswith(f"neurocare-bids: error: {label}: ")]
    assert len(lines) == 1, run.proc.stderr
    assert message in lines[0], lines[0]


def _only_failing_reported(run: Run, mode: str) -> None:
    """No error about anything else (a report, a good recording), and the scratch files are gone."""
    failing = {str(p.relative_to(run.bids)) for c in CASES if c.code_in(mode) and c.name in run.made
               for p in run.made[c.name]}
    for line in run.error_lines:
        assert any(line.startswith(f"neurocare-bids: error: {label}: ") for label in failing), line
    work = run.out.with_name(run.out.name.replace("öut", "wörk", 1))
    assert not list(work.iterdir())


def check_participant(run: Run, case: Case) -> None:
    made = run.made[case.name]
    summary = _summary(run)
    code, message = case.code_in("participant"), case.message_in("participant")
    for edf in made:
        label = str(edf.relative_to(run.bids))
        tfrecord, sidecar = _outputs(run, edf)
        if code:
            _recording_error(run, label, message)
            assert summary[label]["status"] == "failed"
            assert not tfrecord.exists() and not sidecar.exists()
        else:
            assert summary[label]["status"] == "written"
            meta = assert_valid_windows(tfrecord, sidecar)
            if message:
                assert any(message in w for w in meta["Warnings"]), meta["Warnings"]
            for key, value in case.expect:
                assert meta[key] == value, key
    _only_failing_reported(run, "participant")
    for subject in GOOD:  # the rest of the run is processed
        [edf] = run.bids.glob(f"sub-{subject}/**/*_eeg.edf")
        assert summary[str(edf.relative_to(run.bids))]["status"] == "written"
        meta = assert_valid_windows(*_outputs(run, edf))
        assert meta["WindowCount"] == 9 and meta["SeizureWindowCount"] == 4


def check_group(run: Run, case: Case) -> None:
    assert len(run.error_lines) == 1 and case.message in run.error_lines[0], run.proc.stderr
    assert not (run.out / "group").exists()  # it stopped before writing anything


def _apply_outputs(run: Run, edf: Path) -> dict[str, Path]:
    rel = edf.relative_to(run.bids)
    stem, folder = rel.name[: rel.name.rindex("_")], run.out / rel.parent
    return {"events": folder / f"{stem}_desc-neurocare_events.tsv",
            "events_json": folder / f"{stem}_desc-neurocare_events.json",
            "timeseries": folder / f"{stem}_desc-seizureprob_timeseries.tsv.gz",
            "timeseries_json": folder / f"{stem}_desc-seizureprob_timeseries.json",
            "szcore": run.out / "szcore" / rel.parent / f"{stem}_events.tsv"}


def assert_valid_predictions(paths: dict[str, Path]) -> tuple[dict, np.ndarray]:
    """Complete apply-mode outputs: a probability per window of the recording, events in SzCORE's columns
    within the recording, the same events in the SzCORE tree; returns the time series' sidecar and rows."""
    meta = json.loads(paths["timeseries_json"].read_text(encoding="utf-8"))
    duration, window, stride = meta["RecordingDuration"], meta["WindowDuration"], meta["WindowStride"]
    with gzip.open(paths["timeseries"], "rt", encoding="ascii") as fh:
        rows = np.array([[float(v) for v in line.split("\t")] for line in fh.read().splitlines()]).reshape(-1, 3)
    n_windows = 0 if duration < window else int(np.floor((duration - window) / stride + 1e-9)) + 1
    assert len(rows) == n_windows
    np.testing.assert_allclose(rows[:, 0], np.arange(n_windows) * stride, atol=1e-3)
    assert ((rows[:, 1:] >= 0) & (rows[:, 1:] <= 1)).all()
    with open(paths["events"], newline="", encoding="utf-8") as fh:
        events = list(csv.DictReader(fh, delimiter="\t"))
        assert fh.seek(0) == 0 and fh.readline().rstrip("\n").split("\t") == EVENT_COLUMNS and events
    for event in events:
        onset, length = float(event["onset"]), float(event["duration"])
        assert event["eventType"] in ("sz", "bckg") and 0 <= onset and onset + length <= duration + 0.01
        assert event["recordingDuration"] == f"{duration:.2f}"
    assert json.loads(paths["events_json"].read_text(encoding="utf-8"))["Model"]["ModelFile"] == "model.keras"
    # the SzCORE tree: the same events, with dateTime and recordingDuration from BIDS_DIR's events.tsv when
    # it has one (szcore.export_tree: the scorer's masks then agree), so compared where those agree
    with open(paths["szcore"], newline="", encoding="utf-8") as fh:
        exported = list(csv.DictReader(fh, delimiter="\t"))
        assert fh.seek(0) == 0 and fh.readline().rstrip("\n").split("\t") == EVENT_COLUMNS and exported
    if exported[0]["recordingDuration"] == events[0]["recordingDuration"]:
        assert [{**e, "dateTime": ""} for e in exported] == [{**e, "dateTime": ""} for e in events]
    return meta, rows


APPLY_KEYS = {"RecordingDuration", "WindowCount"}  # the expectations that concern apply mode (no labels there)


def check_apply(run: Run, case: Case) -> None:
    if case.target == "model":
        return check_refused_model(run, case, "apply")
    summary = _summary(run, "apply")
    code, message = case.code_in("apply"), case.message_in("apply")
    for edf in run.made[case.name]:
        label = str(edf.relative_to(run.bids))
        paths = _apply_outputs(run, edf)
        if code:
            _recording_error(run, label, message)
            assert summary[label]["status"] == "failed"
            assert not [p for p in paths.values() if p.exists()]
        else:
            assert summary[label]["status"] == "written"
            meta, rows = assert_valid_predictions(paths)
            if message:
                assert any(message in w for w in meta["Warnings"]), meta["Warnings"]
            seen = {"RecordingDuration": meta["RecordingDuration"], "WindowCount": len(rows)}
            for key, value in case.expect:
                if key in APPLY_KEYS:
                    assert seen[key] == value, key
    _only_failing_reported(run, "apply")
    for subject in GOOD:  # the rest of the run is processed
        [edf] = run.bids.glob(f"sub-{subject}/**/*_eeg.edf")
        assert summary[str(edf.relative_to(run.bids))]["status"] == "written"
        _, rows = assert_valid_predictions(_apply_outputs(run, edf))
        assert len(rows) == 9


def check_stream(run: Run, case: Case) -> None:
    if case.target == "model":
        return check_refused_model(run, case, "stream")
    code, message = case.code_in("stream"), case.message_in("stream")
    [edf] = run.made[case.name]
    if code:
        assert run.proc.stderr.splitlines() == run.error_lines and len(run.error_lines) == 1, run.proc.stderr
        assert run.error_lines[0].startswith(f"neurocare-bids: error: {edf.name}: ")
        assert message in run.error_lines[0]
    else:
        assert run.proc.stdout.splitlines()[-1].startswith("end of stream: ")
        assert not run.error_lines
        if message:
            assert any(line.startswith("WARNING: ") and message in line for line in run.proc.stderr.splitlines())


def check_refused_model(run: Run, case: Case, mode: str) -> None:
    """A damaged model folder: refused with one line before anything is read, printed or written."""
    assert run.proc.stderr.splitlines() == run.error_lines and len(run.error_lines) == 1, run.proc.stderr
    assert case.message_in(mode) in run.error_lines[0]
    assert run.proc.stdout == "" and (mode == "stream" or not run.out.exists())


CHECKS = {"participant": check_participant, "group": check_group, "apply": check_apply, "stream": check_stream}
PARAMS = [pytest.param(case, mode, id=f"{mode}-{case.name}") for case in CASES for mode in case.modes
          if mode in RUNNERS]


@pytest.mark.parametrize("case, mode", PARAMS)
def test_hostile_input(runs, case, mode):
    run = runs.get(mode, case)
    assert run.proc.returncode == case.code_in(mode), run.proc.stderr[-3000:]
    assert "Traceback" not in run.proc.stderr and "internal error" not in run.proc.stderr
    # stderr holds log lines (each failure is logged as it happens, then listed at the end) and one-line
    # errors only: nothing else leaks out (TensorFlow's start-up noise, written before logging is set up and
    # not ours, aside)
    assert all(line.startswith(("WARNING: ", "ERROR: ", "neurocare-bids: error: ")) or mode == "group"
               for line in run.proc.stderr.splitlines()), run.proc.stderr
    if run.out.exists():
        assert_clean(run.out)
    CHECKS[mode](run, case)


def test_distributed_is_refused_with_a_model(runs):
    """`--distributed` is for training only: with `--model` it is a usage error, before anything is done."""
    bids, out = runs.good_dataset(), runs.root / "öut distributed"
    proc = run_cli(bids, out, "participant", "--model", runs.root / "no model here", "--distributed",
                   "--skip-bids-validation")
    assert proc.returncode == 64 and proc.stdout == "" and not out.exists()
    assert proc.stderr.splitlines() == ["neurocare-bids: error: --distributed applies to the group level only, "
                                        "not with --model"]


def test_cases_are_distinct():
    """Each case its own name and subject label (a copied case would silently test nothing new)."""
    names = [case.name for case in CASES]
    assert len(set(names)) == len(names) and len({case.subject for case in CASES}) == len(names)
    assert len({(case.build, case.code, case.message) for case in CASES}) == len(CASES)
