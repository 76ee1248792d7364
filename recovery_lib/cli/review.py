"""``review``: the weekly review in the terminal (recovery trends, error patterns, alert thresholds).

    python -m recovery_lib review --weeks 4 --json review.json

Reads the database and the runs archive (``--runs-dir``, default ``runs/``); exit 0, 1 when the
database cannot be read, 2 for a bad argument (before any connection).
"""

from __future__ import annotations

import argparse
import sys

from recovery_lib.errors import ParameterError
from recovery_lib.options import ReviewOptions


def register(subparsers: argparse._SubParsersAction) -> None:
    review = subparsers.add_parser(
        "review", help="the weekly review: recoveries, data loss, errors and alert thresholds per ISO week"
    )
    review.add_argument("--weeks", default=str(ReviewOptions.weeks),
                        help="ISO weeks to look back over, the current one included, 1 to 520 (default 4)")
    review.add_argument("--runs-dir", default=ReviewOptions.runs_dir,
                        help="the runs archive to read (default: runs/ of the project)")
    review.add_argument("--json", metavar="FILE", help="also write the review as JSON (mode 0600)")
    review.set_defaults(func=_review)


def _review(args: argparse.Namespace) -> int:
    try:
        options = ReviewOptions.validated(weeks=args.weeks, runs_dir=args.runs_dir)
    except ParameterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    from sqlalchemy.exc import DBAPIError

    from recovery_lib import db
    from recovery_lib.files import write_json
    from recovery_lib.redact import mask_url
    from recovery_lib.review import build_review, format_text_review

    try:
        data = build_review(db.get_engine(), options).to_dict()
    except DBAPIError as exc:
        print(f"error: {db.describe_error(exc)} (database: {mask_url(db.database_url())})", file=sys.stderr)
        return 1
    print(format_text_review(data), end="")
    if args.json:
        write_json(args.json, data)
    return 0
