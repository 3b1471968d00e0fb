"""Softmax, LogSoftmax and Hardmax. Before opset 13 the input is coerced to 2-D at `axis` (normalization runs
over all trailing dims together, default axis 1); from 13 over the single `axis` (default -1)."""
from __future__ import annotations

from collections.abc import Sequence

from ... import ir as _ir
from ...ir.expr import Expr, cast, const
from ...ir.tensor import MATERIALIZE, Tensor, compute, reduce_axis
from ..registry import OpContext, register
from .common import normalize_axis
from .reduce import reduce_stage, reduced_index


def softmax_axes(ctx: OpContext, x: Tensor) -> list[int]:
    if not x.dtype.is_float:
        raise ctx.error(f"{ctx.node.op} needs a float input, got {x.dtype}")
    if ctx.opset >= 13:
        return [normalize_axis(ctx, int(ctx.attr("axis", -1)), x.ndim)]
    return list(range(normalize_axis(ctx, int(ctx.attr("axis", 1)), x.ndim), x.ndim))


def _softmax(ctx: OpContext, x: Tensor) -> Tensor:
    """exp(x - max) / sum(exp(x - max)), or (x - max) - log(sum(exp(x - max))) for LogSoftmax: the max shift
    keeps exp from overflowing. Stages: max, (Softmax: the shifted exps, stored once,) their sum, normalize."""
    axes = softmax_axes(ctx, x)
    m = reduce_stage(x, axes, _ir.max, lambda i: x[tuple(i)], ctx.name("_max"), True)

    def shifted(i: Sequence[Expr]) -> Expr:
        return x[tuple(i)] - m[reduced_index(i, axes, True)]

    # float16 sums accumulate in float32 and round once, as numpy's half-precision reductions do.
    acc = "float32" if x.dtype.name == "float16" else x.dtype
    if ctx.node.op == "Softmax":  # the exponentials are stored once, for the sum and the division
        e = compute(x.shape, lambda *i: _ir.exp(shifted(i)), name=ctx.name("_exp"), tag=MATERIALIZE)
        s = reduce_stage(x, axes, _ir.sum, lambda i: cast(acc, e[tuple(i)]), ctx.name("_sum"), True)
        if x.dtype.name == "float16":  # divided in float16, as the reference does, to the same rounding
            return compute(x.shape, lambda *i: e[i] / cast(x.dtype, s[reduced_index(i, axes, True)]),
                           name=ctx.name())
        # times the row's reciprocal (one division per row, hoisted out of the row loop), within 2 ulp of e / s
        return compute(x.shape, lambda *i: e[i] * (const(1.0, acc) / s[reduced_index(i, axes, True)]),
                       name=ctx.name())
    s = reduce_stage(x, axes, _ir.sum, lambda i: cast(acc, _ir.exp(shifted(i))), ctx.name("_sum"), True)

    def total(i: Sequence[Expr]) -> Expr:
        return cast(x.dtype, s[reduced_index(i, axes, True)])

    if ctx.node.op == "LogSoftmax":
        return compute(x.shape, lambda *i: shifted(i) - _ir.log(total(i)), name=ctx.name())
    return compute(x.shape, lambda *i: _ir.exp(shifted(i)) / total(i), name=ctx.name())


def _hardmax(ctx: OpContext, x: Tensor) -> Tensor:
    """1 at the first maximum over the normalized dims, 0 elsewhere. The dims are scanned as one flattened axis
    (an argmax reduces over one axis), unravelled back to indices."""
    axes = softmax_axes(ctx, x)
    extent: Expr = const(1)
    for a in axes:
        extent = extent * x.shape[a]
    k = reduce_axis(extent, "k")

    def unravel(flat: Expr, outer: Sequence[Expr]) -> tuple[Expr, ...]:
        index = list(outer)
        for a in reversed(axes):
            index[a] = flat % x.shape[a] if a != axes[0] else flat
            flat = flat // x.shape[a]
        return tuple(index)

    def ravel(index: Sequence[Expr]) -> Expr:
        flat: Expr = const(0)
        for a in axes:
            flat = flat * x.shape[a] + index[a]
        return flat

    shape = [1 if a in axes else d for a, d in enumerate(x.shape)]
    idx, _ = compute(shape, lambda *i: _ir.argmax(x[unravel(k.var, i)], k), name=ctx.name("_arg"))
    return compute(x.shape, lambda *i: cast(x.dtype, ravel(i) == idx[reduced_index(i, axes, True)]),
                   name=ctx.name())


for _op in ("Softmax", "LogSoftmax"):
    register(_op, since=1, kind="reduction")(_softmax)
    register(_op, since=13, kind="reduction")(_softmax)
register("Hardmax", since=1, kind="reduction")(_hardmax)
register("Hardmax", since=13, kind="reduction")(_hardmax)
