"""ONNX ModelProto to graph IR: values with dtypes and shapes (dim_params become symbolic sizes), initializers as
constants, nodes with decoded attributes and the opset version of their domain. Malformed models are rejected
here with messages that name the node or value."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..graph.ir import Graph, Node, Value
from ..graph.onnx_types import ONNX_DTYPES, dtype_of_code, supported_type_names, type_name
from ..graph.registry import OpError
from ..ir.dtype import DType, as_dtype
from ..ir.tensor import var


class ModelError(OpError):
    """The model itself is malformed or inconsistent."""


def onnx_dtype(code: int, what: str) -> DType:
    dtype = dtype_of_code(code)
    if dtype is None:
        raise ModelError(f"{what} has element type {type_name(code)}, which ember does not support "
                         f"(supported: {supported_type_names()})")
    return dtype


def load_model(model: Any):
    """A ModelProto from a path, bytes or a ModelProto; checked by onnx's checker."""
    import onnx
    if isinstance(model, (str, Path)):
        path = Path(model)
        if not path.exists():
            raise FileNotFoundError(f"no ONNX model at {path}")
        try:
            model = onnx.load(str(path))
        except Exception as err:  # noqa: BLE001 - protobuf raises its own DecodeError types
            raise ModelError(f"{path} is not a valid ONNX model: {err}") from None
    elif isinstance(model, (bytes, bytearray)):
        try:
            model = onnx.load_from_string(bytes(model))
        except Exception as err:  # noqa: BLE001
            raise ModelError(f"the bytes are not a valid ONNX model: {err}") from None
    if not isinstance(model, onnx.ModelProto):
        raise TypeError(f"expected an ONNX model (path, bytes or onnx.ModelProto), got {type(model).__name__}")
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as err:
        raise ModelError(f"the ONNX model is invalid: {str(err).splitlines()[0]}") from None
    return model


def opsets(model) -> dict[str, int]:
    out = {"": 1}
    for imp in model.opset_import:
        out["" if imp.domain in ("", "ai.onnx") else imp.domain] = imp.version
    return out


def import_model(model: Any, name: str = "") -> Graph:
    """The graph of an ONNX model (path, bytes or ModelProto)."""
    return import_checked(load_model(model), name)


def import_checked(proto, name: str = "") -> Graph:
    """The graph of a ModelProto that `load_model` has already read and checked."""
    return import_graph(proto.graph, opsets(proto), name or proto.graph.name or "model")


def import_graph(graph, versions: dict[str, int], name: str) -> Graph:
    from onnx import numpy_helper
    values: dict[str, Value] = {}
    sizes: dict[str, Any] = {}
    for init in graph.initializer:
        data = _initializer(init, numpy_helper)
        values[init.name] = Value(init.name, as_dtype(str(data.dtype) if data.dtype != np.bool_ else "bool"),
                                  tuple(data.shape), data)
    inputs: list[Value] = []
    for vi in graph.input:
        if vi.name in values:
            continue  # an initializer also listed as input (older exporters): a constant with a default
        dtype, shape = _value_type(vi, sizes)
        v = Value(vi.name, dtype, shape)
        values[vi.name] = v
        inputs.append(v)
    nodes: list[Node] = []
    for k, nd in enumerate(graph.node):
        label = nd.name or f"{nd.op_type}_{k}"
        ins: list[Value | None] = []
        for inp in nd.input:
            if not inp:
                ins.append(None)
                continue
            if inp not in values:
                raise ModelError(f"node {label!r} ({nd.op_type}) reads {inp!r}, which is neither a graph input, an "
                                 f"initializer nor the output of an earlier node")
            ins.append(values[inp])
        outs = []
        for out in nd.output:
            v = Value(out or f"{label}_unused{len(outs)}", as_dtype("float32"), ())
            outs.append(v)
            if out:
                values[out] = v
        domain = "" if nd.domain in ("", "ai.onnx") else nd.domain
        node = Node(nd.op_type, ins, outs, {a.name: _attribute(a, numpy_helper, label) for a in nd.attribute},
                    label, versions.get(domain, 1), domain)
        for v in outs:
            v.producer = node
        nodes.append(node)
    outputs = []
    declared: dict[str, tuple] = {}
    for vi in graph.output:
        if vi.name not in values:
            raise ModelError(f"graph output {vi.name!r} is not produced by any node")
        outputs.append(values[vi.name])
        declared[vi.name] = _declared_type(vi)
    return Graph(name, inputs, outputs, nodes, declared)


def _declared_type(vi) -> tuple:
    """(dtype or None, dims with None where not a fixed value, or None when no shape is given)."""
    t = vi.type.tensor_type
    dtype = as_dtype(ONNX_DTYPES[t.elem_type]) if t.elem_type in ONNX_DTYPES else None
    if not t.HasField("shape"):
        return dtype, None
    return dtype, tuple(int(d.dim_value) if d.HasField("dim_value") else None for d in t.shape.dim)


def _initializer(init, numpy_helper) -> np.ndarray:
    if init.data_type not in ONNX_DTYPES:
        onnx_dtype(init.data_type, f"initializer {init.name!r}")
    if init.data_location == 1:
        raise ModelError(f"initializer {init.name!r} lives in an external data file; load the model with "
                         f"onnx.load(path) so its data is read, or pass the model path")
    try:
        return np.require(numpy_helper.to_array(init), requirements="C")
    except Exception as err:  # noqa: BLE001 - malformed raw data
        raise ModelError(f"initializer {init.name!r} is malformed: {err}") from None


def _value_type(vi, sizes: dict[str, Any]) -> tuple[DType, tuple]:
    t = vi.type
    if t.WhichOneof("value") != "tensor_type":
        raise ModelError(f"graph input {vi.name!r} is a {t.WhichOneof('value')}; ember supports tensor inputs only")
    dtype = onnx_dtype(t.tensor_type.elem_type, f"graph input {vi.name!r}")
    if not t.tensor_type.HasField("shape"):
        raise ModelError(f"graph input {vi.name!r} has no shape; ember needs each input's rank")
    shape = []
    for k, d in enumerate(t.tensor_type.shape.dim):
        if d.HasField("dim_value"):
            shape.append(int(d.dim_value))
        else:
            label = d.dim_param or f"{vi.name}_dim{k}"
            clean = "".join(ch if ch.isalnum() else "_" for ch in label)
            if clean not in sizes:
                sizes[clean] = var(clean)
            shape.append(sizes[clean])
    return dtype, tuple(shape)


def _attribute(a, numpy_helper, label: str) -> Any:
    from onnx import AttributeProto as A
    kind = a.type
    if kind == A.FLOAT:
        return float(a.f)
    if kind == A.INT:
        return int(a.i)
    if kind == A.STRING:
        return a.s.decode("utf-8", "replace")
    if kind == A.TENSOR:
        return np.require(numpy_helper.to_array(a.t), requirements="C")
    if kind == A.FLOATS:
        return [float(x) for x in a.floats]
    if kind == A.INTS:
        return [int(x) for x in a.ints]
    if kind == A.STRINGS:
        return [s.decode("utf-8", "replace") for s in a.strings]
    if kind == A.GRAPH:
        return a.g
    raise ModelError(f"node {label!r}: attribute {a.name!r} has a type ember does not support ({kind})")
