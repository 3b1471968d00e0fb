"""Ahead-of-time saved models: a `CompiledModel` as one file that loads without recompiling.

The file is a zip archive (stdlib only, CRC-checked per entry, so truncation and bit rot are detected) holding
`manifest.json` (versions, target, tensor specs, steps, memory plan), `kernels/K.bin` (each kernel's backend
artifact, as the artifact cache stores it) and `consts/K.npy` (the weights). Loading maps the stored object code
directly: LLVM's optimizer and code generator never run, and neither onnx nor sympy is imported.
"""
from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from ..compiler.target import Target, TargetError, host_cpu, parse_target
from ..ir.dtype import INDEX, as_dtype
from ..ir.expr import ARITH_OPS, Binary, Cast, Const, Expr, SizeVar, Var, const
from .artifact import ArtifactError, pack, unpack
from .executor import CompiledModel, Step, TensorSpec, model_class
from .kernel import Kernel, Param
from .keys import VERSION

FORMAT = "ember-saved-model"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
# Generic CPU names whose code runs on any CPU of their architecture (used when a target gives no feature list).
_BASELINE_CPUS = {"generic", "x86-64"}


class SavedModelError(ValueError):
    """A saved model cannot be written, or cannot be loaded here; the message is one line meant for the user."""


# ---- saving -----------------------------------------------------------------------------------------------------
def dumps(model: CompiledModel) -> bytes:
    """The saved-model file's bytes (also what the model-level compile cache stores)."""
    kernels: list[Kernel] = []
    index: dict[str, int] = {}
    for step in model.steps:
        if step.kernel.key not in index:
            index[step.kernel.key] = len(kernels)
            kernels.append(step.kernel)
    cpu, features = host_cpu() if model.target.kind == "llvm" else ("", "")
    manifest = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "ember_version": VERSION,
        "target": model.target.canonical(), "host_cpu": cpu, "host_features": features,
        "name": model.name, "meta": _json_meta(model.meta),
        "inputs": [_spec_json(s) for s in model.inputs], "outputs": [_spec_json(s) for s in model.outputs],
        "temps": [_spec_json(s) for s in model.temps],
        "consts": [{"dtype": str(c.dtype), "shape": list(c.shape)} for c in model.consts],
        "kernels": [{"name": k.name, "key": k.key, "size_vars": [v.name for v in k.size_vars],
                     "params": [{"name": p.name, "dtype": str(p.dtype), "shape": [_expr_json(d) for d in p.shape],
                                 "output": p.is_output} for p in k.params]} for k in kernels],
        "steps": [{"kernel": index[s.kernel.key], "args": [list(a) for a in s.args], "label": s.label}
                  for s in model.steps],
        "output_slots": [list(s) for s in model.output_slots],
        "memory_plan": {"offsets": list(model.offsets), "peak_bytes": model.planned_peak_bytes},
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr(MANIFEST, json.dumps(manifest, indent=1))
        for k, kernel in enumerate(kernels):
            zf.writestr(f"kernels/{k}.bin", pack(_artifact_parts(kernel), {"name": kernel.name}))
        for k, c in enumerate(model.consts):
            blob = io.BytesIO()
            np.save(blob, c, allow_pickle=False)
            zf.writestr(f"consts/{k}.npy", blob.getvalue())
    return buffer.getvalue()


def save(model: CompiledModel, path: "str | os.PathLike[str]") -> None:
    """Write `model` to `path` atomically (a reader never sees half a file)."""
    path = Path(path)
    data = dumps(model)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _artifact_parts(kernel: Kernel) -> dict[str, "bytes | str"]:
    """The backend artifact a kernel runs from, from this process's table of loaded kernels (which both
    `ember.build` and `load` fill), so saving works with the artifact cache disabled too."""
    from ..compiler.build import _loaded, _loaded_lock
    with _loaded_lock:
        hit = _loaded.get(kernel.key)
    if hit is None:
        raise SavedModelError(f"the object code of kernel {kernel.name!r} is not loaded in this process")
    return hit[0]


def _spec_json(spec: TensorSpec) -> dict:
    return {"name": spec.name, "dtype": str(spec.dtype), "shape": [_expr_json(d) for d in spec.shape]}


def _expr_json(dim: "int | Expr") -> Any:
    """Shape dims as JSON: ints stay ints, a symbolic size is {"var": name}, arithmetic is [op, a, b]."""
    if isinstance(dim, int):
        return dim
    if isinstance(dim, Const):
        return int(dim.value)
    if isinstance(dim, Var):
        return {"var": dim.name}
    if isinstance(dim, Cast):
        return _expr_json(dim.value)
    if isinstance(dim, Binary):
        return [dim.op, _expr_json(dim.a), _expr_json(dim.b)]
    raise SavedModelError(f"shape expression {dim} cannot be saved")


def _json_meta(meta: dict) -> dict:
    try:
        return json.loads(json.dumps(meta))
    except (TypeError, ValueError) as err:
        raise SavedModelError(f"the model's meta data cannot be saved as JSON: {err}") from None


# ---- loading ----------------------------------------------------------------------------------------------------
def load(path: "str | os.PathLike[str]") -> CompiledModel:
    """Load a model written by `CompiledModel.save` (or `ember compile -o`), ready to run."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"no saved ember model at {path}") from None
    return loads(data, str(path))


def loads(data: bytes, source: str = "the saved model") -> CompiledModel:
    """A model from the bytes of a saved-model file; `source` names it in error messages."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            manifest = _read_manifest(zf, source)
            target = check_compatible(manifest, source)
            return _build_model(zf, manifest, target, source)
    except SavedModelError:
        raise
    except (zipfile.BadZipFile, EOFError, ArtifactError) as err:
        raise SavedModelError(f"{source} is truncated or corrupt ({err})") from None
    except (KeyError, IndexError, TypeError, ValueError) as err:
        raise SavedModelError(f"{source} is corrupt: its contents do not match its manifest ({err})") from None


def _read_manifest(zf: zipfile.ZipFile, source: str) -> dict:
    if MANIFEST not in zf.namelist():
        raise SavedModelError(f"{source} is not an ember saved model (it has no {MANIFEST})")
    manifest = json.loads(zf.read(MANIFEST))
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise SavedModelError(f"{source} is not an ember saved model (unknown manifest format)")
    return manifest


def check_compatible(manifest: dict, source: str) -> Target:
    """The model's target, after checking this ember and this machine can run what the file holds."""
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        newer = isinstance(version, int) and version > FORMAT_VERSION
        raise SavedModelError(f"{source} uses saved-model format {version}, this ember (version {VERSION}) reads "
                              f"format {FORMAT_VERSION}; {'upgrade ember' if newer else 'compile the model again'}")
    saved_by = str(manifest.get("ember_version"))
    if saved_by.split(".")[:2] != VERSION.split(".")[:2]:
        raise SavedModelError(f"{source} was saved by ember {saved_by}, which is incompatible with this ember "
                              f"{VERSION}; compile the model again")
    try:
        target = parse_target(manifest["target"])
    except TargetError as err:
        raise SavedModelError(f"{source} was saved for a target this ember does not know: {err}") from None
    if target.kind == "llvm":
        problem = _cpu_mismatch(target)
        if problem:
            raise SavedModelError(f"{source} was compiled for another machine ({problem}); compile the model again "
                                  f"here, or pass a target this CPU supports")
    return target


def _cpu_mismatch(target: Target) -> str:
    """Why code for `target` cannot run on this CPU, or '' when it can."""
    host = parse_target("llvm")
    if target.get("mtriple") != host.get("mtriple"):
        return f"target triple {target.get('mtriple')}, this process is {host.get('mtriple')}"
    wanted = {f[1:] for f in str(target.get("mattr")).split(",") if f.startswith("+")}
    if not wanted:
        cpu = target.get("mcpu")
        ok = cpu == host.get("mcpu") or cpu in _BASELINE_CPUS
        return "" if ok else f"CPU {cpu}, this CPU is {host.get('mcpu')}"
    have = {f[1:] for f in str(host.get("mattr")).split(",") if f.startswith("+")}
    missing = sorted(wanted - have)
    if missing:
        shown = ", ".join(missing[:6]) + (f" and {len(missing) - 6} more" if len(missing) > 6 else "")
        return f"CPU features {shown} are missing here"
    return ""


def _build_model(zf: zipfile.ZipFile, manifest: dict, target: Target, source: str) -> CompiledModel:
    from ..codegen import BackendUnavailable, get_backend
    try:
        backend = get_backend(target)
    except BackendUnavailable as err:
        raise SavedModelError(f"{source} cannot run here: {err}") from None
    sizes: dict[str, SizeVar] = {}
    inputs = [_spec(s, sizes) for s in manifest["inputs"]]
    outputs = [_spec(s, sizes) for s in manifest["outputs"]]
    temps = [_spec(s, sizes) for s in manifest["temps"]]
    consts = [_const(zf, k, c) for k, c in enumerate(manifest["consts"])]
    kernels = [_kernel(zf, k, spec, target, backend, sizes) for k, spec in enumerate(manifest["kernels"])]
    counts = {"input": len(inputs), "output": len(outputs), "const": len(consts), "temp": len(temps)}
    steps = []
    for s in manifest["steps"]:
        kernel = kernels[s["kernel"]]
        args = [_slot(a, counts) for a in s["args"]]
        if len(args) != len(kernel.params):
            raise ValueError(f"a step passes {len(args)} arguments to kernel {kernel.name!r}, which takes "
                             f"{len(kernel.params)}")
        steps.append(Step(kernel, args, str(s["label"])))
    output_slots = [_slot(a, counts) for a in manifest["output_slots"]]
    return model_class(target)(str(manifest["name"]), inputs, outputs, consts, temps, steps, output_slots, target,
                               dict(manifest["meta"]))


def _kernel(zf: zipfile.ZipFile, k: int, spec: dict, target: Target, backend, sizes: dict[str, SizeVar]) -> Kernel:
    """Map one kernel's stored object code (or reuse it if this process already has it); nothing is compiled."""
    from ..compiler.build import STATS, _loaded, _loaded_lock
    key = str(spec["key"])
    params = [Param(str(p["name"]), tuple(_expr(d, sizes) for d in p["shape"]), as_dtype(p["dtype"]),
                    bool(p["output"])) for p in spec["params"]]
    size_vars = [_size(str(n), sizes) for n in spec["size_vars"]]
    stored = zf.read(f"kernels/{k}.bin")  # read even when reused: the CRC check covers every entry
    with _loaded_lock:
        hit = _loaded.get(key)
    if hit is None:
        parts, _meta = unpack(stored)
        launch = backend.load(parts, len(params), len(size_vars), target)
        STATS["loads"] += 1
        with _loaded_lock:
            hit = _loaded.setdefault(key, (parts, launch))
    else:
        STATS["kernel_reuses"] += 1
    parts, launch = hit
    name = str(spec["name"])

    def sources(kind: str) -> str:
        if kind in backend.source_kinds:
            return backend.source(parts, kind, target)
        raise ValueError(f"kernel {name!r} was loaded from a saved model, which keeps only the backend's code; "
                         f"valid kinds: {', '.join(backend.source_kinds)}")
    return Kernel(name, params, size_vars, launch, sources, key, target)


def _const(zf: zipfile.ZipFile, k: int, spec: dict) -> np.ndarray:
    arr = np.load(io.BytesIO(zf.read(f"consts/{k}.npy")), allow_pickle=False)
    if str(arr.dtype) != spec["dtype"] or list(arr.shape) != spec["shape"]:
        raise ValueError(f"weight {k} is {arr.dtype}{list(arr.shape)}, the manifest says {spec['dtype']}"
                         f"{spec['shape']}")
    return np.require(arr, requirements="C")


def _slot(raw: list, counts: dict[str, int]) -> tuple[str, int]:
    kind, k = raw
    if kind not in counts or not isinstance(k, int) or not 0 <= k < counts[kind]:
        raise ValueError(f"argument slot {raw} refers to nothing")
    return kind, k


def _spec(raw: dict, sizes: dict[str, SizeVar]) -> TensorSpec:
    shape = tuple(d if isinstance(d, int) else _expr(d, sizes) for d in raw["shape"])
    return TensorSpec(str(raw["name"]), as_dtype(raw["dtype"]), shape)


def _size(name: str, sizes: dict[str, SizeVar]) -> SizeVar:
    return sizes.setdefault(name, SizeVar(name, INDEX))


def _expr(raw: Any, sizes: dict[str, SizeVar]) -> Expr:
    """Inverse of `_expr_json`; integer dims become constants so kernels can evaluate them."""
    if isinstance(raw, int):
        return const(raw, INDEX)
    if isinstance(raw, dict):
        return _size(str(raw["var"]), sizes)
    op, a, b = raw
    if op not in ARITH_OPS:
        raise ValueError(f"unknown shape operation {op!r}")
    return Binary(str(op), _expr(a, sizes), _expr(b, sizes), INDEX)


def read_manifest(path: "str | os.PathLike[str]") -> dict:
    """The manifest of a saved model without loading its code, for `ember info` (works for any machine's file)."""
    try:
        with zipfile.ZipFile(path) as zf:
            return _read_manifest(zf, str(path))
    except (zipfile.BadZipFile, EOFError, ValueError) as err:
        if isinstance(err, SavedModelError):
            raise
        raise SavedModelError(f"{path} is truncated or corrupt ({err})") from None
