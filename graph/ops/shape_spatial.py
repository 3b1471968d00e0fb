"""Spatial data movement: padding, resizing (nearest and linear), depth/space rearrangement, center crop/pad.
Each output element maps to source positions with per-axis formulas; the folders apply the same formulas to
numpy index arrays, so folding and the kernels agree."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ... import ir as E
from ...ir.expr import Expr, const
from ...ir.tensor import Tensor, compute
from ..registry import OpContext, register
from .common import as_int_dims, normalize_axes
from .shape import ints

# ----------------------------------------------------------------------------------------------- pad

PAD_MODES = ("constant", "reflect", "edge", "wrap")


def _pad_spec(ctx: OpContext, shape: Sequence) -> tuple[str, list[int], list[int], "np.ndarray | None"]:
    """(mode, pads before, pads after, constant value or None for a run-time input)."""
    mode = ctx.attr("mode", "constant")
    if mode not in PAD_MODES or (mode == "wrap" and ctx.opset < 19):
        raise ctx.error(f"pad mode {mode!r} is not supported (at opset {ctx.opset})")
    ndim = len(shape)
    if ctx.opset < 11:
        pads = ints(ctx.attr("pads" if ctx.opset >= 2 else "paddings"))
        value: "np.ndarray | None" = np.asarray(ctx.attr("value", 0.0))
        axes = list(range(ndim))
    else:
        pads = ints(ctx.const(1, "Pad's pads"))
        value = ctx.const_or_none(2) if ctx.has_input(2) else np.zeros(())
        axes = normalize_axes(ctx, ints(ctx.const(3, "Pad's axes")), ndim) if ctx.has_input(3) else \
            list(range(ndim))
    if len(pads) != 2 * len(axes):
        raise ctx.error(f"pads {pads} must hold two entries per padded axis ({len(axes)})")
    before, after = [0] * ndim, [0] * ndim
    for k, a in enumerate(axes):
        before[a], after[a] = pads[k], pads[k + len(axes)]
    dims = as_int_dims(ctx, [shape[a] for a in range(ndim) if before[a] or after[a]], "padded dimensions")
    if mode != "constant" and any(d == 0 for d in dims):
        raise ctx.error(f"{mode} padding needs non-empty padded dimensions")
    return mode, before, after, value


def pad_source(mode: str, j, n: int, xp):
    """The source position of padded position `j` (already shifted by the pad before) along an axis of `n`,
    and whether it is inside (only constant mode reads outside). `xp` is numpy or ember."""
    if mode == "constant":
        inside = (j >= 0) & (j < n) if xp is np else E.logical_and(j >= 0, j < n)
        return xp.minimum(xp.maximum(j, 0), n - 1), inside
    if mode == "edge":
        return xp.minimum(xp.maximum(j, 0), n - 1), None
    if mode == "wrap":
        return j % n, None
    if n == 1:
        return j * 0, None
    period = 2 * (n - 1)
    r = j % period
    return (np.where(r < n, r, period - r) if xp is np else E.select(r < n, r, period - r)), None


def pad_fold(ctx: OpContext, x: np.ndarray, *rest: "np.ndarray | None") -> np.ndarray:
    mode, before, after, value = _pad_spec(ctx, x.shape)
    shape = [d + b + a for d, b, a in zip(x.shape, before, after)]
    if any(d < 0 for d in shape):
        raise ctx.error(f"pads {before + after} remove more than the input has")
    index, mask = [], np.ones(shape, dtype=bool)
    for k, n in enumerate(x.shape):
        j = np.arange(shape[k]) - before[k]
        src, inside = pad_source(mode, j, n, np) if n else (j * 0, np.zeros_like(j, dtype=bool))
        view = [1] * x.ndim
        view[k] = -1
        index.append(src.reshape(view))
        if inside is not None:
            mask &= inside.reshape(view)
    if x.size == 0:
        return np.full(shape, value, dtype=x.dtype)
    out = x[tuple(index)]
    return np.where(mask, out, np.asarray(value).astype(x.dtype).reshape(())) if mode == "constant" else out


def _scalar(t: Tensor) -> Expr:
    """A run-time constant_value: a scalar, or (as exporters also write it) a one-element 1-D tensor."""
    return t[(0,) * t.ndim]


@register("Pad", since=1, kind="injective", fold=pad_fold)
def pad(ctx: OpContext, x: Tensor, *rest: "Tensor | None"):
    mode, before, after, value = _pad_spec(ctx, x.shape)
    shape = [d if not (b or a) else as_int_dims(ctx, [d])[0] + b + a for d, b, a in zip(x.shape, before, after)]
    if any(isinstance(d, int) and d < 0 for d in shape):
        raise ctx.error(f"pads {before + after} remove more than the input has")
    fill = const(value.reshape(()).item(), x.dtype) if value is not None else _scalar(rest[1])
    if any(isinstance(d, int) and d == 0 for d in x.shape):
        return compute(shape, lambda *i: E.cast(x.dtype, fill), name=ctx.name())

    def body(*i: Expr) -> Expr:
        src, inside = [], const(True)
        for k in range(x.ndim):
            if not (before[k] or after[k]):
                src.append(i[k])
                continue
            s, ok = pad_source(mode, i[k] - before[k], as_int_dims(ctx, [x.shape[k]])[0], E)
            src.append(s)
            if ok is not None:
                inside = E.logical_and(inside, ok)
        read = x[tuple(src)]
        return E.select(inside, read, E.cast(x.dtype, fill)) if mode == "constant" else read
    return compute(shape, body, name=ctx.name())


# ----------------------------------------------------------------------------------------------- depth/space

def _block(ctx: OpContext, shape: Sequence) -> tuple[int, list[int]]:
    b = ctx.attr("blocksize")
    dims = as_int_dims(ctx, shape)
    if len(dims) != 4 or b < 1:
        raise ctx.error(f"needs a 4-D NCHW input and a positive blocksize, got {dims} and {b}")
    return b, dims


def _d2s_shape(ctx: OpContext, shape: Sequence) -> tuple[int, list[int], bool]:
    b, (n, c, h, w) = _block(ctx, shape)
    if c % (b * b):
        raise ctx.error(f"channels {c} are not a multiple of blocksize^2 = {b * b}")
    mode = ctx.attr("mode", "DCR")
    if mode not in ("DCR", "CRD"):
        raise ctx.error(f"mode {mode!r} is not DCR or CRD")
    return b, [n, c // (b * b), h * b, w * b], mode == "DCR"


def depth_to_space_fold(ctx: OpContext, x: np.ndarray) -> np.ndarray:
    b, (n, c, h, w), dcr = _d2s_shape(ctx, x.shape)
    hb, wb = h // b, w // b
    if dcr:
        t = x.reshape(n, b, b, c, hb, wb).transpose(0, 3, 4, 1, 5, 2)
    else:
        t = x.reshape(n, c, b, b, hb, wb).transpose(0, 1, 4, 2, 5, 3)
    return t.reshape(n, c, h, w)


@register("DepthToSpace", since=1, kind="injective", fold=depth_to_space_fold)
def depth_to_space(ctx: OpContext, x: Tensor):
    b, shape, dcr = _d2s_shape(ctx, x.shape)
    c = shape[1]

    def body(n, ch, h, w):
        bh, bw = h % b, w % b
        src = (bh * b + bw) * c + ch if dcr else ch * (b * b) + bh * b + bw
        return x[n, src, h // b, w // b]
    return compute(shape, body, name=ctx.name())


def _s2d_shape(ctx: OpContext, shape: Sequence) -> tuple[int, list[int], bool]:
    b, (n, c, h, w) = _block(ctx, shape)
    if h % b or w % b:
        raise ctx.error(f"height {h} and width {w} must be multiples of blocksize {b}")
    mode = ctx.attr("mode", "DCR")
    if mode not in ("DCR", "CRD"):
        raise ctx.error(f"mode {mode!r} is not DCR or CRD")
    return b, [n, c * b * b, h // b, w // b], mode == "DCR"


def space_to_depth_fold(ctx: OpContext, x: np.ndarray) -> np.ndarray:
    b, (n, c, h, w), dcr = _s2d_shape(ctx, x.shape)
    t = x.reshape(n, x.shape[1], h, b, w, b).transpose((0, 3, 5, 1, 2, 4) if dcr else (0, 1, 3, 5, 2, 4))
    return t.reshape(n, c, h, w)


@register("SpaceToDepth", since=1, kind="injective", fold=space_to_depth_fold)
def space_to_depth(ctx: OpContext, x: Tensor):
    b, shape, dcr = _s2d_shape(ctx, x.shape)
    cin = as_int_dims(ctx, x.shape)[1]

    def body(n, ch, h, w):
        blk, ci = (ch // cin, ch % cin) if dcr else (ch % (b * b), ch // (b * b))
        return x[n, ci, h * b + blk // b, w * b + blk % b]
    return compute(shape, body, name=ctx.name())


# ----------------------------------------------------------------------------------------------- resize

def _resize_spec(ctx: OpContext, shape: Sequence) -> tuple[list[int], list[float], str, str, str]:
    """(output dims, per-axis scales for the coordinate transform, mode, coordinate mode, nearest mode)."""
    dims = as_int_dims(ctx, shape)
    if ctx.node.op == "Upsample" or ctx.opset < 11:
        scales = [float(s) for s in (ctx.attr("scales") if ctx.node.op == "Upsample" and ctx.opset < 9
                                     else np.asarray(ctx.const(1, "scales")).reshape(-1))]
        sizes = None
        coord, nearest = "asymmetric", "floor"
    else:
        sc = ctx.const(2, "Resize's scales") if ctx.has_input(2) and ctx.const_or_none(2) is not None \
            and np.asarray(ctx.const_or_none(2)).size else None
        if sc is None and ctx.has_input(2) and ctx.const_or_none(2) is None:
            ctx.const(2, "Resize's scales")
        sizes = ints(ctx.const(3, "Resize's sizes")) if ctx.has_input(3) and sc is None else None
        if sc is None and sizes is None:
            raise ctx.error("Resize needs scales or sizes")
        scales = [float(s) for s in np.asarray(sc).reshape(-1)] if sc is not None else None
        coord = ctx.attr("coordinate_transformation_mode", "half_pixel")
        nearest = ctx.attr("nearest_mode", "round_prefer_floor")
    axes = ctx.attr("axes", None) if ctx.opset >= 18 and ctx.node.op == "Resize" else None
    axes = normalize_axes(ctx, axes, len(dims)) if axes is not None else list(range(len(dims)))
    full_scales, out = [1.0] * len(dims), list(dims)
    if sizes is not None:
        if len(sizes) != len(axes):
            raise ctx.error(f"sizes {sizes} must give one size per resized axis ({len(axes)})")
        policy = ctx.attr("keep_aspect_ratio_policy", "stretch")
        ratios = [s / dims[a] for a, s in zip(axes, sizes)]
        if policy in ("not_larger", "not_smaller"):
            r = min(ratios) if policy == "not_larger" else max(ratios)
            ratios = [r] * len(axes)
            sizes = [int(np.floor(r * dims[a] + 0.5)) for a in axes]
        for a, s, r in zip(axes, sizes, ratios):
            out[a], full_scales[a] = s, r
    else:
        if len(scales) != len(axes):
            raise ctx.error(f"scales {scales} must give one scale per resized axis ({len(axes)})")
        for a, s in zip(axes, scales):
            if s <= 0:
                raise ctx.error(f"scales must be positive, got {scales}")
            out[a], full_scales[a] = int(np.floor(dims[a] * s)), s
    mode = ctx.attr("mode", "nearest")
    mode = "linear" if mode == "bilinear" else mode
    if ctx.attr("antialias", 0):
        raise ctx.error("antialiased resize is not supported")
    if mode not in ("nearest", "linear"):
        raise ctx.error(f"resize mode {mode!r} is not supported (nearest and linear are)")
    if coord not in ("half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric", "half_pixel_symmetric"):
        raise ctx.error(f"coordinate_transformation_mode {coord!r} is not supported")
    if nearest not in ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil"):
        raise ctx.error(f"nearest_mode {nearest!r} is not supported")
    return out, full_scales, mode, coord, nearest


def source_coord(coord: str, o, n_in: int, n_out: int, scale: float, xp):
    """The input coordinate of output position `o` (float64 numpy array or float32 ember expression)."""
    length = scale * n_in
    if coord == "align_corners":
        return o * 0.0 if length == 1 else o * ((n_in - 1) / (length - 1))
    if coord == "asymmetric":
        return o * (1.0 / scale)
    if coord == "pytorch_half_pixel" and n_out == 1:
        return o * 0.0 - 0.5
    offset = 0.0
    if coord == "half_pixel_symmetric":
        offset = n_in / 2 * (1 - n_out / length)
    return (o + 0.5) * (1.0 / scale) - 0.5 + offset


def nearest_index(mode: str, x, n_in: int, xp):
    if mode == "floor":
        r = xp.floor(x)
    elif mode == "ceil":
        r = xp.ceil(x)
    elif mode == "round_prefer_floor":
        r = xp.ceil(x - 0.5)
    else:
        r = xp.floor(x + 0.5)
    return xp.minimum(xp.maximum(r, 0.0), float(n_in - 1))


def resize_fold(ctx: OpContext, x: np.ndarray, *rest: "np.ndarray | None") -> np.ndarray:
    out, scales, mode, coord, nearest = _resize_spec(ctx, x.shape)
    result = x
    for k, (n_in, n_out, s) in enumerate(zip(x.shape, out, scales)):
        if n_in == n_out and s == 1.0:
            continue
        o = np.arange(n_out, dtype=np.float32)
        c = source_coord(coord, o, n_in, n_out, np.float32(s), np).astype(np.float32)
        if mode == "nearest":
            idx = nearest_index(nearest, c, n_in, np).astype(np.int64)
            result = np.take(result, idx, axis=k)
            continue
        c = np.minimum(np.maximum(c, np.float32(0)), np.float32(n_in - 1))
        lo = np.floor(c).astype(np.int64)
        hi = np.minimum(lo + 1, n_in - 1)
        w = (c - lo.astype(np.float32)).reshape([-1 if j == k else 1 for j in range(x.ndim)])
        a, b = np.take(result, lo, axis=k), np.take(result, hi, axis=k)
        result = a + (b - a) * w.astype(result.dtype)
    return result.astype(x.dtype)


@register("Resize", since=10, kind="opaque", fold=resize_fold)
def resize(ctx: OpContext, x: Tensor, *rest: "Tensor | None"):
    """Separable: one stage per resized axis (nearest picks a source; linear blends the two neighbours of the
    clamped source coordinate, which equals edge padding)."""
    out, scales, mode, coord, nearest = _resize_spec(ctx, x.shape)
    if mode == "linear" and not x.dtype.is_float:
        raise ctx.error(f"linear resize needs a float input, got {x.dtype}")
    result = x
    dims = as_int_dims(ctx, x.shape)
    for k, (n_in, n_out, s) in enumerate(zip(dims, out, scales)):
        if n_in == n_out and s == 1.0:
            continue
        src = result
        shape = list(src.shape)
        shape[k] = n_out

        def body(*i: Expr, src=src, k=k, n_in=n_in, n_out=n_out, s=s) -> Expr:
            c = source_coord(coord, E.cast(E.float32, i[k]), n_in, n_out, float(np.float32(s)), E)
            at = list(i)
            if mode == "nearest":
                at[k] = E.cast(E.int64, nearest_index(nearest, c, n_in, E))
                return src[tuple(at)]
            c = E.minimum(E.maximum(c, const(0.0)), const(float(n_in - 1)))
            lo = E.floor(c)
            at[k] = E.cast(E.int64, lo)
            a = src[tuple(at)]
            at[k] = E.minimum(E.cast(E.int64, lo) + 1, n_in - 1)
            b = src[tuple(at)]
            return a + (b - a) * E.cast(src.dtype, c - lo)
        result = compute(shape, body, name=ctx.name(f"_axis{k}"))
    if result is x:
        result = compute(x.shape, lambda *i: x[i], name=ctx.name())
    return result


@register("Upsample", since=7, kind="opaque", fold=resize_fold)
def upsample(ctx: OpContext, x: Tensor, *rest: "Tensor | None"):
    return resize(ctx, x, *rest)


# ----------------------------------------------------------------------------------------------- center crop/pad

def _crop_pad(ctx: OpContext, shape: Sequence) -> tuple[list[int], list[int]]:
    """(output dims, offset of the output's origin in the input: positive crops, negative pads)."""
    dims = as_int_dims(ctx, shape)
    target = ints(ctx.const(1, "CenterCropPad's shape"))
    axes = normalize_axes(ctx, ctx.attr("axes", list(range(len(dims)))), len(dims))
    if len(target) != len(axes):
        raise ctx.error(f"shape {target} must give one size per axis in {axes}")
    out, offset = list(dims), [0] * len(dims)
    for a, t in zip(axes, target):
        out[a] = t
        offset[a] = (dims[a] - t) // 2 if dims[a] >= t else -((t - dims[a]) // 2)
    return out, offset


def center_crop_pad_fold(ctx: OpContext, x: np.ndarray, shape: np.ndarray) -> np.ndarray:
    out, offset = _crop_pad(ctx, x.shape)
    result = np.zeros(out, dtype=x.dtype)
    dst, src = [], []
    for n, m, off in zip(x.shape, out, offset):
        lo = max(off, 0)
        hi = min(n, off + m)
        src.append(slice(lo, hi))
        dst.append(slice(lo - off, hi - off))
    result[tuple(dst)] = x[tuple(src)]
    return result


@register("CenterCropPad", since=18, kind="injective", fold=center_crop_pad_fold)
def center_crop_pad(ctx: OpContext, x: Tensor, shape: Tensor):
    out, offset = _crop_pad(ctx, x.shape)
    dims = as_int_dims(ctx, x.shape)

    def body(*i: Expr) -> Expr:
        src, inside = [], const(True)
        for k, (n, off) in enumerate(zip(dims, offset)):
            j = i[k] + off
            src.append(E.minimum(E.maximum(j, 0), n - 1))
            inside = E.logical_and(inside, E.logical_and(j >= 0, j < n))
        return E.select(inside, x[tuple(src)], const(0, x.dtype))
    return compute(out, body, name=ctx.name())
