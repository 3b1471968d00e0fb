"""The emulator's cases on a real GPU (target "cuda", through cupy); skipped where cupy or a device is missing."""
from __future__ import annotations

import numpy as np
import pytest

import ember


def _device_available() -> bool:
    try:
        import cupy
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # no cupy, no driver, no device
        return False


pytestmark = pytest.mark.skipif(not _device_available(), reason="needs cupy and an NVIDIA GPU")


def test_elementwise_with_cupy_and_numpy_arrays():
    import cupy
    n = ember.var("n")
    a = ember.placeholder((n,), name="a")
    out = ember.compute((n,), lambda i: ember.exp(a[i]) * 2, name="out")
    f = ember.build(out, target="cuda")
    x = np.random.default_rng(0).standard_normal(1000).astype(np.float32)
    got_dev = f(cupy.asarray(x))
    assert isinstance(got_dev, cupy.ndarray)
    np.testing.assert_allclose(cupy.asnumpy(got_dev), np.exp(x) * 2, rtol=1e-5)
    got_host = f(x)
    assert isinstance(got_host, np.ndarray)
    np.testing.assert_allclose(got_host, np.exp(x) * 2, rtol=1e-5)


@pytest.mark.parametrize("rows,length", [(3, 1000), (64, 33)])
def test_row_sum(rows, length):
    a = ember.placeholder((rows, length), name="a")
    k = ember.reduce_axis(length, "k")
    out = ember.compute((rows,), lambda i: ember.sum(a[i, k], axis=k), name="out")
    x = np.random.default_rng(1).standard_normal((rows, length)).astype(np.float32)
    np.testing.assert_allclose(ember.build(out, target="cuda")(x), x.sum(1), rtol=1e-4, atol=1e-4)


def test_matmul():
    n, k, m = ember.var("n"), ember.var("k"), ember.var("m")
    a = ember.placeholder((n, k), name="a")
    b = ember.placeholder((k, m), name="b")
    r = ember.reduce_axis(k, "r")
    out = ember.compute((n, m), lambda i, j: ember.sum(a[i, r] * b[r, j], axis=r), name="out")
    f = ember.build(out, target="cuda")
    x = np.random.default_rng(2).standard_normal((70, 33)).astype(np.float32)
    y = np.random.default_rng(3).standard_normal((33, 257)).astype(np.float32)
    np.testing.assert_allclose(f(x, y), x @ y, rtol=1e-4, atol=1e-4)
