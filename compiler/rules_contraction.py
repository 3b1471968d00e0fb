"""Register-blocked CPU schedule for contractions: stages whose body is a sum of a product of two operands
(matmul, batched matmul, Gemm, convolution lowered through im2col).

The output is tiled into (rows x cols) blocks; each block is accumulated in a local buffer (`cache_write`) whose
micro-kernel keeps rows x (`cols` / lanes) vector accumulators in registers: reduction loops outside,
rows unrolled, the column vector unrolled and vectorized. The `col` axis is the innermost spatial axis (the one the
contiguous operand and the output walk along); the `row` axis is a spatial axis that operand does not read, so
the other operand supplies one broadcast scalar per row. When the column operand is a plain input read by loop
variables (matmul), a panel of it is copied into a contiguous local buffer per block of rows and reduction chunk:
its strided rows would otherwise conflict in the caches.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from ..ir.expr import Binary, Cast, Const, Expr, Var, free_vars
from ..ir.tensor import MATERIALIZE, PlaceholderOp, Reduce, TensorRead
from .rules_epilogue import find_epilogue, plain_reader
from .schedule import Axis, ScheduleError, Stage


# (column tile in vectors, rows per micro-kernel) by register file: with 16 vector registers (AVX2) 8
# accumulators plus operands fit; with 32 (AVX-512) 16 accumulators, which two FMA pipes of 4-cycle latency need
# to stay busy. With 16 registers the first tile that divides the column extent wins (no tail), else the first.
MICRO_TILES = {16: ((2, 4), (1, 8)), 32: ((2, 8),)}
COL_BLOCK = 128  # columns per output tile where a multiple of the micro-kernel's columns divides the extent
ROW_BLOCK = 256  # rows sharing one packed panel of the column operand, so it is packed (or computed) once per
# row block: a matrix larger than the caches, such as a transformer's FFN weights, is then read from memory once,
# and 1x1 convolutions with a pixel count no column block divides (784, 196, 49) pack their input 4x less often
VIEW_COL_BLOCK = 256  # the most columns of a tile made of whole rows of a row-major view (224: 2 rows of 112)
IMPLICIT_MAX_REUSE = 2  # row blocks that may each recompute an im2col panel instead of reading a stored one
K_CHUNK = 256  # reduction chunk of a packed panel (K_CHUNK x COL_BLOCK: 128 KiB in L2)
MIN_WORK = 1 << 16  # smaller contractions keep the generic schedule (a tile would be mostly tail)
STREAM_COLS = 2048  # most columns a vector-matrix product accumulates per block (8 KiB of float32 in L1)
STREAM_K = 4  # rows of the matrix read per pass over a block's accumulators
PARALLEL_MIN_TRIPS = 4  # the outermost tile loop with this many iterations runs in parallel
MIN_BALANCE = 0.9  # below this share of busy threads on the column tiles, rows are split between threads instead


@dataclass
class Contraction:
    """The roles of a stage's axes in a sum of products."""

    row: Axis
    col: Axis
    outer: list[Axis]
    reduce: list[Axis]
    packable: "TensorRead | None"  # the column operand, when it can be copied into a panel
    blocked: bool = False  # not packable, but an input whose rows are exactly the column extent: a panel already


def _strip(e: Expr) -> Expr:
    while isinstance(e, Cast) and e.dtype.is_float and e.value.dtype.is_float:
        e = e.value
    return e


def match(st: Stage) -> "Contraction | None":
    """Recognise `sum(a * b)` over constant-extent axes where one operand walks the innermost spatial axis and
    the other walks a different spatial axis."""
    op = st.op
    if len(op.body) != 1 or not isinstance(op.body[0], Reduce) or not op.outputs[0].dtype.is_float:
        return None
    red: Reduce = op.body[0]
    prod = _strip(red.sources[0])
    if red.combiner != "sum" or not (isinstance(red.where, Const) and red.where.value):
        return None
    if not (isinstance(prod, Binary) and prod.op == "mul"):
        return None
    if any(not isinstance(ax.extent, Const) for ax in st.root_axes) or len(op.axis) < 2:
        return None
    spatial = st.root_axes[:len(op.axis)]
    var_of = {iv.var: ax for iv, ax in zip(op.axis, spatial)}
    col_iv = op.axis[-1].var
    uses = [free_vars(prod.a), free_vars(prod.b)]
    if col_iv in uses[0] and col_iv not in uses[1]:
        col_side, row_side = uses[0], uses[1]
        col_operand = _strip(prod.a)
    elif col_iv in uses[1] and col_iv not in uses[0]:
        col_side, row_side = uses[1], uses[0]
        col_operand = _strip(prod.b)
    else:
        return None
    rows = [iv.var for iv in op.axis[:-1] if iv.var in row_side and iv.var not in col_side]
    if not rows:
        return None
    row, col = var_of[rows[-1]], spatial[-1]
    outer = [ax for ax in spatial if ax is not row and ax is not col]
    reduce = st.root_axes[len(op.axis):]
    plain = _plain_input_read(col_operand, col_iv)
    packable = col_operand if plain and len(reduce) == 1 else None
    blocked = packable is None and plain and isinstance(col_operand.tensor.op, PlaceholderOp) \
        and col_operand.indices[-1] is col_iv and _same_value(col_operand.tensor.shape[-1], col.extent)
    return Contraction(row, col, outer, list(reduce), packable, blocked)


def _same_value(a: Expr, b: Expr) -> bool:
    return isinstance(a, Const) and isinstance(b, Const) and a.value == b.value


def _plain_input_read(e: Expr, col: Var) -> bool:
    """An input (or a stored layout transform such as im2col) read by bare loop variables, walking `col` along its
    last dimension, or along its last two as a row-major matrix (`[..., col // W, col % W]` with W the last
    extent, as a convolution reads its (channel, row, column) input): its panel is a copy."""
    stored = isinstance(e, TensorRead) and (isinstance(e.tensor.op, PlaceholderOp)
                                            or getattr(e.tensor.op, "tag", "") == MATERIALIZE)
    if not stored:
        return False
    if e.indices[-1] is col:
        return all(isinstance(i, (Var, Const)) for i in e.indices)
    return _row_major_view(e.indices[-2:], col, e.tensor.shape[-1]) \
        and all(isinstance(i, (Var, Const)) for i in e.indices[:-2])


def _row_major_view(pair: "tuple[Expr, ...]", col: Var, width: Expr) -> bool:
    if len(pair) != 2 or not isinstance(width, Const):
        return False
    hi, lo = pair
    return all(isinstance(x, Binary) and x.op == op and x.a is col and isinstance(x.b, Const)
               and x.b.value == width.value for x, op in ((hi, "floordiv"), (lo, "mod")))


def _computed_source(c: Contraction, col_block: int = 0) -> bool:
    """The packed operand is a stored computation (im2col) read as a plain matrix, or through a row-major view
    whose rows the column tiles (`col_block`) cover whole: a panel is then a block of it."""
    read = c.packable
    if read is None or isinstance(read.tensor.op, PlaceholderOp):
        return False
    width = _view_width(c)
    return width is None or (col_block > 0 and col_block % width == 0)


def _view_width(c: Contraction) -> "int | None":
    """The row length W of a packed operand read as a row-major view `[.., p // W, p % W]`, else None."""
    read = c.packable
    return None if read is None or isinstance(read.indices[-1], Var) else read.tensor.shape[-1].value


def _work(st: Stage) -> int:
    total = 1
    for ax in st.root_axes:
        total *= ax.extent.value
    return total


@dataclass(frozen=True)
class Blocking:
    """The constants of the register-blocked schedule (the autotuner searches them; the rule picks defaults).
    `parallel`: "auto" (the outermost tile loop with enough trips), "first", "second" (of the tile loops with at
    least two trips) or "none"; `order`: "col" runs the column tiles outside the row blocks, "row" the reverse."""

    vectors: int
    micro: int
    row_block: int  # rows sharing a packed panel, a multiple of `micro`
    k_chunk: int
    pack: bool
    order: str = "col"
    parallel: str = "auto"
    col_block: int = 0  # columns per output tile, a multiple of vectors * lanes (0: one micro-kernel's columns)


def vector_registers(lanes: int, itemsize: int) -> int:
    """x86's register file: 32 vector registers come with 64-byte (AVX-512) vectors, 16 otherwise."""
    return 32 if lanes * itemsize >= 64 else 16


def default_blocking(c: Contraction, lanes: int, registers: int = 16, threads: int = 1) -> Blocking:
    cols = c.col.extent.value
    tiles = MICRO_TILES[registers]
    vectors, micro = next((t for t in tiles if cols % (t[0] * lanes) == 0), tiles[0])
    micro = min(micro, c.row.extent.value)  # a matrix-vector product computes no padding rows
    if c.blocked and micro > 2:  # no panel to share: the row count that pads least
        micro = min(range(micro, micro // 2, -1), key=lambda r: (-(-c.row.extent.value // r) * r, -r))
    pack = c.row.extent.value >= 2 * micro and c.packable is not None
    k = c.reduce[0].extent.value if c.reduce and isinstance(c.reduce[0].extent, Const) else K_CHUNK
    # A chunk that divides the reduction leaves no guarded last chunk (which costs the micro-kernel its registers).
    k_chunk = next((d for d in range(K_CHUNK, K_CHUNK // 2 - 1, -1) if k % d == 0), K_CHUNK)
    rows, nj = c.row.extent.value, vectors * lanes
    col_block = next((w for w in range(COL_BLOCK // nj * nj, 0, -nj) if cols % w == 0), nj) if pack else nj
    width = _view_width(c)
    whole = math.lcm(width, nj) if pack and width is not None else 0
    if 0 < whole <= VIEW_COL_BLOCK and cols % whole == 0 and _computed_source(c, whole):
        col_block = whole  # tiles of whole rows of a computed view (a strided stem's im2col): a panel is a block
    row_block = min(ROW_BLOCK, -(-rows // micro) * micro) if pack else micro
    # Without column blocking, row blocks outside reuse the row operand's slice across all column tiles (and
    # split the work evenly between threads) as soon as there are two of them.
    order = "row" if pack and col_block == nj and rows > row_block else "col"
    col_tiles, row_blocks = -(-cols // col_block), -(-rows // row_block)
    busy = col_tiles / (threads * -(-col_tiles // threads))  # the threads' share of work on the column tiles
    if pack and threads > 1 and row_blocks < threads and busy < MIN_BALANCE \
            and all(ax.extent.value == 1 for ax in c.outer) and rows % (threads * micro) == 0:
        # The column tiles would run in parallel but do not split evenly (7 tiles of a 196-pixel convolution on
        # two threads: 4 + 3); one block of rows per thread over all column tiles does.
        return Blocking(vectors, micro, rows // threads, min(k_chunk, k), pack, "row", "first", col_block)
    return Blocking(vectors, micro, row_block, min(k_chunk, k), pack, order, col_block=col_block)


def schedule_contraction(st: Stage, lanes: int, threads: int = 1) -> "set[Stage] | None":
    """Apply the register-blocked schedule to a root stage: the stages it scheduled, or None when it does not
    match."""
    c = match(st)
    # Direct convolutions match too, but measured no faster than the generic schedule (their column operand
    # cannot be packed and short output rows leave masked tails), so only packable (matmul-like) stages and
    # channel-blocked convolutions (whose weight rows are already panels) take it.
    if c is None or (c.packable is None and not c.blocked) or _work(st) < MIN_WORK or c.col.extent.value < lanes:
        return None
    if c.row.extent.value == 1 and len(c.reduce) == 1:
        apply_streaming(st, c, lanes)
        return {st}
    registers = vector_registers(lanes, st.op.outputs[0].dtype.itemsize)
    done = apply_blocking(st, c, lanes, default_blocking(c, lanes, registers, threads))
    return done | schedule_channel_view(st, lanes) if c.blocked else done


def schedule_channel_view(st: Stage, lanes: int) -> "set[Stage]":
    """The reader that puts a channel-blocked convolution's (n, m // B, pixel, m % B) back in (n, m, oh, ow)
    order (with its bias and activation): vectors along the flattened pixels, which its output stores
    contiguously (7x7 and 14x14 rows are shorter than a vector, so unflattened it stayed scalar), channels in
    parallel. The stages scheduled (none when the reader is not such a plain element-wise stage)."""
    host = plain_reader(st)
    if host is None or len(host.leaf) != 4:
        return set()
    n, m, h, w = host.leaf
    _, vec = host.split(host.fuse(h, w), lanes)
    host.parallel(host.fuse(n, m))
    host.vectorize(vec)
    return {host}


def apply_streaming(st: Stage, c: Contraction, lanes: int) -> None:
    """A vector-matrix product (one row) is bound by reading the matrix once: a block of columns per thread
    accumulates in an L1-resident buffer while the reduction runs outside the columns, so every step streams
    STREAM_K contiguous rows of the matrix instead of hopping between rows for each short column tile."""
    sch = st.schedule
    local = sch.cache_write(st.op.outputs[0], "local")
    cols = c.col.extent.value
    # An even number of equal blocks: a block tail would be split off the parallel loop and run alone.
    blocks = next(n for n in range(2, cols + 2, 2) if -(-cols // n) <= STREAM_COLS)
    width = -(-cols // blocks)
    co, ci = st.split(st.axis(c.col.name), width)
    st.reorder(*[st.axis(a.name) for a in c.outer], st.axis(c.row.name), co, ci)
    sch[local].compute_at(st, co)
    st.parallel(co)
    _, cvi = st.split(ci, lanes)
    st.vectorize(cvi)
    lst = sch[local]
    ko, ki = lst.split(lst.axis(c.reduce[0].name), STREAM_K)
    cv, cl = lst.split(lst.axis(c.col.name), lanes)
    lst.reorder(*[lst.axis(a.name) for a in c.outer], lst.axis(c.row.name), ko, cv, ki, cl)
    lst.unroll(ki)
    lst.vectorize(cl)


def apply_blocking(st: Stage, c: Contraction, lanes: int, b: Blocking) -> "set[Stage]":
    """Output tiles of (row_block x col_block) written back from a local accumulator computed at the tile; the
    micro-kernel: ([reduction chunk], column tile, row block) outside, reductions, then micro rows x vectors.
    An element-wise reader (bias, activation, residual add, a convolution's (oh, ow) view) that has not been
    scheduled yet is the write-back itself (`rules_epilogue.py`). The stages scheduled here."""
    nj = b.vectors * lanes
    col_block = b.col_block or nj
    if col_block % nj:
        raise ScheduleError(f"col_block {col_block} is not a multiple of the micro-kernel's {nj} columns")
    pack = b.pack and c.packable is not None
    sch = st.schedule
    epilogue = find_epilogue(st)
    local = sch.cache_write(st.op.outputs[0], "local")
    panel = sch.cache_read(c.packable.tensor, "local", [sch[local]]) if pack else None
    if panel is not None and _computed_source(c, col_block) \
            and -(-c.row.extent.value // b.row_block) <= IMPLICIT_MAX_REUSE:
        # Implicit im2col: each panel computes its columns from the input, the column matrix is never stored.
        sch.stage_of(c.packable.tensor.op).compute_inline()
    # The write-back stage (st) now has the spatial axes only, under the same names.
    if epilogue is not None:
        st.compute_inline()
        wb, axes = epilogue.host, epilogue.axes(st)
    else:
        wb, axes = st, {a.name: a for a in st.leaf}
    row, col = axes[c.row.name], axes[c.col.name]
    ro, co, _, ci = wb.tile(row, col, b.row_block, col_block)
    outer = [axes[a.name] for a in c.outer]
    pair = (co, ro) if b.order == "col" else (ro, co)
    wb.reorder(*outer, *pair)
    lst = sch[local]
    lst.compute_at(wb, pair[1])
    # One parallel loop, not a fusion: a fused index hides the tile bounds from the region guards of the cache
    # stages, which then stay in the micro-kernel.
    if b.parallel == "auto":  # the outermost loop with enough trips, else the one with the most
        loops = (*outer, *pair)
        wb.parallel(next((ax for ax in loops if ax.extent.value >= PARALLEL_MIN_TRIPS),
                         max(loops, key=lambda ax: ax.extent.value)))
    elif b.parallel != "none":
        loops = [ax for ax in (*outer, *pair) if ax.extent.value >= 2]
        if loops:
            wb.parallel(loops[0] if b.parallel == "first" or len(loops) == 1 else loops[1])
    _, cvi = wb.split(ci, lanes)
    wb.vectorize(cvi)
    l_outer = [lst.axis(a.name) for a in c.outer]
    l_red = [lst.axis(a.name) for a in c.reduce]
    # The accumulator tile computes whole micro-kernels past the output's edge (its buffer covers the tile; the
    # scalar reads of the row operand are clamped), so tail tiles keep the unguarded register-blocked micro-kernel.
    # Columns only with a packed panel: clamping the column operand's vector reads in place would make gathers.
    r_blk, r_in = lst.split(lst.axis(c.row.name), b.micro, tail="pad")
    c_blk, c_rest = lst.split(lst.axis(c.col.name), nj, tail="pad" if pack else "guard")
    c_vec, c_lane = lst.split(c_rest, lanes)
    if pack:
        k_chunk, k_in = lst.split(l_red[0], min(b.k_chunk, l_red[0].extent.value))
        lst.reorder(*l_outer, k_chunk, c_blk, r_blk, k_in, r_in, c_vec, c_lane)
        pst = sch[panel]
        pst.compute_at(lst, k_chunk)
        _, p_lane = pst.split(pst.leaf[-1], lanes)
        pst.vectorize(p_lane)
    else:
        lst.reorder(*l_outer, c_blk, r_blk, *l_red, r_in, c_vec, c_lane)
    lst.unroll(r_in)
    lst.unroll(c_vec)
    lst.vectorize(c_lane)
    return {st, wb, lst} | ({sch[panel]} if panel is not None else set())
