"""Work that only moves bytes, done by the memory plan instead of a kernel.

Concatenation in place: when every input of a Concat is a contiguous block of its result (all dimensions before
the axis are 1, as for a channel concat at batch 1) and is made by another kernel for this Concat alone, those
kernels write straight into their slices of the result and the copy kernel disappears. Views: a Reshape, Flatten,
Squeeze, Unsqueeze or Identity left alone in its partition reads its input's bytes in the same row-major order,
so its result is that buffer. The memory planner places each such value at its byte offset inside its parent's
buffer (`runtime/executor.py`, `plan_memory`)."""
from __future__ import annotations

import itertools
import math

from .ir import Graph, Node, Value
from .partition import Partition, close_partition


def inplace_concats(g: Graph, parts: list[Partition], align: int = 1
                    ) -> tuple[list[Partition], dict[Value, tuple[Value, int]]]:
    """The partitions left to run and, for each value written in place, (the Concat result, byte offset).
    `align`: every offset must be a multiple of it (16 on GPUs, whose kernels access their buffers 16 bytes at a
    time and refuse a misaligned one)."""
    if not _static(g):  # models with symbolic sizes allocate per value at run time: no shared buffers
        return parts, {}
    users, graph_values = g.consumers(), set(g.inputs) | set(g.outputs)
    made_by = {v: p for p in parts for v in p.outputs}
    placed: dict[Value, tuple[Value, int]] = {}
    kept: list[Partition] = []
    removed: set[Value] = set()
    for part in parts:
        node = part.nodes[0]
        if node.op != "Concat" or not _fits(node, users, graph_values, made_by, removed):
            kept.append(part)
            continue
        offsets = [0, *itertools.accumulate(_nbytes(v) for v in node.inputs[:-1])]
        if any(o % align for o in offsets):
            kept.append(part)
            continue
        out = node.outputs[0]
        for v, offset in zip(node.inputs, offsets):
            placed[v] = (out, offset)
        removed.add(out)
        if len(part.nodes) > 1:  # element-wise nodes fused after the Concat read its result from memory
            kept.append(close_partition(part.nodes[1:], users, set(g.outputs)))
    return kept, placed


VIEWS = ("Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity")


def inplace_views(g: Graph, parts: list[Partition], placed: dict[Value, tuple[Value, int]]
                  ) -> tuple[list[Partition], dict[Value, tuple[Value, int]]]:
    """Drop the partitions that are one view of an intermediate into another intermediate; their results join
    `placed` at offset 0 of their input (graph inputs and outputs keep their own buffers, so they are copied)."""
    if not _static(g):
        return parts, placed
    graph_values = set(g.inputs) | set(g.outputs)
    made_by = {v for p in parts for v in p.outputs}
    kept = []
    for part in parts:
        node = part.nodes[0]
        src, out = (node.inputs[0] if node.inputs else None), node.outputs[0]
        if (len(part.nodes) == 1 and node.op in VIEWS and src in made_by and src not in graph_values
                and out not in graph_values and out not in placed and src.dtype == out.dtype):
            placed[out] = (src, 0)
        else:
            kept.append(part)
    return kept, placed


def _fits(node: Node, users: dict, graph_values: set, made_by: dict, removed: set) -> bool:
    out = node.outputs[0]
    axis = int(node.attrs.get("axis", 1)) % len(out.shape)
    if out in graph_values or any(d != 1 for d in out.shape[:axis]):
        return False
    if None in node.inputs or len(set(node.inputs)) != len(node.inputs):
        return False
    return all(v in made_by and v not in graph_values and v not in removed and users.get(v) == [node]
               and v.dtype == out.dtype and not v.is_const for v in node.inputs)


def _static(g: Graph) -> bool:
    values = [*g.inputs, *(v for n in g.nodes for v in n.outputs)]
    return all(isinstance(d, int) for v in values for d in v.shape)


def _nbytes(v: Value) -> int:
    return math.prod(v.shape) * v.dtype.itemsize
