"""The Ascend backend's kernel families against numpy, through the AscendC emulator (g++), plus its error paths.

Shapes include tails (sizes that are not a multiple of a 32-byte block or of the tile, sizes smaller than one block
per core); tiling choices vary the core count (-cores) and the tile length. float16 tolerances allow for the
hardware's rounding after every vector instruction.
"""
from __future__ import annotations

import math
import shutil

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import ember
from ember.codegen.ascend import AscendError, generate
from ember.compiler.pipeline import lower_to_loops, schedule_for
from ember.compiler.target import parse_target

DTYPES = ["float32", "float16"]
TOL = {"float32": dict(rtol=2e-5, atol=2e-5), "float16": dict(rtol=6e-3, atol=6e-3)}


def _emulator():
    if shutil.which("g++") is None:
        pytest.skip("g++ is not installed: the AscendC emulator needs it")
    return pytest.importorskip("ember.codegen.ascend.emulate", reason="the AscendC emulator is not available")


@pytest.fixture(scope="module")
def emulator():
    return _emulator()


def _target(cores: int, soc: str = "ascend910b") -> str:
    return f"ascend -soc={soc} -cores={cores} -emulate"


def _rand(rng, shape, dtype, lo=-2.0, hi=2.0):
    return rng.uniform(lo, hi, shape).astype(dtype)


def _families(kernel) -> list[str]:
    import json
    return [k["family"] for k in json.loads(kernel.source("ascend-plan"))["kernels"]]


# ---- (a) element-wise chains with broadcasting -------------------------------------------------------------------
@settings(max_examples=5)
@given(rows=st.integers(1, 6), cols=st.integers(1, 300), dtype=st.sampled_from(DTYPES), cores=st.integers(1, 7),
       seed=st.integers(0, 99))
def test_elementwise_broadcast_chain(emulator, rows, cols, dtype, cores, seed):
    rng = np.random.default_rng(seed)
    A = ember.placeholder((rows, cols), dtype, name="A")
    B = ember.placeholder((cols,), dtype, name="B")
    C = ember.placeholder((rows, 1), dtype, name="C")
    Y = ember.compute((rows, cols), lambda i, j: ember.maximum(ember.exp(A[i, j] * 0.5 - B[j]) / (C[i, 0] * C[i, 0] + 1.0),
                                                               0.25), name="Y")
    f = ember.build(Y, [A, B, C, Y], target=_target(cores))
    a, b, c = _rand(rng, (rows, cols), dtype), _rand(rng, (cols,), dtype), _rand(rng, (rows, 1), dtype)
    ref = np.maximum(np.exp(a.astype("f4") * 0.5 - b) / (c.astype("f4") * c + 1.0), 0.25)
    np.testing.assert_allclose(f(a, b, c).astype("f4"), ref, **TOL[dtype])
    assert _families(f) == ["elementwise"]


@settings(max_examples=5)
@given(n=st.integers(1, 5000), dtype=st.sampled_from(DTYPES), cores=st.integers(1, 9),
       tile_blocks=st.one_of(st.none(), st.integers(1, 40)), seed=st.integers(0, 99))
def test_flat_chain_tiling_choices(emulator, n, dtype, cores, tile_blocks, seed):
    """One long row split over cores (former/tail cores) and tiles (tail tile), for chosen tile lengths."""
    rng = np.random.default_rng(seed)
    X = ember.placeholder((n,), dtype, name="X")
    Y = ember.compute((n,), lambda i: ember.sigmoid(X[i]) * X[i] + ember.tanh(X[i]) - ember.sqrt(ember.abs(X[i])),
                      name="Y")
    x = _rand(rng, (n,), dtype)
    xf = x.astype("f4")
    ref = 1 / (1 + np.exp(-xf)) * xf + np.tanh(xf) - np.sqrt(np.abs(xf))
    tile = None if tile_blocks is None else tile_blocks * 16
    y = _run_with_tile(Y, [X, Y], _target(cores), tile, [x])
    np.testing.assert_allclose(y.astype("f4"), ref, **TOL[dtype])


def _run_with_tile(out, args, target, tile, inputs):
    """Build with an explicit tiling choice: a `tile_length` pragma in the schedule (None: the backend's own)."""
    tgt = parse_target(target)
    sch = schedule_for(out, tgt)
    if tile is not None:
        sch[out].pragma(sch[out].leaf[0], "tile_length", tile)
    f = ember.build(sch, args, target=target)
    if tile is not None:
        import json
        assert [k["plan"]["tile"] for k in json.loads(f.source("ascend-plan"))["kernels"]] == [tile]
    return f(*inputs)


@settings(max_examples=3)
@given(n=st.integers(1, 700), dtype=st.sampled_from(DTYPES), cores=st.integers(1, 5), seed=st.integers(0, 99))
def test_compare_select_and_cast(emulator, n, dtype, cores, seed):
    rng = np.random.default_rng(seed)
    A = ember.placeholder((n,), dtype, name="A")
    W = ember.compute((n,), lambda i: ember.where(A[i] > 0.25, A[i] * 2.0, A[i] - 1.0), name="W")
    F = ember.compute((n,), lambda i: (ember.cast(ember.float32, W[i]) + 1.0) * 3.0, name="F")
    f = ember.build(F, [A, F], target=_target(cores))
    a = _rand(rng, (n,), dtype)
    w = np.where(a > 0.25, a * np.asarray(2, dtype), a - np.asarray(1, dtype))
    np.testing.assert_allclose(f(a), (w.astype("f4") + 1) * 3, **TOL[dtype])
    assert _families(f) == ["elementwise"]


# ---- (b) row-wise: reductions over the last axis, softmax, layer norm --------------------------------------------
@settings(max_examples=4)
@given(rows=st.integers(1, 40), d=st.integers(1, 260), dtype=st.sampled_from(DTYPES), cores=st.integers(1, 8),
       op=st.sampled_from(["sum", "max", "min"]), seed=st.integers(0, 99))
def test_row_reduction(emulator, rows, d, dtype, cores, op, seed):
    rng = np.random.default_rng(seed)
    A = ember.placeholder((rows, d), dtype, name="A")
    k = ember.reduce_axis(d, "k")
    R = ember.compute((rows,), lambda i: getattr(ember, op)(A[i, k] * 2.0, k), name="R")
    f = ember.build(R, [A, R], target=_target(cores))
    a = _rand(rng, (rows, d), dtype)
    ref = getattr(np, op)(a.astype("f4") * 2, axis=1)
    tol = TOL[dtype] if dtype == "float32" else dict(rtol=1e-2, atol=1e-2 * math.sqrt(d))
    np.testing.assert_allclose(f(a).astype("f4"), ref, **tol)
    assert _families(f) == ["row_reduce"]


def _softmax(shape, dtype):
    *outer, d = shape
    A = ember.placeholder(tuple(shape), dtype, name="A")
    k, k2 = ember.reduce_axis(d, "k"), ember.reduce_axis(d, "k2")
    M = ember.compute(tuple(outer), lambda *i: ember.max(A[(*i, k)], k), name="M")
    E = ember.compute(tuple(shape), lambda *i: ember.exp(A[i] - M[i[:-1]]), name="E")
    S = ember.compute(tuple(outer), lambda *i: ember.sum(E[(*i, k2)], k2), name="S")
    return A, ember.compute(tuple(shape), lambda *i: E[i] / S[i[:-1]], name="O")


@settings(max_examples=3)
@given(b=st.integers(1, 3), rows=st.integers(1, 9), d=st.integers(1, 200), dtype=st.sampled_from(DTYPES),
       cores=st.integers(1, 6), seed=st.integers(0, 99))
def test_softmax(emulator, b, rows, d, dtype, cores, seed):
    rng = np.random.default_rng(seed)
    A, O = _softmax((b, rows, d), dtype)
    f = ember.build(O, [A, O], target=_target(cores))
    a = _rand(rng, (b, rows, d), dtype, -4, 4)
    e = np.exp(a.astype("f4") - a.max(-1, keepdims=True))
    np.testing.assert_allclose(f(a).astype("f4"), e / e.sum(-1, keepdims=True), **TOL[dtype])
    assert _families(f) == ["rowwise"]  # max, sum and the division fused: one pass over each row in UB


def test_softmax_rows_longer_than_ub_run_as_chunked_row_kernels(emulator):
    """A row that does not fit the UB budget: separate reduction kernels walk it in tiles (a tail tile too)."""
    A, O = _softmax((2, 50001), "float32")
    f = ember.build(O, [A, O], target=_target(2))
    assert _families(f) == ["row_reduce", "row_reduce", "elementwise"]
    a = _rand(np.random.default_rng(1), (2, 50001), "float32", -4, 4)
    e = np.exp(a - a.max(-1, keepdims=True))
    np.testing.assert_allclose(f(a), e / e.sum(-1, keepdims=True), rtol=1e-5, atol=1e-9)


@settings(max_examples=2)
@given(rows=st.integers(1, 12), d=st.integers(2, 150), dtype=st.sampled_from(DTYPES), cores=st.integers(1, 6),
       seed=st.integers(0, 99))
def test_layer_norm(emulator, rows, d, dtype, cores, seed):
    rng = np.random.default_rng(seed)
    A = ember.placeholder((rows, d), dtype, name="A")
    G = ember.placeholder((d,), dtype, name="G")
    k, k2 = ember.reduce_axis(d, "k"), ember.reduce_axis(d, "k2")
    mean = ember.compute((rows,), lambda i: ember.sum(A[i, k] * (1.0 / d), k), name="mean")
    var = ember.compute((rows,), lambda i: ember.sum((A[i, k2] - mean[i]) * (A[i, k2] - mean[i]) * (1.0 / d), k2),
                        name="var")
    L = ember.compute((rows, d), lambda i, j: (A[i, j] - mean[i]) * ember.rsqrt(var[i] + 1e-5) * G[j], name="L")
    f = ember.build(L, [A, G, L], target=_target(cores))
    a, g = _rand(rng, (rows, d), dtype), _rand(rng, (d,), dtype)
    af = a.astype("f4")
    ref = (af - af.mean(1, keepdims=True)) / np.sqrt(af.var(1, keepdims=True) + 1e-5) * g
    tol = TOL[dtype] if dtype == "float32" else dict(rtol=2e-2, atol=2e-2)
    np.testing.assert_allclose(f(a, g).astype("f4"), ref, **tol)
    assert _families(f) == ["rowwise"]


# ---- (c)/(d) contractions and (e) the scalar fallback -------------------------------------------------------------
@settings(max_examples=4)
@given(m=st.integers(1, 9), k=st.integers(1, 20), n=st.integers(1, 40), dtype=st.sampled_from(DTYPES),
       trans_b=st.booleans(), cores=st.integers(1, 5), seed=st.integers(0, 99))
def test_matmul_bias(emulator, m, k, n, dtype, trans_b, cores, seed):
    """Matmul (B row-major or transposed) through the cube unit's Matmul API, then the epilogue kernel."""
    rng = np.random.default_rng(seed)
    A = ember.placeholder((m, k), dtype, name="A")
    B = ember.placeholder((n, k) if trans_b else (k, n), dtype, name="B")
    r = ember.reduce_axis(k, "r")
    C = ember.compute((m, n), lambda i, j: ember.sum(A[i, r] * (B[j, r] if trans_b else B[r, j]), r), name="C")
    D = ember.compute((m, n), lambda i, j: ember.maximum(C[i, j] + 1.0, 0.0), name="D")
    f = ember.build(D, [A, B, D], target=_target(cores))
    a, b = _rand(rng, (m, k), dtype), _rand(rng, (n, k) if trans_b else (k, n), dtype)
    ref = np.maximum(a.astype("f4") @ (b.T if trans_b else b).astype("f4") + 1, 0)
    tol = TOL[dtype] if dtype == "float32" else dict(rtol=2e-2, atol=2e-2 * math.sqrt(k))
    np.testing.assert_allclose(f(a, b).astype("f4"), ref, **tol)
    assert _families(f) == ["matmul", "elementwise"]


@settings(max_examples=3)
@given(rows=st.integers(1, 7), cols=st.integers(1, 30), cores=st.integers(1, 4), seed=st.integers(0, 99))
def test_scalar_fallback_transpose_erf_int(emulator, rows, cols, cores, seed):
    """Gathers, intrinsics without a vector instruction and integer math run on the scalar unit, still correct."""
    rng = np.random.default_rng(seed)
    A = ember.placeholder((rows, cols), "float32", name="A")
    I = ember.placeholder((rows, cols), "int32", name="I")
    T = ember.compute((cols, rows), lambda i, j: ember.erf(A[j, i]) + ember.cast("float32", I[j, i] // 3 % 5),
                      name="T")
    f = ember.build(T, [A, I, T], target=_target(cores))
    a = _rand(rng, (rows, cols), "float32")
    iv = rng.integers(-50, 50, (rows, cols)).astype("int32")
    ref = np.vectorize(math.erf)(a.T.astype("f8")) + (iv.T // 3 % 5)
    np.testing.assert_allclose(f(a, iv), ref, rtol=1e-5, atol=1e-5)
    assert _families(f) == ["scalar"]


def test_values_of_loop_indices_run_on_the_scalar_unit(emulator):
    """An element-wise value that uses its indices (EyeLike, iota) is not a tile expression."""
    A = ember.placeholder((5, 37), "float32", name="A")
    Y = ember.compute((5, 37), lambda i, j: A[i, j] + ember.cast("float32", i == j - 1), name="Y")
    f = ember.build(Y, [A, Y], target=_target(2))
    a = _rand(np.random.default_rng(0), (5, 37), "float32")
    np.testing.assert_allclose(f(a), a + np.eye(5, 37, 1, dtype="f4"))
    assert _families(f) == ["scalar"]


def test_full_reduction_init_and_loops_are_one_kernel(emulator):
    """A 0-d reduction's init sits apart from its loops; both must be one launch (a launch's outputs start fresh)."""
    A = ember.placeholder((3, 5), "float32", name="A")
    i, j = ember.reduce_axis(3, "i"), ember.reduce_axis(5, "j")
    S = ember.compute((), lambda: ember.sum(A[i, j] * A[i, j], [i, j]), name="S")
    Y = ember.compute((3, 5), lambda r, c: A[r, c] * ember.rsqrt(S[()] / 15.0), name="Y")
    f = ember.build(Y, [A, Y], target=_target(3))
    a = _rand(np.random.default_rng(0), (3, 5), "float32")
    np.testing.assert_allclose(f(a), a / np.sqrt((a * a).mean()), rtol=1e-5)


def test_symbolic_sizes_run_on_the_scalar_unit(emulator):
    n = ember.var("n")
    X = ember.placeholder((n,), "float32", name="X")
    Y = ember.compute((n,), lambda i: X[i] * 2.0 + 1.0, name="Y")
    f = ember.build(Y, [X, Y], target=_target(3))
    for size in (1, 37):
        x = np.arange(size, dtype="f4")
        np.testing.assert_allclose(f(x), x * 2 + 1)


# ---- generated source and error paths (no emulator needed) ------------------------------------------------------
def _generate(out, args, target, tile=None):
    tgt = parse_target(target)
    sch = schedule_for(out, tgt)
    if tile is not None:
        sch[out].pragma(sch[out].leaf[0], "tile_length", tile)
    return generate(lower_to_loops(sch, args, "k", target=tgt), tgt)


def test_source_has_the_canonical_form():
    X = ember.placeholder((1000,), "float16", name="X")
    Y = ember.compute((1000,), lambda i: ember.exp(X[i]) * 2.0, name="Y")
    text, kernels, _ = _generate(Y, [X, Y], "ascend")
    for needle in ('#include "kernel_operator.h"', "constexpr int32_t BUFFER_NUM = 2;",
                   "AscendC::TQue<AscendC::TPosition::VECIN, BUFFER_NUM>", "TPosition::VECOUT",
                   "TBuf<AscendC::TPosition::VECCALC>", "AscendC::GetBlockIdx()", "void CopyIn(", "void Compute(",
                   "void CopyOut(", "AscendC::Exp(", "AscendC::Muls(", "DataCopyPad(", "struct EmberTiling_k_0",
                   'extern "C" __global__ __aicore__ void k_0('):
        assert needle in text, needle
    plan = kernels[0].plan
    assert plan["ub_bytes"] <= plan["ub_budget"] and kernels[0].num_blocks == 48


def test_tile_over_the_ub_budget_is_an_error():
    X = ember.placeholder((1 << 20,), "float32", name="X")
    Y = ember.compute((1 << 20,), lambda i: X[i] + 1.0, name="Y")
    with pytest.raises(AscendError, match=r"kernel k_0: tile length 262144 needs \d+ bytes of UB, over the "
                                          r"188416-byte budget of ascend910b"):
        _generate(Y, [X, Y], "ascend", tile=1 << 18)
    with pytest.raises(AscendError, match="multiple of 8"):
        _generate(Y, [X, Y], "ascend", tile=12)


def test_float64_is_refused():
    X = ember.placeholder((64,), "float64", name="X")
    Y = ember.compute((64,), lambda i: X[i] + 1.0, name="Y")
    with pytest.raises(AscendError, match="float64 is not supported on Ascend"):
        _generate(Y, [X, Y], "ascend")


def test_310p_unaligned_rows_need_data_copy_pad():
    A = ember.placeholder((4, 7), "float32", name="A")
    B = ember.placeholder((4, 1), "float32", name="B")
    Y = ember.compute((4, 7), lambda i, j: A[i, j] + B[i, 0], name="Y")
    with pytest.raises(AscendError, match="DataCopyPad, which ascend310p .arch 2002. does not have"):
        _generate(Y, [A, B, Y], "ascend -soc=ascend310p")
    text, _, _ = _generate(Y, [A, B, Y], "ascend")  # 910B copies the 28-byte rows with DataCopyPad
    assert "DataCopyPad" in text


def test_310p_flat_tails_use_padded_host_buffers(emulator):
    X = ember.placeholder((1001,), "float16", name="X")
    Y = ember.compute((1001,), lambda i: X[i] * X[i], name="Y")
    f = ember.build(Y, [X, Y], target=_target(3, "ascend310p"))
    assert "DataCopyPad" not in f.source("ascend")
    x = np.linspace(-3, 3, 1001).astype("f2")
    np.testing.assert_allclose(f(x), x * x, **TOL["float16"])


def test_npu_target_builds_sources_but_cannot_run():
    from ember.codegen import BackendUnavailable
    X = ember.placeholder((10,), "float32", name="X")
    Y = ember.compute((10,), lambda i: X[i] + 1.0, name="Y")
    f = ember.build(Y, [X, Y], target="ascend")
    assert "ICPU_RUN_KF" in f.source("ascend-host") and "<<<" in f.source("ascend-host")
    with pytest.raises(BackendUnavailable, match="ascend -emulate"):
        f(np.zeros(10, "f4"))


def test_tiling_pragmas_choose_each_kernels_tiling():
    """Tile length and block count are schedule data (pragmas), per kernel; one kernel takes one value per key."""
    X = ember.placeholder((64, 300), "float32", name="X")
    Y = ember.compute((64, 300), lambda i, j: X[i, j] * 2.0, name="Y")
    Z = ember.compute((64, 300), lambda i, j: Y[i, j] + 1.0, name="Z")
    tgt = parse_target("ascend -cores=8")
    sch = schedule_for(Z, tgt)
    sch[Y].compute_root()
    sch[Y].pragma("i", "num_blocks", 3)
    sch[Z].pragma("j", "tile_length", 96)
    _, kernels, _ = generate(lower_to_loops(sch, [X, Z], "k", target=tgt), tgt)
    assert [k.num_blocks for k in kernels] == [3, 8]
    assert kernels[1].plan["tile"] == 96
    sch[Z].pragma("i", "tile_length", 64)
    with pytest.raises(AscendError, match=r"kernel k_1: its loops carry different tile_length pragmas \[64, 96\]"):
        generate(lower_to_loops(sch, [X, Z], "k", target=tgt), tgt)


@pytest.mark.parametrize("dtype, itype", [("float32", "int32"), ("float16", "int32"), ("float16", "int16")])
def test_float_to_int_casts_truncate(emulator, dtype, itype):
    """float -> int truncates toward zero like every ember target; a float16 value through an int is not the
    float16 value itself (only a widened float rounds back to it)."""
    X = ember.placeholder((300,), dtype, name="X")
    Y = ember.compute((300,), lambda i: ember.cast(dtype, ember.cast(itype, X[i])) * 2.0, name="Y")
    f = ember.build(Y, [X, Y], target=_target(3))
    x = np.linspace(-7.9, 7.9, 300).astype(dtype)
    np.testing.assert_array_equal(f(x), (np.trunc(x.astype("f8")) * 2).astype(dtype))


def test_scalar_nests_split_across_blocks_only_when_writes_are_disjoint():
    """Blocks share the flattened outer loops of a scalar nest only when no two iterations store to one element."""
    from ember.codegen.ascend.analyze import splittable
    from ember.ir.dtype import INDEX, float32
    from ember.ir.expr import Var, const
    from ember.ir.loops import Buffer, For, Store
    out = Buffer("out", [const(64, INDEX)], float32)
    i, j = Var("i", INDEX), Var("j", INDEX)

    def nest(index):
        return For(i, const(10, INDEX), "serial", For(j, const(4, INDEX), "serial", Store(out, index, const(1.0))))
    assert [loop.var.name for loop in splittable(nest(i * 4 + j), 48)] == ["i", "j"]
    assert [loop.var.name for loop in splittable(nest(i * 4 + j), 8)] == ["i"]
    assert splittable(nest(i + j), 48) == []  # i=1, j=0 and i=0, j=1 write the same element
    assert splittable(nest(i // 2 * 4 + j), 48) == []  # two i write each row
