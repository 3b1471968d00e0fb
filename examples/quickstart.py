"""End-to-end example: define a fused kernel, schedule it, compile it for this CPU, check it against numpy, time it.

Run:  python examples/quickstart.py
"""
from __future__ import annotations

import time

import numpy as np

import ember


def main() -> None:
    n = ember.var("n")  # one compiled kernel serves every length
    A = ember.placeholder((n,), "float32", "A")
    B = ember.placeholder((n,), "float32", "B")
    C = ember.placeholder((n,), "float32", "C")
    D = ember.compute((n,), lambda i: ember.tanh(A[i] * B[i] + C[i]) * 0.5, name="fused")

    s = ember.create_schedule(D)
    outer, inner = s[D].split(D.op.axis[0], 8)
    s[D].parallel(outer)
    s[D].vectorize(inner)
    print("schedule:\n" + str(s.trace))
    print("as JSON:", s.trace.to_json())

    start = time.perf_counter()
    f = ember.build(s, [A, B, C, D], name="fused")
    print(f"build: {(time.perf_counter() - start) * 1e3:.1f} ms (second runs load it from the artifact cache)")
    print(f.source("loops"))

    size = 1_000_003  # not a multiple of the vector width: the tail runs masked
    a, b, c = (np.random.default_rng(k).standard_normal(size, dtype=np.float32) for k in range(3))
    out = f(a, b, c)
    expected = np.tanh(a * b + c) * 0.5
    err = float(np.abs(out - expected).max())
    print(f"max abs error vs numpy: {err:.2e}")
    assert err < 1e-5

    for name, fn in (("ember", lambda: f(a, b, c, out)), ("numpy", lambda: np.tanh(a * b + c) * 0.5)):
        fn()
        t0 = time.perf_counter()
        for _ in range(10):
            fn()
        print(f"{name}: {(time.perf_counter() - t0) / 10 * 1e3:.2f} ms per call")


if __name__ == "__main__":
    main()
