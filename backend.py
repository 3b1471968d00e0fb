"""ember as an ONNX backend (`onnx.backend.base.Backend`), the interface onnxruntime's backend module also
offers, so the official ONNX backend test suite and other tools can drive ember."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import onnx
from onnx.backend.base import Backend, BackendRep

from .frontend.api import compile as compile_model
from .runtime.executor import CompiledModel


class EmberRep(BackendRep):
    def __init__(self, model: CompiledModel):
        self.model = model

    def run(self, inputs: Any, **kwargs: Any) -> tuple[np.ndarray, ...]:
        if isinstance(inputs, dict):
            return tuple(self.model(**inputs))
        if isinstance(inputs, np.ndarray) and len(self.model.inputs) == 1:
            inputs = [inputs]
        return tuple(self.model(*inputs))


class EmberBackend(Backend):
    @classmethod
    def supports_device(cls, device: str) -> bool:
        return device.upper() in ("CPU", "LLVM")

    @classmethod
    def prepare(cls, model: onnx.ModelProto, device: str = "CPU", **kwargs: Any) -> EmberRep:
        if not cls.supports_device(device):
            raise ValueError(f"ember's ONNX backend runs on CPU; device {device!r} is not supported")
        return EmberRep(compile_model(model, target=kwargs.get("target", "llvm")))

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
        graph_outputs = [helper.make_empty_tensor_value_info(n) for n in node.output if n]
        opset = kwargs.get("opset_version", onnx.defs.onnx_opset_version())
        model = helper.make_model(helper.make_graph([node], "run_node", graph_inputs, graph_outputs),
                                  opset_imports=[helper.make_opsetid(node.domain or "", opset)])
        rep = cls.prepare(model, device)
        return rep.run([a for n, a in zip(names, arrays) if n])


prepare = EmberBackend.prepare
run_model = EmberBackend.run_model
run_node = EmberBackend.run_node
supports_device = EmberBackend.supports_device
