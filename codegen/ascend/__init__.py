"""The Ascend NPU backend: AscendC kernel sources with host tiling, run on the CPU through the project's emulator.

    f = ember.build(s, args, target="ascend -emulate")   # numpy in, numpy out, through the emulator
    f.source("ascend"), f.source("ascend-host")           # the kernel source and the host code
    ember.export(f, "pkg/", target="ascend")              # a CANN kernel-invocation package
"""
from __future__ import annotations

from .backend import AscendBackend, generate
from .cexpr import AscendError
from .report import plan_rows, plan_table
from .tiling import TilingChoice

__all__ = ["AscendBackend", "AscendError", "TilingChoice", "generate", "plan_rows", "plan_table"]
