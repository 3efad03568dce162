"""``OUT/logs/CITATION.md`` (and ``.html``, ``.bib``): a methods text with the values of the run that wrote it.

The text is the Jinja2 template ``boilerplate/citation.md.j2`` and its references are
``boilerplate/references.bib`` (one field per line, as this module reads them). Preprocessing values
come from the sidecars of the outputs (what was actually applied to each recording), model, loss,
augmentation and cross-validation values from the run's configuration, versions from the installed
packages. A participant run describes the preprocessing; a group run adds the model and its evaluation.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import platform
import re
from pathlib import Path

import jinja2
from markupsafe import Markup

from .. import __version__
from ..config import recorded_settings
from ..errors import EXIT_INTERNAL, NeuroCareError
from ..io.fsutils import atomic_write
from .readers import read_json, read_tsv
from .render import environment

TEMPLATE = "citation.md.j2"
BIBLIOGRAPHY = "references.bib"
PACKAGES = {"numpy": "numpy", "scipy": "scipy", "mne": "mne", "mne_bids": "mne-bids", "tensorflow": "tensorflow",
            "keras": "keras", "sklearn": "scikit-learn"}


def boilerplate_dir() -> Path:
    """The templates: inside the installed package (wheels ship a copy), else the repository's ``boilerplate/``."""
    here = Path(__file__).resolve()
    for folder in (here.parents[1] / "boilerplate", here.parents[2] / "boilerplate"):
        if (folder / TEMPLATE).is_file() and (folder / BIBLIOGRAPHY).is_file():
            return folder
    raise NeuroCareError("the citation templates (boilerplate/citation.md.j2, references.bib) are missing from "
                         "this installation", EXIT_INTERNAL)


# ---------------------------------------------------------------------- bibliography
def parse_bib(text: str) -> dict[str, dict]:
    """``{key: {"type", "fields", "raw"}}`` of a BibTeX file written one field per line."""
    entries = {}
    for match in re.finditer(r"^@(\w+)\{([^,\s]+),\s*\n(.*?)^\}", text, flags=re.M | re.S):
        kind, key, body = match.groups()
        fields = {}
        for line in body.splitlines():
            field = re.match(r"\s*(\w+)\s*=\s*\{(.*)\},?\s*$", line)
            if field:
                fields[field.group(1).lower()] = field.group(2)
        entries[key] = {"type": kind.lower(), "fields": fields, "raw": match.group(0)}
    return entries


def _plain(text: str) -> str:
    text = re.sub(r"\\url\{([^}]*)\}", r"\1", text)
    return text.replace("\\&", "&").replace("{", "").replace("}", "").replace("--", "–")


def _authors(fields: dict) -> list[str]:
    raw = fields.get("author", "")
    if raw.startswith("{") and raw.endswith("}"):  # a corporate author
        return [_plain(raw)]
    return [a.strip() for a in raw.split(" and ") if a.strip()]


def _surname(author: str) -> str:
    return _plain(author.split(",")[0]) if "," in author else _plain(author)


def short_citation(entry: dict) -> str:
    """``Gramfort et al., 2013``."""
    authors = _authors(entry["fields"])
    year = entry["fields"].get("year", "n.d.")
    if len(authors) == 1:
        names = _surname(authors[0])
    elif len(authors) == 2 and authors[1] != "others":
        names = f"{_surname(authors[0])} and {_surname(authors[1])}"
    else:
        names = f"{_surname(authors[0])} et al."
    return f"{names}, {year}"


def full_reference(entry: dict) -> str:
    """One reference in Markdown: authors (year). Title. *Venue* volume(number):pages. doi or URL."""
    f = entry["fields"]
    people = []
    for author in _authors(f):
        if author == "others":
            continue
        if "," in author:
            last, first = (part.strip() for part in author.split(",", 1))
            initials = "".join(p[0] for p in re.split(r"[\s.-]+", _plain(first)) if p)
            people.append(f"{_plain(last)} {initials}")
        else:
            people.append(_plain(author))
    names = ", ".join(people[:6]) + (", et al." if len(people) > 6 or "others" in _authors(f) else "")
    text = f"{names} ({f.get('year', 'n.d.')}). {_plain(f.get('title', ''))}."
    venue = f.get("journal") or f.get("booktitle")
    if venue:
        text += f" *{_plain(venue)}*"
        if f.get("volume"):
            text += f" {f['volume']}" + (f"({f['number']})" if f.get("number") else "")
        if f.get("pages"):
            text += f":{_plain(f['pages'])}" if f.get("volume") else f", pp. {_plain(f['pages'])}"
        text += "."
    if f.get("note"):
        text += f" {_plain(f['note'])}."
    if f.get("doi"):
        text += f" https://doi.org/{f['doi']}"
    elif f.get("howpublished"):
        text += f" {_plain(f['howpublished'])}"
    return text


# ---------------------------------------------------------------------- facts of the run
def versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "neurocare": __version__}
    for name, dist in PACKAGES.items():
        try:
            out[name] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "(not installed)"
    return out


def _g(value) -> str:
    return f"{value:g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)


def sidecar_metas(out_dir: Path, subjects: list[str] | None = None) -> list[dict]:
    metas = []
    for sidecar in sorted(out_dir.glob("sub-*/**/*_desc-preproc_windows.json")):
        subject = sidecar.relative_to(out_dir).parts[0][4:]
        if subjects is not None and subject not in subjects:
            continue
        meta = read_json(sidecar)
        if meta is not None and "Preprocessing" in meta:
            meta["_subject"] = subject
            metas.append(meta)
    return metas


def preprocessing_facts(metas: list[dict], cfg) -> dict:
    """Preprocessing as recorded in the sidecars (the configuration where there is none)."""
    p = cfg.preprocessing
    if metas:
        first, pre = metas[0], [m["Preprocessing"] for m in metas]
        channels = first["Channels"]
        facts = {
            "montage": first.get("Montage", cfg.montage.montage), "channels": channels,
            "sfreq": _g(first["SamplingFrequency"]),
            "input_rates": [_g(r) for r in sorted(set(x.get("InputSamplingFrequency") for x in pre) - {None})],
            "resampled": any(x.get("ResamplingFactor", "1/1") != "1/1" for x in pre),
            "l_freq": pre[0].get("l_freq"), "h_freq": pre[0].get("h_freq"), "order": pre[0].get("filter_order"),
            "notches": [_g(f) for f in sorted({f for x in pre for f in x.get("NotchFrequencies", [])})],
            "notch_quality": _g(pre[0].get("notch_quality")), "notch_harmonics": pre[0].get("notch_harmonics"),
            "zscore": pre[0].get("zscore", True), "causal": recorded_settings("preprocessing", pre[0])["causal"],
            "window": float(first["WindowDuration"]), "stride": float(first["WindowStride"]),
            "label_threshold": _g(100 * float(first["SeizureLabelThreshold"])),
            "dtype": _dtype_name(first["TFRecord"]["Schema"]["eeg"]["dtype"]),
            "n_recordings": len(metas), "n_subjects": len({m["_subject"] for m in metas}),
            "configurations": len({m.get("ConfigHash") for m in metas}),
        }
    else:
        window = cfg.windows.duration
        facts = {
            "montage": cfg.montage.montage, "channels": [f"{e}-Avg" for e in cfg.montage.electrodes],
            "sfreq": _g(p.sfreq), "input_rates": [], "resampled": True, "l_freq": p.l_freq, "h_freq": p.h_freq,
            "order": p.filter_order, "notches": [_g(p.line_freq)] if p.notch else [],
            "notch_quality": _g(p.notch_quality), "notch_harmonics": p.notch_harmonics, "zscore": p.zscore,
            "causal": p.causal,
            "window": window, "stride": window * (1 - cfg.windows.overlap),
            "label_threshold": _g(100 * cfg.windows.seizure_overlap), "dtype": cfg.output.dtype,
            "n_recordings": 0, "n_subjects": 0, "configurations": 1,
        }
    facts["electrodes"] = [c.split("-")[0] for c in facts["channels"]]
    facts["n_channels"] = len(facts["channels"])
    facts["overlap"] = _g(round(100 * (1 - facts["stride"] / facts["window"]), 1))
    facts["window"], facts["stride"] = _g(facts["window"]), _g(round(facts["stride"], 6))
    facts["l_freq"] = _g(facts["l_freq"]) if facts["l_freq"] else None
    facts["h_freq"] = _g(facts["h_freq"]) if facts["h_freq"] else None
    facts["block_duration"] = _g(p.block_duration)
    facts["seizure_prefixes"] = [f"`{s}`" for s in cfg.input.seizure_prefixes]
    return facts


def _dtype_name(dtype: str) -> str:
    import numpy as np

    return np.dtype(dtype).name


def augmentation_facts(aug) -> list[str]:
    items = []
    if aug.seizure_oversampling:
        items.append(f"extra windows inside seizures every {_g(aug.oversampling_stride)} s")
    if aug.time_shift:
        items.append("random time shifts of up to half a stride")
    if aug.balanced_sampling:
        items.append(f"class-balanced batches ({_g(100 * aug.seizure_fraction)} % seizure windows)")
    if aug.amplitude_scale:
        items.append(f"a random gain of ±{_g(100 * aug.amplitude_scale)} % per channel")
    if aug.noise_std:
        items.append(f"Gaussian noise (standard deviation {_g(aug.noise_std)} in z-score units)")
    if aug.channel_dropout:
        items.append(f"channel dropout (probability {_g(aug.channel_dropout)})")
    if aug.time_mask:
        items.append(f"time masking of up to {_g(100 * aug.time_mask)} % of the window")
    if aug.mirror:
        items.append(f"left-right mirroring of the montage (probability {_g(aug.mirror)}; channel symmetry as in "
                     "braindecode)")
    if aug.mixup_alpha:
        items.append(f"mixup between seizure windows (Beta({_g(aug.mixup_alpha)}, {_g(aug.mixup_alpha)}))")
    return items


def group_facts(cfg, out_dir: Path, sfreq: float) -> dict:
    from ..evaluation.metrics import MERGE_BELOW, SPLIT_ABOVE, TOLERANCE_END, TOLERANCE_START

    folds = read_tsv(out_dir / "group" / "folds.tsv")
    card = read_json(out_dir / "group" / "model" / "model_card.json") or {}
    first_kernel = max(cfg.model.conv_kernel_size, round(0.5 * sfreq))
    if cfg.model.preset == "neurocare":
        from ..training.models import first_kernel_size

        first_kernel = first_kernel_size(sfreq, cfg.model)
    same_model = card.get("Configuration", {}).get("model") == dataclasses.asdict(cfg.model)
    parameters = card.get("Architecture", {}).get("parameters") if same_model else None
    return {
        "preset": cfg.model.preset, "n_folds": len({r["fold"] for r in folds}), "n_subjects": len(folds),
        "parameters": f"{parameters:,}" if isinstance(parameters, int) else None, "first_kernel": first_kernel,
        "augmentation": augmentation_facts(cfg.augmentation),
        "tolerance_start": TOLERANCE_START, "tolerance_end": TOLERANCE_END, "merge_below": MERGE_BELOW,
        "split_above": SPLIT_ABOVE,
    }


# ---------------------------------------------------------------------- rendering
def render_citation(out_dir: Path, cfg, level: str, subjects: list[str] | None = None) -> dict[str, str]:
    """``{"markdown", "bib", "html"}`` of the methods text for a ``participant`` or ``group`` run."""
    folder = boilerplate_dir()
    bibliography = parse_bib((folder / BIBLIOGRAPHY).read_text(encoding="utf-8"))
    cited: list[str] = []

    def cite(*keys: str) -> str:
        for key in keys:
            if key not in bibliography:
                raise KeyError(f"{key} is not in {BIBLIOGRAPHY}")
            if key not in cited:
                cited.append(key)
        return "(" + "; ".join(short_citation(bibliography[k]) for k in keys) + ")"

    def references() -> str:
        return "\n".join(f"{i}. {full_reference(bibliography[k])}" for i, k in enumerate(cited, start=1))

    metas = sidecar_metas(out_dir, subjects)
    pre = preprocessing_facts(metas, cfg)
    context = {"level": level, "v": versions(), "pre": pre, "cfg": cfg, "group": None}
    if level == "group":
        context["group"] = group_facts(cfg, out_dir, float(pre["sfreq"]))
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(folder)), undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.globals.update(cite=cite, references=references)
    env.filters["g"] = _g
    markdown_text = _tidy(env.get_template(TEMPLATE).render(**context))
    bib = "\n\n".join(bibliography[k]["raw"] for k in cited) + "\n"
    return {"markdown": markdown_text, "bib": bib, "html": markdown_to_html(markdown_text)}


def _tidy(text: str) -> str:
    """Template output with single blank lines between paragraphs and no trailing spaces."""
    lines = [line.rstrip() for line in text.splitlines()]
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    return text + "\n"


def markdown_to_html(text: str) -> str:
    import markdown

    return markdown.markdown(text, output_format="html")


def methods_fragment(html: str) -> Markup:
    """The methods text for a report's Methods section: without its title, headings one level down."""
    html = re.sub(r"<h1>.*?</h1>\s*", "", html, count=1, flags=re.S)
    html = re.sub(r"<(/?)h2>", r"<\1h3>", html)
    return Markup(html)


def saved_methods(out_dir: Path) -> Markup | None:
    """The methods text of the last run (``OUT/logs/CITATION.md``), for a report rebuilt outside a run."""
    try:
        return methods_fragment(markdown_to_html((out_dir / "logs" / "CITATION.md").read_text(encoding="utf-8")))
    except OSError:
        return None


def write_citation(out_dir: Path, cfg, level: str, subjects: list[str] | None = None) -> dict[str, str]:
    """Write ``OUT/logs/CITATION.md``, ``.html`` and ``.bib`` atomically; return the rendered texts."""
    rendered = render_citation(out_dir, cfg, level, subjects)
    logs = out_dir / "logs"
    atomic_write(logs / "CITATION.md", rendered["markdown"])
    atomic_write(logs / "CITATION.bib", rendered["bib"])
    page = environment().get_template("citation.html.j2").render(title="Methods and citations",
                                                                 body=Markup(rendered["html"]))
    atomic_write(logs / "CITATION.html", page)
    return rendered
