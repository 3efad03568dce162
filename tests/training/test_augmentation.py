"""Training-time augmentation: the left-right mirror (channel symmetry) and its montage permutation."""

from __future__ import annotations

import numpy as np
import pytest

from neurocare_bids.config import AugmentationConfig
from neurocare_bids.io.demo import CHANNELS
from neurocare_bids.preprocessing.montage import DOUBLE_BANANA, mirror_electrode, mirror_permutation


def test_mirror_permutation_of_the_average_and_bipolar_montages():
    perm = mirror_permutation(CHANNELS)
    assert [CHANNELS[i] for i in perm][:3] == ["Fp2-Avg", "F4-Avg", "C4-Avg"]
    assert all(CHANNELS[i] == c for i, c in zip(perm, CHANNELS) if c[:2] in ("Fz", "Cz", "Pz"))
    assert [perm[i] for i in perm] == list(range(len(CHANNELS)))  # mirroring twice changes nothing
    bipolar = [f"{a}-{b}".upper() for a, b in DOUBLE_BANANA]
    flipped = [bipolar[i] for i in mirror_permutation(bipolar)]
    assert flipped[0] == "FP2-F8" and flipped[5] == "F4-C4" and flipped[-2:] == ["FZ-CZ", "CZ-PZ"]
    assert mirror_permutation(["Fp1-Avg", "F3-Avg"]) is None  # their mirrors are missing
    assert mirror_permutation(["Fp1-Avg", "EKG"]) is None
    assert [mirror_electrode(e) for e in ("T3", "T6", "Fp2", "O1", "Fz", "AF7", "FT10")] == \
        ["T4", "T5", "Fp1", "O2", "Fz", "AF8", "FT9"]


def _only_mirror(probability: float) -> AugmentationConfig:
    return AugmentationConfig(amplitude_scale=0.0, noise_std=0.0, channel_dropout=0.0, time_mask=0.0,
                              mixup_alpha=0.0, mirror=probability)


def test_mirror_flips_whole_windows_with_its_probability():
    import tensorflow as tf

    from neurocare_bids.training.input_pipeline import _augment_batch

    rng = np.random.default_rng(0)
    x = rng.standard_normal((400, 32, len(CHANNELS))).astype("float32")
    y = tf.zeros(400, tf.int32)
    perm = mirror_permutation(CHANNELS)
    seed = tf.constant([3, 4], tf.int64)
    always = _augment_batch(tf.constant(x), y, seed, _only_mirror(1.0), perm).numpy()
    np.testing.assert_array_equal(always, x[:, :, perm])
    half = _augment_batch(tf.constant(x), y, seed, _only_mirror(0.5), perm).numpy()
    flipped = np.array([np.array_equal(h, w[:, perm]) for h, w in zip(half, x)])
    kept = np.array([np.array_equal(h, w) for h, w in zip(half, x)])
    assert (flipped ^ kept).all()  # each window is either mirrored whole or left alone
    assert 0.4 < flipped.mean() < 0.6
    again = _augment_batch(tf.constant(x), y, seed, _only_mirror(0.5), perm).numpy()
    np.testing.assert_array_equal(again, half)  # seeded: the same flips every time


@pytest.mark.parametrize("mirror", [None, [0]])
def test_mirror_leaves_the_other_augmentations_draws_alone(mirror):
    """Turning the mirror on must not change the gains, noise and masks of the other augmentations (the
    default runs' numbers stay reproducible): with the identity as 'mirror' the batch equals the plain one."""
    import tensorflow as tf

    from neurocare_bids.training.input_pipeline import _augment_batch

    x = tf.constant(np.random.default_rng(1).standard_normal((16, 64, 1)).astype("float32"))
    y = tf.constant([1, 0] * 8, tf.int32)
    seed = tf.constant([5, 6], tf.int64)
    aug = AugmentationConfig(mirror=1.0)
    plain = _augment_batch(x, y, seed, aug, None).numpy()
    np.testing.assert_array_equal(_augment_batch(x, y, seed, aug, mirror).numpy(), plain)


def test_spectral_tilt_changes_each_windows_slope_within_its_range_and_keeps_its_power():
    """spectral_tilt: the output's amplitude spectrum over the input's is (f / 10 Hz)^b with one b per window, all
    channels alike, |b| within the option, b spread over windows; each window keeps its power over all channels and
    the relative power of its channels; seeded; and the other augmentations draw as before."""
    import tensorflow as tf

    from neurocare_bids.training.input_pipeline import _augment_batch

    sfreq, n_times, tilt = 64.0, 256, 0.5
    rng = np.random.default_rng(2)
    x = rng.standard_normal((300, n_times, 3)).astype("float32") * np.array([1.0, 2.0, 0.5], "float32")
    y = tf.zeros(300, tf.int32)
    seed = tf.constant([7, 8], tf.int64)
    only = AugmentationConfig(amplitude_scale=0.0, noise_std=0.0, channel_dropout=0.0, time_mask=0.0,
                              mixup_alpha=0.0, mirror=0.0, spectral_tilt=tilt)
    out = _augment_batch(tf.constant(x), y, seed, only, None, sfreq).numpy()
    assert not np.allclose(out, x)
    np.testing.assert_allclose((out ** 2).sum(axis=(1, 2)), (x ** 2).sum(axis=(1, 2)), rtol=1e-4)
    ratio = np.abs(np.fft.rfft(out, axis=1)) / np.abs(np.fft.rfft(x, axis=1))
    freqs = np.fft.rfftfreq(n_times, 1 / sfreq)
    above = freqs >= 0.5  # below 0.5 Hz (removed by the band-pass anyway) the gain is 0.5 Hz's
    log_f = np.log(freqs[above] / 10.0)
    log_ratio = np.log(ratio[:, above, :])  # (window, frequency, channel)
    fits = np.array([[np.polyfit(log_f, log_ratio[w, :, c], 1) for c in range(3)] for w in range(len(x))])
    slopes, intercepts = fits[..., 0], fits[..., 1]
    residual = log_ratio - (slopes[:, None, :] * log_f[None, :, None] + intercepts[:, None, :])
    assert np.abs(residual).max() < 1e-3  # exactly a power law (times the rescaling): one line in log-log
    np.testing.assert_allclose(intercepts, intercepts[:, :1].repeat(3, axis=1), atol=1e-4)  # one gain per window
    np.testing.assert_allclose(slopes, slopes[:, :1].repeat(3, axis=1), atol=1e-4)  # all channels alike
    assert np.abs(slopes).max() <= tilt + 1e-4 and slopes[:, 0].std() > tilt / 4
    np.testing.assert_array_equal(_augment_batch(tf.constant(x), y, seed, only, None, sfreq).numpy(), out)
    everything = AugmentationConfig(spectral_tilt=0.0)
    plain = _augment_batch(tf.constant(x[:16]), y[:16], seed, everything, None, sfreq).numpy()
    # without a sampling rate there is no tilt; with a tilt of 0 the batch is the plain one
    tilted = AugmentationConfig(spectral_tilt=tilt)
    np.testing.assert_array_equal(_augment_batch(tf.constant(x[:16]), y[:16], seed, tilted, None, None).numpy(), plain)
