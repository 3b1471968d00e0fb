"""Schedules as data: traces print, survive JSON and replay onto a fresh copy of the workload to the same code."""
from __future__ import annotations

import json

import ember
import numpy as np
import pytest
from ember import ScheduleError, Trace


def _matmul(n=32, m=24, kk=16, names=("i", "j")):
    """A fresh matmul + bias-relu workload; every call makes new tensor objects."""
    A = ember.placeholder((n, kk), "float32", "A")
    B = ember.placeholder((kk, m), "float32", "B")
    k = ember.reduce_axis(kk, "k")
    if names == ("i", "j"):
        C = ember.compute((n, m), lambda i, j: ember.sum(A[i, k] * B[k, j], k), name="C")
        D = ember.compute((n, m), lambda i, j: ember.maximum(C[i, j], 0.0), name="D")
    else:
        C = ember.compute((n, m), lambda x, y: ember.sum(A[x, k] * B[k, y], k), name="C")
        D = ember.compute((n, m), lambda x, y: ember.maximum(C[x, y], 0.0), name="D")
    return A, B, C, D


def _schedule(A, B, C, D):
    s = ember.create_schedule(D)
    io, ii = s[D].split("i", 8)
    jo, ji = s[D].split("j", nparts=3)
    s[D].reorder(io, jo, ii, ji)
    s[C].compute_at(s[D], jo)
    s[C].vectorize("j")
    s[D].unroll(ii)
    s[D].parallel(io)
    return s


EXPECTED_TEXT = """\
s['D'].split(axis='i', factor=8)
s['D'].split(axis='j', nparts=3)
s['D'].reorder(axes=('i.outer', 'j.outer', 'i.inner', 'j.inner'))
s['C'].compute_at(parent='D', axis='j.outer')
s['C'].vectorize(axis='j')
s['D'].unroll(axis='i.inner')
s['D'].parallel(axis='i.outer')"""


def _reference(a, b):
    return np.maximum(a @ b, 0)


def _inputs(n=32, m=24, kk=16, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, kk)).astype(np.float32), rng.standard_normal((kk, m)).astype(np.float32)


def _strip_module_id(llvm: str) -> str:
    """The kernel name only appears in the module header lines; the code itself must be identical."""
    return "\n".join(line for line in llvm.splitlines()
                     if not line.startswith(("; ModuleID", "source_filename")))


def test_trace_printing():
    s = _schedule(*_matmul())
    assert str(s.trace) == EXPECTED_TEXT
    assert str(s) == EXPECTED_TEXT
    assert len(s.trace) == 7
    assert str(s.trace.instructions[0]) == "s['D'].split(axis='i', factor=8)"
    assert s.trace.instructions[0].arg("factor") == 8
    assert s.trace.instructions[0].arg("nparts", "absent") == "absent"


def test_empty_trace_prints_as_default():
    _A, _B, _C, D = _matmul()
    s = ember.create_schedule(D)
    assert str(s.trace) == "(default schedule)"
    assert len(s.trace) == 0


def test_kernel_reports_its_schedule():
    tensors = _matmul()
    f = ember.build(_schedule(*tensors), [tensors[0], tensors[1], tensors[3]], name="traced")
    assert f.source("schedule") == EXPECTED_TEXT
    a, b = _inputs()
    np.testing.assert_allclose(f(a, b), _reference(a, b), rtol=1e-5, atol=1e-5)


def test_default_schedule_is_a_trace_too():
    from ember.compiler.default_schedule import default_schedule
    from ember.compiler.target import parse_target
    _A, _B, _C, D = _matmul()
    f = ember.build(D, name="default_traced")
    text = f.source("schedule")
    assert "vectorize" in text and text != "(default schedule)"
    default = default_schedule(_matmul()[3], parse_target("llvm"))
    assert str(default.trace) == text
    # Replayed explicitly onto a fresh workload, the default schedule's trace gives the same kernel.
    A2, B2, _C2, D2 = _matmul()
    replayed = ember.from_trace(D2, default.trace.to_json())
    assert ember.build(replayed, [A2, B2, D2], name="default_traced").key == f.key


def test_json_round_trip():
    s = _schedule(*_matmul())
    text = s.trace.to_json()
    data = json.loads(text)
    assert data["version"] == 1
    assert data["instructions"][0] == {"kind": "split", "stage": "D", "args": {"axis": "i", "factor": 8}}
    assert data["instructions"][2]["args"]["axes"] == ["i.outer", "j.outer", "i.inner", "j.inner"]
    again = Trace.from_json(text)
    assert len(again) == len(s.trace)
    assert again.to_json() == text
    assert [(i.kind, i.stage, dict(i.args)) for i in again.instructions] == \
        [(i.kind, i.stage, dict(i.args)) for i in s.trace.instructions]
    # Key order and whitespace in the JSON do not matter.
    pretty = json.dumps(data, indent=2, sort_keys=False)
    assert Trace.from_json(pretty).to_json() == text


def test_json_round_trip_is_lossless():
    s = _schedule(*_matmul())
    again = Trace.from_json(s.trace.to_json())
    assert str(again) == EXPECTED_TEXT
    assert again.instructions == s.trace.instructions


def test_replay_gives_identical_code_and_key():
    A, B, C, D = _matmul()
    s = _schedule(A, B, C, D)
    f = ember.build(s, [A, B, D], name="replay_a")
    A2, B2, _C2, D2 = _matmul()
    s2 = ember.from_trace(D2, s.trace.to_json())
    assert str(s2.trace) == str(s.trace)
    g = ember.build(s2, [A2, B2, D2], name="replay_a")
    assert g.key == f.key
    assert g.source("loops") == f.source("loops")
    assert g.source("llvm") == f.source("llvm")
    # Under another name the replay is compiled afresh (a different key), and still gives the same code.
    h = ember.build(ember.from_trace(_matmul()[3], s.trace), None, name="replay_b")
    assert h.key != f.key
    assert _strip_module_id(h.source("llvm")) == _strip_module_id(f.source("llvm"))
    assert _strip_module_id(h.source("llvm-opt")) == _strip_module_id(f.source("llvm-opt"))
    a, b = _inputs()
    for k in (f, g, h):
        np.testing.assert_allclose(k(a, b), _reference(a, b), rtol=1e-5, atol=1e-5)


def test_replay_accepts_a_trace_object():
    A, B, C, D = _matmul()
    s = _schedule(A, B, C, D)
    s2 = ember.from_trace(_matmul()[3], s.trace)
    assert s2.trace.to_json() == s.trace.to_json()


def test_trace_replays_on_other_sizes():
    """A trace names stages and axes, not sizes: it applies to the same computation at another size."""
    s = _schedule(*_matmul())
    A, B, _C, D = _matmul(n=40, m=20, kk=8)
    f = ember.build(ember.from_trace(D, s.trace.to_json()), [A, B, D], name="resized")
    a, b = _inputs(40, 20, 8)
    np.testing.assert_allclose(f(a, b), _reference(a, b), rtol=1e-5, atol=1e-5)


def _stencil():
    n = ember.var("n")
    X = ember.placeholder((n,), "float32", "X")
    Y = ember.compute((n - 1,), lambda i: X[i] + X[i + 1], name="Y")
    Z = ember.compute((n - 2,), lambda i: Y[i] * Y[i + 1], name="Z")
    return X, Y, Z


def _cache_schedule(X, Y, Z):
    s = ember.create_schedule(Z)
    XL = s.cache_read(X, "local", [Y])
    ZL = s.cache_write(Z, "local")
    zo, zi = s[Z].split("i", 8)
    s[ZL].compute_at(s[Z], zo)
    s[Y].compute_at(s[ZL], "i")
    s[XL].compute_at(s[Y], "i")
    s[Z].vectorize(zi)
    return s


def test_cache_read_cache_write_compute_at_replay():
    X, Y, Z = _stencil()
    s = _cache_schedule(X, Y, Z)
    text = str(s.trace)
    assert "s.cache_read(tensor='X', scope='local', readers=('Y',))" in text
    assert "s.cache_write(tensor='Z', scope='local')" in text
    assert "s['Z.local'].compute_at(parent='Z', axis='i.outer')" in text
    assert "s['X.local'].compute_at(parent='Y', axis='i')" in text
    f = ember.build(s, [X, Z], name="cached_stencil")
    X2, _Y2, Z2 = _stencil()
    s2 = ember.from_trace(Z2, s.trace.to_json())
    assert s2.trace.to_json() == s.trace.to_json()
    assert [st.name for st in s2.stages] == [st.name for st in s.stages]
    g = ember.build(s2, [X2, Z2], name="cached_stencil")
    assert g.key == f.key
    assert g.source("loops") == f.source("loops")
    assert g.source("llvm") == f.source("llvm")
    for size in (1, 7, 8, 29):
        x = np.random.default_rng(size).standard_normal(size + 2).astype(np.float32)
        y = x[:-1] + x[1:]
        np.testing.assert_allclose(g(x), y[:-1] * y[1:], rtol=1e-6)
        np.testing.assert_allclose(f(x), y[:-1] * y[1:], rtol=1e-6)


def test_other_primitives_replay():
    """compute_inline, compute_root, set_scope, fuse and bind (recorded; bind fails only at llvm build)."""
    A = ember.placeholder((6, 10), "float32", "A")
    T = ember.compute((6, 10), lambda i, j: A[i, j] * 2, name="T")
    U = ember.compute((6, 10), lambda i, j: T[i, j] + 1, name="U")
    O = ember.compute((6, 10), lambda i, j: U[i, j] - T[i, j], name="O")
    s = ember.create_schedule(O)
    s[U].compute_inline()
    s[T].set_scope("local")
    s[T].compute_root()
    fused = s[O].fuse("i", "j")
    fo, fi = s[O].split(fused, 4)
    s[O].parallel(fo)
    f = ember.build(s, [A, O], name="others")
    s2 = ember.from_trace(O, s.trace.to_json())
    assert str(s2) == str(s)
    assert ember.build(s2, [A, O], name="others").key == f.key
    a = np.arange(60, dtype=np.float32).reshape(6, 10)
    np.testing.assert_array_equal(f(a), (a * 2 + 1) - a * 2)
    s[O].bind(fi, "threadIdx.x")
    s3 = ember.from_trace(O, s.trace.to_json())
    assert s3.trace.instructions[-1].kind == "bind"
    assert s3[O].axis("i.j.fused.inner").thread_tag == "threadIdx.x"


def test_trace_from_different_workload_names_missing_stage():
    s = _schedule(*_matmul())
    X = ember.placeholder((32, 24), "float32", "X")
    Y = ember.compute((32, 24), lambda i, j: X[i, j] + 1, name="Y")
    with pytest.raises(ScheduleError, match=r"no stage named 'D'; stages: Y"):
        ember.from_trace(Y, s.trace.to_json())


def test_trace_from_different_workload_names_missing_axis():
    s = _schedule(*_matmul())
    _A, _B, _C, D = _matmul(names=("x", "y"))
    with pytest.raises(ScheduleError, match=r"stage 'D' has no axis named 'i'; its loops are: x, y"):
        ember.from_trace(D, s.trace.to_json())


def test_trace_from_different_workload_names_missing_tensor():
    X, Y, Z = _stencil()
    s = _cache_schedule(X, Y, Z)
    P = ember.placeholder((10,), "float32", "P")
    Y2 = ember.compute((9,), lambda i: P[i] + P[i + 1], name="Y")
    Z2 = ember.compute((8,), lambda i: Y2[i] * Y2[i + 1], name="Z")
    with pytest.raises(ScheduleError, match=r"trace names tensor 'X', which is not in this workload"):
        ember.from_trace(Z2, s.trace.to_json())


def test_trace_with_invalid_step_for_workload():
    """The same names but a reduction where the trace vectorizes a spatial loop: the primitive's own check fires."""
    A = ember.placeholder((8, 8), "float32", "A")
    k = ember.reduce_axis(8, "j")
    D = ember.compute((8,), lambda i: ember.sum(A[i, k], k), name="D")
    text = json.dumps({"version": 1, "instructions": [{"kind": "vectorize", "stage": "D", "args": {"axis": "j"}}]})
    with pytest.raises(ScheduleError, match=r"vectorize on D.j: it is a reduction axis"):
        ember.from_trace(D, text)


def test_pragma_is_trace_data_carried_to_the_loop_ir():
    """A pragma (a target hint such as the Ascend tile length) is recorded, replayed, survives splits and fuses
    (on the loop that replaces its loop) and reaches the loop IR as a For annotation; the CPU ignores it."""
    A, B, C, D = _matmul()
    s = ember.create_schedule(D)
    s[D].pragma("i", "tile_length", 64)
    io, ii = s[D].split("i", 8)
    fused = s[D].fuse(ii, "j")
    s[D].pragma(fused, "num_blocks", 3)
    assert str(s.trace).splitlines()[0] == "s['D'].pragma(axis='i', key='tile_length', value=64)"
    A2, B2, _, D2 = _matmul()
    replayed = ember.from_trace(D2, Trace.from_json(s.trace.to_json()))
    a, b = _inputs()
    for sch, args in ((s, [A, B, D]), (replayed, [A2, B2, D2])):
        f = ember.build(sch, args)
        loops = f.source("loops")
        assert "[tile_length=64]" in loops and "[num_blocks=3]" in loops, loops
        np.testing.assert_allclose(f(a, b), _reference(a, b), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("key, value, message", [
    ("tile_len", 8, r"unknown key 'tile_len'; known: tile_length \(.*\); num_blocks"),
    ("tile_length", 0, "must be a positive integer, got 0"),
    ("num_blocks", 2.5, "must be a positive integer, got 2.5"),
    ("num_blocks", True, "must be a positive integer, got True"),
])
def test_bad_pragmas_are_schedule_errors(key, value, message):
    A, B, C, D = _matmul()
    s = ember.create_schedule(D)
    with pytest.raises(ScheduleError, match=message):
        s[D].pragma("i", key, value)
