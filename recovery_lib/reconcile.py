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

from sqlalchemy.engine import Connection, Engine

from recovery_lib.accounting import Accounting
from recovery_lib.db import cursor
from recovery_lib.errors import PayloadError
from recovery_lib.payload import sql_plan, stored
from recovery_lib.payload.parser import PARSER_VERSION, PayloadParser
from recovery_lib.schema import METRIC_TABLES
from recovery_lib.store import cache, ingestions
from recovery_lib.store.metric_rows import count_present

_log = logging.getLogger(__name__)

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
    """What one payload implies: keys per table, what could not become a row, where every point went."""

    keys: dict[str, list[Any]]
    rejected_points: int = 0
    rejection_counts: dict[str, int] = field(default_factory=dict)
    parse_error: str | None = None
    accounting: Accounting = field(default_factory=Accounting)


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
    accounting: Accounting = field(default_factory=Accounting)

    def __post_init__(self) -> None:
        self.accounting.rows_expected = self.expected_total
        self.accounting.rows_present = sum(t.present for t in self.tables.values())

    @property
    def complete(self) -> bool:
        """Every point accounted for and every row present (see :mod:`recovery_lib.accounting`)."""
        return self.parse_error is None and self.accounting.complete

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
            "accounting": self.accounting.to_dict(),
        }


def expected_keys(
    conn: Connection, ingestion_id: str, *, now: datetime | None = None, use_sql: bool = True,
    payload_size: int | None = None, found: stored.Stored | None = None,
) -> Expectation:
    """The distinct keys per table one stored payload implies, and what could not become a row.

    With ``use_sql``, PostgreSQL lists the keys of the simple metrics when it can do so exactly
    like the parser (:func:`~recovery_lib.payload.sql_plan.expected_keys`); the parser streams the rest, or all.
    A payload known to be under ``SQL_KEYS_MIN_BYTES`` goes to the parser: for a few hundred
    points, the statements' round trips cost more than parsing. ``found``: the stored form
    (:func:`~recovery_lib.payload.stored.inspect`, looked up when not given); only the exporter's
    form stored as the value goes to SQL, and a placeholder has no keys (``body_not_stored``).
    """
    parser = PayloadParser(now=now)
    keys: dict[str, set[Any]] = {name: set() for name in METRIC_TABLES}
    skip: list[int] = []
    listed_points = 0
    found = found or stored.inspect(conn, ingestion_id)
    if (payload_size is not None and payload_size < SQL_KEYS_MIN_BYTES) or not found.sql_ready:
        use_sql = False
    shaped: stored.Structure | None = None
    if use_sql:
        shaped = stored.structure(conn, ingestion_id, stored=found)
    if shaped is not None and shaped.ok:
        with cursor(conn) as cur:
            listed = sql_plan.expected_keys(cur, ingestion_id, parser.latest)
        if listed is not None:
            for name, listed_keys in listed[0].items():
                keys[name].update(listed_keys)
            skip, listed_points = listed[1], listed[2]
    try:
        items = stored.stream_items(conn, ingestion_id, skip_points=skip, known_structure=shaped, stored=found)
        for row in parser.rows(items):
            keys[row.table].add(row.key)
    except PayloadError as exc:
        return Expectation({name: [] for name in METRIC_TABLES}, parse_error=exc.category)
    counts = dict(parser.rejection_counts)
    # The points SQL listed were counted by SQL, not by the parser: they are stored points too.
    accounting = Accounting.of_parser(parser.summary())
    accounting.points += listed_points
    accounting.stored += listed_points
    return Expectation(
        {name: sorted(found) for name, found in keys.items()},
        rejected_points=sum(counts.values()),
        rejection_counts=counts,
        accounting=accounting,
    )


def _from_cache(conn: Connection, rows: list[Any]) -> dict[str, dict[str, Any]]:
    """Expected/present counts per ingestion and table, joined in SQL against the cached keys."""
    result: dict[str, dict[str, Any]] = {r.id: {"tables": {}, "rejected": 0, "accounting": None} for r in rows}
    ids = list(result)
    for name in METRIC_TABLES:
        found = cache.counts(conn, ids, name, parser_version=PARSER_VERSION)
        for ingestion_id, expected, rejected, present, accounting in found:
            result[str(ingestion_id)]["tables"][name] = TableCounts(expected, present)
            result[str(ingestion_id)]["rejected"] = rejected
            result[str(ingestion_id)]["accounting"] = accounting
    return result


def reconcile_ingestions(
    conn: Connection | Engine, ingestion_ids: Sequence[str], *, use_cache: bool = True
) -> list[IngestionReconciliation]:
    """Reconcile the given ingestions, in the order given."""
    if isinstance(conn, Engine):
        with conn.begin() as c:
            return reconcile_ingestions(c, ingestion_ids, use_cache=use_cache)
    return _reconcile_rows(conn, ingestions.by_ids(conn, ingestion_ids), use_cache=use_cache)


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
    rows = ingestions.in_window(conn, since=since, user_id=user_id, statuses=statuses)
    return _reconcile_rows(conn, rows, use_cache=use_cache)


def _reconcile_rows(conn: Connection, rows: list[Any], *, use_cache: bool) -> list[IngestionReconciliation]:
    cached = (
        cache.cached_hashes(conn, [r.payload_hash for r in rows], parser_version=PARSER_VERSION)
        if use_cache and rows else set()
    )
    writable = use_cache and bool(rows) and cache.writable(conn)
    direct: dict[str, Expectation] = {}
    written: set[str] = set()
    for r in rows:
        if r.payload_hash in cached or r.payload_hash in written:
            continue
        expectation = expected_keys(conn, r.id, payload_size=r.payload_size_bytes)
        if writable and expectation.parse_error is None:
            cache.store(conn, r.payload_hash, parser_version=PARSER_VERSION, keys=expectation.keys,
                        rejected_points=expectation.rejected_points, accounting=expectation.accounting.to_dict())
            written.add(r.payload_hash)
        else:
            direct[r.id] = expectation
    if written and not cache.analyze(conn):
        _log.debug("ANALYZE reconciliation_cache not permitted for this role; skipped")
    via_cache = _from_cache(conn, [r for r in rows if r.id not in direct]) if use_cache else {}
    results = []
    for r in rows:
        if r.id in direct:
            exp = direct[r.id]
            tables = {
                name: TableCounts(len(keys), count_present(conn, r.user_id, name, keys) if keys else 0)
                for name, keys in exp.keys.items()
            }
            rejected, parse_error, accounting = exp.rejected_points, exp.parse_error, exp.accounting
        else:
            cached_entry = via_cache[r.id]
            tables, rejected, parse_error = cached_entry["tables"], cached_entry["rejected"], None
            accounting = Accounting.of_dict(cached_entry["accounting"])
        results.append(
            IngestionReconciliation(
                r.id, r.user_id, r.status, r.created_at, r.payload_size_bytes, tables, rejected, parse_error,
                accounting,
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
