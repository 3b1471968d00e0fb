"""What the CPU emulators (CUDA and AscendC) share: finding g++, compiling a module into shared-object bytes that
the artifact cache can store, loading such bytes with ctypes, and checking buffer arguments."""
from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from . import BackendUnavailable

MAX_OUTPUT_CHARS = 12000


class EmulatorUnavailable(BackendUnavailable):
    """An emulator cannot run here: g++ (the only tool it needs) is missing."""


class EmulatorCompileError(RuntimeError):
    """g++ rejected an emulated module; the message carries g++'s output."""


def find_gxx(emulator: str) -> str:
    """g++ (or EMBER_CXX), with a message naming the emulator that needs it when absent."""
    gxx = shutil.which(os.environ.get("EMBER_CXX", "g++"))
    if gxx is None:
        raise EmulatorUnavailable(f"the {emulator} emulator (-emulate) needs g++ (a C++17 compiler) on PATH; "
                                  "install g++ or set EMBER_CXX")
    return gxx


def gxx_version(gxx: str) -> str:
    proc = subprocess.run([gxx, "--version"], check=False, capture_output=True, text=True)
    return " ".join(proc.stdout.splitlines()[:1])


def compile_shared_object(gxx: str, flags: Sequence[str], text: str, what: str) -> bytes:
    """g++ `text` with `flags` (which must make a shared object) and return its bytes; errors quote g++ with the
    temporary file's name replaced by `<kernel source>`."""
    with tempfile.TemporaryDirectory(prefix="ember-emu-") as tmp:
        cpp, so = Path(tmp) / "module.cpp", Path(tmp) / "module.so"
        cpp.write_text(text)
        proc = subprocess.run([gxx, *flags, "-o", str(so), str(cpp)], check=False, capture_output=True, text=True)
        if proc.returncode != 0:
            output = (proc.stderr or proc.stdout).replace(str(cpp), "<kernel source>")
            if len(output) > MAX_OUTPUT_CHARS:
                output = output[:MAX_OUTPUT_CHARS] + "\n... (g++ output truncated)"
            raise EmulatorCompileError(f"g++ could not compile {what}:\n{output}")
        return so.read_bytes()


def buffer_argument(kernel: str, name: str, arg: object, written: bool,
                    dtype: "np.dtype | None" = None) -> tuple[int, int]:
    """(address, nbytes) of a buffer argument: a C-contiguous numpy array (of `dtype` when given, writeable when the
    kernel writes it) or an (address, nbytes) pair."""
    if isinstance(arg, np.ndarray):
        if dtype is not None and arg.dtype != dtype:
            raise ValueError(f"kernel {kernel}: argument {name} got a {arg.dtype} array; expected {dtype}")
        if not arg.flags.c_contiguous:
            raise ValueError(f"kernel {kernel}: argument {name} must be a C-contiguous array")
        if written and not arg.flags.writeable:
            raise ValueError(f"kernel {kernel}: argument {name} is written by the kernel but the array is read-only")
        return arg.ctypes.data, arg.nbytes
    if isinstance(arg, tuple) and len(arg) == 2 and all(hasattr(v, "__index__") for v in arg):
        address, nbytes = (int(v) for v in arg)
        if address < 0 or nbytes < 0 or (address == 0 and nbytes > 0):
            raise ValueError(f"kernel {kernel}: argument {name} got address {address:#x} with {nbytes} bytes")
        return address, nbytes
    raise ValueError(f"kernel {kernel}: argument {name} must be a numpy array or an (address, nbytes) pair, "
                     f"got {type(arg).__name__}")


def load_shared_object(binary: bytes) -> ctypes.CDLL:
    """dlopen the bytes from a private temporary file, removed right after loading (the mapping stays valid).
    A fresh random name per module matters: the dynamic loader returns an already loaded library for a known path."""
    fd, path = tempfile.mkstemp(prefix="ember-emu-", suffix=".so")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(binary)
        return ctypes.CDLL(path)
    finally:
        os.unlink(path)
