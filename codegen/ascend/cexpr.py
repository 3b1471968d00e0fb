"""Scalar C++ for loop-IR expressions, as the AI Core's scalar unit runs them (index math, the scalar fallback).

Values follow the LLVM backend's meaning exactly: float16 is held in float and rounded only where the IR says so
(its casts and stores), integer `//` and `%` round toward -inf and give 0 on division by zero.
"""
from __future__ import annotations

import math
from typing import Callable

from ...ir.dtype import DType
from ...ir.expr import Binary, Call, Cast, Const, Expr, Select, Var
from ...ir.loops import Load
from .cmath import MATH_HELPERS, UNARY


class AscendError(ValueError):
    """Something the chosen Ascend SoC cannot do (dtype, API, UB budget): names the kernel, the op and the limit."""


STORAGE = {"float16": "half", "float32": "float", "int8": "int8_t", "int16": "int16_t", "int32": "int32_t",
           "int64": "int64_t", "uint8": "uint8_t", "bool": "uint8_t"}
_COMPUTE = {"float16": "float", "bool": "bool"}


def storage_type(dt: DType, where: str) -> str:
    """The GM element type of a buffer; float64 has no AI Core support at all."""
    if dt.name not in STORAGE:
        raise AscendError(f"{where}: dtype {dt.name} is not supported on Ascend AI Cores "
                          f"(supported: {', '.join(STORAGE)})")
    return STORAGE[dt.name]


def compute_type(dt: DType) -> str:
    return _COMPUTE.get(dt.name, STORAGE.get(dt.name, "double"))


def ident(name: str) -> str:
    """A C identifier for an IR name (tensor and loop names may contain dots)."""
    out = "".join(c if c.isalnum() or c == "_" else "_" for c in name)
    return out if out and not out[0].isdigit() else "_" + out


def literal(value, dt: DType) -> str:
    if dt.is_bool:
        return "true" if value else "false"
    if dt.is_float:
        v = float(value)
        if math.isnan(v):
            return "ember_nan()"
        if math.isinf(v):
            return "ember_inf()" if v > 0 else "(-ember_inf())"
        return f"{v!r}f" if "e" in repr(v) or "." in repr(v) else f"{v!r}.0f"
    if dt.name == "int64":
        return str(int(value)) if -2**31 < int(value) < 2**31 else f"{int(value)}LL"
    return f"(({compute_type(dt)}){int(value)})"


_OPS = {"add": "+", "sub": "-", "mul": "*", "div": "/", "and": "&", "or": "|", "xor": "^", "lt": "<", "le": "<=",
        "gt": ">", "ge": ">=", "eq": "==", "ne": "!="}
# Helpers every kernel source carries (numpy's meanings where C differs; math without a C library).
HELPERS = MATH_HELPERS + """\
__aicore__ inline float ember_rh(float x) { return (float)(half)x; }
template <typename T> __aicore__ inline T ember_floordiv(T a, T b) {
    if (b == 0) return 0;
    if ((T)-1 < (T)0 && b == (T)-1) return (T)(0 - a);
    T q = a / b, r = a % b;
    return (r != 0 && ((r < 0) != (b < 0))) ? q - 1 : q;
}
template <typename T> __aicore__ inline T ember_mod(T a, T b) {
    if (b == 0 || ((T)-1 < (T)0 && b == (T)-1)) return 0;
    T r = a % b;
    return (r != 0 && ((r < 0) != (b < 0))) ? r + b : r;
}
template <typename T> __aicore__ inline T ember_truncdiv(T a, T b) { return b == 0 ? 0 : (((T)-1 < (T)0 && b == (T)-1) ? (T)(0 - a) : a / b); }
template <typename T> __aicore__ inline T ember_truncmod(T a, T b) { return (b == 0 || ((T)-1 < (T)0 && b == (T)-1)) ? 0 : a % b; }
__aicore__ inline float ember_fmin(float a, float b) { return (a != a || b != b) ? a + b : (a < b ? a : b); }
__aicore__ inline float ember_fmax(float a, float b) { return (a != a || b != b) ? a + b : (a > b ? a : b); }
template <typename T> __aicore__ inline T ember_shl(T a, T b) { return (b < 0 || b >= (T)(8 * sizeof(T))) ? 0 : (T)(a << b); }
template <typename T> __aicore__ inline T ember_shr(T a, T b) { return (b < 0 || b >= (T)(8 * sizeof(T))) ? (a < 0 ? (T)-1 : 0) : (T)(a >> b); }
"""


class CPrinter:
    """Prints an expression; `load` renders a Load (GM GetValue, or a tile read) and `var` a variable."""

    def __init__(self, load: Callable[[Load], str], var: Callable[[Var], str] = lambda v: ident(v.name)):
        self.load, self.var = load, var

    def __call__(self, e: Expr) -> str:
        if isinstance(e, Const):
            return literal(e.value, e.dtype)
        if isinstance(e, Var):
            return self.var(e)
        if isinstance(e, Load):
            return self.load(e)
        if isinstance(e, Binary):
            return self.binary(e)
        if isinstance(e, Cast):
            return self.cast(e)
        if isinstance(e, Call):
            return self.call(e)
        if isinstance(e, Select):
            return f"({self(e.cond)} ? {self(e.a)} : {self(e.b)})"
        raise AscendError(f"cannot print {type(e).__name__} `{e}` as AscendC scalar code")

    def binary(self, e: Binary) -> str:
        a, b, dt, op = self(e.a), self(e.b), e.a.dtype, e.op
        if dt.is_float:
            if op in ("min", "max"):
                return f"ember_f{op}({a}, {b})"
            if op == "pow":
                return f"ember_powf({a}, {b})"
            if op in ("floordiv", "mod"):
                q = f"ember_floorf(({a}) / ({b}))"
                return q if op == "floordiv" else f"(({a}) - ({b}) * {q})"
            if op in ("truncdiv", "truncmod"):
                q = f"ember_truncf(({a}) / ({b}))"
                return q if op == "truncdiv" else f"ember_fmodf({a}, {b})"
        else:
            t = compute_type(dt)
            if op in ("min", "max"):
                return f"(({a}) {'<' if op == 'min' else '>'} ({b}) ? ({a}) : ({b}))"
            if op in ("floordiv", "mod", "truncdiv", "truncmod", "shl", "shr"):
                return f"ember_{op}<{t}>({a}, {b})"
            if op == "pow":
                return f"ember_ipow<{t}>({a}, {b})"
            if op in ("add", "sub", "mul", "and", "or", "xor") and not dt.is_bool:
                if dt.name == "int64":
                    return f"({a} {_OPS[op]} {b})"
                return f"(({t})(({a}) {_OPS[op]} ({b})))"
        if op in _OPS:
            return f"(({a}) {_OPS[op]} ({b}))"
        raise AscendError(f"operator {op} on {dt} has no AscendC scalar form")

    def cast(self, e: Cast) -> str:
        v, src, dst = self(e.value), e.value.dtype, e.dtype
        if dst.is_bool:
            return f"(({v}) != 0)"
        if src.is_float and src.bits == 16:
            v = f"ember_rh({v})"
        if dst.is_float:
            return f"ember_rh((float)({v}))" if dst.bits == 16 else f"(({compute_type(dst)})({v}))"
        return f"(({compute_type(dst)})({v}))"

    def call(self, e: Call) -> str:
        v, dt, name = self(e.args[0]), e.args[0].dtype, e.name
        if name in UNARY and (dt.is_float or name != "abs"):
            return f"{UNARY[name]}({v})"
        if name == "rsqrt":
            return f"(1.0f / ember_sqrtf({v}))"
        if name == "sigmoid":
            return f"(1.0f / (1.0f + ember_expf(-({v}))))"
        if name == "neg":
            return f"(-({v}))" if dt.is_float else f"(({compute_type(dt)})(0 - ({v})))"
        if name == "not":
            return f"(!({v}))" if dt.is_bool else f"(({compute_type(dt)})~({v}))"
        if name == "abs":
            return v if not dt.is_signed or dt.is_bool else f"(({v}) < 0 ? ({compute_type(dt)})(0 - ({v})) : ({v}))"
        if name == "sign":
            if dt.is_bool:
                return v
            t = compute_type(dt)
            return f"(({v}) > 0 ? ({t})1 : (({v}) < 0 ? ({t})-1 : ({v})))"
        if name == "isnan":
            return f"(({v}) != ({v}))" if dt.is_float else "false"
        if name == "isinf":
            return f"(ember_fabsf({v}) == ember_inf())" if dt.is_float else "false"
        raise AscendError(f"intrinsic {name} has no AscendC scalar form")


def check_dtypes(e: Expr, where: str) -> None:
    """Refuse float64 (no AI Core unit computes it) anywhere in an expression."""
    from ...ir.expr import walk

    def visit(n: Expr) -> None:
        if n.dtype.name == "float64":
            raise AscendError(f"{where}: float64 is not supported on Ascend AI Cores (in `{n}`); "
                              f"use float32 or float16")
    walk(e, visit)
