"""Whole models compiled for "cuda -emulate" (every fused partition built as CUDA and run on the emulator, or on
a GPU with EMBER_TEST_CUDA_TARGET=cuda) match onnxruntime: an MLP built with onnx.helper and the small CNN from examples/."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import ember
from ember.testing import gpu_test_target, gpu_test_unavailable

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

EMU = gpu_test_target()  # the CPU emulator; EMBER_TEST_CUDA_TARGET=cuda runs the same cases on a GPU
pytestmark = pytest.mark.skipif(gpu_test_unavailable() is not None, reason=str(gpu_test_unavailable()))
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def mlp() -> "onnx.ModelProto":
    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.standard_normal((20, 48)).astype(np.float32) * 0.3, "w1")
    b1 = numpy_helper.from_array(rng.standard_normal(48).astype(np.float32), "b1")
    w2 = numpy_helper.from_array(rng.standard_normal((10, 48)).astype(np.float32) * 0.3, "w2")
    b2 = numpy_helper.from_array(rng.standard_normal(10).astype(np.float32), "b2")
    nodes = [helper.make_node("Gemm", ["x", "w1", "b1"], ["h"]),
             helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("Gemm", ["r", "w2", "b2"], ["z"], transB=1),
             helper.make_node("Softmax", ["z"], ["y"], axis=1)]
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 20])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 10])],
                              [w1, b1, w2, b2])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _check(model: "onnx.ModelProto", feeds: dict[str, np.ndarray]) -> None:
    compiled = ember.compile(model, target=EMU)
    got = list(compiled.run(feeds).values())
    want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("batch", [1, 5])
def test_mlp_matches_onnxruntime(batch):
    _check(mlp(), {"x": np.random.default_rng(batch).standard_normal((batch, 20)).astype(np.float32)})


def test_small_cnn_matches_onnxruntime():
    model = onnx.load(str(EXAMPLES / "tiny_cnn.onnx"))
    name = model.graph.input[0].name
    x = np.random.default_rng(3).standard_normal((2, 3, 32, 32)).astype(np.float32)
    _check(model, {name: x})
