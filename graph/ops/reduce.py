"""Reduction ops: the Reduce* family and ArgMax/ArgMin. Softmax-like ops live in `reduce_softmax`, scans, TopK
and Einsum in `reduce_scan`; importing this module registers the whole family.

A reduction must be the whole body of a compute, so each op is a reduce stage (element transform folded into
the reduced expression) followed, where needed, by an element-wise finishing stage (mean's division, L2's sqrt)."""
from __future__ import annotations

import math

from collections.abc import Callable, Sequence

from ... import ir as _ir
from ...ir.dtype import float64, int64
from ...ir.expr import Expr, cast, const
from ...ir.tensor import Tensor, compute, reduce_axis
from ..registry import OpContext, register
from .common import dim_value, normalize_axes, normalize_axis

Index = Sequence[Expr]
Combiner = Callable[..., Expr]


def reduce_stage(x: Tensor, axes: Sequence[int], combiner: Combiner, elem: Callable[[Index], Expr], name: str,
                 keepdims: bool) -> Tensor:
    """`combiner(elem(index), axes)` over `axes` of `x`; `elem` maps a full index of `x` to the reduced value.
    Reduced dims are kept as size 1 or dropped."""
    rset = set(axes)
    shape = [1 if a in rset else d for a, d in enumerate(x.shape) if keepdims or a not in rset]
    trailing = sorted(rset) == list(range(x.ndim - len(rset), x.ndim)) and len(rset) > 1 \
        and all(dim_value(x.shape[a]) is not None for a in rset)
    if trailing:  # one axis over the trailing dims, row-major: a contiguous row for the row-reduction rule
        ext = {a: dim_value(x.shape[a]) for a in rset}
        flat = reduce_axis(math.prod(ext.values()), "r")
        strides = {a: math.prod(ext[b] for b in rset if b > a) for a in rset}
        reduced = {a: (flat.var // strides[a]) % ext[a] if a != min(rset) else flat.var // strides[a]
                   for a in rset}
        raxes = [flat]
    else:
        per_axis = {a: reduce_axis(x.shape[a], f"r{a}") for a in axes}
        reduced = {a: iv.var for a, iv in per_axis.items()}
        raxes = [per_axis[a] for a in axes]

    def body(*i: Expr) -> Expr:
        it = iter(i)
        index: list[Expr] = []
        for a in range(x.ndim):
            if a in rset:
                if keepdims:
                    next(it)
                index.append(reduced[a])
            else:
                index.append(next(it))
        return combiner(elem(index), axis=raxes)

    return compute(shape, body, name=name)


def reduced_index(index: Index, axes: Sequence[int], keepdims: bool) -> tuple[Expr, ...]:
    """The index into a reduce stage's result for the element at `index` of the unreduced tensor."""
    rset = set(axes)
    if keepdims:
        return tuple(const(0) if a in rset else e for a, e in enumerate(index))
    return tuple(e for a, e in enumerate(index) if a not in rset)


def _count(x: Tensor, axes: Sequence[int]) -> Expr:
    n: Expr = const(1, int64)
    for a in axes:
        n = n * x.shape[a]
    return n


# A finishing transform: (reduced value, input, axes) -> result. Float math (log, sqrt) on integer inputs gives
# float32, which is cast back: ONNX keeps the input dtype.
Finish = Callable[[Expr, Tensor, Sequence[int]], Expr]


def _mean(s: Expr, x: Tensor, axes: Sequence[int]) -> Expr:
    n = _count(x, axes)
    if x.dtype.is_float:
        return s / cast(x.dtype, n)
    return cast(x.dtype, _ir.trunc(cast(float64, s) / cast(float64, n)))


# op -> (combiner, element transform, finishing transform or None).
REDUCERS: dict[str, tuple[Combiner, Callable[[Expr], Expr], Finish | None]] = {
    "ReduceSum": (_ir.sum, lambda v: v, None),
    "ReduceSumSquare": (_ir.sum, lambda v: v * v, None),
    "ReduceL1": (_ir.sum, _ir.abs, None),
    "ReduceL2": (_ir.sum, lambda v: v * v, lambda s, x, _: cast(x.dtype, _ir.sqrt(s))),
    "ReduceLogSum": (_ir.sum, lambda v: v, lambda s, x, _: cast(x.dtype, _ir.log(s))),
    "ReduceMean": (_ir.sum, lambda v: v, _mean),
    "ReduceProd": (_ir.prod, lambda v: v, None),
    "ReduceMax": (_ir.max, lambda v: v, None),
    "ReduceMin": (_ir.min, lambda v: v, None),
}
# The opset from which `axes` is an (optional) input instead of an attribute.
AXES_INPUT_SINCE = {name: 13 if name == "ReduceSum" else 18 for name in [*REDUCERS, "ReduceLogSumExp"]}


def reduce_axes(ctx: OpContext, x: Tensor) -> list[int]:
    """The axes to reduce, normalized; [] means none (noop_with_empty_axes with no axes given)."""
    if ctx.opset >= AXES_INPUT_SINCE[ctx.node.op]:
        axes = [int(a) for a in ctx.const(1, "axes").reshape(-1)] if ctx.has_input(1) else []
    else:
        axes = [int(a) for a in ctx.attr("axes", [])]
    if not axes:
        return [] if ctx.attr("noop_with_empty_axes", 0) else list(range(x.ndim))
    return normalize_axes(ctx, axes, x.ndim)


def _check_dtype(ctx: OpContext, x: Tensor) -> None:
    if x.dtype.is_bool and ctx.node.op not in ("ReduceMax", "ReduceMin"):
        raise ctx.error(f"{ctx.node.op} does not take bool input")


def _reduce(ctx: OpContext, x: Tensor, axes_input: Tensor | None = None) -> Tensor:
    """One Reduce* op. Reducing over no axes (noop_with_empty_axes) applies the element-wise parts only, as the
    ONNX reference does (ReduceSumSquare squares, ReduceL1 takes abs)."""
    _check_dtype(ctx, x)
    combiner, elem, finish = REDUCERS[ctx.node.op]
    axes = reduce_axes(ctx, x)
    keepdims = bool(ctx.attr("keepdims", 1))
    if not axes:
        fin = finish or (lambda v, *_: v)
        return compute(x.shape, lambda *i: cast(x.dtype, fin(elem(x[i]), x, [])), name=ctx.name())
    if finish is None:
        return reduce_stage(x, axes, combiner, lambda i: elem(x[tuple(i)]), ctx.name(), keepdims)
    red = reduce_stage(x, axes, combiner, lambda i: elem(x[tuple(i)]), ctx.name("_acc"), keepdims)
    return compute(red.shape, lambda *i: finish(red[i], x, axes), name=ctx.name())


def reduce_log_sum_exp(ctx: OpContext, x: Tensor, axes_input: Tensor | None = None) -> Tensor:
    """log(sum(exp(x))) = m + log(sum(exp(x - m))) with m the max, so large inputs do not overflow. An infinite
    or NaN max shifts by 0 instead (the result is then ±inf or NaN as the plain formula gives)."""
    _check_dtype(ctx, x)
    axes = reduce_axes(ctx, x)
    keepdims = bool(ctx.attr("keepdims", 1))
    if not axes:
        return compute(x.shape, lambda *i: x[i], name=ctx.name())
    m = reduce_stage(x, axes, _ir.max, lambda i: x[tuple(i)], ctx.name("_max"), True)

    def shift(i: Index) -> Expr:
        v = m[reduced_index(i, axes, True)]
        if not x.dtype.is_float:
            return v
        return _ir.select(_ir.isinf(v) | _ir.isnan(v), const(0, x.dtype), v)

    s = reduce_stage(x, axes, _ir.sum, lambda i: _ir.exp(x[tuple(i)] - shift(i)), ctx.name("_sumexp"), keepdims)

    def finish(*i: Expr) -> Expr:
        full = list(i) if keepdims else _expand(i, axes, x.ndim)
        return cast(x.dtype, _ir.log(s[i]) + shift(full))

    return compute(s.shape, finish, name=ctx.name())


def _expand(index: Index, axes: Sequence[int], ndim: int) -> list[Expr]:
    """A full index (reduced axes at 0) from the index of a keepdims=0 result."""
    it = iter(index)
    return [const(0) if a in axes else next(it) for a in range(ndim)]


for _name in REDUCERS:
    register(_name, since=1, kind="reduction")(_reduce)
    register(_name, since=AXES_INPUT_SINCE[_name], kind="reduction")(_reduce)
register("ReduceLogSumExp", since=1, kind="reduction")(reduce_log_sum_exp)
register("ReduceLogSumExp", since=18, kind="reduction")(reduce_log_sum_exp)


def _arg_reduce(ctx: OpContext, x: Tensor) -> Tensor:
    """ArgMax/ArgMin along one axis (int64 result). Ties go to the first index, or with select_last_index to the
    last, done by scanning the axis reversed; NaN wins, as in numpy."""
    axis = normalize_axis(ctx, int(ctx.attr("axis", 0)), x.ndim)
    keepdims = bool(ctx.attr("keepdims", 1))
    last = bool(ctx.attr("select_last_index", 0))
    n = x.shape[axis]
    if isinstance(n, _ir.Const) and n.value == 0:
        raise ctx.error(f"cannot take {ctx.node.op} over axis {axis}, which has size 0")
    fn = _ir.argmax if ctx.node.op == "ArgMax" else _ir.argmin
    k = reduce_axis(n, "k")
    shape = [1 if a == axis else d for a, d in enumerate(x.shape) if keepdims or a != axis]

    def body(*i: Expr) -> tuple[Expr, Expr]:
        index = _expand(i, [axis], x.ndim) if not keepdims else list(i)
        index[axis] = (n - 1 - k.var) if last else k.var
        return fn(x[tuple(index)], k)

    idx, _ = compute(shape, body, name=ctx.name("_arg"))
    if last:
        return compute(shape, lambda *i: cast(int64, n - 1 - idx[i]), name=ctx.name())
    return compute(shape, lambda *i: cast(int64, idx[i]), name=ctx.name())


register("ArgMax", since=1, kind="reduction")(_arg_reduce)
register("ArgMin", since=1, kind="reduction")(_arg_reduce)

from . import reduce_scan, reduce_softmax  # noqa: F401 - registers the rest of the family
