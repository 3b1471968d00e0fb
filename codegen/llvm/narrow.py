"""Which vector index computations may run on 32-bit lanes.

Index arithmetic is 64-bit, but x86 has no 64-bit vector multiply-high, so a varying `p // 28` on 16 lanes of
int64 becomes 16 scalar divisions, and a gather with 64-bit offsets loads 8 lanes per instruction instead of 16.
An index expression whose every intermediate value provably fits in int32 (from the ranges of the loop
variables it reads) computes the same result on int32 lanes."""
from __future__ import annotations

from ...ir.dtype import INDEX
from ...ir.expr import Binary, Const, Expr, Var

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1
COMPARISONS = {"lt", "le", "gt", "ge", "eq", "ne"}
Range = tuple[int, int]


def int_range(e: Expr, ranges: "dict[Var, Range]") -> "Range | None":
    """Inclusive bounds of an integer index expression and of each of its parts, or None when some part is not
    bounded or leaves int32 (only loop variables, constants and + - * // % min max are understood)."""
    r = _range(e, ranges)
    return r if r is not None and INT32_MIN <= r[0] and r[1] <= INT32_MAX else None


def _range(e: Expr, ranges: "dict[Var, Range]") -> "Range | None":
    if isinstance(e, Const):
        return (e.value, e.value) if isinstance(e.value, int) else None
    if isinstance(e, Var):
        return ranges.get(e)
    if not (isinstance(e, Binary) and e.a.dtype == INDEX):
        return None
    a, b = int_range(e.a, ranges), int_range(e.b, ranges)
    if a is None or b is None:
        return None
    if e.op in COMPARISONS:
        return 0, 1
    if e.op == "add":
        return a[0] + b[0], a[1] + b[1]
    if e.op == "sub":
        return a[0] - b[1], a[1] - b[0]
    if e.op == "mul":
        corners = [x * y for x in a for y in b]
        return min(corners), max(corners)
    if e.op in ("min", "max"):
        pick = min if e.op == "min" else max
        return pick(a[0], b[0]), pick(a[1], b[1])
    if e.op in ("floordiv", "mod") and b[0] == b[1] and b[0] > 0:
        return (a[0] // b[0], a[1] // b[0]) if e.op == "floordiv" else (0, b[0] - 1)
    return None


def narrowable(e: Expr, ranges: "dict[Var, Range]") -> bool:
    """A 64-bit integer operation (or comparison of such) that 32-bit lanes compute exactly."""
    return isinstance(e, Binary) and e.a.dtype == INDEX and int_range(e, ranges) is not None
