"""ONNX copies of the trained Keras models: ``model.onnx`` beside ``model.keras``, for any ONNX runtime.

ONNX is how seizure detectors are shipped (ONNX Runtime from Python, C++, C# or Java, with no TensorFlow).
Keras exports through tf2onnx; every layer our presets use translates (the spectral and per-channel feature
layers compute their periodograms as matrix products for that reason). Each export is checked against Keras
on random windows before it is renamed into place, and described (file, SHA-256, opset, tensor names) in
the model card or ``fold.json``.

On Keras's JAX backend the model is exported the same way from its saved ``model.keras`` (the file does not
depend on the backend), in a child process on the TensorFlow backend, which the package always has for its input
pipeline; the copy is then also checked against the JAX model. Keras's own JAX route (jax2onnx) is not used: it
is one more dependency, and untested here on our layers.

The ``features`` preset is not exported: its model is a gradient-boosting classifier behind NumPy/SciPy
feature extraction (Welch spectra, per-channel statistics), and only the classifier would convert
(skl2onnx); shipping half a pipeline whose other half must be re-implemented exactly is worse than none.
It is the baseline the networks are compared with, not a model meant for deployment.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from ..errors import EXIT_DATA, EXIT_INTERNAL, EXIT_NO_INPUT, NeuroCareError
from ..io.fsutils import atomic_write, temp_path

log = logging.getLogger("neurocare")

ONNX_FILE = "model.onnx"
# Opset 17 (ONNX 1.12, 2022): every operator the presets need, and read by ONNX Runtime 1.13 and later.
ONNX_OPSET = 17
# The largest difference between ONNX Runtime's and Keras's probabilities on random windows that an export
# may show (float32 rounding differs by about 1e-7; a mistranslated layer by far more).
PARITY_TOLERANCE = 1e-5
FEATURES_REASON = ("the features preset (gradient boosting on NumPy features) is not exported to ONNX; "
                   "apply it with NeuroCare-BIDS")


def sha256_file(path: str | Path, chunk: int = 1 << 22) -> str:
    """SHA-256 of a file as hex: what ``sha256sum`` prints, so a copied model can be checked anywhere."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def export_onnx(model, folder: Path) -> dict:
    """Write ``folder/model.onnx`` from a Keras model, checked against it, and return its card entry.

    Written to a temporary file renamed only once ONNX Runtime agrees with Keras, so an interrupted or
    failed export leaves the previous file (or none), never a half-written or wrong one.
    """
    import keras
    import tf2onnx

    path = Path(folder) / ONNX_FILE
    tmp = temp_path(path, ".onnx")
    name = model.inputs[0].name
    spec = keras.InputSpec(shape=(None, *model.input_shape[1:]), dtype="float32", name=name)
    started = time.monotonic()
    try:
        with _quiet():
            model.export(tmp, format="onnx", opset_version=ONNX_OPSET, verbose=False, input_signature=[spec])
        output, difference = _check(model, tmp)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    seconds = time.monotonic() - started
    log.debug("%s exported in %.1f s (max |ONNX - Keras| = %.2g)", path, seconds, difference)
    return {"File": path.name, "SHA256": sha256_file(path), "Opset": ONNX_OPSET, "Input": name,
            "Output": output, "Exporter": f"tf2onnx {tf2onnx.__version__}", "MaxAbsDifference": difference}


def _check(model, path: Path) -> tuple[str, float]:
    """ONNX Runtime's probabilities against Keras's on random windows: the output's name and the largest
    difference; a difference above :data:`PARITY_TOLERANCE` is an error (a layer translated wrongly)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    windows = np.random.default_rng(0).standard_normal((4, *model.input_shape[1:])).astype(np.float32)
    import keras

    if keras.config.backend() == "tensorflow":
        # called directly: under a multi-worker strategy the compiled predict step would wait for the other workers
        expected = np.asarray(model(windows, training=False))
    else:  # JAX: the jitted predict step; a direct call runs the LSTM op by op, tens of times slower
        expected = np.asarray(model.predict_on_batch(windows))
    got = session.run(None, {session.get_inputs()[0].name: windows})[0]
    difference = float(np.max(np.abs(got - expected)))
    if not difference <= PARITY_TOLERANCE:
        raise RuntimeError(f"ONNX Runtime's probabilities differ from Keras's by {difference:.2g}")
    return session.get_outputs()[0].name, difference


@contextlib.contextmanager
def _quiet():
    """tf2onnx logs every conversion step at INFO and prints to stdout: kept out of the run's output."""
    tf2onnx_log = logging.getLogger("tf2onnx")
    level = tf2onnx_log.level
    tf2onnx_log.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        tf2onnx_log.setLevel(level)


def export_saved(model_path: Path, model, folder: Path) -> dict:
    """``export_onnx`` for a model trained on another Keras backend than TensorFlow (JAX): its saved file is
    exported by tf2onnx in a child process on the TensorFlow backend (checked there against Keras on TensorFlow),
    then the copy is checked here against ``model`` on the training backend; one that differs is removed."""
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "CUDA_VISIBLE_DEVICES": "-1", "TF_CPP_MIN_LOG_LEVEL": "3",
           "PYTHONWARNINGS": "ignore"}
    code = ("import json, sys; from neurocare_bids.training.onnx_export import _export_file; "
            "print(json.dumps(_export_file(sys.argv[1], sys.argv[2])))")
    done = subprocess.run([sys.executable, "-c", code, str(model_path), str(folder)], capture_output=True,
                          text=True, env=env)
    if done.returncode:
        lines = done.stderr.strip().splitlines()
        raise RuntimeError(f"the TensorFlow exporter failed: {lines[-1] if lines else f'exit {done.returncode}'}")
    entry = json.loads(done.stdout.strip().splitlines()[-1])
    path = Path(folder) / ONNX_FILE
    try:
        _, difference = _check(model, path)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    import keras

    entry["Exporter"] += f" (from {Path(model_path).name}; trained on Keras's {keras.config.backend()} backend)"
    entry["MaxAbsDifference"] = max(entry["MaxAbsDifference"], difference)
    return entry


def _export_file(model_path: str, folder: str) -> dict:
    """The child process of :func:`export_saved`: load the saved model on TensorFlow and export it."""
    import keras

    from . import models  # noqa: F401 - registers our layers for loading

    return export_onnx(keras.models.load_model(model_path, compile=False), Path(folder))


def export_trained(model, folder: Path, preset: str, label: str, saved: Path | None = None) -> dict:
    """The ONNX entry of a model just trained and saved in ``folder``: exported, or why not.

    ``saved``: the model's file, exported instead of ``model`` when Keras runs on another backend than
    TensorFlow (:func:`export_saved`). A failed export is a warning, not a failed run: the Keras model is saved and complete (hours of
    training), apply mode runs it, and ``neurocare-bids export-model`` retries the export later. A stale
    ``model.onnx`` of an earlier training is removed, so the folder never pairs a model with another's copy.
    """
    if preset == "features":
        (Path(folder) / ONNX_FILE).unlink(missing_ok=True)
        return {"File": None, "Reason": FEATURES_REASON}
    import keras

    try:
        if keras.config.backend() != "tensorflow" and saved is not None:
            return export_saved(saved, model, folder)
        return export_onnx(model, folder)
    except Exception as exc:  # noqa: BLE001 - any exporter failure; Ctrl-C and SIGTERM still stop the run
        (Path(folder) / ONNX_FILE).unlink(missing_ok=True)
        log.warning("%s: ONNX export failed (%s); the Keras model is saved: retry with "
                    "'neurocare-bids export-model %s'", label, _one_line(exc), folder)
        return {"File": None, "Reason": f"export failed: {_one_line(exc)}"}


def _one_line(exc: BaseException) -> str:
    """An exception as one line (ONNX Runtime's and tf2onnx's messages span several)."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"


def export_model_folder(folder: Path) -> dict:
    """``neurocare-bids export-model``: export the Keras model of a group level's ``model/`` or ``fold-K/``
    folder and rewrite its ``model_card.json`` (or ``fold.json``) with the ONNX entry. Returns the entry."""
    folder = Path(folder)
    if not folder.is_dir():
        raise NeuroCareError(f"{folder} is not a folder", EXIT_NO_INPUT)
    card_path = next((folder / n for n in ("model_card.json", "fold.json") if (folder / n).is_file()), None)
    if card_path is None:
        raise NeuroCareError(f"{folder} is not a NeuroCare-BIDS model folder (no model_card.json or fold.json; "
                             "give a group level's group/model/ or group/fold-K/)", EXIT_NO_INPUT)
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
        model_name = str(card.get("ModelFile", "model.keras")) if card_path.name == "model_card.json" else (
            "model.joblib" if (folder / "model.joblib").is_file() else "model.keras")
    except (OSError, ValueError, AttributeError) as exc:
        raise NeuroCareError(f"{card_path} is unreadable or damaged ({_one_line(exc)})", EXIT_DATA) from None
    if Path(model_name).suffix != ".keras":
        raise NeuroCareError(f"{folder} holds a features-preset model ({model_name}): only the Keras "
                             "presets export to ONNX", EXIT_DATA)
    model_path = folder / Path(model_name).name
    if not model_path.is_file():
        raise NeuroCareError(f"{folder} is not a complete model folder: {model_path.name} is missing",
                             EXIT_NO_INPUT)
    from ..console import import_tensorflow

    import_tensorflow()  # its start-up lines held back from the console
    import keras

    from . import models  # noqa: F401 - registers our layers for loading

    try:
        model = keras.models.load_model(model_path, compile=False)
    except Exception as exc:  # noqa: BLE001 - Keras raises many kinds for a damaged file
        raise NeuroCareError(f"{model_path} cannot be loaded ({_one_line(exc)})", EXIT_DATA) from None
    try:
        entry = (export_onnx(model, folder) if keras.config.backend() == "tensorflow"
                 else export_saved(model_path, model, folder))
    except Exception as exc:  # noqa: BLE001
        raise NeuroCareError(f"{model_path} did not export to ONNX ({_one_line(exc)}); please report it",
                             EXIT_INTERNAL) from None
    card["ONNX" if card_path.name == "model_card.json" else "onnx"] = entry
    atomic_write(card_path, json.dumps(card, indent=2) + "\n")
    return entry
