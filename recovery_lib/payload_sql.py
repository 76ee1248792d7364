"""The parser's rules for simple metrics, compiled to SQL: PostgreSQL expands and inserts those rows.

Heart rate, blood pressure and activity points are nearly all of an export's rows. For them the
Python parser (:mod:`recovery_lib.payload`, the reference) costs more per row than PostgreSQL's
own insert, so the default ``insert_method='sql'`` writes them with one ``INSERT ... SELECT`` per
metric straight from the stored jsonb. The statements are built from the same
:data:`~recovery_lib.payload_metrics.METRICS` the parser uses (keys, columns, limits, unit factors).

    >>> plan = plan_payload(cursor, ingestion_id, latest)     # None: the parser does it all
    >>> reports = insert_planned(cursor, plan, user_id)        # None: rolled back, parser does it all

SQL takes only what it can do exactly like the parser, and leaves no trace otherwise:

* the payload: every metric the parser maps to these three tables is known, listed once, with
  units the parser knows (the factors come from Python's own ``unit_factor``);
* each point: an object, the exporter's date ``yyyy-MM-dd HH:mm:ss ±hhmm`` (an offset in
  :data:`DATE_OFFSETS`) between 1970 and ``latest``, bare JSON numbers inside the limits, no key
  twice within a metric.

Any other point makes its statement fail: the guard turns the natural key into NULL (a NOT NULL
violation), a cast refuses a string, a unique index refuses a repeated key. The caller's
savepoint is then rolled back and the Python parser reads the whole payload, so every rejection
is still named, counted and reported by the reference. ``tests/test_payload_sql.py`` holds both
paths to the same rows and counts. Sleep and workouts always go through the parser.

Within a table, the first metric is written by one statement (a plain INSERT when the user has
no rows in its date range, the large metric of an export usually is), then the table's other
metrics by one statement grouped by key, each column taking its first value in payload order;
both fill NULL columns and never overwrite, as the parser's merge. Counts are exact: keys are
unique within a metric, so a table's distinct keys are the first metric's points plus the other
metrics' keys it did not have, and those are tracked in a small temporary table with the ctid
of their row before the insert (an UPDATE moves a row to a new ctid: that row was filled).
Both paths read the stored jsonb, so they see the same numbers (jsonb has no ``-0.0``, for one).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from recovery_lib import batching
from recovery_lib.payload_metrics import METRICS, Field, MetricSpec
from recovery_lib.payload_values import unit_factor
from recovery_lib.report import TableReport
from recovery_lib.schema import METRIC_TABLES, MetricTable

# The exporter's date format only: PostgreSQL's timestamptz input also takes "24:00:00", leap
# seconds, month names and dates without an offset, which the parser refuses or reads otherwise.
# Checked without a regex (which costs 1.5 us a point, more than the row's index entry): the
# first 19 characters must be how PostgreSQL itself writes that wall time (so digits, in range,
# no rollover) and the last 6 one of these offsets; any other offset goes to the parser. An
# impossible date (02-30) fails the cast, which sends the payload to the parser as well.
DATE_OFFSETS = tuple(f" {sign}{hours:02d}{minutes:02d}" for sign in "+-" for hours in range(15)
                     for minutes in (0, 15, 30, 45))
# Errors that mean "this payload is not for SQL": cardinality (a key twice in one ON CONFLICT),
# data exceptions (a failed cast), integrity (the guard's NULL key, a repeated key).
FALLBACK_SQLSTATE_CLASSES = ("21", "22", "23")
UNIQUE_VIOLATION = "23505"
SIMPLE_METRICS = sorted(name for name, spec in METRICS.items() if spec.kind == "simple")

_METRICS_TABLE = "sql_path_metrics"
_KEYS_TABLE = "sql_path_keys"
_TEMP_TABLES = (
    # The simple metrics of the payload being recovered, copied once: every statement that reads
    # raw_payload itself would decompress the whole jsonb again (22 ms for a 13 MB export).
    # EXTERNAL: stored uncompressed, read back without decompressing.
    f"CREATE TEMP TABLE {_METRICS_TABLE} (position int NOT NULL, value jsonb NOT NULL) ON COMMIT DELETE ROWS",
    f"ALTER TABLE {_METRICS_TABLE} ALTER COLUMN value SET STORAGE EXTERNAL",
    # Distinct keys of a table's metrics and the ctid of their row before the inserts.
    f"CREATE TEMP TABLE {_KEYS_TABLE} (key timestamptz NOT NULL, pre_ctid tid) ON COMMIT DELETE ROWS",
)
# Metrics this large are read in place: the statements that read one are few, and copying 12 MB
# into a temporary table (in 2 kB TOAST chunks) costs more than decompressing the payload again.
COPY_POINTS_MAX = 10_000
# Every jsonb operator returns a copy, 12 MB for a large metric: #> copies once where ->'a'->'b'
# copies twice, and the jsonpath size and #>> dates copy nothing but their result.
_HEADERS_SQL = """
SELECT m.ord - 1, m.value->'name', m.value->'units',
       coalesce(jsonb_path_query_first(m.value, 'strict $.data.size()', silent => true), '0')::int,
       m.value #>> '{data,0,date}', m.value #>> '{data,-1,date}'
FROM raw_ingestions r
CROSS JOIN LATERAL jsonb_array_elements(coalesce(r.raw_payload #> '{data,metrics}', '[]'::jsonb))
     WITH ORDINALITY AS m(value, ord)
WHERE r.id = %(ingestion_id)s AND m.value->>'name' = ANY(%(names)s)
"""
# A jsonpath subscript list picks the small metrics without copying the large one.
_COPY_SQL = f"""
INSERT INTO {_METRICS_TABLE} (position, value)
SELECT (%(positions)s::int[])[m.ord], m.value
FROM raw_ingestions r
CROSS JOIN LATERAL jsonb_path_query(r.raw_payload, %(path)s::jsonpath) WITH ORDINALITY AS m(value, ord)
WHERE r.id = %(ingestion_id)s
"""


class SqlPathMismatch(Exception):
    """The counts of a table do not add up: roll back and let the parser do the payload."""


@dataclass(frozen=True)
class PlannedMetric:
    """One metric of the payload that SQL writes: its position, spec and unit factors per column."""

    position: int
    spec: MetricSpec
    points: int
    factors: dict[str, float]
    first_date: str | None
    last_date: str | None

    def points_from(self) -> str:
        """FROM ... WHERE yielding ``p.value``, each point of the metric (copied, or in place)."""
        position = int(self.position)
        if self.points < COPY_POINTS_MAX:
            return (
                f"FROM {_METRICS_TABLE} m CROSS JOIN LATERAL jsonb_array_elements(m.value->'data') AS p(value) "
                f"WHERE m.position = {position}"
            )
        return (
            "FROM raw_ingestions r CROSS JOIN LATERAL "
            f"jsonb_array_elements(r.raw_payload #> '{{data,metrics,{position},data}}') AS p(value) "
            "WHERE r.id = %(ingestion_id)s"
        )


@dataclass
class SqlPlan:
    """What SQL writes for one payload: per table, its metrics in payload order."""

    ingestion_id: str
    latest: datetime
    tables: dict[str, list[PlannedMetric]] = field(default_factory=dict)

    @property
    def positions(self) -> list[int]:
        """Positions (0-based) of the metrics SQL writes: the parser skips their points."""
        return sorted(m.position for metrics in self.tables.values() for m in metrics)


def plan_payload(cursor: Any, ingestion_id: str, latest: datetime) -> SqlPlan | None:
    """The SQL plan for a stored payload, or None when any simple metric needs the parser.

    Call only on a payload whose structure ``fetch.structure_ok`` accepted. Copies the simple
    metrics below ``COPY_POINTS_MAX`` points into a temporary table that the inserts read
    (emptied at commit).
    """
    cursor.execute(f"SELECT to_regclass('pg_temp.{_METRICS_TABLE}') IS NULL")
    if cursor.fetchone()[0]:
        for ddl in _TEMP_TABLES:  # once per connection: ALTER on every payload would churn the catalog
            cursor.execute(ddl)
    cursor.execute(f"DELETE FROM {_METRICS_TABLE}")
    cursor.execute(_HEADERS_SQL, {"ingestion_id": ingestion_id, "names": SIMPLE_METRICS})
    plan = SqlPlan(ingestion_id, latest)
    names: set[str] = set()
    for position, name, units, points, first_date, last_date in sorted(cursor.fetchall()):
        spec = METRICS[name]  # the copy took simple metrics only
        if name in names:
            return None  # a metric listed twice: the parser rejects its repeated keys
        names.add(name)
        factors = _factors(spec, units)
        if factors is None:
            return None
        plan.tables.setdefault(spec.table, []).append(
            PlannedMetric(position, spec, points, factors, first_date, last_date)
        )
    if not plan.tables:
        return None
    small = [m.position for metrics in plan.tables.values() for m in metrics if m.points < COPY_POINTS_MAX]
    if small:
        small.sort()
        path = f"strict $.data.metrics[{', '.join(str(int(p)) for p in small)}]"
        cursor.execute(_COPY_SQL, {"ingestion_id": ingestion_id, "positions": small, "path": path})
    return plan


def _factors(spec: MetricSpec, units: object) -> dict[str, float] | None:
    factors = {}
    for f in spec.fields:
        if f.unit_kind is None:
            continue
        factor = unit_factor(f.unit_kind, f.default_units if units is None else units)
        if factor is None:
            return None  # the parser rejects every point of it (invalid_point, units)
        factors[f.column] = factor
    return factors


def is_fallback_error(exc: BaseException) -> bool:
    """A database error that sends the payload to the parser (not a lost connection, not a bug)."""
    code = getattr(exc, "pgcode", None) or ""
    return code[:2] in FALLBACK_SQLSTATE_CLASSES


def insert_planned(cursor: Any, plan: SqlPlan, user_id: str) -> dict[str, TableReport] | None:
    """Write the planned metrics; the reports per table, or None after rolling everything back.

    Runs inside the caller's transaction, under its own savepoint.
    """
    cursor.execute("SET LOCAL DateStyle = 'ISO, MDY'")  # the date check compares with timestamp::text
    cursor.execute("SAVEPOINT sql_path")
    try:
        reports = {name: _write_table(cursor, plan, METRIC_TABLES[name], metrics, user_id)
                   for name, metrics in plan.tables.items()}
    except Exception as exc:
        if not (is_fallback_error(exc) or isinstance(exc, SqlPathMismatch)):
            raise
        cursor.execute("ROLLBACK TO SAVEPOINT sql_path")
        return None
    cursor.execute("RELEASE SAVEPOINT sql_path")
    return reports


def _write_table(
    cursor: Any, plan: SqlPlan, table: MetricTable, metrics: list[PlannedMetric], user_id: str
) -> TableReport:
    first, rest = metrics[0], metrics[1:]
    if not _rows_in_range(cursor, table, metrics, user_id):
        # Likely no row of these keys exists: the first metric goes in with a plain INSERT (no
        # ON CONFLICT, the cheaper statement) and only the other metrics' keys are tracked.
        cursor.execute("SAVEPOINT sql_path_table")
        try:
            _fill_keys(cursor, plan, table, rest, user_id)
            first_inserted = _insert(cursor, plan, table, [first], user_id, merge=False)
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
                f"SELECT count(*) FROM {_KEYS_TABLE} k JOIN {table.name} t "
                f"ON t.user_id = %(user_id)s AND t.{table.key} = k.key WHERE k.pre_ctid IS NULL",
                {"user_id": user_id},
            )
            overlap = int(cursor.fetchone()[0])
            inserted = first_inserted + _insert(cursor, plan, table, rest, user_id, merge=True)
            # The plain INSERT proved the first metric's keys new, so they add no "before" rows.
            return _report(cursor, table, user_id, inserted, extra_keys=first_inserted - overlap)
    _fill_keys(cursor, plan, table, metrics, user_id)
    inserted = sum(_insert(cursor, plan, table, part, user_id, merge=True) for part in ([first], rest))
    return _report(cursor, table, user_id, inserted, extra_keys=0)


def _report(cursor: Any, table: MetricTable, user_id: str, inserted: int, extra_keys: int) -> TableReport:
    """Counts from the keys table (``extra_keys``: new keys that are not in it).

    A key's row existed before when the keys table recorded its ctid, and was filled when that
    row version has since been replaced (an UPDATE writes a new version at a new ctid).
    """
    cursor.execute(
        f"SELECT count(*), count(k.pre_ctid), (SELECT count(*) FROM {_KEYS_TABLE} f JOIN {table.name} t "
        f"ON t.user_id = %(user_id)s AND t.{table.key} = f.key "
        f"WHERE f.pre_ctid IS NOT NULL AND t.ctid <> f.pre_ctid) FROM {_KEYS_TABLE} k",
        {"user_id": user_id},
    )
    tracked, before, filled = cursor.fetchone()
    expected = tracked + extra_keys
    if expected - before != inserted:
        # Every key exists after the ON CONFLICT statements and each new one was inserted once;
        # anything else means the bookkeeping is wrong, and the parser should do this payload.
        raise SqlPathMismatch(f"{table.name}: {expected} keys, {before} before, but {inserted} inserted")
    return TableReport(expected, before, inserted, filled, expected)


def _rows_in_range(cursor: Any, table: MetricTable, metrics: Sequence[PlannedMetric], user_id: str) -> bool:
    """Whether the user has rows between the metrics' first and last dates (a hint, not a proof)."""
    dates = [d for m in metrics for d in (m.first_date, m.last_date) if d is not None]
    if not dates:
        return False
    cursor.execute(
        f"SELECT EXISTS (SELECT 1 FROM {table.name} WHERE user_id = %(user_id)s AND {table.key} "
        f"BETWEEN (SELECT min(d::timestamptz) FROM unnest(%(dates)s::text[]) d) "
        f"AND (SELECT max(d::timestamptz) FROM unnest(%(dates)s::text[]) d))",
        {"user_id": user_id, "dates": dates},
    )
    return bool(cursor.fetchone()[0])


def _fill_keys(
    cursor: Any, plan: SqlPlan, table: MetricTable, metrics: Sequence[PlannedMetric], user_id: str
) -> None:
    """Keys table := the distinct keys of ``metrics``, each with the ctid of its row if one exists."""
    cursor.execute(f"DELETE FROM {_KEYS_TABLE}")  # not TRUNCATE: no new relfilenode per table
    if not metrics:
        return
    dates = " UNION ALL ".join(f"SELECT p.value->>'date' AS d {m.points_from()}" for m in metrics)
    # A date the guard would refuse is counted here, but its insert then fails and undoes all.
    cursor.execute(
        f"INSERT INTO {_KEYS_TABLE} (key, pre_ctid) SELECT k.key, t.ctid FROM "
        f"(SELECT DISTINCT d::timestamptz AS key FROM ({dates}) s WHERE d IS NOT NULL) k "
        f"LEFT JOIN {table.name} t ON t.user_id = %(user_id)s AND t.{table.key} = k.key",
        {"user_id": user_id, "ingestion_id": plan.ingestion_id},
    )


def _raw(f: Field) -> str:
    """The first of the field's keys present and not null, as jsonb (``point.get`` in the parser)."""
    picks = [f"NULLIF(p.value->'{key}', 'null'::jsonb)" for key in f.keys]
    return picks[0] if len(picks) == 1 else f"COALESCE({', '.join(picks)})"


def _points_select(metric: PlannedMetric, columns: Sequence[str]) -> str:
    """One row per point of ``metric``: position, key (NULL when a check fails) and ``columns``.

    Each point's values are extracted once (the OFFSET 0 subquery is not flattened into the
    expressions that use them), then checked.
    """
    position = int(metric.position)
    values = ["p.value->>'date' AS d"]
    checks = [
        "octet_length(x.d) = 25",
        "right(x.d, 6) IN %(date_offsets)s",
        "left(x.d, 19) = x.d::timestamp::text",  # the offset is ignored by ::timestamp; ISO DateStyle
        "x.d::timestamptz BETWEEN '1970-01-01T00:00:00Z' AND %(latest)s",
    ]
    filled: dict[str, str] = {}
    for number, f in enumerate(metric.spec.fields):
        # A string, bool or {"qty", "units"} object fails the cast: the parser handles those.
        value = f"({_raw(f)})::float8"
        if f.column in metric.factors:
            value = f"{value} * {metric.factors[f.column]!r}::float8"
        values.append(f"{value} AS v{number}")
        limits = f"x.v{number} BETWEEN {f.limits[0]!r}::float8 AND {f.limits[1]!r}::float8"
        # A present number never casts to NULL, so NULL here means absent (or JSON null).
        checks.append(limits if f.required else f"(x.v{number} IS NULL OR {limits})")
        filled[f.column] = f"x.v{number}"
    values.append("CASE WHEN jsonb_typeof(p.value->'source') = 'string' THEN p.value->>'source' END AS source")
    filled["source_device"] = "x.source"
    selected = [f"{filled.get(c, 'NULL::float8')} AS {c}" for c in columns]
    return (
        f"SELECT {position} AS position, CASE WHEN {' AND '.join(checks)} THEN x.d::timestamptz END AS key, "
        f"{', '.join(selected)} FROM (SELECT {', '.join(values)} {metric.points_from()} OFFSET 0) x"
    )


def _insert_sql(table: MetricTable, metrics: Sequence[PlannedMetric], merge: bool) -> str:
    """INSERT ... SELECT of the points of ``metrics``; a failed check makes the key NULL.

    A plain INSERT (``merge=False``, one metric): its points as they are; a key twice fails the
    unique index. Otherwise grouped by key, each column taking its first value in payload order,
    and a key twice within one metric makes the key NULL: ON CONFLICT alone would not refuse it
    when the row exists and neither occurrence changes it (DO UPDATE ... WHERE false only locks).
    """
    columns = [c for c in table.values if c == "source_device" or any(
        f.column == c for m in metrics for f in m.spec.fields)]
    if not merge and len(metrics) == 1:
        source = f"SELECT key, {', '.join(columns)} FROM ({_points_select(metrics[0], columns)}) s"
    elif len(metrics) == 1:  # one metric: a group of one point, or a repeated key
        picks = ", ".join(f"min({c})" for c in columns)
        source = (
            f"SELECT CASE WHEN count(*) = 1 THEN key END, {picks} "
            f"FROM ({_points_select(metrics[0], columns)}) s GROUP BY key"
        )
    else:
        union = " UNION ALL ".join(f"({_points_select(m, columns)})" for m in metrics)
        picks = ", ".join(f"(array_agg({c} ORDER BY position) FILTER (WHERE {c} IS NOT NULL))[1]" for c in columns)
        source = (
            f"SELECT CASE WHEN count(*) = count(DISTINCT position) THEN key END, {picks} "
            f"FROM ({union}) s GROUP BY key"
        )
    insert = (
        f"INSERT INTO {table.name} AS t (user_id, {table.key}, {', '.join(columns)}) "
        f"SELECT %(user_id)s, * FROM ({source}) rows"
    )
    if not merge:
        return insert  # every row it writes is new: the row count says it all
    sets, changed = batching.update_clause(table)
    return (
        f"WITH written AS ({insert} ON CONFLICT (user_id, {table.key}) DO UPDATE SET {sets} WHERE {changed} "
        "RETURNING (xmax = 0) AS inserted) SELECT count(*) FILTER (WHERE inserted) FROM written"
    )


def _insert(
    cursor: Any, plan: SqlPlan, table: MetricTable, metrics: Sequence[PlannedMetric], user_id: str, *, merge: bool
) -> int:
    """Rows inserted (not filled) by writing ``metrics`` (nothing to write: 0)."""
    if not metrics:
        return 0
    cursor.execute(
        _insert_sql(table, metrics, merge),
        {"user_id": user_id, "ingestion_id": plan.ingestion_id, "latest": plan.latest, "date_offsets": DATE_OFFSETS},
    )
    return int(cursor.fetchone()[0]) if merge else int(cursor.rowcount)
