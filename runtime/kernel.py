"""A compiled kernel as a Python callable: checks arguments against the signature, binds symbolic sizes,
allocates outputs when they are not given, and launches the backend's code."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ..ir.dtype import DType
from ..ir.expr import Expr, SizeVar, Var
from ..ir.symbolic import evaluate


@dataclass(frozen=True)
class Param:
    name: str
    shape: tuple[Expr, ...]
    dtype: DType
    is_output: bool


class Kernel:
    """Call as `f(*inputs)` to get new output arrays, or `f(*inputs, *outputs)` to write into given ones."""

    def __init__(self, name: str, params: list[Param], size_vars: list[SizeVar], launch: Callable,
                 sources: Callable[[str], str], key: str, target):
        self.name, self.params, self.size_vars, self._launch = name, params, size_vars, launch
        self._sources, self.key, self.target = sources, key, target
        self.inputs = [p for p in params if not p.is_output]
        self.outputs = [p for p in params if p.is_output]
        self._np_dtypes = [p.dtype.numpy for p in params]

    def source(self, kind: str = "llvm") -> str:
        """The code at one stage: 'tensor', 'loops', or the backend's ('llvm', 'llvm-opt', 'asm')."""
        return self._sources(kind)

    def __repr__(self) -> str:
        sig = ", ".join(f"{p.name}: {p.dtype}[{', '.join(map(str, p.shape))}]" for p in self.params)
        return f"<ember.Kernel {self.name}({sig}) target={self.target}>"

    def __call__(self, *arrays: Any) -> Any:
        n_in, n_all = len(self.inputs), len(self.params)
        if len(arrays) not in (n_in, n_all):
            raise TypeError(f"kernel {self.name!r} takes {n_in} inputs ({', '.join(p.name for p in self.inputs)}) "
                            f"or {n_all} arrays including outputs, got {len(arrays)}")
        allocate = len(arrays) == n_in
        sizes: dict[str, int] = {}
        given = iter(arrays)
        bound: list[np.ndarray | None] = []
        for p in self.params:
            if allocate and p.is_output:
                bound.append(None)
                continue
            bound.append(self._check(p, next(given), sizes))
        for v in self.size_vars:
            if v.name not in sizes:
                raise ValueError(f"kernel {self.name!r}: size {v.name!r} is not the whole extent of any argument "
                                 f"dimension, so it cannot be bound from the arrays")
        for k, p in enumerate(self.params):
            shape = tuple(evaluate(d, sizes) for d in p.shape)
            arr = bound[k]
            if arr is None:
                bound[k] = np.empty(shape, dtype=self._np_dtypes[k])
            elif arr.shape != shape:
                raise ValueError(f"kernel {self.name!r}: argument {p.name!r} has shape {arr.shape}, expected "
                                 f"{shape} (from {_sig_shape(p)} with {_sizes_str(sizes)})")
        final = self._separate_outputs(bound)
        self._launch([a.ctypes.data for a in final], [sizes[v.name] for v in self.size_vars])
        if allocate:
            outs = [a for a, p in zip(final, self.params) if p.is_output]
            return outs[0] if len(outs) == 1 else tuple(outs)
        return None

    def _check(self, p: Param, arr: Any, sizes: dict[str, int]) -> np.ndarray:
        if not isinstance(arr, np.ndarray):
            if p.is_output:
                raise TypeError(f"kernel {self.name!r}: output {p.name!r} must be a numpy array, got "
                                f"{type(arr).__name__}")
            arr = np.asarray(arr)
        if arr.dtype != p.dtype.numpy:
            raise TypeError(f"kernel {self.name!r}: argument {p.name!r} has dtype {arr.dtype}, expected {p.dtype}")
        if arr.ndim != len(p.shape):
            raise ValueError(f"kernel {self.name!r}: argument {p.name!r} has {arr.ndim} dimensions "
                             f"{arr.shape}, expected {len(p.shape)} {_sig_shape(p)}")
        if p.is_output:
            if not arr.flags.c_contiguous or not arr.flags.writeable:
                raise ValueError(f"kernel {self.name!r}: output {p.name!r} must be a writeable C-contiguous array")
        elif not arr.flags.c_contiguous:
            arr = np.require(arr, requirements="C")
        for dim, n in zip(p.shape, arr.shape):
            if isinstance(dim, Var):
                prev = sizes.setdefault(dim.name, n)
                if prev != n:
                    raise ValueError(f"kernel {self.name!r}: size {dim.name!r} is {prev} from an earlier argument "
                                     f"but {n} in {p.name!r} {arr.shape}")
        return arr

    def _separate_outputs(self, arrays: list) -> list[np.ndarray]:
        """Kernels assume outputs alias nothing (LLVM noalias); copy inputs that overlap an output."""
        outs = [a for a, p in zip(arrays, self.params) if p.is_output]
        if not outs:
            return arrays
        final = []
        for a, p in zip(arrays, self.params):
            if not p.is_output and any(np.may_share_memory(a, o) for o in outs):
                a = a.copy()
            final.append(a)
        for i, a in enumerate(outs):
            if any(np.may_share_memory(a, b) for b in outs[i + 1:]):
                raise ValueError(f"kernel {self.name!r}: two output arrays share memory")
        return final


def _sig_shape(p: Param) -> str:
    return "[" + ", ".join(map(str, p.shape)) + "]"


def _sizes_str(sizes: dict[str, int]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sizes.items()) or "no symbolic sizes"
