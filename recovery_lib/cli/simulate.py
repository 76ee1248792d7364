"""``simulate``: generate the incident into the database and print (or write) its ground truth.

python -m recovery_lib simulate --users 10 --payloads 40 --seed 42 --truth runs/truth.json
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import datetime

from recovery_lib import db, params, schema
from recovery_lib.simulate import IncidentExistsError, incident_exists, measure, plan_incident, reset_tables, write_plan


def _whole(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"must be a whole number from {low} to {high}, got {text!r}"
            ) from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be a whole number from {low} to {high}, got {value}")
        return value

    return parse


def _instant(text: str) -> datetime:
    value = params.parse_instant(text)
    if value is None:
        raise argparse.ArgumentTypeError(f"must be an ISO date/time like 2024-02-06T15:00:00Z, got {text!r}")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "simulate",
        help="fill the database with a realistic bind-parameter incident and report its ground truth",
        description=(
            "Create users and raw_ingestions (Health Auto Export payloads), insert the metric rows the "
            "original tool managed to write, and print what is missing. Refuses to run on a database that "
            "already holds ingestions unless --reset is given."
        ),
    )
    parser.add_argument("--users", type=_whole(1, 1000), default=10, help="number of users (default 10)")
    parser.add_argument("--payloads", type=_whole(1, 10_000), default=40, help="raw ingestions (default 40)")
    parser.add_argument("--seed", type=_whole(0, 2**63 - 1), default=42, help="random seed (default 42)")
    parser.add_argument(
        "--large-points",
        type=_whole(100, 1_000_000),
        default=20_000,
        help="data points in each large payload (default 20000)",
    )
    parser.add_argument(
        "--hash-mismatches",
        type=_whole(0, 10_000),
        default=0,
        help="recoverable ingestions stored with a wrong payload_hash (default 0)",
    )
    parser.add_argument("--now", type=_instant, default=None, help="pin 'now' (ISO); default: this hour")
    parser.add_argument("--truth", metavar="FILE", help="write the ground truth as JSON to FILE")
    parser.add_argument(
        "--reset",
        action="store_true",
        help="first empty this project's tables (users, raw_ingestions, metric tables, recovery_log, "
        "reconciliation_cache)",
    )
    parser.set_defaults(func=_simulate)


def _simulate(args: argparse.Namespace) -> int:
    engine = db.get_engine()
    schema.init_db(engine)
    if not args.reset and incident_exists(engine):
        print(_EXISTS, file=sys.stderr)
        return 2
    settings = {
        "users": args.users,
        "payloads": args.payloads,
        "large_points": args.large_points,
        "hash_mismatches": args.hash_mismatches,
    }
    try:
        # Planned before anything is emptied: impossible settings leave the database as it was.
        plan = plan_incident(**settings, seed=args.seed, now=args.now)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.reset:
        print(f"reset: emptied {', '.join(reset_tables(engine))}", file=sys.stderr)
    try:
        write_plan(engine, plan)
    except IncidentExistsError:  # another run got in between
        print(_EXISTS, file=sys.stderr)
        return 2
    truth = measure(engine, plan, settings=settings)
    print(truth.summary_text())
    if args.truth:
        print(f"ground truth written to {truth.write(args.truth)}")
    return 0


_EXISTS = (
    "error: the database already holds an incident (users or raw_ingestions are not empty); a second one on "
    "top would make the ground truth wrong.\n"
    "Run again with --reset to empty this project's tables first (users, raw_ingestions, "
    "every metric table, recovery_log, reconciliation_cache)."
)
