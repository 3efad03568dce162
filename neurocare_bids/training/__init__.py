"""Training: the participant level's windows → trained models.

:mod:`.input_pipeline` streams the windows from the TFRecords as (augmented) ``tf.data`` batches, :mod:`.models`
builds the Keras detectors (one signature for all), :mod:`.losses` their losses, and :mod:`.fit` trains a network, or
the feature baseline of :mod:`.baseline` (on the window features of :mod:`.features`), on a fold's training subjects,
on the devices :mod:`.distribute` picks, with optional experiment tracking (:mod:`.tracking`) and a checkpoint
after every epoch to resume from (:mod:`.checkpoints`). :mod:`.onnx_export`
makes the ONNX copies a trained model ships with, :mod:`.baseline_onnx` that of a stacked model's classifier. What is chosen after training (thresholds, the stacking weight) is not here: see ``evaluation``.

Stage 3 of 7. Imports only `preprocessing`, `io` and the shared modules (`config`, `console`, `errors`).
"""
