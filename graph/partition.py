"""Operator fusion: the graph is cut into partitions, each compiled into one kernel. An element-wise node joins
the partition of the producer it continues (so the intermediate never goes to memory) when that result has no
readers other than element-wise ones and its other computed inputs come from that or earlier partitions (a
residual add joins the convolution that produced one of its operands; GELU's chain joins the MatMul whose result
it reads twice); everything else starts a partition. Partitions run in the order they were started, and every value
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


def fuse(g: Graph, move_layouts: bool = False) -> list[Partition]:
    """`move_layouts` (GPU targets): transposes read by one computing node move into its partition (see
    `_layout_chains_read_only_by`); the CPU contraction rule packs operands read through them several times slower
    (BERT-style 2 layers: 9.2 -> 22.5 ms), the GPU tile fetch just reads with the permuted index."""
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
        moved = _layout_chains_read_only_by(node, producer, users, graph_outs, group_of, groups) if move_layouts \
            else []
        groups.append(moved + [node])
    return [close_partition(nodes, users, graph_outs) for nodes in groups if nodes]


LAYOUT = ("Transpose", "Reshape", "Flatten", "Squeeze", "Unsqueeze")


def _layout_chains_read_only_by(node: Node, producer: dict[Value, Node], users: dict, graph_outs: set,
                                group_of: dict[Node, int], groups: list[list[Node]]) -> list[Node]:
    """For a node that computes (not itself a layout op), the chains of layout nodes with a Transpose among them,
    each alone in its partition and read only by the next, that feed it: they move into its partition (their
    inputs were ready earlier still), where they are an index map of its reads (attention's head split read
    straight by its MatMul) instead of copy kernels. Their old partitions are left empty. Chains of views alone
    stay: the memory plan already makes them free (graph/inplace.py)."""
    if node.op in LAYOUT or _is_elementwise(node):
        return []
    moved: list[Node] = []
    for v in dict.fromkeys(node.inputs):
        chain, reader = [], node
        while v in producer and v not in graph_outs and users.get(v) == [reader]:
            p = producer[v]
            if p.op not in LAYOUT or groups[group_of[p]] != [p]:
                break
            chain.append(p)
            reader, v = p, p.inputs[0]
        if not any(p.op == "Transpose" for p in chain):
            continue
        for p in reversed(chain):
            groups[group_of[p]] = []
            group_of[p] = len(groups)
            moved.append(p)
    return moved


def _is_elementwise(node: Node) -> bool:
    return kind_of(node) == "elementwise"


def _fusable_producer(node: Node, producer: dict[Value, Node], users: dict, graph_outs: set,
                      group_of: dict[Node, int], groups: list[list[Node]]) -> "Node | None":
    """The producer whose partition `node` can join: the last node of the partition started last among those of
    `node`'s computed inputs (the others then run before it), whose result no graph output and no other kind of
    node reads. Other element-wise readers of it may join too (GELU's x * Phi(x) reads x twice); any that does
    not gets the value from memory, as before. `node` may also read earlier values of that partition."""
    producers = list(dict.fromkeys(producer[v] for v in node.inputs if v is not None and v in producer))
    if not producers:
        return None
    last = groups[max(group_of[p] for p in producers)][-1]
    if last not in producers:
        return None
    for v in last.outputs:
        if v in graph_outs or any(u is not node and not _is_elementwise(u) for u in users.get(v, [])):
            return None
    return last


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
