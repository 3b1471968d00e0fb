"""Rule-based default CPU schedules, so code without a hand schedule is already decent.

Rules, per stage:
- element-wise intermediates are inlined into their consumers;
- the innermost spatial axis is split by the vector width and vectorized (lanes read contiguous memory);
- sums of products (matmul, convolution) get a register-blocked tiled schedule (`rules_contraction.py`);
- row reductions (softmax, layer norm) are vectorized and computed per row of their reader (`rules_rowwise.py`);
- sliding-window reductions (depthwise conv, pooling) get register-blocked tiles (`rules_window.py`);
- other reductions keep a spatial axis innermost when one exists (matmul-like: i, j.outer, k, j.inner), so the
  accumulator stays in vector registers;
- the outer spatial loops are fused and run in parallel when the stage has enough work to pay for threads.
"""
from __future__ import annotations

from typing import Sequence

from ..ir.expr import Const
from ..ir.tensor import MATERIALIZE, Tensor
from .rules_contraction import schedule_contraction
from .rules_rowwise import schedule_rowwise
from .rules_window import schedule_window
from .schedule import Schedule, Stage
from .target import Target

PARALLEL_MIN_WORK = 1 << 15


def vector_lanes(target: Target, itemsize: int) -> int:
    wide = target.cpu_has("avx512f")
    avx = wide or target.cpu_has("avx")
    width = 64 if wide else 32 if avx else 16
    return max(width // itemsize, 1)


def inline_elementwise(sch: Schedule) -> None:
    """Every target's first rule: element-wise intermediates are inlined into their readers (stages tagged
    `materialize`, such as im2col, and reductions stay stages of their own)."""
    for st in sch.stages:
        if not st.op.reduce_axis and not st.is_output and len(st.op.outputs) == 1 and st.op.tag != MATERIALIZE:
            st.compute_inline()


def default_schedule(outputs: "Tensor | Sequence[Tensor]", target: Target) -> Schedule:
    if target.kind == "cuda":
        from .rules_gpu import gpu_schedule
        return gpu_schedule(outputs, target)
    if target.kind == "ascend":
        from .rules_ascend import ascend_schedule
        return ascend_schedule(outputs)
    sch = Schedule(outputs)
    inline_elementwise(sch)

    def lanes_of(st: Stage) -> int:
        return vector_lanes(target, st.op.outputs[0].dtype.itemsize)
    done = schedule_rowwise(sch, lanes_of)
    # Contractions first: their rule may take their epilogue and their packed operand's producer (im2col) along.
    for st in list(sch.stages):  # contraction rules add cache stages; those are placed by their rule
        if st.attach.kind == "root" and st not in done:
            done |= schedule_contraction(st, lanes_of(st), target.get("threads")) or set()
    for st in list(sch.stages):  # then windows, which take their padded input along
        if st.attach.kind == "root" and st not in done:
            done |= schedule_window(st, lanes_of(st)) or set()
    for st in sch.stages:
        if st.attach.kind == "root" and st not in done:
            schedule_stage(st, target)
    return sch


def _const(e) -> "int | None":
    return e.value if isinstance(e, Const) else None


def schedule_stage(st: Stage, target: Target) -> None:
    spatial = [a for a in st.leaf if a.kind == "spatial"]
    reduce = [a for a in st.leaf if a.kind == "reduce"]
    lanes = vector_lanes(target, st.op.outputs[0].dtype.itemsize)
    vec = None
    outer = list(spatial)
    if spatial:
        inner = spatial[-1]
        n = _const(inner.extent)
        if n is None or n >= lanes:
            head, vec = st.split(inner, lanes)
            outer = spatial[:-1] + [head]
            if reduce:
                st.reorder(*outer, *reduce, vec)
        elif reduce and n > 1:  # a short row is one narrower vector, accumulated under the reduction
            vec, outer = inner, spatial[:-1]
            st.reorder(*outer, *reduce, vec)
        elif not reduce and len(spatial) > 1:
            outer = spatial[:-1]
    work = _work(st)
    if outer and (work is None or work >= PARALLEL_MIN_WORK):
        # Parallelise the outer spatial loops but keep a split tile loop out of the fusion when there are others,
        # so its tail guard can be partitioned away from the main body.
        lead = outer[:-1] if len(outer) > 1 and vec is not None else outer
        st.parallel(st.fuse(*lead))
    if vec is not None:
        st.vectorize(vec)


def _work(st: Stage) -> "int | None":
    total = 1
    for ax in st.root_axes:
        n = _const(ax.extent)
        if n is None:
            return None
        total *= n
    return total
