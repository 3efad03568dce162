"""A deterministic, realistic synthetic scalp-EEG dataset in the SzCORE "BIDS Siena" layout.

The demo lets the pipeline, its tests and new users run end to end without access to patient
data. Files follow what ``epilepsy2bids`` writes for the Siena Scalp EEG Database (19 common
average channels at 256 Hz, ``task-szMonitoring``, SzCORE ``events.tsv``), and the signals carry
the structure a detector has to cope with: a 1/f background with a waxing and waning posterior
alpha rhythm, spatial correlation, eye blinks, muscle bursts, line noise, electrode pops, slow
drift, and evolving rhythmic seizures that start focally and sometimes spread. A harder variant
(``seizure_mimics=True``, ``demo-data --mimics``) adds non-epileptic slow-wave bursts and weaker
seizures.

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

from . import __version__
from .config import SZCORE_ELECTRODES
from .edf import write_edf

__all__ = ["CHANNELS", "ELECTRODES", "EVENT_COLUMNS", "SEIZURE_TYPES", "make_demo_dataset"]

# The 19 electrodes in SzCORE order (the one list, from the configuration module).
ELECTRODES = tuple(SZCORE_ELECTRODES)
CHANNELS = tuple(f"{e}-Avg" for e in ELECTRODES)
TASK = "szMonitoring"
SESSION = "01"
GENERATOR = "neurocare_bids.demo"
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


def make_demo_dataset(
    root: str | Path,
    *,
    n_subjects: int = 6,
    recordings_per_subject: int = 2,
    recording_duration: float = 1200.0,
    sfreq: float = 256.0,
    seed: int = 42,
    line_freq: float = 50.0,
    seizure_mimics: bool = False,
) -> list[dict]:
    """Write the demo dataset under ``root`` and describe its recordings.

    Returns one dict per recording with ``path`` (the EDF), ``subject``, ``session``, ``run``
    (BIDS labels), ``duration`` (s), ``seizures`` (``(onset_s, duration_s, eventType)``) and
    ``focus`` (channel names where that subject's seizures start). ``root`` must be missing,
    empty or a previous demo (whose ``sub-*`` folders and top-level files are replaced);
    anything else raises ``FileExistsError`` so real data is never overwritten.
    ``seizure_mimics`` makes the task harder: non-epileptic slow-wave bursts in the background and
    seizures from barely above the background (the default data stay byte-identical without it).
    """
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
    _write_text(root / "dataset_description.json", _json(_dataset_description()))
    _write_text(root / "README", _README + (_MIMICS_README if seizure_mimics else ""))
    _write_text(root / "participants.json", _json(_PARTICIPANTS_JSON))
    _write_text(root / "events.json", _json(_EVENTS_JSON))
    rows = ["participant_id\tage\tsex"] + [f"sub-{s.label}\t{s.age}\t{s.sex}" for s in subjects]
    _write_text(root / "participants.tsv", "\n".join(rows) + "\n")

    recordings = []
    for i, subject in enumerate(subjects):
        eeg_dir = root / f"sub-{subject.label}" / f"ses-{SESSION}" / "eeg"
        eeg_dir.mkdir(parents=True, exist_ok=True)
        for run in range(recordings_per_subject):
            rng = np.random.default_rng([seed, 2, i, run])
            n_seizures = int(rng.choice(4, p=[0.25, 0.40, 0.25, 0.10]))
            if run == 0:  # every subject has at least one seizure
                n_seizures = max(n_seizures, 1)
            placed = _place_seizures(rng, int(recording_duration), n_seizures)
            seizures = [(float(on), float(du), subject.seizure_type) for on, du in placed]
            start = subject.start + timedelta(seconds=run * (int(recording_duration) + 900))
            n_samples = int(recording_duration * sfreq)
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
    n_ch = len(ELECTRODES)

    # Background: 1/f noise, spatially smoothed so neighbouring electrodes correlate.
    pink = 1.0 / (freqs**2 + 0.5**2) ** (subject.slope / 4) / np.sqrt(1 + (freqs / 45.0) ** 8)
    background = _spatial_mixing() @ _colored(rng, n_ch, n, pink)
    background *= subject.background_uv / background.std(axis=1, keepdims=True)

    # Posterior alpha: narrow-band, so it waxes and wanes by itself; slow state changes
    # (eyes open/closed, drowsiness) modulate it further.
    alpha = _colored(rng, 2, n, np.exp(-0.5 * ((freqs - subject.alpha_hz) / 0.6) ** 2))
    alpha = 0.8 * alpha + 0.2 * alpha[::-1]  # the two hemispheres are partly coherent
    state = 1 / (1 + np.exp(-2.5 * _slow(rng, 1, n, fs, 1 / 40)[0]))
    posterior = np.clip(1.1 - (_XY[:, 1] + 1) / 1.6, 0.05, 1.0)
    left = _XY[:, 0] < 0.05
    background += (
        subject.alpha_uv * posterior[:, None] * state * np.where(left[:, None], alpha[0], alpha[1])
    )
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

    # Electrode pops: a step that decays exponentially, on one channel.
    for _ in range(rng.poisson(duration / 400) + 1):
        c, at = int(rng.integers(n_ch)), int(rng.integers(0, n))
        tau = rng.uniform(0.1, 0.6) * fs
        span = min(int(6 * tau), n - at)
        eeg[c, at : at + span] += (
            rng.choice([-1, 1]) * rng.uniform(40, 150) * np.exp(-np.arange(span) / tau)
        )
