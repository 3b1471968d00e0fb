"""Measuring candidates safely: in long-lived worker processes, never in the tuner's own process.

Each worker (spawned, so it shares no state with the parent) receives a workload once, builds its default schedule
and runs it to get the reference output. Candidates are then built in parallel across workers (compile timeout)
and run one at a time (run timeout), so timings are not disturbed by other compiles: warm-up, a cache flush before
every repeat (touching a buffer larger than the last-level cache), the median of the repeats. The output is
compared with the reference with dtype-aware tolerances. A worker that crashes or hangs is killed and replaced;
the candidate is recorded as failed and the parent carries on.
"""
from __future__ import annotations

import importlib
import math
import os
import pickle
import subprocess
import sys
import statistics
import time
import traceback
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any, Callable, Sequence

import numpy as np

FAILED = ("illegal", "compile_error", "run_error", "crash", "timeout", "wrong")
RUN_TIMEOUT_FLOOR = 2.0  # seconds every candidate gets to run, plus SLOW_RUNS times the "too slow" threshold
SLOW_RUNS = 10


@dataclass
class MeasureOptions:
    """How to measure: timeouts in seconds, repeats, the minimum time per repeat, the cache-flush buffer, and an
    optional `module:function` hook called in the worker (tests use it to make a candidate crash or hang)."""

    workers: int = 1
    compile_timeout: float = 30.0
    run_timeout: float = 20.0
    repeats: int = 5
    min_repeat_s: float = 0.005
    flush_bytes: int = 64 << 20
    hook: "str | None" = None


@dataclass
class Result:
    cid: str
    status: str  # "ok" or one of FAILED
    time_s: "float | None" = None
    times: list[float] = field(default_factory=list)
    compile_s: "float | None" = None
    error: str = ""


@dataclass
class Workload:
    """What a worker needs: output and argument tensors (pickled IR), target string and seeded inputs."""

    wid: str
    outputs: list
    args: list
    target: str
    inputs: list[np.ndarray]


def random_inputs(args: Sequence[Any], seed: int = 0) -> list[np.ndarray]:
    """Inputs for the placeholder arguments: floats in [-1, 1), integers 0 (always a valid index), fair bools."""
    from ..ir.tensor import PlaceholderOp
    rng = np.random.default_rng(seed)
    out = []
    for t in args:
        if not isinstance(t.op, PlaceholderOp):
            continue
        shape = tuple(int(d.value) for d in t.shape)
        dt = np.dtype(t.dtype.name)
        if dt.kind == "f":
            out.append(rng.uniform(-1, 1, size=shape).astype(dt))
        elif dt.kind == "b":
            out.append(rng.integers(0, 2, size=shape).astype(dt))
        else:
            out.append(np.zeros(shape, dt))
    return out


def close_enough(got: np.ndarray, ref: np.ndarray) -> "str | None":
    """None when `got` matches `ref` within the tolerance of its dtype (reordered float sums round differently);
    otherwise what differs."""
    if got.shape != ref.shape or got.dtype != ref.dtype:
        return f"shape/dtype {got.shape} {got.dtype}, expected {ref.shape} {ref.dtype}"
    if ref.dtype.kind != "f":
        bad = int(np.count_nonzero(got != ref))
        return None if bad == 0 else f"{bad} of {ref.size} elements differ"
    rtol = {2: 2e-2, 4: 1e-3, 8: 1e-9}[ref.dtype.itemsize]
    finite = ref[np.isfinite(ref)]
    scale = float(np.max(np.abs(finite))) if finite.size else 1.0
    ok = np.isclose(got, ref, rtol=rtol, atol=rtol * max(scale, 1e-30), equal_nan=True)
    if ok.all():
        return None
    err = np.abs(got.astype(np.float64) - ref)[~ok]
    return f"{int((~ok).sum())} of {ref.size} elements differ (max error {float(np.nanmax(err)):.3g})"


# ---- the worker ---------------------------------------------------------------------------------------------------
def _load_hook(spec: "str | None") -> "Callable[..., None] | None":
    if not spec:
        return None
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


def serve(conn: Connection, reply: Connection, hook_spec: "str | None") -> None:
    """Serve requests until the pipe closes. Every failure is answered, never raised."""
    from ..compiler.build import build
    from ..compiler.schedule import from_trace
    hook = _load_hook(hook_spec)
    loads: dict[str, tuple[Workload, list[np.ndarray]]] = {}
    kernels: dict[str, Any] = {}
    flush = np.zeros(1, np.uint8)
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        op = msg[0]
        try:
            if op == "setup":
                w: Workload = pickle.loads(msg[1])
                loads.clear()  # one workload at a time: its inputs and kernels can be large
                kernels.clear()
                ref_kernel = build(w.outputs, w.args, target=w.target, name="reference")
                refs = [np.asarray(r) for r in _call(ref_kernel, w, None)]
                loads[w.wid] = (w, refs)
                reply.send(("ready", w.wid))
            elif op == "build":
                _, wid, cid, trace = msg
                if hook:
                    hook("build", trace, None)
                w, _refs = loads[wid]
                start = time.perf_counter()
                kernels[cid] = build(from_trace(w.outputs, trace), w.args, target=w.target, name="candidate")
                reply.send(("built", cid, time.perf_counter() - start))
            elif op == "run":
                _, wid, cid, trace, opts, slow_after = msg
                w, refs = loads[wid]
                kernel = kernels.pop(cid)
                if flush.nbytes != opts.flush_bytes:
                    flush = np.ones(max(opts.flush_bytes, 1), np.uint8)
                reply.send(_time(kernel, w, refs, trace, opts, flush, hook, cid, slow_after))
        except Exception as err:  # noqa: BLE001 - reported to the parent as this candidate's failure
            status = "compile_error" if op in ("build", "setup") else "run_error"
            text = f"{type(err).__name__}: {err}\n{traceback.format_exc(limit=4)}"
            reply.send(("failed", msg[2] if op in ("build", "run") else "setup", status, text[:4000]))


def _call(kernel: Any, w: Workload, outs: "list[np.ndarray] | None") -> list[np.ndarray]:
    if outs is None:
        got = kernel(*w.inputs)
        return list(got) if isinstance(got, tuple) else [got]
    kernel(*w.inputs, *outs)
    return outs


def _time(kernel: Any, w: Workload, refs: list[np.ndarray], trace: str, opts: MeasureOptions, flush: np.ndarray,
          hook: "Callable[..., None] | None", cid: str, slow_after: "float | None") -> tuple:
    """Check the output, then time it; a candidate whose first run already exceeds `slow_after` seconds is not
    worth repeats: that one run is its time."""
    if hook:
        hook("run", trace, None)
    outs = [np.empty_like(r) for r in refs]
    _call(kernel, w, outs)
    if hook:
        hook("check", trace, outs)
    for got, ref in zip(outs, refs):
        problem = close_enough(got, ref)
        if problem:
            return ("failed", cid, "wrong", problem)
    start = time.perf_counter()  # the warm-up run, timed to size the repeats
    _call(kernel, w, outs)
    first = time.perf_counter() - start
    if slow_after is not None and first > slow_after:
        return ("ran", cid, [first])
    number = max(1, math.ceil(opts.min_repeat_s / max(first, 1e-7)))
    times = []
    for _ in range(opts.repeats):
        flush += 1  # evict the caches: every repeat starts cold, as a kernel inside a model does
        t0 = time.perf_counter()
        for _ in range(number):
            _call(kernel, w, outs)
        times.append((time.perf_counter() - t0) / number)
    return ("ran", cid, times)


# ---- the parent's side -------------------------------------------------------------------------------------------
class _Worker:
    """A `python -m ember.tune.worker` child talking over two private pipes (not stdin/stdout, which the kernel
    code may print to). A child process rather than multiprocessing: it never re-imports the user's script."""

    def __init__(self, hook: "str | None") -> None:
        down_r, down_w = os.pipe()
        up_r, up_w = os.pipe()
        self.proc = subprocess.Popen([sys.executable, "-m", "ember.tune.worker", str(down_r), str(up_w), hook or ""],
                                     pass_fds=(down_r, up_w), stdin=subprocess.DEVNULL)
        os.close(down_r)
        os.close(up_w)
        self.out = Connection(down_w, readable=False)
        self.conn = Connection(up_r, writable=False)
        self.ready: set[str] = set()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def send(self, msg: tuple) -> bool:
        try:
            self.out.send(msg)
            return True
        except (OSError, ValueError):
            return False

    def recv(self, timeout: float) -> "tuple | None":
        """The next message; ("died",) when the worker's pipe closed (it crashed); None when it did not answer
        in time."""
        try:
            if not self.conn.poll(timeout):
                return None
            return self.conn.recv()
        except (EOFError, OSError):
            return ("died",)

    def kill(self) -> None:
        if self.alive():
            self.proc.kill()
        self.proc.wait()
        self.out.close()
        self.conn.close()


class Measurer:
    """A pool of measuring workers, replaced when one crashes or hangs. Use as a context manager."""

    def __init__(self, options: "MeasureOptions | None" = None) -> None:
        self.options = options or MeasureOptions()
        self.workers: list[_Worker] = []

    def __enter__(self) -> "Measurer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for w in self.workers:
            w.kill()
        self.workers = []

    def _worker(self, k: int) -> _Worker:
        while len(self.workers) <= k:
            self.workers.append(_Worker(self.options.hook))
        if not self.workers[k].alive():
            self.workers[k].kill()
            self.workers[k] = _Worker(self.options.hook)
        return self.workers[k]

    def _replace(self, k: int) -> None:
        self.workers[k].kill()
        self.workers[k] = _Worker(self.options.hook)

    def _setup(self, k: int, w: Workload, blob: bytes) -> "str | None":
        """Make worker k ready for workload w; an error message when the reference itself cannot be run."""
        worker = self._worker(k)
        if w.wid in worker.ready:
            return None
        if worker.send(("setup", blob)):
            reply = worker.recv(self.options.compile_timeout + self.options.run_timeout)
            if reply is not None and reply[0] == "ready":
                worker.ready = {w.wid}  # a worker holds one workload at a time
                return None
            problem = reply[3] if reply is not None and reply[0] == "failed" else "the worker crashed or hung"
        else:
            problem = "the worker could not be reached"
        self._replace(k)
        return f"reference run of the default schedule failed: {problem}"

    def measure(self, w: Workload, candidates: Sequence[tuple[str, str]], slow_after: "float | None" = None
                ) -> list[Result]:
        """Measure (candidate id, trace JSON) pairs on workload w; one Result each, in order. Candidates slower
        than `slow_after` seconds on their first run are timed by that run only, and then need not take longer
        than the run timeout scaled down to that (a hung candidate is given up on sooner)."""
        opts = self.options
        blob = pickle.dumps(w)
        results: dict[str, Result] = {}
        n = max(1, min(opts.workers, len(candidates)))
        for k in range(n):
            problem = self._setup(k, w, blob)
            if problem:
                return [Result(cid, "run_error", error=problem) for cid, _ in candidates]
        built: list[tuple[int, str, str, float, _Worker]] = []
        queues = [list(candidates[k::n]) for k in range(n)]
        pending: dict[int, tuple[str, str, float]] = {}
        while any(queues) or pending:
            for k in range(n):
                if k not in pending and queues[k]:
                    problem = self._setup(k, w, blob)
                    cid, trace = queues[k].pop(0)
                    if problem or not self.workers[k].send(("build", w.wid, cid, trace)):
                        results[cid] = Result(cid, "crash", error=problem or "worker unreachable")
                        continue
                    pending[k] = (cid, trace, time.monotonic() + opts.compile_timeout)
            if not pending:
                continue
            ready = wait([self.workers[k].conn for k in pending],
                         timeout=max(0.0, min(d for _, _, d in pending.values()) - time.monotonic()))
            now = time.monotonic()
            for k in list(pending):
                cid, trace, deadline = pending[k]
                worker = self.workers[k]
                if worker.conn in ready:
                    reply = worker.recv(0)
                    del pending[k]
                    if reply is None or reply[0] == "died":
                        results[cid] = Result(cid, "crash", error="the worker died while compiling")
                        self._replace(k)
                    elif reply[0] == "built":
                        built.append((k, cid, trace, reply[2], worker))
                    else:
                        results[cid] = Result(cid, reply[2], error=reply[3])
                elif now >= deadline:
                    del pending[k]
                    results[cid] = Result(cid, "timeout", error=f"compile took over {opts.compile_timeout:g}s")
                    self._replace(k)
        for k, cid, trace, compile_s, by in built:
            results[cid] = self._run(k, w, cid, trace, compile_s, by, slow_after)
        return [results[cid] for cid, _ in candidates]

    def _run(self, k: int, w: Workload, cid: str, trace: str, compile_s: float, built_by: _Worker,
             slow_after: "float | None") -> Result:
        """Run a built candidate; rebuilt first when its worker was replaced since (another candidate crashed it)."""
        if self.workers[k] is not built_by:
            blob = pickle.dumps(w)
            problem = self._setup(k, w, blob)
            worker = self.workers[k]
            if problem or not worker.send(("build", w.wid, cid, trace)):
                return Result(cid, "crash", compile_s=compile_s, error=problem or "worker unreachable")
            reply = worker.recv(self.options.compile_timeout)
            if reply is not None and reply[0] == "failed":
                return Result(cid, reply[2], error=reply[3])
            if reply is None or reply[0] != "built":
                self._replace(k)
                if reply is None:
                    return Result(cid, "timeout", compile_s=compile_s,
                                  error=f"rebuilding took over {self.options.compile_timeout:g}s")
                return Result(cid, "crash", compile_s=compile_s, error="the worker died rebuilding it")
        worker = self.workers[k]
        if not worker.send(("run", w.wid, cid, trace, self.options, slow_after)):
            return Result(cid, "crash", compile_s=compile_s, error="the worker could not be reached")
        limit = self.options.run_timeout
        if slow_after is not None:
            limit = min(limit, RUN_TIMEOUT_FLOOR + SLOW_RUNS * slow_after)
        reply = worker.recv(limit)
        if reply is None or reply[0] == "died":
            self._replace(k)
            if reply is None:
                return Result(cid, "timeout", compile_s=compile_s, error=f"running took over {limit:.3g}s")
            return Result(cid, "crash", compile_s=compile_s, error="the worker died while running it")
        if reply[0] == "ran":
            times = reply[2]
            return Result(cid, "ok", statistics.median(times), times, compile_s)
        return Result(cid, reply[2], compile_s=compile_s, error=reply[3])
