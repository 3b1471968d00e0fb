"""Asynchronous tile copies (cp.async, sm_80+): the emulator lands a copy only when its thread waits, so a kernel
that reads a tile before waiting fails or computes a wrong result; the generator uses them for the cooperative
fills of fixed-size kernels on sm_80+ only, issues the next tile first in double-buffered loops, and never puts
two barriers in a row."""
from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import ember
from ember.codegen.cuda.emulate import EmulatedModule, EmulationError, KernelParam, KernelSpec, compile_module
from ember.codegen.cuda.render import PRELUDE
from ember.testing import gpu_test_unavailable

pytestmark = pytest.mark.skipif(gpu_test_unavailable() is not None, reason=str(gpu_test_unavailable()))

KERNELS_SOURCE = PRELUDE + r"""
// Two 64-element tiles per block, double-buffered: tile t+1 is copied while tile t is read; past n, zeros.
extern "C" __global__ void shift_tiles(EMBER_GLOBAL(const float) a, EMBER_GLOBAL(float) out, long long n) {
    EMBER_SHARED(float, s0, 64);
    EMBER_SHARED(float, s1, 64);
    const long long base = (long long)blockIdx.x * 128;
    const unsigned t = threadIdx.x;
    EMBER_CP_ASYNC(s0, t, a, base + t < n ? base + t : 0, base + t < n);
    EMBER_CP_ASYNC_WAIT();
    __syncthreads();
    EMBER_CP_ASYNC(s1, t, a, base + 64 + t < n ? base + 64 + t : 0, base + 64 + t < n);
    const float first = s0[(t + 1) % 64];
    EMBER_CP_ASYNC_WAIT();
    __syncthreads();
    if (base + t < n) out[base + t] = first;
    if (base + 64 + t < n) out[base + 64 + t] = s1[(t + 1) % 64];
}

// Each thread copies 8 halves (16 bytes) of its block's 256-element tile at once; `skew` misaligns the source.
extern "C" __global__ void copy_halves(EMBER_GLOBAL(const __half) h, EMBER_GLOBAL(__half) out, long long skew) {
    EMBER_SHARED(__half, s, 256);
    const long long base = (long long)blockIdx.x * 256;
    EMBER_CP_ASYNC_VEC(s, threadIdx.x * 8, h, base + threadIdx.x * 8 + skew, 16);
    EMBER_CP_ASYNC_WAIT();
    __syncthreads();
    for (int e = 0; e < 8; ++e)
        out[base + threadIdx.x * 8 + e] = s[(threadIdx.x * 8 + e + 8) % 256];
}

extern "C" __global__ void bad_no_wait(EMBER_GLOBAL(const float) a, EMBER_GLOBAL(float) out) {
    EMBER_SHARED(float, s, 64);
    EMBER_CP_ASYNC(s, threadIdx.x, a, threadIdx.x, true);
    __syncthreads();
    out[threadIdx.x] = s[(threadIdx.x + 1) % 64];
    EMBER_CP_ASYNC_WAIT();
}

extern "C" __global__ void bad_exit_in_flight(EMBER_GLOBAL(const float) a, EMBER_GLOBAL(float) out) {
    EMBER_SHARED(float, s, 64);
    EMBER_CP_ASYNC(s, threadIdx.x, a, threadIdx.x, true);
    out[threadIdx.x] = 1.0f;
}
"""
_F, _CF = KernelParam("out", "ptr", "float"), KernelParam("a", "ptr", "const float")
SPECS = (KernelSpec("shift_tiles", (_CF, _F, KernelParam("n", "scalar", "long long"))),
         KernelSpec("copy_halves", (KernelParam("h", "ptr", "const __half"), KernelParam("out", "ptr", "__half"),
                                    KernelParam("skew", "scalar", "long long"))),
         KernelSpec("bad_no_wait", (_CF, _F)), KernelSpec("bad_exit_in_flight", (_CF, _F)))


@pytest.fixture(scope="module", params=[True, False], ids=["checked", "unchecked"])
def module(request) -> tuple[EmulatedModule, bool]:
    return EmulatedModule(compile_module(KERNELS_SOURCE, SPECS, checking=request.param), SPECS), request.param


@pytest.mark.parametrize("n", [1, 63, 64, 100, 128, 257])
def test_copies_land_at_the_wait_with_zero_fill(module, n):
    a = np.arange(1, n + 1, dtype=np.float32)
    out = np.zeros(n, np.float32)
    blocks = -(-n // 128)
    module[0].launch("shift_tiles", (blocks, 1, 1), (64, 1, 1), [a, out, n])
    padded = np.concatenate([a, np.zeros(blocks * 128 - n, np.float32)]).reshape(-1, 2, 64)
    np.testing.assert_array_equal(out, np.roll(padded, -1, axis=2).reshape(-1)[:n])


def test_vector_copies_move_16_bytes_and_must_be_aligned(module):
    mod, _ = module
    h = np.arange(512 + 8, dtype=np.float16)
    out = np.zeros(512, np.float16)
    mod.launch("copy_halves", (2, 1, 1), (32, 1, 1), [h, out, 0])
    np.testing.assert_array_equal(out, np.roll(h[:512].reshape(2, 256), -8, axis=1).reshape(-1))
    with pytest.raises(EmulationError, match=r"cp.async of 16 bytes from global memory at element 3, not 16-byte "
                                             r"aligned"):
        mod.launch("copy_halves", (1, 1, 1), (32, 1, 1), [h, out, 3])


@pytest.mark.parametrize("kernel,message", [
    ("bad_no_wait", r"kernel bad_no_wait: block \(0,0,0\) thread \(0,0,0\): read of shared 's' element 1, which "
                    r"no thread of this block has written"),
    ("bad_exit_in_flight", r"kernel bad_exit_in_flight: block \(0,0,0\) thread \(0,0,0\): exits with 1 cp.async "
                           r"copies to shared memory never waited for"),
])
def test_reading_before_the_wait_or_exiting_with_copies_in_flight_is_reported(module, kernel, message):
    mod, checked = module
    if kernel == "bad_no_wait" and not checked:
        pytest.skip("only checking mode tracks never-written shared elements")
    with pytest.raises(EmulationError, match=message):
        mod.launch(kernel, (1, 1, 1), (64, 1, 1), [np.ones(64, np.float32), np.zeros(64, np.float32)])


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed")
def test_the_copies_are_real_cuda(tmp_path):
    src = tmp_path / "copies.cu"
    src.write_text(KERNELS_SOURCE)
    proc = subprocess.run(["nvcc", "-arch=sm_80", "-cubin", "-o", str(tmp_path / "out.cubin"), str(src)],
                          check=False, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def _matmul_kernel(n: int, k: int, m: int, arch: str):
    a = ember.placeholder((n, k), name="a")
    b = ember.placeholder((k, m), name="b")
    r = ember.reduce_axis(k, "r")
    c = ember.compute((n, m), lambda i, j: ember.sum(a[i, r] * b[r, j], axis=r), name="c")
    return ember.build(c, target=f"cuda -emulate -arch={arch}", name=f"mm_{arch}")


@settings(max_examples=6, deadline=None)
@given(st.sampled_from([33, 64, 97]), st.sampled_from([16, 40, 64, 130]), st.sampled_from([33, 64, 130]),
       st.sampled_from(["sm_75", "sm_80", "sm_90"]))
def test_a_matmul_gives_the_same_result_with_and_without_async_copies(n, k, m, arch):
    f = _matmul_kernel(n, k, m, arch)  # both sides >= 32: the tiled rule; more than one K step: a pipeline
    assert ("EMBER_CP_ASYNC(a_shared" in f.source("cuda")) == (arch != "sm_75" and k > 16)
    rng = np.random.default_rng(n * k + m)
    a = rng.standard_normal((n, k)).astype(np.float32)
    b = rng.standard_normal((k, m)).astype(np.float32)
    np.testing.assert_allclose(f(a, b), a @ b, rtol=1e-4, atol=1e-4)


def test_the_next_tile_is_issued_before_the_current_one_is_used():
    body = _kernel_body(_matmul_kernel(256, 256, 256, "sm_80").source("cuda"))
    loop = body[body.index("for (int r_outer2"):]
    first_copy = loop.index("EMBER_CP_ASYNC(a_shared1")
    assert first_copy < loop.index("a_shared0[")
    assert loop.count("EMBER_CP_ASYNC_WAIT();") == 2  # one per tile: before the barrier that publishes it


def test_symbolic_sizes_keep_synchronous_fills():
    n = ember.var("n")
    a = ember.placeholder((n, 64), name="a")
    b = ember.placeholder((64, 64), name="b")
    r = ember.reduce_axis(64, "r")
    c = ember.compute((n, 64), lambda i, j: ember.sum(a[i, r] * b[r, j], axis=r), name="c")
    src = _kernel_body(ember.build(c, target="cuda -emulate -arch=sm_80", name="mm_sym").source("cuda"))
    assert "EMBER_CP_ASYNC" not in src


@pytest.mark.parametrize("arch", ["sm_75", "sm_80"])
def test_no_two_barriers_in_a_row(arch):
    for n in (64, 100, 1024):
        body = _kernel_body(_matmul_kernel(n, n, n, arch).source("cuda"))
        lines = [x.strip() for x in body.splitlines() if x.strip() not in ("{", "}", "EMBER_CP_ASYNC_WAIT();")]
        pairs = [k for k in range(len(lines) - 1) if lines[k] == lines[k + 1] == "__syncthreads();"]
        assert not pairs, f"n={n}: barriers in a row after line {pairs[0]}: {lines[pairs[0] - 3:pairs[0] + 2]}"


def _kernel_body(source: str) -> str:
    return re.split(r"// ---- kernels ----", source)[1]
