"""Reports: the per-subject and group HTML pages a person reads, with figures, and the methods text to cite.

A stage of its own that reads only what the participant and group levels left on disk, so a report can be
rebuilt at any time from an output folder. Each level calls one function here at its end; a report that
cannot be built is returned as a one-line message, never raised, so it cannot cost the run its outputs.

Stage 6 of 7. Imports only `evaluation`, `detection`, `training`, `preprocessing`, `io` (what they wrote, and how to
read it) and the shared modules (`config`, `console`, `errors`); only the command line imports it.
"""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger("neurocare")


def participant_reports(cfg, out_dir: Path, bids_dir: Path, subjects: list[str], results=()) -> list[str]:
    """``OUT/logs/CITATION.*`` and ``OUT/sub-<label>.html`` for every subject of the run (the pages unless
    ``execution.reports`` is off); returns the failures."""
    from .citation import methods_fragment, write_citation

    errors, methods = [], None
    try:
        methods = methods_fragment(write_citation(out_dir, cfg, "participant", subjects)["html"])
    except Exception as exc:  # noqa: BLE001 - reported, the outputs stay
        errors.append(_failed("logs/CITATION.md", exc))
    for subject in subjects if cfg.execution.reports else ():
        try:
            from .subject import build_subject_report

            path = build_subject_report(out_dir, subject, bids_dir=bids_dir, montage_cfg=cfg.montage,
                                        results=results, methods=methods)
            log.info("report: %s", path)
        except Exception as exc:  # noqa: BLE001
            errors.append(_failed(f"sub-{subject}.html", exc))
    return errors


def group_reports(cfg, out_dir: Path, aggregated: bool) -> list[str]:
    """``OUT/logs/CITATION.*``, and ``OUT/group.html`` once the folds are aggregated (unless
    ``execution.reports`` is off); returns the failures."""
    from .citation import methods_fragment, write_citation

    errors, methods = [], None
    try:
        methods = methods_fragment(write_citation(out_dir, cfg, "group",
                                                  list(cfg.execution.participant_label) or None)["html"])
    except Exception as exc:  # noqa: BLE001
        errors.append(_failed("logs/CITATION.md", exc))
    if aggregated and cfg.execution.reports:
        try:
            from .group import build_group_report

            log.info("report: %s", build_group_report(out_dir, methods=methods))
        except Exception as exc:  # noqa: BLE001
            errors.append(_failed("group.html", exc))
    return errors


def _failed(name: str, exc: Exception) -> str:
    log.debug("%s not written", name, exc_info=True)
    return f"{name} not written ({type(exc).__name__}: {exc})"


def __getattr__(name: str):
    """``build_subject_report``, ``build_group_report`` and ``write_citation`` without importing matplotlib early."""
    if name == "build_subject_report":
        from .subject import build_subject_report
        return build_subject_report
    if name == "build_group_report":
        from .group import build_group_report
        return build_group_report
    if name == "write_citation":
        from .citation import write_citation
        return write_citation
    raise AttributeError(name)
