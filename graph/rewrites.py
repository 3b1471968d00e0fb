"""Algebraic graph rewrites that need the constants folded first."""
from __future__ import annotations

import numpy as np

from .ir import Graph, Node, Value


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
