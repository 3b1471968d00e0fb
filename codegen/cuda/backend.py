"""The CUDA backend: loop IR -> CUDA C -> (emulated shared object | cubin), and launchers for both.

With `-emulate` the very source NVRTC would compile runs on the CPU through the project's emulator and the
launcher takes host pointers, exactly like the llvm backend's. Without it, cupy compiles and launches on the
current device; cupy is imported only when a CUDA kernel is built, so `import ember` never needs it.
"""
from __future__ import annotations

import ctypes
import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np

from ...compiler.target import Target, sm_number
from ...ir.loops import PrimFunc
from .. import BackendUnavailable
from .launch import MAX_BLOCK, MAX_GRID, LaunchConfigError, eval_json
from .render import render
from .tensorcore import check_arch

ASYNC_COPY_ARCH = 80  # cp.async (global to shared without registers) from Ampere on
NO_DEVICE = ("the cuda target needs cupy and an NVIDIA GPU to run kernels ({problem}); install cupy "
             "(pip install ember[cuda]) on a machine with a GPU, or add -emulate to the target "
             "(e.g. \"cuda -emulate\") to run the same CUDA code on the CPU emulator")


def cupy_or_raise():
    """cupy with a usable device, or one clear BackendUnavailable saying what is missing."""
    try:
        import cupy  # noqa: PLC0415 (optional dependency)
    except ImportError:
        raise BackendUnavailable(NO_DEVICE.format(problem="cupy is not installed")) from None
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as err:  # cupy raises its own CUDARuntimeError when no driver is present
        raise BackendUnavailable(NO_DEVICE.format(problem=f"no CUDA device is usable: {err}")) from None
    if count == 0:
        raise BackendUnavailable(NO_DEVICE.format(problem="no CUDA device was found"))
    return cupy


def on_current_device(cupy, arr, what: str):
    """`arr` if its memory is on cupy's current GPU, where kernels launch; an array on another GPU is refused
    before any launch (the kernel would fault or read another device's addresses)."""
    current, where = cupy.cuda.runtime.getDevice(), arr.device.id
    if where != current:
        raise ValueError(f"{what} is on GPU {where}, but kernels run on GPU {current} (cupy's current device): copy "
                         f"it there (`with cupy.cuda.Device({current}): x = cupy.asarray(x)`) or make GPU {where} "
                         f"current")
    return arr


def kernel_specs(launches: dict):
    from .emulate import KernelParam, KernelSpec
    return [KernelSpec(k["name"], tuple(KernelParam(p["name"], p["kind"], p["ctype"]) for p in k["params"]))
            for k in launches["kernels"]]


class CUDABackend:
    kind = "cuda"
    source_kinds = ("cuda", "ptx", "launches")

    def model_class(self, target: Target) -> type:
        """Emulated models run on host arrays; on a GPU, weights and intermediates live in device memory."""
        from ...runtime.executor import CompiledModel
        if target.emulate:
            return CompiledModel
        from .device_model import DeviceModel
        return DeviceModel

    def kernel_class(self, target: Target) -> type:
        """Emulated kernels take numpy arrays like CPU ones; on a GPU they take device arrays."""
        from ...runtime.kernel import Kernel
        if target.emulate:
            return Kernel
        from .device_kernel import DeviceKernel
        return DeviceKernel

    def toolchain(self, target: Target) -> str:
        if target.emulate:
            from .emulate import toolchain
            return f"emulator: {toolchain()}"
        try:
            cupy = cupy_or_raise()
        except BackendUnavailable:
            return "cupy: absent"
        return f"cupy {cupy.__version__}; nvrtc {cupy.cuda.nvrtc.getVersion()}; runtime " \
               f"{cupy.cuda.runtime.runtimeGetVersion()}"

    def compile(self, func: PrimFunc, target: Target) -> dict[str, "bytes | str"]:
        arch = str(target.get("arch"))
        check_arch(func.body, arch)
        module = render(func, int(target.get("max-threads-per-block")),  # type: ignore[arg-type]
                        int(target.get("max-shared-memory-per-block")),  # type: ignore[arg-type]
                        async_copies=sm_number(arch) >= ASYNC_COPY_ARCH)
        parts: dict[str, "bytes | str"] = {"cuda": module.source, "launches": json.dumps(module.launches)}
        if target.emulate:
            from .emulate import compile_module
            parts["emulated"] = compile_module(module.source, kernel_specs(module.launches))
        else:
            cupy_or_raise()
            parts["cubin"] = _cubin_bytes(module.source, str(sm_number(arch)))
        return parts

    def load(self, parts: dict[str, "bytes | str"], func_args: int, size_vars: int, target: Target):
        launches = json.loads(parts["launches"])  # type: ignore[arg-type]
        if target.emulate:
            from .emulate import EmulatedModule
            module = EmulatedModule(parts["emulated"], kernel_specs(launches))  # type: ignore[arg-type]
            return Launcher(launches, module.launch, np.empty, lambda address, nbytes: (address, nbytes), host_stage)
        from .device_kernel import device_launcher
        return device_launcher(parts, launches)

    def source(self, parts: dict[str, "bytes | str"], kind: str, target: Target) -> str:
        if kind == "ptx":
            return ptx(parts["cuda"], str(target.get("arch")))  # type: ignore[arg-type]
        return parts[kind]  # type: ignore[return-value]


def _cubin_bytes(source: str, arch: str) -> bytes:
    """The cubin NVRTC makes for this source (stored in the cache so a warm start compiles nothing)."""
    import cupy  # noqa: PLC0415
    from cupy.cuda import nvrtc  # noqa: PLC0415
    options = ["-std=c++17", f"--gpu-architecture=sm_{arch}"]
    cuda_path = cupy.cuda.get_cuda_path()
    if cuda_path:
        options.append(f"-I{Path(cuda_path) / 'include'}")
    prog = nvrtc.createProgram(source, "ember.cu", [], [])
    try:
        try:
            nvrtc.compileProgram(prog, options)
        except nvrtc.NVRTCError as err:
            raise RuntimeError(f"NVRTC rejected the generated CUDA source: {err}\n{nvrtc.getProgramLog(prog)}") from None
        return nvrtc.getCUBIN(prog)
    finally:
        nvrtc.destroyProgram(prog)


def ptx(source: str, arch: str) -> str:
    """PTX through nvcc (the same text NVRTC would compile)."""
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        raise BackendUnavailable("showing PTX needs nvcc (the CUDA toolkit) on PATH; f.source('cuda') shows the "
                                 "CUDA C without it")
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "kernel.cu"
        src.write_text(source)
        out = Path(tmp) / "kernel.ptx"
        run = subprocess.run([nvcc, "-ptx", f"-arch={arch}", "-std=c++17", "-o", str(out), str(src)],
                             capture_output=True, text=True)
        if run.returncode != 0:
            raise RuntimeError(f"nvcc -ptx failed:\n{run.stderr}")
        return out.read_text()


class Launcher:
    """Runs a kernel's launches in order: sizes -> grids (checked against the limits), temporaries, arguments.

    The memory side is pluggable: host pointers and numpy temporaries for the emulator, device pointers and cupy
    temporaries on a GPU. `stage(address, nbytes)` (host only) gives an aligned copy of an argument a float4
    kernel cannot use in place, and a function writing it back."""

    def __init__(self, launches: dict, launch: Callable, new_temp: Callable, pointer: Callable,
                 stage: "Callable | None" = None):
        self.launches, self._launch, self._new_temp, self._pointer = launches, launch, new_temp, pointer
        self._stage = stage
        self.itemsizes = [np.dtype(a["dtype"]).itemsize for a in launches["args"]]

    def __call__(self, pointers: list[int], sizes: list[int]) -> None:
        env = dict(zip(self.launches["size_vars"], sizes))
        nbytes = []
        for arg, item in zip(self.launches["args"], self.itemsizes):
            n = item
            for d in arg["shape"]:
                n *= eval_json(d, env)
            nbytes.append(n)
        configs = [launch_config(k, env, self.launches) for k in self.launches["kernels"]]
        temps = [self._new_temp(max(eval_json(t["size"], env), 1), t["dtype"]) for t in self.launches["temporaries"]]
        pointers = list(pointers)
        write_back = {}
        for kernel in self.launches["kernels"]:
            for p in kernel["params"]:
                if "arg" in p and p["name"] in kernel["aligned16"] and pointers[p["arg"]] % 16:
                    k = p["arg"]
                    if self._stage is None:
                        raise ValueError(f"kernel {kernel['name']}: argument {self.launches['args'][k]['name']!r} "
                                         f"is not 16-byte aligned, but the kernel accesses it 16 bytes at a time "
                                         f"(float4, cp.async); pass "
                                         f"an aligned array (a fresh copy)")
                    pointers[k], write_back[k] = self._stage(pointers[k], nbytes[k])
        for kernel, (grid, block) in zip(self.launches["kernels"], configs):
            if 0 in grid or 0 in block:
                continue
            args = []
            for p in kernel["params"]:
                if "arg" in p:
                    args.append(self._pointer(pointers[p["arg"]], nbytes[p["arg"]]))
                elif "temp" in p:
                    args.append(temps[p["temp"]])
                else:
                    args.append(sizes[p["size"]])
            self._launch(kernel["name"], grid, block, args)
        for copy_back in write_back.values():
            copy_back()


def host_stage(address: int, nbytes: int) -> tuple[int, Callable[[], None]]:
    """A 16-byte aligned host copy of `nbytes` at `address`, and the function that copies it back."""
    raw = np.empty(nbytes + 16, np.uint8)
    start = raw.ctypes.data + (-raw.ctypes.data) % 16
    ctypes.memmove(start, address, nbytes)

    def copy_back(_keep=raw) -> None:
        ctypes.memmove(address, start, nbytes)
    return start, copy_back


def launch_config(kernel: dict, env: dict[str, int], launches: dict) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Grid and block of one launch for these sizes, checked against CUDA's and the target's limits."""
    grid = tuple(eval_json(e, env) for e in kernel["grid"])
    block = tuple(eval_json(e, env) for e in kernel["block"])
    name = kernel["name"]
    limit = launches["max_threads_per_block"]
    threads = block[0] * block[1] * block[2]
    if threads > limit:
        raise LaunchConfigError(f"kernel {name}: a block of {block[0]} x {block[1]} x {block[2]} = {threads} threads "
                                f"exceeds max-threads-per-block={limit} (with sizes {env})")
    for axis, g, b in zip("xyz", grid, block):
        if g > MAX_GRID[axis]:
            raise LaunchConfigError(f"kernel {name}: gridDim.{axis}={g} exceeds CUDA's limit of {MAX_GRID[axis]} "
                                    f"(with sizes {env}); bind a larger thread tile or another block index")
        if b > MAX_BLOCK[axis]:
            raise LaunchConfigError(f"kernel {name}: blockDim.{axis}={b} exceeds CUDA's limit of {MAX_BLOCK[axis]}")
    return grid, block
