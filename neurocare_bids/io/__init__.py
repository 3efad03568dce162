"""Input and output: the BIDS dataset read, the files the app writes, and their formats.

:mod:`.bids_input` finds a dataset's EEG recordings (pybids) and opens them, read block by block in µV by
:mod:`.signal_reader`; :mod:`.annotations` reads their seizure annotations (``events.tsv``) and labels windows with
them; :mod:`.validation` runs the BIDS validator. On the output side, :mod:`.derivatives` lays out the output folder as
a BIDS derivative dataset, :mod:`.fsutils` writes every file atomically, :mod:`.tfrecord` writes and reads the
windows' TFRecords with NumPy alone, and :mod:`.edf` writes EDF/BDF. :mod:`.demo` makes the synthetic demo dataset,
a BIDS dataset like any input.

Stage 1 of 7. Imports only the shared modules (`config`, `console`, `errors`).
"""
