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

Beside it, for the default window geometry (consecutive windows overlapping by half), ``model_consecutive.onnx``:
the same graph rewritten so that its first convolution (about half of the network's work) runs once per half
window of a run of consecutive windows instead of twice, as apply mode's runs of windows allow
(:func:`consecutive_graph`), each half window's convolution computed through the DFT as three matrix products,
which ONNX Runtime runs several times faster than the 64-tap convolution itself. By linearity it gives the same
probabilities up to float32 rounding; each export
checks it against ``model.onnx`` (<= :data:`PARITY_TOLERANCE`) on runs of consecutive windows, and the card
records it (``ONNX.Consecutive``: file, SHA-256, the window stride it needs). It takes the same input as
``model.onnx``, but only runs of consecutive windows at that stride; any single window or unordered batch goes
to ``model.onnx``.

The ``features`` preset has no network to export: its model is a gradient-boosting classifier behind NumPy/SciPy
feature extraction (Welch spectra, per-channel statistics). That classifier, and a stacked model's, ships as
``classifier.onnx`` (:mod:`.baseline_onnx`), named in the entry's ``Classifier``; ``export-model`` writes it for
older folders.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from ..errors import EXIT_DATA, EXIT_INTERNAL, EXIT_NO_INPUT, NeuroCareError
from ..io.fsutils import atomic_write, sha256_file, temp_path

log = logging.getLogger("neurocare")

ONNX_FILE = "model.onnx"
CONSECUTIVE_FILE = "model_consecutive.onnx"
# Opset 17 (ONNX 1.12, 2022): every operator the presets need, and read by ONNX Runtime 1.13 and later.
ONNX_OPSET = 17
# The largest difference between ONNX Runtime's and Keras's probabilities on random windows that an export
# may show (float32 rounding differs by about 1e-7; a mistranslated layer by far more).
PARITY_TOLERANCE = 1e-5
NOT_EXPORTED_REASON = "not exported (execution.fold_onnx = false)"
NO_TENSORFLOW_REASON = "TensorFlow (tf2onnx, the exporter) is not installed where the model was trained"
FEATURES_REASON = ("the features preset (gradient boosting on NumPy features) has no network to export; its "
                   "classifier is in Classifier")


def export_onnx(model, folder: Path, stride: int | None = None) -> dict:
    """Write ``folder/model.onnx`` from a Keras model, checked against it, and return its card entry; with
    ``stride`` (samples between window onsets) half the window, also ``model_consecutive.onnx``
    (:func:`export_consecutive`), described in the entry's ``Consecutive``.

    Written to a temporary file renamed only once ONNX Runtime agrees with Keras, so an interrupted or
    failed export leaves the previous file (or none), never a half-written or wrong one.
    """
    import keras
    import tf2onnx

    path = Path(folder) / ONNX_FILE
    (Path(folder) / CONSECUTIVE_FILE).unlink(missing_ok=True)  # of an earlier model: never paired with this one
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
    entry = {"File": path.name, "SHA256": sha256_file(path), "Opset": ONNX_OPSET, "Input": name,
             "Output": output, "Exporter": f"tf2onnx {tf2onnx.__version__}", "MaxAbsDifference": difference}
    if stride is not None:
        entry["Consecutive"] = export_consecutive(path, int(stride))
    return entry


def consecutive_graph(model, spectral: bool = False):
    """``model`` (an ``onnx.ModelProto`` taking windows ``(n, n_times, n_chans)``) rewritten for runs of
    consecutive windows that overlap by half: its first convolution runs once per half window (block ``j`` is
    window ``j``'s first half, and the last block the last window's second half), each block zero-padded by the
    kernel on both sides, and the two partial sums added where a window's halves meet. None when the graph's
    first convolution is not the plain stride-1 'same' convolution of a Conv1D (tf2onnx's Unsqueeze, Transpose,
    Conv with a 1 x k kernel) or the window length is odd.

    ``spectral``: each block's full convolution computed through the discrete Fourier transform, as three matrix
    products (:func:`_spectral_convolution`) instead of a ``Conv``: the same numbers to float32 rounding, in about
    half the time (ONNX Runtime's matrix products run near the core's peak, its 64-tap convolution far from it)."""
    from onnx import helper, numpy_helper

    g = model.graph
    source = g.input[0].name
    consumers: dict[str, list] = {}
    for node in g.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    conv = None
    for unsqueeze in (n for n in consumers.get(source, []) if n.op_type == "Unsqueeze"):
        for transpose in (n for n in consumers.get(unsqueeze.output[0], []) if n.op_type == "Transpose"):
            if list(helper.get_attribute_value(transpose.attribute[0])) == [0, 3, 1, 2]:
                conv = next((n for n in consumers.get(transpose.output[0], []) if n.op_type == "Conv"), conv)
    if conv is None:
        return None
    attrs = {a.name: helper.get_attribute_value(a) for a in conv.attribute}
    height, k = attrs["kernel_shape"]
    pads = attrs.get("pads", [0, 0, 0, 0])
    n_times = g.input[0].type.tensor_type.shape.dim[1].dim_value
    half, left, right = n_times // 2, pads[1], pads[3]
    if (height != 1 or attrs.get("group", 1) != 1 or any(v != 1 for v in attrs.get("strides", [1, 1]))
            or any(v != 1 for v in attrs.get("dilations", [1, 1])) or pads[0] or pads[2] or n_times % 2
            or left + right != k - 1 or max(left, right) > half or len(conv.input) > 2
            or attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET")):
        return None
    nodes, prefix, big = [], "consecutive/", 2**62

    def const(name, values, dtype=np.int64):
        g.initializer.append(numpy_helper.from_array(np.asarray(values, dtype), prefix + name))
        return prefix + name

    def node(op, inputs, name, **kw):
        nodes.append(helper.make_node(op, inputs, [prefix + name], **kw))
        return prefix + name

    def cut(x, starts, ends, axes, name):
        return node("Slice", [x, const(name + "_s", starts), const(name + "_e", ends), const(name + "_a", axes)], name)

    x = conv.input[0]  # (n, chans, 1, n_times): window n is blocks n and n + 1
    blocks = node("Concat", [cut(x, [0], [half], [3], "first_halves"),
                             cut(x, [-1, half], [big, n_times], [0, 3], "last_half")], "blocks", axis=0)
    # each block convolved once, with k - 1 zeros on both sides: output u' is window position u' - right
    weights = next((numpy_helper.to_array(t) for t in g.initializer if t.name == conv.input[1]), None)
    if spectral and weights is not None:
        full = _spectral_convolution(blocks, weights, half, node, lambda name, a: const(name, a, a.dtype))
    elif spectral:
        return None
    else:
        full = node("Conv", [blocks, conv.input[1]], "full", kernel_shape=[1, k], pads=[0, k - 1, 0, k - 1],
                    strides=[1, 1], dilations=[1, 1], group=1)
    as_first = cut(full, [0], [-1], [0], "as_first")    # block n as window n's first half
    as_second = cut(full, [1], [big], [0], "as_second")  # block n + 1 as window n's second half
    parts = []
    if half > right:
        parts.append(cut(as_first, [right], [half], [3], "head"))
    if right:  # the end of the first half also hears the start of the second
        parts.append(node("Add", [cut(as_first, [half], [half + right], [3], "tail_a"),
                                  cut(as_second, [0], [right], [3], "tail_b")], "tail"))
    if left:  # the start of the second half also hears the end of the first
        parts.append(node("Add", [cut(as_second, [right], [right + left], [3], "meet_a"),
                                  cut(as_first, [half + right], [half + right + left], [3], "meet_b")], "meet"))
    parts.append(cut(as_second, [right + left], [right + half], [3], "rest"))
    nodes.append(helper.make_node("Concat", parts, [conv.output[0]], axis=3))
    at = list(g.node).index(conv)
    del g.node[at]
    for i, new in enumerate(nodes):
        g.node.insert(at + i, new)
    if not any(conv.input[1] in n.input for n in g.node):  # the DFT form holds the kernel as its spectrum
        g.initializer.remove(next(t for t in g.initializer if t.name == conv.input[1]))
    return model


def _spectral_convolution(blocks: str, weights: np.ndarray, length: int, node, const) -> str:
    """ONNX nodes computing ``Conv(blocks, weights)`` with ``k - 1`` zeros of padding on both sides (the full
    linear convolution, ``length + k - 1`` outputs per block) through a DFT of that length, as matrix products:
    each channel's DFT (``blocks @ forward``), the channels mixed bin by bin with the kernel's spectrum (one
    batched product over bins), and the inverse DFT (``@ inverse``). No ``DFT`` operator: ONNX Runtime's is slower
    than the convolution. ``blocks``: ``(n, chans, 1, length)``; ``weights``: the Conv's ``(filters, chans, 1, k)``.
    Returns the name of the ``(n, filters, 1, length + k - 1)`` result."""
    filters, chans, _, k = weights.shape
    size = length + k - 1  # the DFT's length: the whole linear convolution fits, nothing wraps around
    bins = size // 2 + 1
    angle = 2 * np.pi * np.arange(size)[:, None] * np.arange(bins)[None, :] / size
    forward = np.concatenate([np.cos(angle[:length]), -np.sin(angle[:length])], axis=1)  # (length, 2 bins)
    # ONNX's Conv is a cross-correlation: the same as convolving with the reversed kernel
    spectrum = np.fft.rfft(weights[:, :, 0, ::-1].astype(np.float64), size, axis=-1)  # (filters, chans, bins)
    real, imag = spectrum.real.transpose(2, 1, 0), spectrum.imag.transpose(2, 1, 0)  # (bins, chans, filters)
    mixing = np.block([[real, imag], [-imag, real]])  # (bins, 2 chans, 2 filters): [re, im] @ it = the product
    scale = np.full(bins, 2.0)
    scale[0] = 1.0
    if size % 2 == 0:
        scale[-1] = 1.0  # DC and Nyquist appear once in the full spectrum, the other bins twice
    inverse = np.concatenate([scale[:, None] * np.cos(angle.T), -scale[:, None] * np.sin(angle.T)]) / size
    x = node("Squeeze", [blocks, const("dft_axis", np.array([2], np.int64))], "dft_blocks")  # (n, chans, length)
    x = node("MatMul", [x, const("dft_forward", forward.astype(np.float32))], "dft_x")        # (n, chans, 2 bins)
    x = node("Reshape", [x, const("dft_split_shape", np.array([0, chans, 2, bins], np.int64))], "dft_x_parts")
    x = node("Transpose", [x], "dft_x_by_bin", perm=[3, 0, 2, 1])                              # (bins, n, 2, chans)
    x = node("Reshape", [x, const("dft_rows_shape", np.array([0, 0, 2 * chans], np.int64))], "dft_x_rows")
    y = node("MatMul", [x, const("dft_mixing", mixing.astype(np.float32))], "dft_y")           # (bins, n, 2 filters)
    y = node("Reshape", [y, const("dft_y_split_shape", np.array([0, 0, 2, filters], np.int64))], "dft_y_parts")
    y = node("Transpose", [y], "dft_y_by_block", perm=[1, 3, 2, 0])                            # (n, filters, 2, bins)
    y = node("Reshape", [y, const("dft_y_rows_shape", np.array([0, 0, 2 * bins], np.int64))], "dft_y_rows")
    y = node("MatMul", [y, const("dft_inverse", inverse.astype(np.float32))], "dft_full")      # (n, filters, size)
    return node("Unsqueeze", [y, const("dft_axis_out", np.array([2], np.int64))], "full")


def consecutive_windows(n: int, n_times: int, n_chans: int, stride: int, seed: int = 0) -> np.ndarray:
    """``n`` consecutive windows at ``stride`` of one random signal (a copy, as ONNX Runtime takes them)."""
    signal = np.random.default_rng(seed).standard_normal(((n - 1) * stride + n_times, n_chans)).astype(np.float32)
    return np.ascontiguousarray(np.lib.stride_tricks.sliding_window_view(signal, (n_times, n_chans))[::stride, 0])


def export_consecutive(path: Path, stride: int) -> dict:
    """``model_consecutive.onnx`` beside ``path`` (``model.onnx``), checked against it, and its entry;
    ``{"File": None, "Reason": ...}`` when the geometry or the graph does not allow it (windows that do not
    overlap by half; a first layer that is not a Conv1D) or no rewritten graph matches ``model.onnx``: the
    file only saves work, so it never fails an export.

    The first convolution is computed through the DFT (:func:`_spectral_convolution`) when that graph gives
    ``model.onnx``'s probabilities to :data:`PARITY_TOLERANCE` on runs of 1, 2 and 65 consecutive windows (of
    unit and of five-fold amplitude), else as a ``Conv`` (the same check); ``FirstConvolution`` says which."""
    import onnx

    data = path.read_bytes()  # each rewrite edits its own parsed copy
    shape = onnx.load_from_string(data).graph.input[0].type.tensor_type.shape.dim
    n_times, n_chans = shape[1].dim_value, shape[2].dim_value
    if 2 * stride != n_times:
        return {"File": None, "Reason": f"windows of {n_times} samples at a stride of {stride} do not overlap by half"}
    if consecutive_graph(onnx.load_from_string(data)) is None:
        return {"File": None, "Reason": "the network's first layer is not a plain Conv1D"}
    target = path.parent / CONSECUTIVE_FILE
    tmp = temp_path(target, ".onnx")
    try:
        for spectral in (True, False):
            graph = consecutive_graph(onnx.load_from_string(data), spectral=spectral)
            if graph is None:
                continue
            onnx.checker.check_model(graph)
            onnx.save(graph, str(tmp))
            difference = _consecutive_difference(path, tmp, n_times, n_chans, stride)
            if difference <= PARITY_TOLERANCE:
                break
            log.debug("%s: the consecutive-window graph (%s) differs from it by %.2g", path,
                      "DFT" if spectral else "Conv", difference)
        else:
            tmp.unlink()
            return {"File": None, "Reason": f"the consecutive-window graph differs from {path.name} by "
                                            f"{difference:.2g} (more than {PARITY_TOLERANCE:g})"}
        tmp.replace(target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return {"File": target.name, "SHA256": sha256_file(target), "WindowStride": stride,
            "FirstConvolution": "DFT as matrix products" if spectral else "Conv", "MaxAbsDifference": difference}


def _consecutive_difference(plain: Path, rewritten: Path, n_times: int, n_chans: int, stride: int) -> float:
    """The largest difference between the probabilities of two graphs on runs of consecutive windows."""
    import onnxruntime as ort

    sessions = [ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]) for p in (plain, rewritten)]
    name = sessions[0].get_inputs()[0].name
    difference = 0.0
    for n, amplitude in ((1, 1.0), (2, 1.0), (65, 1.0), (65, 5.0)):
        windows = consecutive_windows(n, n_times, n_chans, stride, seed=n) * np.float32(amplitude)
        expected, got = (s.run(None, {name: windows})[0] for s in sessions)
        difference = max(difference, float(np.max(np.abs(got - expected))))
    return difference


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
    """tf2onnx logs every conversion step at INFO and prints to stdout, and Keras's bridge to it warns of NumPy's
    future (``np.object``, a FutureWarning that Python shows by default): kept out of the run's output."""
    tf2onnx_log = logging.getLogger("tf2onnx")
    level = tf2onnx_log.level
    tf2onnx_log.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning, module=r"(keras\.src\.export|tf2onnx)")
            yield
    finally:
        tf2onnx_log.setLevel(level)


def export_saved(model_path: Path, model, folder: Path, stride: int | None = None) -> dict:
    """``export_onnx`` for a model trained on another Keras backend than TensorFlow (JAX): its saved file is
    exported by tf2onnx in a child process on the TensorFlow backend (checked there against Keras on TensorFlow),
    then the copy is checked here against ``model`` on the training backend; one that differs is removed."""
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "CUDA_VISIBLE_DEVICES": "-1", "TF_CPP_MIN_LOG_LEVEL": "3",
           "PYTHONWARNINGS": "ignore"}
    code = ("import json, sys; from neurocare_bids.training.onnx_export import _export_file; "
            "print(json.dumps(_export_file(sys.argv[1], sys.argv[2], int(sys.argv[3]) or None)))")
    done = subprocess.run([sys.executable, "-c", code, str(model_path), str(folder), str(stride or 0)],
                          capture_output=True, text=True, env=env)
    if done.returncode:
        lines = done.stderr.strip().splitlines()
        raise RuntimeError(f"the TensorFlow exporter failed: {lines[-1] if lines else f'exit {done.returncode}'}")
    entry = json.loads(done.stdout.strip().splitlines()[-1])
    path = Path(folder) / ONNX_FILE
    try:
        _, difference = _check(model, path)
    except BaseException:
        path.unlink(missing_ok=True)
        (Path(folder) / CONSECUTIVE_FILE).unlink(missing_ok=True)
        raise
    import keras

    entry["Exporter"] += f" (from {Path(model_path).name}; trained on Keras's {keras.config.backend()} backend)"
    entry["MaxAbsDifference"] = max(entry["MaxAbsDifference"], difference)
    return entry


def _export_file(model_path: str, folder: str, stride: int | None = None) -> dict:
    """The child process of :func:`export_saved`: load the saved model on TensorFlow and export it."""
    import keras

    from . import models  # noqa: F401 - registers our layers for loading

    return export_onnx(keras.models.load_model(model_path, compile=False), Path(folder), stride)


def _remove_copies(folder: Path) -> None:
    """An earlier training's ``model.onnx`` and ``model_consecutive.onnx``: never left beside another model."""
    for name in (ONNX_FILE, CONSECUTIVE_FILE):
        (Path(folder) / name).unlink(missing_ok=True)


def not_exported(folder: Path) -> dict:
    """The ONNX entry of a fold trained with ``execution.fold_onnx`` off, an earlier training's copies removed."""
    _remove_copies(folder)
    where = f"OUTPUT_DIR/{Path(folder).parent.name}/{Path(folder).name}"  # no absolute path: outputs may move
    return {"File": None, "Reason": f"{NOT_EXPORTED_REASON}; to make it: neurocare-bids export-model {where}"}


def export_trained(model, folder: Path, preset: str, label: str, saved: Path | None = None,
                   stride: int | None = None) -> dict:
    """The ONNX entry of a model just trained and saved in ``folder``: exported, or why not.

    ``saved``: the model's file, exported instead of ``model`` when Keras runs on another backend than
    TensorFlow (:func:`export_saved`). A failed export is a warning, not a failed run: the Keras model is saved and complete (hours of
    training), apply mode runs it, and ``neurocare-bids export-model`` retries the export later. A stale
    ``model.onnx`` of an earlier training is removed, so the folder never pairs a model with another's copy.
    ``stride``: samples between window onsets, for ``model_consecutive.onnx`` (:func:`export_onnx`).
    """
    if preset == "features":
        _remove_copies(folder)
        return {"File": None, "Reason": FEATURES_REASON}
    import keras

    from ..console import tensorflow_installed

    if not tensorflow_installed():  # Keras on JAX or PyTorch alone
        _remove_copies(folder)
        log.warning("%s: no ONNX copy: exporting needs TensorFlow (tf2onnx), which is not installed here; the Keras "
                    "model is saved: export it where TensorFlow is, with 'neurocare-bids export-model %s'",
                    label, folder)
        return {"File": None, "Reason": NO_TENSORFLOW_REASON}
    try:
        if keras.config.backend() != "tensorflow" and saved is not None:
            return export_saved(saved, model, folder, stride)
        return export_onnx(model, folder, stride)
    except Exception as exc:  # noqa: BLE001 - any exporter failure; Ctrl-C and SIGTERM still stop the run
        _remove_copies(folder)
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
    model_path = folder / Path(model_name).name
    if not model_path.is_file():
        raise NeuroCareError(f"{folder} is not a complete model folder: {model_path.name} is missing",
                             EXIT_NO_INPUT)
    if model_path.suffix == ".joblib":  # the features preset: its classifier only
        entry = _features_entry(model_path)
    elif model_path.suffix == ".keras":
        entry = _keras_entry(model_path, card, card_path)
    else:
        raise NeuroCareError(f"{folder}: {model_path.name} is neither a Keras nor a features-preset model",
                             EXIT_DATA)
    card["ONNX" if card_path.name == "model_card.json" else "onnx"] = entry
    atomic_write(card_path, json.dumps(card, indent=2) + "\n")
    return entry


def _features_entry(model_path: Path) -> dict:
    """The ONNX entry of a features-preset folder: no network, its classifier as ``classifier.onnx``."""
    from .baseline import FeatureBaseline
    from .baseline_onnx import export_classifier

    try:
        baseline = FeatureBaseline.load(model_path)
    except Exception as exc:  # noqa: BLE001 - joblib/pickle raise many kinds for a damaged file
        raise NeuroCareError(f"{model_path} cannot be loaded ({_one_line(exc)})", EXIT_DATA) from None
    entry = {"File": None, "Reason": FEATURES_REASON, "Classifier": export_classifier(baseline, model_path.parent)}
    if entry["Classifier"]["File"] is None:
        raise NeuroCareError(f"{model_path}: {entry['Classifier']['Reason']}", EXIT_DATA)
    return entry


def _keras_entry(model_path: Path, card: dict, card_path: Path) -> dict:
    """The ONNX entry of a Keras model folder: ``model.onnx`` (and ``model_consecutive.onnx``), and a stacked
    model's ``classifier.onnx``."""
    from ..console import import_tensorflow

    folder = model_path.parent
    import_tensorflow()  # its start-up lines held back from the console
    import keras

    from . import models  # noqa: F401 - registers our layers for loading

    try:
        model = keras.models.load_model(model_path, compile=False)
    except Exception as exc:  # noqa: BLE001 - Keras raises many kinds for a damaged file
        raise NeuroCareError(f"{model_path} cannot be loaded ({_one_line(exc)})", EXIT_DATA) from None
    stride = _window_stride(card, card_path)
    try:
        entry = (export_onnx(model, folder, stride) if keras.config.backend() == "tensorflow"
                 else export_saved(model_path, model, folder, stride))
    except Exception as exc:  # noqa: BLE001
        raise NeuroCareError(f"{model_path} did not export to ONNX ({_one_line(exc)}); please report it",
                             EXIT_INTERNAL) from None
    stacking = card.get("Stacking" if card_path.name == "model_card.json" else "stacking")
    if isinstance(stacking, dict) and stacking.get("BaselineFile"):
        entry["Classifier"] = _export_stacked_classifier(folder / Path(str(stacking["BaselineFile"])).name)
    return entry


def _export_stacked_classifier(path: Path) -> dict:
    """``classifier.onnx`` beside a stacked model's feature baseline (``features.joblib``), or why not: the
    network's copy is written by then, so a baseline that cannot be loaded is a warning."""
    from .baseline import FeatureBaseline
    from .baseline_onnx import export_baseline

    try:
        baseline = FeatureBaseline.load(path)
    except Exception as exc:  # noqa: BLE001 - joblib/pickle raise many kinds for a missing or damaged file
        log.warning("%s cannot be loaded (%s): its classifier is not exported", path, _one_line(exc))
        return {"File": None, "Reason": f"{path.name} cannot be loaded: {_one_line(exc)}"}
    return export_baseline(baseline, path.parent, str(path.parent))


def _window_stride(card: dict, card_path: Path) -> int | None:
    """Samples between window onsets of the model's windows, for ``model_consecutive.onnx``: from a model card's
    ``Input``, or a fold's ``window_stride``; a fold folder written before that field took it from its group's
    final model card. None when no card says."""
    try:
        if card_path.name == "fold.json":
            if card.get("window_stride") is not None:
                return int(card["window_stride"])
            card = json.loads((card_path.parent.parent / "model" / "model_card.json").read_text(encoding="utf-8"))
        inputs = card["Input"]
        return round(float(inputs["WindowStride"]) * float(inputs["SamplingFrequency"]))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
