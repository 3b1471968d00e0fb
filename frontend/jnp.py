"""`ember.jnp`: numpy-like functions for `@ember.jit` functions. Each records graph nodes on the traced tensors
it is given (numpy arrays and Python numbers become constants); numpy's own functions (`np.exp(t)`,
`np.sum(t, axis=0)`, `ndarray + t`) dispatch here too. Results follow numpy's dtype rules where ONNX differs
(true division and float math on integers give float64, sums of small integers int64)."""
from __future__ import annotations

import builtins
import operator
from typing import Any, Sequence

import numpy as np

from .jit_tensor import Tensor, apply, int64s, lift, promoted, result_dtype, tracer_of, tracing_error

__all__ = ["abs", "absolute", "add", "argmax", "argmin", "astype", "broadcast_to", "ceil", "clip", "concatenate",
           "cos", "divide", "equal", "erf", "exp", "expand_dims", "floor", "floor_divide", "greater", "greater_equal",
           "less", "less_equal", "log", "log_softmax", "logical_and", "logical_not", "logical_or", "logical_xor",
           "matmul", "max", "maximum", "mean", "min", "minimum", "multiply", "negative", "not_equal", "power", "relu",
           "remainder", "reshape", "sigmoid", "sign", "sin", "softmax", "sqrt", "squeeze", "stack", "subtract", "sum",
           "tanh", "transpose", "where"]

F64 = np.dtype("float64")


def _float(x: Any) -> Tensor:
    """`x` as a float tensor: numpy computes float math on integers and bools in float64."""
    t = lift(tracer_of(x), x)
    return t if t.dtype.kind == "f" else t.astype(F64)


def _unary(op: str, floats: bool):
    label = op.lower()

    def fn(x: Any) -> Tensor:
        t = _float(x) if floats else lift(tracer_of(x), x)
        return t.tracer.emit(op, [t], label=label)[0]
    fn.__name__ = fn.__qualname__ = label
    fn.__doc__ = f"Elementwise ONNX {op}{' (integers are computed in float64, as numpy does)' if floats else ''}."
    return fn


exp, log, tanh, sqrt = (_unary(op, True) for op in ("Exp", "Log", "Tanh", "Sqrt"))
sin, cos, erf, sigmoid = (_unary(op, True) for op in ("Sin", "Cos", "Erf", "Sigmoid"))
floor, ceil = _unary("Floor", True), _unary("Ceil", True)
abs, sign, relu, negative = (_unary(op, False) for op in ("Abs", "Sign", "Relu", "Neg"))  # noqa: A001
absolute = abs


def _binary(op: str, label: str, name: str, dtype: "np.dtype | None" = None):
    """numpy's `name(x, y)` as the ONNX op `op` over the promoted operands (or over `dtype`)."""
    def fn(x: Any, y: Any) -> Tensor:
        return apply(op, x, y, dtype=dtype, label=label)
    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"Elementwise ONNX {op} with numpy broadcasting."
    return fn


add = _binary("Add", "add", "add")
subtract = _binary("Sub", "sub", "subtract")
multiply = _binary("Mul", "mul", "multiply")
power, matmul = _binary("Pow", "pow", "power"), _binary("MatMul", "matmul", "matmul")
maximum, minimum = _binary("Max", "maximum", "maximum"), _binary("Min", "minimum", "minimum")
equal, less, greater = (_binary(op, name, name) for op, name in (("Equal", "equal"), ("Less", "less"),
                                                                  ("Greater", "greater")))
less_equal = _binary("LessOrEqual", "less_equal", "less_equal")
greater_equal = _binary("GreaterOrEqual", "greater_equal", "greater_equal")
logical_and, logical_or, logical_xor = (_binary(op, op.lower(), f"logical_{op.lower()}", np.dtype(bool))
                                        for op in ("And", "Or", "Xor"))


def divide(x: Any, y: Any) -> Tensor:
    """True division: integer operands divide in float64 (ONNX Div would truncate)."""
    dt = result_dtype(x, y)
    return apply("Div", x, y, dtype=dt if dt.kind == "f" else F64, label="div")


def floor_divide(x: Any, y: Any) -> Tensor:
    """numpy's `//`: rounds toward minus infinity (ONNX Div truncates integers toward zero)."""
    a, b = promoted(x, y)
    if a.dtype.kind == "f":
        return floor(apply("Div", a, b, label="floordiv"))
    return apply("Div", a - remainder(a, b), b, label="floordiv")


def remainder(x: Any, y: Any) -> Tensor:
    """numpy's `%`: the result takes the divisor's sign."""
    a, b = promoted(x, y)
    if a.dtype.kind == "f":
        return a - floor_divide(a, b) * b
    return apply("Mod", a, b, attrs={"fmod": 0}, label="mod")


def not_equal(x: Any, y: Any) -> Tensor:
    return logical_not(equal(x, y))


def logical_not(x: Any) -> Tensor:
    return apply("Not", x, dtype=np.dtype(bool), label="not")


def where(condition: Any, x: Any, y: Any) -> Tensor:
    """`x` where `condition` holds, else `y`: the traced replacement for `if` on tensor values."""
    tracer = tracer_of(condition, x, y)
    cond = lift(tracer, condition, np.dtype(bool))
    a, b = promoted(x, y)
    return tracer.emit("Where", [cond, a, b], label="where")[0]


def clip(a: Any, a_min: Any = None, a_max: Any = None) -> Tensor:
    bounds = [b for b in (a_min, a_max) if b is not None]
    ins = promoted(a, *bounds)
    lo = ins[1] if a_min is not None else None
    hi = ins[-1] if a_max is not None else None
    return ins[0].tracer.emit("Clip", [ins[0], lo, hi], label="clip")[0]


def astype(x: Any, dtype: Any) -> Tensor:
    return lift(tracer_of(x), x).astype(dtype)


# ---- reductions ---------------------------------------------------------------------------------------------------
def _axes(axis: Any) -> "tuple[int, ...] | None":
    if axis is None:
        return None
    return (operator.index(axis),) if not isinstance(axis, (tuple, list)) else tuple(map(operator.index, axis))


def _reduce(op: str, x: Tensor, axis: Any, keepdims: bool, label: str) -> Tensor:
    axes = _axes(axis)
    if axes == ():
        return x
    ins = [x] if axes is None else [x, int64s(x.tracer, axes)]
    return x.tracer.emit(op, ins, {"keepdims": int(keepdims)}, label)[0]


def sum(a: Any, axis: Any = None, keepdims: bool = False) -> Tensor:  # noqa: A001 - numpy's name
    """Sum over `axis` (all axes when None); bools and integers sum in int64, as numpy does."""
    x = lift(tracer_of(a), a)
    if x.dtype.kind in "biu" and x.dtype != np.int64:
        x = x.astype(np.int64)
    return _reduce("ReduceSum", x, axis, keepdims, "sum")


def mean(a: Any, axis: Any = None, keepdims: bool = False) -> Tensor:
    return _reduce("ReduceMean", _float(a), axis, keepdims, "mean")


def max(a: Any, axis: Any = None, keepdims: bool = False) -> Tensor:  # noqa: A001
    return _reduce("ReduceMax", lift(tracer_of(a), a), axis, keepdims, "max")


def min(a: Any, axis: Any = None, keepdims: bool = False) -> Tensor:  # noqa: A001
    return _reduce("ReduceMin", lift(tracer_of(a), a), axis, keepdims, "min")


def _arg(op: str, a: Any, axis: "int | None", keepdims: bool) -> Tensor:
    x = lift(tracer_of(a), a)
    if axis is None:  # numpy: the index into the flattened array
        out = x.tracer.emit(op, [reshape(x, (-1,))], {"axis": 0, "keepdims": 0}, op.lower())[0]
        return reshape(out, (1,) * x.ndim) if keepdims else out
    return x.tracer.emit(op, [x], {"axis": operator.index(axis), "keepdims": int(keepdims)}, op.lower())[0]


def argmax(a: Any, axis: "int | None" = None, keepdims: bool = False) -> Tensor:
    return _arg("ArgMax", a, axis, keepdims)


def argmin(a: Any, axis: "int | None" = None, keepdims: bool = False) -> Tensor:
    return _arg("ArgMin", a, axis, keepdims)


def softmax(x: Any, axis: int = -1) -> Tensor:
    t = _float(x)
    return t.tracer.emit("Softmax", [t], {"axis": operator.index(axis)}, "softmax")[0]


def log_softmax(x: Any, axis: int = -1) -> Tensor:
    """Computed as `s - log(sum(exp(s)))` with `s = x - max(x)`, which cannot overflow."""
    s = _float(x)
    s = s - max(s, axis, keepdims=True)
    return s - log(sum(exp(s), axis, keepdims=True))


# ---- shapes -------------------------------------------------------------------------------------------------------
def _static_or_kept(x: Tensor, shape: Sequence[Any], kept: int, what: str) -> list[int]:
    """ONNX shape operands are constants, so a symbolic size can only appear where the input has that very size
    (aligned as ONNX aligns it); it is written there as `kept` (0 for Reshape: copy, 1 for Expand: keep)."""
    out = []
    offset = len(shape) - x.ndim if kept == 1 else 0
    for k, d in enumerate(shape):
        if isinstance(d, (int, np.integer)):
            out.append(int(d))
            continue
        j = k - offset
        if not (0 <= j < x.ndim) or str(x.shape[j]) != str(d):
            raise tracing_error(f"{what} to the symbolic size {d} at position {k}, where the input does not have it",
                                "ember.jit keeps a symbolic size only in its own position; use -1 to infer it")
        out.append(kept)
    return out


def reshape(a: Any, newshape: Any) -> Tensor:
    x = lift(tracer_of(a), a)
    shape = [newshape] if isinstance(newshape, (int, np.integer)) else list(newshape)
    if any(isinstance(d, (int, np.integer)) and d == 0 for d in shape):
        raise tracing_error(f"reshape to {tuple(shape)}: ember.jit does not reshape to size-0 dimensions")
    dims = _static_or_kept(x, shape, 0, "reshape")
    return x.tracer.emit("Reshape", [x, int64s(x.tracer, dims)], label="reshape")[0]


def transpose(a: Any, axes: "Sequence[int] | None" = None) -> Tensor:
    x = lift(tracer_of(a), a)
    perm = list(range(x.ndim))[::-1] if axes is None else [operator.index(p) % builtins.max(x.ndim, 1) for p in axes]
    return x.tracer.emit("Transpose", [x], {"perm": perm}, "transpose")[0]


def squeeze(a: Any, axis: Any = None) -> Tensor:
    x = lift(tracer_of(a), a)
    axes = _axes(axis)
    if axes is None:
        axes = tuple(k for k, d in enumerate(x.shape) if isinstance(d, int) and d == 1)
    return x.tracer.emit("Squeeze", [x, int64s(x.tracer, axes)], label="squeeze")[0]


def expand_dims(a: Any, axis: Any) -> Tensor:
    x = lift(tracer_of(a), a)
    return x.tracer.emit("Unsqueeze", [x, int64s(x.tracer, _axes(axis) or ())], label="expand_dims")[0]


def broadcast_to(array: Any, shape: Any) -> Tensor:
    x = lift(tracer_of(array), array)
    shape = [shape] if isinstance(shape, (int, np.integer)) else list(shape)
    dims = _static_or_kept(x, shape, 1, "broadcast_to")
    return x.tracer.emit("Expand", [x, int64s(x.tracer, dims)], label="broadcast_to")[0]


def concatenate(arrays: Sequence[Any], axis: int = 0) -> Tensor:
    if not arrays:
        raise tracing_error("concatenate of no arrays")
    ins = promoted(*arrays)
    return ins[0].tracer.emit("Concat", ins, {"axis": operator.index(axis)}, "concatenate")[0]


def stack(arrays: Sequence[Any], axis: int = 0) -> Tensor:
    if not arrays:
        raise tracing_error("stack of no arrays")
    ins = promoted(*arrays)
    return concatenate([expand_dims(t, axis) for t in ins], axis)
