"""Index arithmetic width in generated CUDA: `int` where every intermediate provably fits (static shapes),
`long long` where it may not (symbolic sizes, tensors past 2^31 elements), with the same results."""
from __future__ import annotations

import re

import numpy as np
import pytest

import ember
from ember.testing import gpu_test_target, gpu_test_unavailable

EMU = gpu_test_target()  # the CPU emulator; EMBER_TEST_CUDA_TARGET=cuda runs the same cases on a GPU
pytestmark = pytest.mark.skipif(gpu_test_unavailable() is not None, reason=str(gpu_test_unavailable()))


def _transpose_add(shape):
    a = ember.placeholder(shape, name="a")
    b = ember.placeholder((shape[1],), name="b")
    out = ember.compute((shape[1], shape[0]), lambda i, j: a[j, i] + b[i], name="out")
    return ember.build(out, target=EMU, name="transpose_add")


def _kernel_text(src: str) -> str:
    return src[src.index("// ---- kernels ----"):]


def test_static_shapes_index_in_int_and_match_numpy():
    f = _transpose_add((37, 300))
    text = _kernel_text(f.source("cuda"))
    assert "long long" not in text and "LL" not in re.sub(r"\d+LL;", "", text)
    x = np.random.default_rng(0).standard_normal((37, 300)).astype(np.float32)
    y = np.random.default_rng(1).standard_normal(300).astype(np.float32)
    np.testing.assert_allclose(f(x, y), x.T + y[:, None])


def test_symbolic_sizes_keep_64_bit_indices():
    n = ember.var("n")
    f = _transpose_add((n, 300))
    assert "const long long" in _kernel_text(f.source("cuda"))
    x = np.random.default_rng(2).standard_normal((5, 300)).astype(np.float32)
    y = np.random.default_rng(3).standard_normal(300).astype(np.float32)
    np.testing.assert_allclose(f(x, y), x.T + y[:, None])


def test_an_index_past_int32_is_computed_in_64_bits():
    """70000 x 40000 elements: the flat index of the last rows exceeds 2^31 (compiled, not run)."""
    f = _transpose_add((70000, 40000))
    text = _kernel_text(f.source("cuda"))
    store = next(line for line in text.splitlines() if line.strip().startswith("out["))
    assert "LL" in store or "long long" in store
