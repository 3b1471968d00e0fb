"""Compilation targets: `KIND [-OPTION[=VALUE]]...` strings parsed once into immutable `Target`s.

A `Target` has every option of its kind resolved (defaults filled in, host facts looked up), so its canonical
string fully describes what the code generator will do and can serve directly as part of a cache key.
"""

from __future__ import annotations

import difflib
import functools
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "KINDS", "OPTIONS", "SOCS", "OptionSpec", "SocInfo", "Target", "TargetError", "host_cpu", "parse_target",
]

KINDS: tuple[str, ...] = ("llvm", "cuda", "ascend")


class TargetError(ValueError):
    """A target string (or a query on a target) is invalid; the message is one line meant for the user."""


@functools.cache
def host_cpu() -> tuple[str, str]:
    """(cpu name, feature string) of this machine; cached because LLVM's host probing is not free."""
    import llvmlite.binding as llvm

    return llvm.get_host_cpu_name(), llvm.get_host_cpu_features().flatten()


@functools.cache
def _host_triple() -> str:
    import llvmlite.binding as llvm

    return llvm.get_process_triple()


@dataclass(frozen=True)
class SocInfo:
    """Hardware facts about one Ascend SoC that code generation and tiling depend on (see docs ascendc.md §1)."""

    name: str
    arch: int  # __NPU_ARCH__
    ub_bytes: int  # Unified Buffer per vector core
    vector_cores: int  # default numBlocks for a vector-only kernel
    has_data_copy_pad: bool  # DataCopyPad (unaligned GM<->UB copies) exists


SOCS: dict[str, SocInfo] = {
    # 910B2-class: 24 AIC / 48 AIV (separated mode, so a vector kernel's numBlocks counts AIVs).
    "ascend910b": SocInfo("ascend910b", 2201, 192 * 1024, 48, True),
    # 310P: coupled mode, numBlocks counts the 8 AI Cores; DataCopyPad is not supported there.
    "ascend310p": SocInfo("ascend310p", 2002, 256 * 1024, 8, False),
}

OptionType = Literal["flag", "int", "str", "choice"]
Validator = Callable[[object], "str | None"]  # returns a problem description, or None when the value is fine
Default = Callable[[Mapping[str, object]], object]  # computed from the options the user gave explicitly


@dataclass(frozen=True)
class OptionSpec:
    """One row of a kind's option table; `default` is a value or a function of the explicitly given options."""

    name: str
    type: OptionType
    default: object | Default
    help: str
    validator: Validator | None = None
    choices: tuple[str, ...] = ()


def _int_range(lo: int, hi: int | None = None) -> Validator:
    def check(value: object) -> str | None:
        assert isinstance(value, int)
        if value < lo or (hi is not None and value > hi):
            return f"must be in {lo}..{hi}" if hi is not None else f"must be >= {lo}"
        return None

    return check


def _pattern(regex: str, what: str) -> Validator:
    compiled = re.compile(regex)

    def check(value: object) -> str | None:
        return None if compiled.fullmatch(str(value)) else f"must be {what}"

    return check


def sm_number(arch: object) -> int:
    """80 for a validated "sm_80": what a cuda target's arch is compared with (tensor cores from 70, cp.async
    from 80)."""
    return int(str(arch).replace("sm_", ""))


def _cuda_arch(value: object) -> str | None:
    m = re.fullmatch(r"sm_([1-9]\d*)", str(value))
    if m is None or not 50 <= int(m.group(1)) <= 120:
        return "must be sm_XX with XX in 50..120"
    return None


def _default_arch(given: Mapping[str, object]) -> str:
    """The current GPU's architecture when one is present (a cubin loads only on its own major architecture: an
    sm_80 cubin does not run on an H100), else sm_80."""
    if given.get("emulate"):
        return "sm_80"
    try:
        import cupy  # noqa: PLC0415 - optional; only a cuda target without -arch asks
        return f"sm_{cupy.cuda.Device().compute_capability}"
    except Exception:  # noqa: BLE001 - no cupy, no driver or no device: the documented default
        return "sm_80"


def _default_mattr(given: Mapping[str, object]) -> str:
    # An explicit -mcpu usually targets another machine, so the host's feature list would be wrong there:
    # "" lets LLVM use that CPU's own feature set instead.
    return "" if "mcpu" in given else host_cpu()[1]


def _default_cores(given: Mapping[str, object]) -> int:
    return SOCS[str(given.get("soc", "ascend910b"))].vector_cores


_NAME = r"[A-Za-z0-9_.\-]+"

OPTIONS: dict[str, tuple[OptionSpec, ...]] = {
    "llvm": (
        OptionSpec("mcpu", "str", lambda given: host_cpu()[0], "LLVM CPU name (default: the host CPU)",
                   _pattern(_NAME, "an LLVM CPU name")),
        OptionSpec("mattr", "str", _default_mattr,
                   "comma list of +feature/-feature (default: host features, or the -mcpu's own when -mcpu is given)",
                   _pattern(rf"(?:[+-]{_NAME}(?:,[+-]{_NAME})*)?", "a comma list like +avx2,-avx512f")),
        OptionSpec("mtriple", "str", lambda given: _host_triple(), "LLVM target triple (default: this process)",
                   _pattern(_NAME, "an LLVM target triple")),
        OptionSpec("opt", "int", 3, "LLVM optimization level", _int_range(0, 3)),
        OptionSpec("fastmath", "flag", False, "allow reassociation and other unsafe floating-point rewrites"),
        OptionSpec("threads", "int", lambda given: os.cpu_count() or 1, "worker threads for parallel loops",
                   _int_range(1)),
    ),
    "cuda": (
        OptionSpec("arch", "str", _default_arch, "GPU architecture, sm_XX (default: the current GPU's, else sm_80)",
                   _cuda_arch),
        OptionSpec("emulate", "flag", False, "run kernels on the CPU emulator instead of a GPU"),
        OptionSpec("max-threads-per-block", "int", 1024, "upper bound on threads in one block", _int_range(1, 1024)),
        OptionSpec("max-shared-memory-per-block", "int", 49152, "shared memory bytes one block may use",
                   _int_range(0)),
    ),
    "ascend": (
        OptionSpec("soc", "choice", "ascend910b", "Ascend SoC", choices=tuple(SOCS)),
        OptionSpec("cores", "int", _default_cores, "cores to launch on (default: the SoC's vector core count)",
                   _int_range(1, 65535)),
        OptionSpec("emulate", "flag", False, "run kernels on the CPU emulator instead of an NPU"),
    ),
}


@dataclass(frozen=True)
class Target:
    """A fully resolved compilation target; build it with `parse_target`, which fills in every option."""

    kind: str
    options: tuple[tuple[str, object], ...]  # every option of the kind, sorted by name

    def get(self, name: str) -> object:
        """Value of option `name` (without the dash)."""
        for key, value in self.options:
            if key == name:
                return value
        raise TargetError(f"target kind {self.kind!r} has no option {name!r}; options: {_option_list(self.kind)}")

    @property
    def emulate(self) -> bool:
        """Whether kernels run on a CPU emulator rather than the device (llvm always runs natively)."""
        return self.kind != "llvm" and bool(self.get("emulate"))

    def cpu_has(self, feature: str) -> bool:
        """Whether an llvm target's CPU has "avx512f" or "avx" (or a later AVX): from -mattr, else guessed from
        -mcpu's name (an explicit CPU without a feature list)."""
        feats, cpu = str(self.get("mattr")), str(self.get("mcpu"))
        if feats:
            return f"+{feature}" in feats
        return "avx512" in cpu if feature == "avx512f" else cpu not in ("generic", "")

    @property
    def soc(self) -> SocInfo:
        """Hardware facts of an ascend target's SoC."""
        if self.kind != "ascend":
            raise TargetError(f"only ascend targets have a SoC, not {self.kind!r}")
        return SOCS[str(self.get("soc"))]

    def canonical(self) -> str:
        """`kind -opt=value ...` with all options in name order (flags only when set): the cache-key form."""
        parts = [self.kind]
        for name, value in self.options:
            if isinstance(value, bool):
                if value:
                    parts.append(f"-{name}")
            else:
                parts.append(f"-{name}={value}")
        return " ".join(parts)

    def __str__(self) -> str:
        return self.canonical()

    def short(self) -> str:
        """The kind and the options a person cares about (CPU name, GPU arch, SoC), for summaries."""
        names = ("mcpu", "arch", "soc")
        shown = [f"-{k}={v}" for k, v in self.options if k in names]
        return " ".join([self.kind, *shown])


def _option_list(kind: str) -> str:
    return ", ".join(f"-{spec.name}" for spec in OPTIONS[kind])


def parse_target(spec: str | Target) -> Target:
    """Parse a target string into a `Target` (cached per string); a `Target` is returned unchanged."""
    if isinstance(spec, Target):
        return spec
    if not isinstance(spec, str):
        raise TargetError(f"a target must be a string or Target, not {type(spec).__name__}")
    return _parse(spec)


@functools.lru_cache(maxsize=256)
def _parse(spec: str) -> Target:
    def fail(problem: str) -> TargetError:
        return TargetError(f"invalid target {spec!r}: {problem}")

    tokens = spec.split()
    if not tokens:
        raise fail("empty target string; expected one of " + ", ".join(KINDS))
    kind, *rest = tokens
    if kind not in OPTIONS:
        raise fail(f"unknown target kind {kind!r}; valid kinds: {', '.join(KINDS)}")
    specs = {s.name: s for s in OPTIONS[kind]}

    given: dict[str, object] = {}
    for token in rest:
        if token.startswith("--"):
            raise fail(f"options take a single dash: write {token[1:]!r}, not {token!r}")
        if not token.startswith("-") or len(token) == 1:
            raise fail(f"expected an option like -name or -name=value, got {token!r}")
        name, eq, raw = token[1:].partition("=")
        opt = specs.get(name)
        if opt is None:
            close = difflib.get_close_matches(name, specs, n=1)
            hint = f" (did you mean -{close[0]}?)" if close else ""
            raise fail(f"unknown option -{name} for {kind}{hint}; valid options: {_option_list(kind)}")
        if name in given:
            raise fail(f"duplicate option -{name}")
        if opt.type == "flag":
            if eq:
                raise fail(f"-{name} is a flag and takes no value (write -{name}, not {token!r})")
            given[name] = True
            continue
        if not eq:
            raise fail(f"option -{name} needs a value: -{name}=VALUE")
        given[name] = _convert(opt, raw, fail)

    options = tuple(sorted(
        (s.name, given[s.name] if s.name in given else _default(s, given)) for s in OPTIONS[kind]
    ))
    return Target(kind, options)


def _convert(opt: OptionSpec, raw: str, fail: Callable[[str], TargetError]) -> object:
    value: object = raw
    if opt.type == "int":
        if not re.fullmatch(r"[+-]?\d+", raw):
            raise fail(f"-{opt.name} expects an integer, got {raw!r}")
        value = int(raw)
    elif opt.type == "choice" and raw not in opt.choices:
        raise fail(f"-{opt.name}={raw} is not a valid choice; choices: {', '.join(opt.choices)}")
    problem = opt.validator(value) if opt.validator else None
    if problem:
        raise fail(f"-{opt.name}={raw}: {problem}")
    return value


def _default(opt: OptionSpec, given: Mapping[str, object]) -> object:
    return opt.default(given) if callable(opt.default) else opt.default
