#!/usr/bin/env python3
"""How much an ensemble of networks trained with different seeds would rank windows better, from finished runs.

Each run's ``group/predictions.tsv`` holds every window's out-of-fold probability: the prediction of the fold whose
model never saw that subject. Averaging the log-odds of several runs of the network (different ``--seed``, so
different folds and initialisations) therefore scores every subject with an ensemble none of whose members saw
it. This script compares, at the window level, each network run alone and stacked with a feature-baseline run
(``model.stacking_weight``, as the group level combines them) against the ensemble alone and stacked: pooled
PR-AUC and the mean of the subjects' own PR-AUCs, of the centred and smoothed scores the thresholds see
(``postprocessing.centre``, ``postprocessing.smoothing``: the defaults).

It says nothing about event metrics: the ensemble's post-processing would have to be tuned on inner validation
subjects that some members trained on.

    python benchmarks/ensemble_runs.py --networks RUN_SEED42 RUN_SEED1 RUN_SEED2 --features FEAT42 FEAT1 FEAT2

The n-th features run pairs with the n-th network run in the single-run rows.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def read_run(run: Path) -> dict[str, dict]:
    """Out-of-fold predictions per recording (``probs``, ``labels``, ``subject``) of a finished group run."""
    from neurocare_bids.evaluation.group import GROUP, _read_predictions

    path = run / GROUP / "predictions.tsv"
    if not path.is_file():
        raise SystemExit(f"{path}: missing (not a finished group run)")
    return {k: {"probs": np.array(v["probs"]), "labels": np.array(v["labels"]), "subject": v["subject"]}
            for k, v in _read_predictions(path, "test").items()}


def check_same_windows(runs: list[dict[str, dict]]) -> None:
    """Exit with one line unless every run scored the same recordings' windows (the same participant-level outputs)."""
    for key in runs[0]:
        for run in runs[1:]:
            if key not in run or not np.array_equal(run[key]["labels"], runs[0][key]["labels"]):
                raise SystemExit(f"{key}: the runs do not share its windows (other participant-level outputs?)")


def ensemble(runs: list[dict[str, dict]]) -> dict[str, np.ndarray]:
    """Each recording's probabilities averaged over runs on the log-odds scale (runs checked by
    :func:`check_same_windows`)."""
    from neurocare_bids.detection.postprocess import log_odds

    return {key: 1.0 / (1.0 + np.exp(-np.mean([log_odds(run[key]["probs"]) for run in runs], axis=0)))
            for key in runs[0]}


def window_scores(probs: dict[str, np.ndarray], reference: dict[str, dict], features: dict[str, dict] | None,
                  weight: float, smoothing: int, centre: bool) -> dict[str, float]:
    """Pooled PR-AUC and the subjects' mean PR-AUC of the detection scores, optionally stacked with ``features``."""
    from neurocare_bids.detection.postprocess import centre_probabilities, smooth
    from neurocare_bids.detection.stacking import combine
    from neurocare_bids.evaluation.metrics import ranking_metrics

    scores, labels, by_subject = [], [], {}
    for key, p in probs.items():
        if features is not None:
            p = combine(p, features[key]["probs"], weight)
        s = smooth(centre_probabilities(p)[0] if centre else p, smoothing)
        y = reference[key]["labels"]
        scores.append(s)
        labels.append(y)
        subject = by_subject.setdefault(reference[key]["subject"], ([], []))
        subject[0].append(s)
        subject[1].append(y)
    per_subject = [ranking_metrics(np.concatenate(y), np.concatenate(s))["pr_auc"] for s, y in by_subject.values()]
    per_subject = [v for v in per_subject if v is not None]
    return {"pooled": ranking_metrics(np.concatenate(labels), np.concatenate(scores))["pr_auc"],
            "subject_mean": float(np.mean(per_subject)) if per_subject else None}


def main(argv: list[str] | None = None) -> int:
    from neurocare_bids.config import Config

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--networks", nargs="+", type=Path, required=True, help="group runs of the network alone")
    ap.add_argument("--features", nargs="*", type=Path, default=[], help="group runs of the features preset")
    args = ap.parse_args(argv)
    cfg = Config()
    weight, smoothing, centre = cfg.model.stacking_weight, cfg.postprocessing.smoothing, cfg.postprocessing.centre
    nets = [read_run(r) for r in args.networks]
    feats = [read_run(r) for r in args.features]
    check_same_windows(nets + feats)
    rows = []
    for i, (path, net) in enumerate(zip(args.networks, nets)):
        probs = {k: v["probs"] for k, v in net.items()}
        rows.append((f"network {path.name}", window_scores(probs, net, None, weight, smoothing, centre)))
        if i < len(feats):
            rows.append((f"network {path.name} + features {args.features[i].name}",
                         window_scores(probs, net, feats[i], weight, smoothing, centre)))
    mean = ensemble(nets)
    rows.append((f"ensemble of {len(nets)} networks", window_scores(mean, nets[0], None, weight, smoothing, centre)))
    for path, feat in zip(args.features, feats):
        rows.append((f"ensemble + features {path.name}", window_scores(mean, nets[0], feat, weight, smoothing, centre)))
    print("| detector | pooled PR-AUC | PR-AUC, mean over subjects |\n| --- | ---: | ---: |")
    for name, s in rows:
        print(f"| {name} | {s['pooled']:.3f} | {s['subject_mean']:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
