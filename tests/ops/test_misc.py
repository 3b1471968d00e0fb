"""RMSNormalization, Swish, SwiGLU, CumProd, the windows, RotaryEmbedding and Det against onnx's reference
evaluator (numpy for Det) on shapes and attributes the official node tests leave out, plus their errors."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

import ember
from ember.graph.registry import OpError

ELEM = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.float16): TensorProto.FLOAT16,
        np.dtype(np.float64): TensorProto.DOUBLE, np.dtype(np.int32): TensorProto.INT32,
        np.dtype(np.int64): TensorProto.INT64}


def model(op: str, inputs: dict[str, np.ndarray], consts: dict[str, np.ndarray], out_shape: tuple,
          out_type: "int | None" = None, opset: int = 23, **attrs):
    """A one-node model: `inputs` are graph inputs, `consts` initializers (node inputs in that order)."""
    names = list(inputs) + list(consts)
    node = helper.make_node(op, names, ["y"], **attrs)
    first = next(iter(inputs.values()), None)
    graph = helper.make_graph(
        [node], op.lower(), [helper.make_tensor_value_info(k, ELEM[v.dtype], v.shape) for k, v in inputs.items()],
        [helper.make_tensor_value_info("y", out_type or ELEM[first.dtype], out_shape)],
        [numpy_helper.from_array(v, k) for k, v in consts.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def check(op: str, inputs: dict[str, np.ndarray], consts: "dict[str, np.ndarray] | None" = None,
          out_type: "int | None" = None, opset: int = 23, rtol: float = 1e-5, atol: float = 1e-5,
          **attrs) -> None:
    consts = consts or {}
    m = model(op, inputs, consts, (), out_type, opset, **attrs)
    (expected,) = ReferenceEvaluator(m).run(None, inputs)
    m.graph.output[0].CopyFrom(helper.make_tensor_value_info("y", m.graph.output[0].type.tensor_type.elem_type,
                                                             expected.shape))
    (got,) = ember.compile(m)(*inputs.values())
    assert got.shape == expected.shape and got.dtype == expected.dtype
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=atol)


def rand(rng: np.random.Generator, *shape: int, dtype=np.float32) -> np.ndarray:
    return rng.standard_normal(shape).astype(dtype)


@pytest.mark.parametrize("shape,axis,scale_shape", [((2, 3, 5), -1, (5,)), ((2, 3, 5), 1, (3, 5)),
                                                    ((4, 6), 0, (1, 6)), ((2, 3, 4), -2, (2, 3, 4))])
def test_rms_normalization(shape, axis, scale_shape):
    rng = np.random.default_rng(0)
    check("RMSNormalization", {"x": rand(rng, *shape), "s": rand(rng, *scale_shape)}, axis=axis, epsilon=1e-3)


def test_rms_normalization_float16_stashes_in_float32():
    rng = np.random.default_rng(1)
    x, s = rand(rng, 3, 64, dtype=np.float16), rand(rng, 64, dtype=np.float16)
    m = model("RMSNormalization", {"x": x, "s": s}, {}, x.shape)
    (got,) = ember.compile(m)(x, s)
    x32 = x.astype(np.float32)
    normalized = (x32 / np.sqrt((x32 * x32).mean(-1, keepdims=True) + 1e-5)).astype(np.float16)
    np.testing.assert_allclose(got.astype(np.float32), (normalized * s).astype(np.float32), rtol=2e-3, atol=2e-3)


def test_rms_normalization_rejects_bad_scale():
    x = np.ones((2, 3), np.float32)
    with pytest.raises(OpError, match="does not broadcast"):
        ember.compile(model("RMSNormalization", {"x": x, "s": np.ones(2, np.float32)}, {}, x.shape))


@pytest.mark.parametrize("alpha", [1.0, 0.5, 1.702])
def test_swish(alpha):
    x = rand(np.random.default_rng(2), 3, 7) * 4
    check("Swish", {"x": x}, opset=24, alpha=alpha)


def test_swiglu():
    rng = np.random.default_rng(3)
    a, b = rand(rng, 2, 5), rand(rng, 2, 5)
    m = model("SwiGLU", {"a": a, "b": b}, {}, a.shape, opset=28, alpha=0.75)
    expected = a / (1 + np.exp(-0.75 * a)) * b
    np.testing.assert_allclose(ember.compile(m)(a, b)[0], expected, rtol=1e-5, atol=1e-6)


def test_swiglu_rejects_mismatched_shapes():
    a, b = np.ones((2, 4), np.float32), np.ones((1, 4), np.float32)
    with pytest.raises(OpError, match="must match"):
        ember.compile(model("SwiGLU", {"a": a, "b": b}, {}, a.shape, opset=28))


@pytest.mark.parametrize("exclusive", [0, 1])
@pytest.mark.parametrize("reverse", [0, 1])
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_cumprod(exclusive, reverse, axis):
    x = np.random.default_rng(4).uniform(0.5, 1.5, (3, 4, 5)).astype(np.float32)
    check("CumProd", {"x": x}, {"axis": np.array(axis, np.int64)}, opset=26, exclusive=exclusive, reverse=reverse)


def test_cumprod_int():
    x = np.array([[1, 2, 3], [-1, 4, 2]], np.int32)
    check("CumProd", {"x": x}, {"axis": np.array(1, np.int32)}, opset=26, exclusive=1)


@pytest.mark.parametrize("op", ["HannWindow", "HammingWindow", "BlackmanWindow"])
@pytest.mark.parametrize("periodic", [0, 1])
@pytest.mark.parametrize("size,dtype", [(7, TensorProto.FLOAT), (16, TensorProto.DOUBLE), (2, TensorProto.FLOAT)])
def test_windows(op, periodic, size, dtype):
    m = model(op, {}, {"size": np.array(size, np.int64)}, (size,), dtype, 17, periodic=periodic,
              output_datatype=dtype)
    (expected,) = ReferenceEvaluator(m).run(None, {})
    (got,) = ember.compile(m)()
    assert got.dtype == expected.dtype
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)


def test_window_rejects_bool_output():
    m = model("HannWindow", {}, {"size": np.array(4, np.int64)}, (4,), TensorProto.BOOL, 17,
              output_datatype=TensorProto.BOOL)
    with pytest.raises(OpError, match="output_datatype"):
        ember.compile(m)


@pytest.mark.parametrize("interleaved", [0, 1])
@pytest.mark.parametrize("rot", [0, 4, 6])
def test_rotary_embedding_4d(interleaved, rot):
    rng = np.random.default_rng(5)
    half = (rot or 10) // 2
    x = rand(rng, 2, 3, 4, 10)
    cos, sin = rand(rng, 9, half), rand(rng, 9, half)
    pos = rng.integers(0, 9, (2, 4)).astype(np.int64)
    check("RotaryEmbedding", {"x": x, "cos": cos, "sin": sin, "pos": pos}, interleaved=interleaved,
          rotary_embedding_dim=rot)


@pytest.mark.parametrize("interleaved", [0, 1])
def test_rotary_embedding_3d_without_positions(interleaved):
    rng = np.random.default_rng(6)
    x = rand(rng, 2, 5, 3 * 8)
    cos, sin = rand(rng, 2, 5, 2), rand(rng, 2, 5, 2)
    check("RotaryEmbedding", {"x": x, "cos": cos, "sin": sin}, interleaved=interleaved, num_heads=3,
          rotary_embedding_dim=4)


def test_rotary_embedding_errors():
    x, cache = np.ones((1, 2, 12), np.float32), np.ones((4, 3), np.float32)
    pos = np.zeros((1, 2), np.int64)
    with pytest.raises(OpError, match="num_heads"):
        ember.compile(model("RotaryEmbedding", {"x": x, "c": cache, "s": cache, "p": pos}, {}, x.shape))
    with pytest.raises(OpError, match="cos_cache shape"):
        ember.compile(model("RotaryEmbedding", {"x": x, "c": cache, "s": cache, "p": pos}, {}, x.shape,
                            num_heads=3))


@pytest.mark.parametrize("shape", [(1, 1), (3, 3), (2, 4, 4), (2, 7, 7)])
def test_det(shape):
    x = rand(np.random.default_rng(7), *shape, dtype=np.float64)
    m = model("Det", {"x": x}, {}, shape[:-2], opset=22)
    np.testing.assert_allclose(ember.compile(m)(x)[0], np.linalg.det(x), rtol=1e-9, atol=1e-12)


def test_det_singular_and_pivoting():
    x = np.array([[[0, 1, 2], [3, 4, 5], [6, 7, 8]], [[0, 0, 1], [0, 1, 0], [1, 0, 0]],
                  [[0, 0, 0], [1, 2, 3], [4, 5, 6]]], np.float32)
    m = model("Det", {"x": x}, {}, (3,), opset=22)
    np.testing.assert_allclose(ember.compile(m)(x)[0], [0, -1, 0], atol=1e-5)


def test_det_rejects_non_square():
    with pytest.raises(OpError, match="square"):
        ember.compile(model("Det", {"x": np.ones((2, 3), np.float32)}, {}, (), opset=22))
