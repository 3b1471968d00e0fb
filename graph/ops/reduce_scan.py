"""CumSum, TopK and Einsum: reductions whose extent or pairing depends on the output position."""
from __future__ import annotations

import string
from collections.abc import Sequence

from ... import ir as _ir
from ...ir.dtype import int64
from ...ir.expr import Expr, cast, const
from ...ir.tensor import Tensor, compute, reduce_axis
from ..registry import OpContext, register
from .common import dim_value, normalize_axis


def scalar_const(ctx: OpContext, i: int, what: str) -> int:
    value = ctx.const(i, what)
    if value.size != 1:
        raise ctx.error(f"{what} must hold one value, got shape {tuple(value.shape)}")
    return int(value.reshape(-1)[0])


@register("CumSum", since=11, kind="reduction")
def cumsum(ctx: OpContext, x: Tensor, axis_input: Tensor) -> Tensor:
    if x.dtype.is_bool:
        raise ctx.error("CumSum does not take bool input")
    return cumulative(ctx, x, _ir.sum)


def cumulative(ctx: OpContext, x: Tensor, combiner) -> Tensor:
    """out[j] = combiner of x[m] for m <= j along the axis given by input 1 (m < j when exclusive; m >= j / m > j
    when reversed): a masked reduction over the whole axis, O(n^2) per line, which keeps it one parallel stage.
    CumSum and CumProd share it."""
    axis = normalize_axis(ctx, scalar_const(ctx, 1, "axis"), x.ndim)
    exclusive, reverse = bool(ctx.attr("exclusive", 0)), bool(ctx.attr("reverse", 0))
    m = reduce_axis(x.shape[axis], "m")

    def body(*i: Expr) -> Expr:
        j = i[axis]
        # `m <= j - 1`, not `m < j`: the latter trips a codegen bug (vectorized loop with lane-varying extent).
        keep = {(False, False): m.var <= j, (True, False): m.var <= j - 1,
                (False, True): m.var >= j, (True, True): m.var > j}[(exclusive, reverse)]
        index = list(i)
        index[axis] = m.var
        return combiner(x[tuple(index)], axis=m, where=keep)

    return compute(x.shape, body, name=ctx.name())


def _topk(ctx: OpContext, x: Tensor, k_input: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Each element's rank is the number of elements that come before it (greater, or equal at a lower index;
    NaN counts as the largest); output j is the element of rank j. Ranks cost O(n^2) per line."""
    if x.dtype.is_bool:
        raise ctx.error("TopK does not take bool input")
    axis = normalize_axis(ctx, int(ctx.attr("axis", -1)), x.ndim)
    k = int(ctx.attr("k")) if ctx.opset < 10 else scalar_const(ctx, 1, "k")
    largest = bool(ctx.attr("largest", 1))
    n = x.shape[axis]
    if k < 0 or (dim_value(n) is not None and k > dim_value(n)):
        raise ctx.error(f"k={k} is out of range for axis {axis} of size {n}")
    m = reduce_axis(n, "m")

    def before(a: Expr, b: Expr) -> Expr:
        """Whether value `a` sorts strictly before value `b`."""
        strict = a > b if largest else a < b
        if not x.dtype.is_float:
            return strict
        nan_first = _ir.isnan(a) & ~_ir.isnan(b) if largest else _ir.isnan(b) & ~_ir.isnan(a)
        return strict | nan_first

    def same(a: Expr, b: Expr) -> Expr:
        return (a == b) | (_ir.isnan(a) & _ir.isnan(b)) if x.dtype.is_float else a == b

    def rank_body(*i: Expr) -> Expr:
        other = list(i)
        other[axis] = m.var
        a, b = x[tuple(other)], x[i]
        return _ir.sum(cast(int64, before(a, b) | (same(a, b) & (m.var < i[axis]))), axis=m)

    rank = compute(x.shape, rank_body, name=ctx.name("_rank"))
    shape = [k if a == axis else d for a, d in enumerate(x.shape)]
    src = reduce_axis(n, "s")

    def pick(*j: Expr) -> Expr:
        index = list(j)
        index[axis] = src.var
        return _ir.sum(_ir.select(rank[tuple(index)] == j[axis], cast(int64, src.var), const(0, int64)), axis=src)

    indices = compute(shape, pick, name=ctx.name("_indices"))

    def gather(*j: Expr) -> Expr:
        index = list(j)
        index[axis] = indices[j]
        return x[tuple(index)]

    values = compute(shape, gather, name=ctx.name("_values"))
    return values, indices


register("TopK", since=1, kind="reduction")(_topk)
register("TopK", since=10, kind="reduction")(_topk)


def _parse_einsum(ctx: OpContext, equation: str, ranks: Sequence[int]) -> tuple[list[list[str]], list[str]]:
    """Subscripts per input and for the output, each a list of labels; the dims an ellipsis stands for get
    labels of their own ('.0', '.1', ... counted from the right), which broadcast like numpy's."""
    text = equation.replace(" ", "")
    lhs, arrow, rhs = text.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(ranks):
        raise ctx.error(f"equation {equation!r} has {len(terms)} operands, the node has {len(ranks)} inputs")
    ell_rank = 0
    parsed: list[list[str]] = []
    for term, rank in zip(terms, ranks):
        letters = term.replace("...", "")
        if any(ch not in string.ascii_letters for ch in letters) or term.count("...") > 1:
            raise ctx.error(f"bad einsum term {term!r} in {equation!r}")
        n_ell = rank - len(letters)
        if n_ell < 0 or (n_ell > 0 and "..." not in term):
            raise ctx.error(f"einsum term {term!r} does not match an input of rank {rank}")
        ell_rank = max(ell_rank, n_ell)
        head, _, tail = term.partition("...")
        parsed.append(list(head) + [f".{d}" for d in reversed(range(n_ell))] + list(tail))
    ellipsis = [f".{d}" for d in reversed(range(ell_rank))]
    if arrow:
        head, _, tail = rhs.partition("...")
        out = list(head) + (ellipsis if "..." in rhs else []) + list(tail)
        if any(ch not in string.ascii_letters for ch in head + tail):
            raise ctx.error(f"bad einsum output {rhs!r} in {equation!r}")
        known = {lab for term in parsed for lab in term}
        missing = [lab for lab in out if lab not in known]
        if missing or len(set(out)) != len(out):
            raise ctx.error(f"einsum output {rhs!r} names labels {missing or out} not in the inputs (or twice)")
    else:
        counts: dict[str, int] = {}
        for term in parsed:
            for lab in term:
                if not lab.startswith("."):
                    counts[lab] = counts.get(lab, 0) + 1
        out = ellipsis + sorted(lab for lab, c in counts.items() if c == 1)
    return parsed, out


@register("Einsum", since=12, kind="reduction")
def einsum(ctx: OpContext, *xs: Tensor) -> Tensor:
    """Sum over every label not in the output of the product of the inputs' elements (a label repeated in one
    input reads its diagonal); size-1 dims broadcast."""
    if not xs or any(t.dtype != xs[0].dtype for t in xs):
        raise ctx.error("Einsum needs inputs of one dtype")
    terms, out = _parse_einsum(ctx, str(ctx.attr("equation")), [t.ndim for t in xs])
    extent: dict[str, Expr] = {}
    for t, term in zip(xs, terms):
        for lab, d in zip(term, t.shape):
            if lab not in extent or dim_value(extent[lab]) == 1:
                extent[lab] = d
            elif dim_value(d) not in (1, None) and dim_value(extent[lab]) not in (None, dim_value(d)):
                raise ctx.error(f"einsum label {lab!r} has sizes {extent[lab]} and {d}")
    summed = [lab for lab in extent if lab not in out]
    raxes = {lab: reduce_axis(extent[lab], "r" + ("e" + lab[1:] if lab.startswith(".") else lab))
             for lab in summed}

    def product(var: dict[str, Expr]) -> Expr:
        value: Expr | None = None
        for t, term in zip(xs, terms):
            read = t[tuple(const(0) if dim_value(d) == 1 and dim_value(extent[lab]) != 1 else var[lab]
                           for lab, d in zip(term, t.shape))]
            value = read if value is None else value * read
        return value

    def body(*i: Expr) -> Expr:
        var = dict(zip(out, i)) | {lab: ax.var for lab, ax in raxes.items()}
        value = product(var)
        return _ir.sum(value, axis=list(raxes.values())) if raxes else value

    return compute([extent[lab] for lab in out], body, name=ctx.name())
