"""Comparing kernels with numpy references, with dtype-aware tolerances and failure messages that carry
everything needed to replay the failing case (shapes, dtypes, errors, the schedule trace and a replay line)."""
from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np

from ..compiler.build import build
from ..compiler.default_schedule import default_schedule
from ..compiler.schedule import Schedule, from_trace
from ..compiler.target import parse_target
from ..compiler.trace import Trace
from ..ir.expr import Var
from ..ir.structural import topo_ops
from ..ir.symbolic import evaluate
from ..ir.tensor import ComputeOp, PlaceholderOp, Tensor
from .strategies import Workload, workload

# Relative tolerance per float dtype: a few units in the last place after typical rounding, loose enough for
# reassociated sums, tight enough that a wrong index or a dropped tail iteration always shows.
RTOL = {"float16": 1e-2, "float32": 1e-4, "float64": 1e-9}


def tolerance(dtype: Any, want: np.ndarray, reduce_len: int = 1) -> tuple[float, float]:
    """(rtol, atol) for comparing with `want`. Integers and bools are exact. A reduction of n terms may round
    ~sqrt(n) times worse and cancel down to small results, so its atol grows with sqrt(n) and the output scale."""
    name = np.dtype(str(dtype)).name
    if name not in RTOL:
        return 0.0, 0.0
    rtol = RTOL[name]
    if reduce_len <= 1:
        return rtol, rtol
    finite = np.abs(want[np.isfinite(want)]) if np.size(want) else np.zeros(0)
    scale = max(1.0, float(finite.max())) if finite.size else 1.0
    return rtol, rtol * math.sqrt(reduce_len) * scale


def mismatch(got: Any, want: Any, dtype: Any, rtol: "float | None" = None, atol: "float | None" = None,
             reduce_len: int = 1) -> "str | None":
    """None when `got` matches `want` (cast to `dtype`) within tolerance, else a description of the worst
    differences. NaN must meet NaN and infinities must be equal."""
    dt = np.dtype(str(dtype))
    got = np.asarray(got)
    with np.errstate(all="ignore"):
        want = np.asarray(want).astype(dt)
    if got.shape != want.shape:
        return f"shape {got.shape} differs from the reference's {want.shape}"
    if got.dtype != dt:
        return f"dtype {got.dtype} differs from the expected {dt}"
    g, w = got.astype(np.float64), want.astype(np.float64)
    d_rtol, d_atol = tolerance(dt, w, reduce_len)
    rtol = d_rtol if rtol is None else rtol
    atol = d_atol if atol is None else atol
    finite = np.isfinite(g) & np.isfinite(w)
    with np.errstate(all="ignore"):
        err = np.where(finite, np.abs(g - w), 0.0)
        same_special = (np.isnan(g) & np.isnan(w)) | (g == w)
        bad = np.where(finite, err > atol + rtol * np.abs(w), ~same_special)
    if not bad.any():
        return None
    err = np.where(bad & ~finite, np.inf, err)
    worst = np.unravel_index(int(np.argmax(np.where(bad, err, -1.0))), got.shape)
    with np.errstate(all="ignore"):
        rel = np.where(finite & (w != 0), err / np.abs(w), np.where(err > 0, np.inf, 0.0))
    return (f"{int(bad.sum())} of {got.size} elements differ (allowed |got - want| <= {atol:.3g} + "
            f"{rtol:.3g} * |want|); max abs error {err[bad].max():.6g}, max rel error {rel[bad].max():.6g}; "
            f"worst at index {tuple(int(i) for i in worst)}: got {got[worst]!r}, want {want[worst]!r}")


def assert_close(got: Any, want: Any, dtype: Any, rtol: "float | None" = None, atol: "float | None" = None,
                 reduce_len: int = 1) -> None:
    """Assert `got` equals `want` within the tolerances of `dtype` (see `tolerance`)."""
    problem = mismatch(got, want, dtype, rtol, atol, reduce_len)
    if problem is not None:
        raise AssertionError(f"shape {np.shape(got)}, dtype {np.dtype(str(dtype))}: {problem}")


def check_kernel(make_workload: Workload, reference: Callable[..., Any], inputs: Sequence[np.ndarray],
                 schedule: "Schedule | Trace | str | None" = None, target: str = "llvm",
                 rtol: "float | None" = None, atol: "float | None" = None) -> list[np.ndarray]:
    """Build `make_workload()` (returning (outputs, args)) under `schedule` (a Schedule, Trace or trace JSON,
    replayed onto a fresh workload; None for the default schedule), run it on `inputs` and compare every output
    with `reference(*inputs)`. Returns the kernel's outputs; raises AssertionError explaining any difference."""
    outs, args = workload(make_workload)
    if schedule is None:
        sch = default_schedule(outs, parse_target(target))
    else:
        sch = from_trace(outs, schedule.trace if isinstance(schedule, Schedule) else schedule)
    context = _Context(make_workload, sch, target, args, inputs)
    try:
        kernel = build(sch, args, target=target)
        got = kernel(*inputs)
    except Exception as err:
        err.add_note(context.describe())
        raise
    got_list = list(got) if isinstance(got, tuple) else [got]
    want = reference(*inputs)
    want_list = list(want) if isinstance(want, (tuple, list)) else [want]
    if len(want_list) != len(got_list):
        raise AssertionError(f"the reference returned {len(want_list)} outputs but the kernel has "
                             f"{len(got_list)}\n{context.describe()}")
    n = _reduce_len(outs, args, inputs)
    kernel_outs = [p for p in kernel.params if p.is_output]
    problems = []
    for p, g, w in zip(kernel_outs, got_list, want_list):
        problem = mismatch(g, w, p.dtype.name, rtol, atol, n)
        if problem is not None:
            problems.append(f"output {p.name!r} (shape {np.shape(g)}, dtype {p.dtype}): {problem}")
    if problems:
        raise AssertionError("kernel differs from the reference:\n  " + "\n  ".join(problems) + "\n"
                             + context.describe())
    return got_list


class _Context:
    """What a failure message needs to let someone replay the case."""

    def __init__(self, make_workload: Workload, sch: Schedule, target: str, args: list[Tensor],
                 inputs: Sequence[np.ndarray]):
        self.make_workload, self.sch, self.target, self.args, self.inputs = make_workload, sch, target, args, inputs

    def describe(self) -> str:
        ins = ", ".join(f"{t.name}: {np.asarray(a).dtype}{list(np.shape(a))}"
                        for t, a in zip(_placeholders(self.args), self.inputs))
        fn = getattr(self.make_workload, "__name__", "make_workload")
        trace = self.sch.trace
        steps = "\n".join(f"    {line}" for line in str(trace).splitlines())
        return (f"  inputs: {ins}\n  target: {self.target}\n  schedule:\n{steps}\n"
                f"  schedule trace JSON: {trace.to_json()}\n"
                f"  replay: outs, args = {fn}(); f = ember.build(ember.from_trace(outs, {trace.to_json()!r}), "
                f"args, target={self.target!r})")


def _placeholders(args: list[Tensor]) -> list[Tensor]:
    return [t for t in args if isinstance(t.op, PlaceholderOp)]


def _reduce_len(outs: list[Tensor], args: list[Tensor], inputs: Sequence[np.ndarray]) -> int:
    """Terms reduced by all the workload's reductions together, for scaling tolerances (symbolic extents are
    bound from the input shapes; unbound ones count as 1)."""
    sizes: dict[str, int] = {}
    for t, a in zip(_placeholders(args), inputs):
        for d, n in zip(t.shape, np.shape(a)):
            if isinstance(d, Var):
                sizes[d.name] = n
    total = 0
    for op in topo_ops(outs):
        if isinstance(op, ComputeOp) and op.reduce_axis:
            length = 1
            for iv in op.reduce_axis:
                try:
                    length *= max(evaluate(iv.extent, sizes), 1)
                except (KeyError, ValueError):
                    pass
            total += length
    return max(total, 1)
