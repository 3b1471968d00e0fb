"""Which CUDA target the GPU test suites run on: the same cases on the CPU emulator (default, checking mode) or,
with EMBER_TEST_CUDA_TARGET=cuda on a machine with a GPU and cupy, on the device."""
from __future__ import annotations

import os
import shutil

ENV = "EMBER_TEST_CUDA_TARGET"


def gpu_test_target() -> str:
    """The target string GPU tests build for ("cuda -emulate" unless EMBER_TEST_CUDA_TARGET says otherwise)."""
    return os.environ.get(ENV, "cuda -emulate")


def gpu_test_unavailable() -> "str | None":
    """Why GPU tests cannot run here (the reason for a skip), or None."""
    from ..compiler.target import parse_target
    if parse_target(gpu_test_target()).emulate:
        return None if shutil.which("g++") else "the CUDA emulator needs g++"
    try:
        import cupy  # noqa: PLC0415 - optional
        return None if cupy.cuda.runtime.getDeviceCount() > 0 else "no CUDA device"
    except Exception as err:  # noqa: BLE001 - no cupy, no driver
        return f"{ENV}={gpu_test_target()!r} needs cupy and an NVIDIA GPU ({type(err).__name__})"
