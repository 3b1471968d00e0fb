"""Loss family (graph/ops/loss.py): NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss against onnxruntime over
the attribute grid (reduction, ignore_index in and out of [0, C), weight, int32 targets, N-d inputs, the log_prob
output), plus error messages. The official node cases run in tests/onnx/test_backend_nodes.py."""
from __future__ import annotations

import itertools

import ember
import numpy as np
import onnx
import pytest
from ember.graph.registry import OpError
from onnx import helper


def loss_model(op: str, x: np.ndarray, target: np.ndarray, weight: np.ndarray | None, n_outputs: int = 1,
               **attrs) -> onnx.ModelProto:
    """One loss node with inputs x, t (and w when given); outputs typed by shape inference where it can."""
    arrays = {"x": x, "t": target, **({"w": weight} if weight is not None else {})}
    outs = ["loss", "log_prob"][:n_outputs]
    node = helper.make_node(op, list(arrays), outs, **attrs)
    graph = helper.make_graph(
        [node], "g",
        [helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape) for k, a in arrays.items()],
        [helper.make_empty_tensor_value_info(o) for o in outs])
    model = onnx.shape_inference.infer_shapes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]))
    for out in model.graph.output:  # inference leaves bad nodes' outputs untyped; the checker wants a type
        if not out.type.tensor_type.HasField("shape"):
            out.CopyFrom(helper.make_tensor_value_info(out.name, onnx.TensorProto.FLOAT, ["n"]))
    return model


def run_ember(model: onnx.ModelProto, *data: np.ndarray) -> list[np.ndarray]:
    out = ember.compile(model)(*data)
    return list(out) if isinstance(out, (list, tuple)) else [out]


def run_both(model: onnx.ModelProto, *data: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
    import onnxruntime as ort
    got = run_ember(model, *data)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    expected = sess.run(None, {i.name: a for i, a in zip(model.graph.input, data)})
    return got, expected


def targets(shape: tuple, classes: int, ignore: int | None, dtype=np.int64, seed: int = 0) -> np.ndarray:
    """Class indices in [0, C), with about a third replaced by `ignore` when given."""
    rng = np.random.default_rng(seed)
    t = rng.integers(0, classes, shape)
    if ignore is not None:
        t = np.where(rng.random(shape) < 0.3, ignore, t)
    return t.astype(dtype)


GRID = list(itertools.product(["NegativeLogLikelihoodLoss", "SoftmaxCrossEntropyLoss"], ["none", "sum", "mean"],
                              [None, 2, -7, 1000], [False, True]))


@pytest.mark.parametrize("op,reduction,ignore,weighted", GRID)
def test_loss_matches_onnxruntime(op: str, reduction: str, ignore: int | None, weighted: bool):
    rng = np.random.default_rng(1)
    x = rng.uniform(-3, 3, (2, 4, 3, 2)).astype(np.float32)
    t = targets((2, 3, 2), 4, ignore)
    w = rng.uniform(0.5, 2, 4).astype(np.float32) if weighted else None
    attrs = {"reduction": reduction, **({"ignore_index": ignore} if ignore is not None else {})}
    n_out = 2 if op == "SoftmaxCrossEntropyLoss" else 1
    data = [x, t] + ([w] if weighted else [])
    got, expected = run_both(loss_model(op, x, t, w, n_outputs=n_out, **attrs), *data)
    assert len(got) == n_out
    for g, e in zip(got, expected):
        assert g.shape == e.shape and g.dtype == e.dtype, (g.shape, g.dtype, e.shape, e.dtype)
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-6)


def test_int32_targets_and_2d_input():
    x = np.random.default_rng(2).uniform(-3, 3, (5, 3)).astype(np.float32)
    t = targets((5,), 3, ignore=0, dtype=np.int32)
    got, expected = run_both(loss_model("SoftmaxCrossEntropyLoss", x, t, None, ignore_index=0), x, t)
    np.testing.assert_allclose(got[0], expected[0], rtol=1e-5)


def test_mean_with_every_target_ignored_is_nan():
    """The denominator is the (zero) weight of the counted targets, as in the spec: 0 / 0."""
    x = np.zeros((2, 3), np.float32)
    t = np.full((2,), -1, np.int64)
    (got,) = run_ember(loss_model("NegativeLogLikelihoodLoss", x, t, None, ignore_index=-1), x, t)
    assert got.shape == () and np.isnan(got)


@pytest.mark.parametrize("target_shape,weight,message", [
    ((2, 4), None, "target shape"),
    ((2, 3), np.ones(5, np.float32), "weight must be"),
])
def test_shape_errors_name_the_problem(target_shape: tuple, weight: np.ndarray | None, message: str):
    x = np.zeros((2, 4, 3), np.float32)
    t = np.zeros(target_shape, np.int64)
    with pytest.raises(OpError, match=message):
        ember.compile(loss_model("NegativeLogLikelihoodLoss", x, t, weight))


def test_unknown_reduction_is_an_error():
    x = np.zeros((2, 3), np.float32)
    t = np.zeros((2,), np.int64)
    with pytest.raises(OpError, match="reduction must be one of"):
        ember.compile(loss_model("SoftmaxCrossEntropyLoss", x, t, None, reduction="avg"))
