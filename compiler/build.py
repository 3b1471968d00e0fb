"""`ember.build`: schedule -> loop IR -> backend artifact (through the cache) -> a callable Kernel."""
from __future__ import annotations

import logging
import os
import threading
import time
import warnings
from pathlib import Path
from typing import Sequence

from ..ir.printer import tensor_ir_str
from ..ir.structural import structural_key, topo_ops
from ..ir.tensor import PlaceholderOp, Tensor
from .default_schedule import default_schedule
from .lower import check_args
from .pipeline import lower_to_loops, schedule_for
from .schedule import Schedule, ScheduleError
from .target import Target, parse_target

log = logging.getLogger("ember")
if os.environ.get("EMBER_LOG", "0") not in ("", "0"):
    log.setLevel(logging.INFO)
    log.addHandler(logging.StreamHandler())
_loaded: dict[str, object] = {}
_loaded_lock = threading.Lock()
STATS = {"compiles": 0, "loads": 0, "kernel_reuses": 0}


def build(schedule: "Schedule | Tensor | Sequence[Tensor]", args: "Sequence[Tensor] | None" = None,
          target: "str | Target" = "llvm", name: str = "kernel", tuning_db=None):
    """Compile a schedule (or bare output tensors, which get the default schedule) into a callable kernel.

    `args` lists the kernel's arrays in call order: inputs (placeholders) and outputs (computed tensors). Without
    it, the inputs in definition order followed by the outputs are used. Bare tensors take a tuned schedule from
    the tuning database when it has one (`tuning_db`: a file, False for none, None for the configured one);
    a tuned record that no longer compiles is skipped with a warning.
    """
    tgt = parse_target(target)
    from ..tune.database import selected
    with selected(tuning_db):
        sch = schedule_for(schedule, tgt)
    try:
        return _build(sch, args, tgt, name)
    except ValueError as err:  # a stale tuned record whose trace replays but no longer lowers or compiles
        if sch.tuned_from is None:
            raise
        from ..tune.lookup import TunedRecordWarning
        warnings.warn(f"tuning database {sch.tuned_from}: the tuned schedule of kernel {name!r} does not compile "
                      f"({err}); using the default schedule", TunedRecordWarning, stacklevel=2)
        return _build(default_schedule(schedule, tgt), args, tgt, name)


def _build(sch: Schedule, args: "Sequence[Tensor] | None", tgt: Target, name: str):
    from ..codegen import get_backend
    from ..runtime.artifact import ArtifactError, pack, unpack
    from ..runtime.cache import default_cache
    from ..runtime.keys import cache_key
    from ..runtime.kernel import Kernel, Param

    arg_list = _default_args(sch) if args is None else [sch.resolve(t) for t in args]
    for t in arg_list:
        if not isinstance(t, Tensor):
            raise TypeError(f"build args must be tensors, got {type(t).__name__}")
    check_args(arg_list)
    backend = get_backend(tgt)
    key = cache_key(ir=structural_key(arg_list), schedule=sch.trace.to_json(), target=tgt.canonical(),
                    toolchain=backend.toolchain(tgt), name=name)
    func_cache: dict[str, object] = {}

    def loops():
        if "func" not in func_cache:
            func_cache["func"] = lower_to_loops(sch, arg_list, name, target=tgt)
        return func_cache["func"]

    def compile_artifact() -> bytes:
        start = time.perf_counter()
        parts = backend.compile(loops(), tgt)
        STATS["compiles"] += 1
        log.info("compiled %s for %s in %.3fs", name, tgt.kind, time.perf_counter() - start)
        return pack(parts, {"name": name})

    with _loaded_lock:
        hit = _loaded.get(key)
    if hit is not None:
        STATS["kernel_reuses"] += 1
        parts, launch = hit  # type: ignore[misc]
    else:
        cache = default_cache()
        payload, _ = cache.get_or_build(key, compile_artifact, what=f"kernel {name!r} for {tgt}")
        try:
            parts, _meta = unpack(payload)
        except ArtifactError:
            payload = compile_artifact()
            cache.put(key, payload)
            parts, _meta = unpack(payload)
        launch = backend.load(parts, len(arg_list), len(_size_vars(arg_list)), tgt)
        STATS["loads"] += 1
        with _loaded_lock:
            _loaded[key] = (parts, launch)

    def sources(kind: str) -> str:
        if kind == "tensor":
            return tensor_ir_str(arg_list)
        if kind == "schedule":
            return str(sch.trace)
        if kind == "loops":
            return str(loops())
        if kind in backend.source_kinds:
            return backend.source(parts, kind, tgt)
        valid = ", ".join(("tensor", "schedule", "loops") + backend.source_kinds)
        raise ValueError(f"unknown source kind {kind!r}; valid kinds: {valid}")

    params = [Param(t.name, t.shape, t.dtype, not isinstance(t.op, PlaceholderOp)) for t in arg_list]
    kernel_cls = getattr(backend, "kernel_class", lambda _target: Kernel)(tgt)
    kernel = kernel_cls(name, params, _size_vars(arg_list), launch, sources, key, tgt)
    dump_dir = os.environ.get("EMBER_DUMP_DIR")
    if dump_dir:
        _dump(kernel, Path(dump_dir), backend.source_kinds)
    return kernel


def _default_args(sch: Schedule) -> list[Tensor]:
    inputs = [op.outputs[0] for op in topo_ops(sch.outputs) if isinstance(op, PlaceholderOp)]
    if any(isinstance(t.op, PlaceholderOp) for t in sch.outputs):
        raise ScheduleError("an output of the schedule is an input placeholder")
    return inputs + list(sch.outputs)


def _size_vars(args: list[Tensor]):
    from .lower import _size_vars as collect
    return collect(args)


def _dump(kernel, folder: Path, backend_kinds: Sequence[str]) -> None:
    """Write every stage of the kernel to EMBER_DUMP_DIR/<name>-<key>/ for debugging."""
    out = folder / f"{kernel.name}-{kernel.key[:12]}"
    out.mkdir(parents=True, exist_ok=True)
    from ..codegen import BackendUnavailable
    ext = {"tensor": "txt", "schedule": "txt", "loops": "txt", "llvm": "ll", "llvm-opt": "ll", "asm": "s",
           "cuda": "cu", "ptx": "ptx", "launches": "json"}
    for kind in ("tensor", "schedule", "loops", *backend_kinds):
        try:
            text = kernel.source(kind)
        except BackendUnavailable as err:  # e.g. PTX without nvcc: the dump says why instead of failing the build
            text = f"unavailable: {err}\n"
        (out / f"{kind}.{ext.get(kind, 'txt')}").write_text(text)
