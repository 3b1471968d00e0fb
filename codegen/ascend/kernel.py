"""What every emitted AscendC kernel shares: its description for the host and the emulator, and source helpers."""
from __future__ import annotations

from dataclasses import dataclass, field

from ...ir.expr import SizeVar, Var
from ...ir.loops import Load
from .cexpr import ident

PRELUDE = """\
#include "kernel_operator.h"
#ifdef ASCENDC_CPU_DEBUG
#include <cmath>
#endif

constexpr int32_t BUFFER_NUM = 2;  // double buffering: CopyIn of tile i+1 overlaps Compute of tile i
"""

# GM<->UB copies of `len` elements: DataCopy when the byte count is whole 32-byte blocks, DataCopyPad otherwise.
COPY_PAD = """\
template <typename T>
__aicore__ inline void EmberCopyIn(const AscendC::LocalTensor<T>& dst, const AscendC::GlobalTensor<T>& src, int64_t len)
{
    if ((len * (int64_t)sizeof(T)) % 32 == 0) {
        AscendC::DataCopy(dst, src, (uint32_t)len);
    } else {
        AscendC::DataCopyExtParams params{1, (uint32_t)(len * sizeof(T)), 0, 0, 0};
        AscendC::DataCopyPadExtParams<T> pad{false, 0, 0, (T)0};
        AscendC::DataCopyPad(dst, src, params, pad);
    }
}
template <typename T>
__aicore__ inline void EmberCopyOut(const AscendC::GlobalTensor<T>& dst, const AscendC::LocalTensor<T>& src, int64_t len)
{
    if ((len * (int64_t)sizeof(T)) % 32 == 0) {
        AscendC::DataCopy(dst, src, (uint32_t)len);
    } else {
        AscendC::DataCopyExtParams params{1, (uint32_t)(len * sizeof(T)), 0, 0, 0};
        AscendC::DataCopyPad(dst, src, params);
    }
}
"""

# Without DataCopyPad (310P) the host pads GM buffers, so whole 32-byte blocks can always be copied.
COPY_ALIGNED = """\
template <typename T>
__aicore__ inline void EmberCopyIn(const AscendC::LocalTensor<T>& dst, const AscendC::GlobalTensor<T>& src, int64_t len)
{
    constexpr int64_t blk = 32 / sizeof(T);
    AscendC::DataCopy(dst, src, (uint32_t)((len + blk - 1) / blk * blk));
}
template <typename T>
__aicore__ inline void EmberCopyOut(const AscendC::GlobalTensor<T>& dst, const AscendC::LocalTensor<T>& src, int64_t len)
{
    constexpr int64_t blk = 32 / sizeof(T);
    AscendC::DataCopy(dst, src, (uint32_t)((len + blk - 1) / blk * blk));
}
"""


@dataclass
class KernelSource:
    """One `extern "C" __global__ __aicore__` kernel: its code and how the host launches it."""

    name: str
    family: str
    code: str
    params: list[tuple[str, bool]]  # GM buffers in parameter order: (buffer name, written by this kernel)
    tiling_fields: list[str]
    tiling: list["int | str"]  # one value per field: a constant, or the name of a symbolic size bound at launch
    num_blocks: int
    pad: dict[str, int] = field(default_factory=dict)  # buffer -> element count the host pads it to (310P)
    plan: dict = field(default_factory=dict)  # tiling summary for reports (tile, UB bytes, budget, bytes per core)


def tiling_struct(name: str, fields: list[str]) -> str:
    body = "\n".join(f"    int64_t {f};" for f in fields)
    return f"struct EmberTiling_{name} {{\n{body}\n}};\n"


def entry(name: str, cls: str, params: list[str]) -> str:
    gm = ", ".join(f"GM_ADDR {p}" for p in params)
    args = ", ".join(params)
    return (f'extern "C" __global__ __aicore__ void {name}({gm}, EmberTiling_{name} tiling)\n{{\n'
            f"    KERNEL_TASK_TYPE_DEFAULT(KERNEL_TYPE_AIV_ONLY);\n"
            f"    {cls} op;\n    op.Init({args}, tiling);\n    op.Process();\n}}\n")


def gm_load(ld: Load, index: str) -> str:
    """A scalar GM read as the compute type (float16 widened to float, bool from its byte)."""
    raw = f"{ident(ld.buffer.name)}Gm.GetValue({index})"
    if ld.dtype.is_bool:
        return f"({raw} != 0)"
    if ld.dtype.is_float and ld.dtype.bits == 16:
        return f"((float){raw})"
    return raw


def tiling_var(v: Var) -> str:
    return f"tiling.{ident(v.name)}" if isinstance(v, SizeVar) else ident(v.name)
