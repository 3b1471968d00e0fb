"""The tuning database: append-only JSON lines, one record per measurement and one per new best result.

Records are keyed by the workload (structural hash of its computation plus a hash of its stage/axis names, which
the trace refers to) and the target's full canonical string. A line is appended with one `write` on an
`O_APPEND` descriptor, so concurrent tuners sharing a file never interleave lines. Reading skips corrupt lines with
a warning, and ignores (with one note per file) records written for another ember version or trace format.
The file is indexed once per process and re-read incrementally when it grows.
"""
from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import logging
import os
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from ..compiler.trace import TRACE_VERSION
from ..ir.expr import Const
from ..ir.structural import structural_key, topo_ops
from ..ir.tensor import ComputeOp, Tensor
from ..runtime.keys import VERSION

log = logging.getLogger("ember")
DB_NAME = "tuning.jsonl"


class TuningDBWarning(UserWarning):
    """A tuning-database line could not be used (corrupt JSON, missing fields) or a stale record was ignored."""


@dataclass(frozen=True)
class WorkloadKey:
    """What a trace is valid for: the computation (structural hash) and the names the trace refers to."""

    structural: str
    names: str

    @property
    def short(self) -> str:
        return self.structural[:12]


def workload_key(outputs: Sequence[Tensor]) -> WorkloadKey:
    outs = list(outputs)
    text = structural_key(outs)
    names = []
    for op in topo_ops(outs):
        if isinstance(op, ComputeOp):
            names.append(f"{op.name}:{','.join(iv.name for iv in (*op.axis, *op.reduce_axis))}")
    return WorkloadKey(hashlib.sha256(text.encode()).hexdigest(),
                       hashlib.sha256("\n".join(names).encode()).hexdigest()[:16])


def signature(outputs: Sequence[Tensor]) -> str:
    """Output dtypes and shapes: microseconds to compute, so lookups hash a workload only when a best record with
    the same signature exists."""
    return ";".join(f"{t.dtype}{[d.value if isinstance(d, Const) else str(d) for d in t.shape]}" for t in outputs)


def candidate_id(trace_json: str) -> str:
    return hashlib.sha256(trace_json.encode()).hexdigest()[:20]


def default_path() -> Path:
    """Next to the artifact cache: `<cache dir>/tuning.jsonl`."""
    from ..runtime.cache import _env_directory
    return _env_directory() / DB_NAME


_override: "list[Path | None]" = []


def configured_path() -> "Path | None":
    """The database compiling consults: the innermost `using(...)`, else EMBER_TUNING_DB (0 switches tuning
    lookups off), else the default location. None means disabled."""
    if _override:
        return _override[-1]
    env = os.environ.get("EMBER_TUNING_DB", "").strip()
    if env.lower() in ("0", "off", "false", "no"):
        return None
    return Path(env).expanduser() if env else default_path()


class using:
    """`with ember.tune.using("tuning.jsonl"):` compiles against another database; `using(None)` disables it."""

    def __init__(self, path: "str | os.PathLike | None") -> None:
        self.path = None if path is None else Path(path).expanduser()

    def __enter__(self) -> "using":
        _override.append(self.path)
        return self

    def __exit__(self, *exc: object) -> None:
        _override.pop()


def selected(tuning_db: "str | os.PathLike | bool | None") -> "using | contextlib.nullcontext":
    """The `tuning_db=` option of ember.build/ember.compile: None keeps the configured database (EMBER_TUNING_DB
    or the default), False switches lookups off, a path chooses that file."""
    if tuning_db is None or tuning_db is True:
        return contextlib.nullcontext()
    return using(None if tuning_db is False else tuning_db)


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


@dataclass
class Index:
    """Everything read from one file so far: measurements and best traces per (workload, target)."""

    offset: int = 0
    ident: tuple[int, int] = (0, 0)  # (device, inode) of the file read
    measured: dict[tuple[WorkloadKey, str], dict[str, dict]] = field(default_factory=dict)
    best: dict[tuple[WorkloadKey, str], dict] = field(default_factory=dict)
    configs: dict[tuple[WorkloadKey, str], dict] = field(default_factory=dict)  # ember.tune.configs choices
    signatures: set[tuple[str, str]] = field(default_factory=set)  # (target, signature) of best records
    unsigned: set[str] = field(default_factory=set)  # targets with best records that carry no signature
    noted: set[str] = field(default_factory=set)
    targets: set[str] = field(default_factory=set)


class TuningDB:
    """One database file. Safe to share between threads and processes (appends only)."""

    def __init__(self, path: "str | os.PathLike") -> None:
        self.path = Path(path).expanduser()
        self._lock = threading.Lock()
        self._index = Index()
        self._stat: "tuple[int, int] | None" = None

    # ---- writing ---------------------------------------------------------------------------------------------------
    def append(self, record: dict) -> None:
        line = (json.dumps(record, separators=(",", ":"), sort_keys=False) + "\n").encode()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)

    def record(self, kind: str, key: WorkloadKey, target: str, *, task: str, trace_json: str, status: str,
               time_s: "float | None", **extra: Any) -> dict:
        """Append one measurement (`kind="measure"`) or best-result (`kind="best"`) record and return it."""
        rec = {"kind": kind, "workload": key.structural, "names": key.names, "task": task, "target": target,
               "ember_version": VERSION, "trace_version": TRACE_VERSION, "candidate": candidate_id(trace_json),
               "status": status, "time_s": time_s, "timestamp": _now(), "trace": json.loads(trace_json)}
        rec.update(extra)
        self.append(rec)
        return rec

    # ---- reading ---------------------------------------------------------------------------------------------------
    def refresh(self) -> Index:
        """The index, re-reading only what was appended since the last call (all of it if the file was replaced
        or truncated). A stat per call; nothing else when the file is unchanged."""
        with self._lock:
            try:
                st = os.stat(self.path)
            except OSError:  # absent, or unreachable (its directory is a file, no permission): nothing is tuned
                self._index, self._stat = Index(), None
                return self._index
            stamp = (st.st_size, st.st_mtime_ns)
            if stamp == self._stat:
                return self._index
            ident = (st.st_dev, st.st_ino)
            if ident != self._index.ident or st.st_size < self._index.offset:
                self._index = Index(ident=ident)
            self._read_from(self._index)
            self._stat = stamp
            return self._index

    def _read_from(self, index: Index) -> None:
        try:
            with open(self.path, "rb") as f:
                f.seek(index.offset)
                data = f.read()
        except OSError as err:
            warnings.warn(f"tuning database {self.path} cannot be read ({err}); using default schedules",
                          TuningDBWarning, stacklevel=4)
            return
        end = data.rfind(b"\n") + 1  # a line still being written is read next time
        for lineno, raw in enumerate(data[:end].splitlines()):
            if raw.strip():
                self._add(index, raw, index.offset, lineno)
        index.offset += end

    def _add(self, index: Index, raw: bytes, offset: int, lineno: int) -> None:
        try:
            rec = json.loads(raw)
            kind, status = rec["kind"], rec["status"]
            key = WorkloadKey(rec["workload"], rec["names"])
            target, version, tversion = rec["target"], rec["ember_version"], rec["trace_version"]
            if not isinstance(rec["trace"], dict):
                raise TypeError("trace is not an object")
        except (ValueError, KeyError, TypeError) as err:
            warnings.warn(f"tuning database {self.path}: skipping a corrupt line (byte {offset}, line {lineno + 1} "
                          f"of the new part): {err}", TuningDBWarning, stacklevel=4)
            return
        if version != VERSION or tversion != TRACE_VERSION:
            note = f"ember {version} / trace format {tversion}"
            if note not in index.noted:
                index.noted.add(note)
                log.info("tuning database %s: ignoring records written by %s (this is ember %s, trace format %s)",
                         self.path, note, VERSION, TRACE_VERSION)
            return
        index.targets.add(target)
        slot = (key, target)
        rec["trace_json"] = json.dumps(rec["trace"], separators=(",", ":"))
        if kind == "measure":
            index.measured.setdefault(slot, {})[rec["candidate"]] = rec
        elif kind in ("best", "config") and status == "ok" and isinstance(rec.get("time_s"), (int, float)):
            table = index.best if kind == "best" else index.configs
            if kind == "best":
                sig = rec.get("signature")
                if isinstance(sig, str):
                    index.signatures.add((target, sig))
                else:
                    index.unsigned.add(target)
            old = table.get(slot)
            if old is None or rec["time_s"] <= old["time_s"]:
                table[slot] = rec

    def best(self, key: WorkloadKey, target: str) -> "dict | None":
        return self.refresh().best.get((key, target))

    def measurements(self, key: WorkloadKey, target: str) -> dict[str, dict]:
        """Candidate id -> its latest measurement record for this workload and target."""
        return dict(self.refresh().measured.get((key, target), {}))


_open: dict[Path, TuningDB] = {}
_by_name: dict[str, TuningDB] = {}
_open_lock = threading.Lock()


def open_db(path: "str | os.PathLike") -> TuningDB:
    """One TuningDB (and so one index) per file per process; the path is resolved once, not per lookup."""
    given = os.fspath(path)
    db = _by_name.get(given)
    if db is not None:
        return db
    p = Path(given).expanduser().resolve()
    with _open_lock:
        if p not in _open:
            _open[p] = TuningDB(p)
        _by_name[given] = _open[p]
        return _open[p]


def current_db() -> "TuningDB | None":
    path = configured_path()
    return None if path is None else open_db(path)
