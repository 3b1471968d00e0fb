"""Benchmarks of the core compiler: a fused element-wise kernel against numpy, and compile times.

Run:  python -m bench.core        (from the repository root, after `pip install -e .`)
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap

import numpy as np

import ember
from bench.common import machine, measure, table, write_json

N = 16 * 1024 * 1024


def elementwise() -> list[list[str]]:
    a, b, c = (np.random.default_rng(i).random(N, dtype=np.float32) for i in range(3))
    out = np.empty_like(a)
    A, B, C = (ember.placeholder((N,), "float32", name) for name in "ABC")
    D = ember.compute((N,), lambda i: A[i] * B[i] + C[i], name="fma")
    f = ember.build(D, [A, B, C, D])
    f(a, b, c, out)
    assert np.allclose(out, a * b + c, rtol=1e-6)
    scratch = np.empty_like(a)
    t_ember = measure(lambda: f(a, b, c, out))
    t_numpy = measure(lambda: np.add(np.multiply(a, b, out=scratch), c, out=scratch))
    t_copy = measure(lambda: np.copyto(scratch, a))
    bytes_ember, bytes_copy = 4 * N * 4, 2 * N * 4
    rows = []
    for name, t, nbytes in (("ember a*b+c", t_ember, bytes_ember), ("numpy a*b+c (out=)", t_numpy, bytes_ember),
                            ("numpy.copyto", t_copy, bytes_copy)):
        rows.append([name, f"{t['median'] * 1e3:.2f}", f"{t['min'] * 1e3:.2f}", f"{nbytes / t['median'] / 1e9:.1f}"])
    ratio_np = t_ember["median"] / t_numpy["median"]
    ratio_bw = (bytes_ember / t_ember["median"]) / (bytes_copy / t_copy["median"])
    print(table(rows, ["kernel (16M float32)", "median ms", "min ms", "GB/s moved"]))
    print(f"ember time / numpy time: {ratio_np:.2f}   ember GB/s / copyto GB/s: {ratio_bw:.2f}")
    return rows, {"ember_over_numpy_time": ratio_np, "ember_over_copyto_bandwidth": ratio_bw}


COMPILE_SCRIPT = textwrap.dedent("""
    import json, time, sys
    t0 = time.perf_counter()
    import ember
    A, B, C = (ember.placeholder((1 << 20,), "float32", n) for n in "ABC")
    D = ember.compute((1 << 20,), lambda i: ember.tanh(A[i] * B[i] + C[i]) * 0.5, name="fused")
    t1 = time.perf_counter()
    from ember.codegen.llvm import thread_pool
    from ember.compiler.target import parse_target
    thread_pool(), parse_target("llvm")  # one-time per process: load LLVM, probe the host CPU
    t2 = time.perf_counter()
    f = ember.build(D)
    t3 = time.perf_counter()
    print(json.dumps({"import": t1 - t0, "llvm_init": t2 - t1, "build": t3 - t2, "stats": ember.runtime.stats()}))
""")


def compile_times() -> dict:
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "EMBER_CACHE_DIR": cache}
        runs = []
        for _ in range(2):
            out = subprocess.run([sys.executable, "-c", COMPILE_SCRIPT], env=env, capture_output=True, text=True,
                                 check=True)
            import json
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    cold, warm = runs
    rows = [[label, f"{r['build'] * 1e3:.1f}", str(r["stats"]["compiles"]), f"{r['llvm_init'] * 1e3:.1f}",
             f"{r['import'] * 1e3:.0f}"] for label, r in (("cold (empty cache)", cold), ("warm (new process)", warm))]
    print(table(rows, ["fused element-wise kernel build", "build ms", "compiles", "LLVM init ms (once)",
                       "import ember ms"]))
    return {"cold_build_s": cold["build"], "warm_build_s": warm["build"], "llvm_init_s": warm["llvm_init"],
            "import_s": warm["import"]}


def main() -> None:
    print(f"machine: {machine()}")
    rows, ratios = elementwise()
    print()
    times = compile_times()
    path = write_json("core", {"machine": machine(), "elementwise": rows, "ratios": ratios, "compile": times})
    print(f"\nresults written to {path}")


if __name__ == "__main__":
    main()
