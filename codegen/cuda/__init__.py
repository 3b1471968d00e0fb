"""The CUDA backend: loop IR rendered as CUDA C, run on a GPU through cupy or on the CPU emulator (-emulate)."""
from __future__ import annotations

from .backend import CUDABackend, cupy_or_raise
from .exprs import CudaCodegenError
from .launch import LaunchConfigError
from .render import CudaModule, render

__all__ = ["CUDABackend", "CudaCodegenError", "CudaModule", "LaunchConfigError", "cupy_or_raise", "render"]
