// Reductions and broadcasts (ascendc.md §3, §7.2 item 5): ReduceSum/Max/Min count form with a work tensor,
// WholeReduceSum/Max/Min and their newer name ReduceRepeat (one result per 256-byte repeat, continuous mask),
// BlockReduceSum (one per 32-byte block) and Brcb. Sums accumulate in double and round to T once.
#pragma once
#include "ember_vector.h"

namespace AscendC {

struct BrcbRepeatParams {
    uint16_t dstBlkStride = 1;  // 32-byte units
    uint16_t dstRepStride = 8;  // 32-byte units
    BrcbRepeatParams() = default;
    BrcbRepeatParams(uint16_t blk, uint16_t rep) : dstBlkStride(blk), dstRepStride(rep) {}
};

}  // namespace AscendC

namespace ember_emu {

// The index of a max/min is stored as integer bits in a T slot, as the hardware does (read it back with
// ReinterpretCast<uint16_t/uint32_t>).
template <class T>
T index_bits(uint32_t idx) {
    T out{};
    if constexpr (sizeof(T) == 2) { uint16_t v = (uint16_t)idx; std::memcpy(&out, &v, 2); }
    else { std::memcpy(&out, &idx, 4); }
    return out;
}

template <class T>
void full_reduce(const char* api, const AscendC::LocalTensor<T>& dst, const AscendC::LocalTensor<T>& src,
                 const AscendC::LocalTensor<T>& work, int32_t count, int kind, bool index) {
    dtypes<T, half, float>(api);
    if (count < 1) fail("count", "%s: count %d must be at least 1", api, count);
    const T* s = ub(src, count, api, "src");
    ub(work, 0, api, "sharedTmpBuffer");
    T* d = ub(dst, index ? 2 : 1, api, "dst");
    if (kind == 0) {
        double acc = 0;
        for (int32_t i = 0; i < count; ++i) acc += (double)up(s[i]);
        d[0] = down<T>((float)acc);
        return;
    }
    int32_t best = 0;
    for (int32_t i = 1; i < count; ++i) {
        const float v = up(s[i]), b = up(s[best]);
        if (kind > 0 ? v > b : v < b) best = i;
    }
    d[0] = s[best];
    if (index) d[1] = index_bits<T>((uint32_t)best);
}

// One result per repeat: elements [0, mask) of the repeat, read in 32-byte blocks srcBlkStride apart; repeats
// srcRepStride blocks apart; dstRepStride in units of one repeat's result.
template <class T>
void whole_reduce(const char* api, const AscendC::LocalTensor<T>& dst, const AscendC::LocalTensor<T>& src,
                  int32_t mask, int32_t repeat, int32_t dstRep, int32_t srcBlk, int32_t srcRep, int kind,
                  AscendC::ReduceOrder order) {
    dtypes<T, half, float>(api);
    constexpr int32_t per_blk = 32 / sizeof(T), per_rep = 256 / sizeof(T);
    if (repeat < 0 || repeat > 255) fail("repeat", "%s: repeatTime %d is outside [0, 255]", api, repeat);
    if (mask < 1 || mask > per_rep) fail("mask", "%s: mask %d is outside [1, %d]", api, mask, per_rep);
    const int outs = kind == 0 || order == AscendC::ReduceOrder::ORDER_ONLY_VALUE ||
                             order == AscendC::ReduceOrder::ORDER_ONLY_INDEX ? 1 : 2;
    const int32_t unit = order == AscendC::ReduceOrder::ORDER_ONLY_INDEX && kind != 0
                             ? (int32_t)(4 / sizeof(T)) : outs;
    for (int32_t r = 0; r < repeat; ++r) {
        double acc = 0;
        float best = 0;
        uint32_t at = 0;
        for (int32_t i = 0; i < mask; ++i) {
            const uint32_t e = (uint32_t)(r * srcRep * per_blk + (i / per_blk) * srcBlk * per_blk + i % per_blk);
            const float v = up(ub(src[e], 1, api, "src", false)[0]);
            acc += v;
            if (i == 0 || (kind > 0 ? v > best : v < best)) { best = v; at = (uint32_t)i; }
        }
        T* d = ub(dst[(uint32_t)(r * dstRep * unit)], (uint64_t)unit, api, "dst", false);
        if (kind == 0) { d[0] = down<T>((float)acc); continue; }
        switch (order) {
            case AscendC::ReduceOrder::ORDER_VALUE_INDEX: d[0] = down<T>(best); d[1] = index_bits<T>(at); break;
            case AscendC::ReduceOrder::ORDER_INDEX_VALUE: d[0] = index_bits<T>(at); d[1] = down<T>(best); break;
            case AscendC::ReduceOrder::ORDER_ONLY_VALUE: d[0] = down<T>(best); break;
            case AscendC::ReduceOrder::ORDER_ONLY_INDEX: std::memcpy(d, &at, 4); break;
        }
    }
}

}  // namespace ember_emu

namespace AscendC {

template <class T>
void ReduceSum(const LocalTensor<T>& dst, const LocalTensor<T>& src, const LocalTensor<T>& sharedTmpBuffer,
               const int32_t count) {
    ember_emu::full_reduce("ReduceSum", dst, src, sharedTmpBuffer, count, 0, false);
}
template <class T>
void ReduceMax(const LocalTensor<T>& dst, const LocalTensor<T>& src, const LocalTensor<T>& sharedTmpBuffer,
               const int32_t count, bool calIndex = false) {
    ember_emu::full_reduce("ReduceMax", dst, src, sharedTmpBuffer, count, 1, calIndex);
}
template <class T>
void ReduceMin(const LocalTensor<T>& dst, const LocalTensor<T>& src, const LocalTensor<T>& sharedTmpBuffer,
               const int32_t count, bool calIndex = false) {
    ember_emu::full_reduce("ReduceMin", dst, src, sharedTmpBuffer, count, -1, calIndex);
}

template <class T, bool isSetMask = true>
void WholeReduceSum(const LocalTensor<T>& dst, const LocalTensor<T>& src, const int32_t mask,
                    const int32_t repeatTime, const int32_t dstRepStride, const int32_t srcBlkStride,
                    const int32_t srcRepStride) {
    ember_emu::whole_reduce("WholeReduceSum", dst, src, mask, repeatTime, dstRepStride, srcBlkStride,
                            srcRepStride, 0, ReduceOrder::ORDER_ONLY_VALUE);
}
template <class T, bool isSetMask = true>
void WholeReduceMax(const LocalTensor<T>& dst, const LocalTensor<T>& src, const int32_t mask,
                    const int32_t repeatTime, const int32_t dstRepStride, const int32_t srcBlkStride,
                    const int32_t srcRepStride, ReduceOrder order = ReduceOrder::ORDER_VALUE_INDEX) {
    ember_emu::whole_reduce("WholeReduceMax", dst, src, mask, repeatTime, dstRepStride, srcBlkStride,
                            srcRepStride, 1, order);
}
template <class T, bool isSetMask = true>
void WholeReduceMin(const LocalTensor<T>& dst, const LocalTensor<T>& src, const int32_t mask,
                    const int32_t repeatTime, const int32_t dstRepStride, const int32_t srcBlkStride,
                    const int32_t srcRepStride, ReduceOrder order = ReduceOrder::ORDER_VALUE_INDEX) {
    ember_emu::whole_reduce("WholeReduceMin", dst, src, mask, repeatTime, dstRepStride, srcBlkStride,
                            srcRepStride, -1, order);
}

enum class ReduceType { SUM = 0, MAX, MIN };

// The newer name of WholeReduceSum/Max/Min (continuous mask form).
template <ReduceType R, class T, class U, bool isSetMask = true>
void ReduceRepeat(const LocalTensor<T>& dst, const LocalTensor<U>& src, const int32_t mask, const int32_t repeatTime,
                  const int32_t dstRepStride, const int32_t srcBlkStride, const int32_t srcRepStride,
                  ReduceOrder order = ReduceOrder::ORDER_VALUE_INDEX) {
    if constexpr (!std::is_same_v<T, U>) {
        ember_emu::fail("dtype", "ReduceRepeat from %s to %s: source and destination types must match",
                        ember_emu::type_name<U>(), ember_emu::type_name<T>());
    } else {
        const int kind = R == ReduceType::SUM ? 0 : R == ReduceType::MAX ? 1 : -1;
        ember_emu::whole_reduce("ReduceRepeat", dst, src, mask, repeatTime, dstRepStride, srcBlkStride,
                                srcRepStride, kind, kind == 0 ? ReduceOrder::ORDER_ONLY_VALUE : order);
    }
}

// Per 32-byte block sums: 8 results per repeat (elements of a block at index >= mask count as absent);
// dstRepStride is in units of one repeat's 8 results.
template <class T, bool isSetMask = true>
void BlockReduceSum(const LocalTensor<T>& dst, const LocalTensor<T>& src, const int32_t repeatTime,
                    const int32_t mask, const int32_t dstRepStride, const int32_t srcBlkStride,
                    const int32_t srcRepStride) {
    const char* api = "BlockReduceSum";
    ember_emu::dtypes<T, half, float>(api);
    constexpr int32_t per_blk = 32 / sizeof(T), per_rep = 256 / sizeof(T);
    if (repeatTime < 0 || repeatTime > 255)
        ember_emu::fail("repeat", "%s: repeatTime %d is outside [0, 255]", api, repeatTime);
    if (mask < 1 || mask > per_rep) ember_emu::fail("mask", "%s: mask %d is outside [1, %d]", api, mask, per_rep);
    for (int32_t r = 0; r < repeatTime; ++r) {
        T* d = ember_emu::ub(dst[(uint32_t)(r * dstRepStride * 8)], 8, api, "dst", false);
        for (int32_t b = 0; b < 8; ++b) {
            double acc = 0;
            for (int32_t k = 0; k < per_blk && b * per_blk + k < mask; ++k) {
                const uint32_t e = (uint32_t)((r * srcRepStride + b * srcBlkStride) * per_blk + k);
                acc += (double)ember_emu::up(ember_emu::ub(src[e], 1, api, "src", false)[0]);
            }
            d[b] = ember_emu::down<T>((float)acc);
        }
    }
}

// Brcb: each source element fills one 32-byte block of dst; 8 elements per repeat.
template <class T>
void Brcb(const LocalTensor<T>& dst, const LocalTensor<T>& src, const uint8_t repeatTime,
          const BrcbRepeatParams& p) {
    const char* api = "Brcb";
    ember_emu::dtypes<T, half, bfloat16_t, int16_t, uint16_t, int32_t, uint32_t, float>(api);
    constexpr uint32_t per_blk = 32 / sizeof(T);
    const T* s = ember_emu::ub(src, (uint64_t)repeatTime * 8, api, "src");
    for (uint32_t r = 0; r < repeatTime; ++r) {
        for (uint32_t b = 0; b < 8; ++b) {
            T* d = ember_emu::ub(dst[(r * p.dstRepStride + b * p.dstBlkStride) * per_blk], per_blk, api, "dst");
            for (uint32_t k = 0; k < per_blk; ++k) d[k] = s[r * 8 + b];
        }
    }
}

}  // namespace AscendC
