"""Cases for `bench.cuda`: small ONNX models compiled by ember for the cuda target, each with seeded inputs, the
work it does (FLOP, or the bytes it must move at least), the reference it is timed against and the issue's aim.

A reference is built for an array module (`cupy` on a GPU, `numpy` under the emulator): `reference(xp)` returns a
callable on the case's inputs as that module's arrays. Convolution and the whole model have no reference here:
onnxruntime (its CUDA execution provider on a GPU) is their peer, and bench.cuda builds that session itself."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .perf_kernels import OPSET, elementwise_chain, layernorm, softmax
from .perf_models import Builder, bert_style, resnet_style

LN_EPSILON = 1e-5  # bench.perf_kernels.layernorm's epsilon


@dataclass(frozen=True)
class Aim:
    """A goal from the issue: `ratio` = ember's speed / the reference's, `peak` = share of memory bandwidth."""

    kind: str
    value: float

    def __str__(self) -> str:
        return f">= {self.value:.2f}x ref" if self.kind == "ratio" else f">= {self.value:.0%} peak"


@dataclass
class GpuCase:
    """One benchmarked kernel or model; `work` is FLOP when `unit` is TFLOP/s and bytes when it is GB/s."""

    name: str
    shape: str
    dtype: str
    model: onnx.ModelProto
    feeds: dict[str, np.ndarray]
    work: float
    unit: str
    reference: "Callable[[Any], Callable[..., Any]] | None"
    reference_name: str
    aim: "Aim | None" = None

    @property
    def label(self) -> str:
        return f"{self.name} {self.shape} {self.dtype}"


def typed_model(nodes: list[onnx.NodeProto], inputs: dict[str, tuple[int, ...]], outputs: list[str],
                dtype: str, inits: "dict[str, np.ndarray] | None" = None, name: str = "bench_cuda") -> onnx.ModelProto:
    """A model whose inputs and outputs are all `dtype` (float32 or float16), output shapes inferred by onnx."""
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    graph = helper.make_graph(
        nodes, name, [helper.make_tensor_value_info(k, elem, list(s)) for k, s in inputs.items()],
        [helper.make_tensor_value_info(k, elem, None) for k in outputs],
        [numpy_helper.from_array(v, k) for k, v in (inits or {}).items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    return onnx.shape_inference.infer_shapes(model, strict_mode=True)


def matmul(m: int, k: int, n: int, dtype: str, aim: "Aim | None" = None) -> GpuCase:
    """a @ b against cupy.matmul, which is cuBLAS (float16 operands, float32 accumulation, on tensor cores)."""
    rng = np.random.default_rng(30)
    a = rng.standard_normal((m, k)).astype(dtype)
    b = (rng.standard_normal((k, n)) * k ** -0.5).astype(dtype)
    model = typed_model([helper.make_node("MatMul", ["a", "b"], ["y"])], {"a": (m, k), "b": (k, n)}, ["y"], dtype)

    def reference(xp: Any) -> Callable[..., Any]:
        if xp is np and dtype == "float16":  # numpy has no float16 BLAS: sum in float32, round once, as cuBLAS
            return lambda x, y: np.matmul(x.astype(np.float32), y.astype(np.float32)).astype(np.float16)
        return xp.matmul
    return GpuCase("MatMul", f"{m}x{k}x{n}", dtype, model, {"a": a, "b": b}, 2.0 * m * k * n, "TFLOP/s",
                   reference, "cupy.matmul (cuBLAS)", aim)


def chain(n: int, aim: "Aim | None" = None) -> GpuCase:
    """tanh(x*y + z) * x (Mul, Add, Tanh, Mul) against one cupy ElementwiseKernel: the same single pass."""
    base = elementwise_chain(n)

    def reference(xp: Any) -> Callable[..., Any]:
        if hasattr(xp, "ElementwiseKernel"):
            return xp.ElementwiseKernel("float32 x, float32 y, float32 z", "float32 out",
                                        "out = tanhf(x * y + z) * x", "ember_bench_chain")
        return lambda x, y, z: xp.tanh(x * y + z) * x
    label = f"{n >> 20}M" if n % (1 << 20) == 0 else str(n)
    return GpuCase("Mul,Add,Tanh,Mul", label, "float32", base.model, base.feeds, base.work, "GB/s", reference,
                   "cupy ElementwiseKernel", aim)


def softmax_rows(rows: int, length: int, aim: "Aim | None" = None) -> GpuCase:
    """Softmax over the last axis against cupy's max / exp / sum / divide (several passes over memory)."""
    base = softmax((rows, length))

    def reference(xp: Any) -> Callable[..., Any]:
        def run(x: Any) -> Any:
            e = xp.exp(x - x.max(axis=-1, keepdims=True))
            return e / e.sum(axis=-1, keepdims=True)
        return run
    return GpuCase("Softmax", f"{rows}x{length}", "float32", base.model, base.feeds, base.work, "GB/s", reference,
                   "cupy expression", aim)


def layernorm_rows(rows: int, hidden: int) -> GpuCase:
    """LayerNormalization over the last axis (scale and bias are weights) against a cupy expression."""
    base = layernorm(rows, hidden)
    weights = {i.name: numpy_helper.to_array(i) for i in base.model.graph.initializer}

    def reference(xp: Any) -> Callable[..., Any]:
        scale, bias = xp.asarray(weights["scale"]), xp.asarray(weights["bias"])

        def run(x: Any) -> Any:
            mean = x.mean(axis=-1, keepdims=True)
            return (x - mean) / xp.sqrt(x.var(axis=-1, keepdims=True) + LN_EPSILON) * scale + bias
        return run
    return GpuCase("LayerNormalization", f"{rows}x{hidden}", "float32", base.model, base.feeds, base.work, "GB/s",
                   reference, "cupy expression")


def conv(batch: int, c: int, hw: int, k: int = 3, dtype: str = "float32") -> GpuCase:
    """A k x k convolution with bias, C channels in and out, 'same' padding; onnxruntime is its peer. In float16
    (pixels, channels x taps and channels multiples of 16) it runs on tensor cores."""
    rng = np.random.default_rng(31)
    x = rng.standard_normal((batch, c, hw, hw)).astype(dtype)
    w = (rng.standard_normal((c, c, k, k)) * (c * k * k) ** -0.5).astype(dtype)
    bias = rng.standard_normal(c).astype(dtype)
    node = helper.make_node("Conv", ["x", "w", "bias"], ["y"], kernel_shape=[k, k], pads=[k // 2] * 4)
    model = typed_model([node], {"x": x.shape}, ["y"], dtype, {"w": w, "bias": bias})
    return GpuCase(f"Conv {k}x{k}", f"{batch}x{c}x{hw}x{hw}", dtype, model, {"x": x},
                   2.0 * batch * c * c * k * k * hw * hw, "TFLOP/s", None, "onnxruntime")


def tiny_resnet() -> onnx.ModelProto:
    """resnet_style in miniature (stem, pooling, one basic block, a projected stride-2 block, classifier), small
    enough for the emulator."""
    b = Builder(14)
    x = b.op("MaxPool", b.op("Relu", b.conv("image", 3, 8, 3, 2)), kernel_shape=[3, 3], strides=[2, 2],
             pads=[1, 1, 1, 1])
    y = b.conv(b.op("Relu", b.conv(x, 8, 8, 3)), 8, 8, 3)
    x = b.op("Relu", b.op("Add", y, x))
    y = b.conv(b.op("Relu", b.conv(x, 8, 16, 3, 2)), 16, 16, 3)
    x = b.op("Relu", b.op("Add", y, b.conv(x, 8, 16, 1, 2)))
    return b.model("resnet_tiny", {"image": (1, 3, 20, 20)}, b.classifier(x, 16, classes=10))


def model_case(model: onnx.ModelProto) -> GpuCase:
    """A whole model with one float32 input (an image, a BERT layer's hidden states), onnxruntime its peer."""
    rng = np.random.default_rng(32)
    (source,) = [vi for vi in model.graph.input if vi.name not in {t.name for t in model.graph.initializer}]
    shape = tuple(d.dim_value for d in source.type.tensor_type.shape.dim)
    feeds = {source.name: rng.standard_normal(shape).astype(np.float32)}
    return GpuCase(model.graph.name, "x".join(map(str, shape)), "float32", model, feeds, 0.0, "", None,
                   "onnxruntime")


def cuda_cases(smoke: bool) -> list[GpuCase]:
    """The issue's cases; `smoke` gives the same list on tiny shapes (primes, tails of every tile size)."""
    if smoke:
        return [matmul(37, 45, 70, "float32"), matmul(37, 45, 70, "float16"), chain(1000), softmax_rows(5, 130),
                layernorm_rows(6, 96), conv(2, 8, 9), conv(2, 16, 8, dtype="float16"), model_case(tiny_resnet()),
                model_case(bert_style(layers=1, seq=32, hidden=64, heads=2))]
    return [matmul(4096, 4096, 4096, "float16", Aim("ratio", 0.8)), matmul(4096, 4096, 4096, "float32",
                                                                           Aim("ratio", 0.7)),
            matmul(1024, 1024, 1024, "float16"), matmul(1024, 1024, 1024, "float32"),
            chain(16 << 20, Aim("peak", 0.85)), softmax_rows(4096, 4096, Aim("peak", 0.85)),
            layernorm_rows(16384, 1024), conv(8, 64, 56), conv(8, 64, 56, dtype="float16"),
            model_case(resnet_style()), model_case(bert_style())]
