"""Our TFRecord files are read by TensorFlow's own reader; corruption is detected."""

from __future__ import annotations

import numpy as np
import pytest

from neurocare_bids.errors import DataError
from neurocare_bids.io.tfrecord import decode_example, encode_example, frame_record, iter_records


def _write(path, examples):
    path.write_bytes(b"".join(frame_record(encode_example(e)) for e in examples))


def _examples():
    rng = np.random.default_rng(0)
    return [{"eeg": rng.standard_normal((8, 3)).astype("<f4").tobytes(), "label": k % 2, "onset": 2.0 * k,
             "window_index": k, "subject": "01", "session": "", "run": "00", "seizure_fraction": 0.25}
            for k in range(5)]


def test_tensorflow_reads_our_records(tmp_path):
    tf = pytest.importorskip("tensorflow")
    path = tmp_path / "w.tfrecord"
    examples = _examples()
    _write(path, examples)
    spec = {"eeg": tf.io.FixedLenFeature([], tf.string), "label": tf.io.FixedLenFeature([], tf.int64),
            "onset": tf.io.FixedLenFeature([], tf.float32), "window_index": tf.io.FixedLenFeature([], tf.int64),
            "subject": tf.io.FixedLenFeature([], tf.string), "session": tf.io.FixedLenFeature([], tf.string),
            "run": tf.io.FixedLenFeature([], tf.string), "seizure_fraction": tf.io.FixedLenFeature([], tf.float32)}
    parsed = list(tf.data.TFRecordDataset(str(path)).map(lambda r: tf.io.parse_single_example(r, spec)))
    assert len(parsed) == 5
    for got, want in zip(parsed, examples):
        eeg = tf.reshape(tf.io.decode_raw(got["eeg"], tf.float32), (8, 3)).numpy()
        np.testing.assert_array_equal(eeg, np.frombuffer(want["eeg"], "<f4").reshape(8, 3))
        assert got["label"].numpy() == want["label"] and got["onset"].numpy() == want["onset"]
        assert got["subject"].numpy() == b"01" and got["session"].numpy() == b""
    # byte-identical to TensorFlow's own deterministic serialisation
    raw = next(iter(tf.data.TFRecordDataset(str(path)))).numpy()
    assert tf.train.Example.FromString(raw).SerializeToString(deterministic=True) == raw


def test_decode_round_trip_and_negative_ints(tmp_path):
    path = tmp_path / "w.tfrecord"
    _write(path, [{"a": -3, "b": 1 << 40, "c": b"\x00\xff", "d": 1.5}])
    assert [decode_example(r) for r in iter_records(path)] == [{"a": -3, "b": 1 << 40, "c": b"\x00\xff", "d": 1.5}]


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_corruption_is_detected(tmp_path, damage):
    path = tmp_path / "w.tfrecord"
    _write(path, _examples())
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[:-10]
    else:
        data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match="truncated|corrupt"):
        list(iter_records(path))


@pytest.mark.parametrize("hex_data, reason", [  # each a hand-made protobuf that is no Example we write
    ("0a05abcd", "truncated protobuf field"),
    ("0a", "truncated varint"),
    ("0801", "unexpected protobuf wire type"),
    ("0a040a020a00", "a feature entry without its name or value"),
    ("0a0c0a0a0a01ff12051a030a0103", "a feature name that is not UTF-8"),
    ("0a0c0a0a0a0161120522030a0103", "unknown feature kind 4"),
    ("0a090a070a016112020a00", "a feature without exactly one value"),  # empty bytes_list
    ("0a0d0a0b0a016112061a040a020304", "a feature without exactly one value"),  # int64_list [3, 4]
    ("0a130a110a0161120c120a0a08000000000000c03f", "a feature without exactly one value"),  # float_list [0, 1.5]
])
def test_malformed_examples_raise_data_error(hex_data, reason):
    with pytest.raises(DataError, match=f"^not a tf.train.Example of single-valued features: {reason}$"):
        decode_example(bytes.fromhex(hex_data))
