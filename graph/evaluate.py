"""Evaluate one node on constant inputs: through its numpy folder when it has one, else by compiling and running
it like any other kernel (so constant folding can never disagree with what the kernel would compute)."""
from __future__ import annotations

import numpy as np

from .ir import Node
from .lower import as_array, context, opdef_of
from .partition import Partition
from .registry import OpError


def evaluate_node(node: Node, arrays: "list[np.ndarray | None] | None" = None) -> list[np.ndarray]:
    """`arrays` overrides the inputs' data (a shape-only op gets a zero-strided stand-in of a run-time value)."""
    opdef = opdef_of(node)
    if arrays is None:
        arrays = [v.data if v is not None else None for v in node.inputs]
    if opdef.fold is not None:
        try:
            result = opdef.fold(context(node), *arrays)
        except OpError:
            raise
        except (ValueError, TypeError, IndexError) as err:
            raise OpError(f"{node.describe()}: {err}") from None
        outs = list(result) if isinstance(result, (tuple, list)) else [result]
        return [as_array(d, v.dtype) for v, d in zip(node.outputs, outs)]
    from .compile import build_partition
    part = Partition([node], [v for v in node.inputs if v is not None and v.is_const], list(node.outputs))
    result = build_partition(part, "llvm", name=f"fold_{node.op}")(*[v.data for v in part.inputs])
    return list(result) if isinstance(result, tuple) else [result]
