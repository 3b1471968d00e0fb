"""The general fallback: a loop nest run by the scalar unit over GlobalTensor GetValue/SetValue.

Slow but correct for any nest (gathers, several reduce axes, user schedules), so every model compiles. The outer
loops, flattened, are shared among blocks when their iterations provably write disjoint elements
(analyze.splittable); otherwise one block runs the nest.
"""
from __future__ import annotations

from ...ir.expr import Const, SizeVar, free_vars
from ...ir.loops import Allocate, Buffer, For, IfThenElse, LetStmt, Load, Seq, Stmt, Store
from .analyze import reads_writes, splittable
from .cexpr import AscendError, CPrinter, check_dtypes, compute_type, ident, storage_type
from .kernel import KernelSource, entry, gm_load, tiling_struct, tiling_var

LOCAL_LIMIT = 16384  # elements of one scalar-local array (lives in the scalar stack)


class _Body:
    def __init__(self, kernel: str):
        self.kernel = kernel
        self.local: set[int] = set()
        self.lines: list[str] = []
        self.p = CPrinter(self.load, tiling_var)

    def load(self, ld: Load) -> str:
        idx = self.p(ld.index)
        if id(ld.buffer) in self.local:
            return f"{ident(ld.buffer.name)}[{idx}]"
        return gm_load(ld, idx)

    def stmt(self, s: Stmt, depth: int) -> None:
        pad = "    " * depth
        for e in s.exprs():
            check_dtypes(e, f"kernel {self.kernel}")
        if isinstance(s, For):
            v = ident(s.var.name)
            self.lines.append(f"{pad}for (int64_t {v} = 0; {v} < {self.p(s.extent)}; ++{v}) {{")
            self.stmt(s.body, depth + 1)
            self.lines.append(f"{pad}}}")
        elif isinstance(s, Store):
            buf, idx, val = s.buffer, self.p(s.index), self.p(s.value)
            t = storage_type(buf.dtype, f"kernel {self.kernel}, buffer {buf.name}")
            if id(buf) in self.local:
                self.lines.append(f"{pad}{ident(buf.name)}[{idx}] = ({compute_type(buf.dtype)})({val});")
            else:
                self.lines.append(f"{pad}{ident(buf.name)}Gm.SetValue({idx}, ({t})({val}));")
        elif isinstance(s, Seq):
            for c in s.stmts:
                self.stmt(c, depth)
        elif isinstance(s, IfThenElse):
            self.lines.append(f"{pad}if ({self.p(s.cond)}) {{")
            self.stmt(s.then, depth + 1)
            if s.otherwise is not None:
                self.lines.append(f"{pad}}} else {{")
                self.stmt(s.otherwise, depth + 1)
            self.lines.append(f"{pad}}}")
        elif isinstance(s, LetStmt):
            self.lines.append(f"{pad}{{")
            self.lines.append(f"{pad}    const {compute_type(s.var.dtype)} {ident(s.var.name)} = {self.p(s.value)};")
            self.stmt(s.body, depth + 1)
            self.lines.append(f"{pad}}}")
        elif isinstance(s, Allocate):
            n = s.buffer.size()
            if not isinstance(n, Const) or n.value > LOCAL_LIMIT:
                raise AscendError(f"kernel {self.kernel}: local buffer {s.buffer.name} of {n} elements exceeds "
                                  f"{LOCAL_LIMIT} elements of scalar-local memory")
            storage_type(s.buffer.dtype, f"kernel {self.kernel}, buffer {s.buffer.name}")
            self.local.add(id(s.buffer))
            self.lines.append(f"{pad}{{")
            self.lines.append(f"{pad}    {compute_type(s.buffer.dtype)} {ident(s.buffer.name)}[{n.value}];")
            self.stmt(s.body, depth + 1)
            self.lines.append(f"{pad}}}")
        else:
            raise AscendError(f"kernel {self.kernel}: no AscendC form for statement {type(s).__name__}")


def render_scalar(name: str, stmt: Stmt, cores: int, size_vars: list[SizeVar]) -> KernelSource:
    reads, writes = reads_writes(stmt)
    bufs: list[Buffer] = writes + [b for b in reads if all(b is not w for w in writes)]
    params = [ident(b.name) for b in bufs]
    outer = splittable(stmt, cores)
    body = _Body(name)
    sizes = sorted({v for b in bufs for d in b.shape for v in free_vars(d) if isinstance(v, SizeVar)} |
                   {v for v in size_vars if v in _vars(stmt)}, key=lambda v: v.name)
    fields = ["blocks"] + [ident(v.name) for v in sizes]
    cls = f"Kernel_{name}"
    init = [f"        {ident(b.name)}Gm.SetGlobalBuffer((__gm__ {storage_type(b.dtype, b.name)}*){ident(b.name)}, "
            f"{body.p(b.size())});" for b in bufs]
    if outer:
        body.stmt(outer[-1].body, 3)
        extents = [f"({body.p(loop.extent)})" for loop in outer]
        unflatten = []
        for k, loop in enumerate(outer):
            inner = " * ".join(extents[k + 1:]) or "1"
            digit = f"flat / ({inner})" + (f" % {extents[k]}" if k else "")
            unflatten.append(f"            const int64_t {ident(loop.var.name)} = {digit};")
        process = [f"        const int64_t work = {' * '.join(extents)};",
                   "        const int64_t per = (work + tiling.blocks - 1) / tiling.blocks;",
                   "        const int64_t lo = AscendC::GetBlockIdx() * per;",
                   "        const int64_t hi = lo + per < work ? lo + per : work;",
                   "        for (int64_t flat = lo; flat < hi; ++flat) {", *unflatten, *body.lines, "        }"]
        work = 1
        for loop in outer:
            work = work * loop.extent.value if isinstance(loop.extent, Const) and work else 0
        blocks = max(1, min(cores, work)) if work else cores
    else:
        body.stmt(stmt, 2)
        process = body.lines
        blocks = 1
    members = "\n".join(f"    AscendC::GlobalTensor<{storage_type(b.dtype, b.name)}> {ident(b.name)}Gm;"
                        for b in bufs)
    code = (tiling_struct(name, fields) + f"\nclass {cls} {{\npublic:\n    __aicore__ inline {cls}() {{}}\n"
            f"    __aicore__ inline void Init({', '.join(f'GM_ADDR {p}' for p in params)}, "
            f"const EmberTiling_{name}& t)\n    {{\n        tiling = t;\n" + "\n".join(init) + "\n    }\n"
            "    __aicore__ inline void Process()\n    {\n" + "\n".join(process) + "\n    }\n\nprivate:\n"
            f"    EmberTiling_{name} tiling;\n{members}\n}};\n\n" + entry(name, cls, params))
    tiling: list = [blocks] + [v.name for v in sizes]
    written = {id(b) for b in writes}
    return KernelSource(name, "scalar", code, [(b.name, id(b) in written) for b in bufs], fields, tiling, blocks,
                        plan={"blocks": blocks, "split": f"{len(outer)} outer loop(s)" if outer else "one block"})


def _vars(stmt: Stmt) -> set:
    found: set = set()
    from ...ir.loops import walk_stmts

    def visit(s: Stmt) -> None:
        for e in s.exprs():
            found.update(free_vars(e))
    walk_stmts(stmt, visit)
    return found
