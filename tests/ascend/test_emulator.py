"""The AscendC CPU emulator runs hand-written canonical AscendC kernels correctly and catches broken ones.

Kernels are grouped into a few sources so each module is compiled once: good vector kernels (arch 2201), the
same vector add with padded buffers (arch 2002). Matmul through the high-level API is in test_emulator_matmul.py,
the deliberately broken kernels in test_emulator_checks.py, unchecked modules and the CPU-twin host path in
test_emulator_host.py.
"""
from __future__ import annotations

import shutil

import numpy as np
import pytest
from ember.codegen.ascend.emulate import (
    EmulatedModule,
    EmulationError,
    EmulatorCompileError,
    KernelSpec,
    compile_module,
    pack_tiling,
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
    return pack_tiling(fields)


GOOD_SPECS = [
    KernelSpec.of("vadd_f32", ("x", "y"), ("z",), "EmberTiling_vadd"),
    KernelSpec.of("vadd_f16", ("x", "y"), ("z",), "EmberTiling_vadd"),
    KernelSpec.of("softmax", ("x",), ("y",), "EmberTiling_softmax"),
    KernelSpec.of("cast_f32_f16", ("x", "y"), ("z", "w"), "EmberTiling_ew"),
    KernelSpec.of("cast_f16_f32", ("x", "y"), ("z", "w"), "EmberTiling_ew"),
    KernelSpec.of("cmp_select", ("x", "y"), ("z", "w"), "EmberTiling_ew"),
    KernelSpec.of("cast_f32_bf16", ("x", "y"), ("z", "w"), "EmberTiling_ew"),
    KernelSpec.of("ops_f32", ("x", "y"), ("z",), "EmberTiling_ops"),
    KernelSpec.of("ops_f16", ("x", "y"), ("z",), "EmberTiling_ops"),
    KernelSpec.of("reduce_misc", ("x",), ("sum", "mx", "mnvi", "blk", "bc", "amin"), "EmberTiling_reduce"),
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

SPECS_2002 = GOOD_SPECS[:2] + [KernelSpec.of("pad_on_310p", ("x",), ("z",), None)]


def test_arch_2002_padded_vector_add_and_no_datacopypad():
    mod = EmulatedModule(compile_module(COMMON + VADD + PAD_ON_2002, SPECS_2002, 2002, UB_2002), SPECS_2002)
    for n, blocks, dtype in [(1000, 3, np.float32), (77, 2, np.float16), (4097, 7, np.float16)]:
        run_vadd(mod, dtype, n, blocks, 256, pad_to=blocks * 32 // np.dtype(dtype).itemsize)
    with pytest.raises(EmulationError, match=r"pad_on_310p, block 0 .*\[datacopypad-arch\].*2002"):
        mod.launch("pad_on_310p", 1, [np.zeros(8, np.float32), np.zeros(8, np.float32)])
    run_vadd(mod, np.float32, 64, 2, 64, pad_to=16)


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
