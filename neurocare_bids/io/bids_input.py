"""Finding and opening the EEG recordings of a BIDS dataset (pybids for the layout, mne-bids to read).

Nothing here writes into the dataset: pybids indexes in memory and mne-bids opens files read-only.
"""

from __future__ import annotations

import json
import logging
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from ..config import ExecutionConfig
from ..errors import DataError, NeuroCareError, NoInputError, NothingSelectedError
from .signal_reader import EDFSource, MNESource, SignalSource, read_edf_header

log = logging.getLogger("neurocare")

EEG_EXTENSIONS = (".edf", ".bdf", ".vhdr", ".set")
#: The advice for a DataLad/git-annex file whose content was never fetched (the same words in every mode).
NOT_FETCHED = "file content not available: in a DataLad/git-annex dataset, run 'datalad get' on it"
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
    problem: str = ""  # why the recording cannot be used, found while indexing (e.g. an unreadable sidecar)

    @property
    def relpath(self) -> Path:
        return self.path.relative_to(self.root)

    @property
    def stem(self) -> str:
        """The source entities, e.g. ``sub-01_ses-01_task-szMonitoring_run-00`` (no suffix)."""
        return source_stem(self.path.name)

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
        if sidecar.exists() or sidecar.is_symlink():
            files.append(sidecar)
        if self.events is not None:
            files.append(self.events)
        return files

    def check_usable(self) -> None:
        """:class:`DataError` when a problem found while indexing, or a file without content, rules it out."""
        if self.problem:
            raise DataError(self.problem)
        for path in self.source_files():
            if not path.exists():
                raise DataError(f"{path.name}: {'broken symbolic link' if path.is_symlink() else 'missing file'}"
                                f" ({NOT_FETCHED})")
            if not path.is_file():  # a folder (or a device) where the sidecar or events.tsv should be
                raise DataError(f"{path.name}: not a file")


def source_stem(filename: str) -> str:
    """A BIDS file name without its suffix and extension: ``sub-01_task-x_eeg.edf`` → ``sub-01_task-x``."""
    return filename[: filename.rindex("_")]


def check_bids_dir(bids_dir: Path) -> None:
    """Refuse a path that is not a BIDS dataset folder (before anything else is done)."""
    if not bids_dir.exists():
        raise NoInputError(f"BIDS folder does not exist: {bids_dir}")
    if not bids_dir.is_dir():
        raise NoInputError(f"not a folder: {bids_dir}")
    if not (bids_dir / "dataset_description.json").is_file():
        raise NoInputError(f"{bids_dir} is not a BIDS dataset (no dataset_description.json)")


def load_layout(bids_dir: Path, unreadable: dict[Path, str] | None = None):
    """Index the dataset with pybids.

    One unreadable JSON sidecar makes pybids give up on the whole dataset; then the dataset is indexed
    again without the unreadable sidecars, which are added to ``unreadable`` (path → reason) so that only
    the recordings they describe fail.
    """
    check_bids_dir(bids_dir)
    from bids import BIDSLayout

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                return BIDSLayout(str(bids_dir), validate=False, derivatives=False)
            except Exception:
                broken = _unreadable_json(bids_dir)
                if not broken or unreadable is None:
                    raise
                unreadable.update(broken)
                from bids.layout import BIDSLayoutIndexer
                from bids.layout.validation import DEFAULT_LOCATIONS_TO_IGNORE

                ignore = list(DEFAULT_LOCATIONS_TO_IGNORE) + [
                    re.compile("^/" + re.escape(p.relative_to(bids_dir).as_posix()) + "$") for p in broken]
                return BIDSLayout(str(bids_dir), validate=False, derivatives=False,
                                  indexer=BIDSLayoutIndexer(ignore=ignore))
    except Exception as exc:  # pybids raises many kinds for a broken dataset
        raise NoInputError(f"cannot index {bids_dir} as BIDS: {exc}") from None


def read_json(path: Path) -> tuple[object, str | None]:
    """A JSON file's content and None, or None and why it cannot be read (not valid JSON, and where; a DataLad file
    never fetched; the system's error), in the words every mode prints."""
    try:
        return json.loads(path.read_bytes()), None
    except (OSError, ValueError) as exc:
        return None, (f"broken symbolic link ({NOT_FETCHED})" if path.is_symlink() and not path.exists() else
                      f"not valid JSON ({exc})" if isinstance(exc, ValueError) else exc.strerror or str(exc))


def _unreadable_json(bids_dir: Path) -> dict[Path, str]:
    """The ``sub-*`` and top-level JSON sidecars that are not valid JSON, with the reason."""
    broken = {}
    for path in sorted([*bids_dir.glob("*.json"), *bids_dir.glob("sub-*/**/*.json")]):
        reason = read_json(path)[1]
        if reason is not None:
            broken[path] = reason
    return broken


def _sidecar_problem(path: Path, entities: dict, unreadable: dict[Path, str]) -> str:
    """The reason an unreadable sidecar that applies to ``path`` (inheritance principle) gives, if any."""
    from bids.layout import parse_file_entities

    for sidecar, reason in unreadable.items():
        if not sidecar.name.endswith("_eeg.json") or not path.parent.is_relative_to(sidecar.parent):
            continue
        ents = {k: v for k, v in parse_file_entities(str(sidecar)).items()
                if k not in ("suffix", "extension", "datatype")}
        if all(str(entities.get(k)) == str(v) for k, v in ents.items()):
            return f"sidecar {sidecar.name} is unreadable: {reason}"
    return ""


def find_recordings(layout, bids_dir: Path, selection: ExecutionConfig,
                    unreadable: dict[Path, str] | None = None) -> list[Recording]:
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
        events = path.with_name(f"{source_stem(path.name)}_events.tsv")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # plain JSON types (pybids returns its own int subclass): cheap to pickle, no pybids to unpickle
            metadata = json.loads(json.dumps(layout.get_metadata(str(path)), default=str))
        problem = _sidecar_problem(path, entities, unreadable) if unreadable else ""
        # a broken link (a DataLad file not fetched) is kept, to fail with a clear message
        recordings.append(Recording(path, bids_dir, entities, metadata,
                                    events if events.exists() or events.is_symlink() else None, problem))
    if not recordings:
        raise NothingSelectedError("the session/task filters selected no recording")
    return sorted(recordings, key=lambda r: str(r.relpath))


def open_source(recording: Recording, notes: list[str]) -> SignalSource:
    """Open a recording for block reads (nothing loaded): EDF/BDF directly, other formats via mne-bids."""
    recording.check_usable()
    if recording.path.suffix.lower() in (".edf", ".bdf"):
        header = read_edf_header(recording.path)
        source = EDFSource(recording.path, header, notes)  # also refuses truncated files
        if not header.reserved.upper().startswith(("EDF+D", "BDF+D")):
            return source
        notes.append(f"{recording.path.name}: discontinuous EDF+D, read through MNE as if continuous")
    return open_with_mne(recording)


def open_with_mne(recording: Recording) -> SignalSource:
    """Open a recording lazily through mne-bids, falling back to plain MNE."""
    import mne
    import mne_bids

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
    return MNESource(raw, recording.label)


def _describe(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]


def discover(bids_dir: Path, selection: ExecutionConfig) -> list[Recording]:
    """Index the dataset and select the recordings to process."""
    unreadable: dict[Path, str] = {}
    return find_recordings(load_layout(bids_dir, unreadable), bids_dir, selection, unreadable)


def discover_in_background(bids_dir: Path, selection: ExecutionConfig):
    """Start :func:`discover` in a forked process; return a function that waits for its result.

    Indexing with pybids and loading the signal-processing libraries both take a good part of a second;
    on Linux they overlap this way (the fork happens before any thread exists). Elsewhere it runs inline.
    """
    import multiprocessing
    import sys

    if not sys.platform.startswith("linux"):
        _import_pybids()
        recordings = discover(bids_dir, selection)
        return lambda: recordings
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=_discover_child, args=(bids_dir, selection, sender), daemon=True)
    child.start()
    sender.close()

    def result() -> list[Recording]:
        try:
            kind, payload = receiver.recv()
        except EOFError:
            child.join()
            raise NeuroCareError(f"indexing {bids_dir} failed (the indexing process exited with "
                                 f"code {child.exitcode})") from None
        child.join()
        if kind == "error":
            message, code = payload
            raise NeuroCareError(message, code)
        return payload

    return result


def _discover_child(bids_dir: Path, selection: ExecutionConfig, sender) -> None:
    import signal

    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the parent's handler: just stop, silently
    try:
        _import_pybids()
        sender.send(("ok", discover(bids_dir, selection)))
    except NeuroCareError as exc:
        sender.send(("error", (str(exc), exc.exit_code)))
    except Exception as exc:  # a bug: reported by the parent with exit code 1
        sender.send(("error", (f"internal error while indexing: {type(exc).__name__}: {exc}", 1)))
    finally:
        sender.close()


def _import_pybids() -> None:
    """Import pybids with the cyclic garbage collector held off, as the CLI starts indexing (importing creates
    many objects and no garbage), then freeze what the import built and collect again while indexing, whose
    garbage grows with the dataset."""
    import gc

    try:
        import bids  # noqa: F401
    except ImportError:
        pass  # load_layout reports it
    finally:
        gc.freeze()
        gc.enable()
