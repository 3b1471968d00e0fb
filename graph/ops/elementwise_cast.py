"""Elementwise ops, part 3: type conversion (Cast, CastLike) and the ops that pass data through at inference
(Identity, Dropout)."""
from __future__ import annotations

import numpy as np

from ... import ir as ember
from ...ir.dtype import DType
from ...ir.tensor import Tensor
from ..onnx_types import ONNX_TYPE_NAMES, dtype_of_code, supported_type_names, type_name
from ..registry import OpContext, register
from .elementwise import map_unary


def _target(ctx: OpContext) -> DType:
    code = ctx.attr("to")
    if isinstance(code, str):  # opset 1-5 spelled the type by name
        name = code.upper()
        code = next((c for c, n in ONNX_TYPE_NAMES.items() if n == name), -1)
    dtype = dtype_of_code(code)
    if dtype is None:
        raise ctx.error(f"cannot cast to {type_name(code)}: ember supports {supported_type_names()}")
    return dtype


def _cast(ctx: OpContext, x: Tensor, dtype: DType) -> Tensor:
    """Conversions follow numpy's astype: floats truncate toward zero into integers, anything non-zero is
    True. Out-of-range float-to-integer conversions are undefined (as in ONNX). `saturate` only concerns
    float8 types, which ember does not support, so it is ignored."""
    if x.dtype == dtype:
        return x
    return map_unary(ctx, x, lambda v: ember.cast(dtype, v))


def _fold_cast(ctx: OpContext, x: np.ndarray) -> np.ndarray:
    with np.errstate(all="ignore"):
        return x.astype(_target(ctx).numpy)


@register("Cast", since=1, kind="elementwise", fold=_fold_cast)
def cast(ctx: OpContext, x: Tensor) -> Tensor:
    return _cast(ctx, x, _target(ctx))


def _fold_cast_like(ctx: OpContext, x: np.ndarray, like: np.ndarray) -> np.ndarray:
    with np.errstate(all="ignore"):
        return x.astype(like.dtype)


@register("CastLike", since=15, kind="elementwise", fold=_fold_cast_like)
def cast_like(ctx: OpContext, x: Tensor, like: Tensor) -> Tensor:
    """CastLike: Cast to the element type of the second input (whose values are not read)."""
    return _cast(ctx, x, like.dtype)


@register("Identity", since=1, kind="elementwise", fold=lambda ctx, x: x)
def identity(ctx: OpContext, x: Tensor) -> Tensor:
    """Identity hands its input on; the graph compiler copies it when it must become a kernel output."""
    return x


def _ratio(ctx: OpContext, ratio: "Tensor | None") -> float:
    """The drop ratio; only training mode needs it, so there it must be known at compile time."""
    if ctx.opset < 12:
        value = float(ctx.attr("ratio", 0.5))
    else:
        value = 0.5 if ratio is None else float(np.asarray(ctx.const(1, "ratio")).reshape(-1)[0])
    if not 0.0 <= value < 1.0:
        raise ctx.error(f"ratio must be in [0, 1), got {value}")
    return value


def _training(ctx: OpContext, training_mode: "Tensor | None") -> bool:
    if ctx.opset < 7:
        return not ctx.attr("is_test", 0)
    if ctx.opset < 12 or training_mode is None:
        return False
    value = ctx.const_or_none(2)
    if value is None:
        raise ctx.error("training_mode must be a constant: ember compiles inference graphs, and training-mode "
                        "dropout is random")
    return bool(np.asarray(value).reshape(-1)[0])


@register("Dropout", since=1, kind="elementwise")
def dropout(ctx: OpContext, x: Tensor, ratio: "Tensor | None" = None,
            training_mode: "Tensor | None" = None) -> "Tensor | tuple[Tensor, Tensor]":
    """Dropout at inference: the output is the input and the optional mask is all true (all ones before opset
    10, where the mask had the data's type). Training mode drops at random, which ember does not compile;
    with ratio 0 it drops nothing and is accepted."""
    if _training(ctx, training_mode) and _ratio(ctx, ratio) != 0.0:
        raise ctx.error("training-mode dropout (random masking) is not supported; export the model for "
                        "inference or set training_mode to false")
    if ctx.num_outputs < 2:
        return x
    mask_dtype = ember.bool_ if ctx.opset >= 10 else x.dtype
    mask = ember.compute(x.shape, lambda *i: ember.const(1, mask_dtype), name=ctx.name("_mask"))
    return x, mask
