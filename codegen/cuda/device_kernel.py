"""Running CUDA kernels on a real GPU through cupy: the device launcher and a Kernel taking device arrays.

A DeviceKernel accepts cupy arrays (no copy), anything exposing `__cuda_array_interface__` or DLPack (torch
tensors, no copy) and numpy arrays (copied to the device, results copied back and returned as numpy)."""
from __future__ import annotations

from typing import Any

import numpy as np

from ...ir.expr import Var
from ...ir.symbolic import evaluate
from ...runtime.kernel import Kernel, Param
from .backend import Launcher, cupy_or_raise, on_current_device


def device_launcher(parts: dict, launches: dict) -> Launcher:
    """Load the cached cubin and launch its kernels on cupy's current stream."""
    cupy = cupy_or_raise()
    module = cupy.cuda.function.Module()
    module.load(bytes(parts["cubin"]))
    funcs = {k["name"]: module.get_function(k["name"]) for k in launches["kernels"]}

    def launch(name: str, grid, block, args) -> None:
        packed = [np.int64(a) if isinstance(a, int) else a for a in args]
        funcs[name](grid, block, packed, stream=cupy.cuda.get_current_stream())

    def pointer(address: int, nbytes: int):
        attrs = cupy.cuda.runtime.pointerGetAttributes(address)
        if attrs.type not in (2, 3):  # cudaMemoryTypeDevice, cudaMemoryTypeManaged
            raise ValueError(f"a CUDA kernel received a host pointer ({address:#x}): pass device arrays (cupy, "
                             f"__cuda_array_interface__, DLPack) or numpy arrays through the kernel's own call")
        return np.uint64(address)

    def new_temp(size: int, dtype: str):
        return cupy.empty(size, dtype=dtype)

    launch_fn = Launcher(launches, launch, new_temp, pointer)
    launch_fn.keep = module  # type: ignore[attr-defined]
    return launch_fn


class DeviceKernel(Kernel):
    """`f(*inputs)` or `f(*inputs, *outputs)` with device arrays; numpy inputs make numpy results."""

    def __call__(self, *arrays: Any) -> Any:
        cupy = cupy_or_raise()
        n_in, n_all = len(self.inputs), len(self.params)
        if len(arrays) not in (n_in, n_all):
            raise TypeError(f"kernel {self.name!r} takes {n_in} inputs ({', '.join(p.name for p in self.inputs)}) "
                            f"or {n_all} arrays including outputs, got {len(arrays)}")
        allocate = len(arrays) == n_in
        host = any(isinstance(a, np.ndarray) for a in arrays)
        sizes: dict[str, int] = {}
        given = iter(arrays)
        bound: list[Any] = []
        originals: list[Any] = []
        for p in self.params:
            if allocate and p.is_output:
                bound.append(None)
                originals.append(None)
                continue
            arr = next(given)
            originals.append(arr)
            bound.append(self._to_device(cupy, p, arr, sizes))
        for v in self.size_vars:
            if v.name not in sizes:
                raise ValueError(f"kernel {self.name!r}: size {v.name!r} cannot be bound from the arrays")
        for k, p in enumerate(self.params):
            shape = tuple(evaluate(d, sizes) for d in p.shape)
            if bound[k] is None:
                bound[k] = cupy.empty(shape, dtype=p.dtype.numpy)
            elif tuple(bound[k].shape) != shape:
                raise ValueError(f"kernel {self.name!r}: argument {p.name!r} has shape {tuple(bound[k].shape)}, "
                                 f"expected {shape}")
        self._launch([int(a.data.ptr) for a in bound], [sizes[v.name] for v in self.size_vars])
        for arr, orig, p in zip(bound, originals, self.params):
            if p.is_output and isinstance(orig, np.ndarray):
                orig[...] = cupy.asnumpy(arr)
        if not allocate:
            return None
        outs = [cupy.asnumpy(a) if host else a for a, p in zip(bound, self.params) if p.is_output]
        return outs[0] if len(outs) == 1 else tuple(outs)

    def _to_device(self, cupy, p: Param, arr: Any, sizes: dict[str, int]):
        if isinstance(arr, np.ndarray):
            dev = cupy.asarray(np.ascontiguousarray(arr))
        elif isinstance(arr, cupy.ndarray) or hasattr(arr, "__cuda_array_interface__"):
            dev = cupy.asarray(arr)
        elif hasattr(arr, "__dlpack__"):
            dev = cupy.from_dlpack(arr)
        else:
            raise TypeError(f"kernel {self.name!r}: argument {p.name!r} is a {type(arr).__name__}; pass a cupy or "
                            f"numpy array, or an object with __cuda_array_interface__ or __dlpack__ on the GPU")
        on_current_device(cupy, dev, f"kernel {self.name!r}: argument {p.name!r}")
        if dev.dtype != p.dtype.numpy:
            raise TypeError(f"kernel {self.name!r}: argument {p.name!r} has dtype {dev.dtype}, expected {p.dtype}")
        if dev.ndim != len(p.shape):
            raise ValueError(f"kernel {self.name!r}: argument {p.name!r} has {dev.ndim} dimensions, expected "
                             f"{len(p.shape)}")
        if not dev.flags.c_contiguous:
            if p.is_output:
                raise ValueError(f"kernel {self.name!r}: output {p.name!r} must be C-contiguous")
            dev = cupy.ascontiguousarray(dev)
        for dim, n in zip(p.shape, dev.shape):
            if isinstance(dim, Var):
                prev = sizes.setdefault(dim.name, int(n))
                if prev != n:
                    raise ValueError(f"kernel {self.name!r}: size {dim.name!r} is {prev} from an earlier argument "
                                     f"but {n} in {p.name!r}")
        return dev
