"""GPU tensor-core matmul rule (see rules_gpu's docstring for the whole set): float16 x float16 -> float32.

`C[.., i, j] = sum_k float32(A[.., i, k]) * float32(B[.., k, j])` (B may be read [j, k]; leading batch axes, such
as attention's batch x heads, on blockIdx.z; an operand may also be one matrix for every batch, as a convolution's
weights) with M, N, K constant multiples of 16 gets block tiles of up to 64 x 64, one warp per 32 x 32 (or
16-wide) sub-tile holding 2 x 2 (or fewer) WMMA accumulator fragments, operand tiles of 16 along K staged in shared
memory by the whole block (double-buffered, 16 bytes per thread and copy), and the 16 x 16 x 16 inner nest
annotated `tensor_core` (codegen/cuda/tensorcore.py); large outputs take 128 x 128 blocks (LARGE). Other shapes are
left to the
later rules: a tail tile would need a guarded (per-element) write-back, which a warp-wide fragment store cannot be.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..ir.expr import Const, Var
from ..ir.tensor import Reduce, TensorRead
from .rules_epilogue import Epilogue, find_epilogue
from .rules_gpu_matmul import bind_blocks, inline_into_fetch, widened_read
from .schedule import Schedule, Stage
from .target import Target, sm_number

TILE, WARP_TILE, MAX_BLOCK_TILE, MIN_ARCH = 16, 32, 64, 70
# float16 elements each thread copies per fetch step when the tile splits evenly: 16 bytes (one cp.async on sm_80+,
# where the code generator sees a plain copy; an element-wise producer computed in the fetch stays per element)
COPY_LANES = (8, 4, 2, 1)
# An element-wise reader is applied from a shared copy of the block's float32 tile up to this size (64 x 64); the
# 128 x 128 tiles of LARGE would need 64 KB, so their reader stays a kernel of its own.
STAGING_BYTES = 16 * 1024
# Tile rows padded by 8 halves (16 bytes): the 8 rows a fragment load reads at once then start in different banks
# (unpadded, 64-byte rows put them 4 to a bank and 256-byte rows 8 to a bank); row strides stay multiples of 16
# bytes and 16-row steps multiples of 32 bytes, as WMMA loads and 16-byte copies need.
ROW_PAD = 8


def has_tensor_cores(target: Target) -> bool:
    """CUDA targets of Volta (sm_70) or newer."""
    return target.kind == "cuda" and sm_number(target.get("arch")) >= MIN_ARCH


def half_contraction(st: Stage) -> "tuple[TensorRead, TensorRead] | None":
    """The (row, column) float16 operands of a float32-accumulating contraction, leading batch axes allowed, whose
    row, column and reduced extents are constant multiples of 16, else None. Each operand is indexed by the batch
    variables in order, then its two matrix variables (either order)."""
    body = st.op.body[0] if len(st.op.body) == 1 else None
    if not (isinstance(body, Reduce) and body.combiner == "sum" and len(st.op.axis) >= 2
            and len(st.op.reduce_axis) == 1 and len(st.op.outputs) == 1
            and st.op.outputs[0].dtype.name == "float32" and isinstance(body.where, Const) and body.where.value):
        return None
    extents = [iv.extent for iv in (*st.op.axis[-2:], *st.op.reduce_axis)]
    if not all(isinstance(e, Const) and e.value % TILE == 0 for e in extents):
        return None
    src = body.sources[0]
    if getattr(src, "op", None) != "mul":
        return None
    reads = [widened_read(x) for x in src.children()]
    if any(r is x or not all(isinstance(v, (Var, Const)) for v in r.indices) for r, x in zip(reads, src.children())):
        return None  # an operand that is not a widened float16 read, or is read through index arithmetic
    if reads[0].tensor is reads[1].tensor:
        return None
    *batch, i, j = (iv.var for iv in st.op.axis)
    k = st.op.reduce_axis[0].var
    nb = len(batch)

    def indexed(read: TensorRead, side: Var) -> bool:
        """Batched like the output (a batch dimension of one read at 0 too), or one matrix for every batch (a
        convolution's weights)."""
        idx = read.indices
        lead = len(idx) - 2
        return lead in (0, nb) and all(a is b or isinstance(a, Const) for a, b in zip(idx[:lead], batch)) \
            and {*idx[lead:]} == {side, k}
    for a, b in (reads, reads[::-1]):
        if indexed(a, i) and indexed(b, j):
            return a, b
    return None


@dataclass(frozen=True)
class TensorCoreTiles:
    """Block tile (rows x columns), warps along each side and the K step staged in shared memory per fetch."""

    rows: int
    cols: int
    warps_y: int
    warps_x: int
    k_step: int = TILE


# From 4M outputs (as the SIMT rule's large tiles): 128 x 128 blocks of 2 x 4 warps, each 64 x 32 (4 x 2
# accumulator fragments), K steps of 32 -- a quarter of the 64 x 64 tiles' global traffic per multiply-add, for
# 32 KiB of double-buffered shared tiles; a 2048^2 output still gives 256 blocks.
LARGE = TensorCoreTiles(128, 128, 2, 4, 32)
LARGE_FROM = 1 << 22


def _block_tile(n: int) -> int:
    return next(t for t in (MAX_BLOCK_TILE, WARP_TILE, TILE) if n % t == 0)


def default_tiles(rows: int, cols: int, depth: int) -> TensorCoreTiles:
    if rows % LARGE.rows == 0 and cols % LARGE.cols == 0 and depth % LARGE.k_step == 0 \
            and rows * cols >= LARGE_FROM:
        return LARGE
    ty_n, tx_n = _block_tile(rows), _block_tile(cols)
    return TensorCoreTiles(ty_n, tx_n, max(ty_n // WARP_TILE, 1), max(tx_n // WARP_TILE, 1))


def tensor_core_matmul(sch: Schedule, st: Stage, block: int) -> bool:
    """The rule; `block` (max threads) must hold 32 x (warps per block)."""
    reads = half_contraction(st)
    if reads is None:
        return False
    rows, cols = (iv.extent.value for iv in st.op.axis[-2:])  # type: ignore[attr-defined]
    tiles = default_tiles(rows, cols, st.op.reduce_axis[0].extent.value)  # type: ignore[attr-defined]
    ty_n, tx_n, wy, wx = tiles.rows, tiles.cols, tiles.warps_y, tiles.warps_x
    if 32 * wy * wx > block:
        return False
    operands = [sch.resolve(r.tensor) for r in reads]
    for t in operands:
        inline_into_fetch(sch, t)
    epilogue = find_epilogue(st) if ty_n * tx_n * 4 <= STAGING_BYTES else None
    acc = sch.cache_write(st.op.outputs[0], "local")
    shared = [sch.cache_read(t, "shared", [acc]) for t in operands]
    if epilogue is None:
        *batch, i, j = st.leaf
        by, yi = st.split(i, ty_n)
        bx, xi = st.split(j, tx_n)
        wyo, yy = st.split(yi, nparts=wy)
        wxo, xx = st.split(xi, nparts=wx)
        st.reorder(*bind_blocks(st, batch, by, bx), by, bx, wyo, wxo, yy, xx)
    else:
        wyo, wxo = _stage_through_shared(st, epilogue, tiles)
    st.bind(wyo, "threadIdx.y")  # one warp per (y, z); threadIdx.x is the warp's 32 lanes, bound in the fetches
    st.bind(wxo, "threadIdx.z")
    ast = sch[acc]
    ast.compute_at(st, wxo)
    *abatch, ai, aj, ak = ast.leaf
    ko, ki = ast.split(ak, tiles.k_step)
    kio, ki = ast.split(ki, TILE)
    aio, ai = ast.split(ai, TILE)
    ajo, aj = ast.split(aj, TILE)
    ast.reorder(*abatch, ko, kio, aio, ajo, ai, aj, ki)
    ast.unroll(kio)
    ast.unroll(aio)  # constant fragment indices: the fragments stay in registers
    ast.unroll(ajo)
    ast.pragma(ai, "tensor_core", 1)
    ast.pragma(ko, "double_buffer", 1)
    threads = 32 * wy * wx
    for tile, side in zip(shared, (ty_n, tx_n)):
        tst = sch[tile]
        tst.compute_at(ast, ko)
        tst.storage_layout(list(range(len(tst.op.axis))), pad=ROW_PAD)
        *rows, cols = tst.leaf
        lanes = next(v for v in COPY_LANES if side * tiles.k_step % (v * threads) == 0)
        if lanes > 1:  # split off the contiguous dimension itself, so the lanes stay unit-stride in both memories
            cols, lane = tst.split(cols, lanes)
            tst.vectorize(lane)
        _spread_over_warps(tst, tst.fuse(*rows, cols), wy, wx)
    return True


def _spread_over_warps(st: Stage, fused, wy: int, wx: int) -> None:
    """A loop over a block's elements shared by all its threads: 32 consecutive elements per warp (threadIdx.x),
    then the warps along threadIdx.z and threadIdx.y, the rest serial."""
    rest, x = st.split(fused, 32)
    rest, z = st.split(rest, wx)
    _, y = st.split(rest, wy)
    st.bind(x, "threadIdx.x")
    st.bind(y, "threadIdx.y")
    st.bind(z, "threadIdx.z")


def _stage_through_shared(st: Stage, epilogue: Epilogue, tiles: TensorCoreTiles) -> tuple:
    """The element-wise reader (bias, activation, a convolution's view) writes the output: the warps store their
    fragments into a shared block tile (`st`, whole 16 x 16 tiles, as WMMA stores must be), then every thread of
    the block applies the reader to its elements, so the result crosses global memory once. Returns the warp
    loops of the staging stage."""
    host, axes = epilogue.host, epilogue.axes(st)
    *batch, i, j = (axes[iv.var.name] for iv in st.op.axis)
    by, yi = host.split(i, tiles.rows)
    bx, xi = host.split(j, tiles.cols)
    host.reorder(*bind_blocks(host, batch, by, bx), by, bx, yi, xi)
    _spread_over_warps(host, host.fuse(yi, xi), tiles.warps_y, tiles.warps_x)
    st.set_scope("shared")
    st.compute_at(host, bx)
    *sbatch, si, sj = st.leaf
    # factors, not nparts: the stage's extents become its region (the block tile) only when it is lowered
    wyo, yy = st.split(si, tiles.rows // tiles.warps_y)
    wxo, xx = st.split(sj, tiles.cols // tiles.warps_x)
    st.reorder(*sbatch, wyo, wxo, yy, xx)
    return wyo, wxo
