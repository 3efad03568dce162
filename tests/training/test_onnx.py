"""ONNX export: every preset and variant runs in ONNX Runtime as in Keras (to 1e-5: ONNX Runtime is apply mode's and
streaming's default engine, see also test_apply.py), the group level ships model.onnx for the final model and each
fold with its checksum, and ``export-model`` exports an existing folder."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import move_batchnorm_statistics, run_cli

pytest.importorskip("onnxruntime")
pytest.importorskip("tf2onnx")


def _variants():
    from neurocare_bids.config import ModelConfig

    tiny = {"conv_filters": [4, 4], "lstm_units": [3], "dense_units": 16, "spectral_units": 0, "channel_features": 0}
    return {
        "neurocare (default configuration)": ModelConfig(),
        "neurocare (spectral branch)": ModelConfig(**{**tiny, "spectral_units": 5}),
        "no spectral branch": ModelConfig(**tiny),
        "per-channel encoder": ModelConfig(**{**tiny, "encoder": "per_channel", "spectral_units": 3}),
        "no LSTM": ModelConfig(**{**tiny, "lstm_units": []}),
        "per-channel, no LSTM": ModelConfig(**{**tiny, "encoder": "per_channel", "lstm_units": []}),
        "stacked BiLSTM": ModelConfig(**{**tiny, "lstm_units": [3, 3], "pool_size": 3}),
        "stacked LSTM": ModelConfig(**{**tiny, "lstm_units": [3, 2], "bidirectional": False}),
        "per-channel, stacked BiLSTM": ModelConfig(**{**tiny, "encoder": "per_channel", "lstm_units": [3, 3],
                                                        "pool_size": 3}),
        "per-channel, spectral branch, no LSTM": ModelConfig(**{**tiny, "encoder": "per_channel", "lstm_units": [],
                                                                  "spectral_units": 5}),
        "channel features": ModelConfig(**{**tiny, "channel_features": 4, "spectral_units": 3}),
        "per-channel, channel features": ModelConfig(**{**tiny, "encoder": "per_channel", "channel_features": 4}),
        "seed": ModelConfig(preset="seed"),
    }


def _unsaturated(model, rng):
    """BatchNorm statistics moved away from 0/1 (inference-mode normalisation is exported), and the output layer
    scaled down, so that the softmax does not saturate and 1e-5 is a real bound."""
    out = model.get_layer("probabilities")
    out.kernel.assign(out.kernel * 0.2)
    return move_batchnorm_statistics(model, rng)


@pytest.mark.parametrize("name", list(_variants()))
def test_onnx_runtime_equals_keras(name, tmp_path):
    import keras
    import onnxruntime as ort

    from neurocare_bids.training.models import build_model
    from neurocare_bids.training.onnx_export import ONNX_OPSET, export_onnx, sha256_file

    keras.utils.set_random_seed(3)
    rng = np.random.default_rng(0)
    model = _unsaturated(build_model(19, 2, 512, 128.0, _variants()[name]), rng)
    started = time.monotonic()
    entry = export_onnx(model, tmp_path, stride=256)  # 4 s windows every 2 s, the default geometry
    print(f"{name}: exported in {time.monotonic() - started:.1f} s")
    path = tmp_path / "model.onnx"
    assert entry["File"] == "model.onnx" and entry["SHA256"] == sha256_file(path) and entry["Opset"] == ONNX_OPSET
    consecutive = entry["Consecutive"]
    # no temporary left behind; the consecutive-window graph wherever the first layer is a Conv1D
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", *(["model_consecutive.onnx"] *
                                                                          bool(consecutive["File"]))]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == [entry["Input"]] == ["eeg"]
    windows = (rng.standard_normal((9, 512, 19)) * rng.uniform(0.5, 3.0, 19)).astype(np.float32)
    expected = keras.ops.convert_to_numpy(model(windows, training=False))
    got = session.run(None, {"eeg": windows})[0]
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
    assert got.shape == (9, 2) and np.ptp(got[:, 1]) > 1e-4  # windows told apart: not a constant output

    if "per-channel" in name:  # its first layer is a Conv2D over (channels, time): not rewritten (yet)
        assert consecutive == {"File": None, "Reason": "the network's first layer is not a plain Conv1D"}
        return
    assert consecutive["File"] == "model_consecutive.onnx" and consecutive["WindowStride"] == 256
    assert consecutive["FirstConvolution"] == "DFT as matrix products"  # within 1e-5 of model.onnx: not the Conv
    assert consecutive["SHA256"] == sha256_file(tmp_path / "model_consecutive.onnx")
    assert consecutive["MaxAbsDifference"] <= 1e-5
    rewritten = ort.InferenceSession(str(tmp_path / "model_consecutive.onnx"), providers=["CPUExecutionProvider"])
    signal = (rng.standard_normal((40 * 256 + 256, 19)) * rng.uniform(0.5, 3.0, 19)).astype(np.float32)
    for n in (1, 2, 7, 40):  # runs of consecutive windows, each 256 samples after the previous
        run = np.ascontiguousarray(np.lib.stride_tricks.sliding_window_view(signal[:(n + 1) * 256], (512, 19))[::256, 0])
        np.testing.assert_allclose(rewritten.run(None, {"eeg": run})[0], session.run(None, {"eeg": run})[0],
                                   atol=1e-5, rtol=0)
    np.testing.assert_allclose(rewritten.run(None, {"eeg": run[:9]})[0],
                               keras.ops.convert_to_numpy(model(run[:9], training=False)), atol=1e-5, rtol=0)
    config = _variants()[name]
    if config.spectral_units or config.channel_features:
        return  # branches that read the whole window themselves: the check below is for the convolution alone
    # its convolution reads each half window once: window 0's second half is taken from window 1's first half
    changed = run[:2].copy()
    changed[0, 256:] += 1.0
    assert np.abs(session.run(None, {"eeg": changed})[0][0] - session.run(None, {"eeg": run[:2]})[0][0]).max() > 1e-4
    np.testing.assert_array_equal(rewritten.run(None, {"eeg": changed})[0], rewritten.run(None, {"eeg": run[:2]})[0])


def test_no_consecutive_graph_where_windows_do_not_overlap_by_half(tmp_path):
    import keras

    from neurocare_bids.config import ModelConfig
    from neurocare_bids.training.models import build_model
    from neurocare_bids.training.onnx_export import export_onnx

    keras.utils.set_random_seed(3)
    model = build_model(19, 2, 512, 128.0, ModelConfig(conv_filters=[4, 4], lstm_units=[3], spectral_units=0,
                                                       channel_features=0))
    (tmp_path / "model_consecutive.onnx").write_bytes(b"of an earlier model")
    entry = export_onnx(model, tmp_path, stride=128)  # windows overlapping by three quarters
    assert entry["Consecutive"] == {"File": None, "Reason": "windows of 512 samples at a stride of 128 do not "
                                                            "overlap by half"}
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]  # the stale copy removed, not paired with this one
    assert "Consecutive" not in export_onnx(model, tmp_path)  # no window geometry given: model.onnx alone


@pytest.mark.parametrize("sfreq, n_times", [(128.0, 512), (256.0, 1000), (200.0, 799), (16.0, 64)])
def test_matrix_spectral_layer_equals_the_fft_one_models_were_trained_with(sfreq, n_times):
    """The periodogram as cosine/sine products gives the features of the former ``ops.rfft`` formulation
    (float32 rounding apart), so models trained with it keep their numbers; its saved configuration is as
    before (16 Hz: the upper bands lie above Nyquist and stay empty, as with the FFT)."""
    import keras
    from keras import ops

    from neurocare_bids.training.models import SPECTRAL_BANDS, SPECTRAL_EPS, SpectralFeatures, spectral_front_end

    rng = np.random.default_rng(1)
    x = (rng.standard_normal((3, n_times, 7)) * rng.uniform(0.1, 5.0, 7) + 2.0).astype(np.float32)
    saved = {"name": "spectral_features", "trainable": True, "sfreq": sfreq,
             "bands": [list(b) for b in SPECTRAL_BANDS]}  # what models trained with the FFT layer saved
    layer = SpectralFeatures.from_config(saved)
    assert {k: v for k, v in layer.get_config().items() if k in saved} == saved
    new = keras.ops.convert_to_numpy(layer(x))

    masks, window = spectral_front_end(sfreq, SPECTRAL_BANDS, n_times)  # the former layer's call, verbatim
    xt = ops.transpose(ops.cast(x, "float32"), (0, 2, 1))
    xt = xt - ops.mean(xt, axis=-1, keepdims=True)
    real, imag = ops.rfft(xt * ops.convert_to_tensor(window))
    band = ops.matmul(real * real + imag * imag, ops.convert_to_tensor(masks))
    log_band = ops.log(band + SPECTRAL_EPS)
    relative = log_band - ops.log(ops.sum(band, axis=-1, keepdims=True) + SPECTRAL_EPS)
    log_var = ops.log(ops.mean(xt * xt, axis=-1, keepdims=True) + SPECTRAL_EPS)
    line = ops.log(ops.mean(ops.abs(xt[..., 1:] - xt[..., :-1]), axis=-1, keepdims=True) + SPECTRAL_EPS)
    per_channel = ops.concatenate([log_band, relative, log_var, line], axis=-1)
    old = keras.ops.convert_to_numpy(ops.concatenate([ops.mean(per_channel, axis=1), ops.max(per_channel, axis=1)],
                                                     axis=-1))
    np.testing.assert_allclose(new, old, rtol=1e-5, atol=1e-5)


def _onnx_probabilities(path, windows):
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: windows})[0]


def test_group_level_ships_onnx_for_the_final_model_and_each_fold(sequential, monkeypatch, tmp_path):
    """The final model's copies always; each fold's unless ``execution.fold_onnx`` is off (the tests' quick
    configuration, which ``sequential`` runs): then its ``fold.json`` says why and how to make them, and
    ``export-model`` does (the folds' copies made by the group run itself: test_jax, test_distribute)."""
    import keras

    from neurocare_bids.training import models  # noqa: F401 - our layers, for loading
    from neurocare_bids.training.onnx_export import NOT_EXPORTED_REASON, ONNX_OPSET, sha256_file

    _, out, _ = sequential
    group = out / "group"
    card = json.loads((group / "model" / "model_card.json").read_text())
    entries = [(group / "model", card["ONNX"])]
    report = (out / "group.html").read_text()  # the report's card names both files
    assert f"SHA-256 <code>{card['ONNX']['SHA256']}</code>" in report
    assert f"model_consecutive.onnx (SHA-256 <code>{card['ONNX']['Consecutive']['SHA256']}</code>)" in report
    folds = sorted(group.glob("fold-*"))
    assert folds
    windows = np.random.default_rng(2).standard_normal((5, *card["Architecture"]["input_shape"][1:]))
    stride = round(card["Input"]["WindowStride"] * card["Input"]["SamplingFrequency"])
    for f in folds:
        summary = json.loads((f / "fold.json").read_text())
        assert summary["window_stride"] == stride
        assert summary["onnx"] == {"File": None, "Reason": f"{NOT_EXPORTED_REASON}; to make it: neurocare-bids "
                                                           f"export-model OUTPUT_DIR/group/{f.name}"}
        assert not list(f.glob("*.onnx")) and (f / "model.keras").is_file()
    copy = tmp_path / folds[0].name
    shutil.copytree(folds[0], copy)
    result = run_cli("export-model", copy)
    assert result.returncode == 0, result.stderr
    entries.append((copy, json.loads((copy / "fold.json").read_text())["onnx"]))
    for folder, entry in entries:
        assert entry["File"] == "model.onnx" and entry["Opset"] == ONNX_OPSET, folder
        assert entry["SHA256"] == sha256_file(folder / "model.onnx"), folder
        consecutive = entry["Consecutive"]  # the demo's 4 s windows every 2 s
        assert consecutive["File"] == "model_consecutive.onnx" and consecutive["WindowStride"] == stride, folder
        assert consecutive["SHA256"] == sha256_file(folder / "model_consecutive.onnx"), folder
        assert not list(folder.glob(".*.tmp*")), folder
        keras_model = keras.models.load_model(folder / "model.keras", compile=False)
        expected = keras.ops.convert_to_numpy(keras_model(windows.astype(np.float32), training=False))
        np.testing.assert_allclose(_onnx_probabilities(folder / "model.onnx", windows.astype(np.float32)),
                                   expected, atol=1e-5, rtol=0)

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    snippet = readme.split("### ONNX models", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    assert len(snippet.strip().splitlines()) == 5
    monkeypatch.chdir(out)  # the README's five lines, run in the output folder as written
    scope: dict = {}
    exec(snippet, scope)  # noqa: S102 - our own documentation
    assert scope["seizure_probability"].shape == (8,)


def test_a_fold_saved_without_onnx_copies_keeps_none_of_an_earlier_training(tmp_path):
    """``execution.fold_onnx`` off: the fold's Keras model is saved, the copies an earlier training of the folder
    left (the network's and a stacked model's classifier) are removed, and the entry says why and how to make them."""
    import keras

    from neurocare_bids.config import Config
    from neurocare_bids.evaluation.group import _save_model
    from neurocare_bids.training.onnx_export import NOT_EXPORTED_REASON

    folder = tmp_path / "out" / "group" / "fold-3"
    folder.mkdir(parents=True)
    for name in ("model.onnx", "model_consecutive.onnx", "classifier.onnx", "features.joblib"):
        (folder / name).write_bytes(b"of an earlier training")
    model = keras.Sequential([keras.Input((64, 4)), keras.layers.Flatten(), keras.layers.Dense(2, activation="softmax")])
    path, entry = _save_model(Config(), model, folder, "fold 3", 32, onnx=False)
    assert path == folder / "model.keras" and sorted(p.name for p in folder.iterdir()) == ["model.keras"]
    assert entry == {"File": None, "Reason": f"{NOT_EXPORTED_REASON}; to make it: neurocare-bids export-model "
                                              "OUTPUT_DIR/group/fold-3"}
    assert keras.models.load_model(path, compile=False).count_params() == model.count_params()


def test_export_model_exports_a_model_folder_and_rewrites_its_card(sequential, tmp_path):
    from neurocare_bids.training.onnx_export import sha256_file

    _, out, _ = sequential
    folder = tmp_path / "model"
    shutil.copytree(out / "group" / "model", folder)
    (folder / "model.onnx").unlink()
    (folder / "model_consecutive.onnx").unlink()
    card = json.loads((folder / "model_card.json").read_text())
    del card["ONNX"]  # a folder from before ONNX export
    (folder / "model_card.json").write_text(json.dumps(card))
    started = time.monotonic()
    result = run_cli("export-model", folder, env={"PYTHONWARNINGS": "default"})  # Python's filters, as users have
    print(f"export-model: {time.monotonic() - started:.1f} s")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert result.stderr == "" and "model.onnx" in lines[0]  # no exporter's warning either
    rewritten = json.loads((folder / "model_card.json").read_text())
    assert rewritten["ONNX"]["SHA256"] == sha256_file(folder / "model.onnx")
    if card.get("Stacking"):  # the default model is stacked: its feature baseline's classifier too, on a line of its own
        assert len(lines) == 2 and "classifier.onnx" in lines[1]
        assert rewritten["ONNX"]["Classifier"]["SHA256"] == sha256_file(folder / "classifier.onnx")
    else:
        assert len(lines) == 1
    # the consecutive-window graph too, for the card's window stride
    assert rewritten["ONNX"]["Consecutive"]["SHA256"] == sha256_file(folder / "model_consecutive.onnx")
    assert rewritten["ONNX"]["Consecutive"]["WindowStride"] == round(
        card["Input"]["WindowStride"] * card["Input"]["SamplingFrequency"])
    assert {k: v for k, v in rewritten.items() if k != "ONNX"} == card  # the rest of the card kept

    fold = tmp_path / "fold-1"
    shutil.copytree(out / "group" / "fold-1", fold)
    assert not (fold / "model.onnx").exists()  # execution.fold_onnx is off in the tests' quick configuration
    assert run_cli("export-model", fold).returncode == 0
    entry = json.loads((fold / "fold.json").read_text())["onnx"]
    assert entry["SHA256"] == sha256_file(fold / "model.onnx")
    assert entry["Consecutive"]["SHA256"] == sha256_file(fold / "model_consecutive.onnx")
    summary = json.loads((fold / "fold.json").read_text())
    del summary["window_stride"]  # a fold folder from before fold.json recorded it: its group's model card says
    (fold / "fold.json").write_text(json.dumps(summary))
    (fold / "model_consecutive.onnx").unlink()
    assert run_cli("export-model", fold).returncode == 0
    assert json.loads((fold / "fold.json").read_text())["onnx"]["Consecutive"]["WindowStride"] == \
        rewritten["ONNX"]["Consecutive"]["WindowStride"]


@pytest.mark.parametrize("case, code, message", [
    ("missing", 66, "is not a folder"),
    ("foreign", 66, "is not a NeuroCare-BIDS model folder"),
    ("no model file", 66, "model.keras is missing"),
    ("features preset", 66, "model.joblib is missing"),
    ("damaged features file", 65, "model.joblib cannot be loaded"),
    ("damaged model file", 65, "model.keras cannot be loaded"),
])
def test_export_model_refuses_what_is_not_a_keras_model_folder(case, code, message, tmp_path):
    folder = tmp_path / "model"
    if case != "missing":
        folder.mkdir()
    if case == "foreign":
        (folder / "notes.txt").write_text("hello")
    if case in ("no model file", "damaged model file"):
        (folder / "model_card.json").write_text(json.dumps({"ModelFile": "model.keras"}))
    if case == "damaged model file":
        (folder / "model.keras").write_bytes(b"PK\x03\x04 not a whole archive")
    if case in ("features preset", "damaged features file"):
        (folder / "model_card.json").write_text(json.dumps({"ModelFile": "model.joblib"}))
    if case == "damaged features file":
        (folder / "model.joblib").write_bytes(b"not a pickle")
    result = run_cli("export-model", folder)
    assert result.returncode == code, result.stderr
    assert message in result.stderr and result.stderr.count("\n") == 1 and not (folder / "model.onnx").exists()


def test_a_failed_export_is_a_warning_that_leaves_no_onnx_file(tmp_path, caplog):
    """A layer tf2onnx leaves untranslated (TensorFlow's RFFT, as the first spectral layer used): the export
    is refused, a stale model.onnx of an earlier training is removed, and the card says why."""
    import keras

    from neurocare_bids.training.onnx_export import export_trained

    class Spectrum(keras.layers.Layer):
        def call(self, x):
            real, imag = keras.ops.rfft(keras.ops.transpose(x, (0, 2, 1)))
            return keras.ops.mean(real * real + imag * imag, axis=-1)

    inputs = keras.Input((64, 3), name="eeg")
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax", name="probabilities")(
        Spectrum()(inputs)))
    (tmp_path / "model.onnx").write_bytes(b"an earlier training's export")
    with caplog.at_level("WARNING", logger="neurocare"):
        entry = export_trained(model, tmp_path, "neurocare", "fold 1")
    assert entry["File"] is None and entry["Reason"].startswith("export failed")
    assert list(tmp_path.iterdir()) == [] and "export-model" in caplog.text
    assert export_trained(None, tmp_path, "features", "final model") == {
        "File": None, "Reason": "the features preset (gradient boosting on NumPy features) has no network to export; "
                                "its classifier is in Classifier"}


@pytest.mark.parametrize("length, k", [(256, 64), (10, 7), (9, 4), (5, 1)])  # DFT sizes 319, 16, 12, 5: odd and even
def test_spectral_convolution_equals_onnx_conv(length, k):
    """The DFT-as-matrix-products form of model_consecutive.onnx's first convolution gives ONNX Runtime's Conv
    (full linear convolution: k - 1 zeros on both sides) to float32 rounding, for even and odd DFT sizes."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from neurocare_bids.training.onnx_export import _spectral_convolution

    rng = np.random.default_rng(length + k)
    weights = (rng.standard_normal((6, 3, 1, k)) / k).astype(np.float32)
    blocks = (rng.standard_normal((4, 3, 1, length)) * 3).astype(np.float32)
    nodes, initializers = [], [numpy_helper.from_array(weights, "w")]

    def node(op, inputs, name, **kw):
        nodes.append(helper.make_node(op, inputs, [name], **kw))
        return name

    def const(name, values):
        initializers.append(numpy_helper.from_array(np.asarray(values), name))
        return name

    spectral = _spectral_convolution("x", weights, length, node, const)
    node("Conv", ["x", "w"], "conv", kernel_shape=[1, k], pads=[0, k - 1, 0, k - 1])
    graph = helper.make_graph(nodes, "both", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 1, length])],
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in (spectral, "conv")],
                              initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    got, expected = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"x": blocks})
    assert got.shape == expected.shape == (4, 6, 1, length + k - 1)
    np.testing.assert_allclose(got, expected, atol=2e-5 * np.abs(expected).max(), rtol=0)


def test_a_consecutive_graph_that_does_not_match_is_not_written(tmp_path, monkeypatch):
    """The consecutive-window graph only saves work: where neither of its forms matches model.onnx within the
    tolerance (here made 0, which float32 rounding always exceeds), the export goes on without it."""
    import keras

    from neurocare_bids.training import onnx_export
    from neurocare_bids.training.models import build_model

    keras.utils.set_random_seed(3)
    model = _unsaturated(build_model(19, 2, 512, 128.0, _variants()["no spectral branch"]), np.random.default_rng(0))
    onnx_export.export_onnx(model, tmp_path)
    monkeypatch.setattr(onnx_export, "PARITY_TOLERANCE", 0.0)
    entry = onnx_export.export_consecutive(tmp_path / "model.onnx", 256)
    assert entry["File"] is None and entry["Reason"].startswith("the consecutive-window graph differs from model.onnx by")
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]  # no temporary, no unchecked file
