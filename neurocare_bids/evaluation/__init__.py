"""Evaluation: events → SzCORE scores; the group level, which cross-validates the detector and trains the model.

:mod:`.metrics` scores windows and events as SzCORE does, :mod:`.tuning` chooses the post-processing on the inner
validation subjects with those scores, :mod:`.cv` makes the subject-wise folds, :mod:`.plan` reads the inputs and
plans the folds (without Keras), :mod:`.fold_jobs` trains folds as separate processes, and :mod:`.group` runs the group
level: every fold trained (``training``), tuned and tested (``detection``), the pooled out-of-fold metrics, the SzCORE
tree, and the final model with the model card :mod:`.model_card` fills in.

Stage 5 of 7. Imports only `detection`, `training`, `preprocessing`, `io` and the shared modules (`config`,
`console`, `errors`).
"""
