"""Exact, per-ingestion reconciliation: the keys a payload implies versus the rows that exist.

For each metric table, the natural keys ``(user_id, timestamp)`` the payload implies (from the
parser) are looked up in that table for that user. Counting all of a user's rows (what the
original tool did) is not enough: other payloads' rows hide the loss.

Expected keys are cached in ``reconciliation_cache`` by payload hash and parser version, so the
monitor's second run only joins; the cache is written only where the transaction may write
(never in a dry run, never for a read-only role).

    >>> with engine.begin() as conn:
    ...     lost = [r for r in reconcile_window(conn, since=yesterday) if r.missing_total]
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from recovery_lib import fetch, payload, payload_sql
from recovery_lib.schema import METRIC_TABLES

_log = logging.getLogger(__name__)

UNNEST_CHUNK = 50_000
SQL_KEYS_MIN_BYTES = 64_000  # measured: 3,300 exports of 11 kB took 8.3 s parsed, 14 s listed in SQL


@dataclass
class TableCounts:
    expected: int = 0
    present: int = 0

    @property
    def missing(self) -> int:
        return self.expected - self.present

    def to_dict(self) -> dict[str, int]:
        return {"expected": self.expected, "present": self.present, "missing": self.missing}


@dataclass
class Expectation:
    """What one payload implies: keys per table, and what could not become a row."""

    keys: dict[str, list[datetime]]
    rejected_points: int = 0
    rejection_counts: dict[str, int] = field(default_factory=dict)
    parse_error: str | None = None


@dataclass
class IngestionReconciliation:
    ingestion_id: str
    user_id: str
    status: str
    created_at: datetime | None
    payload_size_bytes: int
    tables: dict[str, TableCounts]
    rejected_points: int = 0
    parse_error: str | None = None

    @property
    def missing_total(self) -> int:
        return sum(t.missing for t in self.tables.values())

    @property
    def expected_total(self) -> int:
        return sum(t.expected for t in self.tables.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "ingestion_id": self.ingestion_id,
            "user_id": self.user_id,
            "status": self.status,
            "created_at": self.created_at.isoformat() if self.created_at else None,
            "payload_size_bytes": self.payload_size_bytes,
            "tables": {name: counts.to_dict() for name, counts in self.tables.items()},
            "missing_total": self.missing_total,
            "rejected_points": self.rejected_points,
            "parse_error": self.parse_error,
        }


def expected_keys(
    conn: Connection, ingestion_id: str, *, now: datetime | None = None, use_sql: bool = True,
    payload_size: int | None = None,
) -> Expectation:
    """The distinct keys per table one stored payload implies, and what could not become a row.

    With ``use_sql``, PostgreSQL lists the keys of the simple metrics when it can do so exactly
    like the parser (:func:`payload_sql.expected_keys`); the parser streams the rest, or all.
    A payload known to be under ``SQL_KEYS_MIN_BYTES`` goes to the parser: for a few hundred
    points, the statements' round trips cost more than parsing.
    """
    parser = payload.PayloadParser(now=now)
    keys: dict[str, set[datetime]] = {name: set() for name in METRIC_TABLES}
    skip: list[int] = []
    if payload_size is not None and payload_size < SQL_KEYS_MIN_BYTES:
        use_sql = False
    shaped: bool | None = None
    if use_sql:
        shaped = fetch.structure_ok(conn, ingestion_id)
    if shaped:
        with conn.connection.dbapi_connection.cursor() as cursor:
            listed = payload_sql.expected_keys(cursor, ingestion_id, parser.latest)
        if listed is not None:
            for name, found in listed[0].items():
                keys[name].update(found)
            skip = listed[1]
    try:
        for row in parser.rows(fetch.stream_items(conn, ingestion_id, skip_points=skip, known_structure_ok=shaped)):
            keys[row.table].add(row.key)
    except payload.PayloadError as exc:
        return Expectation({name: [] for name in METRIC_TABLES}, parse_error=exc.category)
    counts = dict(parser.rejection_counts)
    return Expectation(
        {name: sorted(found) for name, found in keys.items()},
        rejected_points=sum(counts.values()),
        rejection_counts=counts,
    )


def count_present(conn: Connection, user_id: str, table: str, keys: Sequence[datetime]) -> int:
    """How many of ``keys`` exist in ``table`` for ``user_id`` (read-only; chunked)."""
    t = METRIC_TABLES[table]
    present = 0
    for start in range(0, len(keys), UNNEST_CHUNK):
        present += conn.execute(
            sa.text(
                f"SELECT count(*) FROM unnest(CAST(:keys AS timestamptz[])) AS k(at) "
                f"WHERE EXISTS (SELECT 1 FROM {t.name} m WHERE m.user_id = :user_id AND m.{t.key} = k.at)"
            ),
            {"keys": list(keys[start : start + UNNEST_CHUNK]), "user_id": user_id},
        ).scalar_one()
    return present


def _cache_writable(conn: Connection) -> bool:
    return bool(
        conn.execute(
            sa.text(
                "SELECT current_setting('transaction_read_only') = 'off' "
                "AND has_table_privilege('reconciliation_cache', 'INSERT')"
            )
        ).scalar()
    )


def _cached_hashes(conn: Connection, hashes: Iterable[str]) -> set[str]:
    rows = conn.execute(
        sa.text(
            "SELECT payload_hash FROM reconciliation_cache WHERE parser_version = :v "
            "AND payload_hash = ANY(:hashes) GROUP BY payload_hash HAVING count(*) = :n"
        ),
        {"v": payload.PARSER_VERSION, "hashes": list(set(hashes)), "n": len(METRIC_TABLES)},
    )
    return {r[0] for r in rows}


def _store(conn: Connection, payload_hash: str, expectation: Expectation) -> None:
    conn.execute(
        sa.text(
            "INSERT INTO reconciliation_cache (payload_hash, parser_version, table_name, expected_keys, "
            "rejected_points) VALUES (:h, :v, :t, CAST(:keys AS timestamptz[]), :r) ON CONFLICT DO NOTHING"
        ),
        [
            {"h": payload_hash, "v": payload.PARSER_VERSION, "t": name, "keys": keys,
             "r": expectation.rejected_points}
            for name, keys in expectation.keys.items()
        ],
    )


def _analyze_cache(conn: Connection) -> None:
    """Give the planner statistics for the entries just stored.

    Without them it expects one cache row per table and picks a nested loop that rescans the
    window once per cache row: 25 s instead of 0.7 s for 3,300 ingestions (``make bench``, #3).
    Only the table owner may ANALYZE; for other roles this is skipped.
    """
    try:
        with conn.begin_nested():
            conn.execute(sa.text("ANALYZE reconciliation_cache"))
    except sa.exc.DBAPIError:
        _log.debug("ANALYZE reconciliation_cache not permitted for this role; skipped")


def _from_cache(conn: Connection, rows: list[Any]) -> dict[str, dict[str, Any]]:
    """Expected/present counts per ingestion and table, joined in SQL against the cached keys."""
    result: dict[str, dict[str, Any]] = {r.id: {"tables": {}, "rejected": 0} for r in rows}
    ids = list(result)
    for name, t in METRIC_TABLES.items():
        found = conn.execute(
            sa.text(
                f"SELECT r.id, cardinality(c.expected_keys), c.rejected_points, "
                f"(SELECT count(*) FROM unnest(c.expected_keys) AS k(at) WHERE EXISTS ("
                f"  SELECT 1 FROM {t.name} m WHERE m.user_id = r.user_id AND m.{t.key} = k.at)) "
                f"FROM raw_ingestions r JOIN reconciliation_cache c ON c.payload_hash = r.payload_hash "
                f"AND c.parser_version = :v AND c.table_name = :t WHERE r.id = ANY(CAST(:ids AS uuid[]))"
            ),
            {"v": payload.PARSER_VERSION, "t": name, "ids": ids},
        )
        for ingestion_id, expected, rejected, present in found:
            result[str(ingestion_id)]["tables"][name] = TableCounts(expected, present)
            result[str(ingestion_id)]["rejected"] = rejected
    return result


_SELECT = (
    "SELECT id::text AS id, user_id::text AS user_id, processing_status AS status, created_at, "
    "payload_size_bytes, payload_hash FROM raw_ingestions"
)


def reconcile_ingestions(
    conn: Connection | Engine, ingestion_ids: Sequence[str], *, use_cache: bool = True
) -> list[IngestionReconciliation]:
    """Reconcile the given ingestions, in the order given."""
    if isinstance(conn, Engine):
        with conn.begin() as c:
            return reconcile_ingestions(c, ingestion_ids, use_cache=use_cache)
    rows = conn.execute(
        sa.text(f"{_SELECT} WHERE id = ANY(CAST(:ids AS uuid[])) ORDER BY created_at, id"),
        {"ids": list(ingestion_ids)},
    ).all()
    return _reconcile_rows(conn, rows, use_cache=use_cache)


def reconcile_window(
    conn: Connection | Engine,
    *,
    since: datetime | None = None,
    user_id: str | None = None,
    statuses: Sequence[str] | None = None,
    use_cache: bool = True,
) -> list[IngestionReconciliation]:
    """Reconcile every ingestion created since ``since`` (all time if None), optionally filtered."""
    if isinstance(conn, Engine):
        with conn.begin() as c:
            return reconcile_window(c, since=since, user_id=user_id, statuses=statuses, use_cache=use_cache)
    clauses, params = [], {}
    if since is not None:
        clauses.append("created_at >= :since")
        params["since"] = since
    if user_id is not None:
        clauses.append("user_id = :user_id")
        params["user_id"] = user_id
    if statuses is not None:
        clauses.append("processing_status = ANY(:statuses)")
        params["statuses"] = list(statuses)
    where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    rows = conn.execute(sa.text(f"{_SELECT}{where} ORDER BY created_at, id"), params).all()
    return _reconcile_rows(conn, rows, use_cache=use_cache)


def _reconcile_rows(conn: Connection, rows: list[Any], *, use_cache: bool) -> list[IngestionReconciliation]:
    cached = _cached_hashes(conn, [r.payload_hash for r in rows]) if use_cache and rows else set()
    writable = use_cache and bool(rows) and _cache_writable(conn)
    direct: dict[str, Expectation] = {}
    stored: set[str] = set()
    for r in rows:
        if r.payload_hash in cached or r.payload_hash in stored:
            continue
        expectation = expected_keys(conn, r.id, payload_size=r.payload_size_bytes)
        if writable and expectation.parse_error is None:
            _store(conn, r.payload_hash, expectation)
            stored.add(r.payload_hash)
        else:
            direct[r.id] = expectation
    if stored:
        _analyze_cache(conn)
    via_cache = _from_cache(conn, [r for r in rows if r.id not in direct]) if use_cache else {}
    results = []
    for r in rows:
        if r.id in direct:
            exp = direct[r.id]
            tables = {
                name: TableCounts(len(keys), count_present(conn, r.user_id, name, keys) if keys else 0)
                for name, keys in exp.keys.items()
            }
            rejected, parse_error = exp.rejected_points, exp.parse_error
        else:
            tables, rejected, parse_error = via_cache[r.id]["tables"], via_cache[r.id]["rejected"], None
        results.append(
            IngestionReconciliation(
                r.id, r.user_id, r.status, r.created_at, r.payload_size_bytes, tables, rejected, parse_error
            )
        )
    return results


def missing_by_table(results: Iterable[IngestionReconciliation]) -> dict[str, int]:
    """Sum of missing rows per table over ``results`` (every table listed)."""
    totals: Counter[str] = Counter({name: 0 for name in METRIC_TABLES})
    for result in results:
        for name, counts in result.tables.items():
            totals[name] += counts.missing
    return dict(totals)
