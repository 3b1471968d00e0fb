"""Artifact cache: compiled artifacts as bytes, kept in memory and on disk.

The compiler computes the keys; this module only stores and verifies bytes.
Every disk entry carries its length and sha256 so a truncated or damaged file
is detected, reported and rebuilt instead of being loaded as a kernel.
Writes go to a temp file that is renamed into place, so concurrent processes
sharing one directory never see a partial entry.
"""
from __future__ import annotations

import hashlib
import os
import re
import struct
import tempfile
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MAGIC = b"EMBER-ARTIFACT-1\n"
_LENGTH = struct.Struct("<Q")
_DIGEST_SIZE = hashlib.sha256().digest_size
_HEADER_SIZE = len(MAGIC) + _LENGTH.size + _DIGEST_SIZE
_KEY_RE = re.compile(r"[0-9a-f]{16,128}")
_TRUE = {"1", "true", "on", "yes"}
_FALSE = {"0", "false", "off", "no"}


class CacheError(RuntimeError):
    """Misconfiguration or misuse of the artifact cache."""


class CacheMissError(CacheError):
    """A build was needed while EMBER_CACHE_REQUIRE_HIT forbids building."""

    def __init__(self, key: str, what: str = "") -> None:
        self.key = key
        self.what = what
        super().__init__(
            f"required cache hit missed for {what or 'artifact'} (key {key}); "
            "unset EMBER_CACHE_REQUIRE_HIT (or pass require_hit=False) to allow building"
        )


class CacheWarning(UserWarning):
    """A corrupt entry was dropped or the cache directory is unusable."""


@dataclass
class CacheStats:
    """Counters for judging whether the cache is doing its job."""

    memory_hits: int = 0
    disk_hits: int = 0
    misses: int = 0
    writes: int = 0
    corrupt: int = 0


def _env_flag(name: str, default: bool) -> bool:
    """Parse a boolean variable strictly, so a typo is an error rather than silently ignored."""
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise CacheError(f"{name}={os.environ[name]!r} is not a boolean; use 1/0, true/false, on/off or yes/no")


def _env_directory() -> Path:
    """The cache directory from EMBER_CACHE_DIR, else the XDG cache home."""
    explicit = os.environ.get("EMBER_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "ember"


def _check_key(key: str) -> None:
    if not isinstance(key, str) or not _KEY_RE.fullmatch(key):
        raise ValueError(f"cache key must be 16-128 lowercase hex digits, got {key!r}")


def _entry_path(directory: Path, key: str) -> Path:
    """Two-hex-digit shards keep any one directory small."""
    return directory / key[:2] / f"{key}.bin"


def _encode(payload: bytes) -> bytes:
    return MAGIC + _LENGTH.pack(len(payload)) + hashlib.sha256(payload).digest() + payload


def _decode(data: bytes) -> bytes:
    """Return the payload of an entry, or raise ValueError saying what is wrong with it."""
    if len(data) < _HEADER_SIZE:
        raise ValueError(f"truncated header ({len(data)} bytes)")
    if not data.startswith(MAGIC):
        raise ValueError("bad magic")
    (length,) = _LENGTH.unpack_from(data, len(MAGIC))
    payload = data[_HEADER_SIZE:]
    if len(payload) != length:
        raise ValueError(f"payload is {len(payload)} bytes, header says {length}")
    if hashlib.sha256(payload).digest() != data[len(MAGIC) + _LENGTH.size : _HEADER_SIZE]:
        raise ValueError("sha256 mismatch")
    return payload


class ArtifactCache:
    """Key -> bytes store: a process-local dict in front of a shared directory."""

    def __init__(
        self,
        directory: str | os.PathLike[str] | None = None,
        *,
        enabled: bool | None = None,
        require_hit: bool | None = None,
    ) -> None:
        self.enabled = _env_flag("EMBER_CACHE", True) if enabled is None else enabled
        self.require_hit = (
            _env_flag("EMBER_CACHE_REQUIRE_HIT", False) if require_hit is None else require_hit
        )
        if self.require_hit and not self.enabled:
            raise CacheError(
                "EMBER_CACHE_REQUIRE_HIT is set but the cache is disabled (EMBER_CACHE=0): "
                "no artifact could ever hit; enable the cache or turn require-hit off"
            )
        self.directory: Path | None = None
        if self.enabled:
            self.directory = Path(directory).expanduser() if directory is not None else _env_directory()
        self.stats = CacheStats()
        self._memory: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ArtifactCache(directory={self.directory!r}, enabled={self.enabled}, require_hit={self.require_hit})"

    def _disable_disk(self, directory: Path, error: OSError) -> None:
        """Fall back to memory only, warning once however many threads fail together."""
        with self._lock:
            if self.directory != directory:
                return
            self.directory = None
        warnings.warn(
            f"ember cache directory {directory} is unusable ({error}); "
            "falling back to memory only for this process",
            CacheWarning,
            stacklevel=3,
        )

    def get(self, key: str) -> bytes | None:
        """Return the payload stored under `key`, or None; a bad disk entry is deleted."""
        _check_key(key)
        with self._lock:
            payload = self._memory.get(key)
            if payload is not None:
                self.stats.memory_hits += 1
                return payload
        directory = self.directory
        payload = self._read_disk(directory, key) if directory is not None else None
        with self._lock:
            if payload is None:
                self.stats.misses += 1
            else:
                self.stats.disk_hits += 1
                self._memory[key] = payload
        return payload

    def _read_disk(self, directory: Path, key: str) -> bytes | None:
        path = _entry_path(directory, key)
        try:
            with open(path, "rb") as f:
                data = f.read()
                inode = os.fstat(f.fileno()).st_ino
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as error:
            self._disable_disk(directory, error)
            return None
        try:
            return _decode(data)
        except ValueError as problem:
            self._drop_corrupt(path, inode, str(problem))
            return None

    def _drop_corrupt(self, path: Path, inode: int, problem: str) -> None:
        with self._lock:
            self.stats.corrupt += 1
        warnings.warn(f"ember cache: corrupt entry {path} ({problem}); deleting it", CacheWarning, stacklevel=4)
        try:
            # Only delete the file we read: another process may have replaced it with a good one meanwhile.
            if os.stat(path).st_ino == inode:
                os.unlink(path)
        except OSError:
            pass

    def put(self, key: str, payload: bytes) -> None:
        """Store `payload` in memory and, when a directory is usable, atomically on disk."""
        _check_key(key)
        if not isinstance(payload, (bytes, bytearray, memoryview)):
            raise TypeError(f"cache payload must be bytes, got {type(payload).__name__}")
        if not self.enabled:
            return
        payload = bytes(payload)
        with self._lock:
            self._memory[key] = payload
            self.stats.writes += 1
        directory = self.directory
        if directory is not None:
            try:
                self._write_disk(_entry_path(directory, key), payload)
            except OSError as error:
                self._disable_disk(directory, error)

    def _write_disk(self, path: Path, payload: bytes) -> None:
        """Write via temp file + fsync + rename so readers see the old entry or the whole new one."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem[:16]}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(_encode(payload))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise

    def get_or_build(self, key: str, build: Callable[[], bytes], what: str = "") -> tuple[bytes, bool]:
        """Return `(payload, was_hit)`, calling `build` only on a miss that require-hit allows."""
        payload = self.get(key)
        if payload is not None:
            return payload, True
        if self.require_hit:
            raise CacheMissError(key, what)
        payload = build()
        self.put(key, payload)
        return bytes(payload), False

    def _disk_entries(self) -> list[Path]:
        directory = self.directory
        return [] if directory is None else [p for p in directory.glob("*/*.bin") if _KEY_RE.fullmatch(p.stem)]

    def info(self) -> dict[str, Any]:
        """Summary for `ember cache info`: where the cache lives and how big it is."""
        entries = 0
        total = 0
        for path in self._disk_entries():
            try:
                total += path.stat().st_size
            except FileNotFoundError:  # removed by another process meanwhile
                continue
            entries += 1
        return {
            "directory": None if self.directory is None else str(self.directory),
            "enabled": self.enabled,
            "require_hit": self.require_hit,
            "entries": entries,
            "bytes": total,
        }

    def clear(self) -> int:
        """Drop every entry from memory and disk; return how many disk entries were removed."""
        with self._lock:
            self._memory.clear()
        removed = 0
        for path in self._disk_entries():
            try:
                path.unlink()
            except FileNotFoundError:
                continue
            removed += 1
        return removed


_default: ArtifactCache | None = None
_default_lock = threading.Lock()


def default_cache() -> ArtifactCache:
    """The process-wide cache, configured from the environment on first use."""
    global _default
    with _default_lock:
        if _default is None:
            _default = ArtifactCache()
        return _default


def reset_default_cache() -> None:
    """Forget the process-wide cache so the next `default_cache()` re-reads the environment."""
    global _default
    with _default_lock:
        _default = None
