"""``audit verify``: check the hash chain of runs/index.jsonl and the files it lists."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    # From audit, not the runner: the runner imports papermill and nbformat, too slow for every CLI start.
    from recovery_lib.runbook.audit import DEFAULT_RUNS_DIR, INDEX_NAME

    parser = subparsers.add_parser("audit", help="check the audit trail of executed notebooks")
    sub = parser.add_subparsers(dest="audit_command", metavar="ACTION", required=True)
    verify = sub.add_parser(
        "verify",
        help="verify runs/index.jsonl: hash chain, and the SHA-256 of every notebook, report and HTML",
        description="Exit 0 and print OK when intact; print every problem and exit 1 otherwise.",
    )
    verify.add_argument("--index", type=Path, default=DEFAULT_RUNS_DIR / INDEX_NAME, help="default: runs/index.jsonl")
    verify.set_defaults(func=_verify)


def _verify(args: argparse.Namespace) -> int:
    from recovery_lib.runbook import audit

    problems = audit.verify_index(args.index)
    if problems:
        print(f"{args.index}: {len(problems)} problem(s)", file=sys.stderr)
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    records = audit.read_index(args.index)
    print(f"OK: {args.index}: {len(records)} record(s), chain intact, every listed file unchanged")
    if records:
        print(f"last hash: {records[-1].get('hash')} (keep it elsewhere to anchor the chain)")
    return 0
