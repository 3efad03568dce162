"""Run the BIDS validator (``bids-validator-deno``) offline and summarise what it found.

Why this module exists
----------------------
NeuroCare-BIDS validates its input (and can validate its own derivative output) with the official
BIDS validator, shipped on PyPI as ``bids-validator-deno`` (a Deno runtime plus a self-contained
JavaScript bundle, so it installs with pip and needs no Node.js or Docker). Our users mostly run on
HPC compute nodes that have **no network access**, which matters in three ways:

* The validator itself needs no download: the BIDS schema and HED schemas 8.0.0-8.4.0 (plus the
  ``lang`` and ``score`` libraries) are bundled. But a dataset whose ``dataset_description.json``
  names a HED schema that is *not* bundled (a newer standard schema, another library, or any
  version with older validator releases) and that uses HED tags makes the validator fetch that
  schema from GitHub. Offline this fails with ``HED_ERROR`` / ``SCHEMA_LOAD_FAILED`` ("Could not
  load HED schema ... from remote repository - "fetch failed""), an *error*, although nothing is
  wrong with the data. Seizure detection never reads HED tags, so such errors are downgraded to
  warnings (listed in :attr:`ValidationReport.downgraded` with the reason). Only that exact issue
  is downgraded, never a local/bundled schema failure, an invalid HED version specification, or
  a server's "404 Not Found" (a HEDVersion that does not exist).
* Deno keeps a compile cache (about 6 MB) in ``$DENO_DIR`` or ``~/.cache/deno``. Many array jobs
  sharing one SQLite cache on an NFS home directory is asking for trouble, and home may be
  read-only inside containers, so unless the user set ``DENO_DIR`` each run gets a private
  temporary cache that is removed afterwards (costs about 0.5 s per run).
* The validator never writes into the dataset; :func:`validate_dataset` passes no output file and
  runs it with stdin closed, so it cannot prompt or hang waiting for input.

The validator's exit status is 0 (no errors) or 16 (errors found); anything else, a timeout, or
output that is not its JSON report means the validator itself failed, reported as
:class:`ValidatorUnavailable` with a one-line message.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from ..errors import NeuroCareError

__all__ = [
    "VALIDATOR_NAME",
    "ValidationIssue",
    "ValidationReport",
    "ValidatorUnavailable",
    "find_validator",
    "validate_dataset",
]

VALIDATOR_NAME = "bids-validator-deno"
PACKAGE_NAME = "bids-validator-deno"

# Exit status of bids-validator-deno: 0 = valid, 16 = errors found; anything else is a crash or a
# usage error (2 = unknown option).
_OK_RETURNCODES = (0, 16)

# --- Downgrading offline HED schema downloads ---------------------------------------------------
# HED issues reach the report as code HED_ERROR with the hed-validator's own code as subCode
# (SCHEMA_LOAD_FAILED; HED_SCHEMA_LOAD_FAILED in hed-validator releases before the 2023 rename).
# Older bids-validator-deno releases reported exceptions thrown while loading schemas as
# HED_INTERNAL_ERROR or HED_ERROR/INTERNAL_ERROR, so those are matched too, but only with the
# hed-validator's "remoteSchemaLoadFailed" message template below.
_HED_CODES = frozenset({"HED_ERROR", "HED_INTERNAL_ERROR"})
_HED_SUBCODES = frozenset({"SCHEMA_LOAD_FAILED", "HED_SCHEMA_LOAD_FAILED", "INTERNAL_ERROR", None})
# hed-validator: remoteSchemaLoadFailed -> 'Could not load HED schema "${spec}" from remote
# repository - "${error}".' (bundled/local failures say "from bundled copy"/"from path").
_REMOTE_HED_SCHEMA = re.compile(r"Could not load HED schema .* from remote repository", re.DOTALL)
# ... unless the server answered that the schema does not exist: then HEDVersion is wrong.
_HTTP_NOT_FOUND = re.compile(r"status code 404\b")
HED_DOWNLOAD_NOTE = (
    "the HED schema named by HEDVersion is not bundled with the validator and could not be "
    "downloaded (no network?); HED tags were not validated, which seizure detection does not need"
)

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class ValidatorUnavailable(NeuroCareError):
    """The validator is missing, crashed, timed out, or printed something that is not its report."""


@dataclass
class ValidationIssue:
    """One kind of issue: every occurrence of ``code`` (and ``sub_code``) in the dataset.

    ``location`` is the first dataset-relative path where it occurs (``None`` when the issue is
    about the dataset as a whole), ``count`` the number of occurrences, ``locations`` all the
    distinct paths, ``sub_codes`` the distinct sub-codes (for example the missing sidecar keys of
    ``SIDECAR_KEY_REQUIRED``). ``note`` says why an issue was downgraded from error to warning.
    """

    code: str
    severity: str
    message: str
    location: str | None
    count: int
    sub_codes: tuple[str, ...] = ()
    locations: tuple[str, ...] = ()
    note: str | None = None

    @property
    def label(self) -> str:
        if not self.sub_codes:
            return self.code
        subs = ",".join(self.sub_codes[:2])
        if len(self.sub_codes) > 2:
            subs += f",+{len(self.sub_codes) - 2}"
        return f"{self.code} {subs}"

    def describe(self) -> str:
        """``CODE [subCode] (N files, e.g. path)`` for one-line summaries."""
        n_files = len(self.locations)
        if n_files == 0:
            where = "dataset" if self.count == 1 else f"{self.count}x"
        elif n_files == 1:
            where = self.locations[0] if self.count == 1 else f"{self.count}x in {self.locations[0]}"
        else:
            where = f"{n_files} files, e.g. {self.locations[0]}"
        return f"{self.label} ({where})"


@dataclass
class ValidationReport:
    """What the validator found. ``errors`` and ``warnings`` are as it reported them, except the
    errors in ``downgraded`` (offline HED schema downloads), which are now warnings with a note."""

    errors: list[ValidationIssue]
    warnings: list[ValidationIssue]
    downgraded: list[ValidationIssue]
    validator_version: str
    elapsed_s: float = 0.0
    dataset_summary: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def n_errors(self) -> int:
        return sum(i.count for i in self.errors)

    @property
    def n_warnings(self) -> int:
        return sum(i.count for i in self.warnings) + sum(i.count for i in self.downgraded)

    def summary(self, max_items: int = 3) -> str:
        """One short line, e.g. ``3 errors: EMPTY_FILE (2 files, e.g. sub-01/...), ...; 5 warnings``."""
        parts = []
        if self.errors:
            parts.append(_count_line(self.n_errors, "error", self.errors, max_items))
        else:
            parts.append("no errors")
        n_warn = self.n_warnings
        if n_warn:
            text = f"{n_warn} warning{'s' if n_warn != 1 else ''}"
            if self.downgraded:
                codes = ", ".join(dict.fromkeys(i.label for i in self.downgraded))
                text += f" (incl. {sum(i.count for i in self.downgraded)} downgraded offline: {codes})"
            parts.append(text)
        return "; ".join(parts)


def _count_line(n: int, noun: str, issues: list[ValidationIssue], max_items: int) -> str:
    shown = [i.describe() for i in issues[: max(max_items, 0)]]
    rest = len(issues) - len(shown)
    if rest > 0:
        shown.append(f"{rest} more kind{'s' if rest != 1 else ''}")
    head = f"{n} {noun}{'s' if n != 1 else ''}"
    return f"{head}: {', '.join(shown)}" if shown else head


# --- Finding and running the validator ----------------------------------------------------------


def find_validator() -> str | None:
    """Path of ``bids-validator-deno``: the one installed beside this Python first, then PATH."""
    names = [VALIDATOR_NAME]
    if sys.platform.startswith("win"):
        names = [VALIDATOR_NAME + ".exe", VALIDATOR_NAME]
    # Not resolved: a venv's python is often a symlink to the system interpreter.
    bindir = Path(sys.executable).parent
    for name in names:
        candidate = bindir / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which(VALIDATOR_NAME)


def _child_env(deno_dir: str | None) -> dict[str, str]:
    env = dict(os.environ)
    env["NO_COLOR"] = "1"  # plain stderr for our messages
    env["DENO_NO_UPDATE_CHECK"] = "1"  # never look for a newer Deno online
    env["DENO_NO_PROMPT"] = "1"
    if deno_dir is not None:
        env["DENO_DIR"] = deno_dir
    return env


def _first_line(text: str) -> str:
    for line in _ANSI.sub("", text).splitlines():
        line = line.strip()
        if line and not line.startswith("at "):
            return line[:300]
    return ""


@lru_cache(maxsize=8)
def _validator_version(exe: str) -> str:
    """The validator's version. ``bids-validator-deno --version`` asks ``git describe`` in the
    bundle's folder first, so in a venv inside a git checkout it prints that checkout's commit;
    hence the package metadata for our own install, and GIT_DIR pointed nowhere otherwise."""
    if Path(exe).parent == Path(sys.executable).parent:
        try:
            from importlib.metadata import version

            return version(PACKAGE_NAME)
        except Exception:  # pragma: no cover - metadata missing in odd installs
            pass
    with tempfile.TemporaryDirectory(prefix="neurocare-bids-ver-") as tmp:
        env = _child_env(tmp)
        env["GIT_DIR"] = os.path.join(tmp, "no-git")
        try:
            out = subprocess.run(
                [exe, "--version"], capture_output=True, text=True, timeout=120,
                env=env, stdin=subprocess.DEVNULL,
            ).stdout
        except (OSError, subprocess.SubprocessError):
            return "unknown"
    match = re.search(r"\d+\.\d+\.\d+\S*", _ANSI.sub("", out))
    return match.group(0) if match else "unknown"


def _run(cmd: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, env=env,
            stdin=subprocess.DEVNULL, errors="replace",
        )
    except subprocess.TimeoutExpired as exc:
        raise ValidatorUnavailable(f"{VALIDATOR_NAME} did not finish within {timeout:g} s") from exc
    except OSError as exc:
        raise ValidatorUnavailable(f"cannot run {cmd[0]}: {exc.strerror or exc}") from exc


def _parse_output(stdout: str) -> dict:
    """The JSON report; the validator may print stray lines (e.g. about .bidsignore) before it."""
    text = stdout.strip()
    try:
        data = json.loads(text)
    except ValueError:
        data = None
        for line in reversed(text.splitlines()):
            if line.lstrip().startswith("{"):
                try:
                    data = json.loads(line)
                    break
                except ValueError:
                    continue
    if not isinstance(data, dict) or not isinstance(data.get("issues"), dict):
        raise ValueError("no JSON report in the validator's output")
    issues = data["issues"].get("issues")
    if not isinstance(issues, list):
        raise ValueError("the validator's JSON report has no issue list")
    return data


def _is_offline_hed_download(raw: dict) -> bool:
    if raw.get("code") not in _HED_CODES or raw.get("subCode") not in _HED_SUBCODES:
        return False
    message = str(raw.get("issueMessage") or "")
    return bool(_REMOTE_HED_SCHEMA.search(message)) and not _HTTP_NOT_FOUND.search(message)


def _locations(raw: dict) -> list[str]:
    locs = []
    if raw.get("location"):
        locs.append(str(raw["location"]))
    affects = raw.get("affects")
    if isinstance(affects, list):
        locs.extend(str(a) for a in affects if a)
    return [loc.lstrip("/") or "/" for loc in locs]


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _group(raws: list[dict], code_messages: dict, severity: str, note: str | None = None) -> list[ValidationIssue]:
    groups: OrderedDict[str, list[dict]] = OrderedDict()
    for raw in raws:
        groups.setdefault(str(raw.get("code", "UNKNOWN")), []).append(raw)
    out = []
    for code, items in groups.items():
        locs = list(dict.fromkeys(loc for raw in items for loc in _locations(raw)))
        message = _one_line(code_messages.get(code) or "")
        detail = _one_line(items[0].get("issueMessage") or "")
        if detail and detail not in message:
            message = f"{message} ({detail})" if message else detail
        out.append(ValidationIssue(
            code=code, severity=severity, message=message[:500],
            location=locs[0] if locs else None, count=len(items),
            sub_codes=tuple(dict.fromkeys(str(r["subCode"]) for r in items if r.get("subCode"))),
            locations=tuple(locs), note=note,
        ))
    return out


def validate_dataset(root: str | os.PathLike, *, timeout: float = 900) -> ValidationReport:
    """Validate the BIDS dataset at ``root`` (read-only) and return what the validator found.

    Raises :class:`ValidatorUnavailable` when the validator is not installed, crashes, times out
    or prints no parsable report. Offline HED schema download failures are downgraded to warnings.
    """
    exe = find_validator()
    if exe is None:
        raise ValidatorUnavailable(
            f"{VALIDATOR_NAME} not found beside {sys.executable} or on PATH "
            f"(install it with: pip install {PACKAGE_NAME})"
        )
    root = Path(root)
    if not root.is_dir():
        raise ValidatorUnavailable(f"cannot validate {root}: not a directory")

    user_deno_dir = os.environ.get("DENO_DIR")
    tmp_cache = None
    if not user_deno_dir:
        try:
            tmp_cache = tempfile.mkdtemp(prefix="neurocare-bids-deno-")
        except OSError:
            tmp_cache = None  # Deno also runs without a writable cache
    env = _child_env(tmp_cache)
    t0 = time.monotonic()
    try:
        proc = _run([exe, "--format", "json", str(root)], env, timeout)
        if proc.returncode == 2 and "Unknown option" in proc.stderr:
            # Releases before --format existed only know --json.
            proc = _run([exe, "--json", str(root)], env, max(timeout - (time.monotonic() - t0), 1))
    finally:
        if tmp_cache is not None:
            shutil.rmtree(tmp_cache, ignore_errors=True)
    elapsed = time.monotonic() - t0

    if proc.returncode not in _OK_RETURNCODES:
        why = _first_line(proc.stderr) or _first_line(proc.stdout) or "no message"
        raise ValidatorUnavailable(f"{VALIDATOR_NAME} failed (exit status {proc.returncode}): {why}")
    try:
        data = _parse_output(proc.stdout)
    except ValueError as exc:
        why = _first_line(proc.stderr) or _first_line(proc.stdout) or "empty output"
        raise ValidatorUnavailable(f"could not read {VALIDATOR_NAME}'s report ({exc}): {why}") from exc

    code_messages = data["issues"].get("codeMessages") or {}
    errors, warnings, downgraded = [], [], []
    for raw in data["issues"]["issues"]:
        if not isinstance(raw, dict):
            continue
        severity = raw.get("severity", "error")
        if severity == "error":
            (downgraded if _is_offline_hed_download(raw) else errors).append(raw)
        elif severity == "warning":
            warnings.append(raw)
        # severity "ignore": dropped, as the validator itself does
    summary = data.get("summary") if isinstance(data.get("summary"), dict) else {}
    return ValidationReport(
        errors=_group(errors, code_messages, "error"),
        warnings=_group(warnings, code_messages, "warning"),
        downgraded=_group(downgraded, code_messages, "warning", note=HED_DOWNLOAD_NOTE),
        validator_version=_validator_version(exe),
        elapsed_s=elapsed,
        dataset_summary=summary,
    )
