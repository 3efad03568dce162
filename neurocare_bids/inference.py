"""A saved Keras detector run with NumPy: the same numbers, without TensorFlow's start-up.

Applying a model to a recording is a few seconds of arithmetic, but importing TensorFlow alone costs
about 5 s of CPU and 800 MB of memory, more than the whole rest of a 6-hour recording's processing.
This module reads ``model.keras`` (a zip of ``config.json`` and ``model.weights.h5``) and evaluates the
layer chain our presets build (Conv1D, BatchNormalization, Activation, MaxPooling1D, Dropout,
(Bidirectional) LSTM, Dense, global pooling, the per-channel encoder's shared ``(1, k)`` Conv2D blocks
with their mean/max summary over channels, and the spectral side branch) in float32 NumPy:

* inference-mode BatchNormalization after a convolution is folded into its kernel and bias;
* a ReLU followed by max-pooling is pooled first (max commutes with a non-decreasing function), so the
  activation touches a quarter of the values;
* long convolutions (the first layer's half-second kernel) run as FFT products, short ones as one matrix
  product over the unfolded input (each row a contiguous run of memory, so unfolding is a fast copy);
* the LSTM's input projection is one matrix product for all time steps; only the recurrence loops.

A model with any other layer raises :class:`UnsupportedModel` and the caller falls back to Keras.
``tests/test_apply.py`` checks that the results equal Keras's own within float32 rounding.
"""

from __future__ import annotations

import io
import json
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import scipy.fft

FFT_MIN_TAPS = 16  # kernels at least this long are applied through the FFT
BATCH = 128  # windows per forward pass: keeps each pass's temporaries near 10 MB per thread


class UnsupportedModel(ValueError):
    """The saved model uses something this engine does not evaluate (the caller uses Keras instead)."""


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-x)) as 0.5 tanh(x / 2) + 0.5, in place: NumPy's tanh is vectorised, about 8x faster
    than scipy's expit on float32."""
    x *= 0.5
    np.tanh(x, out=x)
    x *= 0.5
    x += 0.5
    return x


_ACTIVATIONS = {
    "linear": None,
    "relu": lambda x: np.maximum(x, 0, out=x),
    "sigmoid": _sigmoid,
    "tanh": lambda x: np.tanh(x, out=x),
}


def _softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(axis=-1, keepdims=True)
    np.exp(x, out=x)
    x /= x.sum(axis=-1, keepdims=True)
    return x


def _activation(name: str):
    if name == "softmax":
        return _softmax
    if name not in _ACTIVATIONS:
        raise UnsupportedModel(f"activation '{name}'")
    return _ACTIVATIONS[name]


class _Conv1D:
    """Cross-correlation as Keras computes it ('same' pads (k - 1) // 2 before, the rest after)."""

    def __init__(self, kernel: np.ndarray, bias: np.ndarray | None, padding: str, activation):
        self.kernel = kernel.astype(np.float32)  # (taps, in, out)
        self.bias = None if bias is None else bias.astype(np.float32)
        self.padding = padding
        self.activation = activation
        self._spectra: dict[int, np.ndarray] = {}

    def fold_batchnorm(self, scale: np.ndarray, shift: np.ndarray) -> None:
        self.kernel = (self.kernel * scale).astype(np.float32)
        bias = shift if self.bias is None else self.bias * scale + shift
        self.bias = bias.astype(np.float32)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        taps = self.kernel.shape[0]
        if self.padding == "same":
            before = (taps - 1) // 2
            x = np.pad(x, ((0, 0), (before, taps - 1 - before), (0, 0)))
        n_out = x.shape[1] - taps + 1
        if taps >= FFT_MIN_TAPS:
            y = self._fft(x, n_out)
        else:
            # unfold: row t = samples t .. t + taps - 1, which lie next to each other in memory, so the
            # copy moves whole runs of taps x channels values; then one matrix product
            x = np.ascontiguousarray(x)
            batch, _, n_in = x.shape
            step_b, step_t, step_c = x.strides
            cols = np.lib.stride_tricks.as_strided(x, (batch, n_out, taps, n_in), (step_b, step_t, step_t, step_c))
            y = (cols.reshape(batch * n_out, taps * n_in) @ self.kernel.reshape(taps * n_in, -1))
            y = y.reshape(batch, n_out, -1)
        if self.bias is not None:
            y += self.bias
        if self.activation is not None:
            y = self.activation(y)
        return y

    def _fft(self, x: np.ndarray, n_out: int) -> np.ndarray:
        """``y[t] = sum_j x[t + j] @ w[j]`` as a product of spectra (x zero-padded to avoid wrap-around)."""
        length = x.shape[1]
        n = scipy.fft.next_fast_len(length, real=True)
        spectrum = self._spectra.get(n)
        if spectrum is None:
            # correlation = convolution with the time-reversed kernel
            spectrum = scipy.fft.rfft(self.kernel[::-1], n=n, axis=0).astype(np.complex64)  # (F, in, out)
            self._spectra[n] = spectrum
        fx = scipy.fft.rfft(x, n=n, axis=1)  # (B, F, in), complex64 for float32 input
        fy = np.matmul(fx.transpose(1, 0, 2), spectrum).transpose(1, 0, 2)  # one (B, in) x (in, out) per bin
        y = scipy.fft.irfft(fy, n=n, axis=1)
        taps = self.kernel.shape[0]
        return np.ascontiguousarray(y[:, taps - 1:taps - 1 + n_out], dtype=np.float32)


class _Affine:
    """Inference-mode BatchNormalization that could not be folded into a convolution."""

    def __init__(self, scale: np.ndarray, shift: np.ndarray):
        self.scale, self.shift = scale.astype(np.float32), shift.astype(np.float32)

    def __call__(self, x):
        x = x * self.scale
        x += self.shift
        return x


class _MaxPool1D:
    def __init__(self, pool: int):
        self.pool = pool

    def __call__(self, x):
        steps = x.shape[1] // self.pool
        return x[:, :steps * self.pool].reshape(x.shape[0], steps, self.pool, x.shape[2]).max(axis=2)


class _Dense:
    def __init__(self, kernel, bias, activation):
        self.kernel = kernel.astype(np.float32)
        self.bias = None if bias is None else bias.astype(np.float32)
        self.activation = activation

    def __call__(self, x):
        y = x @ self.kernel
        if self.bias is not None:
            y += self.bias
        return y if self.activation is None else self.activation(y)


class _LSTM:
    """Keras's LSTM, in one or two directions at once (a Bidirectional layer's two LSTMs share every step).

    Keras orders the gates i, f, c, o; the columns are reordered to i, f, o, c at load time so that one
    recurrent activation covers three gates and one activation the candidate. Each step is then a single
    batched matrix product and a dozen whole-array operations for both directions together.
    """

    def __init__(self, cells: list[dict], activation, recurrent_activation, return_sequences: bool,
                 merge: str | None):
        units = cells[0]["recurrent"].shape[0]
        order = np.concatenate([np.arange(0, 2 * units), np.arange(3 * units, 4 * units),
                                np.arange(2 * units, 3 * units)])  # i, f, c, o -> i, f, o, c
        self.units, self.backwards = units, [cell["backwards"] for cell in cells]
        self.kernel = np.concatenate([cell["kernel"][:, order] for cell in cells], axis=1).astype(np.float32)
        self.bias = np.concatenate([(cell["bias"] if cell["bias"] is not None else np.zeros(4 * units))[order]
                                    for cell in cells]).astype(np.float32)
        self.recurrent = np.stack([cell["recurrent"][:, order] for cell in cells]).astype(np.float32)
        self.activation, self.recurrent_activation = activation, recurrent_activation
        self.return_sequences, self.merge = return_sequences, merge

    def __call__(self, x):
        batch, steps, features = x.shape
        n_dir, units = len(self.backwards), self.units
        projected = (x.reshape(-1, features) @ self.kernel + self.bias).reshape(batch, steps, n_dir, 4 * units)
        # z[t, d]: direction d's input term at its t-th step (a backward direction reads the sequence reversed)
        z_all = np.empty((steps, n_dir, batch, 4 * units), np.float32)
        for d, backwards in enumerate(self.backwards):
            z_all[:, d] = (projected[:, ::-1, d] if backwards else projected[:, :, d]).transpose(1, 0, 2)
        # Every step works in these buffers: allocating fresh arrays each step would cost more than the
        # arithmetic (new pages from the OS for every temporary).
        h = np.zeros((n_dir, batch, units), np.float32)
        c = np.zeros((n_dir, batch, units), np.float32)
        recurrent_term = np.empty((n_dir, batch, 4 * units), np.float32)
        cell_out = np.empty((n_dir, batch, units), np.float32)
        outputs = np.empty((steps, n_dir, batch, units), np.float32) if self.return_sequences else None
        for t in range(steps):
            z = z_all[t]
            np.matmul(h, self.recurrent, out=recurrent_term)
            z += recurrent_term
            self.recurrent_activation(z[..., :3 * units])
            candidate = self.activation(z[..., 3 * units:])
            c *= z[..., units:2 * units]
            candidate *= z[..., :units]
            c += candidate
            np.copyto(cell_out, c)
            np.multiply(self.activation(cell_out), z[..., 2 * units:3 * units], out=h)
            if outputs is not None:
                outputs[t] = h
        if outputs is None:
            parts = list(h)  # the final state of each direction, (batch, units)
        else:  # every direction's outputs in its own processing order, as Keras returns them
            parts = [outputs[:, d].transpose(1, 0, 2) for d in range(n_dir)]
            if n_dir == 2:  # Bidirectional returns the backward sequence in input time order
                parts[1] = parts[1][:, ::-1]
        if self.merge is None:
            return np.ascontiguousarray(parts[0])
        if self.merge == "concat":
            return np.concatenate(parts, axis=-1)
        if self.merge == "sum":
            return parts[0] + parts[1]
        if self.merge == "mul":
            return parts[0] * parts[1]
        if self.merge == "ave":
            return (parts[0] + parts[1]) / 2
        raise UnsupportedModel(f"Bidirectional merge_mode '{self.merge}'")


class _ChannelRows:
    """``(B, T, C)`` → ``(B * C, T, 1)``: each channel becomes its own row for the shared Conv1D blocks
    (Keras's ``Permute((2, 1))`` + ``Reshape((C, T, 1))``, with the channel axis folded into the batch)."""

    def __init__(self, n_chans: int):
        self.n_chans = n_chans

    def __call__(self, x):
        batch, n_times, n_chans = x.shape
        return np.ascontiguousarray(x.transpose(0, 2, 1)).reshape(batch * n_chans, n_times, 1)


class _ChannelSummary:
    """``(B * C, T, F)`` → ``(B, T, 2F)``: mean and maximum over channels, concatenated (Keras's
    ``AveragePooling2D((C, 1))`` and ``MaxPooling2D((C, 1))``, ``Concatenate``, ``Reshape``)."""

    def __init__(self, n_chans: int, order: tuple[str, str]):
        self.n_chans, self.order = n_chans, order

    def __call__(self, x):
        rows, n_times, n_features = x.shape
        x = x.reshape(rows // self.n_chans, self.n_chans, n_times, n_features)
        parts = {"mean": x.mean(axis=1, dtype=np.float32), "max": x.max(axis=1)}
        return np.concatenate([parts[k] for k in self.order], axis=-1)


SPECTRAL_EPS = 1e-6  # floor inside the spectral branch's logarithms


def spectral_front_end(sfreq: float, bands, n_times: int) -> tuple[np.ndarray, np.ndarray]:
    """The spectral branch's band masks ``(n_times // 2 + 1, n_bands)`` and unit-energy Hann window, float32:
    one construction for the Keras layer (``models.SpectralFeatures``) and this engine, so both agree.

    A band above the Nyquist frequency (a low sampling rate) has no bin: its power is 0, a constant feature
    the following BatchNorm gives no weight, so any rate works.
    """
    freqs = np.fft.rfftfreq(n_times, 1.0 / sfreq)
    masks = np.stack([(freqs >= lo) & (freqs < hi) for lo, hi in bands], axis=1).astype(np.float32)
    window = np.hanning(n_times).astype(np.float32)  # normalised in float32, as the trained models were
    return masks, window / np.sqrt((window ** 2).sum())


def periodogram_basis(bins: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Windowed cosine and sine columns ``(n_times, 2 × len(bins))`` of the DFT at ``bins``, float32.

    ``x @ basis`` squared and summed over each cosine/sine pair is the periodogram at those bins, as an FFT
    would give it: a plain matrix product, which ONNX exports (TensorFlow's RFFT does not) and which costs
    no more than the FFT when the bands use a fraction of the bins.
    """
    n_times = window.shape[0]
    angle = 2 * np.pi * np.arange(n_times)[:, None] * bins[None, :] / n_times
    return (np.concatenate([np.cos(angle), np.sin(angle)], axis=1) * window[:, None]).astype(np.float32)


def spectral_projection(sfreq: float, bands, n_times: int) -> tuple[np.ndarray, np.ndarray]:
    """The spectral branch as matrix products: ``(x @ basis) ** 2 @ masks`` is the band power that
    :func:`spectral_front_end`'s masks applied to the Hann-windowed periodogram give, restricted to the bins
    some band uses (at least one, so a rate too low for every band still makes a valid, all-zero product)."""
    masks, window = spectral_front_end(sfreq, bands, n_times)
    bins = np.flatnonzero(masks.any(axis=1))
    if bins.size == 0:
        bins = np.array([0])
    return periodogram_basis(bins, window), np.concatenate([masks[bins], masks[bins]])


class _Spectral:
    """The spectral branch's features (``models.SpectralFeatures``) of raw windows ``(B, T, C)``."""

    def __init__(self, sfreq: float, bands, n_times: int):
        self.basis, self.masks = spectral_projection(sfreq, bands, n_times)

    def __call__(self, x):
        x = x.transpose(0, 2, 1).astype(np.float32)
        x = x - x.mean(axis=-1, keepdims=True, dtype=np.float32)
        projected = x @ self.basis
        band = (projected * projected) @ self.masks
        eps = np.float32(SPECTRAL_EPS)
        log_band = np.log(band + eps)
        relative = log_band - np.log(band.sum(axis=-1, keepdims=True) + eps)
        log_var = np.log((x * x).mean(axis=-1, keepdims=True) + eps)
        line_length = np.log(np.abs(np.diff(x, axis=-1)).mean(axis=-1, keepdims=True) + eps)
        per_channel = np.concatenate([log_band, relative, log_var, line_length], axis=-1)
        return np.concatenate([per_channel.mean(axis=1), per_channel.max(axis=1)], axis=-1)


class _Join:
    """A side branch from the model's input (the spectral branch), run and concatenated to the main chain."""

    def __init__(self, side: list, side_first: bool):
        self.side, self.side_first = side, side_first

    def __call__(self, x, inputs):
        s = inputs
        for op in self.side:
            s = op(s)
        return np.concatenate([s, x] if self.side_first else [x, s], axis=-1)


class _Swap:
    """An activation applied after the following max-pooling (same result, fewer values)."""

    def __init__(self, pool, activation):
        self.pool, self.activation = pool, activation

    def __call__(self, x):
        return self.activation(self.pool(x))


class NumpyModel:
    """The layer chain of a saved Keras model, evaluated in float32 NumPy.

    ``predict(windows)`` takes ``(n, n_times, n_chans)`` and returns ``(n, n_outputs)``.
    """

    def __init__(self, ops: list, input_shape: tuple[int, int], n_outputs: int):
        self.ops, self.input_shape, self.n_outputs = ops, input_shape, n_outputs

    @classmethod
    def load(cls, path: str | Path) -> NumpyModel:
        """Read ``model.keras``; :class:`UnsupportedModel` when a layer is not one this engine knows."""
        import h5py

        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
            with archive.open("model.weights.h5") as raw, h5py.File(io.BytesIO(raw.read()), "r") as h5:
                weights = _weights_by_layer(h5)
        return _build(config, weights)

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = inputs = np.ascontiguousarray(x, dtype=np.float32)
        for op in self.ops:
            x = op(x, inputs) if isinstance(op, _Join) else op(x)
        return x

    def predict(self, windows: np.ndarray, threads: int = 1, batch: int = BATCH) -> np.ndarray:
        """Outputs for ``windows`` (any array-like indexable by row ranges, e.g. a strided view)."""
        n = len(windows)
        out = np.empty((n, self.n_outputs), np.float32)
        starts = range(0, n, batch)

        def run(start: int) -> None:
            out[start:start + batch] = self.forward(windows[start:start + batch])

        with _single_threaded_blas():
            if threads <= 1 or n <= batch:
                for start in starts:
                    run(start)
            else:
                with ThreadPoolExecutor(threads) as pool:
                    for _ in pool.map(run, starts):
                        pass
        return out


_CONTROLLER = None


def _single_threaded_blas():
    """One BLAS thread during a prediction: the matrices are small, and OpenBLAS's own threads then cost
    more than they bring (tenfold for one window on a busy machine); parallelism comes from ``threads``."""
    global _CONTROLLER
    try:
        if _CONTROLLER is None:
            from threadpoolctl import ThreadpoolController

            _CONTROLLER = ThreadpoolController()
        return _CONTROLLER.limit(limits=1, user_api="blas")
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        import contextlib

        return contextlib.nullcontext()


def _weights_by_layer(h5) -> dict[str, dict]:
    """``{layer name: {"vars": [arrays], sub-layer: {...}}}`` from Keras 3's weights file."""

    def read(group) -> dict:
        item: dict = {"vars": []}
        if "vars" in group:
            item["vars"] = [np.asarray(group["vars"][k]) for k in sorted(group["vars"], key=int)]
        for key in group:
            if key != "vars" and hasattr(group[key], "keys"):
                item[key] = read(group[key])
        return item

    out = {}
    for key in h5["layers"]:
        group = h5["layers"][key]
        name = group["vars"].attrs.get("name") if "vars" in group else None
        out[str(name) if name is not None else key] = read(group)
    return out


def _inbounds(layer: dict) -> list[str]:
    """Names of the layers feeding ``layer`` (one call of it: shared layers are not supported)."""
    nodes = layer.get("inbound_nodes") or []
    if not nodes:
        return []
    args = nodes[0].get("args") or []
    if len(nodes) != 1 or len(args) != 1:
        raise UnsupportedModel(f"layer {layer.get('name')} is called more than once or with several arguments")
    tensors = args[0] if isinstance(args[0], list) else [args[0]]
    if not all(isinstance(t, dict) and "keras_history" in t.get("config", {}) for t in tensors):
        raise UnsupportedModel(f"layer {layer.get('name')} inputs")
    return [t["config"]["keras_history"][0] for t in tensors]


def _bn_affine(cfg: dict, vars_: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    values = list(vars_)
    gamma = values.pop(0) if cfg.get("scale", True) else None
    beta = values.pop(0) if cfg.get("center", True) else None
    mean, var = values[0], values[1]
    scale = 1.0 / np.sqrt(var.astype(np.float64) + cfg.get("epsilon", 1e-3))
    if gamma is not None:
        scale = scale * gamma
    shift = -mean * scale + (0.0 if beta is None else beta)
    return scale, shift


def _lstm_cell(layer: dict, weights: dict) -> tuple[dict, dict]:
    """One LSTM's settings and weights, checked."""
    if layer.get("class_name") != "LSTM":
        raise UnsupportedModel(f"recurrent layer {layer.get('class_name')}")
    cfg = layer["config"]
    for key in ("stateful", "return_state"):
        if cfg.get(key):
            raise UnsupportedModel(f"LSTM with {key}")
    for key in ("activation", "recurrent_activation"):
        if cfg.get(key) not in ("tanh", "sigmoid", "relu", "linear"):
            raise UnsupportedModel(f"LSTM {key} {cfg.get(key)}")
    vars_ = weights.get("cell", {}).get("vars") or weights.get("vars", [])
    bias = vars_[2] if cfg.get("use_bias", True) else None
    return cfg, {"kernel": vars_[0], "recurrent": vars_[1], "bias": bias, "backwards": bool(cfg.get("go_backwards"))}


def _identity(x):
    return x


def _lstm_op(cells: list[tuple[dict, dict]], merge: str | None) -> _LSTM:
    cfgs = [cfg for cfg, _ in cells]
    if any((c["activation"], c["recurrent_activation"], c.get("return_sequences"), c["units"])
           != (cfgs[0]["activation"], cfgs[0]["recurrent_activation"], cfgs[0].get("return_sequences"),
               cfgs[0]["units"]) for c in cfgs):
        raise UnsupportedModel("Bidirectional with different forward and backward settings")
    return _LSTM([cell for _, cell in cells], _activation(cfgs[0]["activation"]) or _identity,
                 _activation(cfgs[0]["recurrent_activation"]) or _identity, bool(cfgs[0].get("return_sequences")),
                 merge)


def _build(config: dict, weights: dict[str, dict]) -> NumpyModel:
    if config.get("class_name") not in ("Functional", "Sequential"):
        raise UnsupportedModel(f"model class {config.get('class_name')}")
    layers = config["config"]["layers"]
    ops: list = []
    input_shape = None
    previous = None
    rows = 0  # > 0 inside the per-channel encoder: the number of channels folded into the batch axis
    # The branches allowed: the mean and the max over channels of one tensor, then concatenated; and one
    # side chain from the input (the spectral branch), concatenated to the main chain once.
    summary: dict[str, str] = {}  # pooling layer name -> "mean" | "max", waiting for their Concatenate
    input_name = None
    side: tuple | None = None  # the side chain's (ops, last layer name, rows) while it is open
    for layer in layers:
        kind, cfg, name = layer["class_name"], layer["config"], layer.get("name", layer["config"].get("name"))
        fed = _inbounds(layer) if config["class_name"] == "Functional" and kind != "InputLayer" else None
        vars_ = weights.get(name, {}).get("vars", [])
        if kind == "SpectralFeatures":
            if fed != [input_name] or side is not None or input_shape is None:
                raise UnsupportedModel(f"layer {name}: a spectral branch must read the model's input, once")
            side = ([_Spectral(float(cfg["sfreq"]), cfg["bands"], int(input_shape[0]))], name, 0)
            continue
        if side is not None and kind == "Concatenate" and fed is not None and set(fed) == {previous, side[1]}:
            if cfg.get("axis", -1) not in (-1, 1):
                raise UnsupportedModel(f"Concatenate {name} axis")
            ops.append(_Join(side[0], side_first=fed[0] == side[1]))
            side, previous = None, name
            continue
        on_side = side is not None and fed == [side[1]]
        if on_side:  # run the step below on the side chain's state
            (ops, previous, rows), side = side, (ops, previous, rows)
        if fed is not None and fed != [previous] and not (kind == "Concatenate" and set(fed) == set(summary)):
            raise UnsupportedModel(f"layer {name} is not fed by the layer before it")
        previous = name
        if kind == "InputLayer":
            input_shape = tuple(cfg["batch_shape"][1:])
            input_name = name
        elif kind == "Permute" and rows == 0 and list(cfg.get("dims", [])) == [2, 1]:
            rows = -1  # must be followed by the Reshape to (channels, time, 1)
        elif kind == "Reshape" and rows == -1:
            if input_shape is None or list(cfg["target_shape"]) != [input_shape[1], input_shape[0], 1]:
                raise UnsupportedModel(f"Reshape {name} target shape")
            rows = int(input_shape[1])
            ops.append(_ChannelRows(rows))
        elif kind == "Conv2D" and rows > 0:
            if (list(cfg["kernel_size"])[0] != 1 or list(cfg.get("strides", [1, 1])) != [1, 1]
                    or list(cfg.get("dilation_rate", [1, 1])) != [1, 1] or cfg.get("groups", 1) != 1
                    or cfg.get("padding") not in ("same", "valid") or cfg.get("data_format") != "channels_last"):
                raise UnsupportedModel(f"Conv2D {name} settings")
            ops.append(_Conv1D(vars_[0][0], vars_[1] if cfg.get("use_bias", True) else None, cfg["padding"],
                               _activation(cfg.get("activation", "linear"))))
        elif kind in ("AveragePooling2D", "MaxPooling2D") and rows > 0 and list(cfg["pool_size"]) == [rows, 1]:
            if cfg.get("padding", "valid") != "valid" or list(cfg.get("strides") or [rows, 1]) != [rows, 1]:
                raise UnsupportedModel(f"{kind} {name} settings")
            statistic = "mean" if kind == "AveragePooling2D" else "max"
            if statistic in summary.values():
                raise UnsupportedModel(f"{kind} {name}: the same channel pooling twice")
            summary[name] = statistic
            previous = fed[0] if fed else previous  # the other pooling branches off the same tensor
        elif kind == "Concatenate" and len(summary) == 2 and fed and cfg.get("axis", -1) in (-1, 3):
            ops.append(_ChannelSummary(rows, (summary[fed[0]], summary[fed[1]])))
            summary = {}
        elif kind == "Reshape" and rows > 0 and not summary and isinstance(ops[-1], _ChannelSummary):
            rows = 0  # (B, 1, T', 2F) → (B, T', 2F): already the engine's layout
        elif kind == "Conv1D":
            if (cfg.get("strides", [1])[0] != 1 or cfg.get("dilation_rate", [1])[0] != 1 or cfg.get("groups", 1) != 1
                    or cfg.get("padding") not in ("same", "valid") or cfg.get("data_format") != "channels_last"):
                raise UnsupportedModel(f"Conv1D {name} settings")
            ops.append(_Conv1D(vars_[0], vars_[1] if cfg.get("use_bias", True) else None, cfg["padding"],
                               _activation(cfg.get("activation", "linear"))))
        elif kind == "BatchNormalization":
            if cfg.get("axis", -1) not in (-1, [-1], *((2, [2]) if rows == 0 else (3, [3]))):
                raise UnsupportedModel(f"BatchNormalization {name} axis")
            scale, shift = _bn_affine(cfg, vars_)
            last = ops[-1] if ops else None
            if isinstance(last, _Conv1D) and last.activation is None:
                last.fold_batchnorm(scale, shift)
            else:
                ops.append(_Affine(scale, shift))
        elif kind == "Activation":
            fn = _activation(cfg["activation"])
            if fn is not None:
                ops.append(fn)
        elif kind == "ReLU" and not any(cfg.get(k) for k in ("max_value", "negative_slope", "threshold")):
            ops.append(_ACTIVATIONS["relu"])
        elif kind == "MaxPooling1D" or (kind == "MaxPooling2D" and rows > 0 and list(cfg["pool_size"])[0] == 1):
            pool = cfg["pool_size"][-1] if isinstance(cfg["pool_size"], list) else cfg["pool_size"]
            strides = cfg.get("strides") or pool
            strides = strides[-1] if isinstance(strides, list) else strides
            if (strides != pool or cfg.get("padding", "valid") != "valid"
                    or (kind == "MaxPooling2D" and list(cfg.get("strides") or [1, pool])[0] != 1)):
                raise UnsupportedModel(f"{kind} {name} settings")
            pooling = _MaxPool1D(int(pool))
            if ops and ops[-1] is _ACTIVATIONS["relu"]:
                ops[-1] = _Swap(pooling, ops[-1])
            else:
                ops.append(pooling)
        elif kind in ("Dropout", "SpatialDropout1D", "GaussianNoise", "GaussianDropout", "AlphaDropout"):
            pass  # inference: identity
        elif kind == "LSTM":
            ops.append(_lstm_op([_lstm_cell(layer, weights.get(name, {}))], None))
        elif kind == "Bidirectional":
            sub = weights.get(name, {})
            backward_layer = cfg.get("backward_layer") or {
                "class_name": cfg["layer"]["class_name"], "config": {**cfg["layer"]["config"], "go_backwards": True}}
            cells = [_lstm_cell(cfg["layer"], sub.get("forward_layer", {})),
                     _lstm_cell(backward_layer, sub.get("backward_layer", {}))]
            ops.append(_lstm_op(cells, cfg.get("merge_mode", "concat")))
        elif kind == "Dense":
            ops.append(_Dense(vars_[0], vars_[1] if cfg.get("use_bias", True) else None,
                              _activation(cfg.get("activation", "linear"))))
        elif kind == "GlobalAveragePooling1D" and not cfg.get("keepdims"):
            ops.append(lambda x: x.mean(axis=1))
        elif kind == "GlobalMaxPooling1D" and not cfg.get("keepdims"):
            ops.append(lambda x: x.max(axis=1))
        else:
            raise UnsupportedModel(f"layer {name} ({kind})")
        if on_side:
            side, (ops, previous, rows) = (ops, previous, rows), side
    if side is not None:
        raise UnsupportedModel("a side branch that is never joined to the main chain")
    if rows or summary:
        raise UnsupportedModel("a per-channel encoder without its channel summary")
    outputs = [layer for layer in layers if layer.get("name") == previous]
    n_outputs = outputs[0]["config"].get("units") if outputs and outputs[0]["class_name"] == "Dense" else None
    if input_shape is None or n_outputs is None:
        raise UnsupportedModel("no input layer or no Dense output layer")
    return NumpyModel(ops, input_shape, int(n_outputs))
