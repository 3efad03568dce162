"""What a group run works on, known before any training: the participant-level outputs it reads, the folds
(``group/folds.tsv``, ``group/splits.tsv``) and which of them are done.

Imports neither Keras nor TensorFlow, so that a ``--fold-jobs`` run can plan its folds and start its jobs before it
loads them (:func:`.fold_jobs.train_pending_as_jobs`): it would otherwise hold about 1 GB idle while the jobs train.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..config import Config
from ..errors import DataError, NoInputError, NothingSelectedError, UsageError
from ..io.fsutils import atomic_write, crc32c_file, locked
from ..training.input_pipeline import WindowFile, WindowGeometry, check_geometry
from .cv import Fold, assign_folds, make_folds

GROUP = "group"  # OUT/group/: the folds, the metrics and the final model


@dataclass
class GroupPlan:
    """The inputs and folds of a group run, and the folds its ``--fold-jobs`` jobs trained (not to train again)."""

    files: list[WindowFile]
    geometry: WindowGeometry
    folds: list[Fold]
    trained_by_jobs: set[int] = field(default_factory=set)


def collect_window_files(out_dir: Path, participants: list[str]) -> tuple[list[WindowFile], WindowGeometry]:
    """Every participant-level output under ``out_dir`` (optionally of some subjects only)."""
    sidecars = sorted(out_dir.glob("sub-*/**/*_desc-preproc_windows.json"))
    if not sidecars:
        raise NoInputError(f"no participant-level outputs in {out_dir}: run the participant level first")
    files, metas = [], []
    for sidecar in sidecars:
        subject = sidecar.relative_to(out_dir).parts[0][4:]
        if participants and subject not in participants:
            continue
        try:
            item, meta = WindowFile.from_sidecar(sidecar, subject)
            size, crc = meta["TFRecord"]["Bytes"], meta["TFRecord"]["CRC32C"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DataError(f"{sidecar.relative_to(out_dir)}: unreadable sidecar ({type(exc).__name__}: {exc}): "
                            f"rerun the participant level with --overwrite --participant-label {subject}") from None
        if not item.tfrecord.is_file() or item.tfrecord.stat().st_size != size:
            raise DataError(f"{item.tfrecord.relative_to(out_dir)} is missing or incomplete: rerun the "
                            "participant level for it")
        if crc32c_file(item.tfrecord) != crc:  # damaged on disk: found now, not as a TensorFlow error mid-training
            raise DataError(f"{item.tfrecord.relative_to(out_dir)} is corrupt (CRC-32C differs from its sidecar's): "
                            f"rerun the participant level with --overwrite --participant-label {subject}")
        if item.window_count:
            files.append(item)
            metas.append((sidecar, meta))
    missing = sorted(set(participants) - {f.subject for f in files})
    if missing:
        raise NothingSelectedError(f"no participant-level outputs for subject(s) {', '.join(missing)}")
    subjects = {f.subject for f in files}
    if len(subjects) < 3:
        raise DataError(f"cross-validation needs at least 3 subjects with windows; found {len(subjects)}")
    return files, check_geometry(metas)


def seizure_windows_per_subject(files: list[WindowFile]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for f in files:
        counts[f.subject] = counts.get(f.subject, 0) + f.seizure_window_count
    return counts


def plan_folds(cfg: Config, files: list[WindowFile], group_dir: Path) -> list[Fold]:
    """Assign folds and write ``folds.tsv``; concurrent ``--fold`` jobs compute and write the same."""
    seizures = seizure_windows_per_subject(files)
    assignment = assign_folds(seizures, cfg.cv.folds, cfg.execution.seed)
    folds = make_folds(assignment, seizures, cfg.cv.validation_fraction, cfg.execution.seed)
    table = "participant_id\tfold\n" + "".join(f"sub-{s}\t{f}\n" for s, f in sorted(assignment.items()))
    with locked(group_dir / ".lock"):
        path = group_dir / "folds.tsv"
        if path.exists() and path.read_text(encoding="utf-8") != table and not cfg.execution.overwrite:
            raise UsageError(f"{path} was made for other subjects or settings; use --overwrite to start the "
                             "group level again")
        atomic_write(path, table)
        splits = "participant_id\tfold\trole\n" + "".join(
            f"sub-{s}\t{fold.index}\t{role}\n" for fold in folds
            for role, members in (("test", fold.test), ("validation", fold.validation), ("train", fold.train))
            for s in members)
        atomic_write(group_dir / "splits.tsv", splits)
    return folds


def needs_training(cfg: Config, group_dir: Path, fold: Fold) -> bool:
    """Whether ``fold`` is still to train: not done, or done for other settings, or ``--overwrite``."""
    return cfg.execution.overwrite or not fold_is_done(cfg, group_dir / f"fold-{fold.index}", fold)


def fold_is_done(cfg: Config, folder: Path, fold: Fold) -> bool:
    """``folder/fold.json`` (written last) exists and was made for these settings, test subjects and seed."""
    try:
        summary = json.loads((folder / "fold.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (summary.get("group_config") == cfg.group_settings() and summary.get("test") == list(fold.test)
            and summary.get("seed") == cfg.execution.seed * 1000 + fold.index)
