"""Apply mode: a trained model (``group/model/``) → seizure events and probabilities for new recordings.

``neurocare-bids BIDS_DIR OUT participant --model MODEL``. Each recording is preprocessed exactly as the
model's training windows were (the model card records montage, filters, rate, window and sample type),
in the same two passes as the participant level, minus the TFRecords:

1. read blocks → resample → band-pass + notch (zero phase, or causal when the card says so) → montage
   (``preprocessing.participant.spool_block``, blocks in threads), accumulating the per-channel statistics and
   spooling float32 samples to the work folder;
2. z-score with the whole-recording statistics, cut the windows as strided views of the spool (no
   copies, no per-window Python), and predict them in batches on every CPU.

The window probabilities are post-processed with the model's own tuned threshold, minimum duration,
smoothing and merge gap. Outputs per recording: ``*_desc-neurocare_events.tsv`` (SzCORE columns) and its
sidecar, ``*_desc-seizureprob_timeseries.tsv.gz`` and its sidecar, and ``OUT/szcore/`` (the SzCORE tree).

The network runs on ONNX Runtime (``model.onnx``, exported by the group level and checked against its
model card) unless ``--engine keras`` is asked for: ONNX Runtime avoids TensorFlow's start-up, which alone
would take longer than the rest of the work on a 6-hour recording, and runs every layer the presets use.
"""

from __future__ import annotations

import gzip
import json
import logging
import math
import os
import threading
import time
import traceback
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

import numpy as np

from .. import __version__
from ..config import Config, MontageConfig, PreprocessingConfig, recorded_settings
from ..errors import (EXIT_DATA, EXIT_NO_INPUT, ConfigError, DataError, NeuroCareError, OutputError, UsageError,
                      raise_if_terminated)
from ..io.bids_input import Recording
from ..io.derivatives import APP_NAME, CARD_FORMAT
from ..io.fsutils import atomic_write, crc32c_file, remove_stale_temporaries, sha256_file
from ..io.signal_reader import SignalSource
from ..preprocessing.filters import RunningStats, SignalPlan, block_bounds, causal_filter, design_plan
from ..preprocessing.montage import Montage, build_montage
from ..preprocessing.participant import (available_cpus, channel_quality, check_sidecar_rate, limit_threads,
                                         log_result, mains_frequency, open_mapped, ordered_map, output_clashes,
                                         spool_block, zscore_scale)
from ..preprocessing.quality import RawChannelStats
from .postprocess import Event, centre_probabilities, event_settings, probabilities_to_events, smooth
from .szcore import export_tree, write_events_tsv

log = logging.getLogger("neurocare")

WINDOWS_PER_TASK = 256  # windows read, z-scored and predicted by one task (~10 MB of samples)
ENGINES = ("onnx", "keras")  # how the network runs; a features-preset model always runs as "features"
DEFAULT_ENGINE = "onnx"
ONNX_BATCH = 64  # windows per ONNX Runtime call: its intermediate tensors stay small (64 measured ~10 % faster than 256)


class ModelError(NeuroCareError):
    """``--model`` is not a usable model folder: 66 when it (or a file in it) is missing, else 65 (damaged,
    incomplete, or made by an incompatible version)."""

    exit_code = EXIT_DATA


# ---------------------------------------------------------------------- the model and its card
@dataclass
class TrainedModel:
    """A model folder, checked and loaded: what apply mode and streaming need to redo its preprocessing."""

    folder: Path
    card: dict
    model_file: Path
    channels: list[str]
    sfreq: float
    window_samples: int
    stride_samples: int
    window_dtype: str  # "float32" or "float16": how the training windows were stored
    montage: MontageConfig
    preprocessing: PreprocessingConfig
    postprocessing: dict
    engine: str  # "onnx", "keras" or "features"; "… + features" when the baseline is stacked with the network
    _predict: object = field(repr=False, default=None)
    operating_points: dict = field(default_factory=dict)  # the card's tuned points by name ("f1", "alarm")
    operating_point: str = "card"  # which one `postprocessing` is: the card's PostProcessing until switched
    consecutive_graph: bool = False  # runs of consecutive windows go to the card's model_consecutive.onnx
    onnx_classifier: bool = False  # the stacked feature baseline's classifier runs from the card's classifier.onnx

    def use_operating_point(self, name: str | None = None) -> str:
        """Post-process with the card's operating point ``name`` (``"alarm"`` or ``"f1"``; None: the alarm point
        when the card has one, else its PostProcessing). Returns the name of the point now in use."""
        if name is None:
            name = "alarm" if "alarm" in self.operating_points else None
        if name is None:
            return self.operating_point
        if name not in self.operating_points:
            raise UsageError(f"the model card has no '{name}' operating point (it has: "
                             f"{', '.join(sorted(self.operating_points)) or 'none; retrain with this version'})")
        self.postprocessing = dict(self.operating_points[name])
        self.operating_point = name
        return name

    @property
    def window_duration(self) -> float:
        return self.window_samples / self.sfreq

    @property
    def window_stride(self) -> float:
        return self.stride_samples / self.sfreq

    def predict(self, windows: np.ndarray, threads: int = 1, consecutive: bool = False) -> np.ndarray:
        """Seizure probability (float64) of each ``(n, window_samples, n_channels)`` z-scored window.

        ``consecutive``: the windows are one run, each ``stride_samples`` after the previous (as apply mode cuts
        them), which lets the ONNX engine use the card's consecutive-window graph when it has one (the same
        probabilities to 1e-5, for less work)."""
        if len(windows) == 0:
            return np.zeros(0)
        return np.asarray(self._predict(windows, threads, consecutive), dtype=np.float64)

    def montage_for(self, ch_names: list[str], allow_missing: bool = False) -> Montage:
        """The model's montage on a recording's channels; :class:`DataError` when electrodes are missing."""
        cfg = MontageConfig(montage=self.montage.montage, electrodes=list(self.montage.electrodes),
                            allow_missing_channels=allow_missing)
        try:
            montage = build_montage(ch_names, cfg)
        except DataError as exc:
            raise DataError(f"cannot apply the model: {exc}") from None
        if montage.names != self.channels:  # the card's electrodes always give its channels
            raise DataError(f"the montage gives {montage.names[:3]}..., the model expects "
                            f"{self.channels[:3]}...")
        return montage

    def plan_for(self, sfreq_in: float, line_freq: float | None) -> SignalPlan:
        """The filters for a recording at ``sfreq_in``; :class:`DataError` when the rate is too low."""
        check_rate(self, sfreq_in)
        return design_plan(sfreq_in, self.preprocessing, line_freq)

    def describe(self) -> dict:
        """How the outputs name the model that made them."""
        return {"Folder": str(self.folder), "ModelFile": self.model_file.name,
                "ModelCRC32C": crc32c_file(self.model_file), "Version": self.card.get("Version"),
                "Preset": self.card.get("Preset"), "TrainingSubjects": self.card.get("TrainingSubjects", []),
                "Engine": self.engine,
                **({"ONNXSHA256": self.card["ONNX"]["SHA256"]} if self.engine.startswith("onnx") else {}),
                **({"ONNXConsecutiveSHA256": self.card["ONNX"]["Consecutive"]["SHA256"]}
                   if self.engine.startswith("onnx") and self.consecutive_graph else {}),
                **({"ONNXClassifierSHA256": self.card["ONNX"]["Classifier"]["SHA256"]} if self.onnx_classifier else {}),
                **({"BaselineWeight": self.card["Stacking"]["BaselineWeight"]} if self.card.get("Stacking") else {})}


def check_rate(model: TrainedModel, sfreq_in: float) -> None:
    """:class:`DataError` unless the input's Nyquist frequency lies above the model's band-pass upper edge
    (without a low-pass: unless the input rate is at least the model's), so that the band is all there."""
    h_freq = model.preprocessing.h_freq
    if h_freq > 0 and not sfreq_in > 2 * h_freq:
        raise DataError(f"sampling rate {sfreq_in:g} Hz is too low for the model, which was trained on "
                        f"{model.preprocessing.l_freq:g}-{h_freq:g} Hz: it needs more than {2 * h_freq:g} Hz")
    if h_freq <= 0 and sfreq_in < model.sfreq:
        raise DataError(f"sampling rate {sfreq_in:g} Hz is too low for the model, which was trained on "
                        f"signals at {model.sfreq:g} Hz without low-pass filter")


def load_model(path: str | Path, engine: str = DEFAULT_ENGINE) -> TrainedModel:
    """Check a model folder (or its model file) and load the model; :class:`ModelError` if unusable."""
    engine = check_engine(engine)
    path = Path(path)
    folder = path.parent if path.is_file() else path
    if not folder.is_dir():
        raise ModelError(f"model folder {path} does not exist (give the group level's group/model/ folder)",
                         EXIT_NO_INPUT)
    card_path = folder / "model_card.json"
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"{folder} is not a complete model folder: model_card.json is missing (the group "
                         "level writes it last; rerun it)", EXIT_NO_INPUT) from None
    except (OSError, ValueError) as exc:
        raise ModelError(f"{card_path} is unreadable ({exc})") from None
    if not isinstance(card, dict):
        raise ModelError(f"{card_path} is not a model card")
    _check_versions(card, card_path)
    try:
        spec = _spec_from_card(card, folder)
    except (KeyError, TypeError, ValueError, ConfigError) as exc:
        raise ModelError(f"{card_path} is incomplete or damaged ({type(exc).__name__}: {exc})") from None
    if path.is_file() and path.resolve() != spec.model_file.resolve():
        raise ModelError(f"{path} is not the model its card describes ({spec.model_file.name})")
    if not spec.model_file.is_file():
        raise ModelError(f"{folder} is not a complete model folder: {spec.model_file.name} is missing",
                         EXIT_NO_INPUT)
    _load_weights(spec, engine)
    return spec


def check_engine(engine: str) -> str:
    """The engine to run the network with; :class:`UsageError` for one that does not exist (any more)."""
    if engine == "auto":  # before ONNX Runtime: "NumPy when it can, else Keras"; kept for existing scripts
        return DEFAULT_ENGINE
    if engine == "numpy":
        raise UsageError("the NumPy engine was removed: use --engine onnx (the default, ONNX Runtime) or "
                         "--engine keras")
    if engine not in ENGINES:
        raise UsageError(f"unknown engine '{engine}' (choose {' or '.join(ENGINES)})")
    return engine


def _check_versions(card: dict, card_path: Path) -> None:
    made_by = str(card.get("Version", "unknown"))
    fmt = card.get("CardFormat")
    if fmt is None:
        raise ModelError(f"{card_path} was written by NeuroCare-BIDS {made_by}, before model cards recorded "
                         "their preprocessing: retrain the model (group level) with this version")
    if fmt != CARD_FORMAT:
        raise ModelError(f"{card_path} has card format {fmt}; NeuroCare-BIDS {__version__} reads format "
                         f"{CARD_FORMAT} (made by version {made_by}): use a matching NeuroCare-BIDS version")
    if _major(made_by) > _major(__version__):
        raise ModelError(f"{card_path} was made by NeuroCare-BIDS {made_by}, a newer major version than this "
                         f"one ({__version__}): upgrade NeuroCare-BIDS")


def _major(version: str) -> int:
    try:
        return int(version.split(".")[0])
    except ValueError:
        return -1


def _spec_from_card(card: dict, folder: Path) -> TrainedModel:
    inputs, sections, post = card["Input"], card["Preprocessing"], card["PostProcessing"]
    cfg = Config()
    cfg.update({name: recorded_settings(name, sections[name]) for name in ("montage", "preprocessing", "windows")},
               source=str(folder / "model_card.json"))
    sfreq = float(inputs["SamplingFrequency"])
    window = int(inputs["WindowSamples"])
    stride = int(round(float(inputs["WindowStride"]) * sfreq))
    if window < 1 or not 1 <= stride or not math.isclose(cfg.preprocessing.sfreq, sfreq):
        raise ValueError("window geometry and sampling rate disagree")
    params = _postprocessing(post)
    points = {str(name): _postprocessing(point) for name, point in (card.get("OperatingPoints") or {}).items()}
    dtype = sections.get("output", {}).get("dtype", "float32")
    if dtype not in ("float32", "float16"):
        raise ValueError(f"window dtype {dtype}")
    if Path(str(card["ModelFile"])).name != card["ModelFile"]:
        raise ValueError(f"ModelFile {card['ModelFile']!r} is not a file name in the model folder")
    return TrainedModel(folder, card, folder / str(card["ModelFile"]), [str(c) for c in inputs["Channels"]],
                        sfreq, window, stride, dtype, cfg.montage, cfg.preprocessing, params, "",
                        operating_points=points)


def _postprocessing(post: dict) -> dict:
    """The settings of a PostProcessing (or OperatingPoints) entry that detection uses, type-checked."""
    params = {"threshold": float(post["threshold"]), "min_duration": float(post["min_duration"]),
              "merge_gap": float(post["merge_gap"]), "smoothing": int(post["smoothing"]),
              # cards from before centring existed were tuned on uncentred probabilities
              "centre": bool(post.get("centre", False))}
    if not 0 < params["threshold"] <= 1 or params["smoothing"] < 1 or params["min_duration"] < 0:
        raise ValueError(f"post-processing settings out of range: {params}")
    return params


def _load_weights(spec: TrainedModel, engine: str) -> None:
    _load_network(spec, engine)
    stacking = spec.card.get("Stacking")
    if stacking:  # the feature baseline stacked with the network (group.py, stacking.py)
        _stack_baseline(spec, stacking)


def _stack_baseline(spec: TrainedModel, stacking: dict) -> None:
    from ..training.features import window_features
    from .stacking import combine

    try:
        weight = float(stacking["BaselineWeight"])
        path = spec.folder / Path(str(stacking["BaselineFile"])).name
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"{spec.folder / 'model_card.json'}: its Stacking entry is damaged "
                         f"({type(exc).__name__}: {exc})") from None
    if not 0.0 <= weight <= 1.0:
        raise ModelError(f"{spec.folder / 'model_card.json'}: BaselineWeight {weight} lies outside [0, 1]")
    classify = _feature_classifier(spec, path, spec.engine == "onnx")
    network = spec._predict
    spec._predict = lambda x, threads, consecutive=False: combine(
        network(x, threads, consecutive),
        classify(window_features(np.asarray(x, np.float32), spec.sfreq, n_threads=threads)),
        weight)
    spec.engine = f"{spec.engine} + features"


def _feature_classifier(spec: TrainedModel, path: Path, use_onnx: bool):
    """The feature baseline's classifier (features → seizure probabilities): from the card's ``classifier.onnx``
    when ``use_onnx`` and it serves, else from its joblib file ``path``; ``spec.onnx_classifier`` says which."""
    from ..training.features import n_features

    classify = _onnx_classifier(spec, n_features(len(spec.channels))) if use_onnx else None
    spec.onnx_classifier = classify is not None
    return classify or _pickled_classifier(spec, path)


def _pickled_classifier(spec: TrainedModel, path: Path):
    """The feature baseline's classifier from its joblib file (scikit-learn; a pickle runs code: trusted folders)."""
    from ..training.baseline import FeatureBaseline

    if not path.is_file():
        raise ModelError(f"{spec.folder} is not a complete model folder: {path.name} is missing", EXIT_NO_INPUT)
    try:
        baseline = FeatureBaseline.load(path)
    except Exception as exc:  # joblib/pickle raise many kinds for a damaged file
        raise ModelError(f"{path} cannot be loaded ({type(exc).__name__}: {exc})") from None
    if baseline.n_channels not in (None, len(spec.channels)):
        raise ModelError(f"{path} was trained on {baseline.n_channels} channels, the card lists {len(spec.channels)}")
    return baseline.predict_proba_features


def _onnx_classifier(spec: TrainedModel, n_features: int):
    """The feature baseline's classifier from the card's ``classifier.onnx`` on ONNX Runtime (no scikit-learn, no
    pickle), or None when the card names none (a model exported before 2026-12-04) or the file is not the one it
    names: then the joblib file serves, with a warning for an altered or missing copy."""
    from ..training.baseline_onnx import log_odds_to_probability

    onnx = spec.card.get("ONNX")
    entry = onnx.get("Classifier") if isinstance(onnx, dict) else None
    if not isinstance(entry, dict) or entry.get("File") is None:
        return None
    try:
        name, expected = str(entry["File"]), str(entry["SHA256"]).lower()
        input_name, output_name = str(entry["Input"]), str(entry["Output"])
    except KeyError as exc:
        log.warning("%s: the ONNX entry's Classifier part is damaged (%s missing): using the joblib file",
                    spec.folder / "model_card.json", exc)
        return None
    path = spec.folder / Path(name).name
    problem = _copy_problem(path, expected)
    if problem:
        log.warning("%s is %s: using the joblib file (the same probabilities; 'neurocare-bids export-model %s' "
                    "rewrites it)", path, problem, spec.folder)
        return None
    import onnxruntime as ort

    try:  # one thread: apply's tasks call it side by side
        session = ort.InferenceSession(str(path), _session_options(ort, 1), providers=["CPUExecutionProvider"])
        shape = session.get_inputs()[0].shape
    except Exception as exc:  # noqa: BLE001 - ONNX Runtime raises its own kinds for a damaged file
        raise ModelError(f"{path} cannot be loaded by ONNX Runtime ({type(exc).__name__}: "
                         f"{(str(exc).strip().splitlines() or [''])[0]})") from None
    if input_name not in [i.name for i in session.get_inputs()] or \
            output_name not in [o.name for o in session.get_outputs()]:
        raise ModelError(f"{path} has no input '{input_name}' or output '{output_name}', which its card names")
    if shape[-1] != n_features:
        raise ModelError(f"{path} takes {shape[-1]} features, the card's {len(spec.channels)} channels give "
                         f"{n_features}")
    return lambda features: log_odds_to_probability(session.run([output_name], {input_name: features})[0])


def _load_network(spec: TrainedModel, engine: str) -> None:
    path = spec.model_file
    n_times, n_chans = spec.window_samples, len(spec.channels)
    if path.suffix == ".joblib":  # the features preset: the classifier from classifier.onnx, else joblib
        from ..training.features import window_features

        classify = _feature_classifier(spec, path, engine == "onnx")
        spec.engine = "features"
        spec._predict = lambda x, threads, consecutive=False: classify(
            window_features(np.asarray(x, np.float32), spec.sfreq, n_threads=threads))
        return
    if engine == "onnx":
        _load_onnx(spec)
        return
    from ..console import import_tensorflow, tensorflow_installed

    if tensorflow_installed():  # optional on JAX and PyTorch
        import_tensorflow()  # quietly below -vv (console.py)
    import keras

    from ..training import models  # noqa: F401 - registers the layers of ours a saved model may use (SpectralFeatures)

    try:
        net = keras.models.load_model(path, compile=False)
    except Exception as exc:  # Keras raises many kinds for a damaged or foreign file
        raise ModelError(f"{path} cannot be loaded by Keras ({type(exc).__name__}: {exc})") from None
    if tuple(net.input_shape[1:]) != (n_times, n_chans):
        raise ModelError(f"{path} takes windows of shape {tuple(net.input_shape[1:])}, its card says "
                         f"{(n_times, n_chans)}")
    spec.engine = "keras"

    def predict(x, threads, consecutive=False, batch=1024):
        # predict_on_batch: the compiled inference function (traced once per batch shape), several times faster
        # than calling the model eagerly, whose LSTM steps through Python
        return np.concatenate([np.asarray(net.predict_on_batch(np.ascontiguousarray(x[i:i + batch])))[:, 1]
                               for i in range(0, len(x), batch)])

    spec._predict = predict


def _load_onnx(spec: TrainedModel) -> None:
    """The network as the card's ONNX copy on ONNX Runtime: checked against the card's SHA-256 and window
    shape, so a stale or foreign model.onnx is refused rather than run. No TensorFlow is imported."""
    card_path = spec.folder / "model_card.json"
    remedy = f"run 'neurocare-bids export-model {spec.folder}' or use --engine keras"
    entry = spec.card.get("ONNX")
    if not isinstance(entry, dict):
        raise ModelError(f"{card_path} records no ONNX model (made before ONNX export): {remedy}")
    if entry.get("File") is None:
        raise ModelError(f"{spec.folder} has no ONNX model ({entry.get('Reason') or 'no reason recorded'}): {remedy}")
    try:
        name, expected = str(entry["File"]), str(entry["SHA256"]).lower()
        if Path(name).name != name:
            raise ValueError(f"File {name!r} is not a file name in the model folder")
    except (KeyError, ValueError) as exc:
        raise ModelError(f"{card_path}: its ONNX entry is damaged ({type(exc).__name__}: {exc}): {remedy}") from None

    path = spec.folder / name
    if not path.is_file():
        raise ModelError(f"{spec.folder} is not a complete model folder: {name} is missing: {remedy}", EXIT_NO_INPUT)
    if sha256_file(path) != expected:
        raise ModelError(f"{path} is not the ONNX model its card records (SHA-256 differs): {remedy}")
    import onnxruntime as ort

    available = ort.get_available_providers()
    # onnxruntime-gpu provides CUDA; ONNX Runtime falls back to the CPU for what CUDA cannot run
    providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]

    def session(threads: int, graph: Path = path):
        return ort.InferenceSession(str(graph), _session_options(ort, threads), providers=providers)

    try:
        sessions = {1: session(1)}
    except Exception as exc:  # noqa: BLE001 - ONNX Runtime raises its own kinds for a damaged or foreign file
        lines = str(exc).strip().splitlines()
        raise ModelError(f"{path} cannot be loaded by ONNX Runtime ({type(exc).__name__}: "
                         f"{lines[0] if lines else ''}): {remedy}") from None
    first = sessions[1]
    inputs, outputs = first.get_inputs(), first.get_outputs()
    shape = tuple(inputs[0].shape[1:])
    if len(inputs) != 1 or shape != (spec.window_samples, len(spec.channels)):
        raise ModelError(f"{path} takes windows of shape {shape}, its card says "
                         f"{(spec.window_samples, len(spec.channels))}: {remedy}")
    input_name = inputs[0].name
    output_name = str(entry.get("Output") or outputs[0].name)
    if output_name not in [o.name for o in outputs]:
        raise ModelError(f"{path} has no output '{output_name}', which its card names: {remedy}")
    lock = threading.Lock()
    log.debug("%s on ONNX Runtime %s (%s)", path.name, ort.__version__, ", ".join(first.get_providers()))
    consecutive_path = _consecutive_graph(spec, entry)
    spec.consecutive_graph = consecutive_path is not None
    runs = {False: sessions, True: {}}

    def predict(x, threads, consecutive=False):
        threads = max(1, int(threads))
        graph = consecutive_path if consecutive and consecutive_path is not None else path
        pool = runs[graph != path]
        run = pool.get(threads)
        if run is None:  # one session per graph and thread count asked for (apply's tasks ask for 1 each)
            with lock:
                run = pool.get(threads) or pool.setdefault(threads, session(threads, graph))
        # each slice of a run of consecutive windows is itself one
        return np.concatenate([
            run.run([output_name], {input_name: np.ascontiguousarray(x[i:i + ONNX_BATCH], np.float32)})[0][:, 1]
            for i in range(0, len(x), ONNX_BATCH)])

    spec.engine = "onnx"
    spec._predict = predict


def _session_options(ort, threads: int):
    """ONNX Runtime options for one of our sessions: ``threads`` threads within an operator, none across them,
    and errors only in the log (its warnings are not the user's business)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return options


def _copy_problem(path: Path, expected: str) -> str | None:
    """Why the optional file ``path`` cannot serve (missing, or not the SHA-256 ``expected`` its card records),
    or None when it can."""
    if not path.is_file():
        return "missing"
    return None if sha256_file(path) == expected else "not the file its card records (SHA-256 differs)"


def _consecutive_graph(spec: TrainedModel, entry: dict) -> Path | None:
    """The card's ``model_consecutive.onnx`` when it can serve this model's windows (their stride is the one it
    was made for) and is the file the card names (SHA-256); else None, and runs of windows go to ``model.onnx``
    (the same probabilities, for more work). A missing or altered copy is a warning, not an error: ``model.onnx``
    alone is a complete model."""
    consecutive = entry.get("Consecutive")
    if not isinstance(consecutive, dict) or consecutive.get("File") is None:
        return None
    try:
        name, expected, stride = str(consecutive["File"]), str(consecutive["SHA256"]).lower(), consecutive["WindowStride"]
    except KeyError as exc:
        log.warning("%s: the ONNX entry's Consecutive part is damaged (%s missing): using %s alone",
                    spec.folder / "model_card.json", exc, entry["File"])
        return None
    path = spec.folder / Path(name).name
    if stride != spec.stride_samples:
        return None
    problem = _copy_problem(path, expected)
    if problem:
        log.warning("%s is %s: using %s alone (the same probabilities, a little slower; 'neurocare-bids "
                    "export-model %s' rewrites it)", path, problem, entry["File"], spec.folder)
        return None
    return path


# ---------------------------------------------------------------------- one recording
@dataclass
class ApplyResult:
    recording: str
    status: str  # "written" or "failed"
    message: str = ""
    exit_code: int = 0
    windows: int = 0
    events: int = 0
    warnings: list[str] = field(default_factory=list)
    traceback: str = ""


@dataclass
class RecordingPrediction:
    """Window probabilities of one recording and the events they give."""

    onsets: np.ndarray
    probabilities: np.ndarray
    smoothed: np.ndarray
    events: list[Event]
    duration: float
    channel_mean: np.ndarray
    channel_std: np.ndarray
    warnings: list[str]
    centring_offset: float | None = None  # median log-odds subtracted (PostProcessing.centre), else None


def open_for_model(recording: Recording, model: TrainedModel, warnings: list[str],
                   allow_missing: bool = False) -> tuple[SignalSource, Montage]:
    """Open a recording and map its channels onto the model's montage (as the participant level does)."""
    return open_mapped(recording, lambda names: model.montage_for(names, allow_missing), warnings)


def predict_recording(source: SignalSource, montage: Montage, plan: SignalPlan, model: TrainedModel,
                      work_dir: Path, threads: int, warnings: list[str]) -> RecordingPrediction:
    """Preprocess as the training windows were, predict every window, post-process into events."""
    n_in, sfreq_in = source.n_times, source.sfreq
    duration = n_in / sfreq_in
    n_out = plan.n_out(n_in)
    win, stride, n_ch = model.window_samples, model.stride_samples, len(montage.names)
    n_windows = 0 if n_out < win else (n_out - win) // stride + 1
    if n_windows == 0:
        warnings.append(f"recording ({duration:.1f} s) is shorter than one window ({model.window_duration:g} s): "
                        "no windows")

    def read(start: int, stop: int) -> np.ndarray:
        data = source.read(montage.picks, start, stop)
        if not source.integer_samples and not np.isfinite(data).all():
            raise DataError(f"non-finite samples between {start} and {stop}")
        return data

    state = causal_filter(plan)  # a causal model's filters: blocks in order, the state carried

    block = partial(spool_block, read, n_in, plan, montage, state)
    block_len = max(win, int(model.preprocessing.block_duration * plan.sfreq_out))
    work_dir.mkdir(parents=True, exist_ok=True)
    spool = work_dir / f"apply-{os.getpid()}-{uuid.uuid4().hex[:8]}.f32"
    started = time.perf_counter()
    try:
        stats, raw_stats = RunningStats(n_ch), RawChannelStats(len(montage.picks))
        with ThreadPoolExecutor(max(1, threads)) as pool, open(spool, "wb") as fh:
            for data, block_stats, block_raw in ordered_map(pool, block, block_bounds(n_out, block_len), ahead=threads):
                stats.merge(block_stats)
                raw_stats.merge(block_raw)
                fh.write(data)
        mean, std = stats.mean, stats.std
        channel_quality(source, montage, raw_stats, stats, warnings)
        if not model.preprocessing.zscore:
            mean, std = np.zeros(n_ch), np.ones(n_ch)
        filtered = time.perf_counter()
        probs = _predict_spool(spool, n_windows, model, mean, std, threads)
        log.debug("timings: read + filter %.2f s, predict %.2f s (%d windows, %s engine, %d threads%s)",
                  filtered - started, time.perf_counter() - filtered, n_windows, model.engine, threads,
                  ", consecutive-window graph" if model.consecutive_graph else "")
    finally:
        spool.unlink(missing_ok=True)
    onsets = np.arange(n_windows) * stride / plan.sfreq_out
    post = model.postprocessing
    detection, offset = centre_probabilities(probs) if post["centre"] else (probs, None)
    events = (probabilities_to_events(onsets, detection, model.window_duration, duration, **event_settings(post))
              if n_windows else [])
    return RecordingPrediction(onsets, probs, smooth(detection, post["smoothing"]), events, duration, stats.mean,
                               stats.std, warnings, offset)


def zscore_windows(segment: np.ndarray, mean32: np.ndarray, scale32: np.ndarray, model: TrainedModel,
                   n_windows: int) -> np.ndarray:
    """``n_windows`` z-scored windows of a (samples, channels) float32 segment: a strided view, no copy.

    The arithmetic is the participant level's, in float32, including its rounding to float16 when the
    training windows were stored as float16.
    """
    z = (segment - mean32) * scale32
    if model.window_dtype == "float16":
        z = z.astype(np.float16).astype(np.float32)
    z = np.ascontiguousarray(z)
    step, channel = z.strides
    return np.lib.stride_tricks.as_strided(z, (n_windows, model.window_samples, z.shape[1]),
                                           (model.stride_samples * step, step, channel), writeable=False)


def _predict_spool(spool: Path, n_windows: int, model: TrainedModel, mean: np.ndarray, std: np.ndarray,
                   threads: int) -> np.ndarray:
    """Window probabilities from the spooled signal. Each task reads, z-scores and predicts a run of
    consecutive windows; ``threads`` tasks run at once, so no core waits for another between runs."""
    if n_windows == 0:
        return np.zeros(0)
    mean32, scale32 = mean.astype(np.float32), zscore_scale(std).astype(np.float32)
    win, stride, n_ch = model.window_samples, model.stride_samples, len(mean)
    fd = os.open(spool, os.O_RDONLY)

    def task(first: int) -> np.ndarray:
        last = min(n_windows, first + WINDOWS_PER_TASK)
        start, stop = first * stride, (last - 1) * stride + win
        segment = np.frombuffer(os.pread(fd, (stop - start) * n_ch * 4, start * n_ch * 4), "<f4").reshape(-1, n_ch)
        return model.predict(zscore_windows(segment, mean32, scale32, model, last - first), 1, consecutive=True)

    try:
        with ThreadPoolExecutor(max(1, threads)) as pool:
            return np.concatenate(list(pool.map(task, range(0, n_windows, WINDOWS_PER_TASK))))
    finally:
        os.close(fd)


# ---------------------------------------------------------------------- outputs
def output_paths(out_dir: Path, recording: Recording) -> dict[str, Path]:
    folder = out_dir / recording.relpath.parent
    stem = recording.stem
    return {"events": folder / f"{stem}_desc-neurocare_events.tsv",
            "events_json": folder / f"{stem}_desc-neurocare_events.json",
            "timeseries": folder / f"{stem}_desc-seizureprob_timeseries.tsv.gz",
            "timeseries_json": folder / f"{stem}_desc-seizureprob_timeseries.json",
            "szcore": out_dir / "szcore" / recording.relpath.parent / f"{stem}_events.tsv"}


def timeseries_text(prediction: RecordingPrediction) -> bytes:
    """Headerless TSV (BIDS timeseries): window onset, probability, smoothed probability; gzip without a
    timestamp, so identical inputs give identical bytes."""
    rows = np.column_stack([prediction.onsets, prediction.probabilities, prediction.smoothed])
    text = "".join(f"{t:.3f}\t{p:.6f}\t{s:.6f}\n" for t, p, s in rows.tolist())
    return gzip.compress(text.encode("ascii"), compresslevel=6, mtime=0)


def write_outputs(out_dir: Path, bids_dir: Path, recording: Recording, model: TrainedModel,
                  prediction: RecordingPrediction, model_info: dict) -> None:
    """Every output of one recording, each written atomically; the SzCORE tree file last."""
    paths = output_paths(out_dir, recording)
    remove_stale_temporaries(paths["events"].parent)
    source = f"bids:raw:{recording.relpath.as_posix()}"
    stride = model.window_stride
    atomic_write(paths["timeseries"], timeseries_text(prediction))
    atomic_write(paths["timeseries_json"], json.dumps({
        "Description": "Seizure probability of each window of the recording, as predicted by a NeuroCare-BIDS "
                       "model (one row per window, in time order)",
        "Sources": [source],
        "SamplingFrequency": 1.0 / stride,
        "StartTime": 0.0,
        "Columns": ["onset", "probability", "smoothed_probability"],
        "onset": {"Description": "window start, in seconds from the recording start", "Units": "s"},
        "probability": {"Description": "the model's seizure probability for the window", "Units": "n/a"},
        "smoothed_probability": {"Description": "moving average over PostProcessing.smoothing windows of the "
                                                "probabilities, centred on the recording's median log-odds when "
                                                "PostProcessing.centre is true (ProbabilityCentring): what the "
                                                "threshold is applied to", "Units": "n/a"},
        "ProbabilityCentring": (None if prediction.centring_offset is None else {
            "MedianLogOdds": round(prediction.centring_offset, 6),
            "Description": "centred = 1 / (1 + exp(-(log(p / (1 - p)) - MedianLogOdds)))"}),
        "WindowDuration": model.window_duration,
        "WindowStride": stride,
        "RecordingDuration": round(prediction.duration, 6),
        "PostProcessing": model.postprocessing,
        "Model": model_info,
        "Warnings": prediction.warnings,
        "GeneratedBy": {"Name": APP_NAME, "Version": __version__},
    }, indent=2) + "\n")
    write_events_tsv(paths["events"], prediction.events, prediction.duration)
    atomic_write(paths["events_json"], json.dumps({
        "Description": "Seizures predicted by a NeuroCare-BIDS model applied to this recording",
        "Sources": [source],
        "eventType": {"Description": "sz = predicted seizure; bckg = no seizure predicted in the recording"},
        "confidence": {"Description": "mean seizure probability of the windows inside the event (centred "
                                      "probabilities when PostProcessing.centre is true)"},
        "PostProcessing": model.postprocessing,
        "Model": model_info,
        "GeneratedBy": {"Name": APP_NAME, "Version": __version__},
    }, indent=2) + "\n")
    reference = recording.relpath.parent / f"{recording.stem}_events.tsv"
    export_tree(out_dir / "szcore", [(reference.as_posix(), prediction.events, prediction.duration, None)],
                bids_dir=bids_dir)


# ---------------------------------------------------------------------- the run
def apply_recording(recording: Recording, model: TrainedModel, out_dir: Path, work_dir: Path, threads: int,
                    allow_missing: bool = False, model_info: dict | None = None) -> ApplyResult:
    """Apply the model to one recording; every expected failure becomes a ``failed`` result."""
    try:
        warnings: list[str] = []
        recording = replace(recording, events=None)  # read by training only: an unfetched one must not fail it
        recording.check_usable()
        source, montage = open_for_model(recording, model, warnings, allow_missing)
        line_freq = mains_frequency(recording.metadata, warnings)
        plan = model.plan_for(source.sfreq, line_freq)
        warnings += list(plan.notes)
        check_sidecar_rate(recording.metadata, source.sfreq, warnings)
        prediction = predict_recording(source, montage, plan, model, work_dir, threads, warnings)
        write_outputs(out_dir, recording.root, recording, model, prediction, model_info or model.describe())
        return ApplyResult(recording.label, "written", windows=len(prediction.onsets),
                           events=len(prediction.events), warnings=warnings)
    except NeuroCareError as exc:
        return ApplyResult(recording.label, "failed", str(exc), exc.exit_code)
    except MemoryError:
        return ApplyResult(recording.label, "failed", "out of memory (lower preprocessing.block_duration)", 1)
    except Exception as exc:  # a bug: report it, keep processing the other recordings
        return ApplyResult(recording.label, "failed", f"internal error: {type(exc).__name__}: {exc}", 1,
                           traceback=traceback.format_exc())


def check_apply_output(out_dir: Path) -> None:
    """Refuse an output folder holding group-level results: their events files would be overwritten."""
    if (out_dir / "group").is_dir():
        raise OutputError(f"{out_dir} holds group-level results (group/), whose per-recording events files "
                          "apply mode would overwrite: choose another output folder")


def run_apply(cfg: Config, model: TrainedModel, recordings: list[Recording], out_dir: Path,
              work_dir: Path) -> list[ApplyResult]:
    """Apply the model to each recording in turn, each using every CPU; one failure never stops the others."""
    threads = available_cpus()
    if cfg.execution.nprocs:
        threads = min(threads, cfg.execution.nprocs)
    limit_threads()  # one BLAS thread: the parallelism comes from our threads (idle BLAS threads spin)
    model_info = model.describe()
    clashes = _output_clashes(recordings, out_dir)
    results = []
    for recording in recordings:
        result = clashes.get(recording.label) or apply_recording(recording, model, out_dir, work_dir, threads,
                                                                 cfg.montage.allow_missing_channels, model_info)
        results.append(log_result(result, f"{result.windows} windows, {result.events} seizure(s)"))
        raise_if_terminated()
    return results


def _output_clashes(recordings: list[Recording], out_dir: Path) -> dict[str, ApplyResult]:
    """Failed results for recordings that would write the same outputs (one run in two formats, say): each
    would overwrite the other's events, as the participant level refuses too."""
    clashes = output_clashes(recordings, lambda r: output_paths(out_dir, r)["events"])
    return {label: ApplyResult(label, "failed", message, EXIT_DATA) for label, message in clashes.items()}


def summary_tsv(results: list[ApplyResult]) -> str:
    lines = ["recording\tstatus\twindows\tevents\twarnings\tmessage"]
    lines += [f"{r.recording}\t{r.status}\t{r.windows}\t{r.events}\t{len(r.warnings)}\t{' '.join(r.message.split())}"
              for r in results]
    return "\n".join(lines) + "\n"


def print_summary(results: list[ApplyResult], out_dir: Path, log_dir: Path) -> None:
    import sys

    width = max([len(r.recording) for r in results] + [9])
    lines = [f"{'recording':<{width}}  {'status':<8}  {'windows':>8}  {'seizures':>8}"]
    lines += [f"{r.recording:<{width}}  {r.status:<8}  {r.windows:>8}  {r.events:>8}" for r in results]
    failed = sum(r.status == "failed" for r in results)
    lines.append(f"{len(results) - failed} written, {failed} failed. Outputs: {out_dir}  Log: {log_dir}")
    print("\n".join(lines))
    for r in results:
        if r.status == "failed":
            print(f"neurocare-bids: error: {r.recording}: {r.message}", file=sys.stderr)
