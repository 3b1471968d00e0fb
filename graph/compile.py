"""Partitions to kernels: each partition's nodes are lowered together into one tensor-IR definition (inputs
become placeholders, results that leave the partition become kernel outputs) and built for the target with its
default schedule, through the artifact cache."""
from __future__ import annotations

from ..compiler.build import build
from ..ir.structural import topo_ops
from ..ir.tensor import PlaceholderOp, Tensor
from ..runtime.kernel import Kernel
from .ir import Value
from .lower import lower_node, materialize, placeholder_for, safe_name
from .partition import Partition


def kernel_name(part: Partition) -> str:
    ops = []
    for n in part.nodes:
        if n.op not in ops:
            ops.append(n.op)
    return safe_name("_".join(ops[:4]).lower())


def build_partition(part: Partition, target, name: str = "") -> Kernel:
    """The partition's kernel (arguments: its inputs, then its outputs). Stages are named after their node's op
    and position (`conv0`, `relu1_0`), not the model's value names, so partitions that compute the same thing
    share one cache key and one compiled kernel (ResNet's repeated blocks).
    The model's names stay in the partition's description for errors and profiles."""
    env: dict[Value, Tensor] = {}
    args: list[Tensor] = []
    for k, v in enumerate(part.inputs):
        ph = placeholder_for(v)
        ph.op.name = f"in{k}"
        env[v] = ph
        args.append(ph)
    named = {id(t.op) for t in args}
    for k, node in enumerate(part.nodes):
        lower_node(node, env)
        made = topo_ops([env[v] for v in node.outputs if v in env], known=named)
        for j, op in enumerate(made):
            op.name = f"{node.op.lower()}{k}" + (f"_{j}" if len(made) > 1 else "")
            named.add(id(op))
    seen: set[int] = set()
    for k, v in enumerate(part.outputs):
        t = env[v]
        if isinstance(t.op, PlaceholderOp) or id(t) in seen:
            t = materialize(t, f"out{k}")
        seen.add(id(t))
        args.append(t)
    return build(args[len(part.inputs):], args, target=target, name=name or kernel_name(part))
