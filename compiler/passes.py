"""Loop-IR passes. Each takes and returns a statement tree; the pipeline names them in order."""
from __future__ import annotations

from collections.abc import Callable

from ..ir.dtype import INDEX
from ..ir.expr import Binary, Const, Expr, Var, binary, const, free_vars, substitute
from ..ir.loops import Allocate, For, IfThenElse, LetStmt, Seq, Stmt, Store, map_exprs, seq, with_children
from ..ir.simplify import affine, simplify_index


def simplify_stmt(stmt: Stmt) -> Stmt:
    """Canonicalise index arithmetic and drop conditionals that are constant."""
    stmt = map_exprs(stmt, simplify_index)
    return _drop_constant_ifs(stmt)


def _drop_constant_ifs(s: Stmt) -> Stmt:
    kids = [_drop_constant_ifs(k) for k in s.children()]
    if isinstance(s, IfThenElse) and isinstance(s.cond, Const):
        return kids[0] if s.cond.value else (kids[1] if len(kids) > 1 else Seq([]))
    if isinstance(s, For) and isinstance(s.extent, Const) and s.extent.value <= 0:
        return Seq([])
    if isinstance(s, Seq):
        kids = [k for k in kids if not (isinstance(k, Seq) and not k.stmts)]
    return with_children(s, kids)


# ---- loop partitioning ------------------------------------------------------------------------------------------

def _clauses(cond: Expr) -> list[Expr]:
    if isinstance(cond, Binary) and cond.op == "and":
        return _clauses(cond.a) + _clauses(cond.b)
    return [cond]


def _split_point(clause: Expr, var: Var, inner: dict[Var, Expr]) -> "tuple[Expr, bool] | None":
    """For a guard `lhs < rhs` whose lhs grows with `var` and with loops inside it, the number of leading
    iterations of `var` for which the guard holds for every inner iteration, and whether at most one iteration is
    left over (a plain split tail); None if the guard is not of that form."""
    if not (isinstance(clause, Binary) and clause.op == "lt"):
        return None
    form = affine(simplify_index(clause.a))
    if form is None:
        return None
    terms, c = form
    coef = terms.get(var, 0)
    if coef <= 0 or free_vars(clause.b) & (inner.keys() | {var}):
        return None  # the split point must be known before the loop starts
    worst = c
    rest: Expr = const(0, INDEX)
    for atom, n in terms.items():
        if atom is var:
            continue
        if isinstance(atom, Var) and atom in inner and n > 0:
            rest = rest + (inner[atom] - 1) * n
        elif free_vars(atom) & (inner.keys() | {var}):
            return None
        else:
            rest = rest + atom * n
    # coef * v + rest + worst < rhs  <=>  v < (rhs - rest - worst - 1) // coef + 1
    span = simplify_index(rest + worst + 1)
    if isinstance(span, Const) and span.value == coef:
        return simplify_index(clause.b // coef), True  # the usual split guard: all full tiles run unguarded
    return simplify_index((clause.b - span) // coef + 1), False


def _at_most(point: Expr, extent: Expr) -> bool:
    """point <= extent, for constants or the split shape `n // f` against `(n + f - 1) // f`."""
    if isinstance(point, Const) and isinstance(extent, Const):
        return point.value <= extent.value
    if isinstance(point, Binary) and isinstance(extent, Binary) and point.op == extent.op == "floordiv":
        f = point.b
        if isinstance(f, Const) and isinstance(extent.b, Const) and f.value == extent.b.value:
            form_p, form_e = affine(point.a), affine(extent.a)
            if form_p is not None and form_e is not None:
                same = form_p[0].keys() == form_e[0].keys() and all(
                    form_p[0][k] == form_e[0][k] for k in form_p[0])
                return same and form_e[1] >= form_p[1]
    return False


def _inner_loops(s: Stmt, out: dict[Var, Expr]) -> dict[Var, Expr]:
    if isinstance(s, For):
        out[s.var] = s.extent
    for kid in s.children():
        _inner_loops(kid, out)
    return out


def _find_guard(s: Stmt, var: Var, inner: dict[Var, Expr],
                plain_only: bool = True) -> "tuple[Expr, tuple[Expr, bool]] | None":
    if isinstance(s, IfThenElse) and s.otherwise is None:
        for clause in _clauses(s.cond):
            point = _split_point(clause, var, inner)
            if point is not None and (point[1] or not plain_only):
                return clause, point
    for kid in s.children():
        found = _find_guard(kid, var, inner, plain_only)
        if found is not None:
            return found
    return None


def _holds_below(clause: Expr, var: Var, inner: dict[Var, Expr], point: Expr) -> bool:
    """Whether `clause` holds for every iteration with `var < point` (its own split point is provably >= point).
    Inner loops that were partitioned first leave copies of one guard, so clauses are compared by meaning."""
    found = _split_point(clause, var, inner)
    if found is None or not found[1]:
        return False
    margin = simplify_index(found[0] - point)
    return isinstance(margin, Const) and margin.value >= 0


def _drop_guards(s: Stmt, found: Expr, holds: Callable[[Expr], bool]) -> Stmt:
    """Drop `found` (the guard split on, so every partitioning step makes progress) and all clauses that hold."""
    kids = [_drop_guards(k, found, holds) for k in s.children()]
    if isinstance(s, IfThenElse):
        kept = [c for c in _clauses(s.cond) if c is not found and not holds(c)]
        if s.otherwise is None and not kept:
            return kids[0]
        cond = kept[0] if kept else const(True)
        for c in kept[1:]:
            cond = binary("and", cond, c)
        return IfThenElse(cond, *kids)
    return with_children(s, kids)


def partition_loops(s: Stmt, in_vector: bool = False) -> Stmt:
    """Split loops so the main part runs without the tail guards of non-divisible splits; only the last
    iterations keep the guard (and, when vectorized, the masked code). Inner loops are partitioned first."""
    if isinstance(s, For):
        inside = in_vector or s.kind in ("vectorized", "thread")
        body = partition_loops(s.body, inside)
        return _partition_on(For(s.var, s.extent, s.kind, body, s.thread_tag, s.annotations), in_vector)
    return with_children(s, [partition_loops(k, in_vector) for k in s.children()])


def _partition_on(loop: For, in_vector: bool = False) -> Stmt:
    """Partition `loop` on its own variable. Each step removes at least the guard it split on from the main part,
    so the recursion ends."""
    if loop.kind in ("vectorized", "unrolled", "thread"):
        return loop
    inner = _inner_loops(loop.body, {})
    # Serial loops also split where a guard's bound depends on outer loops (a tile whose last vectors pass the
    # tensor's end only in some iterations of a parallel loop): the split point is then clamped to the loop.
    found = _find_guard(loop.body, loop.var, inner, plain_only=loop.kind != "serial" or in_vector)
    if found is None:
        return loop
    clause, (guard_point, plain) = found
    main_body = _drop_guards(loop.body, clause, lambda c: _holds_below(c, loop.var, inner, guard_point))
    point = guard_point if _at_most(guard_point, loop.extent) else binary("min", guard_point, loop.extent)
    if not plain:
        point = binary("max", point, const(0, INDEX))
    point = simplify_index(point)
    main = _partition_on(For(loop.var, point, loop.kind, main_body, loop.thread_tag, loop.annotations), in_vector)
    tail_var = Var(loop.var.name, INDEX)
    tail_body = _rebind_lets(map_exprs(loop.body, lambda e: substitute(e, {loop.var: tail_var + point})))
    tail_kind = "serial" if loop.kind == "parallel" else loop.kind
    tail = For(tail_var, simplify_index(loop.extent - point), tail_kind, tail_body, loop.thread_tag,
               loop.annotations)
    return seq([main, tail])


def _rebind_lets(s: Stmt) -> Stmt:
    """Copies of a loop body must not share inner loop variables with the original (codegen binds by identity)."""
    mapping: dict[Var, Var] = {}

    def fresh(v: Var) -> Var:
        mapping[v] = Var(v.name, v.dtype)
        return mapping[v]

    def go(x: Stmt) -> Stmt:
        sub = (lambda e: substitute(e, mapping))
        if isinstance(x, For):
            ext = sub(x.extent)
            return For(fresh(x.var), ext, x.kind, go(x.body), x.thread_tag, x.annotations)
        if isinstance(x, LetStmt):
            val = sub(x.value)
            return LetStmt(fresh(x.var), val, go(x.body))
        if isinstance(x, Seq):
            return Seq([go(y) for y in x.stmts])
        if isinstance(x, IfThenElse):
            return IfThenElse(sub(x.cond), go(x.then), None if x.otherwise is None else go(x.otherwise))
        if isinstance(x, Allocate):
            return Allocate(x.buffer, go(x.body))
        if isinstance(x, Store):
            return Store(x.buffer, sub(x.index), sub(x.value))
        return x
    return go(s)
