"""The tensor IR (what users write), the loop IR (what backends render) and the shared scalar expressions."""
from .dtype import (ALL_DTYPES, DType, as_dtype, bool_, float16, float32, float64, int8, int16, int32, int64,
                    uint8)
from .expr import Const, Expr, SizeVar, Var, cast, const, select
from .loops import Buffer, PrimFunc
from .printer import tensor_ir_str
from .structural import structural_hash, structural_key, topo_ops
from .tensor import (ComputeOp, IRError, IterVar, PlaceholderOp, Reduce, Tensor, abs, acos, acosh, argmax, argmin,
                     asin, asinh, atan, atanh, ceil, compute, cos, cosh, erf, exp, exp2, expm1, floor, isinf, isnan,
                     log, log1p, log2, logical_and, logical_not, logical_or, max, maximum, min, minimum, placeholder,
                     pow, prod, reduce_axis, round, rsqrt, sigmoid, sign, sin, sinh, sqrt, sum, tan, tanh, trunc,
                     truncdiv, truncmod, var, where)
