"""numpy basic indexing of traced tensors (ints, slices with steps, None, Ellipsis) plus one integer-array index,
as at most one Slice, one Gather, one Squeeze and one Unsqueeze node, in that order."""
from __future__ import annotations

import operator
from typing import Any

import numpy as np

from .jit_tensor import INT64_MAX, INT64_MIN, Tensor, int64s, lift, tracing_error


def _is_array_index(entry: Any) -> bool:
    return isinstance(entry, (Tensor, np.ndarray, list))


def _expand(x: Tensor, key: Any) -> list[Any]:
    """The key as one entry per input axis plus Nones: Ellipsis expanded, missing trailing axes filled with `:`."""
    entries = list(key) if isinstance(key, tuple) else [key]
    if sum(e is Ellipsis for e in entries) > 1:
        raise tracing_error("an index can only have a single ellipsis ('...')")
    used = sum(e is not None and e is not Ellipsis for e in entries)
    if used > x.ndim:
        raise tracing_error(f"too many indices for a tensor of rank {x.ndim}: {used} were given")
    fill = [slice(None)] * (x.ndim - used)
    if Ellipsis in [e for e in entries if not _is_array_index(e)]:
        k = next(k for k, e in enumerate(entries) if e is Ellipsis)
        return entries[:k] + fill + entries[k + 1:]
    return entries + fill


def _array_index(x: Tensor, entry: Any, dim: Any) -> Tensor:
    if isinstance(entry, Tensor):
        idx = entry
    else:
        data = np.asarray(entry)
        if data.dtype == np.bool_:
            raise tracing_error("boolean mask indexing", "its result's shape depends on the data; use "
                                "ember.jnp.where(mask, x, 0) to keep the shape")
        if data.dtype.kind not in "iu":
            raise tracing_error(f"indexing with an array of {data.dtype}; indices must be integers")
        if isinstance(dim, int) and data.size and not (-dim <= data.min() and data.max() < dim):
            raise tracing_error(f"index out of range for a dimension of size {dim}")
        idx = lift(x.tracer, data.astype(np.int64))
    if idx.dtype.kind not in "iu":
        raise tracing_error(f"indexing with a {idx.dtype} tensor; indices must be integers (boolean masks are not "
                            f"supported: their result's shape depends on the data)")
    return idx


def getitem(x: Tensor, key: Any) -> Tensor:
    """`x[key]` with numpy's semantics. Several array indices, or one combined with ints it is not adjacent to,
    move axes in ways numpy itself calls surprising; ember.jit refuses those."""
    entries = _expand(x, key)
    starts: list[int] = []
    ends: list[int] = []
    axes: list[int] = []
    steps: list[int] = []
    squeeze: list[int] = []   # positions after the Gather
    unsqueeze: list[int] = []  # positions in the result
    gather: "tuple[int, Tensor] | None" = None
    advanced: list[int] = []  # entry positions of ints and the array index
    axis = pos = out = 0
    for k, e in enumerate(entries):
        if e is None:
            unsqueeze.append(out)
            out += 1
            continue
        dim = x.shape[axis]
        if _is_array_index(e):
            if gather is not None:
                raise tracing_error("indexing with more than one integer array", "index one axis at a time")
            gather = (axis, _array_index(x, e, dim))
            advanced.append(k)
            pos += gather[1].ndim
            out += gather[1].ndim
        elif isinstance(e, slice):
            step = 1 if e.step is None else operator.index(e.step)
            if step == 0:
                raise tracing_error("slice step cannot be zero")
            start = e.start if e.start is not None else (0 if step > 0 else INT64_MAX)
            stop = e.stop if e.stop is not None else (INT64_MAX if step > 0 else INT64_MIN)
            if (start, stop, step) != (0, INT64_MAX, 1):
                starts.append(operator.index(start)), ends.append(operator.index(stop))
                axes.append(axis), steps.append(step)
            pos += 1
            out += 1
        else:
            try:
                i = operator.index(e)
            except TypeError:
                raise tracing_error(f"cannot index a tensor with a {type(e).__name__}") from None
            if isinstance(dim, int) and not -dim <= i < dim:
                raise tracing_error(f"index {i} is out of bounds for axis {axis} with size {dim}")
            starts.append(i), ends.append(i + 1 if i != -1 else INT64_MAX), axes.append(axis), steps.append(1)
            squeeze.append(pos)
            advanced.append(k)
            pos += 1
        axis += 1
    if gather is not None and advanced != list(range(advanced[0], advanced[-1] + 1)):
        raise tracing_error("an integer-array index separated from integer indices by a slice or None",
                            "numpy would move the indexed axes to the front; index in two steps instead")
    t = x.tracer
    if axes:
        x = t.emit("Slice", [x, int64s(t, starts), int64s(t, ends), int64s(t, axes), int64s(t, steps)],
                   label="slice")[0]
    if gather is not None:
        x = t.emit("Gather", [x, gather[1]], {"axis": gather[0]}, "gather")[0]
    if squeeze:
        x = t.emit("Squeeze", [x, int64s(t, squeeze)], label="index")[0]
    if unsqueeze:
        x = t.emit("Unsqueeze", [x, int64s(t, unsqueeze)], label="newaxis")[0]
    return x
