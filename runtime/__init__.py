"""Running compiled code: the artifact cache, kernel objects and the command line."""
from .cache import ArtifactCache, CacheError, CacheMissError, CacheWarning, default_cache, reset_default_cache
from .kernel import Kernel


def stats() -> dict:
    """Counters of this process: kernels compiled, artifacts loaded, in-memory hits, and the cache's own."""
    from dataclasses import asdict

    from ..compiler.build import STATS
    return {**STATS, **asdict(default_cache().stats)}
