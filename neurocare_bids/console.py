"""What a run writes to the console, so that a job's log (a Slurm output file) can be read.

TensorFlow's native messages (its C++ logging through absl, XLA's, CUDA's ``failed call to cuInit`` on a machine
without a GPU, gRPC's) appear only with ``-vv``; below that they are switched off before TensorFlow is imported,
and the start-up lines absl prints before any setting applies are held back while TensorFlow loads (they go to
the run's log file). The group level's progress is logged to :data:`PROGRESS`: a progress bar shows it on a
terminal, and where none can be drawn (a file, a pipe) the console prints it as plain lines instead.

Kept free of heavy imports: the CLI imports this module before anything else.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile

log = logging.getLogger("neurocare")

PROGRESS = "neurocare.progress"  # fold starts and ends, epochs; records may carry ``milestone`` (see below)
LINE_INTERVAL = 30.0  # seconds: where no bar is drawn, at most one epoch line per interval (plus first and last)

_native_hidden = False


def hide_native_logs() -> None:
    """Before TensorFlow is imported (its C++ side reads these once): native logging off, and TensorFlow's and
    absl's Python loggers to errors only (retracing notices and the like)."""
    global _native_hidden
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"  # 3: not even errors (cuInit's on CPU-only machines is one)
    os.environ["GRPC_VERBOSITY"] = "NONE"  # multi-worker training's gRPC
    for name in ("tensorflow", "absl"):
        logging.getLogger(name).setLevel(logging.ERROR)
    _native_hidden = True


def tensorflow_installed() -> bool:
    """Whether TensorFlow can be imported here (without importing it): it is optional on Keras's JAX and
    PyTorch backends, where the NumPy input pipeline stands in for ``tf.data``."""
    import importlib.util

    try:
        return importlib.util.find_spec("tensorflow") is not None
    except (ImportError, ValueError):
        return False


def import_tensorflow() -> None:
    """Import TensorFlow; when native logs are hidden, hold back what its libraries write to stderr meanwhile.

    absl writes its messages to stderr until it is initialised, whatever ``TF_CPP_MIN_LOG_LEVEL`` says (oneDNN's
    notice, "Could not find cuda drivers"): only redirecting the file descriptor keeps them out of the console.
    Python's own stderr (and the logging handlers writing to it) goes to the real one meanwhile, so other threads'
    messages are not lost; the held-back lines go to the log at debug level, or to stderr if the import fails.
    """
    if not _native_hidden or "tensorflow" in sys.modules:
        import tensorflow  # noqa: F401
        return
    original = sys.stderr
    original.flush()
    real = open(os.dup(2), "w", encoding=original.encoding or "utf-8", errors="backslashreplace", buffering=1)
    handlers = [h for h in _stream_handlers() if h.stream is original]
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        sys.stderr = real
        for handler in handlers:
            handler.setStream(real)
        failed = False
        try:
            import tensorflow  # noqa: F401
        except Exception:
            failed = True
            raise
        finally:
            real.flush()
            os.dup2(real.fileno(), 2)
            sys.stderr = original
            for handler in handlers:
                handler.setStream(original)
            real.close()
            held.seek(0)
            text = held.read().decode("utf-8", "replace")
            if failed:  # the lines may explain why
                original.write(text)
                original.flush()
    for line in text.splitlines():
        log.debug("TensorFlow start-up (hidden below -vv): %s", line)


def _stream_handlers() -> list[logging.StreamHandler]:
    loggers = [logging.getLogger(), *(item for item in logging.Logger.manager.loggerDict.values()
                                      if isinstance(item, logging.Logger))]
    return [h for lg in loggers for h in lg.handlers if isinstance(h, logging.StreamHandler)]


def duration(seconds: float) -> str:
    """H:MM:SS, the same width for a minute as for a day, so that progress lines line up."""
    total = max(0, int(round(seconds)))
    return f"{total // 3600}:{total // 60 % 60:02d}:{total % 60:02d}"


def epoch_line_due(epoch: int, epochs: int, stopping: bool, since_last_line: float) -> bool:
    """Whether epoch ``epoch`` (0-based) of a training gets a line where no bar is drawn: the first (how long
    an epoch takes), the last one (planned or early-stopped), and otherwise one at most every
    :data:`LINE_INTERVAL` seconds, i.e. every epoch when an epoch takes that long."""
    return epoch == 0 or epoch + 1 >= epochs or stopping or since_last_line >= LINE_INTERVAL


class ConsoleFilter(logging.Filter):
    """Records at the chosen level; and, where no progress bar is drawn, progress records below it too (those
    with ``milestone = False`` only from ``-v``: the epochs between the lines :func:`epoch_line_due` picks)."""

    def __init__(self, level: int, terminal: bool):
        super().__init__()
        self.level, self.terminal = level, terminal

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= self.level:
            return True
        return (record.name == PROGRESS and not self.terminal and record.levelno >= logging.INFO
                and getattr(record, "milestone", True))


class ConsoleFormatter(logging.Formatter):
    """``LEVEL: message``; progress as ``[elapsed] message``, elapsed since the run started (a log file's lines
    have no time of their own)."""

    def __init__(self):
        super().__init__("%(levelname)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        if record.name == PROGRESS:
            return f"[{duration(record.relativeCreated / 1000)}] {record.getMessage()}"
        return super().format(record)
