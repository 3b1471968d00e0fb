"""Interval bounds of index expressions, for bound inference (compute_at regions) and loop partitioning."""
from __future__ import annotations

from ..ir.dtype import INDEX
from ..ir.expr import Binary, Cast, Const, Expr, Var, binary, const, free_vars
from ..ir.simplify import affine, simplify_index

Range = tuple[Expr, Expr]  # inclusive (lo, hi)


class BoundError(ValueError):
    pass


def bound(e: Expr, ranges: dict[Var, Range]) -> Range:
    """Inclusive bounds of `e` when each var in `ranges` takes any value in its range; other vars are fixed."""
    if not (free_vars(e) & ranges.keys()):
        return e, e
    if isinstance(e, Var):
        return ranges[e]
    if isinstance(e, Cast) and e.value.dtype.is_int:
        return bound(e.value, ranges)
    if isinstance(e, Binary):
        if e.op in ("add", "sub"):
            (al, ah), (bl, bh) = bound(e.a, ranges), bound(e.b, ranges)
            return (al + bl, ah + bh) if e.op == "add" else (al - bh, ah - bl)
        if e.op == "mul":
            k, other = (e.b, e.a) if isinstance(e.b, Const) else (e.a, e.b) if isinstance(e.a, Const) else (None, None)
            if k is not None:
                lo, hi = bound(other, ranges)
                return (lo * k, hi * k) if k.value >= 0 else (hi * k, lo * k)
        if e.op == "floordiv" and isinstance(e.b, Const) and e.b.value > 0:
            lo, hi = bound(e.a, ranges)
            return lo // e.b, hi // e.b
        if e.op == "mod" and isinstance(e.b, Const) and e.b.value > 0:
            lo, hi = bound(e.a, ranges)
            return const(0, INDEX), const(e.b.value - 1, INDEX)
        if e.op in ("min", "max"):
            (al, ah), (bl, bh) = bound(e.a, ranges), bound(e.b, ranges)
            return binary(e.op, al, bl), binary(e.op, ah, bh)
    raise BoundError(f"cannot bound the index expression {e}")


def lower_of(a: Expr, b: Expr) -> Expr:
    d = affine(simplify_index(a - b))
    if d is not None and not d[0]:
        return a if d[1] <= 0 else b
    return binary("min", a, b)


def upper_of(a: Expr, b: Expr) -> Expr:
    d = affine(simplify_index(a - b))
    if d is not None and not d[0]:
        return a if d[1] >= 0 else b
    return binary("max", a, b)


def const_value(e: Expr) -> "int | None":
    e = simplify_index(e)
    return e.value if isinstance(e, Const) else None
