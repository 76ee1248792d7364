"""SQL of ``reconciliation_cache``: the expected natural keys of payloads already parsed.

Entries are keyed by payload hash and parser version (see :mod:`recovery_lib.reconcile` for when
the cache is used and written).

    >>> complete = cached_hashes(conn, hashes, parser_version=1)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from recovery_lib.db import run
from recovery_lib.schema import METRIC_TABLES


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


def store(conn: Connection, payload_hash: str, *, parser_version: int,
          keys: Mapping[str, Sequence[datetime]], rejected_points: int) -> None:
    """One entry per table for ``payload_hash``; an existing entry is kept."""
    run(
        conn,
        "INSERT INTO reconciliation_cache (payload_hash, parser_version, table_name, expected_keys, "
        "rejected_points) VALUES (%(h)s, %(v)s, %(t)s, %(keys)s::timestamptz[], %(r)s) ON CONFLICT DO NOTHING",
        [
            {"h": payload_hash, "v": parser_version, "t": name, "keys": list(found), "r": rejected_points}
            for name, found in keys.items()
        ],
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
    """``(id, expected, rejected, present)`` per ingestion of ``ids`` with a cache entry for ``table``.

    ``present`` is joined in SQL: how many of the cached keys the metric table holds for the user.
    """
    t = METRIC_TABLES[table]
    return run(
        conn,
        f"SELECT r.id, cardinality(c.expected_keys), c.rejected_points, "
        f"(SELECT count(*) FROM unnest(c.expected_keys) AS k(at) WHERE EXISTS ("
        f"  SELECT 1 FROM {t.name} m WHERE m.user_id = r.user_id AND m.{t.key} = k.at)) "
        f"FROM raw_ingestions r JOIN reconciliation_cache c ON c.payload_hash = r.payload_hash "
        f"AND c.parser_version = %(v)s AND c.table_name = %(t)s WHERE r.id = ANY(%(ids)s::uuid[])",
        {"v": parser_version, "t": table, "ids": list(ids)},
    ).all()
