"""Map whatever channels a recording has onto the configured montage.

Recordings name the same electrode many ways (``Fp1-Avg`` in SzCORE Siena, ``FP1-F7`` bipolar pairs in
CHB-MIT, ``EEG Fp1-Ref`` in the PhysioNet originals, ``Fc5.`` in EEGMMIDB, ``T7`` vs ``T3``). Every label
is parsed into either one electrode against a common reference or a bipolar pair, and the montage is
expressed as a matrix applied to the picked channels, so re-referencing is one matrix product per block.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from ..config import MontageConfig
from ..errors import DataError

# The 10-10 names we recognise, spelled canonically; old and new names of the same positions map to
# the old 10-20 spelling used by SzCORE (T3/T4/T5/T6).
_ELECTRODES = [
    "Fp1", "Fp2", "Fpz", "AF3", "AF4", "AF7", "AF8", "AFz", "F1", "F2", "F3", "F4", "F5", "F6", "F7", "F8",
    "F9", "F10", "Fz", "FC1", "FC2", "FC3", "FC4", "FC5", "FC6", "FCz", "FT7", "FT8", "FT9", "FT10",
    "C1", "C2", "C3", "C4", "C5", "C6", "Cz", "T3", "T4", "T5", "T6", "T9", "T10", "TP7", "TP8", "TP9",
    "TP10", "CP1", "CP2", "CP3", "CP4", "CP5", "CP6", "CPz", "P1", "P2", "P3", "P4", "P5", "P6", "P9",
    "P10", "Pz", "PO3", "PO4", "PO7", "PO8", "POz", "O1", "O2", "Oz", "Iz", "A1", "A2", "M1", "M2",
]  # fmt: skip
SYNONYMS = {"T7": "T3", "T8": "T4", "P7": "T5", "P8": "T6"}
_CANONICAL = {name.upper(): name for name in _ELECTRODES}
_CANONICAL.update({alias.upper(): target for alias, target in SYNONYMS.items()})

# What may follow an electrode and still mean "against a common reference".
_REFERENCE_TOKENS = {"REF", "REFERENCE", "AVG", "AV", "AVE", "AVERAGE", "CAR", "AR", "LE", "RE", "LINKED",
                     "A1", "A2", "M1", "M2", "A1A2", "M1M2", "CZREF", "G2", "SYS", "GND"}
_PREFIX = re.compile(r"^(?:EEG|POL|EEG\.)[\s_:\-.]+", re.IGNORECASE)

# The 18-channel longitudinal bipolar montage ("double banana"), in CHB-MIT order.
DOUBLE_BANANA = [
    ("Fp1", "F7"), ("F7", "T3"), ("T3", "T5"), ("T5", "O1"),
    ("Fp1", "F3"), ("F3", "C3"), ("C3", "P3"), ("P3", "O1"),
    ("Fp2", "F4"), ("F4", "C4"), ("C4", "P4"), ("P4", "O2"),
    ("Fp2", "F8"), ("F8", "T4"), ("T4", "T6"), ("T6", "O2"),
    ("Fz", "Cz"), ("Cz", "Pz"),
]


def canonical_electrode(token: str) -> str | None:
    """``'FP1'`` → ``'Fp1'``, ``'t7'`` → ``'T3'``; None when the token is not an electrode."""
    return _CANONICAL.get(token.strip().upper())


def parse_label(label: str) -> tuple[str, str | None] | None:
    """Parse a channel label into ``(electrode, None)`` (referential) or ``(a, b)`` (bipolar a − b).

    Returns None for anything that is not scalp EEG (``EKG``, ``SpO2``, ``Photic`` ...).
    """
    text = _PREFIX.sub("", label.strip()).rstrip(".").strip()
    text = re.sub(r"-\d+$", "", text) if text.count("-") >= 2 else text  # MNE's duplicate suffix "-0"
    parts = [p for p in re.split(r"\s*[-–]\s*", text) if p]
    if len(parts) == 1:
        electrode = canonical_electrode(parts[0])
        return (electrode, None) if electrode else None
    if len(parts) == 2:
        first = canonical_electrode(parts[0])
        if first is None:
            return None
        if parts[1].upper() in _REFERENCE_TOKENS:  # "Fp1-Ref", "C3-A2", "Fp1-Avg"
            return first, None
        second = canonical_electrode(parts[1])
        if second is not None:
            return first, second
    return None


@dataclass
class Montage:
    """``output = matrix @ data[picks]``: the montage as a linear map of the picked input channels."""

    names: list[str]
    picks: list[int]
    matrix: np.ndarray
    filled: list[str] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)


def mirror_electrode(electrode: str) -> str:
    """The electrode at the mirror position across the midline: odd numbers are left, even right
    (``F3`` ↔ ``F4``, ``T3`` ↔ ``T4``, ``Fp1`` ↔ ``Fp2``); midline (``z``) electrodes are their own mirror."""
    if electrode.endswith("z"):
        return electrode
    head = electrode.rstrip("0123456789")
    number = int(electrode[len(head):])
    return f"{head}{number + 1 if number % 2 else number - 1}"


def mirror_permutation(channels: list[str] | tuple[str, ...]) -> list[int] | None:
    """For each channel, the index of its left-right mirror image among ``channels`` (``F3-Avg`` → ``F4-Avg``,
    ``Fp1-F7`` → ``Fp2-F8``); None when some channel's mirror is not there (then no mirroring is possible).

    Data flipped this way is the same recording of a person whose hemispheres are swapped: a seizure from the
    left temporal lobe becomes one from the right (the channel symmetry augmentation of braindecode's
    ``ChannelsSymmetry``, Deiss et al. 2018).
    """
    keys = []
    for name in channels:
        parsed = parse_label(name)
        if parsed is None:
            return None
        keys.append(parsed)
    index = {key: i for i, key in enumerate(keys)}
    perm = []
    for a, b in keys:
        mirrored = (mirror_electrode(a), None if b is None else mirror_electrode(b))
        if mirrored not in index:
            return None
        perm.append(index[mirrored])
    return perm


def build_montage(ch_names: list[str], cfg: MontageConfig) -> Montage:
    """Resolve the configured montage against a recording's channel labels.

    Raises :class:`DataError` naming the missing electrodes unless ``allow_missing_channels`` is set.
    """
    referential: dict[str, int] = {}
    bipolar: dict[tuple[str, str], int] = {}
    for idx, name in enumerate(ch_names):
        parsed = parse_label(name)
        if parsed is None:
            continue
        a, b = parsed
        if b is None:
            referential.setdefault(a, idx)
        else:
            bipolar.setdefault((a, b), idx)
    if cfg.montage == "average":
        return _average_montage(ch_names, referential, bipolar, cfg)
    return _bipolar_montage(ch_names, referential, bipolar, cfg)


def _average_montage(ch_names, referential, bipolar, cfg: MontageConfig) -> Montage:
    wanted = [canonical_electrode(e) or e for e in cfg.electrodes]
    missing = [e for e in wanted if e not in referential]
    if missing and not cfg.allow_missing_channels:
        hint = (" (the recording has bipolar channels only: set montage.montage = \"bipolar\")"
                if bipolar and not referential else "")
        raise DataError(f"missing electrode(s) {', '.join(missing)} for the average montage{hint}; "
                        f"channels present: {_short_list(ch_names)}")
    present = [e for e in wanted if e in referential]
    if len(present) < 2:
        raise DataError(f"fewer than two of the montage electrodes are present; channels: {_short_list(ch_names)}")
    picks = [referential[e] for e in present]
    n_out = len(wanted)
    matrix = np.zeros((n_out, len(picks)))
    mean_row = np.full(len(picks), 1.0 / len(picks))
    for row, e in enumerate(wanted):
        if e in referential:
            matrix[row] = -mean_row
            matrix[row, present.index(e)] += 1.0
    names = [f"{e}-Avg" for e in cfg.electrodes]
    sources = {f"{e}-Avg": ch_names[referential[c]] for e, c in zip(cfg.electrodes, wanted) if c in referential}
    return Montage(names, picks, matrix, [f"{e}-Avg" for e, c in zip(cfg.electrodes, wanted) if c in missing],
                   sources)


def _bipolar_montage(ch_names, referential, bipolar, cfg: MontageConfig) -> Montage:
    columns: list[int] = []
    rows: list[dict[int, float]] = []
    names, filled, sources = [], [], {}

    def column(idx: int) -> int:
        if idx not in columns:
            columns.append(idx)
        return columns.index(idx)

    for a, b in DOUBLE_BANANA:
        name = f"{a}-{b}"
        names.append(name)
        if (a, b) in bipolar:
            rows.append({column(bipolar[(a, b)]): 1.0})
            sources[name] = ch_names[bipolar[(a, b)]]
        elif (b, a) in bipolar:
            rows.append({column(bipolar[(b, a)]): -1.0})
            sources[name] = f"-{ch_names[bipolar[(b, a)]]}"
        elif a in referential and b in referential:
            rows.append({column(referential[a]): 1.0, column(referential[b]): -1.0})
            sources[name] = f"{ch_names[referential[a]]} - {ch_names[referential[b]]}"
        else:
            rows.append({})
            filled.append(name)
    if filled and not cfg.allow_missing_channels:
        raise DataError(f"cannot form bipolar channel(s) {', '.join(filled)}; channels present: "
                        f"{_short_list(ch_names)}")
    if not columns:
        raise DataError(f"no channel of the bipolar montage can be formed; channels: {_short_list(ch_names)}")
    matrix = np.zeros((len(rows), len(columns)))
    for r, coefficients in enumerate(rows):
        for c, value in coefficients.items():
            matrix[r, c] = value
    return Montage(names, columns, matrix, filled, sources)


def _short_list(names: list[str], limit: int = 12) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")
