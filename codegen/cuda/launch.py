"""Splitting a PrimFunc into CUDA launches and checking each launch before any code runs.

Top-level global Allocates are intermediate buffers (temporaries the launcher allocates); every top-level
statement of the body becomes one `__global__` kernel whose grid/block extents come from its thread-bound loops.
Extents are kept as small JSON trees so the launcher evaluates them with the call's sizes without the IR.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ...ir.dtype import INDEX, float32, int32
from ...ir.expr import Binary, Cast, Const, Expr, Var, binary, const, expr_key, free_vars, transform, walk
from ...ir.loops import Allocate, Buffer, For, LetStmt, Load, PrimFunc, Seq, Stmt, Store, map_exprs
from ...ir.simplify import eval_binary, simplify_index
from ...ir.symbolic import prove_equal
from .exprs import CudaCodegenError
from .xreduce import CrossThreadReduce, rewrite_cross_thread
from .tensorcore import WARP_COLLECTIVES, WmmaStore, check_warp_collective, rewrite_tensor_cores

TAGS = ("blockIdx.x", "blockIdx.y", "blockIdx.z", "threadIdx.x", "threadIdx.y", "threadIdx.z")
MAX_GRID = {"x": 2**31 - 1, "y": 65535, "z": 65535}
MAX_BLOCK = {"x": 1024, "y": 1024, "z": 64}


class LaunchConfigError(ValueError):
    """A launch exceeds a device or target limit (threads, shared memory, grid); raised before anything runs."""


@dataclass
class KernelPlan:
    """One launch: its statement, the launch extent of each bound tag, and the buffers it touches."""

    name: str
    body: Stmt
    extents: dict[str, Expr] = field(default_factory=dict)
    loops: dict[str, list[For]] = field(default_factory=dict)
    shared: list[Buffer] = field(default_factory=list)
    stored: set[Buffer] = field(default_factory=set)
    used: list[Buffer] = field(default_factory=list)
    reductions: list[CrossThreadReduce] = field(default_factory=list)
    cooperative: set[Buffer] = field(default_factory=set)  # shared buffers the block's threads fill together

    def dim(self, kind: str) -> list[Expr]:
        """The three extents of `blockIdx` or `threadIdx` (1 where unbound)."""
        return [self.extents.get(f"{kind}.{c}", const(1, INDEX)) for c in "xyz"]


def peel_temporaries(func: PrimFunc) -> tuple[list[Buffer], Stmt]:
    """Top-level global Allocates become temporaries; a root stage in another scope cannot span launches."""
    temps: list[Buffer] = []
    body = func.body
    while isinstance(body, Allocate):
        if body.buffer.scope != "global":
            raise CudaCodegenError(f"kernel {func.name!r}: buffer {body.buffer.name!r} is in {body.buffer.scope} "
                                   f"memory but is computed at the root, outside any block; compute it at a block "
                                   f"loop (compute_at) or leave it in global memory")
        temps.append(body.buffer)
        body = body.body
    return temps, body


def plan_kernels(func: PrimFunc) -> tuple[list[Buffer], list[KernelPlan]]:
    """The temporaries and the launches of a function, each launch checked for races and rule violations."""
    temps, body = peel_temporaries(func)
    body = rewrite_tensor_cores(rewrite_cross_thread(map_exprs(body, refuse_div_mod)))
    stmts = body.stmts if isinstance(body, Seq) else [body]
    plans = []
    for stmt in stmts:
        if isinstance(stmt, Seq) and not stmt.stmts:
            continue
        plan = KernelPlan(f"{_c_name(func.name)}_k{len(plans)}", stmt)
        _collect(plan, func)
        _check_races(plan)
        plans.append(plan)
    return temps, plans


def _collect(plan: KernelPlan, func: PrimFunc) -> None:
    """Thread loops (launch extents), buffers used and stored, shared allocations, cross-thread reductions."""
    sizes = set(func.size_vars)
    size_names = {v.name for v in func.size_vars}
    used: dict[Buffer, None] = {}
    has_loop = [False]

    def use(e: Expr) -> None:
        walk(e, lambda n: used.setdefault(n.buffer) if isinstance(n, Load) else None)

    def go(s: Stmt, enclosing: tuple[str, ...]) -> None:
        if isinstance(s, For):
            has_loop[0] = True
            if s.kind == "thread":
                if s.thread_tag not in TAGS:
                    raise CudaCodegenError(f"kernel {plan.name}: loop {s.var.name!r} has unknown tag {s.thread_tag!r}")
                if s.thread_tag in enclosing:
                    _check_cooperative(plan, s)
                bad = [v.name for v in free_vars(s.extent) if v not in sizes and v.name not in size_names]
                if bad:
                    raise CudaCodegenError(f"kernel {plan.name}: the extent {s.extent} of loop {s.var.name!r} "
                                           f"bound to {s.thread_tag} depends on loop variables {bad}; the launch "
                                           f"size must be known before the launch")
                plan.loops.setdefault(s.thread_tag, []).append(s)
                enclosing = enclosing + (s.thread_tag,)
        elif isinstance(s, (Store, WmmaStore)):
            used.setdefault(s.buffer)
            plan.stored.add(s.buffer)
        elif isinstance(s, CrossThreadReduce):
            used.setdefault(s.buffer)
            plan.stored.add(s.buffer)
            plan.reductions.append(s)
        elif isinstance(s, Allocate):
            if s.buffer.scope == "shared":
                if all(s.buffer is not b for b in plan.shared):  # loop partitioning copies allocations
                    plan.shared.append(s.buffer)
            elif s.buffer.scope not in ("local",):
                raise CudaCodegenError(f"kernel {plan.name}: buffer {s.buffer.name!r} in {s.buffer.scope} memory "
                                       f"cannot be allocated inside a launch (use shared or local)")
        for e in s.exprs():
            use(e)
        for kid in s.children():
            go(kid, enclosing)

    go(plan.body, ())
    local = set(plan.shared)
    walk_allocs: list[Buffer] = []
    _allocs(plan.body, walk_allocs)
    local.update(walk_allocs)
    plan.used = [b for b in used if b not in local]
    for tag, loops in plan.loops.items():
        plan.extents[tag] = _max_extent([lp.extent for lp in loops])
    for red in plan.reductions:
        _check_cross_thread(plan, red)
    if not plan.loops and has_loop[0] and not all(_is_scalar(b) for b in plan.stored):
        raise CudaCodegenError(f"kernel {plan.name}: the statement has no loop bound to blockIdx/threadIdx, so it "
                               f"would run on a single GPU thread; bind its loops (stage.bind(axis, "
                               f"'blockIdx.x') / 'threadIdx.x') or build without a schedule to get the default "
                               f"GPU schedule")


def _check_cooperative(plan: KernelPlan, loop: For) -> None:
    """A loop bound to a thread index already bound around it re-distributes a shared-memory stage computed inside
    the thread loops over the same threads (a cooperative fetch, as TVM lowers a shared stage computed at a thread
    loop); anything else binding a tag twice in a nest is a schedule error."""
    if not loop.thread_tag.startswith("threadIdx"):
        raise CudaCodegenError(f"kernel {plan.name}: loop {loop.var.name!r} is bound to {loop.thread_tag} inside "
                               f"another loop bound to {loop.thread_tag}; bind each tag once per loop nest")
    stored: list[Buffer] = []

    def go(s: Stmt) -> None:
        if isinstance(s, (Store, CrossThreadReduce)):
            stored.append(s.buffer)
        for kid in s.children():
            go(kid)

    go(loop.body)
    if not stored or any(b.scope != "shared" for b in stored):
        raise CudaCodegenError(f"kernel {plan.name}: loop {loop.var.name!r} is bound to {loop.thread_tag} inside "
                               f"another loop bound to {loop.thread_tag}; only a shared-memory stage computed "
                               f"inside the thread loops may bind a thread index again (its threads fetch the "
                               f"block's tile together); bind each tag once per loop nest otherwise")
    plan.cooperative.update(stored)


def refuse_div_mod(e: Expr) -> Expr:
    """`x % c + (x // c) * c` -> `x`: fused loops rebuild flat indices this way, and a 64-bit division by a
    symbolic size is a slow subroutine call on the GPU."""
    def rule(n: Expr) -> "Expr | None":
        if not (isinstance(n, Binary) and n.op == "add"):
            return None
        a, b = refuse_div_mod(n.a), refuse_div_mod(n.b)
        for m, q in ((a, b), (b, a)):
            if isinstance(m, Binary) and m.op == "mod" and isinstance(q, Binary) and q.op == "mul":
                for d, c in ((q.a, q.b), (q.b, q.a)):
                    if (isinstance(d, Binary) and d.op == "floordiv" and expr_key(d.a) == expr_key(m.a)
                            and expr_key(d.b) == expr_key(m.b) == expr_key(c)):
                        return m.a
        return binary("add", a, b) if (a is not n.a or b is not n.b) else n
    return transform(e, rule)


def _check_cross_thread(plan: KernelPlan, red: CrossThreadReduce) -> None:
    """Warp shuffles need the reduction's threads to be whole warps of consecutive threadIdx.x."""
    ext = plan.extents["threadIdx.x"]
    others = [t for t in ("threadIdx.y", "threadIdx.z") if t in plan.extents]
    what = f"kernel {plan.name}: the reduction into {red.buffer.name!r} across threadIdx.x"
    if others:
        raise CudaCodegenError(f"{what} needs threadIdx.x to be the only thread dimension (also bound: "
                               f"{', '.join(others)})")
    n = ext.value if isinstance(ext, Const) else None
    if n is None or not (n % 32 == 0 or (n <= 32 and n & (n - 1) == 0)):
        raise CudaCodegenError(f"{what} runs on {ext} threads; a cross-thread reduction needs a constant number "
                               f"of threads that is a multiple of 32 or a power of two up to 32 (split the reduction "
                               f"axis by such a factor)")
    if red.buffer.dtype.is_bool:
        raise CudaCodegenError(f"{what}: bool reductions across threads are not supported; reduce in int32")
    if n > 32:
        dt = red.buffer.dtype
        staged = float32 if dt.name == "float16" else int32 if dt.is_int and dt.bits < 32 else dt
        red.red = Buffer(f"{red.buffer.name}_red", (const(32, INDEX),), staged, "shared")
        plan.shared.append(red.red)


def _allocs(s: Stmt, out: list[Buffer]) -> None:
    if isinstance(s, Allocate):
        out.append(s.buffer)
    for kid in s.children():
        _allocs(kid, out)


def _is_scalar(buf: Buffer) -> bool:
    size = simplify_index(buf.size())
    return isinstance(size, Const) and size.value <= 1


def _max_extent(extents: list[Expr]) -> Expr:
    out = extents[0]
    for e in extents[1:]:
        if isinstance(out, Const) and isinstance(e, Const):
            out = out if out.value >= e.value else e
        elif not prove_equal(out, e):
            out = binary("max", out, e)
    return out


def needs_guard(loop: For, launch_extent: Expr) -> bool:
    """Whether some threads of the launch lie beyond this loop's extent."""
    if isinstance(loop.extent, Const) and isinstance(launch_extent, Const):
        return loop.extent.value < launch_extent.value
    return not prove_equal(loop.extent, launch_extent)


def _check_races(plan: KernelPlan) -> None:
    """Every store to global or shared memory must be made by one thread: inside a loop for each bound tag (whose
    launch extent may exceed 1), with an index that depends on that loop's variable."""
    tags = [t for t, ext in plan.extents.items() if not (isinstance(ext, Const) and ext.value <= 1)]

    def go(s: Stmt, enclosing: dict[str, For], deps: dict[Var, set[str]]) -> None:
        if isinstance(s, For) and s.kind == "thread":
            enclosing = {**enclosing, s.thread_tag: s}
            deps = {**deps, s.var: {s.thread_tag}}
        elif isinstance(s, LetStmt):
            deps = {**deps, s.var: set().union(*(deps.get(v, set()) for v in free_vars(s.value)))}
        elif isinstance(s, CrossThreadReduce) and s.buffer.scope == "global":
            index_tags = set().union(*(deps.get(v, set()) for v in free_vars(s.index)))
            for tag in tags:
                if tag.startswith("blockIdx") and tag not in index_tags:
                    raise CudaCodegenError(
                        f"kernel {plan.name}: the reduction into {s.buffer.name!r} does not depend on {tag}, so "
                        f"every block writes the same element (a dependency across blocks)")
        elif isinstance(s, WARP_COLLECTIVES):  # fragments are warp-wide: whole warps, one tile per warp
            check_warp_collective(plan.name, s, enclosing, deps, tags, plan.dim("threadIdx")[0])
        elif isinstance(s, Store) and s.buffer.scope in ("global", "shared"):
            index_tags = set().union(*(deps.get(v, set()) for v in free_vars(s.index)))
            for tag in tags:
                if s.buffer.scope == "shared" and tag.startswith("blockIdx"):
                    continue  # each block has its own shared memory
                loop = enclosing.get(tag)
                if loop is not None and isinstance(loop.extent, Const) and loop.extent.value == 1:
                    continue  # one thread of that dimension runs it
                if loop is None:
                    raise CudaCodegenError(
                        f"kernel {plan.name}: the store to {s.buffer.name!r} is outside every loop bound to {tag}, so "
                        f"all {tag} threads would write the same element (a dependency across threads); bind a loop "
                        f"around it to {tag}, or move that binding out of this stage")
                if tag not in index_tags:
                    raise CudaCodegenError(
                        f"kernel {plan.name}: the store to {s.buffer.name!r} inside loop {loop.var.name!r} (bound to "
                        f"{tag}) does not depend on it, so all {tag} threads write the same element (a dependency "
                        f"across threads, e.g. a reduction axis bound to a thread index); bind a spatial axis "
                        f"instead, or rfactor the reduction and bind the new spatial axis")
        for kid in s.children():
            go(kid, enclosing, deps)

    go(plan.body, {}, {})


# ---- launch-time expressions ----------------------------------------------------------------------------------------

def expr_json(e: Expr) -> object:
    """A shape/extent expression over size variables as a JSON tree."""
    e = simplify_index(e)
    if isinstance(e, Const):
        return int(e.value)
    if isinstance(e, Var):
        return e.name
    if isinstance(e, Cast):
        return expr_json(e.value)
    if isinstance(e, Binary):
        return [e.op, expr_json(e.a), expr_json(e.b)]
    raise CudaCodegenError(f"launch size {e} cannot be evaluated before the launch")


def eval_json(node: object, sizes: dict[str, int]) -> int:
    if isinstance(node, int):
        return node
    if isinstance(node, str):
        return sizes[node]
    op, a, b = node  # type: ignore[misc]
    return int(eval_binary(op, eval_json(a, sizes), eval_json(b, sizes), INDEX))


def _c_name(name: str) -> str:
    out = "".join(c if c.isalnum() or c == "_" else "_" for c in name)
    return out if out and not out[0].isdigit() else f"k_{out}"


def shared_access(s: Stmt) -> tuple[set[Buffer], set[Buffer]]:
    """Shared buffers a statement reads and writes (anywhere inside it)."""
    reads: set[Buffer] = set()
    writes: set[Buffer] = set()

    def visit_expr(e: Expr) -> None:
        if isinstance(e, Load) and e.buffer.scope == "shared":
            reads.add(e.buffer)

    def go(x: Stmt) -> None:
        if isinstance(x, (Store, CrossThreadReduce, WmmaStore)) and x.buffer.scope == "shared":
            writes.add(x.buffer)
        for e in x.exprs():
            walk(e, visit_expr)
        for kid in x.children():
            go(kid)
    go(s)
    return reads, writes
