"""Graph to compiled model: optimise, fuse into partitions, build one kernel per partition, and lay out the
executor's steps (which arguments come from inputs, constants, the arena or the outputs)."""
from __future__ import annotations

import logging
import time
from typing import Callable

from ..compiler.target import parse_target
from ..runtime.executor import CompiledModel, Slot, Step, TensorSpec, model_class
from .compile import build_partition
from .inplace import inplace_concats, inplace_views
from .ir import Graph, Value
from .partition import fuse
from .pipeline import optimize

log = logging.getLogger("ember")


def compile_graph(g: Graph, target="llvm", progress: "Callable[[int, int, str], None] | None" = None
                  ) -> CompiledModel:
    tgt = parse_target(target)
    start = time.perf_counter()
    g = optimize(g, tgt.kind)
    gpu = tgt.kind == "cuda"
    parts, placed = inplace_views(g, *inplace_concats(g, fuse(g, move_layouts=gpu), align=16 if gpu else 1))
    slots: dict[Value, Slot] = {}
    for k, v in enumerate(g.inputs):
        slots[v] = ("input", k)
    consts: list = []
    temps: list[TensorSpec] = []
    outputs: list[TensorSpec] = []
    output_slots: list[Slot] = []
    graph_outs = {v: k for k, v in enumerate(g.outputs)}
    for v in g.outputs:
        outputs.append(TensorSpec(v.name, v.dtype, v.shape))

    def slot_of(v: Value) -> Slot:
        if v not in slots:
            if v.is_const:
                slots[v] = ("const", len(consts))
                consts.append(v.data)
            elif v in graph_outs:
                slots[v] = ("output", graph_outs[v])
            else:
                slots[v] = ("temp", len(temps))
                temps.append(TensorSpec(v.name, v.dtype, v.shape))
        return slots[v]

    steps: list[Step] = []
    for k, part in enumerate(parts):
        if progress is not None:
            progress(k, len(parts), part.describe())
        args = [slot_of(v) for v in part.inputs] + [slot_of(v) for v in part.outputs]
        steps.append(Step(build_partition(part, tgt), args, part.describe()))
    for v in g.outputs:
        output_slots.append(slot_of(v))
    # values written in place into a Concat's result, or views of another value: [temp, parent temp, byte offset]
    aliases = [[slot_of(v)[1], slot_of(out)[1], offset] for v, (out, offset) in placed.items()]
    log.info("compiled model %s: %d kernels in %.2fs", g.name, len(steps), time.perf_counter() - start)
    return model_class(tgt)(g.name, [TensorSpec(v.name, v.dtype, v.shape) for v in g.inputs], outputs, consts,
                            temps, steps, output_slots, tgt, {"aliases": aliases} if aliases else {})
