"""Finding and opening the EEG recordings of a BIDS dataset (pybids for the layout, mne-bids to read).

Nothing here writes into the dataset: pybids indexes in memory and mne-bids opens files read-only.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from .config import ExecutionConfig
from .errors import DataError, NoInputError, NothingSelectedError

log = logging.getLogger("neurocare")

EEG_EXTENSIONS = (".edf", ".bdf", ".vhdr", ".set")
# Files that hold a recording's samples besides the one pybids indexes.
_COMPANIONS = {".vhdr": (".vmrk", ".eeg"), ".set": (".fdt",)}


@dataclass
class Recording:
    """One EEG recording and the files that describe it."""

    path: Path
    root: Path
    entities: dict[str, str]
    metadata: dict = field(default_factory=dict)
    events: Path | None = None

    @property
    def relpath(self) -> Path:
        return self.path.relative_to(self.root)

    @property
    def stem(self) -> str:
        """The source entities, e.g. ``sub-01_ses-01_task-szMonitoring_run-00`` (no suffix)."""
        name = self.path.name
        return name[: name.rindex("_")]

    @property
    def label(self) -> str:
        return str(self.relpath)

    def source_files(self) -> list[Path]:
        """Every input file whose content the outputs depend on (data, companions, events, sidecar)."""
        files = [self.path]
        for ext in _COMPANIONS.get(self.path.suffix.lower(), ()):
            companion = self.path.with_suffix(ext)
            if companion.exists():
                files.append(companion)
        sidecar = self.path.with_name(f"{self.stem}_eeg.json")
        if sidecar.exists():
            files.append(sidecar)
        if self.events is not None:
            files.append(self.events)
        return files


def check_bids_dir(bids_dir: Path) -> None:
    """Refuse a path that is not a BIDS dataset folder (before anything else is done)."""
    if not bids_dir.exists():
        raise NoInputError(f"BIDS folder does not exist: {bids_dir}")
    if not bids_dir.is_dir():
        raise NoInputError(f"not a folder: {bids_dir}")
    if not (bids_dir / "dataset_description.json").is_file():
        raise NoInputError(f"{bids_dir} is not a BIDS dataset (no dataset_description.json)")


def load_layout(bids_dir: Path):
    """Index the dataset with pybids."""
    check_bids_dir(bids_dir)
    from bids import BIDSLayout

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return BIDSLayout(str(bids_dir), validate=False, derivatives=False)
    except Exception as exc:  # pybids raises many kinds for a broken dataset
        raise NoInputError(f"cannot index {bids_dir} as BIDS: {exc}") from None


def find_recordings(layout, bids_dir: Path, selection: ExecutionConfig) -> list[Recording]:
    """The EEG recordings matching the participant/session/task filters, in a stable order."""
    everything = layout.get(datatype="eeg", suffix="eeg", extension=list(EEG_EXTENSIONS))
    if not everything:
        raise NoInputError(f"no EEG recordings ({', '.join(EEG_EXTENSIONS)}) found in {bids_dir}")
    subjects = set(layout.get_subjects())
    missing = [s for s in selection.participant_label if s not in subjects]
    if missing:
        raise NothingSelectedError(f"participant label(s) not found: {', '.join(missing)} "
                                   f"(dataset has {len(subjects)}: {', '.join(sorted(subjects)[:10])}"
                                   f"{' ...' if len(subjects) > 10 else ''})")
    recordings = []
    for bids_file in everything:
        ents = bids_file.get_entities()
        if selection.participant_label and ents.get("subject") not in selection.participant_label:
            continue
        if selection.session_label and ents.get("session") not in selection.session_label:
            continue
        if selection.task_label and ents.get("task") not in selection.task_label:
            continue
        path = Path(bids_file.path)
        entities = {k: str(ents[k]) for k in ("subject", "session", "task", "acquisition", "run") if k in ents}
        stem = path.name[: path.name.rindex("_")]
        events = path.with_name(f"{stem}_events.tsv")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            metadata = layout.get_metadata(str(path))
        recordings.append(Recording(path, bids_dir, entities, metadata, events if events.exists() else None))
    if not recordings:
        raise NothingSelectedError("the session/task filters selected no recording")
    return sorted(recordings, key=lambda r: str(r.relpath))


def check_edf_size(path: Path) -> str | None:
    """Refuse an EDF/BDF shorter than its header announces (MNE would silently read zeros).

    Returns a warning for trailing bytes past the last data record, else None.
    """
    try:
        with open(path, "rb") as fh:
            head = fh.read(256)
            n_signals = int(head[252:256])
            fh.seek(256 + n_signals * 216)
            samples = [int(fh.read(8)) for _ in range(n_signals)]
        header_bytes, n_records = int(head[184:192]), int(head[236:244])
    except (OSError, ValueError):
        raise DataError(f"{path.name}: not a valid EDF/BDF header") from None
    if n_records < 0:  # -1: "unknown", MNE derives it from the file size
        return None
    width = 3 if path.suffix.lower() == ".bdf" else 2
    expected = header_bytes + n_records * sum(samples) * width
    actual = path.stat().st_size
    if actual < expected:
        raise DataError(f"{path.name}: truncated file ({actual} bytes; its header announces {expected})")
    if actual > expected:
        return f"{path.name}: {actual - expected} bytes after the last data record ignored"
    return None


def open_raw(recording: Recording, warnings_out: list[str]):
    """Open a recording lazily (no samples loaded) through mne-bids, falling back to plain MNE."""
    import mne
    import mne_bids

    if recording.path.suffix.lower() in (".edf", ".bdf"):
        note = check_edf_size(recording.path)
        if note:
            warnings_out.append(note)

    ents = recording.entities
    bids_path = mne_bids.BIDSPath(
        root=recording.root, subject=ents.get("subject"), session=ents.get("session"),
        task=ents.get("task"), acquisition=ents.get("acquisition"), run=ents.get("run"),
        datatype="eeg", suffix="eeg", extension=recording.path.suffix)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                raw = mne_bids.read_raw_bids(bids_path, verbose="error")
            except (ValueError, KeyError, RuntimeError) as exc:
                # mne-bids is stricter than the data (e.g. a channels.tsv that disagrees with the file);
                # the samples themselves are still readable with MNE alone.
                log.debug("mne-bids could not read %s (%s); reading with MNE", recording.label, exc)
                raw = mne.io.read_raw(recording.path, preload=False, verbose="error")
    except Exception as exc:  # MNE raises many types for broken files
        raise DataError(f"{recording.label}: unreadable EEG file ({_describe(exc)})") from None
    if raw.n_times == 0 or raw.info["sfreq"] <= 0:
        raise DataError(f"{recording.label}: the file holds no samples")
    return raw


def _describe(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]
