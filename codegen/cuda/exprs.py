"""Expressions to CUDA C text, with the CPU backend's semantics.

float16 is stored as `__half` and computed in float (rounded wherever the IR casts, as the llvm backend does);
bool is a byte in memory; integer `//` and `%` round toward -inf and give 0 on division by zero; narrow integer
arithmetic wraps to its type; float min/max propagate NaN. The helpers this needs are device functions in the
source's HELPERS block, so the emulator (g++) and nvcc compile the very same text.
"""
from __future__ import annotations

import math
import struct
from typing import Callable

from ...ir.dtype import INDEX, DType, int32
from ...ir.expr import Binary, Call, Cast, Const, Expr, Select, Var
from ...ir.loops import Buffer, Load
from ..llvm.narrow import int_range


class CudaCodegenError(ValueError):
    """The loop IR cannot be rendered as CUDA C (or breaks a rule of GPU execution); the message says why."""


_STORAGE = {"float16": "__half", "float32": "float", "float64": "double", "int8": "signed char", "int16": "short",
            "int32": "int", "int64": "long long", "uint8": "unsigned char", "bool": "bool"}


def storage_type(dt: DType) -> str:
    """The C type of an element in memory."""
    return _STORAGE[dt.name]


def compute_type(dt: DType) -> str:
    """The C type of a value in registers: float16 computes in float."""
    return "float" if dt.name == "float16" else _STORAGE[dt.name]


# Device helpers every generated source carries (templates: instantiated only where used).
HELPERS = r"""
template <typename T> __device__ __forceinline__ T ember_floordiv(T a, T b) {
  if (b == 0) return 0;
  if (b == (T)-1) return (T)(0 - a);
  T q = a / b, r = a % b;
  return (r != 0 && ((r < 0) != (b < 0))) ? (T)(q - 1) : q;
}
template <typename T> __device__ __forceinline__ T ember_mod(T a, T b) {
  if (b == 0 || b == (T)-1) return 0;
  T r = a % b;
  return (r != 0 && ((r < 0) != (b < 0))) ? (T)(r + b) : r;
}
template <typename T> __device__ __forceinline__ T ember_udiv(T a, T b) { return b == 0 ? (T)0 : (T)(a / b); }
template <typename T> __device__ __forceinline__ T ember_umod(T a, T b) { return b == 0 ? (T)0 : (T)(a % b); }
template <typename T> __device__ __forceinline__ T ember_truncdiv(T a, T b) {
  if (b == 0) return 0;
  if (b == (T)-1) return (T)(0 - a);
  return (T)(a / b);
}
template <typename T> __device__ __forceinline__ T ember_truncmod(T a, T b) {
  return (b == 0 || b == (T)-1) ? (T)0 : (T)(a % b);
}
template <typename T> __device__ __forceinline__ T ember_imin(T a, T b) { return a < b ? a : b; }
template <typename T> __device__ __forceinline__ T ember_imax(T a, T b) { return a < b ? b : a; }
template <typename T> __device__ __forceinline__ T ember_fmin(T a, T b) {
  if (a != a || b != b) return a + b;
  if (a == b) return (a == 0 && 1 / a > 0) ? b : a;
  return a < b ? a : b;
}
template <typename T> __device__ __forceinline__ T ember_fmax(T a, T b) {
  if (a != a || b != b) return a + b;
  if (a == b) return (a == 0 && 1 / a < 0) ? b : a;
  return a > b ? a : b;
}
template <typename T> __device__ __forceinline__ T ember_fmod_floor(T a, T b) { return a - b * floor(a / b); }
template <typename T> __device__ __forceinline__ T ember_iabs(T a) { return (T)(a < 0 ? -a : a); }
template <typename T> __device__ __forceinline__ T ember_sign(T a) {
  return a < 0 ? (T)-1 : (a > 0 ? (T)1 : a);
}
template <typename T> __device__ __forceinline__ T ember_shl(T a, long long b, int bits) {
  return (b >= 0 && b < bits) ? (T)(a << b) : (T)0;
}
template <typename T> __device__ __forceinline__ T ember_shr(T a, long long b, int bits, bool is_signed) {
  if (b >= 0 && b < bits) return (T)(a >> b);
  return (is_signed && a < 0) ? (T)-1 : (T)0;
}
__device__ __forceinline__ float ember_round_half(float x) { return __half2float(__float2half(x)); }
__device__ __forceinline__ float ember_log1pf(float x) { float u = 1.0f + x; return u == 1.0f ? x : logf(u) * x / (u - 1.0f); }
__device__ __forceinline__ double ember_log1p(double x) { double u = 1.0 + x; return u == 1.0 ? x : log(u) * x / (u - 1.0); }
__device__ __forceinline__ float ember_expm1f(float x) {
  float u = expf(x);
  if (u == 1.0f) return x;
  float um1 = u - 1.0f;
  return um1 == -1.0f ? -1.0f : (fabsf(x) < 1.0f ? um1 * x / logf(u) : um1);
}
__device__ __forceinline__ double ember_expm1(double x) {
  double u = exp(x);
  if (u == 1.0) return x;
  double um1 = u - 1.0;
  return um1 == -1.0 ? -1.0 : (fabs(x) < 1.0 ? um1 * x / log(u) : um1);
}
"""

# name -> (float form, double form); `{}` is the argument.
_MATH = {
    "exp": ("expf({})", "exp({})"), "log": ("logf({})", "log({})"), "sqrt": ("sqrtf({})", "sqrt({})"),
    "rsqrt": ("(1.0f / sqrtf({}))", "(1.0 / sqrt({}))"), "tanh": ("tanhf({})", "tanh({})"),
    "erf": ("erff({})", "erf({})"), "floor": ("floorf({})", "floor({})"), "ceil": ("ceilf({})", "ceil({})"),
    "round": ("rintf({})", "rint({})"), "trunc": ("truncf({})", "trunc({})"), "sin": ("sinf({})", "sin({})"),
    "cos": ("cosf({})", "cos({})"), "exp2": ("powf(2.0f, {})", "pow(2.0, {})"),
    "log2": ("(logf({}) * 1.4426950408889634f)", "(log({}) * 1.4426950408889634)"),
    "log1p": ("ember_log1pf({})", "ember_log1p({})"), "expm1": ("ember_expm1f({})", "ember_expm1({})"),
    "tan": ("tanf({})", "tan({})"), "sinh": ("sinhf({})", "sinh({})"), "cosh": ("coshf({})", "cosh({})"),
    "asin": ("asinf({})", "asin({})"), "acos": ("acosf({})", "acos({})"), "atan": ("atanf({})", "atan({})"),
    "asinh": ("asinhf({})", "asinh({})"), "acosh": ("acoshf({})", "acosh({})"),
    "atanh": ("atanhf({})", "atanh({})"), "sigmoid": ("(1.0f / (1.0f + expf(-({}))))", "(1.0 / (1.0 + exp(-({}))))"),
}
_C_OPS = {"add": "+", "sub": "-", "mul": "*", "lt": "<", "le": "<=", "gt": ">", "ge": ">=", "eq": "==", "ne": "!="}


def float_literal(value: float, dt: DType) -> str:
    """An exact literal: hexadecimal floats keep every bit; inf and NaN are spelled as constant divisions."""
    single = dt.bits != 64
    suffix = "f" if single else ""
    if math.isnan(value):
        return f"(0.0{suffix} / 0.0{suffix})"
    if math.isinf(value):
        return f"({'-' if value < 0 else ''}1.0{suffix} / 0.0{suffix})"
    if value == 0:
        return f"{'-' if math.copysign(1, value) < 0 else ''}0.0{suffix}"
    if single:
        value = struct.unpack("f", struct.pack("f", value))[0]
    return f"{value.hex()}{suffix}"


def int_literal(value: int, dt: DType) -> str:
    if dt.is_bool:
        return "true" if value else "false"
    if dt.name == "int64":
        return "(-9223372036854775807LL - 1)" if value == -(1 << 63) else f"{value}LL"
    if dt.name == "int32":
        return "(-2147483647 - 1)" if value == -(1 << 31) else str(value)
    return f"(({_STORAGE[dt.name]}){value})"


class ExprPrinter:
    """Renders expressions; `names` maps loop/let/size variables, `buffer_name` gives a buffer's C name.

    Index arithmetic is 64-bit in the IR, and 64-bit integer multiplies and divisions are several instructions
    each on a GPU. With `int_loops` (kernels without symbolic sizes, whose index expressions then all have known
    ranges; mixing widths in symbolic kernels measured more registers and spills in ptxas), `int_vars` holds the
    loop variables declared `int` (ranges from constant extents); an index expression whose every intermediate
    value provably fits int32 over those ranges is printed in `int` arithmetic; any other expression promotes
    those variables to `long long`."""

    def __init__(self, names: dict[Var, str], buffer_name: Callable[[Buffer], str], int_loops: bool = False):
        self.names, self.buffer_name, self.int_loops = names, buffer_name, int_loops
        self.int_vars: dict[Var, tuple[int, int]] = {}
        self.narrow = False

    def __call__(self, e: Expr) -> str:
        return self.expr(e)

    def expr(self, e: Expr) -> str:
        if (not self.narrow and isinstance(e, Binary) and e.a.dtype == INDEX and self.int_vars
                and int_range(e, self.int_vars) is not None):
            self.narrow = True
            try:
                return self._expr(e)
            finally:
                self.narrow = False
        return self._expr(e)

    def loop_type(self, var: Var, extent: Expr) -> str:
        """`int` for a loop variable whose range (from a constant extent) fits int32, else `long long`."""
        hi = int_range(extent, self.int_vars) if self.int_loops and var.dtype == INDEX else None
        if hi is None or hi[1] < 1:
            self.int_vars.pop(var, None)
            return compute_type(var.dtype)
        self.int_vars[var] = (0, hi[1] - 1)
        return "int"

    def _expr(self, e: Expr) -> str:
        if isinstance(e, Const):
            if self.narrow and e.dtype == INDEX:
                return str(e.value)
            return float_literal(e.value, e.dtype) if e.dtype.is_float else int_literal(e.value, e.dtype)
        if isinstance(e, Var):
            if e not in self.names:
                raise CudaCodegenError(f"variable {e.name!r} is used outside the loop or launch that defines it")
            if e in self.int_vars and not self.narrow:
                return f"((long long){self.names[e]})"
            return self.names[e]
        if isinstance(e, Load):
            return self.load(e.buffer, e.index)
        if isinstance(e, Binary):
            return self.binary(e)
        if isinstance(e, Cast):
            # A float16 value loaded from memory is exact: only a computed one needs rounding first.
            return self.cast(self.expr(e.value), e.value.dtype, e.dtype, exact=isinstance(e.value, Load))
        if isinstance(e, Call):
            return self.call(e)
        if isinstance(e, Select):
            return f"({self.expr(e.cond)} ? {self.expr(e.a)} : {self.expr(e.b)})"
        raise CudaCodegenError(f"cannot generate CUDA for {type(e).__name__} `{e}` (was the tensor IR lowered?)")

    def load(self, buf: Buffer, index: Expr) -> str:
        ref = f"{self.buffer_name(buf)}[{self.expr(index)}]"
        return f"__half2float({ref})" if buf.dtype.name == "float16" else ref

    def store_value(self, buf: Buffer, value: Expr) -> str:
        text = self.expr(value)
        return f"__float2half({text})" if buf.dtype.name == "float16" else text

    def binary(self, e: Binary) -> str:
        a, b, dt, op = self.expr(e.a), self.expr(e.b), e.a.dtype, e.op
        if op in ("lt", "le", "gt", "ge", "eq", "ne"):
            return f"({a} {_C_OPS[op]} {b})"
        if dt.is_bool:
            return self._bool_binary(op, a, b)
        if dt.is_float:
            return self._float_binary(op, a, b, dt)
        return self._int_binary(op, a, b, int32 if self.narrow and dt == INDEX else dt)

    @staticmethod
    def _bool_binary(op: str, a: str, b: str) -> str:
        if op in ("and", "mul", "min"):
            return f"({a} && {b})"
        if op in ("or", "add", "max"):
            return f"({a} || {b})"
        if op in ("xor", "ne", "sub"):
            return f"({a} != {b})"
        raise CudaCodegenError(f"operator {op} is not defined on bool")

    @staticmethod
    def _float_binary(op: str, a: str, b: str, dt: DType) -> str:
        t = compute_type(dt)
        f = "f" if t == "float" else ""
        if op in ("add", "sub", "mul"):
            return f"({a} {_C_OPS[op]} {b})"
        if op == "div":
            return f"({a} / {b})"
        if op == "floordiv":
            return f"floor{f}({a} / {b})"
        if op == "mod":
            return f"ember_fmod_floor<{t}>({a}, {b})"
        if op == "truncdiv":
            return f"trunc{f}({a} / {b})"
        if op == "truncmod":
            return f"fmod{f}({a}, {b})"
        if op in ("min", "max"):
            return f"ember_f{op}<{t}>({a}, {b})"
        if op == "pow":
            return f"pow{f}({a}, {b})"
        raise CudaCodegenError(f"operator {op} is not defined on floats")

    @staticmethod
    def _int_binary(op: str, a: str, b: str, dt: DType) -> str:
        t = compute_type(dt)
        if op in ("add", "sub", "mul"):
            out = f"({a} {_C_OPS[op]} {b})"
            return out if dt.bits >= 32 else f"(({t}){out})"
        if op in ("and", "or", "xor"):
            sym = {"and": "&", "or": "|", "xor": "^"}[op]
            return f"(({t})({a} {sym} {b}))"
        if op in ("min", "max"):
            return f"ember_i{op}<{t}>({a}, {b})"
        if op == "shl":
            return f"ember_shl<{t}>({a}, (long long)({b}), {dt.bits})"
        if op == "shr":
            return f"ember_shr<{t}>({a}, (long long)({b}), {dt.bits}, {'true' if dt.is_signed else 'false'})"
        if op == "pow":
            return f"(({t})pow((double)({a}), (double)({b})))"
        if op in ("floordiv", "mod", "truncdiv", "truncmod"):
            if not dt.is_signed:
                fn = "ember_udiv" if op in ("floordiv", "truncdiv") else "ember_umod"
            else:
                fn = f"ember_{op}"
            return f"{fn}<{t}>({a}, {b})"
        raise CudaCodegenError(f"operator {op} is not defined on integers")

    @staticmethod
    def cast(v: str, src: DType, dst: DType, exact: bool = False) -> str:
        if src == dst:
            return v
        if src.name == "float16" and not exact:  # a float16 result (held in float) is rounded before it converts
            v = f"ember_round_half({v})"
        if dst.is_bool:
            return f"({v} != 0)"
        if dst.name == "float16":
            return f"ember_round_half((float)({v}))"
        return f"(({compute_type(dst)})({v}))"

    def call(self, e: Call) -> str:
        name, dt = e.name, e.args[0].dtype
        v = self.expr(e.args[0])
        if name in _MATH:
            single, double = _MATH[name]
            return (double if dt.bits == 64 else single).format(v)
        t = compute_type(dt)
        if name == "neg":
            return f"(-{v})" if dt.is_float or dt.bits >= 32 else f"(({t})(-{v}))"
        if name == "not":
            return f"(!{v})" if dt.is_bool else f"(({t})(~{v}))"
        if name == "abs":
            if dt.is_float:
                return f"fabs{'f' if t == 'float' else ''}({v})"
            if not dt.is_signed or dt.is_bool:
                return v
            return f"ember_iabs<{t}>({v})"
        if name == "sign":
            if dt.is_bool:
                return v
            return f"ember_sign<{t}>({v})"
        if name == "isnan":
            return f"({v} != {v})" if dt.is_float else "false"
        if name == "isinf":
            if not dt.is_float:
                return "false"
            f = "f" if t == "float" else ""
            return f"(fabs{f}({v}) == (1.0{f} / 0.0{f}))"
        raise CudaCodegenError(f"intrinsic {name} is not supported by the cuda backend")
