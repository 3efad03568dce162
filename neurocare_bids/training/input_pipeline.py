"""``tf.data`` input pipeline: participant-level TFRecords → (augmented) batches, streamed from disk.

Training data are read file-interleaved and shuffled across recordings, parsed in batches, and never
held in memory as a whole. Augmentation happens here, on the fly and only for training folds:

* **time shift / seizure oversampling** — consecutive stored windows overlap, so window ``k`` and the
  new part of window ``k + 1`` form one continuous stretch from which a window can be cut at any offset
  up to one stride. A random offset shifts every training window; inside seizures extra windows are cut
  at a denser stride. Their labels are recomputed exactly from the recording's seizure intervals.
* **class-balanced sampling** — seizure and background streams drawn in fixed proportions.
* **synthetic variation** — per-channel gain, Gaussian noise, channel dropout, time masking, and mixup
  between seizure windows (labels stay "seizure", so losses keep integer labels).

Every random draw is stateless and seeded, so a given seed gives the same batches on every run.
This is the only module that uses TensorFlow directly; models and losses use Keras only. Where TensorFlow is not
installed, :mod:`.numpy_pipeline` makes the training batches instead (``training.input_pipeline``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import AugmentationConfig
from ..errors import DataError
from ..io.tfrecord import iter_windows
from ..preprocessing.montage import mirror_permutation

PARSE_BATCH = 256


@dataclass(frozen=True)
class WindowFile:
    """One participant-level output: its TFRecord, subject and the facts the pipeline needs."""

    tfrecord: Path
    sidecar: Path
    subject: str
    source: str  # the source recording, relative to BIDS_DIR
    window_count: int
    seizure_window_count: int
    seizure_intervals: tuple[tuple[float, float], ...]
    recording_duration: float

    @classmethod
    def from_sidecar(cls, sidecar: Path, subject: str) -> tuple[WindowFile, dict]:
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
        tfrecord = sidecar.with_name(meta["TFRecord"]["File"])
        source = meta["Sources"][0].split(":", 2)[-1]
        item = cls(tfrecord, sidecar, subject, source, int(meta["WindowCount"]), int(meta["SeizureWindowCount"]),
                   tuple((float(a), float(b)) for a, b in meta["SeizureIntervals"]),
                   float(meta["RecordingDuration"]))
        return item, meta


@dataclass(frozen=True)
class WindowGeometry:
    """What every file must share: the model input shape and how windows were cut."""

    n_times: int
    n_chans: int
    sfreq: float
    stride: int  # samples between window onsets
    dtype: str  # '<f4' or '<f2'
    label_threshold: float
    channels: tuple[str, ...]

    @property
    def duration(self) -> float:
        return self.n_times / self.sfreq

    @classmethod
    def from_sidecar(cls, meta: dict) -> WindowGeometry:
        schema = meta["TFRecord"]["Schema"]["eeg"]
        return cls(int(schema["shape"][0]), int(schema["shape"][1]), float(meta["SamplingFrequency"]),
                   int(round(meta["WindowStride"] * meta["SamplingFrequency"])), schema["dtype"],
                   float(meta["SeizureLabelThreshold"]), tuple(meta["Channels"]))


def check_geometry(metas: list[tuple[Path, dict]]) -> WindowGeometry:
    """All recordings must have been preprocessed alike; name the first that was not."""
    first_path, first = metas[0]
    geometry = WindowGeometry.from_sidecar(first)
    for path, meta in metas[1:]:
        other = WindowGeometry.from_sidecar(meta)
        if other != geometry:
            diff = [f for f in geometry.__dataclass_fields__ if getattr(other, f) != getattr(geometry, f)]
            raise DataError(f"{path.name} was preprocessed differently from {first_path.name} "
                            f"({', '.join(diff)} differ): rerun the participant level with one configuration")
    return geometry


def _tf():
    import tensorflow as tf

    return tf


def _parse_batch(records, geometry: WindowGeometry):
    """Parse a batch of serialized examples into float32 windows and their metadata."""
    tf = _tf()
    spec = {"eeg": tf.io.FixedLenFeature([], tf.string), "label": tf.io.FixedLenFeature([], tf.int64),
            "onset": tf.io.FixedLenFeature([], tf.float32),
            "window_index": tf.io.FixedLenFeature([], tf.int64),
            "seizure_fraction": tf.io.FixedLenFeature([], tf.float32)}
    parsed = tf.io.parse_example(records, spec)
    raw_dtype = tf.float16 if geometry.dtype == "<f2" else tf.float32
    eeg = tf.io.decode_raw(parsed["eeg"], raw_dtype, little_endian=True)
    eeg = tf.reshape(tf.cast(eeg, tf.float32), [-1, geometry.n_times, geometry.n_chans])
    return {"eeg": eeg, "label": tf.cast(parsed["label"], tf.int32), "onset": parsed["onset"],
            "window_index": parsed["window_index"], "seizure_fraction": parsed["seizure_fraction"]}


def read_windows(files: list[WindowFile], geometry: WindowGeometry, batch_size: int) -> Iterator[dict]:
    """Every window of ``files`` in order, in batches of NumPy arrays (``eeg`` float32 ``(n, n_times, n_chans)``,
    ``label``, ``onset``), unaugmented: validation, test and prediction.

    Read with the NumPy TFRecord reader rather than ``tf.data``: in order and unshuffled there is nothing for
    ``tf.data`` to overlap, and its per-batch parsing ran at about 900 windows/s on two cores, slower than the
    model's own prediction; the NumPy reader decodes over ten times faster.
    """
    for f in files:
        eeg, labels, onsets = [], [], []
        for window in iter_windows(f.tfrecord):
            eeg.append(window["eeg"])
            labels.append(window["label"])
            onsets.append(window["onset"])
            if len(eeg) == batch_size:
                yield _batch(eeg, labels, onsets, geometry)
                eeg, labels, onsets = [], [], []
        if eeg:
            yield _batch(eeg, labels, onsets, geometry)


def _batch(eeg: list, labels: list, onsets: list, geometry: WindowGeometry) -> dict:
    windows = np.stack(eeg).astype(np.float32, copy=False).reshape(-1, geometry.n_times, geometry.n_chans)
    return {"eeg": windows, "label": np.asarray(labels, dtype=np.int32), "onset": np.asarray(onsets, np.float32)}


def _intervals_table(files: list[WindowFile]) -> np.ndarray:
    """Seizure intervals of every file, zero-padded to one (files, max_intervals, 2) array."""
    longest = max([len(f.seizure_intervals) for f in files] + [1])
    table = np.zeros((len(files), longest, 2), dtype=np.float32)
    for i, f in enumerate(files):
        if f.seizure_intervals:
            table[i, :len(f.seizure_intervals)] = np.asarray(f.seizure_intervals, dtype=np.float32)
    return table


def training_dataset(files: list[WindowFile], geometry: WindowGeometry, aug: AugmentationConfig,
                     batch_size: int, seed: int, shard_by_file: bool = False, start_batch: int = 0):
    """An endless, shuffled, augmented stream of ``(windows, labels)`` training batches, from batch ``start_batch``
    on (a resumed training's next epoch: the batches before it are drawn but not augmented).

    ``shard_by_file``: ``files`` are already this worker's share (multi-worker training), so
    tf.distribute must not shard the stream again.
    """
    tf = _tf()
    augment = aug.enabled
    intervals = tf.constant(_intervals_table(files))
    paths = tf.constant([str(f.tfrecord) for f in files])
    n_times, stride, sfreq = geometry.n_times, geometry.stride, geometry.sfreq
    duration, threshold = geometry.duration, geometry.label_threshold - 1e-6
    shift = augment and aug.time_shift
    extra_offsets = []
    if augment and aug.seizure_oversampling:
        step = max(1, int(round(aug.oversampling_stride * sfreq)))
        extra_offsets = list(range(step, stride, step))

    def labels_at(file_index, onsets):
        """Seizure label of windows starting at ``onsets``, from the file's seizure intervals."""
        table = intervals[file_index]
        overlap = tf.maximum(0.0, tf.minimum(table[None, :, 1], onsets[:, None] + duration)
                             - tf.maximum(table[None, :, 0], onsets[:, None]))
        return tf.cast(tf.reduce_sum(overlap, axis=1) / duration >= threshold, tf.int32)

    def cut(span, offsets):
        """Windows starting ``offsets`` samples into each continuous span (vectorised gather)."""
        index = offsets[:, None] + tf.range(n_times)[None, :]
        return tf.gather(span, index, batch_dims=1)

    def crops(file_index, batch, batch_seed):
        """Training windows from a batch of consecutive stored windows of one file.

        Window k and the new part of window k + 1 form a continuous stretch one stride longer than a
        window; the last window of the batch has no successor and is kept unshifted.
        """
        eeg, onset = batch["eeg"], batch["onset"]
        span = tf.concat([eeg[:-1], eeg[1:, n_times - stride:]], axis=1)
        n_pairs = tf.shape(span)[0]
        if shift:
            offsets = tf.random.stateless_uniform([n_pairs], batch_seed, 0, stride + 1, dtype=tf.int32)
        else:
            offsets = tf.zeros([n_pairs], tf.int32)
        windows = [cut(span, offsets), eeg[-1:]]
        starts = [onset[:-1] + tf.cast(offsets, tf.float32) / sfreq, onset[-1:]]
        touches = tf.logical_or(batch["seizure_fraction"][:-1] > 0, batch["seizure_fraction"][1:] > 0)
        for extra in extra_offsets:  # denser windows where either stored window touches a seizure
            fixed = tf.fill([n_pairs], extra)
            windows.append(tf.boolean_mask(cut(span, fixed), touches))
            starts.append(tf.boolean_mask(onset[:-1] + extra / sfreq, touches))
        windows, starts = tf.concat(windows, axis=0), tf.concat(starts, axis=0)
        return tf.data.Dataset.from_tensor_slices((windows, labels_at(file_index, starts)))

    def segment(file_index, first, count, segment_seed):
        records = tf.data.TFRecordDataset(tf.gather(paths, file_index)).skip(first).take(count)
        batches = records.batch(PARSE_BATCH).map(lambda r: _parse_batch(r, geometry))
        seeds = tf.data.Dataset.random(seed=segment_seed).batch(2)
        return tf.data.Dataset.zip((batches, seeds)).flat_map(
            lambda b, s: crops(file_index, b, tf.cast(s, tf.int64)))

    def windows_of(segments: np.ndarray, stream_seed: int):
        """Crops from (file, first window, count) segments, interleaved and shuffled, endlessly."""
        seeds = np.random.default_rng(stream_seed).integers(0, 2**31 - 1, len(segments))
        table = tf.data.Dataset.from_tensor_slices((segments[:, 0], segments[:, 1], segments[:, 2], seeds))
        table = table.shuffle(len(segments), seed=stream_seed, reshuffle_each_iteration=True).repeat()
        out = table.interleave(segment, cycle_length=min(8, len(segments)), block_length=16,
                               num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return out.shuffle(4096, seed=stream_seed + 1)

    whole_files = np.array([[i, 0, f.window_count] for i, f in enumerate(files)], dtype=np.int64)
    stream = windows_of(whole_files, seed)
    if augment and aug.balanced_sampling:
        # Seizure windows are rare (1 in 60 in Siena): read them from the stretches around seizures
        # instead of filtering them out of everything.
        around = seizure_segments(files, geometry)
        if len(around):
            seizure = windows_of(around, seed + 10).filter(lambda x, y: tf.equal(y, 1))
            background = stream.filter(lambda x, y: tf.equal(y, 0))
            stream = tf.data.Dataset.sample_from_datasets(
                [background, seizure], weights=[1 - aug.seizure_fraction, aug.seizure_fraction],
                seed=seed + 2)
    stream = stream.batch(batch_size, drop_remainder=True)
    augment_seeds = tf.data.Dataset.random(seed=seed + 3).batch(2)
    if start_batch:
        stream, augment_seeds = stream.skip(start_batch), augment_seeds.skip(start_batch)
    if augment:
        stream = tf.data.Dataset.zip((stream, augment_seeds))
        mirror = mirror_permutation(geometry.channels) if aug.mirror > 0 else None
        stream = stream.map(lambda xy, s: (_augment_batch(xy[0], xy[1], tf.cast(s, tf.int64), aug, mirror,
                                                          geometry.sfreq), xy[1]),
                            num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    options = tf.data.Options()
    options.deterministic = True
    if shard_by_file:
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return stream.with_options(options).prefetch(tf.data.AUTOTUNE)


def seizure_segments(files: list[WindowFile], geometry: WindowGeometry) -> np.ndarray:
    """(file, first window, count) of the stored windows touching each seizure, one more for the pairs."""
    step = geometry.stride / geometry.sfreq
    rows = []
    for i, f in enumerate(files):
        for start, stop in f.seizure_intervals:
            first = max(0, int(np.floor((start - geometry.duration) / step)))
            last = min(f.window_count - 1, int(np.ceil(stop / step)) + 1)
            if last >= first:
                rows.append([i, first, last - first + 1])
    return np.array(rows, dtype=np.int64).reshape(-1, 3)


def _augment_batch(x, y, seed, aug: AugmentationConfig, mirror: list[int] | None = None,
                   sfreq: float | None = None):
    """Gain, noise, channel dropout, a time mask, seizure mixup, (with ``mirror``, the channels' mirror
    permutation) left-right flips and (with ``sfreq``) spectral tilts for a (batch, n_times, n_chans) batch."""
    tf = _tf()
    _, n_times, n_chans = x.shape
    batch = tf.shape(x)[0]
    seeds = tf.random.experimental.stateless_split(seed, 6)
    if mirror is not None:  # its own stream of random numbers: the other augmentations draw as before
        flip = tf.random.stateless_uniform([batch, 1, 1], tf.random.experimental.stateless_fold_in(seed, 7)) \
            < aug.mirror
        x = tf.where(flip, tf.gather(x, mirror, axis=2), x)
    if aug.spectral_tilt > 0 and sfreq:  # its own stream too
        slope = tf.random.stateless_uniform([batch, 1, 1], tf.random.experimental.stateless_fold_in(seed, 11),
                                            -aug.spectral_tilt, aug.spectral_tilt)
        x = tilt_spectrum(x, slope, sfreq)
    if aug.amplitude_scale > 0:
        x = x * tf.random.stateless_uniform([batch, 1, n_chans], seeds[0], 1 - aug.amplitude_scale,
                                            1 + aug.amplitude_scale)
    if aug.noise_std > 0:
        x = x + tf.random.stateless_normal(tf.shape(x), seeds[1], stddev=aug.noise_std)
    if aug.channel_dropout > 0:
        keep = tf.random.stateless_uniform([batch, 1, n_chans], seeds[2]) >= aug.channel_dropout
        x = x * tf.cast(keep, x.dtype)
    if aug.time_mask > 0:
        longest = max(1, int(aug.time_mask * n_times))
        length = tf.random.stateless_uniform([batch, 1], seeds[3], 0, longest + 1, dtype=tf.int32)
        start = tf.cast(tf.random.stateless_uniform([batch, 1], seeds[4]) *
                        tf.cast(n_times - length + 1, tf.float32), tf.int32)
        positions = tf.range(n_times)[None, :]
        masked = tf.logical_and(positions >= start, positions < start + length)
        x = x * tf.cast(tf.logical_not(masked), x.dtype)[:, :, None]
    if aug.mixup_alpha > 0:
        x = _mixup_seizures(x, y, seeds[5], aug.mixup_alpha)
    return x


TILT_REFERENCE_HZ = 10.0  # the frequency whose amplitude a tilt leaves alone (before rescaling)
TILT_LOWEST_HZ = 0.5  # below it (the DC bin), the gain of 0.5 Hz: the band-pass removed it anyway


def tilt_log_frequencies(n_times: int, sfreq: float) -> np.ndarray:
    """``log(f / 10 Hz)`` of a window's real-FFT bins, below 0.5 Hz that of 0.5 Hz: a tilt's gain is its
    slope times these (both input pipelines)."""
    freqs = np.maximum(np.fft.rfftfreq(n_times, 1.0 / sfreq), TILT_LOWEST_HZ) / TILT_REFERENCE_HZ
    return np.log(freqs)


def tilt_spectrum(x, slope, sfreq: float):
    """(batch, n_times, n_chans) windows with their amplitude spectra times ``(f / 10 Hz) ** slope`` (``slope``:
    (batch, 1, 1), one per window, all channels alike), then scaled back to each window's own power over all its
    channels: the window's spectral slope changes, its amplitude and the relative amplitude of its channels do not."""
    tf = _tf()
    n_times = x.shape[1]
    log_f = tf.constant(tilt_log_frequencies(n_times, sfreq)[None, None, :], tf.float32)
    gain = tf.exp(tf.transpose(slope, [0, 2, 1]) * log_f)  # (batch, 1, n_freqs)
    spectrum = tf.signal.rfft(tf.transpose(x, [0, 2, 1]))
    tilted = tf.transpose(tf.signal.irfft(spectrum * tf.cast(gain, spectrum.dtype), fft_length=[n_times]), [0, 2, 1])
    power = tf.reduce_sum(tf.square(x), axis=[1, 2], keepdims=True)
    tilted_power = tf.reduce_sum(tf.square(tilted), axis=[1, 2], keepdims=True)
    return tilted * tf.sqrt(power / tf.maximum(tilted_power, 1e-12))


def _mixup_seizures(x, y, seed, alpha: float):
    """Mix each seizure window of a batch with another one (Beta(alpha, alpha) weights)."""
    tf = _tf()
    seeds = tf.random.experimental.stateless_split(seed, 3)
    idx = tf.where(tf.equal(y, 1))[:, 0]
    partner = tf.random.experimental.stateless_shuffle(idx, seeds[0])
    n = tf.shape(idx)[0]
    g1 = tf.random.stateless_gamma([n], seeds[1], alpha)
    g2 = tf.random.stateless_gamma([n], seeds[2], alpha)
    lam = tf.reshape(g1 / tf.maximum(g1 + g2, 1e-12), [-1, 1, 1])
    mixed = lam * tf.gather(x, idx) + (1 - lam) * tf.gather(x, partner)
    return tf.tensor_scatter_nd_update(x, idx[:, None], mixed)
