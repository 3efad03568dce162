#!/usr/bin/env python3
"""What the stacked detector (``model.stacking``) scores, from a finished network run and a feature-baseline run.

A stacked group-level run trains, per fold, the same network as a run without stacking (same seed, same
configuration otherwise) and the same gradient boosting as the ``features`` preset; it then weighs the two
(``model.stacking_weight``, or the weight chosen on the inner validation subjects with ``--tune-stacking-weight``)
and chooses the post-processing on the inner validation subjects. This script does that last step
from the two runs' saved validation and test predictions (``group/fold-K/predictions.tsv``) with the group
level's own functions, and aggregates like the group level: so an ablation that has both runs gets the stacked
detector's metrics without training anything twice (tests/detection/test_stacking.py checks it against a real stacked run).

    python benchmarks/stack_runs.py BIDS ablations/channel-features-mirror ablations/features OUT
    python benchmarks/stack_runs.py BIDS NETWORK_RUN FEATURES_RUN OUT --objective alarm   # at the alarm point

``OUT`` receives ``group/fold-K/{fold.json,predictions.tsv}``, ``group/metrics.json`` and the events, as a group
run would write them; the summary line gives event F1, sensitivity, FP/24 h, the median latency and window
PR-AUC.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def finished_fold_pairs(network_run: Path, features_run: Path, require_all: bool = True):
    """``(fold folder of the network run, its fold.json, the feature run's fold folder)`` for each finished fold of
    the network run, after checking that the two runs are a network alone and the features preset with the same
    folds (same seed); a fold the feature run has not finished is skipped, or refused with ``require_all``."""
    from neurocare_bids.evaluation.group import GROUP

    for fold_json in sorted((network_run / GROUP).glob("fold-*/fold.json"), key=lambda p: int(p.parent.name[5:])):
        other = features_run / GROUP / fold_json.parent.name
        if not (other / "fold.json").exists():
            if require_all:
                raise SystemExit(f"{features_run} has not finished {fold_json.parent.name}")
            continue
        summary, other_summary = (json.loads(path.read_text()) for path in (fold_json, other / "fold.json"))
        if any(summary[k] != other_summary[k] for k in ("test", "validation", "train")):
            raise SystemExit(f"{fold_json.parent.name}: the two runs have different folds (use the same seed)")
        if summary["group_config"]["model"]["preset"] != "neurocare" or summary.get("stacking"):
            raise SystemExit(f"{network_run} is not a run of the network alone")
        if other_summary["group_config"]["model"]["preset"] != "features":
            raise SystemExit(f"{features_run} is not a run of the features preset")
        yield fold_json.parent, summary, other


def paired_predictions(network_fold: Path, features_fold: Path, split: str, by_source: dict, geometry) -> list:
    """``[network predictions, baseline predictions]`` of one split of a fold, recording for recording in the same
    order, as the group level holds them (``training.fit._prediction``)."""
    import numpy as np

    from neurocare_bids.evaluation.group import _read_predictions
    from neurocare_bids.training.fit import _prediction

    net, base = (_read_predictions(folder / "predictions.tsv", split) for folder in (network_fold, features_fold))
    if sorted(net) != sorted(base):
        raise SystemExit(f"{network_fold.name}: the two runs predicted different {split} recordings")
    return [[_prediction(by_source[s], geometry, np.array(run[s]["probs"]), np.array(run[s]["labels"]),
                         np.array(run[s]["onsets"])) for s in sorted(net)] for run in (net, base)]


def stack_runs(bids_dir: Path, network_run: Path, features_run: Path, out: Path,
               model_options: dict | None = None, postprocessing_options: dict | None = None) -> dict:
    """The stacked detector's metrics (``out/group/metrics.json``); ``model_options``: [model] settings that differ
    from the network run's (e.g. ``tune_stacking_weight``), applied to the combination only;
    ``postprocessing_options``: [postprocessing] settings that differ (e.g. ``objective = "alarm"``: the metrics at
    the alarm operating point)."""
    from neurocare_bids.config import Config
    from neurocare_bids.detection.postprocess import smooth
    from neurocare_bids.detection.stacking import StackedDetector, combine, stacking_weight
    from neurocare_bids.evaluation.cv import Fold
    from neurocare_bids.evaluation.group import GROUP, _predictions_tsv, aggregate, tune_operating_points, with_detection
    from neurocare_bids.evaluation.plan import collect_window_files
    from neurocare_bids.io.fsutils import atomic_write

    files, geometry = collect_window_files(network_run, [])
    by_source = {f.source: f for f in files}
    folds, cfg = [], None
    for fold_dir, summary, features_fold in finished_fold_pairs(network_run, features_run):
        if cfg is None:
            cfg = Config()
            group_config = summary["group_config"]
            post = {**group_config.get("postprocessing", {}), **(postprocessing_options or {})}
            cfg.update({**group_config, "model": {**group_config["model"], "stacking": True, **(model_options or {})},
                        "postprocessing": post}, source=str(fold_dir / "fold.json"))
        fold = Fold(int(summary["fold"]), tuple(summary["test"]), tuple(summary["validation"]), tuple(summary["train"]))
        folds.append(fold)
        parts = {split: paired_predictions(fold_dir, features_fold, split, by_source, geometry)
                 for split in ("validation", "test")}

        def detection_scores(predictions):
            return [p["scores"] for p in with_detection(predictions, cfg.postprocessing)]

        weight, scores = stacking_weight(*parts["validation"], detection_scores, fixed=cfg.model.stacking_weight,
                                         tune=cfg.model.tune_stacking_weight)
        stacked = {split: with_detection([{**n, "probs": combine(n["probs"], b["probs"], weight)}
                                          for n, b in zip(*parts[split])], cfg.postprocessing)
                   for split in parts}
        validation_files = [by_source[p["source"]] for p in stacked["validation"]]
        params, points = tune_operating_points(cfg, stacked["validation"], validation_files)
        for p in stacked["test"]:  # as run_fold does: the chosen point's smoothing
            p["scores"] = smooth(p["detection"], params["smoothing"])
        folder = out / GROUP / f"fold-{fold.index}"
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write(folder / "predictions.tsv", _predictions_tsv(
            [(split, p) for split in ("validation", "test") for p in stacked[split]]))
        atomic_write(folder / "fold.json", json.dumps(
            {**summary, "postprocessing": params, "operating_points": points, "stacking": StackedDetector(None, None, weight, scores,
                                                   tuned=cfg.model.tune_stacking_weight).summary(),
             "stacked_from": [str(network_run), str(features_run)]}, indent=2) + "\n")
    if cfg is None:
        raise SystemExit(f"{network_run} has no finished folds")
    return aggregate(cfg, folds, files, geometry, bids_dir, out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bids_dir", type=Path)
    parser.add_argument("network_run", type=Path, help="a finished group run of the network alone")
    parser.add_argument("features_run", type=Path, help="a finished group run of the features preset, same seed")
    parser.add_argument("out", type=Path)
    parser.add_argument("--tune-stacking-weight", action="store_true",
                        help="choose the weight on the validation subjects (model.tune_stacking_weight)")
    parser.add_argument("--objective", choices=("f1", "alarm"),
                        help="the operating point the metrics are taken at (postprocessing.objective; default: the "
                             "network run's)")
    args = parser.parse_args(argv)
    metrics = stack_runs(args.bids_dir, args.network_run, args.features_run, args.out,
                         {"tune_stacking_weight": True} if args.tune_stacking_weight else None,
                         {"objective": args.objective} if args.objective else None)
    weights = [json.loads(p.read_text())["stacking"]["BaselineWeight"]
               for p in sorted((args.out / "group").glob("fold-*/fold.json"))]
    print(f"stacked: event F1 {metrics['event']['f1']:.3f}, sensitivity {metrics['event']['sensitivity']:.3f}, "
          f"FP/24 h {metrics['event']['fp_per_24h']:.1f}, "
          f"median latency {_seconds(metrics['event'].get('latency_median_s'))}, "
          f"window PR-AUC {metrics['window']['pr_auc']:.3f} "
          f"(baseline weights per fold: {', '.join(f'{w:g}' for w in weights)})")
    return 0


def _seconds(value) -> str:
    return "-" if value is None else f"{value:.1f} s"


if __name__ == "__main__":
    sys.exit(main())
