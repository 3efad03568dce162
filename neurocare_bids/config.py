"""The one configuration object: every parameter, its type, default and meaning, in one place.

Defaults < ``--config FILE.toml`` < command-line options. Unknown keys are rejected with a "did you
mean" hint, values are type- and range-checked before anything runs, and the effective configuration
is written to ``OUT/logs/`` with every run so that a result can always be traced to what produced it.
The sections that shape the participant-level outputs are hashed (:func:`Config.output_hash`) and the
hash is stored in each sidecar, so a rerun knows whether an existing output is still up to date.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

from . import __version__
from .errors import ConfigError

# The operating points the group level tunes (postprocessing.objective) and the rules for settings that tie for the
# best validation F1 (postprocessing.ties; evaluation/tuning.py).
OBJECTIVES = ("f1", "alarm")
TIE_RULES = ("centre", "conservative")

# The 19 electrodes of the 10-20 system in the order SzCORE (epilepsy2bids) writes them.
SZCORE_ELECTRODES = [
    "Fp1", "F3", "C3", "P3", "O1", "F7", "T3", "T5", "Fz", "Cz", "Pz",
    "Fp2", "F4", "C4", "P4", "O2", "F8", "T4", "T6",
]  # fmt: skip


NO_LEGACY = object()  # an option that outputs have always recorded


def option(default: Any, doc: str, *, choices: tuple | None = None, minimum: float | None = None,
           maximum: float | None = None, exclusive_minimum: bool = False, legacy: Any = NO_LEGACY) -> Any:
    """A config field with its documentation and constraints attached (read by validation and docs).

    ``legacy``: for an option added after outputs existed, the value they were made with. At that value the
    option is left out of :meth:`Config.output_hash`, so that those outputs stay up to date whatever the
    default is now, and a sidecar or model card that does not mention the option means it
    (:func:`recorded_settings`).
    """
    meta = {"doc": doc, "choices": choices, "minimum": minimum, "maximum": maximum,
            "exclusive_minimum": exclusive_minimum, "legacy": legacy}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class InputConfig:
    """How events are read from each recording's ``events.tsv``."""

    event_type_columns: list[str] = option(
        ["eventType", "trial_type", "value"],
        "Columns of events.tsv holding the event type; the first one present is used "
        "(SzCORE writes eventType, plain BIDS uses trial_type).")
    seizure_prefixes: list[str] = option(
        ["sz", "seizure"],
        "An event whose type starts with one of these (case-insensitive) is a seizure: SzCORE's `sz` and "
        "every HED-SCORE `sz_*` type (`sz_foc_ia`, `sz_gen_m`, ...).")
    background_types: list[str] = option(
        ["bckg", "n/a"],
        "Event types that are known not to be seizures. Any other type is ignored with a warning.")


@dataclass
class MontageConfig:
    """Which channels the model sees and how they are referenced."""

    montage: str = option(
        "average",
        "`average`: the electrodes re-referenced to their common average (SzCORE's `Fp1-Avg`...). "
        "`bipolar`: the 18-channel longitudinal bipolar 'double banana' (CHB-MIT's `FP1-F7`...).",
        choices=("average", "bipolar"))
    electrodes: list[str] = option(
        SZCORE_ELECTRODES,
        "Electrodes of the `average` montage, in output order (10-20 names; T3/T4/T5/T6 and T7/T8/P7/P8 "
        "are synonyms). The `bipolar` montage uses its fixed 18 pairs.")
    allow_missing_channels: bool = option(
        False,
        "Fill an electrode missing from a recording with zeros (warning, recorded in the sidecar) instead "
        "of failing that recording.")


@dataclass
class PreprocessingConfig:
    """Filtering, resampling and normalisation (defaults from the NeuroCare paper)."""

    l_freq: float = option(0.5, "Band-pass low edge in Hz (0 = no high-pass).", minimum=0.0)
    h_freq: float = option(30.0, "Band-pass high edge in Hz (0 = no low-pass).", minimum=0.0)
    filter_order: int = option(4, "Butterworth order of each band edge, applied forward and backward "
                                  "(zero phase, so the effective order doubles; forward only with `causal`).",
                               minimum=1, maximum=10)
    notch: bool = option(True, "Remove power-line noise with zero-phase IIR notches (forward only with "
                               "`causal`).")
    line_freq: float = option(
        50.0, "Mains frequency in Hz used when the recording's sidecar has no PowerLineFrequency.",
        minimum=0.0, exclusive_minimum=True)
    notch_harmonics: bool = option(True, "Also notch the harmonics of the mains frequency below Nyquist.")
    notch_quality: float = option(30.0, "Quality factor Q of each notch (bandwidth = frequency / Q).",
                                  minimum=1.0)
    causal: bool = option(
        False, "Run the band-pass and notches forward only (`sosfilt`, the filter state carried from block to "
               "block) instead of forward and backward: no sample needs later signal, so a model trained on such "
               "windows streams with no filter look-ahead (alarms about 18 s sooner), at the price of the filters' "
               "phase delay (the effective order is then the order given). The model card records it; apply mode "
               "and streaming use the card's setting; outputs and models made before the option existed were zero "
               "phase.", legacy=False)
    sfreq: float = option(
        128.0,
        "Output sampling rate in Hz. 128 Hz keeps everything below 64 Hz, twice the 30 Hz band edge, and "
        "quarters the data of a 512 Hz recording; recordings below it are upsampled.",
        minimum=16.0, maximum=4096.0)
    zscore: bool = option(True, "Normalise each channel to zero mean and unit variance over the recording.")
    block_duration: float = option(
        600.0, "Seconds of signal processed at a time; bounds memory whatever the recording length.",
        minimum=30.0)


@dataclass
class WindowsConfig:
    """How the preprocessed signal is cut into labelled training windows."""

    duration: float = option(4.0, "Window length in seconds (1-10).", minimum=1.0, maximum=10.0)
    overlap: float = option(0.5, "Fraction of a window shared with the next one (0 = none, 0.5 = half).",
                            minimum=0.0, maximum=0.95)
    seizure_overlap: float = option(
        0.5, "A window is labelled seizure when at least this fraction of it lies inside a seizure.",
        minimum=0.0, maximum=1.0, exclusive_minimum=True)


@dataclass
class OutputConfig:
    """How windows are stored."""

    dtype: str = option("float32", "Sample type in the TFRecords (`float16` halves the size).",
                        choices=("float32", "float16"))


@dataclass
class ModelConfig:
    """The seizure detector (group level). Every model shares one signature: n_chans, n_outputs, n_times, sfreq."""

    preset: str = option(
        "neurocare",
        "`neurocare`: the CNN-BiLSTM below. `seed`: the original NeuroCare code's exact model (Conv1D(8) → "
        "LSTM(16) → Dense(16), Adam 1e-4, batch 16) for comparison; it ignores the other model keys. "
        "`features`: the classic baseline (band powers, line length, Hjorth parameters ... → gradient "
        "boosting) on the same windows, folds and post-processing.",
        choices=("neurocare", "seed", "features"))
    encoder: str = option(
        "multichannel",
        "`multichannel`: the first Conv1D reads all channels at once (the NeuroCare design). `per_channel`: the "
        "Conv1D blocks read each channel on its own with weights shared by all channels, and their features are "
        "pooled over channels (mean and maximum) before the LSTM, so the detector does not depend on where a "
        "seizure starts or on the channel order; about 3x slower to train on CPUs (see the documentation, "
        "Performance: ablations).",
        choices=("multichannel", "per_channel"))
    conv_filters: list[int] = option([32, 64, 64], "Filters of each Conv1D block (Conv1D + BatchNorm + ReLU, "
                                                   "then max-pooling and dropout).")
    conv_kernel_size: int = option(7, "Kernel length of the Conv1D layers, in samples.", minimum=1)
    pool_size: int = option(2, "Max-pooling factor after each Conv1D block.", minimum=1)
    lstm_units: list[int] = option([64], "Units of each bidirectional LSTM layer (tanh/sigmoid, no recurrent "
                                         "dropout: keeps the cuDNN kernel). Empty = no LSTM (ablation).")
    bidirectional: bool = option(True, "Run the LSTM layers in both directions.")
    spectral_units: int = option(
        32, "Units of the spectral side branch (0 = none, ablation): each channel's log band powers (delta, "
            "theta, alpha, beta), relative band powers, log variance and log line length, computed inside the "
            "model, summarised by their mean and maximum over channels → BatchNorm → Dense + ReLU, joined to the "
            "LSTM's output before the dense layer.", minimum=0)
    channel_features: int = option(
        32, "Units of the per-channel feature branch (0 = none): the classic features of each channel (log band "
           "powers in eight bands and their shares, variance, line length, Hjorth mobility and complexity, crest "
           "factor, skewness, kurtosis, zero crossings), computed inside the model, read by two Dense + ReLU "
           "layers shared by all channels, then their mean and maximum over channels, joined to the LSTM's "
           "output before the dense layer.", minimum=0)
    stacking: bool = option(
        True, "Stack the CNN-BiLSTM with the feature baseline (the `features` preset, trained on the same windows): "
               "the detector's seizure probability is sigmoid(w · logit(baseline) + (1 − w) · logit(network)), with "
               "w = `stacking_weight`. The `neurocare` preset only; the baseline is saved next to the network as "
               "`features.joblib` and apply mode runs both. At the default training budget the network alone "
               "(false) found more seizures with fewer false alarms on the hard benchmark's design data (three "
               "seeds), but not on its held-out variant, where the stack led the feature baseline by far more "
               "(one seed so far; documentation, Performance).")
    stacking_weight: float = option(
        0.25, "The feature baseline's weight w in the stack (0 = the network alone, 1 = the baseline alone). The "
              "baseline's log-odds span about eight times the network's, so at 0.25 the two weigh about alike. "
              "Fixed, because choosing it per training on two or three validation subjects was noisy (it ranked the "
              "test windows worse on the hard benchmark; documentation, Performance); 0.25 is the weight those "
              "choices settled on most often.", minimum=0.0, maximum=1.0)
    tune_stacking_weight: bool = option(
        False, "Choose w instead from 0, 0.25, 0.5, 0.75 and 1 by the PR-AUC of the inner validation subjects "
               "(never the test fold): worth it with many validation subjects.")
    dense_units: int = option(64, "Units of the fully connected layer before the output.", minimum=1)
    dropout: float = option(0.3, "Dropout rate after each block and before the output.", minimum=0.0,
                            maximum=0.9)
    l2: float = option(1e-4, "L2 weight decay of the Conv1D and Dense kernels.", minimum=0.0)


@dataclass
class TrainingConfig:
    """How each model is trained."""

    loss: str = option("focal", "`focal`: focal loss. `cross_entropy`: cross-entropy with class weights "
                                "(ablation).", choices=("focal", "cross_entropy"))
    focal_gamma: float = option(2.0, "Focal loss focusing parameter gamma (0 = weighted cross-entropy).",
                                minimum=0.0)
    focal_alpha: float = option(0.75, "Focal loss weight of the seizure class (1 - alpha for background).",
                                minimum=0.0, maximum=1.0)
    class_weighting: bool = option(True, "Cross-entropy only: weight classes by inverse frequency.")
    epochs: int = option(30, "Maximum training epochs (early stopping on the inner validation PR-AUC).",
                         minimum=1)
    batch_size: int = option(64, "Windows per training batch.", minimum=1)
    learning_rate: float = option(1e-3, "Adam learning rate.", minimum=0.0, exclusive_minimum=True)
    early_stopping_patience: int = option(6, "Epochs without validation improvement before stopping.",
                                          minimum=1)
    lr_patience: int = option(2, "Epochs without improvement before the learning rate is halved.", minimum=1)
    steps_per_epoch: int = option(0, "Training batches per epoch (0 = one pass over the training windows).",
                                  minimum=0)
    weight_averaging: float = option(
        0.98, "Momentum of a moving average of the weights kept after every training step (Polyak averaging, "
              "in the optimizer). Validation, early stopping and the saved model use the averaged weights, which "
              "vary less from one epoch to the next than the last step's. 0 = off. The `seed` preset never uses it.",
        minimum=0.0, maximum=0.9999)
    input_pipeline: str = option(
        "auto", "How training batches are made: `tf.data` (TensorFlow's input pipeline), `numpy` (NumPy in threads, "
                "without TensorFlow: for Keras on JAX or PyTorch where TensorFlow is not installed), or `auto`: "
                "`tf.data` where TensorFlow is installed, else `numpy`. Both draw the same kinds of batches (the "
                "same sampling and augmentations), with other random numbers.",
        choices=("auto", "tf.data", "numpy"))


@dataclass
class AugmentationConfig:
    """On-the-fly augmentation of the training folds (never of validation or test data)."""

    enabled: bool = option(True, "Master switch (false = no augmentation at all: ablation).")
    seizure_oversampling: bool = option(
        True, "Add windows inside seizures at a denser stride, cut from consecutive stored windows.")
    oversampling_stride: float = option(0.5, "Stride in seconds of the extra seizure windows.", minimum=0.0,
                                        exclusive_minimum=True)
    balanced_sampling: bool = option(True, "Draw seizure and background windows in fixed proportions.")
    seizure_fraction: float = option(0.3, "Fraction of seizure windows in each batch with balanced sampling.",
                                     minimum=0.0, maximum=1.0, exclusive_minimum=True)
    time_shift: bool = option(True, "Shift each window by up to half a stride, cut from its neighbours.")
    amplitude_scale: float = option(0.2, "Random gain of ±this fraction per window and channel (0 = off).",
                                    minimum=0.0, maximum=1.0)
    noise_std: float = option(0.05, "Standard deviation of added Gaussian noise, in z-score units (0 = off).",
                              minimum=0.0)
    channel_dropout: float = option(0.1, "Probability of zeroing each channel (0 = off).", minimum=0.0,
                                    maximum=0.9)
    time_mask: float = option(0.1, "Longest zeroed stretch, as a fraction of the window (0 = off).",
                              minimum=0.0, maximum=0.5)
    mirror: float = option(
        0.5, "Probability of flipping a training window left-right (each channel takes its mirror image's "
             "signal: F3 ↔ F4, Fp1-F7 ↔ Fp2-F8; midline channels stay), so that seizures the training subjects had "
             "on one side are also seen on the other (0 = off; ignored when a channel has no mirror).",
        minimum=0.0, maximum=1.0)
    mixup_alpha: float = option(0.2, "Beta(alpha, alpha) mixup between seizure windows (0 = off).",
                                minimum=0.0)
    spectral_tilt: float = option(
        0.0, "Random change of each training window's spectral slope, as patients' backgrounds differ in slope: "
             "its amplitude spectrum times (f / 10 Hz)^b, b uniform in ±this (the same for all channels), then "
             "rescaled to the window's own power (0 = off).",
        minimum=0.0, maximum=2.0)


@dataclass
class CrossValidationConfig:
    """Subject-wise cross-validation."""

    folds: int = option(10, "Subject-wise folds (leave-one-subject-out when there are fewer subjects).",
                        minimum=2)
    validation_fraction: float = option(
        0.2, "Share of each fold's training subjects held out (at least one) for early stopping, the "
             "learning-rate schedule and threshold tuning. Never the test fold.",
        minimum=0.0, maximum=0.5, exclusive_minimum=True)
    final_model: bool = option(True, "After cross-validation, train the model to apply to new recordings on "
                                     "all subjects (group/model/).")


@dataclass
class PostprocessingConfig:
    """From window probabilities to seizure events (tuned on the inner validation subjects only)."""

    smoothing: int = option(3, "Moving-average length over consecutive windows (1 = none).", minimum=1)
    threshold: float = option(0.5, "Probability above which a window is seizure (when not tuned).",
                              minimum=0.0, maximum=1.0, exclusive_minimum=True)
    min_duration: float = option(10.0, "Shortest event kept, in seconds (when not tuned).", minimum=0.0)
    merge_gap: float = option(30.0, "Events closer than this many seconds are merged.", minimum=0.0)
    tune: bool = option(True, "Choose threshold (0.05-0.95 in steps of 0.05, then log-odds 3.5-16 in steps of "
                              "0.5) and min_duration (0-30 s) on the inner validation subjects.")
    ties: str = option(
        "centre", "Which of the settings that tie for the best validation F1 to take: `centre`, the middle of "
                  "their range (median threshold, then median minimum duration), least likely to be off for a "
                  "new subject whose probabilities sit a little higher or lower; `conservative`, the highest "
                  "threshold and longest minimum duration (the edge of the range; fewer alarms, more missed "
                  "seizures).", choices=TIE_RULES)
    objective: str = option(
        "f1", "The operating point the group level's events, metrics and `PostProcessing` use: `f1`, threshold and "
              "minimum duration for the best SzCORE event F1 (above); `alarm`, threshold, smoothing (1, 2, 3 or 5 "
              "windows) and minimum duration for the soonest alarms (lowest median delay from seizure onset to "
              "alarm over the validation seizures, a missed seizure counting as never) with at most "
              "`max_fp_per_24h` false alarms. Both points are tuned on the inner validation subjects and kept in "
              "`fold.json` and the model card (`OperatingPoints`); `stream` uses the alarm point.",
        choices=OBJECTIVES)
    max_fp_per_24h: float = option(2.0, "False alarms per 24 h the alarm operating point may give on the validation "
                                        "subjects (SzCORE's count, averaged per subject). A few validation hours "
                                        "cannot establish such a rate: the alarm point also records the one-sided "
                                        "95 % bound those hours allow (`fp_per_24h_upper95`; none seen in 8 h "
                                        "allows 9 per 24 h), and the model card says it.", minimum=0.0)
    alarm_latency_slack: float = option(
        2.0, "Seconds by which the alarm operating point may trail the soonest setting: of the settings whose "
             "validation median latency lies within this of the lowest, the most cautious is taken (most seizures "
             "detected, then fewest false alarms, then the highest threshold). The lowest-latency setting sits at "
             "the edge where the validation subjects' background starts raising alarms, which a new subject's "
             "background crosses; one window stride later is what moving off that edge costs. 0 = the soonest "
             "setting.", minimum=0.0)
    centre: bool = option(
        True, "Centre each recording's probabilities on its own background before smoothing and thresholding: "
              "subtract the median log-odds of its windows (seizures are a small share of a recording, so the "
              "median is background). A model scores one person's background higher than another's; without "
              "this, a threshold tuned on the validation subjects lands too low for some test subjects and too "
              "high for others. Needs recordings that are mostly background (long-term monitoring).")


@dataclass
class ExecutionConfig:
    """How and on what the run executes; threads and devices alone change numbers: a training's last digits."""

    participant_label: list[str] = option([], "Subjects to process (without `sub-`); empty = all.")
    session_label: list[str] = option([], "Sessions to process (without `ses-`); empty = all.")
    task_label: list[str] = option([], "Tasks to process (without `task-`); empty = all.")
    skip_bids_validation: bool = option(False, "Do not run bids-validator-deno on the input.")
    work_dir: str = option("", "Scratch folder for intermediate files (empty = a temporary folder).")
    nprocs: int = option(0, "Recordings processed in parallel (0 = one per CPU core).", minimum=0)
    omp_nthreads: int = option(
        0, "Threads of each group-level process for training and predicting: TensorFlow's thread pools, "
        "OpenMP (the feature baseline) and BLAS (0 = every core the process may use; on JAX, XLA's "
        "own CPU threads are not limited). A training is deterministic given the seed *and* this number: "
        "TensorFlow's CPU kernels split their sums by thread, so the same fold trained with 1 thread and with 2 "
        "differs from about the fourth decimal of its probabilities on. Set it to the same value everywhere when "
        "folds run as separate jobs on other cores than a plain run (`--fold K`: HPC array tasks).", minimum=0)
    fold_jobs: int = option(
        1, "Group level: cross-validation folds trained at once, each in its own process (`--fold-jobs`): the "
        "`--fold K` runs of HPC array tasks, started and waited for by one `group` run, which then aggregates. On "
        "CPU machines faster than one process training the folds in turn (1.5 times on 2 cores). Each job trains "
        "with `omp_nthreads` threads, else its share of the cores, on the least busy GPU where there are GPUs, and "
        "holds its own memory (about 4 GiB per fold of the hard benchmark at the default budget). Ignored with "
        "`--fold K`; not with multi-worker training.",
        minimum=1)
    seed: int = option(42, "Random seed for everything that draws random numbers.", minimum=0)
    overwrite: bool = option(False, "Recompute outputs even when they are up to date.")
    reports: bool = option(True, "Write the HTML reports (`sub-<label>.html`, `group.html`); `logs/CITATION.*` is "
                           "always written.")
    fold_onnx: bool = option(True, "Group level: also export each cross-validation fold's models to ONNX "
                             "(`model.onnx`, `model_consecutive.onnx`, a stacked model's `classifier.onnx`), as the "
                             "final model's always are. Off, a fold keeps its Keras and scikit-learn files and its "
                             "`fold.json` says why it has no copy; `neurocare-bids export-model group/fold-K` makes "
                             "one later. Saves about 5 s per fold on a CPU (many short runs: ablations, searches).")
    distribution: str = option("auto", "Training devices: `auto` (all GPUs of the node when more than one), `single`, "
                               "`mirrored` (all GPUs or `cpu_replicas` CPU devices) or `multi-worker` (across the "
                               "tasks of a Slurm job; `--distributed`).",
                               choices=("auto", "single", "mirrored", "multi-worker"))
    cpu_replicas: int = option(0, "Split the CPU into this many logical devices and mirror training over them "
                               "(tests distributed training without GPUs; 0 = off).", minimum=0)
    wandb: str = option("off", "Weights & Biases logging of each training: `off`, `offline` (run files under "
                        "`group/wandb/`, upload later with `wandb sync`) or `online`; needs `pip install wandb`.",
                        choices=("off", "offline", "online"))
    wandb_project: str = option("neurocare-bids", "Weights & Biases project of the runs.")


SECTIONS: dict[str, type] = {
    "input": InputConfig,
    "montage": MontageConfig,
    "preprocessing": PreprocessingConfig,
    "windows": WindowsConfig,
    "output": OutputConfig,
    "model": ModelConfig,
    "training": TrainingConfig,
    "augmentation": AugmentationConfig,
    "cv": CrossValidationConfig,
    "postprocessing": PostprocessingConfig,
    "execution": ExecutionConfig,
}
# The sections whose values change the participant-level outputs (the group-level ones do not).
OUTPUT_SECTIONS = ("input", "montage", "preprocessing", "windows", "output")
GROUP_SECTIONS = ("model", "training", "augmentation", "cv", "postprocessing")


@dataclass
class Config:
    input: InputConfig = field(default_factory=InputConfig)
    montage: MontageConfig = field(default_factory=MontageConfig)
    preprocessing: PreprocessingConfig = field(default_factory=PreprocessingConfig)
    windows: WindowsConfig = field(default_factory=WindowsConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    augmentation: AugmentationConfig = field(default_factory=AugmentationConfig)
    cv: CrossValidationConfig = field(default_factory=CrossValidationConfig)
    postprocessing: PostprocessingConfig = field(default_factory=PostprocessingConfig)
    execution: ExecutionConfig = field(default_factory=ExecutionConfig)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_toml(cls, path: str | Path) -> Config:
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"configuration file not found: {path}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read configuration file {path}: {exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path} is not valid TOML: {exc}") from None
        cfg = cls()
        cfg.update(data, source=str(path))
        return cfg

    def update(self, data: dict[str, Any], *, source: str = "configuration") -> None:
        """Apply ``{section: {key: value}}``; reject unknown names and ill-typed values."""
        for section_name, values in data.items():
            if section_name not in SECTIONS:
                raise ConfigError(f"{source}: unknown section [{section_name}]"
                                  f"{_did_you_mean(section_name, SECTIONS)}")
            if not isinstance(values, dict):
                raise ConfigError(f"{source}: [{section_name}] must be a table of key = value pairs")
            section = getattr(self, section_name)
            fields = {f.name: f for f in dataclasses.fields(section)}
            hints = get_type_hints(type(section))
            for key, value in values.items():
                if key not in fields:
                    raise ConfigError(f"{source}: unknown key '{key}' in [{section_name}]"
                                      f"{_did_you_mean(key, fields)}")
                setattr(section, key, _coerce(f"{section_name}.{key}", value, hints[key], source))
        self.validate()

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        """Check every value's constraints and the rules that tie values together."""
        for section_name in SECTIONS:
            section = getattr(self, section_name)
            for f in dataclasses.fields(section):
                _check_constraints(f"{section_name}.{f.name}", getattr(section, f.name), f.metadata)
        p, w = self.preprocessing, self.windows
        nyquist = p.sfreq / 2
        if p.h_freq and p.h_freq >= nyquist:
            raise ConfigError(f"preprocessing.h_freq ({p.h_freq:g} Hz) must be below the Nyquist frequency "
                              f"of preprocessing.sfreq ({nyquist:g} Hz)")
        if p.l_freq and p.h_freq and p.l_freq >= p.h_freq:
            raise ConfigError(f"preprocessing.l_freq ({p.l_freq:g}) must be below h_freq ({p.h_freq:g})")
        n = w.duration * p.sfreq
        if not math.isclose(n, round(n), abs_tol=1e-9):
            raise ConfigError(f"windows.duration × preprocessing.sfreq must be a whole number of samples "
                              f"({w.duration:g} s × {p.sfreq:g} Hz = {n:g})")
        if self.window_stride_samples < 1:
            raise ConfigError("windows.overlap leaves a stride of less than one sample")
        if p.block_duration < 2 * w.duration:
            raise ConfigError("preprocessing.block_duration must be at least two windows long")
        if self.montage.montage == "average" and len(set(self.montage.electrodes)) < 2:
            raise ConfigError("montage.electrodes needs at least two distinct electrodes")
        for name in ("participant_label", "session_label", "task_label"):
            for label in getattr(self.execution, name):
                if not _BIDS_LABEL.fullmatch(label):
                    raise ConfigError(f"invalid {name.replace('_', ' ')} '{label}': BIDS labels are letters "
                                      "and digits only")

    # ------------------------------------------------------------------ derived values
    @property
    def window_samples(self) -> int:
        return round(self.windows.duration * self.preprocessing.sfreq)

    @property
    def window_stride_samples(self) -> int:
        return round(self.window_samples * (1 - self.windows.overlap))

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, dict[str, Any]]:
        return {name: dataclasses.asdict(getattr(self, name)) for name in SECTIONS}

    def to_toml(self, *, with_docs: bool = True) -> str:
        lines = [f"# NeuroCare-BIDS {__version__} configuration.",
                 "# Every key is optional; see the documentation's Configuration page (docs/configuration.md).", ""]
        for name, cls in SECTIONS.items():
            section = getattr(self, name)
            if with_docs:
                lines.append(f"# {cls.__doc__.strip().splitlines()[0]}")
            lines.append(f"[{name}]")
            for f in dataclasses.fields(section):
                if with_docs:
                    lines.append(f"# {f.metadata['doc']}")
                lines.append(f"{f.name} = {_toml_value(getattr(section, f.name))}")
            lines.append("")
        return "\n".join(lines)

    def group_settings(self) -> dict[str, dict[str, Any]]:
        """The sections that shape a group-level result (what a finished fold is checked against)."""
        return {name: dataclasses.asdict(getattr(self, name)) for name in GROUP_SECTIONS}

    def output_hash(self) -> str:
        """Hash of everything that shapes a participant-level output, software version included (options
        with a ``legacy`` value only when they differ from it)."""
        payload = {}
        for name in OUTPUT_SECTIONS:
            section = getattr(self, name)
            payload[name] = {f.name: getattr(section, f.name) for f in dataclasses.fields(section)
                             if f.metadata["legacy"] is NO_LEGACY or getattr(section, f.name) != f.metadata["legacy"]}
        payload["version"] = __version__
        blob = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def recorded_settings(section_name: str, values: dict[str, Any]) -> dict[str, Any]:
    """A section's settings as a sidecar or model card records them, with each option it does not mention set
    to the ``legacy`` value it was made with (not today's default): a zero-phase model made before
    ``preprocessing.causal`` existed stays zero-phase."""
    fields = dataclasses.fields(SECTIONS[section_name])
    return {**{f.name: f.metadata["legacy"] for f in fields if f.metadata["legacy"] is not NO_LEGACY}, **values}


def reference_markdown(heading_level: int = 3) -> str:
    """The configuration reference in Markdown, read from the dataclasses above: one heading and one table per
    section (key, type, default, allowed values, meaning). The documentation's Configuration page is this text,
    generated at every build (docs/hooks.py), so it cannot drift from the code."""
    hashes = {**{name: "Part of the configuration hash: changing a key recomputes the participant level's "
                       "outputs" for name in OUTPUT_SECTIONS},
              **{name: "Group level: a finished fold is checked against these keys; the participant level's "
                       "outputs stay up to date" for name in GROUP_SECTIONS}}
    out = []
    for name, cls in SECTIONS.items():
        hints = get_type_hints(cls)
        summary = " ".join(line.strip() for line in (cls.__doc__ or "").strip().split("\n\n")[0].splitlines())
        out += [f"{'#' * heading_level} `[{name}]`", "",
                f"{summary} {hashes.get(name, 'Not part of the configuration hash')}.", "",
                "| key | type | default | allowed | meaning |", "| --- | --- | --- | --- | --- |"]
        for f in dataclasses.fields(cls):
            default = f.default_factory() if f.default is dataclasses.MISSING else f.default  # type: ignore[misc]
            doc = f.metadata["doc"].replace("|", "\\|")
            out.append(f"| `{name}.{f.name}` | {_type_name(hints[f.name])} | `{_toml_value(default)}` | "
                       f"{_allowed(f.metadata)} | {doc} |")
        out.append("")
    return "\n".join(out)


def _type_name(hint: Any) -> str:
    if get_origin(hint) is list:
        return f"list of {_type_name(get_args(hint)[0])}"
    return {bool: "boolean", int: "integer", float: "number", str: "string"}.get(hint, str(hint))


def _allowed(meta) -> str:
    """The constraints that validation enforces, in words (the same metadata :func:`_check_constraints` reads)."""
    if meta["choices"]:
        return ", ".join(f"`{c}`" for c in meta["choices"])
    lo, hi = meta["minimum"], meta["maximum"]
    if lo is None and hi is None:
        return ""
    low = None if lo is None else f"{'>' if meta['exclusive_minimum'] else '≥'} {lo:g}"
    high = None if hi is None else f"≤ {hi:g}"
    return " and ".join(x for x in (low, high) if x)


# ---------------------------------------------------------------------- helpers
_BIDS_LABEL = re.compile(r"[A-Za-z0-9]+")


def _did_you_mean(name: str, candidates) -> str:
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else f" (known: {', '.join(sorted(candidates))})"


def _coerce(key: str, value: Any, hint: Any, source: str) -> Any:
    origin = get_origin(hint)
    if origin is list:
        (item_type,) = get_args(hint)
        if isinstance(value, str):  # a single label is accepted where a list is expected
            value = [value]
        if not isinstance(value, list):
            raise ConfigError(f"{source}: {key} must be a list, got {value!r}")
        return [_coerce(key, v, item_type, source) for v in value]
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{source}: {key} must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{source}: {key} must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(f"{source}: {key} must be a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{source}: {key} must be a string, got {value!r}")
        return value
    raise TypeError(f"unsupported config type {hint!r} for {key}")  # a bug in this module


def _check_constraints(key: str, value: Any, meta) -> None:
    choices = meta.get("choices")
    if choices and value not in choices:
        raise ConfigError(f"{key} must be one of {', '.join(map(str, choices))}; got '{value}'"
                          f"{_did_you_mean(str(value), choices) if isinstance(value, str) else ''}")
    lo, hi = meta.get("minimum"), meta.get("maximum")
    if lo is not None and (value < lo or (meta.get("exclusive_minimum") and value == lo)):
        relation = "greater than" if meta.get("exclusive_minimum") else "at least"
        raise ConfigError(f"{key} must be {relation} {lo:g}; got {value:g}")
    if hi is not None and value > hi:
        raise ConfigError(f"{key} must be at most {hi:g}; got {value:g}")


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} to TOML")
