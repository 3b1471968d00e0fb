"""The `ember` command line: compile, run and inspect models, and manage the artifact cache.

Each subcommand is a `register(subparsers)` function in COMMANDS that adds its
parser and sets `handler=` (args -> exit code); adding a command means
appending one function, not editing `main`.
"""
from __future__ import annotations

import argparse
import re
import sys
import time
import warnings
import zipfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ember.runtime.cache import ArtifactCache, CacheError, default_cache
from ember.tune.cli import register as _register_tune

# Progress lines appear only once a compile has run this long, so quick (or cached) compiles stay quiet.
PROGRESS_AFTER_S = 1.0


class _UsageError(Exception):
    """Raised instead of argparse's print-usage-and-exit so `main` can return 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise _UsageError(f"{self.prog}: error: {message}")


def _human_size(size: int) -> str:
    units = ("B", "KiB", "MiB", "GiB", "TiB")
    value, index = float(size), 0
    while value >= 1024 and index < len(units) - 1:
        value, index = value / 1024, index + 1
    return f"{size} B" if index == 0 else f"{value:.1f} {units[index]}"


def _cache_info(args: argparse.Namespace) -> int:
    info = default_cache().info()
    print(f"directory: {info['directory'] or '(none: memory only or disabled)'}")
    print(f"enabled: {'yes' if info['enabled'] else 'no'}")
    print(f"require-hit: {'yes' if info['require_hit'] else 'no'}")
    print(f"entries: {info['entries']}")
    print(f"size: {_human_size(info['bytes'])}")
    return 0


def _cache_clear(args: argparse.Namespace) -> int:
    # Clear the configured directory even when EMBER_CACHE=0 disables caching: freeing disk is still wanted.
    cache = ArtifactCache(enabled=True, require_hit=False)
    removed = cache.clear()
    print(f"removed {removed} {'entry' if removed == 1 else 'entries'} from {cache.directory}")
    return 0


def _register_cache(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("cache", help="inspect or clear the compiled-artifact cache")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    actions.add_parser("info", help="show where the cache is and how big it is").set_defaults(handler=_cache_info)
    actions.add_parser("clear", help="delete every cached artifact").set_defaults(handler=_cache_clear)


# ---- compile / run / info ----------------------------------------------------------------------------------------
def _compile_onnx(path: str, target: str):
    """Compile through the model cache, reporting each kernel on stderr once the compile is slow enough to wait on."""
    from ember import compile as compile_model
    start = time.perf_counter()

    def progress(k: int, n: int, label: str) -> None:
        if time.perf_counter() - start >= PROGRESS_AFTER_S:
            print(f"[{k + 1}/{n}] compiling {label}", file=sys.stderr, flush=True)
    return compile_model(path, target=target, progress=progress)


def _open_model(path: str, target: str):
    """A saved model (.ember, recognised by content) is loaded; anything else is compiled as ONNX."""
    from ember.runtime.saved import load
    if not Path(path).is_file():
        raise FileNotFoundError(f"no model file at {path}")
    return load(path) if zipfile.is_zipfile(path) else _compile_onnx(path, target)


def _compile(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    model = _compile_onnx(args.model, args.target)
    if args.target.split()[0] == "ascend":  # an AscendC package (kernel sources, host code, CMake) for CANN
        from ember import export
        folder = export(model, args.output or Path(args.model).with_suffix(""), target=args.target)
        print(f"wrote AscendC package {folder} ({len(model.steps)} kernels) in {time.perf_counter() - start:.2f}s")
        return 0
    out = Path(args.output or Path(args.model).with_suffix(".ember"))
    model.save(out)
    print(f"wrote {out} ({len(model.steps)} kernels, {_human_size(out.stat().st_size)}) "
          f"in {time.perf_counter() - start:.2f}s")
    return 0


def _read_input(spec: str) -> tuple[str, np.ndarray]:
    name, sep, file = spec.partition("=")
    if not sep or not name or not file:
        raise ValueError(f"--input {spec!r}: expected NAME=FILE.npy")
    try:
        return name, np.load(file, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise ValueError(f"--input {name}: cannot read {file} as a .npy array ({err})") from None


def _summary(value: np.ndarray) -> str:
    if value.size == 0:
        return "(empty)"
    flat = value.reshape(-1)
    head = np.array2string(flat[:6], precision=4, separator=", ")
    head = head[:-1] + (", ...]" if flat.size > 6 else "]")
    if value.dtype.kind in "biuf":
        stats = value.astype(np.float64)
        return f"min={stats.min():.4g} max={stats.max():.4g} mean={stats.mean():.4g} {head}"
    return head


def _run(args: argparse.Namespace) -> int:
    feeds = dict(_read_input(spec) for spec in args.input)
    model = _open_model(args.model, args.target)
    if args.profile:
        print(model.profile(feeds, runs=args.profile))
        return 0
    results = model.run(feeds)
    out_dir = Path(args.output_dir) if args.output_dir else None
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    for name, value in results.items():
        line = f"{name}: {value.dtype}{list(value.shape)}"
        if out_dir is None:
            print(f"{line} {_summary(value)}")
        else:
            path = out_dir / (re.sub(r"[^A-Za-z0-9_.-]", "_", name) + ".npy")
            np.save(path, value)
            print(f"{line} -> {path}")
    return 0


def _info(args: argparse.Namespace) -> int:
    if not Path(args.model).is_file():
        raise FileNotFoundError(f"no model file at {args.model}")
    if zipfile.is_zipfile(args.model):
        return _info_saved(args.model)
    return _info_onnx(args.model)


def _info_onnx(path: str) -> int:
    from ember.frontend.onnx_import import load_model, opsets
    from ember.graph.onnx_types import ONNX_TYPE_NAMES
    from ember.graph.registry import lookup
    import ember.graph  # noqa: F401 - registers the ops

    model = load_model(path)
    versions = opsets(model)
    init = {i.name for i in model.graph.initializer}

    def value(vi) -> str:  # type: ignore[no-untyped-def]
        t = vi.type.tensor_type
        dims = [str(d.dim_value) if d.HasField("dim_value") else (d.dim_param or "?") for d in t.shape.dim]
        return f"  {vi.name}: {ONNX_TYPE_NAMES.get(t.elem_type, t.elem_type).lower()}[{', '.join(dims)}]"
    print(f"model: {model.graph.name or '(unnamed)'} (producer {model.producer_name or 'unknown'})")
    print("opsets: " + ", ".join(f"{d or 'ai.onnx'} {v}" for d, v in sorted(versions.items()) if d or v > 1))
    print("inputs:", *[value(vi) for vi in model.graph.input if vi.name not in init], sep="\n")
    print("outputs:", *[value(vi) for vi in model.graph.output], sep="\n")
    print(f"weights: {len(init)} initializers")
    ops = Counter((n.domain if n.domain not in ("", "ai.onnx") else "", n.op_type) for n in model.graph.node)
    print(f"ops ({sum(ops.values())} nodes):")
    for (domain, op), count in sorted(ops.items(), key=lambda item: (-item[1], item[0])):
        print(f"  {f'{domain}.' if domain else ''}{op}: {count}")
    missing = sorted(f"{f'{d}.' if d else ''}{op} (opset {versions.get(d, 1)})" for d, op in ops
                     if lookup(op, versions.get(d, 1), d) is None)
    print(f"unsupported ops: {', '.join(missing) if missing else 'none'}")
    return 0


def _info_saved(path: str) -> int:
    from ember.runtime.saved import read_manifest

    manifest = read_manifest(path)

    def spec(s: dict) -> str:
        dims = [str(d) if isinstance(d, int) else d.get("var", "?") if isinstance(d, dict) else "expr"
                for d in s["shape"]]
        return f"  {s['name']}: {s['dtype']}[{', '.join(dims)}]"
    print(f"saved model: {manifest['name']} (ember {manifest['ember_version']}, format {manifest['format_version']})")
    print(f"target: {manifest['target']}")
    print("inputs:", *map(spec, manifest["inputs"]), sep="\n")
    print("outputs:", *map(spec, manifest["outputs"]), sep="\n")
    weights = sum(int(np.prod(c["shape"], dtype=np.int64)) * np.dtype(c["dtype"]).itemsize
                  for c in manifest["consts"])
    print(f"weights: {len(manifest['consts'])} constants, {_human_size(weights)}")
    print(f"kernels: {len(manifest['kernels'])} in {len(manifest['steps'])} steps, "
          f"planned intermediates {_human_size(manifest['memory_plan']['peak_bytes'])}")
    for k, step in enumerate(manifest["steps"]):
        print(f"  {k}: {manifest['kernels'][step['kernel']]['name']} <- {step['label']}")
    return 0


def _register_models(subparsers: argparse._SubParsersAction) -> None:
    target_help = "target string, e.g. 'llvm' or 'llvm -mcpu=x86-64 -mattr=+avx2' (default: llvm for this machine)"
    p = subparsers.add_parser("compile", help="compile an ONNX model into a saved model file",
                              description="Compile an ONNX model ahead of time into one file `ember run` and "
                                          "`ember.load` use without recompiling.")
    p.add_argument("model", help="the .onnx model")
    p.add_argument("-o", "--output", help="the saved model to write (default: the model's name with .ember); "
                   "with --target ascend, the folder of the AscendC package to write")
    p.add_argument("--target", default="llvm", help=target_help)
    p.set_defaults(handler=_compile)
    p = subparsers.add_parser("run", help="run a model on .npy inputs",
                              description="Run an ONNX model (compiled through the cache) or a saved .ember model, "
                                          "and summarise its outputs or save them as .npy files.")
    p.add_argument("model", help="an .onnx model or a saved .ember model")
    p.add_argument("--input", action="append", default=[], metavar="NAME=FILE.npy", help="one model input")
    p.add_argument("--output-dir", help="save each output as NAME.npy here instead of printing a summary")
    p.add_argument("--profile", type=int, default=0, metavar="N",
                   help="time every kernel over N runs and print them by time (instead of the outputs)")
    p.add_argument("--target", default="llvm", help=target_help + "; ONNX models only")
    p.set_defaults(handler=_run)
    p = subparsers.add_parser("info", help="describe an ONNX or saved model",
                              description="Show a model's inputs, outputs and opsets, its op histogram and the ops "
                                          "ember does not support (for a saved model: its target and kernels).")
    p.add_argument("model", help="an .onnx model or a saved .ember model")
    p.set_defaults(handler=_info)


COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [_register_models, _register_cache, _register_tune]


def build_parser() -> argparse.ArgumentParser:
    """The full parser: the top level plus every registered subcommand."""
    parser = _Parser(prog="ember", description="ember: a Python tensor compiler")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for register in COMMANDS:
        register(subparsers)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # type: ignore[no-untyped-def]
    print(f"ember: warning: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Run one command; errors become a message and exit code 2 (1 for an internal error), never a traceback."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:  # --help printed its text and asked to exit
        return exit_.code if isinstance(exit_.code, int) else 0
    except _UsageError as error:
        print(f"{error} (see --help)", file=sys.stderr)
        return 2
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        try:
            return args.handler(args)
        except (CacheError, OSError, ValueError, TypeError) as error:  # the user's model, files or arguments
            print(f"ember: error: {error}", file=sys.stderr)
            return 2
        except Exception as error:  # noqa: BLE001 - a bug in ember: still one line, naming what failed
            print(f"ember: internal error: {type(error).__name__}: {error}", file=sys.stderr)
            return 1
