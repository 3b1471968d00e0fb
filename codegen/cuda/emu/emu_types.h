// CUDA value types and device math for the emulator: dim3/uint3, float4, __half (IEEE binary16, round to
// nearest even), min/max overloads as CUDA declares them, and the intrinsics ember's generator may use.
#pragma once

struct uint3 {
    unsigned int x, y, z;
};

struct dim3 {
    unsigned int x, y, z;
    constexpr dim3(unsigned int vx = 1, unsigned int vy = 1, unsigned int vz = 1) : x(vx), y(vy), z(vz) {}
};

struct alignas(16) float4 {
    float x, y, z, w;
};

static inline float4 make_float4(float x, float y, float z, float w) {
    float4 r;
    r.x = x;
    r.y = y;
    r.z = z;
    r.w = w;
    return r;
}

static constexpr int warpSize = 32;

namespace ember_emu {
namespace {

// float -> binary16 bits, round to nearest even; NaN stays NaN (quiet bit set), overflow goes to inf,
// results below the smallest subnormal round to (signed) zero.
inline unsigned short float_to_half_bits(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    const uint32_t sign = (x >> 16) & 0x8000u;
    const uint32_t ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u)
        return (unsigned short)(sign | 0x7c00u | (ax > 0x7f800000u ? 0x200u | ((ax >> 13) & 0x3ffu) : 0u));
    if (ax >= 0x47800000u)  // >= 65536: inf (65520..65536 rounds up to inf through the normal path too)
        return (unsigned short)(sign | 0x7c00u);
    if (ax < 0x38800000u) {  // below the smallest normal half (2^-14): subnormal or zero
        if (ax < 0x33000000u)  // below 2^-25: rounds to zero
            return (unsigned short)sign;
        const uint32_t e = ax >> 23;
        const uint32_t m = (ax & 0x7fffffu) | 0x800000u;
        const uint32_t shift = 126u - e;  // value = m * 2^(e-150); a subnormal unit is 2^-24
        uint32_t k = m >> shift;
        const uint32_t rem = m & ((1u << shift) - 1u);
        const uint32_t halfway = 1u << (shift - 1u);
        if (rem > halfway || (rem == halfway && (k & 1u)))
            ++k;
        return (unsigned short)(sign | k);
    }
    uint32_t h = (ax >> 13) - (112u << 10);
    const uint32_t rem = ax & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u)))
        ++h;  // a carry into the exponent is the correct next binade (or inf)
    return (unsigned short)(sign | h);
}

// double -> binary16 with a single rounding: round to odd into float (keeps a sticky bit), then to nearest even.
inline unsigned short double_to_half_bits(double d) {
    float f = (float)d;
    if (d == d && (double)f != d) {
        uint32_t bits;
        memcpy(&bits, &f, 4);
        if (fabs((double)f) > fabs(d))
            --bits;  // toward zero (the magnitude lives in the low bits, the sign stays)
        bits |= 1u;
        memcpy(&f, &bits, 4);
    }
    return float_to_half_bits(f);
}

inline float half_bits_to_float(unsigned short h) {
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    const uint32_t e = (h >> 10) & 0x1fu;
    const uint32_t m = h & 0x3ffu;
    uint32_t x;
    if (e == 0x1fu) {
        x = sign | 0x7f800000u | (m << 13);
    } else if (e == 0) {
        const float v = (float)m * 5.9604644775390625e-08f;  // m * 2^-24, exact
        memcpy(&x, &v, 4);
        x |= sign;
    } else {
        x = sign | ((e + 112u) << 23) | (m << 13);
    }
    float f;
    memcpy(&f, &x, 4);
    return f;
}

}  // namespace
}  // namespace ember_emu

// IEEE binary16 stored as its bits; arithmetic goes through float and rounds back, as on the GPU.
struct __half {
    unsigned short __x;
    __half() = default;
    __half(float f) : __x(ember_emu::float_to_half_bits(f)) {}
    __half(double d) : __x(ember_emu::double_to_half_bits(d)) {}
    __half(int i) : __x(ember_emu::float_to_half_bits((float)i)) {}
    __half(long long i) : __x(ember_emu::float_to_half_bits((float)i)) {}
    __half(unsigned int i) : __x(ember_emu::float_to_half_bits((float)i)) {}
    operator float() const { return ember_emu::half_bits_to_float(__x); }
    __half& operator+=(const __half& o) { return *this = __half((float)*this + (float)o); }
    __half& operator-=(const __half& o) { return *this = __half((float)*this - (float)o); }
    __half& operator*=(const __half& o) { return *this = __half((float)*this * (float)o); }
    __half& operator/=(const __half& o) { return *this = __half((float)*this / (float)o); }
};

static inline __half operator+(const __half& a, const __half& b) { return __half((float)a + (float)b); }
static inline __half operator-(const __half& a, const __half& b) { return __half((float)a - (float)b); }
static inline __half operator*(const __half& a, const __half& b) { return __half((float)a * (float)b); }
static inline __half operator/(const __half& a, const __half& b) { return __half((float)a / (float)b); }
static inline __half operator-(const __half& a) {
    __half r;
    r.__x = (unsigned short)(a.__x ^ 0x8000u);
    return r;
}

static inline __half __float2half(float f) { return __half(f); }
static inline __half __float2half_rn(float f) { return __half(f); }
static inline float __half2float(__half h) { return (float)h; }

#if EMBER_EMU_C_MATH
// The float overloads of <cmath> (only the C functions were declared).
#define EMBER_EMU_FLOATF(name) name##f
#define EMBER_EMU_MATH1(f) \
    static inline float f(float x) { return EMBER_EMU_FLOATF(f)(x); }
#define EMBER_EMU_MATH2(f) \
    static inline float f(float x, float y) { return EMBER_EMU_FLOATF(f)(x, y); }
EMBER_EMU_MATH1(exp) EMBER_EMU_MATH1(exp2) EMBER_EMU_MATH1(expm1) EMBER_EMU_MATH1(log) EMBER_EMU_MATH1(log2)
EMBER_EMU_MATH1(log10) EMBER_EMU_MATH1(log1p) EMBER_EMU_MATH1(sqrt) EMBER_EMU_MATH1(cbrt) EMBER_EMU_MATH1(tanh)
EMBER_EMU_MATH1(sinh) EMBER_EMU_MATH1(cosh) EMBER_EMU_MATH1(sin) EMBER_EMU_MATH1(cos) EMBER_EMU_MATH1(tan)
EMBER_EMU_MATH1(asin) EMBER_EMU_MATH1(acos) EMBER_EMU_MATH1(atan) EMBER_EMU_MATH1(fabs) EMBER_EMU_MATH1(erf)
EMBER_EMU_MATH1(erfc) EMBER_EMU_MATH1(floor) EMBER_EMU_MATH1(ceil) EMBER_EMU_MATH1(rint) EMBER_EMU_MATH1(trunc)
EMBER_EMU_MATH1(round)
EMBER_EMU_MATH2(fmax) EMBER_EMU_MATH2(fmin) EMBER_EMU_MATH2(pow) EMBER_EMU_MATH2(fmod) EMBER_EMU_MATH2(atan2)
EMBER_EMU_MATH2(hypot) EMBER_EMU_MATH2(copysign)
static inline float fma(float x, float y, float z) { return fmaf(x, y, z); }
#undef EMBER_EMU_MATH1
#undef EMBER_EMU_FLOATF
#undef EMBER_EMU_MATH2
#endif

// Intrinsics: the fast-math variants compute the precise function (a CPU reference, not a bit-exact GPU model).
static inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
static inline double rsqrt(double x) { return 1.0 / sqrt(x); }
static inline float __fdividef(float a, float b) { return a / b; }
// glibc declares its own __expf & co.; macros keep the CUDA meaning whatever the C library declares.
#define __expf(x) expf((float)(x))
#define __logf(x) logf((float)(x))
#define __sinf(x) sinf((float)(x))
#define __cosf(x) cosf((float)(x))
#define __powf(a, b) powf((float)(a), (float)(b))

// min/max as CUDA's math headers declare them (same-type overloads plus the signed/unsigned and float/double mixes).
#define EMBER_EMU_MINMAX(R, A, B)                                       \
    static inline R min(A a, B b) { return (R)a < (R)b ? (R)a : (R)b; } \
    static inline R max(A a, B b) { return (R)a > (R)b ? (R)a : (R)b; }
EMBER_EMU_MINMAX(int, int, int)
EMBER_EMU_MINMAX(unsigned int, unsigned int, unsigned int)
EMBER_EMU_MINMAX(unsigned int, int, unsigned int)
EMBER_EMU_MINMAX(unsigned int, unsigned int, int)
EMBER_EMU_MINMAX(long, long, long)
EMBER_EMU_MINMAX(unsigned long, unsigned long, unsigned long)
EMBER_EMU_MINMAX(long long, long long, long long)
EMBER_EMU_MINMAX(unsigned long long, unsigned long long, unsigned long long)
EMBER_EMU_MINMAX(unsigned long long, long long, unsigned long long)
EMBER_EMU_MINMAX(unsigned long long, unsigned long long, long long)
#undef EMBER_EMU_MINMAX
static inline float min(float a, float b) { return fminf(a, b); }
static inline float max(float a, float b) { return fmaxf(a, b); }
static inline double min(double a, double b) { return fmin(a, b); }
static inline double max(double a, double b) { return fmax(a, b); }
static inline double min(float a, double b) { return fmin((double)a, b); }
static inline double max(float a, double b) { return fmax((double)a, b); }
static inline double min(double a, float b) { return fmin(a, (double)b); }
static inline double max(double a, float b) { return fmax(a, (double)b); }
