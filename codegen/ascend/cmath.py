"""Scalar math for AI Core code, which has no C math library: every float function the scalar printer emits is
defined here from arithmetic and bit operations (IEEE float32 semantics, NaN and infinities as numpy; float16
values are computed in float32 and rounded). Accuracy: a few ulp over the usual ranges; sin/cos/tan reduce
arguments with a three-part pi/2, accurate for |x| up to about 1e4.

The emulator poisons the C library's names after its own headers, so a kernel source that still calls one fails
to compile there, as it would with CANN.
"""
from __future__ import annotations

LIBM_NAMES = ("expf", "exp2f", "logf", "log2f", "log1pf", "expm1f", "sqrtf", "sinf", "cosf", "tanf", "tanhf",
              "sinhf", "coshf", "asinf", "acosf", "atanf", "asinhf", "acoshf", "atanhf", "erff", "floorf", "ceilf",
              "nearbyintf", "truncf", "fabsf", "fmodf", "powf")

# ember call name -> helper; `round` is numpy's round-half-to-even.
UNARY = {"exp": "ember_expf", "exp2": "ember_exp2f", "log": "ember_logf", "log2": "ember_log2f",
         "log1p": "ember_log1pf", "expm1": "ember_expm1f", "sqrt": "ember_sqrtf", "sin": "ember_sinf",
         "cos": "ember_cosf", "tan": "ember_tanf", "tanh": "ember_tanhf", "sinh": "ember_sinhf",
         "cosh": "ember_coshf", "asin": "ember_asinf", "acos": "ember_acosf", "atan": "ember_atanf",
         "asinh": "ember_asinhf", "acosh": "ember_acoshf", "atanh": "ember_atanhf", "erf": "ember_erff",
         "floor": "ember_floorf", "ceil": "ember_ceilf", "round": "ember_rintf", "trunc": "ember_truncf",
         "abs": "ember_fabsf"}

MATH_HELPERS = """\
union ember_fu { float f; uint32_t u; };
__aicore__ inline uint32_t ember_bits(float x) { ember_fu v; v.f = x; return v.u; }
__aicore__ inline float ember_from_bits(uint32_t u) { ember_fu v; v.u = u; return v.f; }
__aicore__ inline float ember_inf() { return ember_from_bits(0x7f800000u); }
__aicore__ inline float ember_nan() { return ember_from_bits(0x7fc00000u); }
__aicore__ inline float ember_fabsf(float x) { return ember_from_bits(ember_bits(x) & 0x7fffffffu); }
__aicore__ inline float ember_copysignf(float m, float s) {
    return ember_from_bits((ember_bits(m) & 0x7fffffffu) | (ember_bits(s) & 0x80000000u));
}
__aicore__ inline float ember_truncf(float x) { return ember_fabsf(x) < 8388608.0f ? ember_copysignf((float)(int32_t)x, x) : x; }
__aicore__ inline float ember_floorf(float x) { float t = ember_truncf(x); return t > x ? t - 1.0f : t; }
__aicore__ inline float ember_ceilf(float x) { float t = ember_truncf(x); return t < x ? t + 1.0f : t; }
__aicore__ inline float ember_rintf(float x) {
    if (!(ember_fabsf(x) < 8388608.0f)) return x;
    volatile float big = ember_fabsf(x) + 8388608.0f;  /* the float add rounds half to even */
    return ember_copysignf(big - 8388608.0f, x);
}
__aicore__ inline float ember_fmodf(float a, float b) {
    if (b == 0.0f || a != a || b != b || ember_fabsf(a) == ember_inf()) return ember_nan();
    if (ember_fabsf(b) == ember_inf()) return a;
    return ember_copysignf(ember_fabsf(a) - ember_fabsf(b) * ember_truncf(ember_fabsf(a) / ember_fabsf(b)), a);
}
__aicore__ inline float ember_ldexpf(float x, int32_t k) {
    while (k > 127) { x *= 1.7014118e38f; k -= 127; }
    while (k < -126) { x *= 1.1754944e-38f; k += 126; }
    return x * ember_from_bits((uint32_t)(k + 127) << 23);
}
__aicore__ inline float ember_expf(float x) {
    if (x != x) return x;
    if (x > 88.72283935546875f) return ember_inf();
    if (x < -103.972084f) return 0.0f;
    float k = ember_rintf(x * 1.44269504088896341f);
    float r = (x - k * 0.693145751953125f) - k * 1.428606765330187045e-06f;
    float p = 1.0f + r * (1.0f + r * (0.5f + r * (1.0f / 6 + r * (1.0f / 24 + r * (1.0f / 120 + r * (1.0f / 720 + r * (1.0f / 5040)))))));
    return ember_ldexpf(p, (int32_t)k);
}
__aicore__ inline float ember_exp2f(float x) {
    if (x != x) return x;
    if (x > 128.0f) return ember_inf();
    if (x < -150.0f) return 0.0f;
    float k = ember_rintf(x);
    return ember_ldexpf(ember_expf((x - k) * 0.693147180559945309f), (int32_t)k);
}
__aicore__ inline float ember_logf(float x) {
    if (x != x || x == ember_inf()) return x;
    if (x < 0.0f) return ember_nan();
    if (x == 0.0f) return -ember_inf();
    int32_t e = 0;
    if (x < 1.17549435e-38f) { x *= 8388608.0f; e = -23; }
    uint32_t u = ember_bits(x);
    e += (int32_t)(u >> 23) - 127;
    float m = ember_from_bits((u & 0x007fffffu) | 0x3f800000u);
    if (m > 1.41421356f) { m *= 0.5f; e += 1; }
    float f = m - 1.0f, s = f / (2.0f + f), z = s * s;
    float lm = f - s * (f - z * (2.0f / 3 + z * (2.0f / 5 + z * (2.0f / 7 + z * (2.0f / 9 + z * (2.0f / 11))))));
    return (float)e * 0.693145751953125f + (lm + (float)e * 1.428606765330187045e-06f);
}
__aicore__ inline float ember_log2f(float x) { return ember_logf(x) * 1.44269504088896341f; }
__aicore__ inline float ember_log1pf(float x) {
    if (x == ember_inf()) return x;
    float u = 1.0f + x;
    if (u == 1.0f) return x;
    return ember_logf(u) * (x / (u - 1.0f));
}
__aicore__ inline float ember_expm1f(float x) {
    if (x > 88.72283935546875f) return ember_inf();
    if (ember_fabsf(x) < 1e-5f) return x + 0.5f * x * x;
    float u = ember_expf(x);
    if (u == 1.0f) return x;
    float um1 = u - 1.0f;
    if (um1 == -1.0f) return -1.0f;
    return um1 * (x / ember_logf(u));
}
__aicore__ inline float ember_sqrtf(float x) {
    if (x != x || x == 0.0f || x == ember_inf()) return x;
    if (x < 0.0f) return ember_nan();
    float scale = 1.0f;
    if (x < 1.17549435e-38f) { x *= 16777216.0f; scale = 1.0f / 4096.0f; }
    float y = ember_from_bits(0x1fbd1df5u + (ember_bits(x) >> 1));
    for (int i = 0; i < 3; ++i) y = 0.5f * (y + x / y);
    float lo = ember_from_bits(ember_bits(y) - 1u), hi = ember_from_bits(ember_bits(y) + 1u);
    if (ember_fabsf(lo * lo - x) < ember_fabsf(y * y - x)) y = lo;
    if (ember_fabsf(hi * hi - x) < ember_fabsf(y * y - x)) y = hi;
    return y * scale;
}
__aicore__ inline float ember_sin_poly(float r) {
    float z = r * r;
    return r + r * z * (-1.0f / 6 + z * (1.0f / 120 + z * (-1.0f / 5040 + z * (1.0f / 362880))));
}
__aicore__ inline float ember_cos_poly(float r) {
    float z = r * r;
    return 1.0f - 0.5f * z + z * z * (1.0f / 24 + z * (-1.0f / 720 + z * (1.0f / 40320 + z * (-1.0f / 3628800))));
}
/* x = k * pi/2 + r, |r| <= pi/4; returns r and k mod 4 */
__aicore__ inline float ember_reduce_pio2(float x, int32_t* q) {
    float k = ember_rintf(x * 0.636619772367581343f);
    *q = ((int32_t)k) & 3;
    return ((x - k * 1.5703125f) - k * 4.837512969970703125e-4f) - k * 7.54978995489188216e-8f;
}
__aicore__ inline float ember_sinf(float x) {
    if (!(ember_fabsf(x) < 1e30f)) return x - x;
    int32_t q; float r = ember_reduce_pio2(x, &q);
    float v = (q & 1) ? ember_cos_poly(r) : ember_sin_poly(r);
    return (q & 2) ? -v : v;
}
__aicore__ inline float ember_cosf(float x) {
    if (!(ember_fabsf(x) < 1e30f)) return x - x;
    int32_t q; float r = ember_reduce_pio2(x, &q);
    float v = (q & 1) ? ember_sin_poly(r) : ember_cos_poly(r);
    return (q == 1 || q == 2) ? -v : v;
}
__aicore__ inline float ember_tanf(float x) {
    if (!(ember_fabsf(x) < 1e30f)) return x - x;
    int32_t q; float r = ember_reduce_pio2(x, &q);
    float s = ember_sin_poly(r), c = ember_cos_poly(r);
    return (q & 1) ? -c / s : s / c;
}
__aicore__ inline float ember_atan_small(float t) {
    float z = t * t;
    return t - t * z * (1.0f / 3 - z * (1.0f / 5 - z * (1.0f / 7 - z * (1.0f / 9 - z * (1.0f / 11 - z * (1.0f / 13))))));
}
__aicore__ inline float ember_atanf(float x) {
    float a = ember_fabsf(x), r;
    bool inv = a > 1.0f;
    if (inv) a = 1.0f / a;
    if (a > 0.267949192431122706f) r = 0.523598775598298873f + ember_atan_small((a * 1.73205080756887729f - 1.0f) / (a + 1.73205080756887729f));
    else r = ember_atan_small(a);
    if (inv) r = 1.57079632679489662f - r;
    return x != x ? x : ember_copysignf(r, x);
}
__aicore__ inline float ember_asinf(float x) {
    if (ember_fabsf(x) > 1.0f) return ember_nan();
    return ember_atanf(x / ember_sqrtf((1.0f - x) * (1.0f + x)));
}
__aicore__ inline float ember_acosf(float x) {
    if (ember_fabsf(x) > 1.0f) return ember_nan();
    return 2.0f * ember_atanf(ember_sqrtf((1.0f - x) / (1.0f + x)));
}
__aicore__ inline float ember_tanhf(float x) {
    float a = ember_fabsf(x);
    if (a > 9.0f) return ember_copysignf(1.0f, x);
    float e = ember_expm1f(2.0f * a);
    return x != x ? x : ember_copysignf(e / (e + 2.0f), x);
}
__aicore__ inline float ember_sinhf(float x) {
    float a = ember_fabsf(x);
    if (a > 89.41598629223294f) return x != x ? x : ember_copysignf(ember_inf(), x);
    if (a > 88.0f) { float h = ember_expf(0.5f * a); return ember_copysignf(0.5f * h * h, x); }
    float e = ember_expm1f(a);
    return ember_copysignf(0.5f * (e + e / (e + 1.0f)), x);
}
__aicore__ inline float ember_coshf(float x) {
    float a = ember_fabsf(x);
    if (a > 88.0f) { float h = ember_expf(0.5f * a); return 0.5f * h * h; }
    float e = ember_expf(a);
    return 0.5f * (e + 1.0f / e);
}
__aicore__ inline float ember_asinhf(float x) {
    float a = ember_fabsf(x);
    float r = a > 1e4f ? ember_logf(a) + 0.693147180559945309f : ember_log1pf(a + a * a / (1.0f + ember_sqrtf(1.0f + a * a)));
    return x != x ? x : ember_copysignf(r, x);
}
__aicore__ inline float ember_acoshf(float x) {
    if (x < 1.0f) return ember_nan();
    if (x > 1e4f) return ember_logf(x) + 0.693147180559945309f;
    float t = x - 1.0f;
    return ember_log1pf(t + ember_sqrtf(2.0f * t + t * t));
}
__aicore__ inline float ember_atanhf(float x) {
    float a = ember_fabsf(x);
    if (a > 1.0f) return ember_nan();
    if (a == 1.0f) return ember_copysignf(ember_inf(), x);
    return x != x ? x : ember_copysignf(0.5f * ember_log1pf(2.0f * a / (1.0f - a)), x);
}
__aicore__ inline float ember_erff(float x) {
    float z = ember_fabsf(x);
    if (x != x) return x;
    if (z < 0.5f) {
        float s = z * z;
        float p = z * (1.0f - s * (1.0f / 3 - s * (1.0f / 10 - s * (1.0f / 42 - s * (1.0f / 216 - s * (1.0f / 1320 - s * (1.0f / 9360)))))));
        return ember_copysignf(1.12837916709551257f * p, x);
    }
    if (z > 10.0f) return ember_copysignf(1.0f, x);
    float t = 1.0f / (1.0f + 0.5f * z);
    float erfc = t * ember_expf(-z * z - 1.26551223f + t * (1.00002368f + t * (0.37409196f + t * (0.09678418f +
        t * (-0.18628806f + t * (0.27886807f + t * (-1.13520398f + t * (1.48851587f + t * (-0.82215223f + t * 0.17087277f)))))))));
    return ember_copysignf(1.0f - erfc, x);
}
__aicore__ inline float ember_powf(float a, float b) {
    if (b == 0.0f || a == 1.0f) return 1.0f;
    if (a != a || b != b) return ember_nan();
    bool integral = ember_truncf(b) == b, odd = integral && ember_fabsf(b) < 16777216.0f && ((int32_t)ember_fmodf(b, 2.0f) != 0);
    float m = ember_fabsf(a);
    if (a < 0.0f && !integral && ember_fabsf(b) != ember_inf()) return ember_nan();
    float r;
    if (m == 0.0f) r = b < 0.0f ? ember_inf() : 0.0f;
    else if (m == ember_inf()) r = b < 0.0f ? 0.0f : ember_inf();
    else if (ember_fabsf(b) == ember_inf()) r = (m == 1.0f) ? 1.0f : ((m > 1.0f) == (b > 0.0f) ? ember_inf() : 0.0f);
    else r = ember_exp2f(b * ember_log2f(m));
    return (a < 0.0f || (a == 0.0f && ember_bits(a) >> 31)) && odd ? -r : r;
}
template <typename T> __aicore__ inline T ember_ipow(T a, T b) {
    if (b < 0) return a == 1 ? (T)1 : (a == (T)-1 ? ((b & 1) ? (T)-1 : (T)1) : (T)0);
    T r = 1;
    while (b > 0) { if (b & 1) r = (T)(r * a); a = (T)(a * a); b = (T)(b >> 1); }
    return r;
}
"""
