"""A compiled model on the GPU: weights uploaded once, intermediates in one device arena planned ahead of time
(the host executor's plan), every kernel launched back to back on cupy's current stream with no host round trip.

Inputs may be cupy arrays or anything with `__cuda_array_interface__` or DLPack (used in place), or numpy arrays
(copied to the device). Outputs are cupy arrays; when any input was a numpy array they are copied back and
returned as numpy, like `DeviceKernel`."""
from __future__ import annotations

from typing import Any

import numpy as np

from ...runtime.executor import ALIGN, CompiledModel, TensorSpec
from .backend import cupy_or_raise, on_current_device


def on_device(value: Any) -> bool:
    return hasattr(value, "__cuda_array_interface__") or (hasattr(value, "__dlpack__")
                                                          and not isinstance(value, np.ndarray))


class DeviceModel(CompiledModel):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._device_consts: "list | None" = None
        self._device_const_ptrs: list[int] = []

    def _check_input(self, spec: TensorSpec, value: Any, want: tuple):
        cupy = cupy_or_raise()
        if not on_device(value):
            return cupy.asarray(super()._check_input(spec, value, want))
        arr = cupy.asarray(value) if hasattr(value, "__cuda_array_interface__") else cupy.from_dlpack(value)
        on_current_device(cupy, arr, f"model {self.name!r}: input {spec.name!r}")
        if arr.dtype != spec.dtype.numpy:
            raise TypeError(f"model {self.name!r}: input {spec.name!r} must be {spec.dtype}, got {arr.dtype}")
        if arr.ndim != len(spec.shape) or any(isinstance(w, int) and w != g for w, g in zip(spec.shape, arr.shape)):
            raise ValueError(f"model {self.name!r}: input {spec.name!r} must have shape "
                             f"({', '.join(map(str, spec.shape))}), got {tuple(arr.shape)}")
        return cupy.ascontiguousarray(arr)

    @staticmethod
    def _deliver(outs: list, given: tuple) -> list:
        if all(on_device(v) for v in given):
            return outs
        cupy = cupy_or_raise()
        return [cupy.asnumpy(o) for o in outs]

    @staticmethod
    def _empty(shape: tuple, dtype: np.dtype):
        return cupy_or_raise().empty(shape, dtype)

    @staticmethod
    def _address(a: Any) -> int:
        return int(a.data.ptr)

    @staticmethod
    def _copy(a: Any):
        return cupy_or_raise().array(a, copy=True)

    @staticmethod
    def _sync() -> None:
        cupy_or_raise().cuda.get_current_stream().synchronize()

    def _const_arrays(self) -> list:
        if self._device_consts is None:
            cupy = cupy_or_raise()
            self._device_consts = [cupy.asarray(np.ascontiguousarray(c)) for c in self.consts]
            self._device_const_ptrs = [self._address(c) for c in self._device_consts]
        return self._device_consts

    def _const_addresses(self) -> list[int]:
        self._const_arrays()
        return self._device_const_ptrs

    def _new_arena(self, nbytes: int) -> tuple[Any, int]:
        raw = cupy_or_raise().empty(nbytes + ALIGN, np.uint8)
        return raw, (-int(raw.data.ptr)) % ALIGN
