"""Vector loads in the LLVM backend: small constant strides become contiguous loads + shuffles (not gathers) and
read exactly the elements the lanes need; larger strides and masked tails keep gathers. Results never change."""
from __future__ import annotations

import re

import ember
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st


def _strided(n: int, stride: int, offset: int, lanes: int, dtype: str):
    X = ember.placeholder((n * stride + offset,), dtype, "X")
    Y = ember.compute((n,), lambda i: X[i * stride + offset] + X[i * stride], name="Y")
    sch = ember.create_schedule(Y)
    _, inner = sch[Y].split("i", lanes)
    sch[Y].vectorize(inner)
    return ember.build(sch, [X, Y])


@settings(max_examples=12, deadline=None)
@given(n=st.integers(1, 70), stride=st.integers(2, 6), offset=st.integers(0, 3), lanes=st.sampled_from([2, 4, 8, 16]),
       dtype=st.sampled_from(["float32", "float64", "int32", "int8"]))
def test_strided_vector_loads_match_numpy(n, stride, offset, lanes, dtype):
    f = _strided(n, stride, offset, lanes, dtype)
    x = (np.arange(n * stride + offset) % 97).astype(dtype)
    np.testing.assert_array_equal(f(x), x[offset:offset + n * stride:stride] + x[0:n * stride:stride])


def test_small_strides_use_shuffles_not_gathers():
    """An exact multiple of the vector width has no masked tail, so its only loads are the strided ones."""
    f = _strided(64, 2, 0, 8, "float32")
    llvm = f.source("llvm")
    assert "shufflevector" in llvm and "masked.gather" not in llvm
    x = np.arange(128, dtype="f4")
    np.testing.assert_array_equal(f(x), x[::2] * 2)
    assert "masked.gather" in _strided(64, 5, 0, 8, "float32").source("llvm")


@settings(max_examples=8, deadline=None)
@given(rows=st.integers(1, 9), cols=st.integers(2, 5), lanes=st.sampled_from([2, 4, 8]))
def test_vectorized_outer_loop_stores_with_a_stride(rows, cols, lanes):
    """Vectorizing the row loop of a row-major output makes every store strided (a scatter); such stores once
    crashed the code generator, which only had strided loads."""
    X = ember.placeholder((rows, cols), "float32", "X")
    Y = ember.compute((rows, cols), lambda i, j: X[i, j] * 2.0 + j, name="Y")
    sch = ember.create_schedule(Y)
    _, inner = sch[Y].split("i", lanes)
    sch[Y].reorder(inner, "j")
    sch[Y].vectorize(inner)
    x = np.arange(rows * cols, dtype="f4").reshape(rows, cols)
    np.testing.assert_array_equal(ember.build(sch, [X, Y])(x), x * 2 + np.arange(cols, dtype="f4"))


@pytest.mark.parametrize("mib,streamed", [(5, False), (16, True)])
def test_only_outputs_larger_than_a_cache_bypass_it(mib, streamed):
    """Non-temporal stores only for outputs of 16 MiB or more: a smaller result is read by the next kernel of a
    model while it is still cached."""
    n = mib * (1 << 20) // 4
    X = ember.placeholder((n,), "float32", "X")
    Y = ember.compute((n,), lambda i: X[i] * 2, name="Y")
    f = ember.build(Y, [X, Y])
    assert ("!nontemporal" in f.source("llvm")) == streamed
    x = np.arange(n, dtype=np.float32)
    np.testing.assert_array_equal(f(x), x * 2)


@settings(max_examples=12, deadline=None)
@given(width=st.integers(1, 23), rows=st.integers(1, 9), pad=st.integers(0, 2), lanes=st.sampled_from([4, 8, 16]))
def test_window_gathers_compute_their_indices_on_32_bit_lanes(width, rows, pad, lanes):
    """An im2col-like read `x[2 * (p // w) - pad, 2 * (p % w) - pad]` (zero outside) is a gather whose index and
    border tests need a vector division; on int32 lanes (the loop ranges prove they fit) that is a multiply-high,
    on int64 lanes 16 scalar divisions. Results never change, negative offsets included."""
    h, w = 2 * rows + 1, 2 * width + 1
    X = ember.placeholder((h, w), "float32", "X")

    def read(p):
        r, c = (p // width) * 2 - pad, (p % width) * 2 - pad
        inside = (r >= 0) & (c >= 0)
        return ember.select(inside, X[ember.maximum(r, 0), ember.maximum(c, 0)], 0.0)
    Y = ember.compute((rows * width,), read, name="Y")
    sch = ember.create_schedule(Y)
    _, inner = sch[Y].split("p", lanes)
    sch[Y].vectorize(inner)
    f = ember.build(sch, [X, Y])
    if width > 2:  # narrower rows are read with small strides, not gathers
        assert re.search(f"getelementptr float, ptr %\"[^\"]+\", <{lanes} x i32>", f.source("llvm"))
        assert f"<{lanes} x i64>" not in f.source("llvm")
    x = np.arange(h * w, dtype="f4").reshape(h, w) + 1
    padded = np.pad(x, ((pad, 0), (pad, 0)))
    np.testing.assert_array_equal(f(x), padded[0:2 * rows:2, 0:2 * width:2].reshape(-1))


def test_index_ranges_that_leave_int32_stay_64_bit():
    from ember.codegen.llvm.narrow import int_range
    from ember.ir.dtype import INDEX
    from ember.ir.expr import Var
    i, n = Var("i", INDEX), Var("n", INDEX)
    assert int_range((i // 28) * 112 + i % 28 - 57, {i: (0, 783)}) == (-57, 2994)
    assert int_range(i * 4096 * 1024, {i: (0, 783)}) is None  # the product passes 2**31
    assert int_range(i + n, {i: (0, 7)}) is None  # a size variable has no known range
