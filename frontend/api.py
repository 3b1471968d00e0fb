"""`ember.compile`: an ONNX model in, a compiled model out, through a model-level compile cache.

The whole compiled model (as a saved-model payload, runtime/saved.py) is cached under a key of the model's bytes,
the resolved target and everything that decides the result: ember's version and sources, the toolchain, and the
source of any op lowering registered from outside ember. A hit skips import, optimisation and kernel builds.
"""
from __future__ import annotations

import hashlib
import inspect
import warnings
from pathlib import Path
from typing import Any, Callable

from ..runtime.executor import CompiledModel

def compile(model: Any, target: str = "llvm", progress: "Callable[[int, int, str], None] | None" = None,
            tuning_db: Any = None) -> CompiledModel:  # noqa: A001 - the public name users expect
    """Compile an ONNX model (path, bytes or onnx.ModelProto) for `target`. Every unsupported op is reported in
    one error before anything is compiled. `progress(k, n, label)` is called before building kernel k of n
    (not at all when the compiled model comes from the cache). `tuning_db`: a tuning database file to take tuned
    schedules from, False for none, None for the configured one (EMBER_TUNING_DB or next to the cache)."""
    from ..tune.database import selected
    with selected(tuning_db):
        return _compile(model, target, progress)


def _compile(model: Any, target: str, progress: "Callable[[int, int, str], None] | None") -> CompiledModel:
    from .. import graph  # noqa: F401 - registers the ops
    from ..compiler.target import parse_target
    from ..graph.model import compile_graph
    from ..runtime.cache import CacheWarning, default_cache
    from ..runtime.saved import SavedModelError, dumps, loads
    from .onnx_import import import_checked, load_model

    proto = load_model(model)
    tgt = parse_target(target)
    cache = default_cache()
    key = model_key(proto, tgt) if cache.enabled else None
    if key is not None:
        payload = cache.get(key)
        if payload is not None:
            try:
                return loads(payload, "a cached compiled model")
            except SavedModelError as err:
                warnings.warn(f"ember cache: dropping a bad compiled-model entry ({err}); recompiling",
                              CacheWarning, stacklevel=2)
    compiled = compile_graph(import_checked(proto), tgt, progress)
    if key is not None:
        cache.put(key, dumps(compiled))
    return compiled


def model_key(proto: Any, target: Any) -> "str | None":
    """The model-level cache key, or None when an op's lowering has no source file to identify it by."""
    from ..runtime.keys import cache_key
    ops = _external_op_sources(proto)
    if ops is None:
        return None
    from ..codegen import get_backend
    from ..tune.lookup import fingerprint
    toolchain = get_backend(target).toolchain(target)
    return cache_key(kind="compiled-model", model=hashlib.sha256(proto.SerializeToString()).hexdigest(),
                     target=target.canonical(), toolchain=toolchain, ops=ops, tuning=fingerprint(target))


def _external_op_sources(proto: Any) -> "str | None":
    """Hashes of the files defining lowerings the model uses that live outside ember (user or test ops), whose
    edits the source hash cannot see; None if one has no file."""
    from ..graph.registry import lookup
    from .onnx_import import opsets
    versions = opsets(proto)
    found: dict[str, str] = {}
    for node in _nodes(proto.graph):
        domain = "" if node.domain in ("", "ai.onnx") else node.domain
        opdef = lookup(node.op_type, versions.get(domain, 1), domain)
        for fn in (opdef.lower, opdef.fold) if opdef is not None else ():
            if fn is None or fn.__module__.split(".")[0] == "ember":
                continue
            try:
                file = inspect.getsourcefile(fn)
            except TypeError:
                file = None
            if file is None or not Path(file).is_file():
                return None
            if file not in found:
                found[file] = hashlib.sha256(Path(file).read_bytes()).hexdigest()
    return ";".join(f"{f}={h}" for f, h in sorted(found.items()))


def _nodes(graph: Any):
    """Every node, including those of subgraphs held in attributes (If/Loop bodies)."""
    for node in graph.node:
        yield node
        for attr in node.attribute:
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                yield from _nodes(sub)
