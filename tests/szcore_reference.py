"""szcore-evaluation's scoring, re-implemented step by step for the tests (it is not on PyPI).

It reads files with epilepsy2bids (``make install`` adds it with ``--no-deps``); tests skip without it.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from timescoring import scoring
from timescoring.annotations import Annotation


def annotations_module():
    return pytest.importorskip("epilepsy2bids.annotations")


def evaluate_dataset(reference: Path, hypothesis: Path) -> dict:
    """szcore-evaluation's ``evaluate_dataset`` (per-subject average), re-implemented step by step."""
    ann = annotations_module()
    base = getattr(scoring, "Scoring", None) or scoring._Scoring  # renamed in later timescoring

    class Result(base):
        def __init__(self, score=None):
            self.fs, self.duration, self.numSamples, self.tp, self.fp, self.refTrue = 0, 0, 0, 0, 0, 0
            if score is not None:
                self.fs, self.duration = score.ref.fs, len(score.ref.mask) / score.ref.fs
                self.numSamples, self.tp, self.fp, self.refTrue = score.numSamples, score.tp, score.fp, score.refTrue

        def __iadd__(self, other):
            self.fs = other.fs
            self.duration += other.duration
            self.numSamples += other.numSamples
            self.tp += other.tp
            self.fp += other.fp
            self.refTrue += other.refTrue
            return self

    sample_results, event_results = {}, {}
    for subject in Path(reference).glob("sub-*"):
        sample_results[subject.name], event_results[subject.name] = Result(), Result()
        for ref_tsv in subject.glob("**/*.tsv"):
            ref = Annotation(ann.Annotations.loadTsv(ref_tsv).getMask(1), 1)
            hyp_tsv = Path(hypothesis) / ref_tsv.relative_to(reference)
            if hyp_tsv.exists():
                try:
                    hyp = Annotation(ann.Annotations.loadTsv(hyp_tsv).getMask(1), 1)
                except IndexError:
                    hyp = Annotation(np.zeros_like(ref.mask), ref.fs)
            else:
                hyp = Annotation(np.zeros_like(ref.mask), ref.fs)
            try:
                sample_score, event_score = scoring.SampleScoring(ref, hyp), scoring.EventScoring(ref, hyp)
            except ValueError:  # masks of different lengths: scored as all background
                hyp = Annotation(np.zeros_like(ref.mask), ref.fs)
                sample_score, event_score = scoring.SampleScoring(ref, hyp), scoring.EventScoring(ref, hyp)
            sample_results[subject.name] += Result(sample_score)
            event_results[subject.name] += Result(event_score)
        sample_results[subject.name].computeScores()
        event_results[subject.name].computeScores()
    out = {}
    for name, results in (("sample_results", sample_results), ("event_results", event_results)):
        out[name] = {}
        for metric in ("sensitivity", "precision", "f1", "fpRate"):
            values = [getattr(x, metric) for x in results.values()]
            with warnings.catch_warnings():  # all-NaN metrics (e.g. precision with no detection)
                warnings.simplefilter("ignore", RuntimeWarning)
                out[name][metric], out[name][f"{metric}_std"] = np.nanmean(values), np.nanstd(values)
    out["per_subject"] = {name: {"event": event_results[name], "sample": sample_results[name]}
                          for name in event_results}
    return out
