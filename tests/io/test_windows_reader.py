"""The public NumPy reader of the participant level's windows equals TensorFlow's own parser, and refuses bad files."""

from __future__ import annotations

import collections
import importlib.util
import json
import os
import shutil
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from conftest import add_recording, resident_pages, run_cli
from neurocare_bids.errors import DataError
from neurocare_bids.io.tfrecord import (decode_example, encode_example, frame_record, iter_records, iter_windows,
                                        read_windows)

FEATURES = {"eeg", "label", "seizure_fraction", "onset", "window_index", "subject", "session", "task", "run"}
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "pytorch_windows.py"


@pytest.fixture(scope="module")
def outputs(tmp_path_factory) -> dict[str, Path]:
    """Participant-level outputs of two 60-s recordings, one with a seizure and one without session or run:
    ``{"float32": default output, "float16": output.dtype = "float16" with 2-s windows, sub-02 only}``."""
    root = tmp_path_factory.mktemp("reader")
    bids = root / "bids"
    add_recording(bids, "01", duration=60.0, seizures=[(20.0, 10.0, "sz")], seed=1)
    add_recording(bids, "02", session=None, run=None, duration=60.0, seizures=[], seed=2)
    config = root / "f16.toml"
    config.write_text('[output]\ndtype = "float16"\n[windows]\nduration = 2\n')
    for args in ((root / "float32",), (root / "float16", "--config", config, "--participant_label", "02")):
        result = run_cli(bids, args[0], "participant", "--skip-bids-validation", *args[1:])
        assert result.returncode == 0, result.stderr
    return {"float32": root / "float32", "float16": root / "float16"}


def sidecars(out: Path) -> list[Path]:
    return sorted(out.glob("sub-*/**/*_desc-preproc_windows.json"))


def meta_count(sidecar: Path, key: str) -> int:
    return json.loads(sidecar.read_text())[key]


def copy_of(out: Path, tmp_path: Path) -> tuple[Path, Path]:
    """``(tfrecord, sidecar)`` of a copy of sub-01's windows, free to damage."""
    sidecar = shutil.copy(sidecars(out)[0], tmp_path)
    tfrecord = shutil.copy(sidecars(out)[0].with_suffix(".tfrecord"), tmp_path)
    return Path(tfrecord), Path(sidecar)


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_numpy_reader_equals_tensorflow_parser(outputs, dtype):
    tf = pytest.importorskip("tensorflow")
    tf_types = {"bytes": tf.string, "int64": tf.int64, "float32": tf.float32}
    files = sidecars(outputs[dtype])
    assert len(files) == (2 if dtype == "float32" else 1)
    for sidecar in files:
        meta = json.loads(sidecar.read_text())
        schema = meta["TFRecord"]["Schema"]
        assert set(schema) == FEATURES
        ours = read_windows(sidecar)
        assert list(ours) == list(schema)
        spec = {name: tf.io.FixedLenFeature([], tf_types[feature["type"]]) for name, feature in schema.items()}
        parsed = [tf.io.parse_single_example(r, spec)
                  for r in tf.data.TFRecordDataset(str(sidecar.with_name(meta["TFRecord"]["File"])))]
        assert len(parsed) == meta["WindowCount"] == len(ours["label"]) > 0

        eeg_dtype = np.dtype(schema["eeg"]["dtype"])
        assert eeg_dtype == np.dtype(np.float16 if dtype == "float16" else np.float32)
        want = np.stack([tf.reshape(tf.io.decode_raw(p["eeg"], tf.as_dtype(eeg_dtype.type), little_endian=True),
                                    schema["eeg"]["shape"]).numpy() for p in parsed])
        assert ours["eeg"].dtype == eeg_dtype and ours["eeg"].shape == (len(parsed), *schema["eeg"]["shape"])
        np.testing.assert_array_equal(ours["eeg"], want)
        assert np.abs(want).max() > 0.1  # real EEG, not zeros
        for name, feature in schema.items():
            if name == "eeg":
                continue
            values = [p[name].numpy() for p in parsed]
            if feature["type"] == "bytes":
                assert ours[name].tolist() == [v.decode() for v in values], name
            else:
                assert ours[name].dtype == np.asarray(values).dtype, name
                np.testing.assert_array_equal(ours[name], values, err_msg=name)
        entities = [f"{key}-{ours[name][0]}" for key, name in
                    (("sub", "subject"), ("ses", "session"), ("task", "task"), ("run", "run")) if ours[name][0]]
        assert sidecar.name == "_".join(entities) + "_desc-preproc_windows.json"  # the file's own entities
    if dtype == "float32":  # sub-01's seizure is labelled; sub-02 has neither session nor run
        first, second = (read_windows(s) for s in files)
        assert first["label"].sum() == meta_count(files[0], "SeizureWindowCount") > 0
        assert set(second["session"]) == set(second["run"]) == {""} and set(first["run"]) == {"00"}


def test_iterator_agrees_with_whole_file_reader(outputs):
    for sidecar in sidecars(outputs["float32"]) + sidecars(outputs["float16"]):
        whole = read_windows(sidecar)
        windows = list(iter_windows(sidecar.with_suffix(".tfrecord")))  # the TFRecord or its sidecar
        assert len(windows) == len(whole["label"]) == meta_count(sidecar, "WindowCount")
        for k, window in enumerate(windows):
            assert list(window) == list(whole)
            assert window["eeg"].dtype == whole["eeg"].dtype and not window["eeg"].flags.writeable
            np.testing.assert_array_equal(window["eeg"], whole["eeg"][k])
            for name in ("label", "window_index"):
                assert type(window[name]) is int and window[name] == whole[name][k]
            for name in ("onset", "seizure_fraction"):
                assert type(window[name]) is float and window[name] == whole[name][k]
            for name in ("subject", "session", "task", "run"):
                assert type(window[name]) is str and window[name] == whole[name][k]
        assert [w["window_index"] for w in windows] == list(range(len(windows)))


def test_iterator_holds_one_record_at_a_time(outputs):
    sidecar = sidecars(outputs["float32"])[0]
    size = meta_count(sidecar, "WindowCount") * 512 * 19 * 4  # the file's EEG

    def peak(read) -> int:
        tracemalloc.start()
        try:
            read()
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    assert peak(lambda: collections.deque(iter_windows(sidecar), maxlen=0)) < size / 5  # a few records
    assert peak(lambda: read_windows(sidecar)) > size  # what holding the whole file costs


def test_iterator_streams_up_to_a_corrupt_record(outputs, tmp_path):
    """Windows before a damaged record are delivered; the damage raises when it is reached, as in TensorFlow."""
    tfrecord, sidecar = copy_of(outputs["float32"], tmp_path)
    records = list(iter_records(tfrecord))
    data = bytearray(tfrecord.read_bytes())
    data[-100] ^= 0xFF  # inside the last record
    tfrecord.write_bytes(bytes(data))
    windows = iter_windows(sidecar)
    good = [next(windows) for _ in range(len(records) - 1)]
    np.testing.assert_array_equal(good[0]["eeg"], np.frombuffer(decode_example(records[0])["eeg"], "<f4")
                                  .reshape(good[0]["eeg"].shape))
    with pytest.raises(DataError, match=f"corrupt data checksum at record {len(records) - 1}$"):
        next(windows)
    tf = pytest.importorskip("tensorflow")
    with pytest.raises(tf.errors.DataLossError):
        list(tf.data.TFRecordDataset(str(tfrecord)))


def _rewrite(tfrecord: Path, sidecar: Path, records: list[bytes]) -> None:
    """Write ``records`` as the TFRecord and record its new size in the sidecar (so only the records are bad)."""
    tfrecord.write_bytes(b"".join(frame_record(r) for r in records))
    meta = json.loads(sidecar.read_text())
    meta["TFRecord"]["Bytes"] = tfrecord.stat().st_size
    sidecar.write_text(json.dumps(meta))


def _edit_sidecar(sidecar: Path, edit) -> None:
    meta = json.loads(sidecar.read_text())
    edit(meta)
    sidecar.write_text(json.dumps(meta))


def _without(example: bytes, name: str, **changed) -> bytes:
    fields = {k: v for k, v in decode_example(example).items() if k != name}
    return encode_example({**fields, **changed})


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


DAMAGE = {  # name: (damage(tfrecord, sidecar, records), the error message)
    "flipped byte": (lambda t, s, r: _flip(t, 3000), r"corrupt data checksum at record 0$"),
    "truncated": (lambda t, s, r: t.write_bytes(t.read_bytes()[:-100]),
                  r"has \d+ bytes but its sidecar records \d+: incomplete or replaced file"),
    "record missing": (lambda t, s, r: _rewrite(t, s, r[:-1]), r": 28 records, the sidecar's WindowCount is 29$"),
    "feature missing": (lambda t, s, r: _rewrite(t, s, [_without(x, "label") for x in r]),
                        r"missing feature 'label' at record 0$"),
    "wrong type": (lambda t, s, r: _rewrite(t, s, [_without(x, "label", label=1.0) for x in r]),
                   r"feature 'label' is not int64 at record 0$"),
    "not an example": (lambda t, s, r: _rewrite(t, s, [b"\x0a\x05ab"] + r[1:]),
                       r"not a tf.train.Example of single-valued features: truncated protobuf field at record 0$"),
    "wrong shape": (lambda t, s, r: _edit_sidecar(s, lambda m: m["TFRecord"]["Schema"]["eeg"].update(shape=[512, 18])),
                    r"eeg holds 38912 bytes, not 36864 \(<f4 x \[512, 18\]\) at record 0$"),
    "no sidecar": (lambda t, s, r: s.unlink(), r"cannot read the windows sidecar \(it gives the eeg dtype and shape\)"),
    "not a windows sidecar": (lambda t, s, r: _edit_sidecar(s, lambda m: m.pop("TFRecord")),
                              r"not a windows sidecar \(bad TFRecord schema: KeyError 'TFRecord'\)"),
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_bad_files_raise_one_clear_data_error(outputs, tmp_path, damage):
    tfrecord, sidecar = copy_of(outputs["float32"], tmp_path)
    assert len(read_windows(tfrecord)["label"]) == 29  # the copy is good before the damage
    break_it, message = DAMAGE[damage]
    break_it(tfrecord, sidecar, list(iter_records(tfrecord)))
    for read in (read_windows, lambda path: list(iter_windows(path))):
        with pytest.raises(DataError, match=message) as info:
            read(tfrecord)
        text = str(info.value)
        assert "\n" not in text and str(sidecar if "sidecar" in damage else tfrecord) in text
        assert info.value.exit_code == 65


def _load_example():
    spec = importlib.util.spec_from_file_location("pytorch_windows", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_pytorch_example_yields_every_window_once(outputs, monkeypatch, capsys):
    torch = pytest.importorskip("torch")
    example = _load_example()
    out = outputs["float32"]
    expected = []
    for sidecar in sidecars(out):
        windows = read_windows(sidecar)
        expected += [(np.ascontiguousarray(eeg.T), int(label)) for eeg, label in zip(windows["eeg"], windows["label"])]
    assert {label for _, label in expected} == {0, 1}

    dataset = example.WindowsDataset(out)
    items = list(dataset)  # in the main process: every file, in order
    assert len(items) == len(expected)
    for (eeg, label), (want, want_label) in zip(items, expected):
        assert eeg.dtype == torch.float32 and tuple(eeg.shape) == want.shape == (19, 512)  # (channels, samples)
        np.testing.assert_array_equal(eeg.numpy(), want)
        assert label == want_label

    # two workers: each reads one of the two files, and together they give every window exactly once
    batches = list(torch.utils.data.DataLoader(dataset, batch_size=5, num_workers=2))
    got = collections.Counter((eeg.numpy().tobytes(), int(label))
                              for batch, labels in batches for eeg, label in zip(batch, labels))
    assert got == collections.Counter((eeg.tobytes(), label) for eeg, label in expected)

    monkeypatch.setattr(sys, "argv", ["pytorch_windows.py", str(out), "--workers", "2", "--batch-size", "7"])
    example.main()
    seizures = sum(label for _, label in expected)
    assert capsys.readouterr().out == f"{len(expected)} windows ({seizures} seizure), each (channels, samples) = " \
                                      "(19, 512)\n"


def open_files() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("keep_open", [True, False])
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_window_reader_reads_any_window_as_iter_windows_does(outputs, dtype, keep_open):
    """WindowReader: random access (any order, from several threads) gives the windows iter_windows gives, holding
    its file open or (``keep_open=False``) opening it for each read; a closed reader refuses to read."""
    from concurrent.futures import ThreadPoolExecutor

    from neurocare_bids.io.tfrecord import WindowReader

    for sidecar in sidecars(outputs[dtype]):
        expected = list(iter_windows(sidecar))
        before = open_files()
        with WindowReader(sidecar.with_suffix(".tfrecord"), keep_open=keep_open) as reader:
            assert open_files() == before + keep_open
            assert len(reader) == len(expected) == meta_count(sidecar, "WindowCount")
            order = np.random.default_rng(0).permutation(len(expected)).tolist() * 3
            with ThreadPoolExecutor(4) as pool:
                got = list(pool.map(reader.window, order))
            for index, window in zip(order, got):
                assert window.keys() == expected[index].keys()
                np.testing.assert_array_equal(window["eeg"], expected[index]["eeg"])
                assert {k: v for k, v in window.items() if k != "eeg"} == \
                    {k: v for k, v in expected[index].items() if k != "eeg"}
            assert open_files() == before + keep_open
        assert open_files() == before
        with pytest.raises(ValueError, match="closed WindowReader"):
            reader.window(0)


def test_window_reader_refuses_damaged_files(outputs, tmp_path):
    """A flipped byte inside a record's data fails when that record is read, naming it; a truncated file or a
    damaged length when the reader opens (its index reads every header)."""
    from neurocare_bids.io.tfrecord import WindowReader

    tfrecord, sidecar = copy_of(outputs["float32"], tmp_path)
    data = bytearray(tfrecord.read_bytes())
    record = 12 + len(next(iter_records(tfrecord))) + 4  # bytes of one record
    data[2 * record + 12 + 100] ^= 0xFF  # inside record 2's data
    tfrecord.write_bytes(bytes(data))
    with WindowReader(tfrecord) as reader:
        reader.window(1)
        with pytest.raises(DataError, match="corrupt data checksum at record 2"):
            reader.window(2)
    data[2 * record + 12 + 100] ^= 0xFF
    data[record + 3] ^= 0x01  # record 1's length
    tfrecord.write_bytes(bytes(data))
    with pytest.raises(DataError, match="corrupt length checksum at record 1"):
        WindowReader(tfrecord)
    data[record + 3] ^= 0x01
    json_meta = json.loads(sidecar.read_text())
    json_meta["TFRecord"]["Bytes"] = len(data) - 10
    sidecar.write_text(json.dumps(json_meta))
    tfrecord.write_bytes(bytes(data[:-10]))
    with pytest.raises(DataError, match="truncated TFRecord"):
        WindowReader(tfrecord)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="posix_fadvise and mincore as on Linux")
@pytest.mark.parametrize("keep_open", [True, False])
def test_window_reader_advice_brings_windows_into_memory(outputs, tmp_path, keep_open):
    """``advise``: the kernel reads the announced windows into the page cache before they are read (what keeps the
    NumPy pipeline fed when the training set is larger than memory), and only around them."""
    import mmap
    import time

    from neurocare_bids.io.tfrecord import WindowReader

    tfrecord, _ = copy_of(outputs["float32"], tmp_path)
    with WindowReader(tfrecord, keep_open=keep_open) as reader:
        os.sync()
        fd = os.open(tfrecord, os.O_RDONLY)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(fd)
        if resident_pages(tfrecord).any():
            pytest.skip("this file system keeps the file in memory (tmpfs?): nothing to observe")
        wanted = [3, len(reader) - 2]
        reader.advise(wanted)
        pages = [range((int(reader._offsets[i]) - 12) // mmap.PAGESIZE,
                       (int(reader._offsets[i]) + int(reader._lengths[i]) + 4 - 1) // mmap.PAGESIZE + 1) for i in wanted]
        deadline = time.monotonic() + 10
        while not all(resident_pages(tfrecord)[list(r)].all() for r in pages) and time.monotonic() < deadline:
            time.sleep(0.02)
        resident = resident_pages(tfrecord)
        assert all(resident[list(r)].all() for r in pages)
        assert resident.mean() < 0.9  # the windows asked for and some readahead, not the whole file
        reader.close()
        reader.advise(wanted)  # a closed reader: nothing to do, no error
