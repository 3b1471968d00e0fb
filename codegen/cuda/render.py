"""Loop IR to one CUDA C source (the emulator contract: a fixed prelude, then `__global__` kernels).

Thread-bound loops become blockIdx/threadIdx (guarded where a loop is shorter than its launch dimension), shared
buffers are declared at the top of their kernel, local buffers are C arrays, barriers go where a shared buffer
written by some threads is read (or overwritten after a read) by others, unrolled and vectorized loops become
`#pragma unroll` loops.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace

from ...ir.expr import Const, Expr, SizeVar, Var, free_vars
from ...ir.simplify import simplify_index
from ...ir.loops import Allocate, Buffer, For, IfThenElse, LetStmt, PrimFunc, Seq, Stmt, Store
from .exprs import HELPERS, CudaCodegenError, ExprPrinter, compute_type, storage_type
from .xreduce import CrossThreadReduce
from . import tensorcore
from .double_buffer import ASYNC, double_buffer
from .launch import KernelPlan, LaunchConfigError, expr_json, needs_guard, plan_kernels, shared_access
from .vector_access import VectorAccess, copied_load

PRELUDE = """#ifdef EMBER_EMULATE
#include "cuda_emu.h"
#else
#include <cuda_fp16.h>
#define EMBER_GLOBAL(T) T* __restrict__
#define EMBER_SHARED(T, name, n) __shared__ __align__(32) T name[n]
#define EMBER_LOAD4(p, i) (*reinterpret_cast<const float4*>(&(p)[i]))
#define EMBER_STORE4(p, i, v) (*reinterpret_cast<float4*>(&(p)[i]) = (v))
template <class T> __device__ __forceinline__ void ember_cp_async(T* dst, const T* src, bool full) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], %2, %3;\\n" ::"r"((unsigned)__cvta_generic_to_shared(dst)),
               "l"(src), "n"(sizeof(T)), "r"(full ? (int)sizeof(T) : 0));
}
#define EMBER_CP_ASYNC(dst, i, src, j, full) ember_cp_async(&(dst)[i], &(src)[j], (full))
template <int B, class T> __device__ __forceinline__ void ember_cp_async_vec(T* dst, const T* src) {
  const unsigned to = (unsigned)__cvta_generic_to_shared(dst);
  if (B == 16)
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\\n" ::"r"(to), "l"(src));
  else
    asm volatile("cp.async.ca.shared.global [%0], [%1], %2;\\n" ::"r"(to), "l"(src), "n"(B));
}
#define EMBER_CP_ASYNC_VEC(dst, i, src, j, bytes) ember_cp_async_vec<bytes>(&(dst)[i], &(src)[j])
#define EMBER_CP_ASYNC_WAIT() asm volatile("cp.async.wait_all;\\n" ::: "memory")
#endif
"""
KERNELS_MARK = "// ---- kernels ----"  # everything before it is the same in every source
_RESERVED = {"auto", "bool", "break", "case", "char", "const", "continue", "default", "do", "double", "else", "enum",
             "extern", "float", "for", "goto", "if", "int", "long", "register", "return", "short", "signed",
             "sizeof", "static", "struct", "switch", "typedef", "union", "unsigned", "void", "volatile", "while",
             "new", "delete", "class", "template", "this", "true", "false", "namespace", "operator", "private",
             "public", "dim3", "threadIdx", "blockIdx", "blockDim", "gridDim", "warpSize", "min", "max"}


@dataclass
class CudaModule:
    """The rendered source and everything a launcher needs, as plain data (stored as the `launches` part)."""

    source: str
    launches: dict


def render(func: PrimFunc, max_threads: int, max_shared: int, async_copies: bool = False) -> CudaModule:
    """`async_copies` (sm_80+): double-buffered loops issue the next tile's copies before computing on the current
    one, and mark those fetches (`ASYNC`), whose plain global-to-shared copies the renderer emits as cp.async. Not
    with symbolic sizes: their 64-bit addresses of the copies in flight made ptxas spill the register tiles
    (measured: 12-44 bytes per thread)."""
    async_copies = async_copies and not func.size_vars
    temps, plans = plan_kernels(replace(func, body=double_buffer(func.body, prefetch_first=async_copies)))
    parts = [PRELUDE, HELPERS, KERNELS_MARK]
    kernels = []
    for plan in plans:
        text, info = KernelRenderer(func, plan, temps, max_threads, max_shared).render()
        parts.append(text)
        kernels.append(info)
    if any("nvcuda::wmma::" in p for p in parts):
        parts.insert(parts.index(KERNELS_MARK) + 1, tensorcore.INCLUDE)
    launches = {
        "name": func.name,
        "args": [{"name": b.name, "dtype": b.dtype.name, "shape": [expr_json(d) for d in b.shape]}
                 for b in func.args],
        "size_vars": [v.name for v in func.size_vars],
        "temporaries": [{"name": b.name, "dtype": b.dtype.name, "size": expr_json(b.size())} for b in temps],
        "kernels": kernels,
        "max_threads_per_block": max_threads,
        "max_shared_memory_per_block": max_shared,
    }
    return CudaModule("\n".join(parts), launches)


class KernelRenderer(VectorAccess):
    def __init__(self, func: PrimFunc, plan: KernelPlan, temps: list[Buffer], max_threads: int, max_shared: int):
        self.func, self.plan, self.temps = func, plan, temps
        self.max_threads, self.max_shared = max_threads, max_shared
        self.overlapping = 0  # depth of fetch loops marked ASYNC: their plain copies become cp.async
        self.copies_in_flight = False  # a cp.async was emitted since the last wait: the next barrier waits first
        self.barriers = 0  # barriers emitted so far
        self.lines: list[str] = []
        self.depth = 1
        self.used_names: set[str] = set()
        self.var_names: dict[Var, str] = {}
        self.buf_names: dict[Buffer, str] = {}
        self.size_names: dict[str, str] = {}
        self.pending_reads: set[Buffer] = set()
        self.pending_writes: set[Buffer] = set()
        self.thread_tags = {t for t in plan.extents if t.startswith("threadIdx")}
        self.enclosing: list[str] = []
        self.thread_varying: set[Var] = set()  # values that differ between the threads of a block
        self.divergent = 0  # depth of conditions (or loop counts) that differ between the threads of a block
        self.aligned: set[Buffer] = set()  # buffers accessed as float4: their pointers must be 16-byte aligned
        self.printer = ExprPrinter(_VarNames(self), self.buffer_name, int_loops=not func.size_vars)

    # ---- names ----------------------------------------------------------------------------------------------------
    def fresh(self, name: str) -> str:
        base = re.sub(r"\W", "_", name) or "v"
        if base[0].isdigit() or base in _RESERVED or base.startswith("ember_") or base.startswith("__"):
            base = f"v_{base}"
        out, n = base, 0
        while out in self.used_names:
            n += 1
            out = f"{base}_{n}"
        self.used_names.add(out)
        return out

    def buffer_name(self, buf: Buffer) -> str:
        if buf not in self.buf_names:
            raise CudaCodegenError(f"kernel {self.plan.name}: buffer {buf.name!r} is used outside its allocation")
        return self.buf_names[buf]

    def emit(self, line: str) -> None:
        self.lines.append("  " * self.depth + line)

    # ---- the kernel -----------------------------------------------------------------------------------------------
    def render(self) -> tuple[str, dict]:
        plan = self.plan
        params, info_params = [], []
        arg_index = {b: k for k, b in enumerate(self.func.args)}
        temp_index = {b: k for k, b in enumerate(self.temps)}
        for buf in self.func.args + self.temps:
            if buf not in plan.used:
                continue
            name = self.fresh(buf.name)
            self.buf_names[buf] = name
            ctype = storage_type(buf.dtype) if buf in plan.stored else f"const {storage_type(buf.dtype)}"
            params.append(f"EMBER_GLOBAL({ctype}) {name}")
            ref = {"arg": arg_index[buf]} if buf in arg_index else {"temp": temp_index[buf]}
            info_params.append({"name": name, "kind": "ptr", "ctype": ctype, **ref})
        for k, v in enumerate(self.func.size_vars):
            name = self.fresh(v.name)
            self.size_names[v.name] = name
            params.append(f"long long {name}")
            info_params.append({"name": name, "kind": "scalar", "ctype": "long long", "size": k})
        threads = self._threads()
        shared_bytes = self._declare_shared()
        self.stmt(plan.body)
        if self.copies_in_flight:
            self.emit("EMBER_CP_ASYNC_WAIT();")
        head = (f'extern "C" __global__ void __launch_bounds__({threads if threads else self.max_threads}) '
                f"{plan.name}({', '.join(params)}) {{")
        text = "\n".join([head, *self.lines, "}", ""])
        info = {"name": plan.name, "params": info_params, "grid": [expr_json(e) for e in plan.dim("blockIdx")],
                "block": [expr_json(e) for e in plan.dim("threadIdx")], "shared_bytes": shared_bytes,
                "aligned16": [self.buf_names[b] for b in self.aligned]}
        return text, info

    def _threads(self) -> "int | None":
        """Threads per block when known at compile time, checked against the target's limit."""
        dims = self.plan.dim("threadIdx")
        if not all(isinstance(d, Const) for d in dims):
            return None
        total = 1
        for d in dims:
            total *= d.value  # type: ignore[attr-defined]
        if total > self.max_threads:
            raise LaunchConfigError(f"kernel {self.plan.name}: a block of {' x '.join(str(d) for d in dims)} = "
                                    f"{total} threads exceeds the target's max-threads-per-block={self.max_threads}; "
                                    f"split the thread-bound loops by a smaller factor")
        for axis, d in zip("xyz", dims):
            if d.value > (64 if axis == "z" else 1024):  # type: ignore[attr-defined]
                raise LaunchConfigError(f"kernel {self.plan.name}: threadIdx.{axis} extent {d} exceeds CUDA's "
                                        f"limit of {64 if axis == 'z' else 1024}")
        return max(total, 1)

    def _declare_shared(self) -> int:
        total = 0
        for buf in self.plan.shared:
            size = simplify_index(buf.size())
            if not isinstance(size, Const):
                raise CudaCodegenError(f"kernel {self.plan.name}: shared buffer {buf.name!r} has size {size}, which "
                                       f"is not a compile-time constant; compute it at a loop where its region is "
                                       f"constant")
            name = self.fresh(buf.name)
            self.buf_names[buf] = name
            self.emit(f"EMBER_SHARED({storage_type(buf.dtype)}, {name}, {max(size.value, 1)});")
            total += max(size.value, 1) * buf.dtype.itemsize
        if total > self.max_shared:
            names = ", ".join(b.name for b in self.plan.shared)
            raise LaunchConfigError(f"kernel {self.plan.name}: shared buffers ({names}) need {total} bytes per block, "
                                    f"more than the target's max-shared-memory-per-block={self.max_shared}; use "
                                    f"smaller tiles")
        return total

    # ---- statements -----------------------------------------------------------------------------------------------
    def stmt(self, s: Stmt) -> None:
        if isinstance(s, Seq):
            self.seq(s.stmts)
        elif isinstance(s, For):
            self.loop(s)
        elif isinstance(s, Store):
            if not self._async_copy(s):
                ref = f"{self.buffer_name(s.buffer)}[{self.printer(s.index)}]"
                load = copied_load(s.value, s.buffer.dtype)
                if load is not None:  # no round trip through float for a float16 copy
                    self.emit(f"{ref} = {self.buffer_name(load.buffer)}[{self.printer(load.index)}];")
                else:
                    self.emit(f"{ref} = {self.printer.store_value(s.buffer, s.value)};")
        elif isinstance(s, IfThenElse):
            diverges = self._varies(s.cond)
            self.divergent += diverges
            self.emit(f"if ({self.printer(s.cond)}) {{")
            self.block(s.then)
            if s.otherwise is not None:
                self.emit("} else {")
                self.block(s.otherwise)
            self.emit("}")
            self.divergent -= diverges
        elif isinstance(s, LetStmt):
            name = self.fresh(s.var.name)
            self.emit(f"const {compute_type(s.var.dtype)} {name} = {self.printer(s.value)};")
            self.var_names[s.var] = name
            if self._varies(s.value):
                self.thread_varying.add(s.var)
            self.stmt(s.body)
        elif isinstance(s, Allocate):
            self.allocate(s)
        elif isinstance(s, CrossThreadReduce):
            self.cross_thread_reduce(s)
        elif isinstance(s, (tensorcore.Fragments, *tensorcore.WARP_COLLECTIVES)):
            tensorcore.emit(self, s)
        else:
            raise CudaCodegenError(f"unknown statement {type(s).__name__}")

    def block(self, s: Stmt) -> None:
        self.depth += 1
        self.stmt(s)
        self.depth -= 1

    def per_thread(self) -> bool:
        """Inside a loop for every threadIdx tag, each thread touches its own data: no barrier belongs here (one
        would also be divergent under a guard)."""
        return self.thread_tags <= set(self.enclosing)

    def _varies(self, e: Expr) -> bool:
        return bool(free_vars(e) & self.thread_varying)

    def _crosses_threads(self, hazard: set[Buffer]) -> bool:
        """Whether a shared access conflict involves other threads: always outside the per-thread code, and
        inside it for buffers the block's threads fill together (cooperative fetches)."""
        return bool(hazard) and (not self.per_thread() or bool(hazard & self.plan.cooperative))

    def seq(self, stmts: list[Stmt]) -> None:
        for s in stmts:
            reads, writes = shared_access(s)
            if self._crosses_threads((reads & self.pending_writes) | (writes & self.pending_reads)):
                self.barrier()
            before, barriers = (self.pending_reads.copy(), self.pending_writes.copy()), self.barriers
            self.stmt(s)
            if isinstance(s, (For, Allocate, LetStmt)) and self.barriers > barriers \
                    and not (self.pending_reads or self.pending_writes):
                # it ended with a barrier (a tiled loop does): pending is only what was before it, in case its
                # loops ran no iteration; the statement's own accesses need no second barrier after it
                self.pending_reads, self.pending_writes = before
            else:
                self.pending_reads |= reads
                self.pending_writes |= writes

    def barrier(self) -> None:
        if self.divergent and self.plan.cooperative:
            raise CudaCodegenError(f"kernel {self.plan.name}: a barrier is needed between the cooperative fill of "
                                   f"{', '.join(sorted(b.name for b in self.plan.cooperative))} and its use, under a "
                                   f"condition or loop count that differs between threads (a divergent "
                                   f"__syncthreads); compute the shared stage outside the guarded loops")
        if self.copies_in_flight:
            self.emit("EMBER_CP_ASYNC_WAIT();")
            self.copies_in_flight = False
        if not self.lines or self.lines[-1].strip() != "__syncthreads();":
            self.emit("__syncthreads();")
        self.barriers += 1
        self.pending_reads.clear()
        self.pending_writes.clear()

    def allocate(self, s: Allocate) -> None:
        buf = s.buffer
        if buf.scope == "shared":  # declared at the top of the kernel
            self.stmt(s.body)
            return
        size = simplify_index(buf.size())
        if not isinstance(size, Const):
            raise CudaCodegenError(f"kernel {self.plan.name}: local buffer {buf.name!r} has size {size}, which is "
                                   f"not a compile-time constant (registers need a fixed size)")
        name = self.fresh(buf.name)
        self.buf_names[buf] = name
        self.scoped(f"{storage_type(buf.dtype)} {name}[{max(size.value, 1)}];", s.body)

    def scoped(self, declaration: str, body: Stmt) -> None:
        """A `{ ... }` block declaring register storage for `body` only."""
        self.emit("{")
        self.depth += 1
        self.emit(declaration)
        self.stmt(body)
        self.depth -= 1
        self.emit("}")

    def loop(self, s: For) -> None:
        overlapping = bool(s.annotation(ASYNC))
        self.overlapping += overlapping
        self._loop(s)
        self.overlapping -= overlapping

    def _loop(self, s: For) -> None:
        name = self.fresh(s.var.name)
        self.var_names[s.var] = name
        if s.kind == "thread":
            tag = s.thread_tag
            self.emit("{")
            self.depth += 1
            ctype = self.printer.loop_type(s.var, s.extent)
            self.emit(f"const {ctype} {name} = ({ctype}){tag};")
            self.enclosing.append(tag)
            if tag.startswith("threadIdx"):
                self.thread_varying.add(s.var)
            if needs_guard(s, self.plan.extents[tag]):
                self.divergent += 1
                self.emit(f"if ({name} < {self.printer(s.extent)}) {{")
                self.block(s.body)
                self.emit("}")
                self.divergent -= 1
            else:
                self.stmt(s.body)
            self.enclosing.pop()
            self.depth -= 1
            self.emit("}")
            return
        if s.kind == "vectorized" and self.vector_loop(s):
            return
        self.serial_loop(s)

    def serial_loop(self, s: For) -> None:
        name = self.var_names[s.var]
        if s.kind in ("unrolled", "vectorized"):
            self.emit("#pragma unroll")
        extent = self.printer(s.extent)
        ctype = self.printer.loop_type(s.var, s.extent)
        self.emit(f"for ({ctype} {name} = 0; {name} < {extent}; ++{name}) {{")
        self.depth += 1
        diverges = self._varies(s.extent)
        self.divergent += diverges
        if diverges:
            self.thread_varying.add(s.var)
        self.stmt(s.body)
        reads, writes = shared_access(s.body)
        # the next iteration overwrites what other threads may still read, unless the body ended with a barrier
        if (self.pending_reads or self.pending_writes) and self._crosses_threads(reads & writes):
            self.barrier()
        self.divergent -= diverges
        self.depth -= 1
        self.emit("}")


    def cross_thread_reduce(self, s: CrossThreadReduce) -> None:
        """Private accumulators, then a shuffle tree per warp, then (several warps) a second tree over the warps'
        results staged in shared memory; thread 0 stores."""
        p = self.printer
        dt = s.buffer.dtype
        shuffled = s.red.dtype if s.red is not None else dt
        st = compute_type(shuffled) if not (dt.is_int and dt.bits < 32) else "int"
        ct = compute_type(dt)
        acc = self.fresh(s.acc.name)
        self.buf_names[s.acc] = acc
        combine = _combiner(s.op, dt)
        n = self.plan.extents["threadIdx.x"].value  # type: ignore[attr-defined]
        self.emit("{")
        self.depth += 1
        init = p(s.init)
        self.emit(f"{storage_type(dt)} {acc}[1];")
        self.emit(f"{acc}[0] = {p.store_value(s.acc, s.init)};")
        self.stmt(s.loop)
        value = self.fresh("red")
        self.emit(f"{st} {value} = ({st})({p.load(s.acc, Const(0, s.index.dtype))});")
        mask = "0xffffffffu" if n >= 32 else f"{(1 << n) - 1:#x}u"
        offsets = [o for o in (16, 8, 4, 2, 1) if o < min(n, 32)]
        for off in offsets:
            self.emit(f"{value} = ({st})({combine.format(value, f'({ct})__shfl_down_sync({mask}, {value}, {off})')});")
        if s.red is not None:
            red = self.buf_names[s.red]
            self.emit(f"if ((threadIdx.x & 31u) == 0u) {red}[threadIdx.x >> 5] = {value};")
            self.emit("__syncthreads();")
            self.emit(f"{value} = threadIdx.x < {n // 32}u ? {red}[threadIdx.x] : ({st})({init});")
            for off in (o for o in (16, 8, 4, 2, 1) if o < n // 32):
                self.emit(f"{value} = ({st})({combine.format(value, f'({ct})__shfl_down_sync(0xffffffffu, {value}, {off})')});")
            self.emit("__syncthreads();")
        out = f"{self.buffer_name(s.buffer)}[{p(s.index)}]"
        stored = f"__float2half({value})" if dt.name == "float16" else f"({storage_type(dt)})({value})"
        self.emit(f"if (threadIdx.x == 0u) {out} = {stored};")
        self.depth -= 1
        self.emit("}")
        if s.buffer.scope == "shared":
            self.pending_writes.add(s.buffer)


def _combiner(op: str, dt) -> str:
    """`{0} op {1}` as C for a reduction combiner, with the IR's semantics (NaN-propagating float min/max)."""
    t = compute_type(dt)
    if op == "add":
        return "{0} + {1}"
    if op == "mul":
        return "{0} * {1}"
    kind = "f" if dt.is_float else "i"
    return f"ember_{kind}{op}<{t}>({{0}}, {{1}})"


class _VarNames(dict):
    """Variable lookup for the printer: loop/let variables by identity, size variables by name."""

    def __init__(self, renderer: KernelRenderer):
        super().__init__()
        self.r = renderer

    def __contains__(self, v: object) -> bool:
        return v in self.r.var_names or (isinstance(v, Var) and v.name in self.r.size_names)

    def __getitem__(self, v: Var) -> str:
        if v in self.r.var_names:
            return self.r.var_names[v]
        if v.name in self.r.size_names and (isinstance(v, SizeVar) or v not in self.r.var_names):
            return self.r.size_names[v.name]
        raise KeyError(v)
