"""Tensor cores: loops annotated `tensor_core` become WMMA m16n16k16 operations (float16 in, float32 accumulation).

The schedule marks the loop that starts a 16 x 16 x 16 (i, j, k) tile of `acc[i, j] += float32(A[i, k]) *
float32(B[k, j])` (B may be indexed [j, k]). Inside the allocation of the local accumulator `acc`, three loop
patterns are rewritten: its initialisation (a constant stored to every element) into `fill_fragment`, each annotated
tile into `load_matrix_sync` of both operands (leading dimension and row/column major read off the indices) and
`mma_sync`, and its write-back (`out[..] = acc[..]`, whole 16 x 16 tiles, no guard) into `store_matrix_sync`. The
accumulator becomes an array of fragments, one per 16 x 16 tile. Anything else touching `acc`, or an annotated
nest that does not have this form, is a `CudaCodegenError`: never silently different code.

Fragments are warp-wide, so every node here is a warp collective: it must run outside any loop bound to
threadIdx.x, with threadIdx.x exactly 32 lanes (`check_warp_collective`, called by the race check).
"""
from __future__ import annotations

from dataclasses import dataclass

from ...compiler.target import sm_number
from ...ir.expr import Binary, Cast, Const, Expr, Var, expr_key, free_vars, substitute, walk
from ...ir.loops import Allocate, Buffer, For, Load, Stmt, Store, with_children
from ...ir.simplify import affine, simplify_index
from ...ir.symbolic import prove_equal
from .exprs import CudaCodegenError

PRAGMA = "tensor_core"
TILE = 16
MIN_ARCH = 70
_W = "nvcuda::wmma::"
INCLUDE = "#ifndef EMBER_EMULATE\n#include <mma.h>\n#endif\n"


@dataclass(frozen=True)
class Operand:
    """One WMMA input tile: `buffer + base`, `ldm` elements between rows (row major) or columns (col major)."""

    buffer: Buffer
    base: Expr
    ldm: Expr
    col_major: bool


@dataclass(eq=False)
class Fragments(Stmt):
    """The accumulator `acc` (rows x cols floats) held as rows/16 x cols/16 accumulator fragments."""

    acc: Buffer
    rows: int
    cols: int
    body: Stmt

    def children(self):
        return (self.body,)


@dataclass(eq=False)
class WmmaFill(Stmt):
    """Every fragment set to `value`, or only the one whose tile starts at `base` in the accumulator."""

    acc: Buffer
    value: Expr
    base: "Expr | None" = None

    def exprs(self):
        return (self.value,) if self.base is None else (self.value, self.base)


@dataclass(eq=False)
class WmmaMma(Stmt):
    """`acc tile at acc_base += A tile x B tile`."""

    acc: Buffer
    acc_base: Expr
    a: Operand
    b: Operand

    def exprs(self):  # the tiles' first elements: the launch planner sees the buffers used and shared reads
        return (self.acc_base, Load(self.a.buffer, self.a.base), Load(self.b.buffer, self.b.base))


@dataclass(eq=False)
class WmmaStore(Stmt):
    """Every accumulator tile stored at `buffer + base` (row major, `ldm` apart); `tiles` pairs a fragment index
    with the base of its destination."""

    buffer: Buffer
    acc: Buffer
    tiles: tuple[tuple[int, Expr], ...]
    ldm: Expr

    def exprs(self):
        return (self.ldm, *(base for _, base in self.tiles))


@dataclass(eq=False)
class WmmaProducts(Stmt):
    """Two unrolled loops (a warp's fragment rows and columns) around one WmmaMma whose A tile moves with one loop
    and B tile with the other: each operand fragment is loaded once per value of its loop, then every product is
    issued (4 + 2 loads for 4 x 2 products instead of 8 + 8; ptxas does not merge repeated fragment loads)."""

    outer: For
    inner: For
    mma: WmmaMma

    def exprs(self):
        return self.mma.exprs()


WARP_COLLECTIVES = (WmmaFill, WmmaMma, WmmaStore, WmmaProducts)


def rewrite_tensor_cores(s: Stmt) -> Stmt:
    """Replace the annotated nests and their accumulator's init and write-back (see the module docstring)."""
    out = _rewrite(s)
    left = _annotated(out)
    if left:
        raise CudaCodegenError(f"loop {left[0].var.name!r} is annotated {PRAGMA} but does not accumulate into a "
                               f"local (register) buffer; cache_write the contraction to 'local' and compute it there")
    return out


def _rewrite(s: Stmt) -> Stmt:
    kids = [_rewrite(k) for k in s.children()]
    s = with_children(s, kids) if kids else s
    if isinstance(s, Allocate) and s.buffer.scope == "local" and any(
            _stored(lp) == [s.buffer] for lp in _annotated(s.body)):
        return _fragments(s)
    return s


def _annotated(s: Stmt) -> list[For]:
    found: list[For] = []

    def go(x: Stmt) -> None:
        if isinstance(x, For) and x.annotation(PRAGMA) is not None:
            found.append(x)
        for k in x.children():
            go(k)
    go(s)
    return found


def _stored(s: Stmt) -> list[Buffer]:
    out: list[Buffer] = []

    def go(x: Stmt) -> None:
        if isinstance(x, Store) and all(x.buffer is not b for b in out):
            out.append(x.buffer)
        for k in x.children():
            go(k)
    go(s)
    return out


def _reads(s: Stmt, buf: Buffer) -> bool:
    found = [False]

    def go(x: Stmt) -> None:
        for e in x.exprs():
            walk(e, lambda n: found.__setitem__(0, True) if isinstance(n, Load) and n.buffer is buf else None)
        for k in x.children():
            go(k)
    go(s)
    return found[0]


def _fragments(alloc: Allocate) -> Fragments:
    acc = alloc.buffer
    dims = [simplify_index(d) for d in acc.shape]
    what = f"the tensor-core accumulator {acc.name!r}"
    if acc.dtype.name != "float32" or not all(isinstance(d, Const) for d in dims):
        raise CudaCodegenError(f"{what} must be float32 with a constant shape (got {acc.dtype.name} {acc.shape})")
    cols = dims[-1].value  # type: ignore[attr-defined]
    rows = 1
    for d in dims[:-1]:
        rows *= d.value  # type: ignore[attr-defined]
    if rows % TILE or cols % TILE:
        raise CudaCodegenError(f"{what} is {rows} x {cols}; WMMA fragments need both sides to be multiples of 16")

    def go(x: Stmt, single: dict) -> Stmt:
        if isinstance(x, For) and x.annotation(PRAGMA) is not None:
            return _mma(x, acc, cols, single)
        stored, reads = _stored(x), _reads(x, acc)
        if not (reads or acc in stored):
            return x
        if isinstance(x, (For, Store)) and stored == [acc] and not reads:
            return _fill(x, acc, rows, cols, single)
        if isinstance(x, (For, Store)) and acc not in stored:
            writeback = _writeback(x, acc, rows, cols)
            if writeback is not None:
                return writeback
        if x.children() and not (isinstance(x, For) and x.kind == "thread"):
            if isinstance(x, For) and isinstance(x.extent, Const) and x.extent.value == 1:
                single = {**single, x.var: Const(0, x.var.dtype)}
            return with_children(x, [go(k, single) for k in x.children()])
        raise CudaCodegenError(f"{what} is used by a statement that is neither its initialisation, a "
                               f"{PRAGMA} tile nor a whole-tile write-back (a guarded write-back means the output "
                               f"is not a multiple of 16: pad it or use the float32 schedule): {x}")
    return Fragments(acc, rows, cols, _share_operands(go(alloc.body, {})))


def _share_operands(x: Stmt) -> Stmt:
    """WmmaProducts for every pair of constant unrolled loops directly around a WmmaMma whose operands each
    move with at most one of them."""
    if isinstance(x, For) and isinstance(x.body, For) and isinstance(x.body.body, WmmaMma):
        outer, inner, mma = x, x.body, x.body.body
        loops = {outer.var, inner.var}
        a, b = (free_vars(op.base) & loops for op in (mma.a, mma.b))
        if all(lp.kind == "unrolled" and isinstance(lp.extent, Const) for lp in (outer, inner)) \
                and len(a) <= 1 and len(b) <= 1 and not a & b and not free_vars(mma.a.ldm) & loops \
                and not free_vars(mma.b.ldm) & loops:
            return WmmaProducts(outer, inner, mma)
    kids = x.children()
    return with_children(x, [_share_operands(k) for k in kids]) if kids else x


def _nest(x: Stmt) -> tuple[list[For], Stmt]:
    loops: list[For] = []
    while isinstance(x, For) and x.kind != "thread":
        loops.append(x)
        x = x.body
    return loops, x


def _fill(x: Stmt, acc: Buffer, rows: int, cols: int, single: dict) -> WmmaFill:
    """The initialisation: of the whole accumulator, or of one 16 x 16 tile (reduction loops outside the tiles)."""
    loops, body = _nest(x)
    count = 1
    for lp in loops:
        count = count * lp.extent.value if isinstance(lp.extent, Const) else 0
    if isinstance(body, Store) and isinstance(body.value, Const):
        if count == rows * cols:
            return WmmaFill(acc, body.value)
        tile = [lp for lp in loops if not (isinstance(lp.extent, Const) and lp.extent.value == 1)]
        if len(tile) == 2 and all(isinstance(lp.extent, Const) and lp.extent.value == TILE for lp in tile):
            r, c = (lp.var for lp in tile)
            if prove_equal(_diff(body.index, r), Const(cols, r.dtype)) and _is_one(_diff(body.index, c)):
                zero = {lp.var: Const(0, lp.var.dtype) for lp in loops}
                return WmmaFill(acc, body.value, _tile_origin(body.index, zero, single, cols, x))
    raise CudaCodegenError(f"the initialisation of the tensor-core accumulator {acc.name!r} must store one constant "
                           f"to all of its {rows * cols} elements, or to one 16 x 16 tile, in one loop nest")


def _tile_origin(index: Expr, zero: dict, single: dict, cols: int, where: object) -> Expr:
    """The accumulator offset of a tile's first element, checked to lie on the 16 x 16 fragment grid."""
    base = simplify_index(substitute(index, zero))
    form = affine(simplify_index(substitute(base, single)))
    if form is None or form[1] % TILE or any(not (n % TILE == 0 and (n % (TILE * cols) == 0 or n < cols))
                                            for n in form[0].values()):
        raise CudaCodegenError(f"{where}: the tile's origin {base} in the accumulator is not on a 16 x 16 tile")
    return base


def _diff(e: Expr, v: Var) -> Expr:
    """How much `e` (linear in `v`) grows per step of `v`."""
    zero, one = Const(0, v.dtype), Const(1, v.dtype)
    return simplify_index(substitute(e, {v: one}) - substitute(e, {v: zero}))


def _linear(e: Expr, v: Var, step: Expr) -> bool:
    two = simplify_index(substitute(e, {v: Const(2, v.dtype)}) - substitute(e, {v: Const(1, v.dtype)}))
    return prove_equal(two, step)


def _is_one(e: Expr) -> bool:
    return isinstance(e, Const) and e.value == 1


def _writeback(x: Stmt, acc: Buffer, rows: int, cols: int) -> "WmmaStore | None":
    loops, body = _nest(x)
    if not (isinstance(body, Store) and isinstance(body.value, Load) and body.value.buffer is acc
            and body.buffer.dtype.name == "float32" and body.buffer.scope in ("global", "shared")):
        return None
    unit = {lp.var: Const(0, lp.var.dtype) for lp in loops if isinstance(lp.extent, Const) and lp.extent.value == 1}
    loops = [lp for lp in loops if lp.var not in unit]
    src, dst = simplify_index(substitute(body.value.index, unit)), simplify_index(substitute(body.index, unit))
    if len(loops) != 2 or not all(isinstance(lp.extent, Const) for lp in loops):
        return None
    (r, nr), (c, nc) = ((lp.var, lp.extent.value) for lp in loops)  # type: ignore[attr-defined]
    ldm = _diff(dst, r)
    if ((nr, nc) != (rows, cols) or not _is_one(_diff(dst, c)) or not _linear(dst, r, ldm)
            or not _linear(dst, c, Const(1, c.dtype))):
        return None
    origin = simplify_index(substitute(src, {r: Const(0, r.dtype), c: Const(0, c.dtype)}))
    if not (prove_equal(_diff(src, r), Const(cols, r.dtype)) and _is_one(_diff(src, c))
            and isinstance(origin, Const) and origin.value == 0):
        return None
    tiles = []
    for fr in range(rows // TILE):
        for fc in range(cols // TILE):
            at = {r: Const(fr * TILE, r.dtype), c: Const(fc * TILE, c.dtype)}
            tiles.append((fr * (cols // TILE) + fc, simplify_index(substitute(dst, at))))
    return WmmaStore(body.buffer, acc, tuple(tiles), ldm)


def _mma(loop: For, acc: Buffer, cols: int, single: dict) -> WmmaMma:
    """`single`: enclosing loops of one iteration (their variables are 0 in the tile-origin check)."""
    loops, body = _nest(loop)
    what = f"the {PRAGMA} nest at loop {loop.var.name!r} (accumulator {acc.name!r})"
    if len(loops) != 3 or any(not (isinstance(lp.extent, Const) and lp.extent.value == TILE) for lp in loops):
        shape = " x ".join(str(lp.extent) for lp in loops)
        raise CudaCodegenError(f"{what} must be exactly three loops of 16 (i, j, k) around one store, got "
                               f"{shape or 'no loops'} around {type(body).__name__}")
    if not (isinstance(body, Store) and body.buffer is acc and isinstance(body.value, Binary)
            and body.value.op == "add"):
        raise CudaCodegenError(f"{what}: the body must be `acc[i, j] = acc[i, j] + float32(A) * float32(B)`")
    key = expr_key(body.index)
    total, prod = body.value.a, body.value.b
    if not (isinstance(total, Load) and total.buffer is acc and expr_key(total.index) == key):
        total, prod = prod, total
    if not (isinstance(total, Load) and total.buffer is acc and expr_key(total.index) == key
            and isinstance(prod, Binary) and prod.op == "mul"):
        raise CudaCodegenError(f"{what}: the body must be `acc[i, j] = acc[i, j] + float32(A) * float32(B)`")
    operands = [_half_load(x, what) for x in (prod.a, prod.b)]
    vs = [lp.var for lp in loops]
    k = [v for v in vs if v not in free_vars(body.index)]
    if len(k) != 1:
        raise CudaCodegenError(f"{what}: the accumulator index must use exactly two of the three loops (i, j)")
    k = k[0]
    i = next((v for v in vs if v is not k and prove_equal(_diff(body.index, v), Const(cols, v.dtype))), None)
    j = next((v for v in vs if v is not k and _is_one(_diff(body.index, v))), None)
    if i is None or j is None or i is j:
        raise CudaCodegenError(f"{what}: the accumulator must be indexed acc[i, j] with rows {cols} apart")
    zero = {v: Const(0, v.dtype) for v in vs}
    base = _tile_origin(body.index, zero, single, cols, what)
    a = next((x for x in operands if j not in free_vars(x.index) and i in free_vars(x.index)), None)
    b = next((x for x in operands if i not in free_vars(x.index) and j in free_vars(x.index)), None)
    if a is None or b is None:
        raise CudaCodegenError(f"{what}: one operand must be indexed by (i, k) and the other by (k, j) or (j, k)")
    return WmmaMma(acc, base, _operand(a, i, k, zero, what), _operand(b, k, j, zero, what))


def _half_load(x: Expr, what: str) -> Load:
    if isinstance(x, Cast) and x.dtype.name == "float32":
        x = x.value
    if not isinstance(x, Load):
        raise CudaCodegenError(f"{what}: each operand must be a load of a float16 buffer, got {x}")
    if x.buffer.dtype.name != "float16":
        raise CudaCodegenError(f"{what}: operand {x.buffer.name!r} is {x.buffer.dtype.name}; tensor cores take "
                               f"float16 operands (use the float32 schedule otherwise)")
    if x.buffer.scope not in ("global", "shared"):
        raise CudaCodegenError(f"{what}: operand {x.buffer.name!r} is in {x.buffer.scope} memory; WMMA loads read "
                               f"global or shared memory")
    return x


def _operand(x: Load, row: Var, col: Var, zero: dict, what: str) -> Operand:
    """A tile indexed [row, col]: row major when col is contiguous, col major when row is."""
    dr, dc = _diff(x.index, row), _diff(x.index, col)
    if _is_one(dc) and _linear(x.index, row, dr) and _linear(x.index, col, dc):
        return Operand(x.buffer, simplify_index(substitute(x.index, zero)), dr, False)
    if _is_one(dr) and _linear(x.index, row, dr) and _linear(x.index, col, dc):
        return Operand(x.buffer, simplify_index(substitute(x.index, zero)), dc, True)
    raise CudaCodegenError(f"{what}: operand {x.buffer.name!r} is not a row- or column-major 16 x 16 tile "
                           f"(index {x.index})")


# ---- checks ----------------------------------------------------------------------------------------------------------

def check_arch(func_body: Stmt, arch: str) -> None:
    """WMMA needs Volta (sm_70) or newer."""
    loops = _annotated(func_body)
    if loops and sm_number(arch) < MIN_ARCH:
        raise CudaCodegenError(f"loop {loops[0].var.name!r} is annotated {PRAGMA}, but the target arch {arch} has no "
                               f"tensor cores (WMMA needs sm_70 or newer); pass -arch=sm_70 or newer")


def check_warp_collective(kernel: str, s: Stmt, enclosing: dict, deps: dict, tags: list[str],
                          lanes: Expr) -> None:
    """A WMMA operation is executed by whole warps, all lanes with the same pointers: it must lie outside every
    threadIdx.x loop (so each of the 32 lanes runs it) in a block of whole warps along threadIdx.x; its store writes
    one tile per warp, so (like a plain store) it must depend on every other bound tag; threadIdx.x is exactly one
    warp, so that each (threadIdx.y, threadIdx.z) is one warp."""
    name = type(s).__name__
    if "threadIdx.x" in enclosing:
        raise CudaCodegenError(f"kernel {kernel}: {name} is a warp collective inside loop "
                               f"{enclosing['threadIdx.x'].var.name!r} bound to threadIdx.x; the {PRAGMA} nest must "
                               f"be executed by all 32 lanes of a warp (bind threadIdx.x only in the operand fetches)")
    if not (isinstance(lanes, Const) and lanes.value == 32):  # more: warps of one (y, z) would repeat each tile
        raise CudaCodegenError(f"kernel {kernel}: {name} needs threadIdx.x to be exactly one warp's 32 lanes, but it "
                               f"has {lanes} threads; bind a loop of 32 to threadIdx.x (e.g. in the shared-memory "
                               f"fetches) and spread warps over threadIdx.y/z")
    if not isinstance(s, WmmaStore) or not s.tiles:
        return
    used = set().union(*(deps.get(v, set()) for _, base in s.tiles for v in free_vars(base)))
    for tag in tags:
        if tag == "threadIdx.x" or (s.buffer.scope == "shared" and tag.startswith("blockIdx")):
            continue
        loop = enclosing.get(tag)
        if loop is not None and isinstance(loop.extent, Const) and loop.extent.value == 1:
            continue
        if loop is None or tag not in used:
            raise CudaCodegenError(f"kernel {kernel}: the tensor-core store to {s.buffer.name!r} does not depend on "
                                   f"{tag}, so several warps write the same tile (a dependency across threads)")


# ---- printing --------------------------------------------------------------------------------------------------------

def emit(r, s: Stmt) -> None:
    """Print a node of this module with the kernel renderer `r` (render.KernelRenderer)."""
    p = r.printer
    if isinstance(s, Fragments):
        name = r.fresh(f"{s.acc.name}_frag")
        r.buf_names[s.acc] = name
        r.scoped(f"{_W}fragment<{_W}accumulator, 16, 16, 16, float> {name}[{(s.rows // TILE) * (s.cols // TILE)}];",
                 s.body)
    elif isinstance(s, WmmaFill) and s.base is not None:
        r.emit(f"{_W}fill_fragment({_fragment(r, s.acc, s.base)}, {p(s.value)});")
    elif isinstance(s, WmmaFill):
        f = r.fresh("f")
        count = simplify_index(s.acc.size()).value // (TILE * TILE)  # type: ignore[attr-defined]
        r.emit(f"for (int {f} = 0; {f} < {count}; ++{f}) {_W}fill_fragment({r.buffer_name(s.acc)}[{f}], {p(s.value)});")
    elif isinstance(s, WmmaMma):
        frag = _fragment(r, s.acc, s.acc_base)
        r.emit("{")
        r.depth += 1
        names = []
        for use, op in (("matrix_a", s.a), ("matrix_b", s.b)):
            n = r.fresh(use[-1] + "_frag")
            r.emit(f"{_operand_fragment(use, op)} {n};")
            r.emit(_load(r, n, op))
            names.append(n)
        r.emit(f"{_W}mma_sync({frag}, {names[0]}, {names[1]}, {frag});")
        r.depth -= 1
        r.emit("}")
    elif isinstance(s, WmmaProducts):
        _emit_products(r, s)
    elif isinstance(s, WmmaStore):
        acc, dst = r.buffer_name(s.acc), r.buffer_name(s.buffer)
        for f, base in s.tiles:
            r.emit(f"{_W}store_matrix_sync({dst} + {p(base)}, {acc}[{f}], (unsigned)({p(s.ldm)}), {_W}mem_row_major);")
        if s.buffer.scope == "shared":
            r.pending_writes.add(s.buffer)


def _operand_fragment(use: str, op: Operand) -> str:
    """The C++ type of a `matrix_a` / `matrix_b` fragment holding `op`'s tiles."""
    layout = "col_major" if op.col_major else "row_major"
    return f"{_W}fragment<{_W}{use}, 16, 16, 16, __half, {_W}{layout}>"


def _load(r, fragment: str, op: Operand) -> str:
    return f"{_W}load_matrix_sync({fragment}, {r.buffer_name(op.buffer)} + {r.printer(op.base)}, " \
           f"(unsigned)({r.printer(op.ldm)}));"


def _emit_products(r, s: WmmaProducts) -> None:
    loops = (s.outer, s.inner)
    names = {lp.var: r.fresh(lp.var.name) for lp in loops}
    r.var_names.update(names)
    r.emit("{")
    r.depth += 1
    picks = []
    for use, op in (("matrix_a", s.mma.a), ("matrix_b", s.mma.b)):
        moving = next((lp for lp in loops if lp.var in free_vars(op.base)), None)
        count = moving.extent.value if moving is not None else 1  # type: ignore[attr-defined]
        frag = r.fresh(use[-1] + "_frags")
        r.emit(f"{_operand_fragment(use, op)} {frag}[{count}];")
        if moving is None:
            r.emit(_load(r, f"{frag}[0]", op))
        else:
            v = names[moving.var]
            r.emit("#pragma unroll")
            r.emit(f"for (int {v} = 0; {v} < {count}; ++{v}) {_load(r, f'{frag}[{v}]', op)}")
        picks.append(f"{frag}[{names[moving.var] if moving is not None else 0}]")
    for lp in loops:
        v, count = names[lp.var], lp.extent.value  # type: ignore[attr-defined]
        r.emit("#pragma unroll")
        r.emit(f"for (int {v} = 0; {v} < {count}; ++{v})")
    frag = _fragment(r, s.mma.acc, s.mma.acc_base)
    r.emit(f"  {_W}mma_sync({frag}, {picks[0]}, {picks[1]}, {frag});")
    r.depth -= 1
    r.emit("}")


def _fragment(r, acc: Buffer, base: Expr) -> str:
    """The fragment holding the tile that starts at accumulator offset `base` (rows of `cols` floats)."""
    cols = simplify_index(acc.shape[-1]).value  # type: ignore[attr-defined]
    b = r.printer(base)
    return f"{r.buffer_name(acc)}[({b}) / {TILE * cols} * {cols // TILE} + ({b}) % {cols} / {TILE}]"
