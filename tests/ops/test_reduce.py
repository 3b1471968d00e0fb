"""Reduction family (graph/ops/reduce*.py): the official ONNX node cases with their axes/k/axis inputs baked in
as constants (the backend suite feeds them at run time, which ember cannot compile ahead of time), property tests
against numpy and onnxruntime, and error messages."""
from __future__ import annotations

import re
import warnings

import ember
import numpy as np
import onnx
import pytest
from ember.graph.registry import OpError
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import helper, numpy_helper

OPS = re.compile(r"^test_(reduce|argmax|argmin|softmax|logsoftmax|hardmax|cumsum|top_k|einsum)_")
UNSUPPORTED = re.compile(r"bfloat16|uint64|_expanded")  # dtypes ember lacks; expanded cases test other families


def node_cases() -> dict[str, tuple]:
    from onnx.backend.test.loader import load_model_tests
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tests = load_model_tests(kind="node")
    return {t.name: (t.model, t.data_sets[0], t.rtol, t.atol) for t in tests
            if OPS.match(t.name) and not UNSUPPORTED.search(t.name)}


CASES = node_cases()


def bake_inputs(model: onnx.ModelProto, inputs: list[np.ndarray]) -> tuple[onnx.ModelProto, list[np.ndarray]]:
    """Turn every graph input after the data operands (axes, k, axis: small integer tensors) into an
    initializer."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    g = model.graph
    n_data = len(g.node[0].input) if g.node[0].op_type == "Einsum" else 1
    keep = []
    for k, (vi, value) in enumerate(zip(list(g.input), inputs)):
        if k < n_data:
            keep.append(value)
            continue
        g.initializer.append(numpy_helper.from_array(value, vi.name))
        g.input.remove(vi)
    return model, keep


@pytest.mark.parametrize("name", sorted(CASES))
def test_onnx_node_case_with_constant_inputs(name: str):
    model, (inputs, expected), rtol, atol = CASES[name]
    model, feed = bake_inputs(model, inputs)
    got = ember.compile(model)(*feed)
    got = got if isinstance(got, (list, tuple)) else [got]
    for g, e in zip(got, expected):
        assert g.dtype == e.dtype and g.shape == e.shape, (g.dtype, g.shape, e.dtype, e.shape)
        np.testing.assert_allclose(g, e, rtol=rtol, atol=atol)


# --- property tests against numpy / onnxruntime ---------------------------------------------------------------


def one_node_model(op: str, data: list[np.ndarray], consts: list[np.ndarray | None] = (), n_outputs: int = 1,
                   opset: int = 18, **attrs) -> onnx.ModelProto:
    """A model of one `op` node: `data` as graph inputs, then `consts` as initializers (None: input omitted)."""
    names = [f"x{k}" for k in range(len(data))]
    inits = []
    for k, c in enumerate(consts):
        names.append("" if c is None else f"c{k}")
        if c is not None:
            inits.append(numpy_helper.from_array(c, f"c{k}"))
    outs = [f"y{k}" for k in range(n_outputs)]
    node = helper.make_node(op, names, outs, **attrs)
    graph = helper.make_graph(
        [node], "g",
        [helper.make_tensor_value_info(f"x{k}", helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
         for k, a in enumerate(data)],
        [helper.make_empty_tensor_value_info(o) for o in outs], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model = onnx.shape_inference.infer_shapes(model)
    for out in model.graph.output:  # the checker wants typed outputs; inference leaves bad nodes' untyped
        if not out.type.HasField("tensor_type"):
            out.CopyFrom(helper.make_tensor_value_info(out.name, onnx.TensorProto.FLOAT, ["n"]))
    return model


def run(model: onnx.ModelProto, *data: np.ndarray) -> list[np.ndarray]:
    out = ember.compile(model)(*data)
    return list(out) if isinstance(out, (list, tuple)) else [out]


def run_ort(model: onnx.ModelProto, *data: np.ndarray) -> list[np.ndarray]:
    import onnxruntime as ort
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {f"x{k}": a for k, a in enumerate(data)})


shapes = st.lists(st.integers(0, 4), min_size=1, max_size=3).map(tuple)


def arrays(shape: tuple, dtype=np.float32, lo: float = -3, hi: float = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(lo, hi, shape).astype(dtype)


NUMPY_REDUCE = {
    "ReduceSum": lambda x, a, k: np.sum(x, a, keepdims=k),
    "ReduceSumSquare": lambda x, a, k: np.sum(x * x, a, keepdims=k),
    "ReduceL1": lambda x, a, k: np.sum(np.abs(x), a, keepdims=k),
    "ReduceL2": lambda x, a, k: np.sqrt(np.sum(x * x, a, keepdims=k)),
    "ReduceLogSum": lambda x, a, k: np.log(np.sum(x, a, keepdims=k)),
    "ReduceLogSumExp": lambda x, a, k: np.log(np.sum(np.exp(x.astype(np.float64)), a, keepdims=k)),
    "ReduceMean": lambda x, a, k: np.mean(x, a, keepdims=k),
    "ReduceProd": lambda x, a, k: np.prod(x, a, keepdims=k),
    "ReduceMax": lambda x, a, k: np.max(x, a, keepdims=k, initial=-np.inf),
    "ReduceMin": lambda x, a, k: np.min(x, a, keepdims=k, initial=np.inf),
}


@settings(max_examples=20)
@given(op=st.sampled_from(sorted(NUMPY_REDUCE)), shape=shapes, data=st.data(), keepdims=st.booleans(),
       old_opset=st.booleans())
def test_reduce_matches_numpy(op, shape, data, keepdims, old_opset):
    axes = data.draw(st.lists(st.integers(-len(shape), len(shape) - 1), unique_by=lambda a: a % len(shape)))
    x = arrays(shape, lo=0.1 if op == "ReduceLogSum" else -3)
    if old_opset:
        model = one_node_model(op, [x], opset=11, keepdims=int(keepdims), **({"axes": axes} if axes else {}))
    else:
        consts = [np.array(axes, np.int64)] if axes else []
        model = one_node_model(op, [x], consts, opset=18, keepdims=int(keepdims))
    with np.errstate(all="ignore"):
        expected = NUMPY_REDUCE[op](x, tuple(axes) if axes else None, keepdims).astype(np.float32)
    (got,) = run(model, x)
    assert got.shape == expected.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_reduce_noop_with_empty_axes_applies_the_element_transform_only():
    x = arrays((2, 3))
    for op, expected in [("ReduceSum", x), ("ReduceSumSquare", x * x), ("ReduceL2", np.abs(x)), ("ReduceMax", x)]:
        (got,) = run(one_node_model(op, [x], [np.array([], np.int64)], noop_with_empty_axes=1), x)
        np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_reduce_log_sum_exp_is_stable_and_integer_means_truncate():
    x = np.array([[1000.0, 1000.0], [-np.inf, -np.inf]], np.float32)
    (got,) = run(one_node_model("ReduceLogSumExp", [x], [np.array([1], np.int64)], keepdims=0), x)
    np.testing.assert_allclose(got, [1000 + np.log(2), -np.inf], rtol=1e-6)
    xi = np.array([[1, 2], [-3, -4]], np.int32)
    (mean,) = run(one_node_model("ReduceMean", [xi], [np.array([1], np.int64)], keepdims=0), xi)
    assert mean.dtype == np.int32 and mean.tolist() == [1, -3]
    xb = np.array([[True, False], [False, False]])
    (anyb,) = run(one_node_model("ReduceMax", [xb], [np.array([1], np.int64)], opset=20, keepdims=0), xb)
    assert anyb.tolist() == [True, False]


@settings(max_examples=15)
@given(op=st.sampled_from(["Softmax", "LogSoftmax", "Hardmax"]), shape=shapes.filter(lambda s: 0 not in s),
       data=st.data(), opset=st.sampled_from([11, 13]))
def test_softmax_family_matches_onnxruntime(op, shape, data, opset):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    x = np.round(arrays(shape, lo=-50, hi=50), 0)  # integer values: Hardmax ties, large exponents
    model = one_node_model(op, [x], opset=opset, axis=axis)
    np.testing.assert_allclose(run(model, x)[0], run_ort(model, x)[0], rtol=1e-5, atol=1e-6)


@settings(max_examples=15)
@given(op=st.sampled_from(["ArgMax", "ArgMin"]), shape=shapes.filter(lambda s: 0 not in s), data=st.data(),
       keepdims=st.booleans(), last=st.booleans())
def test_arg_reductions_match_numpy_with_ties(op, shape, data, keepdims, last):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    x = np.round(arrays(shape, lo=-1, hi=1))  # few distinct values: many ties
    model = one_node_model(op, [x], opset=13, axis=axis, keepdims=int(keepdims), select_last_index=int(last))
    fn = np.argmax if op == "ArgMax" else np.argmin
    expected = (x.shape[axis] - 1 - fn(np.flip(x, axis), axis=axis)) if last else fn(x, axis=axis)
    expected = np.expand_dims(expected, axis) if keepdims else expected
    (got,) = run(model, x)
    assert got.dtype == np.int64 and got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)


@settings(max_examples=12)
@given(shape=shapes, data=st.data(), exclusive=st.booleans(), reverse=st.booleans(),
       dtype=st.sampled_from([np.float32, np.int32]))
def test_cumsum_matches_numpy(shape, data, exclusive, reverse, dtype):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    x = arrays(shape, dtype, -9, 9)
    model = one_node_model("CumSum", [x], [np.array(axis, np.int64)], opset=14, exclusive=int(exclusive),
                           reverse=int(reverse))
    y = np.flip(x, axis) if reverse else x
    expected = np.cumsum(y, axis=axis, dtype=dtype)
    if exclusive:
        expected = expected - y
    expected = np.flip(expected, axis) if reverse else expected
    np.testing.assert_allclose(run(model, x)[0], expected, rtol=1e-5, atol=1e-5)


@settings(max_examples=12)
@given(shape=shapes.filter(lambda s: 0 not in s), data=st.data(), largest=st.booleans())
def test_topk_matches_stable_sort(shape, data, largest):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    k = data.draw(st.integers(0, shape[axis]))
    x = np.round(arrays(shape, lo=-2, hi=2))  # ties resolve to the lower index
    model = one_node_model("TopK", [x], [np.array([k], np.int64)], n_outputs=2, opset=11, axis=axis,
                           largest=int(largest))
    order = np.argsort(-x if largest else x, axis=axis, kind="stable")
    idx = np.take(order, np.arange(k), axis=axis)
    values, indices = run(model, x)
    np.testing.assert_array_equal(indices, idx)
    np.testing.assert_array_equal(values, np.take_along_axis(x, idx, axis=axis))


@pytest.mark.parametrize("equation,shapes_", [
    ("ij,jk->ik", [(2, 3), (3, 4)]), ("bij,bjk->bik", [(2, 2, 3), (2, 3, 2)]), ("ii->i", [(3, 3)]),
    ("...ii->...i", [(2, 3, 3)]), ("i,i", [(4,), (4,)]), ("ij", [(2, 3)]), ("ji", [(2, 3)]),
    ("...j,j->...", [(2, 1, 3), (3,)]), ("ij->", [(2, 3)]), ("i,j->ij", [(2,), (3,)]), ("ij,kj", [(2, 3), (4, 3)])])
def test_einsum_matches_numpy(equation, shapes_):
    xs = [arrays(s, np.float64, seed=k) for k, s in enumerate(shapes_)]
    (got,) = run(one_node_model("Einsum", xs, opset=12, equation=equation), *xs)
    np.testing.assert_allclose(got, np.einsum(equation, *xs), rtol=1e-12)


@pytest.mark.parametrize("model,message", [
    (one_node_model("ReduceSum", [np.ones((2, 3), np.float32)], [np.array([0, -2], np.int64)]), "repeat"),
    (one_node_model("ReduceMax", [np.ones((2, 3), np.float32)], [np.array([2], np.int64)]), "out of range"),
    (one_node_model("ReduceSum", [np.ones(3, bool)], opset=13), "bool"),
    (one_node_model("Softmax", [np.ones(3, np.int32)], opset=13), "float"),
    (one_node_model("ArgMax", [np.ones((2, 0), np.float32)], opset=13, axis=1), "size 0"),
    (one_node_model("TopK", [np.ones(3, np.float32)], [np.array([4], np.int64)], n_outputs=2, opset=11),
     "out of range"),
    (one_node_model("Einsum", [np.ones((2, 3)), np.ones((4, 5))], opset=12, equation="ij,jk->ik"), "sizes"),
])
def test_bad_nodes_are_reported(model, message):
    with pytest.raises(OpError, match=message):
        ember.compile(model)


def test_axes_fed_at_run_time_are_refused_clearly():
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2, 3])
    axes = helper.make_tensor_value_info("axes", onnx.TensorProto.INT64, [1])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 3])
    graph = helper.make_graph([helper.make_node("ReduceSum", ["x", "axes"], ["y"])], "g", [x, axes], [y])
    with pytest.raises(OpError, match="axes must be a constant"):
        ember.compile(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]))
