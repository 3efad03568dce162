"""Command-line interface (BIDS-Apps convention: ``bids_dir output_dir {participant,group}``)."""
