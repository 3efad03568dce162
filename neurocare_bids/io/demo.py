"""A deterministic, realistic synthetic scalp-EEG dataset in the SzCORE "BIDS Siena" layout.

The demo lets the pipeline, its tests and new users run end to end without access to patient
data. Files follow what ``epilepsy2bids`` writes for the Siena Scalp EEG Database (19 common
average channels at 256 Hz, ``task-szMonitoring``, SzCORE ``events.tsv``), and the signals carry
the structure a detector has to cope with: a 1/f background with a waxing and waning posterior
alpha rhythm, spatial correlation, eye blinks, muscle bursts, line noise, electrode pops, slow
drift, and evolving rhythmic seizures that start focally and sometimes spread. A harder variant
(``seizure_mimics=True``, ``demo-data --mimics``) adds non-epileptic slow-wave bursts and weaker
seizures. ``difficulty="hard"`` (``demo-data --difficulty hard``) is the benchmark the detector is
steered by: subtle focal seizures (1-3x the background, low-voltage fast or slowly building onsets),
patients whose background differs in amplitude, alpha and spectrum, vigilance states (drowsiness,
light sleep) and the seizure mimics of a monitoring unit, in eight patients' hour-long recordings.

Everything is drawn from ``numpy.random.default_rng`` seeded per dataset, subject and recording,
so the same arguments always give byte-identical files.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from .. import __version__
from ..config import SZCORE_ELECTRODES
from .edf import write_edf

__all__ = ["CHANNELS", "ELECTRODES", "EVENT_COLUMNS", "SEIZURE_TYPES", "make_demo_dataset"]

# The 19 electrodes in SzCORE order (the one list, from the configuration module).
ELECTRODES = tuple(SZCORE_ELECTRODES)
CHANNELS = tuple(f"{e}-Avg" for e in ELECTRODES)
TASK = "szMonitoring"
SESSION = "01"
GENERATOR = "neurocare_bids.demo"  # the name demo datasets record (GeneratedBy, README) since 0.1.0: unchanged
# HED-SCORE seizure types as epilepsy2bids names them; one per subject, as in Siena.
SEIZURE_TYPES = ("sz_foc_ia", "sz_foc_a", "sz_foc_f2b", "sz_gen", "sz")
EVENT_COLUMNS = ("onset", "duration", "eventType", "confidence", "channels", "dateTime",
                 "recordingDuration")  # fmt: skip

# Approximate azimuthal projection of the 10-20 positions (nose up, left negative, radius ~1).
_POS = {
    "Fp1": (-0.31, 0.95), "Fp2": (0.31, 0.95), "F7": (-0.81, 0.59), "F3": (-0.40, 0.52),
    "Fz": (0.0, 0.50), "F4": (0.40, 0.52), "F8": (0.81, 0.59), "T3": (-1.0, 0.0),
    "C3": (-0.50, 0.0), "Cz": (0.0, 0.0), "C4": (0.50, 0.0), "T4": (1.0, 0.0),
    "T5": (-0.81, -0.59), "P3": (-0.40, -0.52), "Pz": (0.0, -0.50), "P4": (0.40, -0.52),
    "T6": (0.81, -0.59), "O1": (-0.31, -0.95), "O2": (0.31, -0.95),
}  # fmt: skip
_XY = np.array([_POS[e] for e in ELECTRODES])
_DIST = np.linalg.norm(_XY[:, None, :] - _XY[None, :, :], axis=-1)
# Seizure onset zones a subject can have (Siena: temporal or frontal, left or right).
_ONSET_ZONES = (
    ("F7", "T3", "T5"), ("F8", "T4", "T6"), ("Fp1", "F3", "F7"), ("Fp2", "F4", "F8"),
    ("F3", "C3", "P3"), ("F4", "C4", "P4"),
)  # fmt: skip
_GENERALISED_LEAD = ("Fp1", "Fp2", "F3", "F4", "Fz")  # bifrontal predominance
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_TOP_LEVEL_FILES = (
    "dataset_description.json", "README", "participants.tsv", "participants.json", "events.json",
)  # fmt: skip
_EDGE_S = 60  # no seizure in the first/last minute
_MIN_GAP_S = 240  # seizures at least four minutes apart
_SZ_DURATION_S = (20, 120)
DIFFICULTIES = ("standard", "hard")
# Dataset size when the caller does not choose it: (subjects, recordings each, seconds each). The hard
# variant has 8 patients x 4 hours: over 24 h of background, so false alarms per 24 h mean something.
_SIZES = {"standard": (6, 2, 1200.0), "hard": (8, 4, 3600.0)}


@dataclass(frozen=True)
class _Subject:
    """Per-subject traits, fixed across that subject's recordings."""

    label: str
    age: int
    sex: str
    seizure_type: str
    focus: tuple[int, ...]  # electrode indices where seizures start
    background_uv: float  # RMS of the 1/f background
    slope: float  # spectral exponent of the background power (1/f^slope)
    alpha_hz: float
    alpha_uv: float
    start: datetime  # start of run-00
    hard: _HardTraits | None = None  # only in the hard variant


@dataclass(frozen=True)
class _HardTraits:
    """What makes one patient of the hard variant unlike the others (fixed across their recordings)."""

    onset: str  # seizure onset pattern: "fast" (low-voltage fast), "building", "rhythmic", "spike-wave"
    spreads: float  # probability that a seizure spreads beyond its focus
    strength: tuple[float, float]  # seizure peak amplitude / background RMS at the focus
    sleepiness: float  # share of time spent drowsy or asleep, roughly
    rates: dict  # mimics per hour: hyperventilation, movement, chewing, rmtd, saccades, pops
    ekg_uv: float  # amplitude of the EKG artefact (0: none)
    heart_hz: float


def make_demo_dataset(
    root: str | Path,
    *,
    n_subjects: int | None = None,
    recordings_per_subject: int | None = None,
    recording_duration: float | None = None,
    sfreq: float = 256.0,
    seed: int = 42,
    line_freq: float = 50.0,
    seizure_mimics: bool = False,
    difficulty: str = "standard",
) -> list[dict]:
    """Write the demo dataset under ``root`` and describe its recordings.

    Returns one dict per recording with ``path`` (the EDF), ``subject``, ``session``, ``run``
    (BIDS labels), ``duration`` (s), ``seizures`` (``(onset_s, duration_s, eventType)``) and
    ``focus`` (channel names where that subject's seizures start). ``root`` must be missing,
    empty or a previous demo (whose ``sub-*`` folders and top-level files are replaced);
    anything else raises ``FileExistsError`` so real data is never overwritten.
    ``seizure_mimics`` makes the task harder: non-epileptic slow-wave bursts in the background and
    seizures from barely above the background (the default data stay byte-identical without it).
    ``difficulty="hard"`` writes the hard benchmark (module docstring, ``README`` of the dataset): by
    default 8 subjects x 4 recordings of 1 h; the sizes left as ``None`` take each difficulty's default
    (standard: 6 x 2 x 1200 s).
    """
    if difficulty not in DIFFICULTIES:
        raise ValueError(f"difficulty must be one of {', '.join(DIFFICULTIES)}; got {difficulty!r}")
    if difficulty == "hard" and seizure_mimics:
        raise ValueError("the hard variant has its own mimics; seizure_mimics is for the standard one")
    defaults = _SIZES[difficulty]
    n_subjects = defaults[0] if n_subjects is None else n_subjects
    recordings_per_subject = defaults[1] if recordings_per_subject is None else recordings_per_subject
    recording_duration = defaults[2] if recording_duration is None else recording_duration
    hard = difficulty == "hard"
    root = Path(root)
    if not 1 <= n_subjects <= 99 or not 1 <= recordings_per_subject <= 100:
        raise ValueError("n_subjects must be 1..99 and recordings_per_subject 1..100")
    whole = all(float(x).is_integer() and x > 0 for x in (sfreq, recording_duration))
    if not whole:  # whole EDF data records, no padding
        raise ValueError("sfreq (Hz) and recording_duration (s) must be positive whole numbers")
    if not 0 < line_freq < sfreq / 2:
        raise ValueError(f"line_freq must lie below the Nyquist frequency ({sfreq / 2} Hz)")
    _prepare_root(root)

    master = np.random.default_rng([seed, 0])
    types = master.permutation(SEIZURE_TYPES)
    subjects = [
        _draw_subject(np.random.default_rng([seed, 1, i]), i, str(types[i % len(types)]))
        for i in range(n_subjects)
    ]
    if hard:  # separate random streams: the standard variant's draws are untouched
        subjects = [_draw_hard_subject(np.random.default_rng([seed, 11, i]), s) for i, s in enumerate(subjects)]
    _write_text(root / "dataset_description.json", _json(_dataset_description()))
    extra = _HARD_README if hard else _MIMICS_README if seizure_mimics else ""
    _write_text(root / "README", _README + extra)
    _write_text(root / "participants.json", _json(_PARTICIPANTS_JSON))
    _write_text(root / "events.json", _json(_EVENTS_JSON))
    rows = ["participant_id\tage\tsex"] + [f"sub-{s.label}\t{s.age}\t{s.sex}" for s in subjects]
    _write_text(root / "participants.tsv", "\n".join(rows) + "\n")

    recordings = []
    for i, subject in enumerate(subjects):
        eeg_dir = root / f"sub-{subject.label}" / f"ses-{SESSION}" / "eeg"
        eeg_dir.mkdir(parents=True, exist_ok=True)
        for run in range(recordings_per_subject):
            rng = np.random.default_rng([seed, 2 + 10 * hard, i, run])
            odds = [0.45, 0.35, 0.15, 0.05] if hard else [0.25, 0.40, 0.25, 0.10]
            n_seizures = int(rng.choice(4, p=odds))
            if run == 0:  # every subject has at least one seizure
                n_seizures = max(n_seizures, 1)
            placed = _place_seizures(rng, int(recording_duration), n_seizures)
            seizures = [(float(on), float(du), subject.seizure_type) for on, du in placed]
            start = subject.start + timedelta(seconds=run * (int(recording_duration) + 900))
            n_samples = int(recording_duration * sfreq)
            if hard:
                data = _synthesize_hard(rng, subject, n_samples, sfreq, line_freq, seizures)
            else:
                data = _synthesize(rng, subject, n_samples, sfreq, line_freq, seizures, seizure_mimics)

            stem = f"sub-{subject.label}_ses-{SESSION}_task-{TASK}_run-{run:02d}"
            edf_path = write_edf(
                eeg_dir / f"{stem}_eeg.edf",
                data,
                sfreq,
                CHANNELS,
                start=start,
                patient_id=f"sub-{subject.label} {subject.sex.upper()} X X",
                recording_id=(
                    f"Startdate {start.day:02d}-{_MONTHS[start.month - 1]}-{start.year} X X X"
                ),
            )
            _write_text(
                eeg_dir / f"{stem}_eeg.json",
                _json(_eeg_sidecar(sfreq, line_freq, recording_duration)),
            )
            _write_text(
                eeg_dir / f"{stem}_events.tsv",
                _events_tsv(seizures, start, recording_duration),
            )
            recordings.append(
                {
                    "path": edf_path,
                    "subject": subject.label,
                    "session": SESSION,
                    "run": f"{run:02d}",
                    "duration": float(recording_duration),
                    "seizures": seizures,
                    "focus": tuple(CHANNELS[c] for c in subject.focus),
                }
            )
    return recordings


# --- dataset files ---------------------------------------------------------------------------


def _prepare_root(root: Path) -> None:
    """Create ``root``, or clear a previous demo; refuse anything else."""
    if root.exists() and not root.is_dir():
        raise FileExistsError(f"{root} exists and is not a directory")
    if root.is_dir() and any(root.iterdir()):
        if not _is_demo(root):
            raise FileExistsError(
                f"{root} is not empty and is not a NeuroCare-BIDS demo dataset; "
                "refusing to write the demo there (choose a new or empty directory)"
            )
        for sub in root.glob("sub-*"):
            if sub.is_dir():
                shutil.rmtree(sub)
        for name in _TOP_LEVEL_FILES:
            (root / name).unlink(missing_ok=True)
    root.mkdir(parents=True, exist_ok=True)


def _is_demo(root: Path) -> bool:
    """A previous demo is recognised by its ``GeneratedBy`` entry (written first)."""
    try:
        description = json.loads((root / "dataset_description.json").read_text("utf-8"))
        return any(g.get("Name") == GENERATOR for g in description.get("GeneratedBy", []))
    except (OSError, ValueError, AttributeError):
        return False


def _write_text(path: Path, text: str) -> None:
    """UTF-8 with ``\\n`` line ends on every platform (byte-identical output)."""
    path.write_bytes(text.encode("utf-8"))


def _json(obj: dict) -> str:
    return json.dumps(obj, indent=4, ensure_ascii=False) + "\n"


def _dataset_description() -> dict:
    return {
        "Name": "NeuroCare-BIDS synthetic scalp EEG demo (SzCORE BIDS Siena layout)",
        "BIDSVersion": "1.9.0",
        "DatasetType": "raw",
        "License": "CC0",
        "Authors": ["NeuroCare-BIDS developers"],
        "HowToAcknowledge": "Synthetic data: no acknowledgement needed.",
        "GeneratedBy": [
            {
                "Name": GENERATOR,
                "Version": __version__,
                "Description": (
                    "Synthetic EEG generated by NeuroCare-BIDS; it contains no data from any "
                    "person. Layout and annotations follow the SzCORE BIDS Siena release."
                ),
            }
        ],
    }


_PARTICIPANTS_JSON = {
    "age": {"Description": "age of the participant at the time of recording", "Units": "years"},
    "sex": {
        "Description": "sex of the participant as reported by the participant",
        "Levels": {"m": "male", "f": "female"},
    },
}

# Column descriptions for every events.tsv (inherited from the top level, as epilepsy2bids
# does). The HED tags of the original are left out: validating them needs the HED-SCORE
# schema, which the validator would have to download.
_EVENTS_JSON = {
    "onset": {
        "Description": "Start of the event from the beginning of the recording.",
        "Units": "s",
    },
    "duration": {"Description": "Duration of the event.", "Units": "s"},
    "eventType": {
        "Description": "Type of the event (HED-SCORE seizure types as used by SzCORE).",
        "Levels": {
            "bckg": "Background: no seizure.",
            "sz": "Seizure that cannot be classified (ILAE 2017).",
            "sz_foc_a": "Focal aware seizure.",
            "sz_foc_ia": "Focal impaired-awareness seizure.",
            "sz_foc_f2b": "Focal onset seizure evolving to bilateral tonic-clonic.",
            "sz_gen": "Generalized onset seizure.",
        },
    },
    "confidence": {"Description": "Confidence in the event label, from 0 to 1 (n/a: unknown)."},
    "channels": {"Description": "Comma-separated channels showing the event (n/a: unknown)."},
    "dateTime": {"Description": "Start date and time of the recording (YYYY-MM-DD HH:MM:SS)."},
    "recordingDuration": {"Description": "Duration of the recording.", "Units": "s"},
}

_README = """\
# README

This is a **synthetic** scalp EEG dataset generated by NeuroCare-BIDS (`neurocare_bids.demo`).
It contains no data from any person. It mimics the SzCORE "BIDS Siena" release made with
`epilepsy2bids`, so that seizure-detection pipelines can be run and tested end to end.

## Overview

- Each subject folder holds continuous recordings of one session (`ses-01`,
  `task-szMonitoring`, runs numbered from `run-00`).
- The EEG is sampled at 256 Hz with the 19 electrodes of the 10-20 system in a common average
  montage (channels `Fp1-Avg` ... `T6-Avg`), in microvolts.
- Seizure annotations are SzCORE `events.tsv` files (HED-SCORE `eventType` labels; a recording
  without seizures has a single `bckg` event covering it).

## Signal model

A 1/f background with spatial correlation between neighbouring electrodes, a posterior alpha
rhythm that waxes and wanes, eye blinks on frontal channels, muscle bursts on temporal
channels, power-line noise, electrode pops and slow drift. Seizures are rhythmic discharges
whose frequency slows (about 8 Hz down to 3 Hz, or 3-4 Hz spike-and-wave) and whose amplitude
grows then fades; they start on a subject-specific set of electrodes and some spread.
"""


_MIMICS_README = """
This copy was made with `--mimics`: the background also has non-epileptic bursts of
high-amplitude delta/theta (drowsiness, arousals) with as much slow-wave power as a seizure but
no phase-locked rhythm, and seizures range from barely above the background to a few times it.
"""


_HARD_README = """
This copy was made with `--difficulty hard`, the benchmark a detector should be judged on:

- Seizures are subtle: their peak amplitude is 1-3 times the background, they stay on a few
  electrodes about as often as they spread, and each patient has a stereotyped onset: low-voltage
  fast activity (15-25 Hz) evolving into a slower rhythm, a rhythm that builds slowly over tens of
  seconds, an evolving rhythmic discharge, or spike-and-wave.
- Patients differ: background amplitude (about three-fold), alpha frequency and amplitude, spectral
  slope, how much they sleep, how often they move and chew, and their EKG artefact.
- Vigilance changes through each recording (awake, drowsy, light sleep), with drowsy theta, rhythmic
  mid-temporal theta of drowsiness, vertex waves, sleep spindles and K-complexes.
- The mimics of a monitoring unit: hyperventilation slowing, rhythmic movement and chewing artefact,
  muscle bursts, lateral and slow roving eye movements, eye blinks, electrode pops, EKG artefact.
"""


def _eeg_sidecar(sfreq: float, line_freq: float, duration: float) -> dict:
    return {
        "TaskName": TASK,
        "TaskDescription": "Synthetic long-term EEG monitoring for seizure detection.",
        "EEGReference": "Common Average",
        "SamplingFrequency": _number(sfreq),
        "PowerLineFrequency": _number(line_freq),
        "SoftwareFilters": "n/a",
        "HardwareFilters": "n/a",
        "EEGChannelCount": len(CHANNELS),
        "EOGChannelCount": 0,
        "ECGChannelCount": 0,
        "EMGChannelCount": 0,
        "MISCChannelCount": 0,
        "TriggerChannelCount": 0,
        "EEGPlacementScheme": "10-20",
        "RecordingType": "continuous",
        "RecordingDuration": float(duration),
    }


def _number(x: float) -> int | float:
    """Whole numbers as JSON integers (``256``, not ``256.0``)."""
    return int(x) if float(x).is_integer() else float(x)


def _events_tsv(seizures: list[tuple[float, float, str]], start: datetime, duration: float) -> str:
    """SzCORE annotations as ``epilepsy2bids`` writes them.

    ``dateTime`` is the recording start on every row and numbers have two decimals, as in
    ``epilepsy2bids.annotations.Annotations.saveTsv``.
    """
    events = seizures or [(0.0, float(duration), "bckg")]
    stamp = start.strftime("%Y-%m-%d %H:%M:%S")
    lines = ["\t".join(EVENT_COLUMNS)]
    lines += [
        f"{onset:.2f}\t{length:.2f}\t{kind}\tn/a\tn/a\t{stamp}\t{duration:.2f}"
        for onset, length, kind in events
    ]
    return "\n".join(lines) + "\n"


# --- subjects and seizure timing ------------------------------------------------------------


def _draw_subject(rng: np.random.Generator, index: int, seizure_type: str) -> _Subject:
    if seizure_type == "sz_gen":
        focus = tuple(ELECTRODES.index(e) for e in _GENERALISED_LEAD)
    else:
        zone = _ONSET_ZONES[int(rng.integers(len(_ONSET_ZONES)))]
        focus = tuple(ELECTRODES.index(e) for e in zone)
    day = datetime(2023, 1, 9, 8, 0, 0) + timedelta(days=11 * index)
    return _Subject(
        label=f"{index + 1:02d}",
        age=int(rng.integers(18, 76)),
        sex=str(rng.choice(["m", "f"])),
        seizure_type=seizure_type,
        focus=focus,
        background_uv=float(rng.uniform(9.0, 14.0)),
        slope=float(rng.uniform(1.6, 2.2)),
        alpha_hz=float(rng.uniform(8.5, 11.0)),
        alpha_uv=float(rng.uniform(10.0, 22.0)),
        start=day + timedelta(seconds=int(rng.integers(0, 10 * 3600))),
    )


def _place_seizures(rng: np.random.Generator, duration: int, n: int) -> list[tuple[int, int]]:
    """Whole-second ``(onset, duration)`` pairs away from the edges and from each other."""
    lengths = rng.integers(_SZ_DURATION_S[0], _SZ_DURATION_S[1] + 1, size=n)
    room = duration - 2 * _EDGE_S
    while n and lengths[:n].sum() + _MIN_GAP_S * (n - 1) > room:
        n -= 1  # the recording is too short for that many
    if n == 0:
        return []
    lengths = lengths[:n]
    slack = room - int(lengths.sum()) - _MIN_GAP_S * (n - 1)
    cuts = np.sort(rng.integers(0, slack + 1, size=n))  # slack before each seizure
    onsets = _EDGE_S + cuts + np.concatenate([[0], np.cumsum(lengths[:-1] + _MIN_GAP_S)])
    return [(int(o), int(d)) for o, d in zip(onsets, lengths)]


# --- signal synthesis -----------------------------------------------------------------------


def _synthesize(
    rng: np.random.Generator,
    subject: _Subject,
    n: int,
    fs: float,
    line_freq: float,
    seizures: list[tuple[float, float, str]],
    mimics: bool = False,
) -> np.ndarray:
    """Common-average EEG (µV), ``(19, n)``: referential sources, then minus the channel mean."""
    t = np.arange(n) / fs
    freqs = np.fft.rfftfreq(n, 1 / fs)

    background = _pink_background(rng, subject, n, freqs)
    # Posterior alpha: narrow-band, so it waxes and wanes by itself; slow state changes
    # (eyes open/closed, drowsiness) modulate it further.
    scale, alpha = _posterior_alpha(rng, subject, n, freqs)
    state = 1 / (1 + np.exp(-2.5 * _slow(rng, 1, n, fs, 1 / 40)[0]))
    background += scale * state * alpha
    brain_rms = float(np.sqrt(np.mean(background[list(subject.focus)] ** 2)))

    eeg = background
    if mimics:
        _add_slow_bursts(rng, eeg, seizures, fs, brain_rms)
    _add_postictal_suppression(eeg, seizures, fs)
    strength = (1.5, 4.5) if mimics else (2.0, 6.0)  # seizure amplitude / background RMS
    for onset, duration, kind in seizures:
        _add_seizure(rng, eeg, subject, kind, int(onset * fs), int(duration * fs), fs, brain_rms, strength)
    _add_artifacts(rng, eeg, t, freqs, fs, line_freq)
    eeg -= eeg.mean(axis=0, keepdims=True)  # common average reference
    return eeg


def _pink_background(rng: np.random.Generator, subject: _Subject, n: int, freqs: np.ndarray) -> np.ndarray:
    """The subject's 1/f background (µV), spatially smoothed so neighbouring electrodes correlate."""
    pink = 1.0 / (freqs**2 + 0.5**2) ** (subject.slope / 4) / np.sqrt(1 + (freqs / 45.0) ** 8)
    background = _spatial_mixing() @ _colored(rng, len(ELECTRODES), n, pink)
    background *= subject.background_uv / background.std(axis=1, keepdims=True)
    return background


def _posterior_alpha(rng: np.random.Generator, subject: _Subject, n: int,
                     freqs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The subject's alpha rhythm as ``(scale, rhythm)``: the per-electrode amplitude (µV, largest at the back)
    and each electrode's unit rhythm (the hemispheres partly coherent). The caller multiplies them with its own
    gating in between: ``scale * gate * rhythm``."""
    alpha = _colored(rng, 2, n, np.exp(-0.5 * ((freqs - subject.alpha_hz) / 0.6) ** 2))
    alpha = 0.8 * alpha + 0.2 * alpha[::-1]
    posterior = np.clip(1.1 - (_XY[:, 1] + 1) / 1.6, 0.05, 1.0)
    left = _XY[:, 0] < 0.05
    return subject.alpha_uv * posterior[:, None], np.where(left[:, None], alpha[0], alpha[1])


def _add_pops(rng: np.random.Generator, eeg: np.ndarray, fs: float, count: int, peak_uv: tuple[float, float]) -> None:
    """Electrode pops: a step that decays exponentially, each on one channel."""
    n_ch, n = eeg.shape
    for _ in range(count):
        c, at = int(rng.integers(n_ch)), int(rng.integers(0, n))
        tau = rng.uniform(0.1, 0.6) * fs
        span = min(int(6 * tau), n - at)
        eeg[c, at : at + span] += rng.choice([-1, 1]) * rng.uniform(*peak_uv) * np.exp(-np.arange(span) / tau)


def _colored(rng: np.random.Generator, rows: int, n: int, amplitude: np.ndarray) -> np.ndarray:
    """Unit-RMS Gaussian noise with the given amplitude spectrum, drawn in the frequency domain.

    Only bins that matter are drawn (narrow-band and slow signals need few), and the RMS comes
    from Parseval's theorem instead of a pass over the samples.
    """
    band = np.flatnonzero(amplitude > 1e-3 * amplitude.max())
    band = band[band > 0]  # no DC
    real, imag = rng.standard_normal((2, rows, band.size)) * amplitude[band]
    weight = np.full(band.size, 2.0)  # each bin stands for itself and its mirror image
    if n % 2 == 0 and band.size and band[-1] == n // 2:  # the Nyquist bin is real, counted once
        imag[:, -1] = 0
        weight[-1] = 1.0
    power = (real**2 + imag**2) @ weight
    spectrum = np.zeros((rows, amplitude.size), dtype=np.complex128)
    spectrum[:, band] = real + 1j * imag
    x = np.fft.irfft(spectrum, n=n, axis=1)
    x *= (n / np.sqrt(power))[:, None]
    return x


def _slow(rng: np.random.Generator, rows: int, n: int, fs: float, cutoff: float) -> np.ndarray:
    """Unit-RMS noise with a first-order spectrum rolling off above ``cutoff`` (< 0.1 Hz).

    Drawn at 8 Hz and linearly interpolated: the full-rate FFT would cost far more for
    content that all lies below 2 Hz.
    """
    step = max(1, int(fs // 8))
    coarse = n // step + 2
    freqs = np.fft.rfftfreq(coarse, step / fs)
    x = _colored(rng, rows, coarse, 1 / (1 + (freqs / cutoff) ** 2))
    at = np.arange(coarse) * step
    return np.stack([np.interp(np.arange(n), at, row) for row in x])


def _spatial_mixing(length: float = 0.45) -> np.ndarray:
    """Square root of a Gaussian spatial covariance, so mixed sources correlate with distance."""
    cov = np.exp(-((_DIST / length) ** 2))
    w, v = np.linalg.eigh(cov)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def _add_postictal_suppression(
    eeg: np.ndarray, seizures: list[tuple[float, float, str]], fs: float
) -> None:
    """After a bilateral tonic-clonic seizure the background is flattened for a while."""
    for onset, duration, kind in seizures:
        if kind not in ("sz_foc_f2b", "sz_gen"):
            continue
        end = int((onset + duration) * fs)
        span = min(int(45 * fs), eeg.shape[1] - end)
        gain = 0.3 + 0.7 * _smoothstep(np.arange(span) / span)
        eeg[:, end : end + span] *= gain


def _add_slow_bursts(
    rng: np.random.Generator,
    eeg: np.ndarray,
    seizures: list[tuple[float, float, str]],
    fs: float,
    brain_rms: float,
) -> None:
    """Non-epileptic bursts of high-amplitude delta/theta (drowsiness, arousals, hyperventilation).

    They are the classic seizure mimic: as much 1-7 Hz power and line length as a seizure, often
    regional, but broad-band and without the phase-locked rhythm that evolves across channels. A
    detector that only measures band power per channel mistakes them for seizures.
    """
    n_ch, n = eeg.shape
    duration = n / fs
    ictal = [(int(on * fs), int((on + du) * fs)) for on, du, _ in seizures]
    for _ in range(rng.poisson(duration / 120)):
        length = int(rng.uniform(4.0, 40.0) * fs)
        if length >= n:
            continue
        at = int(rng.integers(0, n - length))
        if any(at < b + int(30 * fs) and a - int(30 * fs) < at + length for a, b in ictal):
            continue  # keep mimics off the seizures and their margins: labels stay exact
        freqs = np.fft.rfftfreq(length, 1 / fs)
        centre = rng.uniform(1.5, 5.0)
        band = np.exp(-0.5 * ((freqs - centre) / rng.uniform(1.2, 2.5)) ** 2) * (freqs > 0.7)
        burst = _spatial_mixing(0.6) @ _colored(rng, n_ch, length, band)
        burst /= burst.std(axis=1, keepdims=True) + 1e-12
        if rng.random() < 0.5:  # regional (often temporal or frontal), else diffuse
            centre_xy = _XY[int(rng.integers(n_ch))]
            weight = np.exp(-((np.linalg.norm(_XY - centre_xy, axis=1) / 0.6) ** 2))
        else:
            weight = 0.5 + 0.5 * rng.random(n_ch)
        u = np.arange(length) / length
        envelope = _smoothstep(u / 0.15) * _smoothstep((1 - u) / 0.15)
        amplitude = rng.uniform(1.5, 4.0) * brain_rms
        eeg[:, at : at + length] += amplitude * weight[:, None] * envelope * burst


def _waveform(kind: str, phase: np.ndarray, harmonic: float) -> np.ndarray:
    """Zero-mean, unit-RMS periodic discharge shape evaluated at ``phase``."""

    def shape(p: np.ndarray) -> np.ndarray:
        if kind == "spike-wave":
            centred = np.mod(p, 2 * np.pi) - np.pi
            return np.exp(-((centred / 0.22) ** 2)) - 0.6 * np.exp(-(((centred - 1.4) / 0.9) ** 2))
        return np.sin(p) + harmonic * np.sin(2 * p + 0.6)

    cycle = shape(np.linspace(0, 2 * np.pi, 2048, endpoint=False))
    return (shape(phase) - cycle.mean()) / cycle.std()


def _add_seizure(
    rng: np.random.Generator,
    eeg: np.ndarray,
    subject: _Subject,
    kind: str,
    start: int,
    n: int,
    fs: float,
    brain_rms: float,
    strength: tuple[float, float] = (2.0, 6.0),
) -> None:
    """Add one evolving rhythmic discharge, focal at onset, possibly spreading."""
    u = np.arange(n) / n  # fraction of the seizure elapsed
    spike_wave = rng.random() < (0.7 if kind == "sz_gen" else 0.25)
    if spike_wave:
        f_start, f_end = rng.uniform(3.5, 4.5), rng.uniform(2.5, 3.2)
    else:
        f_start, f_end = rng.uniform(6.5, 9.5), rng.uniform(2.5, 3.5)
    knots = np.linspace(0, 1, max(2, n // int(2 * fs)))
    jitter = np.interp(u, knots, rng.normal(0, 0.2, knots.size))
    freq = f_end + (f_start - f_end) * (1 - u) ** 1.5 + jitter
    phase = 2 * np.pi * np.cumsum(freq) / fs

    peak_at = rng.uniform(0.4, 0.7)
    envelope = _smoothstep(u / 0.04) * _smoothstep((1 - u) / 0.04)
    envelope *= 0.3 + 0.7 * np.sin(np.pi * u ** (np.log(0.5) / np.log(peak_at)))
    amplitude = rng.uniform(*strength) * brain_rms

    near = _DIST[:, list(subject.focus)].min(axis=1)  # distance to the onset zone
    base, spread = _involvement(rng, kind, subject.focus, near)
    base = base * rng.uniform(0.85, 1.15, near.size)
    lag = 1.2 * near + rng.uniform(0, 0.3, near.size)
    spread_at = rng.uniform(0.25, 0.5)
    ramp = _smoothstep((u - spread_at) / 0.1)
    harmonic = rng.uniform(0.2, 0.5)
    morphology = "spike-wave" if spike_wave else "rhythmic"
    for c in np.flatnonzero(base + spread > 0.02):
        weight = base[c] + spread[c] * ramp
        wave = _waveform(morphology, phase - lag[c], harmonic)
        eeg[c, start : start + n] += amplitude * envelope * weight * wave
    if kind in ("sz_foc_f2b", "sz_gen") and not spike_wave:  # tonic-clonic muscle artefact
        emg = rng.standard_normal((eeg.shape[0], n))
        emg -= np.roll(emg, 1, axis=1)  # first difference: mostly high frequencies
        eeg[:, start : start + n] += 0.8 * brain_rms * (ramp * envelope) * emg


def _involvement(
    rng: np.random.Generator, kind: str, focus: tuple[int, ...], near: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel weight at onset, and the weight added once the seizure spreads.

    Generalised seizures involve every channel from the start (frontal predominance); focal
    aware ones stay regional; focal-to-bilateral ones always spread to both hemispheres; the
    others spread to the ipsilateral hemisphere half of the time.
    """
    if kind == "sz_gen":
        return 0.25 + 0.75 * np.exp(-((near / 0.6) ** 2)), np.zeros_like(near)
    base = np.exp(-((near / 0.35) ** 2))
    if kind == "sz_foc_f2b":
        reach = rng.uniform(0.6, 1.0, near.size)
    elif kind != "sz_foc_a" and rng.random() < 0.5:
        ipsilateral = _XY[:, 0] * np.sign(_XY[list(focus), 0].mean()) > -0.05
        reach = np.where(ipsilateral, rng.uniform(0.5, 0.9, near.size), 0.0)
    else:
        reach = np.zeros_like(near)
    return base, reach * (1 - base)


def _add_artifacts(
    rng: np.random.Generator,
    eeg: np.ndarray,
    t: np.ndarray,
    freqs: np.ndarray,
    fs: float,
    line_freq: float,
) -> None:
    """Non-cerebral signals every long-term recording has."""
    n_ch, n = eeg.shape
    duration = n / fs
    idx = {e: i for i, e in enumerate(ELECTRODES)}

    # Eye blinks: a ~0.4 s positive deflection, largest at Fp1/Fp2.
    n_blinks = rng.poisson(duration * 8 / 60)
    impulses = np.zeros(n)
    np.add.at(impulses, rng.integers(0, n, n_blinks), rng.uniform(60, 160, n_blinks))
    kt = np.arange(int(0.8 * fs)) / fs
    kernel = (kt / 0.07) ** 2 * np.exp(-kt / 0.07) / (4 * np.exp(-2))  # peak 1 at 0.14 s
    blinks = np.convolve(impulses, kernel)[:n]
    frontal = {"Fp1": 1.0, "Fp2": 1.0, "F7": 0.45, "F8": 0.45, "F3": 0.35, "F4": 0.35, "Fz": 0.4}
    for name, gain in frontal.items():
        eeg[idx[name]] += gain * blinks

    # Muscle bursts on temporal channels (chewing, jaw clenching).
    emg_shape = (freqs / 30) ** 2 / (1 + (freqs / 30) ** 2) / np.sqrt(1 + (freqs / 100) ** 4)
    temporal = [idx[e] for e in ("F7", "T3", "T5", "F8", "T4", "T6")]
    emg = _colored(rng, len(temporal), n, emg_shape)
    gate = np.zeros((2, n))  # left / right
    for _ in range(rng.poisson(duration / 45)):
        length = int(rng.uniform(0.5, 4.0) * fs)
        at = int(rng.integers(0, n - length))
        window = np.hanning(length) ** 0.5 * rng.uniform(8, 30)
        for side in {0: [0], 1: [1], 2: [0, 1]}[int(rng.integers(3))]:
            gate[side, at : at + length] += window
    eeg[temporal] += emg * np.repeat(gate, 3, axis=0)

    # Power-line interference, different per electrode so the average reference keeps it.
    line_amp = rng.uniform(0.3, 2.5, (n_ch, 1))
    line_phase = rng.uniform(0, 2 * np.pi, (n_ch, 1))
    omega_t = 2 * np.pi * line_freq * t
    eeg += line_amp * np.cos(line_phase) * np.sin(omega_t)  # sin(wt + phase), expanded
    eeg += line_amp * np.sin(line_phase) * np.cos(omega_t)

    # Slow electrode drift (sweat, impedance changes).
    eeg += rng.uniform(4, 15, (n_ch, 1)) * _slow(rng, n_ch, n, fs, 0.05)

    _add_pops(rng, eeg, fs, rng.poisson(duration / 400) + 1, (40, 150))


# --- the hard variant -----------------------------------------------------------------------

_ONSET_PATTERNS = ("fast", "building", "rhythmic")
_VERTEX = ("Fz", "Cz", "C3", "C4", "Pz")  # where vertex waves, K-complexes and spindles are largest


def _draw_hard_subject(rng: np.random.Generator, subject: _Subject) -> _Subject:
    """A patient of the hard variant: the standard subject's identity, a more varied background, a
    small onset zone (one to three electrodes), a stereotyped onset pattern and a personal mix of mimics."""
    if subject.seizure_type == "sz_gen":
        focus, onset = subject.focus, "spike-wave" if rng.random() < 0.6 else "rhythmic"
    else:
        zone = _ONSET_ZONES[int(rng.integers(len(_ONSET_ZONES)))]
        keep = int(rng.integers(1, len(zone) + 1))
        focus = tuple(ELECTRODES.index(e) for e in rng.permutation(zone)[:keep])
        onset = _ONSET_PATTERNS[int(rng.integers(len(_ONSET_PATTERNS)))]
    background = float(np.exp(rng.uniform(np.log(7.0), np.log(21.0))))  # three-fold range
    traits = _HardTraits(
        onset=onset,
        spreads=float(rng.uniform(0.2, 0.8)),
        strength=(1.0, 3.0),
        sleepiness=float(rng.uniform(0.1, 0.6)),
        rates={
            "hyperventilation": float(rng.uniform(0.0, 0.6)),
            "movement": float(rng.uniform(0.5, 8.0)),
            "chewing": float(rng.uniform(0.5, 10.0)),
            "rmtd": float(rng.uniform(2.0, 20.0)),  # per hour of drowsiness
            "saccades": float(rng.uniform(200.0, 900.0)),  # per hour awake
            "pops": float(rng.uniform(2.0, 20.0)),
        },
        ekg_uv=float(rng.choice([0.0, rng.uniform(2.0, 12.0)], p=[0.3, 0.7])),
        heart_hz=float(rng.uniform(0.9, 1.6)),
    )
    return _Subject(
        label=subject.label, age=subject.age, sex=subject.sex, seizure_type=subject.seizure_type,
        focus=focus, background_uv=background, slope=float(rng.uniform(1.2, 2.6)),
        alpha_hz=float(rng.uniform(7.5, 11.5)), alpha_uv=float(background * rng.uniform(0.3, 2.0)),
        start=subject.start, hard=traits,
    )


def _synthesize_hard(
    rng: np.random.Generator,
    subject: _Subject,
    n: int,
    fs: float,
    line_freq: float,
    seizures: list[tuple[float, float, str]],
) -> np.ndarray:
    """Common-average EEG (µV) of the hard variant: the standard background under changing vigilance,
    the mimics of a monitoring unit, subtle seizures, then the standard artefacts."""
    traits = subject.hard
    t = np.arange(n) / fs
    freqs = np.fft.rfftfreq(n, 1 / fs)
    n_ch = len(ELECTRODES)
    awake, drowsy, asleep = _vigilance(rng, n, fs, traits.sleepiness)

    eeg = _pink_background(rng, subject, n, freqs)
    # Posterior alpha while awake; diffuse theta when drowsy; frontal-predominant delta in light sleep.
    scale, alpha = _posterior_alpha(rng, subject, n, freqs)
    eeg += scale * awake * alpha
    theta = _spatial_mixing(0.8) @ _colored(rng, n_ch, n, _band(freqs, 4.0, 7.0))
    eeg += 0.8 * subject.background_uv * drowsy * theta
    delta = _spatial_mixing(0.8) @ _colored(rng, n_ch, n, _band(freqs, 0.6, 2.5))
    frontal = np.clip(0.6 + 0.4 * _XY[:, 1], 0.2, 1.0)
    eeg += 1.2 * subject.background_uv * frontal[:, None] * asleep * delta
    brain_rms = float(np.sqrt(np.mean(eeg[list(subject.focus)] ** 2)))

    keep_off = [(on - 30.0, on + du + 30.0) for on, du, _ in seizures]  # mimics stay off labelled seizures
    _add_sleep_transients(rng, eeg, fs, drowsy, asleep, subject.background_uv)
    _add_hard_mimics(rng, eeg, fs, traits, awake, drowsy, subject.background_uv, keep_off)
    _add_postictal_suppression(eeg, seizures, fs)
    for onset, duration, kind in seizures:
        _add_hard_seizure(rng, eeg, subject, kind, int(onset * fs), int(duration * fs), fs, brain_rms)
    _add_body_artifacts(rng, eeg, t, fs, traits, awake)
    _add_artifacts(rng, eeg, t, freqs, fs, line_freq)
    eeg -= eeg.mean(axis=0, keepdims=True)
    return eeg


def _band(freqs: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Amplitude spectrum flat from ``lo`` to ``hi`` Hz with soft edges."""
    width = 0.25 * (0.15 * (hi - lo) + 0.2)
    rise = np.clip((freqs - lo) / width, -50, 50)
    fall = np.clip((hi - freqs) / width, -50, 50)
    return 1 / (1 + np.exp(-rise)) / (1 + np.exp(-fall))


def _vigilance(rng: np.random.Generator, n: int, fs: float, sleepiness: float) -> tuple[np.ndarray, ...]:
    """Soft ``(awake, drowsy, asleep)`` weights over the recording (they sum to 1).

    Stages last minutes and follow each other as in a monitoring unit's day: awake, drowsy, then back
    awake or into light sleep (N2), which ends in drowsiness again. Transitions take about 20 s.
    """
    seconds = int(np.ceil(n / fs)) + 1
    stage = np.zeros(seconds, dtype=int)
    at, current = 0, 0 if rng.random() > sleepiness else 1
    mean_s = {0: 600 * (1 - sleepiness) + 60, 1: 150.0, 2: 900 * sleepiness + 120}
    while at < seconds:
        length = int(max(30.0, rng.exponential(mean_s[current])))
        stage[at : at + length] = current
        at += length
        if current == 0:
            current = 1
        elif current == 1:
            current = 2 if rng.random() < sleepiness + 0.2 else 0
        else:
            current = 1
    kernel = np.hanning(21) / np.hanning(21).sum()
    weights = [np.convolve((stage == k).astype(float), kernel, mode="same") for k in range(3)]
    grid = np.arange(seconds)
    at_samples = np.arange(n) / fs
    w = np.stack([np.interp(at_samples, grid, x) for x in weights])
    w /= w.sum(axis=0, keepdims=True)
    return w[0], w[1], w[2]


def _events(rng: np.random.Generator, weight: np.ndarray, fs: float, per_hour: float,
            keep_off: list[tuple[float, float]] = (), length_s: float = 0.0) -> list[int]:
    """Sample indices of events occurring at ``per_hour`` where ``weight`` (0-1 per sample) is high,
    none overlapping the ``keep_off`` intervals (seconds)."""
    n = weight.size
    expected = per_hour * float(weight.mean()) * n / fs / 3600
    candidates = rng.integers(0, max(1, n - int(length_s * fs)), rng.poisson(3 * expected) if expected else 0)
    kept = [int(c) for c in candidates if rng.random() < weight[c] / 3]
    return [c for c in kept if not any(a < (c / fs + length_s) and c / fs < b for a, b in keep_off)]


def _topography(centre: str, width: float) -> np.ndarray:
    return np.exp(-((_DIST[ELECTRODES.index(centre)] / width) ** 2))


def _add_sleep_transients(rng: np.random.Generator, eeg: np.ndarray, fs: float, drowsy: np.ndarray,
                          asleep: np.ndarray, scale: float) -> None:
    """Vertex waves (drowsiness and sleep), sleep spindles and K-complexes (light sleep): sharp or
    rhythmic transients a detector of spikes or of rhythmic bursts can mistake for seizure activity."""
    vertex = _topography("Cz", 0.5)
    for at in _events(rng, drowsy + asleep, fs, 240.0):
        span = int(0.5 * fs)
        u = (np.arange(min(span, eeg.shape[1] - at)) / fs) - 0.15
        wave = -np.exp(-((u / 0.05) ** 2)) + 0.35 * np.exp(-(((u - 0.15) / 0.08) ** 2))
        eeg[:, at : at + u.size] += rng.uniform(2.0, 5.0) * scale * vertex[:, None] * wave
    central = _topography("Cz", 0.7)
    for at in _events(rng, asleep, fs, 240.0):
        length = int(rng.uniform(0.5, 2.0) * fs)
        u = np.arange(min(length, eeg.shape[1] - at))
        wave = np.sin(2 * np.pi * rng.uniform(11.5, 15.0) * u / fs) * np.hanning(length)[: u.size]
        eeg[:, at : at + u.size] += rng.uniform(1.0, 2.5) * scale * central[:, None] * wave
    frontal = _topography("Fz", 0.8)
    for at in _events(rng, asleep, fs, 90.0):
        u = np.arange(min(int(1.5 * fs), eeg.shape[1] - at)) / fs
        wave = -np.exp(-(((u - 0.25) / 0.1) ** 2)) + 0.7 * np.exp(-(((u - 0.75) / 0.22) ** 2))
        eeg[:, at : at + u.size] += rng.uniform(3.0, 7.0) * scale * frontal[:, None] * wave


def _add_hard_mimics(rng: np.random.Generator, eeg: np.ndarray, fs: float, traits: _HardTraits,
                     awake: np.ndarray, drowsy: np.ndarray, scale: float,
                     keep_off: list[tuple[float, float]]) -> None:
    """Rhythmic non-epileptic activity: hyperventilation slowing, rhythmic mid-temporal theta of
    drowsiness (RMTD), rhythmic movement and chewing artefact. Each is rhythmic, regional or diffuse and
    as strong as a seizure; none evolves in frequency and place as a seizure does."""
    n_ch, n = eeg.shape
    rates = traits.rates
    for at in _events(rng, awake, fs, rates["hyperventilation"], keep_off, 300.0):
        length = min(int(rng.uniform(120.0, 300.0) * fs), n - at)
        u = np.arange(length) / length
        envelope = _smoothstep(u / 0.5) * _smoothstep((1 - u) / 0.15)
        centre = rng.uniform(1.5, 3.5)
        burst = _spatial_mixing(0.9) @ _colored(rng, n_ch, length, np.exp(-0.5 * ((np.fft.rfftfreq(length, 1 / fs) - centre) / 0.6) ** 2))
        topo = np.clip(0.7 + 0.3 * _XY[:, 1], 0.3, 1.0)[:, None]
        eeg[:, at : at + length] += rng.uniform(2.0, 4.0) * scale * topo * envelope * burst
    for at in _events(rng, drowsy, fs, rates["rmtd"], keep_off, 30.0):
        length = min(int(rng.uniform(5.0, 30.0) * fs), n - at)
        side = "T3" if rng.random() < 0.5 else "T4"
        topo = _topography(side, 0.45)[:, None]
        phase = 2 * np.pi * np.cumsum(rng.uniform(5.0, 6.5) + 0.1 * rng.standard_normal(length)) / fs
        wave = _waveform("rhythmic", phase, rng.uniform(0.3, 0.6))  # notched, like a seizure's rhythm
        u = np.arange(length) / length
        envelope = _smoothstep(u / 0.2) * _smoothstep((1 - u) / 0.2)
        eeg[:, at : at + length] += rng.uniform(1.5, 3.0) * scale * topo * envelope * wave
    for at in _events(rng, awake, fs, rates["movement"], keep_off, 60.0):
        length = min(int(rng.uniform(5.0, 60.0) * fs), n - at)
        phase = 2 * np.pi * np.cumsum(np.full(length, rng.uniform(1.0, 4.0))) / fs + rng.uniform(0, 6.3)
        topo = _topography(ELECTRODES[int(rng.integers(n_ch))], rng.uniform(0.5, 1.5))[:, None]
        topo *= rng.choice([-1.0, 1.0], size=(n_ch, 1)) * rng.uniform(0.5, 1.0, (n_ch, 1))
        u = np.arange(length) / length
        envelope = _smoothstep(u / 0.1) * _smoothstep((1 - u) / 0.1)
        wave = _waveform("rhythmic", phase, rng.uniform(0.1, 0.6))
        eeg[:, at : at + length] += rng.uniform(3.0, 10.0) * scale * topo * envelope * wave
    temporal = np.array([e in ("F7", "T3", "T5", "F8", "T4", "T6") for e in ELECTRODES], float)[:, None]
    for at in _events(rng, awake, fs, rates["chewing"], keep_off, 30.0):
        length = min(int(rng.uniform(5.0, 30.0) * fs), n - at)
        rate = rng.uniform(1.0, 1.7)
        u = np.arange(length) / fs
        bites = np.clip(np.sin(2 * np.pi * rate * u), 0, None) ** 4  # one short burst per chew
        emg = rng.standard_normal((n_ch, length))
        emg -= np.roll(emg, 1, axis=1)
        eeg[:, at : at + length] += rng.uniform(15.0, 50.0) * temporal * bites * emg
        eeg[:, at : at + length] += rng.uniform(0.5, 2.0) * scale * temporal * bites  # jaw movement


def _add_body_artifacts(rng: np.random.Generator, eeg: np.ndarray, t: np.ndarray, fs: float,
                        traits: _HardTraits, awake: np.ndarray) -> None:
    """Eye movements (lateral saccades awake, slow roving when drowsy), extra electrode pops and EKG."""
    n_ch, n = eeg.shape
    f7, f8 = ELECTRODES.index("F7"), ELECTRODES.index("F8")
    steps = np.zeros(n)
    for at in _events(rng, awake, fs, traits.rates["saccades"]):
        hold = int(rng.uniform(0.3, 2.0) * fs)
        steps[at : at + hold] += rng.choice([-1, 1]) * rng.uniform(20, 60)
    kernel = np.exp(-np.arange(int(0.05 * fs)) / (0.01 * fs))
    steps = np.convolve(steps, kernel / kernel.sum())[:n]
    roving = 50 * (1 - awake) * np.sin(2 * np.pi * 0.3 * t + 1.5 * _slow(rng, 1, n, fs, 0.02)[0])
    for c, sign in ((f7, 1.0), (f8, -1.0)):
        eeg[c] += sign * (steps + roving)
    _add_pops(rng, eeg, fs, rng.poisson(traits.rates["pops"] * n / fs / 3600), (40, 200))
    if traits.ekg_uv:
        beats = np.cumsum(rng.normal(1 / traits.heart_hz, 0.03, int(n / fs * traits.heart_hz) + 2))
        u = np.arange(int(0.3 * fs)) / fs - 0.1
        qrs = -0.3 * np.exp(-(((u + 0.025) / 0.01) ** 2)) + np.exp(-((u / 0.012) ** 2)) - 0.25 * np.exp(-(((u - 0.03) / 0.015) ** 2))
        train = np.zeros(n)
        idx = (beats * fs).astype(int)
        train[idx[idx < n]] = 1.0
        ekg = np.convolve(train, qrs)[:n]
        field = 0.5 - _XY[:, 0] * 0.5 - _XY[:, 1] * 0.3  # the heart's dipole: left and low strongest
        eeg += traits.ekg_uv * field[:, None] * ekg


def _add_hard_seizure(rng: np.random.Generator, eeg: np.ndarray, subject: _Subject, kind: str, start: int,
                      n: int, fs: float, brain_rms: float) -> None:
    """One subtle seizure with the patient's onset pattern, on a small focus, spreading or not.

    ``fast``: low-voltage fast activity (15-25 Hz, a third of the peak amplitude) for 3-10 s, then a
    rhythm evolving from 5-8 Hz down to 3 Hz. ``building``: a theta or delta rhythm that grows over a third
    to two thirds of the seizure and barely evolves. ``rhythmic``: the standard evolving discharge.
    ``spike-wave``: 3-4 Hz spike-and-wave.
    """
    traits = subject.hard
    u = np.arange(n) / n
    seconds = np.arange(n) / fs
    knots = np.linspace(0, 1, max(2, n // int(2 * fs)))
    jitter = np.interp(u, knots, rng.normal(0, 0.15, knots.size))
    envelope = _smoothstep(u / 0.04) * _smoothstep((1 - u) / 0.06)
    morphology, harmonic = "rhythmic", rng.uniform(0.2, 0.5)
    fast = np.zeros(n)
    if traits.onset == "spike-wave":
        freq = rng.uniform(2.6, 3.2) + (rng.uniform(3.5, 4.2) - 3.0) * (1 - u) + jitter
        morphology = "spike-wave"
        envelope *= 0.3 + 0.7 * np.sin(np.pi * u ** (np.log(0.5) / np.log(rng.uniform(0.3, 0.6))))
    elif traits.onset == "building":
        f0 = rng.uniform(4.0, 7.0) if rng.random() < 0.6 else rng.uniform(2.0, 3.5)
        freq = f0 - 0.8 * u + jitter
        envelope *= _smoothstep(u / rng.uniform(0.35, 0.65))
    else:
        f_start, f_end = rng.uniform(5.0, 8.0), rng.uniform(2.5, 3.5)
        freq = f_end + (f_start - f_end) * (1 - u) ** 1.5 + jitter
        envelope *= 0.3 + 0.7 * np.sin(np.pi * u ** (np.log(0.5) / np.log(rng.uniform(0.4, 0.7))))
        if traits.onset == "fast":
            lead = rng.uniform(3.0, 10.0)
            rise = _smoothstep((seconds - lead) / 3.0)  # the rhythm takes over after the fast onset
            envelope *= rise
            f_fast = rng.uniform(15.0, 25.0) - 3.0 * np.clip(seconds / lead, 0, 1)
            fast = np.sin(2 * np.pi * np.cumsum(f_fast) / fs) * _smoothstep(seconds / 1.0) * (1 - rise)
    phase = 2 * np.pi * np.cumsum(freq) / fs
    amplitude = rng.uniform(*traits.strength) * brain_rms

    near = _DIST[:, list(subject.focus)].min(axis=1)
    base = np.exp(-((near / 0.3) ** 2)) * rng.uniform(0.85, 1.15, near.size)
    if kind == "sz_gen":
        base, reach = 0.3 + 0.7 * np.exp(-((near / 0.6) ** 2)), np.zeros_like(near)
    elif kind == "sz_foc_f2b" or rng.random() < traits.spreads:
        bilateral = kind == "sz_foc_f2b" or rng.random() < 0.3
        side = _XY[:, 0] * np.sign(_XY[list(subject.focus), 0].mean() or 1.0) > -0.05
        reach = rng.uniform(0.4, 0.9, near.size) * (1 - base) * (bilateral | side)
    else:
        reach = np.zeros_like(near)
    ramp = _smoothstep((u - rng.uniform(0.3, 0.6)) / 0.15)
    lag = 1.2 * near + rng.uniform(0, 0.3, near.size)
    for c in np.flatnonzero(base + reach > 0.02):
        weight = base[c] + reach[c] * ramp
        wave = _waveform(morphology, phase - lag[c], harmonic)
        eeg[c, start : start + n] += amplitude * weight * (envelope * wave + 0.35 * fast * (near[c] < 0.3))
    if kind in ("sz_foc_f2b", "sz_gen") and morphology == "rhythmic":
        emg = rng.standard_normal((eeg.shape[0], n))
        emg -= np.roll(emg, 1, axis=1)
        eeg[:, start : start + n] += 0.8 * brain_rms * (ramp * envelope) * emg
