"""Exit codes and the exceptions that carry them.

The codes follow the BIDS-Apps convention proposed in BEP027 plus the BSD ``sysexits`` codes, so that
schedulers and wrappers can tell a user's mistake from a bug without parsing messages.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_VALIDATION = 16
EXIT_UNKNOWN_LEVEL = 17
EXIT_NOTHING_SELECTED = 18
EXIT_USAGE = 64
EXIT_DATA = 65
EXIT_NO_INPUT = 66
EXIT_CANT_CREATE = 73
EXIT_IO = 74
EXIT_INTERRUPTED = 130  # 128 + SIGINT (Ctrl-C)
EXIT_TERMINATED = 143  # 128 + SIGTERM (a scheduler's time limit, kill)

EXIT_CODES = {
    EXIT_OK: "success",
    EXIT_INTERNAL: "internal error (a bug: please report it with the -vv traceback)",
    EXIT_VALIDATION: "the input dataset failed BIDS validation",
    EXIT_UNKNOWN_LEVEL: "unknown analysis level",
    EXIT_NOTHING_SELECTED: "the participant/session/task filters selected nothing",
    EXIT_USAGE: "command-line or configuration usage error",
    EXIT_DATA: "bad input data (unreadable recording, malformed events.tsv, ...)",
    EXIT_NO_INPUT: "input missing: not a BIDS dataset, or no EEG recordings in it",
    EXIT_CANT_CREATE: "cannot create the output (or it belongs to another dataset)",
    EXIT_IO: "input/output error while writing (disk full, file size limit)",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C); finished outputs are kept",
    EXIT_TERMINATED: "terminated (SIGTERM); finished outputs are kept",
}


def combined_exit_code(codes) -> int:
    """One run's exit code from the codes of its failed parts (recordings, fold jobs): an internal error wins, else
    the highest; ``EXIT_OK`` when nothing failed."""
    codes = set(codes)
    return EXIT_OK if not codes else EXIT_INTERNAL if EXIT_INTERNAL in codes else max(codes)


class NeuroCareError(Exception):
    """An error with a one-line message meant for the user and a documented exit code."""

    exit_code = EXIT_INTERNAL

    def __init__(self, message: str, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class UsageError(NeuroCareError):
    exit_code = EXIT_USAGE


class ConfigError(UsageError):
    """A bad configuration file or value."""


class UnknownLevelError(NeuroCareError):
    exit_code = EXIT_UNKNOWN_LEVEL


class NothingSelectedError(NeuroCareError):
    exit_code = EXIT_NOTHING_SELECTED


class ValidationFailed(NeuroCareError):
    exit_code = EXIT_VALIDATION


class DataError(NeuroCareError):
    """One recording (or its events) cannot be used; the rest of the run goes on."""

    exit_code = EXIT_DATA


class NoInputError(NeuroCareError):
    exit_code = EXIT_NO_INPUT


class OutputError(NeuroCareError):
    exit_code = EXIT_CANT_CREATE


class Terminated(BaseException):
    """SIGTERM: unwinds the run like Ctrl-C (temporaries removed, finished outputs kept), then exit 143.

    Not an ``Exception``, so that no ``except Exception`` on the way mistakes it for a failed recording.
    """


_termination_requested: type[BaseException] | None = None  # what SIGTERM or Ctrl-C raised, once it came


def request_termination(kind: type[BaseException] = Terminated) -> None:
    """Remember that SIGTERM (:class:`Terminated`) or Ctrl-C (``KeyboardInterrupt``) came: the CLI's handlers call it
    before raising. The first to come stays."""
    global _termination_requested
    _termination_requested = _termination_requested or kind


def forget_termination() -> None:
    """Start a run with no request remembered."""
    global _termination_requested
    _termination_requested = None


def termination_requested() -> bool:
    return _termination_requested is not None


def raise_if_terminated() -> None:
    """Raise :class:`Terminated` (or ``KeyboardInterrupt``) again if SIGTERM (or Ctrl-C) came: its first raise can be
    swallowed by a library's bare ``except:`` (Keras's loss building, while the first training step is traced, has
    several), after which the run would go on as if it had not come; so can a garbage-collector callback that it
    interrupts. Long loops (training batches, recordings, folds, the fold jobs' wait) and the steps between
    them (the group level's aggregation and final model, every level's reports) call it."""
    if _termination_requested is not None:
        raise _termination_requested()
