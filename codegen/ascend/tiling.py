"""Host tiling: how a kernel's work is split across cores (former/tail cores) and into UB tiles (tail tile).

The split follows CANN's tail-core scheme (ascendc.md §4): work is counted in aligned units (32-byte blocks of
elements, or rows); `formerNum = units % numBlocks` cores take `ceil(units / numBlocks)` units, the others
`floor(...)`. The tile length is the largest aligned element count whose buffers fit the SoC's UB budget: every
queue twice (BUFFER_NUM = 2), every TBuf temporary once, each InitBuffer rounded up to 32 bytes.

Tiling choices (core count and tile length) are schedule data: `TilingChoice` comes from the target's `-cores`,
capped by a `num_blocks` pragma, and from a `tile_length` pragma on the kernel's loops (backend.tiling_choice); a
choice that breaks a limit is an AscendError naming the kernel and it.
"""
from __future__ import annotations

from dataclasses import dataclass

from ...compiler.target import SocInfo
from .cexpr import AscendError

BUFFER_NUM = 2
BLOCK = 32  # bytes: UB alignment and DataCopy granularity
REPEAT = 256  # bytes: one vector repeat; Compare/Select counts are multiples of it
SCRATCH = 8 * 1024  # UB tail some APIs use as scratch (TMP_UB_SIZE): never planned
MAX_IN_QUEUES = 8  # simultaneously allocated buffers per TPosition (VECIN)


@dataclass(frozen=True)
class TilingChoice:
    """What a tuner may vary: the launch's core count and the tile length in elements (None: largest that fits)."""

    cores: int
    tile: "int | None" = None


@dataclass(frozen=True)
class Buffers:
    """The UB buffers of one kernel, per tile element: queued bytes (x BUFFER_NUM) and TBuf bytes (x 1)."""

    queued: tuple[int, ...]  # element sizes of the VECIN/VECOUT queues
    temps: int  # float-sized TBuf temporaries
    mask: bool  # a Compare bit-mask TBuf
    fixed: int = 0  # bytes of fixed-size buffers (reduction results, per-row outputs)
    min_itemsize: int = 4


def align_up(n: int, a: int) -> int:
    return (n + a - 1) // a * a


def ub_bytes(b: Buffers, tile: int) -> int:
    total = sum(BUFFER_NUM * align_up(tile * s, BLOCK) for s in b.queued)
    total += b.temps * align_up(tile * 4, BLOCK)
    if b.mask:
        total += align_up(tile // 8, BLOCK)
    return total + b.fixed


def budget(soc: SocInfo) -> int:
    return soc.ub_bytes - SCRATCH


def tile_align(b: Buffers) -> int:
    """Elements per tile step: whole 32-byte blocks for every dtype, whole 256-byte repeats under Compare."""
    return (REPEAT if b.mask else BLOCK) // b.min_itemsize


def choose_tile(kernel: str, b: Buffers, soc: SocInfo, work: int, requested: "int | None") -> int:
    """The tile length in elements: the requested one (checked) or the largest that fits, capped at `work`."""
    align, limit = tile_align(b), budget(soc)
    if requested is not None:
        if requested <= 0 or requested % align:
            raise AscendError(f"kernel {kernel}: tile length {requested} must be a positive multiple of {align} "
                              f"elements ({'256' if b.mask else '32'}-byte alignment)")
        need = ub_bytes(b, requested)
        if need > limit:
            raise AscendError(f"kernel {kernel}: tile length {requested} needs {need} bytes of UB, over the "
                              f"{limit}-byte budget of {soc.name} ({soc.ub_bytes} bytes less {SCRATCH} scratch)")
        return requested
    per = sum(BUFFER_NUM * s for s in b.queued) + 4 * b.temps + (1 if b.mask else 0)
    tile = (limit - b.fixed - BLOCK * (2 * len(b.queued) + b.temps + 1)) // max(per, 1) // align * align
    if tile < align:
        raise AscendError(f"kernel {kernel}: even one {align}-element tile needs {ub_bytes(b, align)} bytes of "
                          f"UB, over the {limit}-byte budget of {soc.name}")
    return min(tile, align_up(max(work, 1), align))


@dataclass(frozen=True)
class CoreSplit:
    """Units per core: cores below `former_num` take `former` units, the rest `tail`."""

    num_blocks: int
    former_num: int
    former: int
    tail: int


def split_units(units: int, cores: int) -> CoreSplit:
    """Former/tail cores over `units` indivisible units of work (ascendc.md §4, 尾核Tiling)."""
    n = max(1, min(cores, units))
    return CoreSplit(n, units % n, -(-units // n), units // n)
