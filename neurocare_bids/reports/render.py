"""Jinja2 templates for the reports, the number formats they share, and the atomic write."""

from __future__ import annotations

import math
from pathlib import Path

import jinja2

from .. import CODE_URL, __version__
from ..detection.postprocess import threshold_text
from ..io.fsutils import atomic_write

TEMPLATES = Path(__file__).parent / "templates"
DECIMALS = 3  # every metric is shown rounded to this many decimals (the tests compare at this precision)


def number(value, decimals: int = DECIMALS) -> str:
    """A metric as shown in the reports: ``decimals`` decimals, ``n/a`` when undefined."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    return f"{value:.{decimals}f}"


def plus_minus(value, std) -> str:
    return number(value) if std is None or value is None else f"{number(value)} ± {number(std)}"


def duration(seconds) -> str:
    """``1 h 02 min 03 s`` style, for recording lengths."""
    if seconds is None:
        return "n/a"
    seconds = int(round(float(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min {secs:02d} s"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"


def percent(value, decimals: int = 1) -> str:
    return "n/a" if value is None else f"{100 * value:.{decimals}f} %"


def general(value) -> str:
    """A parameter value (``0.5``, ``[32, 64]``, ``true``) as written in the configuration."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(general(v) for v in value) if value else "none"
    return str(value)


def environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                             keep_trailing_newline=True)
    env.filters.update(number=number, plus_minus=plus_minus, duration=duration, percent=percent, general=general,
                       threshold=threshold_text)
    env.globals.update(version=__version__, code_url=CODE_URL)
    return env


def write_html(path: Path, template: str, context: dict) -> Path:
    """Render ``template`` with ``context`` and write it atomically to ``path``."""
    html = environment().get_template(template).render(**context)
    atomic_write(path, html)
    return path
