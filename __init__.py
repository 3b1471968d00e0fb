"""ember: a Python tensor compiler.

Define kernels with the tensor IR (`placeholder`, `compute`, reductions), schedule them (or take the default
schedule), and `build` them for a target into a callable that takes numpy arrays.
"""
from .compiler import (Schedule, ScheduleError, Target, TargetError, Trace, build, create_schedule, from_trace,
                       parse_target)
from .ir import (DType, IRError, Tensor, abs, acos, acosh, argmax, argmin, asin, asinh, atan, atanh, bool_, cast, ceil,
                 compute, const, cos, cosh, erf, exp, exp2, expm1, float16, float32, float64, floor, int8, int16,
                 int32, int64, isinf, isnan, log, log1p, log2, logical_and, logical_not, logical_or, max, maximum,
                 min, minimum, placeholder, pow, prod, reduce_axis, round, rsqrt, select, sigmoid, sign, sin, sinh,
                 sqrt, sum, tan, tanh, trunc, truncdiv, truncmod, uint8, var, where)
from .frontend.api import compile
from .frontend import jnp
from .frontend.jit import TracingError, jit
from .runtime.keys import VERSION as __version__
from .runtime.saved import load
from .tune import autotune


def export(compiled: object, path: str, target: str = "ascend"):
    """Write a buildable package of a kernel or compiled model for a device toolchain (AscendC for CANN today):
    kernel sources, host code with the tiling filled in, build files and a README."""
    from .codegen.ascend.export import export as write_package
    return write_package(compiled, path, target=target)
