"""The op registry: each graph op is defined once, as a function from its input tensors (tensor IR) to its output
tensors. That one definition gives its shape rule (the shapes of what it builds), its lowering (the compute
definitions) and, through the default scheduler, its schedule. Versions of an op with different semantics register
separately with `since=` (the first opset version they apply to)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ..ir.tensor import Tensor
from .ir import Node

Lowering = Callable[..., "Tensor | tuple[Tensor, ...] | list[Tensor]"]


class OpError(ValueError):
    """A node cannot be compiled as written: bad attributes, shapes or dtypes. The message names the node."""


class ConstantRequired(OpError):
    """An input that decides shapes (Reshape's shape, Slice's starts...) is only known at run time. Callers that
    see the values (the ONNX backend) can specialise the model on them and compile again."""


KINDS = ("elementwise", "injective", "reduction", "opaque")
Folder = Callable[..., "np.ndarray | tuple[np.ndarray, ...] | list[np.ndarray]"]


@dataclass(frozen=True)
class OpDef:
    """`kind` steers fusion: elementwise ops join their producer's kernel; a function of the node decides per node
    for ops whose attributes change what they are (BatchNormalization in training mode reduces). `fold`, when given, evaluates the op
    on constant numpy inputs at compile time without building a kernel (shape arithmetic, fills); it must agree
    with `lower`, which the tests check."""
    name: str
    since: int
    lower: Lowering
    domain: str = ""
    kind: "str | Callable[[Node], str]" = "opaque"
    fold: "Folder | None" = None


_REGISTRY: dict[tuple[str, str], list[OpDef]] = {}


def register(name: str, since: int = 1, domain: str = "", kind: "str | Callable[[Node], str]" = "opaque",
             fold: "Folder | None" = None) -> Callable[[Lowering], Lowering]:
    """Register the lowering of op `name` for opset versions from `since` (until a later registration)."""
    if not callable(kind) and kind not in KINDS:
        raise ValueError(f"op kind {kind!r} is not one of {KINDS}")

    def deco(fn: Lowering) -> Lowering:
        defs = _REGISTRY.setdefault((domain, name), [])
        if any(d.since == since for d in defs):
            raise ValueError(f"op {name} (since opset {since}) is registered twice")
        defs.append(OpDef(name, since, fn, domain, kind, fold))
        defs.sort(key=lambda d: d.since)
        return fn
    return deco


def lookup(name: str, opset: int, domain: str = "") -> "OpDef | None":
    """The definition in force at `opset`, or None if the op (at that version) is not supported."""
    defs = _REGISTRY.get(("" if domain == "ai.onnx" else domain, name), [])
    usable = [d for d in defs if d.since <= opset]
    return usable[-1] if usable else None


def supported_ops(domain: str = "") -> list[str]:
    return sorted(name for (dom, name) in _REGISTRY if dom == domain)


class OpContext:
    """What a lowering function sees besides its input tensors: attributes, the opset version, constant input
    values, and an error helper that names the node."""

    def __init__(self, node: Node, consts: "list[np.ndarray | None]"):
        self.node = node
        self.opset = node.opset
        self._consts = consts
        self.num_outputs = len(node.outputs)
        self.num_inputs = len(node.inputs)

    def attr(self, name: str, default: Any = ...) -> Any:
        """An attribute: int, float, str, list of them, or numpy array for tensor attributes."""
        if name in self.node.attrs:
            return self.node.attrs[name]
        if default is ...:
            raise self.error(f"required attribute {name!r} is missing")
        return default

    def has_input(self, i: int) -> bool:
        return i < len(self.node.inputs) and self.node.inputs[i] is not None

    def const(self, i: int, what: str = "") -> np.ndarray:
        """The value of input `i`, which this op needs at compile time (a shape, axes, pads...)."""
        value = self._consts[i] if i < len(self._consts) else None
        if value is None:
            label = what or f"input {i}"
            raise ConstantRequired(f"{self.node.describe()}: {label} must be a constant (an initializer or "
                                   f"computable from initializers); ember compiles shapes ahead of time")
        return value

    def const_or_none(self, i: int) -> "np.ndarray | None":
        return self._consts[i] if i < len(self._consts) else None

    def error(self, message: str) -> OpError:
        return OpError(f"{self.node.describe()}: {message}")

    def name(self, suffix: str = "") -> str:
        """A readable, C-safe stage name derived from the node's output."""
        base = self.node.outputs[0].name if self.node.outputs else self.node.op
        clean = "".join(ch if ch.isalnum() else "_" for ch in base) or self.node.op
        if clean[0].isdigit():
            clean = "v" + clean
        return clean + suffix
