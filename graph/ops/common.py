"""Helpers every op family uses: numpy-style broadcasting of shapes and indices, axis normalisation, dims."""
from __future__ import annotations

from typing import Sequence

from ...ir.expr import Const, Expr, const
from ...ir.symbolic import prove_equal
from ...ir.tensor import Tensor
from ..registry import OpContext


def dim_value(d: "int | Expr") -> "int | None":
    """A dimension's integer value, or None when it is symbolic."""
    if isinstance(d, int):
        return d
    return d.value if isinstance(d, Const) else None


def same_dim(a: "int | Expr", b: "int | Expr") -> bool:
    va, vb = dim_value(a), dim_value(b)
    if va is not None and vb is not None:
        return va == vb
    return prove_equal(a if not isinstance(a, int) else const(a), b if not isinstance(b, int) else const(b))


def broadcast_shapes(ctx: OpContext, *shapes: Sequence) -> tuple:
    """The multidirectional (numpy) broadcast of `shapes`; a clear error naming the node when they clash."""
    ndim = max((len(s) for s in shapes), default=0)
    out = []
    for k in range(ndim):
        dims = [s[k - ndim + len(s)] for s in shapes if k - ndim + len(s) >= 0]
        chosen = None
        for d in dims:
            if dim_value(d) == 1:
                continue
            if chosen is None:
                chosen = d
            elif not same_dim(chosen, d):
                raise ctx.error(f"shapes {[tuple(map(str, s)) for s in shapes]} cannot be broadcast together "
                                f"(dimension {k}: {chosen} vs {d})")
        out.append(chosen if chosen is not None else dims[0])
    return tuple(out)


def broadcast_index(t: Tensor, index: Sequence[Expr]) -> list[Expr]:
    """Indices into `t` for an element of the broadcast output at `index` (trailing dims aligned; size-1 dims
    read element 0)."""
    offset = len(index) - t.ndim
    out = []
    for k, d in enumerate(t.shape):
        out.append(const(0) if dim_value(d) == 1 else index[offset + k])
    return out


def read_broadcast(t: Tensor, index: Sequence[Expr]) -> Expr:
    return t[tuple(broadcast_index(t, index))]


def normalize_axis(ctx: OpContext, axis: int, ndim: int, what: str = "axis") -> int:
    """`axis` in [-ndim, ndim) as a non-negative index; an error naming the node otherwise."""
    if not -ndim <= axis < max(ndim, 1):
        raise ctx.error(f"{what} {axis} is out of range for a tensor of rank {ndim}")
    return axis + ndim if axis < 0 else axis


def normalize_axes(ctx: OpContext, axes: Sequence[int], ndim: int, what: str = "axes") -> list[int]:
    out = [normalize_axis(ctx, int(a), ndim, what) for a in axes]
    if len(set(out)) != len(out):
        raise ctx.error(f"{what} {list(axes)} repeat an axis")
    return out


def as_int_dims(ctx: OpContext, shape: Sequence, what: str = "shape") -> list[int]:
    """Static dims, for ops (like pooling windows) that need them."""
    out = []
    for d in shape:
        v = dim_value(d)
        if v is None:
            raise ctx.error(f"{what} {tuple(map(str, shape))} must be static here")
        out.append(v)
    return out
