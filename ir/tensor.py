"""The tensor-level IR: placeholders and compute definitions, TVM-TE style, usable directly by users."""
from __future__ import annotations

import inspect
from typing import Any, Callable, Sequence

from .dtype import DType, INDEX, as_dtype, bool_, int64
from .expr import Const, Expr, SizeVar, Var, as_expr, binary, call, cast, const, select, walk
from .symbolic import shape_expr


class IRError(ValueError):
    """A malformed tensor-IR definition (wrong index count, misplaced reduction, ...)."""


class IterVar:
    """An axis of a compute: `kind` is 'spatial' or 'reduce'; its domain is [0, extent)."""

    __slots__ = ("var", "extent", "kind")
    __hash__ = object.__hash__

    def __init__(self, var: Var, extent: Expr, kind: str):
        self.var, self.extent, self.kind = var, extent, kind

    @property
    def name(self) -> str:
        return self.var.name

    def as_expr(self) -> Var:
        return self.var

    def __repr__(self) -> str:
        return f"IterVar({self.name}, 0:{self.extent}, {self.kind})"

    # An IterVar used in arithmetic behaves as its variable.
    def __add__(self, o): return self.var + o
    def __radd__(self, o): return o + self.var
    def __sub__(self, o): return self.var - o
    def __rsub__(self, o): return o - self.var
    def __mul__(self, o): return self.var * o
    def __rmul__(self, o): return o * self.var
    def __floordiv__(self, o): return self.var // o
    def __mod__(self, o): return self.var % o
    def __lt__(self, o): return self.var < o
    def __le__(self, o): return self.var <= o
    def __gt__(self, o): return self.var > o
    def __ge__(self, o): return self.var >= o


class Operation:
    """Produces one or more tensors; `name` is the user's name, shown in errors and dumps."""

    name: str
    outputs: tuple["Tensor", ...]

    def input_tensors(self) -> list["Tensor"]:
        return []


class Tensor:
    """A multi-dimensional value; indexing it with expressions reads an element inside a compute."""

    __hash__ = object.__hash__

    def __init__(self, op: Operation, value_index: int, shape: tuple[Expr, ...], dtype: DType):
        self.op, self.value_index, self.shape, self.dtype = op, value_index, shape, dtype

    @property
    def name(self) -> str:
        return self.op.name if len(self.op.outputs) == 1 else f"{self.op.name}.v{self.value_index}"

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __getitem__(self, indices: Any) -> "TensorRead":
        if not isinstance(indices, tuple):
            indices = (indices,)
        if len(indices) != self.ndim:
            raise IRError(f"tensor {self.name!r} has {self.ndim} dimensions but was indexed with {len(indices)}")
        exprs = []
        for i in indices:
            e = as_expr(i, INDEX)
            if not e.dtype.is_int:
                raise IRError(f"tensor {self.name!r} indexed with non-integer expression {e} ({e.dtype})")
            exprs.append(cast(INDEX, e))
        return TensorRead(self, tuple(exprs))

    def __repr__(self) -> str:
        dims = ", ".join(str(d) for d in self.shape)
        return f"Tensor({self.name}, [{dims}], {self.dtype})"


class TensorRead(Expr):
    __slots__ = ("tensor", "indices")

    def __init__(self, tensor: Tensor, indices: tuple[Expr, ...]):
        self.tensor, self.indices, self.dtype = tensor, indices, tensor.dtype

    def children(self):
        return self.indices

    def rebuild(self, kids):
        return TensorRead(self.tensor, tuple(kids))


REDUCERS = ("sum", "prod", "max", "min", "argmax", "argmin")


class Reduce(Expr):
    """A commutative reduction over `axes`. argmax/argmin carry (index, value) sources and produce the one at
    `value_index`; ties resolve to the first index, as numpy does."""

    __slots__ = ("combiner", "sources", "axes", "where", "value_index")

    def __init__(self, combiner: str, sources: tuple[Expr, ...], axes: tuple[IterVar, ...], where: Expr,
                 value_index: int = 0):
        self.combiner, self.sources, self.axes, self.where = combiner, sources, axes, where
        self.value_index, self.dtype = value_index, sources[value_index].dtype

    def children(self):
        return self.sources + (self.where,)

    def rebuild(self, kids):
        return Reduce(self.combiner, tuple(kids[:-1]), self.axes, kids[-1], self.value_index)


def identity_element(combiner: str, dtype: DType) -> Const:
    if combiner == "sum":
        return const(0, dtype)
    if combiner == "prod":
        return const(1, dtype)
    import numpy as np
    if combiner in ("max", "argmax"):
        v = -np.inf if dtype.is_float else (False if dtype.is_bool else np.iinfo(dtype.numpy).min)
    else:
        v = np.inf if dtype.is_float else (True if dtype.is_bool else np.iinfo(dtype.numpy).max)
    return const(v, dtype)


class PlaceholderOp(Operation):
    def __init__(self, name: str, shape: tuple[Expr, ...], dtype: DType):
        self.name = name
        self.outputs = (Tensor(self, 0, shape, dtype),)


# Compute tag: the stage is stored once rather than inlined into its readers (a layout transform such as im2col, or
# a step that its reader reads several times, where inlining would multiply the work).
MATERIALIZE = "materialize"


class ComputeOp(Operation):
    def __init__(self, name: str, axis: tuple[IterVar, ...], body: tuple[Expr, ...], tag: str = ""):
        self.name, self.axis, self.body, self.tag = name, axis, body, tag
        first = body[0]
        self.reduce_axis: tuple[IterVar, ...] = first.axes if isinstance(first, Reduce) else ()
        shape = tuple(iv.extent for iv in axis)
        self.outputs = tuple(Tensor(self, i, shape, b.dtype) for i, b in enumerate(body))

    def input_tensors(self) -> list[Tensor]:
        seen: dict[int, Tensor] = {}

        def visit(e: Expr) -> None:
            if isinstance(e, TensorRead) and id(e.tensor) not in seen:
                seen[id(e.tensor)] = e.tensor

        for b in self.body:
            walk(b, visit)
        for iv in self.reduce_axis:
            walk(iv.extent, visit)
        return list(seen.values())


def _shape(shape: Any) -> tuple[Expr, ...]:
    if isinstance(shape, (int, Expr)) or hasattr(shape, "as_expr"):
        shape = (shape,)
    return tuple(shape_expr(d) for d in shape)


def placeholder(shape: Any, dtype: "DType | str" = "float32", name: str = "placeholder") -> Tensor:
    """An input tensor of the kernel."""
    return PlaceholderOp(name, _shape(shape), as_dtype(dtype)).outputs[0]


def var(name: str) -> SizeVar:
    """A symbolic dimension: one compiled kernel serves every size bound to it at call time."""
    return SizeVar(name, int64)


def reduce_axis(extent: Any, name: str = "k") -> IterVar:
    """A reduction axis over [0, extent)."""
    return IterVar(Var(name, INDEX), shape_expr(extent), "reduce")


def compute(shape: Any, fcompute: Callable[..., Any], name: str = "compute", tag: str = "",
            axis_names: "Sequence[str] | None" = None) -> "Tensor | tuple":
    """Define a tensor element-wise: `fcompute(*indices)` returns its value (or a tuple for multi-output).
    Loop variables take the names of fcompute's parameters (or `axis_names`), which dumps and schedules show."""
    dims = _shape(shape)
    try:
        params = list(inspect.signature(fcompute).parameters)
    except (TypeError, ValueError):
        params = []
    if axis_names is not None:
        params = list(axis_names)
    elif len(params) != len(dims) or any(inspect.signature(fcompute).parameters[p].kind.name.startswith("VAR")
                                         for p in params):
        params = [f"i{k}" for k in range(len(dims))]
    axis = tuple(IterVar(Var(p, INDEX), d, "spatial") for p, d in zip(params, dims))
    value = fcompute(*[iv.var for iv in axis])
    body = tuple(as_expr(v) for v in value) if isinstance(value, (tuple, list)) else (as_expr(value),)
    _check_body(name, body)
    op = ComputeOp(name, axis, body, tag)
    return op.outputs if len(op.outputs) > 1 else op.outputs[0]


def _check_body(name: str, body: tuple[Expr, ...]) -> None:
    reduces = [isinstance(b, Reduce) for b in body]
    nested: list[Expr] = []
    for b in body:
        for kid in b.children():
            walk(kid, lambda e: nested.append(e) if isinstance(e, Reduce) else None)
    if nested:
        raise IRError(f"compute {name!r}: a reduction must be the whole body of a compute (found one nested "
                      f"inside an expression); compute the reduction in its own stage and use it from a second")
    if any(reduces) and not all(reduces):
        raise IRError(f"compute {name!r}: a multi-output compute must be all reductions or none")
    if any(reduces):
        first = body[0]
        for b in body[1:]:
            if b.combiner != first.combiner or b.axes != first.axes or b.sources is not first.sources:
                raise IRError(f"compute {name!r}: the outputs of a multi-output reduction must come from one "
                              f"tuple reduction such as argmax")


def _axes(axis: Any) -> tuple[IterVar, ...]:
    axes = tuple(axis) if isinstance(axis, (list, tuple)) else (axis,)
    for a in axes:
        if not isinstance(a, IterVar) or a.kind != "reduce":
            raise IRError(f"reduction axis must come from ember.reduce_axis, got {a!r}")
    return axes


def _reduce(combiner: str, expr: Any, axis: Any, where: Any) -> Reduce:
    expr = as_expr(expr)
    cond = const(True) if where is None else as_expr(where)
    if not cond.dtype.is_bool:
        raise IRError(f"reduction `where` must be a bool expression, got {cond.dtype}")
    return Reduce(combiner, (expr,), _axes(axis), cond)


def sum(expr: Any, axis: Any, where: Any = None) -> Reduce:  # noqa: A001 - mirrors numpy/TVM naming
    return _reduce("sum", expr, axis, where)


def prod(expr: Any, axis: Any, where: Any = None) -> Reduce:
    return _reduce("prod", expr, axis, where)


def max(expr: Any, axis: Any, where: Any = None) -> Reduce:  # noqa: A001
    return _reduce("max", expr, axis, where)


def min(expr: Any, axis: Any, where: Any = None) -> Reduce:  # noqa: A001
    return _reduce("min", expr, axis, where)


def _arg(combiner: str, expr: Any, axis: IterVar, where: Any) -> tuple[Reduce, Reduce]:
    axes = _axes(axis)
    if len(axes) != 1:
        raise IRError(f"{combiner} reduces over exactly one axis")
    value = as_expr(expr)
    cond = const(True) if where is None else as_expr(where)
    sources = (axes[0].var, value)
    return Reduce(combiner, sources, axes, cond, 0), Reduce(combiner, sources, axes, cond, 1)


def argmax(expr: Any, axis: IterVar, where: Any = None) -> tuple[Reduce, Reduce]:
    """A tuple reduction: use as `idx, val = compute(shape, lambda i: argmax(A[i, k], k))`."""
    return _arg("argmax", expr, axis, where)


def argmin(expr: Any, axis: IterVar, where: Any = None) -> tuple[Reduce, Reduce]:
    return _arg("argmin", expr, axis, where)


def where(cond: Any, a: Any, b: Any) -> Expr:
    return select(cond, a, b)


def _intrinsic(name: str) -> Callable[[Any], Expr]:
    def fn(x: Any) -> Expr:
        return call(name, x)
    fn.__name__ = name
    fn.__doc__ = f"Element-wise `{name}`."
    return fn


exp, exp2, log, log2, log1p, expm1 = (_intrinsic(n) for n in ("exp", "exp2", "log", "log2", "log1p", "expm1"))
sqrt, rsqrt, tanh, erf, sigmoid = (_intrinsic(n) for n in ("sqrt", "rsqrt", "tanh", "erf", "sigmoid"))
sin, cos, tan, sinh, cosh = (_intrinsic(n) for n in ("sin", "cos", "tan", "sinh", "cosh"))
asin, acos, atan, asinh, acosh, atanh = (_intrinsic(n) for n in ("asin", "acos", "atan", "asinh", "acosh", "atanh"))
floor, ceil, round, trunc = (_intrinsic(n) for n in ("floor", "ceil", "round", "trunc"))  # noqa: A001
abs, sign, isnan, isinf = (_intrinsic(n) for n in ("abs", "sign", "isnan", "isinf"))  # noqa: A001


def pow(a: Any, b: Any) -> Expr:  # noqa: A001
    return binary("pow", a, b)


def maximum(a: Any, b: Any) -> Expr:
    return binary("max", a, b)


def minimum(a: Any, b: Any) -> Expr:
    return binary("min", a, b)


def truncdiv(a: Any, b: Any) -> Expr:
    """Integer division rounding toward zero (C semantics); `//` rounds toward -inf (numpy semantics)."""
    return binary("truncdiv", a, b)


def truncmod(a: Any, b: Any) -> Expr:
    return binary("truncmod", a, b)


def logical_and(a: Any, b: Any) -> Expr:
    return binary("and", cast(bool_, a), cast(bool_, b))


def logical_or(a: Any, b: Any) -> Expr:
    return binary("or", cast(bool_, a), cast(bool_, b))


def logical_not(a: Any) -> Expr:
    return call("not", cast(bool_, a))
