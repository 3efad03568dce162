"""Put this folder on PYTHONPATH to run Python as on a machine without TensorFlow (a GPU node with JAX alone):
importing TensorFlow, or its exporter and logger, fails as an uninstalled package does, and ``find_spec`` finds
nothing. With ``NO_TENSORFLOW_LOG`` set, each interpreter started so appends a line to that file, and each
attempt to import what is hidden one more."""

import os
import sys

HIDDEN = ("tensorflow", "tf2onnx", "tf_keras", "tensorboard")


class _NoTensorFlow:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in HIDDEN:
            if os.environ.get("NO_TENSORFLOW_LOG"):
                with open(os.environ["NO_TENSORFLOW_LOG"], "a") as fh:
                    fh.write(name + "\n")
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, _NoTensorFlow())
if os.environ.get("NO_TENSORFLOW_LOG"):
    with open(os.environ["NO_TENSORFLOW_LOG"], "a") as _log:
        _log.write(f"hidden in process {os.getpid()}\n")
