"""The LLVM backend's own vector float32 exp, tanh and erf (codegen/llvm/vmath.py; LLVM would call libm once per
lane) against float64 references over the whole range, special values included, in vectorized loops."""
from __future__ import annotations

import math

import numpy as np
import pytest

import ember
from ember.compiler.target import parse_target

SPECIAL = np.float32([0.0, -0.0, 1e-30, -1e-30, 1e-7, 0.5, -0.5, 3.99, 4.0, 4.01, -4.01, 9.0, 88.0, -104.0,
                      np.inf, -np.inf, np.nan])
REFERENCE = {"exp": np.exp, "tanh": np.tanh, "erf": np.vectorize(math.erf)}


# The host CPU (AVX-512 where it has it: exp scales by 2^n with vscalefps) and an AVX2 CPU (integer scaling).
TARGETS = ["llvm", "llvm -mcpu=haswell"]


def _kernel(name: str, n: int, target: str = "llvm"):
    X = ember.placeholder((n,), "float32", "X")
    Y = ember.compute((n,), lambda i: getattr(ember, name)(X[i]), name="Y")
    sch = ember.create_schedule(Y)
    _, inner = sch[Y].split("i", 16)
    sch[Y].vectorize(inner)
    return ember.build(sch, [X, Y], target=target)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("name,tolerance", [("exp", 3e-7), ("tanh", 3e-7), ("erf", 6e-7)])
def test_vector_math_matches_float64(name, tolerance, target):
    grid = np.linspace(-12, 12, 200_003, dtype=np.float32)
    tiny = np.float32(10.0) ** np.linspace(-30, 1, 4001, dtype=np.float32)
    x = np.concatenate([grid, tiny, -tiny, SPECIAL])
    if name == "exp":
        x = x[(x > -87) | ~np.isfinite(x)]  # below that exp's result is denormal: checked absolutely below
    f = _kernel(name, x.size, target)
    assert f"@{name}" not in f.source("llvm-opt")  # no per-lane libm call
    if name != "erf":
        assert ("vscalefps" in f.source("asm")) == parse_target(target).cpu_has("avx512f")
    got = f(x)
    want = REFERENCE[name](x.astype(np.float64))
    finite = np.isfinite(want)
    assert np.array_equal(np.isnan(got), np.isnan(want))
    assert np.array_equal(got[~finite & ~np.isnan(want)], want[~finite & ~np.isnan(want)])
    rel = np.abs(got[finite] - want[finite]) / np.maximum(np.abs(want[finite]), np.finfo(np.float32).tiny)
    assert rel.max() <= tolerance, (name, float(rel.max()), x[finite][rel.argmax()])


@pytest.mark.parametrize("target", TARGETS)
def test_exp_at_the_ends_of_the_float32_range(target):
    """Up to the overflow threshold exp stays accurate and then is inf; down to the denormals it is accurate in
    absolute terms and then 0 (the clamped input's 2^n scaling overflows and underflows by itself)."""
    top = np.linspace(80, 88.72, 20001, dtype=np.float32)
    bottom = np.linspace(-110, -87, 20001, dtype=np.float32)
    over = np.float32([88.73, 88.9, 89.0, 95.0, 1e4, 3e38])
    f = _kernel("exp", 16 * 2502, target)
    x = np.concatenate([top, bottom, over, np.zeros(16 * 2502 - 40008, np.float32)])
    with np.errstate(over="ignore"):
        got, want = f(x), np.exp(x.astype(np.float64))
    n = top.size
    assert np.all(np.abs(got[:n] - want[:n]) / want[:n] <= 3e-7)
    assert np.all(np.abs(got[n:2 * n] - want[n:2 * n]) <= 2 * float(np.finfo(np.float32).smallest_subnormal))
    assert np.all(np.isinf(got[2 * n:2 * n + over.size]))
