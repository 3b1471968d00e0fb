"""CUDA CPU emulator: compile ember-generated CUDA C with g++ against emu/cuda_emu.h and launch kernels on the CPU.

This is how GPU code is proved correct without a GPU: the generator's source compiles unchanged (its prelude
includes cuda_emu.h under EMBER_EMULATE). A module is the kernel source followed by one `ember_launch_NAME` shim per
kernel; the shim turns (address, nbytes) pairs and scalar bit patterns into the kernel's typed arguments and runs the
grid. Compiled modules are plain bytes so the artifact cache can store them (key them with `toolchain()`);
`EmulatedModule` loads them through ctypes.
"""
from __future__ import annotations

import ctypes
import hashlib
import platform
import re
import struct
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal

import numpy as np

from ..emulation import EmulatorCompileError, EmulatorUnavailable  # noqa: F401 - part of this module's API
from ..emulation import buffer_argument, compile_shared_object, find_gxx, gxx_version, load_shared_object

EMU_DIR = Path(__file__).resolve().parent / "emu"

# Element types a pointer parameter may have, with the numpy dtype an array argument must have.
POINTER_TYPES: dict[str, np.dtype] = {
    "float": np.dtype(np.float32), "double": np.dtype(np.float64), "__half": np.dtype(np.float16),
    "signed char": np.dtype(np.int8), "unsigned char": np.dtype(np.uint8), "short": np.dtype(np.int16),
    "unsigned short": np.dtype(np.uint16), "int": np.dtype(np.int32), "unsigned int": np.dtype(np.uint32),
    "long long": np.dtype(np.int64), "unsigned long long": np.dtype(np.uint64), "bool": np.dtype(np.bool_),
}
SCALAR_TYPES = ("long long", "int", "float", "double")
_INT_RANGES = {"long long": (-(1 << 63), (1 << 63) - 1), "int": (-(1 << 31), (1 << 31) - 1)}

# CUDA launch limits.
MAX_THREADS_PER_BLOCK = 1024
MAX_BLOCK_DIMS = (1024, 1024, 64)
MAX_GRID_DIMS = ((1 << 31) - 1, 65535, 65535)

_ERROR_BYTES = 4096
# -O1: the checked-access proxies need inlining, -O2 costs compile time for little gain. No CET marking on x86-64:
# fibers switch stacks with a plain `ret`, which a shadow stack would reject.
_CXXFLAGS = ("-std=c++17", "-O1", "-fPIC", "-shared", "-fvisibility=hidden", "-fno-gnu-unique",
             "-fno-exceptions", "-fno-rtti", "-fno-asynchronous-unwind-tables", "-DEMBER_EMULATE",
             *(("-fcf-protection=none",) if platform.machine() in ("x86_64", "AMD64") else ()))


class EmulationError(RuntimeError):
    """A kernel broke a rule while emulated (out-of-bounds access, shared-memory race, divergent barrier...)."""


@dataclass(frozen=True)
class KernelParam:
    name: str
    kind: Literal["ptr", "scalar"]
    ctype: str  # element type for "ptr" (e.g. "const float", "__half"), value type for "scalar" ("long long")


@dataclass(frozen=True)
class KernelSpec:
    name: str
    params: tuple[KernelParam, ...]


def _split_const(ctype: str) -> tuple[bool, str]:
    words = ctype.split()
    const = "const" in words
    return const, " ".join(w for w in words if w != "const")


def _check_spec(spec: KernelSpec) -> None:
    if not spec.name.isidentifier():
        raise ValueError(f"kernel name {spec.name!r} is not a C identifier")
    seen: set[str] = set()
    for p in spec.params:
        if not p.name.isidentifier() or p.name in seen:
            raise ValueError(f"kernel {spec.name}: parameter name {p.name!r} is not a unique C identifier")
        seen.add(p.name)
        if p.kind == "ptr":
            if _split_const(p.ctype)[1] not in POINTER_TYPES:
                raise ValueError(f"kernel {spec.name}: parameter {p.name} has pointer element type {p.ctype!r}; "
                                 f"supported: {', '.join(POINTER_TYPES)} (optionally const)")
        elif p.kind == "scalar":
            if " ".join(p.ctype.split()) not in SCALAR_TYPES:
                raise ValueError(f"kernel {spec.name}: scalar parameter {p.name} has type {p.ctype!r}; "
                                 f"supported: {', '.join(SCALAR_TYPES)}")
        else:
            raise ValueError(f"kernel {spec.name}: parameter {p.name} has kind {p.kind!r} (expected 'ptr' or 'scalar')")


_LAUNCH_BOUNDS = re.compile(r"__launch_bounds__\s*\(((?:[^()]|\([^()]*\))*)\)\s*(\w+)\s*\(")


def _launch_bounds(source: str) -> dict[str, str]:
    """Kernel name -> the max-threads expression of its __launch_bounds__ (C++ evaluates it in the shim)."""
    bounds = {}
    for m in _LAUNCH_BOUNDS.finditer(source):
        depth, end = 0, len(m.group(1))
        for i, ch in enumerate(m.group(1)):
            depth += ch == "("
            depth -= ch == ")"
            if ch == "," and depth == 0:
                end = i
                break
        bounds[m.group(2)] = m.group(1)[:end].strip()
    return bounds


def _shim(spec: KernelSpec, max_threads: str | None) -> str:
    """extern "C" int ember_launch_NAME(dims[6], words[2 per param], err, errlen): typed args, then the grid;
    ember_max_threads_NAME(): the kernel's __launch_bounds__ (0 without), which launches must respect as on a GPU."""
    lines, args = [], []
    for k, p in enumerate(spec.params):
        var = f"ember_arg{k}"
        if p.kind == "ptr":
            const, base = _split_const(p.ctype)
            ctype = ("const " if const else "") + base
            lines.append(f"    ::ember_emu::gptr<{ctype}> {var} = ::ember_emu::make_gptr<{ctype}>"
                         f"(w[{2 * k}], w[{2 * k + 1}], \"{p.name}\");")
        else:
            ctype = " ".join(p.ctype.split())
            bits = "uint32_t" if ctype == "float" else "uint64_t"
            if ctype in ("float", "double"):  # the word holds the value's bit pattern
                lines.append(f"    {ctype} {var}; {{ {bits} bits = ({bits})w[{2 * k}]; "
                             f"memcpy(&{var}, &bits, sizeof bits); }}")
            else:
                lines.append(f"    {ctype} {var} = ({ctype})(long long)w[{2 * k}];")
        args.append(var)
    return "\n".join([
        f'extern "C" __attribute__((visibility("default"))) int ember_launch_{spec.name}(',
        "        const long long* dims, const unsigned long long* w, char* err, size_t errlen) {",
        *lines,
        f"    auto ember_body = [&]() {{ {spec.name}({', '.join(args)}); }};",
        f'    return ::ember_emu::launch("{spec.name}", dims, err, errlen, ember_body);',
        "}",
        f'extern "C" __attribute__((visibility("default"))) long long ember_max_threads_{spec.name}(void) {{',
        f"    return (long long)({max_threads or 0});",
        "}",
    ])


@cache
def toolchain() -> str:
    """g++'s version and a hash of the emulator headers, flags and shim: all that shapes a module (cache keys)."""
    digest = hashlib.sha256(" ".join(_CXXFLAGS).encode())
    for part in (*sorted(EMU_DIR.glob("*.h")), Path(__file__)):
        digest.update(part.name.encode() + b"\0" + part.read_bytes())
    return f"{gxx_version(find_gxx('CUDA'))}; cuda_emu {digest.hexdigest()[:16]}"


def compile_module(source: str, kernels: Sequence[KernelSpec], checking: bool = True) -> bytes:
    """g++ the source plus a launch shim per kernel into a shared object; its bytes (cacheable) come back."""
    for spec in kernels:
        _check_spec(spec)
    names = [s.name for s in kernels]
    if len(set(names)) != len(names):
        raise ValueError(f"kernel names repeat: {names}")
    bounds = _launch_bounds(source)
    text = source + "\n\n" + "\n\n".join(_shim(s, bounds.get(s.name)) for s in kernels) + "\n"
    flags = (*_CXXFLAGS, f"-DEMBER_EMU_CHECK={1 if checking else 0}", "-I", str(EMU_DIR))
    return compile_shared_object(find_gxx("CUDA"), flags, text,
                                 f"the emulated CUDA module (kernels {', '.join(names)})")


def _pointer_arg(kernel: str, p: KernelParam, arg: object) -> tuple[int, int]:
    const, base = _split_const(p.ctype)
    return buffer_argument(kernel, f"{p.name} ({p.ctype}*)", arg, written=not const, dtype=POINTER_TYPES[base])


def _scalar_word(kernel: str, p: KernelParam, arg: object) -> int:
    ctype = " ".join(p.ctype.split())
    if ctype in _INT_RANGES:
        if isinstance(arg, (bool, float)) or not hasattr(arg, "__index__"):
            raise ValueError(f"kernel {kernel}: argument {p.name} ({ctype}) must be an integer, got {arg!r}")
        value = int(arg)  # type: ignore[call-overload]
        lo, hi = _INT_RANGES[ctype]
        if not lo <= value <= hi:
            raise ValueError(f"kernel {kernel}: argument {p.name} = {value} does not fit in {ctype}")
        return value & 0xFFFFFFFFFFFFFFFF
    if not isinstance(arg, (int, float, np.integer, np.floating)) or isinstance(arg, bool):
        raise ValueError(f"kernel {kernel}: argument {p.name} ({ctype}) must be a number, got {arg!r}")
    if ctype == "float":
        return struct.unpack("<I", struct.pack("<f", float(arg)))[0]
    return struct.unpack("<Q", struct.pack("<d", float(arg)))[0]


def check_launch_dims(kernel: str, grid: tuple[int, int, int], block: tuple[int, int, int]) -> None:
    """CUDA's limits on grid and block shapes, checked before anything runs."""
    for what, dims, limits in (("grid", grid, MAX_GRID_DIMS), ("block", block, MAX_BLOCK_DIMS)):
        if len(dims) != 3 or not all(isinstance(d, (int, np.integer)) for d in dims):
            raise ValueError(f"kernel {kernel}: {what} must be three integers, got {dims!r}")
        for axis, d, limit in zip("xyz", dims, limits):
            if not 1 <= d <= limit:
                raise ValueError(f"kernel {kernel}: {what} dimension {axis} = {d} is outside CUDA's limit [1, {limit}]")
    threads = block[0] * block[1] * block[2]
    if threads > MAX_THREADS_PER_BLOCK:
        raise ValueError(f"kernel {kernel}: block {tuple(block)} has {threads} threads; CUDA allows at most "
                         f"{MAX_THREADS_PER_BLOCK} per block")


class EmulatedModule:
    """A compiled module loaded into this process; launches are serialised (the emulator state is per module)."""

    def __init__(self, binary: bytes, kernels: Sequence[KernelSpec]):
        self._specs = {s.name: s for s in kernels}
        self._lock = threading.Lock()
        self._lib = load_shared_object(binary)
        self._entries = {}
        self._max_threads: dict[str, int] = {}
        for name in self._specs:
            try:
                fn = getattr(self._lib, f"ember_launch_{name}")
            except AttributeError:
                raise ValueError(f"the emulated module has no launch entry for kernel {name}") from None
            fn.argtypes = [ctypes.POINTER(ctypes.c_longlong), ctypes.POINTER(ctypes.c_ulonglong),
                           ctypes.c_char_p, ctypes.c_size_t]
            fn.restype = ctypes.c_int
            self._entries[name] = fn
            bound = getattr(self._lib, f"ember_max_threads_{name}")
            bound.restype = ctypes.c_longlong
            self._max_threads[name] = int(bound())

    def launch(self, name: str, grid: tuple[int, int, int], block: tuple[int, int, int], args: Sequence) -> None:
        """Run kernel `name` over the grid; EmulationError if it breaks a rule (the launch is abandoned)."""
        spec = self._specs.get(name)
        if spec is None:
            raise ValueError(f"no kernel {name!r} in this module; kernels: {', '.join(self._specs)}")
        grid, block = tuple(grid), tuple(block)
        check_launch_dims(name, grid, block)  # type: ignore[arg-type]
        threads, bound = block[0] * block[1] * block[2], self._max_threads[name]
        if bound and threads > bound:
            raise ValueError(f"kernel {name}: block {block} has {threads} threads, more than its "
                             f"__launch_bounds__({bound})")
        if len(args) != len(spec.params):
            raise ValueError(f"kernel {name} takes {len(spec.params)} arguments "
                             f"({', '.join(p.name for p in spec.params)}), got {len(args)}")
        words: list[int] = []
        for p, arg in zip(spec.params, args):
            if p.kind == "ptr":
                words.extend(_pointer_arg(name, p, arg))
            else:
                words.extend((_scalar_word(name, p, arg), 0))
        dims = (ctypes.c_longlong * 6)(*(int(d) for d in (*grid, *block)))
        packed = (ctypes.c_ulonglong * max(1, len(words)))(*words)
        err = ctypes.create_string_buffer(_ERROR_BYTES)
        with self._lock:
            rc = self._entries[name](dims, packed, err, _ERROR_BYTES)
        if rc != 0:
            raise EmulationError(err.value.decode(errors="replace"))
