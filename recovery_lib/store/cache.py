"""SQL of ``reconciliation_cache``: the expected natural keys of payloads already parsed.

Entries are keyed by payload hash and parser version (see :mod:`recovery_lib.reconcile` for when
the cache is used and written).

    >>> complete = cached_hashes(conn, hashes, parser_version=1)
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from recovery_lib.db import run
from recovery_lib.schema import METRIC_TABLES
from recovery_lib.store.metric_rows import pg_type


def writable(conn: Connection) -> bool:
    """Whether this transaction may add entries (not READ ONLY, and the role may INSERT)."""
    return bool(
        run(
            conn,
            "SELECT current_setting('transaction_read_only') = 'off' "
            "AND has_table_privilege('reconciliation_cache', 'INSERT')",
        ).scalar()
    )


def cached_hashes(conn: Connection, hashes: Iterable[str], *, parser_version: int) -> set[str]:
    """The hashes among ``hashes`` with an entry for every metric table."""
    rows = run(
        conn,
        "SELECT payload_hash FROM reconciliation_cache WHERE parser_version = %(v)s "
        "AND payload_hash = ANY(%(hashes)s) GROUP BY payload_hash HAVING count(*) = %(n)s",
        {"v": parser_version, "hashes": list(set(hashes)), "n": len(METRIC_TABLES)},
    )
    return {r[0] for r in rows}


def _tag_text(tag: Any) -> str:
    return tag.isoformat() if isinstance(tag, datetime) else str(tag)


def store(conn: Connection, payload_hash: str, *, parser_version: int,
          keys: Mapping[str, Sequence[Any]], rejected_points: int, accounting: Mapping[str, Any]) -> None:
    """One entry per table for ``payload_hash``; an existing entry is kept.

    A tagged table's keys are ``(instant, tag)``: the instants and the tags (as text) are stored
    as two parallel arrays.
    """
    rows = []
    for name, found in keys.items():
        tagged = METRIC_TABLES[name].tag is not None
        rows.append({
            "h": payload_hash, "v": parser_version, "t": name, "r": rejected_points,
            "a": json.dumps(accounting),
            "keys": [k[0] for k in found] if tagged else list(found),
            "tags": [_tag_text(k[1]) for k in found] if tagged else None,
        })
    run(
        conn,
        "INSERT INTO reconciliation_cache (payload_hash, parser_version, table_name, expected_keys, "
        "expected_tags, rejected_points, accounting) VALUES (%(h)s, %(v)s, %(t)s, %(keys)s::timestamptz[], "
        "%(tags)s::text[], %(r)s, %(a)s::jsonb) ON CONFLICT DO NOTHING",
        rows,
    )


def analyze(conn: Connection) -> bool:
    """Give the planner statistics for the entries just stored; False when the role may not.

    Without them it expects one cache row per table and picks a nested loop that rescans the
    window once per cache row: 25 s instead of 0.7 s for 3,300 ingestions (``make bench``, #3).
    Only the table owner may ANALYZE.
    """
    try:
        with conn.begin_nested():
            run(conn, "ANALYZE reconciliation_cache")
    except sa.exc.DBAPIError:
        return False
    return True


def counts(conn: Connection, ids: Sequence[str], table: str, *, parser_version: int) -> list[Any]:
    """``(id, expected, rejected, present, accounting)`` per ingestion of ``ids`` with an entry for ``table``.

    ``present`` is joined in SQL: how many of the cached keys the metric table holds for the user.
    """
    t = METRIC_TABLES[table]
    if t.tag is None:
        keys, match = "unnest(c.expected_keys) AS k(at)", f"m.{t.key} = k.at"
    else:
        tag_type = pg_type(t, t.tag)
        keys = "unnest(c.expected_keys, c.expected_tags) AS k(at, tag)"
        match = f"m.{t.key} = k.at AND m.{t.tag} = k.tag::{tag_type}"
    return run(
        conn,
        f"SELECT r.id, cardinality(c.expected_keys), c.rejected_points, "
        f"(SELECT count(*) FROM {keys} WHERE EXISTS ("
        f"  SELECT 1 FROM {t.name} m WHERE m.user_id = r.user_id AND {match})), c.accounting "
        f"FROM raw_ingestions r JOIN reconciliation_cache c ON c.payload_hash = r.payload_hash "
        f"AND c.parser_version = %(v)s AND c.table_name = %(t)s WHERE r.id = ANY(%(ids)s::uuid[])",
        {"v": parser_version, "t": table, "ids": list(ids)},
    ).all()
