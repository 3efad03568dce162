"""What a group run works on, known before any training: the participant-level outputs it reads, the folds
(``group/folds.tsv``, ``group/splits.tsv``) and which of them are done.

Imports neither Keras nor TensorFlow, so that the CLI checks a group run's inputs and folds before it loads them
(an error in them is reported at once, not after TensorFlow's start-up), and a ``--fold-jobs`` run starts its jobs
first (:func:`.fold_jobs.plan_and_train_jobs`): it would otherwise hold about 0.8 GB idle while they train.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..config import Config
from ..errors import DataError, NoInputError, NothingSelectedError, UsageError
from ..io.fsutils import atomic_write, crc32c_file, locked, remove_stale_temporaries_under
from ..training.input_pipeline import WindowFile, WindowGeometry, check_geometry
from .cv import Fold, assign_folds, make_folds

GROUP = "group"  # OUT/group/: the folds, the metrics and the final model


@dataclass
class GroupPlan:
    """The inputs and folds of a group run, and the folds its ``--fold-jobs`` jobs trained (not to train again)."""

    files: list[WindowFile]
    geometry: WindowGeometry
    folds: list[Fold] | None  # None for multi-worker training: each worker plans them where it writes
    trained_by_jobs: set[int] = field(default_factory=set)


def multi_worker(cfg: Config) -> bool:
    """Whether each training spreads over the tasks of a Slurm job (``execution.distribution``), whose workers
    other than the chief plan their folds in a scratch folder (the group level's ``_run_as_worker``)."""
    return cfg.model.preset != "features" and cfg.execution.distribution == "multi-worker"


def plan_group_run(cfg: Config, out_dir: Path, fold_index: int | None) -> GroupPlan:
    """The participant-level outputs read and checked, a killed run's temporaries removed and, except for
    multi-worker training, the folds planned (``group/folds.tsv``) and ``--fold K`` checked against them."""
    files, geometry = collect_window_files(out_dir, cfg.execution.participant_label)
    remove_stale_temporaries_under(out_dir)  # of a killed run, so that a rerun leaves nothing behind
    group_dir = out_dir / GROUP
    group_dir.mkdir(parents=True, exist_ok=True)
    if multi_worker(cfg):
        return GroupPlan(files, geometry, None)
    folds = plan_folds(cfg, files, group_dir)
    check_fold_index(fold_index, folds)
    return GroupPlan(files, geometry, folds)


def check_fold_index(fold_index: int | None, folds: list[Fold]) -> None:
    if fold_index is not None and not 1 <= fold_index <= len(folds):
        raise UsageError(f"--fold {fold_index} does not exist: there are {len(folds)} folds (1-{len(folds)})")


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
