"""Shape / data-movement ops: the official node tests with their shape-determining inputs turned into
initializers (ember needs those at compile time), fold == lowering on the same cases, property tests against
numpy, and errors."""
from __future__ import annotations

import re

import numpy as np
import onnx
import pytest
from hypothesis import given, settings, strategies as st
from onnx import helper, numpy_helper
from onnx.backend.test.loader import load_model_tests

import ember
from ember.graph.registry import OpError

CASES = re.compile(r"^test_(reshape_(negative_dim|zero_and_negative_dim|allowzero_reordered)|squeeze_negative_axes|"
                   r"unsqueeze_unsorted_axes|split_variable_parts_2d_opset18|split_zero_size_splits_opset13|"
                   r"slice_(neg_steps|negative_axes|end_out_of_bounds)|expand_dim_changed|tile|constant_pad_axes|"
                   r"reflect_pad|edge_pad|wrap_pad|resize_(upsample_scales_nearest|downsample_scales_linear|"
                   r"upsample_sizes_nearest_round_prefer_ceil_asymmetric|upsample_scales_linear_align_corners)|"
                   r"onehot_negative_indices|compress_default_axis|range_int32_type_negative_delta|"
                   r"constantofshape_int_zeros|center_crop_pad_crop_and_pad)$")
TESTS = sorted((t for t in load_model_tests(kind="node") if CASES.match(t.name)), key=lambda t: t.name)


def with_initializers(model: onnx.ModelProto, inputs: list, keep: int) -> tuple[onnx.ModelProto, list]:
    """The model with every graph input after the first `keep` made an initializer holding its test value."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    vis = list(m.graph.input)
    for vi, a in zip(vis[keep:], inputs[keep:]):
        m.graph.initializer.append(numpy_helper.from_array(a, vi.name))
    del m.graph.input[:]
    m.graph.input.extend(vis[:keep])
    return m, inputs[:keep]


def run(model: onnx.ModelProto, inputs: list) -> list:
    return ember.compile(model)(*inputs)


@pytest.mark.parametrize("case", TESTS, ids=lambda t: t.name)
def test_node_case_with_constant_shapes(case):
    """Lowered (data at run time) and folded (everything constant) both match the reference, bit for bit."""
    inputs, expected = case.data_sets[0]
    keep = 0 if case.name.startswith(("test_range", "test_constantofshape")) else 1
    lowered = run(*with_initializers(case.model, inputs, keep))
    folded = run(*with_initializers(case.model, inputs, 0))
    for got, fold, want in zip(lowered, folded, expected):
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(got, fold)


def one_node(op: str, x: np.ndarray, consts: dict, attrs: dict | None = None, opset: int = 18,
             extra: "list[np.ndarray]" = (), like: "np.ndarray | None" = None) -> onnx.ModelProto:
    """A model around one node: `x` (and `extra`) are graph inputs, `consts` initializers, in that order; the
    output is typed like `like` (default: like `x`)."""
    like = x if like is None else like
    names = ["x"] + [f"e{k}" for k in range(len(extra))]
    ins = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
           for n, a in zip(names, [x, *extra])]
    inits = [numpy_helper.from_array(v, k) for k, v in consts.items()]
    node = helper.make_node(op, names + list(consts), ["y"], **(attrs or {}))
    out = helper.make_tensor_value_info("y", helper.np_dtype_to_tensor_dtype(like.dtype), like.shape)
    graph = helper.make_graph([node], "g", ins, [out], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


@settings(max_examples=8, deadline=None)
@given(st.lists(st.integers(1, 5), min_size=1, max_size=3), st.data())
def test_slice_matches_numpy(shape, data):
    x = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    axis = data.draw(st.integers(0, len(shape) - 1))
    start, end = data.draw(st.integers(-7, 7)), data.draw(st.integers(-7, 7))
    step = data.draw(st.sampled_from([-2, -1, 1, 3]))
    consts = {k: np.array([v], dtype=np.int64) for k, v in
              (("starts", start), ("ends", end), ("axes", axis), ("steps", step))}
    index = [slice(None)] * len(shape)
    index[axis] = slice(start, end, step)
    want = x[tuple(index)]
    np.testing.assert_array_equal(run(one_node("Slice", x, consts, like=want), [x])[0], want)


@settings(max_examples=8, deadline=None)
@given(st.lists(st.integers(1, 4), min_size=1, max_size=3), st.data())
def test_gather_matches_numpy_with_negative_indices(shape, data):
    x = np.arange(np.prod(shape), dtype=np.int32).reshape(shape)
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    n = shape[axis]
    idx = np.array(data.draw(st.lists(st.integers(-n, n - 1), min_size=1, max_size=4)), dtype=np.int64)
    want = np.take(x, idx, axis=axis)
    got = run(one_node("Gather", x, {}, {"axis": axis}, extra=[idx], like=want), [x, idx])[0]
    np.testing.assert_array_equal(got, want)


@settings(max_examples=6, deadline=None)
@given(st.lists(st.integers(1, 4), min_size=1, max_size=3), st.sampled_from(["constant", "reflect", "edge", "wrap"]),
       st.data())
def test_pad_matches_numpy(shape, mode, data):
    x = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    limit = 0 if mode == "reflect" else 3
    pads = [data.draw(st.integers(0, min(limit, d - 1) if mode == "reflect" else limit))
            for d in shape + shape]
    width = list(zip(pads[:len(shape)], pads[len(shape):]))
    want = np.pad(x, width, mode=mode)
    got = run(one_node("Pad", x, {"pads": np.array(pads, dtype=np.int64)}, {"mode": mode}, opset=19, like=want),
              [x])[0]
    np.testing.assert_array_equal(got, want)


@settings(max_examples=6, deadline=None)
@given(st.permutations(range(3)))
def test_transpose_matches_numpy(perm):
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    want = x.transpose(perm)
    np.testing.assert_array_equal(run(one_node("Transpose", x, {}, {"perm": list(perm)}, like=want), [x])[0], want)


def test_scatter_elements_last_update_wins():
    data = np.zeros((2, 3), dtype=np.float32)
    idx = np.array([[1, 1, -1], [0, 0, 0]], dtype=np.int64)
    upd = np.arange(6, dtype=np.float32).reshape(2, 3) + 1
    model = one_node("ScatterElements", data, {}, {"axis": 1}, extra=[idx, upd])
    expected = data.copy()
    np.put_along_axis(expected, np.where(idx < 0, idx + 3, idx), upd, axis=1)
    np.testing.assert_array_equal(run(model, [data, idx, upd])[0], expected)


def test_reshape_rejects_incompatible_size():
    x = np.zeros((2, 3), dtype=np.float32)
    with pytest.raises(OpError, match="cannot reshape"):
        ember.compile(one_node("Reshape", x, {"shape": np.array([4, -1], dtype=np.int64)}))


def test_runtime_shape_input_is_a_clear_error():
    x = np.zeros((2, 3), dtype=np.float32)
    shape = np.array([3, 2], dtype=np.int64)
    with pytest.raises(OpError, match="shape must be a constant"):
        ember.compile(one_node("Reshape", x, {}, extra=[shape]))


def test_out_of_range_axis_is_a_clear_error():
    x = np.zeros((2, 3), dtype=np.float32)
    with pytest.raises(OpError, match="out of range"):
        ember.compile(one_node("Concat", x, {}, {"axis": 2}))
