"""CPU performance of ember next to numpy (its BLAS) and onnxruntime, on kernels and whole models (issue 5).

Run:  python -m bench.perf                   (from the repository root; the full run, about 5 minutes on 2 cores)
      python -m bench.perf --quick           (a subset, under 2 minutes)
      python -m bench.perf --only kernels    (or --only models; combines with --quick)
      python -m bench.perf --match Conv      (only the kernels and models whose name and shape contain a pattern)
      python -m bench.perf --target cuda     (the GPU benchmark instead: bench.cuda, see its docstring)

Each kernel is a one- or few-node ONNX model compiled by `ember.compile` and run by onnxruntime
(intra_op_num_threads=2, ORT_ENABLE_ALL); ember's output is checked against onnxruntime's. Times are the median
and min over repeats chosen to fill a time budget, after warm-up, taken in alternating rounds (ember, onnxruntime,
numpy, ember, ...) with short pauses between them, so that noisy phases of a shared machine and one runtime's idle
spinning threads do not favour the other. Ratios are ember time / peer time: below 1
ember is faster. Model compile times are taken in fresh subprocesses: cold with an empty EMBER_CACHE_DIR, warm
with the cache that run filled. Writes bench/results/perf.json.
"""
from __future__ import annotations

import argparse
import ctypes
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

import ember
from ember.compiler.target import parse_target
from ember.runtime.cache import reset_default_cache

from .common import machine, measure, measure_interleaved, table, write_json
from .perf_kernels import Case, kernel_cases
from .perf_models import model_cases, tiny

ORT_THREADS = 2
COMPILE_SCRIPT = """
import json, sys, time
import ember
t0 = time.perf_counter()
ember.compile(sys.argv[1])
print(json.dumps({"seconds": time.perf_counter() - t0, "compiles": ember.runtime.stats()["compiles"]}))
"""


def use_cache(directory: Path) -> None:
    """Point this process's ember artifact cache at `directory` (the cache reads EMBER_CACHE_DIR once)."""
    os.environ["EMBER_CACHE_DIR"] = str(directory)
    reset_default_cache()


def ort_session(model: onnx.ModelProto) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = ORT_THREADS
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3  # light_resnet50 carries an unused initializer that onnxruntime warns about
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def agreement(got: list[np.ndarray], want: list[np.ndarray]) -> str:
    """'ok', or the worst error when an output is off by more than 1e-3 of the reference's magnitude."""
    worst = 0.0
    for g, w in zip(got, want):
        scale = float(np.abs(w).max()) if w.size else 1.0
        if g.shape != w.shape:
            return f"DIFF shape {g.shape} vs {w.shape}"
        if not np.allclose(g, w, rtol=1e-3, atol=1e-3 * max(scale, 1e-6)):
            worst = max(worst, float(np.abs(g - w).max()) / max(scale, 1e-6))
    return "ok" if worst == 0.0 else f"DIFF {worst:.1e}"


def blas_threads() -> str:
    """The thread count numpy's OpenBLAS will use, read from the loaded library itself."""
    with open("/proc/self/maps") as maps:
        libs = {line.split()[-1] for line in maps if "openblas" in line.lower() and line.strip().endswith(".so")}
    for path in libs:
        lib = ctypes.CDLL(path)
        for symbol in ("scipy_openblas_get_num_threads64_", "openblas_get_num_threads64_", "openblas_get_num_threads"):
            if hasattr(lib, symbol):
                return str(getattr(lib, symbol)())
    return "unknown"


def threads() -> dict:
    return {"ember": parse_target("llvm").get("threads"), "onnxruntime": ORT_THREADS, "numpy_blas": blas_threads()}


def ms(t: dict | None, key: str = "median") -> str:
    return "-" if t is None else f"{t[key] * 1e3:.3f}"


def run_kernel(case: Case, budget: float) -> dict:
    """Compile time, output check and times of one kernel in ember, onnxruntime and numpy where it has one."""
    t0 = time.perf_counter()
    compiled = ember.compile(case.model)
    compile_s = time.perf_counter() - t0
    args = [case.feeds[i.name] for i in case.model.graph.input if i.name in case.feeds]
    sess = ort_session(case.model)
    mark = agreement(compiled(*args), sess.run(None, case.feeds))
    contenders = [lambda: compiled(*args), lambda: sess.run(None, case.feeds)] + ([case.numpy] if case.numpy else [])
    e, o, *n = measure_interleaved(contenders, budget * len(contenders))
    n = n[0] if n else None
    print(f"  {case.name} {case.shape}: ember {ms(e)} ms, onnxruntime {ms(o)} ms  {mark}", flush=True)
    return {"kernel": case.name, "shape": case.shape, "compile_s": compile_s, "ember": e, "onnxruntime": o,
            "numpy": n, "ember/ort": e["median"] / o["median"], "ember/ort_min": e["min"] / o["min"],
            "ember/numpy": e["median"] / n["median"] if n else None, "unit": case.unit,
            "ember_rate": case.work / e["median"] / 1e9, "ort_rate": case.work / o["median"] / 1e9, "check": mark}


def kernel_table(results: list[dict]) -> str:
    rows = [[r["kernel"], r["shape"], ms(r["ember"]), ms(r["ember"], "min"), ms(r["onnxruntime"]),
             ms(r["onnxruntime"], "min"), f"{r['ember/ort']:.2f}", f"{r['ember/ort_min']:.2f}", ms(r["numpy"]),
             "-" if r["ember/numpy"] is None else f"{r['ember/numpy']:.2f}",
             f"{r['ember_rate']:.1f} / {r['ort_rate']:.1f} {r['unit']}", f"{r['compile_s']:.2f}", r["check"]]
            for r in results]
    return table(rows, ["kernel", "shape", "ember ms", "(min)", "ort ms", "(min)", "ember/ort", "(min)", "numpy ms",
                        "ember/numpy", "rate ember / ort", "compile s", "check"])


def subprocess_compile(path: Path, cache: Path) -> dict:
    """Compile time of `ember.compile(path)` in a fresh interpreter using `cache` (import time excluded)."""
    env = {**os.environ, "EMBER_CACHE_DIR": str(cache)}
    out = subprocess.run([sys.executable, "-c", COMPILE_SCRIPT, str(path)], env=env, capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_model(name: str, model: onnx.ModelProto, feeds: dict[str, np.ndarray], budget: float,
              scratch: Path) -> dict:
    """Cold and warm compile in subprocesses, then latency here (loading the cold run's cache) against ort."""
    path, cache = scratch / f"{name}.onnx", scratch / f"cache-{name}"
    onnx.save(model, str(path))
    cold, warm = subprocess_compile(path, cache), subprocess_compile(path, cache)
    use_cache(cache)  # loads what the cold run built, so this process does not compile again
    compiled = ember.compile(model)
    sess = ort_session(model)
    mark = agreement(list(compiled.run(feeds).values()), sess.run(None, feeds))
    e, o = measure_interleaved([lambda: compiled.run(feeds), lambda: sess.run(None, feeds)], 2 * budget)
    print(f"  {name}: cold compile {cold['seconds']:.1f} s, ember {ms(e)} ms, onnxruntime {ms(o)} ms  {mark}",
          flush=True)
    return {"model": name, "cold_compile_s": cold["seconds"], "kernels_built": cold["compiles"],
            "warm_compile_s": warm["seconds"], "warm_kernels_built": warm["compiles"], "ember": e,
            "onnxruntime": o, "ember/ort": e["median"] / o["median"], "ember/ort_min": e["min"] / o["min"],
            "check": mark}


def model_table(results: list[dict]) -> str:
    rows = [[r["model"], f"{r['cold_compile_s']:.2f}", str(r["kernels_built"]), f"{r['warm_compile_s']:.3f}",
             ms(r["ember"]), ms(r["ember"], "min"), ms(r["onnxruntime"]), ms(r["onnxruntime"], "min"),
             f"{r['ember/ort']:.2f}", f"{r['ember/ort_min']:.2f}", r["check"]] for r in results]
    return table(rows, ["model", "cold compile s", "kernels", "warm compile s", "ember ms", "(min)", "ort ms",
                        "(min)", "ember/ort", "(min)", "check"])


def overhead() -> dict:
    """Per-call cost of a one-Relu model on four floats: what the executor adds to every inference."""
    model = tiny()
    x = np.float32([[1, -2, 3, -4]])
    compiled, sess = ember.compile(model), ort_session(model)
    e = measure(lambda: compiled(x), repeats=2000, warmup=100)
    o = measure(lambda: sess.run(None, {"x": x}), repeats=2000, warmup=100)
    return {"ember_us": e["median"] * 1e6, "ember_min_us": e["min"] * 1e6, "ort_us": o["median"] * 1e6,
            "ort_min_us": o["min"] * 1e6, "ember/ort": e["median"] / o["median"]}


def picked(label: str, patterns: list[str]) -> bool:
    return not patterns or any(p in label for p in patterns)


def geomean(values: list[float]) -> float:
    return math.exp(sum(map(math.log, values)) / len(values)) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a subset of kernels and models (under 2 minutes)")
    parser.add_argument("--only", choices=["kernels", "models"], help="run one half only")
    parser.add_argument("--match", action="append", default=[], metavar="TEXT",
                        help="keep only cases whose 'name shape' contains TEXT (repeatable: any of them)")
    parser.add_argument("--target", default="llvm", help='llvm (this benchmark), or "cuda" / "cuda -emulate": '
                        'the GPU benchmark, bench.cuda')
    args = parser.parse_args()
    if args.target != "llvm":
        from .cuda import main as cuda_main
        sys.exit(cuda_main(["--target", args.target] + [f"--match={m}" for m in args.match]))
    budget = 0.5 if args.quick else 1.0
    with tempfile.TemporaryDirectory(prefix="ember-perf-") as tmp:
        scratch = Path(tmp)
        use_cache(scratch / "cache")  # every ember compile here starts cold and leaves the user's cache alone
        info = {"machine": machine(), "threads": threads(), "quick": args.quick, "budget_s": budget}
        print(f"machine: {info['machine']}\nthreads: {info['threads']}\n", flush=True)
        if args.only != "models":
            cases = [c for c in kernel_cases()
                     if (c.quick or not args.quick) and picked(f"{c.name} {c.shape}", args.match)]
            info["kernels"] = [run_kernel(case, budget) for case in cases]
            print("\n" + kernel_table(info["kernels"]) + "\n")
        if args.only != "kernels":
            info["overhead"] = overhead()
            models = {k: v for k, v in model_cases(args.quick).items() if picked(k, args.match)}
            info["models"] = [run_model(name, model, feeds, budget * 3, scratch)
                              for name, (model, feeds) in models.items()]
            for key in ("ember/ort", "ember/ort_min"):
                info[f"models_geomean_{key}"] = geomean([r[key] for r in info["models"]])
            print("\n" + model_table(info["models"]))
            print(f"geometric mean of model ratios (ember/ort): {info['models_geomean_ember/ort']:.2f} of medians, "
                  f"{info['models_geomean_ember/ort_min']:.2f} of mins")
            over = info["overhead"]
            print(f"per-call overhead, one Relu on [1,4]: ember {over['ember_us']:.1f} us, onnxruntime "
                  f"{over['ort_us']:.1f} us (ember/ort {over['ember/ort']:.2f})")
    print(f"\nresults written to {write_json('perf', info)}")


if __name__ == "__main__":
    main()
