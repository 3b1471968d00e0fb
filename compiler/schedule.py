"""Schedules: how a computation runs (loop structure, parallelism, placement), kept apart from what it computes.

Every primitive validates its input, raises `ScheduleError` saying what and why, and records itself in the
schedule's trace, so a schedule can be printed, saved as JSON and replayed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from ..ir.dtype import INDEX, bool_
from ..ir.expr import Const, Expr, Var, all_of, const, select, substitute, transform
from ..ir.loops import SCOPES, Layout
from ..ir.structural import topo_ops
from ..ir.symbolic import simplify
from ..ir.tensor import (ComputeOp, IterVar, Operation, PlaceholderOp, Reduce, Tensor, TensorRead, compute,
                         identity_element)
from .trace import Instruction, Trace

TAILS = ("guard", "pad")
THREAD_TAGS = ("blockIdx.x", "blockIdx.y", "blockIdx.z", "threadIdx.x", "threadIdx.y", "threadIdx.z")
MAX_VECTOR_LANES = 64
MAX_UNROLL = 512
PRAGMAS = {  # loop annotations carried to the loop IR (For.annotations); a backend that has no use for one ignores it
    "tile_length": "elements per on-chip tile where a target stages data through a scratch memory (Ascend: the "
                   "Unified Buffer)",
    "num_blocks": "at most this many cores run the loop nest (Ascend: blocks of the launch)",
    "double_buffer": "shared-memory tiles fetched at the start of each iteration of this loop alternate between two "
                     "buffers, the next tile fetched while the current one is used (cuda; value 1)",
    "tensor_core": "this loop starts a 16x16x16 (i, j, k) tile of a float32 sum of products of two float16 operands "
                   "into a local accumulator: one WMMA mma_sync executed by a whole warp (cuda, sm_70+; value 1)",
    "lane_reduce": "a short reduction loop (a power-of-two count of vector partials, as rfactor leaves) combined "
                   "as one vector halved step by step, not a serial chain (the llvm target; a sum is reassociated)",
}


class ScheduleError(ValueError):
    """An invalid schedule primitive or combination of primitives."""


class Axis:
    """A loop of a stage: a root axis of the compute or one derived by split/fuse."""

    __hash__ = object.__hash__

    def __init__(self, name: str, extent: Expr, kind: str):
        self.name, self.extent, self.kind = name, extent, kind
        self.var = Var(name, INDEX)
        self.loop = "serial"
        self.thread_tag = ""
        self.pragmas: dict[str, Any] = {}

    def __repr__(self) -> str:
        ann = "" if self.loop == "serial" else f", {self.loop}"
        return f"Axis({self.name}, 0:{self.extent}, {self.kind}{ann})"


@dataclass
class Split:
    parent: Axis
    outer: Axis
    inner: Axis
    factor: "int | None"
    nparts: "int | None"
    tail: str


@dataclass
class Fuse:
    outer: Axis
    inner: Axis
    fused: Axis


@dataclass
class Attach:
    kind: str = "root"  # root | inline | at
    stage: "Stage | None" = None
    axis: "Axis | None" = None


def _ceildiv(a: Expr, b: int) -> Expr:
    return simplify((a + (b - 1)) // b)


class Stage:
    """The schedule of one compute op."""

    def __init__(self, schedule: "Schedule", op: ComputeOp, name: str):
        self.schedule, self.op, self.name = schedule, op, name
        self.root_axes = [Axis(iv.name, iv.extent, "spatial") for iv in op.axis]
        self.root_axes += [Axis(iv.name, iv.extent, "reduce") for iv in op.reduce_axis]
        self._dedupe_names()
        self.leaf: list[Axis] = list(self.root_axes)
        self.relations: list[Split | Fuse] = []
        self.attach = Attach()
        self.scope = "global"
        self.layout: "Layout | None" = None
        self.read_map: dict[Tensor, Tensor] = {}

    def _dedupe_names(self) -> None:
        seen: dict[str, int] = {}
        for ax in self.root_axes:
            if ax.name in seen:
                seen[ax.name] += 1
                ax.name = f"{ax.name}.{seen[ax.name]}"
                ax.var = Var(ax.name, INDEX)
            else:
                seen[ax.name] = 0

    # ---- lookup ---------------------------------------------------------------------------------------------------
    @property
    def axes(self) -> list[Axis]:
        """The current loops, outermost first."""
        return list(self.leaf)

    @property
    def all_axes(self) -> list[Axis]:
        out = list(self.root_axes)
        for rel in self.relations:
            out.extend([rel.outer, rel.inner] if isinstance(rel, Split) else [rel.fused])
        return out

    def axis(self, ref: "Axis | IterVar | str | int") -> Axis:
        if isinstance(ref, Axis):
            if ref not in self.all_axes:
                raise ScheduleError(f"axis {ref.name!r} does not belong to stage {self.name!r}")
            return ref
        if isinstance(ref, int) and not isinstance(ref, bool):
            if not -len(self.leaf) <= ref < len(self.leaf):
                raise ScheduleError(f"stage {self.name!r} has {len(self.leaf)} loops; no loop number {ref}")
            return self.leaf[ref]
        if isinstance(ref, IterVar):
            ivs = list(self.op.axis) + list(self.op.reduce_axis)
            for iv, ax in zip(ivs, self.root_axes):
                if iv is ref:
                    return ax
            raise ScheduleError(f"iteration variable {ref.name!r} is not an axis of stage {self.name!r}")
        if isinstance(ref, str):
            for ax in self.all_axes:
                if ax.name == ref:
                    return ax
            names = ", ".join(a.name for a in self.leaf)
            raise ScheduleError(f"stage {self.name!r} has no axis named {ref!r}; its loops are: {names}")
        raise ScheduleError(f"expected an axis, got {type(ref).__name__} {ref!r}")

    def _leaf(self, ref: Any, what: str) -> Axis:
        ax = self.axis(ref)
        if ax not in self.leaf:
            raise ScheduleError(f"{what}: axis {ax.name!r} of stage {self.name!r} was already split or fused; "
                                f"use one of its current loops: {', '.join(a.name for a in self.leaf)}")
        return ax

    def __repr__(self) -> str:
        return f"Stage({self.name}, loops=[{', '.join(a.name for a in self.leaf)}])"

    def _record(self, kind: str, **args: Any) -> None:
        self.schedule.trace.append(kind, self.name, **args)

    def _check_not_inlined(self, what: str) -> None:
        if self.attach.kind == "inline":
            raise ScheduleError(f"{what}: stage {self.name!r} is inlined and has no loops of its own")

    # ---- loop transformations --------------------------------------------------------------------------------------
    def split(self, axis: Any, factor: "int | None" = None, nparts: "int | None" = None,
              tail: str = "guard") -> tuple[Axis, Axis]:
        """Split a loop into outer and inner loops. `tail` says what happens when the extent is not a multiple:
        'guard' skips the out-of-range iterations (the main body runs unguarded), 'pad' runs them on a buffer
        padded to the rounded extent (only for intermediate stages; reads are clamped into bounds)."""
        self._check_not_inlined("split")
        ax = self._leaf(axis, "split")
        if (factor is None) == (nparts is None):
            raise ScheduleError(f"split of {ax.name!r}: give exactly one of factor= or nparts=")
        amount = factor if factor is not None else nparts
        if not isinstance(amount, int) or isinstance(amount, bool) or amount < 1:
            raise ScheduleError(f"split of {ax.name!r}: the factor must be a positive integer, got {amount!r}")
        if tail not in TAILS:
            raise ScheduleError(f"split of {ax.name!r}: unknown tail strategy {tail!r}; use one of {TAILS}")
        if tail == "pad" and ax.kind == "reduce":
            raise ScheduleError(f"split of {ax.name!r} with tail='pad': a reduction axis cannot be padded (the padded "
                                f"iterations would add to the result); use tail='guard'")
        if tail == "pad" and ax not in self.root_axes:
            raise ScheduleError(f"split of {ax.name!r} with tail='pad': only original axes of {self.name!r} can be "
                                f"padded ({', '.join(a.name for a in self.root_axes)})")
        if factor is not None:
            outer_ext, inner_ext = _ceildiv(ax.extent, factor), const(factor, INDEX)
        else:
            outer_ext, inner_ext = const(nparts, INDEX), _ceildiv(ax.extent, nparts)
        outer = Axis(f"{ax.name}.outer", outer_ext, ax.kind)
        inner = Axis(f"{ax.name}.inner", inner_ext, ax.kind)
        self.relations.append(Split(ax, outer, inner, factor, nparts, tail))
        outer.pragmas = dict(ax.pragmas)
        self._move_attachments(ax, inner)
        pos = self.leaf.index(ax)
        self.leaf[pos:pos + 1] = [outer, inner]
        args: dict[str, Any] = {"axis": ax.name}
        args["factor" if factor is not None else "nparts"] = amount
        if tail != "guard":
            args["tail"] = tail
        self._record("split", **args)
        return outer, inner

    def tile(self, x: Any, y: Any, x_factor: int, y_factor: int, tail: str = "guard"
             ) -> tuple[Axis, Axis, Axis, Axis]:
        """Split two loops and order them (x.outer, y.outer, x.inner, y.inner)."""
        xo, xi = self.split(x, x_factor, tail=tail)
        yo, yi = self.split(y, y_factor, tail=tail)
        self.reorder(xo, yo, xi, yi)
        return xo, yo, xi, yi

    def reorder(self, *axes: Any) -> None:
        """Put the given loops, in this order, into the positions they occupy now."""
        self._check_not_inlined("reorder")
        resolved = [self._leaf(a, "reorder") for a in axes]
        if len(set(map(id, resolved))) != len(resolved):
            raise ScheduleError(f"reorder on stage {self.name!r}: an axis is listed twice")
        positions = sorted(self.leaf.index(a) for a in resolved)
        for pos, ax in zip(positions, resolved):
            self.leaf[pos] = ax
        self._record("reorder", axes=[a.name for a in resolved])

    def fuse(self, *axes: Any) -> Axis:
        """Merge adjacent loops (outermost first) into one."""
        self._check_not_inlined("fuse")
        resolved = [self._leaf(a, "fuse") for a in axes]
        if len(resolved) < 2:
            if len(resolved) == 1:
                return resolved[0]
            raise ScheduleError("fuse needs at least one axis")
        pos = [self.leaf.index(a) for a in resolved]
        if pos != list(range(pos[0], pos[0] + len(pos))):
            raise ScheduleError(f"fuse on stage {self.name!r}: axes {[a.name for a in resolved]} must be adjacent "
                                f"and in loop order; the loops are {[a.name for a in self.leaf]}")
        kinds = {a.kind for a in resolved}
        if len(kinds) > 1:
            raise ScheduleError(f"fuse on stage {self.name!r}: cannot fuse spatial and reduction axes together")
        out = resolved[0]
        for nxt in resolved[1:]:
            fused = Axis(f"{out.name}.{nxt.name}.fused", simplify(out.extent * nxt.extent), out.kind)
            self.relations.append(Fuse(out, nxt, fused))
            fused.pragmas = {**out.pragmas, **nxt.pragmas}
            self._move_attachments(out, fused)
            self._move_attachments(nxt, fused)
            out = fused
        self.leaf[pos[0]:pos[-1] + 1] = [out]
        self._record("fuse", axes=[a.name for a in resolved])
        return out

    def _move_attachments(self, old: Axis, new: Axis) -> None:
        """Stages computed at a loop that is split or fused stay inside the loop that replaces it."""
        for st in self.schedule.stages:
            if st.attach.kind == "at" and st.attach.stage is self and st.attach.axis is old:
                st.attach = Attach("at", self, new)

    # ---- loop annotations ------------------------------------------------------------------------------------------
    def _annotate(self, axis: Any, loop: str) -> Axis:
        self._check_not_inlined(loop)
        ax = self._leaf(axis, loop)
        if ax.loop != "serial":
            raise ScheduleError(f"{loop} on {self.name}.{ax.name}: the loop is already marked {ax.loop}")
        return ax

    def vectorize(self, axis: Any) -> None:
        ax = self._annotate(axis, "vectorize")
        if ax.kind == "reduce":
            raise ScheduleError(f"vectorize on {self.name}.{ax.name}: it is a reduction axis, whose lanes would "
                                f"race on the same output element; vectorize a spatial axis (or use rfactor)")
        if not isinstance(ax.extent, Const) or not 1 <= ax.extent.value <= MAX_VECTOR_LANES:
            raise ScheduleError(f"vectorize on {self.name}.{ax.name}: needs a constant extent between 1 and "
                                f"{MAX_VECTOR_LANES}, got {ax.extent}; split it first")
        other = next((a for a in self.leaf if a.loop == "vectorized"), None)
        if other is not None:
            raise ScheduleError(f"vectorize on {self.name}.{ax.name}: {other.name!r} is already vectorized; a loop "
                                f"nest has one vector dimension (unroll the other loop instead)")
        ax.loop = "vectorized"
        self._record("vectorize", axis=ax.name)

    def unroll(self, axis: Any) -> None:
        ax = self._annotate(axis, "unroll")
        if not isinstance(ax.extent, Const) or ax.extent.value > MAX_UNROLL:
            raise ScheduleError(f"unroll on {self.name}.{ax.name}: needs a constant extent of at most "
                                f"{MAX_UNROLL}, got {ax.extent}; split it first")
        ax.loop = "unrolled"
        self._record("unroll", axis=ax.name)

    def parallel(self, axis: Any) -> None:
        ax = self._annotate(axis, "parallel")
        if ax.kind == "reduce":
            raise ScheduleError(f"parallel on {self.name}.{ax.name}: it is a reduction axis, whose iterations "
                                f"would race on the same output element; parallelise a spatial axis")
        ax.loop = "parallel"
        self._record("parallel", axis=ax.name)

    def bind(self, axis: Any, thread_tag: str) -> None:
        """Bind a loop to a GPU block or thread index (GPU targets only)."""
        ax = self._annotate(axis, "bind")
        if thread_tag not in THREAD_TAGS:
            raise ScheduleError(f"bind on {self.name}.{ax.name}: unknown tag {thread_tag!r}; use one of "
                                f"{', '.join(THREAD_TAGS)}")
        if any(a.thread_tag == thread_tag for a in self.all_axes):
            raise ScheduleError(f"bind on {self.name}.{ax.name}: {thread_tag} is already bound in this stage")
        ax.loop, ax.thread_tag = "thread", thread_tag
        self._record("bind", axis=ax.name, tag=thread_tag)

    def pragma(self, axis: Any, key: str, value: int) -> None:
        """Annotate a loop with a target hint (see PRAGMAS), e.g. the Ascend tile length: a tiling choice kept in
        the trace so a tuner can vary it. It survives later splits (on the outer loop) and fuses."""
        self._check_not_inlined("pragma")
        ax = self._leaf(axis, "pragma")
        if key not in PRAGMAS:
            raise ScheduleError(f"pragma on {self.name}.{ax.name}: unknown key {key!r}; known: "
                                + "; ".join(f"{k} ({d})" for k, d in PRAGMAS.items()))
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ScheduleError(f"pragma {key} on {self.name}.{ax.name}: the value must be a positive integer, got "
                                f"{value!r}")
        ax.pragmas[key] = value
        self._record("pragma", axis=ax.name, key=key, value=value)

    # ---- placement ------------------------------------------------------------------------------------------------
    def compute_at(self, parent: "Stage | Tensor | str", axis: Any) -> None:
        """Compute this stage inside `parent`'s loop `axis`, only the region that loop iteration needs."""
        target = self.schedule[parent]
        ax = target._leaf(axis, f"compute_at of {self.name}")
        consumers = self.schedule.consumers(self, through_inlined=True)
        if self.is_output:
            raise ScheduleError(f"compute_at of {self.name!r}: it is a kernel output; only intermediate stages "
                                f"can be computed inside another stage")
        if target.attach.kind == "inline":
            raise ScheduleError(f"compute_at of {self.name!r}: target stage {target.name!r} is inlined")
        if not consumers:
            raise ScheduleError(f"compute_at of {self.name!r} at {target.name!r}: no stage reads it")
        for c in consumers:
            if not attached_within(c, target, ax):
                raise ScheduleError(f"compute_at of {self.name!r} at {target.name}.{ax.name}: its consumer "
                                    f"{c.name!r} is outside that loop; every consumer must be {target.name!r} or "
                                    f"be computed at {target.name!r} at {ax.name} or an inner loop (compute the "
                                    f"consumers there first)")
        self.attach = Attach("at", target, ax)
        self._record("compute_at", parent=target.name, axis=ax.name)

    def compute_inline(self) -> None:
        """Substitute this element-wise stage into its consumers instead of storing it."""
        if self.op.reduce_axis:
            raise ScheduleError(f"compute_inline of {self.name!r}: it is a reduction and cannot be inlined")
        if self.is_output:
            raise ScheduleError(f"compute_inline of {self.name!r}: it is a kernel output and must be stored")
        if self.relations or any(a.loop != "serial" for a in self.leaf):
            raise ScheduleError(f"compute_inline of {self.name!r}: its loops were already transformed")
        if any(s.attach.stage is self for s in self.schedule.stages):
            raise ScheduleError(f"compute_inline of {self.name!r}: other stages are computed at its loops")
        self.attach = Attach("inline")
        self._record("compute_inline")

    def compute_root(self) -> None:
        self.attach = Attach("root")
        self._record("compute_root")

    def storage_layout(self, order: Sequence[int], pad: int = 0) -> None:
        """Store this stage with its dimensions in `order` (outermost first) and the innermost row padded by `pad`
        elements: a shared-memory tile read along another dimension than the one it is fetched along (a matmul
        operand whose threads read 4 consecutive rows), the padding spreading the fetch's stores over memory banks
        (TVM's storage_align). Indices and results do not change, only addresses."""
        self._check_not_inlined("storage_layout")
        order = [int(d) for d in order]
        if sorted(order) != list(range(len(self.op.axis))):
            raise ScheduleError(f"storage_layout on {self.name!r}: order {order} is not a permutation of its "
                                f"{len(self.op.axis)} dimensions")
        if not isinstance(pad, int) or isinstance(pad, bool) or pad < 0:
            raise ScheduleError(f"storage_layout on {self.name!r}: pad must be a non-negative integer, got {pad!r}")
        if self.is_output or len(self.op.outputs) != 1:
            raise ScheduleError(f"storage_layout on {self.name!r}: only a single-output intermediate stage can be "
                                f"stored in another layout (a kernel output keeps the row-major layout its caller "
                                f"reads)")
        self.layout = (tuple(order), pad)
        self._record("storage_layout", order=order, pad=pad)

    def set_scope(self, scope: str) -> None:
        if scope not in SCOPES:
            raise ScheduleError(f"set_scope on {self.name!r}: unknown scope {scope!r}; use one of {SCOPES}")
        self.scope = scope
        self._record("set_scope", scope=scope)

    @property
    def is_output(self) -> bool:
        return any(t.op is self.op for t in self.schedule.outputs)


def attached_within(st: Stage, target: Stage, ax: Axis) -> bool:
    """Whether `st` is `target` itself or is computed at `target`'s loop `ax` or a loop inside it (Halide's rule for
    a stage with several consumers: computed at `ax`, its region then covers every use in that iteration)."""
    if st is target:
        return True
    if st.attach.kind != "at" or st.attach.stage is not target or st.attach.axis not in target.leaf \
            or ax not in target.leaf:
        return False
    return target.leaf.index(st.attach.axis) >= target.leaf.index(ax)


class Schedule:
    """The stages of a computation in producer-to-consumer order, plus the trace of what was done to them."""

    def __init__(self, outputs: "Tensor | Sequence[Tensor]"):
        outs = [outputs] if isinstance(outputs, Tensor) else list(outputs)
        if not outs or not all(isinstance(t, Tensor) for t in outs):
            raise ScheduleError("a schedule needs one or more output tensors")
        self.outputs: list[Tensor] = outs
        self.original_outputs = list(outs)
        self.trace = Trace()
        self.tuned_from: "str | None" = None  # the tuning database this schedule was replayed from
        self.tensor_map: dict[Tensor, Tensor] = {}
        self.stages: list[Stage] = []
        used: set[str] = set()
        for op in topo_ops(outs):
            if isinstance(op, ComputeOp):
                self.stages.append(Stage(self, op, self._unique(op.name, used)))

    @staticmethod
    def _unique(name: str, used: set[str]) -> str:
        out, n = name, 0
        while out in used:
            n += 1
            out = f"{name}_{n}"
        used.add(out)
        return out

    def resolve(self, t: Tensor) -> Tensor:
        while t in self.tensor_map:
            t = self.tensor_map[t]
        return t

    def __getitem__(self, ref: "Tensor | Stage | str") -> Stage:
        if isinstance(ref, Stage):
            return ref
        if isinstance(ref, str):
            for s in self.stages:
                if s.name == ref:
                    return s
            raise ScheduleError(f"no stage named {ref!r}; stages: {', '.join(s.name for s in self.stages)}")
        if isinstance(ref, Tensor):
            t = self.resolve(ref)
            for s in self.stages:
                if s.op is t.op:
                    return s
            if isinstance(t.op, PlaceholderOp):
                raise ScheduleError(f"{t.name!r} is an input placeholder; it has no stage to schedule")
            raise ScheduleError(f"tensor {t.name!r} is not part of this schedule")
        raise ScheduleError(f"expected a tensor, stage or stage name, got {type(ref).__name__}")

    def reads(self, stage: Stage) -> list[Tensor]:
        """The tensors a stage reads, after cache_read/cache_write redirections."""
        out = []
        for t in stage.op.input_tensors():
            t = self.resolve(stage.read_map.get(t, t))
            if t not in out:
                out.append(t)
        return out

    def consumers(self, stage: Stage, through_inlined: bool = False) -> list[Stage]:
        """The stages reading `stage`; with `through_inlined`, an inlined reader is replaced by its own readers
        (where its reads end up)."""
        direct = [s for s in self.stages if any(t.op is stage.op for t in self.reads(s))]
        if not through_inlined:
            return direct
        out: list[Stage] = []
        for s in direct:
            for c in (self.consumers(s, True) if s.attach.kind == "inline" else [s]):
                if c not in out:
                    out.append(c)
        return out

    def reads_of(self, target: Tensor, e: Expr, st: Stage) -> list[list[Expr]]:
        """Index tuples with which `e` (in stage `st`) reads `target`, looking through inlined stages."""
        found: list[list[Expr]] = []

        def rule(node: Expr):
            if isinstance(node, TensorRead):
                t = self.resolve(st.read_map.get(node.tensor, node.tensor))
                for i in node.indices:
                    found.extend(self.reads_of(target, i, st))
                if t is target:
                    found.append(list(node.indices))
                    return node
                prod = self.stage_of(t.op)
                if prod is not None and prod.attach.kind == "inline":
                    mapping = {iv.var: i for iv, i in zip(prod.op.axis, node.indices)}
                    found.extend(self.reads_of(target, substitute(prod.op.body[t.value_index], mapping), prod))
                return node
            return None
        transform(e, rule)
        return found

    def stage_of(self, op: Operation) -> "Stage | None":
        return next((s for s in self.stages if s.op is op), None)

    # ---- dataflow rewrites ----------------------------------------------------------------------------------------
    def cache_read(self, tensor: Tensor, scope: str, readers: Iterable["Stage | Tensor | str"]) -> Tensor:
        """Copy `tensor` into a new stage in `scope`; the given readers read the copy instead."""
        from ..ir.tensor import compute
        if scope not in SCOPES:
            raise ScheduleError(f"cache_read: unknown scope {scope!r}; use one of {SCOPES}")
        src = self.resolve(tensor)
        reader_stages = [self[r] for r in readers]
        if not reader_stages:
            raise ScheduleError(f"cache_read of {src.name!r}: give at least one reader stage")
        for r in reader_stages:
            if src not in self.reads(r):
                raise ScheduleError(f"cache_read of {src.name!r}: stage {r.name!r} does not read it")
        name = self._unique(f"{src.name}.{scope}", {s.name for s in self.stages})
        copy = compute(src.shape, lambda *i: src[i], name=name, axis_names=[f"ax{k}" for k in range(src.ndim)])
        stage = Stage(self, copy.op, name)
        stage.scope = scope
        for r in reader_stages:
            for t in r.op.input_tensors():
                if self.resolve(r.read_map.get(t, t)) is src:
                    r.read_map[t] = copy
        self._insert_before(stage, min(self.stages.index(r) for r in reader_stages))
        self.trace.append("cache_read", "", tensor=src.name, scope=scope, readers=[r.name for r in reader_stages])
        return copy

    def cache_write(self, tensor: Tensor, scope: str) -> Tensor:
        """Compute `tensor` into a new stage in `scope`; the original stage becomes a copy out of it."""
        from ..ir.tensor import compute
        if scope not in SCOPES:
            raise ScheduleError(f"cache_write: unknown scope {scope!r}; use one of {SCOPES}")
        stage = self[tensor]
        if stage.relations or stage.attach.kind != "root" or any(a.loop != "serial" for a in stage.leaf):
            raise ScheduleError(f"cache_write of {stage.name!r}: apply it before any other primitive on the stage")
        if len(stage.op.outputs) > 1:
            raise ScheduleError(f"cache_write of {stage.name!r}: multi-output stages are not supported")
        op = stage.op
        name = self._unique(f"{stage.name}.{scope}", {s.name for s in self.stages})
        cache_op = ComputeOp(name, op.axis, op.body, op.tag)
        cached = cache_op.outputs[0]
        cache_stage = Stage(self, cache_op, name)
        cache_stage.scope = scope
        cache_stage.read_map = dict(stage.read_map)
        old = op.outputs[0]
        writeback = compute(old.shape, lambda *i: cached[i], name=stage.name,
                            axis_names=[iv.name for iv in op.axis])
        stage.op, stage.root_axes = writeback.op, [Axis(iv.name, iv.extent, "spatial") for iv in writeback.op.axis]
        stage.leaf, stage.read_map = list(stage.root_axes), {}
        self.tensor_map[old] = writeback
        self.outputs = [self.resolve(t) for t in self.outputs]
        self._insert_before(cache_stage, self.stages.index(stage))
        self.trace.append("cache_write", "", tensor=stage.name, scope=scope)
        return cached

    def rfactor(self, tensor: Tensor, axis: Any) -> Tensor:
        """Turn the reduction axis `axis` (a root reduction axis, or one half of a split of one) into a spatial
        axis of a new stage of partial results; the original stage then reduces those partials. This lets the
        partial reduction be vectorized or parallelised."""
        stage = self[tensor]
        op = stage.op
        body = op.body[0] if op.body else None
        if not isinstance(body, Reduce) or len(op.body) != 1 or body.combiner not in ("sum", "prod", "max", "min"):
            raise ScheduleError(f"rfactor of {stage.name!r}: needs a single sum/prod/max/min reduction")
        ax = stage._leaf(axis, "rfactor")
        if ax.kind != "reduce":
            raise ScheduleError(f"rfactor of {stage.name!r}: {ax.name!r} is not a reduction axis")
        splits = [r for r in stage.relations if isinstance(r, Split)]
        if len(stage.relations) != len(splits) or any(a.loop != "serial" for a in stage.leaf) \
                or stage.attach.kind != "root":
            raise ScheduleError(f"rfactor of {stage.name!r}: apply it right after splitting the reduction axis, "
                                f"before other primitives")
        red_ivs = list(op.reduce_axis)
        red_roots = stage.root_axes[len(op.axis):]
        rel = next((r for r in splits if ax in (r.outer, r.inner)), None)
        if rel is None and ax not in red_roots:
            raise ScheduleError(f"rfactor of {stage.name!r}: {ax.name!r} must be a reduction axis or one half of "
                                f"a single split of one")
        if rel is not None and (rel.parent not in red_roots or rel.outer not in stage.leaf
                                or rel.inner not in stage.leaf):
            raise ScheduleError(f"rfactor of {stage.name!r}: only one level of split of the reduction is supported")
        root = rel.parent if rel is not None else ax
        root_iv = red_ivs[red_roots.index(root)]
        factor_extent = ax.extent
        other = None if rel is None else (rel.inner if ax is rel.outer else rel.outer)
        name = self._unique(f"{stage.name}.rf", {s.name for s in self.stages})
        spatial_shape = [iv.extent for iv in op.axis] + [factor_extent]
        keep = [iv for iv in red_ivs if iv is not root_iv]

        def partial(*idx):
            v = idx[-1]
            mapping = {iv.var: i for iv, i in zip(op.axis, idx[:-1])}
            new_axes = [IterVar(Var(iv.name, INDEX), iv.extent, "reduce") for iv in keep]
            mapping.update({iv.var: n.var for iv, n in zip(keep, new_axes)})
            conds = []
            if other is None:
                mapping[root_iv.var] = v
            else:
                o = IterVar(Var(other.name, INDEX), other.extent, "reduce")
                new_axes.insert(0, o)
                outer, inner = (v, o.var) if ax is rel.outer else (o.var, v)
                value = outer * rel.inner.extent + inner
                mapping[root_iv.var] = value
                conds.append(value < root.extent)
            where = all_of([substitute(body.where, mapping)] + conds)
            source = substitute(body.sources[0], mapping)
            if not new_axes:  # nothing left to reduce: a partial is one term, or the identity where it is masked
                if isinstance(where, Const) and where.value:
                    return source
                return select(where, source, identity_element(body.combiner, source.dtype))
            return Reduce(body.combiner, (source,), tuple(new_axes), where)

        rf = compute(spatial_shape, partial, name=name, axis_names=[iv.name for iv in op.axis] + [ax.name])
        rf_stage = Stage(self, rf.op, name)
        rf_stage.read_map = dict(stage.read_map)
        final_axis = IterVar(Var(f"{ax.name}.v", INDEX), factor_extent, "reduce")
        old = op.outputs[0]
        final = compute(old.shape, lambda *i: Reduce(body.combiner, (rf[(*i, final_axis.var)],), (final_axis,),
                                                    Const(True, bool_)), name=stage.name,
                        axis_names=[iv.name for iv in op.axis])
        stage.op = final.op
        stage.root_axes = [Axis(iv.name, iv.extent, "spatial") for iv in final.op.axis]
        stage.root_axes.append(Axis(final_axis.name, factor_extent, "reduce"))
        stage._dedupe_names()
        stage.leaf, stage.relations, stage.read_map = list(stage.root_axes), [], {}
        self.tensor_map[old] = final
        self.outputs = [self.resolve(t) for t in self.outputs]
        self._insert_before(rf_stage, self.stages.index(stage))
        self.trace.append("rfactor", "", tensor=stage.name, axis=ax.name)
        return rf

    def _insert_before(self, stage: Stage, index: int) -> None:
        self.stages.insert(index, stage)

    # ---- replay ---------------------------------------------------------------------------------------------------
    def replay(self, inst: Instruction) -> None:
        kind, a = inst.kind, dict(inst.args)
        try:
            if kind == "cache_read":
                self.cache_read(self._tensor(a["tensor"]), a["scope"], a["readers"])
            elif kind == "cache_write":
                self.cache_write(self._tensor(a["tensor"]), a["scope"])
            elif kind == "rfactor":
                self.rfactor(self._tensor(a["tensor"]), self[a["tensor"]].axis(a["axis"]))
            else:
                st = self[inst.stage]
                if kind == "split":
                    st.split(a["axis"], a.get("factor"), a.get("nparts"), a.get("tail", "guard"))
                elif kind in ("reorder", "fuse"):
                    getattr(st, kind)(*a["axes"])
                elif kind in ("vectorize", "unroll", "parallel"):
                    getattr(st, kind)(a["axis"])
                elif kind == "bind":
                    st.bind(a["axis"], a["tag"])
                elif kind == "pragma":
                    st.pragma(a["axis"], a["key"], a["value"])
                elif kind == "compute_at":
                    st.compute_at(a["parent"], a["axis"])
                elif kind in ("compute_inline", "compute_root"):
                    getattr(st, kind)()
                elif kind == "set_scope":
                    st.set_scope(a["scope"])
                elif kind == "storage_layout":
                    st.storage_layout(a["order"], a.get("pad", 0))
                else:
                    raise ScheduleError(f"unknown schedule primitive {kind!r} in trace")
        except KeyError as err:
            raise ScheduleError(f"malformed trace instruction {inst}: missing {err}") from None

    def _tensor(self, name: str) -> Tensor:
        for s in self.stages:
            for t in s.op.outputs:
                if t.name == name or s.name == name:
                    return t
        for t in self.reads_all():
            if t.name == name:
                return t
        raise ScheduleError(f"trace names tensor {name!r}, which is not in this workload")

    def reads_all(self) -> list[Tensor]:
        out: list[Tensor] = []
        for s in self.stages:
            out.extend(t for t in s.op.input_tensors() if t not in out)
        return out

    def __str__(self) -> str:
        return str(self.trace)


def create_schedule(outputs: "Tensor | Sequence[Tensor]") -> Schedule:
    return Schedule(outputs)


def from_trace(outputs: "Tensor | Sequence[Tensor]", trace: "Trace | str") -> Schedule:
    """Rebuild a schedule by replaying a trace (or its JSON) on the workload."""
    sch = Schedule(outputs)
    (Trace.from_json(trace) if isinstance(trace, str) else trace).apply(sch)
    return sch
