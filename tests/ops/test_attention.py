"""Attention against onnx's ReferenceEvaluator on small cases the official node tests leave out (mask shorter than
the keys with a KV cache, a fully masked row, softcap with every qk output mode), plus the errors bad inputs give."""
from __future__ import annotations

import ember
import numpy as np
import pytest
from ember.graph.registry import OpError
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator

OPSET = 24
OUTPUTS = ("Y", "present_key", "present_value", "qk_matmul_output")


def model(inputs: dict[str, np.ndarray | None], n_out: int, **attrs):
    """A one-node Attention model; None inputs are omitted (empty names). Outputs take Q's shape as a
    placeholder; check() puts the reference's."""
    names = [k if v is not None else "" for k, v in inputs.items()]
    node = helper.make_node("Attention", names, list(OUTPUTS[:n_out]), **attrs)
    elem = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.bool_): TensorProto.BOOL,
            np.dtype(np.int64): TensorProto.INT64}
    graph = helper.make_graph(
        [node], "attention",
        [helper.make_tensor_value_info(k, elem[v.dtype], v.shape) for k, v in inputs.items() if v is not None],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, inputs["Q"].shape) for o in OUTPUTS[:n_out]])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])


def check(inputs: dict[str, np.ndarray | None], n_out: int = 1, **attrs) -> list[np.ndarray]:
    m = model(inputs, n_out, **attrs)
    feeds = {k: v for k, v in inputs.items() if v is not None}
    expected = ReferenceEvaluator(m).run(None, feeds)
    for out, e in zip(m.graph.output, expected):
        out.CopyFrom(helper.make_tensor_value_info(out.name, TensorProto.FLOAT, e.shape))
    got = ember.compile(m)(*feeds.values())
    got = list(got) if isinstance(got, (list, tuple)) else [got]
    for g, e in zip(got, expected):
        assert g.shape == e.shape
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-6)
    return got


def rand(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.standard_normal(shape).astype(np.float32)


def test_gqa_3d_with_cache_short_bool_mask_and_causal():
    """3-D inputs split into 4 query / 2 kv heads; the mask covers fewer keys than past + new (the rest count
    as masked) and causality is offset by the past length."""
    rng = np.random.default_rng(0)
    mask = rng.random((3, 5)) > 0.3
    check({"Q": rand(rng, 2, 3, 4 * 3), "K": rand(rng, 2, 3, 2 * 3), "V": rand(rng, 2, 3, 2 * 5), "attn_mask": mask,
           "past_key": rand(rng, 2, 2, 4, 3), "past_value": rand(rng, 2, 2, 4, 5)}, n_out=3,
          q_num_heads=4, kv_num_heads=2, is_causal=1)


def test_fully_masked_row_is_zero():
    rng = np.random.default_rng(1)
    mask = np.ones((3, 4), dtype=bool)
    mask[1] = False
    y, qk = check({"Q": rand(rng, 1, 2, 3, 4), "K": rand(rng, 1, 2, 4, 4), "V": rand(rng, 1, 2, 4, 4),
                   "attn_mask": mask}, n_out=4, qk_matmul_output_mode=3)[::3]
    assert not np.isnan(y).any() and (y[:, :, 1] == 0).all() and (qk[:, :, 1] == 0).all()


@pytest.mark.parametrize("mode", [1, 2, 3])
def test_softcap_scale_and_float_mask_qk_modes(mode):
    """Mode 0 is left out: the spec makes it the raw scores, onnx's reference returns them softcapped."""
    rng = np.random.default_rng(2 + mode)
    check({"Q": rand(rng, 2, 2, 3, 4), "K": rand(rng, 2, 2, 5, 4), "V": rand(rng, 2, 2, 5, 3),
           "attn_mask": rand(rng, 2, 1, 3, 5)}, n_out=4, softcap=1.5, scale=0.7, qk_matmul_output_mode=mode)


def test_nonpad_kv_seqlen_causal():
    rng = np.random.default_rng(7)
    check({"Q": rand(rng, 2, 2, 2, 4), "K": rand(rng, 2, 1, 6, 4), "V": rand(rng, 2, 1, 6, 4), "attn_mask": None,
           "past_key": None, "past_value": None, "nonpad_kv_seqlen": np.array([3, 6], dtype=np.int64)},
          is_causal=1)


def test_errors():
    rng = np.random.default_rng(8)
    q, k, v = rand(rng, 1, 3, 6), rand(rng, 1, 3, 4), rand(rng, 1, 3, 4)
    with pytest.raises(OpError, match="q_num_heads"):
        ember.compile(model({"Q": q, "K": k, "V": v}, 1))
    with pytest.raises(OpError, match="multiple of kv heads"):
        ember.compile(model({"Q": q, "K": k, "V": v}, 1, q_num_heads=3, kv_num_heads=2))
    with pytest.raises(OpError, match="together"):
        ember.compile(model({"Q": q, "K": k, "V": v, "attn_mask": None, "past_key": rand(rng, 1, 2, 1, 2)}, 1,
                            q_num_heads=2, kv_num_heads=2))
