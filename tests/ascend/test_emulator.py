"""The AscendC CPU emulator runs hand-written canonical AscendC kernels correctly and catches broken ones.

Kernels are grouped into a few sources so each module is compiled once: good vector kernels (arch 2201), the
same vector add with padded buffers (arch 2002), Matmul through the high-level API, and deliberately broken kernels
that must each fail with their rule while the module stays usable.
"""
from __future__ import annotations

import ctypes
import shutil
import struct

import numpy as np
import pytest
from ember.codegen.ascend.emulate import (
    EmulatedModule,
    EmulationError,
    EmulationWarning,
    EmulatorCompileError,
    EmulatorUnavailable,
    GmParam,
    KernelSpec,
    compile_module,
    cube_tiling,
)
from hypothesis import given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="the AscendC emulator needs g++")

UB_2201, UB_2002 = 192 * 1024, 256 * 1024

# ---- good kernels: canonical Init/Process/CopyIn/Compute/CopyOut classes --------------------------------------

COMMON = r"""
#include "kernel_operator.h"

constexpr int32_t BUFFER_NUM = 2;

// Former/tail core split in 32-byte units: block idx gets [first, first + len), clipped to the total.
struct Split {
    int64_t first, len;
};
__aicore__ inline Split BlockSplit(int64_t total, int64_t formerNum, int64_t formerLen, int64_t tailLen)
{
    const int64_t idx = AscendC::GetBlockIdx();
    Split s;
    s.first = idx < formerNum ? idx * formerLen : formerNum * formerLen + (idx - formerNum) * tailLen;
    s.len = idx < formerNum ? formerLen : tailLen;
    if (s.first + s.len > total) s.len = total - s.first > 0 ? total - s.first : 0;
    return s;
}
"""

VADD = r"""
struct EmberTiling_vadd {
    int64_t total;
    int64_t formerNum;
    int64_t formerLen;
    int64_t tailLen;
    int64_t tileLen;
};

template <typename T>
class KernelAdd {
public:
    __aicore__ inline KernelAdd() {}
    __aicore__ inline void Init(GM_ADDR x, GM_ADDR y, GM_ADDR z, const EmberTiling_vadd& t)
    {
        const Split s = BlockSplit(t.total, t.formerNum, t.formerLen, t.tailLen);
        len = s.len;
        tileLen = t.tileLen;
        xGm.SetGlobalBuffer((__gm__ T*)x + s.first, len);
        yGm.SetGlobalBuffer((__gm__ T*)y + s.first, len);
        zGm.SetGlobalBuffer((__gm__ T*)z + s.first, len);
        pipe.InitBuffer(inQueueX, BUFFER_NUM, tileLen * sizeof(T));
        pipe.InitBuffer(inQueueY, BUFFER_NUM, tileLen * sizeof(T));
        pipe.InitBuffer(outQueueZ, BUFFER_NUM, tileLen * sizeof(T));
    }
    __aicore__ inline void Process()
    {
        for (int64_t c = 0; c < len; c += tileLen) {
            const int64_t n = len - c < tileLen ? len - c : tileLen;
            CopyIn(c, n);
            Compute(n);
            CopyOut(c, n);
        }
    }

private:
    // Whole 32-byte blocks go through DataCopy; a tail goes through DataCopyPad (arch 2201) or, on 2002, is
    // rounded up into the host's padding.
    __aicore__ inline void Load(const AscendC::LocalTensor<T>& dst, const AscendC::GlobalTensor<T>& src, int64_t n)
    {
#if __NPU_ARCH__ == 2002
        constexpr int64_t blk = 32 / sizeof(T);
        AscendC::DataCopy(dst, src, (uint32_t)((n + blk - 1) / blk * blk));
#else
        if (n * (int64_t)sizeof(T) % 32 == 0) {
            AscendC::DataCopy(dst, src, (uint32_t)n);
        } else {
            AscendC::DataCopyExtParams p{1, (uint32_t)(n * sizeof(T)), 0, 0, 0};
            AscendC::DataCopyPadExtParams<T> pad{false, 0, 0, (T)0};
            AscendC::DataCopyPad(dst, src, p, pad);
        }
#endif
    }
    __aicore__ inline void CopyIn(int64_t c, int64_t n)
    {
        AscendC::LocalTensor<T> x = inQueueX.AllocTensor<T>();
        AscendC::LocalTensor<T> y = inQueueY.AllocTensor<T>();
        Load(x, xGm[c], n);
        Load(y, yGm[c], n);
        inQueueX.EnQue(x);
        inQueueY.EnQue(y);
    }
    __aicore__ inline void Compute(int64_t n)
    {
        AscendC::LocalTensor<T> x = inQueueX.DeQue<T>();
        AscendC::LocalTensor<T> y = inQueueY.DeQue<T>();
        AscendC::LocalTensor<T> z = outQueueZ.AllocTensor<T>();
        AscendC::Add(z, x, y, (int32_t)n);
        outQueueZ.EnQue(z);
        inQueueX.FreeTensor(x);
        inQueueY.FreeTensor(y);
    }
    __aicore__ inline void CopyOut(int64_t c, int64_t n)
    {
        AscendC::LocalTensor<T> z = outQueueZ.DeQue<T>();
#if __NPU_ARCH__ == 2002
        constexpr int64_t blk = 32 / sizeof(T);
        AscendC::DataCopy(zGm[c], z, (uint32_t)((n + blk - 1) / blk * blk));
#else
        if (n * (int64_t)sizeof(T) % 32 == 0) {
            AscendC::DataCopy(zGm[c], z, (uint32_t)n);
        } else {
            AscendC::DataCopyExtParams p{1, (uint32_t)(n * sizeof(T)), 0, 0, 0};
            AscendC::DataCopyPad(zGm[c], z, p);
        }
#endif
        outQueueZ.FreeTensor(z);
    }

    AscendC::TPipe pipe;
    AscendC::TQue<AscendC::TPosition::VECIN, BUFFER_NUM> inQueueX, inQueueY;
    AscendC::TQue<AscendC::TPosition::VECOUT, BUFFER_NUM> outQueueZ;
    AscendC::GlobalTensor<T> xGm, yGm, zGm;
    int64_t len = 0, tileLen = 0;
};

extern "C" __global__ __aicore__ void vadd_f32(GM_ADDR x, GM_ADDR y, GM_ADDR z, EmberTiling_vadd tiling)
{
    KERNEL_TASK_TYPE_DEFAULT(KERNEL_TYPE_AIV_ONLY);
    KernelAdd<float> op;
    op.Init(x, y, z, tiling);
    op.Process();
}

extern "C" __global__ __aicore__ void vadd_f16(GM_ADDR x, GM_ADDR y, GM_ADDR z, EmberTiling_vadd tiling)
{
    KERNEL_TASK_TYPE_DEFAULT(KERNEL_TYPE_AIV_ONLY);
    KernelAdd<half> op;
    op.Init(x, y, z, tiling);
    op.Process();
}
"""

# Row softmax: `rows` rows of D floats per tile, each row padded to Dp = align(D, 8) in UB by DataCopyPad.
SOFTMAX = r"""
struct EmberTiling_softmax {
    int64_t rows;
    int64_t D;
    int64_t Dp;
    int64_t formerNum;
    int64_t formerLen;
    int64_t tailLen;
    int64_t tileRows;
};

class KernelSoftmax {
public:
    __aicore__ inline KernelSoftmax() {}
    __aicore__ inline void Init(GM_ADDR x, GM_ADDR y, const EmberTiling_softmax& t)
    {
        tiling = t;
        const Split s = BlockSplit(t.rows, t.formerNum, t.formerLen, t.tailLen);
        first = s.first;
        count = s.len;
        xGm.SetGlobalBuffer((__gm__ float*)x, t.rows * t.D);
        yGm.SetGlobalBuffer((__gm__ float*)y, t.rows * t.D);
        pipe.InitBuffer(inQueue, BUFFER_NUM, t.tileRows * t.Dp * sizeof(float));
        pipe.InitBuffer(outQueue, BUFFER_NUM, t.tileRows * t.Dp * sizeof(float));
        pipe.InitBuffer(workBuf, t.Dp * sizeof(float));
        pipe.InitBuffer(redBuf, 32);
        pipe.InitBuffer(bcastBuf, t.Dp * sizeof(float));
    }
    __aicore__ inline void Process()
    {
        for (int64_t r = 0; r < count; r += tiling.tileRows) {
            const int64_t n = count - r < tiling.tileRows ? count - r : tiling.tileRows;
            CopyIn(first + r, n);
            Compute(n);
            CopyOut(first + r, n);
        }
    }

private:
    __aicore__ inline void CopyIn(int64_t row, int64_t n)
    {
        AscendC::LocalTensor<float> x = inQueue.AllocTensor<float>();
        AscendC::DataCopyExtParams p{(uint16_t)n, (uint32_t)(tiling.D * sizeof(float)), 0, 0, 0};
        AscendC::DataCopyPadExtParams<float> pad{true, 0, (uint8_t)(tiling.Dp - tiling.D), 0.0f};
        AscendC::DataCopyPad(x, xGm[row * tiling.D], p, pad);
        inQueue.EnQue(x);
    }
    __aicore__ inline void Compute(int64_t n)
    {
        AscendC::LocalTensor<float> x = inQueue.DeQue<float>();
        AscendC::LocalTensor<float> y = outQueue.AllocTensor<float>();
        AscendC::LocalTensor<float> work = workBuf.Get<float>();
        AscendC::LocalTensor<float> red = redBuf.Get<float>();
        AscendC::LocalTensor<float> b = bcastBuf.Get<float>();
        const int32_t d = (int32_t)tiling.D;
        for (int64_t i = 0; i < n; ++i) {
            AscendC::LocalTensor<float> xi = x[(uint32_t)(i * tiling.Dp)];
            AscendC::LocalTensor<float> yi = y[(uint32_t)(i * tiling.Dp)];
            AscendC::ReduceMax<float>(red, xi, work, d, false);
            const float m = red.GetValue(0);
            AscendC::Adds(yi, xi, -m, d);
            AscendC::Exp(yi, yi, d);
            AscendC::ReduceSum<float>(red, yi, work, d);
            AscendC::Duplicate(b, red.GetValue(0), d);
            AscendC::Div(yi, yi, b, d);
        }
        outQueue.EnQue(y);
        inQueue.FreeTensor(x);
    }
    __aicore__ inline void CopyOut(int64_t row, int64_t n)
    {
        AscendC::LocalTensor<float> y = outQueue.DeQue<float>();
        AscendC::DataCopyExtParams p{(uint16_t)n, (uint32_t)(tiling.D * sizeof(float)), 0, 0, 0};
        AscendC::DataCopyPad(yGm[row * tiling.D], y, p);
        outQueue.FreeTensor(y);
    }

    AscendC::TPipe pipe;
    AscendC::TQue<AscendC::TPosition::VECIN, BUFFER_NUM> inQueue;
    AscendC::TQue<AscendC::TPosition::VECOUT, BUFFER_NUM> outQueue;
    AscendC::TBuf<AscendC::TPosition::VECCALC> workBuf, redBuf, bcastBuf;
    AscendC::GlobalTensor<float> xGm, yGm;
    EmberTiling_softmax tiling;
    int64_t first = 0, count = 0;
};

extern "C" __global__ __aicore__ void softmax(GM_ADDR x, GM_ADDR y, EmberTiling_softmax tiling)
{
    KernelSoftmax op;
    op.Init(x, y, tiling);
    op.Process();
}
"""

# Elementwise kernels over 64-element (256-byte for float) tiles: Cast with a round mode chosen by the tiling,
# half -> float, and Compare + Select (tensor-tensor and tensor-scalar modes).
ELEMENTWISE = r"""
struct EmberTiling_ew {
    int64_t total;
    int64_t formerNum;
    int64_t formerLen;
    int64_t tailLen;
    int64_t tileLen;
    int64_t mode;
};

template <typename TIn, typename TOut, int OP>
class KernelEw {
public:
    __aicore__ inline KernelEw() {}
    __aicore__ inline void Init(GM_ADDR x, GM_ADDR y, GM_ADDR z, GM_ADDR w, const EmberTiling_ew& t)
    {
        tiling = t;
        const Split s = BlockSplit(t.total, t.formerNum, t.formerLen, t.tailLen);
        len = s.len;
        xGm.SetGlobalBuffer((__gm__ TIn*)x + s.first, len);
        yGm.SetGlobalBuffer((__gm__ TIn*)y + s.first, len);
        zGm.SetGlobalBuffer((__gm__ TOut*)z + s.first, len);
        wGm.SetGlobalBuffer((__gm__ TOut*)w + s.first, len);
        pipe.InitBuffer(inX, BUFFER_NUM, t.tileLen * sizeof(TIn));
        pipe.InitBuffer(inY, BUFFER_NUM, t.tileLen * sizeof(TIn));
        pipe.InitBuffer(outZ, BUFFER_NUM, t.tileLen * sizeof(TOut));
        pipe.InitBuffer(outW, BUFFER_NUM, t.tileLen * sizeof(TOut));
        pipe.InitBuffer(maskBuf, (t.tileLen / 8 + 31) / 32 * 32);
    }
    __aicore__ inline void Process()
    {
        for (int64_t c = 0; c < len; c += tiling.tileLen) {
            const int64_t n = len - c < tiling.tileLen ? len - c : tiling.tileLen;
            CopyIn(c, n);
            Compute(n);
            CopyOut(c, n);
        }
    }

private:
    __aicore__ inline void CopyIn(int64_t c, int64_t n)
    {
        AscendC::LocalTensor<TIn> x = inX.AllocTensor<TIn>();
        AscendC::LocalTensor<TIn> y = inY.AllocTensor<TIn>();
        AscendC::DataCopy(x, xGm[c], (uint32_t)n);
        AscendC::DataCopy(y, yGm[c], (uint32_t)n);
        inX.EnQue(x);
        inY.EnQue(y);
    }
    __aicore__ inline void Compute(int64_t n)
    {
        AscendC::LocalTensor<TIn> x = inX.DeQue<TIn>();
        AscendC::LocalTensor<TIn> y = inY.DeQue<TIn>();
        AscendC::LocalTensor<TOut> z = outZ.AllocTensor<TOut>();
        AscendC::LocalTensor<TOut> w = outW.AllocTensor<TOut>();
        if constexpr (OP == 0) {
            const AscendC::RoundMode mode = static_cast<AscendC::RoundMode>(tiling.mode);
            AscendC::Cast(z, x, mode, (uint32_t)n);
            AscendC::Cast(w, y, AscendC::RoundMode::CAST_RINT, (uint32_t)n);
        } else if constexpr (OP == 1) {
            AscendC::Cast(z, x, AscendC::RoundMode::CAST_NONE, (uint32_t)n);
            AscendC::Cast(w, y, AscendC::RoundMode::CAST_NONE, (uint32_t)n);
        } else {
            AscendC::LocalTensor<uint8_t> mask = maskBuf.Get<uint8_t>();
            AscendC::Compare(mask, x, y, AscendC::CMPMODE::GT, (uint32_t)n);
            AscendC::Select(z, mask, x, y, AscendC::SELMODE::VSEL_TENSOR_TENSOR_MODE, (uint32_t)n);
            AscendC::Select(w, mask, x, (TIn)0, AscendC::SELMODE::VSEL_TENSOR_SCALAR_MODE, (uint32_t)n);
        }
        outZ.EnQue(z);
        outW.EnQue(w);
        inX.FreeTensor(x);
        inY.FreeTensor(y);
    }
    __aicore__ inline void CopyOut(int64_t c, int64_t n)
    {
        AscendC::LocalTensor<TOut> z = outZ.DeQue<TOut>();
        AscendC::LocalTensor<TOut> w = outW.DeQue<TOut>();
        AscendC::DataCopy(zGm[c], z, (uint32_t)n);
        AscendC::DataCopy(wGm[c], w, (uint32_t)n);
        outZ.FreeTensor(z);
        outW.FreeTensor(w);
    }

    AscendC::TPipe pipe;
    AscendC::TQue<AscendC::TPosition::VECIN, BUFFER_NUM> inX, inY;
    AscendC::TQue<AscendC::TPosition::VECOUT, BUFFER_NUM> outZ, outW;
    AscendC::TBuf<AscendC::TPosition::VECCALC> maskBuf;
    AscendC::GlobalTensor<TIn> xGm, yGm;
    AscendC::GlobalTensor<TOut> zGm, wGm;
    EmberTiling_ew tiling;
    int64_t len = 0;
};

#define EW_KERNEL(NAME, TIN, TOUT, OP)                                                                       \
    extern "C" __global__ __aicore__ void NAME(GM_ADDR x, GM_ADDR y, GM_ADDR z, GM_ADDR w, EmberTiling_ew t) \
    {                                                                                                      \
        KernelEw<TIN, TOUT, OP> op;                                                                        \
        op.Init(x, y, z, w, t);                                                                            \
        op.Process();                                                                                      \
    }
EW_KERNEL(cast_f32_f16, float, half, 0)
EW_KERNEL(cast_f16_f32, half, float, 1)
EW_KERNEL(cmp_select, float, float, 2)
EW_KERNEL(cast_f32_bf16, float, bfloat16_t, 0)
"""

# Per-row reductions of a [rows, 64] float block (one 256-byte repeat per row, the first `mask` columns):
# WholeReduceSum/Min, ReduceRepeat<MAX>, BlockReduceSum, Brcb of the row sums, and ReduceMin with its index over
# everything.
REDUCE = r"""
struct EmberTiling_reduce {
    int64_t rows;
    int64_t mask;
};

extern "C" __global__ __aicore__ void reduce_misc(GM_ADDR x, GM_ADDR sum, GM_ADDR mx, GM_ADDR mnvi, GM_ADDR blk,
                                                  GM_ADDR bc, GM_ADDR amin, EmberTiling_reduce t)
{
    const int32_t rows = (int32_t)t.rows, mask = (int32_t)t.mask;
    AscendC::TPipe pipe;
    AscendC::TQue<AscendC::TPosition::VECIN, 1> inQueue;
    AscendC::TBuf<AscendC::TPosition::VECCALC> sumBuf, mxBuf, mnBuf, blkBuf, bcBuf, workBuf, aminBuf;
    pipe.InitBuffer(inQueue, 1, rows * 64 * sizeof(float));
    pipe.InitBuffer(sumBuf, rows * sizeof(float));
    pipe.InitBuffer(mxBuf, rows * sizeof(float));
    pipe.InitBuffer(mnBuf, 2 * rows * sizeof(float));
    pipe.InitBuffer(blkBuf, 8 * rows * sizeof(float));
    pipe.InitBuffer(bcBuf, 8 * rows * sizeof(float));
    pipe.InitBuffer(workBuf, rows * 64 * sizeof(float));
    pipe.InitBuffer(aminBuf, 32);
    AscendC::GlobalTensor<float> xGm, sumGm, mxGm, mnGm, blkGm, bcGm, aminGm;
    xGm.SetGlobalBuffer((__gm__ float*)x, rows * 64);
    sumGm.SetGlobalBuffer((__gm__ float*)sum, rows);
    mxGm.SetGlobalBuffer((__gm__ float*)mx, rows);
    mnGm.SetGlobalBuffer((__gm__ float*)mnvi, 2 * rows);
    blkGm.SetGlobalBuffer((__gm__ float*)blk, 8 * rows);
    bcGm.SetGlobalBuffer((__gm__ float*)bc, 8 * rows);
    aminGm.SetGlobalBuffer((__gm__ float*)amin, 8);
    AscendC::LocalTensor<float> xl = inQueue.AllocTensor<float>();
    AscendC::DataCopy(xl, xGm, AscendC::DataCopyParams((uint16_t)rows, 8, 0, 0));
    inQueue.EnQue(xl);
    xl = inQueue.DeQue<float>();
    AscendC::LocalTensor<float> s = sumBuf.Get<float>(), m = mxBuf.Get<float>(), mn = mnBuf.Get<float>();
    AscendC::LocalTensor<float> bl = blkBuf.Get<float>(), b = bcBuf.Get<float>(), am = aminBuf.Get<float>();
    AscendC::WholeReduceSum<float>(s, xl, mask, rows, 1, 1, 8);
    AscendC::ReduceRepeat<AscendC::ReduceType::MAX, float, float>(m, xl, mask, rows, 1, 1, 8,
                                                                  AscendC::ReduceOrder::ORDER_ONLY_VALUE);
    AscendC::WholeReduceMin<float>(mn, xl, mask, rows, 1, 1, 8);
    AscendC::BlockReduceSum<float>(bl, xl, rows, mask, 1, 1, 8);
    AscendC::PipeBarrier<PIPE_V>();
    AscendC::Brcb(b, s, (uint8_t)(rows / 8), AscendC::BrcbRepeatParams(1, 8));
    AscendC::ReduceMin<float>(am, xl, workBuf.Get<float>(), rows * 64, true);
    AscendC::SetFlag<AscendC::HardEvent::V_MTE3>(EVENT_ID0);  // TBufs need manual sync before the copies out
    AscendC::WaitFlag<AscendC::HardEvent::V_MTE3>(EVENT_ID0);
    AscendC::DataCopy(sumGm, s, rows);
    AscendC::DataCopy(mxGm, m, rows);
    AscendC::DataCopy(mnGm, mn, 2 * rows);
    AscendC::DataCopy(blkGm, bl, 8 * rows);
    AscendC::DataCopy(bcGm, b, 8 * rows);
    AscendC::DataCopy(aminGm, am, 8);
    inQueue.FreeTensor(xl);
}
"""


# Every count-form vector op once: result row k of z holds op k applied to x (and y), n elements per row.
OPS = r"""
struct EmberTiling_ops {
    int64_t n;
    int64_t ops;
};

template <typename T>
class KernelOps {
public:
    __aicore__ inline KernelOps() {}
    __aicore__ inline void Init(GM_ADDR x, GM_ADDR y, GM_ADDR z, const EmberTiling_ops& t)
    {
        n = t.n;
        ops = t.ops;
        xGm.SetGlobalBuffer((__gm__ T*)x, n);
        yGm.SetGlobalBuffer((__gm__ T*)y, n);
        zGm.SetGlobalBuffer((__gm__ T*)z, n * ops);
        pipe.InitBuffer(inQueue, 1, 2 * n * sizeof(T));
        pipe.InitBuffer(outQueue, BUFFER_NUM, n * sizeof(T));
    }
    __aicore__ inline void Process()
    {
        AscendC::LocalTensor<T> in = inQueue.AllocTensor<T>();
        AscendC::DataCopy(in, xGm, (uint32_t)n);
        AscendC::DataCopy(in[(uint32_t)n], yGm, (uint32_t)n);
        inQueue.EnQue(in);
        in = inQueue.DeQue<T>();
        for (int64_t k = 0; k < ops; ++k) {
            Compute(k, in, in[(uint32_t)n]);
            CopyOut(k);
        }
        inQueue.FreeTensor(in);
    }

private:
    __aicore__ inline void Compute(int64_t k, const AscendC::LocalTensor<T>& x, const AscendC::LocalTensor<T>& y)
    {
        AscendC::LocalTensor<T> z = outQueue.AllocTensor<T>();
        const int32_t c = (int32_t)n;
        switch (k) {
            case 0: AscendC::Add(z, x, y, c); break;
            case 1: AscendC::Sub(z, x, y, c); break;
            case 2: AscendC::Mul(z, x, y, c); break;
            case 3: AscendC::Div(z, x, y, c); break;
            case 4: AscendC::Max(z, x, y, c); break;
            case 5: AscendC::Min(z, x, y, c); break;
            case 6: AscendC::Adds(z, x, (T)1.5f, c); break;
            case 7: AscendC::Muls(z, x, (T)-0.75f, c); break;
            case 8: AscendC::Maxs(z, x, (T)0.25f, c); break;
            case 9: AscendC::Mins(z, x, (T)0.25f, c); break;
            case 10: AscendC::Exp(z, x, c); break;
            case 11: AscendC::Abs(z, x, c); break;
            case 12: AscendC::Abs(z, x, c); AscendC::Ln(z, z, c); break;
            case 13: AscendC::Abs(z, x, c); AscendC::Sqrt(z, z, c); break;
            case 14: AscendC::Abs(z, x, c); AscendC::Rsqrt(z, z, c); break;
            case 15: AscendC::Reciprocal(z, y, c); break;
            case 16: AscendC::Relu(z, x, c); break;
            case 17: AscendC::LeakyRelu(z, x, (T)0.1f, c); break;
            default: AscendC::Duplicate(z, (T)2.5f, c); break;
        }
        outQueue.EnQue(z);
    }
    __aicore__ inline void CopyOut(int64_t k)
    {
        AscendC::LocalTensor<T> z = outQueue.DeQue<T>();
        AscendC::DataCopy(zGm[k * n], z, (uint32_t)n);
        outQueue.FreeTensor(z);
    }

    AscendC::TPipe pipe;
    AscendC::TQue<AscendC::TPosition::VECIN, 1> inQueue;
    AscendC::TQue<AscendC::TPosition::VECOUT, BUFFER_NUM> outQueue;
    AscendC::GlobalTensor<T> xGm, yGm, zGm;
    int64_t n = 0, ops = 0;
};

extern "C" __global__ __aicore__ void ops_f32(GM_ADDR x, GM_ADDR y, GM_ADDR z, EmberTiling_ops t)
{
    KernelOps<float> op;
    op.Init(x, y, z, t);
    op.Process();
}
extern "C" __global__ __aicore__ void ops_f16(GM_ADDR x, GM_ADDR y, GM_ADDR z, EmberTiling_ops t)
{
    KernelOps<half> op;
    op.Init(x, y, z, t);
    op.Process();
}
"""


def _ops_ref(x: np.ndarray, y: np.ndarray) -> list[np.ndarray]:
    """numpy references of the OPS rows, computed in float32 and rounded once to the element type."""
    f, g = x.astype(np.float32), y.astype(np.float32)
    a = np.abs(f)
    with np.errstate(divide="ignore"):  # x holds a zero on purpose: Ln -> -inf, Rsqrt -> inf
        rows = [f + g, f - g, f * g, f / g, np.maximum(f, g), np.minimum(f, g), f + 1.5, f * -0.75,
                np.maximum(f, 0.25), np.minimum(f, 0.25), np.exp(f), a, np.log(a), np.sqrt(a), 1 / np.sqrt(a),
                1 / g, np.maximum(f, 0), np.where(f >= 0, f, f * np.float32(x.dtype.type(0.1))), np.full_like(f, 2.5)]
    return [r.astype(x.dtype) for r in rows]


def _split(total: int, blocks: int, align: int) -> tuple[int, int, int]:
    """formerNum, formerLen, tailLen of the former/tail core split of ascendc.md §4, in `align`-element units."""
    units = -(-total // align)
    return units % blocks, -(-units // blocks) * align, units // blocks * align


def _tiling(*fields: int) -> bytes:
    return struct.pack(f"<{len(fields)}q", *fields)


def _spec(name: str, ins: tuple[str, ...], outs: tuple[str, ...], tiling: str | None) -> KernelSpec:
    return KernelSpec(name, tuple(GmParam(p, False) for p in ins) + tuple(GmParam(p, True) for p in outs), tiling)


GOOD_SPECS = [
    _spec("vadd_f32", ("x", "y"), ("z",), "EmberTiling_vadd"),
    _spec("vadd_f16", ("x", "y"), ("z",), "EmberTiling_vadd"),
    _spec("softmax", ("x",), ("y",), "EmberTiling_softmax"),
    _spec("cast_f32_f16", ("x", "y"), ("z", "w"), "EmberTiling_ew"),
    _spec("cast_f16_f32", ("x", "y"), ("z", "w"), "EmberTiling_ew"),
    _spec("cmp_select", ("x", "y"), ("z", "w"), "EmberTiling_ew"),
    _spec("cast_f32_bf16", ("x", "y"), ("z", "w"), "EmberTiling_ew"),
    _spec("ops_f32", ("x", "y"), ("z",), "EmberTiling_ops"),
    _spec("ops_f16", ("x", "y"), ("z",), "EmberTiling_ops"),
    _spec("reduce_misc", ("x",), ("sum", "mx", "mnvi", "blk", "bc", "amin"), "EmberTiling_reduce"),
]


@pytest.fixture(scope="module")
def good() -> EmulatedModule:
    source = COMMON + VADD + SOFTMAX + ELEMENTWISE + REDUCE + OPS
    return EmulatedModule(compile_module(source, GOOD_SPECS, 2201, UB_2201), GOOD_SPECS)


def run_vadd(mod: EmulatedModule, dtype, n: int, blocks: int, tile: int, pad_to: int = 1) -> None:
    """z = x + y over `blocks` cores; buffers are padded to a multiple of `pad_to` elements (310P)."""
    rng = np.random.default_rng(n * 31 + blocks)
    padded = -(-n // pad_to) * pad_to
    x = np.zeros(padded, dtype)
    y = np.zeros(padded, dtype)
    x[:n] = rng.standard_normal(n)
    y[:n] = rng.standard_normal(n)
    z = np.empty_like(x)
    align = 32 // x.itemsize
    name = "vadd_f32" if dtype == np.float32 else "vadd_f16"
    mod.launch(name, blocks, [x, y, z], _tiling(padded, *_split(padded, blocks, align), tile))
    np.testing.assert_array_equal(z[:n], (x[:n] + y[:n]).astype(dtype))


@settings(max_examples=12)
@given(n=st.integers(1, 3000), blocks=st.integers(1, 8), tile_blocks=st.integers(1, 16),
       half=st.booleans())
def test_vector_add_with_tails(good, n, blocks, tile_blocks, half):
    dtype = np.float16 if half else np.float32
    run_vadd(good, dtype, n, blocks, tile_blocks * 32 // np.dtype(dtype).itemsize)


def test_tiling_size_must_match_the_struct(good):
    x = np.zeros(64, np.float32)
    with pytest.raises(EmulationError, match=r"\[tiling\] got 32 tiling bytes; EmberTiling_vadd has 40"):
        good.launch("vadd_f32", 1, [x, x.copy(), x.copy()], _tiling(64, 0, 64, 64))


def test_vector_add_reports_stats(good):
    run_vadd(good, np.float32, 1000, 4, 64)
    assert good.last_stats["ub_peak_bytes"] == 3 * 2 * 64 * 4


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_every_vector_op_against_numpy(good, dtype):
    n = 128
    rng = np.random.default_rng(11)
    x = rng.uniform(-3, 3, n).astype(dtype)
    y = (rng.uniform(0.5, 2, n) * rng.choice([-1, 1], n)).astype(dtype)
    x[:3] = [0.25, -0.0, 2.0]
    ref = _ops_ref(x, y)
    z = np.empty(len(ref) * n, dtype)
    good.launch("ops_f32" if dtype == np.float32 else "ops_f16", 1, [x, y, z], _tiling(n, len(ref)))
    tol = {"rtol": 1e-6 if dtype == np.float32 else 1e-3, "atol": 0}
    for k, expect in enumerate(ref):
        np.testing.assert_allclose(z[k * n:(k + 1) * n], expect, **tol, err_msg=f"op row {k}")


def _softmax_ref(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("rows,d,blocks,tile_rows", [(37, 10, 4, 3), (8, 64, 3, 2), (5, 1, 2, 4), (64, 129, 8, 5)])
def test_row_softmax(good, rows, d, blocks, tile_rows):
    x = np.random.default_rng(rows * d).standard_normal((rows, d)).astype(np.float32) * 3
    y = np.empty_like(x)
    dp = -(-d // 8) * 8
    good.launch("softmax", blocks, [x, y], _tiling(rows, d, dp, *_split(rows, blocks, 1), tile_rows))
    np.testing.assert_allclose(y, _softmax_ref(x), rtol=1e-5, atol=1e-7)


MODES = {"CAST_RINT": 1, "CAST_FLOOR": 2, "CAST_CEIL": 3, "CAST_ROUND": 4, "CAST_TRUNC": 5, "CAST_ODD": 6}


def _round_half(x: np.ndarray, mode: str) -> np.ndarray:
    """numpy reference for float32 -> float16 under each RoundMode, from the two neighbouring halves."""
    with np.errstate(over="ignore"):
        near = x.astype(np.float16)  # values past 65504 become inf, as on the device
    below = near.astype(np.float32) < x
    lo = np.where(below, near, np.nextafter(near, np.float16(-np.inf)))
    hi = np.where(below, np.nextafter(near, np.float16(np.inf)), near)
    exact = near.astype(np.float32) == x
    if mode == "CAST_RINT":
        return near
    if mode == "CAST_FLOOR":
        out = lo
    elif mode == "CAST_CEIL":
        out = hi
    elif mode == "CAST_TRUNC":
        out = np.where(x > 0, lo, hi)
    elif mode == "CAST_ROUND":
        tie = x.astype(np.float64) - lo.astype(np.float64) == hi.astype(np.float64) - x.astype(np.float64)
        out = np.where(tie, np.where(x > 0, hi, lo), near)
    else:
        out = np.where(lo.view(np.uint16) & 1, lo, hi)
    return np.where(exact, near, out)


@pytest.mark.parametrize("mode", list(MODES))
def test_cast_float_to_half_round_modes(good, mode):
    rng = np.random.default_rng(MODES[mode])
    n, blocks, tile = 64 * 37, 3, 256
    x = (rng.standard_normal(n) * rng.choice([1e-6, 1.0, 300.0, 7e4], n)).astype(np.float32)
    x[:4] = [1 + 2.0 ** -11, -(1 + 2.0 ** -11), 2.5 * 2.0 ** -10 + 1, 0.0]  # exact ties and zero
    y = rng.standard_normal(n).astype(np.float32)
    z, w = np.empty(n, np.float16), np.empty(n, np.float16)
    good.launch("cast_f32_f16", blocks, [x, y, z, w], _tiling(n, *_split(n, blocks, 16), tile, MODES[mode]))
    np.testing.assert_array_equal(z.view(np.uint16), _round_half(x, mode).view(np.uint16))
    np.testing.assert_array_equal(w, y.astype(np.float16))


def test_cast_half_to_float(good):
    n = 16 * 50
    x = np.random.default_rng(1).standard_normal(n).astype(np.float16)
    y = np.arange(n, dtype=np.float16)
    z, w = np.empty(n, np.float32), np.empty(n, np.float32)
    good.launch("cast_f16_f32", 4, [x, y, z, w], _tiling(n, *_split(n, 4, 16), 128, 0))
    np.testing.assert_array_equal(z, x.astype(np.float32))
    np.testing.assert_array_equal(w, y.astype(np.float32))


def test_compare_select(good):
    n, blocks = 64 * 21, 4
    rng = np.random.default_rng(7)
    x, y = rng.standard_normal(n).astype(np.float32), rng.standard_normal(n).astype(np.float32)
    y[:10] = x[:10]  # equal elements pick src1
    z, w = np.empty_like(x), np.empty_like(x)
    good.launch("cmp_select", blocks, [x, y, z, w], _tiling(n, *_split(n, blocks, 64), 192, 0))
    np.testing.assert_array_equal(z, np.where(x > y, x, y))
    np.testing.assert_array_equal(w, np.where(x > y, x, 0))


def _bf16_bits(x: np.ndarray, mode: str) -> np.ndarray:
    u = x.view(np.uint32).astype(np.uint64)
    if mode == "CAST_TRUNC":
        return (u >> 16).astype(np.uint16)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


@pytest.mark.parametrize("mode", ["CAST_RINT", "CAST_TRUNC"])
def test_cast_float_to_bfloat16(good, mode):
    n = 16 * 40
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal(n).astype(np.float32), rng.standard_normal(n).astype(np.float32)
    z, w = np.empty(n, np.uint16), np.empty(n, np.uint16)
    good.launch("cast_f32_bf16", 2, [x, y, z, w], _tiling(n, *_split(n, 2, 16), 64, MODES[mode]))
    np.testing.assert_array_equal(z, _bf16_bits(x, mode))
    np.testing.assert_array_equal(w, _bf16_bits(y, "CAST_RINT"))


@pytest.mark.parametrize("mask", [64, 37, 1])
def test_reductions_and_brcb(good, mask):
    rows = 16
    x = np.random.default_rng(mask).standard_normal((rows, 64)).astype(np.float32)
    outs = [np.empty(k, np.float32) for k in (rows, rows, 2 * rows, 8 * rows, 8 * rows, 8)]
    good.launch("reduce_misc", 1, [x, *outs], _tiling(rows, mask))
    total, mx, mnvi, blk, bc, amin = outs
    part = x[:, :mask]
    np.testing.assert_allclose(total, part.sum(axis=1), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(mx, part.max(axis=1))
    np.testing.assert_array_equal(mnvi[0::2], part.min(axis=1))
    np.testing.assert_array_equal(mnvi[1::2].view(np.uint32), part.argmin(axis=1))
    cols = np.arange(64) < mask
    expect_blk = np.where(cols, x, 0).reshape(rows, 8, 8).sum(axis=2).reshape(-1)
    np.testing.assert_allclose(blk, expect_blk, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(bc, np.repeat(total, 8))
    assert amin[0] == x.min() and amin[1:2].view(np.uint32)[0] == x.argmin()
    assert good.last_stats["pipe_barriers"] == 1 and good.last_stats["set_wait_flags"] == 2


# ---- arch 2002 (310P): no DataCopyPad, the host pads buffers ---------------------------------------------------

PAD_ON_2002 = r"""
extern "C" __global__ __aicore__ void pad_on_310p(GM_ADDR x, GM_ADDR z)
{
    AscendC::TPipe pipe;
    AscendC::TQue<AscendC::TPosition::VECIN, 1> q;
    pipe.InitBuffer(q, 1, 64);
    AscendC::GlobalTensor<float> xGm;
    xGm.SetGlobalBuffer((__gm__ float*)x, 5);
    AscendC::LocalTensor<float> t = q.AllocTensor<float>();
    AscendC::DataCopyExtParams p{1, 20, 0, 0, 0};
    AscendC::DataCopyPadExtParams<float> pad{false, 0, 0, 0.0f};
    AscendC::DataCopyPad(t, xGm, p, pad);
    q.FreeTensor(t);
}
"""

SPECS_2002 = GOOD_SPECS[:2] + [_spec("pad_on_310p", ("x",), ("z",), None)]


def test_arch_2002_padded_vector_add_and_no_datacopypad():
    mod = EmulatedModule(compile_module(COMMON + VADD + PAD_ON_2002, SPECS_2002, 2002, UB_2002), SPECS_2002)
    for n, blocks, dtype in [(1000, 3, np.float32), (77, 2, np.float16), (4097, 7, np.float16)]:
        run_vadd(mod, dtype, n, blocks, 256, pad_to=blocks * 32 // np.dtype(dtype).itemsize)
    with pytest.raises(EmulationError, match=r"pad_on_310p, block 0 .*\[datacopypad-arch\].*2002"):
        mod.launch("pad_on_310p", 1, [np.zeros(8, np.float32), np.zeros(8, np.float32)])
    run_vadd(mod, np.float32, 64, 2, 64, pad_to=16)


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

MM_SPECS = [_spec("mm_f32", ("a", "b", "bias"), ("c",), "EmberTiling_mm"),
            _spec("mm_f16", ("a", "b", "bias"), ("c",), "EmberTiling_mm")]


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
BROKEN_SPECS = [_spec(k, ("x",), ("z",), None) for k in ["good_copy", *BROKEN_CASES]]


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


def test_in_place_output_keeps_contents_and_order_check(good):
    """An output that aliases an input is not sentinel-filled; the reverse-order run starts from its snapshot."""
    n = 200
    x = np.random.default_rng(3).standard_normal(n).astype(np.float32)
    y = np.ones(n, np.float32)
    expect = x + 1
    good.launch("vadd_f32", 3, [x, y, x], _tiling(n, *_split(n, 3, 8), 64))
    np.testing.assert_array_equal(x, expect)


def test_compile_errors_and_bad_specs():
    with pytest.raises(EmulatorCompileError, match="g\\+\\+ could not compile"):
        compile_module(COMMON + "int broken(", [], 2201, UB_2201)
    with pytest.raises(ValueError, match="unknown Ascend arch"):
        compile_module(COMMON, [], 3000, UB_2201)
    with pytest.raises(ValueError, match="UB size"):
        compile_module(COMMON, [], 2201, UB_2002)


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
    specs = [_spec(k, ("x",), ("z",), None) for k in ("twice", "overlap", "ub_scratch")]
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
