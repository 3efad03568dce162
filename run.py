#!/usr/bin/env python3
"""BIDS-App entry point: ``run.py bids_dir output_dir {participant,group} [options]``."""

import sys

from neurocare_bids.cli.run import main

if __name__ == "__main__":
    sys.exit(main())
