"""Graph passes. Each takes and returns a Graph (rewriting in place where that is simpler); the pipeline in
`pipeline.py` names them in order, and each stage's result can be dumped."""
from __future__ import annotations

import numpy as np

from .evaluate import evaluate_node
from .ir import Graph, Node, Value
from .lower import infer, opdef_of
from .registry import OpError

FOLD_LIMIT = 1 << 26  # elements: constants larger than this stay as kernels run at inference time
SHAPE_ONLY = ("Shape", "Size")  # ops that read only their input's shape: fold whenever that shape is static


def _static(v: Value) -> bool:
    return all(isinstance(d, int) for d in v.shape)


def infer_shapes(g: Graph) -> Graph:
    """Give every value its dtype and shape (the ops' lowerings are the shape rules), folding constant nodes on
    the way: a Reshape whose shape comes from Shape(x) can only be inferred once that Shape is folded."""
    kept: list[Node] = []
    for node in g.nodes:
        infer(node)
        if not _fold(node):
            kept.append(node)
    g.nodes = kept
    return g


def check_outputs(g: Graph) -> Graph:
    """What the model declares for its outputs must match what its ops compute: a mismatch means a malformed
    model or a misread op, and either deserves an error rather than outputs of a surprising shape."""
    for v in g.outputs:
        dtype, dims = g.declared.get(v.name, (None, None))
        if dtype is not None and dtype != v.dtype:
            raise OpError(f"graph output {v.name!r} is declared {dtype} but computes {v.dtype}")
        if dims is None:
            continue
        if len(dims) != len(v.shape) or any(d is not None and isinstance(c, int) and d != c
                                           for d, c in zip(dims, v.shape)):
            shown = tuple("?" if d is None else d for d in dims)
            raise OpError(f"graph output {v.name!r} is declared with shape {shown} but computes "
                          f"{tuple(map(str, v.shape))}")
    return g


def fold_constants(g: Graph) -> Graph:
    """Evaluate nodes whose inputs are all constant (and shape queries of static shapes). Ops with a numpy folder
    run it; the others are compiled and run once, so every op folds with its own semantics."""
    g.nodes = [node for node in g.nodes if not _fold(node)]
    return g


def _fold(node: Node) -> bool:
    ins = [v for v in node.inputs if v is not None]
    if all(v.is_const for v in ins) and _foldable(node):
        results = evaluate_node(node)
    elif node.op in SHAPE_ONLY and ins and _static(ins[0]):
        results = evaluate_node(node, [np.broadcast_to(np.zeros((), ins[0].dtype.numpy), ins[0].shape)])
    else:
        return False
    for v, data in zip(node.outputs, results):
        v.data, v.producer = data, None
    return True


def _foldable(node: Node) -> bool:
    if node.op in ("RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial",
                   "Bernoulli"):
        return False
    size = sum(int(np.prod([d if isinstance(d, int) else 0 for d in v.shape])) for v in node.outputs)
    return opdef_of(node).fold is not None or size <= FOLD_LIMIT


def eliminate_dead_code(g: Graph) -> Graph:
    """Drop nodes none of whose outputs reach a graph output."""
    live = set(g.outputs)
    kept: list[Node] = []
    for node in reversed(g.nodes):
        if any(v in live for v in node.outputs):
            kept.append(node)
            live.update(v for v in node.inputs if v is not None)
    g.nodes = kept[::-1]
    return g


def eliminate_common_subexpressions(g: Graph) -> Graph:
    """Merge nodes that apply the same op with the same attributes to the same inputs (and equal constants)."""
    seen: dict[tuple, Node] = {}
    replace: dict[Value, Value] = {}
    const_ids: dict[tuple, Value] = {}

    def canon(v: "Value | None") -> object:
        if v is None:
            return None
        v = replace.get(v, v)
        if v.is_const and v.data.size <= 64:
            key = ("const", v.data.dtype.str, v.data.shape, v.data.tobytes())
            return id(const_ids.setdefault(key, v))
        return id(v)

    kept: list[Node] = []
    for node in g.nodes:
        node.inputs = [replace.get(v, v) if v is not None else None for v in node.inputs]
        key = (node.op, node.domain, node.opset, tuple(canon(v) for v in node.inputs), _attr_key(node.attrs),
               len(node.outputs))
        if node.op.startswith("Random") or key not in seen:
            seen.setdefault(key, node)
            kept.append(node)
            continue
        for old, new in zip(node.outputs, seen[key].outputs):
            replace[old] = new
    g.nodes = kept
    g.outputs = [replace.get(v, v) for v in g.outputs]
    return g


def _attr_key(attrs: dict) -> tuple:
    items = []
    for k, v in sorted(attrs.items()):
        if isinstance(v, np.ndarray):
            v = (v.dtype.str, v.shape, v.tobytes())
        elif isinstance(v, list):
            v = tuple(v)
        items.append((k, repr(v)))
    return tuple(items)


def check_supported(g: Graph) -> Graph:
    """Every node's op must be registered for its opset; all missing ones are listed in one error."""
    missing: dict[tuple[str, str, int], list[str]] = {}
    for node in g.nodes:
        try:
            opdef_of(node)
        except OpError:
            missing.setdefault((node.domain, node.op, node.opset), []).append(node.name or "<unnamed>")
    if missing:
        lines = [f"  {(dom + '.') if dom else ''}{op} (opset {ver}): nodes {', '.join(repr(n) for n in names[:5])}"
                 + (f" and {len(names) - 5} more" if len(names) > 5 else "")
                 for (dom, op, ver), names in sorted(missing.items())]
        raise UnsupportedOpsError("the model uses ops ember does not support:\n" + "\n".join(lines),
                                  sorted({op for (_, op, _) in missing}))
    return g


class UnsupportedOpsError(OpError):
    def __init__(self, message: str, ops: list[str]):
        super().__init__(message)
        self.ops = ops
