"""The participant level's start and end: what its main process loads, and the script's quick exit."""

from __future__ import annotations

import os
import subprocess
import sys


FOOTPRINT = """
import sys
from neurocare_bids.cli.run import main
code = main(sys.argv[1:])
heavy = ("tensorflow", "keras", "torch", "jax", "mne", "mne_bids", "matplotlib", "bids", "sqlalchemy")
print(code, sorted(name for name in heavy if name in sys.modules))
"""


def test_participant_level_loads_only_what_preprocessing_needs(siena, tmp_path):
    """The participant level of an EDF dataset never loads TensorFlow, Keras, MNE or matplotlib (``--no-reports``),
    and indexes with pybids in a forked process only: the start-up cost of every job of a cluster array."""
    result = subprocess.run([sys.executable, "-c", FOOTPRINT, siena, tmp_path / "out", "participant",
                             "--skip-bids-validation", "--nprocs", "1", "--no-reports"],
                            capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "0 []", result.stdout


QUICK_EXIT = """
import atexit, sys, threading
from neurocare_bids.cli import run
atexit.register(lambda: print("exit handler ran", flush=True))
worker = threading.Thread(target=threading.Event().wait, args=(0.5,))
worker.start()
run._exit_now(5)  # a non-daemon thread still runs: returns, the normal exit waits for it
print("returned", end="")
worker.join()
sys.stderr.write("unflushed")
run._exit_now(3)
print("not reached")
"""


def test_quick_exit_flushes_runs_exit_handlers_and_keeps_the_code():
    """The script's quick exit (no interpreter tear-down) loses nothing a normal exit would write."""
    result = subprocess.run([sys.executable, "-c", QUICK_EXIT], capture_output=True, text=True, timeout=60)
    assert result.returncode == 3
    assert result.stdout == "returnedexit handler ran\n" and result.stderr == "unflushed"
