"""The seizure detectors of the group level, written against ``keras`` alone.

Every model shares one braindecode-style signature, ``build_model(n_chans, n_outputs, n_times, sfreq,
cfg)``, takes time-major z-scored windows ``(n_times, n_chans)`` on an input named ``eeg`` and returns
``n_outputs`` softmax probabilities (class 1 = seizure). Only ``keras`` and ``keras.ops`` are used, so
the same code runs on the TensorFlow, JAX and PyTorch backends. Weights are initialised from Keras's
global seed: call ``keras.utils.set_random_seed`` before building for reproducible models.

Presets (``model.preset``):

``neurocare``
    Conv1D blocks (Conv1D → BatchNorm → ReLU → MaxPooling1D → Dropout) → stacked (Bi)LSTM whose last
    layer returns its final states, joined by a spectral side branch (:class:`SpectralFeatures` → BatchNorm
    → Dense + ReLU; ``spectral_units``, 0 = none) → Dense + ReLU → Dropout → Dense softmax. The first convolution is
    :data:`FIRST_KERNEL_SECONDS` long (64 samples at 128 Hz), the later ones ``conv_kernel_size``. With
    ``encoder = "per_channel"`` the Conv1D blocks run on each channel with shared weights (as ``(1, k)``
    Conv2D layers over ``(channels, time)``) and the LSTM reads their mean and maximum over channels.
``seed``
    The original NeuroCare code's model, layer for layer, for comparison. It ignores the other model
    keys; it was trained with :data:`SEED_TRAINING`.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import layers

from ..config import ModelConfig
from . import losses  # noqa: F401 - registers the focal loss: importing this module is all a saved model needs

SPECTRAL_EPS = 1e-6  # floor inside the spectral branch's logarithms


def spectral_front_end(sfreq: float, bands, n_times: int) -> tuple[np.ndarray, np.ndarray]:
    """The spectral branch's band masks ``(n_times // 2 + 1, n_bands)`` and unit-energy Hann window, float32:
    one construction, shared by the layer and the tests that check it against the FFT it replaced.

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


# The original code trained its model with Adam at this learning rate and batch size.
SEED_TRAINING: dict[str, float | int] = {"learning_rate": 1e-4, "batch_size": 16}

# Length of the first convolution, in seconds. Half a second, as EEGNet's first temporal convolution
# (64 taps at 128 Hz, Lawhern et al. 2018): long enough for the first layer to act as a learned filter
# bank that separates rhythms down to 2 Hz (ictal delta/theta included), which a 7-tap kernel (55 ms at
# 128 Hz) cannot. The later layers see a pooled signal, so their short kernels keep covering more time.
FIRST_KERNEL_SECONDS = 0.5

PRESETS = ("neurocare", "seed")


def build_model(n_chans: int, n_outputs: int, n_times: int, sfreq: float, cfg: ModelConfig) -> keras.Model:
    """The detector chosen by ``cfg.preset`` for windows of ``n_times`` samples × ``n_chans`` channels."""
    if n_chans < 1 or n_times < 1:
        raise ValueError(f"windows need at least one channel and one sample; got ({n_times}, {n_chans})")
    if n_outputs < 2:
        raise ValueError(f"a softmax classifier needs at least 2 outputs; got n_outputs={n_outputs}")
    if sfreq <= 0:
        raise ValueError(f"sfreq must be positive; got {sfreq}")
    if cfg.preset == "neurocare":
        return _build_neurocare(n_chans, n_outputs, n_times, sfreq, cfg)
    if cfg.preset == "seed":
        return _build_seed(n_chans, n_outputs, n_times)
    if cfg.preset == "features":
        raise ValueError("the `features` preset is the gradient-boosting baseline, not a Keras model")
    raise ValueError(f"unknown model preset '{cfg.preset}' (known: {', '.join(PRESETS)})")


def first_kernel_size(sfreq: float, cfg: ModelConfig) -> int:
    """Taps of the first convolution: :data:`FIRST_KERNEL_SECONDS` at ``sfreq``, never below the others."""
    return max(cfg.conv_kernel_size, round(FIRST_KERNEL_SECONDS * sfreq))


def _build_neurocare(n_chans: int, n_outputs: int, n_times: int, sfreq: float,
                     cfg: ModelConfig) -> keras.Model:
    steps = n_times // cfg.pool_size ** len(cfg.conv_filters)
    if steps < 1:
        raise ValueError(f"windows of {n_times} samples are too short for {len(cfg.conv_filters)} pooling "
                         f"steps of {cfg.pool_size}; use longer windows, fewer conv_filters or a smaller "
                         "pool_size")
    # He initialisation suits the ReLU layers; L2 on the Conv1D and Dense kernels only (not on the LSTM,
    # whose recurrent weights are kept in check by the gates).
    l2 = keras.regularizers.L2(cfg.l2) if cfg.l2 else None
    inputs = keras.Input(shape=(n_times, n_chans), name="eeg")
    if cfg.encoder == "per_channel":
        x = _per_channel_encoder(inputs, n_chans, n_times, steps, sfreq, cfg, l2)
    else:
        x = _multichannel_encoder(inputs, sfreq, cfg, l2)
    if cfg.lstm_units:
        for i, units in enumerate(cfg.lstm_units, start=1):
            last = i == len(cfg.lstm_units)
            # The defaults below are spelled out because they are what lets Keras use the fused cuDNN
            # kernel on a GPU (TensorFlow and PyTorch backends); without it the recurrence runs step by step.
            lstm = layers.LSTM(units, activation="tanh", recurrent_activation="sigmoid", recurrent_dropout=0.0,
                               unroll=False, use_bias=True, use_cudnn="auto", return_sequences=not last,
                               name=f"lstm{i}")
            if cfg.bidirectional:
                lstm = layers.Bidirectional(lstm, name=f"bilstm{i}")
            x = lstm(x)
    else:  # ablation: the same convolutional features, averaged over time instead of read by an LSTM
        x = layers.GlobalAveragePooling1D(name="time_average")(x)
    if cfg.channel_features:
        x = layers.Concatenate(name="join_channels")([x, _channel_feature_branch(inputs, sfreq, cfg, l2)])
    if cfg.spectral_units:
        s = SpectralFeatures(sfreq, name="spectral_features")(inputs)
        s = layers.BatchNormalization(name="spectral_bn")(s)
        s = layers.Dense(cfg.spectral_units, activation="relu", kernel_initializer="he_uniform",
                         kernel_regularizer=l2, name="spectral_dense")(s)
        x = layers.Concatenate(name="join")([x, s])
    x = layers.Dense(cfg.dense_units, activation="relu", kernel_initializer="he_uniform",
                     kernel_regularizer=l2, name="dense")(x)
    x = layers.Dropout(cfg.dropout, name="dense_dropout")(x)
    # float32 output whatever the global dtype policy, so mixed precision cannot saturate the softmax.
    outputs = layers.Dense(n_outputs, activation="softmax", kernel_regularizer=l2, dtype="float32",
                           name="probabilities")(x)
    return keras.Model(inputs, outputs, name="neurocare")


# Bands of the spectral branch, in Hz (those of the classic baseline).
SPECTRAL_BANDS: tuple[tuple[float, float], ...] = ((0.5, 4.0), (4.0, 8.0), (8.0, 13.0), (13.0, 30.0))


@keras.saving.register_keras_serializable(package="neurocare")
class SpectralFeatures(layers.Layer):
    """Per-channel spectral and amplitude features of a window, summarised over channels.

    For each channel of ``(batch, n_times, n_chans)``: log power in each of ``bands`` (Hann-windowed
    periodogram), each band's log share of their total, log variance and log line length (mean absolute
    first difference). Their mean and maximum over channels make ``(batch, 2 × (2 × n_bands + 2))``, the
    same whatever the montage or channel order. No weights: a fixed, differentiable front end that hands the
    dense layers what clinicians read first (rhythmic power, amplitude) next to the learned features.

    The periodogram is a product with fixed cosine and sine matrices restricted to the bins the bands use
    (:func:`spectral_projection`), not an FFT, so the layer exports to ONNX; it
    equals the FFT formulation the first models were trained with to float32 rounding, and its
    configuration is unchanged, so those models load and keep their numbers.
    """

    def __init__(self, sfreq: float, bands=SPECTRAL_BANDS, **kwargs):
        super().__init__(**kwargs)
        self.sfreq = float(sfreq)
        self.bands = tuple((float(lo), float(hi)) for lo, hi in bands)

    def build(self, input_shape):
        basis, masks = spectral_projection(self.sfreq, self.bands, int(input_shape[1]))
        # Kept as NumPy and made tensors in call(): traced there they become graph constants, where
        # tensors made here would be captured variables that the ONNX export turns into extra inputs.
        self._basis, self._masks = basis, masks  # (time, 2 * bins), (2 * bins, bands)

    def call(self, x):
        ops = keras.ops
        x = ops.transpose(ops.cast(x, "float32"), (0, 2, 1))  # (batch, channels, time)
        x = x - ops.mean(x, axis=-1, keepdims=True)
        projected = ops.matmul(x, ops.convert_to_tensor(self._basis))
        band = ops.matmul(projected * projected, ops.convert_to_tensor(self._masks))  # (batch, channels, bands)
        eps = SPECTRAL_EPS
        log_band = ops.log(band + eps)
        relative = log_band - ops.log(ops.sum(band, axis=-1, keepdims=True) + eps)
        log_var = ops.log(ops.mean(x * x, axis=-1, keepdims=True) + eps)
        line_length = ops.log(ops.mean(ops.abs(x[..., 1:] - x[..., :-1]), axis=-1, keepdims=True) + eps)
        per_channel = ops.concatenate([log_band, relative, log_var, line_length], axis=-1)
        return ops.concatenate([ops.mean(per_channel, axis=1), ops.max(per_channel, axis=1)], axis=-1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 2 * (2 * len(self.bands) + 2))

    def get_config(self):
        return {**super().get_config(), "sfreq": self.sfreq, "bands": [list(b) for b in self.bands]}


# Finer bands for the per-channel feature branch: ictal rhythms (2-8 Hz), alpha, spindles and the
# low-voltage fast activity of many seizure onsets (13-30 Hz) each get their own.
CHANNEL_BANDS: tuple[tuple[float, float], ...] = (
    (0.5, 2.0), (2.0, 4.0), (4.0, 6.0), (6.0, 8.0), (8.0, 10.0), (10.0, 13.0), (13.0, 20.0), (20.0, 30.0),
)
CHANNEL_EPS = 1e-6  # floor inside the per-channel features' logarithms (a zero-filled channel has no power)


def channel_feature_names(bands=CHANNEL_BANDS) -> list[str]:
    """What each column of :class:`ChannelFeatures` is, in order."""
    names = [f"log_power_{lo:g}_{hi:g}hz" for lo, hi in bands]
    names += [f"rel_power_{lo:g}_{hi:g}hz" for lo, hi in bands]
    return names + ["log_variance", "log_line_length", "log_mobility", "log_complexity", "log_crest",
                    "skewness", "log_kurtosis", "zero_crossings"]


@keras.saving.register_keras_serializable(package="neurocare")
class ChannelFeatures(layers.Layer):
    """The classic seizure features of each channel of a window, ``(batch, n_times, n_chans)`` →
    ``(batch, n_chans, n_features)`` (:func:`channel_feature_names`): log band powers and their shares
    (Hann-windowed periodogram), log variance, line length, Hjorth mobility and complexity, crest factor,
    skewness, kurtosis and zero crossings.

    What the feature baseline reads, made a first-class input of the network: the features stay per
    channel, so a seizure on one electrode is not averaged away before anything is learned (the spectral
    branch summarises over channels first). No weights. The periodogram is a product with fixed cosine and
    sine matrices rather than an FFT, so the layer exports to ONNX as plain matrix products.
    """

    def __init__(self, sfreq: float, bands=CHANNEL_BANDS, **kwargs):
        super().__init__(**kwargs)
        self.sfreq = float(sfreq)
        self.bands = tuple((float(lo), float(hi)) for lo, hi in bands)

    def build(self, input_shape):
        n_times = int(input_shape[1])
        freqs = np.fft.rfftfreq(n_times, 1.0 / self.sfreq)
        keep = np.flatnonzero((freqs >= self.bands[0][0]) & (freqs < self.bands[-1][1]))
        if keep.size == 0:  # windows too short or a rate too low for any band: constant features
            keep = np.array([0])
        window = np.hanning(n_times)
        window /= np.sqrt((window ** 2).sum())
        masks = np.stack([(freqs[keep] >= lo) & (freqs[keep] < hi) for lo, hi in self.bands], axis=1)
        # NumPy here, tensors in call(): graph constants there, not extra inputs of an ONNX export.
        self._basis = periodogram_basis(keep, window)  # (time, 2 * bins)
        self._masks = np.concatenate([masks, masks]).astype("float32")

    def call(self, x):
        ops = keras.ops
        eps = CHANNEL_EPS
        x = ops.transpose(ops.cast(x, "float32"), (0, 2, 1))  # (batch, channels, time)
        x = x - ops.mean(x, axis=-1, keepdims=True)
        projected = ops.matmul(x, ops.convert_to_tensor(self._basis))
        band = ops.matmul(projected * projected, ops.convert_to_tensor(self._masks))  # (batch, channels, bands)
        log_band = ops.log(band + eps)
        relative = log_band - ops.log(ops.sum(band, axis=-1, keepdims=True) + eps)
        squared = x * x  # reused below: ONNX Runtime's Pow is several times slower than a product
        var = ops.mean(squared, axis=-1, keepdims=True)
        dx = x[..., 1:] - x[..., :-1]
        ddx = dx[..., 1:] - dx[..., :-1]
        var_dx = ops.var(dx, axis=-1, keepdims=True)
        var_ddx = ops.var(ddx, axis=-1, keepdims=True)
        log_mobility = 0.5 * (ops.log(var_dx + eps) - ops.log(var + eps))
        log_complexity = 0.5 * (ops.log(var_ddx + eps) - ops.log(var_dx + eps)) - log_mobility
        crest = ops.log(ops.max(ops.abs(x), axis=-1, keepdims=True) + eps) - 0.5 * ops.log(var + eps)
        skewness = ops.mean(squared * x, axis=-1, keepdims=True) / ((var + eps) * ops.sqrt(var + eps))
        kurtosis = ops.log(ops.mean(squared * squared, axis=-1, keepdims=True) + eps) - 2 * ops.log(var + eps)
        crossings = ops.mean(ops.cast(x[..., 1:] * x[..., :-1] < 0, "float32"), axis=-1, keepdims=True)
        return ops.concatenate([log_band, relative, ops.log(var + eps),
                                ops.log(ops.mean(ops.abs(dx), axis=-1, keepdims=True) + eps),
                                log_mobility, log_complexity, crest, ops.clip(skewness, -10.0, 10.0), kurtosis,
                                crossings], axis=-1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[2], 2 * len(self.bands) + 8)

    def get_config(self):
        return {**super().get_config(), "sfreq": self.sfreq, "bands": [list(b) for b in self.bands]}


def _channel_feature_branch(inputs, sfreq: float, cfg: ModelConfig, l2):
    """Per-channel features → one small network shared by every channel → mean and max over channels.

    The shared network scores how seizure-like each channel looks whatever its place on the head, and the
    maximum over channels keeps a focal seizure on one or two electrodes visible; like the per-channel
    encoder, the result does not change when the channels are reordered.
    """
    units = cfg.channel_features
    f = ChannelFeatures(sfreq, name="channel_features")(inputs)
    f = layers.BatchNormalization(name="channel_features_bn")(f)  # per feature, over windows and channels
    for i in (1, 2):
        f = layers.Dense(units, activation="relu", kernel_initializer="he_uniform", kernel_regularizer=l2,
                         name=f"channel_dense{i}")(f)
    mean = layers.GlobalAveragePooling1D(name="channel_features_mean")(f)
    peak = layers.GlobalMaxPooling1D(name="channel_features_max")(f)
    return layers.Concatenate(name="channel_features_summary")([mean, peak])


def _multichannel_encoder(x, sfreq: float, cfg: ModelConfig, l2):
    """Conv1D blocks over all channels at once: the first convolution mixes the montage (ablation)."""
    for i, filters in enumerate(cfg.conv_filters, start=1):
        kernel = first_kernel_size(sfreq, cfg) if i == 1 else cfg.conv_kernel_size
        # No bias: the BatchNorm's beta that follows makes it redundant.
        x = layers.Conv1D(filters, kernel, padding="same", use_bias=False, kernel_initializer="he_uniform",
                          kernel_regularizer=l2, name=f"block{i}_conv")(x)
        x = layers.BatchNormalization(name=f"block{i}_bn")(x)
        x = layers.Activation("relu", name=f"block{i}_relu")(x)
        x = layers.MaxPooling1D(cfg.pool_size, name=f"block{i}_pool")(x)
        x = layers.Dropout(cfg.dropout, name=f"block{i}_dropout")(x)
    return x


def _per_channel_encoder(x, n_chans: int, n_times: int, steps: int, sfreq: float, cfg: ModelConfig, l2):
    """Conv1D blocks applied to every channel with the same weights, then pooled across channels.

    Seizures start in different places in different people: a first layer that mixes the 19 channels
    learns where the training subjects' seizures were, which does not carry to a new subject. Here
    each channel is read by the same temporal filters (a ``(1, k)`` Conv2D over ``(channels, time)`` is
    a Conv1D shared by all channels), and the per-channel features are summarised by their mean (how
    widespread) and maximum (how strong where strongest) over channels at each time step. The result
    does not change when the channels are reordered, and every channel of every training window is
    a training example for the filters.
    """
    x = layers.Permute((2, 1), name="channels_first")(x)
    x = layers.Reshape((n_chans, n_times, 1), name="channel_rows")(x)
    for i, filters in enumerate(cfg.conv_filters, start=1):
        kernel = first_kernel_size(sfreq, cfg) if i == 1 else cfg.conv_kernel_size
        x = layers.Conv2D(filters, (1, kernel), padding="same", use_bias=False, kernel_initializer="he_uniform",
                          kernel_regularizer=l2, name=f"block{i}_conv")(x)
        x = layers.BatchNormalization(name=f"block{i}_bn")(x)
        x = layers.Activation("relu", name=f"block{i}_relu")(x)
        x = layers.MaxPooling2D((1, cfg.pool_size), name=f"block{i}_pool")(x)
        x = layers.Dropout(cfg.dropout, name=f"block{i}_dropout")(x)
    filters = cfg.conv_filters[-1]
    mean = layers.AveragePooling2D((n_chans, 1), name="channel_mean")(x)
    peak = layers.MaxPooling2D((n_chans, 1), name="channel_max")(x)
    x = layers.Concatenate(name="channel_summary")([mean, peak])
    return layers.Reshape((steps, 2 * filters), name="time_major")(x)


def _build_seed(n_chans: int, n_outputs: int, n_times: int) -> keras.Model:
    """The original code's model, layer for layer (Keras default initialisers, its L2 only on the LSTM)."""
    if n_times < 4:
        raise ValueError(f"the seed model pools by 4; windows of {n_times} samples are too short")
    inputs = keras.Input(shape=(n_times, n_chans), name="eeg")
    x = layers.Conv1D(8, 3, activation="relu", padding="same", name="conv1d")(inputs)
    x = layers.BatchNormalization(name="batch_norm")(x)
    x = layers.MaxPooling1D(4, name="max_pool")(x)
    x = layers.Dropout(0.3, name="conv_dropout")(x)
    x = layers.LSTM(16, kernel_regularizer=keras.regularizers.L2(0.01), name="lstm")(x)
    x = layers.Dense(16, activation="relu", name="dense")(x)
    x = layers.Dropout(0.3, name="dense_dropout")(x)
    outputs = layers.Dense(n_outputs, activation="softmax", dtype="float32", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="seed")


def model_summary(model: keras.Model) -> dict[str, Any]:
    """Parameter counts and the layer list, JSON-ready, for the model card."""

    def count(weights) -> int:
        return int(sum(_size(w.shape) for w in weights))

    layer_rows = []
    for layer in model.layers:
        row: dict[str, Any] = {
            "name": layer.name,
            "class": type(layer).__name__,
            "output_shape": _shape_list(layer.output.shape) if _has_output(layer) else None,
            "parameters": count(layer.weights),
        }
        if isinstance(layer, layers.Bidirectional):
            row["wraps"] = type(layer.forward_layer).__name__
            row["units"] = int(layer.forward_layer.units)
        elif hasattr(layer, "units"):
            row["units"] = int(layer.units)
        if isinstance(layer, layers.Conv1D):
            row["filters"] = int(layer.filters)
            row["kernel_size"] = int(layer.kernel_size[0])
        layer_rows.append(row)
    return {
        "name": model.name,
        "backend": keras.config.backend(),
        "input_shape": _shape_list(model.input_shape),
        "output_shape": _shape_list(model.output_shape),
        "parameters": count(model.weights),
        "trainable_parameters": count(model.trainable_weights),
        "non_trainable_parameters": count(model.non_trainable_weights),
        "layers": layer_rows,
    }


def _size(shape) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def _shape_list(shape) -> list[int | None]:
    return [None if d is None else int(d) for d in shape]


def _has_output(layer) -> bool:
    try:
        layer.output  # noqa: B018 - raises for layers used more than once or never called
    except (AttributeError, ValueError):
        return False
    return True
