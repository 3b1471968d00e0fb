"""Which stages make up a row-wise normalisation (softmax, log-softmax, layer norm, RMS norm), for every target.

Such a computation ends in an element-wise stage that reads reductions over its last axis: directly, through
inlined element-wise stages, or through each other (the variance reads the mean). One row of the output needs one
row of everything it reads, so the whole group can be computed row by row: a block per row on the GPU, a parallel
row loop with the row in L1 on the CPU. The targets differ only in what they do with the members; finding them is
shared here.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..ir.dtype import INDEX
from ..ir.expr import Const, Var, const
from ..ir.symbolic import prove_equal
from ..ir.tensor import PlaceholderOp, Reduce
from .schedule import Schedule, Stage

ROW_COMBINERS = ("sum", "max", "min")


@dataclass
class RowGroup:
    """The stages an element-wise stage needs row by row, each list in producer-first order."""
    reductions: list[Stage] = field(default_factory=list)
    rows: list[Stage] = field(default_factory=list)  # stored element-wise stages read by row (softmax's exps)
    per_row: list[Stage] = field(default_factory=list)  # inlined stages of one value per row (layer norm's rsqrt)


def row_group(sch: Schedule, st: Stage) -> "RowGroup | None":
    """The row group `st` reads, or None when `st` is not the end of one: a stage feeding it is something else, or
    a member is also read outside the group. Inlined per-row stages only count when `st` alone reads them."""
    if st.op.reduce_axis or len(st.op.outputs) != 1 or len(st.op.axis) < 2 or st.relations \
            or st.attach.kind != "root":
        return None
    group = RowGroup()
    todo, seen = [st], {id(st)}
    while todo:
        cur = todo.pop()
        for t in sch.reads(cur):
            if isinstance(t.op, PlaceholderOp):
                continue
            prod = sch.stage_of(t.op)
            if prod is None or id(prod) in seen:
                continue
            seen.add(id(prod))
            if prod.attach.kind == "inline":
                if _per_row(prod, st) and sch.consumers(prod, through_inlined=True) == [st]:
                    group.per_row.append(prod)
                todo.append(prod)
            elif _stored_elementwise(prod):
                group.rows.append(prod)
                todo.append(prod)
            elif _is_row_reduction(prod, st) and prod.attach.kind == "root" and not prod.relations:
                group.reductions.append(prod)
                todo.append(prod)
            else:
                return None
    if not group.reductions:
        return None
    members = {id(s) for s in group.reductions + group.rows} | {id(st)}
    rows = len(st.op.axis) - 1
    for prod in group.reductions + group.rows:
        if any(id(c) not in members for c in sch.consumers(prod, through_inlined=True)) \
                or not _reads_by_row(sch, prod, rows, whole=prod in group.rows):
            return None
    if not all(_reads_by_row(sch, p, rows, whole=False) for p in group.per_row):
        group.per_row = []
    for part in (group.reductions, group.rows, group.per_row):
        part.sort(key=sch.stages.index)
    return group


def _stored_elementwise(st: Stage) -> bool:
    """An element-wise intermediate kept as a stage (softmax's exponentials, read by the sum and the output)."""
    return (not st.op.reduce_axis and not st.is_output and len(st.op.outputs) == 1 and st.attach.kind == "root"
            and not st.relations)


def _per_row(st: Stage, reader: Stage) -> bool:
    """An element-wise stage with one value per row of `reader` (its last dimension dropped or of extent 1)."""
    if st.op.reduce_axis or len(st.op.outputs) != 1:
        return False
    return _row_shaped(st, reader)


def _row_shaped(st: Stage, reader: Stage) -> bool:
    rank = len(reader.op.axis)
    axes = st.op.axis
    if len(axes) not in (rank - 1, rank):
        return False
    if len(axes) == rank and not prove_equal(axes[-1].extent, const(1, INDEX)):
        return False
    return all(prove_equal(a.extent, b.extent) for a, b in zip(axes[:rank - 1], reader.op.axis))


def _is_row_reduction(red: Stage, st: Stage) -> bool:
    """A sum/max/min over `st`'s last axis, one value per row."""
    body = red.op.body[0] if len(red.op.body) == 1 else None
    if not isinstance(body, Reduce) or body.combiner not in ROW_COMBINERS or len(red.op.reduce_axis) != 1:
        return False
    if red.op.outputs[0].dtype.is_bool or not _row_shaped(red, st):
        return False
    return prove_equal(red.op.reduce_axis[0].extent, st.op.axis[-1].extent)


def _reads_by_row(sch: Schedule, prod: Stage, rows: int, whole: bool) -> bool:
    """Every read of `prod` indexes it by its reader's `rows` leading variables, then (with `whole`, for a stored
    element-wise stage) by the reader's column: its reduced variable or its last axis, and 0 in a kept last
    dimension of a per-row value; so what one row iteration computes is what each reader needs."""
    for reader in sch.consumers(prod, through_inlined=True):
        want = [iv.var for iv in reader.op.axis[:rows]]
        if whole:
            want.append(reader.op.reduce_axis[0].var if reader.op.reduce_axis else reader.op.axis[-1].var)
        for body in reader.op.body:
            for idx in sch.reads_of(prod.op.outputs[0], body, reader):
                lead, rest = idx[:len(want)], idx[len(want):]
                if len(lead) != len(want) or not all(isinstance(i, Var) and i is v for i, v in zip(lead, want)):
                    return False
                if any(not (isinstance(i, Const) and i.value == 0) for i in rest):
                    return False
    return True
