"""Expressions to LLVM IR, in scalar or vector form.

Inside a vectorized loop every value is either uniform (a scalar, same for all lanes) or varying (a vector).
Loads pick the cheapest form: scalar for uniform indices, one vector load for unit stride, a few vector loads and
shuffles for small constant strides (unmasked), a gather otherwise; a mask (from guards and selects) turns them
into masked loads so no lane reads out of bounds.
"""
from __future__ import annotations

from llvmlite import ir

from ...ir.dtype import DType, INDEX
from ...ir.expr import Binary, Call, Cast, Const, Expr, Select, Var, free_vars, substitute, walk
from ...ir.loops import Buffer, Load
from ...ir.simplify import coefficient, simplify_index
from .narrow import narrowable
from .vmath import VECTOR_MATH, fast_path, vector_exp
from .types import F16, F32, F64, I1, I8, I32, I64, PTR, compute_type, mangle, storage_type, vector_of

LIBM_ONLY = {"erf": "erf", "log1p": "log1p", "expm1": "expm1", "asinh": "asinh", "acosh": "acosh",
             "atanh": "atanh", "tan": "tan"}
LLVM_UNARY = {"exp": "exp", "exp2": "exp2", "log": "log", "log2": "log2", "sqrt": "sqrt", "sin": "sin",
              "cos": "cos", "tanh": "tanh", "sinh": "sinh", "cosh": "cosh", "asin": "asin", "acos": "acos",
              "atan": "atan", "floor": "floor", "ceil": "ceil", "trunc": "trunc", "round": "roundeven"}
MAX_LOAD_STRIDE = 4  # strided vector loads up to this stride become contiguous loads + shuffles, not gathers
FCMP = {"lt": "<", "le": "<=", "gt": ">", "ge": ">=", "eq": "==", "ne": "!="}


class CodegenError(ValueError):
    pass


class ExprEmitter:
    """State shared with the statement emitter: the builder, variable bindings and the vector context."""

    module: ir.Module
    builder: ir.IRBuilder
    env: dict
    bufs: dict
    lanes: "int | None"
    lane_var: "Var | None"
    mask: "ir.Value | None"
    fastmath: tuple
    ranges: dict  # loop variable -> inclusive (lo, hi) where its loop's extent is bounded
    narrow: bool = False  # emitting a varying index expression on int32 lanes
    avx512: bool = False  # the target CPU has AVX-512F (vector math may use its instructions)

    # ---- helpers --------------------------------------------------------------------------------------------------
    def intrinsic(self, name: str, ret: ir.Type, args: list[ir.Type], overloads: list[ir.Type]) -> ir.Function:
        full = name + "".join("." + mangle(t) for t in overloads)
        fn = self.module.globals.get(full)
        if fn is None:
            fn = ir.Function(self.module, ir.FunctionType(ret, args), full)
        return fn

    def extern(self, name: str, ret: ir.Type, args: list[ir.Type]) -> ir.Function:
        fn = self.module.globals.get(name)
        if fn is None:
            fn = ir.Function(self.module, ir.FunctionType(ret, args), name)
        return fn

    @staticmethod
    def is_vec(v: ir.Value) -> bool:
        return isinstance(v.type, ir.VectorType)

    def splat(self, v: ir.Value, lanes: int) -> ir.Value:
        if self.is_vec(v):
            return v
        vt = ir.VectorType(v.type, lanes)
        if isinstance(v, ir.Constant):
            return ir.Constant(vt, [v.constant] * lanes)
        b = self.builder
        tmp = b.insert_element(ir.Constant(vt, ir.Undefined), v, ir.Constant(I32, 0))
        return b.shuffle_vector(tmp, ir.Constant(vt, ir.Undefined), ir.Constant(ir.VectorType(I32, lanes), [0] * lanes))

    def unify(self, *vals: ir.Value) -> list[ir.Value]:
        lanes = next((v.type.count for v in vals if self.is_vec(v)), None)
        return list(vals) if lanes is None else [self.splat(v, lanes) for v in vals]

    def const(self, value, dt: DType) -> ir.Constant:
        t = compute_type(dt)
        if dt.is_bool:
            return ir.Constant(I1, int(bool(value)))
        return ir.Constant(t, value)

    def varies(self, e: Expr) -> bool:
        """Whether `e` differs across the lanes of the current vector loop."""
        if self.lane_var is None:
            return False
        found = [False]

        def visit(n: Expr) -> None:
            if n is self.lane_var or (isinstance(n, Var) and n in self.env and self.is_vec(self.env[n])):
                found[0] = True
        walk(e, visit)
        return found[0]

    # ---- expressions ----------------------------------------------------------------------------------------------
    def emit(self, e: Expr) -> ir.Value:
        if isinstance(e, Const):
            return ir.Constant(I32, e.value) if self.narrow else self.const(e.value, e.dtype)
        if isinstance(e, Var):
            if e not in self.env:
                raise CodegenError(f"variable {e.name!r} is used outside the loop that defines it")
            v = self.env[e]
            return self._narrowed(v) if self.narrow else v
        if isinstance(e, Load):
            return self.load(e.buffer, e.index)
        if isinstance(e, Binary):
            v = self.emit_index(e)
            if not self.narrow and self.is_vec(v) and v.type.element == I32 and e.dtype == INDEX:
                return self.builder.sext(v, vector_of(I64, v.type.count))
            return v
        if isinstance(e, Cast):
            return self.cast(self.emit(e.value), e.value.dtype, e.dtype)
        if isinstance(e, Call):
            return self.call(e)
        if isinstance(e, Select):
            return self.select(e)
        raise CodegenError(f"cannot generate code for {type(e).__name__} `{e}` (was the tensor IR lowered?)")

    def emit_index(self, e: Expr) -> ir.Value:
        """`e`, on int32 lanes where it is a varying 64-bit index computation that provably fits (see narrow.py)."""
        if not isinstance(e, Binary):
            return self.emit(e)
        if self.narrow or self.lane_var is None or not self.varies(e) or not narrowable(e, self.ranges):
            return self.binary(e)
        self.narrow = True
        try:
            return self.binary(e)
        finally:
            self.narrow = False

    def _narrowed(self, v: ir.Value) -> ir.Value:
        lanes = v.type.count if self.is_vec(v) else None
        if lanes is not None and isinstance(v, ir.Constant):  # a lane index vector
            return ir.Constant(ir.VectorType(I32, lanes), [c.constant for c in v.constant])
        return self.builder.trunc(v, vector_of(I32, lanes))

    def binary(self, e: Binary) -> ir.Value:
        a, b = self.unify(self.emit(e.a), self.emit(e.b))
        dt = e.a.dtype
        bld = self.builder
        if e.op in FCMP:
            if dt.is_float:
                return bld.fcmp_unordered("!=", a, b) if e.op == "ne" else bld.fcmp_ordered(FCMP[e.op], a, b)
            return (bld.icmp_signed if dt.is_signed else bld.icmp_unsigned)(FCMP[e.op], a, b)
        if dt.is_float:
            return self.float_binary(e.op, a, b)
        return self.int_binary(e.op, a, b, dt)

    def float_binary(self, op: str, a: ir.Value, b: ir.Value) -> ir.Value:
        bld, fm = self.builder, self.fastmath
        if op == "add": return bld.fadd(a, b, flags=fm)
        if op == "sub": return bld.fsub(a, b, flags=fm)
        if op == "mul": return bld.fmul(a, b, flags=fm)
        if op == "div": return bld.fdiv(a, b, flags=fm)
        if op in ("floordiv", "mod"):
            q = self.unary_intrinsic("floor", bld.fdiv(a, b, flags=fm))
            return q if op == "floordiv" else bld.fsub(a, bld.fmul(b, q, flags=fm), flags=fm)
        if op in ("truncdiv", "truncmod"):
            q = self.unary_intrinsic("trunc", bld.fdiv(a, b, flags=fm))
            return q if op == "truncdiv" else bld.frem(a, b)
        if op in ("min", "max"):
            # a > b ? a : b is one x86 max instruction (NaN in b passes); a NaN in a is put back by one masked
            # move. llvm.maximum also orders -0 below +0, which costs three more instructions per vector.
            pick = bld.select(bld.fcmp_ordered("<" if op == "min" else ">", a, b), a, b)
            return bld.select(bld.fcmp_unordered("uno", a, a), a, pick)
        if op == "pow":
            return bld.call(self.intrinsic("llvm.pow", a.type, [a.type, a.type], [a.type]), [a, b])
        raise CodegenError(f"operator {op} is not defined on floats")

    def int_binary(self, op: str, a: ir.Value, b: ir.Value, dt: DType) -> ir.Value:
        bld = self.builder
        signed = dt.is_signed
        if op == "add": return bld.add(a, b)
        if op == "sub": return bld.sub(a, b)
        if op == "mul": return bld.mul(a, b)
        if op == "and": return bld.and_(a, b)
        if op == "or": return bld.or_(a, b)
        if op == "xor": return bld.xor(a, b)
        if op in ("min", "max"):
            name = ("llvm.smin" if signed else "llvm.umin") if op == "min" else ("llvm.smax" if signed else "llvm.umax")
            return bld.call(self.intrinsic(name, a.type, [a.type, a.type], [a.type]), [a, b])
        zero = ir.Constant(a.type, None)
        if op in ("shl", "shr"):
            width = ir.Constant(a.type, dt.bits) if not self.is_vec(a) \
                else self.splat(ir.Constant(a.type.element, dt.bits), a.type.count)
            in_range = bld.icmp_unsigned("<", b, width)
            safe = bld.select(in_range, b, zero)
            if op == "shl":
                return bld.select(in_range, bld.shl(a, safe), zero)
            shifted = bld.ashr(a, safe) if signed else bld.lshr(a, safe)
            sat = bld.ashr(a, bld.sub(width, self._one_like(a))) if signed else zero
            return bld.select(in_range, shifted, sat)
        if op == "pow":
            fa = self.cast(a, dt, _f64()); fb = self.cast(b, dt, _f64())
            r = bld.call(self.intrinsic("llvm.pow", fa.type, [fa.type, fa.type], [fa.type]), [fa, fb])
            return self.cast(r, _f64(), dt)
        if op in ("floordiv", "mod", "truncdiv", "truncmod"):
            return self._int_division(op, a, b, signed)
        raise CodegenError(f"operator {op} is not defined on integers")

    def _one_like(self, v: ir.Value) -> ir.Value:
        t = v.type.element if self.is_vec(v) else v.type
        one = ir.Constant(t, 1)
        return self.splat(one, v.type.count) if self.is_vec(v) else one

    def _int_division(self, op: str, a: ir.Value, b: ir.Value, signed: bool) -> ir.Value:
        """Division by zero gives 0 (as numpy does) instead of undefined behaviour; // and % round toward -inf."""
        bld = self.builder
        zero = ir.Constant(a.type, None)
        is_zero = bld.icmp_unsigned("==", b, zero)
        if signed:  # x / -1 is negation: dividing INT_MIN by -1 would trap, numpy wraps to INT_MIN
            minus_one = bld.sub(zero, self._one_like(b))
            is_neg1 = bld.icmp_signed("==", b, minus_one)
            safe_b = bld.select(bld.or_(is_zero, is_neg1), self._one_like(b), b)
            q, r = bld.sdiv(a, safe_b), bld.srem(a, safe_b)
            q = bld.select(is_neg1, bld.sub(zero, a), q)
        else:
            safe_b = bld.select(is_zero, self._one_like(b), b)
            q, r = bld.udiv(a, safe_b), bld.urem(a, safe_b)
        if signed and op in ("floordiv", "mod"):
            adjust = bld.and_(bld.icmp_signed("!=", r, zero),
                              bld.icmp_signed("!=", bld.icmp_signed("<", r, zero), bld.icmp_signed("<", safe_b, zero)))
            q = bld.select(adjust, bld.sub(q, self._one_like(q)), q)
            r = bld.select(adjust, bld.add(r, safe_b), r)
        out = q if op in ("floordiv", "truncdiv") else r
        return bld.select(is_zero, zero, out)

    def cast(self, v: ir.Value, src: DType, dst: DType) -> ir.Value:
        bld = self.builder
        lanes = v.type.count if self.is_vec(v) else None
        to = vector_of(compute_type(dst), lanes)
        if src == dst:
            return v
        if dst.is_bool:
            if src.is_float:
                return bld.fcmp_unordered("!=", v, ir.Constant(v.type, None))
            return bld.icmp_unsigned("!=", v, ir.Constant(v.type, None))
        if src.is_bool:
            return bld.uitofp(v, to) if dst.is_float else bld.zext(v, to)
        if src.is_float and src.bits == 16:  # a float16 result (held in float32) is rounded before it converts
            v = bld.fpext(bld.fptrunc(v, vector_of(F16, lanes)), v.type)
        if src.is_float and dst.is_float:
            st, dt_ = compute_type(src), compute_type(dst)
            if st != dt_:
                v = bld.fpext(v, to) if dt_ == F64 else bld.fptrunc(v, to)
            if dst.bits == 16:
                v = bld.fpext(bld.fptrunc(v, vector_of(F16, lanes)), to)
            return v
        if src.is_float:
            return bld.fptosi(v, to) if dst.is_signed else bld.fptoui(v, to)
        if dst.is_float:
            out = bld.sitofp(v, to) if src.is_signed else bld.uitofp(v, to)
            return bld.fpext(bld.fptrunc(out, vector_of(F16, lanes)), to) if dst.bits == 16 else out
        if dst.bits > src.bits:
            return bld.sext(v, to) if src.is_signed else bld.zext(v, to)
        if dst.bits < src.bits:
            return bld.trunc(v, to)
        return v

    def unary_intrinsic(self, name: str, v: ir.Value) -> ir.Value:
        return self.builder.call(self.intrinsic(f"llvm.{name}", v.type, [v.type], [v.type]), [v])

    def libm(self, name: str, v: ir.Value) -> ir.Value:
        """Scalar libm function, applied lane by lane on vectors."""
        elem = v.type.element if self.is_vec(v) else v.type
        fn = self.extern(name + ("f" if elem == F32 else ""), elem, [elem])
        if not self.is_vec(v):
            return self.builder.call(fn, [v])
        out = ir.Constant(v.type, ir.Undefined)
        for lane in range(v.type.count):
            x = self.builder.extract_element(v, ir.Constant(I32, lane))
            out = self.builder.insert_element(out, self.builder.call(fn, [x]), ir.Constant(I32, lane))
        return out

    def call(self, e: Call) -> ir.Value:
        bld = self.builder
        args = [self.emit(a) for a in e.args]
        v = args[0]
        dt = e.args[0].dtype
        name = e.name
        if fast_path(name, v):
            return VECTOR_MATH[name](self, v)
        if name in LLVM_UNARY:
            return self.unary_intrinsic(LLVM_UNARY[name], v)
        if name in LIBM_ONLY:
            return self.libm(LIBM_ONLY[name], v)
        one = self._one_like(v) if not dt.is_float else self._fconst(v, 1.0)
        if name == "rsqrt":
            return bld.fdiv(one, self.unary_intrinsic("sqrt", v), flags=self.fastmath)
        if name == "sigmoid":
            neg = bld.fneg(v)
            e_neg = vector_exp(self, neg) if fast_path("exp", neg) else self.unary_intrinsic("exp", neg)
            return bld.fdiv(one, bld.fadd(one, e_neg, flags=self.fastmath), flags=self.fastmath)
        if name == "neg":
            return bld.fneg(v) if dt.is_float else bld.neg(v)
        if name == "not":
            return bld.not_(v)
        if name == "abs":
            if dt.is_float:
                return self.unary_intrinsic("fabs", v)
            if not dt.is_signed or dt.is_bool:
                return v
            return bld.select(bld.icmp_signed("<", v, ir.Constant(v.type, None)), bld.neg(v), v)
        if name == "sign":
            zero = ir.Constant(v.type, None)
            if dt.is_float:
                pos = bld.select(bld.fcmp_ordered(">", v, zero), one, v)
                return bld.select(bld.fcmp_ordered("<", v, zero), self._fconst(v, -1.0), pos)
            if dt.is_bool:
                return v
            gt = bld.zext(bld.icmp_signed(">", v, zero) if dt.is_signed else bld.icmp_unsigned(">", v, zero), v.type)
            lt = bld.zext(bld.icmp_signed("<", v, zero), v.type) if dt.is_signed else zero
            return bld.sub(gt, lt)
        if name == "isnan":
            return bld.fcmp_unordered("uno", v, v) if dt.is_float else self._false_like(v)
        if name == "isinf":
            if not dt.is_float:
                return self._false_like(v)
            return bld.fcmp_ordered("==", self.unary_intrinsic("fabs", v), self._fconst(v, float("inf")))
        raise CodegenError(f"intrinsic {name} is not supported by the llvm backend")

    def _fconst(self, like: ir.Value, value: float) -> ir.Value:
        t = like.type.element if self.is_vec(like) else like.type
        c = ir.Constant(t, value)
        return self.splat(c, like.type.count) if self.is_vec(like) else c

    def _false_like(self, v: ir.Value) -> ir.Value:
        c = ir.Constant(I1, 0)
        return self.splat(c, v.type.count) if self.is_vec(v) else c

    def select(self, e: Select) -> ir.Value:
        cond = self.emit(e.cond)
        has_load = _has_load(e.a) or _has_load(e.b)
        if not has_load:
            c, a, b = self.unify(cond, self.emit(e.a), self.emit(e.b))
            return self.builder.select(c, a, b)
        if self.is_vec(cond):
            saved = self.mask
            self.mask = cond if saved is None else self.builder.and_(saved, cond)
            a = self.emit(e.a)
            not_cond = self.builder.not_(cond)
            self.mask = not_cond if saved is None else self.builder.and_(saved, not_cond)
            b = self.emit(e.b)
            self.mask = saved
            c, a, b = self.unify(cond, a, b)
            return self.builder.select(c, a, b)
        bld = self.builder
        then_bb, else_bb = bld.append_basic_block("sel.a"), bld.append_basic_block("sel.b")
        done_bb = bld.append_basic_block("sel.done")
        bld.cbranch(cond, then_bb, else_bb)
        bld.position_at_end(then_bb)
        a = self.emit(e.a)
        then_end = bld.block
        bld.position_at_end(else_bb)
        b = self.emit(e.b)
        lanes = next((v.type.count for v in (a, b) if self.is_vec(v)), None)
        if lanes is not None:  # widen each side in its own block, where its value is defined
            b = self.splat(b, lanes)
        else_end = bld.block
        bld.branch(done_bb)
        bld.position_at_end(then_end)
        if lanes is not None:
            a = self.splat(a, lanes)
        bld.branch(done_bb)
        bld.position_at_end(done_bb)
        phi = bld.phi(a.type)
        phi.add_incoming(a, then_end)
        phi.add_incoming(b, else_end)
        return phi

    # ---- memory ---------------------------------------------------------------------------------------------------
    def _access(self, buf: Buffer, index: Expr) -> tuple[str, ir.Value]:
        """Classify an index in the vector context: ('scalar', idx), ('contiguous', base) or ('gather', idx-vec)."""
        if self.lane_var is None or not self.varies(index):
            return "scalar", self.emit(index)
        coef = coefficient(index, self.lane_var)
        only_lane = coef is not None and all(
            v is self.lane_var or not (v in self.env and self.is_vec(self.env[v])) for v in free_vars(index))
        if only_lane and (coef == 1 or (isinstance(coef, int) and 1 < coef <= MAX_LOAD_STRIDE
                                        and self.mask is None and (self.lanes or 0) > 1)):
            base = simplify_index(substitute(index, {self.lane_var: Const(0, INDEX)}))
            saved, self.lane_var = self.lane_var, None
            try:
                return ("contiguous" if coef == 1 else f"stride{coef}"), self.emit(base)
            finally:
                self.lane_var = saved
        return "gather", self.emit_index(index)

    def _ptr(self, buf: Buffer) -> ir.Value:
        try:
            return self.bufs[buf]
        except KeyError:
            raise CodegenError(f"buffer {buf.name!r} is used outside its allocation") from None

    def load(self, buf: Buffer, index: Expr) -> ir.Value:
        bld = self.builder
        st = storage_type(buf.dtype)
        kind, idx = self._access(buf, index)
        base = self._ptr(buf)
        align = buf.dtype.itemsize
        if kind == "scalar":
            if self.mask is not None and self.lanes is not None:
                return self._masked_scalar_load(buf, idx)
            raw = bld.load(bld.gep(base, [idx], inbounds=True, source_etype=st), typ=st, align=align)
            return self._from_storage(raw, buf.dtype)
        lanes = self.lanes
        vt = ir.VectorType(st, lanes)
        if kind == "contiguous":
            ptr = bld.gep(base, [idx], inbounds=True, source_etype=st)
            if self.mask is None:
                raw = bld.load(ptr, typ=vt, align=align)
            else:
                fn = self.intrinsic("llvm.masked.load", vt, [PTR, I32, self.mask.type, vt], [vt, PTR])
                raw = bld.call(fn, [ptr, ir.Constant(I32, align), self.mask, ir.Constant(vt, None)])
            return self._from_storage(raw, buf.dtype)
        if kind.startswith("stride"):
            return self._from_storage(self._strided_load(base, idx, int(kind[6:]), vt, align), buf.dtype)
        ptrs = self._pointer_vector(base, idx, st)
        mask = self.mask if self.mask is not None else ir.Constant(ir.VectorType(I1, lanes), [1] * lanes)
        pvt = ir.VectorType(PTR, lanes)
        fn = self.intrinsic("llvm.masked.gather", vt, [pvt, I32, mask.type, vt], [vt, pvt])
        raw = bld.call(fn, [ptrs, ir.Constant(I32, align), mask, ir.Constant(vt, None)])
        return self._from_storage(raw, buf.dtype)

    def _strided_load(self, base: ir.Value, start: ir.Value, stride: int, vt: ir.VectorType, align: int) -> ir.Value:
        """Lanes `start + stride * i` from contiguous vector loads and shuffles instead of a gather (slow on x86).
        The loads cover exactly the span from the first to the last lane's element (the last one is shifted back to
        end there), so they read nothing the gather would not."""
        bld, lanes = self.builder, vt.count
        span = stride * (lanes - 1) + 1
        offsets = [min(c * lanes, span - lanes) for c in range(-(-span // lanes))]
        chunks = [bld.load(bld.gep(base, [bld.add(start, ir.Constant(start.type, o))], inbounds=True,
                                   source_etype=vt.element), typ=vt, align=align) for o in offsets]
        home = [next(c for c, o in enumerate(offsets) if o <= stride * i < o + lanes) for i in range(lanes)]
        mask_type = ir.VectorType(I32, lanes)
        pick = [stride * i - offsets[c] + (lanes if c == 1 else 0) if c < 2 else 0 for i, c in enumerate(home)]
        out = bld.shuffle_vector(chunks[0], chunks[1], ir.Constant(mask_type, pick))
        for c in range(2, len(chunks)):
            pick = [lanes + stride * i - offsets[c] if h == c else i for i, h in enumerate(home)]
            out = bld.shuffle_vector(out, chunks[c], ir.Constant(mask_type, pick))
        return out

    def _masked_scalar_load(self, buf: Buffer, idx: ir.Value) -> ir.Value:
        """A uniform address read under a lane mask: read only if some lane is active."""
        bld = self.builder
        st = storage_type(buf.dtype)
        any_on = self.any_lane(self.mask)
        slot = self.entry_alloca(st)
        bld.store(ir.Constant(st, None), slot)
        with bld.if_then(any_on):
            raw = bld.load(bld.gep(self._ptr(buf), [idx], inbounds=True, source_etype=st), typ=st)
            bld.store(raw, slot)
        return self._from_storage(bld.load(slot, typ=st), buf.dtype)

    def any_lane(self, mask: ir.Value) -> ir.Value:
        fn = self.intrinsic("llvm.vector.reduce.or", I1, [mask.type], [mask.type])
        return self.builder.call(fn, [mask])

    def _pointer_vector(self, base: ir.Value, idx: ir.Value, st: ir.Type) -> ir.Value:
        """One vector GEP, which x86 lowers to a gather with base + scaled (32-bit where narrowed) offsets."""
        ptrs = self.builder.gep(base, [idx], source_etype=st)
        ptrs.type = ir.VectorType(PTR, idx.type.count)  # llvmlite types every GEP as a scalar pointer
        return ptrs

    def _from_storage(self, raw: ir.Value, dt: DType) -> ir.Value:
        lanes = raw.type.count if self.is_vec(raw) else None
        if dt.is_bool:
            return self.builder.icmp_unsigned("!=", raw, ir.Constant(raw.type, None))
        if dt.is_float and dt.bits == 16:
            return self.builder.fpext(raw, vector_of(F32, lanes))
        return raw

    def _to_storage(self, v: ir.Value, dt: DType) -> ir.Value:
        lanes = v.type.count if self.is_vec(v) else None
        if dt.is_bool:
            return self.builder.zext(v, vector_of(I8, lanes))
        if dt.is_float and dt.bits == 16:
            return self.builder.fptrunc(v, vector_of(F16, lanes))
        return v

    def entry_alloca(self, t: ir.Type, count: "int | None" = None, align: int = 0) -> ir.Value:
        fn = self.builder.function
        with self.builder.goto_block(fn.entry_basic_block):
            first = fn.entry_basic_block.instructions[0] if fn.entry_basic_block.instructions else None
            if first is not None:
                self.builder.position_before(first)
            slot = self.builder.alloca(t, size=None if count is None else ir.Constant(I64, count))
            if align:
                slot.align = align
        slot.type = PTR  # llvmlite types allocas as typed pointers; ember uses opaque `ptr` throughout
        return slot


def _has_load(e: Expr) -> bool:
    found = [False]
    walk(e, lambda n: found.__setitem__(0, True) if isinstance(n, Load) else None)
    return found[0]


def _f64() -> DType:
    from ...ir.dtype import float64
    return float64

