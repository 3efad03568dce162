"""Argument parsers. Usage errors raise :class:`UsageError` (exit 64) instead of argparse's exit 2."""

from __future__ import annotations

import argparse
from pathlib import Path

from .. import __version__
from ..errors import EXIT_CODES, UsageError

LEVELS = ("participant", "group")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # noqa: D401 - argparse API
        raise UsageError(f"{message} (see --help)")


def _exit_codes_epilog() -> str:
    return "exit codes:\n" + "\n".join(f"  {code:>3}  {text}" for code, text in EXIT_CODES.items())


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="neurocare-bids",
        description="NeuroCare-BIDS: epileptic seizure detection in scalp EEG stored as BIDS. The participant "
                    "level turns each EEG recording into preprocessed, labelled windows (TFRecord); the group "
                    "level trains and evaluates the detector; 'participant --model MODEL' applies a trained model. "
                    "Also: 'neurocare-bids demo-data DIR' writes a synthetic demo dataset, 'neurocare-bids "
                    "stream FILE --model MODEL' replays a recording through the real-time detector, 'neurocare-bids "
                    "export-model MODEL_DIR' exports a trained model folder to ONNX.",
        epilog=_exit_codes_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("bids_dir", type=Path, help="root of the input BIDS dataset (never written to)")
    parser.add_argument("output_dir", type=Path, help="root of the output BIDS-derivative dataset")
    parser.add_argument("analysis_level", metavar="{participant,group}", help="processing stage to run")

    sel = parser.add_argument_group("selecting data")
    sel.add_argument("--participant_label", "--participant-label", nargs="+", metavar="LABEL",
                     help="subjects to process, with or without 'sub-' (default: all)")
    sel.add_argument("--session_label", "--session-label", nargs="+", metavar="LABEL",
                     help="sessions to process, with or without 'ses-' (default: all)")
    sel.add_argument("--task_label", "--task-label", nargs="+", metavar="LABEL",
                     help="tasks to process, with or without 'task-' (default: all)")
    sel.add_argument("--skip_bids_validator", "--skip-bids-validation", action="store_true", default=None,
                     dest="skip_bids_validation", help="do not run bids-validator-deno on the input")

    group = parser.add_argument_group("group level")
    group.add_argument("--fold", type=int, metavar="K",
                       help="train and test only cross-validation fold K (one HPC array task per fold); a "
                            "later plain group run trains any missing fold and aggregates")
    group.add_argument("--fold-jobs", "--fold_jobs", type=int, metavar="N", dest="fold_jobs",
                       help="train N folds at once, each as its own --fold K process (with --omp-nthreads, else "
                            "its share of the cores), then aggregate; faster on CPU machines (default: 1)")

    apply = parser.add_argument_group("applying a trained model (participant level)")
    apply.add_argument("--model", type=Path, metavar="MODEL",
                       help="apply this trained model (a group level's group/model/ folder, or the model file in "
                            "it) instead of writing training windows: seizure events and probabilities per recording")
    apply.add_argument("--engine", default="onnx", metavar="{onnx,keras}",
                       help="with --model: run its network with ONNX Runtime (model.onnx: fast start, no TensorFlow; "
                            "CUDA with onnxruntime-gpu) or Keras (model.keras, TensorFlow); default: onnx")

    run = parser.add_argument_group("running")
    run.add_argument("--config", type=Path, metavar="FILE.toml",
                     help="configuration file (see --print-config for every key); CLI options override it")
    run.add_argument("-w", "--work-dir", "--work_dir", type=Path, dest="work_dir", metavar="DIR",
                     help="scratch folder for intermediate files (default: a temporary folder)")
    run.add_argument("--nprocs", "--n_cpus", "--n-cpus", type=int, metavar="N", dest="nprocs",
                     help="recordings processed in parallel (default: one per CPU core)")
    run.add_argument("--omp-nthreads", "--omp_nthreads", type=int, metavar="N", dest="omp_nthreads",
                     help="group level: threads of each process for training and predicting (default: every core; "
                          "the same N makes fold jobs on other cores equal a plain run)")
    run.add_argument("--seed", type=int, metavar="N", help="random seed (default: 42)")
    run.add_argument("--overwrite", action="store_true", default=None,
                     help="recompute outputs even when they are up to date")
    group.add_argument("--distributed", action="store_true", default=None,
                       help="train across the tasks of a multi-node Slurm job (MultiWorkerMirroredStrategy); "
                            "all GPUs of one node are used without it")
    run.add_argument("--no-reports", "--no_reports", action="store_false", default=None, dest="reports",
                     help="do not write the HTML reports (faster on many short jobs); CITATION.* is still written")
    run.add_argument("--wandb", choices=("off", "offline", "online"), metavar="{off,offline,online}",
                     help="Weights & Biases logging of the group level's trainings (default: off; needs wandb)")
    run.add_argument("--print-config", action="store_true",
                     help="print the effective configuration as TOML and exit")
    run.add_argument("-v", "--verbose", action="count", default=0,
                     help="more messages (-v: progress, -vv: debug, tracebacks and TensorFlow's own messages)")
    run.add_argument("--version", action="version", version=f"NeuroCare-BIDS {__version__}")
    return parser


def build_stream_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="neurocare-bids stream",
                     description="Replay a recording through the streaming detector as if it were live (FILE), "
                                 "or run it on a live Lab Streaming Layer EEG stream (--lsl NAME), and print each "
                                 "seizure as soon as it is detected.",
                     epilog=_exit_codes_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file", type=Path, nargs="?", help="EEG file (.edf, .bdf, .vhdr, .set) to replay")
    parser.add_argument("--model", type=Path, required=True, metavar="MODEL",
                        help="trained model folder (a group level's group/model/)")
    parser.add_argument("--realtime", action="store_true", help="feed the samples at the speed they were recorded")
    parser.add_argument("--speed", type=float, default=1.0, metavar="X",
                        help="with --realtime: X times faster than recorded (default: 1)")
    parser.add_argument("--chunk", type=float, metavar="SECONDS",
                        help="seconds of samples per feed (default: 1 with --realtime, else 10)")
    parser.add_argument("--calibration", type=float, default=60.0, metavar="SECONDS",
                        help="seconds collected before the first window is scored (running z-score; default: 60)")
    parser.add_argument("--line-freq", type=float, metavar="HZ",
                        help="mains frequency when the recording has no BIDS sidecar saying it (default: the "
                             "model's)")
    parser.add_argument("--engine", default="onnx", metavar="{onnx,keras}",
                        help="run the network with ONNX Runtime (model.onnx, no TensorFlow) or Keras (model.keras); "
                             "default: onnx")
    parser.add_argument("--operating-point", choices=("alarm", "f1"),
                        help="the model card's post-processing to detect with: 'alarm', tuned for the soonest "
                             "alarms within postprocessing.max_fp_per_24h false alarms, or 'f1', tuned for SzCORE's "
                             "event F1 (default: alarm when the card has it)")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object per line: kind (start, alarm, event, end), onset, duration, "
                             "confidence, detected_at, latency, wall_clock")
    live = parser.add_argument_group("live input (Lab Streaming Layer), instead of FILE")
    live.add_argument("--lsl", metavar="NAME",
                      help="connect to the LSL EEG stream of this name and detect until SIGINT/SIGTERM or until it "
                           "falls silent")
    live.add_argument("--lsl-timeout", type=float, default=10.0, metavar="SECONDS",
                      help="wait this long for the stream to appear, and stop once it has sent nothing for this "
                           "long (default: 10)")
    live.add_argument("--alarm-outlet", default="neurocare-alarms", metavar="NAME",
                      help="LSL marker stream (one string channel) each alarm and event is pushed to, as the JSON "
                           "object --json prints (default: neurocare-alarms)")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more messages")
    return parser


def build_demo_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="neurocare-bids demo-data",
                     description="Write the deterministic synthetic demo dataset (BIDS Siena layout).")
    parser.add_argument("output", type=Path, help="folder to create (must be empty or absent)")
    parser.add_argument("--subjects", type=int, help="number of subjects (default: 6; hard: 8)")
    parser.add_argument("--recordings", type=int, help="recordings per subject (default: 2; hard: 4)")
    parser.add_argument("--duration", type=float, help="seconds per recording (default: 1200; hard: 3600)")
    parser.add_argument("--sfreq", type=float, default=256.0, help="sampling rate in Hz (default: 256)")
    parser.add_argument("--seed", type=int, default=42, help="random seed (default: 42)")
    parser.add_argument("--mimics", action="store_true",
                        help="harder data: non-epileptic slow-wave bursts and weaker seizures")
    parser.add_argument("--difficulty", choices=("standard", "hard"), default="standard",
                        help="'hard': the benchmark to judge a detector by (subtle focal seizures, patients "
                             "whose background differs, sleep and the mimics of a monitoring unit; 8 subjects x "
                             "4 h by default)")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more messages")
    return parser


def build_export_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="neurocare-bids export-model",
                     description="Export a trained model folder's Keras model to ONNX (model.onnx beside it, checked "
                                 "against Keras) and record it in the folder's model_card.json (or fold.json). "
                                 "The group level does this itself; this command is for folders made before, or "
                                 "whose export failed.",
                     epilog=_exit_codes_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", type=Path, metavar="MODEL_DIR",
                        help="a group level's group/model/ folder, or one fold's group/fold-K/")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more messages")
    return parser
