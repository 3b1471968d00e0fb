"""Normalizations: BatchNormalization, InstanceNormalization, LayerNormalization, GroupNormalization,
MeanVarianceNormalization, LpNormalization and LRN. Statistics are two reduction stages (sum, then the sum of
squared deviations from the mean it gives, which is more accurate than E[x^2] - E[x]^2); the normalization itself
is an element-wise stage reading them."""
from __future__ import annotations

from typing import Callable, Sequence

from ... import ir as E
from ...ir.dtype import DType, float16, float32, float64
from ...ir.expr import Expr, const
from ...ir.tensor import Tensor
from ..ir import Node
from ..registry import OpContext, register
from .common import as_int_dims, dim_value, normalize_axes, normalize_axis, read_broadcast, same_dim
from .nn_conv import accumulator

Index = Sequence[Expr]
Stat = Callable[[Index], Expr]
STASH_TYPES = {1: float32, 10: float16, 11: float64}


def moments(shape: Sequence, extents: Sequence, read: Callable[[Index, list[Expr]], Expr], acc: DType,
            name: str) -> tuple[Stat, Stat]:
    """Mean and (biased) variance over `extents` for each index of `shape`: `read(index, reduce_vars)` gives
    the value (in `acc`). Returns readers of the mean and variance at an index of `shape`."""
    count: Expr = const(1)
    for e in extents:
        count = count * e
    count = E.cast(acc, count)

    def stage(value: Callable[[Index, list[Expr]], Expr], suffix: str) -> Tensor:
        axes = [E.reduce_axis(e, f"r{k}") for k, e in enumerate(extents)]
        return E.compute(tuple(shape), lambda *i: E.sum(value(i, [a.var for a in axes]), axis=axes),
                         name=name + suffix)

    total = stage(read, "_sum")

    def mean(i: Index) -> Expr:
        return total[tuple(i)] / count

    def sq(i: Index, r: list[Expr]) -> Expr:
        d = read(i, r) - mean(i)
        return d * d
    squares = stage(sq, "_sqsum")
    return mean, lambda i: squares[tuple(i)] / count


def check_param(ctx: OpContext, p: Tensor, shape: Sequence, what: str) -> None:
    if p.ndim != len(shape) or not all(same_dim(a, b) for a, b in zip(p.shape, shape)):
        raise ctx.error(f"{what} shape {tuple(map(str, p.shape))} must be {tuple(map(str, shape))}")


def float_input(ctx: OpContext, x: Tensor) -> None:
    if not x.dtype.is_float:
        raise ctx.error(f"{ctx.node.op} needs a float input, got {x.dtype}")


def _batchnorm_kind(node: Node) -> str:
    """Inference normalization is element-wise (it fuses into its producer's kernel); training mode reduces."""
    return "reduction" if node.opset >= 14 and int(node.attrs.get("training_mode", 0)) else "elementwise"


@register("BatchNormalization", since=1, kind=_batchnorm_kind)
def batch_normalization(ctx: OpContext, x: Tensor, scale: Tensor, bias: Tensor, mean: Tensor,
                        var: Tensor) -> "Tensor | tuple[Tensor, ...]":
    """Inference: per-channel (x - mean) / sqrt(var + eps) * scale + bias. training_mode (opset 14+) uses the
    batch statistics instead and also returns the momentum-updated running mean and variance."""
    float_input(ctx, x)
    if x.ndim < 2:
        raise ctx.error(f"input must have shape (N, C, ...), got rank {x.ndim}")
    eps = float(ctx.attr("epsilon", 1e-5))
    acc = accumulator(x.dtype)
    rank = 1 if int(ctx.attr("spatial", 1)) else x.ndim - 1  # opset < 9: spatial=0 means per-element params
    for p, what in ((scale, "scale"), (bias, "B"), (mean, "mean"), (var, "var")):
        check_param(ctx, p, x.shape[1:1 + rank], what)

    def param(p: Tensor, i: Index) -> Expr:
        return E.cast(acc, p[tuple(i[1:1 + rank])])
    training = ctx.opset >= 14 and int(ctx.attr("training_mode", 0))
    if not training:
        return E.compute(x.shape, lambda *i: E.cast(x.dtype, (E.cast(acc, x[i]) - param(mean, i))
                                                    * (param(scale, i) / E.sqrt(param(var, i) + eps))
                                                    + param(bias, i)), name=ctx.name())
    if rank != 1:
        raise ctx.error("training_mode needs per-channel parameters")
    momentum = float(ctx.attr("momentum", 0.9))
    spatial = list(x.shape[2:])
    b_mean, b_var = moments((x.shape[1],), [x.shape[0], *spatial],
                            lambda i, r: E.cast(acc, x[(r[0], i[0], *r[1:])]), acc, ctx.name("_stat"))
    y = E.compute(x.shape, lambda *i: E.cast(x.dtype, (E.cast(acc, x[i]) - b_mean(i[1:2]))
                                             * (param(scale, i) / E.sqrt(b_var(i[1:2]) + eps)) + param(bias, i)),
                  name=ctx.name())

    def running(old: Tensor, new: Stat, suffix: str) -> Tensor:
        return E.compute(old.shape, lambda c: E.cast(old.dtype, E.cast(acc, old[c]) * momentum
                                                     + new((c,)) * (1.0 - momentum)), name=ctx.name(suffix))
    return y, running(mean, b_mean, "_running_mean"), running(var, b_var, "_running_var")


@register("InstanceNormalization", since=1, kind="reduction")
def instance_normalization(ctx: OpContext, x: Tensor, scale: Tensor, bias: Tensor) -> Tensor:
    float_input(ctx, x)
    if x.ndim < 3:
        raise ctx.error(f"input must have shape (N, C, D1, ...), got rank {x.ndim}")
    check_param(ctx, scale, x.shape[1:2], "scale")
    check_param(ctx, bias, x.shape[1:2], "B")
    eps = float(ctx.attr("epsilon", 1e-5))
    acc = accumulator(x.dtype)
    mean, var = moments(x.shape[:2], x.shape[2:], lambda i, r: E.cast(acc, x[(*i, *r)]), acc, ctx.name())
    return E.compute(x.shape, lambda n, c, *s: E.cast(x.dtype, (E.cast(acc, x[(n, c, *s)]) - mean((n, c)))
                                                      * E.rsqrt(var((n, c)) + eps) * E.cast(acc, scale[c])
                                                      + E.cast(acc, bias[c])), name=ctx.name())


def stash_dtype(ctx: OpContext, x: Tensor) -> DType:
    """The statistics' type: stash_type (float32 by default), but never less precise than the input."""
    code = int(ctx.attr("stash_type", 1))
    if code not in STASH_TYPES:
        raise ctx.error(f"stash_type {code} is not float16, float32 or float64")
    return float64 if x.dtype == float64 else STASH_TYPES[code]


@register("LayerNormalization", since=17, kind="reduction")
def layer_normalization(ctx: OpContext, x: Tensor, scale: Tensor,
                        bias: "Tensor | None" = None) -> "Tensor | tuple[Tensor, ...]":
    """Normalize over dims [axis, rank); Scale and B broadcast to those dims. Mean and InvStdDev keep the
    reduced dims as size 1."""
    float_input(ctx, x)
    axis = normalize_axis(ctx, int(ctx.attr("axis", -1)), x.ndim)
    eps = float(ctx.attr("epsilon", 1e-5))
    acc = stash_dtype(ctx, x)
    lead, norm = x.shape[:axis], x.shape[axis:]
    for p, what in ((scale, "Scale"), (bias, "B")):
        if p is not None and (p.ndim > len(norm) or not all(
                dim_value(a) == 1 or same_dim(a, b) for a, b in zip(p.shape, norm[len(norm) - p.ndim:]))):
            raise ctx.error(f"{what} shape {tuple(map(str, p.shape))} does not broadcast to "
                            f"{tuple(map(str, norm))}")
    mean, var = moments(lead, norm, lambda i, r: E.cast(acc, x[(*i, *r)]), acc, ctx.name())
    inv = E.compute(lead, lambda *i: E.rsqrt(var(i) + eps), name=ctx.name("_invstd"))

    def body(*i):
        v = (E.cast(acc, x[i]) - mean(i[:axis])) * inv[i[:axis]] * E.cast(acc, read_broadcast(scale, i))
        return E.cast(x.dtype, v + E.cast(acc, read_broadcast(bias, i)) if bias is not None else v)
    y = E.compute(x.shape, body, name=ctx.name())
    if ctx.num_outputs < 2:
        return y
    keep = (*lead, *([1] * len(norm)))
    return (y, E.compute(keep, lambda *i: mean(i[:axis]), name=ctx.name("_mean")),
            E.compute(keep, lambda *i: inv[i[:axis]], name=ctx.name("_invstd_out")))


def group_normalization(ctx: OpContext, x: Tensor, scale: Tensor, bias: Tensor, per_channel: bool) -> Tensor:
    """Channels split into num_groups groups, each normalized over (its channels, spatial dims); scale and bias
    are per channel (opset 21) or per group (opset 18)."""
    float_input(ctx, x)
    if x.ndim < 2:
        raise ctx.error(f"input must have shape (N, C, ...), got rank {x.ndim}")
    groups = int(ctx.attr("num_groups"))
    (c,) = as_int_dims(ctx, x.shape[1:2], "channel dim")
    if groups < 1 or c % groups:
        raise ctx.error(f"num_groups {groups} must divide the {c} channels")
    size = c // groups
    for p, what in ((scale, "scale"), (bias, "bias")):
        check_param(ctx, p, (c,) if per_channel else (groups,), what)
    eps = float(ctx.attr("epsilon", 1e-5))
    acc = stash_dtype(ctx, x)
    mean, var = moments((x.shape[0], groups), [size, *x.shape[2:]],
                        lambda i, r: E.cast(acc, x[(i[0], i[1] * size + r[0], *r[1:])]), acc, ctx.name())

    def body(n, ch, *s):
        g = (n, ch // size)
        pi = ch if per_channel else ch // size
        return E.cast(x.dtype, (E.cast(acc, x[(n, ch, *s)]) - mean(g)) * E.rsqrt(var(g) + eps)
                      * E.cast(acc, scale[pi]) + E.cast(acc, bias[pi]))
    return E.compute(x.shape, body, name=ctx.name())


@register("GroupNormalization", since=18, kind="reduction")
def group_normalization_18(ctx: OpContext, x: Tensor, scale: Tensor, bias: Tensor) -> Tensor:
    return group_normalization(ctx, x, scale, bias, per_channel=False)


@register("GroupNormalization", since=21, kind="reduction")
def group_normalization_21(ctx: OpContext, x: Tensor, scale: Tensor, bias: Tensor) -> Tensor:
    return group_normalization(ctx, x, scale, bias, per_channel=True)


@register("MeanVarianceNormalization", since=1, kind="reduction")
def mean_variance_normalization(ctx: OpContext, x: Tensor) -> Tensor:
    """(x - mean) / (sqrt(variance) + 1e-9) over `axes` (default N and the spatial dims of NCHW), as the op's
    function body defines it."""
    float_input(ctx, x)
    axes = normalize_axes(ctx, ctx.attr("axes", [0, 2, 3]), x.ndim)
    kept = [d for d in range(x.ndim) if d not in axes]
    acc = accumulator(x.dtype)

    def full(i: Index, r: Sequence[Expr]) -> tuple:
        pos = dict(zip(kept, i)) | dict(zip(axes, r))
        return tuple(pos[d] for d in range(x.ndim))
    mean, var = moments([x.shape[d] for d in kept], [x.shape[d] for d in axes],
                        lambda i, r: E.cast(acc, x[full(i, r)]), acc, ctx.name())

    def body(*i):
        k = [i[d] for d in kept]
        return E.cast(x.dtype, (E.cast(acc, x[i]) - mean(k)) / (E.sqrt(var(k)) + 1e-9))
    return E.compute(x.shape, body, name=ctx.name())


@register("LpNormalization", since=1, kind="reduction")
def lp_normalization(ctx: OpContext, x: Tensor) -> Tensor:
    """x / ||x||_p along `axis` (p is 1 or 2); a zero norm gives 0 rather than NaN, as the reference does."""
    float_input(ctx, x)
    axis = normalize_axis(ctx, int(ctx.attr("axis", -1)), x.ndim)
    p = int(ctx.attr("p", 2))
    if p not in (1, 2):
        raise ctx.error(f"p {p} must be 1 or 2")
    acc = accumulator(x.dtype)
    r = E.reduce_axis(x.shape[axis], "r")

    def term(i):
        v = E.cast(acc, x[(*i[:axis], r.var, *i[axis + 1:])])
        return E.abs(v) if p == 1 else v * v
    shape = (*x.shape[:axis], 1, *x.shape[axis + 1:])
    total = E.compute(shape, lambda *i: E.sum(term(i), axis=r), name=ctx.name("_norm"))

    def body(*i):
        s = total[(*i[:axis], 0, *i[axis + 1:])]
        norm = s if p == 1 else E.sqrt(s)
        return E.cast(x.dtype, E.select(s == 0, const(0, acc), E.cast(acc, x[i]) / norm))
    return E.compute(x.shape, body, name=ctx.name())


@register("LRN", since=1, kind="reduction")
def lrn(ctx: OpContext, x: Tensor) -> Tensor:
    """x / (bias + alpha / size * sum of x^2 over the channels [c - floor((size-1)/2), c + ceil((size-1)/2)])^beta."""
    float_input(ctx, x)
    if x.ndim < 3:
        raise ctx.error(f"input must have shape (N, C, D1, ...), got rank {x.ndim}")
    size = int(ctx.attr("size"))
    if size < 1:
        raise ctx.error(f"size {size} must be positive")
    alpha, beta = float(ctx.attr("alpha", 1e-4)), float(ctx.attr("beta", 0.75))
    bias = float(ctx.attr("bias", 1.0))
    acc = accumulator(x.dtype)
    lo = (size - 1) // 2
    rc = E.reduce_axis(size, "rc")

    def square_sum(n, c, *s):
        ch = c - lo + rc.var
        v = E.cast(acc, x[(n, ch, *s)])
        return E.sum(v * v, axis=rc, where=(ch >= 0) & (ch < x.shape[1]))
    sq = E.compute(x.shape, square_sum, name=ctx.name("_sqsum"))
    scale = alpha / size

    def body(*i):
        base = sq[i] * scale + bias
        den = base if beta == 1.0 else E.sqrt(E.sqrt(base * base * base)) if beta == 0.75 \
            else E.pow(base, const(beta, acc))
        return E.cast(x.dtype, E.cast(acc, x[i]) / den)
    return E.compute(x.shape, body, name=ctx.name())

