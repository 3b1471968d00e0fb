"""CPU schedule for row reductions and the element-wise stages that read them (Softmax, LogSoftmax,
LayerNormalization, other normalizations over the last axis).

A row reduction reduces the contiguous last axis of its input. The generic schedule runs it as a scalar loop with
a serial dependency on one accumulator (or, where several rows fit a vector, as gathers across rows). Here the
row is split by the vector width and `rfactor`ed: a vector of partial results accumulates contiguous loads (one
vector exp per 8 elements for softmax's sum), computed per row into a local buffer, then the few partials are
combined. When a row reduction's only reader is an element-wise stage that reads it once per row, the reduction
is computed at that stage's row loop (`compute_at`; through one inlined element-wise stage, such as layer norm's
1 / sqrt(variance + eps), which is then computed there too): each row is reduced and then written while it is in
L1, rows in parallel, instead of separate passes over the whole tensor. A reduction with several readers (softmax's
max, layer norm's mean) stays a pass of its own, vectorized the same way: `compute_at` needs a single reader.
"""
from __future__ import annotations

import math

from ..ir.expr import Const, Expr, free_vars, walk
from ..ir.simplify import affine, simplify_index
from ..ir.tensor import Reduce, TensorRead
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


def _vectorize_reduction(st: Stage, lanes: int) -> Stage:
    """Split the row by (a few) vector widths and rfactor the lanes: the returned stage holds the partials."""
    sch = st.schedule
    n = st.leaf[-1].extent.value
    # Up to 4 vectors of partials: independent accumulation chains (a float max is several dependent
    # instructions, NaN-propagating) for rows of at least two such steps.
    width = next(k * lanes for k in (4, 2, 1) if n >= 2 * k * lanes or k == 1)
    _, inner = st.split(st.leaf[-1], width)
    rf = sch[sch.rfactor(st.op.outputs[0], inner)]
    nsp = len(rf.op.axis)
    spatial, reduce = rf.leaf[:nsp], rf.leaf[nsp:]
    rf.reorder(*spatial[:-1], *reduce, spatial[-1])
    rf.vectorize(spatial[-1])
    return rf


def _row_reader(st: Stage) -> "tuple[Stage, Stage | None] | None":
    """The only reader of a row reduction, when it is an element-wise root stage whose last axis does not index
    the reduction (so one row of it needs one value of the reduction); possibly through one inlined element-wise
    stage that only it reads (layer norm's 1 / sqrt(variance + eps)), returned second."""
    sch = st.schedule
    consumers = sch.consumers(st)
    if st.is_output or len(consumers) != 1:
        return None
    e, via = consumers[0], None
    if e.attach.kind == "inline":
        after = sch.consumers(e)
        if len(after) != 1:
            return None
        via, e = e, after[0]
    if e.op.reduce_axis or len(e.op.outputs) != 1 or e.attach.kind != "root" or len(e.op.axis) < 2:
        return None
    if not isinstance(e.op.axis[-1].extent, Const):
        return None
    col, source = e.op.axis[-1].var, via or st
    reads = [read for body in e.op.body for read in _reads(body)
             if sch.resolve(e.read_map.get(read.tensor, read.tensor)).op is source.op]
    if not reads or any(col in free_vars(i) for read in reads for i in read.indices):
        return None
    return e, via


def _work(st: Stage) -> "int | None":
    extents = [ax.extent for ax in st.root_axes]
    return math.prod(e.value for e in extents) if all(isinstance(e, Const) for e in extents) else None


def _parallel_rows(st: Stage, rows: list, work: "int | None"):
    row = st.fuse(*rows)
    if work is None or work >= PARALLEL_MIN_WORK:
        st.parallel(row)
    return row


def schedule_rowwise(sch, lanes_of) -> set[Stage]:
    """Schedule every row reduction of `sch` and the element-wise stages that can compute them per row; returns
    the stages it scheduled (the default rules leave those alone). `lanes_of(stage)` is the vector width."""
    done: set[Stage] = set()
    row_loops: dict[Stage, object] = {}
    for st in [st for st in sch.stages if is_row_reduction(st, lanes_of(st))]:
        work = _work(st)
        rf = _vectorize_reduction(st, lanes_of(st))
        found = _row_reader(st)
        reader, via = found if found is not None else (None, None)
        if reader is not None and reader.relations and reader not in row_loops:
            reader = None  # scheduled by another rule
        if reader is not None and reader not in row_loops:
            *outer, col = reader.leaf
            _, lane = reader.split(col, lanes_of(reader))
            row_loops[reader] = _parallel_rows(reader, outer, _work(reader))
            reader.vectorize(lane)
            done.add(reader)
        if reader is None:
            _parallel_rows(st, st.leaf[:len(st.op.axis)], work)
        elif via is None:
            st.compute_at(reader, row_loops[reader])
        else:
            via.compute_root()
            via.compute_at(reader, row_loops[reader])
            st.compute_at(via, via.leaf[-1])
            done.add(via)
        rf.compute_at(st, st.leaf[-2])
        st.pragma(st.leaf[-1], "lane_reduce", 1)
        done |= {st, rf}
    return done
