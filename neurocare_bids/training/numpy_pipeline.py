"""The training input pipeline without TensorFlow: NumPy batches made in threads, for Keras on JAX or PyTorch
where TensorFlow is not installed (``training.input_pipeline``; GPU nodes often offer JAX or PyTorch builds alone).

It draws the kinds of batches the ``tf.data`` pipeline draws (:func:`.input_pipeline.training_dataset`), another way:

* **time shift / seizure oversampling**: a window is cut at a random offset of up to one stride from the continuous
  stretch that two consecutive stored windows form (the last window of a recording unshifted); inside seizures at
  any offset, as the ``tf.data`` pipeline's denser seizure stride does. Labels are recomputed from the recording's
  seizure intervals.
* **class-balanced sampling**: a batch's number of seizure windows is binomial with ``seizure_fraction``, cut from
  the stretches around seizures (seizure label kept); the others from all windows (background label kept).
  Without it, windows are drawn uniformly from all training windows.
* **synthetic variation**: the same augmentations with NumPy's generator (:func:`augment_batch`).

Each batch is a function of the seed and its number alone, so threads build batches ahead in any order and a seed
gives the same stream on every run. Windows are read from disk as they are drawn (:class:`WindowReader`), never
held as a whole; the recordings stay open unless there are more than :func:`open_file_budget` of them. The random
draws are not the ``tf.data`` pipeline's: a model trained with one is not the other's bit for bit.
"""

from __future__ import annotations

import itertools
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..config import AugmentationConfig
from ..io.annotations import seizure_fraction, window_labels
from ..io.tfrecord import WindowReader
from ..preprocessing.montage import mirror_permutation
from ..preprocessing.participant import available_cpus, ordered_map
from .input_pipeline import WindowFile, WindowGeometry, seizure_segments, tilt_log_frequencies

#: Draws of a window before one of another label is kept (a background window drawn inside a seizure, a seizure
#: stretch's window below the label threshold): the batch is then a window short of its planned balance.
MAX_DRAWS = 64


def open_file_budget() -> int:
    """How many recordings the pipeline may hold open: a quarter of the process's open-file limit (``ulimit -n``,
    often 1024, while a CHB-MIT-sized training set has some 600 recordings); the rest is left to Keras, the
    logs and the run's other readers. Beyond it each read opens its file."""
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return 1 << 20 if soft == resource.RLIM_INFINITY else soft // 4


class NumpyTrainingBatches:
    """An endless stream of ``(windows, labels)`` training batches, float32 ``(batch, n_times, n_chans)`` and
    int32 ``(batch,)``; iterate it for the stream, :meth:`batch` for one batch, :meth:`close` when done.
    ``max_open_files``: hold the recordings open only if there are at most this many (default
    :func:`open_file_budget`); the batches are the same either way."""

    def __init__(self, files: list[WindowFile], geometry: WindowGeometry, aug: AugmentationConfig, batch_size: int,
                 seed: int, threads: int | None = None, max_open_files: int | None = None):
        self.files, self.geometry, self.aug, self.batch_size, self.seed = files, geometry, aug, batch_size, seed
        self.threads = threads or min(8, available_cpus())  # the CPUs this job may use (Slurm's, taskset's)
        budget = open_file_budget() if max_open_files is None else max_open_files
        self.readers: list[WindowReader] = []
        try:
            for f in files:
                self.readers.append(WindowReader(f.sidecar, keep_open=len(files) <= budget))
        except BaseException:
            self.close()
            raise
        counts = np.array([f.window_count for f in files], np.int64)
        self._first = np.concatenate([[0], np.cumsum(counts)])
        self._intervals = [np.asarray(f.seizure_intervals, np.float64).reshape(-1, 2) for f in files]
        augment = aug.enabled
        self._shift = augment and aug.time_shift
        self._seizure_offsets = augment and (aug.time_shift or aug.seizure_oversampling)
        pairs = [(i, k) for i, first, count in seizure_segments(files, geometry) for k in range(first, first + count)]
        self._seizure_pairs = np.array(pairs, np.int64).reshape(-1, 2)
        self._balanced = augment and aug.balanced_sampling and len(self._seizure_pairs) > 0
        self._mirror = mirror_permutation(geometry.channels) if augment and aug.mirror > 0 else None

    # ------------------------------------------------------------------ drawing windows
    def label(self, file: int, onset: float) -> int:
        """The label of a window starting ``onset`` seconds into recording ``file``, by the participant level's
        own rule (its seizure share at least the threshold)."""
        fraction = seizure_fraction([onset], self.geometry.duration, self._intervals[file])
        return int(window_labels(fraction, self.geometry.label_threshold)[0])

    def _offset(self, rng: np.random.Generator, file: int, k: int, any_offset: bool) -> int:
        """Samples into the stretch of windows ``k`` and ``k + 1`` (0 for a recording's last window)."""
        if not any_offset or k + 1 >= self.files[file].window_count:
            return 0
        return int(rng.integers(0, self.geometry.stride + 1))

    def _draw(self, rng: np.random.Generator, seizure: bool) -> tuple[int, int, int, int]:
        """``(file, stored window, offset, label)``: from the seizure stretches (label 1), or from all windows
        (label 0 with balanced sampling, any label without)."""
        wanted = 1 if seizure else (0 if self._balanced else None)
        stride, sfreq = self.geometry.stride, self.geometry.sfreq
        for _ in range(MAX_DRAWS):
            if seizure:
                file, k = (int(v) for v in self._seizure_pairs[rng.integers(len(self._seizure_pairs))])
                offset = self._offset(rng, file, k, self._seizure_offsets)
            else:
                index = int(rng.integers(self._first[-1]))
                file = int(np.searchsorted(self._first, index, side="right")) - 1
                k = index - int(self._first[file])
                offset = self._offset(rng, file, k, self._shift)
            label = self.label(file, (k * stride + offset) / sfreq)
            if wanted is None or label == wanted:
                break
        return file, k, offset, label

    def window(self, file: int, k: int, offset: int) -> np.ndarray:
        """The window ``offset`` samples after the start of stored window ``k`` of recording ``file``, float32."""
        n_times, stride = self.geometry.n_times, self.geometry.stride
        first = self.readers[file].window(k)["eeg"]
        if offset == 0:
            return first.astype(np.float32)
        second = self.readers[file].window(k + 1)["eeg"]
        # window k + 1 starts a stride after window k: its sample j is the stretch's sample j + stride
        return np.concatenate([first[offset:], second[n_times - stride:n_times - stride + offset]]).astype(np.float32)

    def draws(self, index: int) -> tuple[np.random.Generator, list[tuple[int, int, int, int]]]:
        """Batch ``index``'s windows as ``(file, stored window, offset, label)``, and its generator, from which
        the augmentation draws next."""
        rng = np.random.default_rng([self.seed, index])
        n_seizure = int(rng.binomial(self.batch_size, self.aug.seizure_fraction)) if self._balanced else 0
        chosen = [self._draw(rng, True) for _ in range(n_seizure)]
        chosen += [self._draw(rng, False) for _ in range(self.batch_size - n_seizure)]
        return rng, [chosen[i] for i in rng.permutation(len(chosen))]

    def batch(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Batch ``index`` of the stream, augmented."""
        rng, chosen = self.draws(index)
        x = np.stack([self.window(file, k, offset) for file, k, offset, _ in chosen])
        y = np.array([label for *_, label in chosen], np.int32)
        if self.aug.enabled:
            x = augment_batch(x, y, rng, self.aug, self._mirror, self.geometry.sfreq)
        return x, y

    def advise(self, index: int) -> None:
        """Ask the kernel to start reading batch ``index``'s windows from disk (:meth:`WindowReader.advise`). It
        draws them as :meth:`batch` will (about 1.5 ms of a 50 ms batch on one core), without reading them."""
        wanted: dict[int, list[int]] = {}
        for file, k, offset, _ in self.draws(index)[1]:
            wanted.setdefault(file, []).extend((k, k + 1) if offset else (k,))
        for file, windows in wanted.items():
            self.readers[file].advise(windows)

    # ------------------------------------------------------------------ the stream
    def __iter__(self):
        return self.stream()

    def stream(self, start: int = 0):
        """Batches ``start``, ``start`` + 1, ... for ever (a resumed training starts at its next epoch's first batch),
        built ahead by the threads. The windows of the batches after those in
        the threads' hands are announced to the kernel (:meth:`advise`), so that they are read from disk while the
        threads work: with the page cache dropped (as for a training set larger than memory) this took the rate from
        1,750-1,860 to 2,220-2,460 windows/s on a 2-core VM, near tf.data's 2,510 (docs: Performance)."""
        ahead = 2 * self.threads
        for index in range(start, start + ahead):
            self.advise(index)

        def build(index: int) -> tuple[np.ndarray, np.ndarray]:
            self.advise(index + ahead)  # in the worker threads: the consumer (the training loop) never waits on it
            return self.batch(index)

        with ThreadPoolExecutor(self.threads, thread_name_prefix="neurocare-batches") as pool:
            yield from ordered_map(pool, build, itertools.count(start), ahead=ahead)

    def close(self) -> None:
        for reader in self.readers:
            reader.close()


def augment_batch(x: np.ndarray, y: np.ndarray, rng: np.random.Generator, aug: AugmentationConfig,
                  mirror: list[int] | None = None, sfreq: float | None = None) -> np.ndarray:
    """Left-right flips (``mirror``: the channels' mirror permutation), spectral tilts (with ``sfreq``), gain,
    noise, channel dropout, a time mask and seizure mixup for a (batch, n_times, n_chans) float32 batch, as
    :func:`.input_pipeline._augment_batch` does in TensorFlow."""
    batch, n_times, n_chans = x.shape
    x = x.astype(np.float32, copy=True)
    if mirror is not None:
        flip = rng.random(batch) < aug.mirror
        x[flip] = x[flip][:, :, mirror]
    if aug.spectral_tilt > 0 and sfreq:
        x = tilt_spectrum(x, rng.uniform(-aug.spectral_tilt, aug.spectral_tilt, batch), sfreq)
    if aug.amplitude_scale > 0:
        x *= rng.uniform(1 - aug.amplitude_scale, 1 + aug.amplitude_scale, (batch, 1, n_chans)).astype(np.float32)
    if aug.noise_std > 0:
        x += rng.normal(0.0, aug.noise_std, x.shape).astype(np.float32)
    if aug.channel_dropout > 0:
        x *= (rng.random((batch, 1, n_chans)) >= aug.channel_dropout).astype(np.float32)
    if aug.time_mask > 0:
        longest = max(1, int(aug.time_mask * n_times))
        length = rng.integers(0, longest + 1, batch)
        start = (rng.random(batch) * (n_times - length + 1)).astype(np.int64)
        positions = np.arange(n_times)[None, :]
        keep = (positions < start[:, None]) | (positions >= (start + length)[:, None])
        x *= keep[:, :, None].astype(np.float32)
    if aug.mixup_alpha > 0:
        seizures = np.flatnonzero(y == 1)
        if len(seizures):
            partner = rng.permutation(seizures)
            lam = rng.beta(aug.mixup_alpha, aug.mixup_alpha, len(seizures)).astype(np.float32)[:, None, None]
            x[seizures] = lam * x[seizures] + (1 - lam) * x[partner]
    return x


def tilt_spectrum(x: np.ndarray, slope: np.ndarray, sfreq: float) -> np.ndarray:
    """NumPy's :func:`.input_pipeline.tilt_spectrum`: each window's amplitude spectrum times
    ``(f / 10 Hz) ** slope`` (one slope per window), then scaled back to the window's power."""
    n_times = x.shape[1]
    gain = np.exp(np.asarray(slope, np.float64)[:, None] * tilt_log_frequencies(n_times, sfreq)[None, :])[:, :, None]
    tilted = np.fft.irfft(np.fft.rfft(x, axis=1) * gain, n=n_times, axis=1)
    power = np.square(x, dtype=np.float64).sum(axis=(1, 2), keepdims=True)
    tilted_power = np.square(tilted).sum(axis=(1, 2), keepdims=True)
    return (tilted * np.sqrt(power / np.maximum(tilted_power, 1e-12))).astype(np.float32)
