"""Ops of recent opsets that fit no bigger family: RMSNormalization, Swish, SwiGLU, CumProd, the spectral windows
(Blackman, Hamming, Hann), RotaryEmbedding and Det."""
from __future__ import annotations

import math
from typing import Callable

from ... import ir as ember
from ...ir.dtype import float64, int64
from ...ir.expr import Expr
from ...ir.tensor import MATERIALIZE, Tensor
from ..onnx_types import dtype_of_code, type_name
from ..registry import OpContext, register
from .common import as_int_dims, dim_value, normalize_axis, read_broadcast, same_dim
from .elementwise import FLOATS, NUMBERS, check_dtype, check_same_dtype
from .nn_conv import accumulator
from .nn_norm import stash_dtype
from .reduce_scan import cumulative, scalar_const


@register("RMSNormalization", since=23, kind="reduction")
def rms_normalization(ctx: OpContext, x: Tensor, scale: Tensor) -> Tensor:
    """x / sqrt(mean(x^2 over dims [axis, rank)) + epsilon), computed in stash_type and cast back to x's type,
    then multiplied by Scale (unidirectionally broadcast to x), as the op's function body defines it."""
    check_dtype(ctx, x, FLOATS, "X")
    dtype = check_same_dtype(ctx, [x, scale])
    axis = normalize_axis(ctx, int(ctx.attr("axis", -1)), x.ndim)
    eps = float(ctx.attr("epsilon", 1e-5))
    acc = stash_dtype(ctx, x)
    if scale.ndim > x.ndim or not all(dim_value(s) == 1 or same_dim(s, d)
                                      for s, d in zip(scale.shape, x.shape[x.ndim - scale.ndim:])):
        raise ctx.error(f"Scale shape {tuple(map(str, scale.shape))} does not broadcast to X shape "
                        f"{tuple(map(str, x.shape))}")
    lead, norm = x.shape[:axis], x.shape[axis:]
    count: Expr = ember.const(1)
    for d in norm:
        count = count * d
    axes = [ember.reduce_axis(d, f"r{k}") for k, d in enumerate(norm)]

    def square(*i: Expr) -> Expr:
        v = ember.cast(acc, x[(*i, *(a.var for a in axes))])
        return ember.sum(v * v, axis=axes)
    squares = ember.compute(lead, square, name=ctx.name("_sqsum"))
    inv = ember.compute(lead, lambda *i: ember.rsqrt(squares[i] / ember.cast(acc, count) + eps),
                        name=ctx.name("_invrms"))
    return ember.compute(x.shape, lambda *i: ember.cast(dtype, ember.cast(acc, x[i]) * inv[i[:axis]])
                         * read_broadcast(scale, i), name=ctx.name())


def _swish(v: Expr, alpha: float) -> Expr:
    return v * ember.sigmoid(v * alpha)


@register("Swish", since=24, kind="elementwise")
def swish(ctx: OpContext, x: Tensor) -> Tensor:
    """x * sigmoid(alpha * x)."""
    check_dtype(ctx, x, FLOATS)
    alpha = float(ctx.attr("alpha", 1.0))
    return ember.compute(x.shape, lambda *i: _swish(x[i], alpha), name=ctx.name())


@register("SwiGLU", since=28, kind="elementwise")
def swiglu(ctx: OpContext, a: Tensor, b: Tensor) -> Tensor:
    """Swish(A) * B; the spec applies no broadcasting, so A and B must have one shape."""
    check_dtype(ctx, a, FLOATS, "A")
    check_same_dtype(ctx, [a, b])
    if a.ndim != b.ndim or not all(same_dim(p, q) for p, q in zip(a.shape, b.shape)):
        raise ctx.error(f"A shape {tuple(map(str, a.shape))} and B shape {tuple(map(str, b.shape))} must match")
    alpha = float(ctx.attr("alpha", 1.0))
    return ember.compute(a.shape, lambda *i: _swish(a[i], alpha) * b[i], name=ctx.name())


@register("CumProd", since=26, kind="reduction")
def cumprod(ctx: OpContext, x: Tensor, axis_input: Tensor) -> Tensor:
    """Like CumSum (a masked product over the whole axis); an empty product (the first exclusive element) is 1."""
    check_dtype(ctx, x, NUMBERS)
    return cumulative(ctx, x, ember.prod)


# ---- windows -------------------------------------------------------------------------------------------------------

def _window(ctx: OpContext, terms: Callable[[Expr], Expr]) -> Tensor:
    """A window of `size` (a constant input) points: terms(phase) with phase = 2*pi*n/N, where N is size when
    periodic and size - 1 when symmetric. Evaluated in float64, then cast to output_datatype."""
    size = scalar_const(ctx, 0, "size")
    if size < 0:
        raise ctx.error(f"size {size} must be non-negative")
    code = int(ctx.attr("output_datatype", 1))
    out = dtype_of_code(code)
    if out is None or out.is_bool:
        raise ctx.error(f"output_datatype {type_name(code)} is not a numeric type ember supports")
    span = size if int(ctx.attr("periodic", 1)) else size - 1
    def body(n: Expr) -> Expr:
        # A symmetric window of one point divides by zero (NaN), as the op's function body does.
        return ember.cast(out, terms(ember.cast(float64, n) * (2 * math.pi) / ember.const(float(span), float64)))
    return ember.compute((size,), body, name=ctx.name())


@register("HannWindow", since=17, kind="injective")
def hann_window(ctx: OpContext, size: Tensor) -> Tensor:
    return _window(ctx, lambda t: 0.5 - 0.5 * ember.cos(t))


@register("HammingWindow", since=17, kind="injective")
def hamming_window(ctx: OpContext, size: Tensor) -> Tensor:
    """alpha = 25/46 (the exact optimum that 0.54 rounds), as the op's function body uses."""
    return _window(ctx, lambda t: 25.0 / 46.0 - 21.0 / 46.0 * ember.cos(t))


@register("BlackmanWindow", since=17, kind="injective")
def blackman_window(ctx: OpContext, size: Tensor) -> Tensor:
    return _window(ctx, lambda t: 0.42 - 0.5 * ember.cos(t) + 0.08 * ember.cos(t * 2.0))


# ---- rotary embedding ----------------------------------------------------------------------------------------------

@register("RotaryEmbedding", since=23, kind="injective")
def rotary_embedding(ctx: OpContext, x: Tensor, cos_cache: Tensor, sin_cache: Tensor,
                     position_ids: "Tensor | None" = None) -> Tensor:
    """Rotates pairs (x1, x2) of the first rotary_embedding_dim features of each head by the angle whose cos and
    sin the caches hold for the token's position: (x1 cos - x2 sin, x1 sin + x2 cos). Pairs are the two halves of
    the rotated part, or neighbours when interleaved; the other features pass through. X is (batch, heads, seq,
    head_size), or (batch, seq, heads * head_size) with num_heads given."""
    check_dtype(ctx, x, FLOATS, "X")
    check_same_dtype(ctx, [x, cos_cache, sin_cache])
    if x.ndim == 4:
        head = as_int_dims(ctx, x.shape[3:], "head size")[0]
    elif x.ndim == 3:
        heads = int(ctx.attr("num_heads", 0))
        (hidden,) = as_int_dims(ctx, x.shape[2:], "hidden size")
        if heads < 1 or hidden % heads:
            raise ctx.error(f"a 3-D input needs num_heads dividing its hidden size {hidden}, got {heads}")
        head = hidden // heads
    else:
        raise ctx.error(f"X must be 3-D or 4-D, got rank {x.ndim}")
    rot = int(ctx.attr("rotary_embedding_dim", 0)) or head
    if rot % 2 or rot > head:
        raise ctx.error(f"rotary_embedding_dim {rot} must be even and at most the head size {head}")
    half = rot // 2
    interleaved = bool(ctx.attr("interleaved", 0))
    cache_rank = 2 if position_ids is not None else 3
    for cache, what in ((cos_cache, "cos_cache"), (sin_cache, "sin_cache")):
        if cache.ndim != cache_rank or dim_value(cache.shape[-1]) != half:
            raise ctx.error(f"{what} shape {tuple(map(str, cache.shape))} must be "
                            f"{'(positions' if position_ids is not None else '(batch, seq'}, {half})")
    if position_ids is not None and (position_ids.ndim != 2 or position_ids.dtype != int64):
        raise ctx.error(f"position_ids must be a 2-D int64 tensor, got {position_ids.dtype} of rank "
                        f"{position_ids.ndim}")
    acc = accumulator(x.dtype)

    def body(*i: Expr) -> Expr:
        if x.ndim == 4:
            b, s, d = i[0], i[2], i[3]

            def feature(f: Expr) -> Expr:
                return ember.cast(acc, x[(i[0], i[1], i[2], f)])
        else:
            b, s, d = i[0], i[1], i[2] % head

            def feature(f: Expr) -> Expr:
                return ember.cast(acc, x[(i[0], i[1], i[2] - d + f)])
        # Indices stay in range for every d (also d >= rot, whose rotation is computed but not selected).
        k = (d // 2) % half if interleaved else d % half
        first, second = (k * 2, k * 2 + 1) if interleaved else (k, k + half)
        row = (position_ids[b, s],) if position_ids is not None else (b, s)
        c, sn = ember.cast(acc, cos_cache[(*row, k)]), ember.cast(acc, sin_cache[(*row, k)])
        x1, x2 = feature(first), feature(second)
        is_first = d % 2 == 0 if interleaved else d < half
        value = ember.select(is_first, x1 * c - x2 * sn, x1 * sn + x2 * c)
        if rot < head:
            value = ember.select(d < rot, value, feature(d))
        return ember.cast(x.dtype, value)

    return ember.compute(x.shape, body, name=ctx.name())


# ---- determinant ---------------------------------------------------------------------------------------------------

@register("Det", since=11)
def det(ctx: OpContext, x: Tensor) -> Tensor:
    """Gaussian elimination with partial pivoting, unrolled over the (static) matrix size: step k picks the row
    with the largest |A[r, k]| (r >= k), swaps it into row k and clears column k below it; the determinant is the
    product of the pivots, negated once per swap. A zero pivot column gives 0 (its updates are skipped)."""
    check_dtype(ctx, x, FLOATS, "X")
    if x.ndim < 2:
        raise ctx.error(f"X must have shape (..., M, M), got rank {x.ndim}")
    n, n2 = as_int_dims(ctx, x.shape[-2:], "matrix shape")
    if n != n2:
        raise ctx.error(f"matrices must be square, got {n}x{n2}")
    acc = accumulator(x.dtype)
    batch = x.shape[:-2]
    nb = len(batch)
    a = ember.compute(x.shape, lambda *i: ember.cast(acc, x[i]), name=ctx.name("_lu0"))
    pivots: list[Tensor] = []
    for k in range(n - 1):
        r = ember.reduce_axis(n, "r")
        pivot, _ = ember.compute(batch, lambda *b, a=a, k=k, r=r: ember.argmax(
            ember.abs(a[(*b, r.var, k)]), axis=r, where=r.var >= k), name=ctx.name(f"_pivot{k}"))
        pivots.append(pivot)

        def step(*i: Expr, a: Tensor = a, k: int = k, pivot: Tensor = pivot) -> Expr:
            b, row, col = i[:nb], i[nb], i[nb + 1]
            p = ember.cast(row.dtype, pivot[b])

            def swapped(rr: "Expr | int", cc: "Expr | int") -> Expr:
                """Element (rr, cc) after swapping rows k and p."""
                src = p if isinstance(rr, int) else ember.select(rr == k, p, ember.select(rr == p, k, rr))
                return a[(*b, src, cc)]
            top, lead = swapped(k, k), swapped(row, k)
            factor = ember.select(top == 0.0, ember.const(0, acc), lead / top)
            return ember.select(row > k, swapped(row, col) - factor * swapped(k, col), swapped(row, col))
        a = ember.compute(x.shape, step, name=ctx.name(f"_lu{k + 1}"), tag=MATERIALIZE)
    m = ember.reduce_axis(n, "m")
    diag = ember.compute(batch, lambda *b: ember.prod(a[(*b, m.var, m.var)], axis=m), name=ctx.name("_diag"))

    def result(*b: Expr) -> Expr:
        value = diag[b]
        for k, pivot in enumerate(pivots):
            value = ember.select(pivot[b] == k, value, -value)
        return ember.cast(x.dtype, value)
    return ember.compute(batch, result, name=ctx.name())
