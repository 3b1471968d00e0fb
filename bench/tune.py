"""Autotuning benchmark (issue 6): tuned vs default schedules on the CPU benchmark kernels and the ResNet-style
model, with the tuning time.

Run:  python -m bench.tune                              (2 minutes per kernel, 20 minutes for the model)
      python -m bench.tune --budget-per-kernel 20 --budget-model 120     (a short preliminary run)
      python -m bench.tune --only kernels               (or --only model)

Each case is a one-node ONNX model from bench/perf_kernels.py (MatMul, Conv, depthwise Conv, Softmax,
LayerNormalization). It is tuned with `ember.autotune` into a fresh database (or --db), then compiled twice
without the model-level cache, once with the database switched off (default schedules) and once with it, and both
are timed end to end (median after warm-up) and checked against each other. For the model, a new process then
compiles it against the database and times it, to show that reuse measures nothing and keeps the tuned latency.
Writes bench/results/tune.json.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx

import ember
from ember.compiler.target import parse_target
from ember.frontend.onnx_import import import_checked
from ember.graph.model import compile_graph
from ember.tune import autotune, using

from .common import machine, measure_interleaved, table, write_json
from .perf_kernels import conv, layernorm, matmul, softmax
from .perf_models import random_feeds, resnet_style

ROUNDS = 8
REUSE_SCRIPT = """
import json, os, sys, time
import numpy as np
import ember
from ember.tune import using
feeds = {k: v for k, v in np.load(sys.argv[2]).items()}
size = os.path.getsize(sys.argv[3])
with using(sys.argv[3]):
    t0 = time.perf_counter()
    from ember.frontend.onnx_import import import_checked, load_model
    from ember.graph.model import compile_graph
    model = compile_graph(import_checked(load_model(sys.argv[1])), "llvm")
    compile_s = time.perf_counter() - t0
model(**feeds)
times = []
for _ in range(int(sys.argv[4])):
    t = time.perf_counter(); model(**feeds); times.append(time.perf_counter() - t)
print(json.dumps({"compile_s": compile_s, "median_s": sorted(times)[len(times) // 2],
                  "db_unchanged": os.path.getsize(sys.argv[3]) == size}))
"""


def cases() -> list:
    """One case per kernel family named by the issue, at the sizes of the CPU performance benchmark."""
    return [matmul(256, 256, 256), matmul(128, 768, 768), conv(64, 56, 3), conv(256, 14, 1),
            conv(144, 56, 3, 1, group=144), softmax((1, 12, 128, 128)), layernorm(128, 768)]


def compiled(model: onnx.ModelProto, db: "Path | None"):
    """The model compiled kernel by kernel (no model-level cache), against the database or with it off."""
    with using(db):
        return compile_graph(import_checked(model), parse_target("llvm"))


def end_to_end(model: onnx.ModelProto, feeds: dict, db: Path, budget: float) -> dict:
    default, tuned = compiled(model, None), compiled(model, db)
    ref, got = default(**feeds), tuned(**feeds)
    for r, g in zip(ref, got):
        np.testing.assert_allclose(g, r, rtol=1e-3, atol=1e-3 * max(1.0, float(np.abs(r).max())))
    # Alternating rounds with pauses, as bench.perf times its contenders: two runs of one schedule differed by up
    # to 8% when each was timed in one block after the other.
    d, t = measure_interleaved([lambda: default(**feeds), lambda: tuned(**feeds)], budget, rounds=ROUNDS)
    return {"default_ms": d["median"] * 1e3, "tuned_ms": t["median"] * 1e3, "speedup": d["median"] / t["median"]}


def progress(r) -> None:  # type: ignore[no-untyped-def]
    best = "-" if r.best_time is None else f"{r.best_time * 1e3:.3f} ms"
    print(f"  [tune] {r.name}: {r.trials} trials, best {best}, "
          f"{f'{r.speedup:.2f}x' if r.speedup else '-'} over default", file=sys.stderr, flush=True)


def bench_kernels(budget: float, trials: int, db: Path, only: str) -> list[dict]:
    rows = []
    for case in cases():
        label = f"{case.name} {case.shape}"
        if only.lower() not in label.lower():
            continue
        print(f"tuning {label} ({budget:g}s)", file=sys.stderr, flush=True)
        start = time.monotonic()
        summary = autotune(case.model, trials=trials, time_budget=budget, database=db, progress=progress)
        tuning_s = time.monotonic() - start
        row = {"case": label, "tuning_s": tuning_s, "kernels": [k.as_dict() for k in summary.kernels],
               "trials": sum(k.trials for k in summary.kernels),
               "failures": sum(k.failures for k in summary.kernels)}
        row.update(end_to_end(case.model, case.feeds, db, budget=4.0))
        rows.append(row)
    return rows


def bench_model(budget: float, trials: int, db: Path) -> dict:
    model = resnet_style()
    feeds = random_feeds(model)
    print(f"tuning resnet_style ({budget:g}s)", file=sys.stderr, flush=True)
    start = time.monotonic()
    summary = autotune(model, trials=trials, time_budget=budget, database=db, progress=progress)
    tuning_s = time.monotonic() - start
    out = {"case": "resnet_style", "budget_s": budget, "tuning_s": tuning_s,
           "within_budget": tuning_s <= budget * 1.05, "kernels": [k.as_dict() for k in summary.kernels],
           "not_tuned": summary.skipped}
    out.update(end_to_end(model, feeds, db, budget=8.0))
    with tempfile.TemporaryDirectory() as tmp:
        path, inputs = Path(tmp) / "model.onnx", Path(tmp) / "feeds.npz"
        onnx.save(model, str(path))
        np.savez(inputs, **feeds)
        proc = subprocess.run([sys.executable, "-c", REUSE_SCRIPT, str(path), str(inputs), str(db), "10"],
                              capture_output=True, text=True, check=True)
        out["new_process"] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


def main(argv: "list[str] | None" = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--budget-per-kernel", type=float, default=120.0, help="seconds per kernel case (default 120)")
    p.add_argument("--budget-model", type=float, default=1200.0, help="seconds for the model (default 1200)")
    p.add_argument("--trials", type=int, default=1000, help="measurements per kernel at most (default 1000)")
    p.add_argument("--only", choices=("kernels", "model"), help="run one half")
    p.add_argument("--case", default="", help="tune only kernel cases whose label contains this text")
    p.add_argument("--db", help="tuning database (default: a fresh temporary file, so every run tunes from zero)")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(args.db) if args.db else Path(tmp) / "tuning.jsonl"
        previous = Path(__file__).resolve().parent / "results" / "tune.json"
        # --only keeps the other half of an earlier run's results, so the two halves can be run separately.
        result: dict = json.loads(previous.read_text()) if args.only and previous.is_file() else {}
        result.update({"machine": machine(), "ember": ember.__version__})
        result.update({"budget_per_kernel_s": args.budget_per_kernel} if args.only != "model" else {})
        result.update({"budget_model_s": args.budget_model} if args.only != "kernels" else {})
        if args.only != "model":
            result["kernels"] = bench_kernels(args.budget_per_kernel, args.trials, db, args.case)
            print(table([[r["case"], f"{r['default_ms']:.3f}", f"{r['tuned_ms']:.3f}", f"{r['speedup']:.2f}x",
                          str(r["trials"]), str(r["failures"]), f"{r['tuning_s']:.0f}"] for r in result["kernels"]],
                        ["kernel", "default ms", "tuned ms", "speed-up", "trials", "failed", "tuning s"]))
        if args.only != "kernels":
            m = result["model"] = bench_model(args.budget_model, args.trials, db)
            print(f"\nresnet_style: default {m['default_ms']:.2f} ms, tuned {m['tuned_ms']:.2f} ms "
                  f"({m['speedup']:.2f}x), tuning {m['tuning_s']:.0f}s of {m['budget_s']:.0f}s; new process: "
                  f"compile {m['new_process']['compile_s']:.2f}s, {m['new_process']['median_s'] * 1e3:.2f} ms, "
                  f"database unchanged: {m['new_process']['db_unchanged']}")
        print(f"\nwrote {write_json('tune', result)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
