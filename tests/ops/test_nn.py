"""NN ops (convolution, pooling, normalization, matmul) against onnxruntime on random shapes and attributes,
plus the errors bad attributes and shapes give. The official node tests cover the fixed ONNX examples."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

import ember
from ember.graph.registry import OpError

OPSET = 21


def model(op: str, inputs: dict[str, np.ndarray], consts: dict[str, np.ndarray], n_out: int = 1,
          out_types: "list[int] | None" = None, **attrs):
    """A one-node model: `inputs` are graph inputs, `consts` initializers (node inputs in that order); outputs
    have the first input's type (unless `out_types` says otherwise) and shape (check() puts the right one)."""
    names = list(inputs) + list(consts)
    outs = [f"y{k}" for k in range(n_out)]
    node = helper.make_node(op, names, outs, **attrs)
    elem = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.float16): TensorProto.FLOAT16,
            np.dtype(np.uint8): TensorProto.UINT8, np.dtype(np.int8): TensorProto.INT8}
    first, shape = elem[next(iter(inputs.values())).dtype], next(iter(inputs.values())).shape
    graph = helper.make_graph(
        [node], op.lower(), [helper.make_tensor_value_info(k, elem[v.dtype], v.shape) for k, v in inputs.items()],
        [helper.make_tensor_value_info(o, t, shape) for o, t in zip(outs, out_types or [first] * n_out)],
        [numpy_helper.from_array(v, k) for k, v in consts.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])


def check(op: str, inputs: dict[str, np.ndarray], consts: dict[str, np.ndarray], n_out: int = 1,
          out_types: "list[int] | None" = None, rtol=1e-4, atol=1e-4, **attrs) -> None:
    m = model(op, inputs, consts, n_out, out_types, **attrs)
    expected = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, inputs)
    for out, e in zip(m.graph.output, expected):  # ember's importer wants output shapes: take onnxruntime's
        out.CopyFrom(helper.make_tensor_value_info(out.name, out.type.tensor_type.elem_type, e.shape))
    got = ember.compile(m)(*inputs.values())
    got = list(got) if isinstance(got, (list, tuple)) else [got]
    for g, e in zip(got, expected):
        assert g.shape == e.shape and g.dtype == e.dtype
        np.testing.assert_allclose(g, e, rtol=rtol, atol=atol)


def rand(rng: np.random.Generator, *shape: int, dtype=np.float32) -> np.ndarray:
    return rng.standard_normal(shape).astype(dtype)


@st.composite
def conv_cases(draw):
    nd = draw(st.sampled_from([1, 2, 2, 3]))
    group = draw(st.sampled_from([1, 1, 2]))
    c_in, m_out = group * draw(st.integers(1, 3)), group * draw(st.integers(1, 2))
    kernel = [draw(st.integers(1, 3)) for _ in range(nd)]
    dil = [draw(st.integers(1, 2)) for _ in range(nd)]
    strides = [draw(st.integers(1, 3)) for _ in range(nd)]
    size = [draw(st.integers((k - 1) * d + 1, 7)) for k, d in zip(kernel, dil)]
    attrs = dict(kernel_shape=kernel, dilations=dil, strides=strides, group=group)
    auto_pad = draw(st.sampled_from(["NOTSET", "NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"]))
    if auto_pad == "NOTSET":
        attrs["pads"] = [draw(st.integers(0, k - 1)) for k in kernel * 2]
    else:
        attrs["auto_pad"] = auto_pad
        attrs["dilations"] = [1] * nd  # onnxruntime rejects dilations with SAME padding
    return nd, c_in, m_out, size, draw(st.booleans()), draw(st.integers(0, 2 ** 16)), attrs


@settings(max_examples=12)
@given(conv_cases())
def test_conv_matches_onnxruntime(case):
    _, c_in, m_out, size, with_bias, seed, attrs = case
    rng = np.random.default_rng(seed)
    consts = {"w": rand(rng, m_out, c_in // attrs["group"], *attrs["kernel_shape"])}
    if with_bias:
        consts["b"] = rand(rng, m_out)
    check("Conv", {"x": rand(rng, 2, c_in, *size)}, consts, **attrs)


@settings(max_examples=8)
@given(conv_cases(), st.integers(0, 1))
def test_conv_transpose_matches_onnxruntime(case, extra):
    _, c_in, m_out, size, with_bias, seed, attrs = case
    rng = np.random.default_rng(seed)
    group = attrs["group"]
    if attrs.get("auto_pad") in ("SAME_UPPER", "SAME_LOWER"):
        attrs.pop("auto_pad")  # onnxruntime and the spec disagree on how SAME splits the padding here
    attrs["output_padding"] = [min(extra, s - 1) for s in attrs["strides"]]
    consts = {"w": rand(rng, c_in, m_out // group, *attrs["kernel_shape"])}
    if with_bias:
        consts["b"] = rand(rng, m_out)
    check("ConvTranspose", {"x": rand(rng, 1, c_in, *size)}, consts, **attrs)


@st.composite
def pool_cases(draw):
    nd = draw(st.sampled_from([1, 2, 2, 3]))
    kernel = [draw(st.integers(1, 3)) for _ in range(nd)]
    strides = [draw(st.integers(1, 3)) for _ in range(nd)]
    size = [draw(st.integers(k, 7)) for k in kernel]
    attrs = dict(kernel_shape=kernel, strides=strides, ceil_mode=draw(st.integers(0, 1)))
    if draw(st.booleans()):
        attrs["pads"] = [draw(st.integers(0, k - 1)) for k in kernel * 2]
    return size, draw(st.integers(0, 2 ** 16)), attrs


@settings(max_examples=10)
@given(pool_cases(), st.integers(0, 1))
def test_average_pool_matches_onnxruntime(case, include_pad):
    size, seed, attrs = case
    x = rand(np.random.default_rng(seed), 1, 2, *size)
    check("AveragePool", {"x": x}, {}, count_include_pad=include_pad, **attrs)


@settings(max_examples=10)
@given(pool_cases(), st.integers(1, 2), st.booleans())
def test_max_pool_matches_onnxruntime(case, dilation, with_indices):
    size, seed, attrs = case
    attrs["dilations"] = [dilation if s >= (k - 1) * dilation + 1 else 1
                          for s, k in zip(size, attrs["kernel_shape"])]
    # distinct values, so the index of the maximum is unambiguous
    x = np.random.default_rng(seed).permutation(2 * int(np.prod(size))).astype(np.float32).reshape(1, 2, *size)
    check("MaxPool", {"x": x}, {}, n_out=2 if with_indices else 1,
          out_types=[TensorProto.FLOAT, TensorProto.INT64] if with_indices else None, **attrs)


@pytest.mark.parametrize("a_shape,b_shape", [((3,), (3,)), ((2, 1, 4, 3), (5, 3, 2)), ((3,), (2, 3, 4)),
                                             ((2, 4, 3), (3,)), ((1, 3), (3, 1))])
def test_matmul_broadcasting(a_shape, b_shape):
    rng = np.random.default_rng(0)
    check("MatMul", {"a": rand(rng, *a_shape), "b": rand(rng, *b_shape)}, {})


def test_gemm_float16_with_row_bias():
    rng = np.random.default_rng(1)
    check("Gemm", {"a": rand(rng, 6, 5, dtype=np.float16)},
          {"b": rand(rng, 4, 6, dtype=np.float16), "c": rand(rng, 1, 4, dtype=np.float16)},
          transA=1, transB=1, alpha=0.5, beta=2.0, rtol=1e-2, atol=1e-2)


def test_layer_normalization_extra_outputs_and_group_normalization():
    rng = np.random.default_rng(2)
    x = rand(rng, 2, 3, 4, 5)
    check("LayerNormalization", {"x": x}, {"s": rand(rng, 4, 5), "b": rand(rng, 5)}, n_out=3, axis=2)
    check("GroupNormalization", {"x": x}, {"s": rand(rng, 3), "b": rand(rng, 3)}, num_groups=3, epsilon=1e-3)


def test_lrn_and_batchnorm_match_onnxruntime():
    rng = np.random.default_rng(3)
    x = rand(rng, 1, 7, 3, 3)
    check("LRN", {"x": x}, {}, size=5, alpha=0.01, beta=0.6, bias=2.0)
    params = {k: rand(rng, 7) for k in ("s", "b", "m")} | {"v": np.abs(rand(rng, 7)) + 0.5}
    check("BatchNormalization", {"x": x}, params, epsilon=1e-3)


def test_conv_integer_with_zero_points():
    rng = np.random.default_rng(4)
    x = rng.integers(0, 255, (1, 2, 5, 5), dtype=np.uint8)
    consts = {"w": rng.integers(0, 255, (3, 2, 3, 3), dtype=np.uint8), "xz": np.array(7, np.uint8),
              "wz": np.array(100, np.uint8)}
    check("ConvInteger", {"x": x}, consts, out_types=[TensorProto.INT32], pads=[1, 0, 1, 2])


@pytest.mark.parametrize("op,shapes,attrs,message", [
    ("Conv", [(1, 3, 5, 5), (4, 2, 3, 3)], {}, "channels"),
    ("Conv", [(1, 4, 5, 5), (3, 2, 3, 3)], {"group": 2}, "not divisible by group"),
    ("Conv", [(1, 2, 5, 5), (4, 2, 3, 3)], {"kernel_shape": [2, 2]}, "does not match"),
    ("Conv", [(1, 2, 5, 5), (4, 2, 3, 3)], {"auto_pad": "SAME"}, "auto_pad"),
    ("Conv", [(1, 2, 2, 2), (4, 2, 3, 3)], {}, "does not fit"),
    ("MaxPool", [(1, 2, 5, 5)], {"kernel_shape": [2]}, "one per spatial dim"),
    ("Gemm", [(2, 3), (4, 5)], {}, "inner dimensions"),
    ("MatMul", [(2, 3, 4), (5, 2)], {}, "inner dimensions"),
    ("GroupNormalization", [(1, 4, 3), (4,), (4,)], {"num_groups": 3}, "must divide"),
])
def test_bad_nodes_are_reported(op, shapes, attrs, message):
    rng = np.random.default_rng(5)
    arrays = {f"t{k}": rand(rng, *s) for k, s in enumerate(shapes)}
    first = dict(list(arrays.items())[:1])
    with pytest.raises(OpError, match=message):
        ember.compile(model(op, first, dict(list(arrays.items())[1:]), **attrs))
