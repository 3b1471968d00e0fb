"""An expression tree over tiles -> a sequence of count-form AscendC vector instructions.

Every node becomes one instruction (or a short fixed sequence for sigmoid/tanh) writing a TBuf<VECCALC>
temporary; temporaries are reused once their last reader has run, so the UB plan needs only the peak number live.
Per-row scalars and constants stay scalar operands (Adds/Muls/Maxs/Mins, Duplicate where no scalar form exists).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ...ir.dtype import DType
from ...ir.expr import Binary, Call, Cast, Const, Expr, expr_key, walk
from ...ir.loops import Load
from .cexpr import CPrinter, STORAGE


class Unvectorizable(Exception):
    """The expression uses something without a vector instruction; the nest runs on the scalar unit instead."""


@dataclass(frozen=True)
class VTensor:
    name: str
    dtype: DType
    temp: int = -1  # temp slot, or -1 for an input tile / the output tile


@dataclass(frozen=True)
class VScalar:
    text: str  # C++ float/compute-type expression
    dtype: DType


_BIN = {"add": "Add", "sub": "Sub", "mul": "Mul", "div": "Div", "max": "Max", "min": "Min"}
_BIN_SCALAR = {"add": "Adds", "mul": "Muls", "max": "Maxs", "min": "Mins"}
_UNARY = {"exp": "Exp", "log": "Ln", "sqrt": "Sqrt", "rsqrt": "Rsqrt", "abs": "Abs"}
_CMP = {"lt": "LT", "le": "LE", "gt": "GT", "ge": "GE", "eq": "EQ", "ne": "NE"}


@dataclass
class VectorCode:
    lines: list[str] = field(default_factory=list)
    temps: int = 0  # peak TBuf temporaries
    uses_compare: bool = False
    temp_types: set[tuple[int, str]] = field(default_factory=set)


class VectorCompiler:
    """`tile(ld)` names the input tile of a contiguous Load (or None for a per-row scalar); `scalar(ld)` names the
    C++ variable holding a per-row scalar. Counts are the C++ variables `count` and `acount` (256-B aligned)."""

    def __init__(self, tile, scalar):
        self.tile, self.scalar = tile, scalar
        self.code = VectorCode()
        self.free: list[int] = []
        self.memo: dict[tuple, "VTensor | VScalar"] = {}
        self.refs: dict[tuple, int] = {}
        self.printer = CPrinter(lambda ld: self.scalar(ld))

    # ---- public ---------------------------------------------------------------------------------------------------
    def to_tile(self, e: Expr, dst: str) -> VectorCode:
        """Instructions that leave `e` in the tile `dst` (the VECOUT tensor)."""
        self._count(e)
        v = self.value(e, dst)
        if isinstance(v, VScalar):
            self.emit(f"AscendC::Duplicate({dst}, ({STORAGE[e.dtype.name]})({v.text}), count);")
        elif v.name != dst:
            self.emit(f"AscendC::Muls({dst}, {v.name}, ({STORAGE[e.dtype.name]})1.0f, count);")
        return self.code

    def to_any(self, e: Expr) -> tuple[VectorCode, "VTensor | VScalar"]:
        """Instructions computing `e` into some tile (an input tile or a temporary)."""
        self._count(e)
        return self.code, self.value(e, None)

    # ---- machinery ------------------------------------------------------------------------------------------------
    def emit(self, line: str) -> None:
        self.code.lines.append(line)

    def _count(self, e: Expr) -> None:
        def visit(n: Expr) -> None:
            k = expr_key(n)
            self.refs[k] = self.refs.get(k, 0) + 1
        walk(e, visit)

    def _alloc(self, dt: DType) -> VTensor:
        slot = self.free.pop() if self.free else self.code.temps
        self.code.temps = max(self.code.temps, slot + 1)
        t = STORAGE[dt.name]
        self.code.temp_types.add((slot, t))
        return VTensor(f"tmp{slot}_{t}", dt, slot)

    def _release(self, *vals) -> None:
        for v in vals:
            if isinstance(v, VTensor) and v.temp >= 0 and v.temp not in self.free:
                self.free.append(v.temp)

    def _dst(self, want: "str | None", dt: DType) -> VTensor:
        return VTensor(want, dt) if want is not None else self._alloc(dt)

    def _is_scalar(self, e: Expr) -> bool:
        ok = [True]
        walk(e, lambda n: ok.__setitem__(0, False) if isinstance(n, Load) and self.tile(n) is not None else None)
        return ok[0]

    def value(self, e: Expr, want: "str | None") -> "VTensor | VScalar":
        key = expr_key(e)
        if key in self.memo:
            v = self.memo[key]
        else:
            v = self._build(e, want if self.refs.get(key, 1) == 1 else None)
            self.memo[key] = v
        self.refs[key] = self.refs.get(key, 1) - 1
        return v

    def _done(self, key_exprs: tuple[Expr, ...], vals: tuple) -> None:
        """Free the temporaries of operands nobody reads any more."""
        for e, v in zip(key_exprs, vals):
            if self.refs.get(expr_key(e), 0) <= 0:
                self._release(v)

    def _scalar(self, e: Expr) -> VScalar:
        return VScalar(self.printer(e), e.dtype)

    def _build(self, e: Expr, want: "str | None") -> "VTensor | VScalar":
        if e.dtype.name not in STORAGE or e.dtype.name not in ("float16", "float32"):
            raise Unvectorizable(f"dtype {e.dtype} of `{e}`")
        if self._is_scalar(e):
            return self._scalar(e)
        if isinstance(e, Load):
            return VTensor(self.tile(e), e.dtype)
        if isinstance(e, Cast):
            return self._cast(e, want)
        if isinstance(e, Binary):
            if e.op == "pow":
                return self._pow(e, want)
            return self._binary(e, want)
        if isinstance(e, Call):
            return self._call(e, want)
        from ...ir.expr import Select
        if isinstance(e, Select):
            return self._select(e, want)
        raise Unvectorizable(f"`{e}`")

    def _cast(self, e: Cast, want):
        src = e.value
        if isinstance(src, Cast) and src.value.dtype == e.dtype and e.dtype.bits == 16 and src.dtype.is_float \
                and src.dtype.bits > 16:
            return self.value(src.value, want)  # round_to_half of a widened float16 value: already rounded
        if not (src.dtype.is_float and src.dtype.bits in (16, 32)):
            raise Unvectorizable(f"cast from {src.dtype}")
        v = self.value(src, None)
        out = self._dst(want, e.dtype)  # before freeing the source: a wider dst must not partially overlap it
        self._done((src,), (v,))
        # Float -> int truncates toward zero, as C and every other ember target do; narrower floats round to even.
        mode = "CAST_TRUNC" if e.dtype.is_int else "CAST_RINT" if e.dtype.bits < src.dtype.bits else "CAST_NONE"
        self.emit(f"AscendC::Cast<{STORAGE[e.dtype.name]}, {STORAGE[src.dtype.name]}>({out.name}, {v.name}, "
                  f"AscendC::RoundMode::{mode}, count);")
        return out

    def _splat(self, v: "VTensor | VScalar", dt: DType) -> VTensor:
        if isinstance(v, VTensor):
            return v
        t = self._alloc(dt)
        self.emit(f"AscendC::Duplicate({t.name}, ({STORAGE[dt.name]})({v.text}), count);")
        return t

    def _binary(self, e: Binary, want):
        if e.op not in _BIN:
            raise Unvectorizable(f"operator {e.op}")
        a, b = self.value(e.a, None), self.value(e.b, None)
        t = STORAGE[e.dtype.name]
        if isinstance(a, VScalar) and e.op in _BIN_SCALAR:
            a, b = b, a
        if isinstance(b, VScalar) and e.op in _BIN_SCALAR or (isinstance(b, VScalar) and e.op == "sub"):
            self._done((e.a, e.b), (a, b))
            out = self._dst(want, e.dtype)
            if e.op == "sub":
                self.emit(f"AscendC::Adds({out.name}, {a.name}, ({t})(-({b.text})), count);")
            else:
                self.emit(f"AscendC::{_BIN_SCALAR[e.op]}({out.name}, {a.name}, ({t})({b.text}), count);")
            return out
        ta, tb = self._splat(a, e.dtype), self._splat(b, e.dtype)
        self._done((e.a, e.b), (a, b))
        self._release(*(x for x, y in ((ta, a), (tb, b)) if x is not y))
        out = self._dst(want, e.dtype)
        self.emit(f"AscendC::{_BIN[e.op]}({out.name}, {ta.name}, {tb.name}, count);")
        return out

    def _pow(self, e: Binary, want):
        if not isinstance(e.b, Const) or float(e.b.value) not in (0.5, 1.0, 2.0):
            raise Unvectorizable("pow with a non-constant or unusual exponent")
        x = self.value(e.a, None)
        self._done((e.a,), (x,))
        out = self._dst(want, e.dtype)
        p = float(e.b.value)
        if p == 2.0:
            self.emit(f"AscendC::Mul({out.name}, {x.name}, {x.name}, count);")
        elif p == 0.5:
            self.emit(f"AscendC::Sqrt({out.name}, {x.name}, count);")
        else:
            self.emit(f"AscendC::Muls({out.name}, {x.name}, ({STORAGE[e.dtype.name]})1.0f, count);")
        return out

    def _call(self, e: Call, want):
        name, t = e.name, STORAGE[e.dtype.name]
        if name not in _UNARY and name not in ("neg", "sigmoid", "tanh"):
            raise Unvectorizable(f"intrinsic {name}")
        x = self.value(e.args[0], None)
        self._done(e.args, (x,))
        out = self._dst(want, e.dtype)
        o = out.name
        if name in _UNARY:
            self.emit(f"AscendC::{_UNARY[name]}({o}, {x.name}, count);")
        elif name == "neg":
            self.emit(f"AscendC::Muls({o}, {x.name}, ({t})-1.0f, count);")
        else:
            one = self._alloc(e.dtype)
            if name == "sigmoid":  # 1 / (1 + exp(-x))
                self.emit(f"AscendC::Muls({o}, {x.name}, ({t})-1.0f, count);")
                self.emit(f"AscendC::Exp({o}, {o}, count);")
                self.emit(f"AscendC::Adds({o}, {o}, ({t})1.0f, count);")
                self.emit(f"AscendC::Duplicate({one.name}, ({t})1.0f, count);")
                self.emit(f"AscendC::Div({o}, {one.name}, {o}, count);")
            else:  # tanh(x) = 1 - 2 / (exp(2x) + 1)
                self.emit(f"AscendC::Muls({o}, {x.name}, ({t})2.0f, count);")
                self.emit(f"AscendC::Exp({o}, {o}, count);")
                self.emit(f"AscendC::Adds({o}, {o}, ({t})1.0f, count);")
                self.emit(f"AscendC::Duplicate({one.name}, ({t})-2.0f, count);")
                self.emit(f"AscendC::Div({o}, {one.name}, {o}, count);")
                self.emit(f"AscendC::Adds({o}, {o}, ({t})1.0f, count);")
            self._release(one)
        return out

    def _select(self, e, want):
        c = e.cond
        if not (isinstance(c, Binary) and c.op in _CMP and c.a.dtype.name in ("float16", "float32")):
            raise Unvectorizable(f"condition `{c}`")
        if c.a.dtype != e.dtype:
            raise Unvectorizable("compare and select on different dtypes")
        va, vb = self.value(e.a, None), self.value(e.b, None)
        ca, cb = self.value(c.a, None), self.value(c.b, None)
        ta, tb = self._splat(va, e.dtype), self._splat(vb, e.dtype)
        xa, xb = self._splat(ca, e.dtype), self._splat(cb, e.dtype)
        self.code.uses_compare = True
        t = STORAGE[e.dtype.name]
        self.emit(f"AscendC::Compare<{t}, uint8_t>(mask, {xa.name}, {xb.name}, AscendC::CMPMODE::{_CMP[c.op]}, "
                  f"acount);")
        self._done((e.a, e.b, c.a, c.b), (va, vb, ca, cb))
        self._release(*(x for x, y in ((ta, va), (tb, vb), (xa, ca), (xb, cb)) if x is not y))
        out = self._dst(want, e.dtype)
        self.emit(f"AscendC::Select<{t}, uint8_t>({out.name}, mask, {ta.name}, {tb.name}, "
                  f"AscendC::SELMODE::VSEL_TENSOR_TENSOR_MODE, acount);")
        return out
