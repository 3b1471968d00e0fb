"""Backends as plugins: each turns loop IR into something loadable for one target kind.

A backend implements `toolchain` (versions for the cache key), `compile` (loop IR -> artifact parts, cached by the caller), `load` (artifact -> a callable
taking raw pointers and sizes) and `source` (inspection). Frontends never import a backend directly.
"""
from __future__ import annotations

from typing import Callable, Protocol

from ..compiler.target import Target
from ..ir.loops import PrimFunc


class BackendUnavailable(RuntimeError):
    """The target's backend cannot run here (not implemented yet, or missing its toolchain/device)."""


class Launcher(Protocol):
    def __call__(self, pointers: list[int], sizes: list[int]) -> None: ...


class Backend(Protocol):
    kind: str
    source_kinds: tuple[str, ...]

    def compile(self, func: PrimFunc, target: Target) -> dict[str, "bytes | str"]: ...

    def load(self, parts: dict[str, "bytes | str"], func_args: int, size_vars: int, target: Target) -> Launcher: ...

    def source(self, parts: dict[str, "bytes | str"], kind: str, target: Target) -> str: ...

    # Optional: `kernel_class(target) -> type[Kernel]` and `model_class(target) -> type[CompiledModel]` when kernels
    # and compiled models must take other arrays than numpy's (device arrays); without them they take host arrays.

    def toolchain(self, target: Target) -> str:
        """Versions of every tool that shapes the artifact (compiler, runtime headers): part of the cache key."""
        ...


_FACTORIES: dict[str, Callable[[], Backend]] = {}
_INSTANCES: dict[str, Backend] = {}


def register_backend(kind: str, factory: Callable[[], Backend]) -> None:
    _FACTORIES[kind] = factory


def get_backend(target: Target) -> Backend:
    if target.kind not in _INSTANCES:
        if target.kind not in _FACTORIES:
            raise BackendUnavailable(f"the {target.kind!r} backend is not available in this version of ember; "
                                     f"available: {', '.join(sorted(_FACTORIES))}")
        _INSTANCES[target.kind] = _FACTORIES[target.kind]()
    return _INSTANCES[target.kind]


def _llvm() -> Backend:
    from .llvm import LLVMBackend
    return LLVMBackend()


def _cuda() -> Backend:
    from .cuda import CUDABackend
    return CUDABackend()


register_backend("llvm", _llvm)


def _ascend() -> Backend:
    from .ascend import AscendBackend
    return AscendBackend()


register_backend("ascend", _ascend)
register_backend("cuda", _cuda)
