"""The CPU backend: loop IR -> LLVM IR (llvmlite) -> optimised object code -> a ctypes-callable kernel."""
from __future__ import annotations

import ctypes

from ...compiler.target import Target
from ...ir.loops import PrimFunc
from .codegen import ENTRY, LLVMCodegen
from .exprs import CodegenError
from .jit import LoadedObject, assembly, optimize, thread_pool, versions

__all__ = ["LLVMBackend", "CodegenError", "versions", "thread_pool"]


class LLVMBackend:
    kind = "llvm"
    source_kinds = ("llvm", "llvm-opt", "asm")

    def toolchain(self, target: Target) -> str:
        return versions()

    def compile(self, func: PrimFunc, target: Target) -> dict[str, "bytes | str"]:
        text = LLVMCodegen(func, target.get("mtriple"), target.get("threads"), target.get("fastmath"),
                           target.cpu_has("avx512f")).generate()
        opt_ir, obj = optimize(text, target)
        return {"llvm": text, "llvm-opt": opt_ir, "object": obj}

    def load(self, parts: dict[str, "bytes | str"], func_args: int, size_vars: int, target: Target):
        thread_pool()
        loaded = LoadedObject(parts["object"], target)  # type: ignore[arg-type]
        proto = ctypes.CFUNCTYPE(None, *([ctypes.c_void_p] * func_args + [ctypes.c_int64] * size_vars))
        fn = proto(loaded.address(ENTRY))

        def launch(pointers: list[int], sizes: list[int], _keep=loaded) -> None:
            fn(*pointers, *sizes)
        return launch

    def source(self, parts: dict[str, "bytes | str"], kind: str, target: Target) -> str:
        if kind == "asm":
            return assembly(parts["llvm-opt"], target)  # type: ignore[arg-type]
        return parts[kind]  # type: ignore[return-value]
