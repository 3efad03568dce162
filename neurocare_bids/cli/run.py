"""``neurocare-bids`` / ``run.py``: parse, configure, validate, run, report, exit with a documented code.

A user's mistake ends with one line on stderr and its exit code; a traceback appears only with ``-vv``.
"""

from __future__ import annotations

import csv
import io
import logging
import shutil
import sys
import tempfile
import traceback
import uuid
from pathlib import Path

from .. import __version__
from ..config import Config
from ..errors import (EXIT_INTERNAL, EXIT_OK, NeuroCareError, UnknownLevelError, UsageError, ValidationFailed)
from .parser import LEVELS, build_demo_parser, build_parser

log = logging.getLogger("neurocare")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    verbosity = _count_verbosity(argv)
    _setup_console_logging(verbosity)
    try:
        if argv and argv[0] == "demo-data":
            return _demo_data(build_demo_parser().parse_args(argv[1:]))
        return _run(build_parser().parse_args(argv))
    except NeuroCareError as exc:
        if verbosity >= 2:
            traceback.print_exc()
        print(f"neurocare-bids: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("neurocare-bids: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug
        if verbosity >= 2:
            traceback.print_exc()
        print(f"neurocare-bids: internal error: {type(exc).__name__}: {exc} (rerun with -vv for the traceback "
              "and please report it)", file=sys.stderr)
        return EXIT_INTERNAL


def _count_verbosity(argv: list[str]) -> int:
    count = 0
    for arg in argv:
        if arg == "--verbose":
            count += 1
        elif arg.startswith("-") and not arg.startswith("--") and set(arg[1:]) == {"v"}:
            count += len(arg) - 1
    return count


def _setup_console_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity == 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    log.setLevel(logging.DEBUG)
    log.propagate = False
    for handler in list(log.handlers):
        log.removeHandler(handler)
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(level)
    console.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    log.addHandler(console)


def build_config(args) -> Config:
    """Defaults, then the TOML file, then the command line."""
    cfg = Config.from_toml(args.config) if args.config else Config()
    overrides = {}
    for name, prefix in (("participant_label", "sub-"), ("session_label", "ses-"), ("task_label", "task-")):
        values = getattr(args, name)
        if values is not None:
            overrides[name] = [v[len(prefix):] if v.startswith(prefix) else v for v in values]
    for name in ("skip_bids_validation", "nprocs", "seed", "overwrite"):
        if getattr(args, name) is not None:
            overrides[name] = getattr(args, name)
    if args.work_dir is not None:
        overrides["work_dir"] = str(args.work_dir)
    cfg.update({"execution": overrides}, source="command line")
    return cfg


def _run(args) -> int:
    cfg = build_config(args)
    if args.print_config:
        print(cfg.to_toml())
        return EXIT_OK
    if args.analysis_level not in LEVELS:
        raise UnknownLevelError(f"unknown analysis level '{args.analysis_level}' "
                                f"(choose {' or '.join(LEVELS)})")
    bids_dir, out_dir = args.bids_dir.absolute(), args.output_dir.absolute()

    from ..bids_input import check_bids_dir
    from ..derivatives import check_output_location

    check_bids_dir(bids_dir)
    check_output_location(bids_dir, out_dir)
    if args.analysis_level == "group":
        raise NeuroCareError("the group level is not available in this version yet; run the participant "
                             "level to prepare the windows", EXIT_INTERNAL)
    return _participant(cfg, bids_dir, out_dir)


def _participant(cfg: Config, bids_dir: Path, out_dir: Path) -> int:
    from concurrent.futures import ThreadPoolExecutor

    from ..bids_input import discover_in_background
    from ..derivatives import new_log_dir, prepare_output
    from ..fsutils import atomic_write, is_within

    # Indexing (a forked process), validation (a subprocess, waited for in a thread) and loading the
    # signal-processing code overlap; nothing is written before all three are done.
    recordings_result = discover_in_background(bids_dir, cfg.execution)
    with ThreadPoolExecutor(1) as background:
        validation = None if cfg.execution.skip_bids_validation else background.submit(_validate, bids_dir)
        from ..participant import run_participant_level

        if validation is not None:
            validation.result()
    recordings = recordings_result()
    log.info("%d recording(s) selected", len(recordings))

    prepare_output(bids_dir, out_dir)
    log_dir = new_log_dir(out_dir, "participant")
    atomic_write(log_dir / "config.toml", cfg.to_toml())
    file_handler = logging.FileHandler(log_dir / "neurocare.log", encoding="utf-8")
    file_handler.setLevel(logging.DEBUG)
    file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(file_handler)
    log.debug("NeuroCare-BIDS %s: %s -> %s", __version__, bids_dir, out_dir)

    if cfg.execution.work_dir:
        work_root = Path(cfg.execution.work_dir).absolute()
        if is_within(work_root, bids_dir):
            raise UsageError(f"work folder {work_root} is inside the BIDS dataset; choose another")
        work_dir = work_root / f"neurocare-{uuid.uuid4().hex[:8]}"
    else:
        work_dir = Path(tempfile.mkdtemp(prefix="neurocare-"))
    try:
        results = run_participant_level(cfg, recordings, out_dir, work_dir)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
        log.removeHandler(file_handler)
        file_handler.close()

    summary = io.StringIO()
    writer = csv.writer(summary, delimiter="\t", lineterminator="\n")
    writer.writerow(["recording", "status", "windows", "seizure_windows", "warnings", "message"])
    for r in results:
        writer.writerow([r.recording, r.status, r.windows, r.seizure_windows, len(r.warnings), r.message])
    atomic_write(log_dir / "summary.tsv", summary.getvalue())
    _print_summary(results, out_dir, log_dir)
    failed = [r for r in results if r.status == "failed"]
    if not failed:
        return EXIT_OK
    codes = {r.exit_code for r in failed}
    return EXIT_INTERNAL if EXIT_INTERNAL in codes else max(codes)


def _validate(bids_dir: Path) -> None:
    from ..validation import ValidatorUnavailable, validate_dataset

    try:
        report = validate_dataset(bids_dir)
    except ValidatorUnavailable as exc:
        log.warning("BIDS validation skipped: %s", exc)
        return
    for issue in report.downgraded:
        log.warning("BIDS validator %s treated as a warning: %s", issue.code, issue.note)
    if not report.ok:
        raise ValidationFailed(f"{bids_dir} is not valid BIDS: {report.summary()} "
                               "(run bids-validator-deno for details, or use --skip-bids-validation)")
    log.info("BIDS validation passed (%d warning(s))", len(report.warnings))


def _print_summary(results, out_dir: Path, log_dir: Path) -> None:
    counts = {status: sum(r.status == status for r in results) for status in ("written", "up-to-date", "failed")}
    width = max([len(r.recording) for r in results] + [9])
    lines = [f"{'recording':<{width}}  {'status':<10}  {'windows':>8}  {'seizure':>8}"]
    for r in results:
        lines.append(f"{r.recording:<{width}}  {r.status:<10}  {r.windows:>8}  {r.seizure_windows:>8}")
    lines.append(f"{counts['written']} written, {counts['up-to-date']} up to date, {counts['failed']} failed. "
                 f"Outputs: {out_dir}  Log: {log_dir}")
    print("\n".join(lines))
    for r in results:
        if r.status == "failed":
            print(f"neurocare-bids: error: {r.recording}: {r.message}", file=sys.stderr)


def _demo_data(args) -> int:
    from ..demo import make_demo_dataset

    for name in ("subjects", "recordings"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name} must be at least 1")
    if args.duration < 60:
        raise UsageError("--duration must be at least 60 seconds")
    try:
        recordings = make_demo_dataset(args.output, n_subjects=args.subjects,
                                       recordings_per_subject=args.recordings,
                                       recording_duration=args.duration, sfreq=args.sfreq, seed=args.seed)
    except FileExistsError as exc:
        raise UsageError(str(exc)) from None
    seizures = sum(len(r["seizures"]) for r in recordings)
    print(f"Demo dataset written to {args.output}: {args.subjects} subjects, {len(recordings)} recordings, "
          f"{seizures} seizures.")
    return EXIT_OK
