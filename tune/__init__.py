"""Autotuning: search each kernel's schedule space, measure candidates safely, remember the best, use it
automatically.

    summary = ember.autotune([C], [A, B, C], trials=64, time_budget=60)   # one workload
    summary = ember.autotune("model.onnx", time_budget=600)               # every distinct kernel of a model

    @ember.tune.configs([{"chunk": 64}, {"chunk": 256}], key=["x"])  # Triton-style configs for @ember.jit

Results go to a JSON-lines database (default: next to the artifact cache; `database=`, `ember.tune.using(path)` or
EMBER_TUNING_DB choose another file, EMBER_TUNING_DB=0 switches lookups off). `ember.build`, `ember.compile` and
`@ember.jit` consult it whenever they schedule bare tensors, so a tuned kernel is reused in every later process.
"""
from __future__ import annotations

import importlib
from typing import Any

from .database import TuningDB, TuningDBWarning, WorkloadKey, default_path, open_db, using, workload_key
from .lookup import TunedRecordWarning

__all__ = ["autotune", "configs", "ConfigError", "TuneSummary", "MeasureOptions", "SearchOptions", "TaskResult",
           "TuningDB", "TuningDBWarning", "TunedRecordWarning", "WorkloadKey", "default_path", "open_db", "using",
           "workload_key"]

# The search, measurement and config machinery load on first use, so `import ember` does not pay for them.
_LAZY = {"TuneSummary": "api", "MeasureOptions": "measure", "SearchOptions": "search", "TaskResult": "search",
         "configs": "jit_configs", "ConfigError": "jit_configs"}


def autotune(workload: Any, args: Any = None, **options: Any) -> Any:
    """Tune a workload (output tensor(s) or a Schedule, with `args` in call order as for `ember.build`) or a model
    (ONNX path, bytes or ModelProto). Options: target="llvm", trials=64 (per kernel), time_budget=None (seconds,
    whole run), database=None (path; default as for compiling), measure=MeasureOptions, search=SearchOptions,
    progress=callable(TaskResult), name="kernel". Returns a TuneSummary; see ember/tune/api.py."""
    from .api import autotune as run
    return run(workload, args, **options)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
