"""What `@ember.jit` traces with: `Tensor`s that stand for arrays while the user's function runs once, recording
every numpy-like operation as a graph node (ONNX semantics, opset 18) named after the user's source line.

Tensors have static shapes and dtypes but no values, so anything that needs a value (`if`, `bool()`,
`float()`, `np.asarray`) raises a TracingError that points at the offending line."""
from __future__ import annotations

import contextvars
import linecache
import os
import re
import sys
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np

from ..graph.ir import Node, Value
from ..graph.lower import infer
from ..ir.dtype import as_dtype
from ..ir.expr import Expr
from ..graph.onnx_types import ONNX_DTYPES

OPSET = 18
ONNX_CODES = {name: code for code, name in ONNX_DTYPES.items()}
INT64_MAX = np.iinfo(np.int64).max
INT64_MIN = np.iinfo(np.int64).min
# Frames of these modules are ember's (or numpy's dispatch), not the user's: locations skip them.
_INTERNAL = ("ember.frontend.", "ember.graph.", "ember.ir.", "numpy.")
Scalar = bool | int | float


class TracingError(TypeError):
    """The traced function needs something a tracer cannot give: a value known only when the compiled code runs
    (Python control flow on tensor data), or an operation ember.jit cannot express. The message names the line."""


@dataclass(frozen=True)
class Location:
    path: str
    line: int
    func: str

    @property
    def short(self) -> str:
        return f"{os.path.basename(self.path)}:{self.line}"

    def __str__(self) -> str:
        source = linecache.getline(self.path, self.line).strip()
        return f"{self.path}:{self.line} (in {self.func}{': `' + source + '`' if source else ''})"


def user_location() -> Location:
    """The innermost frame outside ember: the user's line that asked for the current operation."""
    frame = sys._getframe(1)
    while frame is not None and frame.f_globals.get("__name__", "").startswith(_INTERNAL):
        frame = frame.f_back
    if frame is None:
        return Location("<unknown>", 0, "?")
    return Location(frame.f_code.co_filename, frame.f_lineno, frame.f_code.co_name)


def tracing_error(what: str, hint: str = "") -> TracingError:
    return TracingError(f"ember.jit: {what} at {user_location()}" + (f". {hint}" if hint else ""))


_ACTIVE: contextvars.ContextVar["Tracer | None"] = contextvars.ContextVar("ember_jit_tracer", default=None)


class Tracer:
    """Collects the nodes of one trace. Each node's outputs get their dtype and shape at once (from the op's
    lowering), so the traced code can read `.shape` and shape errors surface at the user's line."""

    def __init__(self, name: str):
        self.name = name
        self.inputs: list[Value] = []
        self.nodes: list[Node] = []
        self._names: set[str] = set()

    def fresh(self, hint: str) -> str:
        base = re.sub(r"\W+", "_", hint).strip("_") or "t"
        name, k = base, 1
        while name in self._names:
            name, k = f"{base}_{k}", k + 1
        self._names.add(name)
        return name

    def input(self, name: str, dtype: np.dtype, shape: tuple) -> "Tensor":
        value = Value(self.fresh(name), as_dtype(dtype), tuple(shape))
        self.inputs.append(value)
        return Tensor(self, value)

    def const(self, data: Any, dtype: "np.dtype | None" = None) -> "Tensor":
        array = np.array(data, dtype=dtype, order="C")  # a copy: later changes to the caller's array don't leak
        if array.dtype == np.bool_:
            dt = as_dtype("bool")
        else:
            try:
                dt = as_dtype(array.dtype)
            except TypeError as err:
                raise tracing_error(f"constant of dtype {array.dtype} cannot be used", str(err)) from None
        return Tensor(self, Value(self.fresh("c"), dt, array.shape, array))

    def emit(self, op: str, inputs: Sequence["Tensor | None"], attrs: "dict[str, Any] | None" = None,
             label: str = "", outputs: int = 1) -> list["Tensor"]:
        label = label or op.lower()
        outs = [Value(self.fresh(label), as_dtype("float32"), ()) for _ in range(outputs)]
        node = Node(op, [t.value if t is not None else None for t in inputs], outs, dict(attrs or {}),
                    f"{label} at {user_location().short}", OPSET)
        for v in outs:
            v.producer = node
        infer(node)  # raises OpError naming the node, hence the user's line
        self.nodes.append(node)
        return [Tensor(self, v) for v in outs]

    def __enter__(self) -> "Tracer":
        self._token = _ACTIVE.set(self)
        return self

    def __exit__(self, *exc: Any) -> None:
        _ACTIVE.reset(self._token)


def tracer_of(*args: Any) -> Tracer:
    """The trace the arguments belong to (tensors carry theirs; plain constants need an active trace)."""
    active = _ACTIVE.get()
    for a in args:
        if isinstance(a, Tensor):
            if active is not None and a.tracer is not active:
                raise tracing_error("a tensor from another trace was used (was it stored outside the function?)")
            return a.tracer
    if active is None:
        raise tracing_error("ember.jnp functions work on traced tensors, inside an @ember.jit function")
    return active


def lift(tracer: Tracer, x: Any, dtype: "np.dtype | None" = None) -> "Tensor":
    """A tensor for `x`: tensors are cast to `dtype` if given, arrays and Python numbers become constants."""
    if isinstance(x, Tensor):
        return x if dtype is None or x.dtype == dtype else x.astype(dtype)
    if isinstance(x, (np.ndarray, np.generic, bool, int, float, list, tuple)):
        return tracer.const(x, dtype)
    raise tracing_error(f"cannot use a {type(x).__name__} as a tensor")


def weak_dtype(x: Any) -> "np.dtype | Scalar":
    """What numpy's promotion sees: the dtype of tensors and arrays, Python scalars as themselves (weak)."""
    if isinstance(x, (Tensor, np.ndarray, np.generic)):
        return x.dtype
    if isinstance(x, (bool, int, float)):
        return x
    return np.asarray(x).dtype


def result_dtype(*xs: Any) -> np.dtype:
    return np.result_type(*[weak_dtype(x) for x in xs])


def promoted(*xs: Any, dtype: "np.dtype | None" = None) -> list["Tensor"]:
    """The operands as tensors of their common (numpy-promoted) dtype, or of `dtype`."""
    tracer = tracer_of(*xs)
    dt = dtype if dtype is not None else result_dtype(*xs)
    return [lift(tracer, x, dt) for x in xs]


def apply(op: str, *xs: Any, attrs: "dict[str, Any] | None" = None, dtype: "np.dtype | None" = None,
          label: str = "") -> "Tensor":
    """One node over the promoted operands."""
    ins = promoted(*xs, dtype=dtype)
    return ins[0].tracer.emit(op, ins, attrs, label)[0]


def int64s(tracer: Tracer, values: Sequence[int]) -> "Tensor":
    return tracer.const(np.asarray(values, dtype=np.int64).reshape(len(values)))


def _binary(op: str, label: str, swap: bool = False):
    def method(self: "Tensor", other: Any) -> "Tensor":
        if not isinstance(other, (Tensor, np.ndarray, np.generic, bool, int, float)):
            return NotImplemented
        a, b = (other, self) if swap else (self, other)
        return apply(op, a, b, label=label)
    return method


def _numpy_operator(name: str, swap: bool = False):
    """An operator whose numpy meaning differs from its ONNX op (true and floor division, remainder): the
    `ember.jnp` function of that name."""
    def method(self: "Tensor", other: Any) -> "Tensor":
        fn = getattr(jnp, name)
        return fn(other, self) if swap else fn(self, other)
    return method


def _compare(op: str, label: str, negate: bool = False):
    def method(self: "Tensor", other: Any) -> "Tensor":
        if not isinstance(other, (Tensor, np.ndarray, np.generic, bool, int, float)):
            return NotImplemented
        out = apply(op, self, other, label=label)
        return out.tracer.emit("Not", [out], label=label)[0] if negate else out
    return method


class Tensor:
    """A traced array. Operators and methods follow numpy (broadcasting, promotion with Python scalars as weak
    types); `.shape` holds ints and symbolic sizes, `.dtype` is a numpy dtype."""

    __array_priority__ = 1000

    def __init__(self, tracer: Tracer, value: Value):
        self.tracer, self.value = tracer, value

    # ---- static facts -------------------------------------------------------------------------------------------
    @property
    def shape(self) -> tuple:
        return tuple(self.value.shape)

    @property
    def ndim(self) -> int:
        return len(self.value.shape)

    @property
    def dtype(self) -> np.dtype:
        return self.value.dtype.numpy

    @property
    def size(self) -> "int | Expr":
        n: Any = 1
        for d in self.shape:
            n = n * d
        return n

    def __repr__(self) -> str:
        return f"<traced {self.value.dtype}[{', '.join(map(str, self.shape))}] %{self.value.name}>"

    def __len__(self) -> int:
        if not self.shape:
            raise tracing_error("len() of a 0-d tensor")
        if not isinstance(self.shape[0], int):
            raise tracing_error(f"len() of a tensor whose first dimension is the symbolic size {self.shape[0]}",
                                "use `x.shape[0]`, which stays symbolic")
        return self.shape[0]

    # ---- what needs values: refused -------------------------------------------------------------------------------
    def _no_value(self, what: str) -> TracingError:
        return tracing_error(f"{what} of a traced tensor {self!r}",
                             "Inside an @ember.jit function tensors have shapes and dtypes but no values yet; "
                             "use ember.jnp.where(cond, a, b) instead of Python `if` on tensor data, or pass the "
                             "value as a non-array (static) argument")

    def __bool__(self) -> bool:
        raise self._no_value("the Python truth value (`if`, `and`, `or`, `bool()`)")

    def __float__(self) -> float:
        raise self._no_value("float()")

    def __int__(self) -> int:
        raise self._no_value("int()")

    def __index__(self) -> int:
        raise self._no_value("use as a Python index")

    def __iter__(self) -> Iterator["Tensor"]:
        raise self._no_value("iteration")

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        raise self._no_value("conversion to a numpy array (np.asarray / np.array)")

    def item(self) -> Any:
        raise self._no_value("item()")

    def tolist(self) -> Any:
        raise self._no_value("tolist()")

    def __setitem__(self, key: Any, value: Any) -> None:
        raise tracing_error("item assignment to a traced tensor",
                            "traced tensors are immutable; build the result with ember.jnp.where or concatenate")

    # ---- numpy interop: np.exp(t), np.sum(t), ndarray + t dispatch to ember.jnp -------------------------------------
    def __array_ufunc__(self, ufunc: np.ufunc, method: str, *inputs: Any, **kwargs: Any) -> Any:
        fn = getattr(jnp, ufunc.__name__, None) if ufunc.__name__ in jnp.__all__ else None
        if method != "__call__" or kwargs or fn is None:
            raise tracing_error(f"numpy ufunc {ufunc.__name__}{'.' + method if method != '__call__' else ''}"
                                f"{' with ' + ', '.join(kwargs) if kwargs else ''} is not supported on traced "
                                f"tensors", "see ember.jnp for what ember.jit can trace")
        return fn(*inputs)

    def __array_function__(self, func: Any, types: Any, args: Any, kwargs: Any) -> Any:
        if func.__name__ not in jnp.__all__:
            raise tracing_error(f"numpy.{func.__name__} is not supported on traced tensors",
                                "see ember.jnp for what ember.jit can trace")
        return getattr(jnp, func.__name__)(*args, **kwargs)

    # ---- operators ------------------------------------------------------------------------------------------------
    __add__, __radd__ = _binary("Add", "add"), _binary("Add", "add", swap=True)
    __sub__, __rsub__ = _binary("Sub", "sub"), _binary("Sub", "sub", swap=True)
    __mul__, __rmul__ = _binary("Mul", "mul"), _binary("Mul", "mul", swap=True)
    __pow__, __rpow__ = _binary("Pow", "pow"), _binary("Pow", "pow", swap=True)
    __and__, __rand__ = _binary("And", "and"), _binary("And", "and", swap=True)
    __or__, __ror__ = _binary("Or", "or"), _binary("Or", "or", swap=True)
    __xor__, __rxor__ = _binary("Xor", "xor"), _binary("Xor", "xor", swap=True)
    __lt__, __le__ = _compare("Less", "less"), _compare("LessOrEqual", "less_equal")
    __gt__, __ge__ = _compare("Greater", "greater"), _compare("GreaterOrEqual", "greater_equal")
    __eq__ = _compare("Equal", "equal")  # type: ignore[assignment]
    __ne__ = _compare("Equal", "not_equal", negate=True)  # type: ignore[assignment]

    __truediv__, __rtruediv__ = _numpy_operator("divide"), _numpy_operator("divide", swap=True)
    __floordiv__, __rfloordiv__ = _numpy_operator("floor_divide"), _numpy_operator("floor_divide", swap=True)
    __mod__, __rmod__ = _numpy_operator("remainder"), _numpy_operator("remainder", swap=True)

    def __matmul__(self, other: Any) -> "Tensor":
        return apply("MatMul", self, other, label="matmul")

    def __rmatmul__(self, other: Any) -> "Tensor":
        return apply("MatMul", other, self, label="matmul")

    def __neg__(self) -> "Tensor":
        return self.tracer.emit("Neg", [self], label="neg")[0]

    def __pos__(self) -> "Tensor":
        return self

    def __abs__(self) -> "Tensor":
        return self.tracer.emit("Abs", [self], label="abs")[0]

    def __invert__(self) -> "Tensor":
        if self.dtype != np.bool_:
            raise tracing_error(f"`~` on a {self.dtype} tensor", "ember.jit supports `~` on bool tensors only")
        return self.tracer.emit("Not", [self], label="not")[0]

    def __getitem__(self, key: Any) -> "Tensor":
        return jit_index.getitem(self, key)

    # ---- methods --------------------------------------------------------------------------------------------------
    def astype(self, dtype: Any) -> "Tensor":
        try:
            dt = as_dtype(np.dtype(dtype))
        except TypeError as err:
            raise tracing_error(f"astype({dtype!r})", str(err)) from None
        if dt == self.value.dtype:
            return self
        return self.tracer.emit("Cast", [self], {"to": ONNX_CODES[dt.name]}, label="cast")[0]

    def reshape(self, *shape: Any) -> "Tensor":
        return jnp.reshape(self, shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape)

    def flatten(self) -> "Tensor":
        return self.reshape(-1)

    def transpose(self, *axes: Any) -> "Tensor":
        return jnp.transpose(self, axes[0] if len(axes) == 1 and isinstance(axes[0], (tuple, list)) else
                             axes or None)

    @property
    def T(self) -> "Tensor":  # noqa: N802 - numpy's name
        return self.transpose()

    def sum(self, axis: Any = None, keepdims: bool = False) -> "Tensor":
        return jnp.sum(self, axis, keepdims=keepdims)

    def mean(self, axis: Any = None, keepdims: bool = False) -> "Tensor":
        return jnp.mean(self, axis, keepdims=keepdims)

    def max(self, axis: Any = None, keepdims: bool = False) -> "Tensor":
        return jnp.max(self, axis, keepdims=keepdims)

    def min(self, axis: Any = None, keepdims: bool = False) -> "Tensor":
        return jnp.min(self, axis, keepdims=keepdims)

    def argmax(self, axis: "int | None" = None, keepdims: bool = False) -> "Tensor":
        return jnp.argmax(self, axis, keepdims=keepdims)

    def argmin(self, axis: "int | None" = None, keepdims: bool = False) -> "Tensor":
        return jnp.argmin(self, axis, keepdims=keepdims)


from . import jit_index, jnp  # noqa: E402 - the methods delegate to these, which build on this module
