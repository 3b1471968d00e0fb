"""Tensor cores (WMMA m16n16k16, float16 operands, float32 accumulation): the default rule and the `tensor_core`
pragma, run on the CUDA emulator (checking mode) against numpy, compile-checked with nvcc, and their refusals."""
from __future__ import annotations

import functools
import json
import shutil

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from onnx import TensorProto, helper, numpy_helper

import ember
from ember.codegen.cuda import CudaCodegenError
from ember.codegen.cuda.backend import CUDABackend, ptx as backend_ptx
from ember.compiler import rules_gpu_tensorcore
from ember.testing import gpu_test_target, gpu_test_unavailable

EMU = gpu_test_target()
pytestmark = pytest.mark.skipif(gpu_test_unavailable() is not None, reason=str(gpu_test_unavailable()))
sides = st.sampled_from([16, 48, 80, 130, 1, 7, 64])


def _matmul(m: int, n: int, k: int, b_transposed: bool = False, dtype: str = "float16"):
    a = ember.placeholder((m, k), name="a", dtype=dtype)
    b = ember.placeholder((n, k) if b_transposed else (k, n), name="b", dtype=dtype)
    r = ember.reduce_axis(k, "k")
    read_b = (lambda j: b[j, r]) if b_transposed else (lambda j: b[r, j])
    c = ember.compute((m, n), lambda i, j: ember.sum(ember.cast("float32", a[i, r]) * ember.cast("float32", read_b(j)),
                                                      axis=r), name="c")
    return a, b, c


def _inputs(m: int, n: int, k: int, b_transposed: bool, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((m, k)).astype(np.float16)
    b = rng.standard_normal((n, k) if b_transposed else (k, n)).astype(np.float16)
    return a, b


def _reference(a: np.ndarray, b: np.ndarray, b_transposed: bool) -> np.ndarray:
    bf = b.astype(np.float32)
    return a.astype(np.float32) @ (bf.T if b_transposed else bf)


@functools.cache
def default_kernel(m: int, n: int, k: int, b_transposed: bool):
    a, b, c = _matmul(m, n, k, b_transposed)
    return ember.build(c, [a, b, c], target=EMU, name=f"tc_{m}_{n}_{k}_{int(b_transposed)}")


@settings(max_examples=8, deadline=None)
@given(sides, sides, st.sampled_from([16, 48, 80, 130, 7]), st.booleans())
def test_default_schedule_matches_numpy(m, n, k, b_transposed):
    """Sides that are multiples of 16 take tensor cores; any other shape falls back to the float32 rules."""
    f = default_kernel(m, n, k, b_transposed)
    a, b = _inputs(m, n, k, b_transposed, m * n + k)
    np.testing.assert_allclose(f(a, b), _reference(a, b, b_transposed), rtol=1e-5, atol=1e-4)
    assert ("mma_sync" in f.source("cuda")) == (m % 16 == 0 and n % 16 == 0 and k % 16 == 0)


def _hand_schedule(m: int, n: int, k: int, warp_loop: bool = False, tile: int = 16, per_tile: bool = False,
                   dtype: str = "float16"):
    """A 32 x 32 block tile, one warp holding 2 x 2 fragments, operand tiles staged in shared memory by the warp.
    `per_tile`: the reduction runs inside each 16 x 16 tile (each fragment initialised on its own). `warp_loop`
    binds the output's columns to threadIdx.x (wrong: a fragment belongs to a whole warp)."""
    a, b, c = _matmul(m, n, k, dtype=dtype)
    sch = ember.create_schedule(c)
    acc = sch.cache_write(c, "local")
    tiles = [sch.cache_read(t, "shared", [acc]) for t in (a, b)]
    cst = sch[c]
    i, j = cst.leaf
    by, yi = cst.split(i, 32)
    bx, xi = cst.split(j, 32 * (32 if warp_loop else 1))  # warp_loop: 32 columns per lane
    cst.reorder(by, bx, yi, xi)
    cst.bind(by, "blockIdx.y")
    cst.bind(bx, "blockIdx.x")
    ast = sch[acc]
    if warp_loop:
        xo, _ = cst.split(xi, nparts=32)
        cst.reorder(by, bx, xo, yi)
        cst.bind(xo, "threadIdx.x")
        ast.compute_at(cst, xo)
    else:
        ast.compute_at(cst, bx)
    ai, aj, ak = ast.leaf
    ko, ki = ast.split(ak, tile)
    aio, ai = ast.split(ai, tile)
    ajo, aj = ast.split(aj, tile)
    ast.reorder(*((aio, ajo, ko) if per_tile else (ko, aio, ajo)), ai, aj, ki)
    ast.pragma(ai, "tensor_core", 1)
    for t in tiles:
        tst = sch[t]
        tst.compute_at(ast, ko)
        _, lane = tst.split(tst.fuse(*tst.leaf), 32)
        tst.bind(lane, "threadIdx.x")
    return sch, [a, b, c]


@settings(max_examples=5, deadline=None)
@given(st.sampled_from([32, 64, 96]), st.sampled_from([32, 64]), st.sampled_from([16, 48, 80]), st.booleans())
def test_pragma_in_a_hand_written_schedule(m, n, k, per_tile):
    sch, args = _hand_schedule(m, n, k, per_tile=per_tile)
    f = ember.build(sch, args, target=EMU, name=f"tc_hand_{m}_{n}_{k}_{int(per_tile)}")
    src = f.source("cuda")
    assert "mma_sync" in src and "fill_fragment" in src and "store_matrix_sync" in src
    a, b = _inputs(m, n, k, False, k)
    np.testing.assert_allclose(f(a, b), _reference(a, b, False), rtol=1e-5, atol=1e-4)


def test_onnx_float16_matmul_uses_tensor_cores(monkeypatch):
    """The importer's float16 MatMul accumulates in float32 (then casts to float16): that stage takes WMMA."""
    sources: list[str] = []
    original = CUDABackend.compile

    def record(self, func, target):
        parts = original(self, func, target)
        sources.append(parts["cuda"])
        return parts
    monkeypatch.setattr(CUDABackend, "compile", record)
    f = ember.jit(lambda x, y: ember.jnp.matmul(x, y), target=EMU)
    a, b = _inputs(48, 64, 32, False, 3)
    out = f(a, b)
    assert out.dtype == np.float16 and any("mma_sync" in s for s in sources)
    np.testing.assert_allclose(out.astype(np.float32), _reference(a, b, False), rtol=2e-3, atol=2e-3)


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed")
@pytest.mark.parametrize("b_transposed", [False, True])
def test_nvcc_compiles_for_sm80_and_sm90_within_resources(b_transposed):
    from ember.codegen.cuda import nvcc
    from ember.codegen.cuda.render import render
    from ember.compiler.default_schedule import default_schedule
    from ember.compiler.pipeline import lower_to_loops
    from ember.compiler.target import parse_target
    target = parse_target(EMU)
    a, b, c = _matmul(128, 64, 48, b_transposed)
    func = lower_to_loops(default_schedule(c, target), [a, b, c], "tc_nvcc", target=target)
    module = render(func, 1024, 49152)
    resources = nvcc.compile_check([module.source], ("sm_80", "sm_90"))
    assert {r.arch for r in resources} == {"sm_80", "sm_90"}
    assert nvcc.check_resources(resources, module.launches["kernels"]) == []
    assert nvcc.spills(resources) == []


def test_pragma_on_a_nest_that_is_not_16_cubed_is_refused():
    sch, args = _hand_schedule(64, 64, 64, tile=32)
    with pytest.raises(CudaCodegenError, match=r"tensor_core nest .*exactly three loops of 16.*32 x 32 x 32"):
        ember.build(sch, args, target=EMU, name="tc_bad_tile")


def test_pragma_on_float32_operands_is_refused():
    sch, args = _hand_schedule(32, 32, 32, per_tile=True, dtype="float32")
    with pytest.raises(CudaCodegenError, match=r"operand 'a.shared' is float32; tensor cores take float16"):
        ember.build(sch, args, target=EMU, name="tc_bad_dtype")


def test_pragma_below_sm70_is_refused_and_the_default_rule_stays_off():
    sch, args = _hand_schedule(32, 32, 16)
    with pytest.raises(CudaCodegenError, match=r"target arch sm_61 has no tensor cores"):
        ember.build(sch, args, target="cuda -arch=sm_61 -emulate", name="tc_old_arch")
    a, b, c = _matmul(32, 32, 16)
    f = ember.build(c, [a, b, c], target="cuda -arch=sm_61 -emulate", name="tc_old_default")
    assert "mma_sync" not in f.source("cuda")
    x, y = _inputs(32, 32, 16, False, 1)
    np.testing.assert_allclose(f(x, y), _reference(x, y, False), rtol=1e-5, atol=1e-4)


def test_fragment_inside_a_thread_loop_is_refused():
    """A fragment belongs to a whole warp: a tensor_core nest inside a loop bound to threadIdx.x would give each lane
    its own tile."""
    sch, args = _hand_schedule(32, 1024, 16, warp_loop=True)
    with pytest.raises(CudaCodegenError, match=r"warp collective inside loop .* bound to threadIdx.x"):
        ember.build(sch, args, target=EMU, name="tc_in_lane_loop")


@functools.cache
def batched_kernel(q: int, m: int, n: int):
    """Attention scores in float16: a batch axis on blockIdx.z, B read along its rows (K^T)."""
    a = ember.placeholder((q, m, 32), name="a", dtype="float16")
    b = ember.placeholder((q, n, 32), name="b", dtype="float16")
    r = ember.reduce_axis(32, "k")
    c = ember.compute((q, m, n), lambda z, i, j: ember.sum(
        ember.cast("float32", a[z, i, r]) * ember.cast("float32", b[z, j, r]), axis=r), name="c")
    return ember.build(c, [a, b, c], target=EMU, name=f"tc_batched_{q}_{m}_{n}")


@settings(max_examples=4, deadline=None)
@given(st.sampled_from([1, 3]), st.sampled_from([16, 48]), st.sampled_from([16, 80]), st.integers(0, 99))
def test_batched_float16_matmul_takes_tensor_cores(q, m, n, seed):
    f = batched_kernel(q, m, n)
    src = f.source("cuda")
    assert "mma_sync" in src and "blockIdx.z" in src
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((q, m, 32)).astype(np.float16)
    b = rng.standard_normal((q, n, 32)).astype(np.float16)
    want = a.astype(np.float32) @ b.astype(np.float32).transpose(0, 2, 1)
    np.testing.assert_allclose(f(a, b), want, rtol=1e-5, atol=1e-4)


def _conv16(batch: int, c: int, hw: int, m: int, k: int, stride: int, pad: int):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT16, [batch, c, hw, hw])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT16, ["n", "m", "h", "w"])
    w = (np.random.default_rng(k).standard_normal((m, c, k, k)) / np.sqrt(c * k * k)).astype(np.float16)
    node = helper.make_node("Conv", ["x", "w"], ["y"], pads=[pad] * 4, strides=[stride] * 2)
    graph = helper.make_graph([node], "conv16", [x], [y], [numpy_helper.from_array(w, "w")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), w


@settings(max_examples=4, deadline=None)
@given(st.sampled_from([1, 2]), st.sampled_from([16, 32]), st.sampled_from([(8, 1, 1), (16, 2, 1), (12, 1, 1)]),
       st.sampled_from([16, 48]))
def test_float16_convolution_takes_tensor_cores(batch, c, window, m):
    """An implicit GEMM whose pixel count, channels x taps and filters are multiples of 16: the weight matrix (one
    for every image of the batch) and the input patches gathered inside the tile fetch, on WMMA."""
    hw, stride, pad = window
    model, w = _conv16(batch, c, hw, m, 3, stride, pad)
    compiled = ember.compile(model, target=EMU)
    (step,) = compiled.steps
    src = step.kernel.source("cuda")
    assert "mma_sync" in src and src.count("__global__") == 1  # the (oh, ow) view is written from shared memory
    x = np.random.default_rng(c + m).standard_normal((batch, c, hw, hw)).astype(np.float16)
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    out = (hw + 2 * pad - 3) // stride + 1
    want = sum(np.einsum("nchw,mc->nmhw", xp[:, :, i:i + stride * out:stride, j:j + stride * out:stride],
                         w[:, :, i, j].astype(np.float64)) for i in range(3) for j in range(3))
    np.testing.assert_allclose(compiled(x)[0].astype(np.float64), want, rtol=4e-3, atol=4e-3)


@pytest.mark.parametrize("arch", ["sm_75", "sm_80"])
def test_float16_tiles_are_copied_without_conversions(arch):
    """Staging a float16 tile is a copy with no round trip through float: the double-buffered loop's fetches, which
    overlap the multiplies, are one 16-byte cp.async per thread on sm_80+; the first tile's (used at once) and all
    fetches before sm_80 copy element by element."""
    a, b, c = _matmul(64, 64, 64)
    f = ember.build(c, [a, b, c], target=f"cuda -emulate -arch={arch}", name=f"tc_copy_{arch}")
    src = f.source("cuda").split("// ---- kernels ----")[1]
    first, loop = src.split("for (int k_outer2")
    fetches = [line for line in src.splitlines() if "_shared" in line and ("= a[" in line or "= b[" in line
                                                                           or "EMBER_CP_ASYNC" in line)]
    assert fetches and not any("__float2half" in line for line in fetches)
    assert "EMBER_CP_ASYNC" not in first
    vector_copies = [line for line in loop.splitlines() if "EMBER_CP_ASYNC_VEC(" in line]
    assert len(vector_copies) == (4 if arch == "sm_80" else 0)  # A and B into each of the two buffers
    assert all(line.rstrip().endswith(", 16);") for line in vector_copies)
    x, y = _inputs(64, 64, 64, False, 5)
    np.testing.assert_allclose(f(x, y), _reference(x, y, False), rtol=1e-5, atol=1e-4)


@settings(max_examples=3, deadline=None)
@given(st.sampled_from([(128, 128, 32), (256, 128, 64), (128, 256, 96)]), st.booleans(), st.integers(0, 99))
def test_large_outputs_take_128_square_tiles_of_8_warps(shape, b_transposed, seed):
    """The large-output tiles (128 x 128 blocks, 2 x 4 warps of 4 x 2 fragments, K steps of 32), forced on sizes
    the emulator runs quickly."""
    m, n, k = shape
    a, b, c = _matmul(m, n, k, b_transposed)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(rules_gpu_tensorcore, "LARGE_FROM", 0)
        f = ember.build(c, [a, b, c], target=EMU, name=f"tc_large_{m}_{n}_{k}_{int(b_transposed)}")
    launch = json.loads(f.source("launches"))["kernels"][0]
    assert launch["block"] == [32, 2, 4] and launch["grid"][:2] == [n // 128, m // 128]
    x, y = _inputs(m, n, k, b_transposed, seed)
    np.testing.assert_allclose(f(x, y), _reference(x, y, b_transposed), rtol=1e-5, atol=1e-4)


def test_each_operand_fragment_is_loaded_once_per_warp_row_or_column():
    """4 x 2 fragment products per K step take 4 A and 2 B fragment loads, not one pair per product."""
    a, b, c = _matmul(128, 128, 32)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(rules_gpu_tensorcore, "LARGE_FROM", 0)
        src = ember.build(c, [a, b, c], target=EMU, name="tc_shared_frags").source("cuda")
    assert "matrix_a, 16, 16, 16, __half, nvcuda::wmma::row_major> a_frags[4];" in src
    assert "matrix_b, 16, 16, 16, __half, nvcuda::wmma::row_major> b_frags[2];" in src
    if shutil.which("nvcc"):
        ptx = backend_ptx(src, "sm_80")
        assert ptx.count("wmma.mma") == 2 * ptx.count("wmma.load.a") == 4 * ptx.count("wmma.load.b")


def test_float16_attention_scores_take_tensor_cores():
    """(1, heads, seq, d) @ (1, heads, d, seq) in float16: the batch of one is read at index 0."""
    q = helper.make_tensor_value_info("q", TensorProto.FLOAT16, [1, 2, 32, 16])
    k = helper.make_tensor_value_info("k", TensorProto.FLOAT16, [1, 2, 16, 48])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT16, [1, 2, 32, 48])
    model = helper.make_model(helper.make_graph([helper.make_node("MatMul", ["q", "k"], ["y"])], "scores", [q, k],
                                                [y]), opset_imports=[helper.make_opsetid("", 17)])
    compiled = ember.compile(model, target=EMU)
    assert "mma_sync" in compiled.steps[0].kernel.source("cuda")
    rng = np.random.default_rng(13)
    qv = rng.standard_normal((1, 2, 32, 16)).astype(np.float16)
    kv = rng.standard_normal((1, 2, 16, 48)).astype(np.float16)
    want = qv.astype(np.float32) @ kv.astype(np.float32)
    np.testing.assert_allclose(compiled(qv, kv)[0].astype(np.float32), want, rtol=2e-3, atol=2e-3)
