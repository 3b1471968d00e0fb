"""The AscendC emulator outside checked kernel launches: unchecked modules, the official CPU-twin host path
(ICPU_RUN_KF, GET_TILING_DATA) built against the emulator headers, warnings, and a missing compiler."""
from __future__ import annotations

import ctypes
import shutil

import numpy as np
import pytest
from ember.codegen.ascend.emulate import (EmulatedModule, EmulationWarning, EmulatorUnavailable, GmParam, KernelSpec,
                                          compile_module)

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="the AscendC emulator needs g++")

UB_2201 = 192 * 1024


# ---- unchecked modules, the CPU-twin host path, a missing compiler --------------------------------------------

TWIN = r"""
#include "kernel_operator.h"

extern "C" __global__ __aicore__ void twice(GM_ADDR x, GM_ADDR z)
{
    AscendC::GlobalTensor<float> xGm, zGm;
    xGm.SetGlobalBuffer((__gm__ float*)x + AscendC::GetBlockIdx() * 8, 8);
    zGm.SetGlobalBuffer((__gm__ float*)z + AscendC::GetBlockIdx() * 8, 8);
    for (int i = 0; i < 8; ++i) zGm.SetValue(i, 2.0f * xGm.GetValue(i));
}

extern "C" __global__ __aicore__ void overlap(GM_ADDR x, GM_ADDR z)
{
    AscendC::GlobalTensor<float> zGm;
    zGm.SetGlobalBuffer((__gm__ float*)z, 8);
    for (int i = 0; i < 8; ++i) zGm.SetValue(i, (float)AscendC::GetBlockIdx());
}

// Op-project style: the tiling arrives as a GM pointer and GET_TILING_DATA copies it into the registered struct.
struct OpTiling {
    float scale;
    int32_t n;
};
REGISTER_TILING_DEFAULT(OpTiling);

extern "C" __global__ __aicore__ void op_style(GM_ADDR x, GM_ADDR z, GM_ADDR tiling)
{
    GET_TILING_DATA(td, tiling);
    AscendC::GlobalTensor<float> xGm, zGm;
    xGm.SetGlobalBuffer((__gm__ float*)x, td.n);
    zGm.SetGlobalBuffer((__gm__ float*)z, td.n);
    for (int32_t i = 0; i < td.n; ++i) zGm.SetValue(i, td.scale * xGm.GetValue(i));
}

extern "C" __global__ __aicore__ void ub_scratch(GM_ADDR x, GM_ADDR z)
{
    AscendC::TPipe pipe;
    AscendC::TBuf<AscendC::TPosition::VECCALC> tmp;
    pipe.InitBuffer(tmp, 188 * 1024);
}

// The host side of CANN's CPU twin: GmAlloc'd buffers, ICPU_RUN_KF twice on the same buffers.
#include "tikicpulib.h"

extern "C" __attribute__((visibility("default"))) int host_twin(void)
{
    float* x = (float*)AscendC::GmAlloc(64 * sizeof(float));
    float* z = (float*)AscendC::GmAlloc(64 * sizeof(float));
    for (int i = 0; i < 64; ++i) x[i] = (float)i;
    AscendC::SetKernelMode(KernelMode::AIV_MODE);
    ICPU_RUN_KF(twice, 8, (GM_ADDR)x, (GM_ADDR)z);
    ICPU_RUN_KF(twice, 8, (GM_ADDR)x, (GM_ADDR)z);
    float total = 0;
    for (int i = 0; i < 64; ++i) total += z[i];
    AscendC::GmFree(x);
    AscendC::GmFree(z);
    return (int)total;
}
"""


def test_unchecked_module_and_cpu_twin_host_path(tmp_path):
    specs = [KernelSpec.of(k, ("x",), ("z",), None) for k in ("twice", "overlap", "ub_scratch")]
    specs.append(KernelSpec("op_style", (GmParam("x", False), GmParam("z", True), GmParam("tiling", False)), None))
    binary = compile_module(TWIN, specs, 2201, UB_2201, checking=False)
    mod = EmulatedModule(binary, specs)
    assert not mod.checking
    x, z = np.arange(64, dtype=np.float32), np.zeros(64, np.float32)
    mod.launch("overlap", 2, [x, z])  # racing writes go unreported without checking
    np.testing.assert_array_equal(z[:8], 1.0)
    mod.launch("twice", 8, [x, z])
    np.testing.assert_array_equal(z, 2 * x)
    td = np.zeros(2, np.float32)
    td[0], td[1:2].view(np.int32)[0] = 3.0, 64
    mod.launch("op_style", 1, [x, z, td])
    np.testing.assert_array_equal(z, 3 * x)
    with pytest.warns(EmulationWarning, match="above 184 KB"):
        mod.launch("ub_scratch", 1, [x, z])
    path = tmp_path / "twin.so"
    path.write_bytes(binary)
    assert ctypes.CDLL(str(path)).host_twin() == 2 * sum(range(64))


def test_missing_compiler_is_reported(monkeypatch):
    monkeypatch.setenv("EMBER_CXX", "ember-no-such-g++")
    with pytest.raises(EmulatorUnavailable, match="needs g\\+\\+"):
        compile_module(TWIN, [], 2201, UB_2201)
