"""The main job end to end: compile the bundled ONNX model (a small CNN, examples/tiny_cnn.onnx), check it
against onnx's reference evaluator, save it ahead of time, load it back and time it.

Run:  python examples/onnx_model.py
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

import ember

MODEL = Path(__file__).with_name("tiny_cnn.onnx")


def make_tiny_cnn() -> onnx.ModelProto:
    """Conv-BN-Relu-MaxPool, twice, then Gemm and Softmax, with fixed random weights (how tiny_cnn.onnx was made)."""
    rng = np.random.default_rng(0)

    def init(name, *shape, scale=0.2):
        return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)

    nodes, inits, prev, ch = [], [], "image", 3
    for k, out_ch in enumerate((8, 16)):
        inits += [init(f"w{k}", out_ch, ch, 3, 3), init(f"b{k}", out_ch),
                  numpy_helper.from_array(rng.random(out_ch).astype(np.float32) + 0.5, f"bn_s{k}"),
                  init(f"bn_b{k}", out_ch), init(f"bn_m{k}", out_ch),
                  numpy_helper.from_array(rng.random(out_ch).astype(np.float32) + 0.5, f"bn_v{k}")]
        nodes += [helper.make_node("Conv", [prev, f"w{k}", f"b{k}"], [f"c{k}"], name=f"conv{k}", pads=[1, 1, 1, 1]),
                  helper.make_node("BatchNormalization", [f"c{k}", f"bn_s{k}", f"bn_b{k}", f"bn_m{k}", f"bn_v{k}"],
                                   [f"n{k}"], name=f"bn{k}"),
                  helper.make_node("Relu", [f"n{k}"], [f"r{k}"], name=f"relu{k}"),
                  helper.make_node("MaxPool", [f"r{k}"], [f"p{k}"], name=f"pool{k}", kernel_shape=[2, 2],
                                   strides=[2, 2])]
        prev, ch = f"p{k}", out_ch
    inits += [init("fc_w", 10, 16 * 8 * 8, scale=0.05), init("fc_b", 10)]
    nodes += [helper.make_node("Flatten", [prev], ["flat"], name="flatten"),
              helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["logits"], name="fc", transB=1),
              helper.make_node("Softmax", ["logits"], ["probs"], name="softmax", axis=1)]
    graph = helper.make_graph(nodes, "tiny_cnn", [helper.make_tensor_value_info("image", TensorProto.FLOAT,
                                                                               ["batch", 3, 32, 32])],
                              [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", 10])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def main() -> None:
    if not MODEL.exists():
        onnx.save(make_tiny_cnn(), str(MODEL))
    t0 = time.perf_counter()
    compiled = ember.compile(str(MODEL))
    print(f"compiled {MODEL.name} in {time.perf_counter() - t0:.2f}s")
    print(compiled.summary())
    images = np.random.default_rng(1).standard_normal((4, 3, 32, 32)).astype(np.float32)
    [probs] = compiled(images)
    [expected] = ReferenceEvaluator(str(MODEL)).run(None, {"image": images})
    err = float(np.abs(probs - expected).max())
    print(f"max |ember - onnx reference| = {err:.2e}")
    assert err < 1e-4, "ember disagrees with the reference"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tiny_cnn.ember"
        compiled.save(path)
        loaded = ember.load(path)
        np.testing.assert_array_equal(loaded(images)[0], probs)
        print(f"saved and reloaded {path.name} ({path.stat().st_size / 1e3:.0f} kB): same outputs")
    start = time.perf_counter()
    runs = 200
    for _ in range(runs):
        compiled(images)
    print(f"{(time.perf_counter() - start) / runs * 1e3:.3f} ms per batch of 4")


if __name__ == "__main__":
    main()
