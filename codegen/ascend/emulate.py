"""AscendC CPU emulator driver: compile an AscendC kernel source with g++ against emu/ and launch it on the CPU.

Nobody here has an NPU, so this is how Ascend kernels are proved correct (contract: notes/ascend_contract.md;
checks: ascendc.md §7.3). A module is the kernel source followed by one `ember_launch_NAME` shim per kernel; the
shim copies the tiling bytes into the kernel's tiling struct, registers the GM buffers and runs the blocks in the
order Python gives. Python does what needs whole-launch knowledge: the sentinel fill of outputs and the second run
in reverse block order into scratch copies, compared byte for byte with the first.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import struct
import subprocess
import tempfile
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from ..emulation import EmulatorCompileError, EmulatorUnavailable  # noqa: F401 - part of this module's API
from ..emulation import buffer_argument, compile_shared_object, find_gxx, gxx_version, load_shared_object

EMU_DIR = Path(__file__).resolve().parent / "emu"
ARCHES = {2201: 192 * 1024, 2002: 256 * 1024, 1001: 256 * 1024}  # arch -> UB bytes per (vector) core
SENTINEL = 0xFF  # output GM bytes before a launch: NaN for half/float, -1 for integers
_ERROR_BYTES = 8192
_STATS = ("ub_peak_bytes", "pipe_barriers", "set_wait_flags", "sync_all")
# Compile speed matters (tests build many small modules): -O1 as the contract says (-O0 compiles ~25% faster but
# runs the checked loops 3-6x slower), -pipe, and a precompiled kernel_operator.h per flag set (_pch_dir).
_CXXFLAGS = ("-std=c++17", "-O1", "-pipe", "-fPIC", "-fvisibility=hidden", "-fno-gnu-unique", "-DASCENDC_CPU_DEBUG")


class EmulationError(RuntimeError):
    """A kernel broke a rule while emulated; the message names the kernel, the block and the rule."""


class EmulationWarning(UserWarning):
    """A legal but suspicious kernel (UB use in the scratch area, an InitBuffer length rounded up...)."""


@dataclass(frozen=True)
class GmParam:
    name: str
    is_output: bool


@dataclass(frozen=True)
class KernelSpec:
    name: str
    params: tuple[GmParam, ...]
    tiling_type: str | None

    @classmethod
    def of(cls, name: str, inputs: Sequence[str], outputs: Sequence[str],
           tiling_type: "str | None" = None) -> "KernelSpec":
        """A kernel whose GM parameters are the inputs, then the outputs."""
        return cls(name, tuple(GmParam(p, False) for p in inputs) + tuple(GmParam(p, True) for p in outputs),
                   tiling_type)


def pack_tiling(values: Sequence[int]) -> bytes:
    """The bytes of a tiling struct: int64 fields in declaration order, no padding (the contract's layout)."""
    return struct.pack(f"<{len(values)}q", *values)


def _check_spec(spec: KernelSpec) -> None:
    if not spec.name.isidentifier():
        raise ValueError(f"kernel name {spec.name!r} is not a C identifier")
    if spec.tiling_type is not None and not spec.tiling_type.replace("::", "").isidentifier():
        raise ValueError(f"kernel {spec.name}: tiling type {spec.tiling_type!r} is not a C++ type name")
    names = [p.name for p in spec.params]
    if len(set(names)) != len(names) or not all(n.isidentifier() for n in names):
        raise ValueError(f"kernel {spec.name}: parameter names {names} must be unique C identifiers")
    if len(spec.params) > 31:
        raise ValueError(f"kernel {spec.name}: {len(spec.params)} GM parameters; ICPU_RUN_KF allows 32 arguments")


def _shim(spec: KernelSpec) -> str:
    """extern "C" int ember_launch_NAME(gm, gm_bytes, flags, tiling, tiling_bytes, num_blocks, order, stats,
    err, errlen): the tiling struct by value, then every block in `order`."""
    n = len(spec.params)
    names = ", ".join(f'"{p.name}"' for p in spec.params) or "nullptr"
    args = [f"gm[{i}]" for i in range(n)]
    lines = [f'extern "C" __attribute__((visibility("default"))) int ember_launch_{spec.name}(',
             "        uint8_t* const* gm, const uint64_t* gm_bytes, const uint8_t* flags, const void* tiling,",
             "        uint64_t tiling_bytes, int64_t num_blocks, const int64_t* order, uint64_t* stats, char* err,",
             "        uint64_t errlen) {",
             f"    static const char* const names[] = {{{names}}};"]
    if spec.tiling_type:
        t = spec.tiling_type
        lines += [f"    static_assert(std::is_trivially_copyable_v<{t}>, \"the tiling struct must be POD\");",
                  f"    if (tiling_bytes != sizeof({t})) {{",
                  (f'        snprintf(err, errlen, "kernel {spec.name}: [tiling] got %llu tiling bytes; '
                   f'{t} has %zu", (unsigned long long)tiling_bytes, sizeof({t}));'),
                  "        return 1;", "    }",
                  f"    {t} t;", "    std::memcpy(&t, tiling, sizeof t);"]
        args.append("t")
    else:
        lines.append("    (void)tiling; (void)tiling_bytes;")
    lines += [(f'    return ::ember_emu::launch("{spec.name}", {n}, gm, gm_bytes, flags, names, num_blocks, order, '
               "stats, err, errlen,"),
              f"                               [&]() {{ {spec.name}({', '.join(args)}); }});", "}"]
    return "\n".join(lines)


@cache
def toolchain() -> str:
    """g++'s version and a hash of the emulator headers: everything that shapes a compiled module (cache keys)."""
    digest = hashlib.sha256()
    for header in sorted(EMU_DIR.rglob("*.h")):
        digest.update(str(header.relative_to(EMU_DIR)).encode() + b"\0" + header.read_bytes())
    return f"{gxx_version(find_gxx('Ascend'))}; ascend_emu {digest.hexdigest()[:16]}"


@cache
def _pch_dir(gxx: str, flags: tuple[str, ...]) -> Path | None:
    """A directory holding kernel_operator.h.gch for these flags, built once per machine and header version (it
    saves about a third of a typical module's compile time). None if it cannot be built: g++ then parses the
    headers, as it also does whenever the PCH does not match."""
    key = hashlib.sha256("\0".join((toolchain(), gxx, *flags)).encode()).hexdigest()[:20]
    directory = Path(tempfile.gettempdir()) / "ember-ascend-pch" / key
    gch = directory / "kernel_operator.h.gch"
    if gch.exists():
        return directory
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, suffix=".tmp")
        os.close(fd)
        proc = subprocess.run([gxx, *flags, "-x", "c++-header", str(EMU_DIR / "kernel_operator.h"), "-o", tmp],
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            os.unlink(tmp)
            return None
        os.chmod(tmp, 0o644)
        os.replace(tmp, gch)  # atomic: concurrent builders race harmlessly
    except OSError:
        return None
    return directory


def compile_module(source: str, kernels: Sequence[KernelSpec], arch: int, ub_bytes: int,
                   checking: bool = True) -> bytes:
    """g++ the source plus a launch shim per kernel into a shared object; its bytes (cacheable) come back.
    checking=False drops GM write tracking (overlap and never-written checks); UB and queue checks always run."""
    if arch not in ARCHES:
        raise ValueError(f"unknown Ascend arch {arch}; supported: {', '.join(map(str, ARCHES))}")
    if not 0 < ub_bytes <= ARCHES[arch] or ub_bytes % 32:
        raise ValueError(f"UB size {ub_bytes} bytes must be a positive multiple of 32 and at most {ARCHES[arch]} "
                         f"(arch {arch})")
    for spec in kernels:
        _check_spec(spec)
    names = [s.name for s in kernels]
    if len(set(names)) != len(names):
        raise ValueError(f"kernel names repeat: {names}")
    text = (source + "\n\n" + "\n\n".join(_shim(s) for s in kernels) + "\n\n"
            'extern "C" __attribute__((visibility("default"))) int ember_module_checking(void) '
            "{ return EMBER_ASCEND_CHECK; }\n")
    gxx = find_gxx("Ascend")
    flags = (*_CXXFLAGS, f"-DEMBER_ASCEND_ARCH={arch}", f"-DEMBER_ASCEND_UB_BYTES={ub_bytes}",
             f"-DEMBER_ASCEND_CHECK={1 if checking else 0}")
    pch = _pch_dir(gxx, flags)
    return compile_shared_object(gxx, (*flags, "-shared", *(["-I", str(pch)] if pch else []), "-I", str(EMU_DIR)),
                                 text, f"the emulated AscendC module (kernels {', '.join(names)})")


def _gm_arg(kernel: str, p: GmParam, arg: object) -> tuple[int, int]:
    return buffer_argument(kernel, p.name, arg, written=p.is_output)


def _view(address: int, nbytes: int) -> np.ndarray:
    return np.frombuffer((ctypes.c_char * nbytes).from_address(address), dtype=np.uint8) if nbytes else \
        np.zeros(0, np.uint8)


class EmulatedModule:
    """A compiled module loaded into this process; launches are serialised (the emulator state is per module).
    `last_stats` holds the statistics of the latest launch (peak UB bytes per block, sync primitives seen).
    A module compiled with checking=False skips the sentinel fill, the never-written and overlap checks and the
    reverse-order run."""

    def __init__(self, binary: bytes, kernels: Sequence[KernelSpec]):
        self._specs = {s.name: s for s in kernels}
        self._lock = threading.Lock()
        self.last_stats: dict[str, int] = {}
        self._lib = load_shared_object(binary)
        checking = self._lib.ember_module_checking
        checking.restype = ctypes.c_int
        self.checking = bool(checking())
        self._entries = {}
        for name in self._specs:
            try:
                fn = getattr(self._lib, f"ember_launch_{name}")
            except AttributeError:
                raise ValueError(f"the emulated module has no launch entry for kernel {name}") from None
            fn.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_uint64),
                           ctypes.POINTER(ctypes.c_uint8), ctypes.c_char_p, ctypes.c_uint64, ctypes.c_int64,
                           ctypes.POINTER(ctypes.c_int64), ctypes.POINTER(ctypes.c_uint64), ctypes.c_char_p,
                           ctypes.c_uint64]
            fn.restype = ctypes.c_int
            self._entries[name] = fn

    def launch(self, name: str, num_blocks: int, args: Sequence, tiling: bytes = b"",
               check_order: bool = True) -> None:
        """Run kernel `name` on blocks 0..num_blocks-1; EmulationError if it breaks a rule.

        Outputs are pre-filled with a sentinel and every byte must be written (unless the output aliases an
        input: an in-place update keeps its contents). With check_order the kernel runs again with the blocks in
        reverse order into scratch copies of the outputs (in-place outputs start from a snapshot of their
        contents, and inputs inside them are redirected there too) and the results must match byte for byte;
        reverse order flips every pair of blocks, so any block reading what another block writes shows up."""
        spec = self._specs.get(name)
        if spec is None:
            raise ValueError(f"no kernel {name!r} in this module; kernels: {', '.join(self._specs)}")
        if len(args) != len(spec.params):
            raise ValueError(f"kernel {name} takes {len(spec.params)} GM arguments "
                             f"({', '.join(p.name for p in spec.params)}), got {len(args)}")
        if spec.tiling_type is None and tiling:
            raise ValueError(f"kernel {name} has no tiling parameter but got {len(tiling)} tiling bytes")
        if isinstance(num_blocks, bool) or not isinstance(num_blocks, (int, np.integer)):
            raise TypeError(f"kernel {name}: num_blocks must be an integer, got {num_blocks!r}")
        if not 1 <= num_blocks <= 65535:
            raise EmulationError(f"kernel {name}: [num-blocks] numBlocks = {num_blocks} is outside [1, 65535]")
        ranges = [_gm_arg(name, p, a) for p, a in zip(spec.params, args)]
        outs = [i for i, p in enumerate(spec.params) if p.is_output]
        aliased = {i for i in outs if any(j != i and _overlap(ranges[i], ranges[j]) for j in range(len(ranges)))}
        for i in outs:
            for j in range(len(ranges)):
                if j == i or not _overlap(ranges[i], ranges[j]):
                    continue
                if j in outs:
                    raise ValueError(f"kernel {name}: outputs {spec.params[i].name} and {spec.params[j].name} "
                                     f"overlap in memory")
                if not _contains(ranges[i], ranges[j]):
                    raise ValueError(f"kernel {name}: input {spec.params[j].name} partially overlaps output "
                                     f"{spec.params[i].name}; an input may only lie inside an output (in place)")
        check = self.checking
        snapshots = {i: _view(*ranges[i]).copy() for i in aliased} if check else {}
        for i in outs:
            if check and i not in aliased:
                _view(*ranges[i])[:] = SENTINEL
        flags = [(1 if p.is_output else 0) | (2 if check and p.is_output and i not in aliased else 0)
                 for i, p in enumerate(spec.params)]
        self._run(spec, ranges, flags, tiling, np.arange(num_blocks, dtype=np.int64), "")
        if not (check and check_order and num_blocks > 1 and outs):
            return
        scratch = {i: (snapshots[i] if i in aliased else np.full(ranges[i][1], SENTINEL, np.uint8)) for i in outs}
        moved = []
        for addr, nbytes in ranges:
            for i in outs:
                if nbytes and _contains(ranges[i], (addr, nbytes)):
                    addr = scratch[i].ctypes.data + (addr - ranges[i][0])
                    break
            moved.append((addr, nbytes))
        self._run(spec, moved, flags, tiling, np.arange(num_blocks - 1, -1, -1, dtype=np.int64),
                  " (second run, blocks in reverse order)")
        for i in outs:
            first, again = _view(*ranges[i]), scratch[i]
            diff = np.flatnonzero(first != again)
            if diff.size:
                arg = args[i]
                where = (f"element {diff[0] // arg.itemsize}" if isinstance(arg, np.ndarray)
                         else f"byte {diff[0]}")
                raise EmulationError(
                    f"kernel {name}: [order-dependence] output '{spec.params[i].name}' differs at {where} "
                    f"({diff.size} bytes in all) when the {num_blocks} blocks run in reverse order: the result "
                    f"depends on block order (does a block read GM that another block writes?)")

    def _run(self, spec: KernelSpec, ranges: list[tuple[int, int]], flags: list[int], tiling: bytes,
             order: np.ndarray, note: str) -> None:
        n = len(ranges)
        gm = (ctypes.c_void_p * max(1, n))(*(a for a, _ in ranges))
        sizes = (ctypes.c_uint64 * max(1, n))(*(b for _, b in ranges))
        fl = (ctypes.c_uint8 * max(1, n))(*flags)
        stats = (ctypes.c_uint64 * len(_STATS))()
        err = ctypes.create_string_buffer(_ERROR_BYTES)
        order_ptr = order.ctypes.data_as(ctypes.POINTER(ctypes.c_int64))
        with self._lock:
            rc = self._entries[spec.name](gm, sizes, fl, bytes(tiling), len(tiling), len(order), order_ptr, stats,
                                          err, _ERROR_BYTES)
        self.last_stats = dict(zip(_STATS, (int(s) for s in stats)))
        message = err.value.decode(errors="replace").strip()
        if rc != 0:
            raise EmulationError(message + note)
        for line in message.splitlines():
            warnings.warn(EmulationWarning(f"kernel {spec.name}: {line}"), stacklevel=3)


def _overlap(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] < b[0] + b[1] and b[0] < a[0] + a[1]


def _contains(outer: tuple[int, int], inner: tuple[int, int]) -> bool:
    return outer[0] <= inner[0] and inner[0] + inner[1] <= outer[0] + outer[1]


def cube_tiling(m: int, n: int, k: int, *, cores: int = 1, ab_itemsize: int = 2, bias: bool = False,
                arch: int = 2201) -> dict[str, int]:
    """A valid TCubeTiling (field name -> value) for C[m,n] = A[m,k] B[k,n] split over up to `cores` blocks as
    a grid of singleCoreM x singleCoreN tiles; usedCoreNum is the number of blocks to launch. Base blocks are
    128x128 (baseK filling 32 KB of L0A), shrunk to the 16-aligned tile, which fits L0A/L0B/L0C on every arch."""
    if min(m, n, k, cores) < 1:
        raise ValueError(f"cube_tiling: m={m} n={n} k={k} cores={cores} must all be positive")
    if ab_itemsize not in (2, 4) or arch not in ARCHES:
        raise ValueError(f"cube_tiling: ab_itemsize {ab_itemsize} (2 or 4) / arch {arch} not supported")
    best = None
    for gm_ in range(1, min(cores, m) + 1):
        gn = min(cores // gm_, n)
        sm, sn = -(-m // gm_), -(-n // gn)
        key = (max(sm, 16) * max(sn, 16), -(gm_ * gn))  # smallest per-core tile, then most cores
        if best is None or key < best[0]:
            best = (key, sm, sn)
    _, sm, sn = best
    used = -(-m // sm) * -(-n // sn)
    base_m, base_n = min(128, -(-sm // 16) * 16), min(128, -(-sn // 16) * 16)
    step = 32 // ab_itemsize
    base_k = min(32 * 1024 // (128 * ab_itemsize), -(-k // step) * step)
    return {"usedCoreNum": used, "M": m, "N": n, "Ka": k, "Kb": k, "singleCoreM": sm, "singleCoreN": sn,
            "singleCoreK": k, "baseM": base_m, "baseN": base_n, "baseK": base_k, "depthA1": 1, "depthB1": 1,
            "stepM": 1, "stepN": 1, "isBias": int(bias), "iterateOrder": 0, "stepKa": 1, "stepKb": 1,
            "dbL0A": 2, "dbL0B": 2, "dbL0C": 1}
