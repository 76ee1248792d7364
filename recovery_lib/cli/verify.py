"""``verify``: reconcile again after a recovery and show what is still missing (exit 1 if anything is)."""

from __future__ import annotations

import argparse
import sys

from recovery_lib.errors import ParameterError
from recovery_lib.options import VerifyOptions


def register(subparsers: argparse._SubParsersAction) -> None:
    verify = subparsers.add_parser("verify", help="reconcile again after recovery: what is still missing")
    verify.add_argument("--since", default=VerifyOptions.DEFAULT_SINCE,
                        help="ISO date/time or a duration like 24h / 7d (default 24h)")
    verify.add_argument("--user-id", help="only this user (a UUID)")
    verify.add_argument("--json", metavar="FILE", help="also write the verification report as JSON (mode 0600)")
    verify.set_defaults(func=_verify)


def _verify(args: argparse.Namespace) -> int:
    from recovery_lib import verification

    try:
        options = VerifyOptions.validated(since=args.since, user_id=args.user_id)
    except ParameterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    result = verification.verify(None, options)
    report = result.to_dict()
    print(f"checked {report['ingestions_checked']} ingestions since {report['since']}: "
          f"{report['missing_metrics_total']} metric rows missing, {report['missing_values_total']} values missing "
          "in existing rows")
    for name, n in report["missing_by_table"].items():
        print(f"  {name:<24} {n:>8}")
    print(f"status counts: {report['status_counts']}")
    for failed in report["recovery_failed"]:
        print(f"  recovery_failed {failed['ingestion_id']}: {failed['category']}")
    if args.json:
        result.write(args.json)
    return 0 if report["ok"] else 1
