"""g++ for the CPU emulators (CUDA and AscendC): find it, compile a module into shared-object bytes that the
artifact cache can store, and load such bytes with ctypes."""
from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

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
