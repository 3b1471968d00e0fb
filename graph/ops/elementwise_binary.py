"""Elementwise ops, part 2: binary arithmetic, bitwise, logical and comparison ops with numpy multidirectional
broadcasting (and the pre-opset-7 `broadcast`/`axis` form), variadic Max/Min/Sum/Mean, and Where."""
from __future__ import annotations

import functools
from typing import Callable, Iterable, Sequence

import numpy as np

from ... import ir as ember
from ...ir.expr import Expr
from ...ir.tensor import Tensor
from ..registry import Folder, OpContext, register
from .common import broadcast_shapes, dim_value, read_broadcast, same_dim
from .elementwise import ANY, BOOL, FLOATS, INTS, NUMBERS, check_dtype, check_same_dtype

BinaryFn = Callable[[OpContext, Expr, Expr], Expr]


def broadcast_map(ctx: OpContext, inputs: Sequence[Tensor], fn: Callable[..., Expr]) -> Tensor:
    """`fn` applied to the inputs' elements over their numpy broadcast shape."""
    shape = broadcast_shapes(ctx, *(t.shape for t in inputs))
    return ember.compute(shape, lambda *i: fn(*(read_broadcast(t, i) for t in inputs)), name=ctx.name())


def _legacy_map(ctx: OpContext, a: Tensor, b: Tensor, fn: Callable[[Expr, Expr], Expr]) -> Tensor:
    """Before opset 7, shapes had to match unless `broadcast`=1, which lets B broadcast to A with B's dims
    aligned at A's dim `axis` (by default, A's trailing dims)."""
    if not ctx.attr("broadcast", 0):
        if a.ndim != b.ndim or not all(same_dim(x, y) for x, y in zip(a.shape, b.shape)):
            raise ctx.error(f"shapes {tuple(map(str, a.shape))} and {tuple(map(str, b.shape))} differ and "
                            f"broadcast=0 (before opset 7 broadcasting must be requested with broadcast=1)")
        return ember.compute(a.shape, lambda *i: fn(a[i], b[i]), name=ctx.name())
    axis = ctx.attr("axis", a.ndim - b.ndim)
    axis = axis + a.ndim if axis < 0 else axis
    if axis < 0 or axis + b.ndim > a.ndim or not all(
            dim_value(d) == 1 or same_dim(d, a.shape[axis + k]) for k, d in enumerate(b.shape)):
        raise ctx.error(f"B of shape {tuple(map(str, b.shape))} cannot broadcast to A of shape "
                        f"{tuple(map(str, a.shape))} at axis {ctx.attr('axis', None)}")

    def body(*i: Expr) -> Expr:
        bi = tuple(ember.const(0) if dim_value(d) == 1 else i[axis + k] for k, d in enumerate(b.shape))
        return fn(a[i], b[bi])
    return ember.compute(a.shape, body, name=ctx.name())


def binary(op: str, allowed: Iterable[str], fn: BinaryFn, since: int = 1, fold: "Folder | None" = None,
           same_type: bool = True) -> None:
    """Register a two-input broadcasting op computing `fn(ctx, a, b)` per element."""
    allowed = frozenset(allowed)

    def lower(ctx: OpContext, a: Tensor, b: Tensor) -> Tensor:
        check_dtype(ctx, a, allowed, "A")
        if same_type:
            check_same_dtype(ctx, (a, b))
        if ctx.opset < 7:
            return _legacy_map(ctx, a, b, lambda x, y: fn(ctx, x, y))
        return broadcast_map(ctx, (a, b), lambda x, y: fn(ctx, x, y))
    lower.__name__ = lower.__qualname__ = op.lower()
    lower.__doc__ = f"ONNX {op}, with broadcasting."
    register(op, since=since, kind="elementwise", fold=fold)(lower)


def _quiet(fn: Callable[..., np.ndarray]) -> Folder:
    """A numpy folder with overflow/division warnings silenced (ember wraps integers and follows IEEE floats)."""
    def fold(ctx: OpContext, *arrays: np.ndarray) -> np.ndarray:
        with np.errstate(all="ignore"):
            return fn(*arrays)
    return fold


def trunc_divide(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Integer division rounding toward zero, x/0 = 0 and x/-1 = -x (wrapping), exactly as ember's truncdiv."""
    a, b = np.broadcast_arrays(a, b)
    signed = np.issubdtype(b.dtype, np.signedinteger)
    minus_one = (b == -1) if signed else np.zeros(b.shape, bool)
    safe = np.where((b == 0) | minus_one, np.ones_like(b), b)
    q = a // safe
    q = q + ((a % safe != 0) & ((a < 0) != (safe < 0))).astype(q.dtype)
    q = np.where(minus_one, -a, q)
    return np.where(b == 0, np.zeros_like(q), q).astype(a.dtype)


def _div(ctx: OpContext, x: Expr, y: Expr) -> Expr:
    return x / y if x.dtype.is_float else ember.truncdiv(x, y)


def _fold_div(ctx: OpContext, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if np.issubdtype(a.dtype, np.integer):
        return trunc_divide(a, b)
    with np.errstate(all="ignore"):
        return np.divide(a, b)


def _fmod(ctx: OpContext) -> bool:
    fmod = ctx.attr("fmod", 0)
    if fmod not in (0, 1):
        raise ctx.error(f"fmod must be 0 or 1, got {fmod}")
    return bool(fmod)


def _mod(ctx: OpContext, x: Expr, y: Expr) -> Expr:
    """fmod=1: the remainder takes the dividend's sign (C fmod); fmod=0: the divisor's (numpy.mod, also for
    floats: a zero remainder is a zero of the divisor's sign)."""
    if _fmod(ctx):
        return ember.truncmod(x, y)
    if not x.dtype.is_float:
        return x % y
    r = ember.truncmod(x, y)
    signed_zero = ember.where(y < 0, ember.const(-0.0, x.dtype), ember.const(0.0, x.dtype))
    return ember.where(r == 0, signed_zero, ember.where((r < 0) != (y < 0), r + y, r))


def _fold_mod(ctx: OpContext, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(all="ignore"):
        return np.fmod(a, b) if _fmod(ctx) else np.mod(a, b)


def _pow(ctx: OpContext, x: Expr, y: Expr) -> Expr:
    """Pow allows a different exponent type; the result has the base's type, computed as numpy.power would
    (in float64 for an integer base with a float exponent) and then cast back."""
    if x.dtype.is_int and y.dtype.is_int:
        return ember.pow(x, ember.cast(x.dtype, y))
    if x.dtype.is_float and y.dtype.is_float:
        wide = x.dtype if x.dtype.bits >= y.dtype.bits else y.dtype
    else:
        wide = x.dtype if x.dtype.is_float else ember.float64
    return ember.cast(x.dtype, ember.pow(ember.cast(wide, x), ember.cast(wide, y)))


def _shift(ctx: OpContext, x: Expr, y: Expr) -> Expr:
    """Shifts by a negative amount or by the bit width or more give 0 (or -1 for a negative value shifted
    right), as the ONNX reference does."""
    direction = ctx.attr("direction")
    if direction == "LEFT":
        return x << y
    if direction == "RIGHT":
        return x >> y
    raise ctx.error(f"direction must be 'LEFT' or 'RIGHT', got {direction!r}")


binary("Add", NUMBERS, lambda ctx, x, y: x + y, fold=_quiet(np.add))
binary("Sub", NUMBERS, lambda ctx, x, y: x - y, fold=_quiet(np.subtract))
binary("Mul", NUMBERS, lambda ctx, x, y: x * y, fold=_quiet(np.multiply))
binary("Div", NUMBERS, _div, fold=_fold_div)
binary("Mod", NUMBERS, _mod, since=10, fold=_fold_mod)
binary("Pow", NUMBERS, _pow, same_type=False)
binary("BitShift", INTS, _shift, since=11)
binary("BitwiseAnd", INTS, lambda ctx, x, y: x & y, since=18)
binary("BitwiseOr", INTS, lambda ctx, x, y: x | y, since=18)
binary("BitwiseXor", INTS, lambda ctx, x, y: x ^ y, since=18)
binary("And", BOOL, lambda ctx, x, y: x & y)
binary("Or", BOOL, lambda ctx, x, y: x | y)
binary("Xor", BOOL, lambda ctx, x, y: x ^ y)
binary("Equal", ANY, lambda ctx, x, y: x == y, fold=_quiet(np.equal))
binary("Less", NUMBERS, lambda ctx, x, y: x < y, fold=_quiet(np.less))
binary("LessOrEqual", NUMBERS, lambda ctx, x, y: x <= y, since=12, fold=_quiet(np.less_equal))
binary("Greater", NUMBERS, lambda ctx, x, y: x > y, fold=_quiet(np.greater))
binary("GreaterOrEqual", NUMBERS, lambda ctx, x, y: x >= y, since=12, fold=_quiet(np.greater_equal))


# ---- variadic ops ----------------------------------------------------------------------------------------------------

def variadic(op: str, allowed: Iterable[str], combine: Callable[[Expr, Expr], Expr],
             finish: "Callable[[Expr, int], Expr] | None" = None, fold: "Folder | None" = None) -> None:
    """Register an N-input op folding `combine` over its broadcast inputs (then `finish(total, n)`)."""
    allowed = frozenset(allowed)

    def lower(ctx: OpContext, *inputs: "Tensor | None") -> Tensor:
        present = [t for t in inputs if t is not None]
        if not present:
            raise ctx.error("needs at least one input")
        for t in present:
            check_dtype(ctx, t, allowed)
        check_same_dtype(ctx, present)

        def body(*values: Expr) -> Expr:
            total = functools.reduce(combine, values)
            return finish(total, len(values)) if finish else total
        return broadcast_map(ctx, present, body)
    lower.__name__ = lower.__qualname__ = op.lower()
    lower.__doc__ = f"ONNX {op} over any number of inputs, with broadcasting."
    register(op, since=1, kind="elementwise", fold=fold)(lower)


def _fold_reduce(ufunc: np.ufunc) -> Folder:
    def fold(ctx: OpContext, *arrays: "np.ndarray | None") -> np.ndarray:
        with np.errstate(all="ignore"):
            return functools.reduce(ufunc, [a for a in arrays if a is not None])
    return fold


variadic("Max", NUMBERS, ember.maximum, fold=_fold_reduce(np.maximum))
variadic("Min", NUMBERS, ember.minimum, fold=_fold_reduce(np.minimum))
variadic("Sum", FLOATS, lambda x, y: x + y)
variadic("Mean", FLOATS, lambda x, y: x + y, finish=lambda total, n: total / float(n))


def _fold_where(ctx: OpContext, cond: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.where(cond, x, y)


@register("Where", since=9, kind="elementwise", fold=_fold_where)
def where(ctx: OpContext, cond: Tensor, x: Tensor, y: Tensor) -> Tensor:
    """Where: x where cond else y, all three broadcast together."""
    check_dtype(ctx, cond, BOOL, "condition")
    check_same_dtype(ctx, (x, y))
    return broadcast_map(ctx, (cond, x, y), ember.where)
