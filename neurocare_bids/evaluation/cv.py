"""Subject-wise cross-validation: which subjects test, validate and train in each fold.

No subject ever appears in two folds, and the inner validation subjects (early stopping, learning-rate
schedule, threshold tuning) always come from the fold's training subjects, never from its test fold:
the seed code early-stopped on its test set, which inflates every reported number.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Fold:
    index: int  # 1-based, as in folds.tsv and --fold
    test: tuple[str, ...]
    validation: tuple[str, ...]
    train: tuple[str, ...]


def assign_folds(seizures: dict[str, int], n_folds: int, seed: int) -> dict[str, int]:
    """Map each subject to a fold (1..k), spreading subjects with seizures over the folds first.

    ``seizures`` maps subject → number of seizure windows. With fewer subjects than folds this is
    leave-one-subject-out. Subjects with seizures are dealt round-robin (most seizures first, ties in a
    seeded random order) so that every test fold holds seizures when there are enough; the others fill
    the smallest folds.
    """
    subjects = sorted(seizures)
    k = min(n_folds, len(subjects))
    rng = np.random.default_rng(seed)
    tiebreak = {s: r for s, r in zip(subjects, rng.permutation(len(subjects)))}
    with_seizures = sorted((s for s in subjects if seizures[s] > 0), key=lambda s: (-seizures[s], tiebreak[s]))
    without = sorted((s for s in subjects if seizures[s] <= 0), key=lambda s: tiebreak[s])
    folds: dict[str, int] = {}
    sizes = [0] * k
    order = [int(f) for f in rng.permutation(k)]  # which fold receives the first subject
    for i, subject in enumerate(with_seizures):
        fold = order[i % k]
        folds[subject] = fold
        sizes[fold] += 1
    for subject in without:
        fold = min(range(k), key=lambda f: (sizes[f], order.index(f)))
        folds[subject] = fold
        sizes[fold] += 1
    return {s: folds[s] + 1 for s in subjects}


def split_validation(subjects: list[str], seizures: dict[str, int], fraction: float,
                     rng: np.random.Generator) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``(train, validation)``: a ``fraction`` of ``subjects`` (at least one) held out for validation.

    Validation subjects with seizures are preferred (threshold tuning needs them), but one subject with
    seizures always stays in training.
    """
    subjects = sorted(subjects)
    if len(subjects) < 2:
        return tuple(subjects), ()
    n_val = max(1, math.ceil(fraction * len(subjects)))
    shuffled = [subjects[i] for i in rng.permutation(len(subjects))]
    with_seizures = [s for s in shuffled if seizures.get(s, 0) > 0]
    validation = with_seizures[:min(n_val, max(0, len(with_seizures) - 1))]
    validation += [s for s in shuffled if s not in validation and s not in with_seizures][:n_val - len(validation)]
    return tuple(s for s in subjects if s not in validation), tuple(sorted(validation))


def make_folds(assignment: dict[str, int], seizures: dict[str, int], validation_fraction: float,
               seed: int) -> list[Fold]:
    """Each fold's test subjects, and its training subjects split into train and inner validation."""
    folds = []
    for index in sorted(set(assignment.values())):
        test = tuple(sorted(s for s, f in assignment.items() if f == index))
        rest = [s for s, f in assignment.items() if f != index]
        train, validation = split_validation(rest, seizures, validation_fraction,
                                             np.random.default_rng([seed, index]))
        folds.append(Fold(index, test, validation, train))
    return folds
