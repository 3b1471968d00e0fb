"""ember as an ONNX backend (`onnx.backend.base.Backend`), the interface onnxruntime's backend module also
offers, so the official ONNX backend test suite and other tools can drive ember."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import onnx
from onnx import numpy_helper
from onnx.backend.base import Backend, BackendRep

from .frontend.api import compile as compile_model
from .graph.registry import ConstantRequired
from .runtime.executor import CompiledModel


SPECIALIZE_MAX_ELEMENTS = 4096  # integer inputs up to this size (shapes, axes, indices) become constants
SPECIALIZE_ANY_ELEMENTS = 8  # and tiny inputs of any type (Resize scales, Range bounds)


class EmberRep(BackendRep):
    """A prepared model. When the model takes shape-deciding values (Reshape's shape, Slice's starts...) as
    run-time inputs, it is compiled at `run` instead, specialised on those inputs' values (small integer tensors
    and scalars become constants); one compiled model is kept per distinct set of values."""

    def __init__(self, proto: onnx.ModelProto, model: "CompiledModel | None", target: str):
        self.proto, self.model, self.target = proto, model, target
        self.input_names = _runtime_inputs(proto)
        self.specialized: dict[bytes, tuple[CompiledModel, list[int]]] = {}

    def run(self, inputs: Any, **kwargs: Any) -> tuple[np.ndarray, ...]:
        names = self.input_names
        if isinstance(inputs, dict):
            arrays = [np.asarray(inputs[n]) for n in names]
        else:
            arrays = [np.asarray(inputs)] if isinstance(inputs, np.ndarray) else [np.asarray(x) for x in inputs]
        if self.model is not None:
            return tuple(self.model(*arrays))
        model, keep = self._specialized(names, arrays)
        return tuple(model(*[arrays[k] for k in keep]))

    def _specialized(self, names: list[str], arrays: list[np.ndarray]) -> tuple[CompiledModel, list[int]]:
        fixed = [k for k, a in enumerate(arrays) if _specializable(a)]
        key = b"|".join(names[k].encode() + arrays[k].dtype.str.encode() + repr(arrays[k].shape).encode()
                        + arrays[k].tobytes() for k in fixed)
        if key not in self.specialized:
            proto = onnx.ModelProto()
            proto.CopyFrom(self.proto)
            fixed_names = {names[k] for k in fixed}
            kept_inputs = [vi for vi in proto.graph.input if vi.name not in fixed_names]
            del proto.graph.input[:]
            proto.graph.input.extend(kept_inputs)
            proto.graph.initializer.extend(numpy_helper.from_array(arrays[k], names[k]) for k in fixed)
            keep = [k for k in range(len(arrays)) if k not in fixed]
            self.specialized[key] = (compile_model(proto, target=self.target), keep)
        return self.specialized[key]


def _runtime_inputs(proto: onnx.ModelProto) -> list[str]:
    inits = {i.name for i in proto.graph.initializer}
    return [vi.name for vi in proto.graph.input if vi.name not in inits]


def _specializable(a: np.ndarray) -> bool:
    return (a.dtype.kind in "iub" and a.size <= SPECIALIZE_MAX_ELEMENTS) or a.size <= SPECIALIZE_ANY_ELEMENTS


class EmberBackend(Backend):
    @classmethod
    def supports_device(cls, device: str) -> bool:
        return device.upper() in ("CPU", "LLVM")

    @classmethod
    def prepare(cls, model: onnx.ModelProto, device: str = "CPU", **kwargs: Any) -> EmberRep:
        if not cls.supports_device(device):
            raise ValueError(f"ember's ONNX backend runs on CPU; device {device!r} is not supported")
        target = kwargs.get("target", "llvm")
        try:
            return EmberRep(model, compile_model(model, target=target), target)
        except ConstantRequired:
            return EmberRep(model, None, target)

    @classmethod
    def run_model(cls, model: onnx.ModelProto, inputs: Any, device: str = "CPU", **kwargs: Any
                  ) -> tuple[np.ndarray, ...]:
        return cls.prepare(model, device, **kwargs).run(inputs)

    @classmethod
    def run_node(cls, node: onnx.NodeProto, inputs: Sequence[np.ndarray], device: str = "CPU",
                 outputs_info: "Sequence[tuple[Any, Any]] | None" = None, **kwargs: Any) -> tuple[np.ndarray, ...]:
        """Run one node: a one-node model is built around it from the inputs' dtypes and shapes."""
        from onnx import helper
        arrays = [np.asarray(x) for x in inputs]
        names = [n for n in node.input]
        graph_inputs = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
                        for n, a in zip(names, arrays) if n]
        graph_outputs = [onnx.ValueInfoProto(name=n) for n in node.output if n]
        opset = kwargs.get("opset_version", onnx.defs.onnx_opset_version())
        model = helper.make_model(helper.make_graph([node], "run_node", graph_inputs, graph_outputs),
                                  opset_imports=[helper.make_opsetid(node.domain or "", opset)])
        model = onnx.shape_inference.infer_shapes(model)  # the checker wants typed graph outputs
        rep = cls.prepare(model, device)
        return rep.run([a for n, a in zip(names, arrays) if n])


prepare = EmberBackend.prepare
run_model = EmberBackend.run_model
run_node = EmberBackend.run_node
supports_device = EmberBackend.supports_device
