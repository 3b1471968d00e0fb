"""Algebraic graph rewrites that need the constants folded first."""
from __future__ import annotations

import numpy as np

from .ir import Graph, Node, Value
from .ops.nn_conv import MATRIX_KERNEL_ATTR, OUTPUT_BLOCK_ATTR


def fold_batchnorm(g: Graph) -> Graph:
    """Conv (constant weights) followed by an inference BatchNormalization becomes one Conv with rescaled
    weights and bias: y = (conv(x, W) + b - mean) * s + beta with s = gamma / sqrt(var + eps)."""
    users = g.consumers()
    producer = {v: n for n in g.nodes for v in n.outputs}
    replace: dict[Value, Value] = {}
    drop: set[Node] = set()
    for bn in g.nodes:
        if bn.op != "BatchNormalization" or len([v for v in bn.outputs if v.name]) != 1:
            continue
        if bn.attrs.get("training_mode", 0):
            continue
        conv = producer.get(bn.inputs[0])
        if conv is None or conv.op != "Conv" or len(users.get(bn.inputs[0], [])) != 1 or bn.inputs[0] in g.outputs:
            continue
        params = bn.inputs[1:5]
        w = conv.inputs[1]
        if not (w is not None and w.is_const and all(p is not None and p.is_const for p in params)):
            continue
        if len(conv.inputs) > 2 and conv.inputs[2] is not None and not conv.inputs[2].is_const:
            continue
        gamma, beta, mean, var = (p.data.astype(np.float64) for p in params)
        scale = gamma / np.sqrt(var + float(bn.attrs.get("epsilon", 1e-5)))
        bias = conv.inputs[2].data.astype(np.float64) if len(conv.inputs) > 2 and conv.inputs[2] is not None \
            else np.zeros_like(mean)
        new_w = (w.data.astype(np.float64) * scale.reshape((-1,) + (1,) * (w.data.ndim - 1))).astype(w.data.dtype)
        new_b = ((bias - mean) * scale + beta).astype(w.data.dtype)
        conv.inputs = [conv.inputs[0], Value(w.name + "_bnfolded", w.dtype, w.shape, new_w),
                       Value(bn.outputs[0].name + "_bias", w.dtype, (new_b.shape[0],), new_b)]
        replace[bn.outputs[0]] = conv.outputs[0]
        drop.add(bn)
    if not drop:
        return g
    out_names = {v: v.name for v in g.outputs}
    g.nodes = [n for n in g.nodes if n not in drop]
    for n in g.nodes:
        n.inputs = [replace.get(v, v) if v is not None else None for v in n.inputs]
    new_outputs = []
    for v in g.outputs:
        r = replace.get(v, v)
        if r is not v:
            r.name = out_names[v]  # the graph output keeps the name users fetch it by
        new_outputs.append(r)
    g.outputs = new_outputs
    return g


NARROW_OUTPUT = 16  # fewer output columns than the widest float32 vector: dot products along k are faster


def pretranspose_gemm_weights(g: Graph) -> Graph:
    """Gemm with transB=1 and a constant B gets B transposed once at compile time, so its matmul reads B along
    the output's columns, the layout the register-blocked schedule packs (exporters write FC layers this way).
    A narrow output (a classifier with 10 classes) keeps B as it is: each output is then a dot product of two
    contiguous rows, which the row-reduction schedule vectorizes along k."""
    for node in g.nodes:
        if node.op != "Gemm" or not node.attrs.get("transB", 0) or len(node.inputs) < 2:
            continue
        b = node.inputs[1]
        if b is None or not b.is_const or b.data.ndim != 2 or b.data.shape[0] < NARROW_OUTPUT:
            continue
        data = np.ascontiguousarray(b.data.T)
        node.inputs[1] = Value(b.name + "_t", b.dtype, tuple(data.shape), data)
        node.attrs = {**node.attrs, "transB": 0}
    return g



OUTPUT_BLOCK = 32  # output channels per weight row of a channel-blocked convolution: two AVX-512 vectors
BLOCKED_MIN_CHANNELS = 64  # measured: fewer input channels (stems, 32-channel layers) ran slower blocked
BLOCKED_MAX_1X1_PIXELS = 196  # 1x1 convolutions with more output pixels keep the matmul over pixels, unless
# they reduce the channels 2x or more (the channel view's cost per output is then small against the sum's)


def block_conv_weights(g: Graph) -> Graph:
    """CPU: a float32 2-D Conv without groups, with a constant weight, whole blocks of output channels and
    BLOCKED_MIN_CHANNELS input channels, gets its weight laid out once as (m // B, c, kh, kw, m % B) and runs
    channel-blocked (graph/ops/nn_conv.py): vectors along output channels, so 7x7 = 49 pixels waste no lanes
    and strided convolutions need no im2col. Measured against the im2col matmul (2 threads, ms): 3x3/2
    64x56 0.198 -> 0.144, 3x3/1 512x7 0.594 -> 0.468, 1x1 256->64 at 56x56 0.290 -> 0.248; a 1x1 over many
    pixels that does not reduce the channels stays a matmul (1x1 64->64 at 56x56: 0.079 -> 0.094 blocked)."""
    for node in g.nodes:
        w = node.inputs[1] if node.op == "Conv" and len(node.inputs) > 1 else None
        if w is None or not w.is_const or w.data.ndim != 4 or w.data.dtype != np.float32:
            continue
        m, c, kh, kw = w.data.shape
        out = node.outputs[0].shape
        if node.attrs.get("group", 1) != 1 or m % OUTPUT_BLOCK or c < BLOCKED_MIN_CHANNELS \
                or not all(isinstance(d, int) for d in out):
            continue
        if kh * kw == 1 and out[-1] * out[-2] > BLOCKED_MAX_1X1_PIXELS and c < 2 * m:
            continue
        data = np.ascontiguousarray(w.data.reshape(m // OUTPUT_BLOCK, OUTPUT_BLOCK, c, kh, kw)
                                    .transpose(0, 2, 3, 4, 1))
        node.inputs[1] = Value(w.name + "_blocked", w.dtype, tuple(data.shape), data)
        node.attrs = {**node.attrs, OUTPUT_BLOCK_ATTR: OUTPUT_BLOCK}
    return g


def matrix_conv_weights(g: Graph) -> Graph:
    """GPU: a 2-D Conv without groups, with a constant float32/float16 weight and a static input, runs as an
    implicit GEMM whose weight operand is the (m, c*kh*kw) matrix; laid out once as that matrix, the weight is read
    with plain indices, so the GPU matmul rule stages its tiles in shared memory (cooperative, cp.async) like any
    matrix operand, instead of every thread reading its filters from global memory through div/mod."""
    matrices: dict[int, Value] = {}  # one matrix per weight, however many convolutions share it
    for node in g.nodes:
        w = node.inputs[1] if node.op == "Conv" and len(node.inputs) > 1 else None
        if w is None or not w.is_const or w.data.ndim != 4 or w.data.dtype not in (np.float32, np.float16):
            continue
        x = node.inputs[0]
        if node.attrs.get("group", 1) != 1 or len(x.shape) != 4 or not all(isinstance(d, int) for d in x.shape):
            continue
        m, c, kh, kw = w.data.shape
        if id(w) not in matrices:
            data = np.ascontiguousarray(w.data.reshape(m, c * kh * kw))
            matrices[id(w)] = Value(w.name + "_matrix", w.dtype, tuple(data.shape), data)
        node.inputs[1] = matrices[id(w)]
        node.attrs = {**node.attrs, MATRIX_KERNEL_ATTR: [kh, kw]}
    return g
