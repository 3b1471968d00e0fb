// Cast<TDst, TSrc> with RoundMode (ascendc.md §3): directed rounding to half/bfloat16 by stepping between the two
// neighbouring 16-bit values, integer targets saturate (NaN becomes 0). Unlisted type pairs and modes are errors.
#pragma once
#include <cmath>
#include <limits>

#include "ember_vector.h"

namespace ember_emu {

template <class H>
uint16_t bits16(H h) { uint16_t b; std::memcpy(&b, &h, 2); return b; }
template <class H>
H from_bits16(uint16_t b) { H h; std::memcpy(&h, &b, 2); return h; }

// Next 16-bit float toward +inf (up) or -inf; both formats are sign-magnitude.
template <class H>
H step16(H h, bool up) {
    uint16_t b = bits16(h);
    const bool neg = b & 0x8000;
    if ((b & 0x7fff) == 0) return from_bits16<H>(up ? 0x0001 : 0x8001);
    b = (uint16_t)(up != neg ? b + 1 : b - 1);
    return from_bits16<H>(b);
}

template <class H>
H round16(float x, AscendC::RoundMode mode) {
    using AscendC::RoundMode;
    const H near = (H)x;  // round to nearest even
    if (std::isnan(x) || (float)near == x || mode == RoundMode::CAST_NONE || mode == RoundMode::CAST_RINT)
        return near;
    const bool below = (float)near < x;
    const H lo = below ? near : step16(near, false), hi = below ? step16(near, true) : near;
    switch (mode) {
        case RoundMode::CAST_FLOOR: return lo;
        case RoundMode::CAST_CEIL: return hi;
        case RoundMode::CAST_TRUNC: return x > 0 ? lo : hi;
        case RoundMode::CAST_ROUND:
            if ((double)x - (float)lo == (double)(float)hi - x) return x > 0 ? hi : lo;
            return near;
        case RoundMode::CAST_ODD: return bits16(lo) & 1 ? lo : hi;
        default: return near;
    }
}

template <class D>
D round_int(double x, AscendC::RoundMode mode) {
    using AscendC::RoundMode;
    if (std::isnan(x)) return 0;
    double r;
    switch (mode) {
        case RoundMode::CAST_FLOOR: r = std::floor(x); break;
        case RoundMode::CAST_CEIL: r = std::ceil(x); break;
        case RoundMode::CAST_TRUNC: r = std::trunc(x); break;
        case RoundMode::CAST_ROUND: r = std::round(x); break;
        default: r = std::nearbyint(x); break;
    }
    const double lo = (double)std::numeric_limits<D>::min(), hi = (double)std::numeric_limits<D>::max();
    return (D)(r < lo ? lo : r > hi ? hi : r);
}

inline const char* mode_name(AscendC::RoundMode m) {
    static const char* names[] = {"CAST_NONE", "CAST_RINT", "CAST_FLOOR", "CAST_CEIL", "CAST_ROUND", "CAST_TRUNC",
                                  "CAST_ODD"};
    return names[(int)m];
}

template <class D, class S>
D cast_one(S v, AscendC::RoundMode mode) {
    if constexpr (one_of<D, half, bfloat16_t>) {
        if constexpr (is_float_v<S>) return round16<D>((float)v, mode);
        else return round16<D>((float)(double)v, mode);
    } else if constexpr (std::is_same_v<D, float>) {
        return (float)v;
    } else {
        return round_int<D>((double)(float)v, mode);
    }
}

// Supported (dst, src) pairs and whether a rounding mode other than CAST_NONE is meaningful/required.
template <class D, class S>
void check_cast(AscendC::RoundMode mode) {
    using AscendC::RoundMode;
    constexpr bool widen = (std::is_same_v<D, float> && one_of<S, half, bfloat16_t>) ||
                           (std::is_same_v<D, half> && one_of<S, int16_t, int8_t, uint8_t>);
    constexpr bool to16 = one_of<D, half, bfloat16_t> && std::is_same_v<S, float>;
    constexpr bool toint = (std::is_same_v<S, float> && one_of<D, int32_t, int16_t, int64_t>) ||
                           (std::is_same_v<S, half> && one_of<D, int32_t, int16_t, int8_t, uint8_t>);
    constexpr bool int2f = std::is_same_v<D, float> && one_of<S, int32_t, int16_t, int64_t>;
    if constexpr (!(widen || to16 || toint || int2f)) {
        fail("dtype", "Cast from %s to %s is not supported", type_name<S>(), type_name<D>());
    } else {
        bool ok = true;
        if (widen) ok = mode == RoundMode::CAST_NONE;
        if (toint) ok = mode != RoundMode::CAST_NONE && mode != RoundMode::CAST_ODD;
        if (int2f) ok = mode == RoundMode::CAST_NONE || mode == RoundMode::CAST_RINT;
        if (std::is_same_v<D, bfloat16_t> && mode == RoundMode::CAST_ODD) ok = false;
        if (!ok)
            fail("dtype", "Cast from %s to %s does not support RoundMode::%s", type_name<S>(), type_name<D>(),
                 mode_name(mode));
    }
}

}  // namespace ember_emu

namespace AscendC {

template <class TDst, class TSrc>
void Cast(const LocalTensor<TDst>& dst, const LocalTensor<TSrc>& src, const RoundMode& mode, const uint32_t count) {
    const char* api = "Cast";
    ember_emu::check_cast<TDst, TSrc>(mode);
    const TSrc* s = ember_emu::ub(src, count, api, "src");
    TDst* d = ember_emu::ub(dst, count, api, "dst");
    ember_emu::no_partial_overlap(dst, count, src, count, api);
    for (uint32_t i = 0; i < count; ++i) d[i] = ember_emu::cast_one<TDst>(s[i], mode);
}

}  // namespace AscendC
