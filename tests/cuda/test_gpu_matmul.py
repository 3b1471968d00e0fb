"""The default GPU contraction schedule (register tiles, cooperative shared-memory fetches, implicit-GEMM
convolutions) on the CUDA emulator in checking mode (races, missing barriers, out-of-bounds reads fail), against
numpy; plus the code generator's refusals of thread bindings it cannot honour."""
from __future__ import annotations

import functools
import json
import re

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from onnx import TensorProto, helper, numpy_helper

import ember
from ember.frontend.onnx_import import import_checked
from ember.graph.ops.nn_conv import MATRIX_KERNEL_ATTR
from ember.graph.pipeline import optimize
from ember.testing import gpu_test_target, gpu_test_unavailable
from ember.codegen.cuda.exprs import CudaCodegenError
from ember.compiler import rules_gpu_tensorcore
from ember.compiler.rules_gpu_matmul import LARGE, MatmulTiles, contraction_reads, schedule_tiled_matmul

EMU = gpu_test_target()  # the CPU emulator; EMBER_TEST_CUDA_TARGET=cuda runs the same cases on a GPU
pytestmark = pytest.mark.skipif(gpu_test_unavailable() is not None, reason=str(gpu_test_unavailable()))
dims = st.sampled_from([1, 2, 17, 31, 32, 64, 65, 97, 130])


def _matmul(n=None, k=None, m=None):
    """a, b and c = a @ b; sizes left out are symbolic."""
    n, k, m = (ember.var(v) if d is None else d for v, d in (("n", n), ("k", k), ("m", m)))
    a = ember.placeholder((n, k), name="a")
    b = ember.placeholder((k, m), name="b")
    r = ember.reduce_axis(k, "r")
    return a, b, ember.compute((n, m), lambda i, j: ember.sum(a[i, r] * b[r, j], axis=r), name="c")


def _tiled(tiles: MatmulTiles, name: str, **sizes):
    a, b, c = _matmul(**sizes)
    s = ember.create_schedule(c)
    schedule_tiled_matmul(s, s[c], contraction_reads(s[c]), tiles)
    return ember.build(s, [a, b, c], target=EMU, name=name)


def _check_matmul(f, n, k, m, seed):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((n, k)).astype(np.float32)
    b = rng.standard_normal((k, m)).astype(np.float32)
    np.testing.assert_allclose(f(a, b), a @ b, rtol=1e-4, atol=1e-4)


@functools.cache
def matmul_kernel():
    return ember.build(_matmul()[2], target=EMU, name="gpu_mm")


@functools.cache
def batched_kernel():
    """Batched A @ B^T (attention scores): a batch axis on blockIdx.z, B read along its rows."""
    q, n, m = ember.var("q"), ember.var("n"), ember.var("m")
    a = ember.placeholder((q, n, 40), name="a")
    b = ember.placeholder((q, m, 40), name="b")
    r = ember.reduce_axis(40, "r")
    out = ember.compute((q, n, m), lambda z, i, j: ember.sum(a[z, i, r] * b[z, j, r], axis=r), name="scores")
    return ember.build(out, target=EMU, name="gpu_bmm")


@settings(max_examples=8, deadline=None)
@given(dims, dims, dims, st.integers(0, 99))
def test_register_tiled_matmul(n, k, m, seed):
    _check_matmul(matmul_kernel(), n, k, m, seed)


def test_accumulators_live_in_registers_and_tiles_are_fetched_by_the_whole_block():
    src = matmul_kernel().source("cuda")
    assert re.search(r"float c_local\[16\];", src)  # 4 x 4 outputs per thread
    shared = re.findall(r"EMBER_SHARED\(float, (\w+), (\d+)\)", src)
    # 64 x 16 operand tiles, double-buffered (the main loop over K and its partitioned tail share them)
    # (A stored k-major, rows padded to 64 + 4 floats)
    assert sorted(shared) == [(f"a_shared{k}", "1088") for k in "01"] + [(f"b_shared{k}", "1024") for k in "01"]
    assert "__syncthreads();" in src  # the emulator's checking mode proves they are where they must be
    launch = json.loads(matmul_kernel().source("launches"))["kernels"][0]
    assert launch["block"] == [16, 16, 1]


@settings(max_examples=5, deadline=None)
@given(st.sampled_from([1, 3]), dims, dims, st.integers(0, 99))
def test_batched_matmul_with_transposed_operand(q, n, m, seed):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((q, n, 40)).astype(np.float32)
    b = rng.standard_normal((q, m, 40)).astype(np.float32)
    np.testing.assert_allclose(batched_kernel()(a, b), a @ b.transpose(0, 2, 1), rtol=1e-4, atol=1e-4)


def _conv_model(n, c, hw, m, k, stride, pad):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [n, c, hw, hw])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", "m", "h", "w"])
    w = (np.random.default_rng(1).standard_normal((m, c, k, k)) / np.sqrt(c * k * k)).astype(np.float32)
    node = helper.make_node("Conv", ["x", "w"], ["y"], pads=[pad] * 4, strides=[stride] * 2)
    graph = helper.make_graph([node], "conv", [x], [y], [numpy_helper.from_array(w, "w")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), w


def _numpy_conv(x, w, stride, pad):
    n, c, h, _ = x.shape
    m, _, k, _ = w.shape
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    out = (h + 2 * pad - k) // stride + 1
    res = np.zeros((n, m, out, out))
    for i in range(k):
        for j in range(k):
            patch = xp[:, :, i:i + stride * out:stride, j:j + stride * out:stride]
            res += np.einsum("nchw,mc->nmhw", patch, w[:, :, i, j])
    return res


@settings(max_examples=5, deadline=None)
@given(st.sampled_from([1, 2]), st.sampled_from([1, 3, 8]), st.sampled_from([5, 9, 12]),
       st.sampled_from([33, 64, 96]), st.sampled_from([1, 3]), st.sampled_from([1, 2]), st.sampled_from([0, 1]))
def test_convolution_is_an_implicit_gemm(n, c, hw, m, k, stride, pad):
    model, w = _conv_model(n, c, hw, m, k, stride, pad)
    compiled = ember.compile(model, target=EMU)
    x = np.random.default_rng(2).standard_normal((n, c, hw, hw)).astype(np.float32)
    np.testing.assert_allclose(compiled(x)[0], _numpy_conv(x, w, stride, pad), rtol=1e-4, atol=1e-4)


def test_constant_conv_weights_are_a_matrix_staged_in_shared_memory():
    """The cuda graph pass lays a constant weight out once as the (m, c*kh*kw) matrix the implicit GEMM reads, so
    its tiles are fetched into shared memory like any matrix operand (plain indices: no div/mod per filter read)."""
    model, w = _conv_model(1, 8, 12, 64, 3, 1, 1)
    g = optimize(import_checked(model), "cuda")
    conv = next(n for n in g.nodes if n.op == "Conv")
    assert conv.inputs[1].data.shape == (64, 72) and list(conv.attrs[MATRIX_KERNEL_ATTR]) == [3, 3]
    np.testing.assert_array_equal(conv.inputs[1].data[5, 4 * 9 + 2 * 3 + 1], w[5, 4, 2, 1])
    assert not any(n.attrs.get(MATRIX_KERNEL_ATTR) for n in optimize(import_checked(model), "llvm").nodes)
    compiled = ember.compile(model, target=EMU)
    src = compiled.steps[0].kernel.source("cuda")
    weight = next(p["name"] for k in json.loads(compiled.steps[0].kernel.source("launches"))["kernels"]
                  for p in k["params"] if p["ctype"] == "const float" and "_matrix" not in p["name"]
                  and f"{p['name']}_shared0" in src)
    assert not re.search(rf"\b{weight}\[[^;]*ember_(floordiv|mod)", src)
    x = np.random.default_rng(3).standard_normal((1, 8, 12, 12)).astype(np.float32)
    np.testing.assert_allclose(compiled(x)[0], _numpy_conv(x, w, 1, 1), rtol=1e-4, atol=1e-4)


def test_convolutions_sharing_a_weight_share_its_matrix():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 6, 6])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 6, 6])
    w = np.random.default_rng(4).standard_normal((4, 4, 3, 3)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w"], ["a"], pads=[1] * 4),
             helper.make_node("Conv", ["a", "w"], ["y"], pads=[1] * 4)]
    model = helper.make_model(helper.make_graph(nodes, "twice", [x], [y], [numpy_helper.from_array(w, "w")]),
                              opset_imports=[helper.make_opsetid("", 17)])
    convs = [n for n in optimize(import_checked(model), "cuda").nodes if n.op == "Conv"]
    assert convs[0].inputs[1] is convs[1].inputs[1]
    xv = np.random.default_rng(5).standard_normal((1, 4, 6, 6)).astype(np.float32)
    want = _numpy_conv(_numpy_conv(xv, w, 1, 1), w, 1, 1)
    np.testing.assert_allclose(ember.compile(model, target=EMU)(xv)[0], want, rtol=1e-4, atol=1e-4)


def test_convolution_gathers_its_input_inside_the_tile_fetch():
    f = ember.build(_conv_stage(), target=EMU, name="conv_igemm")
    src = f.source("cuda")
    assert src.count("__global__") == 1  # no im2col launch: the patch gather happens while the tile is fetched
    assert "conv0_0_shared" in src


def _conv_stage():
    """The tensor-IR convolution the ONNX importer builds: im2col (materialized on the CPU) and a contraction."""
    x = ember.placeholder((1, 8, 10, 10), name="x")
    w = ember.placeholder((64, 8, 3, 3), name="w")
    cols = ember.compute((1, 72, 100), lambda b, r, p: x[b, r // 9, p // 10 + r // 3 % 3 - 1, p % 10 + r % 3 - 1],
                         name="conv0_0")
    r = ember.reduce_axis(72, "r")
    return ember.compute((1, 64, 100), lambda b, m, p: ember.sum(w[m, r // 9, r // 3 % 3, r % 3] * cols[b, r, p],
                                                                  axis=r), name="conv0_1")


def _hand_tiled(fetch_threads: int, local_binding: bool = False):
    """A register-tiled matmul written by hand; `fetch_threads` threads along x copy each tile."""
    a, b, c = _matmul(64, 32, 64)
    s = ember.create_schedule(c)
    cl = s.cache_write(c, "local")
    bs = s.cache_read(b, "shared", [cl])
    i, j = s[c].leaf
    ty, yi = s[c].split(i, nparts=16)
    tx, xi = s[c].split(j, nparts=16)
    s[c].reorder(ty, tx, yi, xi)
    s[c].bind(ty, "threadIdx.y")
    s[c].bind(tx, "threadIdx.x")
    s[cl].compute_at(s[c], tx)
    ko, _ = s[cl].split(s[cl].leaf[-1], 8)
    if local_binding:
        s[cl].bind(s[cl].leaf[0], "threadIdx.x")
    s[bs].compute_at(s[cl], ko)
    rows, cols = s[bs].leaf
    _, x = s[bs].split(cols, fetch_threads)
    s[bs].bind(rows, "threadIdx.y")
    s[bs].bind(x, "threadIdx.x")
    return s, [a, b, c]


def test_hand_written_cooperative_fetch_runs():
    s, args = _hand_tiled(16)
    f = ember.build(s, args, target=EMU, name="hand_tiled")
    a = np.random.default_rng(3).standard_normal((64, 32)).astype(np.float32)
    b = np.random.default_rng(4).standard_normal((32, 64)).astype(np.float32)
    np.testing.assert_allclose(f(a, b), a @ b, rtol=1e-4, atol=1e-4)


def test_a_barrier_under_a_thread_dependent_guard_is_refused():
    s, args = _hand_tiled(32)  # 32 fetching threads: the 16-thread output loop is guarded, its barrier divergent
    with pytest.raises(CudaCodegenError, match="divergent __syncthreads"):
        ember.build(s, args, target=EMU, name="divergent")


def test_binding_a_thread_index_twice_outside_a_shared_fetch_is_refused():
    s, args = _hand_tiled(16, local_binding=True)
    with pytest.raises(CudaCodegenError, match="only a shared-memory stage computed inside the thread loops"):
        ember.build(s, args, target=EMU, name="twice")


@settings(max_examples=4, deadline=None)
@given(st.sampled_from([1, 65, 130, 200]), st.sampled_from([1, 9, 40]), st.sampled_from([64, 129, 256]),
       st.integers(0, 99))
def test_large_tiles_8x8_per_thread(n, k, m, seed):
    """The 128 x 128 tiles large outputs get, on shapes small enough to emulate."""
    _check_matmul(_large_tiled_kernel(), n, k, m, seed)


@functools.cache
def _large_tiled_kernel():
    f = _tiled(LARGE, "gpu_mm_large")
    assert "float c_local[64];" in f.source("cuda")
    return f


def test_the_rule_picks_large_tiles_for_large_outputs():
    trace = str(ember.build(_matmul(2048, 64, 2048)[2], target=EMU, name="big").source("schedule"))
    assert "factor=128" in trace and "factor=8" in trace


@settings(max_examples=5, deadline=None)
@given(st.sampled_from([8, 16, 24, 40, 72]), st.sampled_from([1, 8, 16]), st.integers(0, 99))
def test_double_buffered_tiles_give_the_same_result(k, k_step, seed):
    """Odd and even tile counts, a partitioned tail, one tile: the emulator's checking mode also proves every
    barrier the alternating buffers need is there."""
    _check_matmul(_double_buffered(k, k_step), 64, k, 64, seed)


@functools.cache
def _double_buffered(k: int, k_step: int):
    f = _tiled(MatmulTiles(4, k_step), f"db_{k}_{k_step}", n=64, k=k, m=64)
    assert ("a_shared1" in f.source("cuda")) == (k // k_step >= 2)  # loops of one tile (a tail) stay single
    return f


def test_double_buffer_on_a_loop_without_tiles_is_refused():
    a = ember.placeholder((64, 64), name="a")
    out = ember.compute((64, 64), lambda i, j: a[i, j] * 2, name="out")
    s = ember.create_schedule(out)
    i, j = s[out].leaf
    s[out].bind(i, "blockIdx.x")
    s[out].pragma(j, "double_buffer", 1)
    with pytest.raises(CudaCodegenError, match="double_buffer on loop 'j'.*shared tiles"):
        ember.build(s, [a, out], target=EMU, name="no_tiles")


@functools.cache
def half_matmul_kernel():
    """A float16 matmul accumulating in float32 whose sides are not multiples of 16 (no tensor-core tiles): the
    register-tiled rule stages float16 tiles and widens them where they are used."""
    n, m = ember.var("n"), ember.var("m")
    a = ember.placeholder((n, 40), "float16", name="a")
    b = ember.placeholder((40, m), "float16", name="b")
    r = ember.reduce_axis(40, "r")
    c = ember.compute((n, m), lambda i, j: ember.sum(ember.cast("float32", a[i, r]) * ember.cast("float32", b[r, j]),
                                                     axis=r), name="c")
    return ember.build(c, target=EMU, name="gpu_hmm")


@settings(max_examples=4, deadline=None)
@given(st.sampled_from([1, 17, 70]), st.sampled_from([3, 65]), st.integers(0, 99))
def test_float16_matmul_off_the_tensor_core_grid_is_register_tiled(n, m, seed):
    f = half_matmul_kernel()
    src = f.source("cuda")
    assert re.search(r"EMBER_SHARED\(__half, a_shared0, \d+\)", src) and "ember_round_half(__half2float" not in src
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal((n, 40)).astype(np.float16), rng.standard_normal((40, m)).astype(np.float16)
    np.testing.assert_allclose(f(a, b), a.astype(np.float32) @ b.astype(np.float32), rtol=1e-3, atol=1e-3)


def _matmul_bias_relu(n: int, k: int, m: int, dtype: str = "float32"):
    """relu(a @ b + bias) as the importer builds it: a contraction read by one element-wise stage."""
    a = ember.placeholder((n, k), dtype, name="a")
    b = ember.placeholder((k, m), dtype, name="b")
    bias = ember.placeholder((m,), "float32", name="bias")
    r = ember.reduce_axis(k, "r")
    c = ember.compute((n, m), lambda i, j: ember.sum(ember.cast("float32", a[i, r]) * ember.cast("float32", b[r, j]),
                                                      axis=r), name="c")
    out = ember.compute((n, m), lambda i, j: ember.maximum(c[i, j] + bias[j], 0.0), name="out")
    return [a, b, bias, out]


@settings(max_examples=5, deadline=None)
@given(st.sampled_from([32, 33, 97, 130]), st.sampled_from([16, 40, 64]), st.sampled_from([64, 65, 131]),
       st.integers(0, 99))
def test_an_element_wise_reader_is_the_write_back_of_the_tiles(n, k, m, seed):
    """Bias and activation applied to the register tiles as they are written: one kernel, tails included."""
    args = _matmul_bias_relu(n, k, m)
    f = ember.build(args[-1], args, target=EMU, name=f"mm_epilogue_{n}_{k}_{m}")
    assert f.source("cuda").count("__global__") == 1
    rng = np.random.default_rng(seed)
    a, b, bias = (rng.standard_normal(s).astype(np.float32) for s in ((n, k), (k, m), (m,)))
    np.testing.assert_allclose(f(a, b, bias), np.maximum(a @ b + bias, 0), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("large", [False, True])
def test_a_tensor_core_contraction_writes_through_its_reader_from_shared_memory(large, monkeypatch):
    """WMMA stores whole fragments: the warps store them into a shared block tile, then every thread applies the
    reader (one kernel). The 128 x 128 tiles would need 64 KB of staging: their reader stays a second kernel."""
    if large:
        monkeypatch.setattr(rules_gpu_tensorcore, "LARGE_FROM", 0)
    n, k, m = (128, 32, 256) if large else (32, 32, 48)
    args = _matmul_bias_relu(n, k, m, "float16")
    f = ember.build(args[-1], args, target=EMU, name=f"tc_epilogue_{int(large)}")
    src = f.source("cuda")
    assert "mma_sync" in src and src.count("__global__") == (2 if large else 1)
    rng = np.random.default_rng(1)
    a, b = (rng.standard_normal(s).astype(np.float16) for s in ((n, k), (k, m)))
    bias = rng.standard_normal(m).astype(np.float32)
    want = np.maximum(a.astype(np.float32) @ b.astype(np.float32) + bias, 0)
    np.testing.assert_allclose(f(a, b, bias), want, rtol=1e-3, atol=1e-3)


def test_a_convolution_with_bias_and_relu_is_one_kernel():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 10, 10])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64, 10, 10])
    rng = np.random.default_rng(6)
    w = (rng.standard_normal((64, 8, 3, 3)) / 9).astype(np.float32)
    bias = rng.standard_normal(64).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1] * 4), helper.make_node("Relu", ["c"], ["y"])]
    model = helper.make_model(helper.make_graph(nodes, "conv_relu", [x], [y], [numpy_helper.from_array(w, "w"),
                                                                              numpy_helper.from_array(bias, "b")]),
                              opset_imports=[helper.make_opsetid("", 17)])
    compiled = ember.compile(model, target=EMU)
    assert [s.kernel.source("cuda").count("__global__") for s in compiled.steps] == [1]
    xv = rng.standard_normal((1, 8, 10, 10)).astype(np.float32)
    want = np.maximum(_numpy_conv(xv, w, 1, 1) + bias.reshape(1, -1, 1, 1), 0)
    np.testing.assert_allclose(compiled(xv)[0], want, rtol=1e-4, atol=1e-4)


def test_a_strided_stem_gathers_its_padded_input_inside_the_fetch():
    """Few input channels and stride 2 (a ResNet stem): the zero-padded input and the patches are computed while
    the tile is fetched (padding as a zero-filling select), so the convolution is one kernel."""
    model, w = _conv_model(1, 3, 20, 64, 7, 2, 3)
    compiled = ember.compile(model, target=EMU)
    assert [s.kernel.source("cuda").count("__global__") for s in compiled.steps] == [1]
    x = np.random.default_rng(8).standard_normal((1, 3, 20, 20)).astype(np.float32)
    np.testing.assert_allclose(compiled(x)[0], _numpy_conv(x, w, 2, 3), rtol=1e-4, atol=1e-4)


def test_a_residual_block_tail_is_one_kernel():
    """Conv + Add(residual) + Relu: the broadcasting Add reads the batch of one at index 0, still the write-back's
    own position, so the whole tail is the convolution's epilogue."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 32, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 32, 8, 8])
    rng = np.random.default_rng(9)
    w = (rng.standard_normal((32, 32, 3, 3)) / 17).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1] * 4), helper.make_node("Add", ["c", "x"], ["s"]),
             helper.make_node("Relu", ["s"], ["y"])]
    model = helper.make_model(helper.make_graph(nodes, "residual", [x], [y], [numpy_helper.from_array(w, "w")]),
                              opset_imports=[helper.make_opsetid("", 17)])
    compiled = ember.compile(model, target=EMU)
    assert [s.kernel.source("cuda").count("__global__") for s in compiled.steps] == [1]
    xv = rng.standard_normal((1, 32, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(compiled(xv)[0], np.maximum(_numpy_conv(xv, w, 1, 1) + xv, 0), rtol=1e-4, atol=1e-4)


@settings(max_examples=4, deadline=None)
@given(st.sampled_from([(1, 3), (2, 3)]), st.sampled_from([(1, 3), (1, 1)]), st.sampled_from([32, 45]),
       st.sampled_from([16, 40]), st.sampled_from([33, 64]))
def test_broadcast_batched_matmul_stages_both_operands(a_batch, b_batch, m, k, n):
    """Attention's 4-D MatMul reads a batch dimension of one at index 0: still a plain tile, staged in shared
    memory (not read from global memory in the inner loop)."""
    a = helper.make_tensor_value_info("a", TensorProto.FLOAT, [*a_batch, m, k])
    b = helper.make_tensor_value_info("b", TensorProto.FLOAT, [*b_batch, k, n])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [max(a_batch[0], b_batch[0]), 3, m, n])
    model = helper.make_model(helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["y"])], "bmm", [a, b], [y]),
                              opset_imports=[helper.make_opsetid("", 17)])
    compiled = ember.compile(model, target=EMU)
    src = compiled.steps[0].kernel.source("cuda")
    assert "in0_shared0" in src and "in1_shared0" in src
    rng = np.random.default_rng(m * k + n)
    av = rng.standard_normal((*a_batch, m, k)).astype(np.float32)
    bv = rng.standard_normal((*b_batch, k, n)).astype(np.float32)
    np.testing.assert_allclose(compiled(av, bv)[0], av @ bv, rtol=1e-4, atol=1e-4)


@settings(max_examples=6, deadline=None)
@given(st.sampled_from([8, 9, 16, 24, 31]), st.sampled_from([16, 40]), st.sampled_from([33, 64, 130]),
       st.integers(0, 99))
def test_a_narrow_row_side_takes_16_or_32_row_tiles(n, k, m, seed):
    """8-31 rows (a convolution's few output channels): register tiles of 1 or 2 rows per thread under 64
    columns, both operands staged, instead of a mostly idle 64 x 64 tile or one output per thread."""
    a, b, c = _matmul(n, k, m)
    f = ember.build(c, [a, b, c], target=EMU, name=f"narrow_{n}_{k}_{m}")
    src = f.source("cuda")
    assert "a_shared0" in src and "b_shared0" in src
    launch = json.loads(f.source("launches"))["kernels"][0]
    assert launch["block"][:2] == [16, 16] and launch["grid"][1] == (1 if n <= 16 else -(-n // 32))
    _check_matmul(f, n, k, m, seed)
