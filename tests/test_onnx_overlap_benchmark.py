"""benchmarks/onnx_overlap.py (the consecutive-window graph against model.onnx, per window) and the rewrite's refusals."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "onnx_overlap.py"


def test_consecutive_graph_gives_the_per_window_probabilities(tmp_path):
    """The exported consecutive-window graph is checked against model.onnx on runs of 1, 2 and 8 consecutive
    windows (the script fails above 1e-5) and both are timed."""
    out = tmp_path / "overlap.json"
    result = subprocess.run([sys.executable, str(SCRIPT), "--windows", "8", "--repeats", "1", "--json", str(out)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    figures = json.loads(out.read_text())
    assert figures["windows"] == 8
    assert 0 <= figures["max_abs_difference"] <= 1e-5
    assert set(figures["ms_per_window"]) == {"per window", "overlapped"}
    assert all(v > 0 for v in figures["ms_per_window"].values())


def test_a_graph_whose_first_layer_is_not_a_plain_convolution_is_left_alone():
    """The rewrite applies only to a stride-1 'same' convolution reading the input: anything else gives None."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    from neurocare_bids.training.onnx_export import consecutive_graph

    weights = numpy_helper.from_array(np.ones((4, 3, 1, 5), np.float32), "w")
    nodes = [helper.make_node("Unsqueeze", ["eeg", "axes"], ["u"]),
             helper.make_node("Transpose", ["u"], ["t"], perm=[0, 3, 1, 2]),
             helper.make_node("Conv", ["t", "w"], ["y"], kernel_shape=[1, 5], pads=[0, 2, 0, 2], strides=[1, 2])]
    graph = helper.make_graph(nodes, "strided", [helper.make_tensor_value_info("eeg", TensorProto.FLOAT, ["n", 16, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [weights, numpy_helper.from_array(np.array([1], np.int64), "axes")])
    assert consecutive_graph(helper.make_model(graph)) is None  # stride 2: not rewritten
