// Count-form vector instructions over UB (ascendc.md §3 and §7.2 item 5): elementwise, scalar, fill, compare and
// select. Each instruction computes in float (64-bit integers for integer types) and rounds to T once, as fp16
// hardware does; dtypes outside the A2 whitelist are errors (§7.3 h).
#pragma once
#include <cmath>

#include "ember_tensor.h"

namespace ember_emu {

template <class T, class... Allowed>
void dtypes(const char* api) {
    if constexpr (!one_of<T, Allowed...>) fail("dtype", "%s does not support %s", api, type_name<T>());
}

inline void check_count(int64_t count, const char* api) {
    if (count < 0) fail("count", "%s: count %lld is negative", api, (long long)count);
}

template <class T, class F>
void unary(const char* api, const AscendC::LocalTensor<T>& dst, const AscendC::LocalTensor<T>& src, int64_t n, F f) {
    check_count(n, api);
    const T* s = ub(src, n, api, "src");
    T* d = ub(dst, n, api, "dst");
    no_partial_overlap(dst, n, src, n, api);
    for (int64_t i = 0; i < n; ++i) d[i] = down<T>(f(up(s[i])));
}

template <class T, class F>
void binary(const char* api, const AscendC::LocalTensor<T>& dst, const AscendC::LocalTensor<T>& a,
            const AscendC::LocalTensor<T>& b, int64_t n, F f) {
    check_count(n, api);
    const T* x = ub(a, n, api, "src0");
    const T* y = ub(b, n, api, "src1");
    T* d = ub(dst, n, api, "dst");
    no_partial_overlap(dst, n, a, n, api);
    no_partial_overlap(dst, n, b, n, api);
    for (int64_t i = 0; i < n; ++i) d[i] = down<T>(f(up(x[i]), up(y[i])));
}

}  // namespace ember_emu

namespace AscendC {

#define EMBER_BINARY(NAME, EXPR, ...)                                                                       \
    template <class T>                                                                                     \
    void NAME(const LocalTensor<T>& dst, const LocalTensor<T>& src0, const LocalTensor<T>& src1,           \
              const int32_t& count) {                                                                      \
        ember_emu::dtypes<T, __VA_ARGS__>(#NAME);                                                          \
        ember_emu::binary(#NAME, dst, src0, src1, count, [](auto a, auto b) { return EXPR; });             \
    }
EMBER_BINARY(Add, a + b, int16_t, half, int32_t, float)
EMBER_BINARY(Sub, a - b, int16_t, half, int32_t, float)
EMBER_BINARY(Mul, a * b, int16_t, half, int32_t, float)
EMBER_BINARY(Div, a / b, half, float)
EMBER_BINARY(Max, a > b ? a : b, int16_t, half, int32_t, float)
EMBER_BINARY(Min, a < b ? a : b, int16_t, half, int32_t, float)
#undef EMBER_BINARY

#define EMBER_UNARY(NAME, EXPR, ...)                                                                        \
    template <class T>                                                                                     \
    void NAME(const LocalTensor<T>& dst, const LocalTensor<T>& src, const int32_t& count) {               \
        ember_emu::dtypes<T, __VA_ARGS__>(#NAME);                                                          \
        ember_emu::unary(#NAME, dst, src, count, [](auto x) { return EXPR; });                             \
    }
EMBER_UNARY(Exp, std::exp(x), half, float)
EMBER_UNARY(Ln, std::log(x), half, float)
EMBER_UNARY(Abs, std::fabs(x), half, float)
EMBER_UNARY(Sqrt, std::sqrt(x), half, float)
EMBER_UNARY(Rsqrt, 1.0f / std::sqrt(x), half, float)
EMBER_UNARY(Reciprocal, 1.0f / x, half, float)
EMBER_UNARY(Relu, x > 0 ? x : decltype(x)(0), half, int32_t, float)
#undef EMBER_UNARY

#define EMBER_SCALAR(NAME, EXPR, ...)                                                                       \
    template <class T>                                                                                     \
    void NAME(const LocalTensor<T>& dst, const LocalTensor<T>& src, const T& scalar, const int32_t& count) { \
        ember_emu::dtypes<T, __VA_ARGS__>(#NAME);                                                          \
        const auto s = ember_emu::up(scalar);                                                              \
        ember_emu::unary(#NAME, dst, src, count, [s](auto x) { return EXPR; });                            \
    }
EMBER_SCALAR(Adds, x + s, int16_t, half, int32_t, float)
EMBER_SCALAR(Muls, x * s, int16_t, half, int32_t, float)
EMBER_SCALAR(Maxs, x > s ? x : s, int16_t, half, int32_t, float)
EMBER_SCALAR(Mins, x < s ? x : s, int16_t, half, int32_t, float)
EMBER_SCALAR(LeakyRelu, x >= 0 ? x : x * s, half, float)
#undef EMBER_SCALAR

template <class T>
void Duplicate(const LocalTensor<T>& dst, const T& scalar, const int32_t& count) {
    ember_emu::dtypes<T, half, bfloat16_t, int16_t, uint16_t, int32_t, uint32_t, float>("Duplicate");
    ember_emu::check_count(count, "Duplicate");
    T* d = ember_emu::ub(dst, count, "Duplicate", "dst");
    for (int32_t i = 0; i < count; ++i) d[i] = scalar;
}

// Compare: one bit per element (LSB first) in U; count*sizeof(T) must be whole 256-byte repeats.
template <class T, class U = uint8_t>
void Compare(const LocalTensor<U>& dst, const LocalTensor<T>& src0, const LocalTensor<T>& src1, CMPMODE mode,
             uint32_t count) {
    const char* api = "Compare";
    ember_emu::dtypes<T, half, float, int32_t>(api);
    if (std::is_same_v<T, int32_t> && mode != CMPMODE::EQ)
        ember_emu::fail("dtype", "Compare on int32_t supports CMPMODE::EQ only");
    if (count * sizeof(T) % 256 != 0)
        ember_emu::fail("compare-align", "Compare: count %u x %zu bytes is not a multiple of 256 bytes", count,
                        sizeof(T));
    const T* a = ember_emu::ub(src0, count, api, "src0");
    const T* b = ember_emu::ub(src1, count, api, "src1");
    uint8_t* d = (uint8_t*)ember_emu::ub(dst.template ReinterpretCast<uint8_t>(), count / 8, api, "dst");
    for (uint32_t i = 0; i < count; i += 8) {
        uint8_t bits = 0;
        for (uint32_t k = 0; k < 8; ++k) {
            const auto x = ember_emu::up(a[i + k]), y = ember_emu::up(b[i + k]);
            bool r = false;
            switch (mode) {
                case CMPMODE::LT: r = x < y; break;
                case CMPMODE::GT: r = x > y; break;
                case CMPMODE::EQ: r = x == y; break;
                case CMPMODE::LE: r = x <= y; break;
                case CMPMODE::GE: r = x >= y; break;
                case CMPMODE::NE: r = x != y; break;
            }
            bits |= (uint8_t)(r << k);
        }
        d[i / 8] = bits;
    }
}

}  // namespace AscendC

namespace ember_emu {

// Select: a mask bit of 1 picks src0, 0 picks src1 (a tensor or a scalar).
template <class T, class U, class Pick>
void select(const AscendC::LocalTensor<T>& dst, const AscendC::LocalTensor<U>& mask,
            const AscendC::LocalTensor<T>& src0, uint32_t count, Pick other) {
    const char* api = "Select";
    dtypes<T, half, float>(api);
    if (count * sizeof(T) % 256 != 0)
        fail("compare-align", "Select: count %u x %zu bytes is not a multiple of 256 bytes", count, sizeof(T));
    const uint8_t* m = ub(mask.template ReinterpretCast<uint8_t>(), (count + 7) / 8, api, "selMask");
    const T* a = ub(src0, count, api, "src0");
    T* d = ub(dst, count, api, "dst");
    for (uint32_t i = 0; i < count; ++i) d[i] = (m[i / 8] >> (i % 8)) & 1 ? a[i] : other(i);
}

}  // namespace ember_emu

namespace AscendC {

template <class T, class U>
void Select(const LocalTensor<T>& dst, const LocalTensor<U>& selMask, const LocalTensor<T>& src0,
            const LocalTensor<T>& src1, SELMODE mode, uint32_t count) {
    if (mode == SELMODE::VSEL_TENSOR_SCALAR_MODE)
        ember_emu::fail("select-mode", "Select with two tensors needs VSEL_CMPMASK_SPR or VSEL_TENSOR_TENSOR_MODE");
    const T* b = ember_emu::ub(src1, count, "Select", "src1");
    ember_emu::select(dst, selMask, src0, count, [b](uint32_t i) { return b[i]; });
}

template <class T, class U>
void Select(const LocalTensor<T>& dst, const LocalTensor<U>& selMask, const LocalTensor<T>& src0, T scalar,
            SELMODE mode, uint32_t count) {
    if (mode != SELMODE::VSEL_TENSOR_SCALAR_MODE)
        ember_emu::fail("select-mode", "Select with a scalar needs SELMODE::VSEL_TENSOR_SCALAR_MODE");
    ember_emu::select(dst, selMask, src0, count, [scalar](uint32_t) { return scalar; });
}

}  // namespace AscendC
