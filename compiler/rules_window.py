"""CPU schedule for sliding-window reductions: depthwise (grouped) convolution, max/average/Lp pooling.

A window stage reduces over a few constant taps and reads its input at `o * stride + tap - pad` along the output
width. The generic schedule leaves such a stage with rolled tap loops and an accumulator in memory. Here the
output is tiled into (rows x vectors-of-width) blocks; each block accumulates in a small local buffer (the
window stage itself computed at the tile loop of its element-wise consumer, such as a bias add or the division
of AveragePool, or a `cache_write` of it when it is the output) whose loops run taps outside, rows and vectors
unrolled, one vector of the width innermost: the accumulators live in registers and each tap is one vector load
and one FMA/max per accumulator. Channels (and row blocks) run in parallel.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from ..ir.expr import Const, Expr, free_vars, walk
from ..ir.simplify import affine, simplify_index
from ..ir.tensor import Reduce, TensorRead
from .rules_contraction import vector_registers
from .schedule import MAX_UNROLL, Axis, Stage

MAX_TAPS = 64  # a larger window (or a grouped conv with many channels per group) is a contraction, not a window
COMBINERS = ("sum", "max", "min")
PARALLEL_MIN_WORK = 1 << 15
SHORT_ROW_VECTORS = 4


def _reads(e: Expr) -> list[TensorRead]:
    out: list[TensorRead] = []
    walk(e, lambda node: out.append(node) if isinstance(node, TensorRead) else None)
    return out


def match_window(st: Stage) -> bool:
    """A single sum/max/min over at most MAX_TAPS constant taps, of float32/64 values, where some read walks the
    output's innermost axis and a tap together in its last index (a window sliding along the width)."""
    op = st.op
    if len(op.body) != 1 or not isinstance(op.body[0], Reduce) or len(op.axis) < 2:
        return False
    red: Reduce = op.body[0]
    dtype = op.outputs[0].dtype
    if red.combiner not in COMBINERS or not dtype.is_float or dtype.bits < 32:
        return False
    if any(not isinstance(ax.extent, Const) for ax in st.root_axes):
        return False
    if math.prod(iv.extent.value for iv in op.reduce_axis) > MAX_TAPS:
        return False
    width, taps = op.axis[-1].var, {iv.var for iv in op.reduce_axis}
    for read in _reads(red.sources[0]):
        form = affine(simplify_index(read.indices[-1])) if read.indices else None
        if form is None:
            continue
        if form[0].get(width, 0) > 0 and taps & free_vars(read.indices[-1]):
            return True
    return False


def _same_shape(a: Stage, b: Stage) -> bool:
    return len(a.op.axis) == len(b.op.axis) and all(
        isinstance(x.extent, Const) and isinstance(y.extent, Const) and x.extent.value == y.extent.value
        for x, y in zip(a.op.axis, b.op.axis))


def _elementwise(st: Stage) -> bool:
    return not st.op.reduce_axis and len(st.op.outputs) == 1


def _fusable_consumer(st: Stage) -> "tuple[Stage | None, Stage | None]":
    """The element-wise root stage of the same shape that is the window's only reader (bias add, the division of
    AveragePool, an activation), possibly through one inlined element-wise stage (a bias add before the
    activation), returned second: the window is computed tile by tile inside it, never going through memory."""
    sch = st.schedule
    consumers = sch.consumers(st)
    if st.is_output or len(consumers) != 1:
        return None, None
    c, via = consumers[0], None
    if c.attach.kind == "inline" and _elementwise(c) and _same_shape(c, st):
        after = sch.consumers(c)
        if len(after) != 1:
            return None, None
        via, c = c, after[0]
    if _same_shape(c, st) and _elementwise(c) and c.attach.kind == "root" and not c.relations:
        return c, via
    return None, None


@dataclass(frozen=True)
class WindowTiles:
    """An output block: `rows` rows (1 without a row axis) of `vectors` vectors each."""
    rows: int
    vectors: int


def _layout(host: Stage, lanes: int) -> "tuple[list, Axis | None, Axis, int]":
    """The host's outer loops, row and column loops, and the vector width of the column."""
    *outer, col = host.leaf
    row = outer.pop() if outer else None
    width = col.extent.value
    # A short row that is not a multiple of the vector width is one (wider or narrower) vector: no masked tail.
    vec = width if width % lanes and width <= SHORT_ROW_VECTORS * lanes else lanes
    return outer, row, col, vec


def _host(st: Stage) -> Stage:
    host, _ = _fusable_consumer(st)
    return host if host is not None else st


def default_tiles(st: Stage, lanes: int) -> WindowTiles:
    """2 rows where the row count is even; a whole row of vectors when its accumulators fit in half the register
    file (the padded input is then copied in whole rows, not in blocks with a halo each), else 2 or 1 vectors."""
    _, row, col, vec = _layout(_host(st), lanes)
    width = col.extent.value
    rows = 2 if row is not None and row.extent.value % 2 == 0 else 1
    whole = width // vec if width % vec == 0 else 0
    vectors = whole if 0 < whole * rows <= vector_registers(lanes, st.op.outputs[0].dtype.itemsize) // 2 \
        else 2 if width % (2 * vec) == 0 else 1
    return WindowTiles(rows, vectors)


def tile_choices(st: Stage, lanes: int) -> list[WindowTiles]:
    """Blocks that divide the output and whose accumulators fit the vector registers, the default first."""
    _, row, col, vec = _layout(_host(st), lanes)
    width, regs = col.extent.value, vector_registers(lanes, st.op.outputs[0].dtype.itemsize)
    row_counts = [r for r in (1, 2, 3, 4, 6, 8) if row is not None and row.extent.value % r == 0] or [1]
    counts = [v for v in range(1, width // vec + 1) if width % (v * vec) == 0]
    found = [WindowTiles(r, v) for r in row_counts for v in counts if r * v <= regs]
    first = default_tiles(st, lanes)
    return [first] + [t for t in found if t != first]


def schedule_window(st: Stage, lanes: int, tiles: "WindowTiles | None" = None) -> "set[Stage] | None":
    """Apply the window schedule to a root stage (with `default_tiles` unless given); the stages it scheduled, or
    None when the stage does not match."""
    if st.relations or not match_window(st):
        return None
    sch = st.schedule
    work = math.prod(ax.extent.value for ax in st.root_axes)
    tiles = tiles or default_tiles(st, lanes)
    host, via = _fusable_consumer(st)
    if host is not None:
        acc = st
    else:
        host, acc = st, sch[sch.cache_write(st.op.outputs[0], "local")]
    outer, row, col, vec = _layout(host, lanes)
    rows, vectors = tiles.rows, tiles.vectors
    co, ci = host.split(col, vectors * vec)
    if row is not None:
        ro, ri = host.split(row, rows)
        host.reorder(*outer, ro, co, ri, ci)
        outer.append(ro)
    if outer:
        lead = host.fuse(*outer)
        if work >= PARALLEL_MIN_WORK:
            host.parallel(lead)
    acc.compute_at(host, co)  # an inlined stage between them (a bias add before the activation) stays inlined
    h_vec, h_lane = host.split(host.leaf[-1], vec)
    if row is not None and host.leaf[-3].extent.value <= MAX_UNROLL:
        host.unroll(host.leaf[-3])
    host.unroll(h_vec)
    host.vectorize(h_lane)
    # The accumulating stage over its region (rows x vectors * lanes): taps outside, accumulators unrolled.
    nsp = len(acc.op.axis)
    a_sp, a_red = acc.leaf[:nsp], acc.leaf[nsp:]
    a_vec, a_lane = acc.split(a_sp[-1], vec)
    a_rows = [a_sp[-2]] if row is not None else []
    acc.reorder(*a_sp[:nsp - 1 - len(a_rows)], *a_red, *a_rows, a_vec, a_lane)
    for ax in a_red:
        acc.unroll(ax)
    for ax in a_rows:
        if ax.extent.value <= MAX_UNROLL:
            acc.unroll(ax)
    acc.unroll(a_vec)
    acc.vectorize(a_lane)
    done = {st, host, acc} | ({via} if via is not None else set())
    outer_acc = a_sp[:nsp - 1 - len(a_rows)]
    pad = _padded_input(acc)
    if pad is not None and outer_acc:
        # The zero-padded copy of the input, block by block (a few rows) instead of a whole extra pass over memory.
        pad.compute_at(acc, outer_acc[-1])
        _, p_lane = pad.split(pad.leaf[-1], lanes)
        pad.vectorize(p_lane)
        done.add(pad)
    return done


def _padded_input(acc: Stage) -> "Stage | None":
    """The stored, element-wise stage (the zero-padded input) that only `acc` reads."""
    sch = acc.schedule
    for t in sch.reads(acc):
        prod = sch.stage_of(t.op)
        if prod is not None and prod.attach.kind == "root" and not prod.relations and _elementwise(prod) \
                and not prod.is_output and sch.consumers(prod, through_inlined=True) == [acc]:
            return prod
    return None
