"""`ember tune MODEL.onnx --trials N --budget 10m --db tuning.jsonl`: tune every kernel of a model, with a live
progress line per kernel on stderr and the summary table on stdout."""
from __future__ import annotations

import argparse
import re
import sys
import time

_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600}


def parse_duration(text: str) -> float:
    """'90', '90s', '10m', '1.5h' -> seconds."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([smh]?)\s*", text)
    if not m or float(m.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration; use e.g. 90, 90s, 10m or 1h")
    return float(m.group(1)) * _UNITS[m.group(2)]


class _Progress:
    """One line per kernel, rewritten in place on a terminal; plain lines otherwise."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.current = ""
        self.last = 0.0

    def __call__(self, r) -> None:  # type: ignore[no-untyped-def]
        best = "-" if r.best_time is None else f"{r.best_time * 1e3:.3f} ms"
        speed = f"{r.speedup:.2f}x" if r.speedup else "-"
        line = f"[tune] {r.name}: {r.trials} trials, best {best}, {speed} over default, {r.failures} failed"
        if self.tty:
            end = "\n" if r.name != self.current and self.current else ""
            print(f"{end}\r{line}\033[K", end="", file=sys.stderr, flush=True)
        elif r.name != self.current or time.monotonic() - self.last > 5:
            print(line, file=sys.stderr, flush=True)
            self.last = time.monotonic()
        self.current = r.name

    def done(self) -> None:
        if self.tty and self.current:
            print(file=sys.stderr)


def _tune(args: argparse.Namespace) -> int:
    from pathlib import Path

    from . import MeasureOptions, autotune
    if not Path(args.model).is_file():
        raise FileNotFoundError(f"no model file at {args.model}")
    progress = _Progress()
    try:
        summary = autotune(args.model, target=args.target, trials=args.trials, time_budget=args.budget,
                           database=args.db, measure=MeasureOptions(workers=args.workers), progress=progress)
    finally:
        progress.done()
    print(summary)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("tune", help="autotune every kernel of an ONNX model",
                              description="Search the schedules of each distinct kernel of the model, measuring "
                                          "candidates in worker processes, and record the best in the tuning "
                                          "database that later compiles use automatically.")
    p.add_argument("model", help="the .onnx model")
    p.add_argument("--trials", type=int, default=64, help="measurements per kernel at most (default 64)")
    p.add_argument("--budget", type=parse_duration, default=None, metavar="DURATION",
                   help="total tuning time, e.g. 600, 10m, 1h (default: no limit, trials decide)")
    p.add_argument("--db", default=None, help="tuning database file (default: EMBER_TUNING_DB, else next to the "
                                               "artifact cache)")
    p.add_argument("--target", default="llvm", help="target string (default: llvm for this machine)")
    p.add_argument("--workers", type=int, default=1, help="processes compiling candidates in parallel (default 1)")
    p.set_defaults(handler=_tune)
