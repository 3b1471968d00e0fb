"""The register-blocked matmul schedule (compiler/rules_contraction.py) on awkward shapes: rows and columns that
are not multiples of the micro-kernel (edge tiles computed whole on the padded tile), reductions that are not a
multiple of the chunk, single-row products (the streaming schedule), for 16- and 32-register targets."""
from __future__ import annotations

import numpy as np
import pytest
import onnx
from hypothesis import given, settings, strategies as st
from onnx import TensorProto, helper, numpy_helper

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


def _conv_model(c: int, m: int, hw: int, k: int, stride: int, pad: int):
    rng = np.random.default_rng(0)
    w = rng.standard_normal((m, c, k, k)).astype(np.float32)
    node = helper.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[k, k], strides=[stride, stride],
                            pads=[pad] * 4)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, hw, hw])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return onnx.shape_inference.infer_shapes(model, strict_mode=True), w


@settings(max_examples=8, deadline=None)
@given(c=st.sampled_from([1, 3, 16]), m=st.sampled_from([8, 20]), hw=st.sampled_from([1, 2, 7, 15]),
       k=st.sampled_from([1, 3]), stride=st.sampled_from([1, 2]), pad=st.sampled_from([0, 1]))
def test_convolution_column_layouts_match_numpy(c, m, hw, k, stride, pad):
    """Each column-matrix layout (the input itself for 1x1 stride 1, the pixel matrix for stride 1, the (k, oh, ow)
    stage for larger strides) against a direct numpy convolution, on sizes where strides and padding interact."""
    if hw + 2 * pad < k:
        return
    model, w = _conv_model(c, m, hw, k, stride, pad)
    x = np.random.default_rng(1).standard_normal((1, c, hw, hw)).astype(np.float32)
    np.testing.assert_allclose(ember.compile(model)(x)[0], _numpy_conv(x, w, stride, pad), rtol=1e-4, atol=1e-4)


def _numpy_conv(x: np.ndarray, w: np.ndarray, stride: int, pad: int) -> np.ndarray:
    k = w.shape[-1]
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    o = (x.shape[-1] + 2 * pad - k) // stride + 1
    want = np.zeros((x.shape[0], w.shape[0], o, o), np.float32)
    for i in range(k):
        for j in range(k):
            patch = xp[:, :, i:i + stride * o:stride, j:j + stride * o:stride]
            want += np.einsum("nchw,mc->nmhw", patch, w[:, :, i, j])
    return want


@pytest.mark.parametrize("hw,k", [(64, 7), (32, 3)])
def test_strided_stem_computes_whole_row_panels(hw, k, tmp_path, monkeypatch):
    """A 3-channel stride-2 stem: column tiles of whole output rows, each panel computed from the padded input
    (implicit im2col through the (tap, oh, ow) view), so no column matrix is stored."""
    monkeypatch.setenv("EMBER_DUMP_DIR", str(tmp_path))
    monkeypatch.setenv("EMBER_CACHE", "0")
    model, w = _conv_model(3, 16, hw, k, 2, k // 2)
    x = np.random.default_rng(2).standard_normal((1, 3, hw, hw)).astype(np.float32)
    np.testing.assert_allclose(ember.compile(model)(x)[0], _numpy_conv(x, w, 2, k // 2), rtol=1e-4, atol=1e-4)
    loops = "".join(p.read_text() for p in tmp_path.rglob("loops.txt")).splitlines()
    stored = [ln.split("[")[1] for ln in loops if "allocate" in ln and "in global" in ln]
    assert stored and all(s.startswith("1, 3,") for s in stored)  # only the zero-padded input is stored
    assert any(f"local[1, {3 * k * k}, " in ln for ln in loops)  # panels of all taps, computed per tile


def test_pointwise_convolution_packs_its_input_directly(tmp_path, monkeypatch):
    """A 1x1 stride-1 convolution over many pixels copies nothing into a column matrix: the packed panel reads
    the input."""
    monkeypatch.setenv("EMBER_DUMP_DIR", str(tmp_path))
    monkeypatch.setenv("EMBER_CACHE", "0")
    model, _ = _conv_model(64, 64, 28, 1, 1, 0)
    ember.compile(model)
    loops = "".join(p.read_text() for p in tmp_path.rglob("loops.txt"))
    assert "_col" not in loops and "in0.local[" in loops


def test_narrow_gemm_runs_as_dot_products(tmp_path, monkeypatch):
    """A classifier layer (10 outputs, weights [10, k] with transB=1) keeps its weights untransposed: each output
    is a dot product of contiguous rows, vectorized along k (rfactor), not a 10-column matmul."""
    rng = np.random.default_rng(0)
    x, w, b = (rng.standard_normal(s).astype(np.float32) for s in ((6, 300), (10, 300), (10,)))
    node = helper.make_node("Gemm", ["x", "w", "b"], ["y"], transB=1)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [6, 300])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    monkeypatch.setenv("EMBER_DUMP_DIR", str(tmp_path))
    monkeypatch.setenv("EMBER_CACHE", "0")
    got = ember.compile(onnx.shape_inference.infer_shapes(model))(x)[0]
    np.testing.assert_allclose(got, x @ w.T + b, rtol=1e-4, atol=1e-4)
    assert "rfactor" in "".join(p.read_text() for p in tmp_path.rglob("schedule.txt"))


def test_short_output_rows_are_one_vector_under_the_reduction():
    f = build(5, 40, 10, "llvm")
    loops = f.source("loops")
    assert "for r in 0..40:\n      vectorized for j in 0..10:" in loops
    a, b = np.ones((5, 40), np.float32), np.arange(400, dtype=np.float32).reshape(40, 10)
    np.testing.assert_allclose(f(a, b), a @ b, rtol=1e-6)


def test_stride_one_convolution_packs_im2col_panels_directly(tmp_path, monkeypatch):
    """Implicit im2col: with at most two row blocks each packed panel computes its columns from the input and the
    (tap, pixel) matrix is never stored; the result matches numpy."""
    monkeypatch.setenv("EMBER_DUMP_DIR", str(tmp_path))
    monkeypatch.setenv("EMBER_CACHE", "0")
    model, w = _conv_model(16, 32, 20, 3, 1, 1)
    x = np.random.default_rng(2).standard_normal((1, 16, 20, 20)).astype(np.float32)
    got = ember.compile(model)(x)[0]
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    want = sum(np.einsum("nchw,mc->nmhw", xp[:, :, i:i + 20, j:j + 20], w[:, :, i, j])
               for i in range(3) for j in range(3))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    loops = "".join(p.read_text() for p in tmp_path.rglob("loops.txt"))
    assert "in global" not in loops and ".local[" in loops


def test_streaming_edge_guard_is_split_off_inside_each_block():
    """1000 columns in two parallel blocks of 500 with 16-lane vectors: where the guard falls depends on the block,
    so the column loop is split at a point computed from the block index; most vectors run unguarded."""
    f = build(1, 128, 1000, "llvm")
    loops = f.source("loops").splitlines()
    updates = [k for k, line in enumerate(loops) if line.strip().startswith("C.local[") and "+" in line]
    guarded = [k for k in updates if loops[k - 1].strip().startswith("if ")]
    assert guarded and len(guarded) < len(updates)
    a, b = np.ones((1, 128), np.float32), np.arange(128000, dtype=np.float32).reshape(128, 1000) / 1000
    np.testing.assert_allclose(f(a, b), a @ b, rtol=1e-5)


@pytest.mark.parametrize("threads", [2, 4])
def test_uneven_column_tiles_split_the_rows_between_threads(threads):
    """256 rows x 196 columns: 7 column tiles would split 4 + 3 between two threads, so each thread takes one block
    of rows over all column tiles instead; the result does not change."""
    target = f"llvm -threads={threads}"
    A, B, C = matmul(256, 64, 196)
    sch = default_schedule(C, parse_target(target))
    trace = str(sch.trace)
    assert f"split(axis='i', factor={256 // threads})" in trace and "parallel(axis='i.outer')" in trace
    f = ember.build(sch, [A, B, C], target=target)
    rng = np.random.default_rng(threads)
    a, b = rng.standard_normal((256, 64), dtype=np.float32), rng.standard_normal((64, 196), dtype=np.float32)
    np.testing.assert_allclose(f(a, b), a @ b, rtol=1e-4, atol=1e-3)
