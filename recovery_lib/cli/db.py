"""``db init``, ``db url``, ``db stop``."""

from __future__ import annotations

import argparse

from recovery_lib import db, schema
from recovery_lib.redact import mask_url


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("db", help="create the schema, show the connection URL")
    sub = parser.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    sub.add_parser("init", help="create missing tables and indexes (idempotent)").set_defaults(func=_init)
    sub.add_parser("url", help="print the connection URL, password masked").set_defaults(func=_url)
    sub.add_parser("stop", help="stop the embedded server (no-op with DATABASE_URL)").set_defaults(func=_stop)


def _init(args: argparse.Namespace) -> int:
    created = schema.init_db(db.get_engine())
    print(f"created: {', '.join(created)}" if created else "schema up to date: nothing to do")
    return 0


def _url(args: argparse.Namespace) -> int:
    print(mask_url(db.database_url()))
    return 0


def _stop(args: argparse.Namespace) -> int:
    print(db.stop_embedded())
    return 0
