"""CPU schedule for row reductions and the element-wise stages that read them (Softmax, LogSoftmax,
LayerNormalization, RMS norm, other normalizations over the last axis).

A row reduction reduces the contiguous last axis of its input. The generic schedule runs it as a scalar loop with
a serial dependency on one accumulator (or, where several rows fit a vector, as gathers across rows). Here the
row is split by the vector width and `rfactor`ed: a vector of partial results accumulates contiguous loads, then
the few partials are combined. An element-wise stage reading such reductions row by row (compiler/rowwise_match.py:
directly, through each other or through a stored element-wise row such as softmax's exponentials) is the end of a
row group: the whole group is computed at its row loop (multi-reader `compute_at`), rows in parallel, each row
reduced, exponentiated into a row-long local buffer and written while it is in L1 — one pass over the tensor
instead of one per reduction. Reductions outside any group are a vectorized pass of their own.
"""
from __future__ import annotations

import math

from ..ir.expr import Const, Expr, free_vars, walk
from ..ir.simplify import affine, simplify_index
from ..ir.tensor import Reduce, TensorRead
from .rowwise_match import RowGroup, row_group
from .schedule import Stage

COMBINERS = ("sum", "max", "min")
PARALLEL_MIN_WORK = 1 << 15


def _reads(e: Expr) -> list[TensorRead]:
    out: list[TensorRead] = []
    walk(e, lambda node: out.append(node) if isinstance(node, TensorRead) else None)
    return out


def is_row_reduction(st: Stage, lanes: int) -> bool:
    """One sum/max/min over one constant axis of at least a vector's length, float32/64, whose variable only
    appears as the last index of the tensors it reads (a contiguous row)."""
    op = st.op
    if st.attach.kind != "root" or st.relations or len(op.body) != 1 or not isinstance(op.body[0], Reduce):
        return False
    red: Reduce = op.body[0]
    dtype = op.outputs[0].dtype
    if red.combiner not in COMBINERS or not dtype.is_float or dtype.bits < 32 or not op.axis:
        return False
    if len(op.reduce_axis) != 1 or not isinstance(op.reduce_axis[0].extent, Const) \
            or op.reduce_axis[0].extent.value < lanes:
        return False
    r = op.reduce_axis[0].var
    uses = [read for read in _reads(red.sources[0]) if any(r in free_vars(i) for i in read.indices)]
    return bool(uses) and all(_walks_row(read, r) for read in uses)


def _walks_row(read: TensorRead, r) -> bool:
    """`r` indexes only trailing dims of the read, which then moves by one element per step of `r`: the last
    index itself, or a row-major split of it over the trailing dims (a reduction over (h, w) as one axis)."""
    first = next(k for k, i in enumerate(read.indices) if r in free_vars(i))
    if any(r not in free_vars(i) for i in read.indices[first:]):
        return False
    if read.indices[-1] is r:
        return first == len(read.indices) - 1
    dims = read.tensor.shape[first:]
    if not all(isinstance(d, Const) for d in dims):
        return False
    flat = sum((i * math.prod(d.value for d in dims[k + 1:]) for k, i in enumerate(read.indices[first:])),
               Const(0, r.dtype))
    form = affine(simplify_index(flat))
    return form is not None and form[0] == {r: 1}


def partial_vectors(st: Stage, lanes: int) -> int:
    """Up to 4 vectors of partials: independent accumulation chains (a float max is several dependent
    instructions, NaN-propagating) for rows of at least two such steps."""
    n = st.leaf[-1].extent.value
    return next(k for k in (4, 2, 1) if n >= 2 * k * lanes or k == 1)


def _vectorize_reduction(st: Stage, lanes: int, vectors: "int | None" = None) -> Stage:
    """Split the row by `vectors` (default: `partial_vectors`) vector widths and rfactor the lanes: the returned
    stage holds the partials."""
    sch = st.schedule
    width = (vectors or partial_vectors(st, lanes)) * lanes
    _, inner = st.split(st.leaf[-1], width)
    rf = sch[sch.rfactor(st.op.outputs[0], inner)]
    nsp = len(rf.op.axis)
    spatial, reduce = rf.leaf[:nsp], rf.leaf[nsp:]
    rf.reorder(*spatial[:-1], *reduce, spatial[-1])
    rf.vectorize(spatial[-1])
    return rf


def _work(st: Stage) -> "int | None":
    extents = [ax.extent for ax in st.root_axes]
    return math.prod(e.value for e in extents) if all(isinstance(e, Const) for e in extents) else None


def _parallel_rows(st: Stage, rows: list, work: "int | None"):
    row = st.fuse(*rows)
    if work is None or work >= PARALLEL_MIN_WORK:
        st.parallel(row)
    return row


def schedule_rowwise(sch, lanes_of) -> set[Stage]:
    """Schedule every row-wise group of `sch` (an element-wise stage and the row reductions it reads) row by row,
    then every other row reduction as a pass of its own; returns the stages it scheduled (the default rules leave
    those alone). `lanes_of(stage)` is the vector width."""
    done: set[Stage] = set()
    for st in reversed(list(sch.stages)):
        done |= schedule_group(st, lanes_of) or set()
    for st in [st for st in sch.stages if st not in done and is_row_reduction(st, lanes_of(st))]:
        rf = _vectorize_reduction(st, lanes_of(st))
        _parallel_rows(st, st.leaf[:len(st.op.axis)], _work(st))
        rf.compute_at(st, st.leaf[-2])
        st.pragma(st.leaf[-1], "lane_reduce", 1)
        done |= {st, rf}
    return done


def cpu_row_group(st: Stage, lanes_of) -> "RowGroup | None":
    """The row group ending at `st` when the CPU rule can schedule it (every reduction a contiguous row)."""
    group = row_group(st.schedule, st)
    if group is None or not all(is_row_reduction(r, lanes_of(r)) for r in group.reductions):
        return None
    return group


def schedule_group(st: Stage, lanes_of, vectors: "int | None" = None) -> "set[Stage] | None":
    """The rows of `st` in parallel; at each row, in producer order: the row reductions (`vectors` vectors of
    partials, default `partial_vectors`), the stored element-wise rows (a row-long local buffer) and the per-row
    values, then the row itself. The stages scheduled, or None when `st` ends no row group."""
    group = cpu_row_group(st, lanes_of)
    if group is None:
        return None
    *outer, col = st.leaf
    _, lane = st.split(col, lanes_of(st))
    row = _parallel_rows(st, outer, _work(st))
    st.vectorize(lane)
    done = {st}
    for one in group.per_row:  # consumers first: each member's readers must already be at the row loop
        one.compute_root()
        one.compute_at(st, row)
        done.add(one)
    for member in sorted(group.reductions + group.rows, key=st.schedule.stages.index, reverse=True):
        if member in group.rows:
            _, lane = member.split(member.leaf[-1], lanes_of(member))
            member.vectorize(lane)
            member.compute_at(st, row)
        else:
            rf = _vectorize_reduction(member, lanes_of(member), vectors)
            member.compute_at(st, row)
            rf.compute_at(st, row)  # at the row loop itself: the stages before it may then feed it
            member.pragma(member.leaf[-1], "lane_reduce", 1)
            done.add(rf)
        done.add(member)
    return done

