"""The compiler's side of tuning: `schedule_for` asks here for a tuned schedule of bare output tensors.

The lookup costs one `stat` of the database file and a signature of the outputs (dtypes and shapes) when nothing
with that signature is tuned for the target (about 20 us), and one structural hash of the workload otherwise.
A recorder (used when tuning a whole model) sees every workload the compiler schedules.
"""
from __future__ import annotations

import hashlib
import logging
import threading
import warnings
from typing import Callable, Sequence

from ..compiler.schedule import Schedule, ScheduleError, from_trace
from ..compiler.target import Target
from ..ir.tensor import Tensor
from .database import current_db, signature, workload_key

log = logging.getLogger("ember")
_recorders: list[Callable[[list[Tensor], Target], None]] = []
_noted: set[tuple[str, str]] = set()
_lock = threading.Lock()


class TunedRecordWarning(UserWarning):
    """A tuned record could not be replayed on its workload (stale or hand-edited); the default schedule is used."""


class recording:
    """Calls `fn(outputs, target)` for every bare workload scheduled while active (this thread or others)."""

    def __init__(self, fn: Callable[[list[Tensor], Target], None]) -> None:
        self.fn = fn

    def __enter__(self) -> "recording":
        with _lock:
            _recorders.append(self.fn)
        return self

    def __exit__(self, *exc: object) -> None:
        with _lock:
            _recorders.remove(self.fn)


def fingerprint(target: Target) -> str:
    """What the tuning database decides for this target, for model-level cache keys: a model compiled before
    tuning, or with tuning switched off, is not served once the decisions differ."""
    db = current_db()
    if db is None:
        return "off"
    canonical = target.canonical()
    chosen = sorted(f"{key.structural}:{key.names}:{rec.get('candidate')}"
                    for (key, tgt), rec in db.refresh().best.items() if tgt == canonical)
    return hashlib.sha256("\n".join(chosen).encode()).hexdigest()[:16] if chosen else "none"


def tuned_schedule(outputs: "Tensor | Sequence[Tensor]", target: Target) -> "Schedule | None":
    """The best tuned schedule for these outputs on this target, or None (no database, no record, stale record)."""
    outs = [outputs] if isinstance(outputs, Tensor) else list(outputs)
    for fn in list(_recorders):
        fn(outs, target)
    db = current_db()
    if db is None:
        return None
    canonical = target.canonical()
    index = db.refresh()
    if canonical not in index.targets:
        if index.targets and (str(db.path), canonical) not in _noted:
            _noted.add((str(db.path), canonical))
            log.info("tuning database %s has no records for target %r (it has %s); using default schedules",
                     db.path, canonical, ", ".join(sorted(index.targets)))
        return None
    if canonical not in index.unsigned and (canonical, signature(outs)) not in index.signatures:
        return None
    rec = index.best.get((workload_key(outs), canonical))
    if rec is None:
        return None
    try:
        sch = from_trace(outs, rec["trace_json"])
    except ScheduleError as err:
        warnings.warn(f"tuning database {db.path}: the tuned schedule of {rec.get('task', 'a kernel')!r} no longer "
                      f"applies ({err}); using the default schedule", TunedRecordWarning, stacklevel=4)
        return None
    sch.tuned_from = str(db.path)
    return sch
