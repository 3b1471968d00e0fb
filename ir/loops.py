"""The loop IR: explicit loops, buffers with memory scopes, loads, stores, allocations and conditionals.

Every backend renders this IR; schedules and lowering produce it. Loops always start at 0.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from .dtype import DType, INDEX
from .expr import Expr, SizeVar, Var, cast, const, transform

SCOPES = ("global", "local", "shared", "ub")
LOOP_KINDS = ("serial", "parallel", "vectorized", "unrolled", "thread")


Layout = tuple[tuple[int, ...], int]  # dimension order (outermost first) and padding of the innermost row


class Buffer:
    """A region of memory in a scope; indexing is row-major over `shape`, or over the dimensions in a `layout`'s
    order with the innermost row padded (a schedule's storage_layout)."""

    __hash__ = object.__hash__

    def __init__(self, name: str, shape: Sequence[Expr], dtype: DType, scope: str = "global",
                 layout: "Layout | None" = None):
        if scope not in SCOPES:
            raise ValueError(f"unknown memory scope {scope!r}; valid scopes: {', '.join(SCOPES)}")
        self.name, self.shape, self.dtype, self.scope, self.layout = name, tuple(shape), dtype, scope, layout

    def _stored(self, indices: Sequence[Expr]) -> tuple[list[Expr], list[Expr]]:
        """The stored dimensions and the indices along them."""
        if self.layout is None:
            return list(self.shape), list(indices)
        order, pad = self.layout
        dims = [self.shape[d] for d in order]
        dims[-1] = dims[-1] + pad
        return dims, [indices[d] for d in order]

    def flat_index(self, indices: Sequence[Expr]) -> Expr:
        out: Expr = const(0, INDEX)
        for dim, idx in zip(*self._stored(indices)):
            out = out * dim + cast(INDEX, idx)
        return out

    def size(self) -> Expr:
        out: Expr = const(1, INDEX)
        for d in self._stored(self.shape)[0]:
            out = out * d
        return out

    def __repr__(self) -> str:
        return f"Buffer({self.name}, {list(map(str, self.shape))}, {self.dtype}, {self.scope})"


class Load(Expr):
    __slots__ = ("buffer", "index")

    def __init__(self, buffer: Buffer, index: Expr):
        self.buffer, self.index, self.dtype = buffer, index, buffer.dtype

    def children(self):
        return (self.index,)

    def rebuild(self, kids):
        return Load(self.buffer, kids[0])


class Stmt:
    def children(self) -> tuple["Stmt", ...]:
        return ()

    def exprs(self) -> tuple[Expr, ...]:
        return ()

    def __str__(self) -> str:
        from .printer import stmt_str
        return stmt_str(self)


@dataclass(eq=False)
class For(Stmt):
    var: Var
    extent: Expr
    kind: str
    body: Stmt
    thread_tag: str = ""
    annotations: tuple[tuple[str, Any], ...] = ()  # schedule pragmas (key, value) that backends may read

    def annotation(self, key: str, default: Any = None) -> Any:
        return dict(self.annotations).get(key, default)

    def children(self):
        return (self.body,)

    def exprs(self):
        return (self.extent,)


@dataclass(eq=False)
class Store(Stmt):
    buffer: Buffer
    index: Expr
    value: Expr

    def exprs(self):
        return (self.index, self.value)


@dataclass(eq=False)
class Allocate(Stmt):
    buffer: Buffer
    body: Stmt

    def children(self):
        return (self.body,)


@dataclass(eq=False)
class IfThenElse(Stmt):
    cond: Expr
    then: Stmt
    otherwise: "Stmt | None" = None

    def children(self):
        return (self.then,) if self.otherwise is None else (self.then, self.otherwise)

    def exprs(self):
        return (self.cond,)


@dataclass(eq=False)
class LetStmt(Stmt):
    var: Var
    value: Expr
    body: Stmt

    def children(self):
        return (self.body,)

    def exprs(self):
        return (self.value,)


@dataclass(eq=False)
class Seq(Stmt):
    stmts: list[Stmt] = field(default_factory=list)

    def children(self):
        return tuple(self.stmts)


def seq(stmts: Sequence[Stmt]) -> Stmt:
    flat: list[Stmt] = []
    for s in stmts:
        flat.extend(s.stmts if isinstance(s, Seq) else [s])
    return flat[0] if len(flat) == 1 else Seq(flat)


@dataclass(eq=False)
class PrimFunc:
    """A complete kernel: buffer arguments in call order, the symbolic sizes they carry, and the body."""

    name: str
    args: list[Buffer]
    size_vars: list[SizeVar]
    body: Stmt
    outputs: list[Buffer] = field(default_factory=list)

    def __str__(self) -> str:
        from .printer import func_str
        return func_str(self)


def with_children(s: Stmt, kids: Sequence[Stmt]) -> Stmt:
    """A copy of `s` with new child statements (in the order `children()` gives them)."""
    if isinstance(s, For):
        return For(s.var, s.extent, s.kind, kids[0], s.thread_tag, s.annotations)
    if isinstance(s, Allocate):
        return Allocate(s.buffer, kids[0])
    if isinstance(s, IfThenElse):
        return IfThenElse(s.cond, kids[0], kids[1] if len(kids) > 1 else None)
    if isinstance(s, LetStmt):
        return LetStmt(s.var, s.value, kids[0])
    if isinstance(s, Seq):
        return seq(kids) if kids else Seq([])
    return s


def walk_stmts(stmt: Stmt, visit: Callable[[Stmt], None]) -> None:
    visit(stmt)
    for c in stmt.children():
        walk_stmts(c, visit)


def map_exprs(stmt: Stmt, fn: Callable[[Expr], Expr]) -> Stmt:
    """Rebuild a statement tree with `fn` applied to every expression it holds."""
    if isinstance(stmt, For):
        return For(stmt.var, fn(stmt.extent), stmt.kind, map_exprs(stmt.body, fn), stmt.thread_tag,
                   stmt.annotations)
    if isinstance(stmt, Store):
        return Store(stmt.buffer, fn(stmt.index), fn(stmt.value))
    if isinstance(stmt, Allocate):
        return Allocate(stmt.buffer, map_exprs(stmt.body, fn))
    if isinstance(stmt, IfThenElse):
        other = None if stmt.otherwise is None else map_exprs(stmt.otherwise, fn)
        return IfThenElse(fn(stmt.cond), map_exprs(stmt.then, fn), other)
    if isinstance(stmt, LetStmt):
        return LetStmt(stmt.var, fn(stmt.value), map_exprs(stmt.body, fn))
    if isinstance(stmt, Seq):
        return Seq([map_exprs(s, fn) for s in stmt.stmts])
    raise TypeError(f"unknown statement {type(stmt).__name__}")


def replace_buffer_loads(expr: Expr, fn: Callable[[Load], "Expr | None"]) -> Expr:
    return transform(expr, lambda e: fn(e) if isinstance(e, Load) else None)
