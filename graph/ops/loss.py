"""Loss ops: NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss (which is NLL on a log-softmax over the class
axis). Input is [N, C, d1, ...], target [N, d1, ...], optional weight [C].

A target equal to `ignore_index` contributes nothing, to the loss or to mean's denominator. Such a target may lie
outside [0, C), so it is never used to read memory: reads sit on the taken side of a select (only that side
loads) and their class index is clamped into range as well."""
from __future__ import annotations

from collections.abc import Callable, Sequence

from ... import ir as _ir
from ...ir.dtype import int64
from ...ir.expr import Expr, cast, const, select
from ...ir.tensor import Tensor, compute, reduce_axis
from ..registry import OpContext, register
from .common import same_dim
from .reduce import reduce_stage, reduced_index

REDUCTIONS = ("none", "sum", "mean")


def _check(ctx: OpContext, x: Tensor, target: Tensor, weight: Tensor | None) -> None:
    if x.ndim < 2:
        raise ctx.error(f"input must be [N, C, d1, ...] (rank >= 2), got rank {x.ndim}")
    if not x.dtype.is_float:
        raise ctx.error(f"input must be float, got {x.dtype}")
    if not target.dtype.is_int:
        raise ctx.error(f"target must hold integer class indices, got {target.dtype}")
    expected = (x.shape[0], *x.shape[2:])
    if target.ndim != len(expected) or not all(same_dim(a, b) for a, b in zip(target.shape, expected)):
        raise ctx.error(f"target shape {tuple(map(str, target.shape))} does not match input shape "
                        f"{tuple(map(str, x.shape))} (expected [N, d1, ...] = {tuple(map(str, expected))})")
    if weight is not None:
        if weight.ndim != 1 or not same_dim(weight.shape[0], x.shape[1]):
            raise ctx.error(f"weight must be [C] = [{x.shape[1]}], got {tuple(map(str, weight.shape))}")
        if weight.dtype != x.dtype:
            raise ctx.error(f"weight dtype {weight.dtype} differs from input dtype {x.dtype}")


def _nll(ctx: OpContext, logp: Tensor, target: Tensor, weight: Tensor | None) -> Tensor:
    """The loss of log-probabilities `logp` [N, C, d...] against `target`, reduced as the `reduction` attribute
    says. Mean divides by the summed weights of the non-ignored targets (their count without weights)."""
    reduction = ctx.attr("reduction", "mean")
    reduction = reduction.decode() if isinstance(reduction, bytes) else reduction
    if reduction not in REDUCTIONS:
        raise ctx.error(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    ignore = ctx.attr("ignore_index", None)
    dtype, classes = logp.dtype, logp.shape[1]

    def parts(i: Sequence[Expr]) -> tuple[Expr, Expr]:
        """(is the target at `i` counted, its class index clamped into [0, C))."""
        t = target[tuple(i)]
        valid = const(True) if ignore is None else t != const(int(ignore), t.dtype)
        cls = _ir.minimum(_ir.maximum(cast(int64, t), const(0, int64)), cast(int64, classes) - 1)
        return valid, cls

    def weight_of(i: Sequence[Expr]) -> Expr:
        valid, cls = parts(i)
        w = const(1, dtype) if weight is None else weight[cls]
        return select(valid, w, const(0, dtype))

    def loss_of(i: Sequence[Expr]) -> Expr:
        valid, cls = parts(i)
        term = -logp[(i[0], cls, *i[1:])]
        if weight is not None:
            term = term * weight[cls]
        return select(valid, term, const(0, dtype))

    if reduction == "none":
        return compute(target.shape, lambda *i: loss_of(i), name=ctx.name())
    total = _reduce_all(target, loss_of, ctx.name("_sum" if reduction == "mean" else ""))
    if reduction == "sum":
        return total
    norm = _reduce_all(target, weight_of, ctx.name("_weight"))
    return compute((), lambda: total[()] / norm[()], name=ctx.name())


def _reduce_all(target: Tensor, elem: Callable[[Sequence[Expr]], Expr], name: str) -> Tensor:
    """A 0-d stage summing `elem(index)` over every index of `target`."""
    axes = [reduce_axis(d, f"r{k}") for k, d in enumerate(target.shape)]
    return compute((), lambda: _ir.sum(elem([a.var for a in axes]), axis=axes), name=name)


@register("NegativeLogLikelihoodLoss", since=12, kind="reduction")
def negative_log_likelihood_loss(ctx: OpContext, x: Tensor, target: Tensor,
                                 weight: Tensor | None = None) -> Tensor:
    """loss[n, d...] = -x[n, target[n, d...], d...] * weight[target[n, d...]], then reduced."""
    _check(ctx, x, target, weight)
    return _nll(ctx, x, target, weight)


@register("SoftmaxCrossEntropyLoss", since=12, kind="reduction")
def softmax_cross_entropy_loss(ctx: OpContext, scores: Tensor, labels: Tensor,
                               weight: Tensor | None = None) -> Tensor | tuple[Tensor, Tensor]:
    """NLL of log_softmax(scores) over the class axis; the optional second output is that log-softmax. The max
    shift keeps exp from overflowing."""
    _check(ctx, scores, labels, weight)
    axes = [1]
    m = reduce_stage(scores, axes, _ir.max, lambda i: scores[tuple(i)], ctx.name("_max"), True)

    def shifted(i: Sequence[Expr]) -> Expr:
        return scores[tuple(i)] - m[reduced_index(i, axes, True)]

    s = reduce_stage(scores, axes, _ir.sum, lambda i: _ir.exp(shifted(i)), ctx.name("_expsum"), True)
    logp = compute(scores.shape, lambda *i: shifted(i) - _ir.log(s[reduced_index(i, axes, True)]),
                   name=ctx.name("_log_prob"))
    loss = _nll(ctx, logp, labels, weight)
    return (loss, logp) if ctx.num_outputs == 2 else loss
