"""The SQL writes: a payload's simple metrics by ``INSERT ... SELECT`` from the stored jsonb (``insert_method='sql'``).

The statements come from :mod:`recovery_lib.payload.sql_plan` (the parser's rules compiled to SQL).

    >>> plan = sql_plan.plan_payload(cursor, ingestion_id, latest)
    >>> reports = insert_planned(cursor, plan, user_id, journal)   # None: rolled back, the parser does it all

A table with few points in the payload is written by one grouped merge that also counts its
keys. Otherwise, within a table, the first metric is written by one statement (a plain INSERT when the user has
no rows in its date range, the large metric of an export usually is), then the table's other
metrics by one statement grouped by key, each column taking its first value in payload order;
both fill NULL columns and never overwrite, as the parser's merge. A point SQL cannot take
exactly like the parser fails its statement (a NULL key violates NOT NULL, a cast refuses a
string, a repeated key a unique index or the grouped check) and :func:`insert_planned` rolls back
to its savepoint.

Counts are exact: keys are unique within a metric, so a table's distinct keys are the first
metric's points plus the other metrics' keys it did not have, and those are tracked in a small
temporary table with the ctid of their row before the insert (an UPDATE moves a row to a new
ctid: that row was filled). Every statement journals what it wrote (:mod:`recovery_lib.store.journal`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from recovery_lib import prepared
from recovery_lib.errors import NotForSql
from recovery_lib.payload.sql_plan import (
    UNIQUE_VIOLATION,
    PlannedMetric,
    SqlPlan,
    points_select,
    run_guarded,
    statement_params,
)
from recovery_lib.schema import METRIC_TABLES, MetricTable
from recovery_lib.store.journal import JournalContext, journaled
from recovery_lib.store.metric_rows import TableReport, update_clause

# Distinct keys of a table's metrics and the ctid of their row before the inserts (see _report).
KEYS_TABLE = "sql_path_keys"
# A table with at most this many points in the payload is written by one statement (_write_small):
# the probe, savepoints and key tracking of a large metric cost more than grouping a few points.
SMALL_TABLE_POINTS = 500
_KEYS_DDL = f"CREATE TEMP TABLE {KEYS_TABLE} (key timestamptz NOT NULL, pre_ctid tid) ON COMMIT DELETE ROWS"


def insert_planned(
    cursor: Any, plan: SqlPlan, user_id: str, journal: JournalContext
) -> dict[str, TableReport] | None:
    """Write the planned metrics, journaled; the reports per table, or None after rolling everything back.

    Runs inside the caller's transaction, under its own savepoint (the journal lines roll back with it).
    """
    cursor.execute(f"SELECT to_regclass('pg_temp.{KEYS_TABLE}') IS NULL")
    if cursor.fetchone()[0]:
        cursor.execute(_KEYS_DDL)  # once per connection, like sql_plan's metrics table
    return run_guarded(cursor, "sql_path", lambda: {
        name: _write_table(cursor, plan, METRIC_TABLES[name], metrics, user_id, journal)
        for name, metrics in plan.tables.items()
    })


def _write_table(
    cursor: Any, plan: SqlPlan, table: MetricTable, metrics: list[PlannedMetric], user_id: str,
    journal: JournalContext,
) -> TableReport:
    if sum(m.points for m in metrics) <= SMALL_TABLE_POINTS:
        return _write_small(cursor, plan, table, metrics, user_id, journal)
    first, rest = metrics[0], metrics[1:]
    if not _rows_in_range(cursor, table, metrics, user_id):
        # Likely no row of these keys exists: the first metric goes in with a plain INSERT (no
        # ON CONFLICT, the cheaper statement) and only the other metrics' keys are tracked.
        cursor.execute("SAVEPOINT sql_path_table")
        try:
            _fill_keys(cursor, plan, table, rest, user_id)
            first_inserted = _insert(cursor, plan, table, [first], user_id, journal, merge=False)
            cursor.execute("RELEASE SAVEPOINT sql_path_table")
        except Exception as exc:
            # A key the probe did not see (outside the first/last dates, a concurrent writer,
            # a key twice in the metric): redo this table with ON CONFLICT.
            if getattr(exc, "pgcode", None) != UNIQUE_VIOLATION:
                raise
            cursor.execute("ROLLBACK TO SAVEPOINT sql_path_table")
        else:
            # Tracked keys that did not exist before and exist now came from the first metric.
            cursor.execute(
                f"SELECT count(*) FROM {KEYS_TABLE} k CROSS JOIN LATERAL {_row_of(table, 'k')} t "
                f"WHERE k.pre_ctid IS NULL",
                {"user_id": user_id},
            )
            overlap = int(cursor.fetchone()[0])
            inserted = first_inserted + _insert(cursor, plan, table, rest, user_id, journal, merge=True)
            # The plain INSERT proved the first metric's keys new, so they add no "before" rows.
            return _report(cursor, table, user_id, inserted, extra_keys=first_inserted - overlap)
    _fill_keys(cursor, plan, table, metrics, user_id)
    inserted = sum(_insert(cursor, plan, table, part, user_id, journal, merge=True) for part in ([first], rest))
    return _report(cursor, table, user_id, inserted, extra_keys=0)


def _write_small(
    cursor: Any, plan: SqlPlan, table: MetricTable, metrics: list[PlannedMetric], user_id: str,
    journal: JournalContext,
) -> TableReport:
    """Few points: one merge of every metric, grouped by key, that counts its keys as it writes.

    Each key is inserted or conflicts with a row that existed before (the one statement sees no
    other write of this payload), so the rows present before are the keys not inserted.
    """
    # Prepared: the same few texts come back payload after payload, and their planning costs more than their rows.
    prepared.execute(cursor, _insert_sql(table, metrics, merge=True, counted=True),
                     statement_params(plan, user_id=user_id, **journal.params(table.name)))
    expected, inserted, filled = cursor.fetchone()
    return TableReport(expected, expected - inserted, inserted, filled, expected)


def _report(cursor: Any, table: MetricTable, user_id: str, inserted: int, extra_keys: int) -> TableReport:
    """Counts from the keys table (``extra_keys``: new keys that are not in it).

    A key's row existed before when the keys table recorded its ctid, and was filled when that
    row version has since been replaced (an UPDATE writes a new version at a new ctid).
    """
    cursor.execute(
        f"SELECT count(*), count(k.pre_ctid), (SELECT count(*) FROM {KEYS_TABLE} f "
        f"CROSS JOIN LATERAL {_row_of(table, 'f')} t "
        f"WHERE f.pre_ctid IS NOT NULL AND t.ctid <> f.pre_ctid) FROM {KEYS_TABLE} k",
        {"user_id": user_id},
    )
    tracked, before, filled = cursor.fetchone()
    expected = tracked + extra_keys
    if expected - before != inserted:
        # Every key exists after the ON CONFLICT statements and each new one was inserted once;
        # anything else means the bookkeeping is wrong, and the parser should do this payload.
        raise NotForSql(f"{table.name}: {expected} keys, {before} before, but {inserted} inserted")
    return TableReport(expected, before, inserted, filled, expected)


def _row_of(table: MetricTable, keys: str) -> str:
    """The user's row at each key, looked up by the unique index one key at a time.

    The rows this transaction inserted are not in the planner's statistics: a plain join can be
    planned with the table outside (the user "has no rows") and scan the keys once per row,
    which took more than 10 minutes for a 200 MB payload (``make bench`` #2).
    """
    return (f"(SELECT t.ctid FROM {table.sql_name} t WHERE t.user_id = %(user_id)s "
            f"AND t.{table.key} = {keys}.key LIMIT 1)")


def _rows_in_range(cursor: Any, table: MetricTable, metrics: Sequence[PlannedMetric], user_id: str) -> bool:
    """Whether the user has rows between the metrics' first and last dates (a hint, not a proof)."""
    dates = [d for m in metrics for d in (m.first_date, m.last_date) if d is not None]
    if not dates:
        return False
    cursor.execute(
        f"SELECT EXISTS (SELECT 1 FROM {table.sql_name} WHERE user_id = %(user_id)s AND {table.key} "
        f"BETWEEN (SELECT min(d::timestamptz) FROM unnest(%(dates)s::text[]) d) "
        f"AND (SELECT max(d::timestamptz) FROM unnest(%(dates)s::text[]) d))",
        {"user_id": user_id, "dates": dates},
    )
    return bool(cursor.fetchone()[0])


def _fill_keys(
    cursor: Any, plan: SqlPlan, table: MetricTable, metrics: Sequence[PlannedMetric], user_id: str
) -> None:
    """Keys table := the distinct keys of ``metrics``, each with the ctid of its row if one exists."""
    cursor.execute(f"DELETE FROM {KEYS_TABLE}")  # not TRUNCATE: no new relfilenode per table
    if not metrics:
        return
    dates = " UNION ALL ".join(f"SELECT p.value->>'date' AS d {m.points_from()}" for m in metrics)
    # A date the guard would refuse is counted here, but its insert then fails and undoes all.
    cursor.execute(
        f"INSERT INTO {KEYS_TABLE} (key, pre_ctid) SELECT k.key, t.ctid FROM "
        f"(SELECT DISTINCT d::timestamptz AS key FROM ({dates}) s WHERE d IS NOT NULL) k "
        f"LEFT JOIN {table.sql_name} t ON t.user_id = %(user_id)s AND t.{table.key} = k.key",
        {"user_id": user_id, "ingestion_id": plan.ingestion_id},
    )


def _insert_sql(table: MetricTable, metrics: Sequence[PlannedMetric], merge: bool, *, counted: bool = False) -> str:
    """INSERT ... SELECT of the points of ``metrics``; a failed check makes the key NULL.

    A plain INSERT (``merge=False``, one metric): its points as they are; a key twice fails the
    unique index. Otherwise grouped by key, each column taking its first value in payload order,
    and a key twice within one metric makes the key NULL: ON CONFLICT alone would not refuse it
    when the row exists and neither occurrence changes it (DO UPDATE ... WHERE false only locks).
    ``counted`` (a merge): the statement also returns how many keys it wrote or found.
    """
    columns = [c for c in table.values if c == "source_device" or any(
        f.column == c for m in metrics for f in m.spec.fields)]
    if not merge and len(metrics) == 1:
        source = f"SELECT key, {', '.join(columns)} FROM ({points_select(metrics[0], columns)}) s"
    elif len(metrics) == 1:  # one metric: a group of one point, or a repeated key
        picks = ", ".join(f"min({c})" for c in columns)
        source = (
            f"SELECT CASE WHEN count(*) = 1 THEN key END, {picks} "
            f"FROM ({points_select(metrics[0], columns)}) s GROUP BY key"
        )
    else:
        union = " UNION ALL ".join(f"({points_select(m, columns)})" for m in metrics)
        picks = ", ".join(f"(array_agg({c} ORDER BY position) FILTER (WHERE {c} IS NOT NULL))[1]" for c in columns)
        source = (
            f"SELECT CASE WHEN count(*) = count(DISTINCT position) THEN key END, {picks} "
            f"FROM ({union}) s GROUP BY key"
        )
    rows = "src" if counted else f"({source}) rows"
    insert = (
        f"INSERT INTO {table.sql_name} AS t (user_id, {table.key}, {', '.join(columns)}) "
        f"SELECT %(user_id)s, * FROM {rows}"
    )
    # The merge and its journal name only the columns written: another one is never filled, and a
    # wide table's every column in SET, WHERE and RETURNING cost more planning than the insert itself.
    written = replace(table, values=tuple(columns))
    if not merge:
        return journaled(written, insert, merge=False)  # every row it writes is new
    sets, changed = update_clause(written)
    return journaled(written, f"{insert} ON CONFLICT (user_id, {table.key}) DO UPDATE SET {sets} WHERE {changed}",
                     source=source if counted else None)


def _insert(
    cursor: Any, plan: SqlPlan, table: MetricTable, metrics: Sequence[PlannedMetric], user_id: str,
    journal: JournalContext, *, merge: bool,
) -> int:
    """Rows inserted (not filled) by writing ``metrics`` (nothing to write: 0), journaled."""
    if not metrics:
        return 0
    cursor.execute(
        _insert_sql(table, metrics, merge),
        statement_params(plan, user_id=user_id, **journal.params(table.name)),
    )
    return int(cursor.fetchone()[0])
