"""`CompiledModel.profile`: per-kernel times of a static model, named by graph nodes, and its argument checks."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import ember


def _model() -> onnx.ModelProto:
    w = np.random.default_rng(0).standard_normal((16, 8)).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"], name="proj"),
             helper.make_node("Softmax", ["h"], ["y"], name="probs", axis=-1)]
    graph = helper.make_graph(nodes, "prof", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 8])],
                              [onnx.numpy_helper.from_array(w, "w")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_profile_names_every_kernel_and_leaves_results_alone():
    model = ember.compile(_model())
    x = np.random.default_rng(1).standard_normal((4, 16)).astype(np.float32)
    before = model(x=x)[0]
    prof = model.profile({"x": x}, runs=4, warmup=1)
    assert [k.index for k in prof.kernels] == list(range(len(model.steps)))
    labels = " ".join(k.nodes for k in prof.kernels)
    assert "proj" in labels and "probs" in labels
    assert all(0 < k.min_s <= k.median_s for k in prof.kernels) and prof.runs == 4
    text = str(prof)
    assert text.splitlines()[0].startswith("median ms") and f"{len(model.steps)} kernels" in text
    np.testing.assert_array_equal(model(x=x)[0], before)


@pytest.mark.parametrize("runs,warmup", [(0, 1), (2, -1), (1.5, 0)])
def test_profile_rejects_bad_counts(runs, warmup):
    model = ember.compile(_model())
    with pytest.raises(ValueError, match="runs must be a positive"):
        model.profile({"x": np.zeros((4, 16), np.float32)}, runs=runs, warmup=warmup)


def test_profile_checks_inputs_like_a_call():
    model = ember.compile(_model())
    with pytest.raises(ValueError, match="x"):
        model.profile({"x": np.zeros((3, 16), np.float32)}, runs=1, warmup=0)
