"""Running compiled code: the artifact cache, kernel objects, per-kernel profiles and the command line."""
from .cache import ArtifactCache, CacheError, CacheMissError, CacheWarning, default_cache, reset_default_cache
from .kernel import Kernel
from .profile import KernelTime, Profile


def stats() -> dict:
    """Counters of this process: kernels compiled, artifacts loaded, loaded kernels reused in memory, and the
    artifact cache's own counters (memory/disk hits, misses, writes, corrupt entries)."""
    from dataclasses import asdict

    from ..compiler.build import STATS
    return {**STATS, **asdict(default_cache().stats)}
