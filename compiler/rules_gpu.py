"""Rule-based default GPU schedules: every workload correct, common shapes fast enough.

Rules, per stage:
- element-wise intermediates are inlined into their consumers (as on the CPU);
- generic: a root stage's spatial axes are fused, split by the block size and bound to blockIdx.x/threadIdx.x
  (the tail is guarded); its reduction loops run serially in each thread, accumulating in a register, so any
  workload is correct; float32 element-wise stages give each thread 4 consecutive elements (a vectorized loop the
  code generator turns into float4 accesses where they are contiguous);
- a reduction's only element-wise reader at its own position (bias, activation, residual add, a mean's division,
  a convolution's view; rules_epilogue.py) is found before any stage is scheduled and becomes the write-back of
  the generic, the tiled and (through a shared block tile, up to 64 x 64) the tensor-core rule: one kernel; the
  others leave it to the generic rule;
- float16 x float16 contractions accumulated in float32 (batched or not, sides multiples of 16, sm_70+): tensor cores
  (`rules_gpu_tensorcore.py`): 64 x 64 block tiles, a warp per 32 x 32 holding WMMA accumulator fragments, operand
  tiles staged in shared memory; other shapes take the rules below;
- float32 contractions (a product of two tensors summed over one axis, leading batch axes; convolutions after
  im2col; a row side of 8 or more): register-tiled blocks (`rules_gpu_matmul.py`), operand tiles fetched into
  shared memory by the whole block into two alternating buffers, element-wise producers of the operands (im2col)
  computed inside the fetch;
- row-wise normalisations (`rules_gpu_rowwise.py`: softmax, log-softmax, layer norm, RMS norm; an element-wise
  stage reading sum/max/min reductions over its last axis): one kernel, a block per row, the reductions computed
  at the row loop as cross-thread reductions into shared memory, the row written by the same threads;
- a reduction left to the generic rule (depthwise convolution, pooling) reads a zero-padded input through the
  padding select, the padded copy inlined rather than stored by a launch of its own;
- reductions over a long (or symbolic) axis, contractions excepted: one block per output element; the reduced
  loop is split across the block's threads, each accumulating in a register, combined by warp shuffles
  (`__shfl_down_sync`) and, with several warps, through a small shared buffer; fewer than 32 outputs over 32K+
  (or symbolic) elements each are reduced in two stages (128 partial results per output, a block each, rfactor).
"""
from __future__ import annotations

from typing import Sequence

from ..ir.expr import Const
from ..ir.tensor import MATERIALIZE, Tensor
from .default_schedule import inline_elementwise
from .schedule import Schedule, Stage
from .rules_epilogue import find_epilogue
from .rules_gpu_matmul import tiled_matmul
from .rules_gpu_rowwise import rowwise_normalisation
from .rules_gpu_tensorcore import has_tensor_cores, tensor_core_matmul
from .target import Target

BLOCK = 256
REDUCE_MIN = 64  # reduced length from which one output element is reduced by a whole block
FEW_OUTPUTS, SPLIT_MIN, PARTS = 32, 1 << 15, 128  # fewer outputs than this reducing at least SPLIT_MIN: PARTS blocks
VECTOR = 4  # float32 elements per thread of an element-wise stage (one float4)


def gpu_schedule(outputs: "Tensor | Sequence[Tensor]", target: Target) -> Schedule:
    sch = Schedule(outputs)
    inline_elementwise(sch)
    block = min(BLOCK, int(target.get("max-threads-per-block")))  # type: ignore[arg-type]
    epilogues = reduction_epilogues(sch)
    for st in reversed(list(sch.stages)):  # consumers first: a rule may inline or attach its producers
        if st.attach.kind != "root" or any(st is e for e in epilogues):
            continue
        if not any(rule(sch, st, block) for rule in STAGE_RULES
                   if rule is not tensor_core_matmul or has_tensor_cores(target)):
            inline_padded_inputs(sch, st)
            bind_flat(sch, st, block)
    for st in epilogues:  # left alone by its reduction's rule (tensor cores store whole fragments, a block reduction
        # stores from one thread)
        if st.attach.kind == "root" and not st.relations:
            bind_flat(sch, st, block)
    return sch


def inline_padded_inputs(sch: Schedule, st: Stage) -> None:
    """A reduction that only a thread's registers hold (a depthwise convolution, pooling) reads its zero-padded
    input through the padding select instead of from a copy stored by a launch of its own: on a GPU a guarded load
    costs less than that launch and the round trip through global memory (the CPU stores the copy, tile by tile,
    to keep selects out of its vector loops)."""
    if not st.op.reduce_axis:
        return
    for t in sch.reads(st):
        prod = sch.stage_of(t.op)
        if (prod is not None and prod.op.tag == MATERIALIZE and prod.attach.kind == "root" and not prod.relations
                and not prod.op.reduce_axis and not prod.is_output and sch.consumers(prod) == [st]):
            prod.compute_inline()


def reduction_epilogues(sch: Schedule) -> list[Stage]:
    """The element-wise stages a reduction's rule may write its result through (rules_epilogue.py: the tiled
    contraction rule and bind_flat do), found before any stage is scheduled: the rules run consumers first, and a
    scheduled reader is no longer a free write-back."""
    hosts = []
    for st in sch.stages:
        if st.attach.kind == "root" and st.op.reduce_axis:
            epilogue = find_epilogue(st)
            if epilogue is not None:
                hosts.append(epilogue.host)
    return hosts


def bind_flat(sch: Schedule, st: Stage, block: int) -> None:
    """Fuse the spatial loops, split by `block`, bind blockIdx.x/threadIdx.x; reductions stay serial inside,
    accumulating in a register (a local cache stage computed at the thread loop)."""
    spatial = [a for a in st.leaf if a.kind == "spatial"]
    if not spatial:
        return  # a single value: the launcher runs it on one thread
    acc, out = None, st
    if st.op.reduce_axis and len(st.op.outputs) == 1:
        epilogue = find_epilogue(st)
        acc = sch[sch.cache_write(st.op.outputs[0], "local")]
        if epilogue is not None:  # its element-wise reader (a mean's division, a bias) writes the register out
            st.compute_inline()
            out = epilogue.host
        spatial = list(out.leaf)
    reduce = [a for a in st.leaf if a.kind == "reduce"]
    if reduce:
        st.reorder(*spatial, *reduce)
    fused = out.fuse(*spatial)
    lanes = None
    if acc is None and not st.op.reduce_axis and all(t.dtype.name == "float32" for t in st.op.outputs):
        fused, lanes = st.split(fused, VECTOR)  # float4 loads/stores where the accesses allow
    n = _const(fused.extent)
    bx, tx = out.split(fused, min(block, n) if n is not None else block)
    out.bind(bx, "blockIdx.x")
    out.bind(tx, "threadIdx.x")
    if lanes is not None:
        st.vectorize(lanes)
    if acc is not None:
        acc.compute_at(out, tx)


def block_reduction(sch: Schedule, st: Stage, block: int) -> bool:
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
    spatial = [a for a in st.leaf if a.kind == "spatial"]
    if _few_outputs(st) and (length is None or length >= SPLIT_MIN) and len(st.op.reduce_axis) == 1:
        return _two_stage_reduction(sch, st, block)
    threads = block if length is None else min(block, 32 * -(-length // 32))
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


def _few_outputs(st: Stage) -> bool:
    """Fewer outputs than a big GPU has SMs to spread one block each over (symbolic counts are assumed many)."""
    count = 1
    for iv in st.op.axis:
        n = _const(iv.extent)
        if n is None:
            return False
        count *= n
    return count < FEW_OUTPUTS


def _two_stage_reduction(sch: Schedule, st: Stage, block: int) -> bool:
    """A long reduction into few outputs (a global sum): one block per output would leave the GPU idle, so the
    reduced axis is split into PARTS slices reduced by a block each (rfactor), then a block per output combines
    the partial results."""
    reduce = next(a for a in st.leaf if a.kind == "reduce")
    parts, _ = st.split(reduce, nparts=PARTS)
    partial = sch[sch.rfactor(st.op.outputs[0], parts)]
    final = sch[sch.resolve(st.op.outputs[0])]
    return block_reduction(sch, partial, block) and block_reduction(sch, final, block)


def _const(e) -> "int | None":
    return e.value if isinstance(e, Const) else None


# tried in order on each root stage; the first that applies wins
STAGE_RULES = (tensor_core_matmul, tiled_matmul, rowwise_normalisation, block_reduction)
