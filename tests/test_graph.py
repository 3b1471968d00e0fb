"""The graph layer end to end on small models: passes (folding, DCE, CSE, BatchNorm folding), fusion, the
executor's memory plan and thread safety, and the errors users see for bad models and bad inputs."""
from __future__ import annotations

import threading

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import ember
from ember.frontend.onnx_import import ModelError, import_model
from ember.graph import UnsupportedOpsError
from ember.graph.partition import fuse
from ember.graph.pipeline import optimize
from ember.testing import gpu_test_target, gpu_test_unavailable

F = TensorProto.FLOAT


def model(nodes, inputs, outputs, inits=(), opset=17):
    g = helper.make_graph(nodes, "m", inputs, outputs, list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def vi(name, shape, dtype=F):
    return helper.make_tensor_value_info(name, dtype, shape)


def chain_model(n=4, shape=(64, 64)):
    """x -> Exp -> Neg -> Exp -> ... with every step's result also needed later only by the next."""
    nodes, prev = [], "x"
    for k in range(n):
        nodes.append(helper.make_node("MatMul", [prev, "w"], [f"m{k}"], name=f"mm{k}"))
        nodes.append(helper.make_node("Relu", [f"m{k}"], [f"r{k}"], name=f"relu{k}"))
        prev = f"r{k}"
    nodes.append(helper.make_node("Identity", [prev], ["y"], name="out"))
    w = numpy_helper.from_array((np.eye(shape[1], dtype=np.float32) * 0.5), "w")
    return model(nodes, [vi("x", list(shape))], [vi("y", list(shape))], [w])


def test_elementwise_chain_fuses_into_one_kernel():
    m = model([helper.make_node("Add", ["x", "b"], ["t"], name="add"),
               helper.make_node("Relu", ["t"], ["u"], name="relu"),
               helper.make_node("Mul", ["u", "b"], ["y"], name="mul")],
              [vi("x", [3, 4])], [vi("y", [3, 4])], [numpy_helper.from_array(np.float32([1, -2, 3, -4]), "b")])
    compiled = ember.compile(m)
    assert len(compiled.steps) == 1
    x = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    b = np.float32([1, -2, 3, -4])
    np.testing.assert_allclose(compiled(x)[0], np.maximum(x + b, 0) * b, rtol=1e-6)


def test_residual_add_joins_the_convolution_that_produced_it():
    """A residual block: the Add and Relu after the second conv join a conv's kernel (its epilogue), reading the
    other operand from the kernel that ran before; the result matches onnxruntime."""
    rng = np.random.default_rng(5)
    w1, w2 = (rng.standard_normal((8, 8, 3, 3)).astype(np.float32) * 0.2 for _ in range(2))
    ws = rng.standard_normal((8, 8, 1, 1)).astype(np.float32) * 0.3
    inits = [numpy_helper.from_array(a, n) for a, n in [(w1, "w1"), (w2, "w2"), (ws, "ws")]]
    m = model([helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv1", pads=[1] * 4),
               helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
               helper.make_node("Conv", ["r1", "w2"], ["c2"], name="conv2", pads=[1] * 4),
               helper.make_node("Conv", ["x", "ws"], ["s"], name="shortcut"),
               helper.make_node("Add", ["c2", "s"], ["a"], name="add"),
               helper.make_node("Relu", ["a"], ["y"], name="relu2")],
              [vi("x", [1, 8, 9, 9])], [vi("y", [1, 8, 9, 9])], inits)
    parts = fuse(optimize(import_model(m)))
    assert [[n.name for n in p.nodes] for p in parts] == [["conv1", "relu1"], ["conv2"], ["shortcut", "add", "relu2"]]
    ort = pytest.importorskip("onnxruntime")
    x = rng.standard_normal((1, 8, 9, 9)).astype(np.float32)
    expected = ort.InferenceSession(m.SerializeToString()).run(None, {"x": x})[0]
    np.testing.assert_allclose(ember.compile(m)(x)[0], expected, rtol=1e-4, atol=1e-5)


def test_element_wise_node_never_joins_a_partition_that_runs_before_its_inputs():
    """`add` reads `late`, made by a partition started after `early`'s: it may join `late`'s partition (which
    runs after `early`'s) but not `early`'s."""
    m = model([helper.make_node("Exp", ["x"], ["e"], name="early"),
               helper.make_node("MatMul", ["x", "x"], ["late"], name="late"),
               helper.make_node("Add", ["e", "late"], ["y"], name="add")],
              [vi("x", [4, 4])], [vi("y", [4, 4])])
    parts = fuse(optimize(import_model(m)))
    assert [[n.name for n in p.nodes] for p in parts] == [["early"], ["late", "add"]]
    x = np.random.default_rng(6).standard_normal((4, 4)).astype(np.float32)
    np.testing.assert_allclose(ember.compile(m)(x)[0], np.exp(x) + x @ x, rtol=1e-5)


def test_an_element_wise_chain_reading_a_value_twice_joins_its_producer():
    """GELU after a MatMul reads the product twice (x and erf(x / sqrt 2)): the whole chain is the MatMul's
    epilogue. A value that a reduction also reads stays in memory, its element-wise readers in their own kernel."""
    rng = np.random.default_rng(14)
    w = numpy_helper.from_array(rng.standard_normal((8, 16)).astype(np.float32) * 0.3, "w")
    consts = [numpy_helper.from_array(np.float32(v), n) for v, n in ((2 ** -0.5, "r2"), (1.0, "one"), (0.5, "half"))]
    gelu = [helper.make_node("MatMul", ["x", "w"], ["a"], name="mm"),
            helper.make_node("Mul", ["a", "r2"], ["b"], name="scale"),
            helper.make_node("Erf", ["b"], ["e"], name="erf"),
            helper.make_node("Add", ["e", "one"], ["f"], name="plus1"),
            helper.make_node("Mul", ["a", "f"], ["g"], name="xphi"),
            helper.make_node("Mul", ["g", "half"], ["y"], name="halve")]
    m = model(gelu, [vi("x", [4, 8])], [vi("y", [4, 16])], [w, *consts])
    parts = fuse(optimize(import_model(m)))
    assert [[n.name for n in p.nodes] for p in parts] == [["mm", "scale", "erf", "plus1", "xphi", "halve"]]
    x = rng.standard_normal((4, 8)).astype(np.float32)
    a = x @ numpy_helper.to_array(w)
    from math import erf
    np.testing.assert_allclose(ember.compile(m)(x)[0], 0.5 * a * (1 + np.vectorize(erf)(a * 2 ** -0.5)),
                               rtol=1e-5, atol=1e-6)
    shared = model([helper.make_node("MatMul", ["x", "w"], ["a"], name="mm"),
                    helper.make_node("ReduceSum", ["a"], ["s"], name="sum", keepdims=1),
                    helper.make_node("Relu", ["a"], ["r"], name="relu"),
                    helper.make_node("Add", ["r", "s"], ["y"], name="add")],
                   [vi("x", [4, 8])], [vi("y", [4, 16])], [w], opset=13)
    parts = fuse(optimize(import_model(shared)))
    assert [[n.name for n in p.nodes] for p in parts] == [["mm"], ["sum"], ["relu", "add"]]
    np.testing.assert_allclose(ember.compile(shared)(x)[0], np.maximum(a, 0) + a.sum(), rtol=1e-5, atol=1e-5)


def _head_split_model(seq: int = 6, dh: int = 4):
    """q, k from two MatMuls, split into 2 heads (Reshape + Transpose), scores = q @ k^T per head."""
    rng = np.random.default_rng(15)
    wq, wk = (numpy_helper.from_array(rng.standard_normal((2 * dh, 2 * dh)).astype(np.float32) * 0.3, n)
              for n in ("wq", "wk"))
    shape = numpy_helper.from_array(np.array([1, seq, 2, dh], np.int64), "heads")
    nodes = [helper.make_node("MatMul", ["x", "wq"], ["q"], name="q"),
             helper.make_node("MatMul", ["x", "wk"], ["k"], name="k"),
             helper.make_node("Reshape", ["q", "heads"], ["q4"], name="q_split"),
             helper.make_node("Transpose", ["q4"], ["qt"], name="q_heads", perm=[0, 2, 1, 3]),
             helper.make_node("Reshape", ["k", "heads"], ["k4"], name="k_split"),
             helper.make_node("Transpose", ["k4"], ["kt"], name="k_heads", perm=[0, 2, 3, 1]),
             helper.make_node("MatMul", ["qt", "kt"], ["y"], name="scores")]
    return model(nodes, [vi("x", [1, seq, 2 * dh])], [vi("y", [1, 2, seq, seq])], [wq, wk, shape])


def test_transposes_move_into_their_reader_on_gpu_targets_only():
    """With `move_layouts` (cuda), each head split (Reshape + Transpose) read by one MatMul is an index map of
    that MatMul's reads instead of copy kernels; on the CPU they stay kernels of their own (its packing reads
    through them several times slower) and the Reshapes are views."""
    g = optimize(import_model(_head_split_model()))
    names = [[n.name for n in p.nodes] for p in fuse(g, move_layouts=True)]
    assert names == [["q"], ["k"], ["q_split", "q_heads", "k_split", "k_heads", "scores"]]
    assert [[n.name for n in p.nodes] for p in fuse(g)] == [["q"], ["k"], ["q_split"], ["q_heads"], ["k_split"],
                                                           ["k_heads"], ["scores"]]


@pytest.mark.skipif(gpu_test_unavailable() is not None, reason=str(gpu_test_unavailable()))
@pytest.mark.parametrize("seq,dh", [(6, 4), (32, 32)])
def test_head_splits_read_by_a_gpu_matmul_match_onnxruntime(seq, dh):
    """At 32 x 32 heads the scores take the tiled rule: the K^T tile is fetched with consecutive threads down its
    rows, which are consecutive in k's memory (coalesced), Q's along its columns."""
    m = _head_split_model(seq, dh)
    compiled = ember.compile(m, target=gpu_test_target())
    assert len(compiled.steps) == 3 and len(ember.compile(m).steps) == 5  # the CPU's Reshapes are views
    if seq == 32:
        trace = str(compiled.steps[-1].kernel.source("schedule"))
        x_binds = {line.split("'")[1]: line.split("axis='")[1].split("'")[0] for line in trace.splitlines()
                   if ".shared'].bind" in line and "threadIdx.x" in line}
        assert sorted(x_binds.values()) == ["ax2.inner", "ax3.inner"]  # one tile down its rows, one across
    ort = pytest.importorskip("onnxruntime")
    x = np.random.default_rng(16).standard_normal((1, seq, 2 * dh)).astype(np.float32)
    want = ort.InferenceSession(m.SerializeToString()).run(None, {"x": x})[0]
    np.testing.assert_allclose(compiled(x)[0], want, rtol=1e-4, atol=1e-4)  # sums of 32 products of ~8


def test_inference_batchnorm_fuses_but_training_batchnorm_does_not():
    rng = np.random.default_rng(1)
    params = [numpy_helper.from_array(rng.random(4).astype(np.float32) + 0.5, n) for n in ("s", "b", "m", "v")]
    relu = helper.make_node("Relu", ["x"], ["r"], name="relu")
    infer = model([relu, helper.make_node("BatchNormalization", ["r", "s", "b", "m", "v"], ["y"], name="bn")],
                  [vi("x", [1, 4, 3, 3])], [vi("y", [1, 4, 3, 3])], params, opset=15)
    compiled = ember.compile(infer)
    assert len(compiled.steps) == 1
    x = rng.standard_normal((1, 4, 3, 3)).astype(np.float32)
    s, b, m, v = (numpy_helper.to_array(p).reshape(1, 4, 1, 1) for p in params)
    np.testing.assert_allclose(compiled(x)[0], (np.maximum(x, 0) - m) / np.sqrt(v + 1e-5) * s + b, rtol=1e-5)
    train = model([relu, helper.make_node("BatchNormalization", ["r", "s", "b", "m", "v"], ["y"], name="bn",
                                          training_mode=1)],
                  [vi("x", [1, 4, 3, 3])], [vi("y", [1, 4, 3, 3])], params, opset=15)
    assert len(fuse(optimize(import_model(train)))) == 2


def test_constant_subgraphs_fold_away():
    shape = numpy_helper.from_array(np.int64([2, 3]), "shape")
    m = model([helper.make_node("ConstantOfShape", ["shape"], ["c"], name="fill",
                                value=numpy_helper.from_array(np.float32([2.0]))),
               helper.make_node("Exp", ["c"], ["e"], name="exp"),        # folded by compiling its lowering
               helper.make_node("Add", ["x", "e"], ["y"], name="add")],
              [vi("x", [2, 3])], [vi("y", [2, 3])], [shape])
    g = optimize(import_model(m))
    assert [n.op for n in g.nodes] == ["Add"]
    x = np.ones((2, 3), np.float32)
    np.testing.assert_allclose(ember.compile(m)(x)[0], x + np.exp(2.0), rtol=1e-6)


def test_dead_code_and_common_subexpressions_are_removed():
    m = model([helper.make_node("Exp", ["x"], ["a"], name="exp1"),
               helper.make_node("Exp", ["x"], ["b"], name="exp2"),
               helper.make_node("Log", ["x"], ["unused"], name="dead"),
               helper.make_node("Add", ["a", "b"], ["y"], name="add")],
              [vi("x", [5])], [vi("y", [5])])
    g = optimize(import_model(m))
    assert sorted(n.name for n in g.nodes) == ["add", "exp1"]
    x = np.linspace(-1, 1, 5).astype(np.float32)
    np.testing.assert_allclose(ember.compile(m)(x)[0], 2 * np.exp(x), rtol=1e-6)


def test_batchnorm_folds_into_conv():
    rng = np.random.default_rng(1)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    scale, bias = rng.random(4).astype(np.float32) + 0.5, rng.standard_normal(4).astype(np.float32)
    mean, var = rng.standard_normal(4).astype(np.float32), rng.random(4).astype(np.float32) + 0.1
    inits = [numpy_helper.from_array(a, n) for a, n in
             [(w, "w"), (scale, "s"), (bias, "b"), (mean, "mean"), (var, "var")]]
    m = model([helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
               helper.make_node("BatchNormalization", ["c", "s", "b", "mean", "var"], ["y"], name="bn")],
              [vi("x", [1, 3, 8, 8])], [vi("y", [1, 4, 8, 8])], inits)
    g = optimize(import_model(m))
    assert [n.op for n in g.nodes] == ["Conv"]
    assert g.outputs[0].name == "y"
    ort = pytest.importorskip("onnxruntime")
    x = rng.standard_normal((1, 3, 8, 8)).astype(np.float32)
    expected = ort.InferenceSession(m.SerializeToString()).run(None, {"x": x})[0]
    np.testing.assert_allclose(ember.compile(m)(x)[0], expected, rtol=1e-4, atol=1e-5)


def _fire_module(batch: int, expand1: int = 5):
    """squeeze 1x1 -> (expand 1x1, expand 3x3) -> Relu each -> Concat on channels -> Relu: SqueezeNet's block."""
    rng = np.random.default_rng(7)
    ws, w1, w3 = (rng.standard_normal(s).astype(np.float32) * 0.3
                  for s in [(4, 6, 1, 1), (expand1, 4, 1, 1), (3, 4, 3, 3)])
    inits = [numpy_helper.from_array(a, n) for a, n in [(ws, "ws"), (w1, "w1"), (w3, "w3")]]
    return model([helper.make_node("Conv", ["x", "ws"], ["s"], name="squeeze"),
                  helper.make_node("Conv", ["s", "w1"], ["e1"], name="expand1"),
                  helper.make_node("Relu", ["e1"], ["r1"], name="relu1"),
                  helper.make_node("Conv", ["s", "w3"], ["e3"], name="expand3", pads=[1] * 4),
                  helper.make_node("Relu", ["e3"], ["r3"], name="relu3"),
                  helper.make_node("Concat", ["r1", "r3"], ["c"], name="concat", axis=1),
                  helper.make_node("Relu", ["c"], ["y"], name="out")],
                 [vi("x", [batch, 6, 7, 9])], [vi("y", [batch, expand1 + 3, 7, 9])], inits)


@pytest.mark.skipif(gpu_test_unavailable() is not None, reason=str(gpu_test_unavailable()))
@pytest.mark.parametrize("expand1,in_place", [(5, False), (4, True)])
def test_gpu_concats_are_in_place_only_at_16_byte_offsets(expand1, in_place):
    """GPU kernels access buffers 16 bytes at a time and refuse a misaligned one: a Concat whose second block
    starts 5 x 7 x 9 floats in (1260 bytes) stays a kernel on the GPU; at 4 x 7 x 9 (1008 bytes) it is in place."""
    m = _fire_module(1, expand1)
    compiled = ember.compile(m, target=gpu_test_target())
    assert any("concat" in s.label for s in compiled.steps) != in_place
    assert not any("concat" in s.label for s in ember.compile(m).steps)  # the CPU places both
    ort = pytest.importorskip("onnxruntime")
    x = np.random.default_rng(8).standard_normal((1, 6, 7, 9)).astype(np.float32)
    expected = ort.InferenceSession(m.SerializeToString()).run(None, {"x": x})[0]
    np.testing.assert_allclose(compiled(x)[0], expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("batch,in_place", [(1, True), (2, False)])
def test_concat_inputs_are_written_in_place(batch, in_place, tmp_path):
    """At batch 1 each channel block of the Concat is contiguous: the kernels before it write into its result and
    no copy kernel runs (the plan survives saving and loading); at batch 2 the Concat stays a kernel."""
    m = _fire_module(batch)
    compiled = ember.compile(m)
    labels = [s.label for s in compiled.steps]
    assert any("concat" in label for label in labels) != in_place
    ort = pytest.importorskip("onnxruntime")
    x = np.random.default_rng(8).standard_normal((batch, 6, 7, 9)).astype(np.float32)
    expected = ort.InferenceSession(m.SerializeToString()).run(None, {"x": x})[0]
    np.testing.assert_allclose(compiled(x)[0], expected, rtol=1e-4, atol=1e-5)
    compiled.save(tmp_path / "fire.ember")
    np.testing.assert_allclose(ember.load(tmp_path / "fire.ember")(x)[0], expected, rtol=1e-4, atol=1e-5)


def _views_model(last_is_view: bool):
    """MatMul -> Reshape -> Flatten -> MatMul (-> Reshape as the graph output when `last_is_view`)."""
    rng = np.random.default_rng(11)
    w1, w2 = rng.standard_normal((8, 12)).astype(np.float32), rng.standard_normal((12, 5)).astype(np.float32)
    inits = [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2"),
             numpy_helper.from_array(np.array([6, 2, 12], np.int64), "s1"),
             numpy_helper.from_array(np.array([6, 10], np.int64), "s2")]
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["a"]), helper.make_node("Reshape", ["a", "s1"], ["b"]),
             helper.make_node("Flatten", ["b"], ["c"], axis=2), helper.make_node("MatMul", ["c", "w2"], ["d"])]
    out = "d"
    if last_is_view:
        nodes.append(helper.make_node("Reshape", ["d", "s2"], ["e"]))
        out = "e"
    return model(nodes, [vi("x", [3, 4, 8])], [vi(out, [12, 5] if out == "d" else [6, 10])], inits)


@pytest.mark.parametrize("last_is_view", [False, True])
def test_views_of_intermediates_run_no_kernel(last_is_view, tmp_path):
    """A Reshape or Flatten of an intermediate is its input's buffer read in another shape: no step runs for it;
    one whose result is a graph output still copies (the caller owns that array)."""
    m = _views_model(last_is_view)
    compiled = ember.compile(m)
    labels = [s.label for s in compiled.steps]
    assert not any("Reshape_1" in x or "Flatten" in x for x in labels)
    assert any("Reshape_4" in x for x in labels) == last_is_view
    ort = pytest.importorskip("onnxruntime")
    x = np.random.default_rng(12).standard_normal((3, 4, 8)).astype(np.float32)
    expected = ort.InferenceSession(m.SerializeToString()).run(None, {"x": x})[0]
    np.testing.assert_allclose(compiled(x)[0], expected, rtol=1e-5, atol=1e-5)
    compiled.save(tmp_path / "views.ember")
    np.testing.assert_allclose(ember.load(tmp_path / "views.ember")(x)[0], expected, rtol=1e-5, atol=1e-5)


def test_memory_plan_reuses_buffers():
    compiled = ember.compile(chain_model(n=4))
    sizes = [64 * 64 * 4] * len(compiled.temps)
    assert len(compiled.temps) >= 3
    assert compiled.planned_peak_bytes < sum(sizes)
    assert compiled.planned_peak_bytes >= 2 * 64 * 64 * 4  # a producer and its consumer overlap
    x = np.random.default_rng(2).standard_normal((64, 64)).astype(np.float32)
    expected = np.maximum(x, 0) * 0.5 ** 4
    np.testing.assert_allclose(compiled(x)[0], expected, rtol=1e-6)


def test_concurrent_runs_from_threads_are_independent():
    compiled = ember.compile(chain_model(n=3, shape=(32, 32)))
    rng = np.random.default_rng(3)
    inputs = [rng.standard_normal((32, 32)).astype(np.float32) for _ in range(8)]
    results: dict[int, np.ndarray] = {}

    def work(k: int) -> None:
        for _ in range(20):
            results[k] = compiled(inputs[k])[0]

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k in range(8):
        np.testing.assert_allclose(results[k], np.maximum(inputs[k], 0) * 0.125, rtol=1e-6)


def test_inputs_by_name_and_run_dict():
    m = model([helper.make_node("Sub", ["a", "b"], ["y"], name="sub")], [vi("a", [2]), vi("b", [2])],
              [vi("y", [2])])
    compiled = ember.compile(m)
    a, b = np.float32([5, 6]), np.float32([1, 2])
    np.testing.assert_array_equal(compiled(b=b, a=a)[0], a - b)
    np.testing.assert_array_equal(compiled.run({"a": a, "b": b})["y"], a - b)


# ---- errors -----------------------------------------------------------------------------------------------------
def test_every_unsupported_op_is_listed_in_one_error():
    m = model([helper.make_node("Relu", ["x"], ["a"], name="ok"),
               helper.make_node("NoSuchOp", ["a"], ["b"], name="first", domain="example.com"),
               helper.make_node("AlsoMissing", ["b"], ["y"], name="second", domain="example.com")],
              [vi("x", [2])], [vi("y", [2])])
    m.opset_import.append(helper.make_opsetid("example.com", 1))
    with pytest.raises(UnsupportedOpsError) as err:
        ember.compile(m)
    text = str(err.value)
    assert "NoSuchOp" in text and "AlsoMissing" in text and "'first'" in text and "'second'" in text
    assert "ok" not in err.value.ops


def test_malformed_protobuf_is_a_model_error():
    with pytest.raises(ModelError, match="not a valid ONNX model"):
        ember.compile(b"\x08\x07garbage that is not protobuf\xff\xff")


def test_missing_file_is_reported():
    with pytest.raises(FileNotFoundError, match="no ONNX model"):
        ember.compile("/nonexistent/model.onnx")


def test_undefined_value_names_the_node():
    g = helper.make_graph([helper.make_node("Relu", ["missing"], ["y"], name="r")], "m", [vi("x", [2])],
                          [vi("y", [2])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(ModelError):
        ember.compile(m)


def test_incompatible_shapes_name_the_node():
    m = model([helper.make_node("Add", ["a", "b"], ["y"], name="bad_add")], [vi("a", [2, 3]), vi("b", [4])],
              [vi("y", [2, 3])])
    with pytest.raises(ember.graph.OpError, match="bad_add"):
        ember.compile(m)


@pytest.mark.parametrize("value, error, match", [
    (np.zeros((2, 3), np.float64), TypeError, "must be float32"),
    (np.zeros((3, 2), np.float32), ValueError, "must have shape"),
    (np.zeros((2,), np.float32), ValueError, "rank 2"),
])
def test_bad_run_time_inputs(value, error, match):
    compiled = ember.compile(model([helper.make_node("Relu", ["x"], ["y"], name="r")], [vi("x", [2, 3])],
                                   [vi("y", [2, 3])]))
    with pytest.raises(error, match=match):
        compiled(value)


def test_wrong_input_names_and_counts():
    compiled = ember.compile(model([helper.make_node("Relu", ["x"], ["y"], name="r")], [vi("x", [2])],
                                   [vi("y", [2])]))
    with pytest.raises(TypeError, match="no input named 'z'"):
        compiled(z=np.zeros(2, np.float32))
    with pytest.raises(TypeError, match="takes 1 inputs"):
        compiled(np.zeros(2, np.float32), np.zeros(2, np.float32))


def test_unsupported_input_dtype_is_named():
    m = model([helper.make_node("Identity", ["x"], ["y"], name="i")], [vi("x", [2], TensorProto.BFLOAT16)],
              [vi("y", [2], TensorProto.BFLOAT16)])
    with pytest.raises(ModelError, match="BFLOAT16"):
        ember.compile(m)


def test_symbolic_batch_dimension():
    m = model([helper.make_node("Relu", ["x"], ["y"], name="r")], [vi("x", ["N", 3])], [vi("y", ["N", 3])])
    compiled = ember.compile(m)
    for n in (1, 5):
        x = np.linspace(-1, 1, 3 * n).reshape(n, 3).astype(np.float32)
        np.testing.assert_array_equal(compiled(x)[0], np.maximum(x, 0))


def test_partitions_describe_their_nodes():
    parts = fuse(optimize(import_model(chain_model(n=2))))
    assert [p.describe() for p in parts] == ["mm0, relu0", "mm1, relu1, out"]


def test_declared_output_shape_must_match():
    m = model([helper.make_node("Relu", ["x"], ["y"], name="r")], [vi("x", [2, 3])], [vi("y", [3, 2])])
    with pytest.raises(ember.graph.OpError, match=r"graph output 'y' is declared with shape \(3, 2\)"):
        ember.compile(m)
