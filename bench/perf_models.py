"""Whole-model cases for `bench.perf`, built with onnx.helper and seeded random weights so the benchmark needs
no downloads: ResNet-style and MobileNetV2-style CNNs, a BERT-style encoder and an MLP, plus the `light_*`
models bundled with the onnx package and a one-op model that exposes per-call overhead."""
from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import onnx
from onnx import helper

from .perf_kernels import onnx_model, rand


class Builder:
    """Accumulates nodes and initializers under generated names, so model code reads like a layer list."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: dict[str, np.ndarray] = {}

    def _name(self, prefix: str) -> str:
        return f"{prefix}{len(self.nodes) + len(self.inits)}"

    def const(self, value: object, dtype: type = np.float32) -> str:
        name = self._name("w")
        self.inits[name] = np.asarray(value, dtype)
        return name

    def op(self, op_type: str, *inputs: str, **attrs: object) -> str:
        out = self._name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], **attrs))
        return out

    def conv(self, x: str, cin: int, cout: int, k: int, stride: int = 1, group: int = 1) -> str:
        w = self.const(rand(self.rng, cout, cin // group, k, k, scale=(2.0 / (cin // group * k * k)) ** 0.5))
        return self.op("Conv", x, w, self.const(rand(self.rng, cout, scale=0.01)), kernel_shape=[k, k],
                       strides=[stride, stride], pads=[k // 2] * 4, group=group)

    def relu6(self, x: str) -> str:
        return self.op("Clip", x, self.const(np.float32(0)), self.const(np.float32(6)))

    def dense(self, x: str, k: int, n: int) -> str:
        """MatMul + Add, the form transformer exporters emit for linear layers."""
        return self.op("Add", self.op("MatMul", x, self.const(rand(self.rng, k, n, scale=k ** -0.5))),
                       self.const(rand(self.rng, n, scale=0.01)))

    def classifier(self, x: str, c: int, classes: int = 1000) -> str:
        flat = self.op("Flatten", self.op("GlobalAveragePool", x), axis=1)
        return self.op("Gemm", flat, self.const(rand(self.rng, classes, c, scale=c ** -0.5)),
                       self.const(np.zeros(classes)), transB=1)

    def model(self, name: str, inputs: dict[str, tuple[int, ...]], output: str) -> onnx.ModelProto:
        return onnx_model(self.nodes, inputs, [output], self.inits, name)


def resnet_style() -> onnx.ModelProto:
    """ResNet-18's stem and first two stages (basic blocks, a projected stride-2 shortcut) on 224x224."""
    b = Builder(10)
    x = b.op("MaxPool", b.op("Relu", b.conv("image", 3, 64, 7, 2)), kernel_shape=[3, 3], strides=[2, 2],
             pads=[1, 1, 1, 1])
    c = 64
    for cout, stride in ((64, 1), (64, 1), (128, 2), (128, 1)):
        y = b.conv(b.op("Relu", b.conv(x, c, cout, 3, stride)), cout, cout, 3)
        shortcut = b.conv(x, c, cout, 1, stride) if stride != 1 or c != cout else x
        x, c = b.op("Relu", b.op("Add", y, shortcut)), cout
    return b.model("resnet_style", {"image": (1, 3, 224, 224)}, b.classifier(x, c))


def mobilenet_style() -> onnx.ModelProto:
    """MobileNetV2's first stages: inverted residual blocks (1x1 expand, depthwise 3x3, 1x1 project)."""
    b = Builder(11)
    x, c = b.relu6(b.conv("image", 3, 32, 3, 2)), 32
    for expand, cout, stride in ((1, 16, 1), (6, 24, 2), (6, 24, 1), (6, 32, 2), (6, 32, 1), (6, 64, 2),
                                 (6, 64, 1)):
        hidden = c * expand
        y = b.relu6(b.conv(x, c, hidden, 1)) if expand != 1 else x
        y = b.conv(b.relu6(b.conv(y, hidden, hidden, 3, stride, group=hidden)), hidden, cout, 1)
        x, c = (b.op("Add", x, y) if stride == 1 and c == cout else y), cout
    return b.model("mobilenet_style", {"image": (1, 3, 224, 224)}, b.classifier(b.relu6(b.conv(x, c, 1280, 1)), 1280))


def bert_style(layers: int = 2, seq: int = 128, hidden: int = 768, heads: int = 12) -> onnx.ModelProto:
    """BERT-base encoder layers as exporters emit them: split heads by Reshape/Transpose, erf-based Gelu."""
    b = Builder(12)
    dh = hidden // heads
    split, merge = b.const([1, seq, heads, dh], np.int64), b.const([1, seq, hidden], np.int64)

    def layernorm(v: str) -> str:
        return b.op("LayerNormalization", v, b.const(np.ones(hidden)), b.const(np.zeros(hidden)), axis=-1,
                    epsilon=1e-12)

    x = "hidden"
    for _ in range(layers):
        q, k, v = (b.op("Transpose", b.op("Reshape", b.dense(x, hidden, hidden), split), perm=perm)
                   for perm in ([0, 2, 1, 3], [0, 2, 3, 1], [0, 2, 1, 3]))
        scores = b.op("Mul", b.op("MatMul", q, k), b.const(np.float32(1 / math.sqrt(dh))))
        ctx = b.op("MatMul", b.op("Softmax", scores, axis=-1), v)
        ctx = b.op("Reshape", b.op("Transpose", ctx, perm=[0, 2, 1, 3]), merge)
        x = layernorm(b.op("Add", x, b.dense(ctx, hidden, hidden)))
        h = b.dense(x, hidden, 4 * hidden)
        erf = b.op("Erf", b.op("Mul", h, b.const(np.float32(1 / math.sqrt(2)))))
        gelu = b.op("Mul", b.op("Mul", h, b.op("Add", erf, b.const(np.float32(1)))), b.const(np.float32(0.5)))
        x = layernorm(b.op("Add", x, b.dense(gelu, 4 * hidden, hidden)))
    return b.model(f"bert_style_{layers}layer", {"hidden": (1, seq, hidden)}, x)


def mlp(batch: int = 64, sizes: tuple[int, ...] = (784, 1024, 1024, 10)) -> onnx.ModelProto:
    b = Builder(13)
    x = "x"
    for i, (k, n) in enumerate(itertools.pairwise(sizes)):
        x = b.op("Gemm", x, b.const(rand(b.rng, n, k, scale=k ** -0.5)), b.const(np.zeros(n)), transB=1)
        x = b.op("Relu", x) if i < len(sizes) - 2 else x
    return b.model("mlp", {"x": (batch, sizes[0])}, x)


def tiny() -> onnx.ModelProto:
    """One Relu on four floats: its latency is the executor's fixed per-call cost."""
    return onnx_model([helper.make_node("Relu", ["x"], ["y"])], {"x": (1, 4)}, ["y"])


def random_feeds(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(20)
    inits = {i.name for i in model.graph.initializer}
    return {vi.name: rand(rng, *(d.dim_value for d in vi.type.tensor_type.shape.dim))
            for vi in model.graph.input if vi.name not in inits}


def model_cases(quick: bool) -> dict[str, tuple[onnx.ModelProto, dict[str, np.ndarray]]]:
    """Name -> (model, inputs); `--quick` keeps the cheapest to compile and run. The light models get the
    inputs onnx's own test runner feeds them."""
    from tests.onnx.test_light_models import LIGHT_DIR, runner_inputs
    built = [mobilenet_style(), bert_style(layers=1), mlp()] if quick else [resnet_style(), mobilenet_style(),
                                                                            bert_style(), mlp()]
    cases = {m.graph.name: (m, random_feeds(m)) for m in built}
    for name in ([] if quick else ["resnet50", "squeezenet"]):
        model = onnx.load(str(Path(LIGHT_DIR) / f"light_{name}.onnx"))
        cases[f"light_{name}"] = (model, runner_inputs(model))
    return cases
