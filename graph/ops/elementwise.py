"""Elementwise ops, part 1: unary math and activations (one output element per input element, same shape).

Binary and variadic ops live in `elementwise_binary.py`, casts and pass-through ops in `elementwise_cast.py`;
both are imported at the bottom of this module so that importing the family registers all of it."""
from __future__ import annotations

import math
from typing import Callable, Iterable

import numpy as np

from ... import ir as ember
from ...ir.dtype import DType
from ...ir.expr import Expr
from ...ir.tensor import Tensor
from ..registry import Folder, OpContext, register
from .common import broadcast_shapes, dim_value, read_broadcast, same_dim

FLOATS = frozenset({"float16", "float32", "float64"})
SIGNED_INTS = frozenset({"int8", "int16", "int32", "int64"})
INTS = SIGNED_INTS | {"uint8"}
NUMBERS = FLOATS | INTS
SIGNED = FLOATS | SIGNED_INTS
BOOL = frozenset({"bool"})
ANY = NUMBERS | BOOL


def check_dtype(ctx: OpContext, t: Tensor, allowed: Iterable[str], what: str = "input") -> None:
    """ONNX type constraints, checked so a wrong model fails here with the node's name instead of in codegen."""
    allowed = frozenset(allowed)
    if t.dtype.name not in allowed:
        raise ctx.error(f"{what} has type {t.dtype}, but {ctx.node.op} accepts only "
                        f"{', '.join(sorted(allowed))}")


def check_same_dtype(ctx: OpContext, tensors: Iterable["Tensor | None"]) -> DType:
    """ONNX binary ops take one type T for all operands (no implicit promotion)."""
    present = [t for t in tensors if t is not None]
    dtypes = {t.dtype for t in present}
    if len(dtypes) > 1:
        raise ctx.error(f"inputs must share one type, got {', '.join(str(t.dtype) for t in present)}")
    return present[0].dtype


def map_unary(ctx: OpContext, x: Tensor, fn: Callable[[Expr], Expr]) -> Tensor:
    return ember.compute(x.shape, lambda *i: fn(x[i]), name=ctx.name())


def unary(op: str, allowed: Iterable[str], fn: Callable[[OpContext, Expr], Expr], since: int = 1,
          fold: "Folder | None" = None) -> None:
    """Register a one-input elementwise op computing `fn(ctx, element)`."""
    def lower(ctx: OpContext, x: Tensor) -> Tensor:
        check_dtype(ctx, x, allowed)
        return map_unary(ctx, x, lambda v: fn(ctx, v))
    lower.__name__ = lower.__qualname__ = op.lower()
    lower.__doc__ = f"ONNX {op}, elementwise."
    register(op, since=since, kind="elementwise", fold=fold)(lower)


def _zero(v: Expr) -> Expr:
    return ember.const(0, v.dtype)


# ---- unary math ------------------------------------------------------------------------------------------------------

for _op, _fn in (("Exp", ember.exp), ("Log", ember.log), ("Sqrt", ember.sqrt), ("Floor", ember.floor),
                 ("Ceil", ember.ceil), ("Round", ember.round), ("Sin", ember.sin), ("Cos", ember.cos),
                 ("Tan", ember.tan), ("Asin", ember.asin), ("Acos", ember.acos), ("Atan", ember.atan),
                 ("Sinh", ember.sinh), ("Cosh", ember.cosh), ("Asinh", ember.asinh), ("Acosh", ember.acosh),
                 ("Atanh", ember.atanh), ("Erf", ember.erf), ("Tanh", ember.tanh), ("Sigmoid", ember.sigmoid)):
    unary(_op, FLOATS, lambda ctx, v, f=_fn: f(v))

unary("Abs", NUMBERS, lambda ctx, v: ember.abs(v), fold=lambda ctx, x: np.abs(x))
unary("Neg", SIGNED, lambda ctx, v: -v, fold=lambda ctx, x: np.negative(x))
unary("Sign", NUMBERS, lambda ctx, v: ember.sign(v))
unary("Reciprocal", FLOATS, lambda ctx, v: 1.0 / v)
unary("Not", BOOL, lambda ctx, v: ember.logical_not(v), fold=lambda ctx, x: np.logical_not(x))
unary("BitwiseNot", INTS, lambda ctx, v: ~v)
unary("IsNaN", FLOATS, lambda ctx, v: ember.isnan(v))


def _isinf(ctx: OpContext, v: Expr) -> Expr:
    """IsInf with `detect_negative`/`detect_positive` selecting which infinities count."""
    neg, pos = ctx.attr("detect_negative", 1), ctx.attr("detect_positive", 1)
    if neg and pos:
        return ember.isinf(v)
    if neg:
        return ember.isinf(v) & (v < 0)
    if pos:
        return ember.isinf(v) & (v > 0)
    return ember.const(False, "bool")


unary("IsInf", FLOATS, _isinf)


# ---- activations -----------------------------------------------------------------------------------------------------

def _leaky_relu(ctx: OpContext, v: Expr) -> Expr:
    return ember.where(v < 0, v * ctx.attr("alpha", 0.01), v)


def _elu(ctx: OpContext, v: Expr) -> Expr:
    return ember.where(v < 0, (ember.exp(v) - 1.0) * ctx.attr("alpha", 1.0), v)


def _selu(ctx: OpContext, v: Expr) -> Expr:
    alpha = ctx.attr("alpha", 1.67326319217681884765625)
    gamma = ctx.attr("gamma", 1.05070102214813232421875)
    return ember.where(v <= 0, (ember.exp(v) * alpha - alpha) * gamma, v * gamma)


def _celu(ctx: OpContext, v: Expr) -> Expr:
    alpha = ctx.attr("alpha", 1.0)
    if alpha == 0:
        raise ctx.error("alpha must be non-zero (Celu divides by it)")
    return ember.maximum(v, _zero(v)) + ember.minimum(_zero(v), (ember.exp(v / alpha) - 1.0) * alpha)


def _hard_sigmoid(ctx: OpContext, v: Expr) -> Expr:
    y = v * ctx.attr("alpha", 0.2) + ctx.attr("beta", 0.5)
    return ember.maximum(_zero(v), ember.minimum(ember.const(1, v.dtype), y))


def _hard_swish(ctx: OpContext, v: Expr) -> Expr:
    gate = ember.maximum(_zero(v), ember.minimum(ember.const(1, v.dtype), v * (1.0 / 6.0) + 0.5))
    return v * gate


def _softplus(v: Expr) -> Expr:
    """log(1 + e^x), written so that large |x| neither overflows nor loses the small term."""
    return ember.maximum(v, _zero(v)) + ember.log1p(ember.exp(-ember.abs(v)))


def _gelu(ctx: OpContext, v: Expr) -> Expr:
    approximate = ctx.attr("approximate", "none")
    if approximate == "none":
        return v * 0.5 * (ember.erf(v * (1.0 / math.sqrt(2.0))) + 1.0)
    if approximate == "tanh":
        inner = (v + v * v * v * 0.044715) * math.sqrt(2.0 / math.pi)
        return v * 0.5 * (ember.tanh(inner) + 1.0)
    raise ctx.error(f"approximate must be 'none' or 'tanh', got {approximate!r}")


def _shrink(ctx: OpContext, v: Expr) -> Expr:
    """Shrink; integer inputs compute in float64 and truncate back, as the reference's numpy promotion does."""
    lambd, bias = ctx.attr("lambd", 0.5), ctx.attr("bias", 0.0)
    f = v if v.dtype.is_float else ember.cast("float64", v)
    return ember.cast(v.dtype, ember.where(f < -lambd, f + bias, ember.where(f > lambd, f - bias, _zero(f))))


unary("Relu", SIGNED, lambda ctx, v: ember.maximum(v, _zero(v)))
unary("LeakyRelu", FLOATS, _leaky_relu)
unary("Elu", FLOATS, _elu)
unary("Selu", FLOATS, _selu)
unary("Celu", FLOATS, _celu)
unary("ThresholdedRelu", FLOATS, lambda ctx, v: ember.where(v > ctx.attr("alpha", 1.0), v, _zero(v)))
unary("HardSigmoid", FLOATS, _hard_sigmoid)
unary("HardSwish", FLOATS, _hard_swish)
unary("Softplus", FLOATS, lambda ctx, v: _softplus(v))
unary("Softsign", FLOATS, lambda ctx, v: v / (ember.abs(v) + 1.0))
unary("Mish", FLOATS, lambda ctx, v: v * ember.tanh(_softplus(v)))
unary("Gelu", FLOATS, _gelu)
unary("Shrink", NUMBERS, _shrink)


@register("PRelu", since=1, kind="elementwise")
def prelu(ctx: OpContext, x: Tensor, slope: Tensor) -> Tensor:
    """PRelu: the slope broadcasts to x (unidirectionally: the output keeps x's shape)."""
    check_dtype(ctx, x, NUMBERS)
    check_same_dtype(ctx, (x, slope))
    shape = broadcast_shapes(ctx, x.shape, slope.shape)
    if len(shape) != x.ndim or not all(same_dim(a, b) for a, b in zip(shape, x.shape)):
        raise ctx.error(f"slope of shape {tuple(map(str, slope.shape))} does not broadcast to x of shape "
                        f"{tuple(map(str, x.shape))}")

    def body(*i: Expr) -> Expr:
        v = x[i]
        return ember.where(v < 0, v * read_broadcast(slope, i), v)
    return ember.compute(x.shape, body, name=ctx.name())


# ---- Clip ------------------------------------------------------------------------------------------------------------

def _limit(ctx: OpContext, t: "Tensor | None", what: str) -> "Expr | None":
    """A Clip bound given as an input (opset 11+): a scalar (or one-element) tensor, or None when omitted."""
    if t is None:
        return None
    if t.ndim > 1 or any(dim_value(d) != 1 for d in t.shape):
        raise ctx.error(f"{what} must be a scalar, got shape {tuple(map(str, t.shape))}")
    return t[(0,) * t.ndim]


@register("Clip", since=1, kind="elementwise")
def clip(ctx: OpContext, x: Tensor, lo: "Tensor | None" = None, hi: "Tensor | None" = None) -> Tensor:
    """Clip: bounds are attributes before opset 11 and optional scalar inputs after; min > max gives max,
    as numpy.clip does."""
    if ctx.opset < 11:
        check_dtype(ctx, x, FLOATS)
        low: "Expr | None" = ember.const(ctx.attr("min", -math.inf), x.dtype)
        high: "Expr | None" = ember.const(ctx.attr("max", math.inf), x.dtype)
    else:
        check_dtype(ctx, x, NUMBERS if ctx.opset >= 12 else FLOATS)
        check_same_dtype(ctx, (x, lo, hi))
        low, high = _limit(ctx, lo, "min"), _limit(ctx, hi, "max")

    def body(*i: Expr) -> Expr:
        v = x[i]
        if low is not None:
            v = ember.maximum(v, low)
        if high is not None:
            v = ember.minimum(v, high)
        return v
    return ember.compute(x.shape, body, name=ctx.name())


from . import elementwise_binary, elementwise_cast  # noqa: E402,F401 - registers the rest of the family
