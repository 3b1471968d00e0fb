"""Mapping of ember dtypes to LLVM types: how values are stored in memory and how they are computed."""
from __future__ import annotations

from llvmlite import ir

from ...ir.dtype import DType

I1, I8, I32, I64 = ir.IntType(1), ir.IntType(8), ir.IntType(32), ir.IntType(64)
F16, F32, F64 = ir.HalfType(), ir.FloatType(), ir.DoubleType()
PTR = ir.PointerType()
VOID = ir.VoidType()


def storage_type(dt: DType) -> ir.Type:
    """The in-memory type: bool is a byte, as in numpy."""
    if dt.is_bool:
        return I8
    if dt.is_float:
        return {16: F16, 32: F32, 64: F64}[dt.bits]
    return ir.IntType(dt.bits)


def compute_type(dt: DType) -> ir.Type:
    """The register type: float16 computes in float32 (rounded back on store and on explicit casts)."""
    if dt.is_bool:
        return I1
    if dt.is_float:
        return F64 if dt.bits == 64 else F32
    return ir.IntType(dt.bits)


def vector_of(t: ir.Type, lanes: "int | None") -> ir.Type:
    return t if lanes is None else ir.VectorType(t, lanes)


def mangle(t: ir.Type) -> str:
    """LLVM's overloaded-intrinsic suffix for a type (f32, v8f32, i64, v8p0...)."""
    if isinstance(t, ir.VectorType):
        return f"v{t.count}{mangle(t.element)}"
    if isinstance(t, ir.PointerType):
        return "p0"
    if t == F16:
        return "f16"
    if t == F32:
        return "f32"
    if t == F64:
        return "f64"
    return f"i{t.width}"
