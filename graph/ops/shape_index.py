"""Indexed data movement: gathers and scatters, one-hot, sequence reversal, compress, eye and triangle masks.
Indices read from tensors may be negative (they wrap) and are clamped before any load, so a bad index can never
read outside a buffer; the numpy folders reject out-of-range indices instead."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ... import ir as E
from ...ir.expr import Expr, const
from ...ir.tensor import Tensor, compute, reduce_axis
from ..registry import OpContext, register
from .common import as_int_dims, normalize_axis
from .shape import index_as_int64, ints, product, unravel, wrap_index


def wrapped(ctx: OpContext, idx: np.ndarray, dim: int, what: str = "indices") -> np.ndarray:
    """Numpy indices with negatives wrapped; an error when one is out of range."""
    idx = idx.astype(np.int64)
    if idx.size and (idx.min() < -dim or idx.max() >= dim):
        raise ctx.error(f"{what} must lie in [{-dim}, {dim - 1}], got values from {idx.min()} to {idx.max()}")
    return np.where(idx < 0, idx + dim, idx)


# ----------------------------------------------------------------------------------------------- gathers

def gather_fold(ctx: OpContext, x: np.ndarray, idx: np.ndarray) -> np.ndarray:
    axis = normalize_axis(ctx, ctx.attr("axis", 0), x.ndim)
    return np.take(x, wrapped(ctx, idx, x.shape[axis]), axis=axis)


@register("Gather", since=1, kind="injective", fold=gather_fold)
def gather(ctx: OpContext, x: Tensor, idx: Tensor):
    axis = normalize_axis(ctx, ctx.attr("axis", 0), x.ndim)
    if not idx.dtype.is_int:
        raise ctx.error(f"indices must be integers, got {idx.dtype}")
    shape = list(x.shape[:axis]) + list(idx.shape) + list(x.shape[axis + 1:])
    q = idx.ndim

    def body(*i: Expr) -> Expr:
        pos = wrap_index(idx[tuple(i[axis:axis + q])], x.shape[axis])
        return x[tuple(i[:axis]) + (pos,) + tuple(i[axis + q:])]
    return compute(shape, body, name=ctx.name())


def gather_elements_fold(ctx: OpContext, x: np.ndarray, idx: np.ndarray) -> np.ndarray:
    axis = normalize_axis(ctx, ctx.attr("axis", 0), x.ndim)
    return np.take_along_axis(x, wrapped(ctx, idx, x.shape[axis]), axis=axis)


@register("GatherElements", since=11, kind="injective", fold=gather_elements_fold)
def gather_elements(ctx: OpContext, x: Tensor, idx: Tensor):
    axis = normalize_axis(ctx, ctx.attr("axis", 0), x.ndim)
    if idx.ndim != x.ndim:
        raise ctx.error(f"indices have rank {idx.ndim}, data rank {x.ndim}; they must match")

    def body(*i: Expr) -> Expr:
        full = list(i)
        full[axis] = wrap_index(idx[i], x.shape[axis])
        return x[tuple(full)]
    return compute(idx.shape, body, name=ctx.name())


def _gather_nd_shape(ctx: OpContext, data_shape: Sequence, idx_shape: Sequence) -> tuple[int, int, list]:
    b = ctx.attr("batch_dims", 0)
    if not idx_shape:
        raise ctx.error("indices must have rank at least 1")
    q = as_int_dims(ctx, [idx_shape[-1]], "the last dimension of indices")[0]
    if b < 0 or b >= min(len(data_shape), len(idx_shape)) or b + q > len(data_shape):
        raise ctx.error(f"batch_dims {b} with index tuples of length {q} do not fit data of rank "
                        f"{len(data_shape)} and indices of rank {len(idx_shape)}")
    return b, q, list(idx_shape[:-1]) + list(data_shape[b + q:])


def gather_nd_fold(ctx: OpContext, x: np.ndarray, idx: np.ndarray) -> np.ndarray:
    b, q, shape = _gather_nd_shape(ctx, x.shape, idx.shape)
    nb = int(np.prod(x.shape[:b], dtype=np.int64))
    data = x.reshape((nb,) + x.shape[b:])
    tuples = idx.reshape(nb, -1, q)
    cols = tuple(wrapped(ctx, tuples[..., k], x.shape[b + k]) for k in range(q))
    return data[(np.arange(nb)[:, None],) + cols].reshape(shape)


@register("GatherND", since=11, kind="injective", fold=gather_nd_fold)
def gather_nd(ctx: OpContext, x: Tensor, idx: Tensor):
    b, q, shape = _gather_nd_shape(ctx, x.shape, idx.shape)
    lead = idx.ndim - 1

    def body(*i: Expr) -> Expr:
        picked = [wrap_index(idx[tuple(i[:lead]) + (const(k),)], x.shape[b + k]) for k in range(q)]
        return x[tuple(i[:b]) + tuple(picked) + tuple(i[lead:])]
    return compute(shape, body, name=ctx.name())


# ----------------------------------------------------------------------------------------------- scatters

REDUCTIONS = {"none": None, "add": ("sum", np.add), "mul": ("prod", np.multiply), "max": ("max", np.maximum),
              "min": ("min", np.minimum)}


def _reduction(ctx: OpContext) -> str:
    mode = ctx.attr("reduction", "none") if ctx.opset >= 16 else "none"
    if mode not in REDUCTIONS or (mode in ("max", "min") and ctx.opset < 18):
        raise ctx.error(f"reduction {mode!r} is not one of {list(REDUCTIONS)} at opset {ctx.opset}")
    return mode


def _scatter(name: str, data: Tensor, updates: Tensor, mode: str, extent, match, update_at) -> Tensor:
    """Each output element searches the updates that target it: with no reduction the last one wins (as
    sequential writes would leave it), otherwise they are combined and then with the data."""
    r = reduce_axis(extent, "u")
    if mode == "none":
        last = compute(data.shape, lambda *i: E.max(r.var, r, where=match(i, r.var)), name=name + "_last")
        return compute(data.shape, lambda *i: E.select(last[i] >= 0, update_at(i, last[i]), data[i]), name=name)
    combiner, _ = REDUCTIONS[mode]
    reducer = {"sum": E.sum, "prod": E.prod, "max": E.max, "min": E.min}[combiner]
    acc = compute(data.shape, lambda *i: reducer(update_at(i, r.var), r, where=match(i, r.var)), name=name + "_acc")
    combine = {"sum": lambda a, c: a + c, "prod": lambda a, c: a * c, "max": E.maximum, "min": E.minimum}[combiner]
    return compute(data.shape, lambda *i: E.cast(data.dtype, combine(data[i], acc[i])), name=name)


def scatter_elements_fold(ctx: OpContext, x: np.ndarray, idx: np.ndarray, upd: np.ndarray) -> np.ndarray:
    axis = normalize_axis(ctx, ctx.attr("axis", 0), x.ndim)
    mode = _reduction(ctx)
    out = x.copy()
    where = list(np.indices(idx.shape, sparse=True))
    where[axis] = wrapped(ctx, idx, x.shape[axis])
    if mode == "none":
        out[tuple(where)] = upd
    else:
        REDUCTIONS[mode][1].at(out, tuple(where), upd)
    return out


def _scatter_elements(ctx: OpContext, x: Tensor, idx: Tensor, upd: Tensor):
    axis = normalize_axis(ctx, ctx.attr("axis", 0), x.ndim)
    if idx.ndim != x.ndim or upd.ndim != x.ndim:
        raise ctx.error("data, indices and updates must have the same rank")
    ishape = idx.shape

    def position(i: Sequence[Expr], k: Expr) -> tuple:
        """Where update `k` along the axis sits for output element `i` (other coordinates clamped in range)."""
        return tuple(k if d == axis else E.minimum(i[d], ishape[d] - 1) for d in range(x.ndim))

    def match(i: Sequence[Expr], k: Expr) -> Expr:
        inside = const(True)
        for d in range(x.ndim):
            if d != axis:
                inside = E.logical_and(inside, i[d] < ishape[d])
        return E.logical_and(inside, wrap_index(idx[position(i, k)], x.shape[axis]) == i[axis])
    return _scatter(ctx.name(), x, upd, _reduction(ctx), ishape[axis], match, lambda i, k: upd[position(i, k)])


@register("ScatterElements", since=11, kind="opaque", fold=scatter_elements_fold)
def scatter_elements(ctx: OpContext, x: Tensor, idx: Tensor, upd: Tensor):
    return _scatter_elements(ctx, x, idx, upd)


@register("Scatter", since=9, kind="opaque", fold=scatter_elements_fold)
def scatter(ctx: OpContext, x: Tensor, idx: Tensor, upd: Tensor):
    """The deprecated name of ScatterElements."""
    return _scatter_elements(ctx, x, idx, upd)


def scatter_nd_fold(ctx: OpContext, x: np.ndarray, idx: np.ndarray, upd: np.ndarray) -> np.ndarray:
    mode = _reduction(ctx)
    q = idx.shape[-1]
    out = x.copy()
    tuples = idx.reshape(-1, q)
    where = tuple(wrapped(ctx, tuples[:, k], x.shape[k]) for k in range(q))
    values = upd.reshape((tuples.shape[0],) + x.shape[q:])
    if mode == "none":
        out[where] = values
    else:
        REDUCTIONS[mode][1].at(out, where, values)
    return out


@register("ScatterND", since=11, kind="opaque", fold=scatter_nd_fold)
def scatter_nd(ctx: OpContext, x: Tensor, idx: Tensor, upd: Tensor):
    q = as_int_dims(ctx, [idx.shape[-1]], "the last dimension of indices")[0]
    if q > x.ndim or upd.ndim != idx.ndim - 1 + x.ndim - q:
        raise ctx.error(f"indices {tuple(map(str, idx.shape))} and updates {tuple(map(str, upd.shape))} do not "
                        f"fit data of rank {x.ndim}")
    batch = list(idx.shape[:-1])

    def match(i: Sequence[Expr], u: Expr) -> Expr:
        at = unravel(u, batch)
        hit = const(True)
        for k in range(q):
            hit = E.logical_and(hit, wrap_index(idx[tuple(at) + (const(k),)], x.shape[k]) == i[k])
        return hit
    return _scatter(ctx.name(), x, upd, _reduction(ctx), product(batch), match,
                    lambda i, u: upd[tuple(unravel(u, batch)) + tuple(i[q:])])


# ----------------------------------------------------------------------------------------------- one-hot, reversal

def _depth(ctx: OpContext) -> int:
    depth = int(np.asarray(ctx.const(1, "OneHot's depth")).reshape(-1)[0])
    if depth < 1:
        raise ctx.error(f"depth must be positive, got {depth}")
    return depth


def onehot_fold(ctx: OpContext, idx: np.ndarray, depth: np.ndarray, values: np.ndarray) -> np.ndarray:
    n = _depth(ctx)
    axis = normalize_axis(ctx, ctx.attr("axis", -1), idx.ndim + 1)
    pos = idx.astype(np.int64)
    pos = np.expand_dims(np.where(pos < 0, pos + n, pos), axis)
    shape = [1] * (idx.ndim + 1)
    shape[axis] = n
    off, on = values.reshape(-1)[:2]
    return np.where(pos == np.arange(n).reshape(shape), on, off)


@register("OneHot", since=9, kind="opaque", fold=onehot_fold)
def onehot(ctx: OpContext, idx: Tensor, depth: Tensor, values: Tensor):
    n = _depth(ctx)
    axis = normalize_axis(ctx, ctx.attr("axis", -1), idx.ndim + 1)
    shape = list(idx.shape[:axis]) + [n] + list(idx.shape[axis:])

    def body(*i: Expr) -> Expr:
        pos = index_as_int64(idx[tuple(i[:axis] + i[axis + 1:])])
        pos = E.select(pos < 0, pos + n, pos)
        return E.select(pos == i[axis], values[const(1)], values[const(0)])
    return compute(shape, body, name=ctx.name())


def _seq_axes(ctx: OpContext, ndim: int) -> tuple[int, int]:
    time, batch = ctx.attr("time_axis", 0), ctx.attr("batch_axis", 1)
    if {time, batch} != {0, 1} or ndim < 2:
        raise ctx.error(f"time_axis {time} and batch_axis {batch} must be 0 and 1 (in some order)")
    return time, batch


def reverse_sequence_fold(ctx: OpContext, x: np.ndarray, lens: np.ndarray) -> np.ndarray:
    time, batch = _seq_axes(ctx, x.ndim)
    t = np.arange(x.shape[time]).reshape([-1 if k == time else 1 for k in range(x.ndim)])
    n = np.minimum(lens.astype(np.int64), x.shape[time]).reshape([-1 if k == batch else 1 for k in range(x.ndim)])
    src = np.broadcast_to(np.where(t < n, n - 1 - t, t), x.shape)
    return np.take_along_axis(x, src, axis=time)


@register("ReverseSequence", since=10, kind="injective", fold=reverse_sequence_fold)
def reverse_sequence(ctx: OpContext, x: Tensor, lens: Tensor):
    time, batch = _seq_axes(ctx, x.ndim)

    def body(*i: Expr) -> Expr:
        n = E.minimum(index_as_int64(lens[i[batch]]), x.shape[time])
        src = list(i)
        src[time] = E.select(i[time] < n, n - 1 - i[time], i[time])
        return x[tuple(src)]
    return compute(x.shape, body, name=ctx.name())


# ----------------------------------------------------------------------------------------------- compress

def _compress_spec(ctx: OpContext, shape: Sequence) -> tuple["int | None", list[int]]:
    cond = np.asarray(ctx.const(1, "Compress's condition")).reshape(-1).astype(bool)
    axis = ctx.attr("axis", None)
    dims = as_int_dims(ctx, shape if axis is None else [shape[normalize_axis(ctx, axis, len(shape))]])
    length = int(np.prod(dims, dtype=np.int64))
    if cond.size > length:
        raise ctx.error(f"condition has {cond.size} entries, more than the {length} it selects from")
    return (None if axis is None else normalize_axis(ctx, axis, len(shape))), ints(np.nonzero(cond)[0])


def compress_fold(ctx: OpContext, x: np.ndarray, cond: np.ndarray) -> np.ndarray:
    axis, picked = _compress_spec(ctx, x.shape)
    return np.take(x, np.array(picked, dtype=np.int64), axis=axis)


@register("Compress", since=9, kind="injective", fold=compress_fold)
def compress(ctx: OpContext, x: Tensor, cond: Tensor):
    """The selected positions are known at compile time; runs of consecutive ones become one offset each."""
    axis, picked = _compress_spec(ctx, x.shape)
    runs: list[tuple[int, int]] = []  # (first output position, offset to the source position)
    for k, p in enumerate(picked):
        if not runs or p - k != runs[-1][1]:
            runs.append((k, p - k))

    def source(o: Expr) -> Expr:
        off: Expr = const(0)
        for first, delta in runs:
            off = E.select(o >= first, const(delta), off)
        return o + off
    if axis is None:
        return compute((len(picked),), lambda o: x[tuple(unravel(source(o), x.shape))], name=ctx.name())
    shape = list(x.shape)
    shape[axis] = len(picked)
    return compute(shape, lambda *i: x[tuple(source(i[k]) if k == axis else i[k] for k in range(x.ndim))],
                   name=ctx.name())


# ----------------------------------------------------------------------------------------------- eye, triangles

def _eye_dtype(ctx: OpContext, x_dtype) -> "E.DType":
    code = ctx.attr("dtype", None)
    if code is None:
        return x_dtype
    from ...frontend.onnx_import import onnx_dtype
    return onnx_dtype(code, f"{ctx.node.describe()}'s dtype")


def eye_like_fold(ctx: OpContext, x: np.ndarray) -> np.ndarray:
    if x.ndim != 2:
        raise ctx.error(f"EyeLike needs a 2-D input, got rank {x.ndim}")
    return np.eye(x.shape[0], x.shape[1], ctx.attr("k", 0), dtype=_eye_dtype(ctx, E.as_dtype(x.dtype)).numpy)


@register("EyeLike", since=9, kind="injective", fold=eye_like_fold)
def eye_like(ctx: OpContext, x: Tensor):
    if x.ndim != 2:
        raise ctx.error(f"EyeLike needs a 2-D input, got rank {x.ndim}")
    dt, k = _eye_dtype(ctx, x.dtype), ctx.attr("k", 0)
    return compute(x.shape, lambda i, j: E.cast(dt, j - i == k), name=ctx.name())


def trilu_fold(ctx: OpContext, x: np.ndarray, k: "np.ndarray | None" = None) -> np.ndarray:
    shift = 0 if k is None else int(k.reshape(()))
    return np.triu(x, shift) if ctx.attr("upper", 1) else np.tril(x, shift)


@register("Trilu", since=14, kind="injective", fold=trilu_fold)
def trilu(ctx: OpContext, x: Tensor, k: "Tensor | None" = None):
    """Keeps the upper (j - i >= k) or lower (j - i <= k) triangle of the last two axes; k may be a run-time
    scalar."""
    if x.ndim < 2:
        raise ctx.error(f"Trilu needs rank >= 2, got {x.ndim}")
    upper = ctx.attr("upper", 1)

    def body(*i: Expr) -> Expr:
        shift = const(0) if k is None else index_as_int64(k[()])
        diff = i[-1] - i[-2]
        keep = diff >= shift if upper else diff <= shift
        return E.select(keep, x[i], const(0, x.dtype))
    return compute(x.shape, body, name=ctx.name())

