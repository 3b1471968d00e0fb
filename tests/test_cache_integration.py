"""The artifact cache seen through `ember.build`: reuse across processes, key sensitivity, damage and misconfiguration.

`build` keeps loaded kernels in a per-process memory layer in front of the cache, so anything that must read the
disk again runs in a child process sharing the same EMBER_CACHE_DIR. In-process tests build workloads with a
constant unique to the call, so no earlier build in this process can satisfy them from memory.
"""
from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import ember
import numpy as np
import pytest
from ember.runtime import CacheMissError, CacheWarning, reset_default_cache

_CACHE_ENV = ("EMBER_CACHE", "EMBER_CACHE_DIR", "EMBER_CACHE_REQUIRE_HIT", "EMBER_DUMP_DIR")
_unique = itertools.count()

CHILD = r"""
import json, sys, warnings
import numpy as np
import ember
c = float(sys.argv[1])
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    n = ember.var("n")
    A = ember.placeholder((n,), "float32", "A")
    C = ember.compute((n,), lambda i: A[i] * c + 1, name="C")
    f = ember.build(C, name="child")
    a = np.arange(19, dtype=np.float32)
    ok = bool(np.array_equal(f(a), a * np.float32(c) + 1))
print(json.dumps({"stats": ember.runtime.stats(), "key": f.key, "ok": ok,
                  "warnings": [[w.category.__name__, str(w.message)] for w in caught]}))
"""


def _child_workload(c: float):
    """The workload CHILD builds, for building the same kernel in this process."""
    n = ember.var("n")
    A = ember.placeholder((n,), "float32", "A")
    return ember.compute((n,), lambda i: A[i] * c + 1, name="C")


def _run_child(cache_dir: Path, c: float, **env: str) -> dict:
    full = {k: v for k, v in os.environ.items() if k not in _CACHE_ENV}
    full.update(EMBER_CACHE_DIR=str(cache_dir), **env)
    proc = subprocess.run([sys.executable, "-c", CHILD, repr(c)], capture_output=True, text=True, env=full,
                          timeout=300, cwd=cache_dir.parent, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    """A private cache directory for this test, with a fresh process-wide cache object before and after."""
    for name in _CACHE_ENV:
        monkeypatch.delenv(name, raising=False)
    directory = tmp_path / "cache"
    monkeypatch.setenv("EMBER_CACHE_DIR", str(directory))
    reset_default_cache()
    yield directory
    reset_default_cache()


def _entries(directory: Path) -> list[Path]:
    return sorted(directory.glob("*/*.bin")) if directory.exists() else []


def _fresh_kernel(scale: float | None = None, name: str = "fresh", target: str = "llvm", split: int | None = None,
                  dtype: str = "float32"):
    """Build `C = A * scale + 1` with a scale no earlier build in this process used (unless one is given)."""
    scale = 1000.25 + next(_unique) if scale is None else scale
    A = ember.placeholder((37,), dtype, "A")
    C = ember.compute((37,), lambda i: A[i] * scale + 1, name="C")
    if split is not None:
        s = ember.create_schedule(C)
        s[C].split("i", split)
        f = ember.build(s, [A, C], target=target, name=name)
    else:
        f = ember.build(C, target=target, name=name)
    a = np.arange(37, dtype=dtype)
    np.testing.assert_allclose(f(a), a * np.dtype(dtype).type(scale) + 1, rtol=1e-6)
    return f, scale


def _compiles() -> int:
    return ember.runtime.stats()["compiles"]


# ---- (a) a second process reuses the first one's artifact ---------------------------------------------------------------

def test_second_process_compiles_nothing(cache_dir):
    first = _run_child(cache_dir, 2.5)
    assert first["ok"] and first["warnings"] == []
    assert first["stats"]["compiles"] == 1
    assert first["stats"]["writes"] == 1 and first["stats"]["disk_hits"] == 0
    assert len(_entries(cache_dir)) == 1
    second = _run_child(cache_dir, 2.5)
    assert second["ok"] and second["warnings"] == []
    assert second["key"] == first["key"]
    assert second["stats"]["compiles"] == 0
    assert second["stats"]["disk_hits"] == 1 and second["stats"]["loads"] == 1
    assert _entries(cache_dir)[0].stem == first["key"]


# ---- (b) every part of the key matters ----------------------------------------------------------------------------------

def test_changing_any_key_part_recompiles(cache_dir):
    base, scale = _fresh_kernel(name="keyed")
    variants = {
        "workload": lambda: _fresh_kernel(scale + 0.5, name="keyed")[0],
        "dtype": lambda: _fresh_kernel(scale, name="keyed", dtype="float64")[0],
        "schedule": lambda: _fresh_kernel(scale, name="keyed", split=4)[0],
        "schedule2": lambda: _fresh_kernel(scale, name="keyed", split=8)[0],
        "target option": lambda: _fresh_kernel(scale, name="keyed", target="llvm -opt=2")[0],
        "target flag": lambda: _fresh_kernel(scale, name="keyed", target="llvm -fastmath")[0],
        "kernel name": lambda: _fresh_kernel(scale, name="renamed")[0],
    }
    keys = {"base": base.key}
    for what, make in variants.items():
        before = _compiles()
        f = make()
        assert _compiles() == before + 1, f"changing the {what} did not recompile"
        keys[what] = f.key
    assert len(set(keys.values())) == len(keys), keys
    assert len(_entries(cache_dir)) == len(keys)
    # Rebuilding any of them compiles nothing.
    before = _compiles()
    assert _fresh_kernel(scale, name="keyed", split=4)[0].key == keys["schedule"]
    assert _fresh_kernel(scale, name="keyed")[0].key == keys["base"]
    assert _compiles() == before


def test_equivalent_target_spellings_share_a_key(cache_dir):
    f, scale = _fresh_kernel(name="spelled")
    before = _compiles()
    g, _ = _fresh_kernel(scale, name="spelled", target="llvm -opt=3")
    assert g.key == f.key and _compiles() == before


def test_renaming_tensors_and_loop_variables_keeps_the_workload_key(cache_dir):
    """The workload text ignores names; the full key also covers the schedule trace, which names stages."""
    scale = 1000.25 + next(_unique)
    A = ember.placeholder((37,), "float32", "A")
    C = ember.compute((37,), lambda i: A[i] * scale + 1, name="C")
    f = ember.build(C, name="named")
    B = ember.placeholder((37,), "float32", "B")
    D = ember.compute((37,), lambda x: B[x] * scale + 1, name="D")
    g = ember.build(D, name="named")
    assert ember.ir.structural_key([A, C]) == ember.ir.structural_key([B, D])
    assert g.key != f.key


def test_stats_count_in_process_kernel_reuse(cache_dir):
    _f, scale = _fresh_kernel()
    before = ember.runtime.stats()
    _fresh_kernel(scale)
    after = ember.runtime.stats()
    assert after["compiles"] == before["compiles"]
    assert after["kernel_reuses"] == before["kernel_reuses"] + 1


# ---- (c) damaged entries ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_corrupt_entry_warns_and_rebuilds(cache_dir, damage):
    first = _run_child(cache_dir, 3.75)
    [entry] = _entries(cache_dir)
    data = bytearray(entry.read_bytes())
    if damage == "flip":
        mid = len(data) // 2
        data[mid:mid + 16] = bytes(b ^ 0xFF for b in data[mid:mid + 16])
    else:
        data = data[: len(data) // 3]
    entry.write_bytes(bytes(data))
    second = _run_child(cache_dir, 3.75)
    assert second["ok"], "the rebuilt kernel gives wrong results"
    assert second["key"] == first["key"]
    cache_warnings = [msg for cat, msg in second["warnings"] if cat == "CacheWarning"]
    assert len(cache_warnings) == 1, second["warnings"]
    assert "corrupt entry" in cache_warnings[0] and first["key"] in cache_warnings[0]
    assert second["stats"]["corrupt"] == 1 and second["stats"]["compiles"] == 1
    # The rebuilt entry replaced the damaged one, so a third process hits it.
    third = _run_child(cache_dir, 3.75)
    assert third["ok"] and third["warnings"] == []
    assert third["stats"]["compiles"] == 0 and third["stats"]["corrupt"] == 0


# ---- (d) unusable cache directory ---------------------------------------------------------------------------------------

def test_unusable_cache_directory_warns_once_and_still_works(tmp_path, monkeypatch):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("EMBER_CACHE_DIR", str(blocker / "cache"))
    for name in ("EMBER_CACHE", "EMBER_CACHE_REQUIRE_HIT", "EMBER_DUMP_DIR"):
        monkeypatch.delenv(name, raising=False)
    reset_default_cache()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            _fresh_kernel()
            _fresh_kernel()
            _fresh_kernel()
        cache_warnings = [w for w in caught if issubclass(w.category, CacheWarning)]
        assert len(cache_warnings) == 1, [str(w.message) for w in caught]
        assert "unusable" in str(cache_warnings[0].message) and str(blocker) in str(cache_warnings[0].message)
        assert blocker.read_text() == "not a directory"
    finally:
        reset_default_cache()


# ---- (e) cache disabled -------------------------------------------------------------------------------------------------

def test_cache_disabled_writes_nothing(cache_dir, monkeypatch):
    monkeypatch.setenv("EMBER_CACHE", "0")
    reset_default_cache()
    before = _compiles()
    _fresh_kernel()
    assert _compiles() == before + 1
    assert not cache_dir.exists() or not any(cache_dir.rglob("*"))
    assert ember.runtime.stats()["writes"] == 0


def test_cache_disabled_in_child_process(cache_dir):
    out = _run_child(cache_dir, 4.5, EMBER_CACHE="0")
    assert out["ok"] and out["stats"]["compiles"] == 1 and out["stats"]["writes"] == 0
    assert not cache_dir.exists() or not any(cache_dir.rglob("*"))


def test_invalid_cache_flag_is_an_error(cache_dir, monkeypatch):
    monkeypatch.setenv("EMBER_CACHE", "maybe")
    reset_default_cache()
    with pytest.raises(ember.runtime.CacheError, match=r"EMBER_CACHE='maybe' is not a boolean"):
        _fresh_kernel()


# ---- (f) require-hit --------------------------------------------------------------------------------------------------

def test_require_hit_fails_cold_and_succeeds_warm(cache_dir, monkeypatch):
    scale = 1000.25 + next(_unique)
    monkeypatch.setenv("EMBER_CACHE_REQUIRE_HIT", "1")
    reset_default_cache()
    before = _compiles()
    with pytest.raises(CacheMissError, match=r"required cache hit missed for kernel 'child'") as info:
        ember.build(_child_workload(scale), name="child")
    assert _compiles() == before
    assert not _entries(cache_dir)
    warm = _run_child(cache_dir, scale)  # the child does not inherit the require-hit setting
    assert warm["stats"]["compiles"] == 1
    assert warm["key"] == info.value.key
    reset_default_cache()
    f = ember.build(_child_workload(scale), name="child")
    assert _compiles() == before
    assert ember.runtime.stats()["disk_hits"] == 1
    a = np.arange(19, dtype=np.float32)
    np.testing.assert_array_equal(f(a), a * np.float32(scale) + 1)


def test_require_hit_with_cache_disabled_is_a_configuration_error(cache_dir, monkeypatch):
    monkeypatch.setenv("EMBER_CACHE_REQUIRE_HIT", "1")
    monkeypatch.setenv("EMBER_CACHE", "0")
    reset_default_cache()
    with pytest.raises(ember.runtime.CacheError, match=r"EMBER_CACHE_REQUIRE_HIT is set but the cache is disabled"):
        _fresh_kernel()


# ---- (g) dumps ----------------------------------------------------------------------------------------------------------

def test_dump_dir_writes_every_stage(cache_dir, tmp_path, monkeypatch):
    dump = tmp_path / "dumps"
    monkeypatch.setenv("EMBER_DUMP_DIR", str(dump))
    f, scale = _fresh_kernel(name="dumped")
    [folder] = list(dump.iterdir())
    assert folder.name == f"dumped-{f.key[:12]}"
    files = {"tensor": "tensor.txt", "schedule": "schedule.txt", "loops": "loops.txt", "llvm": "llvm.ll",
             "llvm-opt": "llvm-opt.ll", "asm": "asm.s"}
    assert sorted(p.name for p in folder.iterdir()) == sorted(files.values())
    for kind, filename in files.items():
        text = (folder / filename).read_text()
        assert text.strip(), kind
        assert text == f.source(kind), kind
    assert "define" in (folder / "llvm.ll").read_text()
    # A kernel served from memory is dumped too.
    monkeypatch.setenv("EMBER_DUMP_DIR", str(tmp_path / "dumps2"))
    before = _compiles()
    _fresh_kernel(scale, name="dumped")
    assert _compiles() == before
    assert [p.name for p in (tmp_path / "dumps2").iterdir()] == [folder.name]
