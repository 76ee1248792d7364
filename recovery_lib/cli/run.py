"""``run NOTEBOOK -p name value ...``: execute one runbook notebook into ``runs/``."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from recovery_lib.errors import KernelSetupError, ParameterError
from recovery_lib.redact import protect_handlers
from recovery_lib.runbook.audit import DEFAULT_RUNS_DIR  # not from execute: papermill is slow to import
from recovery_lib.runbook.notebooks import ALL_NOTEBOOKS, headline


def register(subparsers: argparse._SubParsersAction) -> None:
    run = subparsers.add_parser(
        "run",
        help="execute a runbook notebook with papermill into runs/ (report .json, .html, audit line)",
        description=(
            "Execute notebooks/NOTEBOOK.ipynb into runs/YYYYMMDDTHHMMSSZ_NOTEBOOK[_USER].ipynb, extract its "
            "report to .json, render .html and append a line to runs/index.jsonl. Exit 0: done; 1: the "
            "notebook failed (kept, failing cell shown); 2: bad or unknown parameter, or an unusable "
            "RECOVERY_KERNEL_DIR (nothing executed)."
        ),
    )
    run.add_argument("notebook", metavar="NOTEBOOK", help=f"one of {', '.join(ALL_NOTEBOOKS)} (or a path to an .ipynb)")
    run.add_argument(
        "-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
        help="a notebook parameter, e.g. -p hours 6 -p statuses '[\"error\"]' (repeatable)",
    )
    run.add_argument("--runs-dir", type=Path, default=DEFAULT_RUNS_DIR, help="where runs go (default: runs/)")
    run.add_argument("--timeout", type=float, default=None, metavar="SECONDS", help="limit per cell (default: none)")
    run.add_argument("--no-progress", action="store_true", help="no progress bar over the notebook's cells")
    run.set_defaults(func=_run)


def protect_logs(args: argparse.Namespace) -> None:
    """Scrub the database password from every log line this process writes; quiet papermill unless -v."""
    if not getattr(args, "verbose", False):
        logging.getLogger("papermill").setLevel(logging.WARNING)
    protect_handlers()


def print_result(result: Any) -> None:
    """The runner's verdict, the report's headline and where the files are."""
    stream = sys.stdout if result.ok else sys.stderr
    if result.ok:
        print(f"{result.name}: OK - {headline(result.name, result.report)}".rstrip(" -"), file=stream)
    else:
        print(f"{result.name}: FAILED - {result.error}", file=stream)
        if result.notebook is not None:
            print(f"  the executed notebook is kept, open it at the failing cell: {result.notebook}", file=stream)
    for label, path in (("notebook", result.notebook), ("report", result.report_path), ("html", result.html_path)):
        if path is not None:
            print(f"  {label:8} {path}", file=stream)


def _run(args: argparse.Namespace) -> int:
    from recovery_lib.runbook import execute

    protect_logs(args)
    given: dict[str, str] = {}
    for name, value in args.parameter:
        if name in given:
            print(f"parameter {name} given twice", file=sys.stderr)
            return 2
        given[name] = value
    try:
        result = execute.run_notebook(
            args.notebook, given, runs_dir=args.runs_dir, timeout=args.timeout, progress_bar=not args.no_progress
        )
    except (ParameterError, KernelSetupError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        print(f"\n{exc} (recorded in the index)", file=sys.stderr)
        return 130
    print_result(result)
    if result.ok and isinstance(result.report, dict) and result.report.get("ok") is False:
        # The notebook ran, and its report says the data is not whole: exit like `verify` does.
        print(f"{result.name}: the report says not ok (rows are still missing)", file=sys.stderr)
        return 1
    return 0 if result.ok else 1
