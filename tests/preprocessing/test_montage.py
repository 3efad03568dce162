"""Channel label parsing and montages."""

from __future__ import annotations

import numpy as np
import pytest

from neurocare_bids.config import SZCORE_ELECTRODES, MontageConfig
from neurocare_bids.errors import DataError
from neurocare_bids.preprocessing.montage import DOUBLE_BANANA, build_montage, parse_label


@pytest.mark.parametrize("label, parsed", [
    ("Fp1-Avg", ("Fp1", None)), ("EEG Fp1-Ref", ("Fp1", None)), ("EEG Fp1", ("Fp1", None)), ("FP1", ("Fp1", None)),
    ("Fc5.", ("FC5", None)), ("T7..", ("T3", None)), ("P8", ("T6", None)), ("C3-A2", ("C3", None)),
    ("EEG T3-LE", ("T3", None)), ("FP1-F7", ("Fp1", "F7")), ("T8-P8-0", ("T4", "T6")), ("FZ-CZ", ("Fz", "Cz")),
    ("EKG", None), ("SpO2", None), ("EEG Photic", None), ("DC01", None), ("", None),
])
def test_parse_label(label, parsed):
    assert parse_label(label) == parsed


def test_average_montage_rereferences_and_orders():
    names = [f"EEG {e}" for e in reversed(SZCORE_ELECTRODES)] + ["EKG"]
    montage = build_montage(names, MontageConfig())
    assert montage.names == [f"{e}-Avg" for e in SZCORE_ELECTRODES]
    data = np.random.default_rng(0).standard_normal((len(names), 100))
    out = montage.matrix @ data[montage.picks]
    expected = data[:19][::-1]
    np.testing.assert_allclose(out, expected - expected.mean(axis=0), atol=1e-12)
    np.testing.assert_allclose(out.sum(axis=0), 0, atol=1e-12)


def test_bipolar_montage_from_bipolar_reversed_and_referential_channels():
    names = ["F7-FP1"] + [f"{a}-{b}" for a, b in DOUBLE_BANANA[1:10]] + ["Fp2", "F8", "T4", "T6", "O2", "Fz", "Cz",
                                                                           "Pz", "C4", "P4"]
    montage = build_montage(names, MontageConfig(montage="bipolar"))
    data = np.random.default_rng(1).standard_normal((len(names), 50))
    out = montage.matrix @ data[montage.picks]
    np.testing.assert_allclose(out[0], -data[0])  # Fp1-F7 from F7-FP1
    np.testing.assert_allclose(out[5], data[5])  # F3-C3 as recorded
    idx = {n: i for i, n in enumerate(names)}
    np.testing.assert_allclose(out[16], data[idx["Fz"]] - data[idx["Cz"]])  # Fz-Cz from referential
    assert montage.sources["Fp1-F7"] == "-F7-FP1"


def test_missing_channels_error_or_fill():
    names = [f"{e}-Avg" for e in SZCORE_ELECTRODES if e not in ("O1", "T6")]
    with pytest.raises(DataError, match="O1, T6"):
        build_montage(names, MontageConfig())
    montage = build_montage(names, MontageConfig(allow_missing_channels=True))
    assert montage.filled == ["O1-Avg", "T6-Avg"]
    out = montage.matrix @ np.ones((len(names), 5))
    np.testing.assert_allclose(out, 0, atol=1e-12)
    with pytest.raises(DataError, match="bipolar"):
        build_montage([f"{a}-{b}" for a, b in DOUBLE_BANANA], MontageConfig())
