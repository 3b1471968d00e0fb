"""The AI Core has no C math library: the scalar unit's math functions are the kernel source's own
(codegen/ascend/cmath.py). Checked against numpy over ordinary values and the special ones (zeros, infinities,
NaN, denormals, range limits), in float32 and through float16; the emulator refuses a kernel calling libm."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

import ember
from ember.codegen.ascend.cmath import LIBM_NAMES, UNARY

SPECIAL = [0.0, -0.0, np.inf, -np.inf, np.nan, 1e-40, -1e-40, 1.17549435e-38, 3.4e38, -3.4e38, 1.0, -1.0, 0.5, -0.5,
           2.5, -2.5, 88.7, -88.7, 89.5, -104.0, 1e-7, -1e-7, 1e4, -1e4]
# function -> (numpy reference, sample range, max ulp error allowed away from special cases)
FUNCS = {
    "exp": (np.exp, (-87, 88), 2), "exp2": (np.exp2, (-125, 127), 2), "log": (np.log, (1e-30, 1e30), 2),
    "log2": (np.log2, (1e-30, 1e30), 3), "log1p": (np.log1p, (-0.999, 1e6), 3), "expm1": (np.expm1, (-20, 20), 3),
    "sqrt": (np.sqrt, (0, 1e30), 1), "sin": (np.sin, (-100, 100), 2), "cos": (np.cos, (-100, 100), 2),
    "tan": (np.tan, (-1.5, 1.5), 3), "tanh": (np.tanh, (-12, 12), 3), "sinh": (np.sinh, (-88, 88), 4),
    "cosh": (np.cosh, (-88, 88), 3), "asin": (np.arcsin, (-1, 1), 3), "acos": (np.arccos, (-1, 1), 3),
    "atan": (np.arctan, (-1e4, 1e4), 2), "asinh": (np.arcsinh, (-1e5, 1e5), 3),
    "acosh": (np.arccosh, (1, 1e5), 3), "atanh": (np.arctanh, (-0.999, 0.999), 4),
    "erf": (None, (-6, 6), 8), "floor": (np.floor, (-1e9, 1e9), 0), "ceil": (np.ceil, (-1e9, 1e9), 0),
    "round": (np.rint, (-100, 100), 0), "trunc": (np.trunc, (-1e9, 1e9), 0), "abs": (np.abs, (-10, 10), 0),
}


@pytest.fixture(scope="module")
def emulator():
    if shutil.which("g++") is None:
        pytest.skip("g++ is not installed: the AscendC emulator needs it")


def _erf(x):
    import math
    return np.array([math.erf(float(v)) for v in x], dtype=np.float64)


def _ulps(got, want):
    """Distance in float32 units in the last place (0 where both are NaN or equal)."""
    g, w = got.astype(np.float32), want.astype(np.float32)
    both_nan = np.isnan(g) & np.isnan(w)
    gi, wi = g.view(np.int32).astype(np.int64), w.view(np.int32).astype(np.int64)
    gi = np.where(gi < 0, -(gi & 0x7fffffff), gi)
    wi = np.where(wi < 0, -(wi & 0x7fffffff), wi)
    d = np.abs(gi - wi)
    return np.where(both_nan, 0, np.where(np.isnan(g) | np.isnan(w), 1 << 40, d))


def _build(dtype):
    n = ember.var("n")  # symbolic size: every kernel runs on the scalar unit
    X = ember.placeholder((n,), dtype, name="X")
    outs = [ember.compute((n,), lambda i, f=f: getattr(ember, f)(X[i]), name=f"y_{f}") for f in FUNCS]
    return ember.build(outs, [X, *outs], target="ascend -emulate -cores=4")


def test_every_libm_name_is_replaced_and_poisoned():
    from pathlib import Path
    header = (Path(ember.__file__).parent / "codegen/ascend/emu/kernel_operator.h").read_text()
    poisoned = {w for line in header.splitlines() if line.startswith("#pragma GCC poison") for w in line.split()[3:]}
    assert set(LIBM_NAMES) <= poisoned
    assert all(v.startswith("ember_") for v in UNARY.values())


def test_float32_math_within_ulps_of_numpy(emulator):
    rng = np.random.default_rng(0)
    f = _build("float32")
    worst = {}
    for k, (name, (ref, (lo, hi), ulp)) in enumerate(FUNCS.items()):
        sample = rng.uniform(lo, hi, 400) if lo < 0 or hi < 1e3 else np.exp(rng.uniform(np.log(max(lo, 1e-30)), np.log(hi), 400))
        x = np.concatenate([sample, SPECIAL]).astype(np.float32)
        got = f(x)[k]
        with np.errstate(all="ignore"):
            want = (_erf(x) if ref is None else ref(x.astype(np.float64))).astype(np.float32)
        d = _ulps(got, want)
        worst[name] = int(d[:400].max())
        assert worst[name] <= ulp, (name, worst[name], x[d.argmax()], got[d.argmax()], want[d.argmax()])
        special = d[400:]
        if name in ("sin", "cos", "tan"):  # the argument reduction is accurate up to about 1e4 (cmath.py)
            special = np.where(np.abs(x[400:]) > 1e4, 0, special)
        bad = special > max(ulp, 4)
        assert not bad.any(), (name, x[400:][bad], got[400:][bad], want[400:][bad])


def test_float16_math_rounds_float32_results(emulator):
    rng = np.random.default_rng(1)
    f = _build("float16")
    for k, (name, (ref, (lo, hi), _)) in enumerate(FUNCS.items()):
        x = np.clip(rng.uniform(max(lo, -60000), min(hi, 60000), 200), -60000, 60000).astype(np.float16)
        with np.errstate(all="ignore"):
            want = (_erf(x) if ref is None else ref(x.astype(np.float64))).astype(np.float16)
        got = f(x)[k]
        np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64), rtol=2e-3, atol=1e-4,
                                   err_msg=name)


def test_a_kernel_calling_libm_does_not_compile(emulator):
    from ember.codegen.ascend import emulate
    source = '#include "kernel_operator.h"\nextern "C" __global__ __aicore__ void k(GM_ADDR x) { float y = expf(1.0f); (void)y; }\n'
    with pytest.raises(Exception, match="poison"):
        emulate.compile_module(source, [emulate.KernelSpec("k", (emulate.GmParam("x", True),), None)], 2201, 196608)
