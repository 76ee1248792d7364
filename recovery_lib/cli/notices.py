"""``notices RUN_ID``: rebuild a recovery run's user restoration notices from the database."""

from __future__ import annotations

import argparse
import sys

from sqlalchemy.exc import DBAPIError

from recovery_lib.errors import ParameterError, UnknownRunError


def register(subparsers: argparse._SubParsersAction) -> None:
    notices = subparsers.add_parser(
        "notices", help="per user of a recovery run: rows restored per metric family, ingestions still failing")
    notices.add_argument("run_id", metavar="RUN_ID", help="the run's id (the report's run_id, or its first 8+ digits)")
    notices.add_argument("--out", default=".", help="where restoration_notices_<run>.csv and .json are written")
    notices.set_defaults(func=_notices)


def _notices(args: argparse.Namespace) -> int:
    from recovery_lib import db, notices
    from recovery_lib.options import NoticesOptions
    from recovery_lib.redact import mask_url

    try:
        options = NoticesOptions.validated(run_id=args.run_id, out_dir=args.out)
    except ParameterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        built = notices.for_run(None, options)
    except UnknownRunError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except DBAPIError as exc:
        print(f"error: {db.describe_error(exc)} (database: {mask_url(db.database_url())})", file=sys.stderr)
        return 1
    csv_path, json_path = built.write(options.out_dir)
    data = built.to_dict()
    print(built.headline())
    for user in data["users"]:
        restored = ", ".join(f"{r['family']} {r['rows']}" for r in user["restored"]) or "nothing"
        print(f"  {user['user_id']}: restored {restored}; still failing {len(user['still_failing'])}")
    print(f"  written: {csv_path}, {json_path}")
    return 0
