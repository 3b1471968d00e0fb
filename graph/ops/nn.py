"""nn ops: matrix products here; convolution, pooling and normalization in the nn_* modules imported below."""
from __future__ import annotations

from ... import ir as E
from ...ir.dtype import int32
from ...ir.expr import const
from ...ir.tensor import Tensor
from ..registry import OpContext, register
from . import nn_conv, nn_norm, nn_pool  # noqa: F401  (registers those ops)
from .common import broadcast_shapes, dim_value, read_broadcast, same_dim
from .nn_conv import accumulator, zero_point


def matmul_sum(ctx: OpContext, a: Tensor, b: Tensor, read_a, read_b, name: str) -> Tensor:
    """numpy matmul: a 1-D `a` is a row (its dim dropped from the result), a 1-D `b` a column; batch dims
    broadcast. `read_a(batch, i, k)` / `read_b(batch, k, j)` give the (converted) operand values."""
    if a.ndim == 0 or b.ndim == 0:
        raise ctx.error("MatMul operands must have rank >= 1")
    k_a = a.shape[-1]
    k_b = b.shape[-2] if b.ndim > 1 else b.shape[0]
    if not same_dim(k_a, k_b):
        raise ctx.error(f"inner dimensions differ: {tuple(map(str, a.shape))} @ {tuple(map(str, b.shape))}")
    batch = broadcast_shapes(ctx, a.shape[:-2], b.shape[:-2])
    rows = (a.shape[-2],) if a.ndim > 1 else ()
    cols = (b.shape[-1],) if b.ndim > 1 else ()
    k = E.reduce_axis(k_a, "k")
    nb = len(batch)

    def body(*idx):
        bi, rest = idx[:nb], list(idx[nb:])
        i = rest.pop(0) if rows else None
        j = rest.pop(0) if cols else None
        ai = batch_index(a, bi)
        bj = batch_index(b, bi)
        av = read_a(tuple(ai) + ((i, k.var) if rows else (k.var,)))
        bv = read_b(tuple(bj) + ((k.var, j) if cols else (k.var,)))
        return E.sum(av * bv, axis=k)
    return E.compute((*batch, *rows, *cols), body, name=name)


def batch_index(t: Tensor, batch: tuple) -> tuple:
    """The index into `t`'s batch dims (all but its last two) for the broadcast batch index `batch`."""
    dims = t.shape[:-2]
    return tuple(const(0) if dim_value(d) == 1 else batch[len(batch) - len(dims) + k] for k, d in enumerate(dims))


@register("MatMul", since=1, kind="opaque")
def matmul(ctx: OpContext, a: Tensor, b: Tensor) -> Tensor:
    if a.dtype != b.dtype or a.dtype.is_bool:
        raise ctx.error(f"MatMul operands must be numeric of one dtype, got {a.dtype} and {b.dtype}")
    acc = accumulator(a.dtype)
    final = acc == a.dtype
    out = matmul_sum(ctx, a, b, lambda i: E.cast(acc, a[i]), lambda i: E.cast(acc, b[i]),
                     ctx.name() if final else ctx.name("_acc"))
    return out if final else E.compute(out.shape, lambda *i: E.cast(a.dtype, out[i]), name=ctx.name())


@register("MatMulInteger", since=10, kind="opaque")
def matmul_integer(ctx: OpContext, a: Tensor, b: Tensor, a_zp: "Tensor | None" = None,
                   b_zp: "Tensor | None" = None) -> Tensor:
    """int32 (a - a_zero_point) @ (b - b_zero_point); a's zero point may be per row, b's per column."""
    if a.dtype.name not in ("uint8", "int8") or b.dtype.name not in ("uint8", "int8"):
        raise ctx.error(f"MatMulInteger takes int8/uint8 operands, got {a.dtype} and {b.dtype}")
    az = zero_point(ctx, a_zp, a, dim_value(a.shape[-2]) if a.ndim > 1 else -1, "A")
    bz = zero_point(ctx, b_zp, b, dim_value(b.shape[-1]) if b.ndim > 1 else -1, "B")
    return matmul_sum(ctx, a, b, lambda i: E.cast(int32, a[i]) - az(i[-2] if a.ndim > 1 else 0),
                      lambda i: E.cast(int32, b[i]) - bz(i[-1] if b.ndim > 1 else 0), ctx.name())


@register("Gemm", since=1, kind="opaque")
def gemm(ctx: OpContext, a: Tensor, b: Tensor, c: "Tensor | None" = None) -> Tensor:
    """alpha * A' @ B' + beta * C, with A' = A.T if transA (likewise B) and C broadcast to (M, N)."""
    if a.ndim != 2 or b.ndim != 2:
        raise ctx.error(f"Gemm operands must be matrices, got ranks {a.ndim} and {b.ndim}")
    if a.dtype != b.dtype or a.dtype.is_bool:
        raise ctx.error(f"Gemm operands must be numeric of one dtype, got {a.dtype} and {b.dtype}")
    ta, tb = int(ctx.attr("transA", 0)), int(ctx.attr("transB", 0))
    alpha, beta = float(ctx.attr("alpha", 1.0)), float(ctx.attr("beta", 1.0))
    m, k_a = (a.shape[1], a.shape[0]) if ta else a.shape
    k_b, n = (b.shape[1], b.shape[0]) if tb else b.shape
    if not same_dim(k_a, k_b):
        raise ctx.error(f"inner dimensions differ: A{' (transposed)' if ta else ''} is "
                        f"{tuple(map(str, a.shape))}, B{' (transposed)' if tb else ''} is {tuple(map(str, b.shape))}")
    if c is not None:
        if c.ndim > 2:
            raise ctx.error(f"C must have rank <= 2, got {c.ndim}")
        broadcast_shapes(ctx, (m, n), c.shape)
        if not all(same_dim(x, y) or dim_value(x) == 1 for x, y in zip(c.shape, (m, n)[2 - c.ndim:])):
            raise ctx.error(f"C shape {tuple(map(str, c.shape))} does not broadcast to ({m}, {n})")
    acc = accumulator(a.dtype)
    k = E.reduce_axis(k_a, "k")
    epilogue = alpha != 1.0 or (c is not None and beta != 0.0) or acc != a.dtype
    prod = E.compute((m, n), lambda i, j: E.sum(E.cast(acc, a[(k.var, i) if ta else (i, k.var)])
                                                * E.cast(acc, b[(j, k.var) if tb else (k.var, j)]), axis=k),
                     name=ctx.name("_acc") if epilogue else ctx.name())
    if not epilogue:
        return prod

    def body(i, j):
        v = prod[i, j] * alpha if alpha != 1.0 else prod[i, j]
        if c is not None and beta != 0.0:
            cv = E.cast(acc, read_broadcast(c, (i, j)))
            v = v + (cv * beta if beta != 1.0 else cv)
        return E.cast(a.dtype, v)
    return E.compute((m, n), body, name=ctx.name())

