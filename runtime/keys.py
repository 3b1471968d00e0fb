"""What identifies ember itself in cache keys: its version and a hash of its own source files."""
from __future__ import annotations

import functools
import hashlib
from pathlib import Path

VERSION = "0.1.0"
_ROOT = Path(__file__).resolve().parent.parent
_SOURCE_DIRS = ("ir", "compiler", "codegen", "runtime", "graph", "frontend")


@functools.cache
def source_hash() -> str:
    """sha256 over every compiler source file, so any change to ember recompiles cached kernels."""
    h = hashlib.sha256()
    for folder in _SOURCE_DIRS:
        for path in sorted((_ROOT / folder).rglob("*")):
            if path.suffix in (".py", ".h") and path.is_file():
                h.update(str(path.relative_to(_ROOT)).encode())
                h.update(path.read_bytes())
    return h.hexdigest()


def cache_key(**parts: str) -> str:
    h = hashlib.sha256()
    for name in sorted(parts):
        h.update(name.encode() + b"\0" + parts[name].encode() + b"\0")
    h.update(f"ember={VERSION};src={source_hash()}".encode())
    return h.hexdigest()
