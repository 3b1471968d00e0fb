"""CUDA code generation: expression semantics equal to the CPU backend's on the emulator, barriers, launch limits
and schedule errors caught before anything runs, and every generated kernel accepted by nvcc for sm_80/sm_90."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import ember
from ember.codegen import BackendUnavailable
from ember.codegen.cuda import CudaCodegenError, LaunchConfigError
from ember.codegen.cuda.render import KERNELS_MARK

EMU = "cuda -emulate"
pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="the CUDA emulator needs g++")


def build(sch, args=None, target=EMU, name="k"):
    """Every CUDA module is also compiled by nvcc when the session ends (tests/conftest.py)."""
    return ember.build(sch, args, target=target, name=name)


def _inputs(dtype: str, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    if dtype == "bool":
        return rng.random(n) < 0.5, rng.random(n) < 0.5
    if np.dtype(dtype).kind == "f":
        a = rng.standard_normal(n) * 3
        b = rng.standard_normal(n) * 3
        a[:4], b[:4] = [np.nan, 0.0, -0.0, np.inf], [1.0, -0.0, 0.0, np.nan]
        b[4] = 0.0
        return a.astype(dtype), b.astype(dtype)
    info = np.iinfo(dtype)
    lo, hi = max(info.min, -100), min(info.max, 100)
    a = rng.integers(lo, hi + 1, n).astype(dtype)
    b = rng.integers(lo, hi + 1, n).astype(dtype)
    b[:3] = 0
    if info.min < 0:
        b[3] = -1
        a[3] = info.min
    return a, b


def _ops(dtype: str):
    """Expressions of two elements exercising every operator and intrinsic the dtype admits."""
    if dtype == "bool":
        return [lambda x, y: x & y, lambda x, y: x | y, lambda x, y: x ^ y, lambda x, y: ~x,
                lambda x, y: ember.cast("int32", x) + ember.cast("int32", y)]
    if np.dtype(dtype).kind == "f":
        return [lambda x, y: x + y * 2, lambda x, y: x / y, lambda x, y: x // y, lambda x, y: x % y,
                ember.minimum, ember.maximum, lambda x, y: ember.sign(x), lambda x, y: ember.abs(x - y),
                lambda x, y: ember.exp(x * 0.1), lambda x, y: ember.sigmoid(x), lambda x, y: ember.round(x),
                lambda x, y: ember.log1p(ember.abs(y)), lambda x, y: ember.expm1(x * 0.01),
                lambda x, y: ember.tanh(x), lambda x, y: ember.isnan(x) | ember.isinf(y),
                lambda x, y: ember.cast("int32", x), lambda x, y: ember.cast("float16", x),
                lambda x, y: ember.select(x < y, x, y), lambda x, y: x != y, lambda x, y: ember.sqrt(ember.abs(x)),
                lambda x, y: ember.truncmod(x, y), lambda x, y: ember.erf(x)]
    ops = [lambda x, y: x + y, lambda x, y: x - y * 3, lambda x, y: x * y, lambda x, y: x // y,
           lambda x, y: x % y, lambda x, y: ember.truncdiv(x, y), lambda x, y: ember.truncmod(x, y),
           ember.minimum, ember.maximum, lambda x, y: x & y, lambda x, y: x ^ y, lambda x, y: ember.abs(x),
           lambda x, y: ember.sign(x), lambda x, y: x << (y % 9), lambda x, y: x >> (y % 9),
           lambda x, y: ember.cast("float32", x) / 3, lambda x, y: x < y, lambda x, y: ember.cast("int8", x)]
    if np.dtype(dtype).kind == "i":
        ops.append(lambda x, y: -x)
    return ops


DTYPES = ["float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "bool"]


@pytest.mark.parametrize("dtype", DTYPES)
def test_every_operator_matches_the_cpu_backend(dtype):
    """One kernel per dtype computes every operator on edge values (zeros, -1, INT_MIN, NaN, inf, -0) on the
    emulator; the llvm backend's results are the reference (numpy semantics)."""
    n = 300
    a = ember.placeholder((n,), dtype, name="a")
    b = ember.placeholder((n,), dtype, name="b")
    outs = [ember.compute((n,), lambda i, op=op: op(a[i], b[i]), name=f"o{k}") for k, op in enumerate(_ops(dtype))]
    gpu = build(outs, [a, b, *outs], name=f"ops_{dtype}")
    cpu = ember.build(outs, [a, b, *outs], target="llvm -opt=0", name=f"ops_{dtype}")
    x, y = _inputs(dtype, n, 0)
    with np.errstate(all="ignore"):
        for k, (got, want) in enumerate(zip(gpu(x, y), cpu(x, y))):
            if got.dtype.kind == "f":
                tol = 1e-3 if got.dtype == np.float16 else 2e-6
                np.testing.assert_allclose(got, want, rtol=tol, atol=tol, equal_nan=True, err_msg=f"op {k}")
            else:
                np.testing.assert_array_equal(got, want, err_msg=f"op {k}")


def test_float16_rounds_after_every_operation():
    a = ember.placeholder((64,), "float16", name="a")
    out = ember.compute((64,), lambda i: (a[i] * a[i] + a[i]) / 3, name="out")
    x = (np.arange(64, dtype=np.float16) * np.float16(0.37)).astype(np.float16)
    want = ((x * x + x) / np.float16(3)).astype(np.float16)
    np.testing.assert_array_equal(build(out)(x), want)


def test_shared_memory_stage_gets_barriers():
    """A block-tiled 1-D stencil: a shared tile written by one thread loop and read by another needs a barrier
    (the emulator reports a missing one); the result matches numpy."""
    n = 1000
    a = ember.placeholder((n + 2,), name="a")
    out = ember.compute((n,), lambda i: a[i] + a[i + 1] + a[i + 2], name="out")
    s = ember.create_schedule(out)
    tile = s.cache_read(a, "shared", [out])
    bo, bi = s[out].split(out.op.axis[0], 128)
    s[out].bind(bo, "blockIdx.x")
    s[out].bind(bi, "threadIdx.x")
    s[tile].compute_at(s[out], bo)
    to, ti = s[tile].split(s[tile].axes[0], 128)
    s[tile].bind(ti, "threadIdx.x")
    f = build(s, [a, out])
    assert "__syncthreads();" in f.source("cuda")
    assert "EMBER_SHARED(float" in f.source("cuda")
    x = np.random.default_rng(1).random(n + 2).astype(np.float32)
    np.testing.assert_allclose(f(x), x[:-2] + x[1:-1] + x[2:], rtol=1e-6)


def test_thread_loops_of_one_tag_with_different_extents_share_the_block():
    """Two thread loops bound to threadIdx.x (extents 130 and 128) in one kernel: the block has 130 threads and
    the shorter loop is guarded."""
    a = ember.placeholder((1000,), name="a")
    out = ember.compute((998,), lambda i: a[i] * 2 + a[i + 2], name="out")
    s = ember.create_schedule(out)
    tile = s.cache_read(a, "shared", [out])
    bo, bi = s[out].split(out.op.axis[0], 128)
    s[out].bind(bo, "blockIdx.x")
    s[out].bind(bi, "threadIdx.x")
    s[tile].compute_at(s[out], bo)
    s[tile].bind(s[tile].axes[0], "threadIdx.x")
    f = build(s, [a, out])
    assert json.loads(f.source("launches"))["kernels"][0]["block"] == [130, 1, 1]
    x = np.random.default_rng(2).random(1000).astype(np.float32)
    np.testing.assert_allclose(f(x), x[:-2] * 2 + x[2:], rtol=1e-6)


def _vector_schedule(lanes: int, stride: int):
    n = ember.var("n")
    a = ember.placeholder((n, 64 * stride), name="a")
    b = ember.placeholder((64,), name="b")
    out = ember.compute((n, 64), lambda i, j: a[i, j * stride] * b[j] + a[i, 0], name="out")
    s = ember.create_schedule(out)
    i, j = out.op.axis
    jo, ji = s[out].split(j, lanes)
    s[out].bind(i, "blockIdx.x")
    s[out].bind(jo, "threadIdx.x")
    s[out].vectorize(ji)
    return build(s, [a, b, out])


@pytest.mark.parametrize("lanes,stride,float4", [(4, 1, True), (8, 1, False), (4, 2, False)])
def test_vectorized_loops(lanes, stride, float4):
    """4 float lanes with unit stride become float4 loads/stores; other vector loops stay scalar and unrolled."""
    f = _vector_schedule(lanes, stride)
    src = f.source("cuda").split(KERNELS_MARK)[1]
    assert ("EMBER_STORE4(" in src) == float4 and ("#pragma unroll" in src) != float4
    rng = np.random.default_rng(lanes + stride)
    x = rng.random((5, 64 * stride)).astype(np.float32)
    y = rng.random(64).astype(np.float32)
    np.testing.assert_allclose(f(x, y), x[:, ::stride] * y + x[:, :1], rtol=1e-6)
    if float4:  # misaligned arrays run on aligned copies (written back for outputs)
        misaligned = np.empty(x.size + 1, np.float32)[1:].reshape(x.shape)
        misaligned[...] = x
        result = np.empty(misaligned.size + 3, np.float32)[3:3 + 5 * 64].reshape(5, 64)
        f(misaligned, y, result)
        np.testing.assert_allclose(result, x * y + x[:, :1], rtol=1e-6)


def _elementwise(n=1000):
    a = ember.placeholder((n,), name="a")
    out = ember.compute((n,), lambda i: a[i] + 1, name="out")
    return a, out, ember.create_schedule(out)


def test_unbound_loops_are_rejected():
    a, out, s = _elementwise()
    with pytest.raises(CudaCodegenError, match="no loop bound to blockIdx/threadIdx"):
        ember.build(s, [a, out], target=EMU)


def test_binding_a_tag_twice_is_rejected():
    a = ember.placeholder((64, 64), name="a")
    out = ember.compute((64, 64), lambda i, j: a[i, j] + 1, name="out")
    s = ember.create_schedule(out)
    s[out].bind(out.op.axis[0], "threadIdx.x")
    with pytest.raises(ember.ScheduleError, match="already bound"):
        s[out].bind(out.op.axis[1], "threadIdx.x")


def _row_reduction(threads: int, combiner: str = "sum", dtype: str = "float32"):
    a = ember.placeholder((8, 300), dtype, name="a")
    k = ember.reduce_axis(300, "k")
    out = ember.compute((8,), lambda i: getattr(ember, combiner)(a[i, k], axis=k), name="out")
    s = ember.create_schedule(out)
    ko, ki = s[out].split(k, threads)
    s[out].reorder(out.op.axis[0], ki, ko)
    s[out].bind(out.op.axis[0], "blockIdx.x")
    s[out].bind(ki, "threadIdx.x")
    return a, out, s


@pytest.mark.parametrize("threads,combiner,dtype", [(64, "sum", "float32"), (16, "max", "int8"),
                                                    (256, "sum", "float16"), (32, "min", "float64"),
                                                    (128, "prod", "int32")])
def test_reduction_axis_bound_to_threads_becomes_a_warp_shuffle_reduction(threads, combiner, dtype):
    a, out, s = _row_reduction(threads, combiner, dtype)
    f = build(s, [a, out])
    assert "__shfl_down_sync" in f.source("cuda")
    rng = np.random.default_rng(threads)
    x = (rng.random((8, 300)) * 4 - 2).astype(dtype) if dtype != "int32" else rng.choice([-1, 1, 1], (8, 300))
    x = x.astype(dtype)
    want = getattr(np, combiner)(x.astype("float64"), axis=1)
    tol = 1e-2 if dtype == "float16" else 1e-5
    np.testing.assert_allclose(f(x).astype("float64"), want, rtol=tol, atol=tol)


def test_cross_thread_reduction_needs_whole_warps():
    a, out, s = _row_reduction(48)
    with pytest.raises(CudaCodegenError, match="multiple of 32"):
        ember.build(s, [a, out], target=EMU)


def test_argmax_axis_bound_to_threads_is_a_dependency_across_threads():
    a = ember.placeholder((8, 64), name="a")
    k = ember.reduce_axis(64, "k")
    idx, val = ember.compute((8,), lambda i: ember.argmax(a[i, k], k), name="am")
    s = ember.create_schedule([idx, val])
    s[idx].bind(idx.op.axis[0], "blockIdx.x")
    s[idx].bind(k, "threadIdx.x")
    with pytest.raises(CudaCodegenError, match="dependency across threads"):
        ember.build(s, [a, idx, val], target=EMU)


def test_store_outside_the_thread_loop_is_a_dependency_across_threads():
    a = ember.placeholder((8, 64), name="a")
    out = ember.compute((8, 64), lambda i, j: a[i, j] * 2, name="out")
    s = ember.create_schedule(out)
    s[out].bind(out.op.axis[0], "blockIdx.x")
    tile = s.cache_read(a, "shared", [out])
    s[tile].compute_at(s[out], out.op.axis[0])
    s[tile].bind(s[tile].axes[1], "threadIdx.x")
    with pytest.raises(CudaCodegenError, match="outside every loop bound to threadIdx.x"):
        ember.build(s, [a, out], target=EMU)


def test_block_larger_than_the_target_limit():
    a, out, s = _elementwise()
    bo, bi = s[out].split(out.op.axis[0], 512)
    s[out].bind(bo, "blockIdx.x")
    s[out].bind(bi, "threadIdx.x")
    with pytest.raises(LaunchConfigError, match="max-threads-per-block=256"):
        ember.build(s, [a, out], target="cuda -emulate -max-threads-per-block=256")


def test_shared_memory_over_the_target_limit():
    a = ember.placeholder((4096,), name="a")
    out = ember.compute((4096,), lambda i: a[i] * 2, name="out")
    s = ember.create_schedule(out)
    tile = s.cache_read(a, "shared", [out])
    bo, bi = s[out].split(out.op.axis[0], 256)
    s[out].bind(bo, "blockIdx.x")
    s[out].bind(bi, "threadIdx.x")
    s[tile].compute_at(s[out], bo)
    s[tile].bind(s[tile].axes[0], "threadIdx.x")
    with pytest.raises(LaunchConfigError, match="need 1024 bytes.*max-shared-memory-per-block=512"):
        ember.build(s, [a, out], target="cuda -emulate -max-shared-memory-per-block=512")


def test_grid_over_the_cuda_limit_fails_before_the_launch():
    n = ember.var("n")
    a = ember.placeholder((n, 2), name="a")
    out = ember.compute((n, 2), lambda i, j: a[i, j] + 1, name="out")
    s = ember.create_schedule(out)
    s[out].bind(out.op.axis[0], "blockIdx.y")
    s[out].bind(out.op.axis[1], "threadIdx.x")
    f = build(s, [a, out])
    np.testing.assert_array_equal(f(np.ones((3, 2), np.float32)), np.full((3, 2), 2, np.float32))
    with pytest.raises(LaunchConfigError, match="gridDim.y=70000 exceeds"):
        f(np.ones((70000, 2), np.float32))


def test_cuda_without_cupy_names_the_missing_piece_and_emulate():
    try:
        import cupy  # noqa: F401
        pytest.skip("cupy is installed here")
    except ImportError:
        pass
    a, out, _ = _elementwise()
    with pytest.raises(BackendUnavailable, match="cupy is not installed.*-emulate"):
        ember.build(out, target="cuda")


def test_sources_show_cuda_launches_and_ptx():
    a, out, _ = _elementwise(100)
    f = build(out)
    assert '__global__ void __launch_bounds__(' in f.source("cuda")
    assert json.loads(f.source("launches"))["kernels"][0]["grid"] == [1, 1, 1]
    if shutil.which("nvcc"):
        assert ".entry" in f.source("ptx")


def test_an_array_on_another_gpu_is_named_in_the_refusal():
    """The device check the GPU kernels and models run on every input (a stand-in cupy here)."""
    from types import SimpleNamespace
    from ember.codegen.cuda.backend import on_current_device
    cupy = SimpleNamespace(cuda=SimpleNamespace(runtime=SimpleNamespace(getDevice=lambda: 0)))
    here, there = (SimpleNamespace(device=SimpleNamespace(id=k)) for k in (0, 1))
    assert on_current_device(cupy, here, "x") is here
    with pytest.raises(ValueError, match=r"argument 'a' is on GPU 1, but kernels run on GPU 0 .*cupy.cuda.Device\(0\)"):
        on_current_device(cupy, there, "kernel 'k': argument 'a'")
