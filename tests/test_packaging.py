"""Packaging: the repository root *is* the `ember` package, so a wheel must put everything under `ember/`.

A wrong `package-dir` mapping would install `ir/`, `runtime/`, ... as top-level packages that shadow or clash with
other distributions; these tests catch that both in a freshly built wheel and in the installed distribution.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Development leftovers that are not part of the source tree the wheel is built from.
_NOT_SOURCE = (".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".hypothesis", ".pytest_cache",
               ".ruff_cache", "bench")


def _can_build_wheels_in_place() -> bool:
    """setuptools only has bdist_wheel built in from 70.1; before that it needs the `wheel` package."""
    # Read the version from metadata: importing setuptools inside pytest trips its distutils shim.
    major, minor = (int(p) for p in importlib.metadata.version("setuptools").split(".")[:2])
    return (major, minor) >= (70, 1) or importlib.util.find_spec("wheel") is not None


@pytest.fixture(scope="module")
def wheel_names(tmp_path_factory) -> list[str]:
    """The file list of a wheel built from a copy of the repository (a copy, so the build's `build/` and
    `*.egg-info` droppings never land in the working tree other tests are running from)."""
    if importlib.util.find_spec("pip") is None or importlib.util.find_spec("setuptools") is None:
        pytest.skip("pip or setuptools is not installed")
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(*_NOT_SOURCE))
    out = tmp / "dist"
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out),
           str(src)]
    isolated = not _can_build_wheels_in_place()
    if not isolated:
        cmd.insert(4, "--no-build-isolation")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp, check=False)
    if proc.returncode != 0:
        text = proc.stdout + proc.stderr
        if isolated and ("No matching distribution" in text or "Could not find a version" in text):
            pytest.skip("the build backend cannot be installed here (no bdist_wheel in the local setuptools "
                        "and no package index for an isolated build)")
        pytest.fail(f"building the wheel failed:\n{text[-4000:]}")
    [wheel] = list(out.glob("ember-*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        return zf.namelist()


def test_wheel_has_only_the_ember_package(wheel_names):
    tops = {name.split("/")[0] for name in wheel_names}
    stray = sorted(t for t in tops if t != "ember" and not (t.startswith("ember-") and t.endswith(".dist-info")))
    assert not stray, f"wheel has top-level entries outside ember/: {stray}"
    assert "ember" in tops


def test_wheel_contains_subpackages(wheel_names):
    names = set(wheel_names)
    for required in ("ember/__init__.py", "ember/__main__.py", "ember/codegen/llvm/__init__.py",
                     "ember/testing/__init__.py", "ember/ir/tensor.py", "ember/compiler/schedule.py",
                     "ember/runtime/cache.py"):
        assert required in names, required
    assert not any(n.startswith("ember/tests/") for n in names), "tests are shipped inside the package"


def test_wheel_metadata(wheel_names):
    dist_info = {n.split("/")[0] for n in wheel_names if ".dist-info/" in n}
    assert len(dist_info) == 1
    [info] = dist_info
    assert info.startswith("ember-")
    assert f"{info}/entry_points.txt" in wheel_names


def _top_level(path: str) -> str | None:
    """The top-level name a distribution file installs, or None for files outside site-packages (scripts)."""
    parts = Path(path).parts
    if not parts or parts[0] == "..":
        return None
    if parts[0] == "__pycache__" and len(parts) > 1:
        return parts[1].split(".")[0]
    return parts[0]


def _installed_distribution() -> importlib.metadata.Distribution:
    """ember's distribution in site-packages; the source tree's `ember.egg-info` (left by editable builds) is on
    sys.path too when tests run from the repository root, and must not stand in for it."""
    site_dirs = [sysconfig.get_paths()[k] for k in ("purelib", "platlib")]
    found = [d for d in importlib.metadata.distributions(path=site_dirs) if d.metadata["Name"] == "ember"]
    if not found:
        pytest.skip("ember is not installed into this interpreter's site-packages")
    return found[0]


def test_installed_distribution_top_level_names():
    dist = _installed_distribution()
    files = dist.files
    if files is None:
        pytest.skip("the installed ember distribution has no file list")
    tops = {_top_level(str(f)) for f in files} - {None}
    bad = sorted(t for t in tops if not t.startswith(("__editable__", "ember")))
    assert not bad, f"the installed ember distribution puts these names at the top level: {bad}"
    top_level_txt = dist.read_text("top_level.txt")
    if top_level_txt is not None:
        assert top_level_txt.split() == ["ember"]


def test_installed_package_imports_as_ember():
    import ember
    assert Path(ember.__file__).name == "__init__.py"
    for sub in ("ember.ir", "ember.compiler", "ember.codegen.llvm", "ember.runtime", "ember.testing"):
        assert importlib.util.find_spec(sub) is not None, sub
