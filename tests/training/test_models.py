"""The group-level models: shapes, the seed preset's exact architecture, the neurocare preset's design
(parameter count, cuDNN-compatible LSTMs, ablation), a few training steps and a save/load round trip."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from neurocare_bids.config import ModelConfig
from neurocare_bids.training.losses import FocalLoss
from neurocare_bids.training.models import FIRST_KERNEL_SECONDS, SEED_TRAINING, build_model, model_summary

SFREQ = 128.0
# Keras's TensorFlow backend converts tensors with np.array(x, copy=False) semantics NumPy 2 warns about.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def windows(n: int, n_times: int, n_chans: int = 19, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, n_times, n_chans)).astype("float32")


def lstm_layers(model: keras.Model) -> list[keras.layers.LSTM]:
    found = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.Bidirectional):
            found += [layer.forward_layer, layer.backward_layer]
        elif isinstance(layer, keras.layers.LSTM):
            found.append(layer)
    return found


@pytest.mark.parametrize("preset", ["neurocare", "seed"])
@pytest.mark.parametrize("n_times", [512, 1024])
def test_models_build_for_window_shapes(preset, n_times):
    keras.utils.set_random_seed(0)
    model = build_model(19, 2, n_times, SFREQ, ModelConfig(preset=preset))
    assert model.input_shape == (None, n_times, 19)
    assert model.inputs[0].name == "eeg" and model.layers[0].name == "eeg"
    probabilities = keras.ops.convert_to_numpy(model(windows(3, n_times), training=False))
    assert probabilities.shape == (3, 2)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert (probabilities >= 0).all()


def test_seed_preset_is_the_original_model():
    model = build_model(19, 2, 512, SFREQ, ModelConfig(preset="seed", conv_filters=[99], lstm_units=[7]))
    classes = [type(layer).__name__ for layer in model.layers]
    assert classes == ["InputLayer", "Conv1D", "BatchNormalization", "MaxPooling1D", "Dropout", "LSTM",
                       "Dense", "Dropout", "Dense"]
    _, conv, _, pool, drop1, lstm, dense, drop2, out = model.layers
    assert (conv.filters, conv.kernel_size, conv.padding, conv.activation.__name__) == (8, (3,), "same", "relu")
    assert conv.use_bias and conv.kernel_regularizer is None
    assert pool.pool_size == (4,) and drop1.rate == drop2.rate == 0.3
    assert lstm.units == 16 and not lstm.return_sequences and not lstm.go_backwards
    assert isinstance(lstm.kernel_regularizer, keras.regularizers.L2)
    assert lstm.kernel_regularizer.l2 == pytest.approx(0.01)
    assert lstm.recurrent_regularizer is None and lstm.bias_regularizer is None
    assert (dense.units, dense.activation.__name__) == (16, "relu")
    assert (out.units, out.activation.__name__) == (2, "softmax")
    # By hand, 19 channels:
    #   Conv1D(8, 3):   3 * 19 * 8 + 8                  =  464
    #   BatchNorm(8):   4 * 8 (gamma, beta, mean, var)   =   32 (16 trainable)
    #   LSTM(16) on 8:  4 * (8 * 16 + 16 * 16 + 16)      = 1600
    #   Dense(16):      16 * 16 + 16                     =  272
    #   Dense(2):       16 * 2 + 2                       =   34
    assert model.count_params() == 464 + 32 + 1600 + 272 + 34 == 2402
    summary = model_summary(model)
    assert summary["parameters"] == 2402 and summary["non_trainable_parameters"] == 16
    # the time axis only changes the LSTM's number of steps, not its weights
    assert build_model(19, 2, 1024, SFREQ, ModelConfig(preset="seed")).count_params() == 2402
    assert SEED_TRAINING == {"learning_rate": 1e-4, "batch_size": 16}


def test_neurocare_preset_architecture_and_size():
    cfg = ModelConfig()
    model = build_model(19, 2, 512, SFREQ, cfg)
    k1 = round(FIRST_KERNEL_SECONDS * SFREQ)
    assert k1 == 64
    # By hand, defaults (filters 32/64/64, kernel 7, BiLSTM 64, dense 64), 19 channels, no conv bias:
    #   block1: 64 * 19 * 32 = 38912 + BN 4 * 32 = 128
    #   block2:  7 * 32 * 64 = 14336 + BN 4 * 64 = 256
    #   block3:  7 * 64 * 64 = 28672 + BN 4 * 64 = 256
    #   BiLSTM(64) on 64 features: 2 * 4 * (64 * 64 + 64 * 64 + 64) = 66048
    #   spectral branch: 20 features (mean and max of 4 log band powers, 4 relative, log variance, log line
    #   length) → BN 4 * 20 = 80 → Dense(32): 20 * 32 + 32 = 672
    #   per-channel feature branch: 24 features per channel → BN 4 * 24 = 96 → Dense(32) 24 * 32 + 32 = 800 →
    #   Dense(32) 32 * 32 + 32 = 1056, shared by the channels; mean and max over channels: 64
    #   Dense(64) on 128 + 32 + 64: 224 * 64 + 64 = 14400;   Dense(2): 64 * 2 + 2 = 130
    expected = 38912 + 128 + 14336 + 256 + 28672 + 256 + 66048 + 80 + 672 + 96 + 800 + 1056 + 14400 + 130
    assert model.count_params() == expected == 165842
    without = build_model(19, 2, 512, SFREQ, ModelConfig(channel_features=0))  # the default until 2026-12-02
    assert without.count_params() == expected - (96 + 800 + 1056 + 64 * 64) == 159794
    assert build_model(19, 2, 512, SFREQ, ModelConfig(channel_features=0, spectral_units=0)).count_params() == 156994
    assert 150_000 <= expected <= 300_000
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv1D)]
    assert [c.filters for c in convs] == [32, 64, 64] and [c.kernel_size[0] for c in convs] == [64, 7, 7]
    assert all(c.kernel_regularizer.l2 == pytest.approx(1e-4) for c in convs)
    assert model.get_layer("dense").kernel_regularizer.l2 == pytest.approx(1e-4)
    assert model.get_layer("block3_pool").output.shape == (None, 64, 64)  # 512 / 2^3 LSTM steps
    assert model.get_layer("probabilities").activation.__name__ == "softmax"
    # a lower rate shortens the first kernel in samples, never below conv_kernel_size
    assert build_model(19, 2, 256, 64.0, cfg).get_layer("block1_conv").kernel_size == (32,)
    assert build_model(19, 2, 64, 8.0, cfg).get_layer("block1_conv").kernel_size == (7,)


def test_per_channel_encoder_shares_weights_across_channels_and_ignores_their_order():
    cfg = ModelConfig(encoder="per_channel", conv_filters=[16, 32, 32], channel_features=0)
    keras.utils.set_random_seed(0)
    model = build_model(19, 2, 512, SFREQ, cfg)
    # By hand: per-channel Conv1D blocks see one input channel, so their size does not grow with the montage:
    #   block1: 64 * 1 * 16 = 1024 + BN 64;  block2: 7 * 16 * 32 = 3584 + BN 128;  block3: 7 * 32 * 32 = 7168 + 128
    #   BiLSTM(64) on mean + max of 32 features (64): 2 * 4 * (64 * 64 + 64 * 64 + 64) = 66048
    #   spectral branch: BN 80 + Dense(32) 672;  Dense(64) on 128 + 32: 10304;  Dense(2): 130
    expected = 1024 + 64 + 3584 + 128 + 7168 + 128 + 66048 + 80 + 672 + 10304 + 130
    assert model.count_params() == expected
    assert build_model(32, 2, 512, SFREQ, cfg).count_params() == expected  # any number of channels, same weights
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [c.kernel_size for c in convs] == [(1, 64), (1, 7), (1, 7)]
    assert model.get_layer("time_major").output.shape == (None, 64, 64)  # 512 / 2^3 steps, mean + max of 32

    x = windows(4, 512)
    shuffled = x[:, :, np.random.default_rng(1).permutation(19)]
    p = keras.ops.convert_to_numpy(model(x, training=False))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(shuffled, training=False)), p, atol=1e-5)
    # the multichannel design does depend on which channel carries what
    mixed = build_model(19, 2, 512, SFREQ, ModelConfig(encoder="multichannel"))
    q = keras.ops.convert_to_numpy(mixed(x, training=False))
    assert np.abs(keras.ops.convert_to_numpy(mixed(shuffled, training=False)) - q).max() > 1e-4
    # a seizure-like rhythm on one channel is seen the same wherever it is
    t = np.arange(512) / SFREQ
    one = np.zeros((2, 512, 19), np.float32)
    one[0, :, 2] = one[1, :, 15] = 3 * np.sin(2 * np.pi * 5 * t)
    out = keras.ops.convert_to_numpy(model(one, training=False))
    np.testing.assert_allclose(out[0], out[1], atol=1e-5)


@pytest.mark.parametrize("units, bidirectional", [([64], True), ([32, 16], True), ([24, 8], False)])
def test_neurocare_lstms_keep_the_cudnn_conditions(units, bidirectional):
    model = build_model(19, 2, 256, SFREQ, ModelConfig(lstm_units=units, bidirectional=bidirectional))
    lstms = lstm_layers(model)
    assert len(lstms) == len(units) * (2 if bidirectional else 1)
    assert any(isinstance(layer, keras.layers.Bidirectional) for layer in model.layers) == bidirectional
    for lstm in lstms:
        assert lstm.cell.activation is keras.activations.tanh
        assert lstm.cell.recurrent_activation is keras.activations.sigmoid
        assert lstm.cell.recurrent_dropout == 0 and not lstm.unroll and lstm.cell.use_bias
        assert lstm.use_cudnn in ("auto", True)
    # every LSTM but the last feeds the next one a sequence; the last returns its final state
    sequence_flags = [lstm.return_sequences for lstm in lstms[:: 2 if bidirectional else 1]]
    assert sequence_flags == [True] * (len(units) - 1) + [False]
    assert model.output_shape == (None, 2)


def test_no_lstm_ablation():
    model = build_model(19, 2, 512, SFREQ, ModelConfig(lstm_units=[], channel_features=0))
    assert not lstm_layers(model)
    assert not any(isinstance(layer, keras.layers.Bidirectional) for layer in model.layers)
    assert any(isinstance(layer, keras.layers.GlobalAveragePooling1D) for layer in model.layers)
    assert model.get_layer("dense").input.shape == (None, 64 + 32)  # time-averaged features + spectral branch


def test_invalid_arguments_are_rejected():
    with pytest.raises(ValueError, match="too short"):
        build_model(19, 2, 4, SFREQ, ModelConfig())
    with pytest.raises(ValueError, match="preset"):
        build_model(19, 2, 512, SFREQ, ModelConfig(preset="resnet"))
    with pytest.raises(ValueError, match="not a Keras model"):
        build_model(19, 2, 512, SFREQ, ModelConfig(preset="features"))
    with pytest.raises(ValueError, match="2 outputs"):
        build_model(19, 1, 512, SFREQ, ModelConfig())


def test_same_seed_same_weights():
    def weights():
        keras.utils.set_random_seed(7)
        return [keras.ops.convert_to_numpy(w) for w in build_model(19, 2, 128, 32.0, ModelConfig()).weights]

    for a, b in zip(weights(), weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_model_summary_is_json_ready():
    model = build_model(19, 2, 512, SFREQ, ModelConfig())
    summary = json.loads(json.dumps(model_summary(model)))
    assert summary["name"] == "neurocare"
    assert summary["parameters"] == model.count_params()
    assert summary["trainable_parameters"] + summary["non_trainable_parameters"] == summary["parameters"]
    assert summary["input_shape"] == [None, 512, 19] and summary["output_shape"] == [None, 2]
    assert [row["name"] for row in summary["layers"]] == [layer.name for layer in model.layers]
    assert sum(row["parameters"] for row in summary["layers"]) == summary["parameters"]
    bilstm = next(row for row in summary["layers"] if row["class"] == "Bidirectional")
    assert bilstm["wraps"] == "LSTM" and bilstm["units"] == 64


def learnable_data(n: int, n_times: int, sfreq: float) -> tuple[np.ndarray, np.ndarray]:
    """Noise, plus a 4 Hz rhythm on the first five channels of the seizure (label 1) windows."""
    x = windows(n, n_times, seed=1)
    y = np.arange(n) % 2
    t = np.arange(n_times) / sfreq
    x[y == 1, :, :5] += 1.5 * np.sin(2 * np.pi * 4 * t)[:, None]
    return x, y


@pytest.mark.parametrize("preset", ["neurocare", "seed"])
def test_a_few_training_steps_lower_the_loss(preset):
    keras.utils.set_random_seed(0)
    sfreq, n_times = 32.0, 128
    model = build_model(19, 2, n_times, sfreq, ModelConfig(preset=preset))
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss=FocalLoss(gamma=2.0, alpha=0.75))
    x, y = learnable_data(32, n_times, sfreq)
    losses = [float(model.train_on_batch(x, y)) for _ in range(25)]
    assert np.isfinite(losses).all()
    # training-mode losses: after 25 steps BatchNorm's moving statistics still lag, so evaluate() would not
    # show the progress yet
    assert np.mean(losses[-3:]) < 0.7 * np.mean(losses[:3])


def test_save_and_load_round_trip_gives_identical_predictions(tmp_path):
    keras.utils.set_random_seed(0)
    model = build_model(19, 2, 256, 64.0, ModelConfig())
    model.compile(optimizer="adam", loss=FocalLoss(gamma=2.0, alpha=0.75))
    x, y = learnable_data(16, 256, 64.0)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)  # moves BatchNorm statistics off their defaults
    path = tmp_path / "neurocare.keras"
    model.save(path)
    restored = keras.models.load_model(path)
    np.testing.assert_array_equal(restored.predict(x, verbose=0), model.predict(x, verbose=0))
    assert isinstance(restored.loss, FocalLoss)
    assert model_summary(restored) == model_summary(model)


def test_gpu_benchmark_script_measures_both_presets_on_any_device(tmp_path):
    """benchmarks/gpu_train.py end to end on this machine's CPU (the GPU figures come from running it there)."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_train.py"
    out = tmp_path / "gpu.json"
    result = subprocess.run([sys.executable, str(script), "--steps", "2", "--warmup", "1", "--pool", "2", "--batch", "8",
                             "--predict-windows", "40", "--predict-batch", "16", "--json", str(out)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    figures = json.loads(out.read_text())
    assert figures["failed"] == [] and figures["backend"] == keras.config.backend()
    assert [r["preset"] for r in figures["presets"]] == ["neurocare", "seed"]
    for r in figures["presets"]:
        model = build_model(19, 2, 512, SFREQ, ModelConfig(preset=r["preset"]))
        assert r["parameters"] == model.count_params() and r["window_shape"] == [512, 19]
        assert r["batch"] == 8
        assert r["train_steps"] == 2 and r["predict_windows"] == 48  # rounded up to whole batches
        assert r["train_windows_per_s"] > 0 and r["predict_windows_per_s"] > 0 and np.isfinite(r["final_loss"])
    assert "| `neurocare` |" in result.stdout and "| `seed` |" in result.stdout


def test_spectral_features_are_band_powers_variance_and_line_length_summarised_over_channels():
    from neurocare_bids.training.models import SPECTRAL_BANDS, SpectralFeatures

    n_times, sfreq = 512, SFREQ
    t = np.arange(n_times) / sfreq
    rng = np.random.default_rng(3)
    # channel k: a sine in band k % 4 (6 Hz = theta for k = 1, ...), of amplitude 1 + k
    freqs = [2.0, 6.0, 10.0, 20.0]
    x = np.stack([(1 + k) * np.sin(2 * np.pi * freqs[k % 4] * t + rng.uniform(0, 6)) for k in range(6)], axis=1)
    x = (x + 0.01 * rng.standard_normal(x.shape))[None].astype("float32")
    layer = SpectralFeatures(sfreq)
    out = np.asarray(keras.ops.convert_to_numpy(layer(x)))
    n_bands = len(SPECTRAL_BANDS)
    assert out.shape == (1, 2 * (2 * n_bands + 2))

    # The NumPy reference, channel by channel.
    xc = x[0].T - x[0].T.mean(axis=1, keepdims=True)
    window = np.hanning(n_times)
    power = np.abs(np.fft.rfft(xc * window / np.sqrt((window ** 2).sum()), axis=1)) ** 2
    f = np.fft.rfftfreq(n_times, 1 / sfreq)
    band = np.stack([power[:, (f >= lo) & (f < hi)].sum(1) for lo, hi in SPECTRAL_BANDS], axis=1)
    per_channel = np.concatenate([
        np.log(band + 1e-6), np.log(band + 1e-6) - np.log(band.sum(1, keepdims=True) + 1e-6),
        np.log((xc ** 2).mean(1, keepdims=True) + 1e-6),
        np.log(np.abs(np.diff(xc, axis=1)).mean(1, keepdims=True) + 1e-6)], axis=1)
    np.testing.assert_allclose(out[0], np.concatenate([per_channel.mean(0), per_channel.max(0)]), rtol=1e-4,
                               atol=1e-4)
    # each channel's strongest band is its sine's
    assert [int(np.argmax(row)) for row in band] == [k % 4 for k in range(6)]
    # the same whatever the channel order
    shuffled = np.asarray(keras.ops.convert_to_numpy(layer(x[:, :, ::-1].copy())))
    np.testing.assert_allclose(shuffled, out, rtol=1e-5, atol=1e-5)


def test_spectral_branch_joins_the_lstm_and_survives_save_and_load(tmp_path):
    keras.utils.set_random_seed(0)
    model = build_model(19, 2, 512, SFREQ, ModelConfig(spectral_units=16, channel_features=0))
    names = [layer.name for layer in model.layers]
    assert {"spectral_features", "spectral_bn", "spectral_dense", "join"} <= set(names)
    join = model.get_layer("join")
    assert join.output.shape[-1] == 2 * 64 + 16  # the BiLSTM's 2 × 64 and the branch's 16
    x = windows(3, 512)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path, compile=False)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    # a rate whose Nyquist frequency is below some bands (8 Hz: alpha and beta have no bin) still works
    low = build_model(19, 2, 64, 8.0, ModelConfig(spectral_units=4, conv_filters=[4], conv_kernel_size=3))
    assert np.isfinite(low.predict(windows(2, 64), verbose=0)).all()


def test_channel_features_equal_the_feature_baselines_per_channel():
    """The per-channel branch computes, inside the model, what the feature baseline computes in NumPy:
    checked against ``baseline._channel_features`` (Hjorth, line length, variance, shape statistics) and a
    periodogram (band powers, finer bands than the baseline's Welch estimate)."""
    from neurocare_bids.training import baseline
    from neurocare_bids.training.models import CHANNEL_BANDS, ChannelFeatures, channel_feature_names

    n_times, sfreq = 512, SFREQ
    t = np.arange(n_times) / sfreq
    rng = np.random.default_rng(5)
    tones = [1.0, 3.0, 5.0, 7.0, 9.0, 11.5, 16.0, 25.0]  # one per band
    x = np.stack([(1 + k) * np.sin(2 * np.pi * tones[k % 8] * t + rng.uniform(0, 6)) for k in range(10)], axis=1)
    x = x + 0.05 * rng.standard_normal(x.shape)
    x[:, 9] = 0.0  # a missing, zero-filled channel
    x = x[None].astype("float32")
    out = np.asarray(keras.ops.convert_to_numpy(ChannelFeatures(sfreq)(x)))[0]
    names = channel_feature_names()
    assert out.shape == (10, len(names)) and np.isfinite(out).all()

    xc = x[0].T.astype(np.float64)
    xc = xc - xc.mean(axis=1, keepdims=True)
    window = np.hanning(n_times)
    power = np.abs(np.fft.rfft(xc * window / np.sqrt((window ** 2).sum()), axis=1)) ** 2
    f = np.fft.rfftfreq(n_times, 1 / sfreq)
    band = np.stack([power[:, (f >= lo) & (f < hi)].sum(1) for lo, hi in CHANNEL_BANDS], axis=1)
    nb = len(CHANNEL_BANDS)
    np.testing.assert_allclose(out[:9, :nb], np.log(band[:9] + 1e-6), atol=2e-3)
    assert [int(np.argmax(row)) for row in band[:9]] == [k % 8 for k in range(9)]
    assert [int(np.argmax(row)) for row in out[:9, nb:2 * nb]] == [k % 8 for k in range(9)]  # shares

    ref = baseline._channel_features(x[0].T[None, :9].astype(np.float64), sfreq)[0]
    col = {name: i for i, name in enumerate(baseline.PER_CHANNEL)}
    mine = {name: i for i, name in enumerate(names)}
    np.testing.assert_allclose(out[:9, mine["log_line_length"]], np.log(ref[:, col["line_length"]]), atol=1e-4)
    np.testing.assert_allclose(out[:9, mine["log_variance"]], ref[:, col["log_variance"]], atol=1e-4)
    np.testing.assert_allclose(out[:9, mine["log_mobility"]], np.log(ref[:, col["hjorth_mobility"]]), atol=1e-3)
    np.testing.assert_allclose(out[:9, mine["log_complexity"]], np.log(ref[:, col["hjorth_complexity"]]),
                               atol=2e-3)
    np.testing.assert_allclose(out[:9, mine["skewness"]], ref[:, col["skewness"]], atol=1e-3)
    np.testing.assert_allclose(out[:9, mine["log_kurtosis"]], np.log(ref[:, col["kurtosis"]] + 3), atol=1e-3)
    np.testing.assert_allclose(out[:9, mine["zero_crossings"]], ref[:, col["zero_crossing_rate"]], atol=1e-6)
    crest = np.log(np.abs(xc[:9]).max(1)) - 0.5 * np.log((xc[:9] ** 2).mean(1))
    np.testing.assert_allclose(out[:9, mine["log_crest"]], crest, atol=1e-3)


def test_channel_feature_branch_ignores_channel_order_and_survives_save_and_load(tmp_path):
    keras.utils.set_random_seed(0)
    model = build_model(19, 2, 512, SFREQ, ModelConfig(channel_features=8))
    branch = keras.Model(model.input, model.get_layer("channel_features_summary").output)
    assert branch.output.shape[-1] == 2 * 8  # mean and max of the shared layers' 8 units
    assert model.get_layer("join_channels").output.shape[-1] == 2 * 64 + 2 * 8
    x = windows(3, 512)
    permuted = x[:, :, np.random.default_rng(1).permutation(19)]
    np.testing.assert_allclose(branch.predict(permuted, verbose=0), branch.predict(x, verbose=0), rtol=1e-5,
                               atol=1e-5)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path, compile=False)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    # low rates and short windows: bands above Nyquist are constant, not an error
    low = build_model(19, 2, 64, 16.0, ModelConfig(channel_features=4, conv_filters=[4], conv_kernel_size=3))
    assert np.isfinite(low.predict(windows(2, 64), verbose=0)).all()
