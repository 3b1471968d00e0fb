"""The window (depthwise conv, pooling) and row-wise (softmax, layer norm) default CPU schedules: results against
numpy over awkward shapes (1, primes, non-multiples of the vector width, strides, paddings), and the rules fire
on the structures they are meant for and leave others alone."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from hypothesis import given, settings, strategies as st
from onnx import TensorProto, helper

import ember
from ember.compiler.default_schedule import default_schedule
from ember.compiler.target import parse_target

SIZES = st.sampled_from([1, 2, 5, 7, 8, 13, 17, 23])


def model(node, x_shape, inits=None):
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [helper.make_tensor(k, TensorProto.FLOAT, v.shape, v.ravel()) for k, v in
                               (inits or {}).items()])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    return onnx.shape_inference.infer_shapes(proto, strict_mode=True)


def windows(x: np.ndarray, k: int, stride: int, pad: int, fill: float) -> np.ndarray:
    """(n, c, oh, ow, k, k) windows of x padded with `fill`."""
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), constant_values=fill)
    oh, ow = (xp.shape[2] - k) // stride + 1, (xp.shape[3] - k) // stride + 1
    out = np.empty(x.shape[:2] + (oh, ow, k, k), x.dtype)
    for i in range(k):
        for j in range(k):
            out[..., i, j] = xp[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride]
    return out


window_cases = given(c=st.sampled_from([1, 3]), h=SIZES, w=SIZES, k=st.sampled_from([2, 3]),
                     stride=st.sampled_from([1, 2]), pad=st.sampled_from([0, 1]), seed=st.integers(0, 99))


@settings(max_examples=12)
@window_cases
def test_depthwise_conv_matches_numpy(c, h, w, k, stride, pad, seed):
    if h + 2 * pad < k or w + 2 * pad < k:
        return
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((1, c, h, w)).astype(np.float32)
    wt = rng.standard_normal((c, 1, k, k)).astype(np.float32)
    b = rng.standard_normal(c).astype(np.float32)
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], kernel_shape=[k, k], strides=[stride, stride],
                            pads=[pad] * 4, group=c)
    got = ember.compile(model(node, x.shape, {"w": wt, "b": b}))(x=x)[0]
    want = np.einsum("nchwij,cij->nchw", windows(x, k, stride, pad, 0.0), wt[:, 0]) + b[:, None, None]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@settings(max_examples=12)
@window_cases
def test_pools_match_numpy(c, h, w, k, stride, pad, seed):
    if pad >= k or h + 2 * pad < k or w + 2 * pad < k:
        return
    x = np.random.default_rng(seed).standard_normal((2, c, h, w)).astype(np.float32)
    attrs = dict(kernel_shape=[k, k], strides=[stride, stride], pads=[pad] * 4)
    got_max = ember.compile(model(helper.make_node("MaxPool", ["x"], ["y"], **attrs), x.shape))(x=x)[0]
    np.testing.assert_array_equal(got_max, windows(x, k, stride, pad, -np.inf).max(axis=(4, 5)))
    got_avg = ember.compile(model(helper.make_node("AveragePool", ["x"], ["y"], **attrs), x.shape))(x=x)[0]
    total = windows(x, k, stride, pad, 0.0).sum(axis=(4, 5))
    count = windows(np.ones_like(x), k, stride, pad, 0.0).sum(axis=(4, 5))
    np.testing.assert_allclose(got_avg, total / count, rtol=1e-5, atol=1e-6)


@settings(max_examples=10)
@given(rows=SIZES, n=st.sampled_from([8, 9, 13, 16, 17, 64, 127]), seed=st.integers(0, 99))
def test_softmax_and_logsoftmax_rows_match_numpy(rows, n, seed):
    x = (np.random.default_rng(seed).standard_normal((2, rows, n)) * 4).astype(np.float32)
    shifted = x - x.max(axis=-1, keepdims=True)
    e = np.exp(shifted)
    got = ember.compile(model(helper.make_node("Softmax", ["x"], ["y"], axis=-1), x.shape))(x=x)[0]
    np.testing.assert_allclose(got, e / e.sum(axis=-1, keepdims=True), rtol=1e-5, atol=1e-7)
    got = ember.compile(model(helper.make_node("LogSoftmax", ["x"], ["y"], axis=-1), x.shape))(x=x)[0]
    np.testing.assert_allclose(got, shifted - np.log(e.sum(axis=-1, keepdims=True)), rtol=1e-5, atol=1e-5)


@settings(max_examples=10)
@given(rows=SIZES, n=st.sampled_from([8, 11, 16, 31, 96, 129]), seed=st.integers(0, 99))
def test_layer_norm_rows_match_numpy(rows, n, seed):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((rows, n)) * 3 + 1).astype(np.float32)
    scale, bias = rng.standard_normal(n).astype(np.float32), rng.standard_normal(n).astype(np.float32)
    node = helper.make_node("LayerNormalization", ["x", "scale", "bias"], ["y"], axis=-1, epsilon=1e-5)
    got = ember.compile(model(node, x.shape, {"scale": scale, "bias": bias}))(x=x)[0]
    mean = x.mean(axis=-1, keepdims=True)
    want = (x - mean) / np.sqrt(x.var(axis=-1, keepdims=True) + 1e-5) * scale + bias
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


# ---- the rules fire where they should, and only there --------------------------------------------------------------

def trace_of(outputs) -> str:
    return str(default_schedule(outputs, parse_target("llvm")).trace)


@pytest.mark.parametrize("combiner", ["max", "min", "sum"])
@pytest.mark.parametrize("n", [16, 33, 128, 200])
def test_row_reduction_partials_combine_as_a_vector(combiner, n):
    """The rfactored partials are combined by halving one vector (the `lane_reduce` pragma, shufflevector in the
    LLVM IR), not a serial chain; NaN still propagates through max/min and sums stay within float32 rounding."""
    x = ember.placeholder((5, n), "float32", name="x")
    r = ember.reduce_axis(n, "r")
    y = ember.compute((5,), lambda i: getattr(ember, combiner)(x[i, r.var], axis=r), name="y")
    sch = default_schedule(y, parse_target("llvm"))
    assert "lane_reduce" in str(sch.trace)
    f = ember.build(sch, [x, y])
    assert "shufflevector" in f.source("llvm")
    xv = np.random.default_rng(n).standard_normal((5, n)).astype(np.float32)
    xv[1, n // 2] = np.nan
    xv[2] = 0.0
    xv[2, ::3] = -0.0
    want = {"max": np.max, "min": np.min, "sum": np.sum}[combiner](xv.astype(np.float64), axis=1)
    np.testing.assert_allclose(f(xv), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("op,axes,keepdims", [("ReduceSum", [2, 3], 1), ("ReduceMax", [2, 3], 0),
                                              ("ReduceSum", [1, 3], 1), ("GlobalAveragePool", None, 1)])
def test_reductions_over_trailing_dims_are_one_vectorized_row(op, axes, keepdims, tmp_path, monkeypatch):
    """A reduction over trailing dims (h, w) is one axis over their row-major product, so the row-reduction rule
    vectorizes it (rfactor); a reduction over dims that are not trailing keeps one axis per dim. Both match
    numpy on sizes that are not multiples of the vector width."""
    x = np.random.default_rng(5).standard_normal((2, 6, 7, 13)).astype(np.float32)
    attrs = {} if axes is None else {"keepdims": keepdims}
    inputs = ["x"] if axes is None or op != "ReduceSum" else ["x", "axes"]
    inits = {} if len(inputs) == 1 else {"axes": np.array(axes, np.int64)}
    if op == "ReduceMax":
        attrs["axes"] = axes
    graph = helper.make_graph([helper.make_node(op, inputs, ["y"], **attrs)], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [onnx.numpy_helper.from_array(v, k) for k, v in inits.items()])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    monkeypatch.setenv("EMBER_DUMP_DIR", str(tmp_path))
    monkeypatch.setenv("EMBER_CACHE", "0")
    got = ember.compile(onnx.shape_inference.infer_shapes(proto))(x=x)[0]
    reduce = {"ReduceSum": np.sum, "ReduceMax": np.max, "GlobalAveragePool": np.mean}[op]
    want = reduce(x, axis=tuple(axes or (2, 3)), keepdims=bool(keepdims))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    schedules = "".join(f.read_text() for f in tmp_path.glob("*/schedule.txt"))
    assert ("rfactor" in schedules) == (axes != [1, 3])


def test_lane_reduce_pragma_on_another_loop_runs_it_serially():
    """The pragma is a hint: a loop that is not `acc = acc op f(l)` over a power-of-two count runs as written."""
    x = ember.placeholder((4, 12), "float32", name="x")
    r = ember.reduce_axis(12, "r")
    y = ember.compute((4,), lambda i: ember.sum(x[i, r.var] * 2, axis=r), name="y")
    sch = ember.create_schedule(y)
    sch[y].pragma(sch[y].leaf[-1], "lane_reduce", 1)
    xv = np.random.default_rng(1).standard_normal((4, 12)).astype(np.float32)
    np.testing.assert_allclose(ember.build(sch, [x, y])(xv), 2 * xv.sum(axis=1), rtol=1e-5)


def test_row_reductions_are_vectorized_and_computed_per_row():
    x = ember.placeholder((6, 40), "float32", name="x")
    r = ember.reduce_axis(40, "r")
    m = ember.compute((6, 1), lambda i, _: ember.max(x[i, r.var], axis=r), name="m")
    r2 = ember.reduce_axis(40, "r2")
    s = ember.compute((6, 1), lambda i, _: ember.sum(ember.exp(x[i, r2.var] - m[i, 0]), axis=r2), name="s")
    y = ember.compute((6, 40), lambda i, j: ember.exp(x[i, j] - m[i, 0]) / s[i, 0], name="y")
    trace = trace_of(y)
    assert "rfactor(tensor='m'" in trace and "rfactor(tensor='s'" in trace
    # Both reductions at the output's row loop, though the max has two readers (the sum and the output).
    assert "s['s'].compute_at(parent='y'" in trace and "s['m'].compute_at(parent='y'" in trace
    assert trace.count(".parallel(") <= 1  # one pass over the rows (this one too small to run in parallel)
    f = ember.build(y, [x, y])
    xv = np.random.default_rng(0).standard_normal((6, 40)).astype(np.float32)
    e = np.exp(xv - xv.max(axis=1, keepdims=True))
    np.testing.assert_allclose(f(xv), e / e.sum(axis=1, keepdims=True), rtol=1e-5)


def test_window_reduction_gets_unrolled_register_tiles():
    x = ember.placeholder((1, 4, 12, 20), "float32", name="x")
    r0, r1 = ember.reduce_axis(3, "r0"), ember.reduce_axis(3, "r1")
    y = ember.compute((1, 4, 10, 18), lambda n, c, i, j: ember.max(x[n, c, i + r0.var, j + r1.var],
                                                                  axis=[r0, r1]), name="y")
    trace = trace_of(y)
    assert "cache_write" in trace and "compute_at(parent='y'" in trace
    assert "unroll(axis='r0')" in trace and "unroll(axis='r1')" in trace
    xv = np.random.default_rng(1).standard_normal((1, 4, 12, 20)).astype(np.float32)
    want = windows(xv, 3, 1, 0, 0.0).max(axis=(4, 5))
    np.testing.assert_array_equal(ember.build(y, [x, y])(xv), want)


def test_rules_leave_other_reductions_alone():
    """A reduction over a strided (non-last) axis and a large window keep the generic schedule."""
    x = ember.placeholder((40, 6), "float32", name="x")
    r = ember.reduce_axis(40, "r")
    col = ember.compute((6,), lambda j: ember.sum(x[r.var, j], axis=r), name="col")
    assert "rfactor" not in trace_of(col) and "compute_at" not in trace_of(col)
    big = ember.placeholder((1, 2, 20, 20), "float32", name="big")
    a, b = ember.reduce_axis(9, "a"), ember.reduce_axis(9, "b")
    wide = ember.compute((1, 2, 12, 12), lambda n, c, i, j: ember.sum(big[n, c, i + a.var, j + b.var],
                                                                     axis=[a, b]), name="wide")
    assert "unroll" not in trace_of(wide)


@pytest.mark.parametrize("c,hw,stride", [(16, 19, 1), (16, 19, 2), (4, 40, 2), (2, 112, 1)])
def test_depthwise_conv_sum_has_no_bounds_selects(c, hw, stride, tmp_path, monkeypatch):
    """The padded input is a stage of its own, so the window stage reads it without a select per tap; it is made
    block by block (a few rows) inside the tile loop, not as a whole extra pass through a global buffer (a row of a
    few vectors is one block: its accumulators fit the registers)."""
    rng = np.random.default_rng(2)
    wt = rng.standard_normal((c, 1, 3, 3)).astype(np.float32)
    x = rng.standard_normal((1, c, hw, hw)).astype(np.float32)
    node = helper.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[3, 3], strides=[stride] * 2, pads=[1] * 4,
                            group=c)
    monkeypatch.setenv("EMBER_DUMP_DIR", str(tmp_path))
    got = ember.compile(model(node, x.shape, {"w": wt}))(x=x)[0]
    np.testing.assert_allclose(got, np.einsum("nchwij,cij->nchw", windows(x, 3, stride, 1, 0.0), wt[:, 0]),
                               rtol=1e-5, atol=1e-5)
    lines = [ln for f in tmp_path.glob("*/tensor.txt") for ln in f.read_text().splitlines()]
    sums = [ln for ln in lines if "= sum(" in ln]
    assert sums and not any("select(" in ln for ln in sums)
    assert any("select(" in ln for ln in lines)  # the padding stage
    loops = "".join(f.read_text() for f in tmp_path.glob("*/loops.txt"))
    assert "in global" not in loops and "in local" in loops
    schedules = "".join(f.read_text() for f in tmp_path.glob("*/schedule.txt"))
    assert "compute_at" in schedules and "unroll(axis='r1')" in schedules


@pytest.mark.parametrize("hw,stride", [(11, 1), (20, 2)])
def test_depthwise_conv_bias_relu_fuse_into_one_tile_loop(hw, stride, tmp_path, monkeypatch):
    """Conv + bias + Relu in one kernel: the window is computed per tile of the Relu, through the inlined bias
    add, with no pass in between."""
    c = 5
    rng = np.random.default_rng(3)
    wt = rng.standard_normal((c, 1, 3, 3)).astype(np.float32)
    b = rng.standard_normal(c).astype(np.float32)
    x = rng.standard_normal((1, c, hw, hw)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["t"], kernel_shape=[3, 3], strides=[stride] * 2,
                              pads=[1] * 4, group=c), helper.make_node("Relu", ["t"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [helper.make_tensor("w", TensorProto.FLOAT, wt.shape, wt.ravel()),
                               helper.make_tensor("b", TensorProto.FLOAT, b.shape, b)])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    monkeypatch.setenv("EMBER_DUMP_DIR", str(tmp_path))
    got = ember.compile(onnx.shape_inference.infer_shapes(proto))(x=x)[0]
    conv = np.einsum("nchwij,cij->nchw", windows(x, 3, stride, 1, 0.0), wt[:, 0]) + b[:, None, None]
    np.testing.assert_allclose(got, np.maximum(conv, 0), rtol=1e-5, atol=1e-5)
    schedules = "".join(f.read_text() for f in tmp_path.glob("*/schedule.txt"))
    assert "compute_at(parent='relu" in schedules and "compute_root()" not in schedules
    assert "cache_write" not in schedules


def test_compute_at_through_an_inlined_stage():
    """A stage can be computed at a reader that reaches it through an inlined element-wise stage; the region is
    inferred from the inlined reads."""
    A = ember.placeholder((7, 20), "float32", "A")
    T = ember.compute((7, 20), lambda i, j: A[i, j] * 2, name="T")
    U = ember.compute((7, 20), lambda i, j: T[i, j] + 1, name="U")
    O = ember.compute((7, 20), lambda i, j: U[i, j] * U[i, j], name="O")
    s = ember.create_schedule(O)
    s[U].compute_inline()
    s[T].compute_at(s[O], "i")
    a = np.arange(140, dtype="f4").reshape(7, 20)
    f = ember.build(s, [A, O])
    np.testing.assert_array_equal(f(a), (a * 2 + 1) ** 2)
    assert "allocate T[1, 20]" in f.source("loops")


def test_fusing_an_axis_of_extent_one_adds_no_div_mod():
    """A fused index is below the product of the extents, so an outer axis of extent 1 is 0 and the inner one is the
    fused index: no div/mod per iteration (softmax's rows of a (1, 12, 128, 128) tensor)."""
    x = ember.placeholder((1, 3, 5, 4), "float32", name="x")
    y = ember.compute((1, 3, 5, 4), lambda a, b, c, d: x[a, b, c, d] * 2.0, name="y")
    sch = ember.create_schedule(y)
    sch[y].parallel(sch[y].fuse(*sch[y].leaf[:3]))
    f = ember.build(sch, [x, y])
    loops = f.source("loops")
    assert "//" not in loops and "%" not in loops, loops
    xv = np.arange(60, dtype=np.float32).reshape(1, 3, 5, 4)
    np.testing.assert_array_equal(f(xv), xv * 2)
