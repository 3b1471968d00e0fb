"""End-to-end numerics of every operator ember exposes, checked against numpy references.

Many ops share one multi-output kernel so the suite stays fast: each build costs a compile, a call costs nothing.
Array lengths are odd on purpose, so vectorized loops also run their guarded tails.
"""
from __future__ import annotations

import functools
import math
import os
import subprocess
import sys

import ember
import numpy as np
import pytest

FLOATS = ["float32", "float64"]
INTS = ["int8", "int16", "int32", "int64", "uint8"]
ALL = ["float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "bool"]
N = 37


def _tol(dtype: str) -> dict:
    return {"float32": {"rtol": 2e-5, "atol": 1e-6}, "float64": {"rtol": 1e-12, "atol": 1e-13}}[dtype]


# ---- float intrinsics ------------------------------------------------------------------------------------------------

def _np_erf(x: np.ndarray) -> np.ndarray:
    return np.vectorize(math.erf, otypes=[np.float64])(x)


def _halves() -> np.ndarray:
    return np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 3.5, -3.5, 0.0, -0.0, 0.49999997, -1.2, 1.7, 2.2])


# name -> (numpy reference on float64, input domain (lo, hi), extra special values)
INTRINSICS: dict[str, tuple] = {
    "exp": (np.exp, (-10, 10), [0.0]),
    "exp2": (np.exp2, (-10, 10), [0.0, 3.0]),
    "log": (np.log, (0.01, 100), [1.0]),
    "log2": (np.log2, (0.01, 100), [1.0, 8.0]),
    "log1p": (np.log1p, (-0.9, 10), [1e-7, -1e-7, 0.0]),
    "expm1": (np.expm1, (-5, 5), [1e-7, -1e-7, 0.0]),
    "sqrt": (np.sqrt, (0, 100), [0.0, 4.0]),
    "rsqrt": (lambda x: 1 / np.sqrt(x), (0.01, 100), [4.0]),
    "sin": (np.sin, (-3, 3), [0.0]),
    "cos": (np.cos, (-3, 3), [0.0]),
    "tan": (np.tan, (-1.4, 1.4), [0.0]),
    "tanh": (np.tanh, (-5, 5), [0.0, 20.0, -20.0]),
    "sinh": (np.sinh, (-5, 5), [0.0]),
    "cosh": (np.cosh, (-5, 5), [0.0]),
    "asin": (np.arcsin, (-0.99, 0.99), [0.0, 1.0, -1.0]),
    "acos": (np.arccos, (-0.99, 0.99), [0.0, 1.0, -1.0]),
    "atan": (np.arctan, (-10, 10), [0.0]),
    "asinh": (np.arcsinh, (-10, 10), [0.0]),
    "acosh": (np.arccosh, (1, 10), [1.0]),
    "atanh": (np.arctanh, (-0.99, 0.99), [0.0]),
    "erf": (_np_erf, (-3, 3), [0.0]),
    "sigmoid": (lambda x: 1 / (1 + np.exp(-x)), (-20, 20), [0.0]),
    "floor": (np.floor, (-5, 5), list(_halves())),
    "ceil": (np.ceil, (-5, 5), list(_halves())),
    "round": (np.round, (-5, 5), list(_halves())),  # numpy rounds half to even, as ember documents
    "trunc": (np.trunc, (-5, 5), list(_halves())),
    "abs": (np.abs, (-5, 5), [0.0, -0.0]),
    "sign": (np.sign, (-5, 5), [0.0, -0.0]),
}
PREDICATES = {"isnan": np.isnan, "isinf": np.isinf}


def _domain_inputs(dtype: str, seed: int = 0) -> np.ndarray:
    """One row per intrinsic: its special values followed by random values from its domain."""
    rng = np.random.default_rng(seed)
    rows = []
    for _, (lo, hi), special in INTRINSICS.values():
        row = np.concatenate([np.array(special, dtype=np.float64), rng.uniform(lo, hi, N)])[:N]
        rows.append(row)
    return np.stack(rows).astype(dtype)


@functools.cache
def _intrinsics_kernel(dtype: str):
    """One kernel with an output per intrinsic; row k of X is the input of intrinsic k."""
    names = list(INTRINSICS)
    n = ember.var("n")
    X = ember.placeholder((len(names), n), dtype, "X")
    P = ember.placeholder((n,), dtype, "P")
    outs = ember.compute((n,), lambda i: tuple(getattr(ember, nm)(X[k, i]) for k, nm in enumerate(names))
                         + (ember.isnan(P[i]), ember.isinf(P[i])), name="intrinsics")
    return ember.build(list(outs), [X, P, *outs], name=f"intrinsics_{dtype}")


@pytest.fixture(scope="module", params=FLOATS)
def intrinsic_results(request):
    dtype = request.param
    x = _domain_inputs(dtype)
    p = np.array([np.nan, np.inf, -np.inf, 0.0, 1.0, -1.0, 1e30] * 6, dtype=dtype)[:N]
    outs = _intrinsics_kernel(dtype)(x, p)
    return dtype, x, p, outs


@pytest.mark.parametrize("name", list(INTRINSICS))
def test_float_intrinsic(intrinsic_results, name):
    dtype, x, _, outs = intrinsic_results
    k = list(INTRINSICS).index(name)
    ref_fn = INTRINSICS[name][0]
    got = outs[k]
    assert got.dtype == np.dtype(dtype)
    with np.errstate(all="ignore"):
        ref = ref_fn(x[k].astype(np.float64)).astype(dtype)
    if name in ("floor", "ceil", "round", "trunc", "abs", "sign"):
        np.testing.assert_array_equal(got, ref, err_msg=f"{name} on {x[k]}")
    else:
        np.testing.assert_allclose(got, ref, **_tol(dtype), err_msg=name)


@pytest.mark.parametrize("name", list(PREDICATES))
def test_float_predicates(intrinsic_results, name):
    _dtype, _, p, outs = intrinsic_results
    got = outs[len(INTRINSICS) + list(PREDICATES).index(name)]
    assert got.dtype == np.bool_
    np.testing.assert_array_equal(got, PREDICATES[name](p))
    assert set(got.view(np.uint8).tolist()) <= {0, 1}


def test_intrinsics_on_ints_compute_in_float32():
    A = ember.placeholder((7,), "int32", "A")
    E, S, Q, NAN, INF, AB, SG = ember.compute(
        (7,), lambda i: (ember.exp(A[i]), ember.sin(A[i]), ember.sqrt(A[i]), ember.isnan(A[i]), ember.isinf(A[i]),
                         ember.abs(A[i]), ember.sign(A[i])), name="int_intrinsics")
    f = ember.build([E, S, Q, NAN, INF, AB, SG], name="int_intrinsics")
    a = np.array([0, 1, 2, 3, 4, 9, 16], dtype=np.int32)
    e, s, q, isn, isi, ab, sg = f(a)
    assert e.dtype == s.dtype == q.dtype == np.float32
    np.testing.assert_allclose(e, np.exp(a.astype(np.float32)), rtol=2e-6)
    np.testing.assert_allclose(s, np.sin(a.astype(np.float32)), rtol=2e-6, atol=1e-7)
    np.testing.assert_allclose(q, np.sqrt(a.astype(np.float32)), rtol=2e-6)
    assert not isn.any() and not isi.any()
    assert ab.dtype == np.int32 and sg.dtype == np.int32
    b = np.array([-5, -1, 0, 1, 7, -2147483647, 3], dtype=np.int32)
    _, _, _, _, _, ab, sg = f(b)
    np.testing.assert_array_equal(ab, np.abs(b))
    np.testing.assert_array_equal(sg, np.sign(b))


# ---- binary operators on integers -------------------------------------------------------------------------------------

INT_OPS = ("add", "sub", "mul", "floordiv", "mod", "truncdiv", "truncmod", "min", "max", "and", "or", "xor", "shl",
           "shr", "pow")


def _int_exprs(a, b, p, q):
    return (a + b, a - b, a * b, a // b, a % b, ember.truncdiv(a, b), ember.truncmod(a, b), ember.minimum(a, b),
            ember.maximum(a, b), a & b, a | b, a ^ b, a << q, a >> q, ember.pow(p, q))


def _int_refs(a, b, p, q, dtype):
    """numpy's integer semantics; division by zero gives 0, shifts past the width saturate (like numpy)."""
    with np.errstate(all="ignore"):
        wide_a, wide_b = a.astype(object), b.astype(object)
        trunc_q = np.array([0 if y == 0 else abs(x) // abs(y) * (1 if (x >= 0) == (y >= 0) else -1)
                            for x, y in zip(wide_a, wide_b)], dtype=object)
        trunc_r = np.array([0 if y == 0 else x - y * t for x, y, t in zip(wide_a, wide_b, trunc_q)], dtype=object)
        return (a + b, a - b, a * b, np.floor_divide(a, b), np.remainder(a, b),
                trunc_q.astype(np.int64).astype(dtype), trunc_r.astype(np.int64).astype(dtype), np.minimum(a, b),
                np.maximum(a, b), a & b, a | b, a ^ b, np.left_shift(a, q), np.right_shift(a, q),
                np.power(p, q))


def _int_operands(dtype: str):
    info = np.iinfo(dtype)
    small = [-7, -3, -1, 0, 1, 2, 3, 7, 5, -5, 13, -13, 100, -100, 6, -6]
    vals_a = [v for v in small + [info.max, info.min + 1, info.max - 1, 42] if info.min <= v <= info.max]
    vals_b = [-2, 3, 0, -7, 2, -1, 5, 0, 1, 7, -3, 4, 9, -9, 6, 0, 2, 0, -4, 11]
    vals_b = [v for v in vals_b if info.min <= v <= info.max] or [1]
    a = np.resize(np.array(vals_a, dtype=dtype), N)
    b = np.resize(np.array(vals_b, dtype=dtype), N)
    # exponents and bases small enough that pow cannot overflow even int8; shifts cover 0..width+1
    bits = np.dtype(dtype).itemsize * 8
    q = np.resize(np.array([0, 1, 2, 3, bits - 1, bits, bits + 1, 5], dtype=dtype), N)
    p = np.resize(np.array([2, -2, 3, -3, 1, -1, 0, 2] if info.min < 0 else [2, 3, 1, 0], dtype=dtype), N)
    q_pow = np.minimum(q, 3).astype(dtype)
    return a, b, p, q, q_pow


@functools.cache
def _int_kernel(dtype: str):
    n = ember.var("n")
    A, B, P, Q, QP = (ember.placeholder((n,), dtype, nm) for nm in ("A", "B", "P", "Q", "QP"))

    def body(i):
        exprs = list(_int_exprs(A[i], B[i], P[i], Q[i]))
        exprs[-1] = ember.pow(P[i], QP[i])
        return tuple(exprs)
    outs = ember.compute((n,), body, name="intops")
    return ember.build(list(outs), [A, B, P, Q, QP, *outs], name=f"intops_{dtype}")


@pytest.fixture(scope="module", params=INTS)
def int_results(request):
    dtype = request.param
    a, b, p, q, qp = _int_operands(dtype)
    got = _int_kernel(dtype)(a, b, p, q, qp)
    ref = list(_int_refs(a, b, p, q, dtype))
    with np.errstate(all="ignore"):
        ref[-1] = np.power(p, qp)
    return dtype, (a, b, p, q, qp), got, ref


@pytest.mark.parametrize("op", INT_OPS)
def test_int_binary(int_results, op):
    dtype, operands, got, ref = int_results
    k = INT_OPS.index(op)
    assert got[k].dtype == np.dtype(dtype), op
    np.testing.assert_array_equal(got[k], np.asarray(ref[k]).astype(dtype),
                                  err_msg=f"{op} on {dtype}: operands {operands}")


def test_int_division_by_zero_is_zero():
    A = ember.placeholder((4,), "int32", "A")
    B = ember.placeholder((4,), "int32", "B")
    outs = ember.compute((4,), lambda i: (A[i] // B[i], A[i] % B[i], ember.truncdiv(A[i], B[i]),
                                          ember.truncmod(A[i], B[i])), name="divzero")
    f = ember.build(list(outs), name="divzero")
    for out in f(np.array([5, -5, 0, 2147483647], np.int32), np.zeros(4, np.int32)):
        np.testing.assert_array_equal(out, np.zeros(4, np.int32))


_OVERFLOW_SCRIPT = """
import numpy as np, ember
A = ember.placeholder((3,), "int32", "A")
B = ember.placeholder((3,), "int32", "B")
outs = ember.compute((3,), lambda i: (A[i] // B[i], A[i] % B[i], ember.truncdiv(A[i], B[i]),
                                      ember.truncmod(A[i], B[i])), name="ovf")
f = ember.build(list(outs), name="ovf")
a = np.array([-2**31, 7, -7], np.int32)
b = np.array([-1, -1, 2], np.int32)
print([o.tolist() for o in f(a, b)])
"""


def test_int_min_divided_by_minus_one_does_not_crash(tmp_path):
    env = {**os.environ, "EMBER_CACHE_DIR": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", _OVERFLOW_SCRIPT], capture_output=True, text=True, env=env,
                          timeout=120, check=False)
    assert proc.returncode == 0, f"child died with {proc.returncode}: {proc.stderr[-2000:]}"
    assert proc.stdout.strip() == str([[-2**31, -7, -4], [0, 0, 1], [-2**31, -7, -3], [0, 0, -1]])


def test_int_true_division_gives_float32():
    A = ember.placeholder((5,), "int32", "A")
    B = ember.placeholder((5,), "int32", "B")
    C = ember.compute((5,), lambda i: A[i] / B[i], name="C")
    assert C.dtype == ember.float32
    a = np.array([1, -7, 9, 0, 10], np.int32)
    b = np.array([2, 2, 3, 5, -4], np.int32)
    np.testing.assert_allclose(ember.build(C)(a, b), (a / b).astype(np.float32))


# ---- binary operators on floats ---------------------------------------------------------------------------------------

FLOAT_OPS = ("add", "sub", "mul", "div", "floordiv", "mod", "truncdiv", "truncmod", "pow", "min", "max")


@functools.cache
def _float_binary_kernel(dtype: str):
    n = ember.var("n")
    A = ember.placeholder((n,), dtype, "A")
    B = ember.placeholder((n,), dtype, "B")
    outs = ember.compute((n,), lambda i: (A[i] + B[i], A[i] - B[i], A[i] * B[i], A[i] / B[i], A[i] // B[i],
                                          A[i] % B[i], ember.truncdiv(A[i], B[i]), ember.truncmod(A[i], B[i]),
                                          ember.pow(ember.abs(A[i]), B[i]), ember.minimum(A[i], B[i]),
                                          ember.maximum(A[i], B[i])), name="fops")
    return ember.build(list(outs), [A, B, *outs], name=f"fops_{dtype}")


@pytest.mark.parametrize("dtype", FLOATS)
def test_float_binary(dtype):
    a = np.resize(np.array([7.5, -7.5, 3.0, -3.0, 0.25, 10.0, -1.0, 2.0, 0.0], dtype), N)
    b = np.resize(np.array([2.0, 2.0, -2.0, -2.0, 0.5, 3.0, 4.0, -0.5, 1.5, 0.75], dtype), N)
    got = _float_binary_kernel(dtype)(a, b)
    with np.errstate(all="ignore"):
        refs = (a + b, a - b, a * b, a / b, np.floor_divide(a, b), np.remainder(a, b), np.trunc(a / b),
                np.fmod(a, b), np.power(np.abs(a), b), np.minimum(a, b), np.maximum(a, b))
    for op, g, r in zip(FLOAT_OPS, got, refs):
        assert g.dtype == np.dtype(dtype), op
        np.testing.assert_allclose(g, r.astype(dtype), **_tol(dtype), err_msg=op)


@pytest.mark.parametrize("dtype", FLOATS)
def test_float_min_max_propagate_nan(dtype):
    a = np.array([np.nan, 1.0, np.nan, -np.inf, 2.0], dtype)
    b = np.array([1.0, np.nan, np.nan, 0.0, -0.5], dtype)
    got = _float_binary_kernel(dtype)(a, b)
    np.testing.assert_array_equal(got[FLOAT_OPS.index("min")], np.minimum(a, b))
    np.testing.assert_array_equal(got[FLOAT_OPS.index("max")], np.maximum(a, b))


def test_mixed_dtype_promotion_follows_numpy():
    A = ember.placeholder((5,), "int8", "A")
    B = ember.placeholder((5,), "float32", "B")
    I = ember.placeholder((5,), "int32", "I")
    U = ember.placeholder((5,), "uint8", "U")
    outs = ember.compute((5,), lambda i: (A[i] + B[i], A[i] * I[i], U[i] + A[i], A[i] + 1, B[i] * 2, U[i] + 1.5),
                         name="promote")
    f = ember.build(list(outs), name="promote")
    a = np.array([-3, 1, 127, -128, 0], np.int8)
    b = np.array([0.5, -1.0, 2.0, 1.0, 3.0], np.float32)
    i = np.array([100000, -2, 3, 1, 7], np.int32)
    u = np.array([255, 0, 1, 128, 7], np.uint8)
    got = f(a, b, i, u)
    refs = (a + b, a * i, u.astype(np.int16) + a, (a + np.int8(1)), b * np.float32(2), u + np.float32(1.5))
    for g, r in zip(got, refs):
        assert g.dtype == r.dtype, (g.dtype, r.dtype)
        np.testing.assert_array_equal(g, r)


# ---- constant folding ------------------------------------------------------------------------------------------------

def _c(value, dtype):
    return ember.const(value, dtype)


def _fold_case(name, fn, dtype, ref, xfail=None):
    marks = [pytest.mark.xfail(strict=True, reason=xfail)] if xfail else []
    return pytest.param(fn, dtype, ref, id=name, marks=marks)


with np.errstate(all="ignore"):
    _FOLD_CASES = [
        _fold_case("int_floordiv", lambda: _c(-7, "int32") // _c(2, "int32"), "int32", np.int32(-4)),
        _fold_case("int_mod", lambda: _c(-7, "int32") % _c(2, "int32"), "int32", np.int32(1)),
        _fold_case("int_mod_neg_divisor", lambda: _c(7, "int32") % _c(-2, "int32"), "int32", np.int32(-1)),
        _fold_case("int_truncdiv", lambda: ember.truncdiv(_c(-7, "int32"), _c(2, "int32")), "int32", np.int32(-3)),
        _fold_case("int_truncmod", lambda: ember.truncmod(_c(-7, "int32"), _c(2, "int32")), "int32", np.int32(-1)),
        _fold_case("int_div_zero", lambda: _c(5, "int32") // _c(0, "int32"), "int32", np.int32(0)),
        _fold_case("int_mod_zero", lambda: _c(-5, "int32") % _c(0, "int32"), "int32", np.int32(0)),
        _fold_case("int_shl_past_width", lambda: _c(-1, "int32") << _c(40, "int32"), "int32", np.int32(0)),
        _fold_case("int_shr_past_width", lambda: _c(-8, "int32") >> _c(40, "int32"), "int32", np.int32(-1)),
        _fold_case("int8_wrap", lambda: _c(100, "int8") + _c(100, "int8"), "int8", np.int8(-56)),
        _fold_case("uint8_wrap", lambda: _c(0, "uint8") - _c(1, "uint8"), "uint8", np.uint8(255)),
        _fold_case("int_pow", lambda: ember.pow(_c(-3, "int32"), _c(3, "int32")), "int32", np.int32(-27)),
        _fold_case("float_floordiv", lambda: _c(-7.5, "float32") // _c(2.0, "float32"), "float32",
                   np.float32(-4.0)),
        _fold_case("float_mod", lambda: _c(-7.5, "float32") % _c(2.0, "float32"), "float32", np.float32(0.5)),
        _fold_case("float_round_half_even", lambda: ember.round(_c(2.5, "float32")), "float32", np.float32(2.0)),
        _fold_case("float_truncdiv", lambda: ember.truncdiv(_c(7.5, "float32"), _c(2.0, "float32")), "float32",
                   np.float32(3.0)),
        _fold_case("float_truncmod", lambda: ember.truncmod(_c(-7.5, "float32"), _c(2.0, "float32")), "float32",
                   np.float32(-1.5)),
        _fold_case("maximum_nan", lambda: ember.maximum(_c(1.0, "float32"), _c(np.nan, "float32")), "float32",
                   np.float32(np.nan)),
        _fold_case("minimum_nan", lambda: ember.minimum(_c(1.0, "float32"), _c(np.nan, "float32")), "float32",
                   np.float32(np.nan)),
        _fold_case("div_by_negative_zero", lambda: _c(1.0, "float32") / _c(-0.0, "float32"), "float32",
                   np.float32(-np.inf)),
        _fold_case("float_floordiv_zero", lambda: _c(1.0, "float32") // _c(0.0, "float32"), "float32",
                   np.floor_divide(np.float32(1), np.float32(0))),
        _fold_case("pow_zero_negative", lambda: ember.pow(_c(0.0, "float32"), _c(-1.0, "float32")), "float32",
                   np.float32(np.inf)),
        _fold_case("pow_overflow", lambda: ember.pow(_c(10.0, "float64"), _c(400.0, "float64")), "float64",
                   np.float64(np.inf)),
        _fold_case("float32_rounds_each_step", lambda: (_c(1e8, "float32") + _c(1.0, "float32")) - _c(1e8, "float32"),
                   "float32", (np.float32(1e8) + np.float32(1)) - np.float32(1e8)),
    ]


@pytest.mark.parametrize("fn,dtype,ref", _FOLD_CASES)
def test_constant_folding_matches_numpy(fn, dtype, ref):
    C = ember.compute((1,), lambda i: fn(), name="folded")
    assert C.dtype.numpy == np.dtype(dtype)
    got = ember.build(C, name="folded")()
    np.testing.assert_array_equal(got, np.array([ref], dtype))


# ---- comparisons, select, bool ----------------------------------------------------------------------------------------

CMPS = ("lt", "le", "gt", "ge", "eq", "ne")


@pytest.mark.parametrize("dtype", ["float32", "float64", "int8", "int32", "int64", "uint8", "float16"])
def test_comparisons_and_where(dtype):
    n = ember.var("n")
    A = ember.placeholder((n,), dtype, "A")
    B = ember.placeholder((n,), dtype, "B")
    outs = ember.compute((n,), lambda i: (A[i] < B[i], A[i] <= B[i], A[i] > B[i], A[i] >= B[i], A[i] == B[i],
                                          A[i] != B[i], ember.where(A[i] > B[i], A[i], B[i]),
                                          ember.select(A[i] == B[i], 1, A[i])), name="cmp")
    f = ember.build(list(outs), name=f"cmp_{dtype}")
    if np.dtype(dtype).kind == "f":
        a = np.array([1, 2, 3, np.nan, -0.0, np.inf, 5, np.nan, -4], dtype)
        b = np.array([2, 2, 1, 1, 0.0, np.inf, np.nan, np.nan, -5], dtype)
    else:
        lo = 0 if dtype == "uint8" else -4
        a = np.array([1, 2, 3, lo, 0, 100, 5, 7, lo], dtype)
        b = np.array([2, 2, 1, 1, 0, 100, 6, 7, 2], dtype)
    got = f(a, b)
    refs = (a < b, a <= b, a > b, a >= b, a == b, a != b, np.where(a > b, a, b), np.where(a == b, np.array(1, dtype), a))
    for name, g, r in zip(CMPS + ("where", "select"), got, refs):
        assert g.dtype == r.dtype, name
        np.testing.assert_array_equal(g, r, err_msg=name)
    for g in got[:6]:
        assert set(g.view(np.uint8).tolist()) <= {0, 1}


def test_bool_logic_and_storage():
    A = ember.placeholder((8,), "bool", "A")
    B = ember.placeholder((8,), "bool", "B")
    X = ember.placeholder((8,), "int32", "X")
    outs = ember.compute((8,), lambda i: (ember.logical_and(A[i], B[i]), ember.logical_or(A[i], B[i]),
                                          ember.logical_not(A[i]), A[i] & B[i], A[i] | B[i], A[i] ^ B[i], ~A[i],
                                          ember.logical_and(X[i], A[i]), ember.cast("bool", X[i]),
                                          ember.where(A[i], X[i], -X[i])), name="logic")
    f = ember.build(list(outs), name="logic")
    a = np.array([0, 0, 1, 1, 0, 1, 1, 0], bool)
    b = np.array([0, 1, 0, 1, 1, 1, 0, 0], bool)
    x = np.array([0, 5, -1, 0, 2, 0, 3, 9], np.int32)
    got = f(a, b, x)
    refs = (a & b, a | b, ~a, a & b, a | b, a ^ b, ~a, (x != 0) & a, x != 0, np.where(a, x, -x))
    for k, (g, r) in enumerate(zip(got, refs)):
        assert g.dtype == r.dtype, k
        np.testing.assert_array_equal(g, r, err_msg=str(k))
        if g.dtype == np.bool_:
            assert set(g.view(np.uint8).tolist()) <= {0, 1}, k


def test_bool_input_nonzero_bytes_read_as_true():
    A = ember.placeholder((4,), "bool", "A")
    C = ember.compute((4,), lambda i: ember.cast("int32", A[i]), name="C")
    raw = np.array([0, 1, 2, 255], np.uint8).view(np.bool_)
    np.testing.assert_array_equal(ember.build(C)(raw), [0, 1, 1, 1])


# ---- casts ------------------------------------------------------------------------------------------------------------

def _cast_values(src: str) -> tuple[np.ndarray, np.ndarray]:
    """(values every dtype can hold, negative values every signed dtype can hold) in `src`."""
    kind = np.dtype(src).kind
    if kind == "b":
        return np.resize(np.array([0, 1, 1, 0], bool), 9), np.resize(np.array([1, 0], bool), 9)
    if kind == "f":
        pos = np.array([0, 1, 2, 3.75, 42, 100, 127, 0.5, 99.25], src)
        neg = np.array([-1, -2, -3.75, -42, -100, -128, -0.5, 0, 5], src)
        return pos, neg
    pos = np.array([0, 1, 2, 3, 42, 100, 127, 64, 99], src)
    neg = np.array([-1, -2, -3, -42, -100, -128, 0, 5, 7], src) if kind == "i" else pos
    return pos, neg


@pytest.mark.parametrize("src", ALL)
def test_casts_between_all_dtypes(src):
    pos, neg = _cast_values(src)
    A = ember.placeholder((9,), src, "A")
    B = ember.placeholder((9,), src, "B")
    signed = [d for d in ALL if np.dtype(d).kind in "if"]
    outs = ember.compute((9,), lambda i: tuple(ember.cast(d, A[i]) for d in ALL)
                         + tuple(ember.cast(d, B[i]) for d in signed), name="casts")
    got = ember.build(list(outs), name=f"casts_{src}")(pos, neg)
    refs = [pos.astype(d) for d in ALL] + [neg.astype(d) for d in signed]
    for dst, g, r in zip(ALL + signed, got, refs):
        assert g.dtype == r.dtype, dst
        np.testing.assert_array_equal(g, r, err_msg=f"{src} -> {dst}")


def test_cast_through_float16_rounds():
    A = ember.placeholder((5,), "float32", "A")
    C = ember.compute((5,), lambda i: ember.cast("float32", ember.cast("float16", A[i])), name="C")
    a = np.array([0.1, 1 / 3, 65504.0, 1e-5, 2049.0], np.float32)
    np.testing.assert_array_equal(ember.build(C)(a), a.astype(np.float16).astype(np.float32))


# ---- float16 ----------------------------------------------------------------------------------------------------------

def test_float16_rounds_after_every_operation_like_numpy():
    """float16 computes in float32 registers but rounds each result to float16, so it matches numpy exactly."""
    n = ember.var("n")
    A, B, C = (ember.placeholder((n,), "float16", nm) for nm in "ABC")
    D, E, F, G = ember.compute((n,), lambda i: (A[i] * B[i] + C[i],
                                                ember.cast("float16", ember.cast("float32", A[i]) * B[i]) + C[i],
                                                ember.exp(A[i]),
                                                A[i] / B[i]), name="half")
    f = ember.build([D, E, F, G], name="half")
    rng = np.random.default_rng(1)
    a, b, c = (rng.uniform(-4, 4, N).astype(np.float16) for _ in range(3))
    d, e, g_, h = f(a, b, c)
    a32, b32, c32 = a.astype(np.float32), b.astype(np.float32), c.astype(np.float32)
    assert d.dtype == e.dtype == g_.dtype == h.dtype == np.float16
    np.testing.assert_array_equal(d, a * b + c)
    np.testing.assert_array_equal(e, ((a32 * b32).astype(np.float16).astype(np.float32) + c32).astype(np.float16))
    np.testing.assert_allclose(g_.astype(np.float32), np.exp(a32).astype(np.float16).astype(np.float32), rtol=1e-3)
    np.testing.assert_array_equal(h, (a32 / b32).astype(np.float16))


def _half_square_sum(inline: bool):
    A = ember.placeholder((N,), "float16", "A")
    M = ember.compute((N,), lambda i: A[i] * A[i], name="M")
    k = ember.reduce_axis(N, "k")
    R = ember.compute((1,), lambda _: ember.sum(ember.cast("float32", M[k]), k), name="R")
    sch = ember.create_schedule(R)
    if inline:
        sch[M].compute_inline()
    a = (np.arange(N, dtype=np.float32) * 1.37).astype(np.float16)
    squares = (a.astype(np.float32) * a.astype(np.float32)).astype(np.float16).astype(np.float32)
    return ember.build(sch, [A, R], name=f"halfsq_{inline}")(a), squares.sum(dtype=np.float32)


def test_float16_intermediate_stage_rounds_on_store():
    got, ref = _half_square_sum(inline=False)
    np.testing.assert_allclose(got, [ref], rtol=1e-6)


def test_float16_inlined_stage_rounds_like_stored_stage():
    got, ref = _half_square_sum(inline=True)
    np.testing.assert_allclose(got, [ref], rtol=1e-6)


def test_float16_constant_is_rounded_to_float16():
    A = ember.placeholder((3,), "float16", "A")
    C = ember.compute((3,), lambda i: A[i] * 0.1, name="C")
    a = np.array([3, 7, 11], np.float16)
    np.testing.assert_array_equal(ember.build(C)(a), a * np.float16(0.1))


# ---- reductions -------------------------------------------------------------------------------------------------------

@functools.cache
def _reduce_kernel(dtype: str):
    n, m = ember.var("n"), ember.var("m")
    A = ember.placeholder((n, m), dtype, "A")
    M = ember.placeholder((n, m), "bool", "M")
    outs = []
    for comb in ("sum", "prod", "max", "min"):
        k = ember.reduce_axis(m, "k")
        outs.append(ember.compute((n,), lambda i, k=k, comb=comb: getattr(ember, comb)(A[i, k], k, where=M[i, k]),
                                  name=f"r_{comb}"))
        k2 = ember.reduce_axis(m, "k")
        outs.append(ember.compute((n,), lambda i, k=k2, comb=comb: getattr(ember, comb)(A[i, k], k),
                                  name=f"full_{comb}"))
    return ember.build(outs, [A, M, *outs], name=f"reduce_{dtype}")


@pytest.mark.parametrize("dtype", ["float32", "float64", "int32", "uint8"])
def test_reductions_with_where(dtype):
    rng = np.random.default_rng(2)
    shape = (5, 13)
    if np.dtype(dtype).kind == "f":
        a = rng.uniform(0.5, 1.5, shape).astype(dtype)
    else:
        a = rng.integers(0, 3 if dtype in ("int8", "uint8") else 5, shape).astype(dtype)
    mask = rng.random(shape) < 0.5
    mask[3] = False  # an all-false row gives each reduction's identity
    got = _reduce_kernel(dtype)(a, mask)
    with np.errstate(all="ignore"):
        if np.dtype(dtype).kind == "f":
            lo, hi = -np.inf, np.inf
        else:
            lo, hi = np.iinfo(dtype).min, np.iinfo(dtype).max
        refs = [np.sum(a, 1, where=mask, dtype=dtype), np.sum(a, 1, dtype=dtype),
                np.prod(a, 1, where=mask, dtype=dtype), np.prod(a, 1, dtype=dtype),
                np.max(a, 1, where=mask, initial=lo), np.max(a, 1),
                np.min(a, 1, where=mask, initial=hi), np.min(a, 1)]
    names = ["sum/where", "sum", "prod/where", "prod", "max/where", "max", "min/where", "min"]
    for name, g, r in zip(names, got, refs):
        assert g.dtype == np.dtype(dtype), name
        if np.dtype(dtype).kind == "f":
            np.testing.assert_allclose(g, r.astype(dtype), rtol=1e-5, err_msg=name)
        else:
            np.testing.assert_array_equal(g, r.astype(dtype), err_msg=name)


def test_max_min_reductions_propagate_nan():
    a = np.array([[1.0, np.nan, 3.0], [np.nan, np.nan, np.nan], [-1.0, -2.0, 5.0], [2.0, 1.0, np.nan]], np.float32)
    got = _reduce_kernel("float32")(a, np.ones(a.shape, bool))
    np.testing.assert_array_equal(got[5], np.max(a, 1))
    np.testing.assert_array_equal(got[7], np.min(a, 1))
    np.testing.assert_array_equal(got[4], np.max(a, 1))


def test_reduction_over_zero_length_axis_gives_identity():
    got = _reduce_kernel("float32")(np.zeros((3, 0), np.float32), np.zeros((3, 0), bool))
    for g, ident in zip(got, [0, 0, 1, 1, -np.inf, -np.inf, np.inf, np.inf]):
        np.testing.assert_array_equal(g, np.full(3, ident, np.float32))


def test_argmax_argmin_ties_take_first_index():
    n, m = ember.var("n"), ember.var("m")
    A = ember.placeholder((n, m), "float32", "A")
    k1, k2 = ember.reduce_axis(m, "k"), ember.reduce_axis(m, "k")
    IMAX, VMAX = ember.compute((n,), lambda i: ember.argmax(A[i, k1], k1), name="amax")
    IMIN, VMIN = ember.compute((n,), lambda i: ember.argmin(A[i, k2], k2), name="amin")
    f = ember.build([IMAX, VMAX, IMIN, VMIN], name="argmaxmin")
    a = np.array([[1, 3, 3, 0, 3], [2, 2, 2, 2, 2], [5, 1, 4, 1, 5], [-1, -7, 0, -7, 0]], np.float32)
    imax, vmax, imin, vmin = f(a)
    assert imax.dtype == np.int64 and vmax.dtype == np.float32
    np.testing.assert_array_equal(imax, np.argmax(a, 1))
    np.testing.assert_array_equal(vmax, np.max(a, 1))
    np.testing.assert_array_equal(imin, np.argmin(a, 1))
    np.testing.assert_array_equal(vmin, np.min(a, 1))
    rng = np.random.default_rng(3)
    b = rng.integers(0, 4, (9, 31)).astype(np.float32)
    imax, vmax, imin, vmin = f(b)
    np.testing.assert_array_equal(imax, np.argmax(b, 1))
    np.testing.assert_array_equal(imin, np.argmin(b, 1))


def test_argmax_with_where():
    A = ember.placeholder((3, 6), "int32", "A")
    k = ember.reduce_axis(6, "k")
    I, V = ember.compute((3,), lambda i: ember.argmax(A[i, k], k, where=k >= 2), name="am")
    a = np.array([[9, 1, 2, 2, 0, 1], [0, 9, 5, 7, 7, 1], [3, 3, 3, 3, 3, 3]], np.int32)
    idx, val = ember.build([I, V], name="am")(a)
    np.testing.assert_array_equal(idx, np.argmax(a[:, 2:], 1) + 2)
    np.testing.assert_array_equal(val, a[:, 2:].max(1))


# ---- symbolic sizes, multi-output, in place ---------------------------------------------------------------------------

def test_symbolic_sizes_serve_every_size():
    n, m = ember.var("n"), ember.var("m")
    A = ember.placeholder((n, m), "float32", "A")
    B = ember.placeholder((m,), "float32", "B")
    C = ember.compute((n, m), lambda i, j: A[i, j] * B[j] + 1, name="C")
    f = ember.build(C)
    rng = np.random.default_rng(4)
    for shape in [(0, 5), (3, 0), (1, 1), (7, 9), (2, 64), (5, 67), (33, 3)]:
        a = rng.random(shape, np.float32)
        b = rng.random(shape[1], np.float32)
        out = f(a, b)
        assert out.shape == shape
        np.testing.assert_allclose(out, a * b + 1, rtol=1e-6)


def test_symbolic_size_expressions_in_shapes():
    n = ember.var("n")
    A = ember.placeholder((n,), "int64", "A")
    C = ember.compute((n - 1,), lambda i: A[i + 1] - A[i], name="diff")
    D = ember.compute((2 * n,), lambda i: A[i // 2], name="rep")
    f = ember.build([C, D], name="symexpr")
    a = np.array([1, 4, 9, 16, 25, 36, 49], np.int64)
    c, d = f(a)
    np.testing.assert_array_equal(c, np.diff(a))
    np.testing.assert_array_equal(d, np.repeat(a, 2))


def test_multi_output_kernel_and_outputs_in_place():
    n = ember.var("n")
    A = ember.placeholder((n,), "float32", "A")
    S, P = ember.compute((n,), lambda i: (A[i] + 1, A[i] * 2), name="sp")
    Q = ember.compute((n,), lambda i: S[i] - P[i], name="Q")
    f = ember.build([S, P, Q], name="multi")
    a = np.arange(11, dtype=np.float32)
    s, p, q = f(a)
    np.testing.assert_array_equal(s, a + 1)
    np.testing.assert_array_equal(p, a * 2)
    np.testing.assert_array_equal(q, (a + 1) - a * 2)
    outs = [np.full(11, -9.0, np.float32) for _ in range(3)]
    assert f(a, *outs) is None
    for o, r in zip(outs, (s, p, q)):
        np.testing.assert_array_equal(o, r)


def test_input_aliasing_output_elementwise():
    n = ember.var("n")
    A = ember.placeholder((n,), "float32", "A")
    C = ember.compute((n,), lambda i: A[i] * 3 + 1, name="C")
    f = ember.build(C)
    a = np.arange(29, dtype=np.float32)
    expected = a * 3 + 1
    f(a, a)
    np.testing.assert_array_equal(a, expected)


def test_input_overlapping_output_view():
    """A stencil whose input overlaps its output, shifted: the answer must be as if the input were a copy."""
    n = ember.var("n")
    A = ember.placeholder((n + 1,), "float32", "A")
    C = ember.compute((n,), lambda i: A[i] + A[i + 1], name="C")
    f = ember.build(C)
    buf = np.arange(21, dtype=np.float32)
    expected = buf[:-1] + buf[1:]
    f(buf, buf[:20])
    np.testing.assert_array_equal(buf[:20], expected)
    buf = np.arange(21, dtype=np.float32)
    expected = buf[:-1] + buf[1:]
    f(buf, buf[1:])
    np.testing.assert_array_equal(buf[1:], expected)


def test_non_contiguous_input_is_accepted():
    A = ember.placeholder((4, 5), "float64", "A")
    C = ember.compute((4, 5), lambda i, j: A[i, j] - 1, name="C")
    big = np.arange(80, dtype=np.float64).reshape(8, 10)
    view = big[::2, ::2]
    np.testing.assert_array_equal(ember.build(C)(view), view - 1)


def test_python_lists_are_accepted_as_inputs():
    A = ember.placeholder((3,), "int64", "A")
    C = ember.compute((3,), lambda i: A[i] * A[i], name="C")
    np.testing.assert_array_equal(ember.build(C)([1, -2, 3]), [1, 4, 9])


def test_multi_stage_with_reduction_and_broadcast():
    """softmax: reductions feeding element-wise stages, with the default schedule's inlining."""
    n, m = ember.var("n"), ember.var("m")
    X = ember.placeholder((n, m), "float32", "X")
    k1, k2 = ember.reduce_axis(m, "k"), ember.reduce_axis(m, "k")
    MX = ember.compute((n,), lambda i: ember.max(X[i, k1], k1), name="mx")
    E = ember.compute((n, m), lambda i, j: ember.exp(X[i, j] - MX[i]), name="e")
    S = ember.compute((n,), lambda i: ember.sum(E[i, k2], k2), name="s")
    Y = ember.compute((n, m), lambda i, j: E[i, j] / S[i], name="y")
    f = ember.build(Y, name="softmax")
    x = np.random.default_rng(5).normal(size=(6, 19)).astype(np.float32)
    e = np.exp(x - x.max(1, keepdims=True))
    np.testing.assert_allclose(f(x), e / e.sum(1, keepdims=True), rtol=1e-5, atol=1e-7)


# ---- split tails on intermediate stages -------------------------------------------------------------------------------

def _padded_intermediate(shape):
    A = ember.placeholder(shape, "float32", "A")
    T = ember.compute(shape, lambda *i: A[i] * 2, name="T")
    O = ember.compute(shape, lambda *i: T[i] + 1, name="O")
    s = ember.create_schedule(O)
    s[T].split(s[T].axes[-1], 3, tail="pad")
    a = np.arange(int(np.prod(shape)), dtype=np.float32).reshape(shape)
    return ember.build(s, [A, O], name="padded")(a), a * 2 + 1


def test_pad_tail_on_1d_intermediate():
    got, ref = _padded_intermediate((19,))
    np.testing.assert_array_equal(got, ref)


def test_pad_tail_on_2d_intermediate():
    got, ref = _padded_intermediate((2, 5))
    np.testing.assert_array_equal(got, ref)
