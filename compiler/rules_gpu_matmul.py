"""GPU matmul rule: block tiles staged through shared memory (see rules_gpu's docstring for the whole set)."""
from __future__ import annotations

from dataclasses import dataclass

from ..ir.expr import Cast, Const, Var, free_vars, substitute
from ..ir.simplify import simplify_index
from ..ir.tensor import PlaceholderOp, Reduce, Tensor, TensorRead
from .rules_epilogue import find_epilogue
from .schedule import Schedule, Stage

THREADS = 16  # threads per side of a block (16 x 16)


@dataclass(frozen=True)
class MatmulTiles:
    """Outputs per thread along each side (block tile = 16 x that; `rows_per_thread` when the row side differs)
    and the reduction step staged per fetch."""

    per_thread: int = 4
    k_step: int = 16
    rows_per_thread: "int | None" = None

    @property
    def tile(self) -> int:
        return THREADS * self.per_thread

    @property
    def rows(self) -> int:
        return self.rows_per_thread or self.per_thread

    @property
    def row_tile(self) -> int:
        return THREADS * self.rows


SMALL, LARGE = MatmulTiles(4, 16), MatmulTiles(8, 8)
LARGE_FROM = 1 << 22  # output elements from which 128 x 128 block tiles still give every SM of a big GPU 2 blocks
# Few rows (a convolution with 8-31 output channels, MobileNet's projections): 16- or 32-row tiles of 64 columns,
# instead of a 64 x 64 tile mostly idle or the per-output generic rule.
NARROW_MIN = 8


def _narrow(rows: int) -> MatmulTiles:
    return MatmulTiles(4, 16, rows_per_thread=1 if rows <= THREADS else 2)


def contraction_reads(st: Stage) -> "tuple[TensorRead, TensorRead] | None":
    """The row and column operands of a float32 `out[batch.., i, j] = sum_k a[.., i, .., k] * b[.., k, .., j]`
    stage (a reads no j, b reads no i, indices free of tensor reads; float16 operands widened to float32 too),
    else None."""
    body = st.op.body[0] if len(st.op.body) == 1 else None
    if not (isinstance(body, Reduce) and body.combiner == "sum" and len(st.op.axis) >= 2
            and len(st.op.reduce_axis) == 1 and len(st.op.outputs) == 1
            and st.op.outputs[0].dtype.name == "float32" and isinstance(body.where, Const) and body.where.value):
        return None
    src = body.sources[0]
    if getattr(src, "op", None) != "mul":
        return None
    reads = [widened_read(x) for x in src.children()]
    if not all(isinstance(x, TensorRead) for x in reads):
        return None
    if reads[0].tensor is reads[1].tensor or any(isinstance(i, TensorRead) for x in reads for i in x.indices):
        return None
    i, j = (iv.var for iv in st.op.axis[-2:])

    def uses(x, v) -> bool:
        return any(v in free_vars(idx) for idx in x.indices)
    for a, b in (reads, reads[::-1]):
        if not uses(a, j) and not uses(b, i):
            return a, b
    return None


def widened_read(x):
    """A float16 operand read as float32 (a float16 matmul accumulating in float32) counts as its read: the tile
    is staged in float16 and widened where it is used."""
    if isinstance(x, Cast) and x.dtype.name == "float32" and isinstance(x.value, TensorRead) \
            and x.value.dtype.name == "float16":
        return x.value
    return x


def inline_into_fetch(sch: Schedule, t: Tensor) -> None:
    """An element-wise producer of an operand (im2col, a transpose) is computed while its tile is fetched into
    shared memory (an implicit GEMM for convolutions) instead of being stored by a launch of its own."""
    if isinstance(t.op, PlaceholderOp):
        return
    st = sch[t]
    if (st.attach.kind == "root" and not st.op.reduce_axis and not st.is_output and len(st.op.outputs) == 1
            and not st.relations and len(sch.consumers(st)) == 1):
        st.compute_inline()
        for t in sch.reads(st):  # a zero-padded copy it reads (a strided stem's taps): the select goes in the fetch
            inline_into_fetch(sch, t)


def tiled_matmul(sch: Schedule, st: Stage, block: int) -> bool:
    """The rule: float32 contractions whose two output sides are not small get register-tiled blocks, 128 x 128
    (8 x 8 per thread) for large outputs, else 64 x 64 (4 x 4); a row side of 8-31 takes 16- or 32-row tiles."""
    reads = contraction_reads(st)
    if reads is None or THREADS * THREADS > block:
        return False
    rows, cols = (iv.extent.value if isinstance(iv.extent, Const) else None for iv in st.op.axis[-2:])
    if cols is not None and cols < SMALL.tile // 2:
        return False
    if rows is not None and rows < SMALL.tile // 2:
        if rows < NARROW_MIN:
            return False
        schedule_tiled_matmul(sch, st, reads, _narrow(rows))
        return True
    outputs = 1
    for iv in st.op.axis:
        outputs = outputs * iv.extent.value if isinstance(iv.extent, Const) and outputs else 0
    schedule_tiled_matmul(sch, st, reads, LARGE if outputs >= LARGE_FROM else SMALL)
    return True


def schedule_tiled_matmul(sch: Schedule, st: Stage, reads: "tuple[TensorRead, TensorRead]",
                          tiles: MatmulTiles) -> None:
    """Block tiles of `tiles.tile` outputs a side (leading batch axes fused on blockIdx.z), 16 x 16 threads each
    computing per_thread x per_thread outputs in registers (a local cache stage); per `k_step` along the
    reduction both operand tiles are staged in shared memory, fetched by all the block's threads together (their
    regions are relaxed over the thread loops; the code generator puts a barrier after the fetch and after their
    use). Element-wise producers of the operands (im2col) are computed inside the fetch. An input read through
    div/mod (a convolution's 4-D weights seen as a matrix) is read from global memory instead: its tile's bounding
    box per dimension spans whole kernel windows (7x7 taps x 2 channels x 64 filters for a 16-wide step), more
    shared memory than a block may use once double-buffered."""
    staged = [r for r in reads if _plain(r) or not isinstance(sch.resolve(r.tensor).op, PlaceholderOp)]
    sides = {id(reads[0]): st.op.axis[-2].var, id(reads[1]): st.op.axis[-1].var}
    k_var = st.op.reduce_axis[0].var
    operands = [sch.resolve(r.tensor) for r in staged]
    for t in operands:
        inline_into_fetch(sch, t)
    epilogue = find_epilogue(st)
    acc = sch.cache_write(st.op.outputs[0], "local")
    shared = [sch.cache_read(t, "shared", [acc]) for t in operands]
    if epilogue is not None:  # the element-wise reader writes the registers out (bias, activation, conv view)
        st.compute_inline()
        out, axes = epilogue.host, epilogue.axes(st)
        *batch, i, j = (axes[iv.var.name] for iv in st.op.axis)
    else:
        out = st
        *batch, i, j = st.leaf
    by, yi = out.split(i, tiles.row_tile)
    bx, xi = out.split(j, tiles.tile)
    ty, yy = out.split(yi, nparts=THREADS)
    tx, xx = out.split(xi, nparts=THREADS)
    out.reorder(*bind_blocks(out, batch, by, bx), by, bx, ty, tx, yy, xx)
    out.bind(ty, "threadIdx.y")
    out.bind(tx, "threadIdx.x")
    ast = sch[acc]
    ast.compute_at(out, tx)
    *abatch, ai, aj, ak = ast.leaf
    ko, ki = ast.split(ak, tiles.k_step)
    # factors, not nparts: the stage's extents become its region (per_thread a side) only when it is lowered
    aio, ai = ast.split(ai, tiles.rows)
    ajo, aj = ast.split(aj, tiles.per_thread)
    ast.reorder(*abatch, aio, ajo, ko, ki, ai, aj)
    if all(isinstance(ax.extent, Const) for ax in st.root_axes + ast.root_axes):
        # Unrolled steps keep partial tiles free of spills (ptxas spilled at 40 registers with a rolled guarded
        # loop); kernels with symbolic sizes index in 64 bits and would spill unrolled.
        ast.unroll(ki)
    ast.unroll(ai)
    _vectorize_by_4(ast, aj)  # each thread's columns read from the shared tile as float4
    if shared:
        ast.pragma(ko, "double_buffer", 1)
    for tile, read in zip(shared, staged):
        tst = sch[tile]
        tst.compute_at(ast, ko)
        _cooperative_fetch(tst, _plain(read))
        if _plain(read):
            _output_side_innermost(tst, read, sides[id(read)], k_var)
    out.unroll(yy)  # the accumulators are read at constant indices: they stay in registers
    _vectorize_by_4(out, xx)  # float4 stores of each thread's row of outputs


def bind_blocks(st: Stage, batch: list, by, bx) -> list:
    """Leading batch axes fused on blockIdx.z (attention's batch x heads), block rows and columns on y and x.
    Returns the fused batch loop, if any."""
    outer = [st.fuse(*batch)] if batch else []
    if outer:
        st.bind(outer[0], "blockIdx.z")
    st.bind(by, "blockIdx.y")
    st.bind(bx, "blockIdx.x")
    return outer


def _vectorize_by_4(st: Stage, axis) -> None:
    """float4 accesses over a loop of 4 or 8 (the code generator's vector loops have 4 float lanes)."""
    if axis.extent.value > 4:
        axis, lanes = st.split(axis, 4)
        st.unroll(axis)
        axis = lanes
    st.vectorize(axis)


def _output_side_innermost(tst: Stage, read: TensorRead, side: Var, k: Var) -> None:
    """Store a tile with its output-side dimension innermost: each thread then reads 4 consecutive elements per
    reduction step (float4; a row-major A tile would be 4 loads 16 apart). Rows padded by 4 floats keep float4
    alignment and spread the fetch's transposing stores over more banks."""
    dims = [next(d for d, x in enumerate(read.indices) if x is v) for v in (side, k)]
    if dims[0] < dims[1]:
        order = list(range(len(read.indices)))
        order[dims[0]], order[dims[1]] = order[dims[1]], order[dims[0]]
        tst.storage_layout(order, pad=4)


def _plain(read: TensorRead) -> bool:
    """Indexed by loop variables, or constants (a broadcast batch dimension of one, read at 0)."""
    return all(isinstance(x, (Var, Const)) for x in read.indices)


def _cooperative_fetch(tst: Stage, plain: bool) -> None:
    """The block's 16 x 16 threads copy the tile: a plainly indexed operand (leading axes are one element of the
    region) row by row with consecutive threads on consecutive elements; any other tile (a convolution's weights,
    read through div/mod) flattened."""
    if plain:
        *_, rows, cols = tst.leaf
        if _rows_contiguous(tst):  # a transposed source (attention's K^T): consecutive threads down the rows
            ro, x = tst.split(rows, THREADS)
            co, y = tst.split(cols, THREADS)
            tst.reorder(ro, co, y, x)
        else:
            ro, y = tst.split(rows, THREADS)
            co, x = tst.split(cols, THREADS)
            tst.reorder(ro, co, y, x)
    else:
        _, inner = tst.split(tst.fuse(*tst.leaf), THREADS * THREADS)
        y, x = tst.split(inner, THREADS)
    tst.bind(y, "threadIdx.y")
    tst.bind(x, "threadIdx.x")


def _rows_contiguous(tst: Stage) -> bool:
    """Whether the tile's rows, not its columns, are consecutive in the kernel input it is finally read from
    (through inlined transposes and reshapes, whose div/mod indices are probed at the tile's first elements)."""
    sch = tst.schedule
    rows, cols = (iv.var for iv in tst.op.axis[-2:])
    zero = {iv.var: Const(0, iv.var.dtype) for iv in tst.op.axis}
    inputs = {id(t): t for s in sch.stages for t in sch.reads(s) if isinstance(t.op, PlaceholderOp)}
    reads = [(t, idx) for t in inputs.values() for idx in sch.reads_of(t, tst.op.body[0], tst)]
    if len(reads) != 1:
        return False
    t, idx = reads[0]
    dims = [getattr(d, "value", None) for d in t.shape]

    def flat(at: dict) -> "int | None":
        total = 0
        for i, d in zip(idx, dims):
            v = simplify_index(substitute(i, at))
            if d is None or not isinstance(v, Const):
                return None
            total = total * d + v.value
        return total
    base, down, across = (flat({**zero, **step}) for step in ({}, {rows: Const(1, rows.dtype)},
                                                              {cols: Const(1, cols.dtype)}))
    return None not in (base, down, across) and down - base == 1 and across - base != 1
