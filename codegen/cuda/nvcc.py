"""Compile check without a GPU: nvcc builds generated sources to cubins and ptxas reports each kernel's resources,
which are checked against what the launch configuration assumes (registers per block, shared memory)."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

REGISTERS_PER_BLOCK = 65536
ARCHS = ("sm_80", "sm_90")


@dataclass(frozen=True)
class KernelResources:
    arch: str
    kernel: str
    registers: int
    shared_bytes: int
    spill_stores: int
    spill_loads: int


class NvccError(RuntimeError):
    """nvcc rejected a generated source, or a kernel needs more than its launch allows."""


def nvcc_path() -> "str | None":
    return shutil.which("nvcc")


def compile_check(sources: Sequence[str], archs: Sequence[str] = ARCHS) -> list[KernelResources]:
    """Compile the sources to cubins and parse ptxas's resource report. Generated sources share their prelude, so
    their kernels (uniquely named) are merged into one translation unit: one nvcc call per arch. Raises NvccError
    with nvcc's output when compilation fails."""
    nvcc = nvcc_path()
    if nvcc is None:
        raise NvccError("nvcc (the CUDA toolkit) is not on PATH")
    out: list[KernelResources] = []
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for k, src in enumerate(_merge(sources)):
            path = Path(tmp) / f"k{k}.cu"
            path.write_text(src)
            files.append(str(path))
        for arch in archs:
            cmd = [nvcc, "-cubin", f"-arch={arch}", "-std=c++17", "-Xptxas", "-v", "-odir", tmp, *files]
            run = subprocess.run(cmd, capture_output=True, text=True)
            if run.returncode != 0:
                raise NvccError(f"nvcc failed for {arch}:\n{run.stderr[-4000:]}")
            out.extend(parse_ptxas(run.stderr, arch))
    return out


def _merge(sources: Sequence[str]) -> list[str]:
    """Sources with the same prelude become one file, as long as their kernel names do not collide."""
    from .render import KERNELS_MARK
    files: list[tuple[str, list[str], set[str]]] = []
    for src in sources:
        head, mark, body = src.partition(KERNELS_MARK)
        if not mark:
            head, body = src, ""
        head += mark
        names = set(_KERNEL_NAME.findall(body))
        for fhead, bodies, used in files:
            if fhead == head and not names & used:
                bodies.append(body)
                used |= names
                break
        else:
            files.append((head, [body], names))
    return [head + "".join(bodies) for head, bodies, _ in files]


_KERNEL_NAME = re.compile(r"__global__ void __launch_bounds__\(\d+\) (\w+)\(")
_FUNC = re.compile(r"Compiling entry function '(\w+)' for '(sm_\d+)'")
_USED = re.compile(r"Used (\d+) registers")
_SMEM = re.compile(r"(\d+) bytes smem")
_SPILL = re.compile(r"(\d+) bytes spill stores, (\d+) bytes spill loads")


def parse_ptxas(text: str, arch: str) -> list[KernelResources]:
    """ptxas -v output -> one record per entry function."""
    out = []
    current: "str | None" = None
    spills = (0, 0)
    for line in text.splitlines():
        m = _FUNC.search(line)
        if m:
            current, spills = m.group(1), (0, 0)
            continue
        m = _SPILL.search(line)
        if m and current:
            spills = (int(m.group(1)), int(m.group(2)))
        m = _USED.search(line)
        if m and current:
            smem = _SMEM.search(line)
            out.append(KernelResources(arch, current, int(m.group(1)), int(smem.group(1)) if smem else 0, *spills))
            current = None
    return out


def check_resources(resources: Sequence[KernelResources], launches: Sequence[dict],
                    max_shared: int = 49152) -> list[str]:
    """Problems of each kernel against its launch: registers x threads, shared memory. `launches` are the
    `launches` parts' kernel entries (constant block sizes are checked; symbolic ones skip). See `spills`."""
    by_name = {k["name"]: k for k in launches}
    problems = []
    for r in resources:
        k = by_name.get(r.kernel)
        if k is None:
            continue
        threads = 1
        for d in k["block"]:
            threads = threads * d if isinstance(d, int) and threads is not None else None  # type: ignore[operator]
        if threads is not None and threads * r.registers > REGISTERS_PER_BLOCK:
            problems.append(f"{r.kernel} ({r.arch}): {r.registers} registers x {threads} threads exceeds "
                            f"{REGISTERS_PER_BLOCK} registers per block")
        if r.shared_bytes > max_shared:
            problems.append(f"{r.kernel} ({r.arch}): {r.shared_bytes} bytes of shared memory exceeds {max_shared}")
    return problems


def spills(resources: Sequence[KernelResources]) -> list[str]:
    """Kernels that spill registers to local memory (slow, though correct)."""
    return [f"{r.kernel} ({r.arch}): spills {r.spill_stores} bytes stored, {r.spill_loads} loaded"
            for r in resources if r.spill_stores or r.spill_loads]


def check_modules(modules: Sequence[tuple[str, Sequence[dict]]], archs: Sequence[str] = ARCHS) -> list[str]:
    """Compile many generated modules (source, its launches' kernel entries) at once and list every kernel whose
    resources exceed what its launch assumes or that spills. Kernel names repeat across modules (`kernel_k0`), so
    each module's kernels are renamed apart first, letting them all share one translation unit per prelude."""
    sources, launches = [], []
    for k, (src, kernels) in enumerate(dict.fromkeys((s, json.dumps(l)) for s, l in modules)):
        names = {entry["name"] for entry in json.loads(kernels)}
        sources.append(_KERNEL_NAME.sub(lambda m, k=k: m.group(0).replace(f" {m.group(1)}(", f" {m.group(1)}_m{k}(")
                                        if m.group(1) in names else m.group(0), src))
        launches.extend({**entry, "name": f"{entry['name']}_m{k}"} for entry in json.loads(kernels))
    resources = compile_check(sources, archs)
    return check_resources(resources, launches) + spills(resources)
