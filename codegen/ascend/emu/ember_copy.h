// DataCopy (count and DataCopyParams forms) and DataCopyPad between GM and UB, with the alignment, buffer-state
// and product checks of ascendc.md §3 "Data movement" and §7.3 b/d/h.
#pragma once
#include "ember_tensor.h"

namespace AscendC {

struct DataCopyParams {
    uint16_t blockCount = 1;
    uint16_t blockLen = 0;   // 32-byte units
    uint16_t srcStride = 0;  // 32-byte units
    uint16_t dstStride = 0;  // 32-byte units
    DataCopyParams() = default;
    DataCopyParams(uint16_t count, uint16_t len, uint16_t src, uint16_t dst)
        : blockCount(count), blockLen(len), srcStride(src), dstStride(dst) {}
};

struct DataCopyExtParams {
    uint16_t blockCount = 1;
    uint32_t blockLen = 0;   // bytes
    uint32_t srcStride = 0;  // GM->UB: bytes in GM; UB->GM: 32-byte units in UB
    uint32_t dstStride = 0;  // GM->UB: 32-byte units in UB; UB->GM: bytes in GM
    uint32_t rsv = 0;
    DataCopyExtParams() = default;
    DataCopyExtParams(uint16_t count, uint32_t len, uint32_t src, uint32_t dst, uint32_t r)
        : blockCount(count), blockLen(len), srcStride(src), dstStride(dst), rsv(r) {}
};

template <class T>
struct DataCopyPadExtParams {
    bool isPad = false;
    uint8_t leftPadding = 0;   // elements
    uint8_t rightPadding = 0;  // elements
    T paddingValue = T(0);
    DataCopyPadExtParams() = default;
    DataCopyPadExtParams(bool pad, uint8_t left, uint8_t right, T value)
        : isPad(pad), leftPadding(left), rightPadding(right), paddingValue(value) {}
};

}  // namespace AscendC

namespace ember_emu {

// GM->UB copies may fill only buffers the core owns and has not handed to another pipe.
template <class T>
void check_copy_in_target(const AscendC::LocalTensor<T>& dst, const char* api) {
    ub(dst, 0, api, "dst");
    const BufRec& b = rec(dst.id_);
    if (b.state == Slot::DEQUE && b.pos == AscendC::TPosition::VECIN)
        fail("copy-state", "%s: GM->UB copy into a VECIN buffer after DeQue; copy in right after AllocTensor", api);
    if (b.pos == AscendC::TPosition::VECOUT)
        fail("copy-state", "%s: GM->UB copy into a VECOUT queue buffer; use a VECIN queue or a TBuf", api);
}

template <class T>
void check_copy_out_source(const AscendC::LocalTensor<T>& src, const char* api) {
    ub(src, 0, api, "src");
    const BufRec& b = rec(src.id_);
    if (b.state == Slot::OCCUPIED && b.pos == AscendC::TPosition::VECOUT)
        fail("use-before-deque", "%s: UB->GM copy from a VECOUT buffer that was never EnQue'd/DeQue'd; the "
             "queue is what orders the vector writes before the copy", api);
}

inline void check_count_align(uint64_t count, size_t elem, const char* api) {
    if (count * elem % 32 != 0)
        fail("datacopy-align", "%s: count %llu x %zu bytes = %llu bytes is not a multiple of 32 (the NPU would "
             "silently round it down); use DataCopyPad or pad the buffer", api, (unsigned long long)count, elem,
             (unsigned long long)(count * elem));
}

inline void check_pad_available(const char* api) {
    if (EMBER_ASCEND_ARCH == 2002 || EMBER_ASCEND_ARCH == 1001)
        fail("datacopypad-arch", "%s is not available on arch %d (Atlas inference 310P / training 910A)", api,
             EMBER_ASCEND_ARCH);
}

inline void check_ext(const AscendC::DataCopyExtParams& p, size_t elem, const char* api) {
    if (p.blockCount == 0 || p.blockCount > 4095)
        fail("datacopypad-params", "%s: blockCount %u is outside [1, 4095]", api, p.blockCount);
    if (p.blockLen == 0 || p.blockLen % elem != 0)
        fail("datacopypad-params", "%s: blockLen %u bytes is not a positive multiple of sizeof(T) = %zu", api,
             p.blockLen, elem);
}

}  // namespace ember_emu

namespace AscendC {

template <class T>
void DataCopy(const LocalTensor<T>& dst, const GlobalTensor<T>& src, uint32_t count) {
    ember_emu::PipeScope scope(ember_emu::Pipe::MTE2);
    ember_emu::check_count_align(count, sizeof(T), "DataCopy(GM->UB)");
    ember_emu::check_copy_in_target(dst, "DataCopy(GM->UB)");
    T* d = ember_emu::ub(dst, count, "DataCopy(GM->UB)", "dst");
    const T* s = ember_emu::gm(src, count, "DataCopy(GM->UB)", ember_emu::Use::READ);
    std::memcpy(d, s, count * sizeof(T));
}

template <class T>
void DataCopy(const GlobalTensor<T>& dst, const LocalTensor<T>& src, uint32_t count) {
    ember_emu::PipeScope scope(ember_emu::Pipe::MTE3);
    ember_emu::check_count_align(count, sizeof(T), "DataCopy(UB->GM)");
    ember_emu::check_copy_out_source(src, "DataCopy(UB->GM)");
    const T* s = ember_emu::ub(src, count, "DataCopy(UB->GM)", "src");
    T* d = ember_emu::gm(dst, count, "DataCopy(UB->GM)", ember_emu::Use::WRITE);
    std::memcpy(d, s, count * sizeof(T));
}

template <class T>
void DataCopy(const LocalTensor<T>& dst, const LocalTensor<T>& src, uint32_t count) {
    ember_emu::check_count_align(count, sizeof(T), "DataCopy(UB->UB)");
    const T* s = ember_emu::ub(src, count, "DataCopy(UB->UB)", "src");
    T* d = ember_emu::ub(dst, count, "DataCopy(UB->UB)", "dst");
    ember_emu::no_partial_overlap(dst, count, src, count, "DataCopy(UB->UB)");
    std::memmove(d, s, count * sizeof(T));
}

// Strided form: blockCount blocks of blockLen 32-byte units, gaps in 32-byte units on both sides.
template <class T>
void DataCopy(const LocalTensor<T>& dst, const GlobalTensor<T>& src, const DataCopyParams& p) {
    ember_emu::PipeScope scope(ember_emu::Pipe::MTE2);
    const char* api = "DataCopy(GM->UB, DataCopyParams)";
    if (p.blockCount == 0 || p.blockCount > 4095)
        ember_emu::fail("datacopy-params", "%s: blockCount %u is outside [1, 4095]", api, p.blockCount);
    ember_emu::check_copy_in_target(dst, api);
    const uint64_t blk = p.blockLen * 32u / sizeof(T), sgap = p.srcStride * 32u / sizeof(T);
    const uint64_t dgap = p.dstStride * 32u / sizeof(T);
    for (uint32_t i = 0; i < p.blockCount; ++i) {
        T* d = ember_emu::ub(dst[(uint32_t)(i * (blk + dgap))], blk, api, "dst");
        const T* s = ember_emu::gm(src[i * (blk + sgap)], blk, api, ember_emu::Use::READ);
        std::memcpy(d, s, blk * sizeof(T));
    }
}

template <class T>
void DataCopy(const GlobalTensor<T>& dst, const LocalTensor<T>& src, const DataCopyParams& p) {
    ember_emu::PipeScope scope(ember_emu::Pipe::MTE3);
    const char* api = "DataCopy(UB->GM, DataCopyParams)";
    if (p.blockCount == 0 || p.blockCount > 4095)
        ember_emu::fail("datacopy-params", "%s: blockCount %u is outside [1, 4095]", api, p.blockCount);
    ember_emu::check_copy_out_source(src, api);
    const uint64_t blk = p.blockLen * 32u / sizeof(T), sgap = p.srcStride * 32u / sizeof(T);
    const uint64_t dgap = p.dstStride * 32u / sizeof(T);
    for (uint32_t i = 0; i < p.blockCount; ++i) {
        const T* s = ember_emu::ub(src[(uint32_t)(i * (blk + sgap))], blk, api, "src");
        T* d = ember_emu::gm(dst[i * (blk + dgap)], blk, api, ember_emu::Use::WRITE);
        std::memcpy(d, s, blk * sizeof(T));
    }
}

// Non-aligned GM->UB copy: each block lands at a 32-byte boundary in UB as [left pad][data][right pad],
// padded up to 32 bytes; the pads get paddingValue when isPad (otherwise they keep whatever UB held).
template <class T>
void DataCopyPad(const LocalTensor<T>& dst, const GlobalTensor<T>& src, const DataCopyExtParams& p,
                 const DataCopyPadExtParams<T>& pad) {
    ember_emu::PipeScope scope(ember_emu::Pipe::MTE2);
    const char* api = "DataCopyPad(GM->UB)";
    ember_emu::check_pad_available(api);
    ember_emu::check_ext(p, sizeof(T), api);
    if (pad.leftPadding * sizeof(T) > 32 || pad.rightPadding * sizeof(T) > 32)
        ember_emu::fail("datacopypad-params", "%s: padding of %u/%u elements exceeds 32 bytes", api,
                        pad.leftPadding, pad.rightPadding);
    if (p.srcStride % sizeof(T) != 0)
        ember_emu::fail("datacopypad-params", "%s: srcStride %u bytes is not a multiple of sizeof(T)", api,
                        p.srcStride);
    ember_emu::check_copy_in_target(dst, api);
    const uint64_t n = p.blockLen / sizeof(T);
    const uint64_t row = ((pad.leftPadding + n + pad.rightPadding) * sizeof(T) + 31) / 32 * 32 / sizeof(T);
    const uint64_t stride = row + p.dstStride * 32u / sizeof(T);
    for (uint32_t i = 0; i < p.blockCount; ++i) {
        T* d = ember_emu::ub(dst[(uint32_t)(i * stride)], row, api, "dst");
        const T* s = ember_emu::gm(src[i * (n + p.srcStride / sizeof(T))], n, api, ember_emu::Use::READ);
        std::memcpy(d + pad.leftPadding, s, n * sizeof(T));
        if (pad.isPad) {
            for (uint64_t k = 0; k < pad.leftPadding; ++k) d[k] = pad.paddingValue;
            for (uint64_t k = 0; k < pad.rightPadding; ++k) d[pad.leftPadding + n + k] = pad.paddingValue;
        }
    }
}

// Non-aligned UB->GM copy: blockLen bytes per block from 32-byte aligned UB rows; dstStride is in GM bytes.
template <class T>
void DataCopyPad(const GlobalTensor<T>& dst, const LocalTensor<T>& src, const DataCopyExtParams& p) {
    ember_emu::PipeScope scope(ember_emu::Pipe::MTE3);
    const char* api = "DataCopyPad(UB->GM)";
    ember_emu::check_pad_available(api);
    ember_emu::check_ext(p, sizeof(T), api);
    if (p.dstStride % sizeof(T) != 0)
        ember_emu::fail("datacopypad-params", "%s: dstStride %u bytes is not a multiple of sizeof(T)", api,
                        p.dstStride);
    ember_emu::check_copy_out_source(src, api);
    const uint64_t n = p.blockLen / sizeof(T);
    const uint64_t row = (p.blockLen + 31) / 32 * 32 / sizeof(T) + p.srcStride * 32u / sizeof(T);
    for (uint32_t i = 0; i < p.blockCount; ++i) {
        const T* s = ember_emu::ub(src[(uint32_t)(i * row)], n, api, "src");
        T* d = ember_emu::gm(dst[i * (n + p.dstStride / sizeof(T))], n, api, ember_emu::Use::WRITE);
        std::memcpy(d, s, n * sizeof(T));
    }
}

}  // namespace AscendC
