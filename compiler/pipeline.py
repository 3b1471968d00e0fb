"""The compiler, stage by stage. Read this file as the table of contents of ember's CPU/GPU/NPU compilation.

    tensor IR (ember.compute ...)                                  ir/tensor.py
      1. schedule      default rules per target, or the user's    compiler/default_schedule.py, schedule.py
      2. lower         loop nests, bound inference, guards        compiler/lower.py
      3. loop passes   the PASSES table below                     compiler/passes.py
      4. codegen       backend renders and compiles loop IR       codegen/<target>/
      5. runtime       artifact cache, loading, argument checks   runtime/
"""
from __future__ import annotations

from typing import Callable, Sequence

from ..ir.loops import PrimFunc, Stmt
from ..ir.tensor import Tensor
from .default_schedule import default_schedule
from .lower import lower
from .passes import partition_loops, simplify_stmt
from .schedule import Schedule
from .target import Target

# Loop-IR passes, in order: (name, pass). Each is a Stmt -> Stmt function; dumps show the result of every pass.
PASSES: list[tuple[str, Callable[[Stmt], Stmt]]] = [
    ("simplify", simplify_stmt),
    ("partition_loops", partition_loops),
    ("simplify_after_partition", simplify_stmt),
]


def schedule_for(outputs: "Tensor | Sequence[Tensor] | Schedule", target: Target) -> Schedule:
    """Stage 1: a user schedule passes through; bare tensors get their tuned schedule from the tuning database
    (ember.tune) when one is recorded for this target, else the target's rule-based default schedule."""
    if isinstance(outputs, Schedule):
        return outputs
    from ..tune.lookup import tuned_schedule
    tuned = tuned_schedule(outputs, target)
    return tuned if tuned is not None else default_schedule(outputs, target)


def lower_to_loops(sch: Schedule, args: Sequence[Tensor], name: str,
                   on_pass: "Callable[[str, PrimFunc], None] | None" = None,
                   target: "Target | None" = None) -> PrimFunc:
    """Stages 2-3: the scheduled computation as an optimised loop-IR function."""
    func = lower(sch, list(args), name, gpu_loops=target is not None and target.kind != "llvm")
    if on_pass is not None:
        on_pass("lower", func)
    for pass_name, fn in PASSES:
        func = PrimFunc(func.name, func.args, func.size_vars, fn(func.body), func.outputs)
        if on_pass is not None:
            on_pass(pass_name, func)
    return func
