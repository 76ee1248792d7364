"""Writing one payload's missing rows, three ways (``insert_method``), with exact counts.

* ``sql`` (default): PostgreSQL writes the simple metrics straight from the stored jsonb
  (:mod:`recovery_lib.payload.sql_write`); the parser streams the rest into COPY staging.
* ``copy``: the parser's rows through COPY into a staging table, then one merge per table.
* ``insert``: the parser's rows as multi-row INSERTs in chunks under the parameter limit.

All three fill NULL columns and never overwrite (:mod:`recovery_lib.store.metric_rows`), and
give the same rows, counts and rejections.

    >>> failure = merge_payload(conn, candidate, outcome, config, "sql", now, run_id)   # None: recovered
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Connection

from recovery_lib import prepared
from recovery_lib.accounting import Accounting
from recovery_lib.batching import BatchConfig
from recovery_lib.db import cursor as new_cursor
from recovery_lib.errors import PayloadError
from recovery_lib.payload import sql_plan, sql_write, stored
from recovery_lib.payload.books import PartialRow
from recovery_lib.payload.parser import PayloadParser, merge_rows
from recovery_lib.recovery import refusals
from recovery_lib.recovery.report import IngestionOutcome
from recovery_lib.schema import METRIC_TABLES, MetricTable, catalogue_bound
from recovery_lib.store import metric_rows
from recovery_lib.store.journal import JournalContext
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
    run_id: str,
    found: stored.Stored | None = None,
) -> tuple[str, str] | None:
    """Insert the payload's missing rows; fill ``outcome.tables``; return (category, message) on failure.

    ``method``: ``sql``, ``copy`` or ``insert`` (see the module docstring). Every write is
    journaled under ``run_id`` (:mod:`recovery_lib.store.journal`), in the same transaction.
    ``found``: the stored form (:func:`~recovery_lib.payload.stored.inspect`); the SQL fast path
    takes only the exporter's form stored as the value, every other form goes to the parser (a
    placeholder fails as ``body_not_stored``).
    """
    parser = PayloadParser(now=now)
    journal = JournalContext(run_id, candidate.ingestion_id)
    sql_points = 0
    try:
        found = found or stored.inspect(conn, candidate.ingestion_id)
        if method == "insert":
            _insert_path(conn, candidate.user_id, parser,
                         stored.stream_items(conn, candidate.ingestion_id, stored=found), outcome, config, journal)
        else:
            shaped = stored.structure(conn, candidate.ingestion_id, stored=found)
            # The SQL fast path writes the exporter's form into the catalogue's tables only: else the parser.
            sql = method == "sql" and found.sql_ready and shaped.ok and catalogue_bound()
            written = _sql_path(conn, candidate, parser.latest, journal) if sql else None
            items = stored.stream_items(conn, candidate.ingestion_id, skip_points=written[1] if written else [],
                                        known_structure=shaped, stored=found)
            _copy_path(conn, candidate.user_id, parser, items, outcome, config, journal)
            if written:
                outcome.tables.update(written[0])
                outcome.sql_tables = sorted(written[0])
                sql_points = written[2]
    except PayloadError as exc:
        outcome.tables = {}
        return exc.category, exc.message
    counts = Counter(parser.rejection_counts)
    accounting = Accounting.of_parser(parser.summary())
    if outcome.refusals:  # stored by the parser's books, refused by the target
        refused = len(outcome.refusals)
        counts[refusals.CATEGORY] += refused
        accounting.stored -= refused
        accounting.rejected[refusals.CATEGORY] = accounting.rejected.get(refusals.CATEGORY, 0) + refused
    outcome.rejection_counts = dict(counts)
    outcome.rejected_points = sum(counts.values())
    outcome.set_accounting(accounting, sql_points)
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
    conn: Connection, candidate: Candidate, latest: datetime, journal: JournalContext
) -> tuple[dict[str, TableReport], list[int], int] | None:
    """The tables SQL wrote, the metric positions and points it covered; None leaves all to the parser.

    Call only on a payload whose structure :func:`~recovery_lib.payload.stored.structure_ok` accepted.
    """
    cursor = new_cursor(conn)
    try:
        plan = sql_plan.plan_payload(cursor, candidate.ingestion_id, latest)
        reports = sql_write.insert_planned(cursor, plan, candidate.user_id, journal) if plan else None
    finally:
        cursor.close()
    return (reports, plan.positions, plan.points) if plan and reports is not None else None


def _copy_path(
    conn: Connection, user_id: str, parser: PayloadParser, items: Any,
    outcome: IngestionOutcome, config: BatchConfig, journal: JournalContext,
) -> None:
    cursor = new_cursor(conn)
    buffers: dict[str, list[tuple[int, datetime, dict[str, Any], str, int]]] = {name: [] for name in METRIC_TABLES}
    limits = {name: config.chunk_size(name) for name in METRIC_TABLES}  # looked up once, not per row
    staged: Counter[str] = Counter()
    columns: dict[str, set[str]] = {name: set() for name in METRIC_TABLES}  # the value columns staged rows fill
    existing: set[str] | None = None  # this session's staging tables, read once

    def stage(name: str) -> None:
        nonlocal existing
        if not buffers[name]:
            return
        table = METRIC_TABLES[name]
        if existing is None:
            cursor.execute(metric_rows.STAGED_TABLES_SQL)
            existing = {row[0] for row in cursor.fetchall()}
        if name not in staged:  # only the tables that get rows; emptied of an earlier transaction's
            metric_rows.empty_staging(cursor, table, exists=metric_rows.staging_name(table) in existing)
            existing.add(metric_rows.staging_name(table))
        # Only the columns some staged row fills so far: every other one is NULL in this buffer too.
        staged[name] += metric_rows.copy_rows(cursor, table, buffers[name], columns[name])
        buffers[name].clear()

    for seq, row in enumerate(parser.rows(items)):
        buffer = buffers[row.table]
        buffer.append((seq, row.key, row.values, row.metric, row.index))
        columns[row.table].update(column for column, value in row.values.items() if value is not None)
        if len(buffer) >= limits[row.table]:
            stage(row.table)
    for name in METRIC_TABLES:
        stage(name)
    for name, table in METRIC_TABLES.items():
        if not staged[name]:
            outcome.tables[name] = TableReport()
            continue
        outcome.tables[name] = _merge_staged(conn, cursor, table, user_id, columns[name], outcome, journal,
                                             small=staged[name] <= prepared.MAX_ROWS)
    cursor.close()


def _merge_staged(
    conn: Connection, cursor: Any, table: MetricTable, user_id: str, columns: set[str], outcome: IngestionOutcome,
    journal: JournalContext, *, small: bool,
) -> TableReport:
    """Merge one staging table. Usually one statement that also counts the keys; on a refusal, the search.

    ``small``: few rows staged, so the statement is prepared in the session (planning it would cost
    more than the merge); a large staging table is planned for its rows.
    """
    search = refusals.Search(cursor, table.name)
    params = {"user_id": user_id, **journal.params(table.name)}
    sql = metric_rows.merge_sql(table, columns=columns, counted=True)

    def counted() -> tuple[int, int, int]:
        if small:
            prepared.execute(cursor, sql, params)
        else:
            cursor.execute(sql, params)
        return cursor.fetchone()

    got = search.attempt(counted)
    if not isinstance(got, BaseException):
        keys, inserted, updated = got
        # One statement saw every key: those it did not insert were there before, and all are there now.
        return TableReport(keys, keys - inserted, inserted, updated, keys)
    cursor.execute(metric_rows.staged_counts_sql(table), {"user_id": user_id})
    expected, before = cursor.fetchone()
    inserted, updated = search.merge(expected, *_staged_merges(cursor, table, user_id, journal, columns),
                                     refused_whole=True)
    cursor.execute(metric_rows.staged_counts_sql(table), {"user_id": user_id})
    _, after = cursor.fetchone()
    return _report(conn, user_id, search, outcome, TableReport(expected, before, inserted, updated, after))


def _staged_merges(
    cursor: Any, table: MetricTable, user_id: str, journal: JournalContext, columns: set[str],
) -> tuple[Any, Any, Any]:
    """The refusal search's three merges over a staging table: a range of keys, a key's points, one point."""
    journaled = {"user_id": user_id, **journal.params(table.name)}

    def merge_range(lo: int, n: int) -> tuple[int, int]:
        # Only parts: the merge of all keys was the counted one (_merge_staged), and it was refused.
        cursor.execute(metric_rows.merge_sql(table, "range", columns=columns), {**journaled, "lo": lo, "n": n})
        return cursor.fetchone()

    def points_at(i: int) -> list[tuple[Any, refusals.Point]]:
        cursor.execute(metric_rows.staged_points_sql(table), {"lo": i, "n": 1})
        found = []
        for key, tag, seq, metric, idx, *flags in cursor.fetchall():
            fills = tuple(c for c, filled in zip(table.checked, flags, strict=False) if filled)
            found.append(((key, tag) if table.tag else key, refusals.Point(seq, metric, idx, fills)))
        return found

    def merge_point(point: refusals.Point) -> tuple[int, int]:
        cursor.execute(metric_rows.merge_sql(table, "seq", columns=columns), {**journaled, "seq": point.ref})
        return cursor.fetchone()

    return merge_range, points_at, merge_point


def _report(conn: Connection, user_id: str, search: refusals.Search, outcome: IngestionOutcome,
            counted: TableReport) -> TableReport:
    """The table's counts without the keys the target refused whole (rejected, not expected); the refusals
    go to the outcome."""
    if not search.refusals:
        return counted
    outcome.refusals.extend(search.refusals)
    outcome.constraint_search_statements += search.statements
    present = metric_rows.count_present(conn, user_id, search.table, search.whole_keys)  # untouched by the merge
    refused = len(search.whole_keys)
    return TableReport(counted.expected - refused, counted.present_before - present, counted.inserted,
                       counted.filled, counted.present_after - present)


def _insert_path(
    conn: Connection, user_id: str, parser: PayloadParser, items: Any,
    outcome: IngestionOutcome, config: BatchConfig, journal: JournalContext,
) -> None:
    points: dict[str, dict[Any, list[PartialRow]]] = {name: {} for name in METRIC_TABLES}
    for row in parser.rows(items):
        points[row.table].setdefault(row.key, []).append(row)  # the points of each row, for the refusal search
    cursor = new_cursor(conn)
    for name, table in METRIC_TABLES.items():
        rows = merge_rows(p for found in points[name].values() for p in found).get(name, {})
        keys = sorted(rows)
        before = metric_rows.count_present(conn, user_id, name, keys) if keys else 0
        search = refusals.Search(cursor, name)
        inserted, filled = search.merge(len(keys), *_row_merges(cursor, table, user_id, keys, rows, points[name],
                                                                config.chunk_size(name), journal))
        after = metric_rows.count_present(conn, user_id, name, keys) if keys else 0
        outcome.tables[name] = _report(conn, user_id, search, outcome,
                                       TableReport(len(keys), before, inserted, filled, after))
    cursor.close()


def _row_merges(
    cursor: Any, table: MetricTable, user_id: str, keys: list[Any], rows: dict[Any, dict[str, object]],
    points: dict[Any, list[PartialRow]], chunk_size: int, journal: JournalContext,
) -> tuple[Any, Any, Any]:
    """The refusal search's three merges over merged rows in key order: a range of keys, a key's points, one point."""

    def merge_range(lo: int, n: int) -> tuple[int, int]:
        return metric_rows.insert_rows(cursor, table, user_id, {k: rows[k] for k in keys[lo:lo + n]}, chunk_size,
                                       journal)

    def points_at(i: int) -> list[tuple[Any, refusals.Point]]:
        key = keys[i]
        return [(key, refusals.Point(row, row.metric, row.index, tuple(c for c in table.checked if c in row.values)))
                for row in points[key]]

    def merge_point(point: refusals.Point) -> tuple[int, int]:
        return metric_rows.insert_rows(cursor, table, user_id, {point.ref.key: point.ref.values}, chunk_size,
                                       journal)

    return merge_range, points_at, merge_point
