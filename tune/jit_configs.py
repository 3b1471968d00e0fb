"""Config-style tuning for `@ember.jit` functions, like Triton's `@autotune`:

    @ember.tune.configs([{"chunk": 64}, {"chunk": 256}], key=["x"])
    @ember.jit
    def f(x, *, chunk): ...

The configs are keyword arguments (compile-time constants of the jitted function). The first call for a new key
(the shapes and dtypes of the `key` arguments, or of every array argument) runs each config, checks that they
all agree with the first one, times them and keeps the fastest; the choice is stored in the tuning database
(kind "config"), so later processes skip the timing. Unlike `autotune`, configs are timed in this process: the
decorated function is the user's own Python code, which cannot in general be sent to a worker process.
"""
from __future__ import annotations

import functools
import hashlib
import inspect
import json
import statistics
import threading
import time
from typing import Any, Callable, Sequence

import numpy as np

from ..compiler.target import parse_target
from .database import WorkloadKey, current_db, open_db
from .measure import close_enough

CONFIG_NAMES = "config"  # the `names` field of config records: they refer to no stage names


class ConfigError(ValueError):
    """No config of a tuned function ran correctly."""


def configs(candidates: Sequence[dict], key: Sequence[str] = (), *, repeats: int = 10, warmup: int = 2,
            database: "str | None" = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate a function (typically an `@ember.jit` one) with candidate keyword configs chosen per key."""
    cands = [dict(c) for c in candidates]
    if not cands or not all(isinstance(c, dict) for c in cands):
        raise ValueError("ember.tune.configs: give a non-empty list of keyword dicts")
    if repeats < 1 or warmup < 0:
        raise ValueError(f"ember.tune.configs: repeats must be >= 1 and warmup >= 0, got {repeats}, {warmup}")

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        target = getattr(fn, "target", "llvm")
        qualname = getattr(getattr(fn, "fn", fn), "__qualname__", repr(fn))
        module = getattr(getattr(fn, "fn", fn), "__module__", "")
        sig = inspect.signature(getattr(fn, "fn", fn))
        unknown = [n for n in key if n not in sig.parameters]
        if unknown:
            raise ValueError(f"ember.tune.configs on {qualname}: key names {unknown} are not parameters")
        chosen: dict[tuple, dict] = {}
        lock = threading.Lock()

        @functools.wraps(getattr(fn, "fn", fn))
        def call(*args: Any, **kwargs: Any) -> Any:
            bound = sig.bind_partial(*args, **kwargs)
            k = _key(bound.arguments, key)
            with lock:
                cfg = chosen.get(k)
                if cfg is None:
                    cfg = chosen[k] = _choose(fn, args, kwargs, cands, k, f"{module}.{qualname}", target,
                                              repeats, warmup, database)
            return fn(*args, **kwargs, **cfg)

        call.chosen = chosen  # type: ignore[attr-defined]
        return call
    return wrap


def _key(arguments: dict, names: Sequence[str]) -> tuple:
    items = [(n, arguments[n]) for n in names if n in arguments] if names else list(arguments.items())
    out = []
    for name, value in items:
        if isinstance(value, np.ndarray) or hasattr(value, "__array__"):
            arr = np.asarray(value)
            out.append((name, arr.dtype.str, arr.shape))
        elif names:
            out.append((name, repr(value)))
    return tuple(out)


def _slot(fn_id: str, k: tuple) -> WorkloadKey:
    return WorkloadKey(hashlib.sha256(f"{fn_id}|{k!r}".encode()).hexdigest(), CONFIG_NAMES)


def _choose(fn: Callable[..., Any], args: tuple, kwargs: dict, cands: list[dict], k: tuple, fn_id: str,
            target: Any, repeats: int, warmup: int, database: "str | None") -> dict:
    db = open_db(database) if database else current_db()
    canonical = parse_target(target).canonical()
    slot = _slot(fn_id, k)
    if db is not None:
        rec = db.refresh().configs.get((slot, canonical))
        if rec is not None and rec["config"] in cands:
            return rec["config"]
    times: list[tuple[float, dict]] = []
    reference = None
    problems = []
    for cfg in cands:
        try:
            out = fn(*args, **kwargs, **cfg)
            got = [np.asarray(o) for o in (out if isinstance(out, (list, tuple)) else [out])]
            if reference is None:
                reference = got
            bad = next(filter(None, (close_enough(g, r) for g, r in zip(got, reference))), None)
            if bad or len(got) != len(reference):
                problems.append(f"{cfg}: result differs from {cands[0]} ({bad})")
                continue
            for _ in range(warmup):
                fn(*args, **kwargs, **cfg)
            samples = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                fn(*args, **kwargs, **cfg)
                samples.append(time.perf_counter() - t0)
            times.append((statistics.median(samples), cfg))
        except Exception as err:  # noqa: BLE001 - a config that does not compile or run is skipped, and said
            problems.append(f"{cfg}: {type(err).__name__}: {err}")
    if not times:
        raise ConfigError(f"{fn_id}: no config ran correctly for {k}: " + "; ".join(problems))
    best_time, best = min(times, key=lambda t: t[0])
    if db is not None:
        db.record("config", slot, canonical, task=f"{fn_id} {k}", trace_json=json.dumps({"config": best}),
                  status="ok", time_s=best_time, config=best,
                  all_s={json.dumps(c, sort_keys=True): t for t, c in times}, failed=problems)
    return best
