"""The register-blocked matmul schedule (compiler/rules_contraction.py) on awkward shapes: rows and columns that
are not multiples of the micro-kernel (edge tiles computed whole on the padded tile), reductions that are not a
multiple of the chunk, single-row products (the streaming schedule), for 16- and 32-register targets."""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings, strategies as st

import ember
from ember.compiler.default_schedule import default_schedule
from ember.compiler.target import parse_target

TARGETS = ["llvm", "llvm -mcpu=haswell"]  # this machine's vectors (AVX-512 where it has them), and AVX2


def matmul(m: int, k: int, n: int):
    A = ember.placeholder((m, k), "float32", "A")
    B = ember.placeholder((k, n), "float32", "B")
    r = ember.reduce_axis(k, "r")
    C = ember.compute((m, n), lambda i, j: ember.sum(A[i, r] * B[r, j], axis=r), name="C")
    return A, B, C


def build(m: int, k: int, n: int, target: str):
    A, B, C = matmul(m, k, n)
    return ember.build(default_schedule(C, parse_target(target)), [A, B, C], target=target)


@settings(max_examples=10, deadline=None)
@given(m=st.sampled_from([1, 3, 13, 37, 64]), k=st.sampled_from([1, 27, 129, 300, 576]),
       n=st.sampled_from([16, 49, 100, 197, 1000]), target=st.sampled_from(TARGETS), seed=st.integers(0, 9))
def test_default_matmul_schedule_matches_numpy(m, k, n, target, seed):
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal((m, k), dtype=np.float32), rng.standard_normal((k, n), dtype=np.float32)
    np.testing.assert_allclose(build(m, k, n, target)(a, b), a @ b, rtol=1e-4, atol=1e-4 * np.sqrt(k))


def _guarded_lines(loops: str, buffer: str) -> list[str]:
    """Statements writing `buffer` directly under an `if` (a guard)."""
    lines = loops.splitlines()
    return [b for a, b in zip(lines, lines[1:]) if a.strip().startswith("if ") and b.strip().startswith(buffer)]


def test_edge_tiles_keep_an_unguarded_micro_kernel():
    """49 columns and 37 rows: the last tiles are partial, but the accumulator tile is computed whole (its buffer
    covers it); only the packed panel's copy and the write-back to C keep guards."""
    f = build(37, 300, 49, "llvm")
    loops = f.source("loops")
    assert "C.local[" in loops and "B.local[" in loops
    assert not _guarded_lines(loops, "C.local[")
    assert _guarded_lines(loops, "C[")


def test_single_row_product_streams_the_matrix():
    """A vector-matrix product: per column block the reduction runs outside the columns, 4 rows of B at a time."""
    loops = build(1, 768, 3072, "llvm").source("loops")
    assert "parallel for" in loops and "unrolled for r.inner in 0..4" in loops
    assert loops.index("for r.outer") < loops.index("unrolled for r.inner")
