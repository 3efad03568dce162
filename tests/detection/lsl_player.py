"""Play an EEG file as a live LSL stream in its own process (the tests' stand-in for an amplifier's LSL app).

``python lsl_player.py FILE NAME [--chunk N] [--speed X] [--stop-after S] [--drop-channel CH]``: mne-lsl's
``PlayerLSL`` once through the file (``n_repeat=1``), ``X`` times faster than recorded (a shorter pause between
chunks; the samples and the stream's nominal rate are the file's). It starts pushing once a consumer has
connected, so the consumer receives the whole recording, as ``stream FILE`` reads it; then it exits.
``--stop-after S`` vanishes after ``S`` seconds of signal (a source that dies mid-recording).
"""

from __future__ import annotations

import argparse
import time
import warnings

import mne
from mne_lsl.lsl import local_clock
from mne_lsl.player import PlayerLSL


class WaitingPlayer(PlayerLSL):
    """``PlayerLSL`` whose first chunk waits for a consumer, then plays ``speed`` times faster than recorded."""

    def __init__(self, *args, speed: float = 1.0, wait: float = 60.0, **kwargs):
        super().__init__(*args, **kwargs)
        self._speed, self._wait, self._ready = speed, wait, False

    def _stream(self) -> None:
        if not self._ready:
            self._outlet.wait_for_consumers(timeout=self._wait)
            self._streaming_delay = self.chunk_size / self.info["sfreq"] / self._speed
            self._target_timestamp = local_clock()
            self._ready = True
        super()._stream()

    def _del_outlets(self) -> None:
        time.sleep(0.5)  # as an amplifier's app closing: the last chunk reaches the consumer before the outlet goes
        super()._del_outlets()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("file")
    parser.add_argument("name")
    parser.add_argument("--chunk", type=int, default=32)
    parser.add_argument("--speed", type=float, default=1.0)
    parser.add_argument("--stop-after", type=float)
    parser.add_argument("--drop-channel")
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # e.g. "End of file reached with an empty chunk" when the chunks divide it
    raw = mne.io.read_raw(args.file, preload=True, verbose="error")
    if args.drop_channel:
        raw.drop_channels([args.drop_channel])
    if args.stop_after is not None:
        raw.crop(0, args.stop_after, include_tmax=False)
    player = WaitingPlayer(raw, chunk_size=args.chunk, n_repeat=1, name=args.name, source_id=f"{args.name}-src",
                           speed=args.speed)
    player.start()
    print("playing", flush=True)
    deadline = time.monotonic() + 120.0
    while player.running and time.monotonic() < deadline:  # the player's thread stops by itself at the end
        time.sleep(0.05)


if __name__ == "__main__":
    main()
