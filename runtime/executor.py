"""A compiled model at run time: a list of kernel launches over a static memory plan.

Intermediate values live in one arena at offsets chosen ahead of time (values whose lifetimes do not overlap
share memory); constants are held once; graph inputs and outputs are bound per call. Running is a tight loop
over prepared pointer lists. Each thread gets its own arena, so one model can serve several threads at once.
Models with symbolic sizes allocate intermediates per call instead (sizes are only known then)."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..ir.dtype import DType
from ..ir.symbolic import evaluate
from .kernel import Kernel

ALIGN = 64


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: DType
    shape: tuple  # ints, or symbolic sizes (Expr) bound from the inputs

    @property
    def static(self) -> bool:
        return all(isinstance(d, int) for d in self.shape)

    def __str__(self) -> str:
        return f"{self.name}: {self.dtype}[{', '.join(map(str, self.shape))}]"


# Where a kernel argument comes from: ("input", k), ("output", k), ("const", k) or ("temp", k).
Slot = tuple[str, int]


@dataclass
class Step:
    kernel: Kernel
    args: list[Slot]
    label: str  # the graph nodes it runs, for errors and profiles


class ExecutionError(RuntimeError):
    pass


class CompiledModel:
    """Call with numpy arrays (positionally or by input name); returns the outputs as a list of arrays, or use
    `run(feeds)` for a name -> array dict."""

    def __init__(self, name: str, inputs: list[TensorSpec], outputs: list[TensorSpec], consts: list[np.ndarray],
                 temps: list[TensorSpec], steps: list[Step], output_slots: list[Slot], target, meta: dict):
        self.name, self.inputs, self.outputs = name, inputs, outputs
        self.consts, self.temps, self.steps = consts, temps, steps
        self.output_slots, self.target, self.meta = output_slots, target, meta
        self.static = all(s.static for s in inputs + outputs + temps)
        self.offsets, self.planned_peak_bytes = plan_memory(temps, steps, meta.get("aliases", ())) \
            if self.static else ([], 0)
        self._local = threading.local()
        self._const_ptrs = [c.ctypes.data for c in consts]
        # Per-call work is kept to checks and pointer lists: numpy dtypes and static shapes are resolved once.
        self._in_np = [(s.dtype.numpy, tuple(s.shape) if s.static else None) for s in inputs]
        self._out_np = [(s.dtype.numpy, tuple(s.shape) if s.static else None) for s in outputs]

    # ---- description ----------------------------------------------------------------------------------------------
    def __repr__(self) -> str:
        ins = ", ".join(map(str, self.inputs))
        outs = ", ".join(map(str, self.outputs))
        return f"<ember.CompiledModel {self.name}({ins}) -> ({outs}), {len(self.steps)} kernels, target={self.target.short()}>"

    def summary(self) -> str:
        lines = [repr(self), f"  weights: {sum(c.nbytes for c in self.consts) / 1e6:.2f} MB in {len(self.consts)} "
                 f"constants", f"  planned peak of intermediates: {self.planned_peak_bytes / 1e6:.2f} MB "
                 f"(without reuse: {sum(_nbytes(t) for t in self.temps if t.static) / 1e6:.2f} MB)"]
        lines += [f"  kernel {k}: {s.kernel.name} <- {s.label}" for k, s in enumerate(self.steps)]
        return "\n".join(lines)

    def save(self, path: Any) -> None:
        """Write this model to one file (a str or os.PathLike path) that `ember.load` runs without recompiling."""
        from .saved import save
        save(self, path)

    # ---- running --------------------------------------------------------------------------------------------------
    def __call__(self, *args: Any, **feeds: Any) -> list[np.ndarray]:
        return self._deliver(self._execute(self._bind(args, feeds)), (*args, *feeds.values()))

    def run(self, feeds: "dict[str, Any] | Sequence[Any]") -> dict[str, np.ndarray]:
        given = tuple(feeds.values()) if isinstance(feeds, dict) else tuple(feeds)
        arrays = self._bind_feeds(feeds)
        return {spec.name: out for spec, out in zip(self.outputs, self._deliver(self._execute(arrays), given))}

    def _bind_feeds(self, feeds: "dict[str, Any] | Sequence[Any]") -> list[np.ndarray]:
        """Inputs given by name (a dict) or in order (a sequence), checked."""
        return self._bind((), feeds) if isinstance(feeds, dict) else self._bind(tuple(feeds), {})

    def _bind(self, args: tuple, feeds: dict) -> list[np.ndarray]:
        if args and feeds:
            raise TypeError(f"model {self.name!r}: pass inputs either positionally or by name, not both")
        names = [s.name for s in self.inputs]
        if feeds:
            unknown = sorted(set(feeds) - set(names))
            if unknown:
                raise TypeError(f"model {self.name!r} has no input named {', '.join(map(repr, unknown))}; its "
                                f"inputs are {', '.join(map(repr, names))}")
            missing = [n for n in names if n not in feeds]
            if missing:
                raise TypeError(f"model {self.name!r}: missing input {', '.join(map(repr, missing))}")
            args = tuple(feeds[n] for n in names)
        if len(args) != len(self.inputs):
            raise TypeError(f"model {self.name!r} takes {len(self.inputs)} inputs ({', '.join(map(repr, names))}), "
                            f"got {len(args)}")
        return [self._check_input(spec, a, want) for spec, a, want in zip(self.inputs, args, self._in_np)]

    def _check_input(self, spec: TensorSpec, value: Any, want: tuple) -> np.ndarray:
        dtype, shape = want
        if type(value) is np.ndarray and value.dtype == dtype and value.shape == shape \
                and value.flags.c_contiguous:
            return value  # the common case, checked in one step
        arr = np.asarray(value)
        if arr.dtype != spec.dtype.numpy:
            if arr.dtype.kind == spec.dtype.numpy.kind and np.can_cast(arr.dtype, spec.dtype.numpy, "same_kind") \
                    and not isinstance(value, np.ndarray):
                arr = arr.astype(spec.dtype.numpy)
            else:
                raise TypeError(f"model {self.name!r}: input {spec.name!r} must be {spec.dtype}, got {arr.dtype}")
        if arr.ndim != len(spec.shape):
            raise ValueError(f"model {self.name!r}: input {spec.name!r} must have rank {len(spec.shape)} "
                             f"(shape {_shape_str(spec.shape)}), got shape {arr.shape}")
        for k, (want, got) in enumerate(zip(spec.shape, arr.shape)):
            if isinstance(want, int) and want != got:
                raise ValueError(f"model {self.name!r}: input {spec.name!r} must have shape {_shape_str(spec.shape)}, "
                                 f"got {arr.shape} (dimension {k})")
        return np.require(arr, requirements="C")  # keeps 0-d arrays 0-d

    def _sizes(self, arrays: list[np.ndarray]) -> dict[str, int]:
        sizes: dict[str, int] = {}
        for spec, arr in zip(self.inputs, arrays):
            for want, got in zip(spec.shape, arr.shape):
                if not isinstance(want, int):
                    name = getattr(want, "name", None)
                    if name is None:
                        continue
                    if sizes.setdefault(name, got) != got:
                        raise ValueError(f"model {self.name!r}: size {name!r} is {sizes[name]} in one input and "
                                         f"{got} in input {spec.name!r}")
        return sizes

    def _execute(self, arrays: list, times: "list[list[float]] | None" = None) -> list:
        """Run every kernel; with `times`, each kernel's wall time (after a device sync) is appended to its list."""
        if self.static:
            temps, temp_ptrs = self._arena()
            outs = [self._empty(shape, dtype) for dtype, shape in self._out_np]
            given = {"input": [self._address(a) for a in arrays], "output": [self._address(o) for o in outs]}
            for k, (launch, fixed, holes) in enumerate(self._plan(temp_ptrs)):
                args = fixed.copy()
                for pos, kind, slot in holes:
                    args[pos] = given[kind][slot]
                if times is None:
                    launch(args, [])
                else:
                    self._timed(times[k], launch, args, [])
        else:
            sizes = self._sizes(arrays)
            temps = [self._empty(_concrete(t.shape, sizes), t.dtype.numpy) for t in self.temps]
            outs = [self._empty(_concrete(s.shape, sizes), s.dtype.numpy) for s in self.outputs]
            ptrs = {"input": [self._address(a) for a in arrays], "output": [self._address(o) for o in outs],
                    "const": self._const_addresses(), "temp": [self._address(t) for t in temps]}
            for k, step in enumerate(self.steps):
                size_args = [sizes[v.name] for v in step.kernel.size_vars] if step.kernel.size_vars else []
                launch_args = [ptrs[kind][slot] for kind, slot in step.args]
                if times is None:
                    step.kernel._launch(launch_args, size_args)
                else:
                    self._timed(times[k], step.kernel._launch, launch_args, size_args)
        result = []
        for kind, k in self.output_slots:
            if kind == "output":
                result.append(outs[k])
            else:  # a graph output that is an input or a constant: return a copy the caller owns
                src = {"input": arrays, "const": self._const_arrays(), "temp": temps}[kind][k]
                result.append(self._copy(src))
        return result

    def profile(self, feeds: "dict[str, Any] | Sequence[Any]", runs: int = 10, warmup: int = 2):
        """Time every kernel over `runs` calls (after `warmup`): an `ember.runtime.profile.Profile`, printable as
        a table sorted by time, naming each kernel's graph nodes."""
        from .profile import profile
        return profile(self, feeds, runs, warmup)

    def _timed(self, out: list[float], launch: Any, args: list[int], sizes: list[int]) -> None:
        start = time.perf_counter()
        launch(args, sizes)
        self._sync()
        out.append(time.perf_counter() - start)

    # ---- memory: host arrays here; a device model (codegen/cuda/device_model.py) overrides these ---------------------
    @staticmethod
    def _sync() -> None:
        """Wait for launched kernels to finish (host kernels finish before the launch returns)."""

    @staticmethod
    def _deliver(outs: list, given: tuple) -> list:
        """The outputs as the caller gets them (a device model copies them to the host for host inputs)."""
        return outs

    @staticmethod
    def _empty(shape: tuple, dtype: np.dtype) -> np.ndarray:
        return np.empty(shape, dtype)

    @staticmethod
    def _address(a: np.ndarray) -> int:
        return a.ctypes.data

    @staticmethod
    def _copy(a: np.ndarray) -> np.ndarray:
        return np.array(a, copy=True)

    def _const_addresses(self) -> list[int]:
        return self._const_ptrs

    def _const_arrays(self) -> list:
        return self.consts

    def _plan(self, temp_ptrs: list[int]) -> list[tuple[Any, list[int], list[tuple[int, str, int]]]]:
        """This thread's launches of a static model, made on its first call: per step the kernel's launcher, its
        arguments with the constants' and intermediates' addresses filled in, and the positions that take this
        call's inputs and outputs (the per-call work is then a list copy and a few stores per kernel)."""
        plan = getattr(self._local, "plan", None)
        if plan is None:
            fixed = {"const": self._const_addresses(), "temp": temp_ptrs}
            plan = []
            for step in self.steps:
                if step.kernel.size_vars:
                    raise ExecutionError(f"kernel {step.kernel.name} has symbolic sizes in a static model")
                args = [fixed[kind][k] if kind in fixed else 0 for kind, k in step.args]
                holes = [(pos, kind, k) for pos, (kind, k) in enumerate(step.args) if kind not in fixed]
                plan.append((step.kernel._launch, args, holes))
            self._local.plan = plan
        return plan

    def _new_arena(self, nbytes: int) -> tuple[Any, int]:
        """Raw memory of `nbytes` and the offset at which it is ALIGN-aligned."""
        raw = np.empty(nbytes + ALIGN, np.uint8)
        return raw, (-raw.ctypes.data) % ALIGN

    def _arena(self) -> tuple[list, list[int]]:
        """This thread's intermediates (views into its arena) and their addresses, made on its first call."""
        views = getattr(self._local, "views", None)
        if views is None:
            raw, base = self._new_arena(self.planned_peak_bytes)
            views = []
            for t, off in zip(self.temps, self.offsets):
                n = _nbytes(t)
                views.append(raw[base + off: base + off + n].view(t.dtype.numpy).reshape(t.shape))
            self._local.views = views
            self._local.raw = raw
            self._local.ptrs = [self._address(v) for v in views]
        return views, self._local.ptrs


def model_class(target) -> type[CompiledModel]:
    """The backend's model class when its kernels take other memory than host arrays (GPU device memory)."""
    from ..codegen import get_backend
    hook = getattr(get_backend(target), "model_class", None)
    return hook(target) if hook is not None else CompiledModel


def plan_memory(temps: list[TensorSpec], steps: list[Step], aliases: Sequence = ()) -> tuple[list[int], int]:
    """Offsets for each intermediate in one arena: greedy best-fit by size over lifetime intervals, the classic
    static planner. `aliases` ([temp, parent temp, byte offset]) are placed inside their parent (a Concat's inputs
    written in place), which then lives from the first write of any of them. Returns (offsets, peak bytes)."""
    parent = {int(i): (int(p), int(off)) for i, p, off in aliases}

    def root(i: int) -> tuple[int, int]:
        offset = 0
        while i in parent:
            i, off = parent[i]
            offset += off
        return i, offset
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    for k, step in enumerate(steps):
        for kind, idx in step.args:
            if kind == "temp":
                r = root(idx)[0]
                first.setdefault(r, k)
                last[r] = k
    order = sorted((i for i in range(len(temps)) if i not in parent), key=lambda i: -_nbytes(temps[i]))
    placed: list[tuple[int, int, int, int]] = []  # (offset, size, first, last)
    offsets = [0] * len(temps)
    peak = 0
    for i in order:
        size = _round_up(_nbytes(temps[i]))
        lo, hi = first.get(i, 0), last.get(i, 0)
        busy = sorted((o, s) for o, s, f, l in placed if not (l < lo or hi < f))
        offset = 0
        for o, s in busy:
            if offset + size <= o:
                break
            offset = max(offset, o + s)
        offsets[i] = offset
        placed.append((offset, size, lo, hi))
        peak = max(peak, offset + size)
    for i in parent:
        r, offset = root(i)
        offsets[i] = offsets[r] + offset
    return offsets, peak


def _nbytes(t: TensorSpec) -> int:
    return int(np.prod(t.shape, dtype=np.int64)) * t.dtype.itemsize if t.static else 0


def _round_up(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def _concrete(shape: tuple, sizes: dict[str, int]) -> tuple[int, ...]:
    return tuple(d if isinstance(d, int) else int(evaluate(d, sizes)) for d in shape)


def _shape_str(shape: tuple) -> str:
    return "(" + ", ".join(map(str, shape)) + ")"
