"""`ember.compile`: an ONNX model in, a compiled model out."""
from __future__ import annotations

from typing import Any, Callable

from ..runtime.executor import CompiledModel


def compile(model: Any, target: str = "llvm", progress: "Callable[[int, int, str], None] | None" = None
            ) -> CompiledModel:  # noqa: A001 - the public name users expect
    """Compile an ONNX model (path, bytes or onnx.ModelProto) for `target`. Every unsupported op is reported in
    one error before anything is compiled."""
    from .. import graph  # noqa: F401 - registers the ops
    from ..graph.model import compile_graph
    from .onnx_import import import_model
    return compile_graph(import_model(model), target, progress)
