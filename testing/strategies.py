"""Hypothesis strategies for property-testing ember kernels: shapes, dtypes, input arrays, targets and random
legal schedules.

Sizes favour 1, primes and sizes that are not multiples of vector widths, because tails and guards are where
loop transformations go wrong. Schedules are built only through the public schedule API, so the drawn schedule's
trace holds exactly the primitives that were applied and replays with `ember.from_trace`.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
from hypothesis import strategies as st

from ..compiler.lower import lower
from ..compiler.schedule import MAX_VECTOR_LANES, Axis, Schedule, ScheduleError, Split, Stage
from ..ir.expr import Const
from ..ir.tensor import Reduce, Tensor

Workload = Callable[[], tuple[Any, Sequence[Tensor]]]
Move = Callable[[Schedule], Any]

PRIMITIVES = ("split", "reorder", "fuse", "vectorize", "parallel", "unroll", "compute_inline", "compute_at",
              "rfactor")
FLOAT_DTYPES = ("float32", "float64", "float16")
INT_DTYPES = ("int32", "int64", "int8", "int16", "uint8")
TARGETS = ("llvm", "llvm -opt=1", "llvm -opt=0", "llvm -threads=1")
MAX_UNROLL_EXTENT = 16  # per loop; keeps unrolled code (and compile time) small
MAX_UNROLL_PRODUCT = 64  # per stage
MAX_LOOPS = 7  # per stage, so random splitting cannot blow up loop nests
_PRIMES = (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89, 97)
# 1, primes and near-powers of two exercise partial vectors and split tails; a few multiples of 16 keep the
# main (unguarded) bodies covered too.
_FAVOURED = tuple(sorted({1, *_PRIMES, 9, 15, 33, 63, 65, 16, 32, 64}))


def shapes(ndim: "int | tuple[int, int]" = 2, min_side: int = 1, max_side: int = 24) -> st.SearchStrategy:
    """Tuples of `ndim` sizes (or a number of sizes in the inclusive range `ndim`) in [min_side, max_side]."""
    lo, hi = (ndim, ndim) if isinstance(ndim, int) else ndim
    favoured = [n for n in _FAVOURED if min_side <= n <= max_side]
    side = st.integers(min_side, max_side)
    if favoured:
        side = st.one_of(st.sampled_from(favoured), side)
    return st.integers(lo, hi).flatmap(lambda n: st.tuples(*[side] * n))


def dtypes(kinds: str = "float") -> st.SearchStrategy:
    """dtype names: kinds is 'float', 'int' (signed and unsigned) or 'all' (also bool)."""
    table = {"float": FLOAT_DTYPES, "int": INT_DTYPES, "all": FLOAT_DTYPES + INT_DTYPES + ("bool",)}
    if kinds not in table:
        raise ValueError(f"dtypes(kinds=...) takes one of {', '.join(table)}, got {kinds!r}")
    return st.sampled_from(table[kinds])


def arrays(shape: Sequence[int], dtype: str, low: float = -2.0, high: float = 2.0) -> st.SearchStrategy:
    """Arrays filled from a drawn seed: cheap for large shapes (hypothesis shrinks the seed, not each element).
    Floats are uniform in [low, high); ints uniform in [low, high] clipped to the dtype's range; bools fair."""
    def seeded_array(seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        dt = np.dtype(dtype)
        if dt.kind == "f":
            return rng.uniform(low, high, size=tuple(shape)).astype(dt)
        if dt.kind == "b":
            return rng.integers(0, 2, size=tuple(shape)).astype(dt)
        info = np.iinfo(dt)
        lo, hi = max(int(np.floor(low)), info.min), min(int(np.ceil(high)), info.max)
        return rng.integers(lo, hi, size=tuple(shape), endpoint=True).astype(dt)
    return st.integers(0, 2**32 - 1).map(seeded_array)


def targets(fastmath: bool = False) -> st.SearchStrategy:
    """llvm target strings with different optimisation levels and thread counts. '-fastmath' is opt-in: it lets
    LLVM assume no NaN/inf, which legitimately changes results that involve them."""
    return st.sampled_from(TARGETS + (("llvm -fastmath",) if fastmath else ()))


def schedules(make_workload: Workload, max_steps: int = 8, pad: bool = True,
              primitives: Sequence[str] = PRIMITIVES) -> st.SearchStrategy:
    """Random legal schedules of `make_workload()`'s (outputs, args) as fresh `ember.Schedule`s.

    Each step picks a primitive and legal arguments for it; a step the legality model cannot place is skipped,
    never recorded. `pad` (split tails on padded intermediate buffers) and `primitives` narrow what is drawn,
    e.g. to steer around a known compiler bug.
    """
    unknown = set(primitives) - set(PRIMITIVES)
    if unknown:
        raise ValueError(f"unknown primitives {sorted(unknown)}; choose from {', '.join(PRIMITIVES)}")
    return _schedules(make_workload, max_steps, pad, tuple(primitives))


def workload(make_workload: Workload) -> tuple[list[Tensor], list[Tensor]]:
    """Call a workload function and normalise its outputs to a list."""
    outs, args = make_workload()
    return ([outs] if isinstance(outs, Tensor) else list(outs)), list(args)


class DrawnSchedule(Schedule):
    """A schedule drawn by `schedules`; its repr is its trace, so hypothesis reports say what was drawn."""

    def __repr__(self) -> str:
        return f"<schedule {self.trace.to_json()}>"


@st.composite
def _schedules(draw: st.DrawFn, make_workload: Workload, max_steps: int, pad: bool,
               primitives: tuple[str, ...]) -> Schedule:
    outs, args = workload(make_workload)
    sch = DrawnSchedule(outs)
    for _ in range(draw(st.integers(0, max_steps))):
        kind = draw(st.sampled_from(primitives))
        live = [s for s in sch.stages if s.attach.kind != "inline"]
        stage = draw(st.sampled_from(live))
        move = _split(draw, sch, stage, pad) if kind == "split" else _MOVES[kind](draw, sch, stage)
        if move is not None:
            _apply(sch, move, kind, outs, args)
    return sch


def _apply(sch: Schedule, move: Move, kind: str, outs: list[Tensor], args: list[Tensor]) -> None:
    """Apply `move` unless it is illegal. With stages computed at others, bound inference can still reject a
    schedule when it is lowered, so such moves are first tried (and lowered) on a replayed copy."""
    if (kind == "compute_at" or any(s.attach.kind == "at" for s in sch.stages)) and _lowering_rejects(
            sch, move, outs, args):
        return
    try:
        move(sch)
    except ScheduleError:
        return


def _lowering_rejects(sch: Schedule, move: Move, outs: list[Tensor], args: list[Tensor]) -> bool:
    trial = Schedule(outs)
    sch.trace.apply(trial)
    try:
        move(trial)
        lower(trial, args)
    except ScheduleError:
        return True
    except Exception:  # noqa: BLE001 - a compiler bug, not an illegal move: keep it so building reports it
        return False
    return False


# ---- the legality model --------------------------------------------------------------------------------------------
def _attach_axes(sch: Schedule, stage: Stage) -> set[Axis]:
    """Loops of `stage` that other stages are computed at."""
    return {s.attach.axis for s in sch.stages if s.attach.kind == "at" and s.attach.stage is stage}


def _order_ok(sch: Schedule, stage: Stage, order: Sequence[Axis]) -> bool:
    """Stages can be computed only outside a stage's vectorized loop (vector lanes cannot host a loop nest)."""
    hosts = _attach_axes(sch, stage)
    vec = [k for k, a in enumerate(order) if a.loop == "vectorized"]
    return not vec or all(order.index(a) < vec[0] for a in hosts)


def _serial(stage: Stage) -> list[Axis]:
    """Loops that may be split or fused: splitting an annotated loop would silently drop its annotation."""
    return [a for a in stage.leaf if a.loop == "serial"]


def _const(ax: Axis) -> "int | None":
    return ax.extent.value if isinstance(ax.extent, Const) else None


def _split(draw: st.DrawFn, sch: Schedule, stage: Stage, pad: bool) -> "Move | None":
    free = _serial(stage)
    if not free or len(stage.leaf) >= MAX_LOOPS:
        return None
    axis = draw(st.sampled_from(free))
    ax = axis.name
    amount = draw(st.integers(1, 17))
    by_parts = draw(st.integers(0, 3)) == 0
    # A padded tail computes past the tensor's extent: only intermediate buffers (which ember pads) can take
    # that, and only along their original spatial axes.
    can_pad = pad and not stage.is_output and axis.kind == "spatial" and axis in stage.root_axes
    tail = draw(st.sampled_from(("guard", "pad"))) if can_pad else "guard"
    if by_parts:
        return lambda s: s[stage.name].split(ax, nparts=amount, tail=tail)
    return lambda s: s[stage.name].split(ax, amount, tail=tail)


def _reorder(draw: st.DrawFn, sch: Schedule, stage: Stage) -> "Move | None":
    if len(stage.leaf) < 2:
        return None
    order = draw(st.permutations(stage.leaf))
    if not _order_ok(sch, stage, order):
        return None
    names = [a.name for a in order]
    return lambda s: s[stage.name].reorder(*names)


def _fuse(draw: st.DrawFn, sch: Schedule, stage: Stage) -> "Move | None":
    free = set(_serial(stage))
    pairs = [(a.name, b.name) for a, b in zip(stage.leaf, stage.leaf[1:])
             if a in free and b in free and a.kind == b.kind]
    if not pairs:
        return None
    pair = draw(st.sampled_from(pairs))
    return lambda s: s[stage.name].fuse(*pair)


def _vectorize(draw: st.DrawFn, sch: Schedule, stage: Stage) -> "Move | None":
    if any(a.loop == "vectorized" for a in stage.leaf):
        return None  # one vector loop per nest: lanes cannot nest
    hosts = [stage.leaf.index(a) for a in _attach_axes(sch, stage)]
    first = max(hosts, default=-1) + 1
    fits = [a for a in stage.leaf[first:] if a.kind == "spatial" and a.loop == "serial"
            and (_const(a) or 0) in range(1, MAX_VECTOR_LANES + 1)]
    if not fits:
        return None
    ax = draw(st.sampled_from(fits[::-1])).name  # shrinks towards the innermost
    return lambda s: s[stage.name].vectorize(ax)


def _parallel(draw: st.DrawFn, sch: Schedule, stage: Stage) -> "Move | None":
    fits = [a.name for a in stage.leaf if a.kind == "spatial" and a.loop == "serial"]
    if not fits:
        return None
    ax = draw(st.sampled_from(fits))
    return lambda s: s[stage.name].parallel(ax)


def _unroll(draw: st.DrawFn, sch: Schedule, stage: Stage) -> "Move | None":
    unrolled = 1
    for a in stage.leaf:
        if a.loop == "unrolled":
            unrolled *= _const(a) or 1
    fits = [a.name for a in stage.leaf if a.loop == "serial"
            and 1 <= (_const(a) or 0) <= min(MAX_UNROLL_EXTENT, MAX_UNROLL_PRODUCT // unrolled)]
    if not fits:
        return None
    ax = draw(st.sampled_from(fits))
    return lambda s: s[stage.name].unroll(ax)


def _compute_inline(draw: st.DrawFn, sch: Schedule, stage: Stage) -> "Move | None":
    untouched = not stage.relations and all(a.loop == "serial" for a in stage.leaf)
    if (stage.op.reduce_axis or stage.is_output or len(stage.op.outputs) > 1 or stage.attach.kind != "root"
            or not untouched or _attach_axes(sch, stage)):
        return None
    return lambda s: s[stage.name].compute_inline()


def _compute_at(draw: st.DrawFn, sch: Schedule, stage: Stage) -> "Move | None":
    consumers = sch.consumers(stage)
    if stage.is_output or stage.attach.kind != "root" or len(consumers) != 1:
        return None
    target = consumers[0]
    if target.attach.kind == "inline":
        return None
    vec = [k for k, a in enumerate(target.leaf) if a.loop == "vectorized"]
    fits = target.leaf[:vec[0]] if vec else target.leaf
    if not fits:
        return None
    ax = draw(st.sampled_from(fits)).name
    return lambda s: s[stage.name].compute_at(s[target.name], ax)


def _rfactor(draw: st.DrawFn, sch: Schedule, stage: Stage) -> "Move | None":
    body = stage.op.body
    if (len(body) != 1 or not isinstance(body[0], Reduce) or body[0].combiner not in ("sum", "prod", "max", "min")
            or stage.attach.kind != "root" or _attach_axes(sch, stage) or any(a.loop != "serial" for a in stage.leaf)
            or not all(isinstance(r, Split) for r in stage.relations)):
        return None
    roots = [a for a in stage.root_axes if a.kind == "reduce"]
    fits = [a.name for a in roots if a in stage.leaf]
    for rel in stage.relations:
        if rel.parent in roots and rel.outer in stage.leaf and rel.inner in stage.leaf:
            fits += [rel.outer.name, rel.inner.name]
    if not fits:
        return None
    ax = draw(st.sampled_from(fits))
    return lambda s: s.rfactor(stage.name, ax)


_MOVES: dict[str, Callable[..., "Move | None"]] = {
    "split": _split, "reorder": _reorder, "fuse": _fuse, "vectorize": _vectorize, "parallel": _parallel,
    "unroll": _unroll, "compute_inline": _compute_inline, "compute_at": _compute_at, "rfactor": _rfactor,
}
