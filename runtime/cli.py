"""The `ember` command line.

Each subcommand is a `register(subparsers)` function in COMMANDS that adds its
parser and sets `handler=` (args -> exit code); adding compile/run/info/tune
means appending one function, not editing `main`.
"""
from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable

from ember.runtime.cache import ArtifactCache, CacheError, default_cache


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


COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [_register_cache]


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
    """Run one command; errors become a one-line message and exit code 2, never a traceback."""
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
        except (CacheError, OSError, ValueError) as error:
            print(f"ember: error: {error}", file=sys.stderr)
            return 2
