"""Pooling: MaxPool (with optional Indices), AveragePool, LpPool and their global forms. Each window is a
reduction over the kernel taps of the input padded with the reduction's identity (stored once, `padded`)."""
from __future__ import annotations

import math
from ... import ir as E
from ...ir.dtype import int64
from ...ir.expr import Const, Expr, const
from ...ir.tensor import MATERIALIZE, Tensor, identity_element
from ..registry import OpContext, register
from .nn_conv import accumulator, padded
from .nn_window import Window, kernel_attr, spatial_dims, window
from .reduce import reduce_stage


def pool_window(ctx: OpContext, x: Tensor) -> Window:
    sizes = spatial_dims(ctx, x)
    return window(ctx, sizes, kernel_attr(ctx, len(sizes)), ceil_mode=bool(ctx.attr("ceil_mode", 0)))


def window_reduce(ctx: OpContext, x: Tensor, win: Window, reducer, value, name: str) -> Tensor:
    """reducer(value(x at tap), taps) for every output position, over the input padded with the reduction's
    identity (the same result as skipping padded taps, without a bounds check per tap)."""
    taps = [E.reduce_axis(k, f"r{d}") for d, k in enumerate(win.kernel)]
    fill = identity_element("max" if reducer is E.max else "sum", x.dtype)
    tap = padded(ctx, lambda i: x[tuple(i)], x.shape[:2], win, fill)

    def body(n, c, *o):
        return reducer(value(tap((n, c), o, [t.var for t in taps])), axis=taps)
    return E.compute((x.shape[0], x.shape[1], *win.out), body, name=name)


def float_input(ctx: OpContext, x: Tensor) -> None:
    if not x.dtype.is_float:
        raise ctx.error(f"{ctx.node.op} needs a float input, got {x.dtype}")


@register("MaxPool", since=1, kind="reduction")
def max_pool(ctx: OpContext, x: Tensor) -> "Tensor | tuple[Tensor, Tensor]":
    if x.dtype.is_bool or (x.dtype.is_int and x.dtype.name not in ("int8", "uint8")):
        raise ctx.error(f"MaxPool takes float, int8 or uint8 input, got {x.dtype}")
    storage_order = int(ctx.attr("storage_order", 0))
    if storage_order not in (0, 1):
        raise ctx.error(f"storage_order {storage_order} must be 0 (row major) or 1 (column major)")
    win = pool_window(ctx, x)
    if ctx.num_outputs < 2 or not ctx.node.outputs[1].name:
        return window_reduce(ctx, x, win, E.max, lambda v: v, ctx.name())
    return max_pool_with_indices(ctx, x, win, storage_order)


def max_pool_with_indices(ctx: OpContext, x: Tensor, win: Window, storage_order: int) -> tuple[Tensor, Tensor]:
    """argmax over the window flattened into one tap axis (first maximum wins, as in the reference); the index is
    into the whole input, flattened row major, or column major over the spatial dims when storage_order is 1."""
    nd = len(win.kernel)
    inner = [math.prod(win.kernel[d + 1:]) for d in range(nd)]
    r = E.reduce_axis(math.prod(win.kernel), "r")

    def taps_of(flat: Expr) -> list[Expr]:
        return [(flat // inner[d]) % win.kernel[d] if d else flat // inner[d] for d in range(nd)]

    def body(n, c, *o):
        pos = [win.position(d, o[d], t) for d, t in enumerate(taps_of(r.var))]
        return E.argmax(x[(n, c, *pos)], r, where=win.inside(pos))
    arg, values = E.compute((x.shape[0], x.shape[1], *win.out), body, name=ctx.name("_arg"))
    steps = [math.prod(win.size[d + 1:]) for d in range(nd)] if storage_order == 0 else \
        [math.prod(win.size[:d]) for d in range(nd)]
    plane = math.prod(win.size)

    def index(n, c, *o):
        taps = taps_of(E.cast(int64, arg[(n, c, *o)]))
        flat: Expr = (n * x.shape[1] + c) * plane
        for d in range(nd):
            flat = flat + win.position(d, o[d], taps[d]) * steps[d]
        return flat
    return values, E.compute(values.shape, index, name=ctx.name("_indices"))


def tap_count(win: Window, d: int, o: Expr, include_pad: bool) -> Expr:
    """How many of dim d's taps at output `o` are averaged: those inside the input, or with count_include_pad
    those inside the padded input (never the extra room ceil_mode adds past the end padding)."""
    k, s, dl, b = win.kernel[d], win.strides[d], win.dilations[d], win.begin[d]
    if include_pad:
        limit = win.size[d] + b + win.end[d]
        if (win.out[d] - 1) * s + (k - 1) * dl < limit:
            return const(k)
        return E.minimum(const(k), -((o * s - limit) // dl))
    if b == 0 and (win.out[d] - 1) * s + (k - 1) * dl - b < win.size[d]:
        return const(k)
    lo = E.maximum(const(0), -((o * s - b) // dl))
    hi = E.minimum(const(k - 1), (win.size[d] - 1 + b - o * s) // dl)
    return E.maximum(const(0), hi - lo + 1)


@register("AveragePool", since=1, kind="reduction")
def average_pool(ctx: OpContext, x: Tensor) -> Tensor:
    float_input(ctx, x)
    win = pool_window(ctx, x)
    acc = accumulator(x.dtype)
    include_pad = bool(ctx.attr("count_include_pad", 0))
    total = window_reduce(ctx, x, win, E.sum, lambda v: E.cast(acc, v), ctx.name("_sum"))

    def count(*o: Expr) -> Expr:
        n: Expr = const(1)
        for d in range(len(o)):
            n = n * tap_count(win, d, o[d], include_pad)
        return E.cast(acc, n)
    # A count that varies near the borders depends on the output position only: it is stored once per position
    # (index arithmetic per element would cost more than the pooling itself).
    counts = E.compute(win.out, count, name=ctx.name("_count"), tag=MATERIALIZE)
    varying = not isinstance(counts.op.body[0], Const)

    def body(n, c, *o):
        return E.cast(x.dtype, total[(n, c, *o)] / (counts[o] if varying else count(*o)))
    return E.compute(total.shape, body, name=ctx.name())


def lp_exponent(ctx: OpContext) -> float:
    p = float(ctx.attr("p", 2))
    if p <= 0:
        raise ctx.error(f"p {p} must be positive")
    return p


def lp_terms(p: float, acc):
    """|v|^p for the sum, and the p-th root of the sum; p = 1 and 2 avoid pow."""
    def term(v):
        v = E.cast(acc, v)
        return E.abs(v) if p == 1 else v * v if p == 2 else E.pow(E.abs(v), const(p, acc))

    def root(s):
        return s if p == 1 else E.sqrt(s) if p == 2 else E.pow(s, const(1.0 / p, acc))
    return term, root


@register("LpPool", since=1, kind="reduction")
def lp_pool(ctx: OpContext, x: Tensor) -> Tensor:
    float_input(ctx, x)
    win = pool_window(ctx, x)
    acc = accumulator(x.dtype)
    term, root = lp_terms(lp_exponent(ctx), acc)
    total = window_reduce(ctx, x, win, E.sum, term, ctx.name("_sum"))
    return E.compute(total.shape, lambda *i: E.cast(x.dtype, root(total[i])), name=ctx.name())


def global_reduce(ctx: OpContext, x: Tensor, reducer, value, name: str) -> Tensor:
    """reducer over all spatial dims (as one row where their sizes are known); the result keeps them as size 1."""
    if x.ndim < 3:
        raise ctx.error(f"input must have shape (N, C, D1, ...), got rank {x.ndim}")
    return reduce_stage(x, list(range(2, x.ndim)), reducer, lambda i: value(x[tuple(i)]), name, True)


def spatial_count(x: Tensor) -> Expr:
    count: Expr = const(1)
    for d in x.shape[2:]:
        count = count * d
    return count


@register("GlobalAveragePool", since=1, kind="reduction")
def global_average_pool(ctx: OpContext, x: Tensor) -> Tensor:
    float_input(ctx, x)
    acc = accumulator(x.dtype)
    total = global_reduce(ctx, x, E.sum, lambda v: E.cast(acc, v), ctx.name("_sum"))
    count = E.cast(acc, spatial_count(x))
    return E.compute(total.shape, lambda *i: E.cast(x.dtype, total[i] / count), name=ctx.name())


@register("GlobalMaxPool", since=1, kind="reduction")
def global_max_pool(ctx: OpContext, x: Tensor) -> Tensor:
    float_input(ctx, x)
    return global_reduce(ctx, x, E.max, lambda v: v, ctx.name())


@register("GlobalLpPool", since=1, kind="reduction")
def global_lp_pool(ctx: OpContext, x: Tensor) -> Tensor:
    float_input(ctx, x)
    acc = accumulator(x.dtype)
    term, root = lp_terms(lp_exponent(ctx), acc)
    total = global_reduce(ctx, x, E.sum, term, ctx.name("_sum"))
    return E.compute(total.shape, lambda *i: E.cast(x.dtype, root(total[i])), name=ctx.name())
