"""Timing helpers shared by the benchmarks: warm-up, repeats, median and min, printed side by side."""
from __future__ import annotations

import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Callable


def measure(fn: Callable[[], object], repeats: int = 20, warmup: int = 3, min_time: float = 0.0) -> dict:
    return _summary(_samples(fn, repeats, warmup, min_time))


def _samples(fn: Callable[[], object], repeats: int, warmup: int, min_time: float) -> list[float]:
    """Times of `fn` after `warmup` calls: at least `repeats` of them and `min_time` seconds' worth."""
    for _ in range(warmup):
        fn()
    times = []
    start = time.perf_counter()
    while len(times) < repeats or time.perf_counter() - start < min_time:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def _summary(times: list[float]) -> dict:
    return {"median": statistics.median(times), "min": min(times), "runs": len(times)}


def measure_interleaved(fns: list[Callable[[], object]], budget: float, rounds: int = 4,
                        pause: float = 0.05) -> list[dict]:
    """`measure` for several contenders in alternating rounds, so slow phases of a shared machine hit them all
    alike; the pause between rounds lets one contender's idle, spinning worker threads go to sleep before the
    next one runs (onnxruntime's pool spins after each run and would otherwise slow the next contender down)."""
    samples: list[list[float]] = [[] for _ in fns]
    for _ in range(rounds):
        for fn, out in zip(fns, samples):
            time.sleep(pause)
            out.extend(_samples(fn, max(3 - len(out), 0), 1, budget / rounds))
    return [_summary(t) for t in samples]


def machine() -> dict:
    import llvmlite.binding as llvm
    return {"cpu": llvm.get_host_cpu_name(), "cores": os.cpu_count(), "python": platform.python_version(),
            "threads": os.environ.get("OMP_NUM_THREADS", "all cores")}


def write_json(name: str, data: dict) -> Path:
    out = Path(__file__).resolve().parent / "results"
    out.mkdir(exist_ok=True)
    path = out / f"{name}.json"
    path.write_text(json.dumps(data, indent=2))
    return path


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*header), fmt.format(*["-" * w for w in widths])] + [fmt.format(*r) for r in rows])
