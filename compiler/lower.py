"""Lowering: a scheduled tensor computation becomes a loop-IR function.

Stages are generated producer-first. Each stage's loops come from its leaf axes; the root axis values are rebuilt
from the split/fuse relations; non-divisible splits get guards (later partitioned away from the main body);
stages computed at a consumer's loop get a region found by bound inference and a local buffer.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..ir.dtype import INDEX, bool_
from ..ir.expr import (Const, Expr, SizeVar, Var, all_of, binary, cast, const, free_vars, round_to_half, select,
                       substitute, transform)
from ..ir.loops import Allocate, Buffer, For, IfThenElse, LetStmt, Load, PrimFunc, Stmt, Store, seq
from ..ir.simplify import simplify_index
from ..ir.symbolic import prove_equal, simplify
from ..ir.tensor import PlaceholderOp, Reduce, Tensor, TensorRead, identity_element
from .bounds import BoundError, Range, bound, const_value, lower_of, max_floordiv_span, upper_of
from .schedule import Axis, Schedule, ScheduleError, Split, Stage, attached_within


@dataclass
class StageLoops:
    """Where a stage's loops stand while its nest is generated: extents, root values and guards."""

    ext: dict[Axis, Expr]
    values: dict[Axis, Expr]
    guards: list[tuple[Expr, set[Var]]]
    op_vars: dict[Var, Expr] = field(default_factory=dict)


class Lowerer:
    def __init__(self, sch: Schedule, args: list[Tensor], name: str, gpu_loops: bool = False):
        self.sch, self.name, self.gpu_loops = sch, name, gpu_loops
        self.args = [sch.resolve(t) for t in args]
        self.buffers: dict[Tensor, Buffer] = {}
        self.regions: dict[Stage, list[tuple[Expr, Expr]]] = {}
        self.loops: dict[Stage, StageLoops] = {}
        self.stages = self._live_stages()
        self._check()

    # ---- set-up ---------------------------------------------------------------------------------------------------
    def _live_stages(self) -> list[Stage]:
        live: set[int] = set()
        todo = [t for t in self.args if not isinstance(t.op, PlaceholderOp)]
        while todo:
            st = self.sch[todo.pop()]
            if id(st) in live:
                continue
            live.add(id(st))
            todo.extend(t for t in self.sch.reads(st) if not isinstance(t.op, PlaceholderOp))
        return [s for s in self.sch.stages if id(s) in live]

    def _check(self) -> None:
        check_args(self.args)
        arg_ops = {id(t.op) for t in self.args}
        for st in self.stages:
            for t in self.sch.reads(st):
                if isinstance(t.op, PlaceholderOp) and id(t.op) not in arg_ops:
                    raise ScheduleError(f"stage {st.name!r} reads input {t.name!r}, which is missing from the "
                                        f"build arguments")
            if id(st.op) in arg_ops and st.attach.kind != "root":
                raise ScheduleError(f"stage {st.name!r} is a kernel argument, so it cannot be {st.attach.kind}d")
            for ax in st.all_axes:
                if ax.loop == "thread" and not self.gpu_loops:
                    raise ScheduleError(f"{st.name}.{ax.name} is bound to {ax.thread_tag}, which needs a GPU "
                                        f"target; the llvm target runs loops on CPU cores (use parallel)")

    def _buffer(self, t: Tensor, st: "Stage | None") -> Buffer:
        if t not in self.buffers:
            scope = st.scope if st is not None and t not in self.args else "global"
            layout = st.layout if st is not None and t not in self.args else None
            self.buffers[t] = Buffer(t.name, t.shape, t.dtype, scope, layout)
        return self.buffers[t]

    # ---- expressions ----------------------------------------------------------------------------------------------
    def lower_expr(self, e: Expr, st: Stage, clamp: "dict[Var, Range] | None" = None) -> Expr:
        """`clamp`, for stages that compute past their extent (tail='pad'): the ranges of the op's variables;
        reads of stored tensors are clamped into the tensor wherever those ranges could leave it."""
        def rule(node: Expr):
            if isinstance(node, TensorRead):
                idx = [self.lower_expr(i, st, clamp) for i in node.indices]
                return self.read(node.tensor, idx, st, clamp)
            if isinstance(node, Reduce):
                raise ScheduleError(f"stage {st.name!r}: a reduction can only be the whole body of a compute")
            return None
        return transform(e, rule)

    def read(self, t: Tensor, idx: list[Expr], st: Stage, clamp: "dict[Var, Range] | None") -> Expr:
        t = self.sch.resolve(st.read_map.get(t, t))
        prod = self.sch.stage_of(t.op)
        if clamp is not None and not (prod is not None and prod in self.regions):  # a region covers its reads
            idx = [i if _within(i, d, clamp) else binary("max", binary("min", i, d - 1), 0)
                   for i, d in zip(idx, t.shape)]
        if prod is not None and prod.attach.kind == "inline":
            mapping = {iv.var: i for iv, i in zip(prod.op.axis, idx)}
            value = self.lower_expr(substitute(prod.op.body[t.value_index], mapping), prod)
            # Inlining must not skip the rounding a stored float16 value would get.
            return round_to_half(value) if t.dtype.is_float and t.dtype.bits == 16 else value
        buf = self._buffer(t, prod)
        if prod is not None and prod in self.regions:
            idx = [i - lo for i, (lo, _) in zip(idx, self.regions[prod])]
        return Load(buf, simplify_index(buf.flat_index(idx)))

    # ---- loop structure -------------------------------------------------------------------------------------------
    @staticmethod
    def extents(st: Stage, root: list[Expr]) -> dict[Axis, Expr]:
        """Loop extents of every axis given the root extents; a padded split widens its parent."""
        pad = {rel.parent for rel in st.relations if isinstance(rel, Split) and rel.tail == "pad"}
        ext: dict[Axis, Expr] = {}
        for k, ax in enumerate(st.root_axes):
            ext[ax] = root[k] if k < len(root) else ax.extent
        for rel in st.relations:
            if isinstance(rel, Split):
                parent = ext[rel.parent]
                if rel.factor is not None:
                    ext[rel.outer] = simplify((parent + (rel.factor - 1)) // rel.factor)
                    ext[rel.inner] = const(rel.factor, INDEX)
                else:
                    ext[rel.outer] = const(rel.nparts, INDEX)
                    ext[rel.inner] = simplify((parent + (rel.nparts - 1)) // rel.nparts)
                if rel.parent in pad:
                    ext[rel.parent] = simplify(ext[rel.outer] * ext[rel.inner])
            else:
                ext[rel.fused] = simplify(ext[rel.outer] * ext[rel.inner])
        return ext

    def buffer_shape(self, st: Stage, root: list[Expr]) -> list[Expr]:
        """The stored shape of a stage: its extents, widened where a split pads them."""
        ext = self.extents(st, root)
        return [ext[ax] for ax in st.root_axes[:len(st.op.axis)]]

    def stage_loops(self, st: Stage) -> StageLoops:
        region = self.regions.get(st)
        ext = self.extents(st, [e for _, e in region] if region is not None else [])
        guards: list[tuple[Expr, set[Var]]] = []
        padded = {rel.parent for rel in st.relations if isinstance(rel, Split) and rel.tail == "pad"}
        values: dict[Axis, Expr] = {ax: ax.var for ax in st.leaf}
        for rel in reversed(st.relations):
            if isinstance(rel, Split):
                values[rel.parent] = simplify_index(values[rel.outer] * ext[rel.inner] + values[rel.inner])
                covered = simplify(ext[rel.outer] * ext[rel.inner])
                if rel.tail == "guard" and not prove_equal(covered, ext[rel.parent]):
                    cond = values[rel.parent] < ext[rel.parent]
                    guards.append((cond, free_vars(values[rel.parent])))
            elif not padded and const_value(ext[rel.outer]) == 1:
                # A fused index stays below the product of the extents: with an outer extent of 1 it is the inner
                # index itself (no div/mod per row of a parallel loop over (1, 12, 128) rows).
                values[rel.outer], values[rel.inner] = const(0, INDEX), values[rel.fused]
            elif not padded and const_value(ext[rel.inner]) == 1:
                values[rel.outer], values[rel.inner] = values[rel.fused], const(0, INDEX)
            else:
                inner_ext = ext[rel.inner]
                values[rel.outer] = values[rel.fused] // inner_ext
                values[rel.inner] = values[rel.fused] % inner_ext
        loops = StageLoops(ext, values, guards)
        ivs = list(st.op.axis) + list(st.op.reduce_axis)
        loop_ranges = self._loop_ranges() if region is not None else {}
        for k, (iv, ax) in enumerate(zip(ivs, st.root_axes)):
            v = values[ax]
            if region is not None and k < len(region):
                lo = region[k][0]
                v = simplify_index(lo + v)
                # A padded axis computes its whole region, past the tensor's end too (reads are clamped).
                if ax not in padded and not self._inside(lo, region[k][1], iv.extent, loop_ranges):
                    loops.guards.append((all_of([v >= 0, v < iv.extent]), free_vars(values[ax])))
            loops.op_vars[iv.var] = v
        return loops

    @staticmethod
    def _inside(lo: Expr, extent: Expr, full: Expr, loop_ranges: dict[Var, Range]) -> bool:
        """Whether a region [lo, lo + extent) provably lies in [0, full) wherever the enclosing loops go (a region
        at a fused loop starts at a div/mod of its index)."""
        ext_c, full_c = const_value(extent), const_value(full)
        if ext_c is not None and full_c is not None:
            return _within(lo, const(full_c - ext_c + 1, INDEX), loop_ranges)
        if prove_equal(lo, const(0, INDEX)) and prove_equal(extent, full):
            return True
        try:  # a row of a symbolic count, at the loop over rows: lo in [0, full - extent]
            lo_lo, lo_hi = bound(lo, loop_ranges)
        except BoundError:
            return False
        low = const_value(lo_lo)
        return low is not None and low >= 0 and prove_equal(simplify(lo_hi + extent), full)

    def _loop_ranges(self) -> dict[Var, Range]:
        """The range of every loop variable generated so far (this stage's and its consumers')."""
        return {ax.var: (const(0, INDEX), simplify(ext - 1)) for known in self.loops.values()
                for ax, ext in known.ext.items()}

    # ---- statement generation -------------------------------------------------------------------------------------
    def stage_nest(self, st: Stage) -> Stmt:
        loops = self.stage_loops(st)
        self.loops[st] = loops
        self._place_attached(st)
        op = st.op
        pad = any(isinstance(r, Split) and r.tail == "pad" for r in st.relations)
        if pad and st.is_output:
            raise ScheduleError(f"split with tail='pad' on {st.name!r}: it is a kernel output, whose buffer cannot "
                                f"be padded; use tail='guard'")
        if pad and st not in self.regions:
            for t in op.outputs:
                self.buffers[t] = Buffer(t.name, self.buffer_shape(st, []), t.dtype, st.scope, st.layout)
        bufs = [self._buffer(t, st) for t in op.outputs]
        if st in self.regions:
            store_idx = [loops.values[ax] for ax in st.root_axes[:len(op.axis)]]
        else:
            store_idx = [loops.op_vars[iv.var] for iv in op.axis]

        clamp = self._op_ranges(loops) if pad else None

        def subst(e: Expr) -> Expr:
            return simplify_index(substitute(self.lower_expr(e, st, clamp), loops.op_vars))

        flat = [simplify_index(b.flat_index(store_idx)) for b in bufs]
        spatial = {ax.var for ax in st.leaf if ax.kind == "spatial"}
        if not op.reduce_axis:
            body: Stmt = seq([Store(b, f, cast(b.dtype, subst(e))) for b, f, e in zip(bufs, flat, op.body)])
            init = None
        else:
            red: Reduce = op.body[0]  # type: ignore[assignment]
            init = seq([Store(b, f, self._initial(red, k, b.dtype)) for k, (b, f) in enumerate(zip(bufs, flat))])
            body = self._update(red, bufs, flat, subst)
            init = self._guard(init, [g for g in loops.guards if g[1] <= spatial])
        body = self._guard(body, loops.guards)
        first_red = next((k for k, ax in enumerate(st.leaf) if ax.kind == "reduce"), None)
        for level in range(len(st.leaf) - 1, -1, -1):
            ax = st.leaf[level]
            body = self._with_attached(st, ax, body, level)
            body = For(ax.var, loops.ext[ax], ax.loop, body, ax.thread_tag, tuple(ax.pragmas.items()))
            if level == first_red:
                init_nest = init
                for inner in reversed(st.leaf[level + 1:]):
                    if inner.kind == "spatial":
                        init_nest = For(inner.var, loops.ext[inner], inner.loop, init_nest, inner.thread_tag)
                body = seq([init_nest, body])
        if first_red is None and init is not None:
            body = seq([init, body])
        return body

    def _op_ranges(self, loops: StageLoops) -> dict[Var, Range]:
        """The values each op variable takes in a stage's loops (including its consumers' loops around it)."""
        loop_ranges = self._loop_ranges()
        out: dict[Var, Range] = {}
        for var, value in loops.op_vars.items():
            try:
                out[var] = bound(value, loop_ranges)
            except BoundError:
                continue
        return out

    def _update(self, red: Reduce, bufs: list[Buffer], flat: list[Expr], subst) -> Stmt:
        acc = [Load(b, f) for b, f in zip(bufs, flat)]
        where = subst(red.where)
        if red.combiner in ("argmax", "argmin"):
            idx, val = cast(bufs[0].dtype, subst(red.sources[0])), cast(bufs[1].dtype, subst(red.sources[1]))
            flag = Var("better", bool_)
            stores = [Store(bufs[0], flat[0], select(flag, idx, acc[0])),
                      Store(bufs[1], flat[1], select(flag, val, acc[1]))]
            better = self._arg_better(red.combiner, idx, val, acc[0], acc[1])
            stmt: Stmt = LetStmt(flag, binary("and", where, better), seq(stores))
            return stmt
        src = cast(bufs[0].dtype, subst(red.sources[0]))
        op = {"sum": "add", "prod": "mul", "max": "max", "min": "min"}[red.combiner]
        stmt = Store(bufs[0], flat[0], binary(op, acc[0], src))
        return stmt if isinstance(where, Const) and where.value else IfThenElse(where, stmt)

    @staticmethod
    def _initial(red: Reduce, k: int, dtype) -> Expr:
        """Arg-reductions start at index 0 holding the identity value, so a row where no value beats the identity
        (all -inf for argmax) answers 0, as numpy does."""
        if red.combiner in ("argmax", "argmin") and k == 0:
            return const(0, dtype)
        return identity_element(red.combiner, dtype)

    @staticmethod
    def _arg_better(combiner: str, idx: Expr, val: Expr, best_idx: Expr, best: Expr) -> Expr:
        """numpy's order whatever order the loops visit: a NaN beats every number, and among equal values (or
        NaNs) the lower index wins."""
        beats = binary("gt" if combiner == "argmax" else "lt", val, best)
        tie = binary("eq", val, best)
        if val.dtype.is_float:
            val_nan, best_nan = binary("ne", val, val), binary("ne", best, best)
            beats = binary("or", beats, binary("and", val_nan, ~best_nan))
            tie = binary("or", tie, binary("and", val_nan, best_nan))
        return binary("or", beats, binary("and", tie, binary("lt", idx, best_idx)))

    @staticmethod
    def _guard(body: Stmt, guards: list[tuple[Expr, set[Var]]]) -> Stmt:
        return IfThenElse(all_of([g for g, _ in guards]), body) if guards else body

    def _with_attached(self, consumer: Stage, ax: Axis, body: Stmt, level: int) -> Stmt:
        attached = [s for s in self.stages if s.attach.kind == "at" and s.attach.stage is consumer
                    and s.attach.axis is ax]
        if not attached:
            return body
        if ax.loop == "vectorized" or any(a.loop == "vectorized" for a in consumer.leaf[:level]):
            raise ScheduleError(f"compute_at of {attached[0].name!r} inside the vectorized loop "
                                f"{consumer.name}.{ax.name}: vector lanes cannot host another stage")
        out: Stmt = seq([self.stage_nest(prod) for prod in attached] + [body])
        for prod in attached:
            for t in prod.op.outputs:
                out = Allocate(self.buffers[t], out)
        return out

    def _place_attached(self, consumer: Stage) -> None:
        """Give every stage computed at `consumer`'s loops its region and region-sized buffer, before the
        consumer's body is lowered (its reads index into those buffers)."""
        attached = [(consumer.leaf.index(p.attach.axis), p) for p in self.stages
                    if p.attach.kind == "at" and p.attach.stage is consumer and p.attach.axis in consumer.leaf]
        for level, prod in reversed(attached):  # consumers first: a producer's region covers their regions' reads
            self.regions[prod] = self._infer_region(prod, consumer, level)
            shape = self.buffer_shape(prod, [ext for _, ext in self.regions[prod]])
            scope = prod.scope if prod.scope != "global" else "local"
            for t in prod.op.outputs:
                self.buffers[t] = Buffer(t.name, shape, t.dtype, scope, prod.layout)

    def _infer_region(self, prod: Stage, consumer: Stage, level: int) -> list[tuple[Expr, Expr]]:
        loops = self.loops[consumer]
        varying = {ax.var: (const(0, INDEX), simplify(loops.ext[ax] - 1)) for ax in consumer.leaf[level + 1:]}
        if prod.scope == "shared":
            varying.update(self._thread_loops_around(consumer, level))
        tensors = prod.op.outputs
        reads: list[list[Expr]] = []
        for body in consumer.op.body:
            for t in tensors:
                reads.extend(self.sch.reads_of(t, body, consumer))
        uses = [([simplify_index(substitute(i, loops.op_vars)) for i in idx], varying) for idx in reads]
        uses += self._sibling_reads(prod, consumer, level, varying)
        if not uses:
            raise ScheduleError(f"compute_at of {prod.name!r}: {consumer.name!r} does not read it")
        region: list[tuple[Expr, Expr]] = []
        for d, full in enumerate(tensors[0].shape):
            lo_all = hi_all = None
            for idx, ranges in uses:
                try:
                    lo, hi = bound(idx[d], ranges)
                except BoundError as err:
                    raise ScheduleError(f"compute_at of {prod.name!r} at {consumer.name}: {err}") from None
                lo, hi = simplify_index(lo), simplify_index(hi)
                lo_all = lo if lo_all is None else lower_of(lo_all, lo)
                hi_all = hi if hi_all is None else upper_of(hi_all, hi)
            region.append((lo_all, self._region_extent(simplify_index(hi_all - lo_all + 1), prod, consumer, d)))
        return region

    def _sibling_reads(self, prod: Stage, consumer: Stage, level: int,
                       varying: dict[Var, Range]) -> list[tuple[list[Expr], dict[Var, Range]]]:
        """The reads of `prod` by the other stages computed at `consumer`'s loop `level` or inside it (a row max
        read by the row sum and by the final stage), each with the ranges of the loop variables it varies over in
        one iteration: the reader's own loops (its region is already known) and `varying`, the consumer's inner
        loops. Every reader must be one of these or the consumer itself (Halide's rule)."""
        at = consumer.leaf[level]
        for c in self.sch.consumers(prod, through_inlined=True):
            if c in self.stages and not attached_within(c, consumer, at):
                raise ScheduleError(f"compute_at of {prod.name!r} at {consumer.name}.{at.name}: its consumer "
                                    f"{c.name!r} is outside that loop (computed {c.attach.kind}); compute it at "
                                    f"{consumer.name}.{at.name} or an inner loop, or compute {prod.name!r} outside")
        out: list[tuple[list[Expr], dict[Var, Range]]] = []
        for sib in self.stages:
            if sib is prod or sib is consumer or not attached_within(sib, consumer, at) or sib not in self.regions:
                continue
            reads = [idx for body in sib.op.body for t in prod.op.outputs for idx in self.sch.reads_of(t, body, sib)]
            if not reads:
                continue
            known = self.stage_loops(sib)
            ranges = dict(varying)
            ranges.update({ax.var: (const(0, INDEX), simplify(known.ext[ax] - 1)) for ax in sib.leaf})
            out.extend(([simplify_index(substitute(i, known.op_vars)) for i in idx], ranges) for idx in reads)
        return out

    def _thread_loops_around(self, consumer: Stage, level: int) -> dict[Var, Range]:
        """The threadIdx-bound loops enclosing `consumer.leaf[level]` (its own and those of the stages it is
        computed at). A shared-memory stage is computed once for the whole block, so its region spans every
        thread's (TVM's bound relaxation): the block's threads then fetch it cooperatively."""
        out: dict[Var, Range] = {}
        st, upto = consumer, level
        while True:
            known = self.loops[st]
            for ax in st.leaf[:upto + 1]:
                if ax.loop == "thread" and ax.thread_tag.startswith("threadIdx"):
                    out[ax.var] = (const(0, INDEX), simplify(known.ext[ax] - 1))
            if st.attach.kind != "at":
                return out
            st, upto = st.attach.stage, st.attach.stage.leaf.index(st.attach.axis)

    @staticmethod
    def _region_extent(extent: Expr, prod: Stage, consumer: Stage, dim: int) -> Expr:
        """A region size that does not change from one iteration of the consumer's loops to the next, so its buffer
        is allocated once and unrolled or vectorized producer loops get a constant trip count. Where the exact
        size varies (regions read through fused or split indices), a constant upper bound is used; the region's
        loops are guarded to the producer's domain."""
        if const_value(extent) is not None:
            return simplify_index(extent)
        if all(isinstance(v, SizeVar) for v in free_vars(extent)):
            return simplify(extent)
        bound_ = max_floordiv_span(extent)
        if bound_ is None:
            raise ScheduleError(f"compute_at of {prod.name!r} at {consumer.name}: the size of the region it must "
                                f"compute (dimension {dim}: {extent}) changes from one iteration to the next; "
                                f"compute it at an outer loop")
        return const(bound_, INDEX)

    # ---- the whole function ---------------------------------------------------------------------------------------
    def lower(self) -> PrimFunc:
        for t in self.args:
            self._buffer(t, None)
        parts: list[Stmt] = []
        allocs: list[Buffer] = []
        for st in self.stages:
            if st.attach.kind != "root":
                continue
            parts.append(self.stage_nest(st))
            allocs.extend(self.buffers[t] for t in st.op.outputs if t not in self.args)
        body: Stmt = seq(parts)
        for buf in allocs:
            body = Allocate(buf, body)
        size_vars = _size_vars(self.args)
        return PrimFunc(self.name, [self.buffers[t] for t in self.args], size_vars, body,
                        [self.buffers[t] for t in self.args if not isinstance(t.op, PlaceholderOp)])


def _within(index: Expr, extent: Expr, ranges: dict[Var, Range]) -> bool:
    """Whether `index` provably stays in [0, extent) while its variables stay in `ranges`."""
    try:
        lo, hi = bound(index, ranges)
    except BoundError:
        return False
    lo_c, hi_c, ext_c = const_value(lo), const_value(hi), const_value(extent)
    return lo_c is not None and hi_c is not None and ext_c is not None and lo_c >= 0 and hi_c < ext_c


def _size_vars(args: list[Tensor]) -> list[SizeVar]:
    out: dict[SizeVar, None] = {}
    for t in args:
        for d in t.shape:
            for v in sorted(free_vars(d), key=lambda v: v.name):
                if isinstance(v, SizeVar):
                    out[v] = None
    return list(out)


def check_args(args: list[Tensor]) -> None:
    """What a kernel's argument list must satisfy, checked before any cache lookup (a cached kernel skips lowering)."""
    if not args:
        raise ScheduleError("build needs at least one argument tensor")
    names = [t.name for t in args]
    for t in args:
        if names.count(t.name) > 1:
            raise ScheduleError(f"two arguments are named {t.name!r}; give tensors distinct names")
    if all(isinstance(t.op, PlaceholderOp) for t in args):
        raise ScheduleError("build arguments contain no computed tensor: nothing to compute")


def lower(sch: Schedule, args: list[Tensor], name: str = "kernel", gpu_loops: bool = False) -> PrimFunc:
    """Schedule -> loop IR, before the loop-level passes of the pipeline. `gpu_loops` admits loops bound to
    block/thread indices (targets whose backend maps them to hardware indices)."""
    return Lowerer(sch, args, name, gpu_loops).lower()
