"""Tests of ember.testing itself: its strategies draw what they promise (legal, replayable schedules; favoured
sizes) and check_kernel passes correct kernels and explains wrong ones."""
from __future__ import annotations

import json
import re
import textwrap

import ember
import numpy as np
import pytest
from ember import testing as et
from ember.compiler.lower import lower
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st


def softmax():
    n = ember.var("n")
    A = ember.placeholder((n, 12), "float32", "A")
    k1, k2 = ember.reduce_axis(12, "k1"), ember.reduce_axis(12, "k2")
    M = ember.compute((n,), lambda i: ember.max(A[i, k1], axis=k1), name="M")
    E = ember.compute((n, 12), lambda i, j: ember.exp(A[i, j] - M[i]), name="E")
    S = ember.compute((n,), lambda i: ember.sum(E[i, k2], axis=k2), name="S")
    O = ember.compute((n, 12), lambda i, j: E[i, j] / S[i], name="O")
    return O, [A, O]


def softmax_reference(a):
    e = np.exp(a - a.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def row_sum():
    A = ember.placeholder((6, 13), "float32", "A")
    k = ember.reduce_axis(13, "k")
    B = ember.compute((6,), lambda i: ember.sum(A[i, k], axis=k), name="B")
    return B, [A, B]


# ---- strategies ---------------------------------------------------------------------------------------------------
@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(schedule=et.schedules(softmax, max_steps=12))
def test_drawn_schedules_lower_and_replay_identically(schedule):
    outs, args = softmax()
    replayed = ember.from_trace(outs, schedule.trace.to_json())
    assert replayed.trace.to_json() == schedule.trace.to_json()
    assert schedule.trace.to_json() in repr(schedule)  # hypothesis reports show what was drawn
    lower(replayed, args)  # legal: no ScheduleError, even from bound inference at lowering time


@settings(max_examples=8)
@given(schedule=et.schedules(row_sum))
def test_replayed_schedule_builds_the_same_kernel(schedule):
    outs, args = row_sum()
    f = ember.build(ember.from_trace(outs, schedule.trace.to_json()), args)
    outs2, args2 = row_sum()
    g = ember.build(ember.from_trace(outs2, schedule.trace.to_json()), args2)
    assert f.key == g.key


def test_schedules_cover_every_primitive():
    seen: set[str] = set()

    @settings(max_examples=150, database=None, suppress_health_check=list(HealthCheck))
    @given(schedule=et.schedules(softmax))
    def collect(schedule):
        seen.update(i.kind for i in schedule.trace.instructions)
        seen.update(f"tail={i.arg('tail')}" for i in schedule.trace.instructions if i.kind == "split")

    collect()
    assert set(et.PRIMITIVES) | {"tail=pad", "tail=None"} <= seen


def test_schedules_respect_pad_and_primitive_filters():
    @settings(max_examples=40, database=None)
    @given(schedule=et.schedules(softmax, pad=False, primitives=["split", "unroll"]))
    def run(schedule):
        kinds = {i.kind for i in schedule.trace.instructions}
        assert kinds <= {"split", "unroll"}
        assert all(i.arg("tail") is None for i in schedule.trace.instructions)

    run()
    with pytest.raises(ValueError, match="unknown primitives"):
        et.schedules(softmax, primitives=["tile"])


@settings(max_examples=40)
@given(shape=et.shapes(ndim=(1, 3), min_side=2, max_side=9))
def test_shapes_respect_bounds(shape):
    assert 1 <= len(shape) <= 3 and all(2 <= d <= 9 for d in shape)


def test_shapes_favour_awkward_sizes():
    sides: list[int] = []

    @settings(max_examples=200, database=None)
    @given(shape=et.shapes(ndim=1, max_side=64))
    def collect(shape):
        sides.extend(shape)

    collect()
    awkward = [d for d in sides if d == 1 or d % 4]
    assert len(awkward) > len(sides) * 0.6


@settings(max_examples=20)
@given(floats=et.dtypes("float"), ints=et.dtypes("int"), target=et.targets(fastmath=True))
def test_dtypes_and_targets(floats, ints, target):
    assert np.dtype(floats).kind == "f" and np.dtype(ints).kind in "iu"
    assert ember.parse_target(target).kind == "llvm"


def test_dtypes_rejects_unknown_kinds():
    with pytest.raises(ValueError, match="kinds"):
        et.dtypes("complex")


@settings(max_examples=20)
@given(dtype=et.dtypes("all"), shape=et.shapes(ndim=2, max_side=5), data=st.data())
def test_arrays_have_dtype_shape_and_range(dtype, shape, data):
    a = data.draw(et.arrays(shape, dtype, -3, 3))
    assert a.dtype == np.dtype(dtype) and a.shape == shape
    if a.dtype.kind in "fi":
        assert a.size == 0 or (a.min() >= -3 and a.max() <= 3)


# ---- tolerances and check_kernel ----------------------------------------------------------------------------------
def test_assert_close_tolerances_follow_dtype():
    et.assert_close(np.float32([1.00001]), [1.0], "float32")
    et.assert_close(np.float16([1.004]), [1.0], "float16")
    et.assert_close(np.array([np.nan, np.inf], np.float32), [np.nan, np.inf], "float32")
    et.assert_close(np.int32([7]), np.int64([7]), "int32")
    for got, want, dtype in [(np.float32([1.001]), [1.0], "float32"), (np.float64([1 + 1e-7]), [1.0], "float64"),
                             (np.int32([8]), [7], "int32"), (np.float32([np.inf]), [1.0], "float32"),
                             (np.float32([np.nan]), [1.0], "float32"), (np.float32([1, 2]), [1.0], "float32")]:
        with pytest.raises(AssertionError, match="dtype|shape"):
            et.assert_close(got, want, dtype)


def test_reduction_tolerance_scales_with_length():
    want = np.float32([10.0])
    assert et.tolerance("float32", want, 100)[1] > et.tolerance("float32", want, 1)[1]
    assert et.tolerance("int32", want, 100) == (0.0, 0.0)


def test_check_kernel_passes_a_correct_reference():
    a = np.random.default_rng(1).uniform(-2, 2, (5, 12)).astype(np.float32)
    out = et.check_kernel(softmax, softmax_reference, [a])
    np.testing.assert_allclose(out[0].sum(axis=1), 1, rtol=1e-5)


def test_check_kernel_explains_a_wrong_reference():
    outs, args = softmax()
    sch = ember.Schedule(outs)
    sch["E"].compute_inline()
    _, j = sch["O"].axes
    sch["O"].split(j, 5)
    a = np.random.default_rng(2).uniform(-2, 2, (3, 12)).astype(np.float32)
    with pytest.raises(AssertionError) as info:
        et.check_kernel(softmax, lambda x: softmax_reference(x) * 1.01, [a], schedule=sch)
    msg = str(info.value)
    assert "output 'O' (shape (3, 12), dtype float32)" in msg and "max abs error" in msg
    assert "A: float32[3, 12]" in msg
    trace_json = re.search(r"schedule trace JSON: (\S+)", msg).group(1)
    assert json.loads(trace_json)["instructions"][0]["kind"] == "compute_inline"
    replay = re.search(r"replay: (.*)", msg).group(1)
    scope = {"ember": ember, "softmax": softmax}
    exec(replay, scope)  # the replay line runs as printed and rebuilds the same kernel
    assert scope["f"].key == ember.build(sch, args).key


def test_check_kernel_compares_every_output_and_counts_them():
    def two_outputs():
        A = ember.placeholder((4, 9), "float32", "A")
        k = ember.reduce_axis(9, "k")
        idx, val = ember.compute((4,), lambda i: ember.argmax(A[i, k], axis=k), name="am")
        return [idx, val], [A, idx, val]

    a = np.random.default_rng(3).uniform(-2, 2, (4, 9)).astype(np.float32)
    et.check_kernel(two_outputs, lambda x: (x.argmax(axis=1), x.max(axis=1)), [a])
    with pytest.raises(AssertionError, match="output 'am.v0'.*int64"):
        et.check_kernel(two_outputs, lambda x: (x.argmin(axis=1), x.max(axis=1)), [a])
    with pytest.raises(AssertionError, match="returned 1 outputs but the kernel has 2"):
        et.check_kernel(two_outputs, lambda x: x.max(axis=1), [a])


def test_check_kernel_notes_build_errors_with_the_trace():
    outs, _ = row_sum()
    sch = ember.Schedule(outs)
    sch["B"].split("i", 4, tail="pad")  # pad tails are only for intermediate stages: lowering refuses an output
    with pytest.raises(ember.ScheduleError) as info:
        et.check_kernel(row_sum, lambda x: x.sum(axis=1), [np.zeros((6, 13), np.float32)], schedule=sch)
    assert any("schedule trace JSON" in note for note in info.value.__notes__)


def test_docstring_example_runs():
    code = textwrap.dedent(et.__doc__.split("::", 1)[1].split("For fixed-size")[0])
    scope: dict = {}
    exec(code, scope)
    settings(max_examples=5)(scope["test_scaled_rowsum"])()
