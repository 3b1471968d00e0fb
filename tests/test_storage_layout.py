"""storage_layout: a stage stored with its dimensions reordered and its rows padded gives the same results on
every target, is schedule data (traced, replayed) and refuses what it cannot honour."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import ember
from ember.testing import gpu_test_target, gpu_test_unavailable


def _transposed_intermediate(n: int, m: int):
    a = ember.placeholder((n, m), name="a")
    t = ember.compute((n, m), lambda i, j: a[i, j] * 2, name="t")
    r = ember.reduce_axis(m, "r")
    out = ember.compute((n,), lambda i: ember.sum(t[i, r] + a[i, r], axis=r), name="out")
    s = ember.create_schedule(out)
    return s, t, [a, out]


@settings(max_examples=6, deadline=None)
@given(st.sampled_from([1, 3, 17]), st.sampled_from([1, 4, 33]), st.sampled_from([0, 1, 4]),
       st.sampled_from(["root", "at"]))
def test_layouts_do_not_change_results_on_the_cpu(n, m, pad, where):
    s, t, args = _transposed_intermediate(n, m)
    s[t].storage_layout([1, 0], pad=pad)
    if where == "at":
        s[t].compute_at(s[args[1]], s[args[1]].leaf[0])
    f = ember.build(s, args, name=f"layout_{n}_{m}_{pad}_{where}")
    x = np.random.default_rng(n * m + pad).standard_normal((n, m)).astype(np.float32)
    np.testing.assert_allclose(f(x), (3 * x).sum(1), rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(gpu_test_unavailable() is not None, reason=str(gpu_test_unavailable()))
def test_a_transposed_padded_shared_tile_on_the_gpu():
    """The default GPU matmul stores its A tile k-major with 4 floats of padding (float4 reads of 4 rows)."""
    a = ember.placeholder((70, 33), name="a")
    b = ember.placeholder((33, 90), name="b")
    r = ember.reduce_axis(33, "r")
    c = ember.compute((70, 90), lambda i, j: ember.sum(a[i, r] * b[r, j], axis=r), name="c")
    f = ember.build(c, target=gpu_test_target(), name="layout_mm")
    assert "storage_layout(order=(1, 0), pad=4)" in f.source("schedule")
    x = np.random.default_rng(0).standard_normal((70, 33)).astype(np.float32)
    y = np.random.default_rng(1).standard_normal((33, 90)).astype(np.float32)
    np.testing.assert_allclose(f(x, y), x @ y, rtol=1e-4, atol=1e-4)


def test_layout_is_traced_and_replayed():
    s, t, args = _transposed_intermediate(5, 6)
    s[t].storage_layout([1, 0], pad=2)
    replayed = ember.from_trace(args[1], s.trace.to_json())
    assert str(replayed.trace) == str(s.trace)
    assert ember.build(replayed, args, name="replay").key == ember.build(s, args, name="replay").key


@pytest.mark.parametrize(("order", "pad", "message"), [
    ([0, 0], 0, "not a permutation of its 2 dimensions"),
    ([1, 0, 2], 0, "not a permutation"),
    ([1, 0], -1, "pad must be a non-negative integer"),
])
def test_bad_layouts_are_refused(order, pad, message):
    s, t, _ = _transposed_intermediate(4, 4)
    with pytest.raises(ember.ScheduleError, match=message):
        s[t].storage_layout(order, pad=pad)


def test_a_kernel_output_keeps_its_layout():
    s, _, args = _transposed_intermediate(4, 4)
    with pytest.raises(ember.ScheduleError, match="kernel output keeps the row-major layout"):
        s[args[1]].storage_layout([0])
