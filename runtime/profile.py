"""Per-kernel timing of a compiled model (`CompiledModel.profile`, `ember run --profile N`).

Which kernel a model spends its time in is the first question when it is slow, and the answer decides what is
worth tuning. Each kernel is timed around its launch (with a device sync for GPU models) over several calls;
the table names the graph nodes each kernel runs, so a slow kernel maps back to the user's model.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any, Sequence

from .text import text_table


@dataclass(frozen=True)
class KernelTime:
    index: int  # position in the model's launch order
    kernel: str
    nodes: str  # the graph nodes it runs
    median_s: float
    min_s: float


@dataclass(frozen=True)
class Profile:
    model: str
    kernels: list[KernelTime]
    call_s: float  # median time of one whole call, overhead included
    runs: int

    @property
    def kernel_s(self) -> float:
        return sum(k.median_s for k in self.kernels)

    def __str__(self) -> str:
        total = self.kernel_s or 1.0
        rows = [[f"{k.median_s * 1e3:.3f}", f"{k.median_s / total:.1%}", f"{k.min_s * 1e3:.3f}", str(k.index),
                 k.kernel, k.nodes] for k in sorted(self.kernels, key=lambda k: -k.median_s)]
        table = text_table(["median ms", "share", "min ms", "#", "kernel", "nodes"], rows)
        return (f"{table}\n{self.model}: {len(self.kernels)} kernels, {self.kernel_s * 1e3:.3f} ms in kernels, "
                f"{self.call_s * 1e3:.3f} ms per call (median of {self.runs})")


def profile(model: Any, feeds: "dict[str, Any] | Sequence[Any]", runs: int = 10, warmup: int = 2) -> Profile:
    if not isinstance(runs, int) or runs < 1 or not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"profile: runs must be a positive and warmup a non-negative integer, got {runs!r}, "
                         f"{warmup!r}")
    for _ in range(warmup):
        model.run(feeds)
    arrays = model._bind_feeds(feeds)
    times: list[list[float]] = [[] for _ in model.steps]
    calls = []
    for _ in range(runs):
        start = time.perf_counter()
        model._execute(arrays, times)
        calls.append(time.perf_counter() - start)
    kernels = [KernelTime(k, step.kernel.name, step.label, statistics.median(t), min(t))
               for k, (step, t) in enumerate(zip(model.steps, times))]
    return Profile(model.name, kernels, statistics.median(calls), runs)
