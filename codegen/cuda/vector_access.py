"""Memory accesses the kernel renderer emits wider than one element: float4 loads and stores of 4-lane loops,
and cp.async copies of cooperative tile fills (one element, or a whole 4-, 8- or 16-byte row of lanes).

`VectorAccess` is mixed into render.KernelRenderer, whose state (printer, plan, the async flags) it uses."""
from __future__ import annotations

from ...ir.expr import Binary, Cast, Const, Expr, Select, Var, const, free_vars, select, substitute, transform, walk
from ...ir.loops import Buffer, For, IfThenElse, Load, Store
from ...ir.simplify import affine, coefficient, simplify_index


class VectorAccess:
    def _async_copy(self, s: Store) -> bool:
        """Emit a cooperative fill's element copied unchanged from global memory (or zero where a padding
        condition fails) as cp.async: it lands in shared memory without passing through registers, so the
        thread goes on at once; the barrier that publishes the tile waits for it."""
        value, full = s.value, None
        if isinstance(value, Select) and isinstance(value.b, Const) and value.b.value == 0:
            value, full = value.a, value.cond
        value = self._overlapped_copy(s, value)
        if value is None or value.dtype.bits not in (32, 64):
            return False
        src = value.index if full is None else select(full, value.index, const(0, value.index.dtype))
        self.emit(f"EMBER_CP_ASYNC({self.buffer_name(s.buffer)}, {self.printer(s.index)}, "
                  f"{self.buffer_name(value.buffer)}, {self.printer(src)}, "
                  f"{'true' if full is None else self.printer(full)});")
        self.copies_in_flight = True
        return True

    def _overlapped_copy(self, st: Store, value: Expr) -> "Load | None":
        """The global element `value` copies unchanged into the cooperative tile `st` fills, where that fill
        overlaps computation (a fetch the double-buffer rewrite marked ASYNC: only there a copy in flight pays),
        else None."""
        if not (self.overlapping and st.buffer in self.plan.cooperative):
            return None
        load = copied_load(value, st.buffer.dtype)
        return load if load is not None and load.buffer.scope == "global" else None

    def vector_loop(self, s: For) -> bool:
        """4 float lanes, unit stride, lane 0 at a multiple of 4: EMBER_LOAD4/EMBER_STORE4. A tail guard that
        holds for every lane when it holds for the last one selects between that and the scalar loop. Returns
        False when the loop does not have this form (it is then emitted as an unrolled scalar loop)."""
        lane, body = s.var, s.body
        if self._vector_copy(s):
            return True
        if not (isinstance(s.extent, Const) and s.extent.value == 4):
            return False
        if isinstance(body, Store):
            loads = self._float4_loads(lane, body)
            if loads is None:
                return False
            self._float4(lane, body, loads)
            return True
        if not (isinstance(body, IfThenElse) and body.otherwise is None and isinstance(body.then, Store)
                and body.then.buffer.scope != "local" and _monotone_guard(body.cond, lane)):
            return False  # a guarded register update keeps one scalar copy (two measured register spills)
        loads = self._float4_loads(lane, body.then)
        if loads is None:
            return False
        last = substitute(body.cond, {lane: Const(3, lane.dtype)})
        self.emit(f"if ({self.printer(last)}) {{")
        self.depth += 1
        self._float4(lane, body.then, loads)
        self.depth -= 1
        self.emit("} else {")
        self.depth += 1
        self.serial_loop(s)
        self.depth -= 1
        self.emit("}")
        return True

    def _vector_copy(self, s: For) -> bool:
        """A cooperative tile's row of unit-stride elements copied unchanged from global memory, 4, 8 or 16 bytes
        in all with both ends aligned to that size (a float16 tile's 8 elements): one cp.async of that many
        bytes instead of one per element."""
        st = s.body
        if not (isinstance(s.extent, Const) and isinstance(st, Store)):
            return False
        lanes, load = s.extent.value, self._overlapped_copy(st, st.value)
        nbytes = lanes * st.buffer.dtype.bits // 8
        if load is None or nbytes not in (4, 8, 16):
            return False
        dst, src = (_lane_base(x.index, s.var, lanes) for x in (st, load))
        if dst is None or src is None:
            return False
        self.aligned.add(load.buffer)
        self.emit(f"EMBER_CP_ASYNC_VEC({self.buffer_name(st.buffer)}, {self.printer(dst)}, "
                  f"{self.buffer_name(load.buffer)}, {self.printer(src)}, {nbytes});")
        self.copies_in_flight = True
        return True

    @staticmethod
    def _float4_loads(lane: Var, st: Store) -> "list[Load] | None":
        """The loads to read as float4 when `st` can be one float4 store (uniform loads stay scalar), else None.
        Registers (local buffers) are read and written lane by lane: a store to them vectorizes its float4 loads
        only (e.g. a register tile updated from a shared-memory row), and needs at least one."""
        to_registers = st.buffer.scope == "local" and st.buffer.dtype.name == "float32"
        if not to_registers and _vector_base(st.buffer, st.index, lane) is None:
            return None
        loads: list[Load] = []
        ok = [True]

        def visit(e: Expr) -> None:
            if isinstance(e, Load) and lane in free_vars(e.index) and e.buffer.scope != "local":
                if _vector_base(e.buffer, e.index, lane) is None:
                    ok[0] = False
                elif all(e is not x for x in loads):
                    loads.append(e)
        walk(st.value, visit)
        return loads if ok[0] and (loads or not to_registers) else None

    def _float4(self, lane: Var, st: Store, loads: list[Load]) -> None:
        self.emit("{")
        self.depth += 1
        lane_vars: list[list[Var]] = []
        for load in loads:
            name = self.fresh(f"{load.buffer.name}4")
            base = _vector_base(load.buffer, load.index, lane)
            self.emit(f"const float4 {name} = EMBER_LOAD4({self.buffer_name(load.buffer)}, {self.printer(base)});")
            if load.buffer.scope == "global":
                self.aligned.add(load.buffer)
            comps = [Var(f"{name}.{c}", load.dtype) for c in "xyzw"]
            for c, v in zip("xyzw", comps):
                self.var_names[v] = f"{name}.{c}"
            lane_vars.append(comps)
        values = []
        for k in range(4):
            def rule(n: Expr, k: int = k) -> "Expr | None":
                for load, comps in zip(loads, lane_vars):
                    if n is load:
                        return comps[k]
                return Const(k, lane.dtype) if n is lane else None
            values.append(self.printer(transform(st.value, rule)))
        if st.buffer.scope == "local":
            for k, value in enumerate(values):
                index = simplify_index(substitute(st.index, {lane: Const(k, lane.dtype)}))
                self.emit(f"{self.buffer_name(st.buffer)}[{self.printer(index)}] = {value};")
            self.depth -= 1
            self.emit("}")
            return
        base = _vector_base(st.buffer, st.index, lane)
        self.aligned.add(st.buffer)
        self.emit(f"EMBER_STORE4({self.buffer_name(st.buffer)}, {self.printer(base)}, "
                  f"make_float4({', '.join(values)}));")
        self.depth -= 1
        self.emit("}")


def _monotone_guard(cond: Expr, lane: Var) -> bool:
    """A conjunction of `x < y` / `x <= y` whose left sides grow with `lane` and right sides do not depend on it:
    true for the last lane means true for all."""
    if isinstance(cond, Binary) and cond.op == "and":
        return _monotone_guard(cond.a, lane) and _monotone_guard(cond.b, lane)
    if not (isinstance(cond, Binary) and cond.op in ("lt", "le")) or lane in free_vars(cond.b):
        return False
    coef = coefficient(cond.a, lane)
    return coef is not None and coef >= 0


def _vector_base(buf: Buffer, index: Expr, lane: Var) -> "Expr | None":
    """The index of lane 0 when `buf[index]` is a float4 access: float32 global or shared memory (shared arrays
    are declared 16-byte aligned), unit stride in `lane`, lane 0 at a multiple of 4 elements."""
    if buf.dtype.name != "float32" or buf.scope not in ("global", "shared"):
        return None
    return _lane_base(index, lane, 4)


def _lane_base(index: Expr, lane: Var, lanes: int) -> "Expr | None":
    """The index of lane 0 when `index` has unit stride in `lane` and lane 0 is provably a multiple of `lanes`."""
    if coefficient(index, lane) != 1:
        return None
    base = simplify_index(substitute(index, {lane: Const(0, lane.dtype)}))
    form = affine(base)
    if form is None or form[1] % lanes or any(n % lanes for n in form[0].values()):
        return None
    return base


_EXACT = {"float16": ("float32", "float64"), "float32": ("float64",)}  # types holding every value of the key


def copied_load(value: Expr, dtype) -> "Load | None":
    """The load `value` copies unchanged into a `dtype` element: a load of that dtype, possibly through
    conversions that lose nothing (a float16 widened to float32 and rounded back), else None."""
    casts = []
    while isinstance(value, Cast):
        casts.append(value.dtype.name)
        value = value.value
    if isinstance(value, Load) and value.dtype == dtype \
            and all(c == dtype.name or c in _EXACT.get(dtype.name, ()) for c in casts):
        return value
    return None
