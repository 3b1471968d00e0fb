"""Tests for the artifact store (ember.runtime.cache) and the `ember cache` command."""
from __future__ import annotations

import hashlib
import multiprocessing
import os
import subprocess
import sys
import tempfile
import threading
import warnings
from pathlib import Path

import pytest

from ember.runtime.cache import (
    MAGIC,
    ArtifactCache,
    CacheError,
    CacheMissError,
    CacheStats,
    CacheWarning,
    default_cache,
    reset_default_cache,
)
from ember.runtime.cli import main

KEY = hashlib.sha256(b"kernel").hexdigest()
OTHER = hashlib.sha256(b"other kernel").hexdigest()


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch):
    """Keep the developer's own EMBER_* settings and the singleton out of every test."""
    for name in ("EMBER_CACHE", "EMBER_CACHE_DIR", "EMBER_CACHE_REQUIRE_HIT", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    reset_default_cache()
    yield
    reset_default_cache()


def entry(directory: Path, key: str) -> Path:
    return directory / key[:2] / f"{key}.bin"


def leftovers(directory: Path) -> list[Path]:
    return [p for p in directory.rglob("*") if p.is_file() and not p.name.endswith(".bin")]


def fail_build() -> bytes:
    raise AssertionError("build must not be called")


# --- round trip and stats -------------------------------------------------------------------


def test_round_trip_memory_then_disk(tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path, enabled=True, require_hit=False)
    assert cache.get(KEY) is None
    cache.put(KEY, b"object code")
    assert cache.get(KEY) == b"object code"
    assert cache.stats == CacheStats(memory_hits=1, misses=1, writes=1)

    raw = entry(tmp_path, KEY).read_bytes()
    assert raw.startswith(MAGIC)
    assert int.from_bytes(raw[len(MAGIC) : len(MAGIC) + 8], "little") == len(b"object code")

    fresh = ArtifactCache(tmp_path, enabled=True, require_hit=False)
    assert fresh.get(KEY) == b"object code"
    assert fresh.get(KEY) == b"object code"
    assert fresh.stats == CacheStats(memory_hits=1, disk_hits=1)


def test_get_or_build_builds_once(tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path, enabled=True, require_hit=False)
    assert cache.get_or_build(KEY, lambda: b"built", "matmul") == (b"built", False)
    assert cache.get_or_build(KEY, fail_build, "matmul") == (b"built", True)
    fresh = ArtifactCache(tmp_path, enabled=True, require_hit=False)
    assert fresh.get_or_build(KEY, fail_build) == (b"built", True)
    assert fresh.stats.disk_hits == 1


def test_empty_payload_round_trips(tmp_path: Path) -> None:
    ArtifactCache(tmp_path, enabled=True, require_hit=False).put(KEY, b"")
    assert ArtifactCache(tmp_path, enabled=True, require_hit=False).get(KEY) == b""


def test_threads_share_one_cache(tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path, enabled=True, require_hit=False)
    keys = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(8)]

    def work(key: str) -> None:
        for _ in range(50):
            assert cache.get_or_build(key, lambda: key.encode())[0] == key.encode()

    threads = [threading.Thread(target=work, args=(key,)) for key in keys]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stats = cache.stats
    assert stats.memory_hits + stats.disk_hits + stats.misses == 8 * 50
    assert stats.misses == stats.writes >= 8
    assert cache.info()["entries"] == 8


@pytest.mark.parametrize("key", ["ABCDEF0123456789", "abc123", "a" * 129, "../../etc/passwd", "g" * 16, 12345])
def test_invalid_key(tmp_path: Path, key: object) -> None:
    cache = ArtifactCache(tmp_path, enabled=True, require_hit=False)
    with pytest.raises(ValueError, match="hex"):
        cache.get(key)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="hex"):
        cache.put(key, b"x")  # type: ignore[arg-type]


def test_payload_must_be_bytes(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="bytes"):
        ArtifactCache(tmp_path, enabled=True, require_hit=False).put(KEY, "text")  # type: ignore[arg-type]


# --- corruption -----------------------------------------------------------------------------


def truncate(raw: bytes) -> bytes:
    return raw[:-3]


def flip_payload_byte(raw: bytes) -> bytes:
    return raw[:-1] + bytes([raw[-1] ^ 0x01])


def wrong_magic(raw: bytes) -> bytes:
    return b"EMBER-ARTIFACT-9\n" + raw[len(MAGIC) :]


def empty(raw: bytes) -> bytes:
    return b""


def trailing_garbage(raw: bytes) -> bytes:
    return raw + b"junk"


@pytest.mark.parametrize(
    "corrupt, problem",
    [
        (truncate, "header says"),
        (flip_payload_byte, "sha256"),
        (wrong_magic, "magic"),
        (empty, "truncated header"),
        (trailing_garbage, "header says"),
    ],
)
def test_corrupt_entry_is_reported_deleted_and_rebuilt(tmp_path: Path, corrupt, problem: str) -> None:
    ArtifactCache(tmp_path, enabled=True, require_hit=False).put(KEY, b"good object code")
    path = entry(tmp_path, KEY)
    path.write_bytes(corrupt(path.read_bytes()))

    cache = ArtifactCache(tmp_path, enabled=True, require_hit=False)
    with pytest.warns(CacheWarning, match=problem) as record:
        assert cache.get(KEY) is None
    assert str(path) in str(record[0].message)
    assert not path.exists()
    assert cache.stats.corrupt == 1 and cache.stats.misses == 1

    assert cache.get_or_build(KEY, lambda: b"good object code") == (b"good object code", False)
    assert ArtifactCache(tmp_path, enabled=True, require_hit=False).get(KEY) == b"good object code"


# --- unusable directory ---------------------------------------------------------------------


def test_directory_under_a_file_warns_once_and_uses_memory(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    cache = ArtifactCache(blocker / "cache", enabled=True, require_hit=False)
    assert cache.get(KEY) is None
    with pytest.warns(CacheWarning, match="memory only") as record:
        cache.put(KEY, b"a")
        cache.put(OTHER, b"b")
        assert cache.get_or_build(hashlib.sha256(b"x").hexdigest(), lambda: b"c") == (b"c", False)
    assert len(record) == 1
    assert str(blocker / "cache") in str(record[0].message)
    assert cache.directory is None
    assert cache.get(KEY) == b"a" and cache.get(OTHER) == b"b"
    assert cache.info()["entries"] == 0


@pytest.mark.parametrize("target", ["replace", "mkstemp", "fsync"])
def test_failing_atomic_write_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, target: str) -> None:
    def deny(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    owner = tempfile if target == "mkstemp" else os
    monkeypatch.setattr(owner, target, deny)
    cache = ArtifactCache(tmp_path, enabled=True, require_hit=False)
    with pytest.warns(CacheWarning, match="Permission denied") as record:
        cache.put(KEY, b"a")
        cache.put(OTHER, b"b")
    assert len(record) == 1
    monkeypatch.undo()
    assert leftovers(tmp_path) == []
    assert not entry(tmp_path, KEY).exists()
    assert cache.get(KEY) == b"a"


# --- configuration ---------------------------------------------------------------------------


def test_environment_disables_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMBER_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("EMBER_CACHE", "0")
    cache = ArtifactCache()
    assert not cache.enabled and cache.directory is None
    cache.put(KEY, b"a")
    assert cache.get(KEY) is None
    builds = []
    for _ in range(2):
        assert cache.get_or_build(KEY, lambda: builds.append(1) or b"a") == (b"a", False)
    assert len(builds) == 2
    assert list(tmp_path.iterdir()) == []


def test_environment_directory_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert ArtifactCache().directory == tmp_path / "xdg" / "ember"
    monkeypatch.setenv("EMBER_CACHE_DIR", str(tmp_path / "mine"))
    assert default_cache().directory == tmp_path / "mine"
    assert default_cache() is default_cache()


def test_bad_boolean_in_environment_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMBER_CACHE", "maybe")
    with pytest.raises(CacheError, match="EMBER_CACHE='maybe'"):
        ArtifactCache()


def test_require_hit_raises_before_building(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMBER_CACHE_REQUIRE_HIT", "1")
    cache = ArtifactCache(tmp_path)
    assert cache.require_hit
    with pytest.raises(CacheMissError, match="conv2d kernel") as info:
        cache.get_or_build(KEY, fail_build, "conv2d kernel")
    message = str(info.value)
    assert KEY in message and "EMBER_CACHE_REQUIRE_HIT" in message
    cache.put(KEY, b"prebuilt")
    assert ArtifactCache(tmp_path).get_or_build(KEY, fail_build) == (b"prebuilt", True)


def test_require_hit_with_disabled_cache_is_a_config_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(CacheError, match="disabled"):
        ArtifactCache(tmp_path, enabled=False, require_hit=True)
    monkeypatch.setenv("EMBER_CACHE", "off")
    monkeypatch.setenv("EMBER_CACHE_REQUIRE_HIT", "1")
    with pytest.raises(CacheError, match="disabled"):
        default_cache()


def test_clear_removes_disk_and_memory(tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path, enabled=True, require_hit=False)
    cache.put(KEY, b"a" * 1000)
    cache.put(OTHER, b"b")
    info = cache.info()
    assert info["entries"] == 2 and info["bytes"] > 1000
    assert info["directory"] == str(tmp_path)
    assert cache.clear() == 2
    assert cache.get(KEY) is None and cache.info()["entries"] == 0


# --- concurrent processes --------------------------------------------------------------------

PAYLOAD_SOURCE = "bytes(range(256)) * (4 * 1024 * 1024 // 256)"

# Run through `exec` so the spawned children need not import this test module.
WRITER_SOURCE = f"""
import warnings
from ember.runtime.cache import ArtifactCache
warnings.simplefilter("error")
cache = ArtifactCache(DIRECTORY, enabled=True, require_hit=False)
payload = {PAYLOAD_SOURCE}
for _ in range(20):
    cache.put(KEY, payload)
"""


def test_concurrent_writers_never_expose_partial_entries(tmp_path: Path) -> None:
    payload = eval(PAYLOAD_SOURCE)
    context = multiprocessing.get_context("spawn")
    writers = [
        context.Process(target=exec, args=(WRITER_SOURCE, {"DIRECTORY": str(tmp_path), "KEY": KEY}))
        for _ in range(4)
    ]
    for writer in writers:
        writer.start()
    reads = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        while any(writer.is_alive() for writer in writers):
            got = ArtifactCache(tmp_path, enabled=True, require_hit=False).get(KEY)
            assert got is None or got == payload
            reads.append(got is not None)
    for writer in writers:
        writer.join()
        assert writer.exitcode == 0
    assert len(reads) > 1
    assert ArtifactCache(tmp_path, enabled=True, require_hit=False).get(KEY) == payload
    assert leftovers(tmp_path) == []


# --- command line ----------------------------------------------------------------------------


def test_cli_info_and_clear(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("EMBER_CACHE_DIR", str(tmp_path))
    reset_default_cache()
    store = ArtifactCache(tmp_path, enabled=True, require_hit=False)
    store.put(KEY, bytes(1024 * 1024))
    store.put(OTHER, b"x")

    assert main(["cache", "info"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        f"directory: {tmp_path}",
        "enabled: yes",
        "require-hit: no",
        "entries: 2",
        "size: 1.0 MiB",
    ]

    assert main(["cache", "clear"]) == 0
    assert "removed 2 entries" in capsys.readouterr().out
    assert main(["cache", "info"]) == 0
    assert "entries: 0" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [[], ["cache"], ["cache", "bogus"], ["nope"], ["cache", "info", "--extra"]])
def test_cli_usage_errors_are_one_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert len(captured.err.strip().splitlines()) == 1
    assert "Traceback" not in captured.err


def test_cli_config_error_is_one_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("EMBER_CACHE", "0")
    monkeypatch.setenv("EMBER_CACHE_REQUIRE_HIT", "1")
    assert main(["cache", "info"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ember: error:") and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("argv", [["--help"], ["cache", "--help"], ["cache", "clear", "-h"]])
def test_cli_help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 0
    assert capsys.readouterr().out.startswith("usage: ember")


def test_python_dash_m_ember_help(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ember", "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "cache" in result.stdout
