"""The output folder as a BIDS-derivative dataset, shared safely by many concurrent jobs.

Dataset-level files (``dataset_description.json``, ``.bidsignore``, ``README``) are created under an
exclusive lock and never rewritten once they exist, so eight array jobs starting together cannot
interleave them. Per-recording outputs have unique names, so they need no lock.
"""

from __future__ import annotations

import json
import socket
import uuid
from datetime import datetime, timezone
from pathlib import Path

from .. import CODE_URL, __version__
from ..errors import OutputError
from .fsutils import atomic_write, is_within, locked

APP_NAME = "NeuroCare-BIDS"
# The layout of group/model/model_card.json: the group level writes it, apply mode refuses any other.
CARD_FORMAT = 1
LOCK_NAME = ".neurocare.lock"
# Our files that BIDS does not define; the validator is told to skip them.
BIDSIGNORE = """\
# Files of NeuroCare-BIDS that the BIDS specification does not define.
*_windows.tfrecord
*_windows.json
*_desc-seizureprob_timeseries.*
/sub-*.html
/group.html
/group
/szcore
"""


def check_output_location(bids_dir: Path, out_dir: Path) -> None:
    """Refuse an output folder that would put files into the input dataset."""
    if is_within(out_dir, bids_dir):
        where = "the same folder as" if out_dir.resolve() == bids_dir.resolve() else "inside"
        raise OutputError(f"output folder {out_dir} is {where} the BIDS dataset {bids_dir}; "
                          "NeuroCare-BIDS never writes into its input: choose another output folder")
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"output path {out_dir} exists and is not a folder")


def dataset_description(bids_dir: Path) -> dict:
    source = {"URL": bids_dir.resolve().as_uri()}
    try:
        raw = json.loads((bids_dir / "dataset_description.json").read_text(encoding="utf-8"))
        for key in ("Name", "DatasetDOI"):
            if isinstance(raw.get(key), str):
                source["DOI" if key == "DatasetDOI" else key] = raw[key]
    except (OSError, ValueError):
        pass
    return {
        "Name": f"{APP_NAME} derivatives",
        "BIDSVersion": "1.10.0",
        "DatasetType": "derivative",
        "GeneratedBy": [{"Name": APP_NAME, "Version": __version__, "CodeURL": CODE_URL,
                         "Description": "Preprocessed, labelled EEG windows and seizure detection outputs"}],
        "Authors": ["NeuroCare-BIDS (automated)", "see the source dataset for its authors"],
        "SourceDatasets": [source],
        "DatasetLinks": {"raw": source["URL"]},
    }


def prepare_output(bids_dir: Path, out_dir: Path) -> None:
    """Create ``out_dir`` as a derivative dataset, or check that an existing one is ours."""
    check_output_location(bids_dir, out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create output folder {out_dir}: {exc.strerror}") from None
    with locked(out_dir / LOCK_NAME):
        description = out_dir / "dataset_description.json"
        if description.exists():
            try:
                existing = json.loads(description.read_text(encoding="utf-8"))
                names = [g.get("Name") for g in existing.get("GeneratedBy", [])]
            except (OSError, ValueError, AttributeError):
                names = []
            if APP_NAME not in names:
                raise OutputError(f"{out_dir} already holds a dataset not made by {APP_NAME}; "
                                  "choose an empty or NeuroCare-BIDS output folder")
        else:
            atomic_write(description, json.dumps(dataset_description(bids_dir), indent=2) + "\n")
        if not (out_dir / ".bidsignore").exists():
            atomic_write(out_dir / ".bidsignore", BIDSIGNORE)
        if not (out_dir / "README.md").exists():
            atomic_write(out_dir / "README.md", _README)


def new_log_dir(out_dir: Path, level: str) -> Path:
    """A fresh per-run folder under ``OUT/logs`` (unique even for simultaneous array jobs)."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    folder = out_dir / "logs" / f"{level}_{stamp}_{socket.gethostname().split('.')[0]}_{uuid.uuid4().hex[:8]}"
    try:
        folder.mkdir(parents=True)
    except OSError as exc:
        raise OutputError(f"cannot create log folder {folder}: {exc.strerror}") from None
    return folder


def recording_outputs(out_dir: Path, relpath: Path, stem: str) -> tuple[Path, Path]:
    """``(tfrecord, sidecar)`` of a source recording: same folders and entities, ``desc-preproc``."""
    folder = out_dir / relpath.parent
    base = f"{stem}_desc-preproc_windows"
    return folder / f"{base}.tfrecord", folder / f"{base}.json"


_README = f"""\
# {APP_NAME} derivatives

Made by {APP_NAME} ({CODE_URL}). Per recording, `*_desc-preproc_windows.tfrecord` holds the preprocessed,
labelled EEG windows and `*_desc-preproc_windows.json` describes them (sampling rate, channels, windowing,
every preprocessing parameter, source checksums, TFRecord schema). `logs/` holds the configuration and log of
every run.
"""
