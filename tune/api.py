"""`ember.autotune`: tune one workload or every distinct kernel of a model, through the search (search.py)
and safe measurement (measure.py), into the tuning database (database.py)."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from ..compiler.schedule import Schedule
from ..compiler.target import Target, parse_target
from ..ir.expr import Const
from ..ir.tensor import PlaceholderOp, Tensor
from .database import WorkloadKey, configured_path, open_db, using, workload_key
from .lookup import recording
from .measure import MeasureOptions, Measurer
from .search import Progress, SearchOptions, TaskResult, describe, to_json, tune_task

MIN_SHARE = 0.25  # every kernel of a model gets at least this fraction of an equal share of the budget


@dataclass
class TuneSummary:
    """Per kernel: default time, best time, speed-up, trials and failures; plus where the results went."""

    kernels: list[TaskResult] = field(default_factory=list)
    database: "Path | None" = None
    elapsed: float = 0.0
    skipped: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        text = describe(self.kernels)
        if self.skipped:
            text += "\nnot tuned: " + "; ".join(self.skipped)
        return text + f"\ntuning time {self.elapsed:.1f}s, database {self.database}"

    def to_json(self) -> str:
        return to_json(self.kernels)


def autotune(workload: Any, args: "Sequence[Tensor] | None" = None, *, target: "str | Target" = "llvm",
             trials: int = 64, time_budget: "float | None" = None, database: "str | os.PathLike | None" = None,
             measure: "MeasureOptions | None" = None, search: "SearchOptions | None" = None,
             progress: "Progress | None" = None, name: str = "kernel") -> TuneSummary:
    """Tune a workload (output tensor(s) or a Schedule, with `args` in call order as for `ember.build`) or a
    model (ONNX path, bytes or ModelProto: every distinct kernel, the budget split by estimated cost).
    `trials` caps the measurements per kernel; `time_budget` (seconds) caps the whole run."""
    start = time.monotonic()
    tgt = parse_target(target)
    if tgt.kind != "llvm":
        raise ValueError(f"autotune: target {tgt.kind!r} cannot be measured yet; only 'llvm' is supported")
    path = Path(database).expanduser() if database is not None else configured_path()
    if path is None:
        raise ValueError("autotune: the tuning database is switched off (EMBER_TUNING_DB=0); pass database=PATH")
    if not isinstance(trials, int) or trials < 1:
        raise ValueError(f"autotune: trials must be a positive integer, got {trials!r}")
    if time_budget is not None and not time_budget > 0:
        raise ValueError(f"autotune: time_budget must be a positive number of seconds, got {time_budget!r}")
    db = open_db(path)
    summary = TuneSummary(database=db.path)
    sopts = search or SearchOptions()
    if _is_model(workload):
        tasks = _model_tasks(workload, tgt, summary)
    else:
        outs = _outputs(workload)
        tasks = [(name, outs, _args(outs, args), 1.0)]
    with Measurer(measure) as measurer:
        for k, (task_name, outs, arg_list, cost) in enumerate(tasks):
            left = None if time_budget is None else time_budget - (time.monotonic() - start)
            if left is not None and left <= 0:
                summary.skipped.append(f"{task_name} (budget spent)")
                continue
            share = None
            if left is not None:
                rest = sum(c for *_, c in tasks[k:])
                share = left * max(cost / rest, MIN_SHARE / (len(tasks) - k)) if rest else left
            opts = SearchOptions(**{**sopts.__dict__, "trials": trials, "time_budget": share})
            summary.kernels.append(tune_task(outs, arg_list, tgt, db, measurer, task_name, opts, progress))
    summary.elapsed = time.monotonic() - start
    return summary


def _is_model(x: Any) -> bool:
    if isinstance(x, (str, Path, bytes)):
        return True
    return type(x).__name__ == "ModelProto"


def _outputs(workload: Any) -> list[Tensor]:
    if isinstance(workload, Schedule):
        return list(workload.original_outputs)
    outs = [workload] if isinstance(workload, Tensor) else list(workload)
    if not outs or not all(isinstance(t, Tensor) for t in outs):
        raise TypeError("autotune: expected output tensor(s), a Schedule or an ONNX model, got "
                        f"{type(workload).__name__}")
    return outs


def _args(outs: list[Tensor], args: "Sequence[Tensor] | None") -> list[Tensor]:
    from ..compiler.build import _default_args
    arg_list = _default_args(Schedule(outs)) if args is None else list(args)
    for t in arg_list:
        if not all(isinstance(d, Const) for d in t.shape):
            raise ValueError(f"autotune: argument {t.name!r} has symbolic sizes {t.shape}; tune a workload with "
                             f"constant shapes")
    return arg_list


def _work(outs: list[Tensor]) -> float:
    """Estimated cost: iterations of every compute stage (spatial x reduction extents)."""
    from ..ir.structural import topo_ops
    total = 0.0
    for op in topo_ops(outs):
        if isinstance(op, PlaceholderOp):
            continue
        n = 1.0
        for iv in (*op.axis, *op.reduce_axis):
            n *= iv.extent.value if isinstance(iv.extent, Const) else 1
        total += n
    return total


def _model_tasks(model: Any, tgt: Target, summary: TuneSummary) -> list:
    """The model's distinct kernels (as the compiler schedules them), with their cost estimated as work times
    occurrences; kernels with symbolic sizes are listed as skipped."""
    from .. import graph  # noqa: F401 - registers the ops
    from ..frontend.onnx_import import import_checked, load_model
    from ..graph.model import compile_graph
    proto = load_model(model)
    found: dict[WorkloadKey, list] = {}

    def seen(outs: list[Tensor], _target: Target) -> None:
        key = workload_key(outs)
        if key in found:
            found[key][3] += 1
        else:
            found[key] = [outs, None, None, 1]

    with using(None), recording(seen):
        compile_graph(import_checked(proto), tgt)
    tasks = []
    for k, (key, (outs, _, _, count)) in enumerate(found.items()):
        label = f"{k}:{outs[0].op.name}"
        try:
            arg_list = _args(outs, None)
        except ValueError as err:
            summary.skipped.append(f"{label} ({err})")
            continue
        tasks.append((label, outs, arg_list, _work(outs) * count))
    tasks.sort(key=lambda t: -t[3])
    return tasks
