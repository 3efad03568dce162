"""Feed NeuroCare-BIDS windows to PyTorch (braindecode, ...) without TensorFlow.

    python examples/pytorch_windows.py OUTPUT_DIR [--workers 2] [--batch-size 64]

``WindowsDataset`` streams the windows of every recording under a participant-level output folder with
:func:`neurocare_bids.io.tfrecord.iter_windows` (NumPy only, one window in memory at a time per worker). Each
DataLoader worker reads its own share of the files, so no window is read twice. Items are ``(eeg, label)``:
eeg a float32 tensor (channels, samples), the layout braindecode's models take, e.g.
``ShallowFBCSPNet(n_chans=19, n_outputs=2, n_times=512)``. torch is not a dependency of NeuroCare-BIDS:
``pip install torch`` (or braindecode) to run this.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from neurocare_bids.io.tfrecord import iter_windows


class WindowsDataset(IterableDataset):
    """Every window under ``output_dir``, recording by recording in path order (shuffle with a buffer if needed)."""

    def __init__(self, output_dir: str | Path):
        # The sidecar is renamed into place last: a recording still being written is not listed.
        self.sidecars = sorted(Path(output_dir).glob("sub-*/**/*_desc-preproc_windows.json"))

    def __iter__(self):
        worker = get_worker_info()  # None when iterated in the main process
        sidecars = self.sidecars if worker is None else self.sidecars[worker.id::worker.num_workers]
        for sidecar in sidecars:
            for window in iter_windows(sidecar):
                # (samples, channels) as stored -> (channels, samples) as braindecode expects
                eeg = np.ascontiguousarray(window["eeg"].T, dtype=np.float32)
                yield torch.from_numpy(eeg), window["label"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output_dir", type=Path, help="a participant-level output folder")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    loader = DataLoader(WindowsDataset(args.output_dir), batch_size=args.batch_size, num_workers=args.workers)
    windows = seizures = 0
    shape = None
    for eeg, label in loader:  # eeg (batch, channels, samples) float32, label (batch,) int64
        windows, seizures, shape = windows + len(label), seizures + int(label.sum()), tuple(eeg.shape[1:])
    print(f"{windows} windows ({seizures} seizure), each (channels, samples) = {shape}")


if __name__ == "__main__":
    main()
