"""The NumPy training input pipeline (``training.input_pipeline = "numpy"``, the one used where TensorFlow is not
installed): its windows are the recordings' signal at the drawn offsets with the participant level's labels, its
batches are balanced as configured and reproducible, and its augmentations do what the ``tf.data`` ones do."""

from __future__ import annotations

import dataclasses
import sys

import numpy as np
import pytest

from conftest import add_recording, resident_pages, run_cli
from neurocare_bids.config import AugmentationConfig
from neurocare_bids.io.tfrecord import read_windows
from neurocare_bids.training.numpy_pipeline import NumpyTrainingBatches, augment_batch, tilt_spectrum

NO_VARIATION = dict(amplitude_scale=0.0, noise_std=0.0, channel_dropout=0.0, time_mask=0.0, mixup_alpha=0.0,
                    mirror=0.0, spectral_tilt=0.0)


@pytest.fixture(scope="module")
def windows(tmp_path_factory):
    """``(files, geometry)`` of three recordings' participant-level windows: two with seizures, one without."""
    from neurocare_bids.evaluation.plan import collect_window_files

    root = tmp_path_factory.mktemp("numpy-pipeline")
    bids, out = root / "bids", root / "out"
    add_recording(bids, "01", duration=120.0, seizures=[(30.0, 20.0, "sz")], seed=1)
    add_recording(bids, "02", duration=120.0, seizures=[(60.0, 25.0, "sz")], seed=2)
    add_recording(bids, "03", duration=90.0, seizures=[], seed=3)
    result = run_cli(bids, out, "participant", "--skip-bids-validation")
    assert result.returncode == 0, result.stderr
    return collect_window_files(out, [])


def _continuous(file, stride: int) -> np.ndarray:
    """The recording's preprocessed signal rebuilt from its overlapping stored windows (``stride`` samples apart)."""
    stored = read_windows(file.sidecar)["eeg"].astype(np.float32)
    return np.concatenate([w[:stride] for w in stored[:-1]] + [stored[-1]])


def test_windows_are_the_signal_at_their_offsets_with_the_participant_levels_labels(windows):
    files, geometry = windows
    assert geometry.stride * 2 == geometry.n_times
    aug = AugmentationConfig(**NO_VARIATION)  # time shift, oversampling and balance on; no synthetic variation
    batches = NumpyTrainingBatches(files, geometry, aug, 32, seed=5)
    try:
        signals = [_continuous(f, geometry.stride) for f in files]
        stored_labels = [read_windows(f.sidecar)["label"] for f in files]
        offsets = []
        for index in range(20):
            _, chosen = batches.draws(index)
            x, y = batches.batch(index)
            assert x.dtype == np.float32 and x.shape == (32, geometry.n_times, geometry.n_chans) and y.dtype == np.int32
            for (file, k, offset, label), window, got in zip(chosen, x, y):
                start = k * geometry.stride + offset
                np.testing.assert_array_equal(window, signals[file][start:start + geometry.n_times])
                assert got == label == batches.label(file, start / geometry.sfreq)
                if offset == 0:
                    assert label == stored_labels[file][k]
                offsets.append(offset)
        assert 0 in offsets and max(offsets) == geometry.stride and len(set(offsets)) > geometry.stride // 2
    finally:
        batches.close()


def test_balanced_sampling_and_reproducible_streams(windows):
    """About ``seizure_fraction`` of the windows are seizure windows (binomial per batch); seizure draws come from
    the seizure recordings; the same seed gives the same stream, through the threads or one batch at a time."""
    files, geometry = windows
    aug = AugmentationConfig(seizure_fraction=0.3)
    batches = NumpyTrainingBatches(files, geometry, aug, 64, seed=11, threads=3)
    try:
        labels = np.concatenate([batches.batch(i)[1] for i in range(40)])
        assert abs(labels.mean() - 0.3) < 0.05
        per_batch = [batches.batch(i)[1].mean() for i in range(40)]
        assert np.std(per_batch) > 0.01  # drawn per batch, not a fixed count
        assert {files[f].subject for i in range(10) for f, _, _, label in batches.draws(i)[1] if label} <= {"01", "02"}
        stream = iter(batches)
        for i in range(10):
            x, y = next(stream)
            x1, y1 = batches.batch(i)
            np.testing.assert_array_equal(x, x1)
            np.testing.assert_array_equal(y, y1)
        stream.close()
        other = NumpyTrainingBatches(files, geometry, aug, 64, seed=12)
        assert not np.array_equal(other.batch(0)[0], batches.batch(0)[0])
        other.close()
    finally:
        batches.close()
    plain = NumpyTrainingBatches(files, geometry, AugmentationConfig(balanced_sampling=False), 64, seed=11)
    try:  # without balancing, windows as they come: seizures as rare as in the recordings
        share = np.concatenate([plain.batch(i)[1] for i in range(30)]).mean()
        stored = sum(f.seizure_window_count for f in files) / sum(f.window_count for f in files)
        assert abs(share - stored) < 0.06 and share < 0.2
    finally:
        plain.close()


def test_augmentations_vary_windows_as_configured():
    """Each augmentation alone: mirror flips whole windows with its probability; gain is one factor per window
    and channel within its range; noise has its standard deviation; dropout zeroes whole channels; the time mask
    zeroes one stretch no longer than its bound; mixup mixes seizure windows only."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((400, 64, 4)).astype(np.float32) + 3.0  # no zeros of its own
    y = np.array([1, 0] * 200, np.int32)

    def only(**kwargs):
        return augment_batch(x, y, np.random.default_rng(1), AugmentationConfig(**{**NO_VARIATION, **kwargs}),
                             mirror=[1, 0, 2, 3])

    flipped = only(mirror=0.5)
    is_flipped = np.array([np.array_equal(a, b[:, [1, 0, 2, 3]]) for a, b in zip(flipped, x)])
    is_kept = np.array([np.array_equal(a, b) for a, b in zip(flipped, x)])
    assert (is_flipped ^ is_kept).all() and 0.4 < is_flipped.mean() < 0.6
    gain = only(amplitude_scale=0.2) / x
    assert np.allclose(gain, gain[:, :1, :], atol=1e-5) and 0.8 <= gain.min() and gain.max() <= 1.2
    assert gain[:, 0, :].std() > 0.05
    assert abs((only(noise_std=0.05) - x).std() - 0.05) < 0.002
    dropped = only(channel_dropout=0.25)
    zero = (dropped == 0).all(axis=1)
    assert ((dropped == x) | (dropped == 0)).all() and abs(zero.mean() - 0.25) < 0.04
    masked = only(time_mask=0.1)
    zeros = (masked == 0).all(axis=2)
    assert ((masked == x) | (masked == 0)).all() and zeros.sum(axis=1).max() <= 6 and zeros.any()
    for row in zeros[zeros.any(axis=1)]:
        positions = np.flatnonzero(row)
        assert positions[-1] - positions[0] + 1 == len(positions)  # one stretch
    mixed = only(mixup_alpha=0.2)
    np.testing.assert_array_equal(mixed[y == 0], x[y == 0])
    assert not np.array_equal(mixed[y == 1], x[y == 1])


def test_spectral_tilt_equals_the_tensorflow_pipelines():
    tf = pytest.importorskip("tensorflow")
    from neurocare_bids.training.input_pipeline import tilt_spectrum as tf_tilt

    rng = np.random.default_rng(3)
    x = rng.standard_normal((50, 256, 3)).astype(np.float32)
    slope = rng.uniform(-0.5, 0.5, 50)
    ours = tilt_spectrum(x, slope, 128.0)
    theirs = tf_tilt(tf.constant(x), tf.constant(slope.reshape(-1, 1, 1), tf.float32), 128.0).numpy()
    np.testing.assert_allclose(ours, theirs, atol=2e-4)
    assert not np.allclose(ours, x, atol=1e-2)


def test_a_disabled_augmentation_gives_the_stored_windows(windows):
    """``augmentation.enabled = false``: every window is a stored one (no shift) with its stored label, drawn
    uniformly over the recordings."""
    files, geometry = windows
    aug = dataclasses.replace(AugmentationConfig(), enabled=False)
    batches = NumpyTrainingBatches(files, geometry, aug, 32, seed=2)
    try:
        stored = [read_windows(f.sidecar) for f in files]
        for index in range(5):
            _, chosen = batches.draws(index)
            x, y = batches.batch(index)
            for (file, k, offset, _), window, label in zip(chosen, x, y):
                assert offset == 0 and label == stored[file]["label"][k]
                np.testing.assert_array_equal(window, stored[file]["eeg"][k].astype(np.float32))
    finally:
        batches.close()


def test_more_recordings_than_the_open_file_limit_allows(windows):
    """A CHB-MIT-sized training set has hundreds of recordings; a job's ``ulimit -n`` is often 1024. Beyond a
    quarter of the limit the pipeline opens a recording for each read instead of holding it open, and its batches
    are the same. Here 300 recordings (the three, each listed 100 times) under a limit of what is open now + 80."""
    import os
    import resource

    files, geometry = windows
    many = files * 100
    aug = AugmentationConfig()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    open_now = len(os.listdir("/proc/self/fd"))
    resource.setrlimit(resource.RLIMIT_NOFILE, (open_now + 80, hard))
    try:
        batches = NumpyTrainingBatches(many, geometry, aug, 32, seed=4, threads=2)
        try:
            assert len(os.listdir("/proc/self/fd")) <= open_now + 1  # none held: listdir's own descriptor at most
            stream = iter(batches)
            got = [next(stream) for _ in range(6)]
            stream.close()
        finally:
            batches.close()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    held = NumpyTrainingBatches(many, geometry, aug, 32, seed=4, max_open_files=len(many))
    try:
        for index, (x, y) in enumerate(got):
            x1, y1 = held.batch(index)
            np.testing.assert_array_equal(x, x1)
            np.testing.assert_array_equal(y, y1)
    finally:
        held.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="posix_fadvise and mincore as on Linux")
def test_a_batchs_windows_are_announced_to_the_kernel_before_they_are_read(windows):
    """``advise(i)`` asks the kernel for every stored window batch ``i`` will read (both windows of a shifted one), so
    that on a cold page cache the threads find them in memory; the stream announces the batches ahead of its
    threads."""
    import mmap
    import os
    import time

    files, geometry = windows
    batches = NumpyTrainingBatches(files, geometry, AugmentationConfig(), 32, seed=3)
    try:
        os.sync()
        for f in files:
            fd = os.open(f.tfrecord, os.O_RDONLY)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            os.close(fd)
        if any(resident_pages(f.tfrecord).any() for f in files):
            pytest.skip("this file system keeps the files in memory (tmpfs?): nothing to observe")
        batches.advise(0)
        needed = {(file, j) for file, k, offset, _ in batches.draws(0)[1] for j in ((k, k + 1) if offset else (k,))}
        assert any(offset for _, _, offset, _ in batches.draws(0)[1])  # shifted windows are among them

        def pages(file: int, j: int) -> list[int]:
            reader = batches.readers[file]
            first = (int(reader._offsets[j]) - 12) // mmap.PAGESIZE
            return list(range(first, (int(reader._offsets[j]) + int(reader._lengths[j]) + 3) // mmap.PAGESIZE + 1))

        def missing() -> set:
            resident = [resident_pages(f.tfrecord) for f in files]
            return {(file, j) for file, j in needed if not resident[file][pages(file, j)].all()}

        deadline = time.monotonic() + 10
        while missing() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not missing()
    finally:
        batches.close()


def test_the_input_pipeline_benchmark_times_both_pipelines(windows, tmp_path):
    """benchmarks/input_pipeline.py: each pipeline's rate against the same training step, and NumPy's over tf.data's."""
    import json
    import subprocess
    from pathlib import Path

    pytest.importorskip("tensorflow")
    files, _ = windows
    derivatives = files[0].sidecar.parents[3]
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "input_pipeline.py"
    result = subprocess.run([sys.executable, str(script), str(derivatives), "--batches", "4", "--batch-size", "16",
                             "--cold", "--json", str(tmp_path / "figures.json")], capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads((tmp_path / "figures.json").read_text())
    assert figures["page_cache"] == "evicted"
    for name in ("tf.data", "numpy"):
        row = figures[name]
        assert row["pipeline_windows_per_s"] > 0 and row["windows_per_cpu_s"] > 0
        assert row["ratio"] == pytest.approx(row["pipeline_windows_per_s"] / figures["train_step_windows_per_s"],
                                             rel=0.01)
        assert 0 < row["seizure_fraction_delivered"] < 1
        assert f"{name} input pipeline:" in result.stdout
    assert figures["numpy_over_tf_data"] == pytest.approx(
        figures["numpy"]["pipeline_windows_per_s"] / figures["tf.data"]["pipeline_windows_per_s"], rel=0.02)


def test_what_the_numpy_pipeline_cannot_do_is_refused_before_training(windows, tmp_path):
    """Multi-worker training shards tf.data's stream: with ``input_pipeline = "numpy"`` a ``--distributed`` run
    stops at once with exit 64 and one line, before any fold is trained."""
    import shutil

    files, _ = windows
    derivatives = files[0].sidecar.parents[3]
    out = tmp_path / "out"
    shutil.copytree(derivatives, out)
    config = tmp_path / "numpy.toml"
    config.write_text('[training]\ninput_pipeline = "numpy"\n')
    result = run_cli(derivatives.parent / "bids", out, "group", "--config", config, "--distributed")
    assert result.returncode == 64, result.stderr
    assert "multi-worker training needs training.input_pipeline = 'tf.data'" in result.stderr
    assert "Traceback" not in result.stderr and not (out / "group" / "fold-1").exists()
