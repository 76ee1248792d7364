"""``summary``: what the database holds now: ingestions by status, rows per table."""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    summary = subparsers.add_parser("summary", help="what the database holds: ingestions by status, rows per table")
    summary.set_defaults(func=_summary)


def _summary(args: argparse.Namespace) -> int:
    import sqlalchemy as sa

    from recovery_lib import db, schema
    from recovery_lib.simulate import database_summary

    engine = db.get_engine()
    missing = {"users", "raw_ingestions", "recovery_log", *schema.METRIC_TABLES} - set(
        sa.inspect(engine).get_table_names()
    )
    if missing:
        print(
            f"the schema is not initialised (missing: {', '.join(sorted(missing))}); "
            "run `python -m recovery_lib db init`",
            file=sys.stderr,
        )
        return 1
    print(database_summary(engine).text())
    return 0
