"""Command-line interface (BIDS-Apps convention: ``bids_dir output_dir {participant,group}``).

:mod:`.parser` builds the argument parsers, :mod:`.run` parses, configures, validates, runs a level (or ``stream``,
``export-model``, ``demo-data``) by calling into the stages, and exits with a documented code.

Stage 7 of 7, the last. Imports any of `reports`, `evaluation`, `detection`, `training`, `preprocessing`, `io` and the
shared modules (`config`, `console`, `errors`); only ``neurocare_bids.__main__`` imports it.
"""
