"""Graph traversal and a stable structural hash of workloads (the artifact-cache and tuning-database key).

The workload text ignores user-chosen names of tensors and loop variables. (Cache keys also include the schedule
trace, which names stages and axes, so renamed workloads share a key only under name-free schedules.) Symbolic
sizes keep their names, because callers bind them by name.
"""
from __future__ import annotations

import hashlib
from typing import Iterable

from .expr import Binary, Call, Cast, Const, Expr, Select, SizeVar, Var
from .tensor import ComputeOp, Operation, PlaceholderOp, Reduce, Tensor, TensorRead


def topo_ops(outputs: Iterable[Tensor], known: "set[int] | None" = None) -> list[Operation]:
    """Every operation the outputs depend on, producers before consumers, in a deterministic order; the walk
    stops at operations whose id is in `known` (already seen by the caller), which are left out."""
    order: list[Operation] = []
    state: dict[int, int] = dict.fromkeys(known or (), 2)

    def visit(op: Operation) -> None:
        stack = [(op, iter(op.input_tensors()))]
        state[id(op)] = 1
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                stack.pop()
                state[id(node)] = 2
                order.append(node)
            elif id(nxt.op) not in state:
                state[id(nxt.op)] = 1
                stack.append((nxt.op, iter(nxt.op.input_tensors())))

    for t in outputs:
        if id(t.op) not in state:
            visit(t.op)
    return order


def structural_key(outputs: Iterable[Tensor]) -> str:
    """A canonical text of the computation; equal texts mean the same workload."""
    outputs = list(outputs)
    ops = topo_ops(outputs)
    op_ids = {id(op): i for i, op in enumerate(ops)}
    lines = []
    for i, op in enumerate(ops):
        names: dict[int, str] = {}
        if isinstance(op, PlaceholderOp):
            t = op.outputs[0]
            lines.append(f"%{i} = input {t.dtype} [{', '.join(_ser(d, names, op_ids) for d in t.shape)}]")
            continue
        assert isinstance(op, ComputeOp)
        for k, iv in enumerate(op.axis):
            names[id(iv.var)] = f"s{k}"
        for k, iv in enumerate(op.reduce_axis):
            names[id(iv.var)] = f"r{k}"
        dims = ", ".join(_ser(iv.extent, names, op_ids) for iv in op.axis)
        red = ", ".join(_ser(iv.extent, names, op_ids) for iv in op.reduce_axis)
        body = "; ".join(_ser(b, names, op_ids) for b in op.body)
        lines.append(f"%{i} = compute [{dims}] reduce [{red}] {{{body}}}")
    outs = ", ".join(f"%{op_ids[id(t.op)]}.{t.value_index}" for t in outputs)
    lines.append(f"return {outs}")
    return "\n".join(lines)


def structural_hash(outputs: Iterable[Tensor]) -> str:
    return hashlib.sha256(structural_key(outputs).encode()).hexdigest()


def _ser(e: Expr, names: dict[int, str], op_ids: dict[int, int]) -> str:
    if isinstance(e, Const):
        return f"{e.dtype}:{e.value!r}"
    if isinstance(e, SizeVar):
        return f"${e.name}"
    if isinstance(e, Var):
        return names.get(id(e), f"?{e.name}")
    kids = ",".join(_ser(k, names, op_ids) for k in e.children())
    if isinstance(e, Binary):
        return f"{e.op}:{e.dtype}({kids})"
    if isinstance(e, Call):
        return f"{e.name}:{e.dtype}({kids})"
    if isinstance(e, Cast):
        return f"cast:{e.dtype}({kids})"
    if isinstance(e, Select):
        return f"select({kids})"
    if isinstance(e, TensorRead):
        return f"%{op_ids[id(e.tensor.op)]}.{e.tensor.value_index}[{kids}]"
    if isinstance(e, Reduce):
        return f"{e.combiner}#{e.value_index}({kids})"
    raise TypeError(f"cannot serialise {type(e).__name__}")
