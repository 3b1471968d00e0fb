"""The graph IR: tensor-level operations between values, what the ONNX importer and the `@ember.jit` tracer
produce and the graph passes rewrite. Values carry dtype and shape (ints or symbolic sizes), and constants their
data, so passes can fold them and kernels can take them as weights."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..ir.dtype import DType


@dataclass(eq=False)
class Value:
    """One tensor of the graph. `data` is set for constants (initializers and folded results)."""
    name: str
    dtype: DType
    shape: tuple
    data: "np.ndarray | None" = None
    producer: "Node | None" = field(default=None, repr=False)

    @property
    def is_const(self) -> bool:
        return self.data is not None

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __str__(self) -> str:
        dims = ", ".join(str(d) for d in self.shape)
        return f"%{self.name}: {self.dtype}[{dims}]"


@dataclass(eq=False)
class Node:
    """One operation. `name` is the user's node name (errors quote it); `opset` is the version its semantics
    follow; `op` names the registry entry, `domain` the ONNX domain ('' for the standard one)."""
    op: str
    inputs: list["Value | None"]
    outputs: list[Value]
    attrs: dict[str, Any]
    name: str
    opset: int
    domain: str = ""

    def describe(self) -> str:
        return f"node {self.name!r} ({self.op})" if self.name else f"a {self.op} node"

    def __str__(self) -> str:
        ins = ", ".join("%" + v.name if v is not None else "_" for v in self.inputs)
        outs = ", ".join(str(v) for v in self.outputs)
        attrs = "" if not self.attrs else " {" + ", ".join(f"{k}={_short(v)}" for k, v in self.attrs.items()) + "}"
        return f"{outs} = {self.op}({ins}){attrs}  # {self.name}"


def _short(v: Any) -> str:
    if isinstance(v, np.ndarray):
        return f"tensor{list(v.shape)}"
    text = repr(v)
    return text if len(text) < 40 else text[:37] + "..."


@dataclass(eq=False)
class Graph:
    """Nodes in a valid execution order; inputs are fed at run time, outputs returned. `declared` holds what the
    model says its outputs are (dtype, static dims or None), checked against what the ops compute."""
    name: str
    inputs: list[Value]
    outputs: list[Value]
    nodes: list[Node]
    declared: dict[str, tuple] = field(default_factory=dict)

    def __str__(self) -> str:
        lines = [f"graph {self.name}({', '.join(str(v) for v in self.inputs)}):"]
        consts = {v.name: v for n in self.nodes for v in n.inputs if v is not None and v.is_const}
        consts.update({v.name: v for v in self.outputs if v.is_const})
        for v in consts.values():
            lines.append(f"  {v} = const")
        lines += [f"  {n}" for n in self.nodes]
        lines.append(f"  return {', '.join('%' + v.name for v in self.outputs)}")
        return "\n".join(lines)

    def consumers(self) -> dict[Value, list[Node]]:
        users: dict[Value, list[Node]] = {}
        for n in self.nodes:
            for v in n.inputs:
                if v is not None:
                    users.setdefault(v, []).append(n)
        return users
