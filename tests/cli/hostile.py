"""A corpus of broken and hostile inputs, generated on the fly (no checked-in binaries).

Each :class:`Case` writes one subject's recording(s) into a BIDS dataset (participant, apply and stream
modes), damages a participant-level output (group mode) or a trained model folder (``target="model"``:
apply and stream modes), and states what the app must do about it: the exit code a run with only this
problem ends with (0: processed, with ``message`` among the sidecar's warnings, or on a stderr warning
line in stream mode; otherwise: this recording fails with ``message`` on one stderr line, the rest of the
run goes on) and which modes it concerns. Where a mode's outcome differs (apply mode reads no events.tsv,
so a broken one is no problem there), ``other`` gives that mode's code and message.
``tests/cli/test_hostile.py`` runs every case through every mode it names.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from conftest import EVENTS_HEADER, SIENA_LABELS, add_recording, synthetic_eeg
from neurocare_bids.io.edf import write_edf

DURATION = 20.0  # seconds: 9 windows of 4 s with a 2 s stride
SFREQ = 128.0  # no resampling: the quickest path through the pipeline
RAW_MODES = ("participant", "apply")  # modes that read the BIDS recordings themselves
STREAMED = RAW_MODES + ("stream",)  # ... and the cases also replayed by `neurocare-bids stream FILE`


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[Path, str], list[Path]]  # (dataset or OUT, subject label) -> the recordings it made
    code: int  # exit code of a run whose only problem is this case
    message: str | None  # stderr fragment (code != 0) or sidecar warning fragment (code 0)
    modes: tuple[str, ...] = RAW_MODES
    expect: tuple[tuple[str, object], ...] = ()  # (sidecar key, value) of a processed case's outputs
    other: tuple[tuple[str, int, str | None], ...] = ()  # (mode, code, message) where a mode differs
    target: str = "dataset"  # what build() is given: "dataset" (BIDS_DIR), "outputs" (OUT) or "model" (folder)

    def code_in(self, mode: str) -> int:
        return next((code for m, code, _ in self.other if m == mode), self.code)

    def message_in(self, mode: str) -> str | None:
        return next((message for m, _, message in self.other if m == mode), self.message)

    @property
    def subject(self) -> str:
        return re.sub(r"[^a-zA-Z0-9]", "", self.name)

    def __str__(self) -> str:
        return self.name


def recording(root: Path, subject: str, **kwargs) -> Path:
    """A short, valid recording at 128 Hz with one seizure (the starting point of most cases)."""
    kwargs.setdefault("duration", DURATION)
    kwargs.setdefault("sfreq", SFREQ)
    kwargs.setdefault("seizures", [(6.0, 6.0, "sz")])
    kwargs.setdefault("seed", sum(map(ord, subject)))
    return add_recording(root, subject, **kwargs)


def _events_path(edf: Path) -> Path:
    return edf.with_name(edf.name.replace("_eeg.edf", "_events.tsv"))


def _sidecar_path(edf: Path) -> Path:
    return edf.with_name(edf.name.replace("_eeg.edf", "_eeg.json"))


def _patch_header(path: Path, offset: int, width: int, value: str) -> None:
    data = bytearray(path.read_bytes())
    data[offset:offset + width] = value.ljust(width).encode("ascii")
    path.write_bytes(bytes(data))


def _signal_field_offset(n_signals: int, field_offset: int, signal: int = 0) -> int:
    """Byte offset of one signal's field in an EDF header (field_offset in units of ns, as in the spec)."""
    return 256 + field_offset * n_signals + signal * 8


def _with_data(root: Path, subject: str, change: Callable[[np.ndarray], None]) -> list[Path]:
    n = int(DURATION * SFREQ)
    data = synthetic_eeg(len(SIENA_LABELS), n, SFREQ, seed=3, seizures=[(6.0, 6.0)])
    change(data)
    return [recording(root, subject, data=data)]


# ---------------------------------------------------------------------- EDF files
def edf_truncated(root, subject):
    path = recording(root, subject)
    path.write_bytes(path.read_bytes()[:-3000])
    return [path]


def edf_empty(root, subject):
    path = recording(root, subject)
    path.write_bytes(b"")
    return [path]


def edf_garbage_header(root, subject):
    path = recording(root, subject)
    rng = np.random.default_rng(7)
    data = bytearray(path.read_bytes())
    data[:512] = rng.integers(0, 256, 512, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))
    return [path]


def edf_text_file(root, subject):
    path = recording(root, subject)
    path.write_text("this is not an EDF file, it is a note someone saved with the wrong name\n" * 40)
    return [path]


def edf_header_only(root, subject):
    path = recording(root, subject)
    n_signals = len(SIENA_LABELS) + 1  # + EDF Annotations
    path.write_bytes(path.read_bytes()[:256 * (n_signals + 1)])
    _patch_header(path, 236, 8, "0")
    return [path]


def edf_header_claims_more_records(root, subject):
    path = recording(root, subject)
    _patch_header(path, 236, 8, str(int(DURATION) * 3))
    return [path]


def edf_header_claims_fewer_records(root, subject):
    path = recording(root, subject)
    _patch_header(path, 236, 8, str(int(DURATION) - 4))
    return [path]


def edf_header_unknown_record_count(root, subject):
    path = recording(root, subject)
    _patch_header(path, 236, 8, "-1")
    return [path]


def edf_header_lies_about_rate(root, subject):
    """Record duration 2 s instead of 1 s: the file's rate is half the real one (and the sidecar's)."""
    path = recording(root, subject)
    _patch_header(path, 244, 8, "2")
    return [path]


def edf_header_zero_record_duration(root, subject):
    path = recording(root, subject)
    _patch_header(path, 244, 8, "0")
    return [path]


def edf_header_garbage_number(root, subject):
    path = recording(root, subject)
    _patch_header(path, 244, 8, "one")
    return [path]


def edf_header_zero_samples_per_record(root, subject):
    path = recording(root, subject)
    _patch_header(path, _signal_field_offset(len(SIENA_LABELS) + 1, 216, 3), 8, "0")
    return [path]


def edf_header_empty_physical_range(root, subject):
    path = recording(root, subject)
    n = len(SIENA_LABELS) + 1
    pmin = path.read_bytes()[_signal_field_offset(n, 104, 2):][:8].decode()
    _patch_header(path, _signal_field_offset(n, 112, 2), 8, pmin.strip())  # physical max = physical min
    return [path]


def sidecar_rate_disagrees(root, subject):
    return [recording(root, subject, sidecar_extra={"SamplingFrequency": 512})]


def sidecar_not_json(root, subject):
    path = recording(root, subject)
    _sidecar_path(path).write_text('{"SamplingFrequency": 128, "PowerLineFrequency": 50,')
    return [path]


def sidecar_bad_line_frequency(root, subject):
    return [recording(root, subject, line_freq="mains")]


def shorter_than_one_window(root, subject):
    return [recording(root, subject, duration=3.0, seizures=[])]


def a_few_samples(root, subject):
    """Five samples in all: shorter than every filter's edge padding."""
    path = recording(root, subject, duration=DURATION, seizures=[])
    write_edf(path, synthetic_eeg(len(SIENA_LABELS), 5, 100.0, seed=1), 100.0, SIENA_LABELS,
              record_duration=0.05)
    return [path]


def missing_electrodes(root, subject):
    return [recording(root, subject, labels=[f"{e}-Avg" for e in ("Fp1", "F3", "C3", "P3")])]


def flat_channel(root, subject):
    def change(data):
        data[4] = 0.0
    return _with_data(root, subject, change)


def constant_channel(root, subject):
    def change(data):
        data[7] = 3000.0
    return _with_data(root, subject, change)


def clipped_channels(root, subject):
    """Half the electrodes saturated at the amplifier's limits (the file's physical range) for a third of it."""
    path = recording(root, subject)
    n = int(DURATION * SFREQ)
    data = synthetic_eeg(len(SIENA_LABELS), n, SFREQ, seed=3, seizures=[(6.0, 6.0)])
    data[:10, n // 3: 2 * n // 3] = np.sign(data[:10, n // 3: 2 * n // 3]) * 400.0
    write_edf(path, np.clip(data, -200, 200), SFREQ, SIENA_LABELS, physical_ranges=(-200.0, 200.0))
    return [path]


def all_zero(root, subject):
    def change(data):
        data[:] = 0.0
    return _with_data(root, subject, change)


# ---------------------------------------------------------------------- events.tsv
def _with_events(text: str | None):
    def build(root, subject):
        return [recording(root, subject, events=text)]
    return build


def _row(onset, duration, kind="sz"):
    return f"{onset}\t{duration}\t{kind}\tn/a\tn/a\t2000-01-01 00:00:00\t{DURATION:.2f}\n"


def events_binary(root, subject):
    path = recording(root, subject)
    _events_path(path).write_bytes(b"\xff\xfe\x00garbage\x00\x81\x82")
    return [path]


# ---------------------------------------------------------------------- dataset layout
def non_contiguous_runs(root, subject):
    return [recording(root, subject, run="01"), recording(root, subject, run="05", seed=9)]


def duplicate_runs(root, subject):
    """The same run twice, as EDF and as BDF: both would write the same output."""
    return [recording(root, subject, run="01"), recording(root, subject, run="01", ext=".bdf", seed=9)]


def annexed(root, subject):
    """DataLad / git-annex layout: every file a relative symbolic link into .git/annex/objects."""
    paths = [recording(root, subject)]
    _annex(root, paths[0].parent)
    return paths


def _annexed_not_fetched(suffix: str):
    """A DataLad dataset where one file's content was never fetched: its link points nowhere."""
    def build(root, subject):
        path = recording(root, subject)
        _annex(root, path.parent)
        os.unlink(path.with_name(path.name.replace("_eeg.edf", suffix)).resolve())
        return [path]
    return build


def _annex(root: Path, folder: Path) -> None:
    objects = root / ".git" / "annex" / "objects"
    for file in sorted(folder.iterdir()):
        if file.is_symlink():
            continue
        key = objects / file.name[:2] / file.name
        key.parent.mkdir(parents=True, exist_ok=True)
        file.replace(key)
        file.symlink_to(os.path.relpath(key, file.parent))


# apply mode reads no events.tsv (so a broken one changes nothing) and checks no raw channel's quality
EVENTS_UNUSED = (("apply", 0, None),)
CASES = [
    Case("edf_truncated", edf_truncated, 65, "truncated file", STREAMED),
    Case("edf_empty", edf_empty, 65, "not a valid EDF/BDF header"),
    Case("edf_garbage_header", edf_garbage_header, 65, "not a valid EDF/BDF header", STREAMED),
    Case("edf_text_file", edf_text_file, 65, "not a valid EDF/BDF header"),
    Case("edf_header_only", edf_header_only, 65, "holds no samples"),
    Case("edf_header_claims_more_records", edf_header_claims_more_records, 65, "truncated file"),
    Case("edf_header_claims_fewer_records", edf_header_claims_fewer_records, 0, "after the last data record ignored",
         STREAMED, expect=(("RecordingDuration", DURATION - 4),)),
    Case("edf_header_unknown_record_count", edf_header_unknown_record_count, 0, None),
    Case("edf_header_lies_about_rate", edf_header_lies_about_rate, 0, "disagrees with the file", STREAMED,
         expect=(("RecordingDuration", 2 * DURATION),)),
    Case("edf_header_zero_record_duration", edf_header_zero_record_duration, 65, "holds no samples"),
    Case("edf_header_garbage_number", edf_header_garbage_number, 65, "not a valid EDF/BDF header"),
    Case("edf_header_zero_samples_per_record", edf_header_zero_samples_per_record, 65, "inconsistent EDF/BDF header"),
    Case("edf_header_empty_physical_range", edf_header_empty_physical_range, 65, "invalid physical/digital range"),
    Case("sidecar_rate_disagrees", sidecar_rate_disagrees, 0, "sidecar SamplingFrequency 512 Hz disagrees", STREAMED),
    # stream FILE needs the sidecar for the mains frequency only: it warns and goes on
    Case("sidecar_not_json", sidecar_not_json, 65, "eeg.json", STREAMED,
         other=(("stream", 0, "eeg.json is unreadable: not valid JSON (Expecting property name enclosed in double "
                              "quotes: line 1 column 53 (char 52)); mains frequency from --line-freq"),)),
    Case("sidecar_bad_line_frequency", sidecar_bad_line_frequency, 0, "is not a frequency", STREAMED),
    Case("shorter_than_one_window", shorter_than_one_window, 0, "shorter than one window", STREAMED,
         expect=(("WindowCount", 0),)),
    Case("missing_electrodes", missing_electrodes, 65, "missing electrode(s)", STREAMED),
    Case("a_few_samples", a_few_samples, 0, "shorter than one window", expect=(("WindowCount", 0),)),
    Case("flat_channel", flat_channel, 0, "recorded channel O1-Avg is flat"),
    Case("constant_channel", constant_channel, 0, "recorded channel T5-Avg is flat (constant 3000 µV)"),
    Case("clipped_channels", clipped_channels, 0, "recorded channel Fp1-Avg is clipped"),
    Case("all_zero", all_zero, 0, "montage channel Fp1-Avg is flat"),
    Case("events_empty", _with_events(""), 65, "empty events file", other=EVENTS_UNUSED),
    Case("events_header_only", _with_events(EVENTS_HEADER), 0, None, expect=(("SeizureIntervals", []),),
         other=EVENTS_UNUSED),
    Case("events_wrong_columns", _with_events("start\tlength\ttype\n6\t6\tsz\n"), 65, "no 'onset' column",
         other=EVENTS_UNUSED),
    Case("events_ragged_row", _with_events(EVENTS_HEADER + "6\t6\tsz\n"), 65, "3 columns, header has 7",
         other=EVENTS_UNUSED),
    Case("events_not_a_number", _with_events(EVENTS_HEADER + _row("six", 6)), 65, "'six' is not a number",
         other=EVENTS_UNUSED),
    Case("events_negative_duration", _with_events(EVENTS_HEADER + _row(6, -6)), 65, "negative duration",
         other=EVENTS_UNUSED),
    Case("events_binary", events_binary, 65, "cannot read events file", other=EVENTS_UNUSED),
    Case("events_overlapping", _with_events(EVENTS_HEADER + _row(4, 6) + _row(8, 4) + _row(11, 2)), 0, None,
         expect=(("SeizureIntervals", [[4.0, 13.0]]), ("SeizureEventCount", 3)), other=EVENTS_UNUSED),
    Case("events_past_the_end", _with_events(EVENTS_HEADER + _row(6, 6) + _row(60, 10)), 0,
         "outside the recording", other=EVENTS_UNUSED),
    Case("events_across_the_end", _with_events(EVENTS_HEADER + _row(16, 10)), 0, "clipped",
         expect=(("SeizureIntervals", [[16.0, DURATION]]),), other=EVENTS_UNUSED),
    Case("events_unknown_type", _with_events(EVENTS_HEADER + _row(2, 1, "eyes_closed") + _row(6, 6)), 0,
         "unknown type 'eyes_closed'", other=EVENTS_UNUSED),
    Case("events_missing", _with_events(None), 0, "no events.tsv", expect=(("SeizureWindowCount", 0),),
         other=EVENTS_UNUSED),
    Case("non_contiguous_runs", non_contiguous_runs, 0, None),
    Case("duplicate_runs", duplicate_runs, 65, "same output"),
    Case("annexed", annexed, 0, None),
    Case("annexed_eeg_not_fetched", _annexed_not_fetched("_eeg.edf"), 65, "broken symbolic link", STREAMED,
         other=(("stream", 66, "broken symbolic link (file content not available"),)),
    Case("annexed_events_not_fetched", _annexed_not_fetched("_events.tsv"), 65, "run 'datalad get'",
         other=EVENTS_UNUSED),
    Case("annexed_sidecar_not_fetched", _annexed_not_fetched("_eeg.json"), 65, "unreadable: broken symbolic link",
         STREAMED, other=(("stream", 0, "unreadable: broken symbolic link (file content not available"),)),
]


# ---------------------------------------------------------------------- participant-level outputs (group mode)
def _windows_files(out: Path, subject: str) -> tuple[Path, Path]:
    sidecar = next(out.glob(f"sub-{subject}/**/*_desc-preproc_windows.json"))
    return sidecar.with_suffix(".tfrecord"), sidecar


def tfrecord_truncated(out, subject):
    tfrecord, _ = _windows_files(out, subject)
    tfrecord.write_bytes(tfrecord.read_bytes()[:-1000])
    return [tfrecord]


def tfrecord_corrupted(out, subject):
    """One byte flipped in the middle: same size, so only the checksum can tell."""
    tfrecord, _ = _windows_files(out, subject)
    data = bytearray(tfrecord.read_bytes())
    data[len(data) // 2] ^= 0x5A
    tfrecord.write_bytes(bytes(data))
    return [tfrecord]


def windows_sidecar_garbage(out, subject):
    _, sidecar = _windows_files(out, subject)
    sidecar.write_text('{"WindowCount": 9, "TFRecord": ')
    return [sidecar]


# ---------------------------------------------------------------------- model folder (apply and stream modes)
def model_file_missing(model_dir, subject):
    (model_dir / "model.keras").unlink()
    return [model_dir / "model.keras"]


def model_card_missing(model_dir, subject):
    (model_dir / "model_card.json").unlink()
    return [model_dir / "model_card.json"]


def onnx_file_missing(model_dir, subject):
    (model_dir / "model.onnx").unlink()
    return [model_dir / "model.onnx"]


def onnx_file_truncated(model_dir, subject):
    """What the default engine (ONNX Runtime) runs, cut short: its SHA-256 no longer matches the card's."""
    path = model_dir / "model.onnx"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return [path]


def model_card_garbage(model_dir, subject):
    (model_dir / "model_card.json").write_text("{ this is not JSON")
    return [model_dir / "model_card.json"]


def _card_with(**values):
    """A card edited as another NeuroCare-BIDS version would have written it."""
    def build(model_dir, subject):
        path = model_dir / "model_card.json"
        path.write_text(json.dumps({**json.loads(path.read_text(encoding="utf-8")), **values}), encoding="utf-8")
        return [path]
    return build


CASES += [
    Case("tfrecord_truncated", tfrecord_truncated, 65, "is missing or incomplete", ("group",), target="outputs"),
    Case("tfrecord_corrupted", tfrecord_corrupted, 65, "is corrupt (CRC-32C differs", ("group",), target="outputs"),
    Case("windows_sidecar_garbage", windows_sidecar_garbage, 65, "unreadable sidecar", ("group",), target="outputs"),
]
MODEL_MODES = ("apply", "stream")  # `participant --model MODEL` and `stream FILE --model MODEL`
CASES += [
    Case("model_file_missing", model_file_missing, 66, "model.keras is missing", MODEL_MODES, target="model"),
    Case("model_card_missing", model_card_missing, 66, "model_card.json is missing", MODEL_MODES, target="model"),
    Case("onnx_file_missing", onnx_file_missing, 66, "model.onnx is missing", MODEL_MODES, target="model"),
    Case("onnx_file_truncated", onnx_file_truncated, 65, "is not the ONNX model its card records", MODEL_MODES,
         target="model"),
    Case("model_card_garbage", model_card_garbage, 65, "model_card.json is unreadable", MODEL_MODES, target="model"),
    Case("model_card_other_format", _card_with(CardFormat=99), 65, "has card format 99", MODEL_MODES,
         target="model"),
    Case("model_card_newer_major", _card_with(Version="99.0.0"), 65, "newer major version", MODEL_MODES,
         target="model"),
]
