"""The AscendC emulator's checks: deliberately broken kernels each fail with the rule they break (kernel, block
and rule named), and the module keeps working after every failure; bad launch arguments are refused up front."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
from ember.codegen.ascend.emulate import EmulatedModule, EmulationError, KernelSpec, compile_module

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="the AscendC emulator needs g++")

UB_2201 = 192 * 1024


# ---- broken kernels: each must fail with its rule, and the module must keep working -------------------------

BROKEN = r"""
#include "kernel_operator.h"

#define GM_FLOATS(name, ptr, n) AscendC::GlobalTensor<float> name; name.SetGlobalBuffer((__gm__ float*)(ptr), n)

extern "C" __global__ __aicore__ void good_copy(GM_ADDR x, GM_ADDR z)
{
    AscendC::TPipe pipe;
    AscendC::TQue<AscendC::TPosition::VECIN, 1> in;
    AscendC::TQue<AscendC::TPosition::VECOUT, 1> out;
    pipe.InitBuffer(in, 1, 32);
    pipe.InitBuffer(out, 1, 32);
    const int64_t off = AscendC::GetBlockIdx() * 8;
    GM_FLOATS(xGm, x, 64);
    GM_FLOATS(zGm, z, 64);
    AscendC::LocalTensor<float> a = in.AllocTensor<float>();
    AscendC::DataCopy(a, xGm[off], 8);
    in.EnQue(a);
    a = in.DeQue<float>();
    AscendC::LocalTensor<float> b = out.AllocTensor<float>();
    AscendC::Muls(b, a, 2.0f, 8);
    out.EnQue(b);
    in.FreeTensor(a);
    b = out.DeQue<float>();
    AscendC::DataCopy(zGm[off], b, 8);
    out.FreeTensor(b);
}

extern "C" __global__ __aicore__ void ub_over(GM_ADDR x, GM_ADDR z)
{
    AscendC::TPipe pipe;
    AscendC::TQue<AscendC::TPosition::VECIN, 2> q;
    AscendC::TBuf<AscendC::TPosition::VECCALC> tmp;
    pipe.InitBuffer(q, 2, 64 * 1024);
    pipe.InitBuffer(tmp, 64 * 1024 + 32);
}

extern "C" __global__ __aicore__ void misaligned_copy(GM_ADDR x, GM_ADDR z)
{
    AscendC::TPipe pipe;
    AscendC::TQue<AscendC::TPosition::VECIN, 1> q;
    pipe.InitBuffer(q, 1, 64);
    GM_FLOATS(xGm, x, 64);
    AscendC::LocalTensor<float> t = q.AllocTensor<float>();
    AscendC::DataCopy(t, xGm, 10);
    q.FreeTensor(t);
}

extern "C" __global__ __aicore__ void leak(GM_ADDR x, GM_ADDR z)
{
    AscendC::TPipe pipe;
    AscendC::TQue<AscendC::TPosition::VECIN, 1> q;
    pipe.InitBuffer(q, 1, 64);
    AscendC::LocalTensor<float> t = q.AllocTensor<float>();
    AscendC::Duplicate(t, 1.0f, 16);
}

extern "C" __global__ __aicore__ void deque_empty(GM_ADDR x, GM_ADDR z)
{
    AscendC::TPipe pipe;
    AscendC::TQue<AscendC::TPosition::VECIN, 2> q;
    pipe.InitBuffer(q, 2, 64);
    AscendC::LocalTensor<float> t = q.DeQue<float>();
    q.FreeTensor(t);
}

extern "C" __global__ __aicore__ void use_after_free(GM_ADDR x, GM_ADDR z)
{
    AscendC::TPipe pipe;
    AscendC::TQue<AscendC::TPosition::VECOUT, 1> q;
    pipe.InitBuffer(q, 1, 64);
    AscendC::LocalTensor<float> t = q.AllocTensor<float>();
    q.FreeTensor(t);
    AscendC::Duplicate(t, 1.0f, 16);
}

extern "C" __global__ __aicore__ void enque_depth(GM_ADDR x, GM_ADDR z)
{
    AscendC::TPipe pipe;
    AscendC::TQue<AscendC::TPosition::VECIN, 1> q;
    pipe.InitBuffer(q, 2, 64);
    AscendC::LocalTensor<float> a = q.AllocTensor<float>();
    AscendC::LocalTensor<float> b = q.AllocTensor<float>();
    q.EnQue(a);
    q.EnQue(b);
}

extern "C" __global__ __aicore__ void gm_oob_read(GM_ADDR x, GM_ADDR z)
{
    AscendC::TPipe pipe;
    AscendC::TQue<AscendC::TPosition::VECIN, 1> q;
    pipe.InitBuffer(q, 1, 64);
    GM_FLOATS(xGm, x, 64);
    AscendC::LocalTensor<float> t = q.AllocTensor<float>();
    AscendC::DataCopy(t, xGm[64 - 8 * AscendC::GetBlockIdx()], 16);
    q.FreeTensor(t);
}

// Writes only the first half of its block's 8 outputs.
extern "C" __global__ __aicore__ void half_written(GM_ADDR x, GM_ADDR z)
{
    GM_FLOATS(zGm, z, 64);
    for (int i = 0; i < 4; ++i) zGm.SetValue(AscendC::GetBlockIdx() * 8 + i, 1.0f);
    for (int i = 0; i < 4 && AscendC::GetBlockIdx() == 0; ++i) zGm.SetValue(32 + i, 0.0f);
}

extern "C" __global__ __aicore__ void same_range(GM_ADDR x, GM_ADDR z)
{
    GM_FLOATS(zGm, z, 64);
    for (int i = 0; i < 8; ++i) zGm.SetValue(i, (float)i);
}

// Block 0 copies what block 1 writes: the result depends on which block runs first.
extern "C" __global__ __aicore__ void order_dependent(GM_ADDR x, GM_ADDR z)
{
    GM_FLOATS(xGm, x, 64);
    GM_FLOATS(zGm, z, 16);
    if (AscendC::GetBlockIdx() == 1) {
        for (int i = 0; i < 8; ++i) zGm.SetValue(8 + i, xGm.GetValue(i));
    } else {
        for (int i = 0; i < 8; ++i) zGm.SetValue(i, zGm.GetValue(8 + i));
    }
}

extern "C" __global__ __aicore__ void exp_int(GM_ADDR x, GM_ADDR z)
{
    AscendC::TPipe pipe;
    AscendC::TBuf<AscendC::TPosition::VECCALC> b;
    pipe.InitBuffer(b, 64);
    AscendC::LocalTensor<int32_t> t = b.Get<int32_t>();
    AscendC::Exp(t, t, 16);
}

extern "C" __global__ __aicore__ void use_before_deque(GM_ADDR x, GM_ADDR z)
{
    AscendC::TPipe pipe;
    AscendC::TQue<AscendC::TPosition::VECIN, 1> q;
    pipe.InitBuffer(q, 1, 64);
    AscendC::LocalTensor<float> t = q.AllocTensor<float>();
    q.EnQue(t);
    AscendC::Adds(t, t, 1.0f, 16);
}

extern "C" __global__ __aicore__ void misaligned_operand(GM_ADDR x, GM_ADDR z)
{
    AscendC::TPipe pipe;
    AscendC::TBuf<AscendC::TPosition::VECCALC> b;
    pipe.InitBuffer(b, 128);
    AscendC::LocalTensor<float> t = b.Get<float>();
    AscendC::Muls(t[3], t[3], 2.0f, 8);
}

extern "C" __global__ __aicore__ void local_oob(GM_ADDR x, GM_ADDR z)
{
    AscendC::TPipe pipe;
    AscendC::TBuf<AscendC::TPosition::VECCALC> b;
    pipe.InitBuffer(b, 128);
    AscendC::LocalTensor<float> t = b.Get<float>();
    AscendC::Duplicate(t[16], 0.0f, 32);
}

extern "C" __global__ __aicore__ void compare_count(GM_ADDR x, GM_ADDR z)
{
    AscendC::TPipe pipe;
    AscendC::TBuf<AscendC::TPosition::VECCALC> b, m;
    pipe.InitBuffer(b, 512);
    pipe.InitBuffer(m, 32);
    AscendC::LocalTensor<float> t = b.Get<float>();
    AscendC::LocalTensor<uint8_t> mask = m.Get<uint8_t>();
    AscendC::Compare(mask, t, t, AscendC::CMPMODE::LT, 72);
}

extern "C" __global__ __aicore__ void too_many_live(GM_ADDR x, GM_ADDR z)
{
    AscendC::TPipe pipe;
    AscendC::TQue<AscendC::TPosition::VECIN, 2> q[5];
    for (auto& one : q) pipe.InitBuffer(one, 2, 32);
    for (auto& one : q) {
        AscendC::LocalTensor<float> a = one.AllocTensor<float>();
        AscendC::LocalTensor<float> b = one.AllocTensor<float>();
        one.FreeTensor(a);
        one.FreeTensor(b);
    }
    AscendC::LocalTensor<float> held[10];
    for (int i = 0; i < 10; ++i) held[i] = q[i / 2].AllocTensor<float>();
}

// A GM->UB copy into a TBuf read by a vector op with no MTE2_V flag in between.
extern "C" __global__ __aicore__ void tbuf_hazard(GM_ADDR x, GM_ADDR z)
{
    AscendC::TPipe pipe;
    AscendC::TBuf<AscendC::TPosition::VECCALC> b;
    pipe.InitBuffer(b, 64);
    GM_FLOATS(xGm, x, 64);
    AscendC::LocalTensor<float> t = b.Get<float>();
    AscendC::DataCopy(t, xGm, 16);
    AscendC::Exp(t, t, 16);
}

extern "C" __global__ __aicore__ void wait_without_set(GM_ADDR x, GM_ADDR z)
{
    AscendC::SetFlag<AscendC::HardEvent::MTE2_V>(EVENT_ID1);
    AscendC::WaitFlag<AscendC::HardEvent::MTE2_V>(EVENT_ID1);
    AscendC::WaitFlag<AscendC::HardEvent::MTE2_V>(EVENT_ID1);
}

extern "C" __global__ __aicore__ void write_input(GM_ADDR x, GM_ADDR z)
{
    GM_FLOATS(xGm, x, 64);
    xGm.SetValue(0, 1.0f);
}

extern "C" __global__ __aicore__ void too_many_buffers(GM_ADDR x, GM_ADDR z)
{
    AscendC::TPipe pipe;
    AscendC::TQue<AscendC::TPosition::VECCALC, 1> q[9];
    for (auto& one : q) pipe.InitBuffer(one, 8, 32);
}
"""

BROKEN_CASES = {  # kernel -> (rule, blocks)
    "ub_over": ("ub-capacity", 1),
    "misaligned_copy": ("datacopy-align", 1),
    "leak": ("queue-leak", 1),
    "deque_empty": ("deque-empty", 1),
    "use_after_free": ("use-after-free", 1),
    "enque_depth": ("enque-depth", 1),
    "gm_oob_read": ("gm-bounds", 2),
    "half_written": ("gm-unwritten", 4),
    "same_range": ("gm-overlap", 2),
    "order_dependent": ("order-dependence", 2),
    "exp_int": ("dtype", 1),
    "use_before_deque": ("use-before-deque", 1),
    "misaligned_operand": ("local-align", 1),
    "local_oob": ("local-bounds", 1),
    "compare_count": ("compare-align", 1),
    "too_many_live": ("position-limit", 1),
    "write_input": ("gm-write-to-input", 1),
    "tbuf_hazard": ("sync-hazard", 1),
    "wait_without_set": ("sync-wait-without-set", 1),
    "too_many_buffers": ("buffer-count", 1),
}
BROKEN_SPECS = [KernelSpec.of(k, ("x",), ("z",), None) for k in ["good_copy", *BROKEN_CASES]]


@pytest.fixture(scope="module")
def broken() -> EmulatedModule:
    return EmulatedModule(compile_module(BROKEN, BROKEN_SPECS, 2201, UB_2201), BROKEN_SPECS)


def _good_copy(mod: EmulatedModule) -> None:
    x = np.arange(64, dtype=np.float32)
    z = np.empty(64, np.float32)
    mod.launch("good_copy", 8, [x, z])
    np.testing.assert_array_equal(z, 2 * x)


@pytest.mark.parametrize("kernel", list(BROKEN_CASES))
def test_broken_kernel_fails_with_its_rule(broken, kernel):
    rule, blocks = BROKEN_CASES[kernel]
    x = np.arange(64, dtype=np.float32)
    z = np.empty(16 if kernel == "order_dependent" else 64, np.float32)
    with pytest.raises(EmulationError, match=rf"kernel {kernel}\b.*\[{rule}\]") as info:
        broken.launch(kernel, blocks, [x, z])
    if rule not in ("gm-unwritten", "order-dependence"):
        assert "block " in str(info.value)
    _good_copy(broken)


def test_gm_overlap_names_both_blocks(broken):
    with pytest.raises(EmulationError, match=r"block 1 of 2: .*\[gm-overlap\].*block 0"):
        broken.launch("same_range", 2, [np.zeros(64, np.float32), np.zeros(64, np.float32)])


def test_launch_argument_errors(broken):
    x, z = np.zeros(64, np.float32), np.zeros(64, np.float32)
    with pytest.raises(EmulationError, match=r"\[num-blocks\]"):
        broken.launch("good_copy", 0, [x, z])
    with pytest.raises(ValueError, match="takes 2 GM arguments"):
        broken.launch("good_copy", 1, [x])
    with pytest.raises(ValueError, match="no tiling parameter"):
        broken.launch("good_copy", 1, [x, z], tiling=b"\0" * 8)
    with pytest.raises(ValueError, match="no kernel"):
        broken.launch("nope", 1, [x, z])
    buf = np.zeros(96, np.float32)
    with pytest.raises(ValueError, match="partially overlaps"):
        broken.launch("good_copy", 1, [buf[:64], buf[32:]])
    _good_copy(broken)
