"""Loop IR to LLVM IR: statements, loops (serial, unrolled, vectorized, parallel) and the kernel entry point.

Parallel loops are outlined into a function run by libgomp's `GOMP_parallel` on a native thread pool: the
caller (holding no GIL, since ctypes releases it) blocks until every thread has finished its static chunk.
"""
from __future__ import annotations

from llvmlite import ir

from ...ir.expr import Expr, Var, free_vars
from ...ir.loops import Allocate, Buffer, For, IfThenElse, LetStmt, Load, PrimFunc, Seq, Stmt, Store, walk_stmts
from ...ir.expr import Binary, walk
from .exprs import CodegenError, ExprEmitter
from .narrow import int_range
from .types import I1, I32, I64, PTR, VOID, compute_type, storage_type

ENTRY = "ember_kernel"
STACK_LIMIT = 64 * 1024
# Outputs this large bypass the caches (non-temporal stores: no read-for-ownership). Smaller ones stay cached for
# the next kernel of a model, which reads them at once: a 4.8 MB activation written around the caches made the
# depthwise convolution after it 3x slower (MobileNet-style, 0.09 -> 0.29 ms).
STREAMING_MIN_BYTES = 16 << 20


class LLVMCodegen(ExprEmitter):
    def __init__(self, func: PrimFunc, triple: str, threads: int, fastmath: bool, avx512: bool = False):
        self.func, self.threads, self.avx512 = func, threads, avx512
        self.fastmath = ("fast",) if fastmath else ()
        self.module = ir.Module(name=func.name)
        self.module.triple = triple
        self.env, self.bufs = {}, {}
        self.ranges = {}
        self.lanes = None
        self.lane_var = None
        self.mask = None
        self.in_parallel = False
        self._outlined = 0
        self.streaming = _streaming_outputs(func)

    def generate(self) -> str:
        params = [PTR] * len(self.func.args) + [I64] * len(self.func.size_vars)
        fn = ir.Function(self.module, ir.FunctionType(VOID, params), ENTRY)
        for k, arg in enumerate(fn.args[:len(self.func.args)]):
            arg.add_attribute("noalias")
            self.bufs[self.func.args[k]] = arg
        for var, arg in zip(self.func.size_vars, fn.args[len(self.func.args):]):
            self.env[var] = arg
        self.builder = ir.IRBuilder(fn.append_basic_block("entry"))
        self.stmt(self.func.body)
        self._finish()
        return str(self.module)

    def _finish(self) -> None:
        """Return; non-temporal stores are weakly ordered, so fence them before anyone reads the output."""
        if self.streaming:
            self.builder.fence("seq_cst")
        self.builder.ret_void()

    # ---- statements -----------------------------------------------------------------------------------------------
    def stmt(self, s: Stmt) -> None:
        if isinstance(s, Seq):
            for x in s.stmts:
                self.stmt(x)
        elif isinstance(s, For):
            self.loop(s)
        elif isinstance(s, Store):
            self.store(s)
        elif isinstance(s, IfThenElse):
            self.if_then_else(s)
        elif isinstance(s, LetStmt):
            self.env[s.var] = self.emit(s.value)
            self.stmt(s.body)
        elif isinstance(s, Allocate):
            self.allocate(s)
        else:
            raise CodegenError(f"unknown statement {type(s).__name__}")

    def store(self, s: Store) -> None:
        bld = self.builder
        buf = s.buffer
        st = storage_type(buf.dtype)
        value = self._accumulation(s) or self.emit(s.value)
        kind, idx = self._access(buf, s.index)
        base = self._ptr(buf)
        align = buf.dtype.itemsize
        if kind == "scalar":
            if self.is_vec(value):
                raise CodegenError(f"vectorized loop {self.lane_var.name!r} writes different values to the same "
                                   f"element of {buf.name!r}: its iterations depend on each other")
            ptr = bld.gep(base, [idx], inbounds=True, source_etype=st)
            raw = self._to_storage(value, buf.dtype)
            if self.mask is not None:
                with bld.if_then(self.any_lane(self.mask)):
                    bld.store(raw, ptr, align=align)
            else:
                bld.store(raw, ptr, align=align)
            return
        value = self.splat(value, self.lanes)
        raw = self._to_storage(value, buf.dtype)
        if kind == "contiguous":
            ptr = bld.gep(base, [idx], inbounds=True, source_etype=st)
            if self.mask is None and buf in self.streaming:
                self._streaming_store(raw, ptr, align)
            elif self.mask is None:
                bld.store(raw, ptr, align=align)
            else:
                fn = self.intrinsic("llvm.masked.store", ir.VoidType(), [raw.type, PTR, I32, self.mask.type],
                                    [raw.type, PTR])
                bld.call(fn, [raw, ptr, ir.Constant(I32, align), self.mask])
            return
        if kind != "gather":  # strided: loads use shuffles of contiguous vectors, stores scatter
            idx = self.emit_index(s.index)
        ptrs = self._pointer_vector(base, idx, st)
        mask = self.mask if self.mask is not None else ir.Constant(ir.VectorType(I1, self.lanes), [1] * self.lanes)
        fn = self.intrinsic("llvm.masked.scatter", ir.VoidType(), [raw.type, ptrs.type, I32, mask.type],
                            [raw.type, ptrs.type])
        bld.call(fn, [raw, ptrs, ir.Constant(I32, align), mask])

    def _streaming_store(self, raw: ir.Value, ptr: ir.Value, align: int) -> None:
        """Non-temporal store when the address is 16-byte aligned (numpy gives 16), plain store otherwise."""
        bld = self.builder
        aligned = bld.icmp_unsigned("==", bld.and_(bld.ptrtoint(ptr, I64), ir.Constant(I64, 15)),
                                    ir.Constant(I64, 0))
        with bld.if_else(aligned) as (then, otherwise):
            with then:
                inst = bld.store(raw, ptr, align=16)
                inst.set_metadata("nontemporal", self.module.add_metadata([ir.Constant(I32, 1)]))
            with otherwise:
                bld.store(raw, ptr, align=align)

    def if_then_else(self, s: IfThenElse) -> None:
        cond = self.emit(s.cond)
        bld = self.builder
        if self.is_vec(cond):
            saved = self.mask
            self.mask = cond if saved is None else bld.and_(saved, cond)
            self.stmt(s.then)
            if s.otherwise is not None:
                inv = bld.not_(cond)
                self.mask = inv if saved is None else bld.and_(saved, inv)
                self.stmt(s.otherwise)
            self.mask = saved
            return
        if s.otherwise is None:
            with bld.if_then(cond):
                self.stmt(s.then)
        else:
            with bld.if_else(cond) as (then, otherwise):
                with then:
                    self.stmt(s.then)
                with otherwise:
                    self.stmt(s.otherwise)

    def _accumulation(self, s: Store) -> "ir.Value | None":
        """`buf[i] = buf[i] + x * y` (a sum-of-products reduction step) as one fused multiply-add where the CPU
        has FMA. Only accumulations are contracted: their summation order already differs from numpy's, while
        element-wise `x * y + z` keeps numpy's two roundings."""
        v = s.value
        if not (isinstance(v, Binary) and v.op == "add" and v.dtype.is_float and v.dtype.bits in (32, 64)):
            return None
        acc, prod = (v.a, v.b) if isinstance(v.a, Load) and v.a.buffer is s.buffer else (v.b, v.a)
        if not (isinstance(acc, Load) and acc.buffer is s.buffer and isinstance(prod, Binary) and prod.op == "mul"
                and prod.dtype == v.dtype):
            return None
        x, y, a = self.unify(self.emit(prod.a), self.emit(prod.b), self.emit(acc))
        return self.builder.call(self.intrinsic("llvm.fmuladd", x.type, [x.type] * 3, [x.type]), [x, y, a])

    def allocate(self, s: Allocate) -> None:
        buf = s.buffer
        st = storage_type(buf.dtype)
        size = buf.size()
        from ...ir.expr import Const
        from ...ir.simplify import simplify_index
        size = simplify_index(size)
        if isinstance(size, Const) and size.value * buf.dtype.itemsize <= STACK_LIMIT:
            self.bufs[buf] = self.entry_alloca(st, max(size.value, 1), align=64)
            self.stmt(s.body)
            return
        saved_lanes, saved_var, saved_mask = self.lanes, self.lane_var, self.mask
        self.lanes = self.lane_var = self.mask = None
        nbytes = self.builder.mul(self.emit(size), ir.Constant(I64, buf.dtype.itemsize))
        rounded = self.builder.and_(self.builder.add(nbytes, ir.Constant(I64, 127)), ir.Constant(I64, ~63))
        alloc = self.extern("aligned_alloc", PTR, [I64, I64])
        ptr = self.builder.call(alloc, [ir.Constant(I64, 64), rounded])
        self.lanes, self.lane_var, self.mask = saved_lanes, saved_var, saved_mask
        self.bufs[buf] = ptr
        self.stmt(s.body)
        self.builder.call(self.extern("free", VOID, [PTR]), [ptr])

    # ---- loops ----------------------------------------------------------------------------------------------------
    def loop(self, s: For) -> None:
        kind = s.kind
        extent = int_range(s.extent, self.ranges)
        if extent is not None and extent[1] >= 1:
            self.ranges[s.var] = (0, extent[1] - 1)
        else:
            self.ranges.pop(s.var, None)
        if kind == "thread":
            raise CodegenError(f"loop {s.var.name!r} is bound to {s.thread_tag}; the llvm target has no GPU threads")
        if kind == "vectorized":
            self.vector_loop(s)
        elif kind == "unrolled":
            self.unrolled_loop(s)
        elif kind == "parallel" and not self.in_parallel and self.lanes is None:
            self.parallel_loop(s)
        elif not (dict(s.annotations).get("lane_reduce") and self.lane_reduce_loop(s)):
            self.serial_loop(s, self.emit(s.extent), lambda: self.stmt(s.body))

    def lane_reduce_loop(self, s: For) -> bool:
        """A loop with the `lane_reduce` pragma of the form `buf[i] = buf[i] op f(l)` (op: float add/max/min,
        i not depending on l, a power-of-two trip count) as f over all l in one vector, halved log2(n) times, then
        one scalar step: the combination of rfactor's vector partials without a serial chain through them. False
        (and nothing emitted) for any other loop, which then runs serially."""
        from ...ir.expr import Const
        body, n = s.body, s.extent.value if isinstance(s.extent, Const) else 0
        if self.lanes is not None or n < 2 or n & (n - 1) or not isinstance(body, Store):
            return False
        v = body.value
        if not (isinstance(v, Binary) and v.op in ("add", "max", "min") and v.dtype.is_float):
            return False
        acc, term = (v.a, v.b) if _reads_target(v.a, body) else (v.b, v.a)
        if not _reads_target(acc, body) or s.var in free_vars(body.index) or s.var in free_vars(acc.index):
            return False
        bld = self.builder
        self.lanes, self.lane_var = n, s.var
        self.env[s.var] = ir.Constant(ir.VectorType(I64, n), list(range(n)))
        try:
            vec = self.splat(self.emit(term), n)
        finally:
            self.lanes, self.lane_var = None, None
        while n > 1:
            n //= 2
            lo, hi = (bld.shuffle_vector(vec, vec, ir.Constant(ir.VectorType(I32, n), list(range(k, k + n))))
                      for k in (0, n))
            vec = self.float_binary(v.op, lo, hi)
        total = Var(f"{s.var.name}.total", v.dtype)
        self.env[total] = bld.extract_element(vec, ir.Constant(I32, 0))
        self.store(Store(body.buffer, body.index, Binary(v.op, acc, total, v.dtype)))
        return True

    def serial_loop(self, s: For, extent: ir.Value, body, start: "ir.Value | None" = None) -> None:
        bld = self.builder
        if self.is_vec(extent):
            raise CodegenError(f"loop {s.var.name!r} has an extent that differs across vector lanes")
        pre = bld.block
        head = bld.append_basic_block(f"{s.var.name}.head")
        body_bb = bld.append_basic_block(f"{s.var.name}.body")
        done = bld.append_basic_block(f"{s.var.name}.done")
        begin = start if start is not None else ir.Constant(I64, 0)
        bld.branch(head)
        bld.position_at_end(head)
        phi = bld.phi(I64, name=s.var.name)
        phi.add_incoming(begin, pre)
        bld.cbranch(bld.icmp_signed("<", phi, extent), body_bb, done)
        bld.position_at_end(body_bb)
        self.env[s.var] = phi
        body()
        nxt = bld.add(phi, ir.Constant(I64, 1), flags=("nsw",))
        phi.add_incoming(nxt, bld.block)
        bld.branch(head)
        bld.position_at_end(done)

    def unrolled_loop(self, s: For) -> None:
        from ...ir.expr import Const
        if not isinstance(s.extent, Const):
            raise CodegenError(f"unrolled loop {s.var.name!r} needs a constant extent")
        for i in range(s.extent.value):
            self.env[s.var] = ir.Constant(I64, i)
            self.stmt(s.body)

    def vector_loop(self, s: For) -> None:
        from ...ir.expr import Const
        if not isinstance(s.extent, Const):
            raise CodegenError(f"vectorized loop {s.var.name!r} needs a constant extent")
        lanes = s.extent.value
        if self.lanes is not None:
            raise CodegenError(f"vectorized loop {s.var.name!r} is nested in another vectorized loop")
        if lanes == 1:
            self.env[s.var] = ir.Constant(I64, 0)
            self.stmt(s.body)
            return
        self.lanes, self.lane_var = lanes, s.var
        self.env[s.var] = ir.Constant(ir.VectorType(I64, lanes), list(range(lanes)))
        try:
            self.stmt(s.body)
        finally:
            self.lanes, self.lane_var = None, None

    # ---- parallel loops -------------------------------------------------------------------------------------------
    def parallel_loop(self, s: For) -> None:
        """Outline the loop body; each pool thread runs a contiguous chunk of iterations."""
        captured_vars, captured_bufs = _captures(s)
        extent = self.emit(s.extent)
        fields = [self.env[v].type for v in captured_vars] + [PTR] * len(captured_bufs) + [I64]
        struct = ir.LiteralStructType(fields)
        bld = self.builder
        closure = self.entry_alloca(struct)
        values = [self.env[v] for v in captured_vars] + [self.bufs[b] for b in captured_bufs] + [extent]
        for k, val in enumerate(values):
            bld.store(val, bld.gep(closure, [ir.Constant(I32, 0), ir.Constant(I32, k)], source_etype=struct))

        self._outlined += 1
        worker = ir.Function(self.module, ir.FunctionType(VOID, [PTR]), f"{ENTRY}.parallel.{self._outlined}")
        worker.linkage = "internal"
        outer_builder, outer_env, outer_bufs = self.builder, self.env, self.bufs
        self.builder = ir.IRBuilder(worker.append_basic_block("entry"))
        self.env, self.bufs = dict(outer_env), dict(outer_bufs)
        self.in_parallel = True
        b = self.builder
        loaded = [b.load(b.gep(worker.args[0], [ir.Constant(I32, 0), ir.Constant(I32, k)], source_etype=struct),
                         typ=fields[k]) for k in range(len(fields))]
        for v, val in zip(captured_vars, loaded):
            self.env[v] = val
        for buf, val in zip(captured_bufs, loaded[len(captured_vars):]):
            self.bufs[buf] = val
        total = loaded[-1]
        nthreads = b.sext(b.call(self.extern("omp_get_num_threads", I32, []), []), I64)
        tid = b.sext(b.call(self.extern("omp_get_thread_num", I32, []), []), I64)
        chunk = b.sdiv(b.add(total, b.sub(nthreads, ir.Constant(I64, 1))), nthreads)
        begin = b.mul(tid, chunk)
        end = b.call(self.intrinsic("llvm.smin", I64, [I64, I64], [I64]), [b.add(begin, chunk), total])
        self.serial_loop(s, end, lambda: self.stmt(s.body), start=begin)
        self._finish()
        self.builder, self.env, self.bufs = outer_builder, outer_env, outer_bufs
        self.in_parallel = False
        gomp = self.extern("GOMP_parallel", VOID, [PTR, PTR, I32, I32])
        bld.call(gomp, [worker, closure, ir.Constant(I32, self.threads), ir.Constant(I32, 0)])


def _reads_target(e: Expr, s: Store) -> bool:
    """`e` loads the element `s` stores to."""
    from ...ir.simplify import affine, simplify_index
    if not (isinstance(e, Load) and e.buffer is s.buffer):
        return False
    form = affine(simplify_index(e.index - s.index))
    return form is not None and not form[0] and form[1] == 0


def _streaming_outputs(func: PrimFunc) -> set[Buffer]:
    """Large outputs of constant size that the kernel never reads back."""
    from ...ir.expr import Const
    from ...ir.simplify import simplify_index
    loaded: set[Buffer] = set()

    def visit(s: Stmt) -> None:
        for e in s.exprs():
            walk(e, lambda n: loaded.add(n.buffer) if isinstance(n, Load) else None)
    walk_stmts(func.body, visit)
    out = set()
    for buf in func.outputs:
        size = simplify_index(buf.size())
        if buf not in loaded and isinstance(size, Const) and size.value * buf.dtype.itemsize >= STREAMING_MIN_BYTES:
            out.add(buf)
    return out


def _captures(loop: For) -> tuple[list[Var], list[Buffer]]:
    """Variables and buffers the loop body uses but does not define."""
    bound: set[Var] = {loop.var}
    allocated: set[Buffer] = set()
    used_vars: dict[Var, None] = {}
    used_bufs: dict[Buffer, None] = {}

    def use_expr(e: Expr) -> None:
        for v in sorted(free_vars(e), key=lambda v: v.name):
            used_vars[v] = None

        def visit(n: Expr) -> None:
            if isinstance(n, Load):
                used_bufs[n.buffer] = None
        walk(e, visit)

    def visit_stmt(s: Stmt) -> None:
        if isinstance(s, For):
            bound.add(s.var)
        elif isinstance(s, LetStmt):
            bound.add(s.var)
        elif isinstance(s, Allocate):
            allocated.add(s.buffer)
        elif isinstance(s, Store):
            used_bufs[s.buffer] = None
        for e in s.exprs():
            use_expr(e)
        if isinstance(s, Allocate):
            use_expr(s.buffer.size())

    walk_stmts(loop.body, visit_stmt)
    return [v for v in used_vars if v not in bound], [b for b in used_bufs if b not in allocated]


__all__ = ["LLVMCodegen", "ENTRY", "compute_type"]
