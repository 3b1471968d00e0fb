"""ONNX element-type codes (TensorProto.DataType) and the dtypes ember computes them with. The graph layer speaks
ONNX ops, so op attributes that name a type (Cast's `to`, quantization and window output types) and the importer
share these tables."""
from __future__ import annotations

from ..ir.dtype import DType, as_dtype

ONNX_DTYPES = {1: "float32", 2: "uint8", 3: "int8", 5: "int16", 6: "int32", 7: "int64", 9: "bool", 10: "float16",
               11: "float64"}
ONNX_TYPE_NAMES = {0: "UNDEFINED", 1: "FLOAT", 2: "UINT8", 3: "INT8", 4: "UINT16", 5: "INT16", 6: "INT32",
                   7: "INT64", 8: "STRING", 9: "BOOL", 10: "FLOAT16", 11: "DOUBLE", 12: "UINT32", 13: "UINT64",
                   14: "COMPLEX64", 15: "COMPLEX128", 16: "BFLOAT16", 17: "FLOAT8E4M3FN", 18: "FLOAT8E4M3FNUZ",
                   19: "FLOAT8E5M2", 20: "FLOAT8E5M2FNUZ", 21: "UINT4", 22: "INT4", 23: "FLOAT4E2M1"}


def dtype_of_code(code: int) -> "DType | None":
    """The dtype for an ONNX type code, or None when ember does not compute with that type."""
    name = ONNX_DTYPES.get(code)
    return None if name is None else as_dtype(name)


def type_name(code: "int | str") -> str:
    return ONNX_TYPE_NAMES.get(code, str(code)) if isinstance(code, int) else code


def supported_type_names() -> str:
    return ", ".join(ONNX_TYPE_NAMES[c] for c in sorted(ONNX_DTYPES))
