"""Writing files so that nothing is ever half-written, and sharing an output folder between jobs.

Every output is written to a hidden temporary file in its final folder and renamed over the target
(``os.replace`` is atomic on POSIX file systems), so a reader — or a rerun after ``kill -9`` — sees the
old file or the new one, never a mixture. Temporary names carry host and PID so that a later run can
tell its own dead leftovers from the live files of another job sharing the folder on an HPC cluster.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import signal
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from ..errors import NeuroCareError, OutputError, EXIT_IO

_HOST = socket.gethostname().split(".")[0].replace(".", "_") or "host"
_TMP_SUFFIX = ".tmp"


# This process's temporaries being written: what a worker deletes when SIGTERM stops it.
_LIVE_TEMPORARIES: set[Path] = set()


def temp_path(path: Path, suffix: str = "") -> Path:
    """Where ``path`` is written before its rename: hidden, named after this host and process (``suffix``
    for writers that insist on one, such as Keras's ``.keras``)."""
    return path.with_name(f".{path.name}.{_HOST}.{os.getpid()}{_TMP_SUFFIX}{suffix}")


def _output_error(path: Path, exc: OSError) -> NeuroCareError:
    if exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
        return NeuroCareError(f"cannot write {path}: {exc.strerror}", EXIT_IO)
    return OutputError(f"cannot write {path}: {exc.strerror or exc}")


@contextlib.contextmanager
def atomic_open(path: str | Path) -> Iterator[BinaryIO]:
    """Open ``path`` for binary writing; it appears, complete, only if the block succeeds."""
    path = Path(path)
    tmp = temp_path(path)
    _LIVE_TEMPORARIES.add(tmp)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise _output_error(path, exc) from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        _LIVE_TEMPORARIES.discard(tmp)


def sha256_file(path: str | Path, chunk: int = 1 << 22) -> str:
    """SHA-256 of a file as hex: what ``sha256sum`` prints, so a copied model can be checked anywhere."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def atomic_write(path: str | Path, data: bytes | str) -> None:
    with atomic_open(path) as fh:
        fh.write(data.encode("utf-8") if isinstance(data, str) else data)


@contextlib.contextmanager
def locked(lock_path: str | Path) -> Iterator[None]:
    """An exclusive advisory lock (``flock``) held for the block: serialises jobs sharing an OUT."""
    lock_path = Path(lock_path)
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise _output_error(lock_path, exc) from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete temporary files left in ``folder`` by dead processes of this host."""
    removed = []
    if not folder.is_dir():
        return removed
    for tmp in [*folder.glob(f".*{_TMP_SUFFIX}"), *folder.glob(f".*{_TMP_SUFFIX}.keras")]:
        parts = tmp.name.removesuffix(".keras").rsplit(".", 3)  # .name.ext . host . pid . tmp
        if len(parts) != 4 or parts[1] != _HOST or not parts[2].isdigit():
            continue
        if not _pid_alive(int(parts[2])):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def remove_stale_temporaries_under(root: Path) -> list[Path]:
    """:func:`remove_stale_temporaries` in every folder under ``root``."""
    folders = {p.parent for p in root.rglob(f".*{_TMP_SUFFIX}*")} if root.is_dir() else set()
    return [p for folder in sorted(folders) for p in remove_stale_temporaries(folder)]


def exit_on_sigterm() -> None:
    """In a worker process: on SIGTERM, delete the temporaries being written and exit at once (143)."""
    signal.signal(signal.SIGTERM, _remove_temporaries_and_exit)


def _remove_temporaries_and_exit(signum, frame) -> None:
    for tmp in list(_LIVE_TEMPORARIES):
        with contextlib.suppress(OSError):
            tmp.unlink()
    os._exit(128 + signum)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def crc32c_file(path: str | Path, chunk: int = 1 << 22) -> str:
    """CRC-32C of a file as 8 hex digits: a change detector (hardware-accelerated, several GB/s)."""
    import google_crc32c

    crc = 0
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            crc = google_crc32c.extend(crc, block)
    return f"{crc:08x}"


def is_within(path: Path, folder: Path) -> bool:
    """Whether ``path`` is ``folder`` or inside it, after resolving symbolic links."""
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True
