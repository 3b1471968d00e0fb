"""Default GPU schedule of row-wise normalisations (softmax, log-softmax, layer norm, RMS norm) as one kernel.

An element-wise root stage reading reductions over its last axis (through inlined element-wise stages, reductions
reading other such reductions, as the variance reads the mean) is computed a row per block: the rows are bound to
blockIdx.x, every reduction is computed at the row loop into a one-element shared buffer with its reduced loop
bound to threadIdx.x (a cross-thread reduction: warp shuffles, then a shared buffer across warps), and the final
row is split over the same threads. Element-wise values feeding several reductions (the exponentials of softmax)
are recomputed rather than stored: a row is read from global memory once per reduction plus once for the output,
which the cache absorbs for rows up to a few thousand elements, while staging the row in shared memory would cap
the row length by the shared memory size.
"""
from __future__ import annotations

from ..ir.dtype import INDEX
from ..ir.expr import Const, Var, const
from ..ir.tensor import PlaceholderOp, Reduce
from ..ir.symbolic import prove_equal
from .schedule import Schedule, Stage

ROW_COMBINERS = ("sum", "max", "min")


def rowwise_normalisation(sch: Schedule, st: Stage, block: int) -> bool:
    """Schedule `st` and the row reductions it reads as one kernel; False when `st` is not of that form."""
    if st.op.reduce_axis or len(st.op.outputs) != 1 or len(st.op.axis) < 2 or st.relations:
        return False
    reductions = _row_reductions(sch, st)
    if not reductions:
        return False
    length = st.op.axis[-1].extent
    n = length.value if isinstance(length, Const) else None
    threads = block if n is None else min(block, 32 * -(-n // 32))
    *outer, last = st.leaf
    row = st.fuse(*outer) if len(outer) > 1 else outer[0]
    jo, ji = st.split(last, threads)
    st.reorder(row, ji, jo)
    st.bind(row, "blockIdx.x")
    st.bind(ji, "threadIdx.x")
    for red in reversed(reductions):  # consumers first: a reduction's readers must already be at the row loop
        red.set_scope("shared")
        red.compute_at(st, row)
        ko, ki = red.split(red.leaf[-1], threads)
        red.reorder(*red.leaf[:-2], ki, ko)
        red.bind(ki, "threadIdx.x")
    return True


def _row_reductions(sch: Schedule, st: Stage) -> "list[Stage] | None":
    """The reductions over the last axis that `st` reads (directly, through inlined stages or through each other),
    in producer-first order; None if any stage feeding `st` is something else, or a reduction is read elsewhere."""
    found: list[Stage] = []
    inline: list[Stage] = []
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
                todo.append(prod)
            elif _recomputable(prod):
                inline.append(prod)
                todo.append(prod)
            elif _is_row_reduction(prod, st) and prod.attach.kind == "root" and not prod.relations:
                found.append(prod)
                todo.append(prod)
            else:
                return None
    members = {id(s) for s in found + inline} | {id(st)}
    for prod in found + inline:
        if any(id(c) not in members for c in sch.consumers(prod, through_inlined=True)) \
                or not _reads_by_row(sch, prod, len(st.op.axis) - 1, whole=prod in inline):
            return None
    for prod in inline:
        prod.compute_inline()
    return sorted(found, key=sch.stages.index)


def _recomputable(st: Stage) -> bool:
    """An element-wise intermediate kept as a stage (softmax's exponentials, stored once for the CPU): on the GPU
    it is recomputed where it is read instead."""
    return (not st.op.reduce_axis and not st.is_output and len(st.op.outputs) == 1 and st.attach.kind == "root"
            and not st.relations)


def _is_row_reduction(red: Stage, st: Stage) -> bool:
    """A sum/max/min over `st`'s last axis, one value per row (its last dimension kept with extent 1 or not)."""
    body = red.op.body[0] if len(red.op.body) == 1 else None
    if not isinstance(body, Reduce) or body.combiner not in ROW_COMBINERS or len(red.op.reduce_axis) != 1:
        return False
    rank = len(st.op.axis)
    axes = red.op.axis
    if red.op.outputs[0].dtype.is_bool or len(axes) not in (rank - 1, rank):
        return False
    if len(axes) == rank and not prove_equal(axes[-1].extent, const(1, INDEX)):
        return False
    return (prove_equal(red.op.reduce_axis[0].extent, st.op.axis[-1].extent)
            and all(prove_equal(a.extent, b.extent) for a, b in zip(axes[:rank - 1], st.op.axis)))


def _reads_by_row(sch: Schedule, prod: Stage, rows: int, whole: bool) -> bool:
    """Every read of `prod` indexes it by its reader's `rows` leading variables, then (with `whole`, for a
    recomputed element-wise stage) by the reader's column: its reduced variable or its last axis, and 0 in a kept
    last dimension of a reduction; so what a block computes is what each reader needs."""
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
