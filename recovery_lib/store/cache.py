"""SQL of ``reconciliation_cache``: the expected natural keys of payloads already parsed.

Entries are keyed by the SHA-256 the server computes from the stored payload
(:data:`~recovery_lib.checksums.PAYLOAD_SHA256_SQL`, never the API's ``payload_hash``) and the
parser version; with each key, which checked columns the payload fills there (see
:mod:`recovery_lib.reconcile` for when the cache is used and written).

    >>> complete = cached_hashes(conn, shas, parser_version=2)
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from recovery_lib.db import array_literal, run
from recovery_lib.schema import METRIC_TABLES
from recovery_lib.store.metric_rows import missing_values_sql, pg_type


def writable(conn: Connection) -> bool:
    """Whether this transaction may add entries (not READ ONLY, and the role may INSERT)."""
    return bool(
        run(
            conn,
            "SELECT current_setting('transaction_read_only') = 'off' "
            "AND has_table_privilege('reconciliation_cache', 'INSERT')",
        ).scalar()
    )


def cached_hashes(conn: Connection, shas: Iterable[str], *, parser_version: int) -> set[str]:
    """The payload SHA-256s among ``shas`` with an entry for every metric table."""
    rows = run(
        conn,
        "SELECT payload_sha256 FROM reconciliation_cache WHERE parser_version = %(v)s "
        "AND payload_sha256 = ANY(%(shas)s) GROUP BY payload_sha256 HAVING count(*) = %(n)s",
        {"v": parser_version, "shas": list(set(shas)), "n": len(METRIC_TABLES)},
    )
    return {r[0] for r in rows}


def _tag_text(tag: Any) -> str:
    return tag.isoformat() if isinstance(tag, datetime) else str(tag)


def store(conn: Connection, payload_sha256: str, *, parser_version: int, keys: Mapping[str, Sequence[Any]],
          filled: Mapping[str, Sequence[str]], rejected_points: int, accounting: Mapping[str, Any]) -> None:
    """One entry per table for the payload; an existing entry is kept.

    A tagged table's keys are ``(instant, tag)``: the instants and the tags (as text) are stored
    as two parallel arrays.
    """
    params: dict[str, Any] = {"h": payload_sha256, "v": parser_version, "r": rejected_points,
                              "a": json.dumps(accounting)}
    values = []
    for n, (name, found) in enumerate(keys.items()):
        tagged = METRIC_TABLES[name].tag is not None
        params.update({
            # Each array as one text: psycopg2 would send every key as an expression of its own.
            f"t{n}": name, f"f{n}": array_literal(filled[name]),
            f"k{n}": array_literal(k[0] for k in found) if tagged else array_literal(found),
            f"g{n}": array_literal(_tag_text(k[1]) for k in found) if tagged else None,
        })
        values.append(f"(%(h)s, %(v)s, %(t{n})s, %(k{n})s::timestamptz[], %(g{n})s::text[], %(f{n})s::text[], "
                      "%(r)s, %(a)s::jsonb)")
    if not values:
        return
    # One statement for all tables: the per-statement cost, not the rows, was most of storing an entry.
    run(
        conn,
        "INSERT INTO reconciliation_cache (payload_sha256, parser_version, table_name, expected_keys, "
        f"expected_tags, filled_columns, rejected_points, accounting) VALUES {', '.join(values)} "
        "ON CONFLICT DO NOTHING",
        params,
    )


def analyze(conn: Connection) -> bool:
    """Give the planner statistics for the entries just stored; False when the role may not.

    Without them it can misjudge the freshly filled cache and join it badly to the window (25 s
    instead of 0.7 s for 3,300 ingestions once, ``make bench`` #3). Only the table owner may ANALYZE.
    """
    try:
        with conn.begin_nested():
            run(conn, "ANALYZE reconciliation_cache")
    except sa.exc.DBAPIError:
        return False
    return True


def tables_with_keys(conn: Connection, shas: Sequence[str], *, parser_version: int) -> list[str]:
    """The tables in which any of these payloads expects a key (most payloads fill a few of the 26)."""
    rows = run(
        conn,
        "SELECT DISTINCT table_name FROM reconciliation_cache WHERE parser_version = %(v)s "
        "AND payload_sha256 = ANY(%(shas)s) AND cardinality(expected_keys) > 0",
        {"v": parser_version, "shas": list(set(shas))},
    )
    return [r[0] for r in rows]


def entries(conn: Connection, items: Sequence[tuple[str, str]], *, parser_version: int) -> list[Any]:
    """``(id, rejected_points, accounting)`` per ``(id, sha256)`` with an entry: what is the same in every table."""
    return run(
        conn,
        "SELECT DISTINCT ON (x.id) x.id, c.rejected_points, c.accounting "
        "FROM unnest(%(ids)s::text[], %(shas)s::text[]) AS x(id, sha) "
        "JOIN reconciliation_cache c ON c.payload_sha256 = x.sha AND c.parser_version = %(v)s "
        "ORDER BY x.id, c.table_name",
        {"v": parser_version, "ids": [i[0] for i in items], "shas": [i[1] for i in items]},
    ).all()


def counts(conn: Connection, items: Sequence[tuple[str, str, str]], table: str, *, parser_version: int) -> list[Any]:
    """``(id, expected, present, missing_values)`` per ``(id, user_id, sha256)`` expecting keys in ``table``.

    Joined in SQL: which of the cached keys the metric table holds for the user, and how many of
    the values the payload fills there are NULL in those rows.
    """
    t = METRIC_TABLES[table]
    if t.tag is None:
        keys, match = "unnest(c.expected_keys, c.filled_columns) AS k(at, filled)", f"m.{t.key} = k.at"
    else:
        keys = "unnest(c.expected_keys, c.expected_tags, c.filled_columns) AS k(at, tag, filled)"
        match = f"m.{t.key} = k.at AND m.{t.tag} = k.tag::{pg_type(t, t.tag)}"
    return run(
        conn,
        f"SELECT x.id, cardinality(c.expected_keys), p.present, p.missing_values "
        f"FROM unnest(%(ids)s::text[], %(users)s::uuid[], %(shas)s::text[]) AS x(id, user_id, sha) "
        f"JOIN reconciliation_cache c ON c.payload_sha256 = x.sha AND c.parser_version = %(v)s "
        f"AND c.table_name = %(t)s AND cardinality(c.expected_keys) > 0 "
        f"CROSS JOIN LATERAL (SELECT count(m.user_id) AS present, "
        f"coalesce(sum({missing_values_sql(t, 'k.filled', 'm')}), 0) AS missing_values "
        f"FROM {keys} LEFT JOIN {t.sql_name} m ON m.user_id = x.user_id AND {match}) p",
        {"v": parser_version, "t": table, "ids": [i[0] for i in items], "users": [i[1] for i in items],
         "shas": [i[2] for i in items]},
    ).all()
