"""Sliding-window geometry shared by convolution and pooling: attribute defaults, auto_pad, output sizes and the
bounds condition that keeps padded reads inside the input."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from ...ir.expr import Expr, all_of, const
from ...ir.tensor import Tensor
from ..registry import OpContext
from .common import as_int_dims

AUTO_PADS = ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID")


@dataclass(frozen=True)
class Window:
    """A window over the spatial dims: input position of output `o`, tap `r` is o*stride + r*dilation - begin."""
    size: tuple[int, ...]       # input spatial extents
    kernel: tuple[int, ...]
    strides: tuple[int, ...]
    dilations: tuple[int, ...]
    begin: tuple[int, ...]      # padding before each spatial dim
    end: tuple[int, ...]        # padding after (as given, or as auto_pad computed it)
    out: tuple[int, ...]        # output spatial extents

    def position(self, d: int, o: Expr, r: "Expr | int") -> Expr:
        return o * self.strides[d] + r * self.dilations[d] - self.begin[d]

    def inside(self, positions: Sequence[Expr]) -> Expr:
        """True where every position lies inside the input. Checks that can never fail are left out, so an
        unpadded window reads without any condition."""
        conds = []
        for d, p in enumerate(positions):
            if self.begin[d] > 0:
                conds.append(p >= 0)
            if (self.out[d] - 1) * self.strides[d] + (self.kernel[d] - 1) * self.dilations[d] - self.begin[d] \
                    >= self.size[d]:
                conds.append(p < self.size[d])
        return all_of(conds) if conds else const(True)


def spatial_dims(ctx: OpContext, x: Tensor, what: str = "input") -> list[int]:
    if x.ndim < 3:
        raise ctx.error(f"{what} must have shape (N, C, D1, ...), got rank {x.ndim}")
    return as_int_dims(ctx, x.shape[2:], f"{what} spatial shape")


def int_list(ctx: OpContext, name: str, n: int, default: int) -> list[int]:
    """A per-spatial-dim attribute, checked for length."""
    value = [int(v) for v in ctx.attr(name, [default] * n)]
    if len(value) != n:
        raise ctx.error(f"attribute {name} has {len(value)} values, expected {n} (one per spatial dim)")
    return value


def window(ctx: OpContext, size: Sequence[int], kernel: Sequence[int], ceil_mode: bool = False) -> Window:
    """Resolve strides, dilations, pads and auto_pad into a Window, with ONNX's output size rules (ceil_mode drops
    a last window that would start in the end padding)."""
    n = len(size)
    strides = int_list(ctx, "strides", n, 1)
    dilations = int_list(ctx, "dilations", n, 1)
    if any(s < 1 for s in strides) or any(d < 1 for d in dilations) or any(k < 1 for k in kernel):
        raise ctx.error(f"strides {strides}, dilations {dilations} and kernel {list(kernel)} must be positive")
    auto_pad = ctx.attr("auto_pad", "NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
    if auto_pad not in AUTO_PADS:
        raise ctx.error(f"auto_pad {auto_pad!r} is not one of {AUTO_PADS}")
    span = [(k - 1) * d + 1 for k, d in zip(kernel, dilations)]
    if auto_pad == "NOTSET":
        pads = int_list(ctx, "pads", 2 * n, 0)
        if any(p < 0 for p in pads):
            raise ctx.error(f"pads {pads} must be non-negative")
        begin, end = pads[:n], pads[n:]
        out = []
        for d in range(n):
            full = size[d] + begin[d] + end[d] - span[d]
            o = (-(-full // strides[d]) if ceil_mode else full // strides[d]) + 1
            if ceil_mode and (o - 1) * strides[d] >= size[d] + begin[d]:
                o -= 1
            out.append(o)
    elif auto_pad == "VALID":
        begin, end = [0] * n, [0] * n
        out = [-(-(size[d] - span[d] + 1) // strides[d]) for d in range(n)]
    else:
        out = [-(-size[d] // strides[d]) for d in range(n)]
        total = [max(0, (out[d] - 1) * strides[d] + span[d] - size[d]) for d in range(n)]
        small = [t // 2 for t in total]
        begin = small if auto_pad == "SAME_UPPER" else [t - s for t, s in zip(total, small)]
        end = [t - b for t, b in zip(total, begin)]
    if any(o < 1 for o in out):
        raise ctx.error(f"the window (kernel {list(kernel)}, dilations {dilations}) does not fit the input "
                        f"{list(size)} with pads {begin + end}: output size {out}")
    return Window(tuple(size), tuple(kernel), tuple(strides), tuple(dilations), tuple(begin), tuple(end), tuple(out))


def kernel_attr(ctx: OpContext, n: int, weight_dims: "Sequence | None" = None) -> list[int]:
    """kernel_shape: required for pooling; for convolution it comes from the weight and must agree with it."""
    if weight_dims is None:
        kernel = [int(v) for v in ctx.attr("kernel_shape")]
        if len(kernel) != n:
            raise ctx.error(f"kernel_shape {kernel} has {len(kernel)} values, expected {n} (one per spatial dim)")
        return kernel
    kernel = as_int_dims(ctx, weight_dims, "weight spatial shape")
    if "kernel_shape" in ctx.node.attrs and [int(v) for v in ctx.attr("kernel_shape")] != kernel:
        raise ctx.error(f"kernel_shape {list(ctx.attr('kernel_shape'))} does not match the weight's spatial "
                        f"shape {kernel}")
    return kernel
