"""What reaches the console: TensorFlow's native messages only with -vv, progress lines at a readable pace.

The group level's log as a whole (no native line, a progress line per fold and epoch) is checked on the shared
group run in test_group_cli.py; these tests check the pieces it cannot show.
"""

from __future__ import annotations

import os
import subprocess
import sys

from neurocare_bids.console import LINE_INTERVAL, duration, epoch_line_due

ENV_AFTER_MAIN = """
import os, sys
from neurocare_bids.cli.run import main
main(sys.argv[1:])
print(os.environ.get("TF_CPP_MIN_LOG_LEVEL"), os.environ.get("GRPC_VERBOSITY"))
"""


def test_native_logging_is_switched_off_below_vv_only():
    """Below -vv the CLI sets TensorFlow's and gRPC's log levels before anything imports TensorFlow (the user's
    own value does not count: -vv is the way to see them); with -vv it leaves the environment alone, so
    TensorFlow logs as it would anyway (which lines that gives depends on the machine: not asserted here)."""
    env = {k: v for k, v in os.environ.items() if k != "GRPC_VERBOSITY"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "1"
    for flags, expected in (([], "3 NONE"), (["-v"], "3 NONE"), (["-vv"], "1 None")):
        result = subprocess.run([sys.executable, "-c", ENV_AFTER_MAIN, "bids", "out", "group", "--print-config",
                                 *flags], capture_output=True, text=True, env=env, timeout=120)
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines()[-1] == expected, flags


HELD_BACK_IMPORT = """
import logging, os, sys, threading, time
from neurocare_bids.cli.run import _setup_console_logging
from neurocare_bids.console import hide_native_logs, import_tensorflow

_setup_console_logging(0)
hide_native_logs()
console = os.fstat(2).st_ino
redirected = []

def other_thread():
    while "tensorflow" not in sys.modules:
        time.sleep(0.001)
    redirected.append(os.fstat(2).st_ino != console)  # written while TensorFlow's output is held back
    logging.getLogger("neurocare").warning("a warning from another thread")
    print("a line printed by another thread", file=sys.stderr, flush=True)

thread = threading.Thread(target=other_thread)
thread.start()
import_tensorflow()
thread.join()
import tensorflow as tf
tf.constant(1.0) + 1  # the first operation: CUDA's cuInit error comes here on a machine without a GPU
print(redirected)
"""


def test_tensorflow_import_holds_back_native_lines_but_not_python_output():
    """What TensorFlow's libraries print while loading stays out of stderr; what Python writes meanwhile (another
    thread's warning, a print) still reaches it."""
    result = subprocess.run([sys.executable, "-c", HELD_BACK_IMPORT], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[True]"
    assert result.stderr.splitlines() == ["WARNING: a warning from another thread",
                                          "a line printed by another thread"], result.stderr


def test_epoch_lines_first_last_and_at_most_one_per_interval():
    # quick epochs: the first, then one per interval, and the last
    times = [0.0] + [5.0 * (e + 1) for e in range(40)]  # end of each of 40 epochs of 5 s
    last, shown = 0.0, []
    for epoch in range(40):
        if epoch_line_due(epoch, 40, False, times[epoch + 1] - last):
            shown.append(epoch + 1)
            last = times[epoch + 1]
    assert shown[0] == 1 and shown[-1] == 40
    gaps = [b - a for a, b in zip(shown, shown[1:-1])]
    assert gaps and all(gap * 5.0 >= LINE_INTERVAL for gap in gaps) and len(shown) <= 40 * 5 / LINE_INTERVAL + 2
    # slow epochs: every one; early stopping: the stopping epoch
    assert all(epoch_line_due(e, 40, False, LINE_INTERVAL) for e in range(40))
    assert epoch_line_due(7, 40, True, 1.0) and not epoch_line_due(7, 40, False, 1.0)


def test_duration_format():
    assert [duration(s) for s in (0, 59.6, 61, 3600, 90061)] == ["0:00:00", "0:01:00", "0:01:01", "1:00:00",
                                                                   "25:01:01"]
