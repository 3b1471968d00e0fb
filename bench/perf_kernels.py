"""Kernel cases for `bench.perf`: one- or few-node ONNX models, each with seeded inputs, the work it does
(floating-point operations or bytes moved, so the table can print GFLOP/s or GB/s) and, where numpy has a
direct equivalent, a numpy callable to time beside it."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17  # LayerNormalization needs 17; onnxruntime runs every op used here at this opset


@dataclass
class Case:
    """One benchmarked kernel; `work` is in FLOP when `unit` is GFLOP/s and in bytes when it is GB/s."""

    name: str
    shape: str
    model: onnx.ModelProto
    feeds: dict[str, np.ndarray]
    work: float
    unit: str
    numpy: Callable[[], object] | None = None
    quick: bool = False


def onnx_model(nodes: list[onnx.NodeProto], inputs: dict[str, tuple[int, ...]], outputs: list[str],
               inits: dict[str, np.ndarray] | None = None, name: str = "bench") -> onnx.ModelProto:
    """A float32 model whose output shapes come from onnx's shape inference."""
    graph = helper.make_graph(
        nodes, name, [helper.make_tensor_value_info(k, TensorProto.FLOAT, list(s)) for k, s in inputs.items()],
        [helper.make_tensor_value_info(k, TensorProto.FLOAT, None) for k in outputs],
        [numpy_helper.from_array(v, k) for k, v in (inits or {}).items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8  # the oldest IR with opset 17, so any onnxruntime in range loads it
    return onnx.shape_inference.infer_shapes(model, strict_mode=True)


def rand(rng: np.random.Generator, *shape: int, scale: float = 1.0) -> np.ndarray:
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def matmul(m: int, k: int, n: int, quick: bool = False) -> Case:
    rng = np.random.default_rng(0)
    a, b = rand(rng, m, k), rand(rng, k, n)
    model = onnx_model([helper.make_node("MatMul", ["a", "b"], ["y"])], {"a": (m, k), "b": (k, n)}, ["y"])
    return Case("MatMul", f"{m}x{k}x{n}", model, {"a": a, "b": b}, 2.0 * m * k * n, "GFLOP/s",
                lambda: a @ b, quick)


def gemm_relu(m: int, k: int, n: int, quick: bool = False) -> Case:
    """A fully connected layer as exported by PyTorch: weights [n, k] with transB=1, bias, then Relu."""
    rng = np.random.default_rng(1)
    a, w, bias = rand(rng, m, k), rand(rng, n, k, scale=k ** -0.5), rand(rng, n)
    nodes = [helper.make_node("Gemm", ["a", "w", "bias"], ["t"], transB=1), helper.make_node("Relu", ["t"], ["y"])]
    model = onnx_model(nodes, {"a": (m, k)}, ["y"], {"w": w, "bias": bias})
    return Case("Gemm+bias+Relu", f"{m}x{k}x{n}", model, {"a": a}, 2.0 * m * k * n, "GFLOP/s",
                lambda: np.maximum(a @ w.T + bias, 0), quick)


def conv(c: int, hw: int, k: int, stride: int = 1, group: int = 1, quick: bool = False) -> Case:
    """Conv with bias, C channels in and out, 'same' padding; group=C makes it depthwise."""
    rng = np.random.default_rng(2)
    x = rand(rng, 1, c, hw, hw)
    w, bias = rand(rng, c, c // group, k, k, scale=(c // group * k * k) ** -0.5), rand(rng, c)
    node = helper.make_node("Conv", ["x", "w", "bias"], ["y"], kernel_shape=[k, k], strides=[stride, stride],
                            pads=[k // 2] * 4, group=group)
    out = (hw + 2 * (k // 2) - k) // stride + 1
    label = "DepthwiseConv" if group > 1 else "Conv"
    model = onnx_model([node], {"x": x.shape}, ["y"], {"w": w, "bias": bias})
    return Case(f"{label} {k}x{k}/{stride}", f"1x{c}x{hw}x{hw}", model, {"x": x},
                2.0 * c * (c // group) * k * k * out * out, "GFLOP/s", None, quick)


def maxpool(c: int, hw: int, quick: bool = False) -> Case:
    x = rand(np.random.default_rng(3), 1, c, hw, hw)
    node = helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    out = (hw - 1) // 2 + 1
    return Case("MaxPool 3x3/2", f"1x{c}x{hw}x{hw}", onnx_model([node], {"x": x.shape}, ["y"]), {"x": x},
                4.0 * c * (hw * hw + out * out), "GB/s", None, quick)


def global_avgpool(c: int, hw: int, quick: bool = False) -> Case:
    x = rand(np.random.default_rng(4), 1, c, hw, hw)
    node = helper.make_node("GlobalAveragePool", ["x"], ["y"])
    return Case("GlobalAveragePool", f"1x{c}x{hw}x{hw}", onnx_model([node], {"x": x.shape}, ["y"]), {"x": x},
                4.0 * c * (hw * hw + 1), "GB/s", lambda: x.mean(axis=(2, 3), keepdims=True), quick)


def softmax(shape: tuple[int, ...], quick: bool = False) -> Case:
    x = rand(np.random.default_rng(5), *shape)

    def ref() -> np.ndarray:
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)
    node = helper.make_node("Softmax", ["x"], ["y"], axis=-1)
    return Case("Softmax", "x".join(map(str, shape)), onnx_model([node], {"x": shape}, ["y"]), {"x": x},
                8.0 * x.size, "GB/s", ref, quick)


def layernorm(rows: int, hidden: int, quick: bool = False) -> Case:
    rng = np.random.default_rng(6)
    x, scale, bias = rand(rng, rows, hidden), rand(rng, hidden), rand(rng, hidden)

    def ref() -> np.ndarray:
        mean = x.mean(axis=-1, keepdims=True)
        return (x - mean) / np.sqrt(x.var(axis=-1, keepdims=True) + 1e-5) * scale + bias
    node = helper.make_node("LayerNormalization", ["x", "scale", "bias"], ["y"], axis=-1, epsilon=1e-5)
    model = onnx_model([node], {"x": x.shape}, ["y"], {"scale": scale, "bias": bias})
    return Case("LayerNormalization", f"{rows}x{hidden}", model, {"x": x}, 8.0 * x.size, "GB/s", ref, quick)


def elementwise_chain(n: int, quick: bool = False) -> Case:
    """tanh(x*y + z) * x: four ops that a fusing compiler runs as one pass over memory."""
    rng = np.random.default_rng(7)
    x, y, z = rand(rng, n), rand(rng, n), rand(rng, n)
    nodes = [helper.make_node("Mul", ["x", "y"], ["t0"]), helper.make_node("Add", ["t0", "z"], ["t1"]),
             helper.make_node("Tanh", ["t1"], ["t2"]), helper.make_node("Mul", ["t2", "x"], ["out"])]
    model = onnx_model(nodes, {"x": (n,), "y": (n,), "z": (n,)}, ["out"])
    return Case("Mul,Add,Tanh,Mul", f"{n // (1 << 20)}M", model, {"x": x, "y": y, "z": z}, 16.0 * n, "GB/s",
                lambda: np.tanh(x * y + z) * x, quick)


def kernel_cases() -> list[Case]:
    """The kernel list of issue 5; cases marked quick form the `--quick` subset."""
    cases = [matmul(256, 256, 256, quick=True), matmul(1024, 1024, 1024, quick=True), matmul(2048, 2048, 2048),
             matmul(1, 768, 3072, quick=True), matmul(128, 768, 768), matmul(128, 3072, 768, quick=True),
             gemm_relu(128, 768, 3072)]
    for c, hw in ((64, 56), (128, 28), (256, 14), (512, 7)):
        cases += [conv(c, hw, 3, quick=c == 64), conv(c, hw, 1, quick=c == 256)]
    cases += [conv(64, 56, 3, 2), conv(128, 28, 3, 2, quick=True), conv(256, 14, 3, 2), conv(256, 14, 1, 2)]
    cases += [conv(c, hw, 3, stride, group=c, quick=c == 144)
              for c, hw, stride in ((32, 112, 1), (144, 56, 1), (144, 56, 2), (384, 14, 1))]
    cases += [maxpool(64, 112, quick=True), global_avgpool(2048, 7), softmax((1, 12, 128, 128), quick=True),
              layernorm(128, 768, quick=True), elementwise_chain(4 << 20, quick=True)]
    return cases
