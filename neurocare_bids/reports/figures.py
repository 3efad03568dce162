"""The reports' figures: matplotlib figures (no pyplot, no display) rendered to inline SVG.

Every figure is SVG text placed in the page itself, so a report is one file that works offline. Text
stays text (``svg.fonttype = none``: small files, searchable), dense traces are reduced to at most
``MAX_POINTS`` points per line with a per-bin minimum and maximum (a seizure peak is never dropped), and element ids
are prefixed (and hashes salted) with the figure's name, so that the many figures of a page never share an
id and the same inputs give the same bytes.
"""

from __future__ import annotations

import functools
import io
import re

import matplotlib
import numpy as np
from markupsafe import Markup
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import MaxNLocator

from ..detection.postprocess import threshold_text

MAX_POINTS = 1500
SEIZURE = "#d62728"
DETECTED = "#1f77b4"
WINDOW_LABEL = "#ff7f0e"
STATUS_COLOURS = {"ok": "#4c72b0", "flat": "#7f7f7f", "clipped": "#dd8452", "noisy": "#c44e52"}
_STYLE = {"svg.fonttype": "none", "font.size": 8, "axes.titlesize": 9, "axes.labelsize": 8,
          "legend.fontsize": 7, "xtick.labelsize": 7, "ytick.labelsize": 7, "axes.spines.top": False,
          "axes.spines.right": False, "figure.dpi": 100}


def _styled(func):
    """Run a figure function with the reports' style (fonts, sizes), leaving matplotlib's global state alone."""
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        with matplotlib.rc_context(_STYLE):
            return func(*args, **kwargs)
    return wrapper


def to_svg(fig, name: str, decimals: int | None = None) -> Markup:
    """The figure as an inline ``<svg>`` element (no XML prolog), its ids unique to ``name``; with ``decimals``,
    its path coordinates rounded to that many decimals."""
    with matplotlib.rc_context({"svg.hashsalt": name}):
        buf = io.StringIO()
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    text = buf.getvalue()
    text = text[text.index("<svg"):]
    text = re.sub(r"<metadata>.*?</metadata>", "", text, flags=re.S)
    if decimals is not None:
        text = round_paths(text, decimals)
    # matplotlib numbers its element ids per figure (figure_1, axes_1...): prefix them, and every reference
    # to them, so that the ids of a page's many figures stay unique.
    prefix = re.sub(r"[^A-Za-z0-9_-]", "_", name) + "-"
    text = re.sub(r'\bid="([^"]+)"', lambda m: f'id="{prefix}{m.group(1)}"', text)
    text = re.sub(r"url\(#([^)]+)\)", lambda m: f"url(#{prefix}{m.group(1)})", text)
    text = re.sub(r'href="#([^"]+)"', lambda m: f'href="#{prefix}{m.group(1)}"', text)
    return Markup(f'<figure class="svg" role="img" aria-label="{_escape(name)}">{text}</figure>')


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")


def _figure(width: float, height: float, margins: tuple[float, float, float, float], ncols: int = 1,
            wspace: float = 0.3):
    """A figure with fixed margins in inches (left, right, bottom, top): a layout engine would measure every
    tick label of every figure again, three times slower, for the same result."""
    fig = Figure(figsize=(width, height))  # no pyplot: no global figure registry, nothing to close
    axes = fig.subplots(1, ncols)
    left, right, bottom, top = margins
    fig.subplots_adjust(left=left / width, right=1 - right / width, bottom=bottom / height, top=1 - top / height,
                        wspace=wspace)
    return fig, axes


def _label_room(labels: list[str]) -> float:
    """Inches taken by the longest of some tick labels at the reports' font size."""
    return 0.15 + 0.06 * max((len(label) for label in labels), default=4)


def envelope(x: np.ndarray, y: np.ndarray, max_points: int = MAX_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """At most ``max_points`` points of a trace (unchanged when it has no more): ``max_points // 2`` equal bins,
    each drawn as its minimum and its maximum in the order they occur, so that neither a one-window peak nor a
    one-window dip is lost, whatever the recording's length (a bin is about one pixel of a report's figure)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) <= max_points:
        return x, y
    bins = max(1, max_points // 2)
    starts = np.linspace(0, len(x), bins + 1).astype(int)[:-1]
    lengths = np.diff(np.append(starts, len(x)))
    owner = np.repeat(np.arange(bins), lengths)
    # per bin, the index of its minimum and of its maximum (sorting by (bin, value) once: no Python loop)
    order = np.lexsort((y, owner))
    first = order[starts]  # the smallest value of each bin
    last = order[starts + lengths - 1]  # the largest
    pairs = np.sort(np.stack([first, last], axis=1), axis=1).ravel()  # in time order within the bin
    keep = pairs[np.r_[True, pairs[1:] != pairs[:-1]]]  # one point where min and max are the same window
    return x[keep], y[keep]


def round_paths(svg: str, decimals: int = 1) -> str:
    """Path coordinates of an SVG rounded to ``decimals`` (matplotlib writes up to six, in points: a tenth of a
    point is invisible, and a dense trace's file shrinks by about a third)."""
    def short(match: re.Match) -> str:
        return re.sub(r"-?\d+\.\d+", lambda m: f"{float(m.group(0)):.{decimals}f}".rstrip("0").rstrip("."),
                      match.group(0))
    return re.sub(r'\bd="[^"]*"', short, svg)


def _hours(duration: float) -> tuple[float, str]:
    """Time axis unit for a recording: seconds for short ones, minutes or hours for long ones."""
    if duration > 3 * 3600:
        return 3600.0, "time (h)"
    if duration > 600:
        return 60.0, "time (min)"
    return 1.0, "time (s)"


# ---------------------------------------------------------------------- subject report
@_styled
def channel_quality(channels: list[dict], name: str, noisy_ratio: float) -> Markup:
    """Standard deviation and line length of each recorded channel relative to the median channel, coloured by
    flag, with the ratio above which a channel counts as noisy."""
    fig, ax = _figure(9, 2.4, (0.6, 1.6, _label_room([c["Name"] for c in channels]), 0.1))
    x = np.arange(len(channels))
    colours = [STATUS_COLOURS.get(c["Status"][0], STATUS_COLOURS["ok"]) for c in channels]
    for offset, key, hatch in ((-0.2, "Std", None), (0.2, "LineLength", "////")):
        values = np.array([c.get(key) or 0.0 for c in channels])
        reference = np.median(values[values > 0]) if np.any(values > 0) else 1.0
        ax.bar(x + offset, values / reference, width=0.4, color=colours, hatch=hatch, edgecolor="white", lw=0)
    ax.axhline(noisy_ratio, color=STATUS_COLOURS["noisy"], ls="--", lw=0.8)
    ax.set_xticks(x, [c["Name"] for c in channels], rotation=90)
    ax.set_xlim(-0.7, len(channels) - 0.3)
    ax.set_ylabel("× median channel")
    handles = [Rectangle((0, 0), 1, 1, color=c) for c in STATUS_COLOURS.values()]
    handles += [Rectangle((0, 0), 1, 1, facecolor="#bbbbbb", hatch=h, edgecolor="white") for h in (None, "////")]
    ax.legend(handles, [*STATUS_COLOURS, "standard deviation", "line length"], loc="upper left",
              bbox_to_anchor=(1.0, 1.0), frameon=False)
    return to_svg(fig, name)


@_styled
def power_spectra(before: tuple[np.ndarray, np.ndarray], after: tuple[np.ndarray, np.ndarray],
                  band: tuple[float, float], notches: list[float], name: str) -> Markup:
    """Mean power spectral density over channels, of the raw signal and of the filtered one."""
    fig, ax = _figure(6.5, 2.6, (0.7, 0.15, 0.5, 0.1))
    for (freqs, psd), label, colour in ((before, "raw (input rate, montage applied)", "#7f7f7f"),
                                        (after, "filtered and resampled", DETECTED)):
        ax.plot(freqs, 10 * np.log10(np.maximum(psd, 1e-12)), label=label, color=colour, lw=1)
    low, high = band
    if low > 0:
        ax.axvline(low, color="k", ls=":", lw=0.8)
    if high > 0:
        ax.axvline(high, color="k", ls=":", lw=0.8, label=f"band-pass {low:g}–{high:g} Hz")
    for i, freq in enumerate(notches):
        ax.axvline(freq, color=SEIZURE, ls="--", lw=0.6, label="notch" if i == 0 else None)
    # a linear axis up to 128 Hz: mains harmonics stay visible, and no slow log-scale tick labels
    ax.set_xlim(0, min(float(before[0][-1]), 128.0))
    ax.set_xlabel("frequency (Hz)")
    ax.set_ylabel("power (dB µV²/Hz)")
    ax.legend(frameon=False, loc="lower left")
    return to_svg(fig, name)


@_styled
def timeline(duration: float, seizures: list[list[float]], label_runs: list[tuple[float, float]],
             name: str) -> Markup:
    """One recording on a time axis: reference seizures and the windows labelled seizure."""
    scale, xlabel = _hours(duration)
    fig, ax = _figure(9, 1.1, (1.2, 0.2, 0.45, 0.05))
    ax.broken_barh([(0, duration / scale)], (0, 2), color="#eeeeee")
    ax.broken_barh([(a / scale, (b - a) / scale) for a, b in seizures], (1.05, 0.9), color=SEIZURE)
    ax.broken_barh([(a / scale, (b - a) / scale) for a, b in label_runs], (0.05, 0.9), color=WINDOW_LABEL)
    ax.set_yticks([0.5, 1.5], ["seizure windows", "reference seizures"])
    ax.set_xlim(0, duration / scale)
    ax.set_ylim(0, 2)
    ax.set_xlabel(xlabel)
    return to_svg(fig, name)


@_styled
def eeg_window(eeg: np.ndarray, channels: list[str], sfreq: float, title: str, name: str,
               colour: str = "k") -> Markup:
    """One window, channels stacked (z-scored units)."""
    fig, ax = _figure(4.4, 4.2, (_label_room(channels), 0.1, 0.45, 0.25))
    t = np.arange(eeg.shape[0]) / sfreq
    spacing = 6.0
    for i, label in enumerate(channels):
        ax.plot(t, eeg[:, i] - i * spacing, color=colour, lw=0.5)
    ax.set_yticks([-i * spacing for i in range(len(channels))], channels)
    ax.set_xlabel("time in window (s)")
    ax.set_xlim(0, t[-1] if len(t) else 1)
    ax.set_title(title)
    ax.spines["left"].set_visible(False)
    ax.tick_params(axis="y", length=0)
    return to_svg(fig, name)


# ---------------------------------------------------------------------- group report
@_styled
def roc_pr(curves: list[dict], name: str) -> Markup:
    """ROC and precision-recall curves: ``curves`` = [{label, fpr, tpr, recall, precision, pooled}]."""
    fig, (roc, pr) = _figure(9, 3.6, (0.6, 0.15, 0.5, 0.3), ncols=2)
    for c in curves:
        style = {"lw": 2.0, "color": "k"} if c["pooled"] else {"lw": 0.8, "alpha": 0.7}
        roc.plot(c["fpr"], c["tpr"], label=c["roc_label"], **style)
        pr.step(c["recall"], c["precision"], where="post", label=c["pr_label"], **style)
    roc.plot([0, 1], [0, 1], color="#bbbbbb", ls=":", lw=0.8)
    roc.set(xlabel="false positive rate", ylabel="true positive rate (sensitivity)", title="ROC",
            xlim=(0, 1), ylim=(0, 1.01))
    pr.set(xlabel="recall (sensitivity)", ylabel="precision", title="Precision-recall", xlim=(0, 1), ylim=(0, 1.01))
    for ax in (roc, pr):
        ax.legend(frameon=False, loc="lower right" if ax is roc else "upper right")
    return to_svg(fig, name)


@_styled
def confusion(matrix: dict, name: str) -> Markup:
    """The pooled window-level confusion matrix."""
    cells = np.array([[matrix["tn"], matrix["fp"]], [matrix["fn"], matrix["tp"]]], dtype=float)
    fig, ax = _figure(3.4, 2.8, (0.95, 0.1, 0.6, 0.1))
    ax.imshow(cells, cmap="Blues")
    for (i, j), value in np.ndenumerate(cells):
        ax.text(j, i, f"{int(value)}", ha="center", va="center",
                color="white" if value > cells.max() / 2 else "black", fontsize=10)
    ax.set_xticks([0, 1], ["background", "seizure"])
    ax.set_yticks([0, 1], ["background", "seizure"])
    ax.set_xlabel("predicted")
    ax.set_ylabel("reference")
    return to_svg(fig, name)


@_styled
def probability_trace(onsets: np.ndarray, probs: np.ndarray, smoothed: np.ndarray, duration: float,
                      seizures: list, events: list[tuple[float, float]], threshold: float, name: str,
                      max_points: int = MAX_POINTS) -> Markup:
    """A test recording: seizure probability, the tuned threshold, reference seizures and detections. A trace of
    more than ``max_points`` windows is drawn as its min/max envelope (``envelope``) with path coordinates
    rounded to a tenth of a point; a shorter one exactly as before."""
    scale, xlabel = _hours(duration)
    fig, ax = _figure(9, 1.8, (0.6, 1.5, 0.45, 0.1))
    for a, b in seizures:
        ax.axvspan(a / scale, b / scale, color=SEIZURE, alpha=0.25, lw=0)
    x, y = envelope(onsets / scale, probs, max_points)
    ax.plot(x, y, color="#aaaaaa", lw=0.6, label="window probability")
    x, y = envelope(onsets / scale, smoothed, max_points)
    ax.plot(x, y, color="k", lw=0.9, label="smoothed")
    ax.axhline(threshold, color=DETECTED, ls="--", lw=0.8, label=f"threshold {threshold_text(threshold)}")
    ax.broken_barh([(a / scale, (b - a) / scale) for a, b in events], (1.04, 0.08), color=DETECTED)
    ax.plot([], [], color=SEIZURE, alpha=0.4, lw=6, label="reference seizure")
    ax.plot([], [], color=DETECTED, lw=4, label="detected event")
    ax.set(xlim=(0, duration / scale), ylim=(0, 1.14), xlabel=xlabel, ylabel="P(seizure)")
    ax.legend(frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return to_svg(fig, name, decimals=1 if len(onsets) > max_points else None)


@_styled
def latency_histogram(latencies: list[float], name: str) -> Markup:
    """Detection latency of every detected seizure (seconds after its annotated onset), with the median."""
    values = np.asarray(latencies, dtype=float)
    fig, ax = _figure(6, 2.4, (0.6, 0.15, 0.5, 0.1))
    ax.hist(values, bins=min(30, max(5, len(values))), color=DETECTED, edgecolor="white", lw=0.5)
    ax.axvline(0.0, color=SEIZURE, lw=0.8, label="annotated onset")
    ax.axvline(float(np.median(values)), color="k", ls="--", lw=0.8, label=f"median {np.median(values):.1f} s")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(xlabel="detection latency (s after the annotated onset)", ylabel="seizures")
    ax.legend(frameon=False, loc="upper right")
    return to_svg(fig, name)


@_styled
def training_curves(histories: dict[str, dict[str, list[float]]], name: str) -> Markup:
    """Training loss and inner-validation PR-AUC per epoch, one line per fold."""
    fig, (loss, val) = _figure(9, 2.8, (0.7, 0.15, 0.5, 0.3), ncols=2)
    for label, history in histories.items():
        epochs = np.arange(1, len(history.get("loss", [])) + 1)
        if "loss" in history:
            loss.plot(epochs, history["loss"], marker="o", ms=2, lw=1, label=label)
        if "val_pr_auc" in history:
            val.plot(np.arange(1, len(history["val_pr_auc"]) + 1), history["val_pr_auc"], marker="o", ms=2, lw=1,
                     label=label)
    for ax in (loss, val):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    loss.set(xlabel="epoch", ylabel="training loss", title="Training loss")
    val.set(xlabel="epoch", ylabel="PR-AUC", title="Inner-validation PR-AUC", ylim=(0, 1.01))
    val.legend(frameon=False, fontsize=6, ncols=2)
    return to_svg(fig, name)
