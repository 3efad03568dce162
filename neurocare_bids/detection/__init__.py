"""Detection: a trained model → window probabilities → seizure events, on stored windows, new recordings or live.

:mod:`.postprocess` turns probabilities into events (centring, smoothing, threshold, merging, minimum duration),
:mod:`.stacking` combines the network's and the feature baseline's probabilities, and :mod:`.szcore` writes events as
SzCORE hypothesis files. :mod:`.apply` runs a model folder on new recordings (apply mode), :mod:`.streaming` does the
same sample by sample, and :mod:`.live` on a Lab Streaming Layer stream.

Stage 4 of 7. Imports only `training`, `preprocessing`, `io` and the shared modules (`config`, `console`, `errors`).
"""
