"""LLVM optimisation, object emission and loading of object code into the process.

Cold path: parse -> O3 pipeline for the target CPU -> object code. Warm path (cache hit): only `load`, which maps
the stored object code with MCJIT's linker; no LLVM optimisation runs.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import threading
import warnings

import llvmlite
import llvmlite.binding as llvm

from ...compiler.target import Target

_lock = threading.Lock()


@functools.cache
def _init() -> str:
    """Initialise LLVM once and make libgomp's thread pool (or a serial stand-in) resolvable; returns which."""
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    llvm.initialize_native_asmparser()
    path = ctypes.util.find_library("gomp")
    try:
        if path is None:
            raise OSError("libgomp not found")
        ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
        llvm.load_library_permanently(path)
        return "libgomp"
    except OSError:
        warnings.warn("ember: libgomp was not found, parallel loops will run on one thread "
                      "(install your distribution's libgomp1 package)", RuntimeWarning, stacklevel=3)
        _install_serial_pool()
        return "serial"


_SERIAL_CALLBACKS: list = []


def _install_serial_pool() -> None:
    body_t = ctypes.CFUNCTYPE(None, ctypes.c_void_p)

    @ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint)
    def gomp_parallel(fn, data, _threads, _flags):
        body_t(fn)(data)

    zero = ctypes.CFUNCTYPE(ctypes.c_int)(lambda: 0)
    one = ctypes.CFUNCTYPE(ctypes.c_int)(lambda: 1)
    _SERIAL_CALLBACKS.extend([gomp_parallel, zero, one])
    llvm.add_symbol("GOMP_parallel", ctypes.cast(gomp_parallel, ctypes.c_void_p).value)
    llvm.add_symbol("omp_get_thread_num", ctypes.cast(zero, ctypes.c_void_p).value)
    llvm.add_symbol("omp_get_num_threads", ctypes.cast(one, ctypes.c_void_p).value)


def versions() -> str:
    """What goes into cache keys about the toolchain."""
    return f"llvmlite={llvmlite.__version__};llvm={'.'.join(map(str, llvm.llvm_version_info))}"


def thread_pool() -> str:
    return _init()


def target_machine(target: Target) -> llvm.TargetMachine:
    _init()
    triple = target.get("mtriple")
    tm = llvm.Target.from_triple(triple).create_target_machine(
        cpu=target.get("mcpu"), features=target.get("mattr"), opt=target.get("opt"), reloc="static",
        codemodel="jitdefault")
    return tm


def optimize(llvm_ir: str, target: Target) -> tuple[str, bytes]:
    """Verify and optimise the module, returning the optimised IR text and the object code."""
    with _lock:
        tm = target_machine(target)
        mod = llvm.parse_assembly(llvm_ir)
        mod.triple = target.get("mtriple")
        mod.data_layout = str(tm.target_data)
        mod.verify()
        level = target.get("opt")
        if level > 0:
            pto = llvm.create_pipeline_tuning_options(speed_level=level)
            pto.loop_vectorization = True
            pto.slp_vectorization = True
            pto.loop_unrolling = True
            pb = llvm.create_pass_builder(tm, pto)
            pb.getModulePassManager().run(mod, pb)
        return str(mod), tm.emit_object(mod)


def assembly(optimized_ir: str, target: Target) -> str:
    with _lock:
        tm = target_machine(target)
        return tm.emit_assembly(llvm.parse_assembly(optimized_ir))


class LoadedObject:
    """Object code mapped into this process; keeps the engine alive as long as its functions are used."""

    def __init__(self, obj: bytes, target: Target):
        with _lock:
            tm = target_machine(target)
            self._engine = llvm.create_mcjit_compiler(llvm.parse_assembly(""), tm)
            self._engine.add_object_file(llvm.ObjectFileRef.from_data(obj))
            self._engine.finalize_object()

    def address(self, name: str) -> int:
        addr = self._engine.get_function_address(name)
        if not addr:
            raise RuntimeError(f"symbol {name!r} missing from compiled object")
        return addr
