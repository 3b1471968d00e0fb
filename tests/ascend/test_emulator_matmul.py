"""The AscendC emulator's high-level Matmul API (Matmul + TCubeTiling filled by `cube_tiling`) against numpy: float
and half inputs, bias, transposed B, IterateAll and Iterate/GetTensorC, several cores, and an invalid tiling."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
from ember.codegen.ascend.emulate import (EmulatedModule, EmulationError, KernelSpec, compile_module, cube_tiling,
                                          pack_tiling)

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="the AscendC emulator needs g++")

UB_2201 = 192 * 1024


def _tiling(*fields: int) -> bytes:
    return pack_tiling(fields)


# ---- Matmul through the high-level API ----------------------------------------------------------------------

MATMUL = r"""
#include "kernel_operator.h"
#include "lib/matmul_intf.h"

struct EmberTiling_mm {
    int64_t M, N, K, usedCoreNum, singleCoreM, singleCoreN, baseM, baseN, baseK, isBias, iterate, transB;
};

template <typename TAB, typename TC>
__aicore__ inline void MatmulBlock(GM_ADDR a, GM_ADDR b, GM_ADDR bias, GM_ADDR c, const EmberTiling_mm& t)
{
    TCubeTiling cube;
    cube.usedCoreNum = (int32_t)t.usedCoreNum;
    cube.M = (int32_t)t.M; cube.N = (int32_t)t.N; cube.Ka = (int32_t)t.K; cube.Kb = (int32_t)t.K;
    cube.singleCoreM = (int32_t)t.singleCoreM; cube.singleCoreN = (int32_t)t.singleCoreN;
    cube.singleCoreK = (int32_t)t.K;
    cube.baseM = (int32_t)t.baseM; cube.baseN = (int32_t)t.baseN; cube.baseK = (int32_t)t.baseK;
    cube.isBias = (int32_t)t.isBias;
    const int64_t idx = AscendC::GetBlockIdx();
    if (idx >= t.usedCoreNum) return;
    const int64_t mBlocks = (t.M + t.singleCoreM - 1) / t.singleCoreM;
    const int64_t mi = idx % mBlocks, ni = idx / mBlocks;
    AscendC::GlobalTensor<TAB> aGm, bGm;
    AscendC::GlobalTensor<float> biasGm;
    AscendC::GlobalTensor<TC> cGm;
    aGm.SetGlobalBuffer((__gm__ TAB*)a, t.M * t.K);
    bGm.SetGlobalBuffer((__gm__ TAB*)b, t.K * t.N);
    biasGm.SetGlobalBuffer((__gm__ float*)bias, t.N);
    cGm.SetGlobalBuffer((__gm__ TC*)c, t.M * t.N);
    AscendC::TPipe pipe;
    AscendC::Matmul<AscendC::MatmulType<AscendC::TPosition::GM, CubeFormat::ND, TAB>,
                    AscendC::MatmulType<AscendC::TPosition::GM, CubeFormat::ND, TAB>,
                    AscendC::MatmulType<AscendC::TPosition::GM, CubeFormat::ND, TC>,
                    AscendC::MatmulType<AscendC::TPosition::GM, CubeFormat::ND, float>> mm;
    REGIST_MATMUL_OBJ(&pipe, AscendC::GetSysWorkSpacePtr(), mm, &cube);
    const int64_t tailM = t.M - mi * t.singleCoreM < t.singleCoreM ? t.M - mi * t.singleCoreM : t.singleCoreM;
    const int64_t tailN = t.N - ni * t.singleCoreN < t.singleCoreN ? t.N - ni * t.singleCoreN : t.singleCoreN;
    mm.SetOrgShape((int)t.M, (int)t.N, (int)t.K);
    mm.SetTensorA(aGm[mi * t.singleCoreM * t.K]);
    mm.SetTensorB(bGm[t.transB ? ni * t.singleCoreN * t.K : ni * t.singleCoreN], t.transB != 0);
    if (t.isBias) mm.SetBias(biasGm[ni * t.singleCoreN]);
    mm.SetTail((int)tailM, (int)tailN);
    const uint64_t offC = mi * t.singleCoreM * t.N + ni * t.singleCoreN;
    if (t.iterate) {
        while (mm.Iterate()) mm.GetTensorC(cGm[offC]);
    } else {
        mm.IterateAll(cGm[offC]);
    }
    mm.End();
}

extern "C" __global__ __aicore__ void mm_f32(GM_ADDR a, GM_ADDR b, GM_ADDR bias, GM_ADDR c, EmberTiling_mm t)
{
    MatmulBlock<float, float>(a, b, bias, c, t);
}
extern "C" __global__ __aicore__ void mm_f16(GM_ADDR a, GM_ADDR b, GM_ADDR bias, GM_ADDR c, EmberTiling_mm t)
{
    MatmulBlock<half, float>(a, b, bias, c, t);
}
"""

MM_SPECS = [KernelSpec.of("mm_f32", ("a", "b", "bias"), ("c",), "EmberTiling_mm"),
            KernelSpec.of("mm_f16", ("a", "b", "bias"), ("c",), "EmberTiling_mm")]


@pytest.fixture(scope="module")
def mm() -> EmulatedModule:
    return EmulatedModule(compile_module(MATMUL, MM_SPECS, 2201, UB_2201), MM_SPECS)


@pytest.mark.parametrize("m,n,k,cores,half,bias,iterate,trans_b", [
    (64, 48, 32, 4, False, False, False, False), (100, 70, 33, 6, False, True, True, True),
    (17, 300, 40, 8, True, True, False, False), (130, 20, 64, 3, True, False, True, True),
    (1, 1, 1, 1, False, True, False, False)])
def test_matmul_high_level_api(mm, m, n, k, cores, half, bias, iterate, trans_b):
    rng = np.random.default_rng(m + n + k)
    dt = np.float16 if half else np.float32
    a, b = rng.standard_normal((m, k)).astype(dt), rng.standard_normal((k, n)).astype(dt)
    bvec = rng.standard_normal(n).astype(np.float32)
    c = np.empty((m, n), np.float32)
    t = cube_tiling(m, n, k, cores=cores, ab_itemsize=a.itemsize, bias=bias)
    fields = (m, n, k, t["usedCoreNum"], t["singleCoreM"], t["singleCoreN"], t["baseM"], t["baseN"], t["baseK"],
              int(bias), int(iterate), int(trans_b))
    b_gm = np.ascontiguousarray(b.T) if trans_b else b
    mm.launch("mm_f16" if half else "mm_f32", t["usedCoreNum"], [a, b_gm, bvec, c], _tiling(*fields))
    ref = a.astype(np.float64) @ b.astype(np.float64) + (bvec if bias else 0)
    np.testing.assert_allclose(c, ref, rtol=1e-5, atol=1e-5 * k)


def test_matmul_rejects_an_invalid_cube_tiling(mm):
    a, b, bias, c = np.ones((8, 8), np.float32), np.ones((8, 8), np.float32), np.zeros(8, np.float32), \
        np.empty((8, 8), np.float32)
    with pytest.raises(EmulationError, match=r"\[matmul\] TCubeTiling base 10x16x8"):
        mm.launch("mm_f32", 1, [a, b, bias, c], _tiling(8, 8, 8, 1, 8, 8, 10, 16, 8, 0, 0, 0))
    mm.launch("mm_f32", 1, [a, b, bias, c], _tiling(8, 8, 8, 1, 8, 8, 16, 16, 8, 0, 0, 0))
    np.testing.assert_array_equal(c, a @ b)
