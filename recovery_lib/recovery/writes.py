"""Writing one payload's missing rows, three ways (``insert_method``), with exact counts.

* ``sql`` (default): PostgreSQL writes the simple metrics straight from the stored jsonb
  (:mod:`recovery_lib.payload.sql_write`); the parser streams the rest into COPY staging.
* ``copy``: the parser's rows through COPY into a staging table, then one merge per table.
* ``insert``: the parser's rows as multi-row INSERTs in chunks under the parameter limit.

All three fill NULL columns and never overwrite (:mod:`recovery_lib.store.metric_rows`), and
give the same rows, counts and rejections.

    >>> failure = merge_payload(conn, candidate, outcome, config, "sql", now)   # None: recovered
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Connection

from recovery_lib.accounting import Accounting
from recovery_lib.batching import BatchConfig
from recovery_lib.db import cursor as new_cursor
from recovery_lib.errors import PayloadError
from recovery_lib.payload import sql_plan, sql_write, stored
from recovery_lib.payload.parser import PayloadParser, merge_rows
from recovery_lib.recovery.report import IngestionOutcome
from recovery_lib.schema import METRIC_TABLES
from recovery_lib.store import metric_rows
from recovery_lib.store.metric_rows import TableReport

if TYPE_CHECKING:
    from recovery_lib.discovery import Candidate


def merge_payload(
    conn: Connection,
    candidate: Candidate,
    outcome: IngestionOutcome,
    config: BatchConfig,
    method: str,
    now: datetime,
    found: stored.Stored | None = None,
) -> tuple[str, str] | None:
    """Insert the payload's missing rows; fill ``outcome.tables``; return (category, message) on failure.

    ``method``: ``sql``, ``copy`` or ``insert`` (see the module docstring). ``found``: the stored
    form (:func:`~recovery_lib.payload.stored.inspect`); the SQL fast path takes only the exporter's
    form stored as the value, every other form goes to the parser (a placeholder fails as
    ``body_not_stored``).
    """
    parser = PayloadParser(now=now)
    sql_points = 0
    try:
        found = found or stored.inspect(conn, candidate.ingestion_id)
        if method == "insert":
            _insert_path(conn, candidate.user_id, parser,
                         stored.stream_items(conn, candidate.ingestion_id, stored=found), outcome, config)
        else:
            shaped = stored.structure(conn, candidate.ingestion_id, stored=found)
            sql = method == "sql" and found.sql_ready and shaped.ok
            written = _sql_path(conn, candidate, parser.latest) if sql else None
            items = stored.stream_items(conn, candidate.ingestion_id, skip_points=written[1] if written else [],
                                        known_structure=shaped, stored=found)
            _copy_path(conn, candidate.user_id, parser, items, outcome, config)
            if written:
                outcome.tables.update(written[0])
                outcome.sql_tables = sorted(written[0])
                sql_points = written[2]
    except PayloadError as exc:
        outcome.tables = {}
        return exc.category, exc.message
    outcome.rejection_counts = dict(parser.rejection_counts)
    outcome.rejected_points = sum(parser.rejection_counts.values())
    outcome.set_accounting(Accounting.of_parser(parser.summary()), sql_points)
    return failure_of(outcome)


def failure_of(outcome: IngestionOutcome) -> tuple[str, str] | None:
    """Why an ingestion is not complete after its rows were written (or would be, in a preview), if it is not.

    Missing rows first, then rejected points, then points with no place to go.
    """
    missing = sum(t.missing_after for t in outcome.tables.values())
    if missing:
        return "reconciliation", f"{missing} expected rows still missing after the insert"
    if outcome.rejected_points:
        summary = ", ".join(f"{n} {category}" for category, n in sorted(outcome.rejection_counts.items()))
        return "rejected_points", f"{outcome.rejected_points} points could not be stored ({summary})"
    if outcome.accounting.unsupported:
        names = ", ".join(f"{n} of {name}" for name, n in sorted(outcome.accounting.unsupported.items()))
        count = sum(outcome.accounting.unsupported.values())
        return "unsupported_points", f"{count} points have no table to go to ({names})"
    return None


def _sql_path(
    conn: Connection, candidate: Candidate, latest: datetime
) -> tuple[dict[str, TableReport], list[int], int] | None:
    """The tables SQL wrote, the metric positions and points it covered; None leaves all to the parser.

    Call only on a payload whose structure :func:`~recovery_lib.payload.stored.structure_ok` accepted.
    """
    cursor = new_cursor(conn)
    try:
        plan = sql_plan.plan_payload(cursor, candidate.ingestion_id, latest)
        reports = sql_write.insert_planned(cursor, plan, candidate.user_id) if plan else None
    finally:
        cursor.close()
    return (reports, plan.positions, plan.points) if plan and reports is not None else None


def _copy_path(
    conn: Connection, user_id: str, parser: PayloadParser, items: Any,
    outcome: IngestionOutcome, config: BatchConfig,
) -> None:
    cursor = new_cursor(conn)
    buffers: dict[str, list[tuple[int, datetime, dict[str, Any]]]] = {name: [] for name in METRIC_TABLES}
    limits = {name: config.chunk_size(name) for name in METRIC_TABLES}  # looked up once, not per row
    staged: Counter[str] = Counter()

    def stage(name: str) -> None:
        if not buffers[name]:
            return
        if name not in staged:  # only the tables that get rows (with the SQL path: sleep, workouts)
            cursor.execute(metric_rows.staging_ddl(METRIC_TABLES[name]))
        staged[name] += metric_rows.copy_rows(cursor, METRIC_TABLES[name], buffers[name])
        buffers[name].clear()

    for seq, row in enumerate(parser.rows(items)):
        buffer = buffers[row.table]
        buffer.append((seq, row.key, row.values))
        if len(buffer) >= limits[row.table]:
            stage(row.table)
    for name in METRIC_TABLES:
        stage(name)
    for name, table in METRIC_TABLES.items():
        if not staged[name]:
            outcome.tables[name] = TableReport()
            continue
        cursor.execute(metric_rows.staged_counts_sql(table), {"user_id": user_id})
        expected, before = cursor.fetchone()
        cursor.execute(metric_rows.merge_sql(table), {"user_id": user_id})
        inserted, filled = cursor.fetchone()
        cursor.execute(metric_rows.staged_counts_sql(table), {"user_id": user_id})
        _, after = cursor.fetchone()
        outcome.tables[name] = TableReport(expected, before, inserted, filled, after)
    cursor.close()


def _insert_path(
    conn: Connection, user_id: str, parser: PayloadParser, items: Any,
    outcome: IngestionOutcome, config: BatchConfig,
) -> None:
    merged = merge_rows(parser.rows(items))
    cursor = new_cursor(conn)
    for name, table in METRIC_TABLES.items():
        rows = merged.get(name, {})
        keys = sorted(rows)
        before = metric_rows.count_present(conn, user_id, name, keys) if keys else 0
        inserted, filled = metric_rows.insert_rows(cursor, table, user_id, rows, config.chunk_size(name))
        after = metric_rows.count_present(conn, user_id, name, keys) if keys else 0
        outcome.tables[name] = TableReport(len(keys), before, inserted, filled, after)
    cursor.close()
