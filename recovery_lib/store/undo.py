"""SQL of undoing a recovery run: its journal read back, rows deleted, columns set back to NULL, ``recovery_undo``.

A row may be reverted only while it is as the run left it. That is decided by PostgreSQL's own
row version, never by a value (the journal holds none): a row is the run's while its ``xmin``
is one of the transaction ids the run's writes left (``row_xid`` of its journal lines). Any
later change of the row (another run filling a column, the API's upsert, a manual UPDATE)
gives it a new ``xmin``, and the undo refuses it. Setting columns back to NULL gives a row a
new ``xmin`` too, so the undo journals it (``unfill``) with the version the row is back to:
after undoing a later run, the earlier run's rows are recognised again.

Every statement takes the journal line by id and expands its keys on the server; table and
column names come from the schema (a name read back from the journal is checked against it).

    >>> check_entry(conn, entry, run_id, xids, lock=True)   # rows present, conflicts (row ids), a sample
    >>> delete_entry(conn, entry, run_id, xids)             # rows deleted
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Connection, Row

from recovery_lib.db import run
from recovery_lib.schema import METRIC_TABLES, MetricTable
from recovery_lib.store.journal import JOURNAL, UNDO_LOG, WRITES
from recovery_lib.store.metric_rows import pg_type

_XID = "m.xmin::text::bigint"
SAMPLE = 20  # conflicting rows named per journal line


@dataclass(frozen=True)
class Entry:
    """One journal line of a run: a write statement's inserted rows, or its filled columns."""

    id: int
    table: MetricTable
    ingestion_id: str
    user_id: str
    action: str  # insert | fill
    columns: tuple[str, ...]  # fill: the columns it filled
    rows: int


def ingestions_of(conn: Connection, run_id: str) -> list[Row[Any]]:
    """Each ingestion ``run_id`` finished, newest first, with what it found and whether it was undone."""
    return run(
        conn,
        f"SELECT l.ingestion_id::text AS ingestion_id, l.outcome, l.finished_at, l.status_before, "
        f"l.processed_at_before, l.rows_inserted, i.user_id::text AS user_id, u.undo_id "
        f"FROM recovery_log l JOIN raw_ingestions i ON i.id = l.ingestion_id "
        f"LEFT JOIN {UNDO_LOG} u ON u.run_id = l.run_id AND u.ingestion_id = l.ingestion_id "
        "WHERE l.run_id = %(run)s ORDER BY l.finished_at DESC, l.id DESC",
        {"run": run_id},
    ).all()


def later_outcome(conn: Connection, run_id: str, ingestion_id: str) -> Row[Any] | None:
    """The last recovery of the ingestion by another run after ``run_id``'s (who changed its status since)."""
    return run(
        conn,
        "SELECT l.run_id, l.outcome FROM recovery_log l WHERE l.ingestion_id = %(id)s AND l.run_id <> %(run)s "
        "AND l.finished_at >= (SELECT max(finished_at) FROM recovery_log WHERE run_id = %(run)s "
        "AND ingestion_id = %(id)s) ORDER BY l.finished_at DESC, l.id DESC LIMIT 1",
        {"id": ingestion_id, "run": run_id},
    ).first()


def is_undone(conn: Connection, run_id: str, ingestion_id: str) -> bool:
    return run(
        conn, f"SELECT EXISTS (SELECT 1 FROM {UNDO_LOG} WHERE run_id = %(run)s AND ingestion_id = %(id)s)",
        {"run": run_id, "id": ingestion_id},
    ).scalar_one()


def run_xids(conn: Connection, run_id: str) -> list[int]:
    """The row versions the run's writes left."""
    return list(run(
        conn, f"SELECT DISTINCT row_xid FROM {JOURNAL} WHERE run_id = %(run)s AND action = ANY(%(writes)s)",
        {"run": run_id, "writes": list(WRITES)},
    ).scalars())


def entries(conn: Connection, run_id: str, ingestion_id: str) -> list[Entry]:
    """The run's journal lines of one ingestion, last written first (the order to revert them)."""
    rows = run(
        conn,
        f"SELECT id, table_name, user_id::text AS user_id, action, columns, cardinality(keys) AS rows "
        f"FROM {JOURNAL} WHERE run_id = %(run)s AND ingestion_id = %(id)s AND action = ANY(%(writes)s) "
        "ORDER BY id DESC",
        {"run": run_id, "id": ingestion_id, "writes": list(WRITES)},
    ).all()
    found = []
    for r in rows:
        table = METRIC_TABLES.get(r.table_name)
        columns = tuple(r.columns or ())
        if table is None or not set(columns) <= set(table.values):
            # Names formatted into SQL must be the schema's: a journal line naming anything else is refused.
            raise ValueError(f"journal line {r.id} names a table or column this schema does not have")
        found.append(Entry(r.id, table, ingestion_id, r.user_id, r.action, columns, r.rows))
    return found


def _rows(t: MetricTable) -> str:
    """The journal line's keys (``k``) joined with the rows of ``t`` (``m``) that have them."""
    tag = ""
    if t.tag:
        tag = f" AND m.{t.tag} = k.tag::{pg_type(t, t.tag)}"
    return (f"{JOURNAL} j CROSS JOIN LATERAL unnest(j.keys, j.tags, j.prev_xids) AS k(at, tag, prev) "
            f"JOIN {t.sql_name} m ON m.user_id = j.user_id AND m.{t.key} = k.at{tag}")


def _restored(xid: str, at: str, tag: str) -> str:
    """The row version an undo's ``unfill`` of the row with version ``xid`` brought it back to (NULL: none)."""
    return (
        f"(SELECT u.prev FROM {JOURNAL} uj CROSS JOIN LATERAL unnest(uj.keys, uj.tags, uj.prev_xids) "
        f"AS u(at, tag, prev) WHERE uj.row_xid = {xid} AND uj.action = 'unfill' AND uj.table_name = %(table)s "
        f"AND uj.user_id = %(user)s::uuid AND u.at = {at} AND u.tag IS NOT DISTINCT FROM {tag} LIMIT 1)"
    )


_EFFECTIVE = f"coalesce({_restored(_XID, 'k.at', 'k.tag')}, {_XID})"
# The row is as the run left it (or as an undo of a later run brought it back to).
_OURS = f"({_XID} = ANY(%(xids)s::bigint[]) OR {_EFFECTIVE} = ANY(%(xids)s::bigint[]))"


def _not_inserted_by_run() -> str:
    """The key is not one the run itself inserted (such a row is deleted, not emptied: leave its columns)."""
    return (f"(k.at, coalesce(k.tag, '')) NOT IN (SELECT x.at, coalesce(x.tag, '') FROM {JOURNAL} ij "
            f"CROSS JOIN LATERAL unnest(ij.keys, ij.tags) AS x(at, tag) WHERE ij.run_id = %(run)s "
            f"AND ij.action = 'insert' AND ij.table_name = %(table)s AND ij.user_id = %(user)s::uuid)")


def _params(entry: Entry, run_id: str, xids: list[int]) -> dict[str, Any]:
    return {"entry": entry.id, "xids": xids, "run": run_id, "table": entry.table.name, "user": entry.user_id}


def check_entry(conn: Connection, entry: Entry, run_id: str, xids: list[int], *, lock: bool) -> Row[Any]:
    """``(present, conflicts, clearable, sample)`` of one journal line.

    ``present``: its rows still there; ``conflicts``: those changed since (up to 20 in ``sample``,
    ``{"id", "at", "xid"}``: the row's id, never its values); ``clearable``: of a fill line, the
    rows whose columns the undo sets back (not the rows the run inserted: those are deleted).
    ``lock`` takes the rows ``FOR UPDATE`` first, so nothing changes them before the undo writes.
    """
    clearable = _not_inserted_by_run() if entry.action == "fill" else "false"
    return run(
        conn,
        f"SELECT count(*) AS present, count(*) FILTER (WHERE NOT ours) AS conflicts, "
        f"count(*) FILTER (WHERE ours AND clear) AS clearable, "
        f"(array_agg(jsonb_build_object('id', id, 'at', at, 'xid', eff) ORDER BY at) "
        f"FILTER (WHERE NOT ours))[1:{SAMPLE}] AS sample "
        f"FROM (SELECT m.id, k.at, {_EFFECTIVE} AS eff, {_OURS} AS ours, {clearable} AS clear "
        f"FROM {_rows(entry.table)} WHERE j.id = %(entry)s{' FOR UPDATE OF m' if lock else ''}) s",
        _params(entry, run_id, xids),
    ).one()


def delete_entry(conn: Connection, entry: Entry, run_id: str, xids: list[int]) -> int:
    """Delete the rows the line inserted that are still as the run left them; how many."""
    t = entry.table
    tag = f" AND m.{t.tag} = k.tag::{pg_type(t, t.tag)}" if t.tag else ""
    return run(
        conn,
        f"DELETE FROM {t.sql_name} m USING {JOURNAL} j CROSS JOIN LATERAL unnest(j.keys, j.tags, j.prev_xids) "
        f"AS k(at, tag, prev) WHERE j.id = %(entry)s AND m.user_id = j.user_id AND m.{t.key} = k.at{tag} AND {_OURS}",
        _params(entry, run_id, xids),
    ).rowcount


def unfill_entry(conn: Connection, entry: Entry, run_id: str, xids: list[int]) -> int:
    """Set the line's filled columns back to NULL where the row is as the run left it; how many rows.

    Rows the run itself inserted are left (the undo deletes them). Journals the rows it changed
    (``unfill``), each with the version it is back to.
    """
    t = entry.table
    tag = f" AND m.{t.tag} = k.tag::{pg_type(t, t.tag)}" if t.tag else ""
    sets = ", ".join(f"{c} = NULL" for c in entry.columns)
    return int(run(
        conn,
        f"WITH u AS (UPDATE {t.sql_name} m SET {sets} FROM {JOURNAL} j CROSS JOIN LATERAL "
        f"unnest(j.keys, j.tags, j.prev_xids) AS k(at, tag, prev) "
        f"WHERE j.id = %(entry)s AND m.user_id = j.user_id AND m.{t.key} = k.at{tag} AND {_OURS} "
        f"AND {_not_inserted_by_run()} "
        f"RETURNING k.at, k.tag, coalesce({_restored('k.prev', 'k.at', 'k.tag')}, k.prev) AS back_to, "
        f"{_XID} AS xid), "
        f"ins AS (INSERT INTO {JOURNAL} (run_id, ingestion_id, table_name, user_id, action, columns, keys, "
        f"tags, row_xid, prev_xids) SELECT %(run)s, %(ingestion)s::uuid, %(table)s, %(user)s::uuid, 'unfill', "
        f"%(columns)s::text[], array_agg(at), array_agg(tag), min(xid), array_agg(back_to) FROM u "
        f"HAVING count(*) > 0) SELECT count(*) FROM u",
        {**_params(entry, run_id, xids), "columns": list(entry.columns), "ingestion": entry.ingestion_id},
    ).scalar_one())


def writers_of(conn: Connection, xids: list[int]) -> dict[int, str]:
    """Which recovery run left each of these row versions (versions no run left are not in the result)."""
    return {x: r for x, r in run(
        conn, f"SELECT DISTINCT row_xid, run_id FROM {JOURNAL} WHERE row_xid = ANY(%(x)s::bigint[]) "
        "AND action = ANY(%(writes)s)", {"x": xids, "writes": list(WRITES)},
    ).all()}


def log_undo(conn: Connection, *, undo_id: str, run_id: str, ingestion_id: str, rows_deleted: int,
             values_cleared: int, status_restored: str | None) -> None:
    """Record, in the ingestion's undo transaction, that ``undo_id`` reverted ``run_id``'s work on it."""
    run(
        conn,
        f"INSERT INTO {UNDO_LOG} (undo_id, run_id, ingestion_id, rows_deleted, values_cleared, status_restored) "
        "VALUES (%(undo)s, %(run)s, %(id)s, %(deleted)s, %(cleared)s, %(status)s)",
        {"undo": undo_id, "run": run_id, "id": ingestion_id, "deleted": rows_deleted, "cleared": values_cleared,
         "status": status_restored},
    )
