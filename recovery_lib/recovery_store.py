"""Write one payload's rows into the metric tables and count what that changed.

Split from ``recovery.py``: this is the data path (parse -> stage -> merge -> reconcile) of one
ingestion inside the caller's transaction; ``recovery.py`` is the orchestration around it.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Connection

from recovery_lib import batching, fetch, payload, payload_sql, reconcile
from recovery_lib.batching import BatchConfig
from recovery_lib.report import IngestionOutcome, TableReport
from recovery_lib.schema import METRIC_TABLES

if TYPE_CHECKING:
    from recovery_lib.discovery import Candidate


def merge_payload(
    conn: Connection,
    candidate: Candidate,
    outcome: IngestionOutcome,
    config: BatchConfig,
    method: str,
    now: datetime,
) -> tuple[str, str] | None:
    """Insert the payload's missing rows; fill ``outcome.tables``; return (category, message) on failure.

    ``method``: ``sql`` (simple metrics written by PostgreSQL, see :mod:`payload_sql`; the rest
    like ``copy``), ``copy`` (the parser's rows through COPY staging) or ``insert`` (multi-row INSERT).
    """
    parser = payload.PayloadParser(now=now)
    try:
        if method == "insert":
            _insert_path(conn, candidate.user_id, parser, fetch.stream_items(conn, candidate.ingestion_id),
                         outcome, config)
        else:
            written = _sql_path(conn, candidate, parser.latest) if method == "sql" else None
            skip = written[1] if written else []
            items = fetch.stream_items(conn, candidate.ingestion_id, skip_points=skip)
            _copy_path(conn, candidate.user_id, parser, items, outcome, config)
            if written:
                outcome.tables.update(written[0])
                outcome.sql_tables = sorted(written[0])
    except payload.PayloadError as exc:
        outcome.tables = {}
        return exc.category, exc.message
    outcome.rejection_counts = dict(parser.rejection_counts)
    outcome.rejected_points = sum(parser.rejection_counts.values())
    missing = sum(t.missing_after for t in outcome.tables.values())
    if missing:
        return "reconciliation", f"{missing} expected rows still missing after the insert"
    if outcome.rejected_points:
        summary = ", ".join(f"{n} {category}" for category, n in sorted(outcome.rejection_counts.items()))
        return "rejected_points", f"{outcome.rejected_points} points could not be stored ({summary})"
    return None


def _sql_path(
    conn: Connection, candidate: Candidate, latest: datetime
) -> tuple[dict[str, TableReport], list[int]] | None:
    """The tables SQL wrote and the metric positions it covered; None leaves everything to the parser."""
    if not fetch.structure_ok(conn, candidate.ingestion_id):
        return None
    cursor = conn.connection.dbapi_connection.cursor()
    try:
        plan = payload_sql.plan_payload(cursor, candidate.ingestion_id, latest)
        reports = payload_sql.insert_planned(cursor, plan, candidate.user_id) if plan else None
    finally:
        cursor.close()
    return (reports, plan.positions) if plan and reports is not None else None


def _copy_path(
    conn: Connection, user_id: str, parser: payload.PayloadParser, items: Any,
    outcome: IngestionOutcome, config: BatchConfig,
) -> None:
    cursor = conn.connection.dbapi_connection.cursor()
    for table in METRIC_TABLES.values():
        cursor.execute(batching.staging_ddl(table))
    buffers: dict[str, list[tuple[int, datetime, dict[str, Any]]]] = {name: [] for name in METRIC_TABLES}
    limits = {name: config.chunk_size(name) for name in METRIC_TABLES}  # looked up once, not per row
    staged: Counter[str] = Counter()
    for seq, row in enumerate(parser.rows(items)):
        buffer = buffers[row.table]
        buffer.append((seq, row.key, row.values))
        if len(buffer) >= limits[row.table]:
            staged[row.table] += batching.copy_rows(cursor, METRIC_TABLES[row.table], buffer)
            buffer.clear()
    for name, buffer in buffers.items():
        staged[name] += batching.copy_rows(cursor, METRIC_TABLES[name], buffer)
    for name, table in METRIC_TABLES.items():
        if not staged[name]:
            outcome.tables[name] = TableReport()
            continue
        cursor.execute(batching.staged_counts_sql(table), {"user_id": user_id})
        expected, before = cursor.fetchone()
        cursor.execute(batching.merge_sql(table), {"user_id": user_id})
        inserted, filled = cursor.fetchone()
        cursor.execute(batching.staged_counts_sql(table), {"user_id": user_id})
        _, after = cursor.fetchone()
        outcome.tables[name] = TableReport(expected, before, inserted, filled, after)
    cursor.close()


def _insert_path(
    conn: Connection, user_id: str, parser: payload.PayloadParser, items: Any,
    outcome: IngestionOutcome, config: BatchConfig,
) -> None:
    merged = payload.merge_rows(parser.rows(items))
    cursor = conn.connection.dbapi_connection.cursor()
    for name, table in METRIC_TABLES.items():
        rows = merged.get(name, {})
        keys = sorted(rows)
        before = reconcile.count_present(conn, user_id, name, keys) if keys else 0
        inserted, filled = batching.insert_rows(cursor, table, user_id, rows, config.chunk_size(name))
        after = reconcile.count_present(conn, user_id, name, keys) if keys else 0
        outcome.tables[name] = TableReport(len(keys), before, inserted, filled, after)
    cursor.close()
