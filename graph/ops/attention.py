"""Attention (opset 23+): scaled dot-product attention with grouped-query heads, causal / boolean / additive /
padding / sliding-window masks, an in-op KV cache (past + new keys and values) and a softcap.

Lowered as separate stages because each reduction must be a whole compute: present K/V (when they differ from the
inputs), scores = (Q*sqrt(scale)) @ (K*sqrt(scale))^T, masked logits, row max, row sum of shifted exps,
probabilities, and probabilities @ V (written straight in the 3-D layout for 3-D inputs)."""
from __future__ import annotations

import math
from collections.abc import Callable

from ... import ir as E
from ...ir.dtype import DType
from ...ir.expr import Expr, all_of, const
from ...ir.tensor import Tensor
from ..registry import OpContext, register
from .common import broadcast_shapes, dim_value, same_dim
from .nn_conv import accumulator
from .shape import add_dims

Read = Callable[[Expr, Expr, Expr, Expr], Expr]  # (batch, head, sequence, feature) -> element


def _heads_view(ctx: OpContext, x: Tensor, heads: int | None, what: str) -> tuple[Read, tuple]:
    """A (batch, heads, seq, head_size) view of a 4-D input, or of a 3-D (batch, seq, heads * head_size) one
    (whose hidden dim is split into heads without a copy), and that 4-D shape."""
    if x.ndim == 4:
        return (lambda b, h, s, d: x[b, h, s, d]), tuple(x.shape)
    hidden = dim_value(x.shape[2])
    if heads is None or heads < 1:
        raise ctx.error(f"3-D inputs need a positive {'q_num_heads' if what == 'Q' else 'kv_num_heads'} attribute")
    if hidden is None or hidden % heads:
        raise ctx.error(f"{what}'s hidden size {x.shape[2]} is not a static multiple of {heads} heads")
    size = hidden // heads
    return (lambda b, h, s, d: x[b, s, h * size + d]), (x.shape[0], heads, x.shape[1], size)


def _softmax_dtype(ctx: OpContext, dtype: DType) -> DType:
    code = ctx.attr("softmax_precision", None)
    if code is None:
        return dtype
    from ...frontend.onnx_import import onnx_dtype
    sm = onnx_dtype(int(code), f"{ctx.node.describe()}'s softmax_precision")
    if not sm.is_float:
        raise ctx.error(f"softmax_precision must be a float type, got {sm}")
    return sm


@register("Attention", since=23, kind="opaque")
def attention(ctx: OpContext, q: Tensor, k: Tensor, v: Tensor, attn_mask: Tensor | None = None,
              past_key: Tensor | None = None, past_value: Tensor | None = None,
              nonpad_kv_seqlen: Tensor | None = None) -> tuple[Tensor, ...]:
    dtype = q.dtype
    if not dtype.is_float or k.dtype != dtype or v.dtype != dtype:
        raise ctx.error(f"Q, K and V must share one float dtype, got {q.dtype}, {k.dtype} and {v.dtype}")
    if not q.ndim == k.ndim == v.ndim or q.ndim not in (3, 4):
        raise ctx.error(f"Q, K and V must all be 3-D or all 4-D, got ranks {q.ndim}, {k.ndim} and {v.ndim}")
    if (past_key is None) != (past_value is None):
        raise ctx.error("past_key and past_value must be given together")
    if nonpad_kv_seqlen is not None and past_key is not None:
        raise ctx.error("nonpad_kv_seqlen (an external KV cache) cannot be combined with past_key/past_value")
    q_heads_attr, kv_heads_attr = ctx.attr("q_num_heads", None), ctx.attr("kv_num_heads", None)
    if q.ndim == 4 and ctx.opset >= 25 and (q_heads_attr is not None or kv_heads_attr is not None):
        raise ctx.error("q_num_heads and kv_num_heads must not be given for 4-D inputs")

    read_q, (batch, q_heads, q_len, head_size) = _heads_view(ctx, q, q_heads_attr, "Q")
    read_k, k_shape = _heads_view(ctx, k, kv_heads_attr, "K")
    read_v, v_shape = _heads_view(ctx, v, kv_heads_attr, "V")
    kv_heads, v_size = k_shape[1], v_shape[3]
    if not same_dim(k_shape[3], head_size) or not same_dim(k_shape[2], v_shape[2]) \
            or not same_dim(k_shape[1], v_shape[1]):
        raise ctx.error(f"Q, K and V shapes {[tuple(map(str, t.shape)) for t in (q, k, v)]} do not agree "
                        "(head sizes of Q and K, kv heads and sequence lengths of K and V)")
    qh, kvh = dim_value(q_heads), dim_value(kv_heads)
    if qh is None or kvh is None or qh % kvh:
        raise ctx.error(f"q heads ({q_heads}) must be a static multiple of kv heads ({kv_heads})")
    group = qh // kvh

    present_k, past_len = _present(ctx, k, read_k, k_shape, past_key, "_present_key")
    present_v, _ = _present(ctx, v, read_v, v_shape, past_value, "_present_value")
    kv_len = present_k.shape[2]

    scale = ctx.attr("scale", None)
    if scale is None:
        if dim_value(head_size) is None:
            raise ctx.error("the default scale 1/sqrt(head_size) needs a static head size")
        scale = 1.0 / math.sqrt(dim_value(head_size))
    root = const(math.sqrt(float(scale)), dtype)  # Q and K are each scaled by sqrt(scale) to limit overflow
    acc = accumulator(dtype)
    shape = (batch, q_heads, q_len, kv_len)
    d = E.reduce_axis(head_size, "d")
    scores = E.compute(shape, lambda b, h, i, j: E.sum(
        E.cast(acc, E.cast(dtype, read_q(b, h, i, d.var) * root))
        * E.cast(acc, E.cast(dtype, present_k[b, h // group, j, d.var] * root)),
        axis=d), name=ctx.name("_scores"))

    softcap = float(ctx.attr("softcap", 0.0))

    def capped(i: tuple, cap: bool = True) -> Expr:
        """The score in the input dtype, softcapped when asked; float16 rounds after each step, as the spec's
        per-op graph does."""
        x = E.cast(dtype, scores[i])
        if not cap or softcap <= 0:
            return x
        c = const(softcap, dtype)
        return E.cast(dtype, E.cast(dtype, E.tanh(E.cast(dtype, x / c))) * c)

    bias = _bias(ctx, attn_mask, nonpad_kv_seqlen, past_len, shape, dtype)
    logits = E.compute(shape, lambda *i: capped(i) + bias(*i) if bias else capped(i),
                       name=ctx.name("_logits"))
    probs = _softmax(ctx, logits, _softmax_dtype(ctx, dtype))

    j = E.reduce_axis(kv_len, "j")

    def weighted(b: Expr, h: Expr, i: Expr, c: Expr) -> Expr:
        return E.sum(E.cast(acc, probs[b, h, i, j.var]) * E.cast(acc, present_v[b, h // group, j.var, c]), axis=j)

    y_name = ctx.name() if acc == dtype else ctx.name("_acc")
    if q.ndim == 4:
        y = E.compute((batch, q_heads, q_len, v_size), weighted, name=y_name)
    else:
        size = dim_value(v_size)
        y = E.compute((batch, q_len, qh * size), lambda b, i, c: weighted(b, c // size, i, c % size), name=y_name)
    if acc != dtype:
        y = E.compute(y.shape, lambda *i: E.cast(dtype, y[i]), name=ctx.name())
    outs = [y, present_k, present_v]
    if ctx.num_outputs > 3 and ctx.node.outputs[3].name:
        outs.append(_qk_output(ctx, capped, logits, probs))
    return tuple(outs[:max(ctx.num_outputs, 1)])


def _present(ctx: OpContext, x: Tensor, read: Read, shape: tuple, past: Tensor | None,
             suffix: str) -> tuple[Tensor, int | Expr]:
    """The present key (or value): the past cache followed by the new entries along the sequence axis, in the
    (batch, kv_heads, seq, head_size) layout. Returns it with the past length (the causal offset)."""
    if past is None:
        return (x if x.ndim == 4 else E.compute(shape, read, name=ctx.name(suffix))), 0
    if past.ndim != 4 or past.dtype != x.dtype or not all(
            same_dim(a, b) for a, b in zip((*past.shape[:2], past.shape[3]), (*shape[:2], shape[3]))):
        raise ctx.error(f"past cache {past.dtype}{tuple(map(str, past.shape))} does not fit the new entries "
                        f"{x.dtype}{tuple(map(str, shape))}")
    p = past.shape[2]
    return E.compute((shape[0], shape[1], add_dims(p, shape[2]), shape[3]),
                     lambda b, h, s, d: E.select(s < p, past[b, h, s, d], read(b, h, s - p, d)),
                     name=ctx.name(suffix)), p


def _bias(ctx: OpContext, mask: Tensor | None, nonpad: Tensor | None, past_len: int | Expr, shape: tuple,
          dtype: DType) -> Callable[..., Expr] | None:
    """The additive bias at (batch, head, query, key): the float mask value (0 without one) where every
    constraint allows the key, -inf where one forbids it. Constraints: a boolean mask; a mask shorter than the
    keys (padded as disallowed); causality and the sliding window, both aligned bottom-right at the causal offset
    (the past length, or nonpad_kv_seqlen - q_len per batch for an external cache); nonpad_kv_seqlen padding.
    None when nothing masks."""
    batch, _, q_len, kv_len = shape
    causal = bool(ctx.attr("is_causal", 0))
    left, right = int(ctx.attr("left_window_size", -1)), int(ctx.attr("right_window_size", -1))
    if left < -1 or right < -1:
        raise ctx.error(f"window sizes must be -1 or nonnegative, got left={left}, right={right}")
    windowed = left >= 0 or right >= 0
    if mask is None and nonpad is None and not causal and not windowed:
        return None
    if mask is not None:
        if not (mask.dtype.is_bool or mask.dtype == dtype):
            raise ctx.error(f"attn_mask must be bool or {dtype} (like Q), got {mask.dtype}")
        broadcast_shapes(ctx, mask.shape[:-1], shape[:-1])
        m_len = mask.shape[-1]
        if dim_value(m_len) is not None and dim_value(kv_len) is not None and dim_value(m_len) > dim_value(kv_len):
            raise ctx.error(f"attn_mask covers {m_len} keys, more than the {kv_len} keys")
    if nonpad is not None and (nonpad.ndim != 1 or nonpad.dtype.name != "int64"
                               or not same_dim(nonpad.shape[0], batch)):
        raise ctx.error(f"nonpad_kv_seqlen must be int64 of shape (batch,), got {nonpad.dtype}"
                        f"{tuple(map(str, nonpad.shape))}")

    def bias(b: Expr, h: Expr, i: Expr, j: Expr) -> Expr:
        allowed: list[Expr] = []
        value: Expr = const(0.0, dtype)
        if mask is not None:
            lead = 4 - mask.ndim
            index = [const(0) if dim_value(dim) == 1 else (b, h, i)[lead + a] for a, dim in enumerate(mask.shape[:-1])]
            if same_dim(mask.shape[-1], kv_len):
                element = mask[(*index, j)]
            else:  # keys past the mask's end are masked; clamp so the (discarded) read stays in bounds
                element = mask[(*index, E.minimum(j, mask.shape[-1] - 1))]
                allowed.append(j < mask.shape[-1])
            if mask.dtype.is_bool:
                allowed.append(element)
            else:
                value = element
        offset = nonpad[b] - q_len if nonpad is not None else past_len
        ahead = j - i - offset  # how far key j lies after the query's own position
        if causal:
            allowed.append(ahead <= 0)
        if left >= 0:
            allowed.append(-ahead <= left)
        if right >= 0:
            allowed.append(ahead <= right)
        if nonpad is not None:
            allowed.append(j < nonpad[b])
        if not allowed:
            return value
        return E.select(all_of(allowed), value, const(-math.inf, dtype))
    return bias


def _softmax(ctx: OpContext, logits: Tensor, sm: DType) -> Tensor:
    """Softmax over keys in `sm` precision, shifted by the row max so exp cannot overflow. A fully masked row
    (max -inf) is all zeros rather than NaN: its shift is 0 and its zero sum divides as 1. Sums accumulate in
    float32 for float16 (rounded once, as numpy does); the result is in the logits' dtype, which the product
    with V reads."""
    shape, acc = logits.shape, accumulator(sm)
    j = E.reduce_axis(shape[3], "j")
    m = E.compute(shape[:3], lambda b, h, i: E.max(E.cast(sm, logits[b, h, i, j.var]), axis=j), name=ctx.name("_max"))

    def shifted(b: Expr, h: Expr, i: Expr, k: Expr) -> Expr:
        row_max = m[b, h, i]
        shift = E.select(row_max == const(-math.inf, sm), const(0.0, sm), row_max)
        return E.cast(sm, E.exp(E.cast(sm, E.cast(sm, logits[b, h, i, k]) - shift)))

    j2 = E.reduce_axis(shape[3], "j")
    s = E.compute(shape[:3], lambda b, h, i: E.sum(E.cast(acc, shifted(b, h, i, j2.var)), axis=j2),
                  name=ctx.name("_sum"))

    def prob(b: Expr, h: Expr, i: Expr, k: Expr) -> Expr:
        total = E.cast(sm, s[b, h, i])
        return E.cast(logits.dtype, E.cast(sm, shifted(b, h, i, k) / E.select(total == const(0.0, sm),
                                                                             const(1.0, sm), total)))
    return E.compute(shape, prob, name=ctx.name("_probs"))


def _qk_output(ctx: OpContext, capped: Callable[..., Expr], logits: Tensor, probs: Tensor) -> Tensor:
    """The optional qk_matmul_output, chosen by qk_matmul_output_mode: 0 the raw scores, 1 after the softcap,
    2 after the softcap and the mask, 3 the softmax probabilities."""
    mode = int(ctx.attr("qk_matmul_output_mode", 0))
    if mode == 2:
        return logits
    if mode == 3:
        return probs
    if mode not in (0, 1):
        raise ctx.error(f"qk_matmul_output_mode must be 0, 1, 2 or 3, got {mode}")
    return E.compute(logits.shape, lambda *i: capped(i, mode == 1), name=ctx.name("_qk"))
