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

from ..ir.expr import Const
from .rowwise_match import row_group
from .schedule import Schedule, Stage


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
    return True
