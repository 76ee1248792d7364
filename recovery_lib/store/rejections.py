"""SQL of ``constraint_rejections``: the points the target refused, and what they change in a reconciliation.

A recovery replaces an ingestion's lines with the refusals it found (none: its lines go); the
reconciliation then counts those points as rejected (``constraint_violation``) instead of missing:
a key none of whose points was written is not expected, and a refused column left NULL in a row
that exists is not a missing value. Keys and names only, never a value.

    >>> replace(conn, ingestion_id, run_id, refusals)
    >>> adjustments(conn, [ingestion_id])[ingestion_id]["heart_rate_metrics"].points
    3
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Connection

from recovery_lib.db import run
from recovery_lib.schema import METRIC_TABLES
from recovery_lib.store.metric_rows import pg_type

if TYPE_CHECKING:
    from recovery_lib.recovery.refusals import Refusal

MAX_NAME = 100  # a metric name is the payload's own text: cut, like the parser's books


@dataclass
class Adjustment:
    """What the refusals of one ingestion change in one table's reconciliation."""

    points: int = 0  # refused points: rejected, not stored
    keys: int = 0  # keys none of whose points was written: not expected
    keys_present: int = 0  # of those, keys whose row exists all the same (another payload's)
    null_values: int = 0  # refused columns NULL in an existing row: not missing values


def _tag_text(tag: Any) -> str | None:
    if tag is None:
        return None
    return tag.isoformat() if isinstance(tag, datetime) else str(tag)


def replace(conn: Connection, ingestion_id: str, run_id: str, refusals: Sequence[Refusal]) -> None:
    """The ingestion's refusals are now ``refusals`` (in the caller's transaction)."""
    run(conn, "DELETE FROM constraint_rejections WHERE ingestion_id = %(id)s", {"id": ingestion_id})
    if not refusals:
        return
    run(
        conn,
        "INSERT INTO constraint_rejections (ingestion_id, table_name, metric, point_index, key_at, key_tag, "
        "constraint_name, columns, whole_row, run_id) VALUES (%(id)s, %(t)s, %(m)s, %(i)s, %(at)s, %(tag)s, "
        "%(c)s, %(cols)s::text[], %(whole)s, %(run)s) ON CONFLICT DO NOTHING",
        [
            {"id": ingestion_id, "t": r.table, "m": r.metric[:MAX_NAME], "i": r.index,
             "at": r.key[0] if isinstance(r.key, tuple) else r.key,
             "tag": _tag_text(r.key[1]) if isinstance(r.key, tuple) else None,
             "c": r.constraint, "cols": list(r.columns), "whole": r.whole_row, "run": run_id}
            for r in refusals
        ],
    )


def trial_allowed(conn: Connection) -> bool:
    """Whether this role may try a payload's writes (rolled back) to learn what the target refuses."""
    # Each privilege on its own: a list in one call is true when any of them is held.
    checks = [f"has_table_privilege('{t.sql_name}', '{p}')" for t in METRIC_TABLES.values() if t.present
              for p in ("INSERT", "UPDATE")]
    checks += [f"has_table_privilege('constraint_rejections', '{p}')" for p in ("INSERT", "DELETE")]
    return bool(run(
        conn,
        "SELECT current_setting('transaction_read_only') = 'off' "
        f"AND has_database_privilege(current_database(), 'TEMP') AND {' AND '.join(checks)}",
    ).scalar())


def target_may_refuse(conn: Connection) -> bool:
    """Whether the target's metric tables can refuse a row the catalogue accepts.

    They can when one has a CHECK constraint, or a column the payload fills is NOT NULL or typed
    otherwise than in the catalogue (an integer, an enum, a length, a domain). This project's own
    tables have none of that: a preview there has nothing to learn from trying the writes.
    """
    written = [(t.sql_name, c, pg_type(t, c)) for t in METRIC_TABLES.values() if t.present for c in t.values]
    return bool(run(
        conn,
        "SELECT EXISTS (SELECT 1 FROM pg_constraint WHERE contype = 'c' AND conrelid = ANY("
        "SELECT to_regclass(r) FROM unnest(%(rels)s::text[]) r)) "
        "OR EXISTS (SELECT 1 FROM unnest(%(rels)s::text[], %(cols)s::text[], %(types)s::text[]) w(rel, col, kind) "
        "JOIN pg_attribute a ON a.attrelid = to_regclass(w.rel) AND a.attname = w.col AND NOT a.attisdropped "
        "WHERE a.attnotnull OR a.atttypid <> w.kind::regtype OR a.atttypmod <> -1)",
        {"rels": [r for r, _, _ in written], "cols": [c for _, c, _ in written], "types": [k for _, _, k in written]},
    ).scalar())


def _null_columns(table: str, cols: str, row: str) -> str:
    """How many of the column names in the text array ``cols`` are NULL in ``row`` (0 without a row)."""
    t = METRIC_TABLES[table]
    cases = " ".join(f"WHEN '{c}' THEN {row}.{c} IS NULL" for c in t.checked)  # names from the schema
    return (f"CASE WHEN {row}.user_id IS NULL THEN 0 ELSE "
            f"(SELECT count(*) FROM unnest({cols}) c WHERE CASE c {cases} ELSE false END) END")


def adjustments(conn: Connection, ingestion_ids: Sequence[str]) -> dict[str, dict[str, Adjustment]]:
    """Per ingestion (those with refusals only) and table: what its refusals change (see :class:`Adjustment`)."""
    found: dict[str, dict[str, Adjustment]] = {}
    if not ingestion_ids:
        return found
    tables = run(
        conn,
        "SELECT DISTINCT table_name FROM constraint_rejections WHERE ingestion_id = ANY(%(ids)s::uuid[])",
        {"ids": list(ingestion_ids)},
    ).scalars().all()
    for name in tables:
        t = METRIC_TABLES.get(name)
        if t is None:
            continue
        match = f"m.{t.key} = f.key_at" + (f" AND m.{t.tag} = f.key_tag::{pg_type(t, t.tag)}" if t.tag else "")
        rows = run(
            conn,
            "WITH f AS (SELECT r.ingestion_id, i.user_id, r.key_at, r.key_tag, bool_and(r.whole_row) AS whole, "
            "count(*) AS points, (SELECT array_agg(DISTINCT c) FROM constraint_rejections x, unnest(x.columns) c "
            "WHERE x.ingestion_id = r.ingestion_id AND x.table_name = r.table_name AND x.key_at = r.key_at "
            "AND x.key_tag IS NOT DISTINCT FROM r.key_tag) AS cols "
            "FROM constraint_rejections r JOIN raw_ingestions i ON i.id = r.ingestion_id "
            "WHERE r.ingestion_id = ANY(%(ids)s::uuid[]) AND r.table_name = %(t)s "
            "GROUP BY r.ingestion_id, r.table_name, i.user_id, r.key_at, r.key_tag) "
            f"SELECT f.ingestion_id::text, sum(f.points), count(*) FILTER (WHERE f.whole), "
            f"count(m.user_id) FILTER (WHERE f.whole), coalesce(sum({_null_columns(name, 'f.cols', 'm')}), 0) "
            f"FROM f LEFT JOIN {t.sql_name} m ON m.user_id = f.user_id AND {match} GROUP BY f.ingestion_id",
            {"ids": list(ingestion_ids), "t": name},
        ).all()
        for ingestion_id, points, keys, keys_present, nulls in rows:
            found.setdefault(ingestion_id, {})[name] = Adjustment(int(points), int(keys), int(keys_present),
                                                                 int(nulls))
    return found
