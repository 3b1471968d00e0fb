"""Shape and data-movement ops: constants, shape queries, reshapes, transposes, concatenation, splitting, slicing,
broadcasting and tiling. Outputs are index remappings of their inputs (kind="injective"), and each op has a numpy
folder because these ops carry most of the shape arithmetic of exported models."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ... import ir as E
from ...ir.expr import Expr, const
from ...ir.tensor import Tensor, compute, placeholder
from ..registry import OpContext, register
from .common import (as_int_dims, broadcast_shapes, dim_value, normalize_axes, normalize_axis, read_broadcast,
                     same_dim)

INT64_MAX = np.iinfo(np.int64).max


# ----------------------------------------------------------------------------------------------- helpers

def product(dims: Sequence) -> "int | Expr":
    """The product of dims, an int when all are static."""
    out: "int | Expr" = 1
    for d in dims:
        v = dim_value(d)
        out = out * (v if v is not None else d)
    return out


def add_dims(a, b) -> "int | Expr":
    va, vb = dim_value(a), dim_value(b)
    return va + vb if va is not None and vb is not None else as_index(a) + as_index(b)


def unravel(flat: Expr, dims: Sequence) -> list[Expr]:
    """Row-major indices into `dims` of the flat position `flat`."""
    out: list[Expr] = []
    for k in range(len(dims) - 1, -1, -1):
        d = dims[k]
        out.append(flat % d if k > 0 else flat)
        flat = flat // d
    return out[::-1]


def ravel(index: Sequence[Expr], dims: Sequence) -> Expr:
    flat: Expr = const(0)
    for i, d in zip(index, dims):
        flat = flat * d + i
    return flat


def reshape_to(x: Tensor, shape: Sequence, name: str) -> Tensor:
    """`x` read in row-major order with a new shape of the same size."""
    if tuple(map(dim_value, shape)) == tuple(map(dim_value, x.shape)) and None not in map(dim_value, shape):
        return compute(shape, lambda *i: x[i], name=name)
    return compute(shape, lambda *i: x[tuple(unravel(ravel(i, shape), x.shape))], name=name)


def index_as_int64(e: Expr) -> Expr:
    return E.cast(E.int64, e)


def wrap_index(i: Expr, dim) -> Expr:
    """A possibly negative index made non-negative and clamped into [0, dim) so the read stays in bounds."""
    i = index_as_int64(i)
    i = E.select(i < 0, i + dim, i)
    return E.minimum(E.maximum(i, const(0)), E.maximum(as_index(dim) - 1, const(0)))


def as_index(d) -> Expr:
    return const(d) if isinstance(d, int) else d


def ints(value: "np.ndarray | Sequence[int]") -> list[int]:
    return [int(v) for v in np.asarray(value).reshape(-1)]


def axes_input(ctx: OpContext, attr_before: int, i: int, what: str = "axes") -> "list[int] | None":
    """Axes that are an attribute before opset `attr_before` and an (optional, constant) input after."""
    if ctx.opset < attr_before:
        value = ctx.attr(what, None)
        return None if value is None else ints(value)
    return ints(ctx.const(i, what)) if ctx.has_input(i) else None


# ----------------------------------------------------------------------------------------------- constants

def _constant_value(ctx: OpContext) -> np.ndarray:
    if "sparse_value" in ctx.node.attrs:
        raise ctx.error("sparse_value constants are not supported; store the tensor densely in `value`")
    for name, dtype in (("value", None), ("value_float", np.float32), ("value_floats", np.float32),
                        ("value_int", np.int64), ("value_ints", np.int64)):
        if name in ctx.node.attrs:
            data = ctx.node.attrs[name]
            if isinstance(data, (str, bytes)) or (isinstance(data, np.ndarray) and data.dtype.kind in "OSU"):
                break
            return np.asarray(data, dtype=dtype)
    else:
        raise ctx.error("Constant needs one of value, value_float(s), value_int(s)")
    raise ctx.error("string constants are not supported")


def constant_fold(ctx: OpContext) -> np.ndarray:
    return _constant_value(ctx)


@register("Constant", since=1, kind="injective", fold=constant_fold)
def constant(ctx: OpContext):
    """A Constant has no inputs, so constant folding always replaces it by its fold; this gives its type."""
    data = _constant_value(ctx)
    return placeholder(data.shape, E.as_dtype(data.dtype), ctx.name("_const"))


def _shape_range(ctx: OpContext, ndim: int) -> tuple[int, int]:
    start, end = ctx.attr("start", 0), ctx.attr("end", None)
    start = min(max(start + ndim if start < 0 else start, 0), ndim)
    end = ndim if end is None else min(max(end + ndim if end < 0 else end, 0), ndim)
    return start, max(start, end)


def shape_fold(ctx: OpContext, x: np.ndarray) -> np.ndarray:
    start, end = _shape_range(ctx, x.ndim)
    return np.array(x.shape[start:end], dtype=np.int64)


@register("Shape", since=1, kind="injective", fold=shape_fold)
def shape_op(ctx: OpContext, x: Tensor):
    start, end = _shape_range(ctx, x.ndim)
    dims = x.shape[start:end]

    def body(i: Expr) -> Expr:
        out: Expr = const(0)
        for k in range(len(dims) - 1, -1, -1):
            out = E.select(i == k, index_as_int64(as_index(dims[k])), out)
        return out
    return compute((len(dims),), body, name=ctx.name())


def size_fold(ctx: OpContext, x: np.ndarray) -> np.ndarray:
    return np.array(x.size, dtype=np.int64)


@register("Size", since=1, kind="injective", fold=size_fold)
def size_op(ctx: OpContext, x: Tensor):
    total = product(x.shape)
    return compute((), lambda: index_as_int64(as_index(total)), name=ctx.name())


def _fill(ctx: OpContext) -> np.ndarray:
    value = ctx.attr("value", None)
    if value is None:
        return np.zeros((), dtype=np.float32)
    value = np.asarray(value)
    if value.size != 1:
        raise ctx.error(f"value must hold one element, got shape {value.shape}")
    return value.reshape(())


def _fill_shape(ctx: OpContext) -> list[int]:
    dims = ints(ctx.const(0, "ConstantOfShape's shape"))
    if any(d < 0 for d in dims):
        raise ctx.error(f"shape {dims} has a negative dimension")
    return dims


def constant_of_shape_fold(ctx: OpContext, shape: np.ndarray) -> np.ndarray:
    value = _fill(ctx)
    return np.full(_fill_shape(ctx), value, dtype=value.dtype)


@register("ConstantOfShape", since=9, kind="injective", fold=constant_of_shape_fold)
def constant_of_shape(ctx: OpContext, shape: Tensor):
    value = _fill(ctx)
    fill = const(value.item(), E.as_dtype(value.dtype))
    return compute(_fill_shape(ctx), lambda *i: fill, name=ctx.name())


def _range_params(ctx: OpContext, dtype: np.dtype) -> tuple:
    start, limit, delta = (ctx.const(k, what).reshape(()).astype(dtype)
                           for k, what in enumerate(("Range's start", "Range's limit", "Range's delta")))
    if delta == 0:
        raise ctx.error("delta must not be zero")
    count = int(max(np.ceil((float(limit) - float(start)) / float(delta)), 0))
    return start, delta, count


def range_fold(ctx: OpContext, start: np.ndarray, limit: np.ndarray, delta: np.ndarray) -> np.ndarray:
    begin, step, count = _range_params(ctx, start.dtype)
    return (np.arange(count).astype(start.dtype) * step + begin).astype(start.dtype)


@register("Range", since=11, kind="injective", fold=range_fold)
def range_op(ctx: OpContext, start: Tensor, limit: Tensor, delta: Tensor):
    """output[i] = start + i * delta, in the inputs' dtype (as the fold computes it)."""
    begin, step, count = _range_params(ctx, start.dtype.numpy)
    dt = start.dtype
    return compute((count,), lambda i: E.cast(dt, i) * const(step.item(), dt) + const(begin.item(), dt),
                   name=ctx.name())


# ----------------------------------------------------------------------------------------------- reshapes

def _reshape_dims(ctx: OpContext, in_shape: Sequence, target: Sequence[int]) -> list:
    allowzero = ctx.opset >= 14 and ctx.attr("allowzero", 0)
    if target.count(-1) > 1:
        raise ctx.error(f"shape {list(target)} has more than one -1")
    if allowzero and 0 in target and -1 in target:
        raise ctx.error(f"shape {list(target)} mixes -1 with 0 under allowzero")
    in_shape = [dim_value(d) if dim_value(d) is not None else d for d in in_shape]
    out: list = []
    for k, d in enumerate(target):
        if d == 0 and not allowzero:
            if k >= len(in_shape):
                raise ctx.error(f"shape {list(target)} copies dimension {k} (0) of a rank-{len(in_shape)} input")
            out.append(in_shape[k])
        elif d < -1:
            raise ctx.error(f"shape {list(target)} has an invalid dimension {d}")
        else:
            out.append(d)
    total = product(in_shape)
    if -1 in target:
        k = target.index(-1)
        known = product(out[:k] + out[k + 1:])
        if isinstance(total, int) and isinstance(known, int):
            if known == 0 or total % known:
                raise ctx.error(f"cannot reshape {tuple(map(str, in_shape))} to {list(target)}")
            out[k] = total // known
        else:
            out[k] = as_index(total) // known
    got = product(out)
    if isinstance(total, int) and isinstance(got, int) and total != got:
        raise ctx.error(f"cannot reshape {tuple(map(str, in_shape))} ({total} elements) to {list(target)} "
                        f"({got} elements)")
    return out


def _target_shape(ctx: OpContext) -> list[int]:
    return ints(ctx.attr("shape")) if ctx.opset < 5 else ints(ctx.const(1, "Reshape's shape"))


def reshape_fold(ctx: OpContext, x: np.ndarray, shape: "np.ndarray | None" = None) -> np.ndarray:
    return x.reshape(_reshape_dims(ctx, x.shape, _target_shape(ctx)))


@register("Reshape", since=1, kind="injective", fold=reshape_fold)
def reshape(ctx: OpContext, x: Tensor, shape: "Tensor | None" = None):
    return reshape_to(x, _reshape_dims(ctx, x.shape, _target_shape(ctx)), ctx.name())


def _flatten_dims(ctx: OpContext, shape: Sequence) -> list:
    axis = ctx.attr("axis", 1)
    if not -len(shape) <= axis <= len(shape):
        raise ctx.error(f"axis {axis} is out of range for a tensor of rank {len(shape)}")
    axis = axis + len(shape) if axis < 0 else axis
    return [product(shape[:axis]), product(shape[axis:])]


def flatten_fold(ctx: OpContext, x: np.ndarray) -> np.ndarray:
    return x.reshape(_flatten_dims(ctx, x.shape))


@register("Flatten", since=1, kind="injective", fold=flatten_fold)
def flatten(ctx: OpContext, x: Tensor):
    return reshape_to(x, _flatten_dims(ctx, x.shape), ctx.name())


def _perm(ctx: OpContext, ndim: int) -> list[int]:
    perm = ctx.attr("perm", None)
    if perm is None:
        return list(range(ndim))[::-1]
    perm = normalize_axes(ctx, perm, ndim, "perm")
    if len(perm) != ndim:
        raise ctx.error(f"perm {perm} must name each of the {ndim} axes once")
    return perm


def transpose_fold(ctx: OpContext, x: np.ndarray) -> np.ndarray:
    return np.transpose(x, _perm(ctx, x.ndim))


@register("Transpose", since=1, kind="injective", fold=transpose_fold)
def transpose(ctx: OpContext, x: Tensor):
    perm = _perm(ctx, x.ndim)
    inverse = [perm.index(k) for k in range(x.ndim)]
    return compute([x.shape[p] for p in perm], lambda *i: x[tuple(i[inverse[k]] for k in range(x.ndim))],
                   name=ctx.name())


def _squeeze_axes(ctx: OpContext, shape: Sequence) -> list[int]:
    axes = axes_input(ctx, 13, 1)
    if axes is None:
        return [k for k, d in enumerate(as_int_dims(ctx, shape, "Squeeze without axes: shape")) if d == 1]
    axes = normalize_axes(ctx, axes, len(shape))
    for a in axes:
        if dim_value(shape[a]) not in (1, None):
            raise ctx.error(f"cannot squeeze axis {a} of size {shape[a]}")
    return axes


def squeeze_fold(ctx: OpContext, x: np.ndarray, axes: "np.ndarray | None" = None) -> np.ndarray:
    return x.reshape([d for k, d in enumerate(x.shape) if k not in _squeeze_axes(ctx, x.shape)])


@register("Squeeze", since=1, kind="injective", fold=squeeze_fold)
def squeeze(ctx: OpContext, x: Tensor, axes: "Tensor | None" = None):
    drop = _squeeze_axes(ctx, x.shape)
    keep = [k for k in range(x.ndim) if k not in drop]

    def body(*i: Expr) -> Expr:
        full = [const(0)] * x.ndim
        for j, k in enumerate(keep):
            full[k] = i[j]
        return x[tuple(full)]
    return compute([x.shape[k] for k in keep], body, name=ctx.name())


def _unsqueeze_axes(ctx: OpContext, ndim: int) -> list[int]:
    axes = axes_input(ctx, 13, 1)
    if axes is None:
        raise ctx.error("Unsqueeze needs axes")
    return sorted(normalize_axes(ctx, axes, ndim + len(axes)))


def unsqueeze_fold(ctx: OpContext, x: np.ndarray, axes: "np.ndarray | None" = None) -> np.ndarray:
    return np.expand_dims(x, tuple(_unsqueeze_axes(ctx, x.ndim)))


@register("Unsqueeze", since=1, kind="injective", fold=unsqueeze_fold)
def unsqueeze(ctx: OpContext, x: Tensor, axes: "Tensor | None" = None):
    new = _unsqueeze_axes(ctx, x.ndim)
    keep = [k for k in range(x.ndim + len(new)) if k not in new]
    shape: list = [1] * (x.ndim + len(new))
    for j, k in enumerate(keep):
        shape[k] = x.shape[j]
    return compute(shape, lambda *i: x[tuple(i[k] for k in keep)], name=ctx.name())


# ----------------------------------------------------------------------------------------------- concat, split

def concat_fold(ctx: OpContext, *xs: np.ndarray) -> np.ndarray:
    return np.concatenate(xs, axis=normalize_axis(ctx, ctx.attr("axis", 1 if ctx.opset < 4 else ...),
                                                  xs[0].ndim))


@register("Concat", since=1, kind="injective", fold=concat_fold)
def concat(ctx: OpContext, *xs: Tensor):
    """Each output element reads the one input whose range along `axis` holds it (one load per element)."""
    xs = tuple(x for x in xs if x is not None)
    if not xs:
        raise ctx.error("Concat needs at least one input")
    ndim = xs[0].ndim
    axis = normalize_axis(ctx, ctx.attr("axis", 1 if ctx.opset < 4 else ...), ndim)
    for x in xs[1:]:
        if x.ndim != ndim or x.dtype != xs[0].dtype:
            raise ctx.error(f"inputs {xs[0]} and {x} differ in rank or dtype")
    shape = list(xs[0].shape)
    for x in xs[1:]:
        for k in range(ndim):
            if k != axis and not same_dim(x.shape[k], shape[k]):
                raise ctx.error(f"inputs differ in dimension {k}: {shape[k]} vs {x.shape[k]}")
    parts = [x for x in xs if dim_value(x.shape[axis]) != 0]
    offsets: list = [0]
    for x in parts:
        offsets.append(add_dims(offsets[-1], x.shape[axis]))
    shape[axis] = offsets[-1]

    def body(*i: Expr) -> Expr:
        if not parts:
            return const(0, xs[0].dtype)
        out: "Expr | None" = None
        for x, off in reversed(list(zip(parts, offsets))):
            idx = list(i)
            idx[axis] = i[axis] - off
            read = x[tuple(idx)]
            out = read if out is None else E.select(i[axis] < off + x.shape[axis], read, out)
        return out
    return compute(shape, body, name=ctx.name())


def _split_sizes(ctx: OpContext, dim: int, split: "np.ndarray | None") -> list[int]:
    n = ctx.num_outputs
    if ctx.opset < 13:
        sizes = ctx.attr("split", None)
        if sizes is None and ctx.num_inputs > 1 and ctx.has_input(1):
            sizes = ints(ctx.const(1, "Split's split"))
    elif ctx.has_input(1):
        sizes = ints(split if split is not None else ctx.const(1, "Split's split"))
    else:
        sizes = None
    if sizes is None:
        if ctx.opset >= 18:
            n = ctx.attr("num_outputs", None)
            if n is None:
                raise ctx.error("Split needs the split input or the num_outputs attribute")
            if n != ctx.num_outputs:
                raise ctx.error(f"num_outputs is {n} but the node has {ctx.num_outputs} outputs")
            chunk = -(-dim // n)
            sizes = [min(chunk, max(dim - k * chunk, 0)) for k in range(n)]
        else:
            if dim % n:
                raise ctx.error(f"cannot split a dimension of {dim} into {n} equal parts")
            sizes = [dim // n] * n
    sizes = ints(sizes)
    if sum(sizes) != dim or any(s < 0 for s in sizes):
        raise ctx.error(f"split sizes {sizes} do not add up to the dimension {dim}")
    if len(sizes) != ctx.num_outputs:
        raise ctx.error(f"split has {len(sizes)} parts but the node has {ctx.num_outputs} outputs")
    return sizes


def _split_axis(ctx: OpContext, x_shape: Sequence) -> tuple[int, int]:
    axis = normalize_axis(ctx, ctx.attr("axis", 0), len(x_shape))
    return axis, as_int_dims(ctx, [x_shape[axis]], "the split dimension")[0]


def split_fold(ctx: OpContext, x: np.ndarray, split: "np.ndarray | None" = None) -> tuple[np.ndarray, ...]:
    axis, dim = _split_axis(ctx, x.shape)
    bounds = np.cumsum(_split_sizes(ctx, dim, split))[:-1]
    return tuple(np.split(x, bounds, axis=axis))


@register("Split", since=1, kind="injective", fold=split_fold)
def split(ctx: OpContext, x: Tensor, split_: "Tensor | None" = None):
    axis, dim = _split_axis(ctx, x.shape)
    outs, start = [], 0
    for k, size in enumerate(_split_sizes(ctx, dim, ctx.const_or_none(1))):
        shape = list(x.shape)
        shape[axis] = size

        def body(*i: Expr, off: int = start) -> Expr:
            idx = list(i)
            idx[axis] = i[axis] + off
            return x[tuple(idx)]
        outs.append(compute(shape, body, name=ctx.name(f"_{k}")))
        start += size
    return tuple(outs)


# ----------------------------------------------------------------------------------------------- slice

def _slices(ctx: OpContext, shape: Sequence) -> dict[int, tuple[int, int, int]]:
    """axis -> (start, step, count) in numpy slicing semantics, ONNX clamping included."""
    if ctx.opset < 10:
        starts, ends = ints(ctx.attr("starts")), ints(ctx.attr("ends"))
        axes, steps = ctx.attr("axes", None), None
    else:
        starts, ends = ints(ctx.const(1, "Slice's starts")), ints(ctx.const(2, "Slice's ends"))
        axes = ctx.const(3, "Slice's axes") if ctx.has_input(3) else None
        steps = ints(ctx.const(4, "Slice's steps")) if ctx.has_input(4) else None
    axes = list(range(len(starts))) if axes is None else ints(axes)
    steps = steps or [1] * len(starts)
    if not len(starts) == len(ends) == len(axes) == len(steps):
        raise ctx.error(f"starts {starts}, ends {ends}, axes {axes} and steps {steps} differ in length")
    axes = normalize_axes(ctx, axes, len(shape))
    out = {}
    for a, s, e, st in zip(axes, starts, ends, steps):
        if st == 0:
            raise ctx.error("slice steps must not be zero")
        dim = as_int_dims(ctx, [shape[a]], f"sliced dimension {a}")[0]
        begin, stop, step = slice(s, e, st).indices(dim)
        out[a] = (begin, step, len(range(begin, stop, step)))
    return out


def slice_fold(ctx: OpContext, x: np.ndarray, *rest: "np.ndarray | None") -> np.ndarray:
    index = [slice(None)] * x.ndim
    for a, (begin, step, count) in _slices(ctx, x.shape).items():
        index[a] = slice(begin, begin + step * count if begin + step * count >= 0 else None, step)
    return x[tuple(index)]


@register("Slice", since=1, kind="injective", fold=slice_fold)
def slice_op(ctx: OpContext, x: Tensor, *rest: "Tensor | None"):
    spec = _slices(ctx, x.shape)
    shape = [spec[k][2] if k in spec else d for k, d in enumerate(x.shape)]
    return compute(shape, lambda *i: x[tuple(spec[k][0] + spec[k][1] * i[k] if k in spec else i[k]
                                             for k in range(x.ndim))], name=ctx.name())


# ----------------------------------------------------------------------------------------------- expand, tile

def _expand_shape(ctx: OpContext, in_shape: Sequence) -> tuple:
    target = ints(ctx.const(1, "Expand's shape"))
    if any(d < 0 for d in target):
        raise ctx.error(f"shape {target} has a negative dimension")
    return broadcast_shapes(ctx, in_shape, target)


def expand_fold(ctx: OpContext, x: np.ndarray, shape: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.broadcast_to(x, _expand_shape(ctx, x.shape)))


@register("Expand", since=8, kind="injective", fold=expand_fold)
def expand(ctx: OpContext, x: Tensor, shape: Tensor):
    return compute(_expand_shape(ctx, x.shape), lambda *i: read_broadcast(x, i), name=ctx.name())


def _repeats(ctx: OpContext, ndim: int) -> list[int]:
    reps = ints(ctx.const(1, "Tile's repeats"))
    if len(reps) != ndim or any(r < 0 for r in reps):
        raise ctx.error(f"repeats {reps} must be {ndim} non-negative counts")
    return reps


def tile_fold(ctx: OpContext, x: np.ndarray, repeats: np.ndarray) -> np.ndarray:
    return np.tile(x, _repeats(ctx, x.ndim))


@register("Tile", since=6, kind="injective", fold=tile_fold)
def tile(ctx: OpContext, x: Tensor, repeats: Tensor):
    reps = _repeats(ctx, x.ndim)
    shape = [d if r == 1 else d * r for d, r in zip(x.shape, reps)]
    return compute(shape, lambda *i: x[tuple(i[k] if reps[k] == 1 else i[k] % x.shape[k] for k in range(x.ndim))],
                   name=ctx.name())


from . import shape_index, shape_spatial  # noqa: E402,F401 - the rest of the family registers on import
