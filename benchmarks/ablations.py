#!/usr/bin/env python3
"""Ablations and baselines on the same windows and folds: what each part of the detector adds.

Runs the group level once per variant on participant-level outputs (default: the demo dataset), every run
with the same seed and therefore the same folds, and prints (and writes) a Markdown table of event-level F1,
window-level PR-AUC and false positives per 24 h — the answer to the seed README's "key observations".
The table is also written to ``DERIVATIVES/group/ablations.tsv``, where the group report (``group.html``,
rebuilt here when the group level has run there) shows it.

    python benchmarks/ablations.py demo/bids demo/derivatives                 # all variants
    python benchmarks/ablations.py demo/bids demo/derivatives --variants neurocare seed features
    python benchmarks/ablations.py demo/bids demo/derivatives --variants neurocare features --seeds 42 1 2

With several ``--seeds`` each variant runs once per seed (the folds of a leave-one-subject-out split stay the
same; the inner validation subjects, initial weights, sampling and augmentation change) and each cell is the
mean ± standard deviation over the seeds: on six subjects one seizure moves the event F1 by about 0.05, so a
difference smaller than the spread over seeds is not a difference.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

VARIANTS = {
    "neurocare": ("the default: CNN-BiLSTM with spectral and per-channel feature branches, focal loss, augmentation "
                  "with left-right mirroring, stacked with the feature baseline", ""),
    "tuned-weight": ("the default, but the stacking weight chosen per fold on the inner validation subjects "
                     "(`tune_stacking_weight`; the default until 2026-12-03)", "[model]\ntune_stacking_weight = true\n"),
    "network": ("the default's network alone (no stacking with the feature baseline)", "[model]\nstacking = false\n"),
    "no-channel-features": ("default without the per-channel feature branch", "[model]\nchannel_features = 0\n"),
    "no-mirror": ("default without left-right mirroring", "[augmentation]\nmirror = 0\n"),
    "previous-default": ("the CNN-BiLSTM that was the default until 0.1: no per-channel branch, no mirroring, "
                         "no stacking", "[model]\nstacking = false\nchannel_features = 0\n[augmentation]\nmirror = 0\n"),
    "no-spectral": ("default without the spectral branch", "[model]\nspectral_units = 0\n"),
    "no-lstm": ("default without the LSTM (CNN + global pooling)", "[model]\nlstm_units = []\n"),
    "cross-entropy": ("class-weighted cross-entropy instead of focal loss", '[training]\nloss = "cross_entropy"\n'),
    "no-augmentation": ("without any augmentation", "[augmentation]\nenabled = false\n"),
    "edge-ties": ("default, but ties in tuning go to the edge (highest threshold; `ties = \"conservative\"`)",
                  '[postprocessing]\nties = "conservative"\n'),
    "seed": ("the seed code's model (Conv1D(8) → LSTM(16)), same pipeline", '[model]\npreset = "seed"\n'),
    "features": ("classic features + gradient boosting", '[model]\npreset = "features"\n'),
    "features-edge-ties": ("classic features + gradient boosting, ties to the edge",
                           '[model]\npreset = "features"\n[postprocessing]\nties = "conservative"\n'),
    "per-channel": ("per-channel Conv1D blocks (shared weights, mean and max over channels)",
                    '[model]\nencoder = "per_channel"\nconv_filters = [16, 32, 32]\n'),
}
#: The stacked variants --derive-default derives from the `network` and `features` runs (their switches set only
#: [model] options that stack_runs.py applies).
STACKED = ("neurocare", "tuned-weight")
METRICS = ("event_f1", "event_sensitivity", "fp_per_24h", "pr_auc", "roc_auc", "pr_auc_unsmoothed",
           "pr_auc_subject_mean")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bids_dir", type=Path)
    parser.add_argument("derivatives", type=Path, help="output folder of the participant level")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--config", type=Path, default=Path(__file__).parent.parent / "examples" / "demo.toml",
                        help="base configuration (training budget); each variant adds its switch")
    parser.add_argument("--workdir", type=Path, default=Path("ablations"), help="where the runs are kept")
    parser.add_argument("--json", type=Path, help="also write the table as JSON")
    parser.add_argument("--seeds", nargs="+", type=int, default=[42],
                        help="run every variant once per seed and report mean ± SD (default: 42 only)")
    parser.add_argument("--derive-default", action="store_true",
                        help="derive the default's (stacked) row from the `network` and `features` runs of each seed "
                             "with benchmarks/stack_runs.py (the same trainings, tested equal to a stacked run) "
                             "instead of training both again")
    args = parser.parse_args()

    base = args.config.read_text() if args.config else ""
    args.workdir.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in args.variants:
        description, switch = VARIANTS[name]
        runs = []
        for seed in args.seeds:
            out = args.workdir / _run_name(name, args.seeds, seed)
            if name in STACKED and args.derive_default:
                description = VARIANTS[name][0] + " (derived from the `network` and `features` runs)"
                metrics = _derive_stacked(args, base, seed, args.workdir / _run_name(f"{name}-derived", args.seeds,
                                                                                     seed), switch)
            else:
                metrics = _run(args, base, name, switch, seed, out)
            if metrics is not None:
                runs.append({"event_f1": metrics["event"]["f1"], "event_sensitivity": metrics["event"]["sensitivity"],
                             "fp_per_24h": metrics["event"]["fp_per_24h"], "pr_auc": metrics["window"]["pr_auc"],
                             "roc_auc": metrics["window"]["roc_auc"],
                             "pr_auc_unsmoothed": metrics["window"].get("unsmoothed", {}).get("pr_auc"),
                             "pr_auc_subject_mean": metrics["window"].get("subject_mean", {}).get("pr_auc")})
        if len(runs) == len(args.seeds):
            rows.append({"variant": name, "description": description, **summarise(runs),
                         "seeds": " ".join(map(str, args.seeds))})
    print()
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    write_tsv(args.derivatives, rows)
    return 0


def _run_name(name: str, seeds: list[int], seed: int) -> str:
    return name if seeds == [42] else f"{name}-seed{seed}"


def _derive_stacked(args, base: str, seed: int, out: Path, switch: str = "") -> dict | None:
    """A stacked variant's metrics from its two parts' runs (trained here when missing): see stack_runs.py."""
    import tomllib

    from stack_runs import stack_runs  # benchmarks/, this script's folder

    parts = {}
    for part in ("network", "features"):
        parts[part] = args.workdir / _run_name(part, args.seeds, seed)
        if _run(args, base, part, VARIANTS[part][1], seed, parts[part]) is None:
            return None
    if not (out / "group" / "metrics.json").exists():
        shutil.rmtree(out, ignore_errors=True)
        stack_runs(args.bids_dir, parts["network"], parts["features"], out,
                   model_options=tomllib.loads(switch).get("model", {}))
        print(f"{out.name}: derived from {parts['network'].name} and {parts['features'].name}")
    return json.loads((out / "group" / "metrics.json").read_text())


def _run(args, base: str, name: str, switch: str, seed: int, out: Path) -> dict | None:
    """One group-level run of a variant (kept in ``out``: a finished run is not repeated)."""
    if not (out / "group" / "metrics.json").exists():
        shutil.rmtree(out, ignore_errors=True)
        shutil.copytree(args.derivatives, out, ignore=shutil.ignore_patterns("group", "szcore", "logs",
                                                                              "*_desc-neurocare_events.*"))
        config = args.workdir / f"{out.name}.toml"
        # no final model and no ONNX copies of the folds (about 5 s each on a CPU): the table needs the metrics only
        config.write_text(_merge(base, switch + "[cv]\nfinal_model = false\n[execution]\nfold_onnx = false\n"))
        start = time.perf_counter()
        result = subprocess.run([sys.executable, "-m", "neurocare_bids", str(args.bids_dir), str(out), "group",
                                 "--config", str(config), "--seed", str(seed), "--no-reports"],
                                capture_output=True, text=True)
        if result.returncode:
            print(f"{out.name}: failed ({result.returncode}): {result.stderr.strip().splitlines()[-1]}")
            return None
        print(f"{out.name}: done in {time.perf_counter() - start:.0f} s")
    return json.loads((out / "group" / "metrics.json").read_text())


def summarise(runs: list[dict]) -> dict:
    """The value of one run, or the mean of several with their sample SD in ``<metric>_sd``."""
    out: dict = {}
    for key in METRICS:
        values = [r[key] for r in runs if r.get(key) is not None]
        out[key] = sum(values) / len(values) if values else None
        if len(runs) > 1:
            out[f"{key}_sd"] = statistics.stdev(values) if len(values) > 1 else None
    return out


def write_tsv(derivatives: Path, rows: list[dict]) -> Path:
    """``DERIVATIVES/group/ablations.tsv``; rebuilds ``group.html`` when the group level has aggregated there."""
    from neurocare_bids.io.fsutils import atomic_write

    path = derivatives / "group" / "ablations.tsv"
    columns = ["variant", "description", *METRICS]
    if any(f"{key}_sd" in r for r in rows for key in METRICS):
        columns += [f"{key}_sd" for key in METRICS] + ["seeds"]
    lines = ["\t".join(columns)]
    for r in rows:
        lines.append("\t".join(_value(r.get(c)) for c in columns))
    atomic_write(path, "\n".join(lines) + "\n")
    if (derivatives / "group" / "metrics.json").is_file():
        from neurocare_bids.reports import build_group_report

        build_group_report(derivatives)
    return path


def _merge(base: str, switch: str) -> str:
    """The base TOML plus a variant's keys, merged per section (a TOML table may appear only once)."""
    import tomllib

    merged = tomllib.loads(base)
    for section, values in tomllib.loads(switch).items():
        merged.setdefault(section, {}).update(values)
    lines = []
    for section, values in merged.items():
        lines.append(f"[{section}]")
        lines += [f"{k} = {json.dumps(v) if not isinstance(v, bool) else str(v).lower()}" for k, v in values.items()]
    return "\n".join(lines) + "\n"


def table(rows: list[dict]) -> str:
    def cell(r: dict, key: str) -> str:
        sd = r.get(f"{key}_sd")
        return _value(r[key]) + (f" ± {sd:.3f}" if sd is not None else "")

    lines = ["| variant | event F1 | event sensitivity | FP/24 h | window PR-AUC | window ROC-AUC | PR-AUC before "
             "smoothing | PR-AUC, mean over subjects |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['description']} | " + " | ".join(cell(r, key) for key in METRICS) + " |")
    return "\n".join(lines)


def _value(v) -> str:
    return "n/a" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)


if __name__ == "__main__":
    raise SystemExit(main())
