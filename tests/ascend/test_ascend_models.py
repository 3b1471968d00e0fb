"""Whole models compiled for "ascend -emulate" match onnxruntime: an MLP (MatMul+Add+Relu, Gemm, Softmax) and a
small transformer block (LayerNorm, attention with Transpose/MatMul/Softmax, a tanh feed-forward, residuals)."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import ember

ort = pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module", autouse=True)
def emulator():
    if shutil.which("g++") is None:
        pytest.skip("g++ is not installed: the AscendC emulator needs it")
    return pytest.importorskip("ember.codegen.ascend.emulate", reason="the AscendC emulator is not available")


def _model(nodes, inits: dict, x_shape, y_shape, name: str):
    g = helper.make_graph(nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(y_shape))],
                          [numpy_helper.from_array(v, k) for k, v in inits.items()])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def mlp(rng, n=3, d_in=20, d_h=33, d_out=10):
    inits = {"w1": rng.standard_normal((d_in, d_h)).astype("f4") * 0.3, "b1": rng.standard_normal(d_h).astype("f4"),
             "w2": rng.standard_normal((d_h, d_out)).astype("f4") * 0.3, "b2": rng.standard_normal(d_out).astype("f4")}
    N = helper.make_node
    nodes = [N("MatMul", ["x", "w1"], ["h"]), N("Add", ["h", "b1"], ["hb"]), N("Relu", ["hb"], ["r"]),
             N("Gemm", ["r", "w2", "b2"], ["g"]), N("Softmax", ["g"], ["y"], axis=-1)]
    return _model(nodes, inits, (n, d_in), (n, d_out), "mlp")


def transformer_block(rng, s=5, d=16, ff=24):
    def w(*shape):
        return (rng.standard_normal(shape) * 0.3).astype("f4")
    inits = {"wq": w(d, d), "wk": w(d, d), "wv": w(d, d), "wo": w(d, d), "w1": w(d, ff), "w2": w(ff, d),
             "g1": w(d) + 1, "be1": w(d), "g2": w(d) + 1, "be2": w(d), "scale": np.array(1 / np.sqrt(d), "f4")}
    N = helper.make_node
    nodes = [N("LayerNormalization", ["x", "g1", "be1"], ["ln1"], axis=-1, epsilon=1e-5),
             N("MatMul", ["ln1", "wq"], ["q"]), N("MatMul", ["ln1", "wk"], ["k"]), N("MatMul", ["ln1", "wv"], ["v"]),
             N("Transpose", ["k"], ["kt"], perm=[1, 0]), N("MatMul", ["q", "kt"], ["qk"]),
             N("Mul", ["qk", "scale"], ["qks"]), N("Softmax", ["qks"], ["p"], axis=-1),
             N("MatMul", ["p", "v"], ["att"]), N("MatMul", ["att", "wo"], ["o"]), N("Add", ["x", "o"], ["x1"]),
             N("LayerNormalization", ["x1", "g2", "be2"], ["ln2"], axis=-1, epsilon=1e-5),
             N("MatMul", ["ln2", "w1"], ["f1"]), N("Tanh", ["f1"], ["f1t"]),
             N("MatMul", ["f1t", "w2"], ["f2"]), N("Add", ["x1", "f2"], ["y"])]
    return _model(nodes, inits, (s, d), (s, d), "block")


def conv_net(rng):
    """Conv (im2col + cube matmul) with bias and Relu, then a global average pool."""
    inits = {"w": (rng.standard_normal((6, 3, 3, 3)) * 0.3).astype("f4"), "b": rng.standard_normal(6).astype("f4")}
    N = helper.make_node
    nodes = [N("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]), N("Relu", ["c"], ["r"]),
             N("GlobalAveragePool", ["r"], ["y"])]
    return _model(nodes, inits, (1, 3, 9, 9), (1, 6, 1, 1), "conv")


@pytest.mark.parametrize("make, shape, cores", [(mlp, (3, 20), 4), (transformer_block, (5, 16), 3),
                                                (conv_net, (1, 3, 9, 9), 5)])
def test_model_matches_onnxruntime(make, shape, cores):
    rng = np.random.default_rng(0)
    model = make(rng)
    x = rng.standard_normal(shape).astype("f4")
    compiled = ember.compile(model, target=f"ascend -cores={cores} -emulate")
    ref = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(compiled(x)[0], ref, rtol=1e-4, atol=1e-5)
    families = {f for s in compiled.steps for f in
                (k["family"] for k in json.loads(s.kernel.source("ascend-plan"))["kernels"])}
    assert {"elementwise", "matmul"} <= families
