"""Double-buffered shared-memory tiles (the `double_buffer` pragma on a loop that fetches tiles, then uses them).

    for ko < n:  fetch(ko) -> T;  use(T)
becomes two buffers T0/T1 and the loop stepping by two, each step's fetch of the next tile issued right after
the use of the current one (into the other buffer):
    fetch(0) -> T0
    for kk < ceil(n/2):  use(T0); fetch(2kk+1) -> T1 | use(T1); fetch(2kk+2) -> T0
The code generator's barrier rule (a barrier where a shared buffer written by other threads is read, or read
ones are overwritten) then needs one barrier per step instead of two, and the global loads of the next tile
are in flight while other warps still compute on the current one.

With asynchronous copies (cp.async, sm_80+) each step issues the next tile's fetch first, then computes on the
current tile while the copies land (`prefetch_first`):
    fetch(0) -> T0
    for kk:  fetch(2kk+1) -> T1 | use(T0) | fetch(2kk+2) -> T0 | use(T1)
The other buffer was last read before the previous step's barrier, so writing it at once is safe; the barrier
before each overwrite of a tile (the same single barrier per step) waits for the copies in flight. Only these
fetches are marked for asynchronous copies (ASYNC): the first tile and a tail tile are used right away.
"""
from __future__ import annotations

from ...ir.dtype import INDEX
from ...ir.expr import Const, Expr, Var, const, substitute, transform
from ...ir.loops import Allocate, Buffer, For, IfThenElse, Load, Seq, Stmt, Store, map_exprs, seq, with_children
from ...ir.simplify import simplify_index
from ...ir.symbolic import simplify
from .exprs import CudaCodegenError
from .launch import shared_access

PRAGMA = "double_buffer"
ASYNC = "async_fetch"  # on the loops of a fetch that overlaps computation: their plain copies may be cp.async


def double_buffer(s: Stmt, prefetch_first: bool = False,
                  copies: "dict[Buffer, tuple[Buffer, Buffer]] | None" = None) -> Stmt:
    """Rewrite every loop annotated with the pragma (anywhere in `s`). Copies of one loop made by loop
    partitioning (a main and a tail loop) share their tile buffers, as they shared the originals."""
    copies = {} if copies is None else copies
    kids = [double_buffer(k, prefetch_first, copies) for k in s.children()]
    if any(k is not o for k, o in zip(kids, s.children())):
        s = with_children(s, kids)
    if isinstance(s, For) and s.annotation(PRAGMA):
        return _rewrite(s, copies, prefetch_first)
    return s


def _rewrite(loop: For, copies: "dict[Buffer, tuple[Buffer, Buffer]]", prefetch_first: bool) -> Stmt:
    where = f"double_buffer on loop {loop.var.name!r}"
    if loop.kind != "serial":
        raise CudaCodegenError(f"{where}: the loop is {loop.kind}; only a serial loop steps through tiles")
    body, tiles = loop.body, []
    while isinstance(body, Allocate) and body.buffer.scope == "shared":
        tiles.append(body.buffer)
        body = body.body
    stmts = list(body.stmts) if hasattr(body, "stmts") else [body]
    fetches = 0
    while fetches < len(stmts) and _fetches_only(stmts[fetches], tiles):
        fetches += 1
    fetch, use = stmts[:fetches], stmts[fetches:]
    if not tiles or not fetch or not use:
        raise CudaCodegenError(f"{where}: expected shared tiles allocated in the loop, fetched first and then "
                               f"used; found {len(tiles)} shared buffers, {len(fetch)} fetch statements")
    if any(shared_access(u)[1] & set(tiles) for u in use):
        raise CudaCodegenError(f"{where}: the statements after the fetch write the shared tiles too")
    for b in tiles:
        if b not in copies:
            copies[b] = (Buffer(f"{b.name}0", b.shape, b.dtype, "shared", b.layout),
                         Buffer(f"{b.name}1", b.shape, b.dtype, "shared", b.layout))
    slots = [{b: copies[b][k] for b in tiles} for k in (0, 1)]
    extent = simplify(loop.extent)
    if isinstance(extent, Const) and extent.value <= 1:  # a single tile (a partitioned tail): nothing to overlap
        out: Stmt = For(loop.var, loop.extent, loop.kind, _on_buffers(body, slots[0]), loop.thread_tag)
        for b in tiles:
            out = Allocate(copies[b][0], out)
        return out
    kk = Var(f"{loop.var.name}2", INDEX)
    step = [kk * 2, kk * 2 + 1, kk * 2 + 2]

    def at(stmts: list[Stmt], k: Expr, slot: int) -> Stmt:
        return _on_buffers(map_exprs(seq(stmts), lambda e: simplify_index(substitute(e, {loop.var: k}))),
                           slots[slot])

    def when(cond: Expr, s: Stmt) -> Stmt:
        cond = simplify(cond)
        if isinstance(cond, Const):
            return s if cond.value else seq([])
        return IfThenElse(cond, s)

    n = loop.extent
    if prefetch_first:
        pair = seq([when(step[1] < n, _overlapping(at(fetch, step[1], 1))), at(use, step[0], 0),
                    when(step[2] < n, _overlapping(at(fetch, step[2], 0))), when(step[1] < n, at(use, step[1], 1))])
    else:
        pair = seq([at(use, step[0], 0), when(step[1] < n, at(fetch, step[1], 1)),
                    when(step[1] < n, seq([at(use, step[1], 1), when(step[2] < n, at(fetch, step[2], 0))]))])
    out = seq([when(const(0, INDEX) < n, at(fetch, const(0, INDEX), 0)),
                     For(kk, (n + 1) // 2, "serial", pair)])
    for b in tiles:
        out = Allocate(copies[b][1], Allocate(copies[b][0], out))
    return out


def _overlapping(s: Stmt) -> Stmt:
    """Mark a fetch issued before the computation it overlaps (the first tile's fetch and a partitioned tail's are
    waited for at once: copying them asynchronously gains nothing and measured ptxas spilling 12-16 bytes)."""
    if isinstance(s, For):
        return For(s.var, s.extent, s.kind, s.body, s.thread_tag, (*s.annotations, (ASYNC, 1)))
    if isinstance(s, Seq):
        return seq([_overlapping(k) for k in s.stmts])
    return s


def _fetches_only(s: Stmt, tiles: list[Buffer]) -> bool:
    """A statement that stores only into the tiles and reads none of them (a cooperative fetch)."""
    reads, writes = shared_access(s)
    stored: list[Buffer] = []

    def go(x: Stmt) -> None:
        if isinstance(x, Store):
            stored.append(x.buffer)
        for k in x.children():
            go(k)
    go(s)
    return bool(stored) and all(b in tiles for b in stored) and not (reads & set(tiles))


def _on_buffers(s: Stmt, mapping: dict[Buffer, Buffer]) -> Stmt:
    """`s` with its loads and stores of the tiles moved onto their copies."""
    def expr(e: Expr) -> Expr:
        return transform(e, lambda n: Load(mapping[n.buffer], n.index)
                         if isinstance(n, Load) and n.buffer in mapping else None)

    def stores(x: Stmt) -> Stmt:
        if isinstance(x, Store):
            return Store(mapping.get(x.buffer, x.buffer), x.index, x.value)
        kids = [stores(k) for k in x.children()]
        return with_children(x, kids) if kids else x

    return stores(map_exprs(s, expr))
