"""The emulator's cases on a real GPU (target "cuda", through cupy); skipped where cupy or a device is missing."""
from __future__ import annotations

import numpy as np
import pytest

import ember


def _device_available() -> bool:
    try:
        import cupy
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # no cupy, no driver, no device
        return False


pytestmark = pytest.mark.skipif(not _device_available(), reason="needs cupy and an NVIDIA GPU")


def test_elementwise_with_cupy_and_numpy_arrays():
    import cupy
    n = ember.var("n")
    a = ember.placeholder((n,), name="a")
    out = ember.compute((n,), lambda i: ember.exp(a[i]) * 2, name="out")
    f = ember.build(out, target="cuda")
    x = np.random.default_rng(0).standard_normal(1000).astype(np.float32)
    got_dev = f(cupy.asarray(x))
    assert isinstance(got_dev, cupy.ndarray)
    np.testing.assert_allclose(cupy.asnumpy(got_dev), np.exp(x) * 2, rtol=1e-5)
    got_host = f(x)
    assert isinstance(got_host, np.ndarray)
    np.testing.assert_allclose(got_host, np.exp(x) * 2, rtol=1e-5)


@pytest.mark.parametrize("rows,length", [(3, 1000), (64, 33)])
def test_row_sum(rows, length):
    a = ember.placeholder((rows, length), name="a")
    k = ember.reduce_axis(length, "k")
    out = ember.compute((rows,), lambda i: ember.sum(a[i, k], axis=k), name="out")
    x = np.random.default_rng(1).standard_normal((rows, length)).astype(np.float32)
    np.testing.assert_allclose(ember.build(out, target="cuda")(x), x.sum(1), rtol=1e-4, atol=1e-4)


def test_matmul():
    n, k, m = ember.var("n"), ember.var("k"), ember.var("m")
    a = ember.placeholder((n, k), name="a")
    b = ember.placeholder((k, m), name="b")
    r = ember.reduce_axis(k, "r")
    out = ember.compute((n, m), lambda i, j: ember.sum(a[i, r] * b[r, j], axis=r), name="out")
    f = ember.build(out, target="cuda")
    x = np.random.default_rng(2).standard_normal((70, 33)).astype(np.float32)
    y = np.random.default_rng(3).standard_normal((33, 257)).astype(np.float32)
    np.testing.assert_allclose(f(x, y), x @ y, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("batch", [4, "batch"])
def test_compiled_model_runs_on_device_buffers(batch):
    """ember.compile(model, "cuda"): weights uploaded once, intermediates in the device arena (static shapes) or
    allocated per call (symbolic batch); cupy inputs give cupy outputs, numpy inputs numpy outputs."""
    import cupy
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(1)
    w = numpy_helper.from_array(rng.standard_normal((20, 48)).astype(np.float32) * 0.3, "w")
    b = numpy_helper.from_array(rng.standard_normal(48).astype(np.float32), "b")
    nodes = [helper.make_node("Gemm", ["x", "w", "b"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("Softmax", ["r"], ["y"], axis=1)]
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 20])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 48])], [w, b])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = rng.standard_normal((4, 20)).astype(np.float32)
    want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    compiled = ember.compile(model, target="cuda")
    for _ in range(2):  # the second call reuses the arena and the uploaded weights
        on_dev = compiled.run({"x": cupy.asarray(x)})
        assert isinstance(on_dev["y"], cupy.ndarray)
        np.testing.assert_allclose(cupy.asnumpy(on_dev["y"]), want[0], rtol=1e-4, atol=1e-5)
    got = compiled(x)[0]
    assert isinstance(got, np.ndarray)
    np.testing.assert_allclose(got, want[0], rtol=1e-4, atol=1e-5)


def test_an_array_on_another_gpu_is_refused_before_any_launch():
    import cupy
    if cupy.cuda.runtime.getDeviceCount() < 2:
        pytest.skip("needs two GPUs")
    n = ember.var("n")
    a = ember.placeholder((n,), name="a")
    f = ember.build(ember.compute((n,), lambda i: a[i] + 1, name="out"), target="cuda")
    with cupy.cuda.Device(1):
        elsewhere = cupy.arange(8, dtype=cupy.float32)
    with pytest.raises(ValueError, match="is on GPU 1, but kernels run on GPU 0"):
        f(elsewhere)
