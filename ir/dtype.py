"""Scalar data types shared by every layer, with the numpy mapping and promotion rules the frontends rely on."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class DType:
    """A scalar type: `kind` is 'f' (float), 'i' (signed int), 'u' (unsigned int) or 'b' (bool)."""

    name: str
    kind: str
    bits: int

    @property
    def is_float(self) -> bool:
        return self.kind == "f"

    @property
    def is_int(self) -> bool:
        return self.kind in "iu"

    @property
    def is_signed(self) -> bool:
        return self.kind in "if"

    @property
    def is_bool(self) -> bool:
        return self.kind == "b"

    @property
    def itemsize(self) -> int:
        return max(self.bits // 8, 1)

    @property
    def numpy(self) -> np.dtype:
        return np.dtype(self.name)

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"ember.{self.name}"


float16 = DType("float16", "f", 16)
float32 = DType("float32", "f", 32)
float64 = DType("float64", "f", 64)
int8 = DType("int8", "i", 8)
int16 = DType("int16", "i", 16)
int32 = DType("int32", "i", 32)
int64 = DType("int64", "i", 64)
uint8 = DType("uint8", "u", 8)
bool_ = DType("bool", "b", 8)

ALL_DTYPES: tuple[DType, ...] = (float16, float32, float64, int8, int16, int32, int64, uint8, bool_)
_BY_NAME = {d.name: d for d in ALL_DTYPES}
INDEX = int64


def as_dtype(value: "DType | str | np.dtype | type") -> DType:
    """Accept an ember dtype, its name, a numpy dtype or a numpy scalar type."""
    if isinstance(value, DType):
        return value
    name = value if isinstance(value, str) else np.dtype(value).name
    if name == "bool_":
        name = "bool"
    try:
        return _BY_NAME[name]
    except KeyError:
        valid = ", ".join(_BY_NAME)
        raise TypeError(f"unsupported dtype {value!r}; ember supports {valid}") from None


def promote(a: DType, b: DType) -> DType:
    """The result type of a binary arithmetic op, following numpy's rules for the types ember supports."""
    if a == b:
        return a
    return as_dtype(np.promote_types(a.numpy, b.numpy))
