"""``summary``: what the database holds now: ingestions by status, rows per table."""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    summary = subparsers.add_parser("summary", help="what the database holds: ingestions by status, rows per table")
    summary.set_defaults(func=_summary)


def _summary(args: argparse.Namespace) -> int:
    from recovery_lib import db, schema, target
    from recovery_lib.simulate import database_summary

    engine = db.get_engine()
    with engine.connect() as conn:
        target.bind(conn)  # the API's database: its own table names, and only the tables it has
        wanted = {"users", "raw_ingestions", "recovery_log",
                  *(t.sql_name for t in schema.METRIC_TABLES.values() if t.present)}
        # to_regclass follows the search path: the bookkeeping may be in its own schema.
        missing = set(db.run(conn, "SELECT n FROM unnest(%(names)s::text[]) n WHERE to_regclass(n) IS NULL",
                             {"names": sorted(wanted)}).scalars())
    if missing:
        print(
            f"the schema is not initialised (missing: {', '.join(sorted(missing))}); "
            "run `python -m recovery_lib db init`",
            file=sys.stderr,
        )
        return 1
    print(database_summary(engine).text())
    return 0
