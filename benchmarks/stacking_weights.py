#!/usr/bin/env python3
"""Every stacking weight judged on the inner validation subjects only, from a network run and a feature run.

Which baseline weight (``model.stacking_weight``) suits a network trained with another budget, or another dataset,
is a design choice, and the design may only look at validation subjects. For each fold finished in both runs
(same seed, so the same folds), this prints every weight's pooled PR-AUC on the fold's validation subjects, as
``model.tune_stacking_weight`` compares them (``choose_weight``: centred and smoothed as detection sees them), and
the SzCORE event F1 of the threshold tuned on those same subjects (``tune``; in-sample, so optimistic), then the
means over the folds. The test subjects' predictions are never read.

    python benchmarks/stacking_weights.py NETWORK_RUN FEATURES_RUN
    python benchmarks/stacking_weights.py NETWORK_RUN FEATURES_RUN --weights 0 0.1 0.25 0.5 1 --json w.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

DEFAULT_WEIGHTS = (0.0, 0.1, 0.25, 0.5, 0.75, 1.0)


def validation_scores(network_run: Path, features_run: Path, weights=DEFAULT_WEIGHTS) -> list[dict]:
    """Per fold finished in both runs: ``{"fold", "validation", "pr_auc": {w: ...}, "f1": {w: ...}}``."""
    from neurocare_bids.config import Config
    from neurocare_bids.detection.stacking import choose_weight, combine
    from neurocare_bids.evaluation.group import with_detection
    from neurocare_bids.evaluation.plan import collect_window_files
    from neurocare_bids.evaluation.tuning import tune
    from stack_runs import finished_fold_pairs, paired_predictions  # benchmarks/, this script's folder

    files, geometry = collect_window_files(network_run, [])
    by_source = {f.source: f for f in files}
    rows = []
    for fold_dir, summary, features_fold in finished_fold_pairs(network_run, features_run, require_all=False):
        cfg = Config()
        cfg.update({**summary["group_config"], "model": {**summary["group_config"]["model"], "stacking": True}},
                   source=str(fold_dir / "fold.json"))
        post = cfg.postprocessing
        parts = paired_predictions(fold_dir, features_fold, "validation", by_source, geometry)

        detected: list[list[dict]] = []  # choose_weight's detections, one per weight in order: reused for F1

        def detection_scores(predictions):
            detected.append(with_detection(predictions, post))
            return [p["scores"] for p in detected[-1]]

        _, pr_auc = choose_weight(*parts, detection_scores, weights)
        if len(detected) != len(weights):  # no seizure window to rank: choose_weight detected nothing
            detected = [with_detection([{**n, "probs": combine(n["probs"], b["probs"], w)}
                                        for n, b in zip(*parts)], post) for w in weights]
        f1 = {}
        for w, combined in zip(weights, detected):
            f1[float(w)] = tune([{**p, "probs": p["detection"]} for p in combined], smoothing=post.smoothing,
                                merge_gap=post.merge_gap, ties=post.ties).get("f1")
        rows.append({"fold": int(summary["fold"]), "validation": summary["validation"], "pr_auc": pr_auc, "f1": f1})
    if not rows:
        raise SystemExit(f"no fold is finished in both {network_run} and {features_run}")
    return rows


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def _text(value) -> str:
    return "   -  " if value is None else f"{value:6.3f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("network_run", type=Path, help="a group run of the network alone (model.stacking = false)")
    parser.add_argument("features_run", type=Path, help="a group run of the features preset, same seed")
    parser.add_argument("--weights", type=float, nargs="+", default=list(DEFAULT_WEIGHTS),
                        help="baseline weights to compare (default: %(default)s)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    weights = [float(w) for w in args.weights]
    rows = validation_scores(args.network_run, args.features_run, weights)
    print("validation PR-AUC / tuned validation event F1 per baseline weight")
    print("fold  validation  " + "  ".join(f"w={w:<11g}" for w in weights))
    for row in rows:
        print(f"{row['fold']:>4}  {','.join(row['validation']):<10}  "
              + "  ".join(f"{_text(row['pr_auc'][w])}/{_text(row['f1'][w]).strip():<6}" for w in weights))
    means = {w: (_mean(r["pr_auc"][w] for r in rows), _mean(r["f1"][w] for r in rows)) for w in weights}
    print(f"mean ({len(rows)} folds)      "
          + "  ".join(f"{_text(pr)}/{_text(f1).strip():<6}" for pr, f1 in means.values()))
    if args.json:
        args.json.write_text(json.dumps({"weights": weights, "folds": rows,
                                         "mean": {str(w): {"pr_auc": pr, "f1": f1} for w, (pr, f1) in means.items()}},
                                        indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
