"""The Ascend backend: loop IR -> AscendC kernel source + host code + a launch plan (+ the emulator's binary).

Parts of an artifact: "ascend" (kernel source, exactly what the emulator compiled and what export writes),
"ascend-host" (host code), "plan" (JSON: kernels in launch order with parameters, tiling values, block counts,
padding; the kernel's arguments and workspaces) and, with -emulate, "binary" (the emulator's shared object).
"""
from __future__ import annotations

import json
from typing import Sequence

import numpy as np

from ...compiler.target import Target
from ...ir.expr import Const, SizeVar
from ...ir.loops import Buffer, For, PrimFunc, Stmt, walk_stmts
from .analyze import Program, analyze
from .cexpr import HELPERS, AscendError, ident, storage_type
from .emulate import pack_tiling
from .host import render_host
from .kernel import COPY_ALIGNED, COPY_PAD, PRELUDE, KernelSource
from .scalar import render_scalar
from .tiling import TilingChoice
from .matmul import render_matmul
from .rowwise import RowTooLong, find_group, render_rowwise
from .vector import render_elementwise, render_row_reduce
from .vexpr import Unvectorizable

_RENDER = {"elementwise": render_elementwise, "row_reduce": render_row_reduce, "matmul": render_matmul}


def generate(func: PrimFunc, target: Target) -> tuple[str, list[KernelSource], Program]:
    """The kernel source of a loop-IR function: one AscendC kernel per root nest, vector families where they
    apply, the scalar fallback otherwise. Each kernel's tiling choice comes from the `tile_length` and
    `num_blocks` pragmas on its loops (schedule data, so a tuner can vary them) within the target's cores."""
    soc = target.soc
    for b in func.args:
        storage_type(b.dtype, f"kernel {func.name}, argument {b.name}")
    prog = analyze(func)
    kernels: list[KernelSource] = []
    internal = {id(b) for b in prog.workspaces}
    t = 0
    while t < len(prog.nests):
        name = ident(f"{func.name}_{len(kernels)}")
        end = find_group(prog.nests, t, internal) if not func.size_vars else t
        if end > t:
            try:
                choice = tiling_choice(name, [n.stmt for n in prog.nests[t:end]], target)
                kernels.append(render_rowwise(name, prog.nests[t:end], soc, choice))
                t = end
                continue
            except (Unvectorizable, RowTooLong):
                pass
        nest, src = prog.nests[t], None
        choice = tiling_choice(name, [nest.stmt], target)
        if nest.family in _RENDER and not func.size_vars:
            try:
                src = _RENDER[nest.family](name, nest, soc, choice)
            except Unvectorizable:
                src = None
        if src is None:
            src = render_scalar(name, nest.stmt, choice.cores, func.size_vars)
        kernels.append(src)
        t += 1
    copy = COPY_PAD if soc.has_data_copy_pad else COPY_ALIGNED
    cube = '#include "lib/matmul_intf.h"\n' if any(k.family == "matmul" for k in kernels) else ""
    text = (f"// ember kernel {func.name} for {soc.name} (arch {soc.arch}): {len(kernels)} AscendC kernel(s)\n"
            + PRELUDE + cube + "\n" + HELPERS + "\n" + copy + "\n" + "\n".join(k.code for k in kernels))
    return text, kernels, prog


def tiling_choice(kernel: str, stmts: Sequence[Stmt], target: Target) -> TilingChoice:
    """The pragmas a kernel's loops carry; one kernel takes one value per key."""
    found: dict[str, set[int]] = {}

    def visit(node: Stmt) -> None:
        if isinstance(node, For):
            for key, value in node.annotations:
                found.setdefault(key, set()).add(value)

    for s in stmts:
        walk_stmts(s, visit)
    for key, values in found.items():
        if len(values) > 1:
            raise AscendError(f"kernel {kernel}: its loops carry different {key} pragmas {sorted(values)}; one kernel "
                              f"has one tiling")
    cores = int(target.get("cores"))
    blocks = min(found.get("num_blocks", {cores}))
    tile = found.get("tile_length")
    return TilingChoice(min(cores, blocks), min(tile) if tile else None)


def _dims(buf: Buffer) -> list["int | str"]:
    out: list = []
    for d in buf.shape:
        if isinstance(d, Const):
            out.append(int(d.value))
        elif isinstance(d, SizeVar):
            out.append(d.name)
        else:
            raise AscendError(f"buffer {buf.name}: dimension {d} is neither a constant nor a size variable")
    return out


def plan_json(func: PrimFunc, kernels: list[KernelSource], prog: Program) -> str:
    ws = []
    used = {n for k in kernels for n, _ in k.params}
    for b in prog.workspaces:
        if b.name not in used:  # an intermediate a fused kernel keeps in UB
            continue
        ws.append({"name": b.name, "dims": _dims(b), "dtype": b.dtype.name})
    return json.dumps({
        "name": func.name,
        "args": [{"name": b.name, "dims": _dims(b), "dtype": b.dtype.name} for b in func.args],
        "size_vars": [v.name for v in func.size_vars],
        "workspaces": ws,
        "kernels": [{"name": k.name, "family": k.family, "params": k.params, "fields": k.tiling_fields,
                     "tiling": k.tiling, "blocks": k.num_blocks, "pad": k.pad, "plan": k.plan} for k in kernels],
    })


def _nbytes(dims: list, dtype: str, env: dict[str, int]) -> int:
    n = 1
    for d in dims:
        n *= d if isinstance(d, int) else env[d]
    return n * np.dtype(dtype).itemsize


def host_source(plan: dict, kernels: list[KernelSource]) -> str:
    env = {v: 1 for v in plan["size_vars"]}
    outputs = {name for k in plan["kernels"] for name, w in k["params"] if w}
    args = {a["name"] for a in plan["args"]}
    bufs = []
    for a in plan["args"] + plan["workspaces"]:
        pad = max([k["pad"].get(a["name"], 0) for k in plan["kernels"]] + [0])
        nbytes = max(_nbytes(a["dims"], a["dtype"], env), pad * np.dtype(a["dtype"]).itemsize)
        is_out = a["name"] in outputs and a["name"] in args
        bufs.append((a["name"], nbytes, a["name"] in args and not is_out, is_out))
    return render_host(plan["name"], kernels, bufs, env)


class AscendBackend:
    kind = "ascend"
    source_kinds = ("ascend", "ascend-host", "ascend-plan")

    def toolchain(self, target: Target) -> str:
        if not target.emulate:
            return "ascendc-source"
        from .emulate import toolchain
        return toolchain()

    def compile(self, func: PrimFunc, target: Target) -> dict[str, "bytes | str"]:
        text, kernels, prog = generate(func, target)
        plan = plan_json(func, kernels, prog)
        parts: dict[str, "bytes | str"] = {"ascend": text, "ascend-host": host_source(json.loads(plan), kernels),
                                           "plan": plan}
        if target.emulate:
            from . import emulate
            parts["binary"] = emulate.compile_module(text, _specs(json.loads(plan)), target.soc.arch,
                                                     target.soc.ub_bytes)
        return parts

    def load(self, parts: dict[str, "bytes | str"], func_args: int, size_vars: int, target: Target):
        if not target.emulate:
            return _no_device
        from . import emulate
        plan = json.loads(parts["plan"])  # type: ignore[arg-type]
        module = emulate.EmulatedModule(parts["binary"], _specs(plan))  # type: ignore[arg-type]
        return Launcher(module, plan)

    def source(self, parts: dict[str, "bytes | str"], kind: str, target: Target) -> str:
        return parts["plan" if kind == "ascend-plan" else kind]  # type: ignore[return-value]


def _no_device(pointers: Sequence[int], sizes: Sequence[int]) -> None:
    """Kernels built for a real NPU can be inspected and exported here, not run."""
    from .. import BackendUnavailable
    raise BackendUnavailable("running AscendC kernels needs an Ascend NPU with CANN; use the target "
                             "'ascend -emulate' to run them on the CPU emulator, or ember.export(..., "
                             "target='ascend') to build them with CANN")


def _specs(plan: dict):
    from .emulate import GmParam, KernelSpec
    return [KernelSpec(k["name"], tuple(GmParam(ident(n), w) for n, w in k["params"]), f"EmberTiling_{k['name']}")
            for k in plan["kernels"]]


class Launcher:
    """Runs the plan's kernels in order on host pointers; workspaces and padded copies are made per call."""

    def __init__(self, module, plan: dict):
        self.module, self.plan = module, plan

    def __call__(self, pointers: Sequence[int], sizes: Sequence[int]) -> None:
        plan = self.plan
        env = dict(zip(plan["size_vars"], sizes))
        pads = {}
        for k in plan["kernels"]:
            for n, v in k["pad"].items():
                pads[n] = max(pads.get(n, 0), v)
        gm: dict[str, tuple[int, int]] = {}
        keep: list[np.ndarray] = []
        copies: list[tuple[np.ndarray, int, int]] = []
        for a, ptr in zip(plan["args"], pointers):
            nbytes = _nbytes(a["dims"], a["dtype"], env)
            item = np.dtype(a["dtype"]).itemsize
            if a["name"] in pads and pads[a["name"]] * item > nbytes:
                buf = np.zeros(pads[a["name"]] * item, np.uint8)
                if nbytes:
                    _ctypes_copy(buf.ctypes.data, ptr, nbytes)
                keep.append(buf)
                copies.append((buf, ptr, nbytes))
                gm[a["name"]] = (buf.ctypes.data, buf.nbytes)
            else:
                gm[a["name"]] = (ptr, nbytes)
        for w in plan["workspaces"]:
            nbytes = max(_nbytes(w["dims"], w["dtype"], env), pads.get(w["name"], 0) * np.dtype(w["dtype"]).itemsize)
            buf = np.zeros(max(nbytes, 1), np.uint8)
            keep.append(buf)
            gm[w["name"]] = (buf.ctypes.data, nbytes)
        for k in plan["kernels"]:
            values = [v if isinstance(v, int) else env[v] for v in k["tiling"]]
            self.module.launch(k["name"], k["blocks"], [gm[n] for n, _ in k["params"]], pack_tiling(values))
        for buf, ptr, nbytes in copies:
            _ctypes_copy(ptr, buf.ctypes.data, nbytes)


def _ctypes_copy(dst: int, src: int, n: int) -> None:
    import ctypes
    ctypes.memmove(dst, src, n)
