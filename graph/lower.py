"""From graph nodes to tensor IR: each node's registered lowering is applied to the tensors of its inputs.

Used twice: with placeholder inputs, to infer one node's output shapes and dtypes; and over the nodes of a fused
partition, where producers hand their compute tensors straight to consumers, to build one kernel's definition."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..ir.dtype import DType, as_dtype
from ..ir.expr import Const
from ..ir.tensor import IRError, Tensor, compute, placeholder
from .ir import Node, Value
from .registry import OpContext, OpDef, OpError, lookup


def safe_name(name: str) -> str:
    """A tensor name codegen and dumps accept, derived from a graph value's name."""
    clean = "".join(ch if ch.isalnum() else "_" for ch in name) or "t"
    return clean if not clean[0].isdigit() else "v" + clean


def opdef_of(node: Node) -> OpDef:
    found = lookup(node.op, node.opset, node.domain)
    if found is None:
        raise OpError(f"{node.describe()}: op {node.op} (opset {node.opset}) is not supported")
    return found


def kind_of(node: Node) -> str:
    """The node's fusion kind (elementwise, injective, reduction, opaque)."""
    kind = opdef_of(node).kind
    return kind(node) if callable(kind) else kind


def context(node: Node) -> OpContext:
    return OpContext(node, [v.data if v is not None and v.is_const else None for v in node.inputs])


def apply(node: Node, inputs: "Sequence[Tensor | None]") -> list[Tensor]:
    """Run the node's lowering on `inputs`; errors from inside the tensor IR are reported against the node."""
    ctx = context(node)
    try:
        result = opdef_of(node).lower(ctx, *inputs)
    except OpError:
        raise
    except (IRError, ValueError, TypeError, IndexError) as err:
        raise OpError(f"{node.describe()}: {err}") from None
    outs = list(result) if isinstance(result, (tuple, list)) else [result]
    if len(outs) < sum(1 for v in node.outputs if v.name):
        raise OpError(f"{node.describe()}: produces {len(outs)} outputs, the model asks for {len(node.outputs)}")
    return outs


def placeholder_for(v: Value) -> Tensor:
    return placeholder(v.shape, v.dtype, safe_name(v.name))


def infer(node: Node) -> None:
    """Set the dtype and shape of the node's outputs from its lowering on placeholders."""
    outs = apply(node, [placeholder_for(v) if v is not None else None for v in node.inputs])
    for v, t in zip(node.outputs, outs):
        v.dtype, v.shape = t.dtype, plain_shape(t.shape)


def plain_shape(shape: Sequence) -> tuple:
    """Constant dims as Python ints, symbolic ones as expressions."""
    return tuple(int(d.value) if isinstance(d, Const) else d for d in shape)


def lower_node(node: Node, env: dict[Value, Tensor]) -> None:
    """Lower `node`, reading its inputs from and writing its outputs to `env`."""
    outs = apply(node, [env[v] if v is not None else None for v in node.inputs])
    for v, t in zip(node.outputs, outs):
        env[v] = t


def materialize(t: Tensor, name: str) -> Tensor:
    """A computed copy of `t` (a kernel output must be its own stage, not an input passed through)."""
    return compute(t.shape, lambda *i: t[i], name=name)


def as_array(data: np.ndarray, dtype: "DType | str") -> np.ndarray:
    return np.require(np.asarray(data, dtype=as_dtype(dtype).numpy), requirements="C")
