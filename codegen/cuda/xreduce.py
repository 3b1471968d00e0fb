"""Cross-thread reductions: a reduction whose reduce loop is bound to threadIdx.x.

Lowering gives `B[i] = init; for k in threadIdx.x: ... B[i] = B[i] op v ...`, where every thread would update
the same element. It is recognised and rewritten into a `CrossThreadReduce` node: each thread accumulates into a
private register, then the block combines the registers with warp shuffles (`__shfl_down_sync`), through a small
shared buffer when the block has more than one warp, and thread 0 stores the result.
"""
from __future__ import annotations

from dataclasses import dataclass

from ...ir.expr import Binary, Cast, Const, Expr, Var, expr_key, free_vars, transform, walk
from ...ir.loops import Allocate, Buffer, For, IfThenElse, LetStmt, Load, Seq, Stmt, Store, with_children

COMBINERS = ("add", "mul", "max", "min")


@dataclass(eq=False)
class CrossThreadReduce(Stmt):
    """`buffer[index] = reduce(op, init, values of every thread of the loop)`; `acc` is each thread's register."""

    buffer: Buffer
    index: Expr
    init: Expr
    op: str
    acc: Buffer
    loop: For  # the thread loop, rewritten to accumulate into acc[0]
    red: "Buffer | None" = None  # shared staging buffer when the block has several warps (set by the planner)

    def children(self):
        return (Allocate(self.acc, self.loop),)

    def exprs(self):
        return (self.index, self.init)


def rewrite_cross_thread(s: Stmt) -> Stmt:
    """Replace every recognised `init; thread-loop update` pair with a CrossThreadReduce."""
    kids = [rewrite_cross_thread(k) for k in s.children()]
    if isinstance(s, Seq):
        out: list[Stmt] = []
        k = 0
        while k < len(kids):
            node = _match(kids[k], kids[k + 1]) if k + 1 < len(kids) else None
            if node is not None:
                out.append(node)
                k += 2
            else:
                out.append(kids[k])
                k += 1
        return Seq(out)
    return with_children(s, kids) if kids else s


def _match(init: Stmt, loop: Stmt) -> "CrossThreadReduce | None":
    if not (isinstance(init, Store) and isinstance(loop, For) and loop.kind == "thread"
            and loop.thread_tag == "threadIdx.x" and init.buffer.scope in ("global", "shared")):
        return None
    buf, key = init.buffer, expr_key(init.index)
    if _loads(init.value, buf) or loop.var in free_vars(init.index):
        return None
    inner_vars = _bound_vars(loop)
    if free_vars(init.index) & inner_vars:
        return None
    ops: set[str] = set()
    ok = [True]

    def check(x: Stmt) -> None:
        if isinstance(x, Store):
            v = _unround(x.value)
            if x.buffer is not buf or expr_key(x.index) != key or not isinstance(v, Binary) or v.op not in COMBINERS:
                ok[0] = False
                return
            acc, other = (v.a, v.b) if _is_acc(v.a, buf, key) else (v.b, v.a)
            if not _is_acc(acc, buf, key) or _loads(other, buf):
                ok[0] = False
            ops.add(v.op)
        else:
            for e in x.exprs():
                if _loads(e, buf):
                    ok[0] = False
        for kid in x.children():
            check(kid)

    check(loop.body)
    if not ok[0] or len(ops) != 1:
        return None
    acc_buf = Buffer(f"{buf.name}_acc", (Const(1, init.index.dtype),), buf.dtype, "local")
    zero = Const(0, init.index.dtype)

    def redirect_expr(e: Expr) -> Expr:
        return transform(e, lambda n: Load(acc_buf, zero) if isinstance(n, Load) and n.buffer is buf else None)

    def redirect(x: Stmt) -> Stmt:
        if isinstance(x, Store):
            return Store(acc_buf, zero, redirect_expr(x.value))
        new = with_children(x, [redirect(k) for k in x.children()])
        if isinstance(new, For):
            return For(new.var, redirect_expr(new.extent), new.kind, new.body, new.thread_tag, new.annotations)
        if isinstance(new, IfThenElse):
            return IfThenElse(redirect_expr(new.cond), new.then, new.otherwise)
        if isinstance(new, LetStmt):
            return LetStmt(new.var, redirect_expr(new.value), new.body)
        return new

    return CrossThreadReduce(buf, init.index, init.value, ops.pop(), acc_buf, redirect(loop))  # type: ignore[arg-type]


def _unround(e: Expr) -> Expr:
    """float16 values carry `float16(float32(x))` rounding wrappers; the combiner is underneath."""
    while isinstance(e, Cast) and isinstance(e.value, Cast) and e.dtype == e.value.value.dtype:
        e = e.value.value
    return e


def _is_acc(e: Expr, buf: Buffer, key: tuple) -> bool:
    e = _unround(e)
    return isinstance(e, Load) and e.buffer is buf and expr_key(e.index) == key


def _loads(e: Expr, buf: Buffer) -> bool:
    found = [False]
    walk(e, lambda n: found.__setitem__(0, True) if isinstance(n, Load) and n.buffer is buf else None)
    return found[0]


def _bound_vars(s: Stmt) -> set[Var]:
    out: set[Var] = set()

    def go(x: Stmt) -> None:
        if isinstance(x, (For, LetStmt)):
            out.add(x.var)
        for kid in x.children():
            go(kid)
    go(s)
    return out
