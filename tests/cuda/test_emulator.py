"""The CUDA CPU emulator runs hand-written CUDA kernels (the generator's prelude) correctly and catches broken ones.

Every kernel lives in one source so the module is compiled once (per checking mode); when nvcc is on PATH the same
source is also compiled for sm_80, proving the kernels are real CUDA.
"""
from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from ember.codegen.cuda.emulate import (EmulatedModule, EmulationError, EmulatorCompileError, EmulatorUnavailable,
                                        KernelParam, KernelSpec, compile_module)

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="the CUDA emulator needs g++")

PRELUDE = r"""
#ifdef EMBER_EMULATE
#include "cuda_emu.h"
#else
#include <cuda_fp16.h>
#include <mma.h>
#define EMBER_GLOBAL(T) T* __restrict__
#define EMBER_SHARED(T, name, n) __shared__ T name[n]
#define EMBER_LOAD4(p, i) (*reinterpret_cast<const float4*>(&(p)[i]))
#define EMBER_STORE4(p, i, v) (*reinterpret_cast<float4*>(&(p)[i]) = (v))
#endif
"""

GOOD = r"""
extern "C" __global__ void __launch_bounds__(256) vadd(EMBER_GLOBAL(const float) a, EMBER_GLOBAL(const float) b,
                                                     EMBER_GLOBAL(float) c, long long n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) c[i] = a[i] + b[i];
}

extern "C" __global__ void __launch_bounds__(256) block_sum(EMBER_GLOBAL(const float) a, EMBER_GLOBAL(float) out,
                                                          long long n) {
    EMBER_SHARED(float, s, 256);
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    s[threadIdx.x] = i < n ? a[i] : 0.0f;
    __syncthreads();
    for (unsigned stride = blockDim.x / 2; stride > 0; stride >>= 1) {
        if (threadIdx.x < stride) s[threadIdx.x] += s[threadIdx.x + stride];
        __syncthreads();
    }
    if (threadIdx.x == 0) out[blockIdx.x] = s[0];
}

extern "C" __global__ void __launch_bounds__(256) warp_sum(EMBER_GLOBAL(const float) a, EMBER_GLOBAL(float) out,
                                                         long long n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    float v = i < n ? a[i] : 0.0f;
    for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(0xffffffffu, v, off);
    if (threadIdx.x % 32 == 0) out[i / 32] = v;
}

extern "C" __global__ void __launch_bounds__(1024) shuffles(EMBER_GLOBAL(long long) out, int delta, int width) {
    int t = threadIdx.x, n = blockDim.x;
    long long v = 1000 + t;
    out[0 * n + t] = __shfl_down_sync(0xffffffffu, v, delta, width);
    out[1 * n + t] = __shfl_up_sync(0xffffffffu, v, delta, width);
    out[2 * n + t] = __shfl_xor_sync(0xffffffffu, v, delta, width);
    out[3 * n + t] = __shfl_sync(0xffffffffu, v, delta, width);
    double d = 0.5 * t;
    out[4 * n + t] = (long long)(2.0 * __shfl_xor_sync(0xffffffffu, d, 1));
    int k = __shfl_sync(0xffffffffu, t * 3, 0);
    out[5 * n + t] = k;
    unsigned half = t % 32 < 16 ? 0x0000ffffu : 0xffff0000u;   // two independent half-warp groups
    out[6 * n + t] = t % 32 < 16 ? __shfl_xor_sync(half, v, 1) : __shfl_xor_sync(half, v, 2);
}

// Warp-synchronous shared-memory reduction: __syncwarp() orders the lanes' shared accesses, no block barrier needed.
extern "C" __global__ void __launch_bounds__(64) warp_shared_sum(EMBER_GLOBAL(const float) a, EMBER_GLOBAL(float) out) {
    EMBER_SHARED(float, s, 64);
    int t = threadIdx.x, lane = t % 32;
    s[t] = a[blockIdx.x * 64 + t];
    __syncwarp();
    for (int off = 16; off > 0; off >>= 1) {
        if (lane < off) s[t] += s[t + off];
        __syncwarp();
    }
    float total = s[t - lane];   // every lane reads its warp's sum...
    __syncwarp();
    if (lane == 0) s[t] = -1.0f;   // ...before lane 0 reuses the element
    if (lane == 31) out[blockIdx.x * 2 + t / 32] = total;
}

extern "C" __global__ void __launch_bounds__(256) votes(EMBER_GLOBAL(const int) pred, EMBER_GLOBAL(unsigned int) out,
                                                      long long n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    int p = i < n ? pred[i] : 0;
    unsigned b = __ballot_sync(0xffffffffu, p);
    int any = __any_sync(0xffffffffu, p);
    int all = __all_sync(0xffffffffu, p);
    __syncwarp();
    if (threadIdx.x % 32 == 0) {
        long long w = i / 32;
        out[3 * w] = b;
        out[3 * w + 1] = any;
        out[3 * w + 2] = all;
    }
}

extern "C" __global__ void __launch_bounds__(128) histogram(EMBER_GLOBAL(const int) x, EMBER_GLOBAL(unsigned int) hist,
                                                          EMBER_GLOBAL(unsigned int) hist2, EMBER_GLOBAL(int) stats,
                                                          EMBER_GLOBAL(float) total, long long n) {
    EMBER_SHARED(unsigned int, h, 64);
    for (int b = threadIdx.x; b < 64; b += blockDim.x) h[b] = 0;
    __syncthreads();
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        int v = x[i];
        atomicAdd(&hist[v], 1u);
        atomicAdd(&h[v], 1u);
        atomicMax(&stats[0], v);
        atomicMin(&stats[1], v);
        atomicAdd(&total[0], (float)v);
    }
    __syncthreads();
    for (int b = threadIdx.x; b < 64; b += blockDim.x) atomicAdd(&hist2[b], h[b]);
}

extern "C" __global__ void __launch_bounds__(256) half_convert(EMBER_GLOBAL(const float) f, EMBER_GLOBAL(__half) h,
                                                             EMBER_GLOBAL(const __half) hin, EMBER_GLOBAL(float) fout,
                                                             EMBER_GLOBAL(__half) hsq, EMBER_GLOBAL(const double) d,
                                                             EMBER_GLOBAL(__half) hd, long long n, long long m) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        h[i] = __float2half(f[i]);
        hd[i] = __half(d[i]);
    }
    if (i < m) {
        fout[i] = __half2float(hin[i]);
        hsq[i] = hin[i] * hin[i];
    }
}

extern "C" __global__ void __launch_bounds__(256) matmul_tiled(EMBER_GLOBAL(const float) A, EMBER_GLOBAL(const float) B,
                                                             EMBER_GLOBAL(float) C, long long M, long long N,
                                                             long long K) {
    EMBER_SHARED(float, As, 256);
    EMBER_SHARED(float, Bs, 256);
    int tx = threadIdx.x, ty = threadIdx.y;
    long long row = (long long)blockIdx.y * 16 + ty, col = (long long)blockIdx.x * 16 + tx;
    float acc = 0.0f;
    for (long long k0 = 0; k0 < K; k0 += 16) {
        As[ty * 16 + tx] = (row < M && k0 + tx < K) ? A[row * K + k0 + tx] : 0.0f;
        Bs[ty * 16 + tx] = (k0 + ty < K && col < N) ? B[(k0 + ty) * N + col] : 0.0f;
        __syncthreads();
        for (int k = 0; k < 16; ++k) acc += As[ty * 16 + k] * Bs[k * 16 + tx];
        __syncthreads();
    }
    if (row < M && col < N) C[row * N + col] = acc;
}

extern "C" __global__ void __launch_bounds__(32) wmma_gemm(EMBER_GLOBAL(const __half) A, EMBER_GLOBAL(const __half) B,
                                                         EMBER_GLOBAL(float) C, long long N, long long K) {
    using namespace nvcuda;
    wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> a;
    wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::row_major> b;
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> c;
    wmma::fill_fragment(c, 0.0f);
    long long row = (long long)blockIdx.y * 16, col = (long long)blockIdx.x * 16;
    for (long long k = 0; k < K; k += 16) {
        wmma::load_matrix_sync(a, A + row * K + k, K);
        wmma::load_matrix_sync(b, B + k * N + col, N);
        wmma::mma_sync(c, a, b, c);
    }
    wmma::store_matrix_sync(C + row * N + col, c, N, wmma::mem_row_major);
}

// Two warps: C (16 x 32) = A (16 x K) * B (K x 32) with B given transposed (col-major B), A and C staged in shared.
extern "C" __global__ void __launch_bounds__(64) wmma_shared(EMBER_GLOBAL(const __half) A,
                                                           EMBER_GLOBAL(const __half) BT, EMBER_GLOBAL(float) C,
                                                           long long K) {
    using namespace nvcuda;
    EMBER_SHARED(__half, As, 256);
    EMBER_SHARED(float, Cs, 512);
    int warp = threadIdx.x / 32;
    wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> a;
    wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::col_major> b;
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> c;
    wmma::fill_fragment(c, 0.0f);
    for (long long k = 0; k < K; k += 16) {
        for (int e = threadIdx.x; e < 256; e += blockDim.x) As[e] = A[(e / 16) * K + k + e % 16];
        __syncthreads();
        wmma::load_matrix_sync(a, As, 16);
        wmma::load_matrix_sync(b, BT + (long long)warp * 16 * K + k, K);
        wmma::mma_sync(c, a, b, c);
        __syncthreads();
    }
    wmma::store_matrix_sync(Cs + warp * 256, c, 16, wmma::mem_row_major);
    __syncthreads();
    for (int e = threadIdx.x; e < 512; e += blockDim.x) {
        int w = e / 256, r = (e % 256) / 16, cc = e % 16;
        C[r * 32 + w * 16 + cc] = Cs[e];
    }
}

extern "C" __global__ void index3d(EMBER_GLOBAL(int) out) {
    long long block = ((long long)blockIdx.z * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x;
    int nt = blockDim.x * blockDim.y * blockDim.z;
    int t = (threadIdx.z * blockDim.y + threadIdx.y) * blockDim.x + threadIdx.x;
    long long o = (block * nt + t) * 6;
    out[o] = blockIdx.x;
    out[o + 1] = blockIdx.y;
    out[o + 2] = blockIdx.z;
    out[o + 3] = threadIdx.x;
    out[o + 4] = threadIdx.y;
    out[o + 5] = threadIdx.z;
}

extern "C" __global__ void __launch_bounds__(64) math_ops(EMBER_GLOBAL(const float) x, EMBER_GLOBAL(const double) xd,
                                                        EMBER_GLOBAL(float) y, EMBER_GLOBAL(double) yd,
                                                        EMBER_GLOBAL(int) yi, EMBER_GLOBAL(unsigned long long) flags,
                                                        long long n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float v = x[i], a = fabsf(v);
    double d = xd[i], ad = fabs(d);
    float fr[] = {expf(v), logf(a + 1.0f), sqrtf(a), rsqrtf(a + 1.0f), tanhf(v), fmaxf(v, 0.5f), fminf(v, 0.5f),
                  powf(a, 1.5f), erff(v), floorf(v), ceilf(v), rintf(v), truncf(v), sinf(v), cosf(v),
                  fmodf(v, 0.7f), __fdividef(v, 3.0f), __expf(v), max(v, 0.25f), min(v, 0.25f),
                  exp(v), log(a + 1.0f), sqrt(a), tanh(v), fabs(v), fmax(v, 0.5f), fmin(v, 0.5f), pow(a, 1.5f),
                  erf(v), floor(v), ceil(v), rint(v), trunc(v), sin(v), cos(v), fmod(v, 0.7f)};
    for (int k = 0; k < 36; ++k) y[i * 36 + k] = fr[k];
    double dr[] = {exp(d), log(ad + 1.0), sqrt(ad), tanh(d), fmax(d, 0.5), fmin(d, 0.5), pow(ad, 1.5), erf(d),
                   floor(d), ceil(d), rint(d), trunc(d), sin(d), cos(d), fmod(d, 0.7), max(d, 0.25), min(d, 0.25)};
    for (int k = 0; k < 17; ++k) yd[i * 17 + k] = dr[k];
    int j = (int)i;
    yi[i * 4] = max(j, 7);
    yi[i * 4 + 1] = min(j, 7);
    yi[i * 4 + 2] = (int)max((unsigned)j, 7u);
    yi[i * 4 + 3] = (int)min((long long)j, 7ll);
    atomicCAS(&flags[0], 0ull, 1ull + i);      // exactly one thread wins
    atomicExch(&flags[1], 5ull);
}

extern "C" __global__ void __launch_bounds__(128) axpb4(EMBER_GLOBAL(const float) x, EMBER_GLOBAL(float) y, long long n,
                                                      float alpha, double beta, int k) {
    long long i = 4 * ((long long)blockIdx.x * blockDim.x + threadIdx.x);
    float b = (float)beta;
    if (i + 3 < n) {
        float4 v = EMBER_LOAD4(x, i);
        EMBER_STORE4(y, i, make_float4(v.x * alpha + b + k, v.y * alpha + b + k, v.z * alpha + b + k,
                                       v.w * alpha + b + k));
    } else {
        for (long long j = i; j < n; ++j) y[j] = x[j] * alpha + b + k;
    }
}
"""

BAD = r"""
extern "C" __global__ void bad_oob_read(EMBER_GLOBAL(const float) a, EMBER_GLOBAL(float) c, long long n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) c[i] = a[i + 1];
}

extern "C" __global__ void bad_oob_write(EMBER_GLOBAL(float) c) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    c[i] = 2.0f;
}

extern "C" __global__ void bad_missing_sync(EMBER_GLOBAL(float) out) {
    EMBER_SHARED(float, s, 64);
    s[threadIdx.x] = threadIdx.x;
    out[threadIdx.x] = s[threadIdx.x > 0 ? threadIdx.x - 1 : 0];
}

extern "C" __global__ void bad_write_after_read(EMBER_GLOBAL(float) out) {
    EMBER_SHARED(float, s, 64);
    s[threadIdx.x] = threadIdx.x;
    __syncthreads();
    float v = s[(threadIdx.x + 1) % blockDim.x];
    s[threadIdx.x] = 2.0f * v;
    out[threadIdx.x] = v;
}

extern "C" __global__ void bad_uninit(EMBER_GLOBAL(float) out) {
    EMBER_SHARED(float, s, 64);
    if (blockIdx.x == 0) s[threadIdx.x] = 1.0f;
    __syncthreads();
    out[blockIdx.x * blockDim.x + threadIdx.x] = s[threadIdx.x];
}

extern "C" __global__ void bad_warp_race(EMBER_GLOBAL(float) out) {
    EMBER_SHARED(float, s, 32);
    int t = threadIdx.x;
    s[t] = t;
    __syncwarp();
    for (int off = 16; off > 0; off >>= 1)
        if (t < off) s[t] += s[t + off];   // no __syncwarp() between the rounds
    out[t] = s[t];
}

extern "C" __global__ void bad_divergent(EMBER_GLOBAL(float) out) {
    if (threadIdx.x < 16) __syncthreads();
    out[threadIdx.x] = 1.0f;
}

extern "C" __global__ void bad_warp_divergent(EMBER_GLOBAL(float) out) {
    float v = threadIdx.x;
    if (threadIdx.x % 32 < 16) v = __shfl_down_sync(0xffffffffu, v, 1);
    out[threadIdx.x] = v;
}

extern "C" __global__ void bad_shared_oob(EMBER_GLOBAL(float) out) {
    EMBER_SHARED(float, s, 32);
    s[threadIdx.x] = 1.0f;
    __syncthreads();
    out[threadIdx.x] = s[threadIdx.x % 32];
}

extern "C" __global__ void bad_load4(EMBER_GLOBAL(const float) x, EMBER_GLOBAL(float) y) {
    float4 v = EMBER_LOAD4(x, 2);
    y[threadIdx.x] = v.x;
}
"""

SOURCE = PRELUDE + GOOD + BAD


def _p(name: str, ctype: str) -> KernelParam:
    return KernelParam(name, "ptr", ctype)


def _s(name: str, ctype: str = "long long") -> KernelParam:
    return KernelParam(name, "scalar", ctype)


F, CF = "float", "const float"
KERNELS = (
    KernelSpec("vadd", (_p("a", CF), _p("b", CF), _p("c", F), _s("n"))),
    KernelSpec("block_sum", (_p("a", CF), _p("out", F), _s("n"))),
    KernelSpec("warp_sum", (_p("a", CF), _p("out", F), _s("n"))),
    KernelSpec("shuffles", (_p("out", "long long"), _s("delta", "int"), _s("width", "int"))),
    KernelSpec("warp_shared_sum", (_p("a", CF), _p("out", F))),
    KernelSpec("votes", (_p("pred", "const int"), _p("out", "unsigned int"), _s("n"))),
    KernelSpec("histogram", (_p("x", "const int"), _p("hist", "unsigned int"), _p("hist2", "unsigned int"),
                             _p("stats", "int"), _p("total", F), _s("n"))),
    KernelSpec("half_convert", (_p("f", CF), _p("h", "__half"), _p("hin", "const __half"), _p("fout", F),
                                _p("hsq", "__half"), _p("d", "const double"), _p("hd", "__half"), _s("n"), _s("m"))),
    KernelSpec("matmul_tiled", (_p("A", CF), _p("B", CF), _p("C", F), _s("M"), _s("N"), _s("K"))),
    KernelSpec("wmma_gemm", (_p("A", "const __half"), _p("B", "const __half"), _p("C", F), _s("N"), _s("K"))),
    KernelSpec("wmma_shared", (_p("A", "const __half"), _p("BT", "const __half"), _p("C", F), _s("K"))),
    KernelSpec("index3d", (_p("out", "int"),)),
    KernelSpec("math_ops", (_p("x", CF), _p("xd", "const double"), _p("y", F), _p("yd", "double"), _p("yi", "int"),
                            _p("flags", "unsigned long long"), _s("n"))),
    KernelSpec("axpb4", (_p("x", CF), _p("y", F), _s("n"), _s("alpha", "float"), _s("beta", "double"),
                         _s("k", "int"))),
    KernelSpec("bad_oob_read", (_p("a", CF), _p("c", F), _s("n"))),
    KernelSpec("bad_oob_write", (_p("c", F),)),
    KernelSpec("bad_missing_sync", (_p("out", F),)),
    KernelSpec("bad_write_after_read", (_p("out", F),)),
    KernelSpec("bad_uninit", (_p("out", F),)),
    KernelSpec("bad_warp_race", (_p("out", F),)),
    KernelSpec("bad_divergent", (_p("out", F),)),
    KernelSpec("bad_warp_divergent", (_p("out", F),)),
    KernelSpec("bad_shared_oob", (_p("out", F),)),
    KernelSpec("bad_load4", (_p("x", CF), _p("y", F))),
)


@pytest.fixture(scope="module")
def mod() -> EmulatedModule:
    return EmulatedModule(compile_module(SOURCE, KERNELS, checking=True), KERNELS)


@pytest.fixture(scope="module")
def fast_mod() -> EmulatedModule:
    return EmulatedModule(compile_module(SOURCE, KERNELS, checking=False), KERNELS)


def _blocks(n: int, threads: int) -> tuple[int, int, int]:
    return (max(1, -(-n // threads)), 1, 1)


def _vadd(m: EmulatedModule, n: int, rng: np.random.Generator) -> None:
    a, b = rng.standard_normal(n, dtype=np.float32), rng.standard_normal(n, dtype=np.float32)
    c = np.full(n, np.nan, np.float32)
    m.launch("vadd", _blocks(n, 256), (256, 1, 1), [a, b, c, n])
    np.testing.assert_array_equal(c, a + b)


@settings(max_examples=10)
@given(n=st.integers(1, 3000))
def test_vector_add_with_tail(mod, n):
    _vadd(mod, n, np.random.default_rng(n))


def test_block_and_warp_reductions(mod):
    rng = np.random.default_rng(0)
    n = 256 * 7 + 100
    a = rng.standard_normal(n, dtype=np.float32)
    padded = np.concatenate([a, np.zeros(-n % 256, np.float32)])
    out = np.zeros(8, np.float32)
    mod.launch("block_sum", (8, 1, 1), (256, 1, 1), [a, out, n])
    np.testing.assert_allclose(out, padded.reshape(8, 256).sum(1, dtype=np.float64), rtol=1e-5, atol=1e-5)
    warps = np.zeros(64, np.float32)
    mod.launch("warp_sum", (8, 1, 1), (256, 1, 1), [a, warps, n])
    np.testing.assert_allclose(warps, padded.reshape(64, 32).sum(1, dtype=np.float64), rtol=1e-5, atol=1e-5)
    mod.launch("warp_shared_sum", (32, 1, 1), (64, 1, 1), [padded, warps])
    np.testing.assert_allclose(warps, padded.reshape(64, 32).sum(1, dtype=np.float64), rtol=1e-5, atol=1e-5)


def _shuffle_model(n: int, delta: int, width: int) -> np.ndarray:
    """CUDA's shuffle rules; lanes past the block's end do not exist and give the caller its own value."""
    out = np.zeros((7, n), np.int64)
    for t in range(n):
        lane, base = t % 32, t - t % 32

        def exists(src: int, base: int = base) -> bool:
            return 0 <= src < 32 and base + src < n

        own = 1000 + t
        sub = lane % width
        srcs = (lane + delta if sub + delta < width else -1,
                lane - delta if sub >= delta else -1,
                lane ^ delta if (lane ^ delta) < (lane // width + 1) * width else -1,
                (lane & ~(width - 1)) | (delta & (width - 1)))
        for row, src in enumerate(srcs):
            out[row, t] = 1000 + base + src if src >= 0 and exists(src) else own
        out[4, t] = base + (lane ^ 1) if exists(lane ^ 1) else t
        out[5, t] = 3 * base
        partner = lane ^ (1 if lane < 16 else 2)
        out[6, t] = base + partner + 1000 if exists(partner) else own
    return out


@settings(max_examples=15)
@given(n=st.integers(1, 100), delta=st.integers(0, 33), width=st.sampled_from([1, 2, 4, 8, 16, 32]))
def test_shuffles_follow_cuda_rules_including_partial_warps(mod, n, delta, width):
    out = np.zeros(7 * n, np.int64)
    mod.launch("shuffles", (1, 1, 1), (n, 1, 1), [out, delta, width])
    np.testing.assert_array_equal(out.reshape(7, n), _shuffle_model(n, delta, width))


def test_votes(mod):
    rng = np.random.default_rng(1)
    n = 256 * 3 - 40
    pred = (rng.random(n) < 0.5).astype(np.int32)
    pred[:32] = 1       # a warp where all hold
    pred[32:64] = 0     # a warp where none holds
    out = np.zeros(3 * 24, np.uint32)
    mod.launch("votes", (3, 1, 1), (256, 1, 1), [pred, out, n])
    bits = np.concatenate([pred, np.zeros(768 - n, np.int32)]).reshape(-1, 32).astype(np.uint64)
    ballot = (bits << np.arange(32, dtype=np.uint64)).sum(1)
    got = out.reshape(-1, 3)
    np.testing.assert_array_equal(got[:, 0], ballot)
    np.testing.assert_array_equal(got[:, 1], bits.any(1))
    np.testing.assert_array_equal(got[:, 2], bits.all(1))


def test_atomics_give_exact_counts(mod):
    rng = np.random.default_rng(2)
    n = 128 * 40 + 17
    x = rng.integers(0, 64, n, dtype=np.int32)
    hist, hist2 = np.zeros(64, np.uint32), np.zeros(64, np.uint32)
    stats = np.array([-1, 1 << 30], np.int32)
    total = np.zeros(1, np.float32)
    mod.launch("histogram", _blocks(n, 128), (128, 1, 1), [x, hist, hist2, stats, total, n])
    expected = np.bincount(x, minlength=64)
    np.testing.assert_array_equal(hist, expected)
    np.testing.assert_array_equal(hist2, expected)
    assert stats.tolist() == [x.max(), x.min()]
    assert total[0] == x.sum()


def test_half_conversions_match_numpy(mod):
    rng = np.random.default_rng(3)
    specials = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 65504.0, 65519.99, 65520.0, 1e9, -1e9,
                         2.0 ** -24, 2.0 ** -25, 1.5 * 2.0 ** -25, 3 * 2.0 ** -26, 2.0 ** -26, 2.0 ** -14,
                         2.0 ** -14 - 2.0 ** -25, 1.0 + 2.0 ** -11, 1.0 + 3 * 2.0 ** -11, 1e-10], np.float32)
    ties = (np.arange(1, 2048, dtype=np.float32) + 0.5) * np.float32(2.0 ** -24)   # subnormal ties
    normal_ties = np.float32(1.0) + (np.arange(0, 1024, dtype=np.float32) + 0.5) * np.float32(2.0 ** -10)
    random_bits = rng.integers(0, 2 ** 32, 20000, dtype=np.uint64).astype(np.uint32).view(np.float32)
    f = np.concatenate([specials, ties, normal_ties, random_bits]).astype(np.float32)
    # doubles just above/below half ties: rounding through float first would land on the tie and round wrongly
    with np.errstate(invalid="ignore"):
        d = np.concatenate([ties.astype(np.float64) * (1 + 2.0 ** -40),
                            normal_ties.astype(np.float64) * (1 - 2.0 ** -40),
                            -normal_ties.astype(np.float64) * (1 + 2.0 ** -40), rng.uniform(-70000, 70000, 5000),
                            f.astype(np.float64)])[:f.size]
    hin = np.arange(2 ** 16, dtype=np.uint32).astype(np.uint16).view(np.float16)
    n, m = f.size, hin.size
    h, fout, hsq = np.zeros(n, np.float16), np.zeros(m, np.float32), np.zeros(m, np.float16)
    hd = np.zeros(n, np.float16)
    mod.launch("half_convert", _blocks(max(n, m), 256), (256, 1, 1), [f, h, hin, fout, hsq, d, hd, n, m])
    with np.errstate(all="ignore"):
        want_h, want_sq, want_hd = f.astype(np.float16), hin * hin, d.astype(np.float16)
    np.testing.assert_array_equal(np.isnan(hd), np.isnan(want_hd))
    np.testing.assert_array_equal(hd.view(np.uint16)[~np.isnan(hd)], want_hd.view(np.uint16)[~np.isnan(want_hd)])
    nan = np.isnan(want_h)
    np.testing.assert_array_equal(np.isnan(h), nan)
    np.testing.assert_array_equal(h.view(np.uint16)[~nan], want_h.view(np.uint16)[~nan])
    np.testing.assert_array_equal(fout, hin.astype(np.float32))
    sq_nan = np.isnan(want_sq)
    np.testing.assert_array_equal(np.isnan(hsq), sq_nan)
    np.testing.assert_array_equal(hsq.view(np.uint16)[~sq_nan], want_sq.view(np.uint16)[~sq_nan])


@settings(max_examples=5)
@given(M=st.integers(1, 40), N=st.integers(1, 40), K=st.integers(1, 40))
def test_tiled_matmul_with_2d_blocks(mod, M, N, K):
    rng = np.random.default_rng(M * 10000 + N * 100 + K)
    A, B = rng.standard_normal((M, K), dtype=np.float32), rng.standard_normal((K, N), dtype=np.float32)
    C = np.zeros((M, N), np.float32)
    mod.launch("matmul_tiled", (-(-N // 16), -(-M // 16), 1), (16, 16, 1), [A, B, C, M, N, K])
    np.testing.assert_allclose(C, A.astype(np.float64) @ B, rtol=1e-4, atol=1e-4)


def _half_matrix(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.uniform(-1, 1, shape).astype(np.float16)


def test_wmma_matmul_global(mod):
    rng = np.random.default_rng(4)
    M, N, K = 32, 48, 64
    A, B = _half_matrix(rng, M, K), _half_matrix(rng, K, N)
    C = np.zeros((M, N), np.float32)
    mod.launch("wmma_gemm", (N // 16, M // 16, 1), (32, 1, 1), [A, B, C, N, K])
    np.testing.assert_allclose(C, A.astype(np.float64) @ B.astype(np.float64), rtol=1e-5, atol=1e-4)


def test_wmma_matmul_through_shared_with_col_major_b(mod):
    rng = np.random.default_rng(5)
    K = 48
    A, B = _half_matrix(rng, 16, K), _half_matrix(rng, K, 32)
    C = np.zeros((16, 32), np.float32)
    mod.launch("wmma_shared", (1, 1, 1), (64, 1, 1), [A, np.ascontiguousarray(B.T), C, K])
    np.testing.assert_allclose(C, A.astype(np.float64) @ B.astype(np.float64), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("grid,block", [((2, 3, 4), (4, 2, 3)), ((3, 2, 1), (5, 7, 1)), ((1, 1, 2), (1, 1, 64))])
def test_multi_dimensional_grids_and_blocks(mod, grid, block):
    blocks, threads = int(np.prod(grid)), int(np.prod(block))
    out = np.full(blocks * threads * 6, -1, np.int32)
    mod.launch("index3d", grid, block, [out])
    bz, by, bx, tz, ty, tx = np.meshgrid(*(np.arange(d) for d in (grid[2], grid[1], grid[0], block[2], block[1],
                                                                   block[0])), indexing="ij")
    expected = np.stack([bx, by, bz, tx, ty, tz], -1).reshape(-1, 6)
    np.testing.assert_array_equal(out.reshape(-1, 6), expected)


def test_scalar_params_and_float4(mod):
    rng = np.random.default_rng(6)
    n = 4 * 128 * 2 + 7
    x = rng.standard_normal(n, dtype=np.float32)
    y = np.zeros(n, np.float32)
    alpha, beta, k = 1.5, -0.25, 3
    mod.launch("axpb4", _blocks(-(-n // 4), 128), (128, 1, 1), [x, y, n, alpha, beta, k])
    np.testing.assert_array_equal(y, x * np.float32(alpha) + np.float32(beta) + np.float32(k))


def test_math_functions_in_float_and_double(mod):
    from math import erf
    rng = np.random.default_rng(9)
    n = 100
    xd = rng.uniform(-3, 3, n)
    x = xd.astype(np.float32)
    y, yd = np.zeros((n, 36), np.float32), np.zeros((n, 17))
    yi, flags = np.zeros((n, 4), np.int32), np.zeros(2, np.uint64)
    mod.launch("math_ops", (2, 1, 1), (64, 1, 1), [x, xd, y, yd, yi, flags, n])
    verf = np.vectorize(erf)
    a, ad = np.abs(x), np.abs(xd)
    with np.errstate(all="ignore"):
        common32 = [np.exp(x), np.log(a + 1), np.sqrt(a), np.tanh(x), np.abs(x), np.fmax(x, 0.5), np.fmin(x, 0.5),
                    a ** 1.5, verf(x), np.floor(x), np.ceil(x), np.rint(x), np.trunc(x), np.sin(x), np.cos(x),
                    np.fmod(x, np.float32(0.7))]
        want32 = [np.exp(x), np.log(a + 1), np.sqrt(a), 1 / np.sqrt(a + 1), np.tanh(x), np.fmax(x, 0.5),
                  np.fmin(x, 0.5), a ** 1.5, verf(x), np.floor(x), np.ceil(x), np.rint(x), np.trunc(x), np.sin(x),
                  np.cos(x), np.fmod(x, np.float32(0.7)), x / 3, np.exp(x), np.maximum(x, 0.25),
                  np.minimum(x, 0.25)] + common32
    np.testing.assert_allclose(y, np.stack(want32, 1).astype(np.float32), rtol=2e-6, atol=1e-6)
    want64 = [np.exp(xd), np.log(ad + 1), np.sqrt(ad), np.tanh(xd), np.fmax(xd, 0.5), np.fmin(xd, 0.5), ad ** 1.5,
              verf(xd), np.floor(xd), np.ceil(xd), np.rint(xd), np.trunc(xd), np.sin(xd), np.cos(xd),
              np.fmod(xd, 0.7), np.maximum(xd, 0.25), np.minimum(xd, 0.25)]
    np.testing.assert_allclose(yd, np.stack(want64, 1), rtol=1e-14, atol=1e-15)
    j = np.arange(n)
    np.testing.assert_array_equal(yi, np.stack([np.maximum(j, 7), np.minimum(j, 7), np.maximum(j, 7),
                                                np.minimum(j, 7)], 1))
    assert 1 <= flags[0] <= n and flags[1] == 5


@pytest.mark.parametrize("kernel,grid,block,make_args,message", [
    ("bad_oob_read", (4, 1, 1), (256, 1, 1), lambda: [np.ones(1000, np.float32), np.zeros(1000, np.float32), 1000],
     r"kernel bad_oob_read: block \(3,0,0\) thread \(231,0,0\): out-of-bounds read of global 'a' at index 1000 "
     r"\(size 1000\)"),
    ("bad_oob_write", (4, 1, 1), (256, 1, 1), lambda: [np.zeros(1000, np.float32)],
     r"kernel bad_oob_write: block \(3,0,0\) thread \(232,0,0\): out-of-bounds write of global 'c' at index 1000 "
     r"\(size 1000\)"),
    ("bad_missing_sync", (1, 1, 1), (64, 1, 1), lambda: [np.zeros(64, np.float32)],
     r"kernel bad_missing_sync: block \(0,0,0\): shared 's' element 0 read by thread \(1,0,0\) was written by "
     r"thread \(0,0,0\) with no __syncthreads\(\) in between"),
    ("bad_write_after_read", (1, 1, 1), (64, 1, 1), lambda: [np.zeros(64, np.float32)],
     r"kernel bad_write_after_read: block \(0,0,0\): shared 's' element 1 written by thread \(1,0,0\) was read by "
     r"thread \(0,0,0\) with no __syncthreads\(\) in between \(write-after-read race\)"),
    ("bad_uninit", (2, 1, 1), (64, 1, 1), lambda: [np.zeros(128, np.float32)],
     r"kernel bad_uninit: block \(1,0,0\) thread \(0,0,0\): read of shared 's' element 0, which no thread of this "
     r"block has written"),
    ("bad_warp_race", (1, 1, 1), (32, 1, 1), lambda: [np.zeros(32, np.float32)],
     r"kernel bad_warp_race: block \(0,0,0\): shared 's' element 1 written by thread \(1,0,0\) was read by "
     r"thread \(0,0,0\) with no __syncthreads\(\) in between \(write-after-read race\)"),
    ("bad_divergent", (1, 1, 1), (64, 1, 1), lambda: [np.zeros(64, np.float32)],
     r"kernel bad_divergent: block \(0,0,0\): divergent __syncthreads\(\): 16 of 64 threads wait at a barrier"),
    ("bad_warp_divergent", (1, 1, 1), (32, 1, 1), lambda: [np.zeros(32, np.float32)],
     r"kernel bad_warp_divergent: block \(0,0,0\): deadlock: thread \(0,0,0\) waits in __shfl_down_sync "
     r"\(mask 0xffffffff\) for thread \(16,0,0\), which has exited"),
    ("bad_shared_oob", (1, 1, 1), (64, 1, 1), lambda: [np.zeros(64, np.float32)],
     r"kernel bad_shared_oob: block \(0,0,0\) thread \(32,0,0\): out-of-bounds write of shared 's' at index 32 "
     r"\(size 32\)"),
    ("bad_load4", (1, 1, 1), (32, 1, 1), lambda: [np.zeros(64, np.float32), np.zeros(32, np.float32)],
     r"kernel bad_load4: block \(0,0,0\) thread \(0,0,0\): EMBER_LOAD4 at index 2, which is not a multiple of 4"),
])
def test_broken_kernels_raise_and_the_module_keeps_working(mod, kernel, grid, block, make_args, message):
    with pytest.raises(EmulationError, match=message):
        mod.launch(kernel, grid, block, make_args())
    _vadd(mod, 777, np.random.default_rng(7))


def test_unchecked_mode_runs_the_same_kernels(fast_mod):
    rng = np.random.default_rng(8)
    _vadd(fast_mod, 5000, rng)
    a = rng.standard_normal(1024, dtype=np.float32)
    out = np.zeros(4, np.float32)
    fast_mod.launch("block_sum", (4, 1, 1), (256, 1, 1), [a, out, 1024])
    np.testing.assert_allclose(out, a.reshape(4, 256).sum(1, dtype=np.float64), rtol=1e-5, atol=1e-5)
    A, B = _half_matrix(rng, 16, 32), _half_matrix(rng, 32, 32)
    C = np.zeros((16, 32), np.float32)
    fast_mod.launch("wmma_shared", (1, 1, 1), (64, 1, 1), [A, np.ascontiguousarray(B.T), C, 32])
    np.testing.assert_allclose(C, A.astype(np.float64) @ B.astype(np.float64), rtol=1e-5, atol=1e-4)
    x = rng.standard_normal(37, dtype=np.float32)
    y = np.zeros(37, np.float32)
    fast_mod.launch("axpb4", (1, 1, 1), (32, 1, 1), [x, y, 37, 2.0, 1.0, -1])
    np.testing.assert_array_equal(y, x * np.float32(2) + np.float32(1) - np.float32(1))


@pytest.mark.parametrize("grid,block,args,message", [
    ((1, 1, 1), (2048, 1, 1), None, "block dimension x = 2048"),
    ((1, 1, 1), (32, 32, 2), None, "has 2048 threads"),
    ((1, 1, 1), (512, 1, 1), None, "more than its __launch_bounds__\\(256\\)"),
    ((1, 1, 1), (1, 1, 65), None, "block dimension z = 65"),
    ((1, 65536, 1), (32, 1, 1), None, "grid dimension y = 65536"),
    ((2 ** 31, 1, 1), (32, 1, 1), None, "grid dimension x"),
    ((0, 1, 1), (32, 1, 1), None, "grid dimension x = 0"),
    ((1, 1, 1), (32, 1, 1), "few", "takes 4 arguments"),
    ((1, 1, 1), (32, 1, 1), "dtype", "got a float64 array"),
    ((1, 1, 1), (32, 1, 1), "scalar", "must be an integer"),
    ((1, 1, 1), (32, 1, 1), "readonly", "read-only"),
])
def test_bad_launches_raise_value_error(mod, grid, block, args, message):
    a, b, c = (np.zeros(32, np.float32) for _ in range(3))
    launch_args = {None: [a, b, c, 32], "few": [a, b, c], "dtype": [a, b, np.zeros(32), 32],
                   "scalar": [a, b, c, 1.5], "readonly": [a, b, np.zeros(32, np.float32)[::1].copy(), 32]}[args]
    if args == "readonly":
        launch_args[2].flags.writeable = False
    with pytest.raises(ValueError, match=message):
        mod.launch("vadd", grid, block, launch_args)


def test_concurrent_launches_from_python_threads(mod, fast_mod):
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda k: _vadd((mod, fast_mod)[k % 2], 3000 + k, np.random.default_rng(k)), range(8)))


def test_address_pairs_are_accepted(mod):
    a, b = np.arange(40, dtype=np.float32), np.ones(40, np.float32)
    c = np.zeros(40, np.float32)
    mod.launch("vadd", (1, 1, 1), (64, 1, 1), [(a.ctypes.data, a.nbytes), b, (c.ctypes.data, c.nbytes), 40])
    np.testing.assert_array_equal(c, a + 1)
    with pytest.raises(EmulationError, match="out-of-bounds read of global 'a' at index 20 \\(size 20\\)"):
        mod.launch("vadd", (1, 1, 1), (64, 1, 1), [(a.ctypes.data, 80), b, c, 40])


# Rules the emulator enforces beyond what a compiler sees (nvcc would reject the 64 KiB of static shared memory).
EMULATOR_ONLY = PRELUDE + r"""
extern "C" __global__ void too_much_shared(EMBER_GLOBAL(float) out) {
    EMBER_SHARED(float, big, 8192);
    EMBER_SHARED(float, big2, 8192);
    big[threadIdx.x] = 1.0f;
    big2[threadIdx.x] = 1.0f;
    out[threadIdx.x] = big[threadIdx.x] + big2[threadIdx.x];
}

extern "C" __global__ void __launch_bounds__(2 * 64) wmma_misuse(EMBER_GLOBAL(const __half) A, EMBER_GLOBAL(float) C,
                                                                long long offset) {
    using namespace nvcuda;
    wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> a;
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> c;
    wmma::load_matrix_sync(a, A + offset, 16);
    wmma::fill_fragment(c, 1.0f);
    wmma::store_matrix_sync(C, c, 16, wmma::mem_row_major);
}
"""
EMULATOR_ONLY_KERNELS = (KernelSpec("too_much_shared", (_p("out", F),)),
                         KernelSpec("wmma_misuse", (_p("A", "const __half"), _p("C", F), _s("offset"))))


def test_emulator_only_rules():
    m = EmulatedModule(compile_module(EMULATOR_ONLY, EMULATOR_ONLY_KERNELS), EMULATOR_ONLY_KERNELS)
    out = np.zeros(64, np.float32)
    with pytest.raises(EmulationError, match=r"thread \(0,0,0\): shared array 'big2' \(32768 bytes\) takes the "
                                             r"block's static shared memory over the 49152-byte limit"):
        m.launch("too_much_shared", (1, 1, 1), (64, 1, 1), [out])
    A, C = np.ones(512, np.float16), np.zeros(256, np.float32)
    with pytest.raises(EmulationError, match="wmma::load_matrix_sync needs a full warp of 32 threads"):
        m.launch("wmma_misuse", (1, 1, 1), (16, 1, 1), [A, C, 0])
    with pytest.raises(EmulationError, match="not 32-byte aligned \\(offset 16 bytes"):
        m.launch("wmma_misuse", (1, 1, 1), (32, 1, 1), [A, C, 8])
    with pytest.raises(EmulationError, match="out-of-bounds read of global 'A' at index 512 \\(size 512\\)"):
        m.launch("wmma_misuse", (1, 1, 1), (64, 1, 1), [A, C, 496])
    with pytest.raises(ValueError, match="more than its __launch_bounds__\\(128\\)"):
        m.launch("wmma_misuse", (1, 1, 1), (256, 1, 1), [A, C, 0])
    m.launch("wmma_misuse", (1, 1, 1), (64, 1, 1), [A, C, 16])
    np.testing.assert_array_equal(C, 1.0)


def test_compile_errors_carry_gxx_output():
    spec = KernelSpec("k", (_p("out", F),))
    with pytest.raises(EmulatorCompileError, match="undeclared_thing"):
        compile_module(PRELUDE + 'extern "C" __global__ void k(EMBER_GLOBAL(float) out) { out[0] = undeclared_thing; }',
                       [spec])
    with pytest.raises(ValueError, match="pointer element type 'float4'"):
        compile_module(PRELUDE, [KernelSpec("k", (_p("out", "float4"),))])


def test_missing_gxx_is_reported(monkeypatch):
    monkeypatch.setenv("EMBER_CXX", "no-such-compiler-here")
    with pytest.raises(EmulatorUnavailable, match="needs g\\+\\+"):
        compile_module(PRELUDE, [])


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed")
def test_test_kernels_are_real_cuda(tmp_path):
    src = tmp_path / "kernels.cu"
    src.write_text(SOURCE)
    proc = subprocess.run(["nvcc", "-arch=sm_80", "-cubin", "-o", "/dev/null", str(src)], check=False,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
