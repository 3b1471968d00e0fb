"""Quantization ops against onnx's reference evaluator on shapes and granularities the official node tests do
not cover (per-axis, blocked with a short last block, per-row/per-column products, per-channel conv), plus the
errors bad parameters give."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

import ember
from ember.graph.registry import OpError

OPSET = 21
ELEM = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.float16): TensorProto.FLOAT16,
        np.dtype(np.uint8): TensorProto.UINT8, np.dtype(np.int8): TensorProto.INT8,
        np.dtype(np.int16): TensorProto.INT16, np.dtype(np.int32): TensorProto.INT32}


def run(op: str, x: np.ndarray, consts: dict[str, "np.ndarray | None"], n_out: int = 1,
        out_types: "list[tuple[int, tuple]] | None" = None, **attrs):
    """(ember's outputs, the reference's) for a one-node model: `x` is the graph input, `consts` initializers
    in input order (None for an omitted optional input). Given `out_types` ((type, shape) per output), the
    reference is not run and None comes back in its place."""
    names = ["x"] + [k if v is not None else "" for k, v in consts.items()]
    outs = [f"y{k}" for k in range(n_out)]
    inits = [numpy_helper.from_array(v, k) for k, v in consts.items() if v is not None]
    proto = helper.make_model(helper.make_graph(
        [helper.make_node(op, names, outs, **attrs)], op.lower(),
        [helper.make_tensor_value_info("x", ELEM[x.dtype], x.shape)],
        [helper.make_tensor_value_info(o, TensorProto.UNDEFINED, None) for o in outs], inits),
        opset_imports=[helper.make_opsetid("", OPSET)])
    expected = None if out_types else ReferenceEvaluator(proto).run(None, {"x": x})
    for k, out in enumerate(proto.graph.output):
        elem, shape = out_types[k] if out_types else (ELEM[expected[k].dtype], expected[k].shape)
        out.CopyFrom(helper.make_tensor_value_info(out.name, elem, shape))
    got = ember.compile(proto)(x)
    return (list(got) if isinstance(got, (list, tuple)) else [got]), expected


def check(op: str, x: np.ndarray, consts: dict, n_out: int = 1, **attrs) -> None:
    got, expected = run(op, x, consts, n_out, **attrs)
    for g, e in zip(got, expected):
        assert g.shape == e.shape and g.dtype == e.dtype
        np.testing.assert_array_equal(g, e)


rng = np.random.default_rng(0)


@pytest.mark.parametrize("zp_dtype", [np.uint8, np.int8, np.int16])
def test_quantize_per_axis(zp_dtype):
    x = (rng.standard_normal((2, 3, 4)) * 300).astype(np.float32)
    x[0, 0, :2] = [2.5, -3.5]  # ties round to even
    scale = np.array([1.0, 0.5, 2.0], np.float32)
    check("QuantizeLinear", x, {"s": scale, "z": np.array([1, 2, 3], zp_dtype)}, axis=1)


def test_quantize_blocked_short_last_block():
    x = (rng.standard_normal((3, 5)) * 40).astype(np.float32)
    scale = rng.uniform(0.1, 1, (3, 2)).astype(np.float32)
    check("QuantizeLinear", x, {"s": scale, "z": rng.integers(-5, 5, (3, 2)).astype(np.int8)}, axis=-1,
          block_size=3)


def test_quantize_float16_and_output_dtype():
    x = (rng.standard_normal((4, 6)) * 100).astype(np.float16)
    check("QuantizeLinear", x, {"s": np.float16(0.75)}, output_dtype=TensorProto.INT8)
    check("QuantizeLinear", x, {"s": np.float16(0.75)})  # default uint8 saturates negatives to 0


def test_quantize_saturates_infinities():
    """Out of int32 range quotients saturate (the reference's int32 conversion of them is undefined)."""
    x = np.array([np.inf, -np.inf, 1e30, -1e30, 0.0], np.float32)
    got, _ = run("QuantizeLinear", x, {"s": np.float32(0.01), "z": np.int16(-7)})
    np.testing.assert_array_equal(got[0], np.array([32767, -32768, 32767, -32768, -7], np.int16))


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int16, np.int32])
def test_dequantize(dtype):
    info = np.iinfo(dtype)
    x = rng.integers(max(info.min, -1000), min(info.max, 1000), (2, 3, 4)).astype(dtype)
    zp = None if dtype == np.int32 else np.array([1, 2, 3, 4], dtype)
    check("DequantizeLinear", x, {"s": np.array([0.5, 0.25, 2, 3], np.float32), "z": zp}, axis=2)


def test_dequantize_blocked_float16_scale():
    x = rng.integers(-128, 127, (4, 6)).astype(np.int8)
    check("DequantizeLinear", x, {"s": rng.uniform(0.1, 1, (2, 6)).astype(np.float16)}, axis=0, block_size=2)


@pytest.mark.parametrize("shape,shift", [((3, 4), 0.0), ((2, 3, 4), 5.0), ((5,), -5.0), ((2, 2), None)])
def test_dynamic_quantize(shape, shift):
    x = np.zeros(shape, np.float32) if shift is None else rng.standard_normal(shape).astype(np.float32) + shift
    check("DynamicQuantizeLinear", x, {}, n_out=3)


def qmatmul(a: np.ndarray, a_s, a_z, b, b_s, b_z, y_s, y_z) -> None:
    check("QLinearMatMul", a, {"as": a_s, "az": a_z, "b": b, "bs": b_s, "bz": b_z, "ys": y_s, "yz": y_z})


def test_qlinear_matmul_batched_per_row_and_column():
    a = rng.integers(0, 255, (2, 3, 5)).astype(np.uint8)
    b = rng.integers(-128, 127, (5, 4)).astype(np.int8)
    qmatmul(a, rng.uniform(0.01, 0.1, (2, 3, 1)).astype(np.float32), rng.integers(0, 255, (2, 3, 1)).astype(np.uint8),
            b, rng.uniform(0.01, 0.1, (1, 4)).astype(np.float32), np.array([[1, -2, 3, 0]], np.int8),
            np.float32(0.05), np.uint8(128))


def test_qlinear_matmul_1d_per_row():
    """A 1-D scale for A is per row (the reference broadcasts it like numpy, so this compares with numpy)."""
    a = rng.integers(-128, 127, (3, 5)).astype(np.int8)
    b = rng.integers(-128, 127, (5, 3)).astype(np.int8)
    a_s, a_z = np.array([0.1, 0.2, 0.3], np.float32), np.array([1, 2, 3], np.int8)
    got, _ = run("QLinearMatMul", a, {"as": a_s, "az": a_z, "b": b, "bs": np.float32(0.05), "bz": np.int8(0),
                                      "ys": np.float32(0.5), "yz": np.int8(-1)},
                 out_types=[(TensorProto.INT8, (3, 3))])
    acc = (a.astype(np.int64) - a_z[:, None]) @ b.astype(np.int64)
    want = np.clip(np.rint(acc * (a_s[:, None].astype(np.float64) * np.float32(0.05) / 0.5)) - 1, -128, 127)
    np.testing.assert_array_equal(got[0], want.astype(np.int8))


@pytest.mark.parametrize("bias", [False, True])
def test_qlinear_conv_per_channel(bias):
    x = rng.integers(0, 255, (1, 4, 5, 5)).astype(np.uint8)
    w = rng.integers(-128, 127, (6, 2, 3, 3)).astype(np.int8)
    consts = {"xs": np.float32(0.02), "xz": np.uint8(120), "w": w,
              "ws": rng.uniform(0.01, 0.05, 6).astype(np.float32), "wz": np.zeros(6, np.int8),
              "ys": np.float32(0.3), "yz": np.uint8(100),
              "b": rng.integers(-500, 500, 6).astype(np.int32) if bias else None}
    check("QLinearConv", x, consts, group=2, pads=[1, 0, 1, 2], strides=[2, 1])


@pytest.mark.parametrize("op,x,consts,attrs,message", [
    ("QuantizeLinear", np.zeros((2, 3), np.float32), {"s": np.ones(2, np.float32)}, {},
     r"scale shape \(2,\) must be a scalar or \(3,\)"),
    ("QuantizeLinear", np.zeros((2, 4), np.float32), {"s": np.ones((2, 3), np.float32)},
     {"block_size": 2}, r"must be \(2, 2\) for blocks of 2"),
    ("QuantizeLinear", np.zeros(3, np.float32), {"s": np.float32(1), "z": np.int8(0)},
     {"output_dtype": TensorProto.UINT8}, "output_dtype uint8 differs from the zero point's type int8"),
    ("QuantizeLinear", np.zeros(3, np.float32), {"s": np.float32(1)}, {"output_dtype": TensorProto.INT32},
     "output type int32 is not supported"),
    ("DequantizeLinear", np.zeros(3, np.int8), {"s": np.float32(1), "z": np.uint8(0)}, {},
     "zero point type uint8 differs from the input's int8"),
])
def test_errors(op, x, consts, attrs, message):
    names = ["x"] + list(consts)
    proto = helper.make_model(helper.make_graph(
        [helper.make_node(op, names, ["y"], **attrs)], "g",
        [helper.make_tensor_value_info("x", ELEM[x.dtype], x.shape)],
        [helper.make_tensor_value_info("y", TensorProto.UINT8, x.shape)],
        [numpy_helper.from_array(v, k) for k, v in consts.items()]), opset_imports=[helper.make_opsetid("", OPSET)])
    with pytest.raises(OpError, match=message):
        ember.compile(proto)
