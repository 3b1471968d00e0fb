"""Test-session set-up: hypothesis profiles and a private artifact cache.

Profiles: "ci" (default; few examples, failures printed with a reproduction blob) and "dev" (many examples, for
hunting bugs locally). Choose with HYPOTHESIS_PROFILE=dev.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("ci", max_examples=25, deadline=None, print_blob=True, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=300, deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(autouse=True, scope="session")
def private_cache(tmp_path_factory: pytest.TempPathFactory):
    """Compiled kernels go to a per-session directory, never into the user's cache."""
    from ember.runtime.cache import reset_default_cache
    directory: Path = tmp_path_factory.mktemp("ember-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EMBER_CACHE_DIR", str(directory))
        mp.delenv("EMBER_CACHE_REQUIRE_HIT", raising=False)
        reset_default_cache()
        yield directory
    reset_default_cache()


@pytest.fixture(autouse=True, scope="session")
def cuda_modules_pass_ptxas():
    """Every CUDA module the suite generates is compiled with nvcc for sm_80 and sm_90 when the session ends, and
    each kernel's ptxas resources (registers x threads, shared memory, spills) are checked against its launch: the
    GPU-free compile check, over all kernels rather than a sample. A failure shows as an error at teardown."""
    from ember.codegen.cuda import nvcc
    from ember.codegen.cuda.backend import CUDABackend
    built: list[tuple[str, list]] = []
    original = CUDABackend.compile

    def compile_and_record(self, func, target):
        parts = original(self, func, target)
        built.append((parts["cuda"], json.loads(parts["launches"])["kernels"]))
        return parts

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(CUDABackend, "compile", compile_and_record)
        yield
    if built and nvcc.nvcc_path():
        problems = nvcc.check_modules(built)
        assert not problems, f"{len(problems)} generated CUDA kernels fail the ptxas check:\n" + "\n".join(problems)
