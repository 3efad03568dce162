"""Preprocessing: each recording → montage → resampled, filtered signal → z-scored, labelled windows.

:mod:`.montage` maps a recording's channels onto the configured montage, :mod:`.filters` resamples and filters the
signal in bounded memory (zero-phase, or causal for streaming), :mod:`.quality` measures each raw channel on the way
(flat, noisy, clipped), and :mod:`.participant` runs the participant level: every recording → one TFRecord of windows
and its sidecar. Apply mode and streaming preprocess new recordings with the same functions.

Stage 2 of 7. Imports only `io` and the shared modules (`config`, `console`, `errors`).
"""
