"""The elementwise op family beyond the ONNX node tests: broadcasting and dtypes of the binary ops against
onnxruntime, numpy folders against the compiled lowering, legacy (pre-opset-7) broadcasting, and clear errors."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

import ember
from ember.graph.registry import OpError

NP_TO_ONNX = {np.dtype(k): v for k, v in (("float32", TensorProto.FLOAT), ("float64", TensorProto.DOUBLE),
                                          ("float16", TensorProto.FLOAT16), ("int8", TensorProto.INT8),
                                          ("int16", TensorProto.INT16), ("int32", TensorProto.INT32),
                                          ("int64", TensorProto.INT64), ("uint8", TensorProto.UINT8),
                                          ("bool", TensorProto.BOOL))}


def one_node_model(op: str, inputs: list[np.ndarray], out_dtype, opset: int = 21, constant: bool = False,
                   n_outputs: int = 1, **attrs) -> onnx.ModelProto:  # out_dtype: one dtype, or one per output
    """A model of one `op` node; with `constant`, the inputs are initializers (so ember folds the node). The
    declared output shape is the inputs' broadcast shape (the first input's where they do not broadcast)."""
    names = [f"x{k}" for k in range(len(inputs))]
    try:
        out_shape = np.broadcast_shapes(*(a.shape for a in inputs))
    except ValueError:
        out_shape = inputs[0].shape
    outs = [f"y{k}" for k in range(n_outputs)]
    node = helper.make_node(op, names, outs, name="node0", **attrs)
    vis = [helper.make_tensor_value_info(n, NP_TO_ONNX[a.dtype], a.shape) for n, a in zip(names, inputs)]
    graph = helper.make_graph(
        [node], "g", [] if constant else vis,
        [helper.make_tensor_value_info(o, NP_TO_ONNX[np.dtype(t)], out_shape)
         for o, t in zip(outs, out_dtype if isinstance(out_dtype, (list, tuple)) else [out_dtype] * n_outputs)],
        initializer=[numpy_helper.from_array(a, n) for n, a in zip(names, inputs)] if constant else [])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def run_ember(model: onnx.ModelProto, inputs: list[np.ndarray]) -> list[np.ndarray]:
    compiled = ember.compile(model)
    return list(compiled(*inputs) if compiled.inputs else compiled())


def run_ort(model: onnx.ModelProto, inputs: list[np.ndarray]) -> list[np.ndarray]:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {f"x{k}": a for k, a in enumerate(inputs)})


def values(rng: np.random.Generator, shape: tuple, dtype: str, nonzero: bool = False) -> np.ndarray:
    if dtype == "bool":
        return np.asarray(rng.random(shape) < 0.5)
    if np.dtype(dtype).kind == "f":
        a = rng.uniform(-4, 4, shape).astype(dtype)
    else:
        info = np.iinfo(dtype)
        a = rng.integers(max(info.min, -50), min(info.max, 50), shape, endpoint=True).astype(dtype)
    if nonzero:
        a[a == 0] = 3
    return np.asarray(a)


@st.composite
def broadcast_pair(draw: st.DrawFn) -> tuple[tuple, tuple]:
    """Two shapes that broadcast: a base shape, each side dropping leading dims or setting dims to 1."""
    base = draw(st.lists(st.integers(1, 4), min_size=0, max_size=4))

    def side() -> tuple:
        dims = [1 if draw(st.booleans()) else d for d in base]
        return tuple(dims[draw(st.integers(0, len(dims))):])
    return side(), side()


# (op, dtypes, output dtype or None for the input's, divisor must be nonzero)
BINARY = [
    ("Add", ["float32", "int8", "uint8", "int64"], None, False),
    ("Sub", ["float64", "int16", "uint8"], None, False),
    ("Mul", ["float16", "int32"], None, False),
    ("Div", ["float32", "int32", "int64", "uint8"], None, True),
    ("Mod", ["int32", "int8", "int64"], None, True),
    ("Pow", ["float32", "int64"], None, False),
    ("Equal", ["float32", "int32", "bool"], "bool", False),
    ("Less", ["float64", "int8"], "bool", False),
    ("GreaterOrEqual", ["float32", "int64"], "bool", False),
    ("BitwiseXor", ["int32", "uint8"], None, False),
    ("And", ["bool"], "bool", False),
]


@pytest.mark.parametrize("op,dtypes,out,nonzero", BINARY, ids=[b[0] for b in BINARY])
@settings(max_examples=4)
@given(shapes=broadcast_pair(), pick=st.integers(0, 10), seed=st.integers(0, 2**16))
def test_binary_ops_broadcast_like_onnxruntime(op, dtypes, out, nonzero, shapes, pick, seed):
    dtype = dtypes[pick % len(dtypes)]
    rng = np.random.default_rng(seed)
    a = values(rng, shapes[0], dtype)
    b = values(rng, shapes[1], dtype, nonzero)
    if op == "Pow":
        b = np.asarray(np.abs(b) % 4) if b.dtype.kind == "i" else b
        a = np.asarray(np.abs(a)) if a.dtype.kind == "f" else a
    model = one_node_model(op, [a, b], out or dtype)
    got, = run_ember(model, [a, b])
    want, = run_ort(model, [a, b])
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-3 if dtype == "float16" else 1e-6)


@pytest.mark.parametrize("op", ["Max", "Min", "Sum", "Mean"])
def test_variadic_ops_broadcast_three_inputs(op):
    rng = np.random.default_rng(0)
    ins = [values(rng, s, "float32") for s in ((2, 1, 4), (3, 1), (4,))]
    model = one_node_model(op, ins, "float32")
    np.testing.assert_allclose(run_ember(model, ins)[0], run_ort(model, ins)[0], rtol=1e-6)


# (op, inputs, output dtype, attributes): every op with a numpy folder, at values where rounding and signs matter
with np.errstate(all="ignore"):
    _i32 = np.array([-7, -1, 0, 5, 2**31 - 1, -2**31], np.int32)
    _d32 = np.array([2, -1, 3, -2, -1, -1], np.int32)
    _f = np.array([-2.5, -0.0, 1e-8, 3.75, np.inf, np.nan], np.float32)
    _g = np.array([1.5, 0.0, -3.0, 3.0, 2.0, 1.0], np.float32)
FOLDED = [
    ("Add", [_i32, _d32], "int32", {}), ("Sub", [_f, _g], "float32", {}), ("Mul", [_i32, _d32], "int32", {}),
    ("Div", [_i32, _d32], "int32", {}), ("Div", [_i32, np.zeros(6, np.int32)], "int32", {}),
    ("Div", [_f, _g], "float32", {}), ("Mod", [_i32, _d32], "int32", {}),
    ("Mod", [_i32, _d32], "int32", {"fmod": 1}), ("Mod", [_f, _g], "float32", {"fmod": 1}),
    ("Mod", [_f, _g], "float32", {}), ("Equal", [_f, _g], "bool", {}), ("Less", [_i32, _d32], "bool", {}),
    ("Greater", [_f, _g], "bool", {}), ("Max", [_f, _g], "float32", {}), ("Min", [_i32, _d32], "int32", {}),
    ("Neg", [_i32], "int32", {}), ("Abs", [_f], "float32", {}), ("Not", [_f > 0], "bool", {}),
    ("Identity", [_i32], "int32", {}), ("Where", [_f > 0, _f, _g], "float32", {}),
    ("Cast", [_f[:4]], "int32", {"to": TensorProto.INT32}), ("Cast", [_i32], "float16", {"to": TensorProto.FLOAT16}),
    ("Cast", [_f], "bool", {"to": TensorProto.BOOL}), ("Cast", [_i32], "uint8", {"to": TensorProto.UINT8}),
]


@pytest.mark.parametrize("op,inputs,out,attrs", FOLDED, ids=[f"{c[0]}-{k}" for k, c in enumerate(FOLDED)])
def test_folders_agree_exactly_with_kernels(op, inputs, out, attrs):
    """A folder runs when the inputs are constants; it must give bit for bit what the kernel computes."""
    folded, = run_ember(one_node_model(op, inputs, out, constant=True, **attrs), [])
    kernel, = run_ember(one_node_model(op, inputs, out, **attrs), inputs)
    assert folded.dtype == kernel.dtype == np.dtype(out)
    np.testing.assert_array_equal(folded, kernel)
    if op == "Mod" and inputs[0].dtype.kind == "f":
        np.testing.assert_array_equal(np.signbit(folded), np.signbit(kernel))


def test_integer_division_truncates_toward_zero():
    a, b = np.array([-7, 7, -7, 7], np.int64), np.array([2, 2, -2, -2], np.int64)
    got, = run_ember(one_node_model("Div", [a, b], "int64"), [a, b])
    np.testing.assert_array_equal(got, [-3, 3, 3, -3])


def test_legacy_broadcast_aligns_b_at_axis():
    a = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    b = np.array([10, 20, 30], np.float32)
    model = one_node_model("Add", [a, b], "float32", opset=6, broadcast=1, axis=1)
    got, = run_ember(model, [a, b])
    np.testing.assert_array_equal(got, a + b[:, None])


def test_old_clip_attributes_and_new_integer_clip():
    x = np.array([-5.0, 0.5, 9.0], np.float32)
    got, = run_ember(one_node_model("Clip", [x], "float32", opset=6, min=-1.0, max=1.0), [x])
    np.testing.assert_array_equal(got, [-1.0, 0.5, 1.0])
    xi, lo, hi = np.array([-5, 3, 9], np.int32), np.array(0, np.int32), np.array(4, np.int32)
    got, = run_ember(one_node_model("Clip", [xi, lo, hi], "int32", opset=13), [xi, lo, hi])
    np.testing.assert_array_equal(got, [0, 3, 4])


def test_dropout_is_identity_with_an_all_true_mask():
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    y, mask = run_ember(one_node_model("Dropout", [x], ["float32", "bool"], n_outputs=2), [x])
    np.testing.assert_array_equal(y, x)
    assert mask.dtype == np.bool_ and mask.all()


ERRORS = [
    ("Gelu", [np.zeros(2, np.float32)], "float32", {"approximate": "fast"}, "approximate"),
    ("BitShift", [np.zeros(2, np.uint8)] * 2, "uint8", {"direction": "UP"}, "direction"),
    ("Mod", [np.zeros(2, np.int32)] * 2, "int32", {"fmod": 2}, "fmod"),
    ("Add", [np.zeros((2, 3), np.float32), np.zeros((4,), np.float32)], "float32", {}, "cannot be broadcast"),
    ("Cast", [np.zeros(2, np.float32)], "float32", {"to": TensorProto.BFLOAT16}, "BFLOAT16"),
]


@pytest.mark.parametrize("op,inputs,out,attrs,message", ERRORS, ids=[e[-1] for e in ERRORS])
def test_bad_nodes_fail_with_the_node_name(op, inputs, out, attrs, message):
    with pytest.raises(OpError, match=rf"node0.*{message}|{message}.*node0"):
        ember.compile(one_node_model(op, inputs, out, **attrs))


def test_training_dropout_is_rejected_clearly():
    x, ratio, training = np.zeros(3, np.float32), np.array(0.5, np.float32), np.array(True)
    with pytest.raises(OpError, match="training-mode dropout"):
        ember.compile(_dropout_training_model(x, ratio, training))


def _dropout_training_model(x, ratio, training) -> onnx.ModelProto:
    node = helper.make_node("Dropout", ["x", "r", "t"], ["y"], name="node0")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x.shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, x.shape)],
                              initializer=[numpy_helper.from_array(ratio, "r"), numpy_helper.from_array(training, "t")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
