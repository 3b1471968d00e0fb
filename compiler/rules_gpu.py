"""Rule-based default GPU schedules: every workload correct, common shapes fast enough.

Rules, per stage:
- element-wise intermediates are inlined into their consumers (as on the CPU);
- generic: a root stage's spatial axes are fused, split by the block size and bound to blockIdx.x/threadIdx.x
  (the tail is guarded); its reduction loops run serially in each thread, accumulating in a register, so any
  workload is correct; float32 element-wise stages give each thread 4 consecutive elements (a vectorized loop the
  code generator turns into float4 accesses where they are contiguous);
- float32 matmul-like stages (2-D output, one reduction, a product of two tensors): 64 x 64 block tiles, 16 x 16
  threads of 4 x 4 outputs each, operand tiles of 16 along the reduction staged in shared memory
  (cache_read + compute_at, barriers inserted by the code generator), accumulators in shared memory;
- reductions over a long (or symbolic) axis, contractions excepted: one block per output element; the reduced
  loop is split across the block's threads, each accumulating in a register, combined by warp shuffles
  (`__shfl_down_sync`) and, with several warps, through a small shared buffer.
"""
from __future__ import annotations

from typing import Sequence

from ..ir.expr import Const
from ..ir.tensor import Tensor
from .default_schedule import inline_elementwise
from .schedule import Schedule, Stage
from .target import Target

BLOCK = 256
REDUCE_MIN = 64  # reduced length from which one output element is reduced by a whole block
VECTOR = 4  # float32 elements per thread of an element-wise stage (one float4)
TILE, TILE_THREADS, K_TILE = 64, 16, 16  # matmul: block tile, threads per tile side, reduction step


def gpu_schedule(outputs: "Tensor | Sequence[Tensor]", target: Target) -> Schedule:
    sch = Schedule(outputs)
    inline_elementwise(sch)
    block = min(BLOCK, int(target.get("max-threads-per-block")))  # type: ignore[arg-type]
    for st in list(sch.stages):
        if st.attach.kind != "root":
            continue
        if not (_tiled_matmul(sch, st) or _block_reduction(st, block)):
            bind_flat(sch, st, block)
    return sch


def bind_flat(sch: Schedule, st: Stage, block: int) -> None:
    """Fuse the spatial loops, split by `block`, bind blockIdx.x/threadIdx.x; reductions stay serial inside,
    accumulating in a register (a local cache stage computed at the thread loop)."""
    spatial = [a for a in st.leaf if a.kind == "spatial"]
    if not spatial:
        return  # a single value: the launcher runs it on one thread
    acc = None
    if st.op.reduce_axis and len(st.op.outputs) == 1:
        acc = sch[sch.cache_write(st.op.outputs[0], "local")]
        spatial = list(st.leaf)
    reduce = [a for a in st.leaf if a.kind == "reduce"]
    if reduce:
        st.reorder(*spatial, *reduce)
    fused = st.fuse(*spatial)
    lanes = None
    if acc is None and not st.op.reduce_axis and all(t.dtype.name == "float32" for t in st.op.outputs):
        fused, lanes = st.split(fused, VECTOR)  # float4 loads/stores where the accesses allow
    n = _const(fused.extent)
    bx, tx = st.split(fused, min(block, n) if n is not None else block)
    st.bind(bx, "blockIdx.x")
    st.bind(tx, "threadIdx.x")
    if lanes is not None:
        st.vectorize(lanes)
    if acc is not None:
        acc.compute_at(st, tx)


def _contraction_operands(sch: Schedule, st: Stage) -> "tuple[Tensor, Tensor] | None":
    """The two tensors of a float32 2-D `sum_k a[.., k] * b[k, ..]` stage, else None."""
    from ..ir.tensor import Reduce, TensorRead
    body = st.op.body[0] if len(st.op.body) == 1 else None
    if not (isinstance(body, Reduce) and body.combiner == "sum" and len(st.op.axis) == 2
            and len(st.op.reduce_axis) == 1 and len(st.op.outputs) == 1
            and st.op.outputs[0].dtype.name == "float32" and isinstance(body.where, Const) and body.where.value):
        return None
    src = body.sources[0]
    if getattr(src, "op", None) != "mul" or not all(isinstance(x, TensorRead) for x in src.children()):
        return None
    a, b = (x.tensor for x in src.children())
    if a is b or any(isinstance(i, TensorRead) for x in src.children() for i in x.indices):
        return None
    return sch.resolve(a), sch.resolve(b)


def _tiled_matmul(sch: Schedule, st: Stage) -> bool:
    """Block tiles of TILE x TILE outputs, 16 x 16 threads computing 4 x 4 each; per step of K_TILE along the
    reduction both operand tiles are staged in shared memory (barriers before and after use), and the block's
    accumulators live in shared memory until a final copy out."""
    operands = _contraction_operands(sch, st)
    if operands is None:
        return False
    for iv in st.op.axis:
        n = _const(iv.extent)
        if n is not None and n < TILE // 2:
            return False
    out = st.op.outputs[0]
    acc = sch.cache_write(out, "shared")
    tiles = [sch.cache_read(t, "shared", [acc]) for t in operands]
    i, j = st.leaf
    by, yi = st.split(i, TILE)
    bx, xi = st.split(j, TILE)
    st.reorder(by, bx, yi, xi)
    st.bind(by, "blockIdx.y")
    st.bind(bx, "blockIdx.x")
    ty, yy = st.split(yi, nparts=TILE_THREADS)
    tx, xx = st.split(xi, nparts=TILE_THREADS)
    st.reorder(ty, tx, yy, xx)
    st.bind(ty, "threadIdx.y")
    st.bind(tx, "threadIdx.x")
    ast = sch[acc]
    ast.compute_at(st, bx)
    ai, aj, ak = ast.leaf
    ko, ki = ast.split(ak, K_TILE)
    # factors, not nparts: the stage's extents become its region (TILE) only when it is lowered
    aty, ayi = ast.split(ai, TILE // TILE_THREADS)
    atx, axi = ast.split(aj, TILE // TILE_THREADS)
    ast.reorder(ko, aty, atx, ki, ayi, axi)
    ast.bind(aty, "threadIdx.y")
    ast.bind(atx, "threadIdx.x")
    ast.unroll(ayi)
    ast.unroll(axi)
    for tile in tiles:
        tst = sch[tile]
        tst.compute_at(ast, ko)
        _, inner = tst.split(tst.fuse(*tst.leaf), TILE_THREADS * TILE_THREADS)
        y, x = tst.split(inner, TILE_THREADS)
        tst.bind(y, "threadIdx.y")
        tst.bind(x, "threadIdx.x")
    return True


def _block_reduction(st: Stage, block: int) -> bool:
    """One block per output element: the reduced loop is split across the block's threads (each accumulates a
    strided slice in a register), then the threads combine their values with warp shuffles."""
    from ..ir.tensor import Reduce, TensorRead
    body = st.op.body[0] if len(st.op.body) == 1 else None
    if not isinstance(body, Reduce) or body.combiner not in ("sum", "prod", "max", "min") or len(st.op.outputs) != 1:
        return False
    if st.op.outputs[0].dtype.is_bool:
        return False
    src = body.sources[0]
    if getattr(src, "op", None) == "mul" and all(isinstance(x, TensorRead) for x in src.children()):
        return False  # contractions keep one output element per thread (each reads a row and a column)
    length = 1
    for iv in st.op.reduce_axis:
        n = _const(iv.extent)
        length = None if n is None or length is None else length * n
    if length is not None and length < REDUCE_MIN:
        return False
    threads = block if length is None else min(block, 32 * -(-length // 32))
    spatial = [a for a in st.leaf if a.kind == "spatial"]
    reduce = st.fuse(*[a for a in st.leaf if a.kind == "reduce"])
    ko, ki = st.split(reduce, threads)
    if spatial:
        row = st.fuse(*spatial)
        st.reorder(row, ki, ko)
        st.bind(row, "blockIdx.x")
    else:
        st.reorder(ki, ko)
    st.bind(ki, "threadIdx.x")
    return True


def _const(e) -> "int | None":
    return e.value if isinstance(e, Const) else None
