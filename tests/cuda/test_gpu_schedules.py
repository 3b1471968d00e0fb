"""Default GPU schedules and random legal GPU schedules, run on the CUDA emulator (checking mode) against numpy.

Kernels with symbolic sizes are built once and reused across hypothesis examples (the emulator compiles a module
in about a second); shapes include 1, primes and sizes that are not multiples of the block size."""
from __future__ import annotations

import functools
import json

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import ember
from ember.testing import gpu_test_target, gpu_test_unavailable

EMU = gpu_test_target()  # the CPU emulator; EMBER_TEST_CUDA_TARGET=cuda runs the same cases on a GPU
pytestmark = pytest.mark.skipif(gpu_test_unavailable() is not None, reason=str(gpu_test_unavailable()))
dims = st.sampled_from([1, 2, 3, 7, 31, 64, 97, 255, 257])


def _build(name: str, sch, args=None):
    return ember.build(sch, args, target=EMU, name=name)


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


@functools.cache
def elementwise_kernel():
    n, m = ember.var("n"), ember.var("m")
    a = ember.placeholder((n, m), name="a")
    b = ember.placeholder((m,), name="b")
    t = ember.compute((n, m), lambda i, j: a[i, j] * 2 + b[j], name="t")
    out = ember.compute((n, m), lambda i, j: ember.tanh(t[i, j]) - ember.sigmoid(a[i, j]), name="out")
    return _build("elementwise", out)


@settings(max_examples=6)
@given(dims, dims, st.integers(0, 99))
def test_elementwise_chain_with_broadcast(n, m, seed):
    x = _rng(seed).standard_normal((n, m)).astype(np.float32)
    y = _rng(seed + 1).standard_normal(m).astype(np.float32)
    want = np.tanh(x * 2 + y) - 1 / (1 + np.exp(-x))
    np.testing.assert_allclose(elementwise_kernel()(x, y), want, rtol=1e-5, atol=1e-6)


@functools.cache
def reduce_kernel(axis: int, combiner: str):
    p, q, r = ember.var("p"), ember.var("q"), ember.var("r")
    a = ember.placeholder((p, q, r), name="a")
    shape = (p, q, r)
    k = ember.reduce_axis(shape[axis], "k")
    out_shape = tuple(d for i, d in enumerate(shape) if i != axis)

    def body(*idx):
        full = list(idx)
        full.insert(axis, k)
        return getattr(ember, combiner)(a[tuple(full)], axis=k)
    out = ember.compute(out_shape, body, name="out")
    return _build(f"reduce{axis}_{combiner}", out)


@settings(max_examples=4)
@given(st.sampled_from([0, 1, 2]), st.sampled_from(["sum", "max"]), st.sampled_from([1, 2, 5]), dims,
       st.sampled_from([1, 3, 40]), st.integers(0, 99))
def test_reduction_on_each_axis(axis, combiner, p, q, r, seed):
    x = _rng(seed).standard_normal((p, q, r)).astype(np.float32)
    want = getattr(np, combiner)(x, axis=axis)
    np.testing.assert_allclose(reduce_kernel(axis, combiner)(x), want, rtol=1e-5, atol=1e-5)


@functools.cache
def softmax_layernorm_kernels():
    n, m = ember.var("n"), ember.var("m")
    x = ember.placeholder((n, m), name="x")
    k1, k2 = ember.reduce_axis(m, "k1"), ember.reduce_axis(m, "k2")
    mx = ember.compute((n,), lambda i: ember.max(x[i, k1], axis=k1), name="mx")
    e = ember.compute((n, m), lambda i, j: ember.exp(x[i, j] - mx[i]), name="e")
    s = ember.compute((n,), lambda i: ember.sum(e[i, k2], axis=k2), name="s")
    soft = ember.compute((n, m), lambda i, j: e[i, j] / s[i], name="soft")
    k3, k4 = ember.reduce_axis(m, "k3"), ember.reduce_axis(m, "k4")
    total = ember.compute((n,), lambda i: ember.sum(x[i, k3], axis=k3), name="total")
    d = ember.compute((n, m), lambda i, j: x[i, j] - total[i] / ember.cast("float32", m), name="d")
    sq = ember.compute((n,), lambda i: ember.sum(d[i, k4] * d[i, k4], axis=k4), name="sq")
    norm = ember.compute((n, m), lambda i, j: d[i, j] * ember.rsqrt(sq[i] / ember.cast("float32", m) + 1e-5),
                         name="norm")
    return _build("softmax", soft), _build("layernorm", norm)


@settings(max_examples=5)
@given(dims, dims, st.integers(0, 99))
def test_softmax_and_layer_norm(n, m, seed):
    x = (_rng(seed).standard_normal((n, m)) * 3).astype(np.float32)
    soft, norm = softmax_layernorm_kernels()
    e = np.exp(x - x.max(1, keepdims=True))
    np.testing.assert_allclose(soft(x), e / e.sum(1, keepdims=True), rtol=1e-5, atol=1e-6)
    d = x - x.mean(1, keepdims=True)
    np.testing.assert_allclose(norm(x), d / np.sqrt((d * d).mean(1, keepdims=True) + 1e-5), rtol=1e-4, atol=1e-4)


@functools.cache
def matmul_kernel():
    n, k, m = ember.var("n"), ember.var("k"), ember.var("m")
    a = ember.placeholder((n, k), name="a")
    b = ember.placeholder((k, m), name="b")
    r = ember.reduce_axis(k, "r")
    out = ember.compute((n, m), lambda i, j: ember.sum(a[i, r] * b[r, j], axis=r), name="out")
    return _build("matmul", out)


@settings(max_examples=5)
@given(dims, st.sampled_from([1, 5, 64, 97]), dims, st.integers(0, 99))
def test_matmul(n, k, m, seed):
    a = _rng(seed).standard_normal((n, k)).astype(np.float32)
    b = _rng(seed + 1).standard_normal((k, m)).astype(np.float32)
    np.testing.assert_allclose(matmul_kernel()(a, b), a @ b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("rows,length", [(3, 1000), (9, 70)])
def test_row_reduction_rule_uses_a_block_per_row(rows, length):
    """Long rows: each thread of a block sums a strided slice, warp shuffles (and shared memory across warps)
    combine them."""
    a = ember.placeholder((rows, length), name="a")
    k = ember.reduce_axis(length, "k")
    out = ember.compute((rows,), lambda i: ember.sum(a[i, k], axis=k), name="out")
    f = _build(f"rowsum_{rows}_{length}", out)
    src = f.source("cuda")
    assert "__shfl_down_sync" in src and "__syncthreads();" in src
    x = _rng(rows).standard_normal((rows, length)).astype(np.float32)
    np.testing.assert_allclose(f(x), x.sum(1), rtol=1e-4, atol=1e-4)


def test_float16_matmul_accumulates_like_the_cpu():
    a = ember.placeholder((33, 40), "float16", name="a")
    b = ember.placeholder((40, 70), "float16", name="b")
    r = ember.reduce_axis(40, "r")
    out = ember.compute((33, 70), lambda i, j: ember.sum(a[i, r] * b[r, j], axis=r), name="out")
    f = _build("matmul_f16", out)
    cpu = ember.build(out, target="llvm -opt=0")
    x = _rng(5).standard_normal((33, 40)).astype(np.float16)
    y = _rng(6).standard_normal((40, 70)).astype(np.float16)
    np.testing.assert_allclose(f(x, y).astype(np.float32), cpu(x, y).astype(np.float32), rtol=2e-2, atol=2e-2)


def _conv_reference(x: np.ndarray, w: np.ndarray, groups: int) -> np.ndarray:
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    out = np.zeros((n, o, h - kh + 1, wd - kw + 1), np.float64)
    per = o // groups
    for oc in range(o):
        g = oc // per
        for dy in range(kh):
            for dx in range(kw):
                patch = x[:, g * cg:(g + 1) * cg, dy:dy + out.shape[2], dx:dx + out.shape[3]]
                out[:, oc] += np.einsum("nchw,c->nhw", patch, w[oc, :, dy, dx])
    return out


@pytest.mark.parametrize("depthwise", [False, True])
def test_conv2d_and_depthwise_conv(depthwise):
    n, c, h, w_, o, k = 2, 6, 11, 9, (6 if depthwise else 5), 3
    cg = 1 if depthwise else c
    x = ember.placeholder((n, c, h, w_), name="x")
    wt = ember.placeholder((o, cg, k, k), name="w")
    rc, ry, rx = ember.reduce_axis(cg, "rc"), ember.reduce_axis(k, "ry"), ember.reduce_axis(k, "rx")
    per = o // (c // cg)

    def body(b, oc, i, j):
        ch = (oc // per) * cg + rc
        return ember.sum(x[b, ch, i + ry, j + rx] * wt[oc, rc, ry, rx], axis=[rc, ry, rx])
    out = ember.compute((n, o, h - k + 1, w_ - k + 1), body, name="out")
    f = _build(f"conv_{depthwise}", out)
    xs = _rng(7).standard_normal((n, c, h, w_)).astype(np.float32)
    ws = _rng(8).standard_normal((o, cg, k, k)).astype(np.float32)
    np.testing.assert_allclose(f(xs, ws), _conv_reference(xs, ws, c // cg), rtol=1e-4, atol=1e-4)


@functools.cache
def total_kernel():
    n = ember.var("n")
    a = ember.placeholder((n,), name="a")
    k = ember.reduce_axis(n, "k")
    return _build("total", ember.compute((), lambda: ember.sum(a[k], axis=k), name="out"))


@settings(max_examples=4)
@given(st.sampled_from([1, 2, 127, 129, 1025, 5003, 70001]), st.integers(0, 99))
def test_reduction_to_one_value(n, seed):
    """Two stages (128 partial sums, a block each, then one block): any length, even fewer than the parts."""
    x = _rng(seed).standard_normal(n).astype(np.float32)
    np.testing.assert_allclose(total_kernel()(x), x.astype(np.float64).sum(), rtol=1e-4, atol=1e-3)
    assert len(json.loads(total_kernel().source("launches"))["kernels"]) == 2


def test_few_long_rows_are_reduced_in_two_stages():
    a = ember.placeholder((3, 40000), name="a")
    k = ember.reduce_axis(40000, "k")
    f = _build("few_rows", ember.compute((3,), lambda i: ember.max(a[i, k], axis=k), name="out"))
    assert "rfactor" in f.source("schedule")
    x = _rng(5).standard_normal((3, 40000)).astype(np.float32)
    np.testing.assert_allclose(f(x), x.max(1))


@settings(max_examples=5)
@given(st.integers(1, 70), st.booleans(), st.sampled_from(["x", "y"]), st.integers(0, 99))
def test_random_elementwise_schedule_never_changes_the_result(factor, fuse, tag, seed):
    """Fuse or not, any split factor, either block/thread dimension: same numbers."""
    a = ember.placeholder((37, 53), name="a")
    out = ember.compute((37, 53), lambda i, j: a[i, j] * a[i, j] - 1, name="out")
    s = ember.create_schedule(out)
    i, j = out.op.axis
    if fuse:
        bo, bi = s[out].split(s[out].fuse(i, j), factor)
        s[out].bind(bo, f"blockIdx.{tag}")
        s[out].bind(bi, f"threadIdx.{tag}")
    else:
        jo, ji = s[out].split(j, factor)
        s[out].bind(i, f"blockIdx.{tag}")
        s[out].bind(jo, "blockIdx.z")
        s[out].bind(ji, f"threadIdx.{tag}")
    f = _build(f"random_ew_{factor}_{fuse}_{tag}", s, [a, out])
    x = _rng(seed).standard_normal((37, 53)).astype(np.float32)
    np.testing.assert_allclose(f(x), x * x - 1, rtol=1e-6)


@settings(max_examples=4)
@given(st.integers(2, 64), st.booleans(), st.integers(0, 99))
def test_random_rfactor_schedule_never_changes_the_result(factor, shared, seed):
    """Row sums with the reduction split by a random factor, its inner part made spatial (rfactor) and bound to
    threads, the partials in shared or global memory."""
    a = ember.placeholder((13, 300), name="a")
    k = ember.reduce_axis(300, "k")
    out = ember.compute((13,), lambda i: ember.sum(a[i, k], axis=k), name="out")
    s = ember.create_schedule(out)
    _, ki = s[out].split(k, factor)
    rf = s.rfactor(out, ki)
    final = s[s.resolve(out)]
    if shared:
        s[rf].set_scope("shared")
        row_o, row_i = final.split(final.leaf[0], 1)
        final.bind(row_o, "blockIdx.x")
        final.bind(row_i, "threadIdx.x")
        s[rf].compute_at(final, row_o)
        lane = s[rf].axis(ki.name)
        s[rf].reorder(lane, *[x for x in s[rf].leaf if x is not lane])
        s[rf].bind(lane, "threadIdx.x")
    else:
        s[rf].bind(s[rf].leaf[0], "blockIdx.x")
        s[rf].bind(s[rf].leaf[1], "threadIdx.x")
        final.bind(final.leaf[0], "threadIdx.x")
    f = _build(f"random_rf_{factor}_{shared}", s, [a, out])
    x = _rng(seed).standard_normal((13, 300)).astype(np.float32)
    np.testing.assert_allclose(f(x), x.sum(1), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("op", ["depthwise", "maxpool"])
def test_padded_windows_are_one_kernel(op):
    """A padded depthwise convolution or max pool reads its input through the padding select: one kernel, no
    launch storing a padded copy; values at the borders match the reference."""
    from onnx import TensorProto, helper, numpy_helper
    rng = _rng(11)
    xs = rng.standard_normal((1, 4, 9, 7)).astype(np.float32)
    inits = []
    if op == "depthwise":
        ws = rng.standard_normal((4, 1, 3, 3)).astype(np.float32)
        node = helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1], group=4)
        inits = [numpy_helper.from_array(ws, "w")]
        want = _conv_reference(np.pad(xs, ((0, 0), (0, 0), (1, 1), (1, 1))), ws, 4)
    else:
        node = helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[2, 2])
        padded = np.pad(xs, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=-np.inf)
        want = np.max([padded[:, :, dy:dy + 9:2, dx:dx + 7:2] for dy in range(3) for dx in range(3)], axis=0)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 9, 7])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(want.shape))], inits)
    model = ember.compile(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), target=EMU)
    assert [s.kernel.source("cuda").count("__global__") for s in model.steps] == [1]
    np.testing.assert_allclose(model(x=xs)[0], want, rtol=1e-5, atol=1e-5)


@settings(max_examples=6, deadline=None)
@given(st.sampled_from([1, 7, 31]), st.sampled_from([1, 20, 63]), st.sampled_from([1, 10, 257]), st.integers(0, 99))
def test_a_per_thread_reduction_writes_through_its_element_wise_reader(rows, length, cols, seed):
    """A mean over a short axis and a small Gemm with bias: the register accumulator is written out by the
    element-wise stage (the division, the bias), in the same kernel."""
    x = ember.placeholder((rows, length), name="x")
    r = ember.reduce_axis(length, "r")
    total = ember.compute((rows,), lambda i: ember.sum(x[i, r], axis=r), name="total")
    mean = ember.compute((rows,), lambda i: total[i] * (1.0 / length), name="mean")
    w = ember.placeholder((length, cols), name="w")
    bias = ember.placeholder((cols,), name="bias")
    k = ember.reduce_axis(length, "k")
    prod = ember.compute((rows, cols), lambda i, j: ember.sum(x[i, k] * w[k, j], axis=k), name="prod")
    gemm = ember.compute((rows, cols), lambda i, j: prod[i, j] + bias[j], name="gemm")
    f_mean = _build(f"epilogue_mean_{rows}_{length}_{cols}", mean, [x, mean])
    f_gemm = _build(f"epilogue_gemm_{rows}_{length}_{cols}", gemm, [x, w, bias, gemm])
    assert [f.source("cuda").count("__global__") for f in (f_mean, f_gemm)] == [1, 1]
    rng = _rng(seed)
    xv, wv, bv = (rng.standard_normal(s).astype(np.float32) for s in ((rows, length), (length, cols), (cols,)))
    np.testing.assert_allclose(f_mean(xv), xv.mean(axis=1), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(f_gemm(xv, wv, bv), xv @ wv + bv, rtol=1e-4, atol=1e-4)
