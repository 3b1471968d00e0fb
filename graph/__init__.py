"""The graph layer: graph IR, op registry, graph passes, fusion, and compilation of a graph into a model."""
from . import ops  # noqa: F401 - registers every op
from .ir import Graph, Node, Value
from .registry import OpContext, OpError, register, supported_ops
from .passes import UnsupportedOpsError

__all__ = ["Graph", "Node", "OpContext", "OpError", "UnsupportedOpsError", "Value", "register", "supported_ops"]
