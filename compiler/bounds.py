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


def max_floordiv_span(extent: Expr) -> "int | None":
    """A constant upper bound of an extent like `(x + c1) // k - (x + c0) // k + c`, the size of a region read
    through a fused or split index: floor((x + c1) / k) - floor((x + c0) / k) <= ceil((c1 - c0) / k)."""
    form = affine(simplify_index(extent))
    if form is None:
        return None
    terms, total = dict(form[0]), form[1]
    for atom, n in list(terms.items()):
        if n <= 0 or atom not in terms or not _is_floordiv(atom):
            continue
        partner = next((b for b, m in terms.items() if m == -n and _is_floordiv(b) and b.b.value == atom.b.value
                        and _const_difference(atom.a, b.a) is not None), None)
        if partner is None:
            return None
        span = _const_difference(atom.a, partner.a)
        if span < 0:
            return None
        k, form_a = atom.b.value, affine(simplify_index(atom.a))
        if form_a is not None and all(m % k == 0 for m in form_a[0].values()):
            # x a multiple of k (tiles aligned to the divisor): the difference is exact
            low = form_a[1] - span
            total += n * (form_a[1] // k - low // k)
        else:
            total += n * -(-span // k)
        del terms[atom], terms[partner]
    return None if terms else total


def _is_floordiv(e: Expr) -> bool:
    return isinstance(e, Binary) and e.op == "floordiv" and isinstance(e.b, Const) and e.b.value > 0


def _const_difference(a: Expr, b: Expr) -> "int | None":
    d = affine(simplify_index(a - b))
    return d[1] if d is not None and not d[0] else None
