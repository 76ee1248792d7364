"""Exact, per-ingestion reconciliation: the keys and values a payload implies versus the rows that exist.

For each metric table, the natural keys ``(user_id, timestamp)`` the payload implies (from the
parser) are looked up in that table for that user, and so are the values: a column the payload
fills at a key whose stored row has it NULL is a missing value (``missing_values``; the row is
there, part of it is lost). Counting all of a user's rows (what the original tool did) is not
enough: other payloads' rows hide the loss.

Expected keys (and the columns filled at each) are cached in ``reconciliation_cache`` by the
SHA-256 the server computes from the stored payload and the parser version, so the monitor's
second run only joins. Never by the API's ``payload_hash``: nothing guarantees it, and two
payloads with the same blank or garbage hash would share one answer. Only what does not depend
on the clock is cached: a payload with a point rejected as ``date_out_of_range`` (more than a day
ahead, perhaps, and expected once its day comes) is parsed again each time. The cache is written
only where the transaction may write (never in a dry run, never for a read-only role).

    >>> with engine.begin() as conn:
    ...     lost = [r for r in reconcile_window(conn, since=yesterday) if r.missing_total or r.missing_values_total]
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection, Engine

from recovery_lib import parallel_reads
from recovery_lib.accounting import CONSTRAINT_VIOLATION, Accounting
from recovery_lib.db import cursor
from recovery_lib.errors import PayloadError
from recovery_lib.payload import sql_plan, stored
from recovery_lib.payload.parser import PARSER_VERSION, PayloadParser
from recovery_lib.schema import METRIC_TABLES, catalogue_bound
from recovery_lib.store import cache, ingestions, rejections
from recovery_lib.store.metric_rows import present_and_missing_values
from recovery_lib.store.rejections import Adjustment

_log = logging.getLogger(__name__)

SQL_KEYS_MIN_BYTES = 64_000  # measured: 3,300 exports of 11 kB took 8.3 s parsed, 14 s listed in SQL
# Payloads to parse are read by this many helper sessions while the caller waits (one's parser runs
# while the other's statements do), from PARALLEL_MIN payloads on.
READERS = 2
PARALLEL_MIN = 8
CLOCK_DEPENDENT = "date_out_of_range"  # the one rejection whose answer can change as time passes


def _bits() -> dict[str, dict[str, int]]:
    """Each table's checked columns as bits (of the tables bound now: the target's may lack some)."""
    return {name: {column: 1 << n for n, column in enumerate(t.checked)} for name, t in METRIC_TABLES.items()}


@dataclass
class TableCounts:
    expected: int = 0
    present: int = 0
    missing_values: int = 0  # values the payload has whose column is NULL in a present row

    @property
    def missing(self) -> int:
        return self.expected - self.present

    def to_dict(self) -> dict[str, int]:
        return {"expected": self.expected, "present": self.present, "missing": self.missing,
                "missing_values": self.missing_values}


@dataclass
class Expectation:
    """What one payload implies: keys per table (with the columns filled at each), what could not become
    a row, where every point went.

    ``filled[table][i]`` is a '0'/'1' string over the table's checked columns for ``keys[table][i]``;
    a key is an instant, or ``(instant, tag)`` for a tagged table.
    """

    keys: dict[str, list[Any]]
    filled: dict[str, list[str]] = field(default_factory=dict)
    rejected_points: int = 0
    rejection_counts: dict[str, int] = field(default_factory=dict)
    parse_error: str | None = None
    accounting: Accounting = field(default_factory=Accounting)
    counted: dict[str, TableCounts] = field(default_factory=dict)  # tables counted in the server, keys not listed

    @property
    def depends_on_clock(self) -> bool:
        return bool(self.rejection_counts.get(CLOCK_DEPENDENT))


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
    def missing_values_total(self) -> int:
        return sum(t.missing_values for t in self.tables.values())

    @property
    def lost_anything(self) -> bool:
        """Rows or values missing: what makes a ``processed`` ingestion silent loss."""
        return self.missing_total > 0 or self.missing_values_total > 0

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
            "missing_values_total": self.missing_values_total,
            "rejected_points": self.rejected_points,
            "parse_error": self.parse_error,
            "accounting": self.accounting.to_dict(),
        }


def _key_order(item: tuple[Any, int]) -> tuple[Any, ...]:
    """Sort keys by instant, then by the tag's text (tags of one table may mix types, e.g. None)."""
    key = item[0]
    return (key[0], str(key[1])) if isinstance(key, tuple) else (key,)


def _mask(bits: int, width: int) -> str:
    return "".join("1" if bits >> n & 1 else "0" for n in range(width))


def expected_keys(
    conn: Connection, ingestion_id: str, *, now: datetime | None = None, use_sql: bool = True,
    payload_size: int | None = None, found: stored.Stored | None = None, count_for: str | None = None,
) -> Expectation:
    """The distinct keys per table one stored payload implies, the columns filled at each, and what was rejected.

    With ``use_sql``, PostgreSQL lists the keys of the simple metrics when it can do so exactly
    like the parser (:func:`~recovery_lib.payload.sql_plan.expected_keys`); the parser streams the rest, or all.
    A payload known to be under ``SQL_KEYS_MIN_BYTES`` goes to the parser: for a few hundred
    points, the statements' round trips cost more than parsing. ``found``: the stored form
    (:func:`~recovery_lib.payload.stored.inspect`, looked up when not given); only the exporter's
    form stored as the value goes to SQL, and a placeholder has no keys (``body_not_stored``).
    ``count_for`` (a user id): the tables SQL lists are counted against that user's rows in the
    server instead (``Expectation.counted``, their keys not listed), for a caller that needs only
    the counts.
    """
    parser = PayloadParser(now=now)
    filled: dict[str, dict[Any, int]] = {name: {} for name in METRIC_TABLES}  # key -> columns, as bits
    counted: dict[str, TableCounts] = {}
    skip: list[int] = []
    listed_points = 0
    found = found or stored.inspect(conn, ingestion_id)
    if (payload_size is not None and payload_size < SQL_KEYS_MIN_BYTES) or not found.sql_ready or not catalogue_bound():
        use_sql = False  # the SQL listing knows the exporter's form in the catalogue's tables only
    all_bits = _bits()
    shaped: stored.Structure | None = None
    if use_sql:
        shaped = stored.structure(conn, ingestion_id, stored=found)
    if shaped is not None and shaped.ok:
        with cursor(conn) as cur:
            if count_for is not None:
                tallied = sql_plan.counted_keys(cur, ingestion_id, parser.latest, count_for)
                listed = None
            else:
                listed, tallied = sql_plan.expected_keys(cur, ingestion_id, parser.latest), None
        if tallied is not None:
            counted = {name: TableCounts(*numbers) for name, numbers in tallied[0].items()}
            skip, listed_points = tallied[1], tallied[2]
        if listed is not None:
            for name, keys in listed[0].items():
                for key, mask in zip(keys, listed[1][name], strict=True):
                    filled[name][key] = filled[name].get(key, 0) | int(mask[::-1], 2)
            skip, listed_points = listed[2], listed[3]
    try:
        items = stored.stream_items(conn, ingestion_id, skip_points=skip, known_structure=shaped, stored=found)
        for row in parser.rows(items):
            if row.table in counted:  # SQL takes a table only when every metric landing there is its
                raise RuntimeError(f"{row.table}: counted by SQL, yet the parser has a row for it")
            bits, columns = all_bits[row.table], 0
            for column in row.values:
                columns |= bits.get(column, 0)
            table = filled[row.table]
            table[row.key] = table.get(row.key, 0) | columns
    except PayloadError as exc:
        empty: dict[str, list[Any]] = {name: [] for name in METRIC_TABLES}
        return Expectation(empty, dict(empty), parse_error=exc.category)  # type: ignore[arg-type]
    counts = dict(parser.rejection_counts)
    # The points SQL listed were counted by SQL, not by the parser: they are stored points too.
    accounting = Accounting.of_parser(parser.summary())
    accounting.points += listed_points
    accounting.stored += listed_points
    ordered = {name: sorted(keys.items(), key=_key_order) for name, keys in filled.items()}
    return Expectation(
        {name: [key for key, _ in items] for name, items in ordered.items()},
        {name: [_mask(bits, len(METRIC_TABLES[name].checked)) for _, bits in items] for name, items in ordered.items()},
        rejected_points=sum(counts.values()),
        rejection_counts=counts,
        accounting=accounting,
        counted=counted,
    )


def count_against_rows(conn: Connection, user_id: str, expectation: Expectation) -> dict[str, TableCounts]:
    """Per table: expected keys, how many exist for ``user_id``, and the values missing in those."""
    tables = dict(expectation.counted)
    for name, keys in expectation.keys.items():
        if name in tables:
            continue
        present, values = (
            present_and_missing_values(conn, user_id, name, keys, expectation.filled[name]) if keys else (0, 0)
        )
        tables[name] = TableCounts(len(keys), present, values)
    return tables


def apply_refusals(tables: dict[str, TableCounts], accounting: Accounting, adjust: Mapping[str, Adjustment]) -> int:
    """Count the points the target refused (``constraint_rejections``) as rejected, not missing; returns them.

    A key none of whose points was written is not expected; a refused column NULL in a row that
    exists is not a missing value; the points move from stored to rejected.
    """
    refused = 0
    for name, change in adjust.items():
        counts = tables.setdefault(name, TableCounts())
        counts.expected -= change.keys
        counts.present -= change.keys_present
        counts.missing_values -= change.null_values
        refused += change.points
    if refused:
        accounting.stored -= refused
        accounting.rejected[CONSTRAINT_VIOLATION] = accounting.rejected.get(CONSTRAINT_VIOLATION, 0) + refused
    return refused


def _from_cache(conn: Connection, rows: list[Any]) -> dict[str, dict[str, Any]]:
    """Expected/present/missing-value counts per ingestion and table, joined in SQL against the cached keys."""
    # A table no payload expects a key in is left out of the joins: zero of zero.
    result: dict[str, dict[str, Any]] = {
        r.id: {"tables": {name: TableCounts() for name in METRIC_TABLES}, "rejected": 0, "accounting": None}
        for r in rows
    }
    if not rows:
        return result
    for ingestion_id, rejected, accounting in cache.entries(
        conn, [(r.id, r.sha) for r in rows], parser_version=PARSER_VERSION
    ):
        result[str(ingestion_id)].update(rejected=rejected, accounting=accounting)
    items = [(r.id, r.user_id, r.sha) for r in rows]
    for name in cache.tables_with_keys(conn, [r.sha for r in rows], parser_version=PARSER_VERSION):
        if not METRIC_TABLES[name].present:
            continue
        for ingestion_id, expected, present, values in cache.counts(conn, items, name, parser_version=PARSER_VERSION):
            result[str(ingestion_id)]["tables"][name] = TableCounts(expected, present, int(values))
    return result


def reconcile_ingestions(
    conn: Connection | Engine, ingestion_ids: Sequence[str], *, use_cache: bool = True, now: datetime | None = None,
) -> list[IngestionReconciliation]:
    """Reconcile the given ingestions, in the order given (``now``: the parser's clock, default the real one)."""
    if isinstance(conn, Engine):
        with conn.begin() as c:
            return reconcile_ingestions(c, ingestion_ids, use_cache=use_cache, now=now)
    return _reconcile_rows(conn, ingestions.by_ids(conn, ingestion_ids, with_sha=use_cache), use_cache=use_cache,
                           now=now)


def reconcile_window(
    conn: Connection | Engine,
    *,
    since: datetime | None = None,
    user_id: str | None = None,
    statuses: Sequence[str] | None = None,
    use_cache: bool = True,
    now: datetime | None = None,
) -> list[IngestionReconciliation]:
    """Reconcile every ingestion created since ``since`` (all time if None), optionally filtered.

    ``now``: the parser's clock (points more than a day after it are not expected yet).
    """
    if isinstance(conn, Engine):
        with conn.begin() as c:
            return reconcile_window(c, since=since, user_id=user_id, statuses=statuses, use_cache=use_cache, now=now)
    rows = ingestions.in_window(conn, since=since, user_id=user_id, statuses=statuses, with_sha=use_cache)
    return _reconcile_rows(conn, rows, use_cache=use_cache, now=now)


def _reconcile_rows(
    conn: Connection, rows: list[Any], *, use_cache: bool, now: datetime | None
) -> list[IngestionReconciliation]:
    # The cache's column masks are the catalogue's: bound to another database, parse again.
    use_cache = use_cache and bool(rows) and catalogue_bound()
    cached = cache.cached_hashes(conn, [r.sha for r in rows], parser_version=PARSER_VERSION) if use_cache else set()
    writable = use_cache and cache.writable(conn)
    direct: dict[str, Expectation] = {}
    written: set[str] = set()
    todo: dict[str, Any] = {}  # one payload per hash: the others share its cache entry
    for r in rows:
        if not (use_cache and r.sha in cached):
            todo.setdefault(r.sha if use_cache else r.id, r)
    # Many payloads are read by helper sessions (READERS), each payload in the row version listed here.
    expectations = parallel_reads.read_listed(
        conn, list(todo.values()), lambda c, r: expected_keys(c, r.id, payload_size=r.payload_size_bytes, now=now),
        readers=READERS, minimum=PARALLEL_MIN)
    for r in rows:
        if use_cache and (r.sha in cached or r.sha in written):
            continue
        expectation = expectations.get(r.id) or expected_keys(conn, r.id, payload_size=r.payload_size_bytes, now=now)
        if writable and expectation.parse_error is None and not expectation.depends_on_clock:
            cache.store(conn, r.sha, parser_version=PARSER_VERSION, keys=expectation.keys,
                        filled=expectation.filled, rejected_points=expectation.rejected_points,
                        accounting=expectation.accounting.to_dict())
            written.add(r.sha)
        else:
            direct[r.id] = expectation
    if written and not cache.analyze(conn):
        _log.debug("ANALYZE reconciliation_cache not permitted for this role; skipped")
    via_cache = _from_cache(conn, [r for r in rows if r.id not in direct]) if use_cache else {}
    refused = rejections.adjustments(conn, [r.id for r in rows])
    results = []
    for r in rows:
        if r.id in direct:
            exp = direct[r.id]
            tables = count_against_rows(conn, r.user_id, exp)
            rejected, parse_error, accounting = exp.rejected_points, exp.parse_error, exp.accounting
        else:
            cached_entry = via_cache[r.id]
            tables, rejected, parse_error = cached_entry["tables"], cached_entry["rejected"], None
            accounting = Accounting.of_dict(cached_entry["accounting"])
        rejected += apply_refusals(tables, accounting, refused.get(r.id, {}))
        results.append(
            IngestionReconciliation(
                r.id, r.user_id, r.status, r.created_at, r.payload_size_bytes, tables, rejected, parse_error,
                accounting,
            )
        )
    return results


def missing_by_table(results: Iterable[IngestionReconciliation], *, values: bool = False) -> dict[str, int]:
    """Sum of missing rows (or, with ``values``, missing values) per table over ``results`` (every table listed)."""
    totals: Counter[str] = Counter({name: 0 for name in METRIC_TABLES})
    for result in results:
        for name, counts in result.tables.items():
            totals[name] += counts.missing_values if values else counts.missing
    return dict(totals)
