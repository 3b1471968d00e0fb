"""Convolution on the NPU: im2col on every core (the scalar unit's multi-block copy), the product on the cube unit
(float16 inputs accumulate in float32), the bias and activation as the element-wise epilogue; against numpy."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import ember

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402


@pytest.fixture(scope="module")
def emulator():
    if shutil.which("g++") is None:
        pytest.skip("g++ is not installed: the AscendC emulator needs it")


def _conv_model(n, c, oc, h, w, k, stride, pad, dtype, bias=True):
    rng = np.random.default_rng(c * 31 + oc)
    tp = TensorProto.FLOAT16 if dtype == "float16" else TensorProto.FLOAT
    weight = rng.uniform(-1, 1, (oc, c, k, k)).astype(dtype)
    b = rng.uniform(-1, 1, oc).astype(dtype) if bias else None
    oh, ow = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
    nodes = [helper.make_node("Conv", ["x", "w", "b"] if bias else ["x", "w"], ["y"], kernel_shape=[k, k],
                              strides=[stride] * 2, pads=[pad] * 4),
             helper.make_node("Relu", ["y"], ["z"])]
    inits = [numpy_helper.from_array(weight, "w")] + ([numpy_helper.from_array(b, "b")] if bias else [])
    graph = helper.make_graph(nodes, "conv", [helper.make_tensor_value_info("x", tp, [n, c, h, w])],
                              [helper.make_tensor_value_info("z", tp, [n, oc, oh, ow])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), weight, b


def _reference(x, weight, bias, stride, pad):
    x, weight = x.astype("f8"), weight.astype("f8")
    n, c, h, w = x.shape
    oc, _, k, _ = weight.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    oh, ow = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
    out = np.zeros((n, oc, oh, ow))
    for dy in range(k):
        for dx in range(k):
            patch = xp[:, :, dy:dy + stride * oh:stride, dx:dx + stride * ow:stride]
            out += np.einsum("nchw,oc->nohw", patch, weight[:, :, dy, dx])
    if bias is not None:
        out += bias.astype("f8")[None, :, None, None]
    return np.maximum(out, 0)


def _run(n, c, oc, h, w, k, stride, pad, dtype, cores, bias=True):
    """Compile for the emulator, compare with numpy, return the plan's kernels."""
    model, weight, b = _conv_model(n, c, oc, h, w, k, stride, pad, dtype, bias)
    compiled = ember.compile(model, target=f"ascend -emulate -cores={cores}")
    x = np.random.default_rng(h * 7 + w).uniform(-1, 1, (n, c, h, w)).astype(dtype)
    got = compiled(x)[0].astype("f8")
    tol = 2e-5 if dtype == "float32" else 3e-3 * np.sqrt(c * k * k)
    np.testing.assert_allclose(got, _reference(x, weight, b, stride, pad), rtol=tol, atol=tol)
    kernels = [kk for s in compiled.steps for kk in json.loads(s.kernel.source("ascend-plan"))["kernels"]]
    assert "matmul" in [kk["family"] for kk in kernels], kernels
    return kernels


@settings(max_examples=6, deadline=None)
@given(n=st.integers(1, 2), c=st.sampled_from([1, 3, 8]), oc=st.sampled_from([1, 5, 16]), h=st.integers(1, 9),
       w=st.sampled_from([1, 7, 12]), k=st.sampled_from([1, 3]), stride=st.integers(1, 2),
       dtype=st.sampled_from(["float32", "float16"]), cores=st.sampled_from([1, 3, 48]))
def test_conv_on_the_cube_matches_numpy(emulator, n, c, oc, h, w, k, stride, dtype, cores):
    kernels = _run(n, c, oc, h, w, k, stride, k // 2, dtype, cores)
    if k == 3:  # im2col: a copy split across the cores (its outer loops flattened until they cover them)
        col = next(kk for kk in kernels if kk["family"] == "scalar")
        assert col["blocks"] == 1 if cores == 1 else 1 < col["blocks"] <= cores, col


@settings(max_examples=5, deadline=None)
@given(n=st.integers(1, 2), c=st.sampled_from([1, 2, 7]), oc=st.sampled_from([1, 3, 11]),
       h=st.sampled_from([1, 2, 5, 13]), w=st.sampled_from([1, 3, 11]), k=st.sampled_from([1, 3]),
       stride=st.integers(1, 2), pad=st.sampled_from([0, 2]), dtype=st.sampled_from(["float32", "float16"]),
       cores=st.sampled_from([2, 5, 64]))
def test_conv_other_pads_no_bias_more_cores_than_work(emulator, n, c, oc, h, w, k, stride, pad, dtype, cores):
    if h + 2 * pad < k or w + 2 * pad < k:
        return  # no output position: ONNX rejects the shape
    for kk in _run(n, c, oc, h, w, k, stride, pad, dtype, cores, bias=False):
        if kk["family"] == "scalar":  # copies share the cores; one block only where there is one unit of work
            assert kk["blocks"] > 1 or n * c * h * w == 1, kk
