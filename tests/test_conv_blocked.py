"""Channel-blocked convolutions (CPU): the weight laid out once as (m // 32, c, kh, kw, m % 32), vectors along
output channels, each pixel one broadcast of the padded input. Which convolutions take it, and that they match
a direct numpy convolution on sizes where pixel counts, strides, padding and dilation interact."""
from __future__ import annotations

import numpy as np
import onnx
from hypothesis import given, settings, strategies as st
from onnx import TensorProto, helper, numpy_helper

import ember
from ember.frontend.onnx_import import import_checked
from ember.graph.ops.nn_conv import OUTPUT_BLOCK_ATTR
from ember.graph.pipeline import optimize


def conv_model(c: int, m: int, hw: int, k: int, stride: int = 1, pad: int = 0, dilation: int = 1,
               group: int = 1, relu_residual: bool = False, batch: int = 1
               ) -> tuple[onnx.ModelProto, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    w = (rng.standard_normal((m, c // group, k, k)) / np.sqrt(c * k * k)).astype(np.float32)
    b = rng.standard_normal(m).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["y" if not relu_residual else "c"], kernel_shape=[k, k],
                              strides=[stride, stride], pads=[pad] * 4, dilations=[dilation] * 2, group=group)]
    if relu_residual:  # the convolution's result read again after it, as a residual block does
        nodes += [helper.make_node("Relu", ["c"], ["r"]), helper.make_node("Add", ["r", "c"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, c, hw, hw])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return onnx.shape_inference.infer_shapes(model, strict_mode=True), w, b


def numpy_conv(x, w, b, stride, pad, dilation):
    k = w.shape[-1]
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    span = dilation * (k - 1) + 1
    o = (x.shape[-1] + 2 * pad - span) // stride + 1
    out = np.zeros((x.shape[0], w.shape[0], o, o))
    for i in range(k):
        for j in range(k):
            y0, x0 = i * dilation, j * dilation
            patch = xp[:, :, y0:y0 + stride * o:stride, x0:x0 + stride * o:stride]
            out += np.einsum("nchw,mc->nmhw", patch, w[:, :, i, j])
    return out + b.reshape(1, -1, 1, 1)


def blocked(model: onnx.ModelProto, target: str = "llvm") -> bool:
    g = optimize(import_checked(model), target)
    return any(n.attrs.get(OUTPUT_BLOCK_ATTR) for n in g.nodes if n.op == "Conv")


@settings(max_examples=10, deadline=None)
@given(c=st.sampled_from([64, 72]), m=st.sampled_from([32, 96]), hw=st.sampled_from([1, 5, 7, 12]),
       k=st.sampled_from([1, 3, 5]), stride=st.sampled_from([1, 2, 3]), pad=st.sampled_from([0, 1, 2]),
       dilation=st.sampled_from([1, 2]), residual=st.booleans(), batch=st.sampled_from([1, 2]))
def test_channel_blocked_convolutions_match_numpy(c, m, hw, k, stride, pad, dilation, residual, batch):
    if hw + 2 * pad < dilation * (k - 1) + 1:
        return
    model, w, b = conv_model(c, m, hw, k, stride, pad, dilation, relu_residual=residual, batch=batch)
    x = np.random.default_rng(1).standard_normal((batch, c, hw, hw)).astype(np.float32)
    want = numpy_conv(x, w, b, stride, pad, dilation)
    if residual:
        want = np.maximum(want, 0) + want
    assert blocked(model) == (k > 1 or want.shape[-1] ** 2 <= 196 or c >= 2 * m)
    np.testing.assert_allclose(ember.compile(model)(x)[0], want, rtol=1e-4, atol=1e-4)


def test_which_convolutions_are_blocked():
    assert blocked(conv_model(64, 64, 14, 3)[0])
    assert blocked(conv_model(256, 512, 7, 1)[0])  # 1x1 over 49 pixels
    assert not blocked(conv_model(64, 64, 28, 1)[0])  # 1x1 over 784 pixels stays a matmul over pixels
    assert blocked(conv_model(256, 64, 56, 1)[0])  # unless it reduces the channels 2x or more
    assert not blocked(conv_model(32, 64, 14, 3)[0])  # too few input channels
    assert not blocked(conv_model(64, 48, 14, 3)[0])  # output channels not in whole blocks of 32
    assert not blocked(conv_model(64, 64, 14, 3, group=2)[0])
    assert not blocked(conv_model(64, 64, 14, 3)[0], target="cuda")  # the layout is the CPU kernel's


def test_blocked_weight_layout():
    model, w, _ = conv_model(64, 64, 7, 3)
    g = optimize(import_checked(model), "llvm")
    conv = next(n for n in g.nodes if n.op == "Conv")
    wb = conv.inputs[1].data
    assert wb.shape == (2, 64, 3, 3, 32)
    np.testing.assert_array_equal(wb[1, 5, 2, 0, 7], w[32 + 7, 5, 2, 0])
