"""Scalar expression nodes shared by the tensor IR and the loop IR.

Nodes are small immutable objects. Python operators build new nodes (so `a * b + 1` is an expression); `==` does too,
which is why nodes hash by identity and refuse to act as Python booleans.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Iterable, Sequence

from .dtype import DType, INDEX, as_dtype, bool_, float32, int64, promote

ARITH_OPS = ("add", "sub", "mul", "div", "floordiv", "mod", "truncdiv", "truncmod", "min", "max", "pow")
LOGIC_OPS = ("and", "or", "xor", "shl", "shr")
CMP_OPS = ("lt", "le", "gt", "ge", "eq", "ne")
BINARY_OPS = ARITH_OPS + LOGIC_OPS + CMP_OPS
# Math intrinsics; each computes in float (float16 inputs are computed in float32).
FLOAT_INTRINSICS = ("exp", "exp2", "log", "log2", "log1p", "expm1", "sqrt", "rsqrt", "sin", "cos", "tan", "tanh",
                    "sinh", "cosh", "asin", "acos", "atan", "asinh", "acosh", "atanh", "erf", "sigmoid", "floor",
                    "ceil", "round", "trunc")
ANY_INTRINSICS = ("abs", "neg", "not", "sign", "isnan", "isinf")
SYMBOLS = {"add": "+", "sub": "-", "mul": "*", "div": "/", "floordiv": "//", "mod": "%", "lt": "<", "le": "<=",
           "gt": ">", "ge": ">=", "eq": "==", "ne": "!=", "and": "&", "or": "|", "xor": "^", "shl": "<<", "shr": ">>"}


class Expr:
    """Base of all scalar expressions; every node has a `dtype`."""

    __slots__ = ("dtype",)
    __hash__ = object.__hash__

    def __bool__(self) -> bool:
        raise TypeError(f"the symbolic expression `{self}` has no Python truth value: use ember.select/where "
                        "instead of `if`, and `&`/`|` instead of `and`/`or`")

    def children(self) -> tuple["Expr", ...]:
        return ()

    def rebuild(self, kids: Sequence["Expr"]) -> "Expr":
        return self

    def __add__(self, o): return binary("add", self, o)
    def __radd__(self, o): return binary("add", o, self)
    def __sub__(self, o): return binary("sub", self, o)
    def __rsub__(self, o): return binary("sub", o, self)
    def __mul__(self, o): return binary("mul", self, o)
    def __rmul__(self, o): return binary("mul", o, self)
    def __truediv__(self, o): return binary("div", self, o)
    def __rtruediv__(self, o): return binary("div", o, self)
    def __floordiv__(self, o): return binary("floordiv", self, o)
    def __rfloordiv__(self, o): return binary("floordiv", o, self)
    def __mod__(self, o): return binary("mod", self, o)
    def __rmod__(self, o): return binary("mod", o, self)
    def __pow__(self, o): return binary("pow", self, o)
    def __rpow__(self, o): return binary("pow", o, self)
    def __and__(self, o): return binary("and", self, o)
    def __rand__(self, o): return binary("and", o, self)
    def __or__(self, o): return binary("or", self, o)
    def __ror__(self, o): return binary("or", o, self)
    def __xor__(self, o): return binary("xor", self, o)
    def __lshift__(self, o): return binary("shl", self, o)
    def __rshift__(self, o): return binary("shr", self, o)
    def __lt__(self, o): return binary("lt", self, o)
    def __le__(self, o): return binary("le", self, o)
    def __gt__(self, o): return binary("gt", self, o)
    def __ge__(self, o): return binary("ge", self, o)
    def __eq__(self, o): return binary("eq", self, o)  # type: ignore[override]
    def __ne__(self, o): return binary("ne", self, o)  # type: ignore[override]
    def __neg__(self): return call("neg", self)
    def __invert__(self): return call("not", self)
    def __abs__(self): return call("abs", self)

    def astype(self, dtype) -> "Expr":
        return cast(dtype, self)

    def __str__(self) -> str:
        from .printer import expr_str
        return expr_str(self)

    __repr__ = __str__


class Const(Expr):
    __slots__ = ("value",)

    def __init__(self, value: Any, dtype: DType):
        self.dtype = dtype
        if dtype.is_float:
            self.value = _round_float(float(value), dtype)
        elif dtype.is_bool:
            self.value = bool(value)
        else:
            self.value = int(value)


def _round_float(value: float, dtype: DType) -> float:
    """A constant holds exactly what its dtype can represent (0.1 in float16 is 0.0999755859375)."""
    if dtype.bits == 64:
        return value
    import numpy as np
    with np.errstate(over="ignore"):
        return float(np.array(value, dtype=dtype.numpy))


class Var(Expr):
    """A named scalar: a loop variable, a reduction variable or a symbolic size."""

    __slots__ = ("name",)

    def __init__(self, name: str, dtype: DType = INDEX):
        self.name = name
        self.dtype = dtype


class SizeVar(Var):
    """A symbolic dimension (`ember.var("n")`): non-negative, bound from argument shapes at call time."""

    __slots__ = ()


class Binary(Expr):
    __slots__ = ("op", "a", "b")

    def __init__(self, op: str, a: Expr, b: Expr, dtype: DType):
        self.op, self.a, self.b, self.dtype = op, a, b, dtype

    def children(self):
        return (self.a, self.b)

    def rebuild(self, kids):
        return binary(self.op, kids[0], kids[1])


class Call(Expr):
    """A math intrinsic or unary operator applied to its arguments."""

    __slots__ = ("name", "args")

    def __init__(self, name: str, args: tuple[Expr, ...], dtype: DType):
        self.name, self.args, self.dtype = name, args, dtype

    def children(self):
        return self.args

    def rebuild(self, kids):
        return call(self.name, *kids)


class Cast(Expr):
    __slots__ = ("value",)

    def __init__(self, dtype: DType, value: Expr):
        self.dtype, self.value = dtype, value

    def children(self):
        return (self.value,)

    def rebuild(self, kids):
        return cast(self.dtype, kids[0])


class Select(Expr):
    """`cond ? a : b`; only the chosen side's loads are performed, so it can guard out-of-bounds reads."""

    __slots__ = ("cond", "a", "b")

    def __init__(self, cond: Expr, a: Expr, b: Expr):
        self.cond, self.a, self.b, self.dtype = cond, a, b, a.dtype

    def children(self):
        return (self.cond, self.a, self.b)

    def rebuild(self, kids):
        return select(*kids)


def const(value: Any, dtype: "DType | str | None" = None) -> Const:
    if dtype is None:
        dtype = bool_ if isinstance(value, bool) else int64 if isinstance(value, int) else float32
    return Const(value, as_dtype(dtype))


def as_expr(value: Any, like: "DType | None" = None) -> Expr:
    """Turn a Python number into a constant; it takes the other operand's dtype (numpy's weak scalar rule)."""
    if isinstance(value, Expr):
        return value
    if hasattr(value, "as_expr"):
        return value.as_expr()
    if isinstance(value, (bool, int, float)) or type(value).__module__ == "numpy":
        if like is not None:
            if isinstance(value, float) and not like.is_float and not isinstance(value, bool):
                return const(value, float32)
            if isinstance(value, bool) or like.is_bool:
                return const(value, like if isinstance(value, bool) else int64)
            return const(value, like)
        if type(value).__module__ == "numpy":
            return const(value.item(), as_dtype(value.dtype))
        return const(value)
    raise TypeError(f"cannot use {type(value).__name__} {value!r} in an ember expression")


def _operands(a: Any, b: Any) -> tuple[Expr, Expr]:
    if isinstance(a, Expr) or hasattr(a, "as_expr"):
        a = as_expr(a)
        return a, as_expr(b, a.dtype)
    b = as_expr(b)
    return as_expr(a, b.dtype), b


def binary(op: str, a: Any, b: Any) -> Expr:
    """Build a binary node with promoted operand types, folding constants."""
    from .simplify import fold_binary
    a, b = _operands(a, b)
    if op in CMP_OPS:
        t = promote(a.dtype, b.dtype)
        a, b = cast(t, a), cast(t, b)
        out = bool_
    elif op == "div" and not (a.dtype.is_float or b.dtype.is_float):
        a, b = cast(float32, a), cast(float32, b)
        out = float32
    elif op in ("shl", "shr") and not (a.dtype.is_int and b.dtype.is_int):
        raise TypeError(f"shift needs integer operands, got {a.dtype} and {b.dtype}")
    else:
        out = promote(a.dtype, b.dtype)
        if op in ("and", "or", "xor") and out.is_float:
            raise TypeError(f"`{SYMBOLS[op]}` needs integer or bool operands, got {a.dtype} and {b.dtype}")
        a, b = cast(out, a), cast(out, b)
    return fold_binary(op, a, b, out)


def call(name: str, *args: Any) -> Expr:
    """Apply an intrinsic. Float intrinsics on integers compute in float32 (numpy would use float64)."""
    from .simplify import fold_call
    if name not in FLOAT_INTRINSICS and name not in ANY_INTRINSICS:
        raise ValueError(f"unknown intrinsic {name!r}")
    exprs = tuple(as_expr(x) for x in args)
    dtype = exprs[0].dtype
    if name in FLOAT_INTRINSICS and not dtype.is_float:
        exprs = tuple(cast(float32, x) for x in exprs)
        dtype = float32
    if name in ("isnan", "isinf"):
        dtype = bool_
    if name == "neg" and dtype.is_bool:
        raise TypeError("cannot negate a bool expression; use `~`")
    return fold_call(name, exprs, dtype)


def cast(dtype: "DType | str", value: Any) -> Expr:
    dtype = as_dtype(dtype)
    value = as_expr(value, dtype)
    if value.dtype == dtype:
        if dtype.is_float and dtype.bits == 16 and not isinstance(value, (Const, Var, Cast)):
            return round_to_half(value)  # (a Cast to float16 is already rounded)
        return value
    if isinstance(value, Const):
        return Const(_convert(value.value, dtype), dtype)
    return Cast(dtype, value)


def round_to_half(value: Expr) -> Expr:
    """Round a float16 expression (computed in float32) to float16 precision, as numpy does at this point."""
    from .dtype import float16
    return Cast(float16, Cast(float32, value))


def _convert(value: Any, dtype: DType) -> Any:
    import numpy as np
    if dtype.is_float:
        return float(np.array(value).astype(dtype.numpy))
    if dtype.is_bool:
        return bool(value)
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return 0
        value = int(value)
    return int(np.array(value).astype(dtype.numpy, casting="unsafe"))


def select(cond: Any, a: Any, b: Any) -> Expr:
    cond = as_expr(cond)
    if not cond.dtype.is_bool:
        cond = binary("ne", cond, 0)
    a, b = _operands(a, b)
    t = promote(a.dtype, b.dtype)
    a, b = cast(t, a), cast(t, b)
    if isinstance(cond, Const):
        return a if cond.value else b
    return Select(cond, a, b)


def min_(a: Any, b: Any) -> Expr:
    return binary("min", a, b)


def max_(a: Any, b: Any) -> Expr:
    return binary("max", a, b)


def all_of(conds: Iterable[Expr]) -> Expr:
    out: Expr = const(True)
    for c in conds:
        out = binary("and", out, c)
    return out


def walk(expr: Expr, visit: Callable[[Expr], None]) -> None:
    """Call `visit` on every node, parents before children."""
    stack = [expr]
    while stack:
        node = stack.pop()
        visit(node)
        stack.extend(reversed(node.children()))


def transform(expr: Expr, fn: Callable[[Expr], "Expr | None"], memo: "dict | None" = None) -> Expr:
    """Rebuild `expr` bottom-up; `fn` returns a replacement for a node or None to keep (a rebuilt copy of) it."""
    memo = {} if memo is None else memo

    def go(node: Expr) -> Expr:
        key = id(node)
        if key in memo:
            return memo[key][1]
        new = fn(node)
        if new is None:
            kids = node.children()
            new_kids = [go(k) for k in kids]
            new = node if all(x is y for x, y in zip(kids, new_kids)) else node.rebuild(new_kids)
        memo[key] = (node, new)
        return new

    return go(expr)


def substitute(expr: Expr, mapping: "dict[Var, Expr]") -> Expr:
    if not mapping:
        return expr
    return transform(expr, lambda e: mapping.get(e) if isinstance(e, Var) else None)


def expr_key(e: Expr) -> tuple:
    """A hashable key equal for structurally identical expressions (variables compare by identity; node kinds not
    listed here, such as loads, too). Lets simplification merge copies of one term built at different times."""
    if isinstance(e, Const):
        return ("const", e.dtype.name, e.value)
    if isinstance(e, Var):
        return ("var", id(e))
    if isinstance(e, Binary):
        return ("bin", e.op, e.dtype.name, expr_key(e.a), expr_key(e.b))
    if isinstance(e, Call):
        return ("call", e.name, e.dtype.name, *(expr_key(a) for a in e.args))
    if isinstance(e, Cast):
        return ("cast", e.dtype.name, expr_key(e.value))
    if isinstance(e, Select):
        return ("select", expr_key(e.cond), expr_key(e.a), expr_key(e.b))
    return ("node", id(e))


def free_vars(expr: Expr) -> set[Var]:
    out: set[Var] = set()
    walk(expr, lambda e: out.add(e) if isinstance(e, Var) else None)
    return out
