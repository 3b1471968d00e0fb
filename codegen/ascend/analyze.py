"""Loop IR -> the AscendC kernels to emit: one per root loop nest, each classified into a family.

Under the ascend default schedule (compiler/rules_ascend.py: inline only) every root stage is a plain nest over
its axes, so the stage's tensor-level meaning can be read back from the loops:
- `elementwise`: a perfect nest storing `out[flat(i)] = f(loads)` where every load is, over a trailing block of
  axes (the "row"), either contiguous like the output or constant (a per-row scalar);
- `row_reduce`: `out[flat(i)] = init; for k: out = combine(out, f(loads))` with loads contiguous in k or
  independent of it (reductions over the last axis, the steps of softmax and layer norm);
- `scalar`: anything else (user schedules, gathers, several reduce axes...), run by the scalar unit.
Intermediate stages live in GM workspaces between kernels.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ...ir.expr import Binary, Cast, Const, Expr, SizeVar, Var, free_vars, substitute, walk
from ...ir.loops import Allocate, Buffer, For, Load, PrimFunc, Seq, Stmt, Store, walk_stmts
from ...ir.simplify import affine, coefficient, simplify_index
from .cexpr import AscendError

VECTOR_DTYPES = ("float16", "float32")
COMBINERS = {"add": "sum", "max": "max", "min": "min"}


@dataclass
class Operand:
    """A GM buffer read by a vector kernel: a tile (contiguous over the row) or one scalar per row."""

    buffer: Buffer
    offset: Expr  # element offset of the row's first element, in the outer loop variables
    tile: bool


@dataclass
class Nest:
    stmt: Stmt
    family: str
    outer: list[tuple[Var, int]] = field(default_factory=list)  # row loops (elementwise/row_reduce)
    row: int = 1  # elements per row: the trailing block (elementwise) or the reduce extent
    out: "Buffer | None" = None
    value: "Expr | None" = None  # the per-element expression (reads are Loads)
    inner: dict = field(default_factory=dict)  # Var -> 0 substitution of row vars (for offsets)
    operands: list[Operand] = field(default_factory=list)
    combiner: str = ""
    matmul: "MatmulInfo | None" = None


@dataclass
class Program:
    workspaces: list[Buffer]
    nests: list[Nest]


def analyze(func: PrimFunc) -> Program:
    body, workspaces = func.body, []
    while isinstance(body, Allocate):
        workspaces.append(body.buffer)
        body = body.body
    stmts = body.stmts if isinstance(body, Seq) else [body]
    for s in stmts:
        def inner_alloc(n: Stmt) -> None:
            if isinstance(n, Allocate) and n.buffer.scope == "global":
                raise AscendError(f"kernel {func.name}: intermediate buffer {n.buffer.name} is allocated inside a "
                                  f"loop nest; the ascend backend needs intermediates at the root (compute_root)")
        walk_stmts(s, inner_alloc)
    stmts = [s for s in stmts if reads_writes(s)[1]]  # a nest that stores nothing (an empty loop) has no kernel
    return Program(workspaces, [classify(s) for s in _merge_writers(stmts)])


def _merge_writers(stmts: list[Stmt]) -> list[Stmt]:
    """Statements that write a buffer an earlier neighbour writes (a reduction's init apart from its loops) join
    that statement: one kernel must produce each buffer, since a launch treats its outputs as fresh."""
    groups: list[list[Stmt]] = []
    written: list[set[int]] = []
    for s in stmts:
        _, w = reads_writes(s)
        ids = {id(b) for b in w}
        if groups and ids & written[-1]:
            groups[-1].append(s)
            written[-1] |= ids
        else:
            groups.append([s])
            written.append(ids)
    return [g[0] if len(g) == 1 else Seq(g) for g in groups]


def _const(e: Expr) -> "int | None":
    return e.value if isinstance(e, Const) else None


def _loops(stmt: Stmt) -> tuple[list[tuple[Var, int]], Stmt]:
    loops: list[tuple[Var, int]] = []
    while isinstance(stmt, For) and stmt.kind != "thread" and _const(stmt.extent) is not None:
        loops.append((stmt.var, _const(stmt.extent)))
        stmt = stmt.body
    return loops, stmt


def _is_flat(index: Expr, loops: list[tuple[Var, int]], buf: Buffer) -> bool:
    """Whether `index` is the row-major position of the loop point in a buffer shaped like the loops."""
    size = 1
    for d in buf.shape:
        if _const(d) is None:
            return False
        size *= _const(d)
    if size != _prod(n for _, n in loops):
        return False
    form = affine(simplify_index(index))
    if form is None or form[1] != 0:
        return False
    stride = 1
    for v, n in reversed(loops):
        if n > 1 and form[0].get(v, 0) != stride:
            return False
        stride *= n
    return all(isinstance(a, Var) and any(a is v for v, _ in loops) for a in form[0])


def _prod(values) -> int:
    out = 1
    for v in values:
        out *= v
    return out


def _loads(e: Expr) -> list[Load]:
    found: list[Load] = []
    walk(e, lambda n: found.append(n) if isinstance(n, Load) else None)
    return found


def classify(stmt: Stmt) -> Nest:
    return _elementwise(stmt) or _matmul(stmt) or _row_reduce(stmt) or Nest(stmt, "scalar")


def _value_ok(value: Expr) -> bool:
    """Vector dtypes only, and loop variables only inside load indices (EyeLike's i == j is not a tile)."""
    if value.dtype.name not in VECTOR_DTYPES or _bare_vars(value):
        return False
    for ld in _loads(value):
        if ld.dtype.name not in VECTOR_DTYPES:
            return False
    return True


def _bare_vars(e: Expr) -> bool:
    if isinstance(e, Load):
        return False
    if isinstance(e, Var):
        return True
    return any(_bare_vars(k) for k in e.children())


def _elementwise(stmt: Stmt) -> "Nest | None":
    loops, body = _loops(stmt)
    if not loops or not isinstance(body, Store) or not _value_ok(body.value):
        return None
    if not _is_flat(body.index, loops, body.buffer):
        return None
    live = [(v, n) for v, n in loops if n > 1] or loops[-1:]
    zero = {v: Const(0, v.dtype) for v, n in loops if n == 1}
    value = substitute(body.value, zero) if zero else body.value
    strides, s = {}, 1
    for v, n in reversed(live):
        strides[v] = s
        s *= n
    coefs = []
    for ld in _loads(value):
        c = {v: coefficient(ld.index, v) for v, _ in live}
        if any(x is None for x in c.values()) or ld.buffer is body.buffer:
            return None
        coefs.append(c)
    split = None
    for k in range(len(live)):
        tail = [v for v, _ in live[k:]]
        if all(all(c[v] == strides[v] for v in tail) or all(c[v] == 0 for v in tail) for c in coefs):
            split = k
            break
    if split is None:
        return None
    outer, row_vars = live[:split], [v for v, _ in live[split:]]
    row = _prod(n for _, n in live[split:])
    inner = {v: Const(0, v.dtype) for v in row_vars}
    nest = Nest(stmt, "elementwise", outer, row, body.buffer, value, inner)
    nest.operands = _operands(value, inner, lambda ld: all(coefficient(ld.index, v) != 0 for v in row_vars))
    return nest


def _operands(value: Expr, inner: dict, is_tile) -> list[Operand]:
    ops: list[Operand] = []
    seen: set[tuple] = set()
    from ...ir.expr import expr_key
    for ld in _loads(value):
        key = (id(ld.buffer), expr_key(ld.index))
        if key in seen:
            continue
        seen.add(key)
        ops.append(Operand(ld.buffer, simplify_index(substitute(ld.index, inner)), is_tile(ld)))
    return ops


def operand_of(nest: Nest, ld: Load) -> int:
    """Position in `nest.operands` of the operand a Load reads."""
    from ...ir.expr import expr_key
    off = expr_key(simplify_index(substitute(ld.index, nest.inner)))
    for i, op in enumerate(nest.operands):
        if op.buffer is ld.buffer and expr_key(op.offset) == off:
            return i
    raise AscendError(f"load of {ld.buffer.name} not among the kernel's operands")


def _row_reduce(stmt: Stmt) -> "Nest | None":
    loops, body = _loops(stmt)
    if not isinstance(body, Seq) or len(body.stmts) != 2:
        return None
    init, red = body.stmts
    if not (isinstance(init, Store) and isinstance(init.value, Const) and isinstance(red, For)
            and red.kind != "thread" and _const(red.extent) and isinstance(red.body, Store)):
        return None
    upd, out, k = red.body, init.buffer, red.var
    value = _unround(upd.value)
    if upd.buffer is not out or not isinstance(value, Binary) or value.op not in COMBINERS:
        return None
    if not loops:
        if _const(out.size()) != 1:
            return None
    elif not _is_flat(init.index, loops, out):
        return None
    a, b = _unround(value.a), _unround(value.b)
    acc_side = [x for x in (a, b) if isinstance(x, Load) and x.buffer is out]
    if len(acc_side) != 1:
        return None
    expr = value.b if acc_side[0] is a else value.a
    if not _value_ok(expr) or expr.dtype != out.dtype:
        return None
    combiner = COMBINERS[value.op]
    ident = {"sum": 0.0, "max": float("-inf"), "min": float("inf")}[combiner]
    if float(init.value.value) != ident:
        return None
    for ld in _loads(expr):
        c = coefficient(ld.index, k)
        if ld.buffer is out or c not in (0, 1) or any(coefficient(ld.index, v) is None for v, _ in loops):
            return None
    inner = {k: Const(0, k.dtype)}
    nest = Nest(stmt, "row_reduce", [(v, n) for v, n in loops if n > 1], _const(red.extent), out, expr, inner)
    zero = {v: Const(0, v.dtype) for v, n in loops if n == 1}
    if zero:
        nest.value = substitute(expr, zero)
    nest.operands = _operands(nest.value, inner, lambda ld: coefficient(ld.index, k) == 1)
    nest.combiner = combiner
    return nest


@dataclass
class MatmulInfo:
    """C[b][i, j] = sum_k A[b][i, k] * B[b][k, j] over row-major GM matrices, either operand possibly transposed;
    `a_off`/`b_off` are the batch offsets in the batch loop variables (`Nest.outer`)."""

    a: Buffer
    b: Buffer
    m: int
    n: int
    k: int
    trans_a: bool
    trans_b: bool
    a_off: Expr
    b_off: Expr


def _matmul(stmt: Stmt) -> "Nest | None":
    """A sum of products of two loads, spatial loops (batch..., i, j), one reduce loop k: the cube unit's job."""
    loops, body = _loops(stmt)
    if len(loops) < 2 or not isinstance(body, Seq) or len(body.stmts) != 2:
        return None
    init, red = body.stmts
    if not (isinstance(init, Store) and isinstance(init.value, Const) and float(init.value.value) == 0.0
            and isinstance(red, For) and red.kind != "thread" and _const(red.extent)
            and isinstance(red.body, Store) and red.body.buffer is init.buffer):
        return None
    out, k, kn = init.buffer, red.var, _const(red.extent)
    if out.dtype.name not in VECTOR_DTYPES or not _is_flat(init.index, loops, out):
        return None
    value = _unround(red.body.value)
    if not (isinstance(value, Binary) and value.op == "add"):
        return None
    a, b = _unround(value.a), _unround(value.b)
    prod = b if isinstance(a, Load) and a.buffer is out else a if isinstance(b, Load) and b.buffer is out else None
    prod = _unround(prod) if prod is not None else None
    if not (isinstance(prod, Binary) and prod.op == "mul"):
        return None
    x, y = _widened(_unround(prod.a), out), _widened(_unround(prod.b), out)
    if not (isinstance(x, Load) and isinstance(y, Load) and x.dtype == y.dtype
            and (x.dtype == out.dtype or (x.dtype.name, out.dtype.name) == ("float16", "float32"))):
        return None
    (i, m), (j, n) = loops[-2], loops[-1]
    batch = loops[:-2]

    def coefs(ld: Load) -> "dict | None":
        c = {v: coefficient(ld.index, v) for v in (i, j, k)}
        if any(val is None for val in c.values()):
            return affine_on_box(ld.index, [(i, m), (j, n), (k, kn)])
        return c
    cx, cy = coefs(x), coefs(y)
    if cx is None or cy is None:
        return None
    if cx[j] != 0 or m == 1 and n > 1 and cy[j] == 0:
        x, y, cx, cy = y, x, cy, cx
    if cx[j] != 0 or cy[i] != 0:
        return None
    trans_a = not (cx[k] == 1 and (m == 1 or cx[i] == kn))
    if trans_a and not (cx[i] == 1 and (kn == 1 or cx[k] == m)):
        return None
    trans_b = not (cy[j] == 1 and (kn == 1 or cy[k] == n))
    if trans_b and not (cy[k] == 1 and (n == 1 or cy[j] == kn)):
        return None
    zero = {v: Const(0, v.dtype) for v in (i, j, k)} | {v: Const(0, v.dtype) for v, e in batch if e == 1}
    for ld in (x, y):
        if any(coefficient(ld.index, v) is None for v, _ in batch):
            return None
    nest = Nest(stmt, "matmul", [(v, e) for v, e in batch if e > 1], kn, out)
    nest.matmul = MatmulInfo(x.buffer, y.buffer, m, n, kn, trans_a, trans_b,
                             simplify_index(substitute(x.index, zero)), simplify_index(substitute(y.index, zero)))
    return nest


BOX_LIMIT = 1 << 20  # points an index is evaluated on to prove it affine


def affine_on_box(index: Expr, box: list[tuple[Var, int]]) -> "dict | None":
    """Coefficients of `index` in the box's variables when it is affine over the whole box (other variables held
    at 0), found by evaluating it everywhere: reshapes written with // and % (k%3 + k//3%3*3 + k//9*9 == k for
    k < 27) that the symbolic simplifier cannot flatten."""
    import numpy as np
    if _prod(n for _, n in box) > BOX_LIMIT:
        return None
    grids = np.meshgrid(*[np.arange(n, dtype=np.int64) for _, n in box], indexing="ij")
    env = {v: g for (v, _), g in zip(box, grids)}
    got = _eval_index(index, env)
    if got is None:
        return None
    got = np.broadcast_to(got, grids[0].shape) if grids else got
    base = got.reshape(-1)[0]
    coef = {}
    for d, (v, n) in enumerate(box):
        coef[v] = int(np.take(got, 1, axis=d).reshape(-1)[0] - base) if n > 1 else 0
    want = base + sum(c * g for c, g in zip(coef.values(), grids))
    return coef if np.array_equal(got, want) else None


def _eval_index(e: Expr, env: dict):
    """An integer index expression over numpy grids (None for anything but + - * // % of loop variables)."""
    import numpy as np
    if isinstance(e, Const):
        return np.int64(e.value)
    if isinstance(e, Var):
        return env.get(e, np.int64(0))
    if isinstance(e, Cast) and e.dtype.is_int and e.value.dtype.is_int:
        return _eval_index(e.value, env)
    if isinstance(e, Binary) and e.op in ("add", "sub", "mul", "floordiv", "mod"):
        a, b = _eval_index(e.a, env), _eval_index(e.b, env)
        if a is None or b is None:
            return None
        if e.op in ("floordiv", "mod") and np.any(b == 0):
            return None
        return {"add": np.add, "sub": np.subtract, "mul": np.multiply, "floordiv": np.floor_divide,
                "mod": np.mod}[e.op](a, b)
    return None


def _widened(e: Expr, out: Buffer) -> Expr:
    """A float16 operand widened to a float32 result (`float32(x)`): the cube multiplies half inputs into float
    accumulators, so the load itself is the operand."""
    if isinstance(e, Cast) and e.dtype == out.dtype and isinstance(e.value, Load) and e.value.dtype.bits == 16 \
            and e.value.dtype.is_float:
        return e.value
    return e


def _unround(e: Expr) -> Expr:
    """A float16 value rounded to float16 (`float16(float32(x))`) is the value itself."""
    if (isinstance(e, Cast) and e.dtype.bits == 16 and isinstance(e.value, Cast) and e.value.dtype.is_float
            and e.value.dtype.bits > 16 and e.value.value.dtype == e.dtype):
        return e.value.value
    return e


def reads_writes(stmt: Stmt) -> tuple[list[Buffer], list[Buffer]]:
    """GM buffers a nest reads and writes, in first-use order."""
    reads: list[Buffer] = []
    writes: list[Buffer] = []
    local: set[int] = set()

    def add(lst: list[Buffer], b: Buffer) -> None:
        if id(b) not in local and all(x is not b for x in lst):
            lst.append(b)

    def visit(s: Stmt) -> None:
        if isinstance(s, Allocate):
            local.add(id(s.buffer))
        if isinstance(s, Store):
            add(writes, s.buffer)
        for e in s.exprs():
            for ld in _loads(e):
                add(reads, ld.buffer)
    walk_stmts(stmt, visit)
    return reads, writes


def splittable(stmt: Stmt, cores: int) -> list[For]:
    """The outer loops of a scalar nest that blocks can share: perfectly nested loops whose iterations provably
    write disjoint elements (`_disjoint`), taken until their combined extent covers the cores."""
    loops: list[For] = []
    stores: list[Store] = []
    extents: dict[Var, "int | None"] = {}

    def visit(s: Stmt) -> None:
        if isinstance(s, Store):
            stores.append(s)
        elif isinstance(s, For):
            extents[s.var] = _const(s.extent)
    walk_stmts(stmt, visit)
    work = 1
    while isinstance(stmt, For) and work < cores and all(_disjoint(st.index, stmt, extents) for st in stores):
        loops.append(stmt)
        if not isinstance(stmt.extent, Const):
            break
        work *= stmt.extent.value
        stmt = stmt.body
    return loops


def _disjoint(index: Expr, loop: For, extents: dict[Var, "int | None"]) -> bool:
    """Whether two iterations of `loop` never store to the same element through `index`: the index is affine in
    every loop variable inside it, and one step of `loop` moves it further than all inner loops together can."""
    step = coefficient(index, loop.var)
    if not step:
        return False
    inner: set[Var] = set()
    walk_stmts(loop.body, lambda s: inner.add(s.var) if isinstance(s, For) else None)
    span = 0
    for v in free_vars(index):
        if v is loop.var or isinstance(v, SizeVar) or (v in extents and v not in inner):
            continue  # the loop itself, launch-constant sizes and the outer loops (fixed for this iteration)
        c, n = coefficient(index, v), extents.get(v)
        if c is None or n is None:
            return False
        span += abs(c) * (n - 1)
    return abs(step) > span
