"""Round-trip tests for the EDF/EDF+ and BDF/BDF+ writer, read back with MNE."""

from __future__ import annotations

import warnings
from datetime import datetime, timezone
from pathlib import Path

import mne
import numpy as np
import pytest

from neurocare_bids.io import edf
from neurocare_bids.io.edf import BDF_DIGITAL_MAX, BDF_DIGITAL_MIN, DIGITAL_MAX, DIGITAL_MIN, write_edf

START = datetime(2021, 3, 14, 15, 9, 26)
NAMES = ["Fp1-Avg", "F3-Avg", "C3-Avg", "P3-Avg"]


def _read(path: Path, bdf: bool = False) -> mne.io.BaseRaw:
    reader = mne.io.read_raw_bdf if bdf else mne.io.read_raw_edf
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any reader complaint is a test failure
        return reader(path, preload=True, verbose="warning")


def _step(x: np.ndarray, bdf: bool = False) -> float:
    """One digital step for the symmetric range the writer derives from ``x``."""
    peak = max(float(np.abs(x).max()), 1.0 if not np.any(x) else 0.0)
    levels = BDF_DIGITAL_MAX - BDF_DIGITAL_MIN if bdf else DIGITAL_MAX - DIGITAL_MIN
    return 2 * peak * 1.0001 / levels


def _header_fields(path: Path) -> dict[str, list[str]]:
    """Split the raw header into its fixed-width fields (independent of MNE)."""
    raw = path.read_bytes()
    ns = int(raw[252:256])
    sig = raw[256 : 256 * (ns + 1)]
    widths = [
        ("label", 16),
        ("transducer", 80),
        ("unit", 8),
        ("pmin", 8),
        ("pmax", 8),
        ("dmin", 8),
        ("dmax", 8),
        ("prefilter", 80),
        ("spr", 8),
        ("reserved", 32),
    ]
    out: dict[str, list[str]] = {
        "version": [raw[0:8].decode("latin-1")],  # BDF starts with byte 0xFF
        "startdate": [raw[168:176].decode("ascii")],
        "starttime": [raw[176:184].decode("ascii")],
        "header_bytes": [raw[184:192].decode("ascii")],
        "reserved_main": [raw[192:236].decode("ascii")],
        "n_records": [raw[236:244].decode("ascii")],
        "duration": [raw[244:252].decode("ascii")],
    }
    pos = 0
    for name, width in widths:
        out[name] = [
            sig[pos + i * width : pos + (i + 1) * width].decode("ascii") for i in range(ns)
        ]
        pos += ns * width
    assert pos == len(sig)
    return out


@pytest.fixture
def eeg() -> np.ndarray:
    rng = np.random.default_rng(7)
    return rng.normal(0.0, 40.0, (len(NAMES), 10 * 256))


def _check_round_trip(raw, eeg: np.ndarray, annotations, bdf: bool = False) -> None:
    """Names, rate, length, start, samples within one digital step, and annotations, as written."""
    assert raw.ch_names == NAMES
    assert raw.info["sfreq"] == 256.0
    assert raw.n_times == eeg.shape[1]
    assert raw.info["meas_date"] == START.replace(tzinfo=timezone.utc)
    for got, want in zip(raw.get_data() * 1e6, eeg):
        assert np.abs(got - want).max() <= _step(want, bdf=bdf)
    assert list(raw.annotations.onset) == [a[0] for a in annotations]
    assert list(raw.annotations.duration) == [a[1] for a in annotations]
    assert list(raw.annotations.description) == [a[2] for a in annotations]


def test_edf_plus_roundtrip(tmp_path: Path, eeg: np.ndarray) -> None:
    annotations = [(0.0, 0.0, "start"), (2.5, 3.25, "sz_foc_ia"), (9.25, 0.75, "bckg ü")]
    path = write_edf(tmp_path / "a.edf", eeg, 256.0, NAMES, start=START, annotations=annotations)
    _check_round_trip(_read(path), eeg, annotations)
    fields = _header_fields(path)
    assert fields["reserved_main"][0].rstrip() == "EDF+C"
    assert fields["label"][-1] == "EDF Annotations "


def test_plain_edf(tmp_path: Path, eeg: np.ndarray) -> None:
    path = write_edf(tmp_path / "a.edf", eeg, 256.0, NAMES, start=START, edf_plus=False)
    raw = _read(path)
    assert raw.ch_names == NAMES
    assert len(raw.annotations) == 0
    assert raw.info["meas_date"] == START.replace(tzinfo=timezone.utc)
    assert np.abs(raw.get_data()[0] * 1e6 - eeg[0]).max() <= _step(eeg[0])
    fields = _header_fields(path)
    assert fields["reserved_main"][0] == " " * 44
    assert "EDF Annotations " not in fields["label"]
    with pytest.raises(ValueError, match="EDF\\+"):
        write_edf(tmp_path / "b.edf", eeg, 256.0, NAMES, edf_plus=False, annotations=[(1, 1, "x")])


def test_mixed_sampling_rates(tmp_path: Path) -> None:
    """Clinical EDFs mix rates; MNE upsamples the slower channels to the fastest."""
    rng = np.random.default_rng(3)
    fast, slow = rng.normal(0, 50, 8 * 512), rng.normal(0, 5, 8 * 128)
    path = write_edf(
        tmp_path / "m.edf",
        [fast, slow],
        [512.0, 128.0],
        ["EEG", "Resp"],
        annotations=[(4.0, 1.0, "event")],
    )
    fields = _header_fields(path)
    assert [s.strip() for s in fields["spr"][:2]] == ["512", "128"]
    raw = _read(path)
    assert raw.info["sfreq"] == 512.0
    assert raw.n_times == fast.size
    data = raw.get_data() * 1e6
    assert np.abs(data[0] - fast).max() <= _step(fast)
    # FFT upsampling by an integer factor keeps the original samples.
    assert np.abs(data[1, ::4] - slow).max() <= _step(slow) * 1.01
    assert list(raw.annotations.onset) == [4.0]


def test_flat_and_constant_channels(tmp_path: Path) -> None:
    sig = np.zeros((3, 512))
    sig[1] = 12.5
    sig[2, 100] = -3.0
    path = write_edf(tmp_path / "f.edf", sig, 256.0, ["zero", "const", "blip"])
    fields = _header_fields(path)
    for lo, hi in zip(fields["pmin"][:3], fields["pmax"][:3]):
        assert float(lo) < float(hi)
    data = _read(path).get_data() * 1e6
    for got, want in zip(data, sig):
        assert np.abs(got - want).max() <= _step(want)


def test_header_fields_fit(tmp_path: Path) -> None:
    """Every number fits its 8-character field and still bounds the data."""
    rng = np.random.default_rng(1)
    sig = np.stack([rng.normal(0, s, 256) for s in (1e-4, 0.123456789, 98765.4321, 3e5)])
    for given in (None, [(-1.23456789, 9.87654321)] * 4):
        path = write_edf(
            tmp_path / "h.edf",
            sig,
            256.0,
            list("abcd"),
            physical_ranges=given,
            record_duration=0.5,
            transducer="AgAgCl cup",
            prefilter="HP:0.5Hz",
        )
        fields = _header_fields(path)
        assert fields["duration"][0] == "0.5     "
        assert fields["header_bytes"][0].strip() == str(256 * 6)
        for key in ("pmin", "pmax", "dmin", "dmax", "spr"):
            for value in fields[key]:
                assert len(value) == 8 and float(value) == float(value.strip())
        if given is None:
            for i, x in enumerate(sig):
                assert float(fields["pmax"][i]) >= np.abs(x).max() > 0.9 * float(fields["pmax"][i])
                assert float(fields["pmin"][i]) == -float(fields["pmax"][i])
        raw = _read(path)
        assert raw.info["highpass"] == 0.5


def test_padding_of_last_record(tmp_path: Path) -> None:
    sig = np.full((1, 256 + 100), 10.0)
    path = write_edf(tmp_path / "p.edf", sig, 256.0, ["x"])
    data = _read(path).get_data()[0] * 1e6
    assert data.size == 512
    assert np.abs(data[:356] - 10.0).max() <= _step(sig[0])
    assert np.abs(data[356:]).max() <= _step(sig[0])


def test_deterministic_bytes(tmp_path: Path, eeg: np.ndarray) -> None:
    kwargs = dict(start=START, annotations=[(1.0, 2.0, "sz")])
    a = write_edf(tmp_path / "a.edf", eeg, 256.0, NAMES, **kwargs).read_bytes()
    b = write_edf(tmp_path / "a.edf", eeg, 256.0, NAMES, **kwargs).read_bytes()
    c = write_edf(tmp_path / "c.edf", eeg.copy(), 256, NAMES, **kwargs).read_bytes()
    assert a == b == c
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.edf", "c.edf"]


def test_interrupted_write_leaves_old_file(
    tmp_path: Path, eeg: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_edf(tmp_path / "a.edf", eeg, 256.0, NAMES)
    before = path.read_bytes()

    def crash(*args, **kwargs):
        yield np.zeros((1, 2), "<i2")
        raise KeyboardInterrupt

    monkeypatch.setattr(edf, "_data_records", crash)
    with pytest.raises(KeyboardInterrupt):
        write_edf(path, eeg * 2, 256.0, NAMES)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["a.edf"]


@pytest.mark.parametrize("suffix", [".edf", ".bdf"])
def test_truncated_file_is_detected(tmp_path: Path, eeg: np.ndarray, suffix: str) -> None:
    """MNE only *warns* when data bytes are missing; the pipeline escalates that."""
    reader = mne.io.read_raw_bdf if suffix == ".bdf" else mne.io.read_raw_edf
    full = write_edf(tmp_path / f"a{suffix}", eeg, 256.0, NAMES).read_bytes()
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(full[:-1000])
    with pytest.warns(RuntimeWarning, match="does not match the file size"):
        raw = reader(cut, preload=True)
    assert 0 < raw.n_times < eeg.shape[1]
    assert raw.n_times % 256 == 0  # only whole data records survive
    cut.write_bytes(full[:700])  # header cut off
    with pytest.raises(ValueError):
        reader(cut, preload=True, verbose="error")


def test_bdf_plus_roundtrip(tmp_path: Path, eeg: np.ndarray) -> None:
    annotations = [(0.0, 0.0, "start"), (2.5, 3.25, "sz_foc_ia"), (9.25, 0.75, "bckg ü")]
    path = write_edf(tmp_path / "a.bdf", eeg, 256.0, NAMES, start=START, annotations=annotations)
    fields = _header_fields(path)
    assert path.read_bytes()[:8] == b"\xffBIOSEMI"
    assert fields["reserved_main"][0].rstrip() == "BDF+C"
    assert fields["label"][-1] == "BDF Annotations "
    assert {d.strip() for d in fields["dmin"]} == {"-8388608"}
    assert {d.strip() for d in fields["dmax"]} == {"8388607"}
    n_records, header_bytes = int(fields["n_records"][0]), int(fields["header_bytes"][0])
    record_samples = sum(int(s) for s in fields["spr"])
    assert path.stat().st_size == header_bytes + 3 * n_records * record_samples
    _check_round_trip(_read(path, bdf=True), eeg, annotations, bdf=True)
    assert all(_step(want, bdf=True) < _step(want) / 250 for want in eeg)  # 24-bit: ~256x finer


def test_plain_bdf_and_format_selection(tmp_path: Path, eeg: np.ndarray) -> None:
    path = write_edf(tmp_path / "a.BDF", eeg, 256.0, NAMES, start=START, edf_plus=False)
    fields = _header_fields(path)
    assert fields["version"][0] == "\xffBIOSEMI"
    assert fields["reserved_main"][0].rstrip() == "24BIT"
    assert "BDF Annotations " not in fields["label"]
    raw = _read(path, bdf=True)
    assert raw.ch_names == NAMES
    assert len(raw.annotations) == 0
    assert np.abs(raw.get_data()[0] * 1e6 - eeg[0]).max() <= _step(eeg[0], bdf=True)
    with pytest.raises(ValueError, match="BDF\\+"):
        write_edf(tmp_path / "b.bdf", eeg, 256.0, NAMES, edf_plus=False, annotations=[(1, 1, "x")])
    # An explicit keyword overrides the suffix, both ways.
    forced = write_edf(tmp_path / "c.edf", eeg, 256.0, NAMES, start=START, bdf=True)
    twin = write_edf(tmp_path / "c.bdf", eeg, 256.0, NAMES, start=START)
    assert forced.read_bytes() == twin.read_bytes()
    as_edf = write_edf(tmp_path / "d.bdf", eeg, 256.0, NAMES, start=START, bdf=False)
    twin = write_edf(tmp_path / "d.edf", eeg, 256.0, NAMES, start=START)
    assert as_edf.read_bytes() == twin.read_bytes()


def test_bdf_sample_encoding(tmp_path: Path) -> None:
    """Samples are 3-byte little-endian two's complement, clipped to 24 bits."""
    values = np.array([0.0, 1.0, -1.0, 256.0, -65536.0, 8388607.0, -8388608.0, 1e9, -1e9])
    sig = np.concatenate([values, np.zeros(16 - values.size)])
    path = write_edf(
        tmp_path / "e.bdf",
        [sig],
        16.0,
        ["x"],
        edf_plus=False,
        physical_ranges=(BDF_DIGITAL_MIN, BDF_DIGITAL_MAX),  # gain 1, offset 0
    )
    data = path.read_bytes()[512:]
    assert len(data) == 3 * 16
    want = [0, 1, -1, 256, -65536, 8388607, -8388608, 8388607, -8388608] + [0] * 7
    got = [int.from_bytes(data[i : i + 3], "little", signed=True) for i in range(0, 48, 3)]
    assert got == want
    assert data[3:9] == b"\x01\x00\x00\xff\xff\xff"
    np.testing.assert_array_equal(_read(path, bdf=True).get_data()[0] * 1e6, want)


def test_bdf_mixed_rates_and_blocks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Mixed rates, several write blocks and a padded last record, all in BDF."""
    monkeypatch.setattr(edf, "_BLOCK_BYTES", 4000)  # a few records per block
    rng = np.random.default_rng(5)
    fast, slow = rng.normal(0, 50, 8 * 512 - 100), rng.normal(0, 5, 8 * 128 - 25)
    args = ([fast, slow], [512.0, 128.0], ["EEG", "Resp"])
    path = write_edf(tmp_path / "m.bdf", *args, annotations=[(4.0, 1.0, "ev")])
    raw = _read(path, bdf=True)
    assert raw.info["sfreq"] == 512.0
    assert raw.n_times == 8 * 512  # padded to whole records
    data = raw.get_data() * 1e6
    assert np.abs(data[0, : fast.size] - fast).max() <= _step(fast, bdf=True)
    assert np.abs(data[0, fast.size :]).max() <= _step(fast, bdf=True)
    assert np.abs(data[1, : slow.size * 4 : 4] - slow).max() <= _step(slow, bdf=True) * 1.01
    assert list(raw.annotations.onset) == [4.0]
    monkeypatch.undo()
    again = write_edf(tmp_path / "n.bdf", *args, annotations=[(4.0, 1.0, "ev")])
    assert again.read_bytes() == path.read_bytes()  # block size never changes the bytes


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(sfreqs=100.5), "whole number"),
        (dict(record_duration=1 / 3), "exact"),
        (dict(ch_names=["a" * 17, "b"]), "16 characters"),
        (dict(ch_names=["BDF Annotations", "b"]), "reserved"),
        (dict(units="µV"), "ASCII"),
        (dict(annotations=[(1.0, -1.0, "x")]), "timing"),
        (dict(annotations=[(1.0, 1.0, "a\x14b")]), "control"),
        (dict(start=datetime(2090, 1, 1)), "1985"),
        (dict(physical_ranges=(5, 5)), "min < max"),
    ],
)
def test_invalid_input(tmp_path: Path, kwargs: dict, match: str) -> None:
    args = dict(signals=np.ones((2, 512)), sfreqs=256.0, ch_names=["a", "b"])
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        write_edf(tmp_path / "x.edf", **args)
    assert list(tmp_path.iterdir()) == []


def test_rejects_non_finite_and_ragged(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="finite"):
        write_edf(tmp_path / "x.edf", np.array([[0.0, np.nan]]), 2.0, ["a"])
    with pytest.raises(ValueError, match="same number of data records"):
        write_edf(tmp_path / "x.edf", [np.ones(512), np.ones(512)], [256.0, 128.0], ["a", "b"])
