"""Symbolic shape arithmetic backed by sympy.

Only symbolic shapes and extents go through here (a handful of calls per kernel), never per-node lowering work;
sympy itself is imported on first use, so purely static kernels never pay for it.
"""
from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import sympy

from .dtype import INDEX
from .expr import Binary, Cast, Const, Expr, SizeVar, Var, as_expr, cast, const


def to_sympy(expr: Expr) -> "sympy.Expr":
    import sympy
    if isinstance(expr, Const):
        return sympy.Integer(int(expr.value))
    if isinstance(expr, Var):
        return sympy.Symbol(expr.name, integer=True, nonnegative=isinstance(expr, SizeVar))
    if isinstance(expr, Cast):
        return to_sympy(expr.value)
    if isinstance(expr, Binary):
        a, b = to_sympy(expr.a), to_sympy(expr.b)
        ops = {"add": lambda: a + b, "sub": lambda: a - b, "mul": lambda: a * b,
               "floordiv": lambda: sympy.floor(a / b), "mod": lambda: sympy.Mod(a, b),
               "min": lambda: sympy.Min(a, b), "max": lambda: sympy.Max(a, b)}
        if expr.op in ops:
            return ops[expr.op]()
    raise ValueError(f"shape expression {expr} uses an operation shapes cannot use")


def from_sympy(value: "sympy.Expr", names: dict[str, Var]) -> Expr:
    import sympy
    if value.is_Integer:
        return const(int(value), INDEX)
    if value.is_Symbol:
        return names[value.name]
    args = [from_sympy(a, names) for a in value.args]
    if value.is_Add:
        out = args[0]
        for a in args[1:]:
            out = out + a
        return out
    if value.is_Mul:
        out = args[0]
        for a in args[1:]:
            out = out * a
        return out
    if isinstance(value, sympy.floor):
        num, den = sympy.fraction(sympy.together(value.args[0]))
        return from_sympy(num, names) // from_sympy(den, names)
    if isinstance(value, sympy.Mod):
        return args[0] % args[1]
    if isinstance(value, sympy.Min):
        return functools.reduce(lambda x, y: Binary("min", x, y, INDEX), args)
    if isinstance(value, sympy.Max):
        return functools.reduce(lambda x, y: Binary("max", x, y, INDEX), args)
    raise ValueError(f"cannot convert {value} back from sympy")


def _names(expr: Expr, out: dict[str, Var]) -> dict[str, Var]:
    from .expr import walk
    walk(expr, lambda e: out.setdefault(e.name, e) if isinstance(e, Var) else None)
    return out


def simplify(expr: Expr) -> Expr:
    """Simplify an integer shape expression (e.g. (n*4)//4 -> n)."""
    if isinstance(expr, (Const, Var)):
        return expr
    import sympy
    try:
        return cast(INDEX, from_sympy(sympy.simplify(to_sympy(expr)), _names(expr, {})))
    except ValueError:
        return expr


def shape_expr(value: Any) -> Expr:
    """Normalise a user-given dimension (int or symbolic) to a simplified int64 expression."""
    expr = as_expr(value, INDEX)
    if not expr.dtype.is_int:
        raise TypeError(f"a dimension must be an integer or a symbolic size, got {value!r}")
    if isinstance(expr, Const) and expr.value < 0:
        raise ValueError(f"a dimension must be non-negative, got {expr.value}")
    return simplify(cast(INDEX, expr))


def prove_equal(a: Expr, b: Expr) -> bool:
    """True when a == b for every value of the symbolic sizes."""
    if isinstance(a, Const) and isinstance(b, Const):
        return a.value == b.value
    if a is b:
        return True
    import sympy
    try:
        return sympy.simplify(to_sympy(a) - to_sympy(b)) == 0
    except ValueError:
        return False


def evaluate(expr: Expr, env: dict[str, int]) -> int:
    """Value of a shape expression once sizes are known (called at kernel-call time, so no sympy)."""
    from .simplify import eval_binary
    if isinstance(expr, Const):
        return int(expr.value)
    if isinstance(expr, Var):
        return env[expr.name]
    if isinstance(expr, Cast):
        return evaluate(expr.value, env)
    if isinstance(expr, Binary):
        return int(eval_binary(expr.op, evaluate(expr.a, env), evaluate(expr.b, env), INDEX))
    raise ValueError(f"cannot evaluate {expr}")
