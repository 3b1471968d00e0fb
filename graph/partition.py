"""Operator fusion: the graph is cut into partitions, each compiled into one kernel. An element-wise node joins
the partition of a producer whose result is used by it alone (so the intermediate never goes to memory), when its
other computed inputs come from earlier partitions (a residual add joins the convolution that produced one of its
operands); everything else starts a partition. Partitions run in the order they were started, and every value
crossing partitions flows from an earlier to a later one. Inside a kernel the default schedule inlines element-wise
stages and the contraction rule makes them its epilogue."""
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
    group_of: dict[Node, int] = {}
    groups: list[list[Node]] = []
    producer = {v: n for n in g.nodes for v in n.outputs}
    for node in g.nodes:
        target = _fusable_producer(node, producer, users, graph_outs, group_of, groups) \
            if _is_elementwise(node) else None
        if target is not None:
            group_of[node] = group_of[target]
            groups[group_of[node]].append(node)
            continue
        group_of[node] = len(groups)
        groups.append([node])
    return [close_partition(nodes, users, graph_outs) for nodes in groups]


def _is_elementwise(node: Node) -> bool:
    return kind_of(node) == "elementwise"


def _fusable_producer(node: Node, producer: dict[Value, Node], users: dict, graph_outs: set,
                      group_of: dict[Node, int], groups: list[list[Node]]) -> "Node | None":
    """The producer whose partition `node` can join: the last node of its partition, feeding `node` only, and the
    partition started last among those of `node`'s computed inputs (the others then run before it)."""
    producers = list(dict.fromkeys(producer[v] for v in node.inputs if v is not None and v in producer))
    if not producers:
        return None
    prod = max(producers, key=lambda n: group_of[n])
    if groups[group_of[prod]][-1] is not prod:
        return None
    if any(group_of[p] == group_of[prod] for p in producers if p is not prod):
        return None
    for v in prod.outputs:
        if v in graph_outs or any(u is not node for u in users.get(v, [])):
            return None
    return prod


def close_partition(nodes: list[Node], users: dict[Value, list[Node]], graph_outs: set) -> Partition:
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
