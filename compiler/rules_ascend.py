"""Default schedule for the ascend target: inline element-wise intermediates, nothing else.

The Ascend backend reads each root stage's meaning back from its plain loop nest (codegen/ascend/analyze.py) and
does its own tiling (core split, UB tiles) on the host, so splitting or vectorizing loops here would only hide
the structure it matches. Stages tagged `materialize` (im2col) and reductions stay root stages (GM workspaces).
"""
from __future__ import annotations

from typing import Sequence

from ..ir.tensor import Tensor
from .default_schedule import inline_elementwise
from .schedule import Schedule


def ascend_schedule(outputs: "Tensor | Sequence[Tensor]") -> Schedule:
    sch = Schedule(outputs)
    inline_elementwise(sch)
    return sch
