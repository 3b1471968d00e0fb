"""`@ember.jit`: compile a Python function written with numpy-like operations.

The function runs once per input signature on traced tensors (`jit_tensor.Tensor`), which record a graph; the
graph is compiled like an imported ONNX model and cached. Array arguments (also inside tuples, lists and dicts)
become inputs; every other argument is a compile-time constant and part of the cache key. Dimensions named in
`symbolic=` stay symbolic, so one compiled model serves every size."""
from __future__ import annotations

import functools
import inspect
import threading
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .. import graph as _graph  # noqa: F401 - registers the ops
from ..graph.ir import Graph
from ..graph.model import compile_graph
from ..ir.tensor import var
from ..runtime.executor import CompiledModel
from .jit_tensor import Tensor, Tracer, TracingError

__all__ = ["JitFunction", "JitStats", "TracingError", "jit"]

Symbolic = "dict[str, list[int] | dict[int, str]]"


@dataclass(frozen=True)
class JitStats:
    """How often the function was traced (explicit `trace()` calls included) and compiled, how many calls reused
    a compiled model, and how many signatures are cached."""
    traces: int
    compiles: int
    hits: int
    cached: int


@dataclass(frozen=True)
class _Out:
    """Where the returned structure holds the compiled model's output `index`."""
    index: int


@dataclass(frozen=True)
class _Entry:
    model: CompiledModel
    outputs: Any  # the returned structure, with _Out markers for the compiled outputs


def _is_array(x: Any) -> bool:
    return isinstance(x, (np.ndarray, np.generic))


def _leaves(tree: Any, path: str = "") -> list[tuple[str, Any]]:
    """(path, leaf) pairs of nested tuples, lists and dicts, in the order `_rebuild` visits them."""
    if isinstance(tree, list):
        return [pair for k, v in enumerate(tree) for pair in _leaves(v, f"{path}[{k}]")]
    if isinstance(tree, tuple):  # marked apart from lists: the function may tell them apart
        return [pair for k, v in enumerate(tree) for pair in _leaves(v, f"{path}({k})")]
    if isinstance(tree, dict):
        return [pair for k, v in tree.items() for pair in _leaves(v, f"{path}[{k!r}]")]
    return [(path, tree)]


def _rebuild(tree: Any, leaf: Callable[[Any], Any]) -> Any:
    if isinstance(tree, (tuple, list)):
        return type(tree)(_rebuild(v, leaf) for v in tree)
    if isinstance(tree, dict):
        return {k: _rebuild(v, leaf) for k, v in tree.items()}
    return leaf(tree)


class JitFunction:
    """A jitted function: call it like the original (it returns numpy arrays), `trace(...)` for the graph it
    records, `compile(...)` for the compiled model, `stats` for cache behaviour."""

    def __init__(self, fn: Callable[..., Any], target: Any = "llvm", symbolic: "Symbolic | None" = None):
        functools.update_wrapper(self, fn)
        self.fn, self.target = fn, target
        self._signature = inspect.signature(fn)
        self._symbolic = {name: self._symbolic_axes(name, axes) for name, axes in (symbolic or {}).items()}
        self._cache: dict[Any, _Entry] = {}
        self._lock = threading.Lock()
        self._traces = self._compiles = self._hits = 0

    def _symbolic_axes(self, name: str, axes: Any) -> dict[int, str]:
        if name not in self._signature.parameters:
            raise TypeError(f"ember.jit(symbolic=...): {self.fn.__qualname__} has no parameter {name!r}")
        if isinstance(axes, dict):
            return {int(a): str(n) for a, n in axes.items()}
        return {int(a): f"{name}_{int(a)}" for a in axes}

    # ---- public ---------------------------------------------------------------------------------------------------
    @property
    def stats(self) -> JitStats:
        return JitStats(self._traces, self._compiles, self._hits, len(self._cache))

    def cache_clear(self) -> None:
        with self._lock:
            self._cache.clear()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        bound = self._bind(args, kwargs)
        leaves = _leaves(bound.arguments)
        if any(isinstance(v, Tensor) for _, v in leaves):  # called from another traced function: inline it
            return self.fn(*args, **kwargs)
        entry = self._entry(bound)
        results = entry.model(*[v for _, v in leaves if _is_array(v)])
        return _rebuild(entry.outputs, lambda leaf: results[leaf.index] if isinstance(leaf, _Out) else leaf)

    def trace(self, *args: Any, **kwargs: Any) -> Graph:
        """The graph the function records for these arguments (`print()` it to read it)."""
        return self._trace(self._bind(args, kwargs))[0]

    def compile(self, *args: Any, **kwargs: Any) -> CompiledModel:
        """The compiled model for these arguments (cached like a call); `.summary()` lists its kernels."""
        return self._entry(self._bind(args, kwargs)).model

    def __repr__(self) -> str:
        return f"<ember.jit {self.fn.__qualname__}, {len(self._cache)} compiled signatures>"

    # ---- internals ------------------------------------------------------------------------------------------------
    def _entry(self, bound: inspect.BoundArguments) -> _Entry:
        key = self._key(bound)
        entry = self._cache.get(key)
        if entry is not None:
            self._hits += 1
            return entry
        with self._lock:  # one compilation per signature, even when threads race to it
            entry = self._cache.get(key)
            if entry is None:
                entry = self._cache[key] = self._compile(bound)
            return entry

    def _bind(self, args: tuple, kwargs: dict) -> inspect.BoundArguments:
        try:
            bound = self._signature.bind(*args, **kwargs)
        except TypeError as err:
            raise TypeError(f"{self.fn.__qualname__}: {err}") from None
        bound.apply_defaults()
        for name in self._symbolic:
            if not _is_array(bound.arguments[name]):
                raise TypeError(f"{self.fn.__qualname__}: argument {name!r} has symbolic dimensions, so it must "
                                f"be a numpy array, got {type(bound.arguments[name]).__name__}")
        return bound

    def _shape(self, name: str, array: np.ndarray, sizes: dict[str, Any]) -> tuple:
        axes = self._symbolic.get(name, {})
        bad = [a for a in axes if not -array.ndim <= a < array.ndim]
        if bad:
            raise TypeError(f"{self.fn.__qualname__}: symbolic axis {bad[0]} of {name!r} is out of range for "
                            f"its shape {array.shape}")
        named = {a % array.ndim: n for a, n in axes.items()}
        return tuple(sizes.setdefault(named[k], var(named[k])) if k in named else d
                     for k, d in enumerate(array.shape))

    def _key(self, bound: inspect.BoundArguments) -> tuple:
        """Structure, dtypes, shapes (symbolic sizes by name) and the values of the static arguments."""
        parts: list[Any] = []
        for name, value in bound.arguments.items():
            for path, v in _leaves(value, name):
                if _is_array(v):
                    shape = self._shape(name, np.asarray(v), {}) if path == name else np.shape(v)
                    parts.append((path, np.asarray(v).dtype.str, tuple(str(d) for d in shape)))
                    continue
                try:
                    hash(v)
                except TypeError:
                    raise TypeError(f"{self.fn.__qualname__}: argument {path!r} is a {type(v).__name__}, neither "
                                    f"an array nor hashable; ember.jit uses non-array arguments as compile-time "
                                    f"constants") from None
                parts.append((path, type(v), v))
        return tuple(parts)

    def _trace(self, bound: inspect.BoundArguments) -> tuple[Graph, Any]:
        self._traces += 1
        tracer = Tracer(self.fn.__name__)
        sizes: dict[str, Any] = {}
        traced = inspect.BoundArguments(bound.signature, dict(bound.arguments))
        for name, value in bound.arguments.items():
            traced.arguments[name] = self._inputs(tracer, name, value, sizes)
        with tracer:
            result = self.fn(*traced.args, **traced.kwargs)
        outputs: list[Any] = []
        index: dict[int, int] = {}

        def to_output(leaf: Any) -> Any:
            if not isinstance(leaf, Tensor):
                return np.array(leaf, copy=True) if _is_array(leaf) else leaf
            if leaf.tracer is not tracer:
                raise TracingError(f"{self.fn.__qualname__} returned a tensor from another trace")
            k = index.setdefault(id(leaf.value), len(outputs))
            if k == len(outputs):
                outputs.append(leaf.value)
            return _Out(k)
        structure = _rebuild(result, to_output)
        return Graph(self.fn.__name__, tracer.inputs, outputs, tracer.nodes), structure

    def _inputs(self, tracer: Tracer, name: str, value: Any, sizes: dict[str, Any]) -> Any:
        """Argument `name` with each array in it replaced by a traced input."""
        paths = iter(path for path, _ in _leaves(value, name))

        def to_input(leaf: Any) -> Any:
            path = next(paths)
            if not _is_array(leaf):
                return leaf
            array = np.asarray(leaf)
            shape = self._shape(name, array, sizes) if path == name else array.shape
            try:
                return tracer.input(path, array.dtype, shape)
            except TypeError as err:
                raise TypeError(f"{self.fn.__qualname__}: argument {path!r}: {err}") from None
        return _rebuild(value, to_input)

    def _compile(self, bound: inspect.BoundArguments) -> _Entry:
        graph, structure = self._trace(bound)
        self._compiles += 1
        return _Entry(compile_graph(graph, self.target), structure)


def jit(fn: "Callable[..., Any] | None" = None, *, target: Any = "llvm",
        symbolic: "Symbolic | None" = None) -> Any:
    """Compile `fn` on its first call for each input signature. `symbolic={"x": [0]}` makes axis 0 of argument
    `x` a symbolic size (`{"x": {0: "batch"}, "y": {0: "batch"}}` names it, so arguments can share it). Usable
    as `@ember.jit` or `@ember.jit(...)`."""
    if fn is None:
        return lambda f: JitFunction(f, target, symbolic)
    return JitFunction(fn, target, symbolic)
