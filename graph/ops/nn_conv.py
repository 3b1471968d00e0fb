"""Convolutions: Conv, ConvInteger and ConvTranspose, each a direct sum over (input channel of the group, kernel
taps). Padded convolutions first store the padded input (`padded`), so the sum itself has no bounds checks;
ConvTranspose skips reads outside the input with a select on the bounds condition."""
from __future__ import annotations

from typing import Any, Callable, Sequence

from ... import ir as E
from ...ir.dtype import DType, float16, float32, int32
from ...ir.expr import Expr, all_of, const
from ...ir.tensor import MATERIALIZE, Tensor
from ..registry import OpContext, register
from .common import as_int_dims, dim_value, same_dim
from .nn_window import Window, int_list, kernel_attr, spatial_dims, window

Reader = Callable[[Sequence[Expr]], Expr]
Tap = Callable[[Sequence[Expr], Sequence[Expr], Sequence[Expr]], Expr]  # (leading index, outputs, taps) -> value


def accumulator(dtype: DType) -> DType:
    """float16 products are summed in float32 (as onnxruntime does); other types in their own type."""
    return float32 if dtype == float16 else dtype


def channels(ctx: OpContext, x: Tensor, w: Tensor, transpose: bool = False) -> tuple[int, int, int, int]:
    """(group, input channels, output channels, input channels per group), checked against each other."""
    if w.ndim != x.ndim:
        raise ctx.error(f"weight rank {w.ndim} does not match input rank {x.ndim}")
    group = int(ctx.attr("group", 1))
    if group < 1:
        raise ctx.error(f"group {group} must be positive")
    c_in, w0, w1 = as_int_dims(ctx, [x.shape[1], w.shape[0], w.shape[1]], "channel dims")
    if transpose:
        if c_in != w0 or c_in % group:
            raise ctx.error(f"input has {c_in} channels but the weight expects {w0}, in {group} groups")
        return group, c_in, w1 * group, c_in // group
    if c_in != w1 * group:
        raise ctx.error(f"input has {c_in} channels but the weight expects {w1} per group x {group} groups")
    if w0 % group:
        raise ctx.error(f"{w0} output channels are not divisible by group {group}")
    return group, c_in, w0, w1


def add_bias(ctx: OpContext, acc: Tensor, b: "Tensor | None", dtype: DType) -> Tensor:
    """The conv result plus its per-channel bias, in the output dtype."""
    if b is not None and (b.ndim != 1 or not same_dim(b.shape[0], acc.shape[1])):
        raise ctx.error(f"bias shape {tuple(map(str, b.shape))} must be ({acc.shape[1]},)")

    def body(n, m, *o):
        v = acc[(n, m, *o)]
        if b is not None:
            v = v + E.cast(acc.dtype, b[m])
        return E.cast(dtype, v)
    return E.compute(acc.shape, body, name=ctx.name())


def padded(ctx: OpContext, read: Reader, lead: Sequence, win: Window, fill: Any) -> Tap:
    """A reader of the window's taps, `tap(leading index, outputs, taps)`, with no bounds checks: the values
    `read` gives are stored once with the padding the window reads around them (value `fill`), instead of a select
    or guard on every tap, which also keeps the window's accumulators in registers. Without padding, `read`."""
    nd = len(win.kernel)
    reach = [(o - 1) * st + (kk - 1) * d + 1 for o, st, kk, d in zip(win.out, win.strides, win.kernel,
                                                                     win.dilations)]
    if not any(win.begin) and all(r <= n for r, n in zip(reach, win.size)):
        return lambda idx, o, r: read((*idx, *[win.position(d, o[d], r[d]) for d in range(nd)]))

    def body(*i):
        pos = [p - b for p, b in zip(i[len(lead):], win.begin)]
        return E.select(win.inside(pos), read((*i[:len(lead)], *pos)), fill)
    xp = E.compute((*lead, *reach), body, name=ctx.name("_pad"), tag=MATERIALIZE)
    return lambda idx, o, r: xp[(*idx, *[o[d] * win.strides[d] + r[d] * win.dilations[d] for d in range(nd)])]


def conv_sum(ctx: OpContext, x: Tensor, w: Tensor, read_x: Reader, read_w: Reader, name: str) -> Tensor:
    """sum over (rc, taps) of x[n, group base + rc, o*s + r*d - pad] * w[m, rc, r], reads outside x count 0
    (the padded input is stored once: read_x's values with zeros around them)."""
    sizes = spatial_dims(ctx, x)
    group, _, m_out, c_group = channels(ctx, x, w)
    win = window(ctx, sizes, kernel_attr(ctx, len(sizes), w.shape[2:]))
    tap = padded(ctx, read_x, x.shape[:2], win, 0)
    m_group = m_out // group
    rc = E.reduce_axis(c_group, "rc")
    taps = [E.reduce_axis(k, f"r{d}") for d, k in enumerate(win.kernel)]

    def body(n, m, *o):
        c = rc.var if group == 1 else (m // m_group) * c_group + rc.var
        xv = tap((n, c), o, [t.var for t in taps])
        return E.sum(xv * read_w((m, rc.var, *[t.var for t in taps])), axis=[rc, *taps])
    return E.compute((x.shape[0], m_out, *win.out), body, name=name)


@register("Conv", since=1, kind="opaque")
def conv(ctx: OpContext, x: Tensor, w: Tensor, b: "Tensor | None" = None) -> Tensor:
    if not x.dtype.is_float or w.dtype != x.dtype:
        raise ctx.error(f"Conv needs float input and weight of one dtype, got {x.dtype} and {w.dtype}")
    acc = accumulator(x.dtype)
    if ctx.attr(OUTPUT_BLOCK_ATTR, 0):
        return add_bias(ctx, conv_channel_blocked(ctx, x, w), b, x.dtype)
    if ctx.attr(MATRIX_KERNEL_ATTR, None) is not None:
        return add_bias(ctx, conv_as_matmul(ctx, x, w, [int(k) for k in ctx.attr(MATRIX_KERNEL_ATTR)]), b, x.dtype)
    if _as_matmul(ctx, x, w):
        return add_bias(ctx, conv_as_matmul(ctx, x, w), b, x.dtype)
    final = b is None and acc == x.dtype
    out = conv_sum(ctx, x, w, lambda i: E.cast(acc, x[tuple(i)]), lambda i: E.cast(acc, w[tuple(i)]),
                   ctx.name() if final else ctx.name("_acc"))
    return out if final else add_bias(ctx, out, b, x.dtype)


def _as_matmul(ctx: OpContext, x: Tensor, w: Tensor) -> bool:
    """float32 and float16 2-D convolutions without groups run as a matrix multiply (the CPU's register-blocked
    contraction, an NPU's cube unit): out[n, m, p] = sum_k w[m, k] * col[n, k, p] over k = (channel, tap),
    p = output pixel; float16 products are summed in float32."""
    static = all(dim_value(d) is not None for d in (*x.shape, *w.shape))
    return x.dtype in (float32, float16) and x.ndim == 4 and static and int(ctx.attr("group", 1)) == 1


# Measured: Conv 3x3/2 64x56x56 0.34 -> 0.26 ms as a matrix, while a 3-channel 7x7/2 stem went 0.87 -> 1.7 ms.
STRIDED_MATRIX_MIN_CHANNELS = 16


def conv_as_matmul(ctx: OpContext, x: Tensor, w: Tensor, matrix_kernel: "list[int] | None" = None) -> Tensor:
    """im2col (padding becomes zeros there), a matmul over the flattened (channel, tap) axis, and a view back to
    (n, m, oh, ow). The column matrix (n, k, pixel) is built in the layout that measured fastest: as that matrix
    for stride 1 and for strided convolutions with STRIDED_MATRIX_MIN_CHANNELS input channels or more (the
    contraction rule then computes its panels from the input, implicit im2col); for strided stems (few input
    channels, many pixels) as (n, k, oh, ow) with affine (strided, not gathered) reads of the padded input, which
    the matmul reads as the row-major matrix it is (in tiles of whole output rows, each panel computed from the
    padded input, where the row length allows); a 1x1 stride-1 unpadded convolution reads its input as that
    matrix directly, with no copy. With `matrix_kernel` (kh, kw), the weight was laid out once as the (m, c*kh*kw)
    matrix it is read as (graph.rewrites.matrix_conv_weights), so it is read with no index arithmetic."""
    sizes = spatial_dims(ctx, x)
    if matrix_kernel is None:
        _, c_in, m_out, _ = channels(ctx, x, w)
    else:
        c_in = as_int_dims(ctx, [x.shape[1]], "input channels")[0]
        m_out, k_w = as_int_dims(ctx, w.shape, "weight matrix shape")
        if k_w != c_in * matrix_kernel[0] * matrix_kernel[1]:
            raise ctx.error(f"weight matrix has {k_w} columns, not {c_in} channels x {matrix_kernel} taps")
    win = window(ctx, sizes, kernel_attr(ctx, 2, w.shape[2:] if matrix_kernel is None else matrix_kernel))
    (kh, kw), (oh, ow) = win.kernel, win.out
    n, k_len, pixels = dim_value(x.shape[0]), c_in * kh * kw, oh * ow

    def matrix(b, k, p):
        c, ry, rx = k // (kh * kw), (k // kw) % kh, k % kw
        pos = [win.position(0, p // ow, ry), win.position(1, p % ow, rx)]
        return E.select(win.inside(pos), x[(b, c, *pos)], 0)

    if (kh, kw) == (1, 1) and win.strides == (1, 1) and (oh, ow) == tuple(sizes) and not any(win.begin):
        src, view = x, True
    elif win.strides == (1, 1) or c_in >= STRIDED_MATRIX_MIN_CHANNELS:
        src, view = E.compute((n, k_len, pixels), matrix, name=ctx.name("_col"), tag=MATERIALIZE), False
    else:
        tap = padded(ctx, lambda i: x[tuple(i)], x.shape[:2], win, 0)
        src, view = E.compute((n, k_len, oh, ow), lambda b, k, i, j: tap(
            (b, k // (kh * kw)), (i, j), ((k // kw) % kh, k % kw)), name=ctx.name("_col"), tag=MATERIALIZE), True

    def read(b, k, p):
        return src[b, k, p // ow, p % ow] if view else src[b, k, p]

    kk = E.reduce_axis(k_len, "k")
    acc = accumulator(x.dtype)
    def weight(m, k):
        return w[m, k] if matrix_kernel is not None else w[(m, k // (kh * kw), (k // kw) % kh, k % kw)]

    prod = E.compute((n, m_out, pixels), lambda b, m, p: E.sum(
        E.cast(acc, weight(m, kk.var)) * E.cast(acc, read(b, kk.var, p)), axis=kk), name=ctx.name("_mm"))
    return E.compute((n, m_out, oh, ow), lambda b, m, i, j: prod[b, m, i * ow + j], name=ctx.name("_acc"))


OUTPUT_BLOCK_ATTR = "ember_output_block"  # set by graph.rewrites.block_conv_weights on the Conv it rewrote
MATRIX_KERNEL_ATTR = "ember_matrix_kernel"  # (kh, kw), set by graph.rewrites.matrix_conv_weights


def conv_channel_blocked(ctx: OpContext, x: Tensor, wb: Tensor) -> Tensor:
    """A convolution whose constant weight was laid out once as (m // B, c, kh, kw, m % B) (B output channels
    per block, graph.rewrites.block_conv_weights): out[n, mo, pixel, mi] sums the padded input's tap times one
    contiguous row of B weights, so the contraction's vectors run along output channels and each pixel is one
    broadcast of the input. No pixel count then wastes vector lanes (7x7 = 49 pixels fill 4 vectors of 16 only
    77%), strided convolutions read their input with no im2col copy, and the weight needs no packing per call.
    A view puts the channels back in NCHW order."""
    sizes = spatial_dims(ctx, x)
    blocks, c_in, kh, kw, block = as_int_dims(ctx, wb.shape, "blocked weight shape")
    win = window(ctx, sizes, kernel_attr(ctx, 2, (kh, kw)))
    oh, ow = win.out
    tap = padded(ctx, lambda i: x[tuple(i)], x.shape[:2], win, 0)
    rc, ry, rx = E.reduce_axis(c_in, "rc"), E.reduce_axis(kh, "ry"), E.reduce_axis(kw, "rx")
    acc = accumulator(x.dtype)
    prod = E.compute((x.shape[0], blocks, oh * ow, block), lambda n, mo, p, mi: E.sum(
        E.cast(acc, tap((n, rc.var), (p // ow, p % ow), (ry.var, rx.var)))
        * E.cast(acc, wb[mo, rc.var, ry.var, rx.var, mi]), axis=[rc, ry, rx]), name=ctx.name("_blk"))
    return E.compute((x.shape[0], blocks * block, oh, ow), lambda n, m, i, j: prod[n, m // block, i * ow + j,
                                                                                   m % block],
                     name=ctx.name("_acc"))


def zero_point(ctx: OpContext, zp: "Tensor | None", data: Tensor, per_channel: int, what: str) -> Callable:
    """A reader of the zero point of `data` (scalar, or one per `per_channel` entries), as int32."""
    if zp is None:
        return lambda c: const(0, int32)
    if zp.dtype != data.dtype:
        raise ctx.error(f"{what} zero point dtype {zp.dtype} differs from its data's {data.dtype}")
    dims = [dim_value(d) for d in zp.shape]
    if all(d == 1 for d in dims):
        return lambda c: E.cast(int32, zp[(0,) * zp.ndim])
    if zp.ndim == 1 and dims[0] == per_channel:
        return lambda c: E.cast(int32, zp[c])
    raise ctx.error(f"{what} zero point shape {tuple(map(str, zp.shape))} must be a scalar or ({per_channel},)")


@register("ConvInteger", since=10, kind="opaque")
def conv_integer(ctx: OpContext, x: Tensor, w: Tensor, x_zp: "Tensor | None" = None,
                 w_zp: "Tensor | None" = None) -> Tensor:
    """int32 convolution of (x - x_zero_point) and (w - w_zero_point); padding reads 0 after the shift."""
    if x.dtype.name not in ("uint8", "int8") or w.dtype.name not in ("uint8", "int8"):
        raise ctx.error(f"ConvInteger takes int8/uint8 input and weight, got {x.dtype} and {w.dtype}")
    xz = zero_point(ctx, x_zp, x, 1, "input")
    wz = zero_point(ctx, w_zp, w, dim_value(w.shape[0]) or -1, "weight")
    return conv_sum(ctx, x, w, lambda i: E.cast(int32, x[tuple(i)]) - xz(0),
                    lambda i: E.cast(int32, w[tuple(i)]) - wz(i[0]), ctx.name())


def transpose_window(ctx: OpContext, sizes: list[int], kernel: list[int]) -> Window:
    """ConvTranspose geometry: begin/end are the padding cropped from the full (stride*(in-1)+span) output."""
    n = len(sizes)
    strides, dilations = int_list(ctx, "strides", n, 1), int_list(ctx, "dilations", n, 1)
    extra = int_list(ctx, "output_padding", n, 0)
    if any(s < 1 for s in strides) or any(d < 1 for d in dilations) or any(k < 1 for k in kernel):
        raise ctx.error(f"strides {strides}, dilations {dilations} and kernel {kernel} must be positive")
    if any(not 0 <= p < max(s, d) for p, s, d in zip(extra, strides, dilations)):
        raise ctx.error(f"output_padding {extra} must be smaller than the stride or dilation")
    auto_pad = ctx.attr("auto_pad", "NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
    full = [s * (i - 1) + p + (k - 1) * d + 1 for s, i, p, k, d in zip(strides, sizes, extra, kernel, dilations)]
    if "output_shape" in ctx.node.attrs or auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        out = [int(v) for v in ctx.attr("output_shape", [])][-n:] or [i * s for i, s in zip(sizes, strides)]
        if len(out) != n:
            raise ctx.error(f"output_shape {list(ctx.attr('output_shape'))} must give {n} spatial dims")
        total = [f - o for f, o in zip(full, out)]
        begin = [t // 2 if auto_pad == "SAME_UPPER" else t - t // 2 for t in total]
        end = [t - b for t, b in zip(total, begin)]
    elif auto_pad == "VALID":
        begin, end, out = [0] * n, [0] * n, full
    elif auto_pad == "NOTSET":
        pads = int_list(ctx, "pads", 2 * n, 0)
        begin, end = pads[:n], pads[n:]
        out = [f - b - e for f, b, e in zip(full, begin, end)]
    else:
        raise ctx.error(f"auto_pad {auto_pad!r} is not one of NOTSET, SAME_UPPER, SAME_LOWER, VALID")
    if any(o < 1 for o in out):
        raise ctx.error(f"ConvTranspose output size {out} is empty")
    return Window(tuple(sizes), tuple(kernel), tuple(strides), tuple(dilations), tuple(begin), tuple(end),
                  tuple(out))


@register("ConvTranspose", since=1, kind="opaque")
def conv_transpose(ctx: OpContext, x: Tensor, w: Tensor, b: "Tensor | None" = None) -> Tensor:
    """y[n, m, o] = sum of x[n, c, i] * w[c, m', r] over the (i, r) with i*stride + r*dilation = o + pad_begin."""
    if not x.dtype.is_float or w.dtype != x.dtype:
        raise ctx.error(f"ConvTranspose needs float input and weight of one dtype, got {x.dtype} and {w.dtype}")
    sizes = spatial_dims(ctx, x)
    group, _, m_out, c_group = channels(ctx, x, w, transpose=True)
    win = transpose_window(ctx, sizes, kernel_attr(ctx, len(sizes), w.shape[2:]))
    m_group = m_out // group
    acc = accumulator(x.dtype)
    rc = E.reduce_axis(c_group, "rc")
    taps = [E.reduce_axis(k, f"r{d}") for d, k in enumerate(win.kernel)]

    def body(n, m, *o):
        conds, pos = [], []
        for d, t in enumerate(taps):
            q = o[d] + win.begin[d] - t.var * win.dilations[d]
            s = win.strides[d]
            conds += [q >= 0, q < win.size[d] * s] + ([q % s == 0] if s > 1 else [])
            pos.append(q // s if s > 1 else q)
        c = rc.var if group == 1 else (m // m_group) * c_group + rc.var
        wm = m if group == 1 else m % m_group
        xv = E.select(all_of(conds), E.cast(acc, x[(n, c, *pos)]), 0)
        return E.sum(xv * E.cast(acc, w[(c, wm, *[t.var for t in taps])]), axis=[rc, *taps])
    final = b is None and acc == x.dtype
    out = E.compute((x.shape[0], m_out, *win.out), body, name=ctx.name() if final else ctx.name("_acc"))
    return out if final else add_bias(ctx, out, b, x.dtype)
