"""Operator fusion: the graph is cut into partitions, each compiled into one kernel. An element-wise node joins
the partition of its producer when that producer's result is used by it alone (so the intermediate never goes to
memory); everything else starts a partition. Inside a kernel the default schedule inlines element-wise stages."""
from __future__ import annotations

from dataclasses import dataclass

from .ir import Graph, Node, Value
from .lower import kind_of


@dataclass(eq=False)
class Partition:
    nodes: list[Node]
    inputs: list[Value]   # values read from outside: graph inputs, constants, other partitions' outputs
    outputs: list[Value]  # values used outside or returned by the graph

    def describe(self) -> str:
        names = ", ".join(n.name or n.op for n in self.nodes[:4])
        return names + (f" and {len(self.nodes) - 4} more" if len(self.nodes) > 4 else "")


def fuse(g: Graph) -> list[Partition]:
    users = g.consumers()
    graph_outs = set(g.outputs)
    group_of: dict[Node, list[Node]] = {}
    groups: list[list[Node]] = []
    producer = {v: n for n in g.nodes for v in n.outputs}
    for node in g.nodes:
        target = _fusable_producer(node, producer, users, graph_outs) if _is_elementwise(node) else None
        if target is not None and group_of[target][-1] is target:
            group_of[target].append(node)
            group_of[node] = group_of[target]
            continue
        groups.append([node])
        group_of[node] = groups[-1]
    return [_close(nodes, users, graph_outs) for nodes in groups]


def _is_elementwise(node: Node) -> bool:
    return kind_of(node) == "elementwise"


def _fusable_producer(node: Node, producer: dict[Value, Node], users: dict, graph_outs: set) -> "Node | None":
    """The producer whose partition `node` can join: it feeds `node` only, and `node` reads nothing else that is
    computed (constants and graph inputs are fine)."""
    computed = [v for v in node.inputs if v is not None and v in producer]
    if len({producer[v] for v in computed}) != 1:
        return None
    prod = producer[computed[0]]
    for v in prod.outputs:
        if v in graph_outs or any(u is not node for u in users.get(v, [])):
            return None
    return prod


def _close(nodes: list[Node], users: dict[Value, list[Node]], graph_outs: set) -> Partition:
    inside = set(nodes)
    made = {v for n in nodes for v in n.outputs}
    inputs: list[Value] = []
    for n in nodes:
        for v in n.inputs:
            if v is not None and v not in made and v not in inputs:
                inputs.append(v)
    outputs = [v for n in nodes for v in n.outputs
               if v.name and (v in graph_outs or any(u not in inside for u in users.get(v, [])))]
    return Partition(nodes, inputs, outputs)
