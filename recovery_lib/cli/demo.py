"""``demo``: the whole runbook on a simulated incident, checked against its ground truth."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from recovery_lib.cli.run import print_result, protect_logs
from recovery_lib.runbook.audit import DEFAULT_RUNS_DIR


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    demo = subparsers.add_parser(
        "demo",
        help="simulate an incident in the embedded database and run monitor, preview, recover, verify, review on it",
        description=(
            "Reset this project's tables, generate an incident with a known ground truth, then execute the "
            "four runbook notebooks and the weekly review through the runner and compare what they found with the "
            "truth. "
            "Refuses to reset a database given by DATABASE_URL unless --reset is passed."
        ),
    )
    demo.add_argument("--seed", type=int, default=42, help="random seed of the simulated incident (default 42)")
    demo.add_argument("--users", type=_positive, default=10, help="simulated users (default 10)")
    demo.add_argument("--payloads", type=_positive, default=40, help="payloads per user (default 40)")
    demo.add_argument("--reset", action="store_true", help="allow erasing the tables of the DATABASE_URL database")
    demo.add_argument("--runs-dir", type=Path, default=DEFAULT_RUNS_DIR, help="where runs go (default: runs/)")
    demo.set_defaults(func=_demo)


def _demo(args: argparse.Namespace) -> int:
    from recovery_lib import db
    from recovery_lib.redact import mask_url
    from recovery_lib.runbook.demo import run_demo

    protect_logs(args)
    if os.environ.get("DATABASE_URL", "").strip() and not args.reset:
        print(
            f"DATABASE_URL is set ({mask_url(os.environ['DATABASE_URL'].strip())}): the demo erases every table "
            "of this project in that database.\nUnset DATABASE_URL to use the embedded demo database, or pass "
            "--reset to erase and reuse this one.",
            file=sys.stderr,
        )
        return 2
    result = run_demo(
        db.database_url(), users=args.users, payloads=args.payloads, seed=args.seed, runs_dir=args.runs_dir,
        say=lambda line: print(line, flush=True), on_result=print_result,
    )
    if result.failed:
        failed = result.results[result.failed]
        print(f"\ndemo stopped: {result.failed} failed; the executed notebook is kept at {failed.notebook}",
              file=sys.stderr)
        return 1
    print("\n== summary ==")
    print(f"runs folder: {Path(args.runs_dir).resolve()} (audit: python -m recovery_lib audit verify)")
    for name, run in result.results.items():
        print(f"  {name:8} notebook {run.notebook.name}  report {run.report_path.name}  "
              f"html {run.html_path.name if run.html_path else '-'}")
    notices = (result.results["recover"].report or {}).get("notices") or []
    if notices:  # what the operator sends the users: rows restored per metric family, what still fails
        print(f"  restoration notices: {', '.join(notices)}")
    for what, found, expected, equal in result.checks:
        print(f"  {what:40} {found!s:>8}   ground truth {expected!s:>8}   {'match' if equal else 'MISMATCH'}")
    if not result.ok:
        print("\nthe runbook's numbers do not match the simulated ground truth", file=sys.stderr)
        return 1
    print("\nall numbers match the ground truth: every lost row was found, recovered and verified")
    return 0
