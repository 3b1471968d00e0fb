"""Vectorizable float32 exp and tanh (Cephes-style range reduction and polynomials, ~2 ulp) and erf (a rational
approximation on [-4, 4], within 8 ulp / 5e-7 relative of the exact value).

LLVM lowers `llvm.exp.v8f32` to eight scalar `expf` calls; inside vector loops these keep the lanes in registers.
Scalar code keeps calling libm.
"""
from __future__ import annotations

from llvmlite import ir

from .types import F32, I32

SCALEF_LANES = 16  # float32 lanes of one AVX-512 register
SCALEF_WIDTHS = (16, 32, 64)  # vectors of 1, 2 or 4 registers (concatenated back pairwise)
EXP_CLAMP_HI, EXP_CLAMP_LO = 89.0, -104.0  # 2^128 overflows to inf, 2^-150 rounds to 0
LOG2E, LN2_HI, LN2_LO = 1.44269504088896341, 0.693359375, -2.12194440e-4
EXP_POLY = (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1)
ERF_CLAMP = 4.0  # erf(4) rounds to 1.0 in float32
ERF_NUM = (-2.72614225801306e-10, 2.77068142495902e-08, -2.10102402082508e-06, -5.69250639462346e-05,
           -7.34990630326855e-04, -2.95459980854025e-03, -1.60960333262415e-02)  # x * P(x^2) / Q(x^2)
ERF_DEN = (-1.45660718464996e-05, -2.13374055278905e-04, -1.68282697438203e-03, -7.37332916720468e-03,
           -1.42647390514189e-02)
TANH_POLY = (-5.70498872745e-3, 2.06390887954e-2, -5.37397155531e-2, 1.33314422036e-1, -3.33332819422e-1)


def _c(vt: ir.VectorType, value: float) -> ir.Constant:
    return ir.Constant(vt, [ir.Constant(vt.element, value).constant] * vt.count)


def _fma(em, x: ir.Value, y: ir.Value, z: ir.Value) -> ir.Value:
    """x * y + z, one instruction where the CPU has FMA (llvm.fmuladd), else a multiply and an add."""
    return em.builder.call(em.intrinsic("llvm.fmuladd", x.type, [x.type] * 3, [x.type]), [x, y, z])


def _horner(em, x: ir.Value, coeffs: tuple[float, ...]) -> ir.Value:
    acc = _c(x.type, coeffs[0])
    for c in coeffs[1:]:
        acc = _fma(em, acc, x, _c(x.type, c))
    return acc


def _pow2(b: ir.IRBuilder, k: ir.Value, vt: ir.VectorType) -> ir.Value:
    ivt = k.type
    biased = b.add(k, ir.Constant(ivt, [127] * vt.count))
    return b.bitcast(b.shl(biased, ir.Constant(ivt, [23] * vt.count)), vt)


def vector_exp(em, x: ir.Value) -> ir.Value:
    """The input clamped to [EXP_CLAMP_LO, EXP_CLAMP_HI], where the scaling by 2^n overflows to inf or underflows
    to 0 by itself: no range selects. The clamp lets NaN through (max(lo, x) returns x when x is NaN)."""
    b, vt = em.builder, x.type
    lo, hi = _c(vt, EXP_CLAMP_LO), _c(vt, EXP_CLAMP_HI)
    xc = b.select(b.fcmp_ordered(">", lo, x), lo, x)  # one max and one min instruction each
    xc = b.select(b.fcmp_ordered("<", hi, xc), hi, xc)
    n = em.unary_intrinsic("roundeven", b.fmul(xc, _c(vt, LOG2E)))
    r = _fma(em, n, _c(vt, -LN2_LO), _fma(em, n, _c(vt, -LN2_HI), xc))
    p = _fma(em, _horner(em, r, EXP_POLY), b.fmul(r, r), r)
    p = b.fadd(p, _c(vt, 1.0))
    if em.avx512 and vt.element == F32 and vt.count in SCALEF_WIDTHS:
        return _scalef(em, p, n)  # NaN in, NaN out: no select
    ivt = ir.VectorType(I32, vt.count)
    ni = b.fptosi(n, ivt)  # poison for NaN lanes, which the last select replaces
    # 2^n as 2^(n>>1) * 2^(n - n>>1): both halves stay normal floats from the overflow to the denormal limit.
    half = b.ashr(ni, ir.Constant(ivt, [1] * vt.count))
    out = b.fmul(b.fmul(p, _pow2(b, half, vt)), _pow2(b, b.sub(ni, half), vt))
    return b.select(b.fcmp_unordered("uno", x, x), x, out)


def _scalef(em, p: ir.Value, n: ir.Value) -> ir.Value:
    """p * 2^n in one AVX-512 instruction per 16 lanes (vscalefps rounds once, into the denormals too), instead
    of nine integer and float instructions."""
    b, vt = em.builder, p.type
    v16 = ir.VectorType(F32, SCALEF_LANES)
    fn = em.intrinsic("llvm.x86.avx512.mask.scalef.ps.512", v16, [v16, v16, v16, ir.IntType(16), I32], [])
    parts = []
    for k in range(0, vt.count, SCALEF_LANES):
        pick = _lanes(range(k, k + SCALEF_LANES))
        pk, nk = (v if vt.count == SCALEF_LANES else b.shuffle_vector(v, v, pick) for v in (p, n))
        parts.append(b.call(fn, [pk, nk, _c(v16, 0.0), ir.Constant(ir.IntType(16), -1), ir.Constant(I32, 4)]))
    while len(parts) > 1:  # concatenate pairwise back to the full width
        pairs = []
        for a, c in zip(parts[0::2], parts[1::2]):
            pairs.append(b.shuffle_vector(a, c, _lanes(range(2 * a.type.count))))
        parts = pairs
    return parts[0]


def _lanes(indices: range) -> ir.Constant:
    return ir.Constant(ir.VectorType(I32, len(indices)), list(indices))


def vector_tanh(em, x: ir.Value) -> ir.Value:
    b, vt = em.builder, x.type
    ax = em.unary_intrinsic("fabs", x)
    z = b.fmul(x, x)
    near = b.fadd(x, b.fmul(b.fmul(x, z), _horner(em, z, TANH_POLY)))
    e = vector_exp(em, b.fmul(ax, _c(vt, 2.0)))
    far = b.fsub(_c(vt, 1.0), b.fdiv(_c(vt, 2.0), b.fadd(e, _c(vt, 1.0))))
    far = b.select(b.fcmp_ordered("<", x, _c(vt, 0.0)), b.fneg(far), far)
    out = b.select(b.fcmp_ordered("<", ax, _c(vt, 0.625)), near, far)
    return b.select(b.fcmp_unordered("uno", x, x), x, out)


def vector_erf(em, x: ir.Value) -> ir.Value:
    """NaN passes through the clamp (both compares are ordered), infinities clamp to +-1."""
    b, vt = em.builder, x.type
    xc = b.select(b.fcmp_ordered(">", x, _c(vt, ERF_CLAMP)), _c(vt, ERF_CLAMP),
                  b.select(b.fcmp_ordered("<", x, _c(vt, -ERF_CLAMP)), _c(vt, -ERF_CLAMP), x))
    z = b.fmul(xc, xc)
    return b.fdiv(b.fmul(xc, _horner(em, z, ERF_NUM)), _horner(em, z, ERF_DEN))


VECTOR_MATH = {"exp": vector_exp, "tanh": vector_tanh, "erf": vector_erf}


def fast_path(name: str, v: ir.Value) -> bool:
    return name in VECTOR_MATH and isinstance(v.type, ir.VectorType) and v.type.element == F32
