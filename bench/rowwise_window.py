"""Depthwise conv, pooling, Softmax and LayerNormalization: ember next to onnxruntime, single-threaded, by process
CPU time (the window and row-wise default schedules of compiler/rules_window.py and compiler/rules_rowwise.py).

Run:  OPENBLAS_NUM_THREADS=1 python -m bench.rowwise_window            (from the repository root, about a minute)
      OPENBLAS_NUM_THREADS=1 python -m bench.rowwise_window --only Softmax

On a shared machine wall-clock time is noisy; process CPU time of single-threaded runs (ember target
"llvm -threads=1", onnxruntime intra_op_num_threads=1) is not, so ratios are min over repeats of
time.process_time() around a batch of calls, taken in the same process. Ratio = ember / onnxruntime.
Writes bench/results/rowwise_window.json.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper

import ember

from .common import machine, table, write_json
from .perf_kernels import Case, conv, layernorm, maxpool, onnx_model, rand, softmax

TARGET = "llvm -threads=1"


def avgpool(c: int, hw: int) -> Case:
    x = rand(np.random.default_rng(8), 1, c, hw, hw)
    node = helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1])
    return Case("AveragePool 3x3/1", f"1x{c}x{hw}x{hw}", onnx_model([node], {"x": x.shape}, ["y"]), {"x": x},
                8.0 * c * hw * hw, "GB/s")


def cases() -> list[Case]:
    out = [conv(c, hw, 3, stride, group=c) for c, hw, stride in ((32, 112, 1), (144, 56, 1), (144, 56, 2),
                                                                 (384, 14, 1))]
    return out + [maxpool(64, 112), avgpool(64, 56), softmax((1, 12, 128, 128)), layernorm(128, 768)]


def cpu_time(fn, budget: float = 0.6, batch_min: float = 0.01) -> float:
    """Min over repeats of the process CPU time per call, each repeat a batch long enough to time reliably."""
    fn()
    t0 = time.process_time()
    fn()
    once = max(time.process_time() - t0, 1e-6)
    batch = max(1, int(batch_min / once))
    best = float("inf")
    start = time.process_time()
    while time.process_time() - start < budget or best == float("inf"):
        t0 = time.process_time()
        for _ in range(batch):
            fn()
        best = min(best, (time.process_time() - t0) / batch)
    return best


def session(model: onnx.ModelProto) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="run only cases whose name contains this text")
    parser.add_argument("--budget", type=float, default=0.6, help="CPU seconds per measurement")
    args = parser.parse_args()
    rows = []
    for case in cases():
        if args.only not in case.name:
            continue
        model = ember.compile(case.model, target=TARGET)
        sess = session(case.model)
        got, want = model(**case.feeds), sess.run(None, case.feeds)
        got = got if isinstance(got, (list, tuple)) else [got]
        ok = all(np.allclose(g, w, rtol=1e-4, atol=1e-4) for g, w in zip(got, want))
        t_ember = cpu_time(lambda: model(**case.feeds), args.budget)
        t_ort = cpu_time(lambda: sess.run(None, case.feeds), args.budget)
        rows.append([case.name, case.shape, f"{t_ember * 1e6:.1f}", f"{t_ort * 1e6:.1f}",
                     f"{t_ember / t_ort:.2f}", "ok" if ok else "DIFF"])
        print("  ".join(rows[-1]), flush=True)
    header = ["kernel", "shape", "ember us", "ort us", "ratio", "check"]
    print()
    print(table(rows, header))
    path = write_json("rowwise_window", {"machine": machine(), "target": TARGET, "ort_threads": 1,
                                         "rows": [dict(zip(header, r)) for r in rows]})
    print(f"\nwritten to {path}")


if __name__ == "__main__":
    main()
