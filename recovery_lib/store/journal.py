"""SQL of ``recovery_journal``: what each recovery run wrote, journaled by the write itself.

Every merge into a metric table (the three insert methods) is wrapped by :func:`journaled` into
one statement that also writes its journal lines, so the journal is exact and shares the
write's transaction: a crash loses both or neither. All sub-statements of one statement see
the same snapshot, so joining the merge's ``RETURNING`` with the target table gives each row's
version *before* the merge (this works on every PostgreSQL, no ``RETURNING OLD`` needed):

* ``insert`` lines: the keys of the rows the statement inserted;
* ``fill`` lines: per set of columns that were NULL and got a value, the keys of those rows and
  each row's version (``xmin``) before;
* both with the row version the statement left (``row_xid``: the xmin of its (sub)transaction).

Only keys, column names and transaction ids: never a value. The undo's SQL is
:mod:`recovery_lib.store.undo`; the restoration notices read the journal here. The journal's
tables are named once (``JOURNAL``, ``UNDO_LOG``) so that moving the tool's bookkeeping into a
schema of its own is a change of these two lines.

    >>> sql = journaled(METRIC_TABLES["heart_rate_metrics"], "INSERT INTO heart_rate_metrics AS t ...")
    >>> cursor.execute(sql, {**params, **JournalContext(run_id, ingestion_id).params("heart_rate_metrics")})
    >>> inserted, filled = cursor.fetchone()
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Connection, Row

from recovery_lib.db import run
from recovery_lib.errors import UnknownRunError
from recovery_lib.schema import MetricTable

JOURNAL = "recovery_journal"
UNDO_LOG = "recovery_undo"
WRITES = ("insert", "fill")  # the actions a recovery journals; 'unfill' is the undo's


@dataclass(frozen=True)
class JournalContext:
    """Whose writes are being journaled: one ingestion of one recovery run."""

    run_id: str
    ingestion_id: str

    def params(self, table: str) -> dict[str, Any]:
        return {"journal_run": self.run_id, "journal_ingestion": self.ingestion_id, "journal_table": table}


def _match(t: MetricTable, left: str, right: str) -> str:
    """``left`` and ``right`` name the same row of ``t`` (same user, key and tag)."""
    cols = [t.key, t.tag] if t.tag else [t.key]
    return " AND ".join(f"{left}.{c} = {right}.{c}" for c in cols)


def journaled(t: MetricTable, insert: str, *, merge: bool = True, source: str | None = None) -> str:
    """``insert`` (into ``t``, no RETURNING) and its journal lines, as one statement returning ``(inserted, filled)``.

    ``merge``: the statement has ``ON CONFLICT ... DO UPDATE`` (it may fill existing rows); a
    plain INSERT only inserts. ``source``: a query ``insert`` reads as ``src``; the statement then
    returns ``(rows of src, inserted, filled)``. Parameters: the statement's own, ``user_id`` and
    :meth:`JournalContext.params`.
    """
    tag = f", {t.tag}" if t.tag else ""
    tags = f"array_agg({t.tag}::text)" if t.tag else "NULL::text[]"
    flags = "".join(f", {c} IS NOT NULL AS v_{c}" for c in t.values) if merge else ""
    returning = f"RETURNING {t.key}{tag}, (xmax = 0) AS ins, xmin::text::bigint AS xid{flags}"
    head = (f"INSERT INTO {JOURNAL} (run_id, ingestion_id, table_name, user_id, action, columns, keys, tags, "
            "row_xid, prev_xids) ")
    who = "SELECT %(journal_run)s, %(journal_ingestion)s::uuid, %(journal_table)s, %(user_id)s::uuid, "
    inserted = (f"{who}'insert', NULL::text[], array_agg({t.key}), {tags}, min(xid), NULL::bigint[] "
                "FROM w WHERE ins HAVING count(*) > 0")
    if not merge:
        # Every row is new and carries the statement's (sub)transaction id: one row gives it, and the
        # per-row xmax test and xid-to-bigint casts go (0.4-0.6 us of a heart-rate row's 8-9 us).
        plain = (f"{who}'insert', NULL::text[], array_agg({t.key}), {tags}, "
                 "(SELECT xmin::text::bigint FROM w LIMIT 1), NULL::bigint[] FROM w HAVING count(*) > 0")
        return (f"WITH w AS ({insert} RETURNING {t.key}{tag}, xmin), j AS ({head}{plain}) "
                "SELECT count(*), 0 FROM w")
    # The old version of each updated row: the statement's snapshot does not see its own update.
    gained = ", ".join(f"CASE WHEN o.{c} IS NULL AND w.v_{c} THEN '{c}' END" for c in t.values)
    filled_rows = (
        f"SELECT w.{t.key}{(', w.' + t.tag) if t.tag else ''}, w.xid, o.xmin::text::bigint AS prev, "
        f"array_remove(ARRAY[{gained}]::text[], NULL) AS cols "
        f"FROM w JOIN {t.sql_name} o ON o.user_id = %(user_id)s AND {_match(t, 'o', 'w')} WHERE NOT w.ins"
    )
    filled = (f"{who}'fill', cols, array_agg({t.key}), {tags}, min(xid), array_agg(prev) FROM f "
              "WHERE cardinality(cols) > 0 GROUP BY cols")
    src, counted = (f"src AS MATERIALIZED ({source}), ", "(SELECT count(*) FROM src), ") if source else ("", "")
    return (
        f"WITH {src}w AS ({insert} {returning}), f AS ({filled_rows}), "
        f"j AS ({head}{inserted} UNION ALL {filled}) "
        f"SELECT {counted}count(*) FILTER (WHERE ins), count(*) FILTER (WHERE NOT ins) FROM w"
    )


# --- reading the journal ------------------------------------------------------------------------


def runs_like(conn: Connection, prefix: str) -> list[str]:
    """The recovery runs (in ``recovery_log``) whose id starts with ``prefix`` (a validated hex string)."""
    return list(run(
        conn, "SELECT DISTINCT run_id FROM recovery_log WHERE run_id LIKE %(p)s ORDER BY 1", {"p": f"{prefix}%"},
    ).scalars())


def one_run(conn: Connection, prefix: str) -> str:
    """The full id of the one recovery run ``prefix`` names; :class:`UnknownRunError` when none or several do."""
    found = runs_like(conn, prefix)
    if len(found) != 1:
        raise UnknownRunError(f"run {prefix}: " + (
            "no recovery run with that id in recovery_log (a dry run logs nothing)" if not found
            else f"{len(found)} runs start with it: give more digits"))
    return found[0]


def restored_per_family(conn: Connection, run_id: str) -> list[Row[Any]]:
    """Per user and table: rows the run inserted or filled (distinct keys), first and last key; undone ones left out."""
    return run(
        conn,
        f"SELECT j.user_id::text AS user_id, j.table_name, count(DISTINCT (k.at, k.tag)) AS rows, "
        f"count(DISTINCT (k.at, k.tag)) FILTER (WHERE j.action = 'insert') AS inserted, "
        f"min(k.at) AS first_at, max(k.at) AS last_at "
        f"FROM {JOURNAL} j, unnest(j.keys, j.tags) AS k(at, tag) "
        "WHERE j.run_id = %(run)s AND j.action = ANY(%(writes)s) "
        f"AND NOT EXISTS (SELECT 1 FROM {UNDO_LOG} u WHERE u.run_id = j.run_id AND u.ingestion_id = j.ingestion_id) "
        "GROUP BY 1, 2 ORDER BY 1, 2",
        {"run": run_id, "writes": list(WRITES)},
    ).all()


def journaled_rows(conn: Connection, run_id: str) -> int:
    """How many keys the run journaled (0: the run wrote nothing, or ran before the journal)."""
    return int(run(
        conn, f"SELECT coalesce(sum(cardinality(keys)), 0) FROM {JOURNAL} "
        "WHERE run_id = %(run)s AND action = ANY(%(writes)s)", {"run": run_id, "writes": list(WRITES)},
    ).scalar_one())


def run_outcomes(conn: Connection, run_id: str) -> list[Row[Any]]:
    """Each ingestion the run finished: user, outcome, rows, its note's category, status now, undone."""
    return run(
        conn,
        f"""
SELECT l.ingestion_id::text AS ingestion_id, i.user_id::text AS user_id, i.created_at AS received_at,
       l.outcome, l.rows_inserted, l.finished_at, i.processing_status AS status_now,
       n.note ->> 'category' AS category, u.undo_id
FROM recovery_log l
JOIN raw_ingestions i ON i.id = l.ingestion_id
LEFT JOIN {UNDO_LOG} u ON u.run_id = l.run_id AND u.ingestion_id = l.ingestion_id
LEFT JOIN LATERAL (
    SELECT e AS note FROM jsonb_array_elements(
        CASE WHEN jsonb_typeof(i.processing_errors) = 'array' THEN i.processing_errors ELSE '[]'::jsonb END) e
    WHERE e ->> 'source' = 'recovery' AND e ->> 'run_id' = l.run_id LIMIT 1
) n ON true
WHERE l.run_id = %(run)s ORDER BY i.user_id, i.created_at, l.ingestion_id
""",
        {"run": run_id},
    ).all()


def undone_runs(conn: Connection, run_ids: list[str]) -> dict[str, dict[str, Any]]:
    """Of ``run_ids``, those an undo touched: ingestions undone, undo ids, last undo time."""
    rows = run(
        conn,
        f"SELECT run_id, count(*) AS ingestions, array_agg(DISTINCT undo_id) AS undo_ids, "
        f"max(finished_at) AS last_undone FROM {UNDO_LOG} WHERE run_id = ANY(%(runs)s) GROUP BY run_id",
        {"runs": run_ids},
    ).all()
    return {r.run_id: {"ingestions": r.ingestions, "undo_ids": sorted(r.undo_ids), "last_undone": r.last_undone}
            for r in rows}
