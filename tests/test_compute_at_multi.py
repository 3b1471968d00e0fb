"""compute_at of a stage with several consumers (Halide's rule): legal when every consumer is the target stage or
is computed at the target's loop or inside it; the stage's region then covers all their reads. Checked against
numpy on the CPU and on the CUDA emulator, with clear errors for illegal placements and replayable traces."""
from __future__ import annotations

import numpy as np
import pytest

import ember
from ember import ScheduleError
from ember.testing import gpu_test_target, gpu_test_unavailable

EMU = gpu_test_target()
needs_gpu = pytest.mark.skipif(gpu_test_unavailable() is not None, reason=str(gpu_test_unavailable()))


def _softmax():
    n, m = ember.var("n"), ember.var("m")
    x = ember.placeholder((n, m), name="x")
    k, k2 = ember.reduce_axis(m, "k"), ember.reduce_axis(m, "k2")
    mx = ember.compute((n,), lambda i: ember.max(x[i, k.var], axis=k), name="mx")
    e = ember.compute((n, m), lambda i, j: ember.exp(x[i, j] - mx[i]), name="e")
    sm = ember.compute((n,), lambda i: ember.sum(e[i, k2.var], axis=k2), name="sm")
    y = ember.compute((n, m), lambda i, j: e[i, j] / sm[i], name="y")
    return x, mx, e, sm, y


def _softmax_ref(a: np.ndarray) -> np.ndarray:
    e = np.exp(a - a.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _stencil():
    """a is read by b (itself computed at t's loop) and by t, at different offsets: its region is their union."""
    n = ember.var("n")
    x = ember.placeholder((n,), name="x")
    a = ember.compute((n - 1,), lambda i: x[i] * 2, name="a")
    b = ember.compute((n - 2,), lambda i: a[i] + a[i + 1], name="b")
    t = ember.compute((n - 4,), lambda i: b[i] + b[i + 1] + a[i + 2], name="t")
    return x, a, b, t


def _stencil_ref(v: np.ndarray) -> np.ndarray:
    a = v[:-1] * 2
    b = a[:-1] + a[1:]
    n = len(v) - 4
    return b[:n] + b[1:n + 1] + a[2:n + 2]


def _cpu_softmax_schedule():
    x, mx, e, sm, y = _softmax()
    s = ember.create_schedule(y)
    s[e].compute_inline()
    s[y].split("j", 8)
    s[sm].compute_at(s[y], "i")
    s[mx].compute_at(s[y], "i")
    return s, [x, y]


def _stencil_schedule(gpu: bool):
    x, a, b, t = _stencil()
    s = ember.create_schedule(t)
    io, ii = s[t].split("i", 4)
    if gpu:
        s[t].bind(io, "blockIdx.x")
        s[t].bind(ii, "threadIdx.x")
    s[b].compute_at(s[t], io)
    s[a].compute_at(s[t], io)
    return s, [x, t]


@pytest.mark.parametrize("shape", [(1, 1), (3, 7), (5, 97)])
def test_softmax_reductions_at_the_row_loop_on_cpu(shape):
    s, args = _cpu_softmax_schedule()
    f = ember.build(s, args, name="softmax_at_row")
    a = np.random.default_rng(shape[1]).standard_normal(shape).astype(np.float32)
    np.testing.assert_allclose(f(a), _softmax_ref(a), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("n", [1, 4, 13])
def test_region_is_the_union_of_every_consumers_reads_on_cpu(n):
    s, args = _stencil_schedule(gpu=False)
    f = ember.build(s, args, name="stencil_at")
    v = np.random.default_rng(n).standard_normal(n + 4).astype(np.float32)
    np.testing.assert_allclose(f(v), _stencil_ref(v), rtol=1e-5, atol=1e-6)


def test_consumer_at_an_inner_loop():
    """a at t's row loop, b (reading a) at t's column loop: a's region covers b's reads in the whole row."""
    n, m = ember.var("n"), ember.var("m")
    x = ember.placeholder((n, m), name="x")
    r = ember.reduce_axis(m, "r")
    a = ember.compute((n,), lambda i: ember.sum(x[i, r.var], axis=r), name="a")
    b = ember.compute((n, m), lambda i, j: x[i, j] * a[i], name="b")
    t = ember.compute((n, m), lambda i, j: b[i, j] + a[i], name="t")
    s = ember.create_schedule(t)
    s[b].compute_at(s[t], "j")
    s[a].compute_at(s[t], "i")
    f = ember.build(s, [x, t], name="inner_consumer")
    v = np.random.default_rng(0).standard_normal((3, 5)).astype(np.float32)
    rows = v.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(f(v), v * rows + rows, rtol=1e-5, atol=1e-5)


@needs_gpu
def test_multi_consumer_compute_at_on_the_cuda_emulator():
    s, args = _stencil_schedule(gpu=True)
    f = ember.build(s, args, target=EMU, name="stencil_at_gpu")
    for n in (1, 4, 13):
        v = np.random.default_rng(n).standard_normal(n + 4).astype(np.float32)
        np.testing.assert_allclose(f(v), _stencil_ref(v), rtol=1e-5, atol=1e-6)
    x, mx, e, sm, y = _softmax()
    g = ember.build(y, [x, y], target=EMU, name="softmax_one_kernel")
    assert "s['mx'].compute_at(parent='y'" in g.source("schedule")  # the default GPU rule uses the new placement
    assert g.source("cuda").count("__global__") == 1
    for shape in ((1, 1), (3, 7), (5, 300)):
        a = np.random.default_rng(shape[1]).standard_normal(shape).astype(np.float32)
        np.testing.assert_allclose(g(a), _softmax_ref(a), rtol=1e-5, atol=1e-6)


def test_consumer_outside_the_loop_is_named():
    x, mx, e, sm, y = _softmax()
    s = ember.create_schedule(y)
    s[e].compute_inline()
    with pytest.raises(ScheduleError, match=r"compute_at of 'mx' at y\.i: its consumer 'sm' is outside that loop"):
        s[mx].compute_at(s[y], "i")


def test_consumer_at_an_outer_loop_is_refused():
    x, mx, e, sm, y = _softmax()
    s = ember.create_schedule(y)
    s[e].compute_inline()
    s[sm].compute_at(s[y], "i")
    with pytest.raises(ScheduleError, match="its consumer 'sm' is outside that loop"):
        s[mx].compute_at(s[y], "j")


def test_consumer_moved_out_afterwards_is_refused_when_lowering():
    s, args = _cpu_softmax_schedule()
    s["sm"].compute_root()
    with pytest.raises(ScheduleError, match="its consumer 'sm' is outside that loop"):
        ember.build(s, args, name="moved_out")


def test_trace_replays():
    s, args = _stencil_schedule(gpu=False)
    f = ember.build(s, args, name="stencil_replay")
    x2, _a, _b, t2 = _stencil()
    s2 = ember.from_trace(t2, s.trace.to_json())
    assert s2.trace.to_json() == s.trace.to_json()
    g = ember.build(s2, [x2, t2], name="stencil_replay")
    assert g.source("loops") == f.source("loops")
    v = np.random.default_rng(1).standard_normal(11).astype(np.float32)
    np.testing.assert_allclose(g(v), _stencil_ref(v), rtol=1e-5, atol=1e-6)
    s3, _ = _cpu_softmax_schedule()
    x3, *_rest, y3 = _softmax()
    h = ember.build(ember.from_trace(y3, s3.trace.to_json()), [x3, y3], name="softmax_replay")
    a = np.random.default_rng(2).standard_normal((4, 9)).astype(np.float32)
    np.testing.assert_allclose(h(a), _softmax_ref(a), rtol=1e-5, atol=1e-6)
