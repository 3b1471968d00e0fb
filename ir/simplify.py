"""Constant folding, algebraic identities and affine (linear) forms of index expressions.

Kept free of sympy: these run for every node built during lowering, where compile time matters.
"""
from __future__ import annotations

import math
from typing import Sequence

from .dtype import DType
from .expr import Binary, Call, Cast, Const, Expr, Var, cast, const, expr_key, transform


def _wrap(value: int, dtype: DType) -> int:
    if dtype.is_bool:
        return int(bool(value))
    mask = (1 << dtype.bits) - 1
    value &= mask
    if dtype.is_signed and value >> (dtype.bits - 1):
        value -= 1 << dtype.bits
    return value


def eval_binary(op: str, x, y, dtype: DType):
    """Evaluate a binary op on Python numbers with ember's documented semantics (used for constant folding)."""
    if op in ("lt", "le", "gt", "ge", "eq", "ne"):
        return {"lt": x < y, "le": x <= y, "gt": x > y, "ge": x >= y, "eq": x == y, "ne": x != y}[op]
    if dtype.is_float:
        return _eval_float(op, x, y, dtype)
    if op in ("floordiv", "mod", "truncdiv", "truncmod") and y == 0:
        return 0
    if op == "add": r = x + y
    elif op == "sub": r = x - y
    elif op == "mul": r = x * y
    elif op == "floordiv": r = x // y
    elif op == "mod": r = x % y
    elif op == "truncdiv": r = abs(x) // abs(y) * (1 if (x >= 0) == (y >= 0) else -1)
    elif op == "truncmod": r = x - y * (abs(x) // abs(y) * (1 if (x >= 0) == (y >= 0) else -1))
    elif op == "min": r = min(x, y)
    elif op == "max": r = max(x, y)
    elif op == "pow": r = x ** y if y >= 0 else (1 if x == 1 else 0)
    elif op == "and": r = x & y
    elif op == "or": r = x | y
    elif op == "xor": r = x ^ y
    elif op == "shl": r = x << y if 0 <= y < dtype.bits else 0
    elif op == "shr": r = x >> y if 0 <= y < dtype.bits else (0 if x >= 0 else -1)
    else: raise ValueError(op)
    return _wrap(int(r), dtype)


_FLOAT_UFUNCS = {"add": "add", "sub": "subtract", "mul": "multiply", "div": "true_divide",
                 "floordiv": "floor_divide", "mod": "mod", "truncmod": "fmod", "min": "minimum", "max": "maximum",
                 "pow": "power"}


def _eval_float(op: str, x: float, y: float, dtype: DType) -> float:
    """numpy's own float semantics (inf/nan/-0.0, rounding to the dtype); float16 computes in float32 like the
    generated code does."""
    import numpy as np
    t = np.float32 if dtype.bits <= 32 else np.float64
    a, b = t(x), t(y)
    with np.errstate(all="ignore"):
        r = np.trunc(np.true_divide(a, b)) if op == "truncdiv" else getattr(np, _FLOAT_UFUNCS[op])(a, b)
    return float(r)


def _is(e: Expr, value) -> bool:
    return isinstance(e, Const) and e.value == value


def fold_binary(op: str, a: Expr, b: Expr, dtype: DType) -> Expr:
    if isinstance(a, Const) and isinstance(b, Const):
        return const(eval_binary(op, a.value, b.value, a.dtype), dtype)
    exact = not dtype.is_float
    if op == "add":
        if _is(b, 0): return a
        if _is(a, 0): return b
        if isinstance(b, Const) and isinstance(a, Binary) and a.op == "add" and isinstance(a.b, Const) and exact:
            return fold_binary("add", a.a, const(a.b.value + b.value, dtype), dtype)
    elif op == "sub":
        if _is(b, 0): return a
        if a is b and exact: return const(0, dtype)
    elif op == "mul":
        if _is(b, 1): return a
        if _is(a, 1): return b
        if exact and (_is(a, 0) or _is(b, 0)): return const(0, dtype)
        if isinstance(a, Const) and not isinstance(b, Const):
            return fold_binary("mul", b, a, dtype)
        if isinstance(b, Const) and isinstance(a, Binary) and a.op == "mul" and isinstance(a.b, Const) and exact:
            return fold_binary("mul", a.a, const(a.b.value * b.value, dtype), dtype)
    elif op in ("floordiv", "truncdiv") and exact:
        if _is(b, 1): return a
        if _is(a, 0): return a
    elif op in ("mod", "truncmod") and exact:
        if _is(b, 1) or _is(a, 0): return const(0, dtype)
    elif op in ("min", "max") and a is b:
        return a
    elif op == "and" and dtype.is_bool:
        if _is(a, True): return b
        if _is(b, True): return a
        if _is(a, False) or _is(b, False): return const(False, dtype)
    elif op == "or" and dtype.is_bool:
        if _is(a, False): return b
        if _is(b, False): return a
    return Binary(op, a, b, dtype)


_CALL_FOLD = {
    "exp": math.exp, "exp2": lambda x: 2.0 ** x, "sqrt": math.sqrt, "sin": math.sin, "cos": math.cos,
    "tanh": math.tanh, "erf": math.erf, "floor": math.floor, "ceil": math.ceil, "trunc": math.trunc,
    "round": round, "abs": abs, "neg": lambda x: -x,
}


def fold_call(name: str, args: Sequence[Expr], dtype: DType) -> Expr:
    if len(args) == 1 and isinstance(args[0], Const) and name in _CALL_FOLD:
        try:
            value = _CALL_FOLD[name](args[0].value)
        except (ValueError, OverflowError):
            return Call(name, tuple(args), dtype)
        if dtype.is_int and not dtype.is_bool:
            value = _wrap(int(value), dtype)
        return const(value, dtype)
    if name == "neg" and len(args) == 1 and isinstance(args[0], Call) and args[0].name == "neg":
        return args[0].args[0]
    return Call(name, tuple(args), dtype)


# ---- affine forms -------------------------------------------------------------------------------------------------

Affine = tuple[dict, int]  # ({atom: coefficient}, constant); atoms are Vars or other non-linear integer nodes


def affine(expr: Expr) -> "Affine | None":
    """Decompose an integer expression into sum(coef * atom) + c, or None if it is not integer-valued."""
    if not expr.dtype.is_int:
        return None
    if isinstance(expr, Const):
        return {}, expr.value
    if isinstance(expr, Cast) and expr.value.dtype.is_int:
        return affine(expr.value)
    if isinstance(expr, Binary) and expr.op in ("add", "sub", "mul"):
        fa, fb = affine(expr.a), affine(expr.b)
        if fa is None or fb is None:
            return {expr: 1}, 0
        if expr.op == "mul":
            if fa[0] and fb[0]:
                return {expr: 1}, 0
            (terms, c), k = (fa, fb[1]) if not fb[0] else (fb, fa[1])
            return {v: n * k for v, n in terms.items() if n * k}, c * k
        sign = 1 if expr.op == "add" else -1
        return merge_terms([(fa[0], 1), (fb[0], sign)]), fa[1] + sign * fb[1]
    return {expr: 1}, 0


def merge_terms(parts: "Sequence[tuple[dict[Expr, int], int]]") -> dict[Expr, int]:
    """Sum weighted term maps, treating structurally identical atoms as one (x // 8 built twice cancels)."""
    merged: dict[tuple, list] = {}
    for terms, weight in parts:
        for atom, n in terms.items():
            slot = merged.setdefault(expr_key(atom), [atom, 0])
            slot[1] += weight * n
    return {atom: n for atom, n in merged.values() if n}


def from_affine(form: Affine, dtype: DType) -> Expr:
    terms, c = form
    out: Expr | None = None
    for atom, n in sorted(terms.items(), key=lambda kv: _atom_order(kv[0])):
        term = cast(dtype, atom) if n == 1 else fold_binary("mul", cast(dtype, atom), const(n, dtype), dtype)
        out = term if out is None else fold_binary("add", out, term, dtype)
    if out is None:
        return const(c, dtype)
    return fold_binary("add", out, const(c, dtype), dtype) if c else out


def _atom_order(atom: Expr) -> tuple:
    return (0, atom.name) if isinstance(atom, Var) else (1, str(atom))


def simplify_index(expr: Expr) -> Expr:
    """Canonicalise an integer index expression: collect linear terms and fold floordiv/mod by constants
    where the affine form makes it exact (e.g. (8*i + j) // 8 with 0 <= j < 8 is left alone: no range facts)."""
    def rule(e: Expr):
        if isinstance(e, Binary) and e.op == "ge" and _is(e.b, 0) and _provably_nonneg(e.a):
            return const(True)
        if isinstance(e, Binary) and e.op in ("add", "sub", "mul") and e.dtype.is_int:
            form = affine(e)
            if form is not None:
                terms, c = form
                simplified: list[tuple[dict[Expr, int], int]] = []
                for atom, n in terms.items():
                    if atom is e:  # a product of two non-constant terms: simplify inside it
                        atom = e.rebuild([simplify_index(k) for k in e.children()])
                    elif not isinstance(atom, Var):
                        atom = simplify_index(atom)
                    simplified.append(({atom: 1}, n))
                merged, extra = _recombine_divmod(merge_terms(simplified))
                return from_affine((merged, c + extra), e.dtype)
        return None
    return transform(expr, rule)


def _divmod_parts(atom: Expr) -> "tuple[str, Expr, int, int] | None":
    """`x % c` -> ('mod', x, c, 1); `x // c % d` -> ('mod', x, c*d, c) (its low digit is c); `x // c` ->
    ('div', x, c, 0), for positive constants."""
    if not (isinstance(atom, Binary) and isinstance(atom.b, Const) and atom.b.value > 0):
        return None
    if atom.op == "floordiv":
        return "div", atom.a, atom.b.value, 0
    if atom.op != "mod":
        return None
    inner = atom.a
    if isinstance(inner, Binary) and inner.op == "floordiv" and isinstance(inner.b, Const) and inner.b.value > 0:
        return "mod", inner.a, inner.b.value * atom.b.value, inner.b.value
    return "mod", inner, atom.b.value, 1


def _recombine_divmod(terms: dict[Expr, int]) -> tuple[dict[Expr, int], int]:
    """Undo index flattening: n*(x % c) + n*c*(x // c) = n*x and n*(x % c) + n*c*(x // c % d) = n*(x % (c*d))
    (floor division and modulo by positive constants, any sign of x). Weight reshapes and im2col produce these
    sums in inner loops, where each division would cost a multiply-shift sequence."""
    changed = True
    extra = 0
    while changed:
        changed = False
        parts = {atom: _divmod_parts(atom) for atom in terms}
        for low, pl in parts.items():
            if pl is None or pl[0] != "mod" or pl[3] != 1:
                continue
            n, c = terms[low], pl[2]
            for high, ph in parts.items():
                if ph is None or high is low or terms[high] != n * c or expr_key(ph[1]) != expr_key(pl[1]):
                    continue
                if ph[0] == "div" and ph[2] == c:
                    replacement: Expr = pl[1]
                elif ph[0] == "mod" and ph[3] == c:
                    replacement = Binary("mod", pl[1], Const(ph[2], pl[1].dtype), pl[1].dtype)
                else:
                    continue
                form = affine(replacement) or ({replacement: 1}, 0)
                rest = {a: k for a, k in terms.items() if a is not low and a is not high}
                terms = merge_terms([(rest, 1), (form[0], n)])
                extra += n * form[1]
                changed = True
                break
            if changed:
                break
    return terms, extra


def _provably_nonneg(e: Expr) -> bool:
    """Loop, axis and size variables are never negative, so a sum of them with non-negative weights is not."""
    form = affine(e)
    if form is None:
        return False
    terms, c = form
    return c >= 0 and all(n >= 0 and isinstance(atom, Var) for atom, n in terms.items())


def coefficient(expr: Expr, var: Var) -> "int | None":
    """The constant coefficient of `var` in `expr` if `expr` is affine in it, else None (0 when absent)."""
    from .expr import free_vars
    form = affine(expr)
    if form is None:
        return 0 if var not in free_vars(expr) else None
    terms, _ = form
    for atom, n in terms.items():
        if atom is var:
            continue
        if var in free_vars(atom):
            return None
    return terms.get(var, 0)
