"""``neurocare-bids`` / ``run.py``: parse, configure, validate, run, report, exit with a documented code.

A user's mistake ends with one line on stderr and its exit code; a traceback appears only with ``-vv``.
"""

from __future__ import annotations

import atexit
import csv
import gc
import io
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import traceback
import uuid
from pathlib import Path

from .. import __version__
from ..config import Config
from ..console import (ConsoleFilter, ConsoleFormatter, hide_native_logs, import_tensorflow,
                       tensorflow_installed)
from ..errors import (EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_OK, EXIT_TERMINATED, NeuroCareError, NoInputError,
                      Terminated, UnknownLevelError, UsageError, ValidationFailed, combined_exit_code,
                      forget_termination, raise_if_terminated, request_termination, termination_requested)
from .parser import LEVELS, build_demo_parser, build_export_parser, build_parser, build_stream_parser

log = logging.getLogger("neurocare")


def main(argv: list[str] | None = None) -> int:
    """Run the command line ``argv`` (default: this process's) and return its exit code.

    Called without ``argv``, as the ``neurocare-bids`` script and ``python -m neurocare_bids`` call it, a run
    of the participant level (preprocessing or apply mode) ends the process itself once everything is written
    (:func:`_exit_now`), instead of returning to an interpreter tear-down that costs a few tenths of a second.
    """
    global _exit_when_done
    program = argv is None
    _exit_when_done = False
    code = _main(argv)
    if program and _exit_when_done:
        _exit_now(code)
    return code


# Set by the participant level (preprocessing and apply mode): nothing it leaves behind needs the interpreter's
# tear-down (with ONNX Runtime, scikit-learn or TensorFlow loaded, a tenth of a second or more).
_exit_when_done = False


def _exit_now(code: int) -> None:
    """End the process with ``code`` the quick way, as a normal exit would but without tearing down every
    module (SciPy's and NumPy's objects one by one): the exit handlers run, logs and the console are flushed,
    then ``os._exit``. Returns instead (the normal exit follows) while another non-daemon thread still runs,
    since a normal exit would wait for it."""
    if any(t is not threading.main_thread() and t.is_alive() and not t.daemon for t in threading.enumerate()):
        return
    atexit._run_exitfuncs()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: what a normal exit would ignore too
            pass
    os._exit(code)


def _main(argv: list[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    verbosity = _count_verbosity(argv)
    _setup_console_logging(verbosity)
    if verbosity < 2:  # TensorFlow's native (C++) messages only with -vv; there its own settings apply
        hide_native_logs()
    if threading.current_thread() is threading.main_thread():
        forget_termination()  # a request belongs to one run (main() called again in one process)
        signal.signal(signal.SIGTERM, _terminate)
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # not where Ctrl-C is ignored (`cmd &`)
            signal.signal(signal.SIGINT, _interrupt)
        sys.unraisablehook = _unraisable
    try:
        if argv and argv[0] == "demo-data":
            return _demo_data(build_demo_parser().parse_args(argv[1:]))
        if argv and argv[0] == "stream":
            return _stream(build_stream_parser().parse_args(argv[1:]))
        if argv and argv[0] == "export-model":
            return _export_model(build_export_parser().parse_args(argv[1:]))
        return _run(build_parser().parse_args(argv))
    except NeuroCareError as exc:
        if verbosity >= 2:
            traceback.print_exc()
        print(f"neurocare-bids: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("neurocare-bids: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Terminated:
        print("neurocare-bids: terminated (SIGTERM): finished outputs are kept; rerun to complete the rest",
              file=sys.stderr)
        return EXIT_TERMINATED
    except Exception as exc:  # a bug
        if verbosity >= 2:
            traceback.print_exc()
        print(f"neurocare-bids: internal error: {type(exc).__name__}: {exc} (rerun with -vv for the traceback "
              "and please report it)", file=sys.stderr)
        return EXIT_INTERNAL


def _stream(args) -> int:
    """``stream FILE`` replays a recording, ``stream --lsl NAME`` reads a live stream: exactly one of them."""
    if (args.file is None) == (args.lsl is None):
        raise UsageError("give an EEG FILE to replay or --lsl NAME for a live stream, not both (see --help)"
                         if args.file else "give an EEG FILE to replay or --lsl NAME for a live stream (see --help)")
    if args.lsl is not None:
        from ..detection.live import stream_lsl

        return stream_lsl(args)
    from ..detection.streaming import stream_file

    return stream_file(args)


def _terminate(signum, frame) -> None:
    """SIGTERM (Slurm's time limit, ``kill``): unwind like Ctrl-C, so temporaries and the work folder are
    removed; a second SIGTERM cannot interrupt that clean-up."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    request_termination()  # raised again at the next check if a library or a callback swallows this one
    raise Terminated()


def _interrupt(signum, frame) -> None:
    """Ctrl-C: ``KeyboardInterrupt``, as Python's own handler raises it, remembered like SIGTERM."""
    request_termination(KeyboardInterrupt)
    raise KeyboardInterrupt


def _unraisable(unraisable) -> None:
    """SIGTERM's or Ctrl-C's exception raised where Python cannot raise it (a garbage-collector callback, a
    ``__del__``) is dropped without the "Exception ignored" traceback: the request is remembered (:func:`_terminate`,
    :func:`_interrupt`) and the next check raises it again (training batches, each recording, the fold jobs'
    wait)."""
    if not (isinstance(unraisable.exc_value, (Terminated, KeyboardInterrupt)) and termination_requested()):
        sys.__unraisablehook__(unraisable)


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
    console.addFilter(ConsoleFilter(level, terminal=sys.stderr.isatty()))  # as tqdm decides to draw its bars
    console.setFormatter(ConsoleFormatter())
    log.addHandler(console)


def build_config(args) -> Config:
    """Defaults, then the TOML file, then the command line."""
    cfg = Config.from_toml(args.config) if args.config else Config()
    overrides = {}
    for name, prefix in (("participant_label", "sub-"), ("session_label", "ses-"), ("task_label", "task-")):
        values = getattr(args, name)
        if values is not None:
            overrides[name] = [v[len(prefix):] if v.startswith(prefix) else v for v in values]
    for name in ("skip_bids_validation", "nprocs", "omp_nthreads", "fold_jobs", "seed", "overwrite", "wandb",
                 "reports"):
        if getattr(args, name) is not None:
            overrides[name] = getattr(args, name)
    if args.work_dir is not None:
        overrides["work_dir"] = str(args.work_dir)
    if getattr(args, "distributed", None):
        overrides["distribution"] = "multi-worker"
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

    from ..io.bids_input import check_bids_dir
    from ..io.derivatives import check_output_location

    check_bids_dir(bids_dir)
    check_output_location(bids_dir, out_dir)
    if args.model is not None:
        if args.analysis_level != "participant" or args.fold is not None:
            raise UsageError("--model applies to the participant level only")
        if args.distributed:
            raise UsageError("--distributed applies to the group level only, not with --model")
        return _apply(cfg, bids_dir, out_dir, args.model, args.engine)
    if args.analysis_level == "group":
        return _group(cfg, bids_dir, out_dir, args.fold, args.verbose)
    if args.fold is not None:
        raise UsageError("--fold applies to the group level only")
    if args.distributed:
        raise UsageError("--distributed applies to the group level only")
    return _participant(cfg, bids_dir, out_dir)


def _participant(cfg: Config, bids_dir: Path, out_dir: Path) -> int:
    global _exit_when_done
    from concurrent.futures import ThreadPoolExecutor

    from ..io.bids_input import discover_in_background
    from ..io.derivatives import prepare_output
    from ..io.fsutils import atomic_write, is_within

    _exit_when_done = True
    # Indexing (a forked process), validation (a subprocess, waited for in a thread) and loading the
    # signal-processing code overlap; nothing is written before all three are done. The imports (pybids in the
    # indexing process, SciPy here) create hundreds of thousands of objects and no garbage worth collecting:
    # the cyclic collector is held off meanwhile (a tenth of their time), and what they built is then frozen,
    # so that later collections do not walk it again.
    gc.disable()
    try:
        recordings_result = discover_in_background(bids_dir, cfg.execution)
        with ThreadPoolExecutor(1) as background:
            validation = None if cfg.execution.skip_bids_validation else background.submit(_validate, bids_dir)
            from ..preprocessing.participant import run_participant_level

            gc.freeze()
            gc.enable()
            if validation is not None:
                validation.result()
    finally:
        gc.enable()
    recordings = recordings_result()
    log.info("%d recording(s) selected", len(recordings))

    work_root = Path(cfg.execution.work_dir).absolute() if cfg.execution.work_dir else None
    if work_root is not None and is_within(work_root, bids_dir):
        raise UsageError(f"work folder {work_root} is inside the BIDS dataset; choose another")

    prepare_output(bids_dir, out_dir)
    log_dir, file_handler = _start_run_log(cfg, out_dir, "participant")
    if work_root is not None:
        work_dir = work_root / f"neurocare-{uuid.uuid4().hex[:8]}"
    else:
        work_dir = Path(tempfile.mkdtemp(prefix="neurocare-"))
    try:
        results = run_participant_level(cfg, recordings, out_dir, work_dir)
        _reports("participant_reports", cfg, out_dir, bids_dir,
                 sorted({r.entities.get("subject", "") for r in recordings} - {""}), results)
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
    return combined_exit_code(r.exit_code for r in results if r.status == "failed")


def _apply(cfg: Config, bids_dir: Path, out_dir: Path, model_path: Path, engine: str) -> int:
    """Participant level with --model: apply a trained model to every selected recording (apply.py)."""
    global _exit_when_done
    from concurrent.futures import ThreadPoolExecutor

    from ..io.bids_input import discover_in_background
    from ..io.derivatives import prepare_output
    from ..io.fsutils import atomic_write, is_within

    _exit_when_done = True
    recordings_result = discover_in_background(bids_dir, cfg.execution)
    with ThreadPoolExecutor(1) as background:
        validation = None if cfg.execution.skip_bids_validation else background.submit(_validate, bids_dir)
        from ..detection.apply import check_apply_output, load_model, print_summary, run_apply, summary_tsv

        model = load_model(model_path.absolute(), engine)  # refused before anything is written
        if validation is not None:
            validation.result()
    recordings = recordings_result()
    work_root = Path(cfg.execution.work_dir).absolute() if cfg.execution.work_dir else None
    if work_root is not None and is_within(work_root, bids_dir):
        raise UsageError(f"work folder {work_root} is inside the BIDS dataset; choose another")
    check_apply_output(out_dir)
    prepare_output(bids_dir, out_dir)
    log_dir, file_handler = _start_run_log(cfg, out_dir, "apply")
    log.info("%d recording(s) selected; model %s (%s engine)", len(recordings), model.folder, model.engine)
    work_dir = (work_root / f"neurocare-{uuid.uuid4().hex[:8]}" if work_root is not None
                else Path(tempfile.mkdtemp(prefix="neurocare-")))
    try:
        results = run_apply(cfg, model, recordings, out_dir, work_dir)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
        log.removeHandler(file_handler)
        file_handler.close()
    atomic_write(log_dir / "summary.tsv", summary_tsv(results))
    print_summary(results, out_dir, log_dir)
    return combined_exit_code(r.exit_code for r in results if r.status == "failed")


def _start_run_log(cfg: Config, out_dir: Path, level: str) -> tuple[Path, logging.Handler]:
    """A per-run log folder with the effective configuration and a debug log file."""
    from ..io.derivatives import new_log_dir
    from ..io.fsutils import atomic_write

    log_dir = new_log_dir(out_dir, level)
    atomic_write(log_dir / "config.toml", cfg.to_toml())
    handler = logging.FileHandler(log_dir / "neurocare.log", encoding="utf-8")
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.debug("NeuroCare-BIDS %s %s", __version__, level)
    return log_dir, handler


def _group(cfg: Config, bids_dir: Path, out_dir: Path, fold: int | None, verbosity: int = 0) -> int:
    from ..evaluation.fold_jobs import plan_and_train_jobs, stop_with_parent
    from ..evaluation.plan import multi_worker
    from ..io.derivatives import prepare_output
    from ..training.tracking import check_tracking

    check_tracking(cfg)  # before anything is written
    if not (out_dir / "dataset_description.json").exists():
        raise NoInputError(f"{out_dir} holds no participant-level outputs: run the participant level first")
    prepare_output(bids_dir, out_dir)
    log_dir, handler = _start_run_log(cfg, out_dir, "group" if fold is None else f"group-fold{fold}")
    try:
        plan = None
        if not multi_worker(cfg):  # (whose workers plan their folds apart, once placed: the group level does it)
            if fold is not None:
                stop_with_parent()  # a job of --fold-jobs ends with its run, from the start
            # before TensorFlow loads: an input error is said at once, and fold jobs train without it held here
            plan = plan_and_train_jobs(cfg, bids_dir, out_dir, fold, verbosity=verbosity)
        if tensorflow_installed():  # optional on JAX and PyTorch (the NumPy input pipeline stands in)
            import_tensorflow()  # its start-up lines held back into the run's log
        from ..evaluation.group import run_group_level

        metrics = run_group_level(cfg, bids_dir, out_dir, fold, verbosity=verbosity, plan=plan)
        _reports("group_reports", cfg, out_dir, metrics is not None)
    finally:
        log.removeHandler(handler)
        handler.close()
    if metrics is None:
        print(f"Fold {fold} done. Outputs: {out_dir / 'group' / f'fold-{fold}'}  Log: {log_dir}")
        return EXIT_OK
    _print_group_summary(metrics, out_dir, log_dir)
    return EXIT_OK


def _reports(name: str, *args) -> None:
    """The HTML reports and logs/CITATION.*: read from the outputs just written. One that cannot be built is
    an error line on stderr (and in the log), but leaves the exit code alone: the outputs are complete, and a
    cluster job that depends on this one must not fail for a figure."""
    from .. import reports

    raise_if_terminated()  # the outputs are done; a swallowed SIGTERM or Ctrl-C stops before the reports
    for message in getattr(reports, name)(*args):
        log.error("report: %s", message)
        print(f"neurocare-bids: error: {message}", file=sys.stderr)


def _print_group_summary(metrics: dict, out_dir: Path, log_dir: Path) -> None:
    def fmt(v):
        return "n/a" if v is None else f"{v:.3f}"

    w, e = metrics["window"], metrics["event"]
    lines = [f"{'fold':>4}  {'test subjects':<24} {'PR-AUC':>7} {'ROC-AUC':>7} {'event F1':>8} {'FP/24h':>7}"]
    for row in metrics["folds"]:
        lines.append(f"{row['fold']:>4}  {', '.join(row['test'])[:24]:<24} {fmt(row['window'].get('pr_auc')):>7} "
                     f"{fmt(row['window'].get('roc_auc')):>7} {fmt(row['event'].get('f1')):>8} "
                     f"{fmt(row['event'].get('fp_per_24h')):>7}")
    lines.append(f"{'all':>4}  {'(pooled windows; events':<24} {fmt(w.get('pr_auc')):>7} {fmt(w.get('roc_auc')):>7} "
                 f"{fmt(e.get('f1')):>8} {fmt(e.get('fp_per_24h')):>7}")
    lines.append(f"      {'averaged per subject)':<24}")
    lines.append(f"Event level (SzCORE): sensitivity {fmt(e.get('sensitivity'))}, precision {fmt(e.get('precision'))}, "
                 f"F1 {fmt(e.get('f1'))}, false positives per 24 h {fmt(e.get('fp_per_24h'))}.")
    single = w.get("unsmoothed") or {}
    lines.append(f"Window level (smoothed scores): PR-AUC {fmt(w.get('pr_auc'))}, ROC-AUC {fmt(w.get('roc_auc'))}, "
                 f"F1 {fmt(w.get('f1'))}; before smoothing PR-AUC {fmt(single.get('pr_auc'))}, "
                 f"ROC-AUC {fmt(single.get('roc_auc'))}.")
    contents = "metrics.json, model/" if (out_dir / "group" / "model").is_dir() else "metrics.json"
    lines.append(f"Outputs: {out_dir / 'group'} ({contents}), {out_dir / 'szcore'}  Log: {log_dir}")
    print("\n".join(lines))


def _validate(bids_dir: Path) -> None:
    from ..io.validation import ValidatorUnavailable, validate_dataset

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


def _export_model(args) -> int:
    from ..training.onnx_export import export_model_folder

    entry = export_model_folder(args.model_dir.absolute())
    if entry.get("File"):  # not for the features preset, which has no network
        print(f"Wrote {args.model_dir / entry['File']} (SHA-256 {entry['SHA256']}, opset {entry['Opset']}, "
              f"largest difference from Keras {entry['MaxAbsDifference']:.1g})")
    classifier = entry.get("Classifier") or {}
    if classifier.get("File"):  # a feature baseline's (stacked or the features preset; a failure was a warning)
        print(f"Wrote {args.model_dir / classifier['File']} (SHA-256 {classifier['SHA256']}, largest difference "
              f"from scikit-learn {classifier['MaxAbsDifference']:.1g})")
    return EXIT_OK


def _demo_data(args) -> int:
    from ..io.demo import make_demo_dataset

    for name in ("subjects", "recordings"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise UsageError(f"--{name} must be at least 1")
    if args.duration is not None and args.duration < 60:
        raise UsageError("--duration must be at least 60 seconds")
    if args.mimics and args.difficulty == "hard":
        raise UsageError("--mimics is for the standard demo; --difficulty hard has its own mimics")
    try:
        recordings = make_demo_dataset(args.output, n_subjects=args.subjects,
                                       recordings_per_subject=args.recordings,
                                       recording_duration=args.duration, sfreq=args.sfreq, seed=args.seed,
                                       seizure_mimics=args.mimics, difficulty=args.difficulty)
    except FileExistsError as exc:
        raise UsageError(str(exc)) from None
    seizures = sum(len(r["seizures"]) for r in recordings)
    hours = sum(r["duration"] for r in recordings) / 3600
    subjects = len({r["subject"] for r in recordings})
    print(f"Demo dataset written to {args.output}: {subjects} subjects, {len(recordings)} recordings "
          f"({hours:.1f} h), {seizures} seizures.")
    return EXIT_OK
