"""Linear quantization: QuantizeLinear, DequantizeLinear, DynamicQuantizeLinear and the quantized products
QLinearMatMul and QLinearConv (MatMulInteger and ConvInteger live with their float versions in nn)."""
from __future__ import annotations

from typing import Callable, Sequence

from ... import ir as E
from ...ir.dtype import DType, float32, float64, int32, promote, uint8
from ...ir.expr import Expr, const
from ...ir.tensor import Tensor
from ..onnx_types import dtype_of_code, type_name
from ..registry import OpContext, register
from .common import dim_value, normalize_axis, same_dim
from .nn import batch_index, matmul_sum
from .nn_conv import conv_sum, zero_point

Reader = Callable[[Sequence[Expr]], Expr]

# The integer ranges quantized values saturate to (the quantized types ember has).
RANGES = {"int8": (-128, 127), "uint8": (0, 255), "int16": (-32768, 32767)}


def dims(t: "Tensor | Sequence") -> str:
    """A shape as Python prints a tuple of ints: (2, 3), (4,), ()."""
    shape = [str(d) for d in (t.shape if isinstance(t, Tensor) else t)]
    return "(" + ", ".join(shape) + ("," if len(shape) == 1 else "") + ")"


def onnx_type(ctx: OpContext, name: str) -> "DType | None":
    """A dtype attribute (an ONNX TensorProto code), or None when absent or 0 (UNDEFINED)."""
    code = int(ctx.attr(name, 0))
    if not code:
        return None
    dtype = dtype_of_code(code)
    if dtype is None:
        raise ctx.error(f"{name} {type_name(code)} is not supported: ember quantizes to {', '.join(RANGES)}")
    return dtype


def quant_param(ctx: OpContext, p: Tensor, x: Tensor, axis: int, block: int, what: str) -> Reader:
    """A reader, by index into `x`, of a scale or zero point: per tensor (one element), per axis (1-D along
    `axis`) or blocked (x's shape with `axis` cut into blocks of `block`, the last one possibly short)."""
    if p.ndim <= 1 and all(dim_value(d) == 1 for d in p.shape):
        return lambda i: p[(0,) * p.ndim]
    if block <= 0:
        if p.ndim != 1 or not same_dim(p.shape[0], x.shape[axis]):
            raise ctx.error(f"{what} shape {dims(p)} must be a scalar or ({x.shape[axis]},) for axis {axis} of "
                            f"input shape {dims(x)}")
        return lambda i: p[i[axis]]
    size = dim_value(x.shape[axis])
    if size is None:
        raise ctx.error(f"blocked quantization needs a static size along axis {axis}, got {dims(x)}")
    want = tuple(-(-size // block) if d == axis else x.shape[d] for d in range(x.ndim))
    if p.ndim != x.ndim or not all(same_dim(a, b) for a, b in zip(p.shape, want)):
        raise ctx.error(f"{what} shape {dims(p)} must be {dims(want)} for blocks of {block} along "
                        f"axis {axis} of input shape {dims(x)}")
    return lambda i: p[tuple(i[d] // block if d == axis else i[d] for d in range(x.ndim))]


def granularity(ctx: OpContext, x: Tensor, scale: Tensor, zp: "Tensor | None") -> tuple[int, int]:
    """(axis, block_size), checked; the zero point must have the scale's shape."""
    if zp is not None and (zp.ndim != scale.ndim or not all(map(same_dim, zp.shape, scale.shape))):
        raise ctx.error(f"zero point shape {dims(zp)} differs from the scale's {dims(scale)}")
    block = int(ctx.attr("block_size", 0))
    if block < 0:
        raise ctx.error(f"block_size {block} must be positive (or 0 for per-tensor/per-axis quantization)")
    if scale.ndim <= 1 and all(dim_value(d) == 1 for d in scale.shape):
        return 0, block  # per tensor: the axis is unused (and the default 1 may not exist)
    return normalize_axis(ctx, int(ctx.attr("axis", 1)), x.ndim), block


def saturate_round(v: Expr, zp: Expr, dtype: DType) -> Expr:
    """round_half_even(v) + zp saturated to `dtype`. v is clamped before its conversion to int32 (out of range
    float-to-int conversions are undefined), wide enough that the saturation after adding zp is unchanged."""
    lo, hi = RANGES[dtype.name]
    r = E.cast(float32, E.round(v)) if v.dtype != float64 else E.round(v)
    r = E.minimum(E.maximum(r, const(-(1 << 20), r.dtype)), const(1 << 20, r.dtype))
    q = E.cast(int32, r) + zp
    return E.cast(dtype, E.minimum(E.maximum(q, const(lo, int32)), const(hi, int32)))


@register("QuantizeLinear", since=10, kind="elementwise")
def quantize_linear(ctx: OpContext, x: Tensor, scale: Tensor, zp: "Tensor | None" = None) -> Tensor:
    """y = saturate(round_half_even(x / scale) + zero_point). The division is in the promoted type of x and
    the scale, or in `precision` when given; the output type is the zero point's, else output_dtype, else
    uint8. `saturate` only concerns float8 outputs, which ember does not have."""
    if not x.dtype.is_float or not scale.dtype.is_float:
        raise ctx.error(f"QuantizeLinear takes float input and scale, got {x.dtype} and {scale.dtype}")
    want = onnx_type(ctx, "output_dtype")
    out = zp.dtype if zp is not None else want or uint8
    if want is not None and want != out:
        raise ctx.error(f"output_dtype {want} differs from the zero point's type {out}")
    if out.name not in RANGES:
        raise ctx.error(f"QuantizeLinear output type {out} is not supported: ember quantizes to "
                        f"{', '.join(RANGES)}")
    prec = onnx_type(ctx, "precision") or promote(x.dtype, scale.dtype)
    if not prec.is_float:
        raise ctx.error(f"precision {prec} must be a float type")
    axis, block = granularity(ctx, x, scale, zp)
    s = quant_param(ctx, scale, x, axis, block, "scale")
    z = quant_param(ctx, zp, x, axis, block, "zero point") if zp is not None else None

    def body(*i):
        v = E.cast(prec, E.cast(prec, x[i]) / E.cast(prec, s(i)))
        return saturate_round(v, E.cast(int32, z(i)) if z else const(0, int32), out)
    return E.compute(x.shape, body, name=ctx.name())


@register("DequantizeLinear", since=10, kind="elementwise")
def dequantize_linear(ctx: OpContext, x: Tensor, scale: Tensor, zp: "Tensor | None" = None) -> Tensor:
    """y = (x - zero_point) * scale, computed in float32 (exact for 8 and 16-bit x) and rounded once to the
    output type: output_dtype, else the scale's type."""
    if x.dtype.name not in (*RANGES, "int32"):
        raise ctx.error(f"DequantizeLinear input type {x.dtype} is not supported: ember dequantizes "
                        f"{', '.join(RANGES)}, int32")
    if not scale.dtype.is_float:
        raise ctx.error(f"scale must be float, got {scale.dtype}")
    if zp is not None and zp.dtype != x.dtype:
        raise ctx.error(f"zero point type {zp.dtype} differs from the input's {x.dtype}")
    out = onnx_type(ctx, "output_dtype") or scale.dtype
    if not out.is_float:
        raise ctx.error(f"output_dtype {out} must be a float type")
    axis, block = granularity(ctx, x, scale, zp)
    s = quant_param(ctx, scale, x, axis, block, "scale")
    z = quant_param(ctx, zp, x, axis, block, "zero point") if zp is not None else None

    def body(*i):
        v = E.cast(float32, x[i])
        if z is not None:
            v = v - E.cast(float32, z(i))
        return E.cast(out, v * E.cast(float32, s(i)))
    return E.compute(x.shape, body, name=ctx.name())


@register("DynamicQuantizeLinear", since=11, kind="opaque")
def dynamic_quantize_linear(ctx: OpContext, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """uint8 quantization over the range [min(x, 0), max(x, 0)] (so 0 is exact): scale = range / 255 (1 / 255
    for an all-zero x), zero point = round(saturate(-min / scale)); returns (y, scale, zero point)."""
    if x.dtype != float32:
        raise ctx.error(f"DynamicQuantizeLinear takes float32 input, got {x.dtype}")
    axes = [E.reduce_axis(d, f"k{n}") for n, d in enumerate(x.shape)]
    read = x[tuple(a.var for a in axes)] if axes else x[()]
    hi = E.compute((), lambda: E.max(read, axis=axes), name=ctx.name("_max")) if axes else x
    lo = E.compute((), lambda: E.min(read, axis=axes), name=ctx.name("_min")) if axes else x
    zero = const(0.0, float32)

    def scale_body() -> Expr:
        top, bottom = E.maximum(hi[()], zero), E.minimum(lo[()], zero)
        return E.select(top == bottom, const(1.0, float32), top - bottom) / const(255.0, float32)
    scale = E.compute((), scale_body, name=ctx.name("_scale"))
    zp = E.compute((), lambda: E.cast(uint8, E.round(E.minimum(E.maximum(
        zero - E.minimum(lo[()], zero) / scale[()], zero), const(255.0, float32)))), name=ctx.name("_zero_point"))
    y = E.compute(x.shape, lambda *i: saturate_round(x[i] / scale[()], E.cast(int32, zp[()]), uint8),
                  name=ctx.name())
    return y, scale, zp


def requantize(ctx: OpContext, acc: Tensor, multiplier: Callable[..., Expr], y_zp: "Tensor | None",
               out: DType) -> Tensor:
    """saturate(round_half_even(acc * multiplier) + y_zero_point) in `out`; in float64, which holds any
    int32 accumulator exactly."""
    if y_zp is not None and not all(dim_value(d) == 1 for d in y_zp.shape):
        raise ctx.error(f"output zero point shape {dims(y_zp)} must be a scalar")
    if y_zp is not None and y_zp.dtype != out:
        raise ctx.error(f"output zero point type {y_zp.dtype} must be {out}")

    def body(*i):
        zp = E.cast(int32, y_zp[(0,) * y_zp.ndim]) if y_zp is not None else const(0, int32)
        return saturate_round(E.cast(float64, acc[i]) * multiplier(*i), zp, out)
    return E.compute(acc.shape, body, name=ctx.name())


def scalar(ctx: OpContext, t: Tensor, what: str) -> Expr:
    if not all(dim_value(d) == 1 for d in t.shape):
        raise ctx.error(f"{what} shape {dims(t)} must be a scalar")
    return E.cast(float64, t[(0,) * t.ndim])


def check_quantized(ctx: OpContext, pairs: Sequence[tuple[str, Tensor, Tensor]]) -> None:
    for what, data, scale in pairs:
        if data.dtype.name not in ("int8", "uint8"):
            raise ctx.error(f"{what} must be int8 or uint8, got {data.dtype}")
        if not scale.dtype.is_float:
            raise ctx.error(f"{what} scale must be float, got {scale.dtype}")


@register("QLinearMatMul", since=10, kind="opaque")
def qlinear_matmul(ctx: OpContext, a: Tensor, a_scale: Tensor, a_zp: "Tensor | None", b: Tensor,
                   b_scale: Tensor, b_zp: "Tensor | None", y_scale: Tensor, y_zp: "Tensor | None" = None
                   ) -> Tensor:
    """MatMulInteger's int32 product requantized with a_scale * b_scale / y_scale. a's scale and zero point
    may be per row (shape (M,) or (..., M, 1)), b's per column ((N,) or (..., 1, N))."""
    check_quantized(ctx, [("A", a, a_scale), ("B", b, b_scale)])
    if a.ndim < 1 or b.ndim < 1:
        raise ctx.error("QLinearMatMul operands must have rank >= 1")
    sa = matrix_param(ctx, a_scale, a, rows=True, what="A scale")
    sb = matrix_param(ctx, b_scale, b, rows=False, what="B scale")
    za = matrix_param(ctx, a_zp, a, rows=True, what="A zero point", dtype=int32)
    zb = matrix_param(ctx, b_zp, b, rows=False, what="B zero point", dtype=int32)
    for zp, data, what in ((a_zp, a, "A"), (b_zp, b, "B")):
        if zp is not None and zp.dtype != data.dtype:
            raise ctx.error(f"{what} zero point type {zp.dtype} differs from its data's {data.dtype}")
    acc = matmul_sum(ctx, a, b, lambda i: E.cast(int32, a[i]) - za(i), lambda i: E.cast(int32, b[i]) - zb(i),
                     ctx.name("_acc"))
    ys = scalar(ctx, y_scale, "output scale")
    nb = acc.ndim - (a.ndim > 1) - (b.ndim > 1)

    def multiplier(*o):
        bi, rest = o[:nb], list(o[nb:])
        i = rest.pop(0) if a.ndim > 1 else const(0)
        j = rest.pop(0) if b.ndim > 1 else const(0)
        ia = (*batch_index(a, bi), i, const(0)) if a.ndim > 1 else (const(0),)
        ib = (*batch_index(b, bi), const(0), j) if b.ndim > 1 else (const(0),)
        return sa(ia) * sb(ib) / ys
    return requantize(ctx, acc, multiplier, y_zp, y_zp.dtype if y_zp is not None else a.dtype)


def matrix_param(ctx: OpContext, p: "Tensor | None", data: Tensor, rows: bool, what: str,
                 dtype: DType = float64) -> Reader:
    """A reader, by index into `data`, of a per-tensor, per-row (rows=True) or per-column quantization
    parameter, converted to `dtype`."""
    if p is None:
        return lambda i: const(0, dtype)
    if all(dim_value(d) == 1 for d in p.shape):
        return lambda i: E.cast(dtype, p[(0,) * p.ndim])
    if data.ndim < 2:
        raise ctx.error(f"{what} shape {dims(p)} must be a scalar for a 1-D operand")
    axis = data.ndim - 2 if rows else data.ndim - 1
    if p.ndim == 1:
        if not same_dim(p.shape[0], data.shape[axis]):
            raise ctx.error(f"{what} shape {dims(p)} must be ({data.shape[axis]},)")
        return lambda i: E.cast(dtype, p[i[axis]])
    other = data.ndim - 1 if rows else data.ndim - 2
    ok = p.ndim == data.ndim and dim_value(p.shape[other]) == 1 and all(
        same_dim(d, e) or dim_value(d) == 1 for k, (d, e) in enumerate(zip(p.shape, data.shape)) if k != other)
    if not ok:
        want = "(..., M, 1)" if rows else "(..., 1, N)"
        raise ctx.error(f"{what} shape {dims(p)} must be a scalar, 1-D or {want} for operand shape {dims(data)}")
    return lambda i: E.cast(dtype, p[tuple(const(0) if dim_value(d) == 1 else i[k] for k, d in enumerate(p.shape))])


@register("QLinearConv", since=10, kind="opaque")
def qlinear_conv(ctx: OpContext, x: Tensor, x_scale: Tensor, x_zp: "Tensor | None", w: Tensor, w_scale: Tensor,
                 w_zp: "Tensor | None", y_scale: Tensor, y_zp: "Tensor | None" = None, bias: "Tensor | None" = None
                 ) -> Tensor:
    """ConvInteger's int32 sum plus the int32 bias, requantized with x_scale * w_scale / y_scale; the weight's
    scale and zero point may be per output channel."""
    check_quantized(ctx, [("input", x, x_scale), ("weight", w, w_scale)])
    xz = zero_point(ctx, x_zp, x, 1, "input")
    wz = zero_point(ctx, w_zp, w, dim_value(w.shape[0]) or -1, "weight")
    acc = conv_sum(ctx, x, w, lambda i: E.cast(int32, x[tuple(i)]) - xz(0),
                   lambda i: E.cast(int32, w[tuple(i)]) - wz(i[0]), ctx.name("_acc"))
    if bias is not None:
        if bias.dtype != int32 or bias.ndim != 1 or not same_dim(bias.shape[0], acc.shape[1]):
            raise ctx.error(f"bias must be int32 of shape ({acc.shape[1]},), got {bias.dtype} {dims(bias)}")
        summed = acc
        acc = E.compute(acc.shape, lambda n, m, *o: summed[(n, m, *o)] + bias[m], name=ctx.name("_biased"))
    xs = scalar(ctx, x_scale, "input scale")
    ys = scalar(ctx, y_scale, "output scale")
    m_out = dim_value(acc.shape[1])
    if all(dim_value(d) == 1 for d in w_scale.shape):
        ws = lambda m: E.cast(float64, w_scale[(0,) * w_scale.ndim])
    elif w_scale.ndim == 1 and dim_value(w_scale.shape[0]) == m_out:
        ws = lambda m: E.cast(float64, w_scale[m])
    else:
        raise ctx.error(f"weight scale shape {dims(w_scale)} must be a scalar or ({m_out},)")
    return requantize(ctx, acc, lambda n, m, *o: xs * ws(m) / ys, y_zp, y_zp.dtype if y_zp is not None else x.dtype)
