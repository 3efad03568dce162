"""NeuroCare-BIDS: a BIDS-App for epileptic seizure detection in scalp EEG.

The package is laid out by pipeline stage, in the order the data flows: ``io`` (BIDS input and the files on disk)
→ ``preprocessing`` (recordings → windows; the participant level) → ``training`` (windows → models) → ``detection``
(models → probabilities → events) → ``evaluation`` (events → scores; the group level) → ``reports`` → ``cli``, with
the shared modules ``config``, ``console`` and ``errors``. A stage imports only the stages before it and the shared
modules (each stage's docstring says which; ``[tool.importlinter]`` in pyproject.toml states it and
``tests/test_layout.py`` checks it). Importing this package imports nothing heavy.
"""

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

__version__ = "0.1.0"
CODE_URL = "https://github.com/neurocare-bids/neurocare-bids"

#: Where each module of the flat layout of 0.1.0 lives now. Files saved by earlier versions name the old paths (the
#: pickled feature baseline, ``features.joblib``/``model.joblib``: ``neurocare_bids.baseline.QuantileBins``), and so
#: may scripts: importing an old path gives the module at its new place (the very same module object), with a
#: DeprecationWarning. Names that moved between modules (``tune`` from ``postprocess`` to ``evaluation.tuning``, the
#: training of ``group`` to ``training.fit``) are found at their new place only.
MOVED_MODULES = {
    "bids_input": "io.bids_input", "demo": "io.demo", "derivatives": "io.derivatives", "edf": "io.edf",
    "events": "io.annotations", "fsutils": "io.fsutils", "signal_reader": "io.signal_reader", "tfrecord": "io.tfrecord",
    "validation": "io.validation",
    "preprocess": "preprocessing.filters", "montage": "preprocessing.montage",
    "participant": "preprocessing.participant", "quality": "preprocessing.quality",
    "baseline": "training.baseline", "distribute": "training.distribute", "input_pipeline": "training.input_pipeline",
    "losses": "training.losses", "models": "training.models", "onnx_export": "training.onnx_export",
    "tracking": "training.tracking",
    "apply": "detection.apply", "live": "detection.live", "postprocess": "detection.postprocess",
    "stacking": "detection.stacking", "streaming": "detection.streaming", "szcore": "detection.szcore",
    "cv": "evaluation.cv", "group": "evaluation.group", "metrics": "evaluation.metrics",
    "model_card": "evaluation.model_card",
}


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """``neurocare_bids.<old name>`` → the module at its new place (:data:`MOVED_MODULES`). First on
    ``sys.meta_path``: an old name is never looked for on disk (where only a stale copy could be)."""

    def find_spec(self, fullname, path=None, target=None):
        package, _, name = fullname.rpartition(".")
        if package == __name__ and name in MOVED_MODULES:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        new = f"{__name__}.{MOVED_MODULES[spec.name.rpartition('.')[2]]}"
        warnings.warn(f"{spec.name} is {new} since the package was laid out by stage", DeprecationWarning,
                      stacklevel=2)
        return importlib.import_module(new)

    def exec_module(self, module):
        pass  # executed under its new name already


if not any(isinstance(finder, _MovedModules) for finder in sys.meta_path):
    sys.meta_path.insert(0, _MovedModules())
