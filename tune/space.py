"""The search space of one workload, generated from the default schedule's rules.

A candidate is a dict of decisions (knob name -> plain JSON value). Knobs come per stage from the same rules the
default schedule follows, with their constants opened up: the vector width and tile of the innermost spatial
axes, a split, position and unroll of the innermost reduction, how many outer loops run fused in parallel, where
a producer is computed (root or a loop of its consumer), and for contractions the register-blocked schedule's
micro-tile, row and column blocks, reduction chunk, packing, loop order and parallel loop; for sliding windows
(depthwise convolution, pooling) the window rule's output block (rows x vectors); for row groups (softmax, layer
norm) whether they are computed row by row and the vectors of partials per row reduction. `apply` turns decisions
into a Schedule (whose trace is what gets measured and stored); an illegal combination raises `ScheduleError`
there or when lowered, and the search drops it without measuring.
"""
from __future__ import annotations

import math
from random import Random
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..compiler.default_schedule import inline_elementwise, vector_lanes
from ..compiler.lower import lower
from ..compiler.rules_contraction import Blocking, apply_blocking, match, vector_registers
from ..compiler.rules_rowwise import cpu_row_group, schedule_group
from ..compiler.rules_window import WindowTiles, match_window, schedule_window, tile_choices
from ..compiler.schedule import Axis, Schedule, ScheduleError, Split, Stage
from ..compiler.target import Target
from ..ir.expr import Const
from ..ir.tensor import Reduce, Tensor

Decisions = dict[str, Any]
MICRO_TILES = ("1x4", "1x6", "1x8", "2x2", "2x3", "2x4", "2x6", "3x4", "4x2", "4x3")  # vectors x rows
WIDE_MICRO_TILES = ("1x12", "1x16", "2x8", "2x10", "2x12", "3x8", "4x4", "4x6")  # with 32 vector registers
MAX_TILE = 64
MAX_UNROLL = 32


@dataclass(frozen=True)
class Knob:
    name: str
    choices: tuple

    def encode(self, value: Any) -> float:
        """A number a cost model can split on: log2 for sizes, the choice's position for categories."""
        if isinstance(value, bool):
            return float(value)
        if isinstance(value, (int, float)):
            return math.log2(1 + value)
        return float(self.choices.index(value)) if value in self.choices else -1.0


def _ext(ax: Axis) -> "int | None":
    return ax.extent.value if isinstance(ax.extent, Const) else None


def tile_sizes(extent: "int | None", limit: int = MAX_TILE) -> list[int]:
    """Split factors worth trying: divisors of the extent and powers of two (near-divisors), up to `limit`."""
    if extent is None:
        return [2, 4, 8, 16]
    top = min(extent, limit)
    out = {d for d in range(2, top + 1) if extent % d == 0}
    out |= {1 << k for k in range(1, 7) if (1 << k) <= top}
    picks = sorted(out)
    if len(picks) > 8:  # keep the spread, not all the small ones
        picks = sorted({picks[round(i * (len(picks) - 1) / 7)] for i in range(8)})
    return picks


def _rfactorable(st: Stage) -> bool:
    body = st.op.body
    return len(body) == 1 and isinstance(body[0], Reduce) and body[0].combiner in ("sum", "prod", "max", "min")


class Space:
    """Knobs of a workload `(outputs, args)` for a target; random, mutated and crossed candidates; `apply`."""

    def __init__(self, outputs: Sequence[Tensor], args: Sequence[Tensor], target: Target) -> None:
        self.outputs, self.args, self.target = list(outputs), list(args), target
        probe = Schedule(self.outputs)
        inline_elementwise(probe)
        self.roots = [st.name for st in probe.stages if st.attach.kind == "root"]
        self.knobs: list[Knob] = []
        self.blocked: set[str] = set()
        self.windows: set[str] = set()
        self.groups: set[str] = set()
        for st in reversed([probe[n] for n in self.roots]):
            self._stage_knobs(probe, st)

    # ---- knobs ------------------------------------------------------------------------------------------------------
    def _add(self, name: str, choices: Sequence[Any]) -> None:
        uniq = tuple(dict.fromkeys(choices))
        if len(uniq) > 1:
            self.knobs.append(Knob(name, uniq))

    def _stage_knobs(self, probe: Schedule, st: Stage) -> None:
        s = st.name
        lanes = vector_lanes(self.target, st.op.outputs[0].dtype.itemsize)
        spatial = [a for a in st.leaf if a.kind == "spatial"]
        reduce = [a for a in st.leaf if a.kind == "reduce"]
        c = match(st)
        if c is not None and (c.packable is not None or c.blocked) and _ext(c.col) and _ext(c.col) >= lanes:
            self.blocked.add(s)
            rows, k = _ext(c.row) or 1, _ext(c.reduce[0]) or 1
            self._add(f"{s}:mode", ("blocked", "generic"))
            tiles = MICRO_TILES + (WIDE_MICRO_TILES if vector_registers(lanes, st.op.outputs[0].dtype.itemsize)
                                   == 32 else ())
            self._add(f"{s}:micro", [m for m in tiles if int(m.split("x")[0]) * lanes <= _ext(c.col)])
            self._add(f"{s}:row_block", [r for r in (1, 2, 4, 8, 16, 32, 64) if r == 1 or 4 * r <= rows])
            self._add(f"{s}:col_block", [m for m in (1, 2, 4, 8) if m == 1 or m * lanes <= _ext(c.col)])
            divisors = [d for d in range(64, min(k, 512) + 1) if k % d == 0][-3:]  # chunks with no guarded tail
            self._add(f"{s}:k_chunk", sorted({x for x in (64, 128, 256, 512) if x < k} | {k, *divisors}))
            self._add(f"{s}:pack", (True, False))
            self._add(f"{s}:order", ("col", "row"))
            self._add(f"{s}:bparallel", ("first", "second", "none"))
        elif not st.relations and match_window(st):
            self.windows.add(s)
            self._add(f"{s}:mode", ("window", "generic"))
            self._add(f"{s}:block", [f"{t.rows}x{t.vectors}" for t in tile_choices(st, lanes)])
        group = cpu_row_group(st, self._lanes)
        if group is not None:
            self.groups.add(s)
            shortest = min(_ext(r.leaf[-1]) or lanes for r in group.reductions)
            self._add(f"{s}:rows", ("group", "generic"))
            self._add(f"{s}:partials", [0] + [k for k in (1, 2, 4) if k * lanes <= shortest])  # 0: the rule's
        inner = _ext(spatial[-1]) if spatial else None
        if spatial:
            widths = [v for v in (lanes // 2, lanes, 2 * lanes, 4 * lanes) if 1 < v <= 64]
            if inner is not None:
                widths = [v for v in widths if v <= max(inner, lanes)] + ([inner] if 1 < inner < lanes else [])
            self._add(f"{s}:vec", [lanes if lanes in widths else 0] + widths + [0])
        if len(spatial) > 1:
            self._add(f"{s}:tile", [1] + tile_sizes(_ext(spatial[-2])))
            self._add(f"{s}:unroll_tile", (False, True))
        if reduce:
            r = _ext(reduce[-1])
            self._add(f"{s}:rsplit", [1] + [f for f in tile_sizes(r, 32) if r is None or f < r])
            self._add(f"{s}:runroll", (False, True))
            if _rfactorable(st) and (r is None or r >= 2 * lanes):
                widths = [w for w in (lanes, 2 * lanes, 4 * lanes) if r is None or w <= r]
                self._add(f"{s}:rfactor", [0] + widths)
            if spatial:
                self._add(f"{s}:rpos", ("out", "in"))
        self._add(f"{s}:parallel", (1, 0, 2, 3)[:len(spatial) + 1])
        consumers = probe.consumers(st)
        if not st.is_output and len(consumers) == 1 and consumers[0].attach.kind == "root" \
                and s not in self.blocked | self.windows:
            self._add(f"{s}:at", ("root", 0, 1, 2, 3, 4))

    def _lanes(self, st: Stage) -> int:
        return vector_lanes(self.target, st.op.outputs[0].dtype.itemsize)

    # ---- candidates ------------------------------------------------------------------------------------------------
    def default_decisions(self) -> Decisions:
        """The first choice of every knob: close to the rule-based default schedule."""
        return {k.name: k.choices[0] for k in self.knobs}

    def random(self, rng: Random) -> Decisions:
        return {k.name: rng.choice(k.choices) for k in self.knobs}

    def mutate(self, d: Decisions, rng: Random, n: int = 1) -> Decisions:
        out = dict(d)
        for knob in rng.sample(self.knobs, min(n, len(self.knobs))):
            out[knob.name] = rng.choice([c for c in knob.choices if c != out.get(knob.name)] or knob.choices)
        return out

    def crossover(self, a: Decisions, b: Decisions, rng: Random) -> Decisions:
        """Uniform per stage (a stage's knobs work together, so they travel together)."""
        pick = {s: rng.random() < 0.5 for s in self.roots}
        return {k.name: (a if pick.get(k.name.split(":")[0], True) else b).get(k.name, k.choices[0])
                for k in self.knobs}

    def features(self, d: Decisions) -> np.ndarray:
        return np.array([k.encode(d.get(k.name, k.choices[0])) for k in self.knobs], dtype=np.float64)

    def derived(self, sch: Schedule) -> np.ndarray:
        """Loop-nest features of the scheduled stages: parallel extent, vector width, unroll product, loop count,
        work wasted in split tails and the bytes of the innermost tile (log2)."""
        feats: list[float] = []
        for name in self.roots:
            st = sch[name]
            par = vec = unr = 1
            waste = 0.0
            for ax in st.leaf:
                n = _ext(ax) or 1
                par *= n if ax.loop == "parallel" else 1
                vec *= n if ax.loop == "vectorized" else 1
                unr *= n if ax.loop == "unrolled" else 1
            for rel in st.relations:
                if isinstance(rel, Split) and rel.factor and _ext(rel.parent):
                    n = _ext(rel.parent)
                    waste += (math.ceil(n / rel.factor) * rel.factor - n) / n
            inner = 1
            for ax in st.leaf[-3:]:
                inner *= _ext(ax) or 1
            feats += [math.log2(par), math.log2(vec), math.log2(unr), len(st.leaf), waste,
                      math.log2(inner * st.op.outputs[0].dtype.itemsize)]
        return np.array(feats, dtype=np.float64)

    # ---- decisions -> schedule -------------------------------------------------------------------------------------
    def apply(self, d: Decisions, check_lowering: bool = True) -> Schedule:
        """The schedule these decisions describe; ScheduleError when they do not make a legal one."""
        sch = Schedule(self.outputs)
        inline_elementwise(sch)
        taken: set[str] = set()  # stages a rule scheduled along with its own (a row group, an epilogue)
        for name in reversed(self.roots):  # row groups first, as the default rules do (softmax, layer norm)
            if name in self.groups and d.get(f"{name}:rows", "group") == "group":
                scheduled = schedule_group(sch[name], self._lanes, d.get(f"{name}:partials", 0) or None)
                taken |= {t.name for t in scheduled or ()}
        for name in self.roots:  # then contractions: the epilogue becomes their tile
            if name in self.blocked and name not in taken and d.get(f"{name}:mode", "blocked") == "blocked":
                taken |= {st.name for st in self._apply_blocked(sch, sch[name], d)}
        for name in self.roots:  # then windows, which take their reader and padded input along
            if name in self.windows and name not in taken and d.get(f"{name}:mode", "window") == "window":
                st = sch[name]
                rows, vectors = (int(x) for x in d.get(f"{name}:block", "0x0").split("x"))
                tiles = WindowTiles(rows, vectors) if rows else None
                taken |= {t.name for t in schedule_window(st, self._lanes(st), tiles) or ()}
        for name in reversed(self.roots):  # then consumers first, so producers can be placed in their loops
            st = sch[name]
            if st.attach.kind == "inline" or name in taken:  # inline: taken into a packed panel (implicit im2col)
                continue
            if d.get(f"{name}:rfactor", 0):
                self._apply_rfactor(sch, st, d[f"{name}:rfactor"])
            self._apply_generic(st, d)
        for name in self.roots:
            at = d.get(f"{name}:at", "root")
            if at != "root" and sch[name].attach.kind != "inline" and name not in taken:
                st = sch[name]
                parent = sch.consumers(st)[0]
                # Loops outside the consumer's vector loop can host it; a position past them means the innermost.
                hosts = next((i for i, a in enumerate(parent.leaf) if a.loop == "vectorized"), len(parent.leaf))
                if hosts == 0:
                    raise ScheduleError(f"compute_at of {name!r}: its consumer has no loop outside the vector loop")
                st.compute_at(parent, parent.leaf[min(at, hosts - 1)])
        if check_lowering:
            lower(sch, self.args)
        return sch

    def _apply_generic(self, st: Stage, d: Decisions) -> None:
        s = st.name
        spatial = [a for a in st.leaf if a.kind == "spatial"]
        reduce = [a for a in st.leaf if a.kind == "reduce"]
        vec_w = d.get(f"{s}:vec", 0) if spatial else 0
        inner_vec = None
        outer_sp = list(spatial)
        if vec_w:
            head, inner_vec = st.split(spatial[-1], vec_w)
            outer_sp[-1] = head
        tile_in = None
        tile = d.get(f"{s}:tile", 1)
        if tile > 1 and len(spatial) > 1:
            to, tile_in = st.split(spatial[-2], tile)
            outer_sp[-2] = to
        red = list(reduce)
        rsplit = d.get(f"{s}:rsplit", 1)
        if reduce and rsplit > 1:
            ro, ri = st.split(reduce[-1], rsplit)
            red[-1:] = [ro, ri]
        if d.get(f"{s}:rpos", "out") == "out":
            order = outer_sp + red + ([tile_in] if tile_in else [])
        else:
            order = outer_sp + ([tile_in] if tile_in else []) + red
        order += [inner_vec] if inner_vec else []
        if len(order) > 1:
            st.reorder(*order)
        npar = min(d.get(f"{s}:parallel", 1), len(outer_sp))
        if npar:
            st.parallel(st.fuse(*outer_sp[:npar]))
        if reduce and d.get(f"{s}:runroll", False):
            last = red[-1]
            if (_ext(last) or MAX_UNROLL + 1) > MAX_UNROLL:
                raise ScheduleError(f"{s}: reduction loop {last.name!r} is too long to unroll")
            st.unroll(last)
        if tile_in is not None and d.get(f"{s}:unroll_tile", False):
            if tile > 16:
                raise ScheduleError(f"{s}: tile of {tile} is too long to unroll")
            st.unroll(tile_in)
        unrolled = math.prod(_ext(a) or 1 for a in st.leaf if a.loop == "unrolled")
        if unrolled > MAX_UNROLL:
            raise ScheduleError(f"{s}: {unrolled} unrolled iterations would make the loop body too big to compile")
        if inner_vec is not None:
            st.vectorize(inner_vec)

    def _apply_rfactor(self, sch: Schedule, st: Stage, width: int) -> None:
        """Partial reductions along the contiguous reduction axis, `width` at a time, vectorized (a row reduction
        then reads rows with vector loads instead of gathering across rows); the stage then reduces the partials."""
        lanes = vector_lanes(self.target, st.op.outputs[0].dtype.itemsize)
        _, inner = st.split([a for a in st.leaf if a.kind == "reduce"][-1], width)
        rf = sch[sch.rfactor(st.op.outputs[0], inner)]
        spatial = [a for a in rf.leaf if a.kind == "spatial"]
        reduce = [a for a in rf.leaf if a.kind == "reduce"]
        vo, vi = rf.split(spatial[-1], lanes)
        rf.reorder(*spatial[:-1], *reduce, vo, vi)
        if len(spatial) > 1:
            rf.parallel(spatial[0])
        if width > lanes:
            rf.unroll(vo)
        rf.vectorize(vi)

    def _apply_blocked(self, sch: Schedule, st: Stage, d: Decisions) -> "set[Stage]":
        """The register-blocked contraction schedule (compiler/rules_contraction.py) with its constants as knobs."""
        s = st.name
        lanes = vector_lanes(self.target, st.op.outputs[0].dtype.itemsize)
        c = match(st)
        if c is None:
            raise ScheduleError(f"{s}: not a contraction")
        vectors, micro = (int(x) for x in d.get(f"{s}:micro", "2x4").split("x"))
        rows = _ext(c.row) or 1
        pack = bool(d.get(f"{s}:pack", True)) and c.packable is not None and rows >= 2 * micro
        k = _ext(c.reduce[0]) or 1
        return apply_blocking(st, c, lanes, Blocking(vectors, micro, micro * d.get(f"{s}:row_block", 1),
                                                     min(d.get(f"{s}:k_chunk", 256), k), pack,
                                                     d.get(f"{s}:order", "col"), d.get(f"{s}:bparallel", "first"),
                                                     vectors * lanes * d.get(f"{s}:col_block", 1)))
