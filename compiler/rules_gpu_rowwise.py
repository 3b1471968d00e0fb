"""Default GPU schedule of row-wise normalisations (softmax, log-softmax, layer norm, RMS norm) as one kernel.

An element-wise root stage reading reductions over its last axis (through inlined element-wise stages, reductions
reading other such reductions, as the variance reads the mean) is computed a row per block: the rows are bound to
blockIdx.x, every reduction is computed at the row loop into a one-element shared buffer with its reduced loop
bound to threadIdx.x (a cross-thread reduction: warp shuffles, then a shared buffer across warps), and the final
row is split over the same threads. Element-wise values feeding several reductions (the exponentials of softmax)
are recomputed rather than stored. Kernel inputs read whole by the group (the x of softmax or layer norm) are
copied into shared memory once per row when the row length is known and fits ROW_STAGE_BYTES, so global memory
is read once; longer or symbolic rows are read once per reduction plus once for the output (the cache absorbs
the repeats for rows of a few thousand elements).
"""
from __future__ import annotations

from ..ir.expr import Const
from ..ir.symbolic import prove_equal
from ..ir.tensor import PlaceholderOp
from .rowwise_match import row_group
from .schedule import Schedule, Stage


ROW_STAGE_BYTES = 32 * 1024  # rows of inputs up to this size (8K floats) are read from global memory once


def rowwise_normalisation(sch: Schedule, st: Stage, block: int) -> bool:
    """Schedule `st` and the row reductions it reads as one kernel; False when `st` is not of that form."""
    group = row_group(sch, st)
    if group is None:
        return False
    for stored in group.rows:
        stored.compute_inline()
    reductions = group.reductions
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
    if n is not None:
        for t, readers in _whole_row_inputs(sch, st, reductions, n):
            staged = sch[sch.cache_read(t, "shared", readers)]
            staged.compute_at(st, row)
            ko, ki = staged.split(staged.leaf[-1], threads)
            staged.reorder(*staged.leaf[:-2], ki, ko)
            staged.bind(ki, "threadIdx.x")
    return True


def _whole_row_inputs(sch: Schedule, st: Stage, reductions: list[Stage], n: int) -> list:
    """Kernel inputs of the output's shape that only the group reads (softmax's and layer norm's x), with their
    reader stages, when their rows fit ROW_STAGE_BYTES together: each row is copied into shared memory once, so
    the reductions and the output read global memory once instead of once each."""
    group = {id(s) for s in (st, *reductions)}

    def in_group(s: Stage) -> bool:
        return id(s) in group or (s.attach.kind == "inline"
                                  and all(id(c) in group for c in sch.consumers(s, through_inlined=True)))
    readers: dict[int, tuple] = {}  # input id -> (input, its reader stages)
    for s in sch.stages:
        for t in sch.reads(s):
            if isinstance(t.op, PlaceholderOp) and len(t.shape) == len(st.op.axis) \
                    and all(prove_equal(d, iv.extent) for d, iv in zip(t.shape, st.op.axis)):
                readers.setdefault(id(t), (t, []))[1].append(s)
    found = [(t, rs) for t, rs in readers.values() if all(in_group(r) for r in rs)]
    if sum(n * t.dtype.bits // 8 for t, _ in found) > ROW_STAGE_BYTES:
        return []
    return found
