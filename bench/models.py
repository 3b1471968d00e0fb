"""Model-level figures: per-inference overhead of the executor on a tiny model, and the bundled light models
(compile time, run time) side by side with onnxruntime.

Run:  python -m bench.models            (from the repository root, after `pip install -e ".[test]"`)
      python -m bench.models --light resnet50 squeezenet   (a subset of the light models)
Writes `bench/results/models.json`.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
from onnx import TensorProto, helper

import ember

from .common import machine, measure, table, write_json


def tiny_model():
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"], name="relu")], "tiny",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def overhead() -> list[list[str]]:
    """Microseconds per call of a one-kernel model on 4 floats: the executor's fixed cost."""
    import onnxruntime as ort
    m = tiny_model()
    x = np.float32([[1, -2, 3, -4]])
    compiled = ember.compile(m)
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    e = measure(lambda: compiled(x), repeats=2000, warmup=100)
    o = measure(lambda: sess.run(None, {"x": x}), repeats=2000, warmup=100)
    return [["tiny Relu [1,4]", f"{e['median'] * 1e6:.1f}", f"{o['median'] * 1e6:.1f}",
             f"{o['median'] / e['median']:.2f}"]]


def light(names: list[str]) -> list[list[str]]:
    import onnx
    import onnxruntime as ort

    from tests.onnx.test_light_models import LIGHT_DIR, runner_inputs
    rows = []
    for name in names:
        model = onnx.load(str(LIGHT_DIR / f"light_{name}.onnx"))
        feeds = runner_inputs(model)
        t0 = time.perf_counter()
        compiled = ember.compile(model)
        compile_s = time.perf_counter() - t0
        sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        e = measure(lambda: compiled.run(feeds), repeats=3, warmup=1)
        o = measure(lambda: sess.run(None, feeds), repeats=3, warmup=1)
        rows.append([name, f"{compile_s:.1f}", f"{e['median'] * 1e3:.1f}", f"{o['median'] * 1e3:.1f}",
                     f"{o['median'] / e['median']:.2f}", f"{compiled.planned_peak_bytes / 1e6:.1f}"])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--light", nargs="*", default=["squeezenet", "resnet50"],
                        help="light models to time (default: squeezenet resnet50)")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    over = overhead()
    print(table(over, ["model", "ember us/call", "onnxruntime us/call", "ratio (ort/ember)"]))
    rows = light(args.light)
    print(table(rows, ["model", "compile s", "ember ms", "onnxruntime ms", "ratio (ort/ember)", "arena MB"]))
    write_json("models", {"machine": machine(), "overhead": over, "light": rows})


if __name__ == "__main__":
    main()
