"""Test-session set-up: hypothesis profiles and a private artifact cache.

Profiles: "ci" (default; few examples, failures printed with a reproduction blob) and "dev" (many examples, for
hunting bugs locally). Choose with HYPOTHESIS_PROFILE=dev.
"""
from __future__ import annotations

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
