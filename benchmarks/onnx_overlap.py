#!/usr/bin/env python
"""What computing the first convolution once per half window would save in apply mode (measured, not adopted).

Apply mode predicts consecutive windows that overlap by half (4 s windows, 2 s stride), so every sample passes
through the network's first convolution (64 taps x 19 channels, about half of the network's work) twice. This
script measures the alternative on the default network's own ``model.onnx``: a rewritten ONNX graph that takes a
run of consecutive windows, cuts it into half-window blocks, convolves each block once (zero-padded by the kernel
on both sides) and adds the two partial sums where a window's halves meet. By linearity the result is the
window-by-window convolution, up to float32 rounding. The rest of the graph is unchanged.

One run builds the default network (untrained weights: the work per window does not depend on them), exports it
as the group level does, rewrites the graph, checks that both graphs give the same probabilities on runs of 1, 2
and ``--windows`` consecutive windows (largest difference printed; above 1e-5 the script fails), and times both
on one ONNX Runtime thread, fastest of ``--repeats``, in batches of ``--windows`` (apply mode's 64)::

    python benchmarks/onnx_overlap.py                  # ~30 s on 2 cores
    python benchmarks/onnx_overlap.py --repeats 1 --windows 8 --json overlap.json

Why it is not in apply mode (documentation, Performance: apply mode): the rewritten graph is specific to this
app's batching (consecutive windows at half-window stride) and would ship as a second ONNX file beside
``model.onnx``, for about 11 % less work per window.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # this checkout's neurocare_bids

TOLERANCE = 1e-5


def overlapped_graph(model):
    """``model`` (an ``onnx.ModelProto`` of windows ``(n, n_times, n_chans)``) rewritten so that its first
    convolution runs once per half window of a run of consecutive, half-overlapping windows; None when the
    graph's first convolution is not the plain stride-1 'same' convolution this needs."""
    import numpy as np
    from onnx import helper, numpy_helper

    g = model.graph
    source = g.input[0].name
    consumers: dict[str, list] = {}
    for node in g.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    conv = None  # tf2onnx's Conv1D: input -> Unsqueeze -> Transpose(0, 3, 1, 2) -> Conv (kernel 1 x k)
    for unsqueeze in (n for n in consumers.get(source, []) if n.op_type == "Unsqueeze"):
        for transpose in (n for n in consumers.get(unsqueeze.output[0], []) if n.op_type == "Transpose"):
            if list(helper.get_attribute_value(transpose.attribute[0])) == [0, 3, 1, 2]:
                conv = next((n for n in consumers.get(transpose.output[0], []) if n.op_type == "Conv"), conv)
    if conv is None:
        return None
    attrs = {a.name: helper.get_attribute_value(a) for a in conv.attribute}
    height, k = attrs["kernel_shape"]
    pads = attrs.get("pads", [0, 0, 0, 0])
    n_times = g.input[0].type.tensor_type.shape.dim[1].dim_value
    half, left, right = n_times // 2, pads[1], pads[3]
    if (height != 1 or attrs.get("group", 1) != 1 or any(v != 1 for v in attrs.get("strides", [1, 1]))
            or any(v != 1 for v in attrs.get("dilations", [1, 1])) or pads[0] or pads[2] or n_times % 2
            or left + right != k - 1 or max(left, right) > half or len(conv.input) > 2):
        return None
    nodes, prefix, big = [], "overlap/", 2**62

    def const(name, values):
        g.initializer.append(numpy_helper.from_array(np.asarray(values, np.int64), prefix + name))
        return prefix + name

    def node(op, inputs, name, **kw):
        nodes.append(helper.make_node(op, inputs, [prefix + name], **kw))
        return prefix + name

    def cut(x, starts, ends, axes, name):
        return node("Slice", [x, const(name + "_s", starts), const(name + "_e", ends), const(name + "_a", axes)], name)

    x = conv.input[0]  # (n, chans, 1, n_times): window n is blocks n and n + 1
    blocks = node("Concat", [cut(x, [0], [half], [3], "first_halves"),
                             cut(x, [-1, half], [big, n_times], [0, 3], "last_half")], "blocks", axis=0)
    # each block convolved once, with k - 1 zeros on both sides: output u' is window position u' - right
    full = node("Conv", [blocks, conv.input[1]], "full", kernel_shape=[1, k], pads=[0, k - 1, 0, k - 1],
                strides=[1, 1], dilations=[1, 1], group=1)
    as_first = cut(full, [0], [-1], [0], "as_first")    # block n as window n's first half
    as_second = cut(full, [1], [big], [0], "as_second")  # block n + 1 as window n's second half
    parts = []
    if half > right:
        parts.append(cut(as_first, [right], [half], [3], "head"))
    if right:  # the end of the first half also hears the start of the second
        parts.append(node("Add", [cut(as_first, [half], [half + right], [3], "tail_a"),
                                  cut(as_second, [0], [right], [3], "tail_b")], "tail"))
    if left:  # the start of the second half also hears the end of the first
        parts.append(node("Add", [cut(as_second, [right], [right + left], [3], "meet_a"),
                                  cut(as_first, [half + right], [half + right + left], [3], "meet_b")], "meet"))
    parts.append(cut(as_second, [right + left], [right + half], [3], "rest"))
    nodes.append(helper.make_node("Concat", parts, [conv.output[0]], axis=3))
    at = list(g.node).index(conv)
    del g.node[at]
    for i, new in enumerate(nodes):
        g.node.insert(at + i, new)
    return model


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--windows", type=int, default=64, help="consecutive windows per call (default: 64)")
    p.add_argument("--repeats", type=int, default=5, help="timed passes of 20 calls, fastest kept (default: 5)")
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the figures as JSON")
    args = p.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import numpy as np
    import onnx
    import onnxruntime as ort

    from neurocare_bids.config import Config
    from neurocare_bids.training.models import build_model
    from neurocare_bids.training.onnx_export import export_onnx

    cfg = Config()
    keras.utils.set_random_seed(0)
    n_times, stride, n_chans = cfg.window_samples, cfg.window_stride_samples, 19
    if 2 * stride != n_times:
        raise SystemExit(f"the default windows overlap by {1 - stride / n_times:g}, not by half")
    with tempfile.TemporaryDirectory() as tmp:
        network = build_model(n_chans, 2, n_times, cfg.preprocessing.sfreq, cfg.model)
        export_onnx(network, Path(tmp))
        plain_bytes = (Path(tmp) / "model.onnx").read_bytes()
    rewritten = overlapped_graph(onnx.load_from_string(plain_bytes))
    if rewritten is None:
        raise SystemExit("the default network's first convolution is not a plain 'same' convolution")
    onnx.checker.check_model(rewritten)
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = 1, 1
    sessions = {name: ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
                for name, data in (("per window", plain_bytes), ("overlapped", rewritten.SerializeToString()))}
    signal = np.random.default_rng(0).standard_normal(((args.windows + 1) * stride, n_chans)).astype(np.float32)
    windows = np.ascontiguousarray(np.lib.stride_tricks.sliding_window_view(signal, (n_times, n_chans))[::stride, 0])
    name = sessions["per window"].get_inputs()[0].name
    difference = 0.0
    for n in sorted({1, 2, args.windows}):
        a, b = (s.run(None, {name: windows[:n]})[0] for s in sessions.values())
        difference = max(difference, float(np.abs(a - b).max()))
    if not difference <= TOLERANCE:
        raise SystemExit(f"the overlapped graph differs from the per-window graph by {difference:.2g}")
    ms = {}
    for label, session in sessions.items():
        best = np.inf
        for _ in range(max(1, args.repeats)):
            start = time.perf_counter()
            for _ in range(20):
                session.run(None, {name: windows})
            best = min(best, (time.perf_counter() - start) / (20 * len(windows)))
        ms[label] = 1e3 * best
    saving = 1 - ms["overlapped"] / ms["per window"]
    print(f"largest difference {difference:.2g} (tolerance {TOLERANCE:g}); one ONNX Runtime {ort.__version__} thread, "
          f"batches of {len(windows)} consecutive windows: {ms['per window']:.3f} ms per window as exported, "
          f"{ms['overlapped']:.3f} ms overlapped ({saving:.1%} less)")
    if args.json:
        args.json.write_text(json.dumps({"max_abs_difference": difference, "ms_per_window": ms, "saving": saving,
                                         "windows": len(windows), "onnxruntime": ort.__version__}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
