"""The default GPU schedule of row-wise normalisations: softmax, log-softmax, layer norm and RMS norm compile to
ONE kernel (a block per row, the row reductions combined across the block's threads), checked against numpy on
the CUDA emulator (checking mode) for row lengths of 1, primes, non-multiples of 32 and a few thousand.

The models have symbolic sizes, so each is compiled once and reused across hypothesis examples."""
from __future__ import annotations

import functools
import shutil

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from onnx import TensorProto, helper

import ember
from ember.testing import gpu_test_target, gpu_test_unavailable

EMU = gpu_test_target()
pytestmark = pytest.mark.skipif(gpu_test_unavailable() is not None, reason=str(gpu_test_unavailable()))
ROWS = st.sampled_from([1, 2, 7, 31, 97])
LENGTHS = st.sampled_from([1, 7, 31, 32, 97, 257, 1000, 3000])


def _model(node, inputs: list[tuple[str, list]]):
    ins = [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs]
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", "m"])
    graph = helper.make_graph([node], "g", ins, [out])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@functools.cache
def softmax_model(op: str):
    return ember.compile(_model(helper.make_node(op, ["x"], ["y"], axis=-1), [("x", ["n", "m"])]), target=EMU)


@functools.cache
def layer_norm_model():
    node = helper.make_node("LayerNormalization", ["x", "scale", "bias"], ["y"], axis=-1, epsilon=1e-5)
    return ember.compile(_model(node, [("x", ["n", "m"]), ("scale", ["m"]), ("bias", ["m"])]), target=EMU)


@functools.cache
def rms_norm_kernel():
    n, m = ember.var("n"), ember.var("m")
    x = ember.placeholder((n, m), name="x")
    r = ember.reduce_axis(m, "r")
    ss = ember.compute((n,), lambda i: ember.sum(x[i, r.var] * x[i, r.var], axis=r), name="ss")
    y = ember.compute((n, m), lambda i, j: x[i, j] / ember.sqrt(ss[i] / ember.cast("float32", m) + 1e-6), name="y")
    return ember.build(y, [x, y], target=EMU, name="rms_norm")


def _only_kernel(compiled) -> ember.Kernel:
    (step,) = compiled.steps
    return step.kernel


def _out(result) -> np.ndarray:
    return result[0] if isinstance(result, (list, tuple)) else result


def _data(rows: int, length: int, seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal((rows, length)) * 3 + 1).astype(np.float32)


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
def test_softmax_is_one_kernel(op):
    assert _only_kernel(softmax_model(op)).source("cuda").count("__global__") == 1


def test_layer_norm_and_rms_norm_are_one_kernel():
    assert _only_kernel(layer_norm_model()).source("cuda").count("__global__") == 1
    assert rms_norm_kernel().source("cuda").count("__global__") == 1


@settings(max_examples=8, deadline=None)
@given(ROWS, LENGTHS, st.integers(0, 99))
def test_softmax_matches_numpy(rows, length, seed):
    x = _data(rows, length, seed)
    shifted = x - x.max(axis=-1, keepdims=True)
    want = np.exp(shifted) / np.exp(shifted).sum(axis=-1, keepdims=True)
    np.testing.assert_allclose(_out(softmax_model("Softmax")(x)), want, rtol=1e-5, atol=1e-6)


@settings(max_examples=4, deadline=None)
@given(ROWS, LENGTHS, st.integers(0, 99))
def test_log_softmax_matches_numpy(rows, length, seed):
    x = _data(rows, length, seed)
    shifted = x - x.max(axis=-1, keepdims=True)
    want = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    np.testing.assert_allclose(_out(softmax_model("LogSoftmax")(x)), want, rtol=1e-4, atol=1e-4)


@settings(max_examples=8, deadline=None)
@given(ROWS, LENGTHS, st.integers(0, 99))
def test_layer_norm_matches_numpy(rows, length, seed):
    x = _data(rows, length, seed)
    rng = np.random.default_rng(seed + 1)
    scale, bias = rng.standard_normal(length).astype(np.float32), rng.standard_normal(length).astype(np.float32)
    want = (x - x.mean(axis=-1, keepdims=True)) / np.sqrt(x.var(axis=-1, keepdims=True) + 1e-5) * scale + bias
    np.testing.assert_allclose(_out(layer_norm_model()(x, scale, bias)), want, rtol=1e-4, atol=1e-4)


@settings(max_examples=4, deadline=None)
@given(ROWS, LENGTHS, st.integers(0, 99))
def test_rms_norm_matches_numpy(rows, length, seed):
    x = _data(rows, length, seed)
    want = x / np.sqrt((x * x).mean(axis=-1, keepdims=True) + 1e-6)
    np.testing.assert_allclose(rms_norm_kernel()(x), want, rtol=1e-4, atol=1e-5)


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed")
def test_nvcc_compiles_the_row_kernels():
    from ember.codegen.cuda import nvcc
    sources = [_only_kernel(softmax_model("Softmax")).source("cuda"), _only_kernel(layer_norm_model()).source("cuda")]
    resources = nvcc.compile_check(sources, ("sm_80",))
    assert resources and nvcc.spills(resources) == []


@settings(max_examples=4, deadline=None)
@given(st.sampled_from([1, 5]), st.sampled_from([7, 1000, 8192, 9000]), st.integers(0, 99))
def test_fixed_rows_are_read_from_global_memory_once(rows, length, seed):
    """Rows of known length up to 32 KB are copied into shared memory once per block, where the reductions and the
    output read them; longer rows are read from global memory by each (the cache absorbs the repeats)."""
    node = helper.make_node("Softmax", ["x"], ["y"], axis=-1)
    ins = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [rows, length])]
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, [rows, length])
    model = helper.make_model(helper.make_graph([node], "fixed", ins, [out]),
                              opset_imports=[helper.make_opsetid("", 17)])
    compiled = ember.compile(model, target=EMU)
    src = compiled.steps[0].kernel.source("cuda")
    staged = length * 4 <= 32 * 1024
    assert ("in0_shared" in src) == staged and (src.count("in0[") == 1) == staged
    x = np.random.default_rng(seed).standard_normal((rows, length)).astype(np.float32) * 4
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    np.testing.assert_allclose(compiled(x)[0], e / e.sum(axis=-1, keepdims=True), rtol=1e-5, atol=1e-6)
