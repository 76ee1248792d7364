"""The SQL expansion: the parser's rules for simple metrics compiled to SQL over the stored jsonb.

Heart rate, blood pressure and activity points are nearly all of an export's rows. For them the
Python parser (:mod:`recovery_lib.payload.parser`, the reference) costs more per point than PostgreSQL's
own insert, so PostgreSQL expands them from the stored jsonb with statements built from the same
:mod:`catalogue <recovery_lib.catalogue>` the parser uses (keys, columns, limits, unit
factors): :mod:`recovery_lib.payload.sql_write` writes them (``insert_method='sql'``, the default), and
:func:`expected_keys` lists their keys for reconciliation (discovery, dry run, verify, monitor).

    >>> plan = plan_payload(cursor, ingestion_id, latest)      # None: the parser does it all
    >>> listed = expected_keys(cursor, ingestion_id, latest)   # None: the parser lists them all

SQL takes only what it can do exactly like the parser, and leaves no trace otherwise:

* the payload: every metric the parser maps to these three tables is known, listed once, with
  units the parser knows (the conversions come from the catalogue's own ``conversion``);
* each point: an object, the exporter's date ``yyyy-MM-dd HH:mm:ss ±hhmm`` (an offset in
  :data:`DATE_OFFSETS`) between 1970 and ``latest``, bare JSON numbers inside the limits, no key
  twice within a metric.

For any other point :func:`points_select` yields a NULL key or a statement fails (a cast
refuses a string); the caller rolls back to its savepoint and the Python parser reads the whole
payload, so every rejection is still named, counted and reported by the reference.
``tests/test_payload_sql.py`` holds both to the same rows, counts and rejections. Sleep and
workouts always go through the parser. Both read the stored jsonb, so they see the same numbers
(jsonb has no ``-0.0``, for one).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from recovery_lib import catalogue
from recovery_lib.catalogue.model import Field, MetricSpec
from recovery_lib.catalogue.units import Conversion, conversion
from recovery_lib.errors import NotForSql
from recovery_lib.schema import METRIC_TABLES, MetricTable
from recovery_lib.store.metric_rows import missing_values_sql

# The exporter's date format only: PostgreSQL's timestamptz input also takes "24:00:00", leap
# seconds, month names and dates without an offset, which the parser refuses or reads otherwise.
# Checked without a regex (which costs 1.5 us a point, more than the row's index entry): the
# first 19 characters must be how PostgreSQL itself writes that wall time (so digits, in range,
# no rollover) and the last 6 one of these offsets; any other offset goes to the parser. An
# impossible date (02-30) fails the cast, which sends the payload to the parser as well.
DATE_OFFSETS = tuple(f" {sign}{hours:02d}{minutes:02d}" for sign in "+-" for hours in range(15)
                     for minutes in (0, 15, 30, 45))
# One array literal, not a list of 116 parameters: each is a constant the server parses and plans
# again in every metric's subquery (a meal's ten nutrients: planning 2.1 -> 1.6 ms).
_DATE_OFFSETS_ARRAY = "{" + ",".join(f'"{offset}"' for offset in DATE_OFFSETS) + "}"
# Errors that mean "this payload is not for SQL": cardinality (a key twice in one ON CONFLICT),
# data exceptions (a failed cast), integrity (the guard's NULL key, a repeated key).
FALLBACK_SQLSTATE_CLASSES = ("21", "22", "23")
UNIQUE_VIOLATION = "23505"
T = TypeVar("T")


def _sql_tables() -> frozenset[str]:
    """Tables SQL can write alone: every metric landing there is numbers only, with a required one, and
    no data array writes there (the parser would then write the same table, and the counts split)."""
    arrays = {a.table for a in catalogue.ARRAYS.values()} | {t for a in catalogue.ARRAYS.values()
                                                           for t, _ in a.dispatch.values()}
    tables: dict[str, bool] = {}
    for spec in catalogue.METRICS.values():
        eligible = spec.numeric_only and any(f.required for f in spec.fields)
        tables[spec.table] = tables.get(spec.table, True) and eligible and spec.table not in arrays
    return frozenset(name for name, ok in tables.items() if ok and not catalogue.TABLES[name].tag)


SQL_TABLES = _sql_tables()
# Every spelling of the metrics SQL takes (the parser reads the others, and every payload SQL refuses).
SIMPLE_METRICS = sorted(name for spec in catalogue.METRICS.values() if spec.table in SQL_TABLES
                        for name in (spec.name, *spec.aliases))

_METRICS_TABLE = "sql_path_metrics"
_TEMP_TABLES = (
    # The simple metrics of the payload being recovered, copied once: every statement that reads
    # raw_payload itself would decompress the whole jsonb again (22 ms for a 13 MB export).
    # EXTERNAL: stored uncompressed, read back without decompressing.
    f"CREATE TEMP TABLE {_METRICS_TABLE} (position int NOT NULL, value jsonb NOT NULL) ON COMMIT DELETE ROWS",
    f"ALTER TABLE {_METRICS_TABLE} ALTER COLUMN value SET STORAGE EXTERNAL",
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


@dataclass(frozen=True)
class PlannedMetric:
    """One metric of the payload that SQL writes: its position, spec and unit factors per column."""

    position: int
    spec: MetricSpec
    points: int
    factors: dict[str, Conversion]
    first_date: str | None
    last_date: str | None
    copied: bool = False  # in the temporary metrics table; else read in place from raw_payload

    def points_from(self) -> str:
        """FROM ... WHERE yielding ``p.value``, each point of the metric (copied, or in place)."""
        position = int(self.position)
        if self.copied:
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

    @property
    def points(self) -> int:
        """The points of those metrics: SQL takes them all or none (it refuses a payload with a bad one)."""
        return sum(m.points for metrics in self.tables.values() for m in metrics)


def plan_payload(cursor: Any, ingestion_id: str, latest: datetime, *, copy: bool = True) -> SqlPlan | None:
    """The SQL plan for a stored payload, or None when any simple metric needs the parser.

    Call only on a payload whose structure :func:`~recovery_lib.payload.stored.structure_ok` accepted.
    With ``copy``, the metrics below ``COPY_POINTS_MAX`` points are copied into a temporary table that the inserts
    read (emptied at commit); without, every metric is read in place (READ ONLY transactions).
    """
    cursor.execute(_HEADERS_SQL, {"ingestion_id": ingestion_id, "names": SIMPLE_METRICS})
    plan = SqlPlan(ingestion_id, latest)
    names: set[str] = set()
    for position, name, units, points, first_date, last_date in sorted(cursor.fetchall()):
        spec = catalogue.lookup(name)  # the query took SQL's metrics only
        assert spec is not None
        if spec.name in names:
            return None  # a metric listed twice (or in two spellings): the parser rejects its repeated keys
        names.add(spec.name)
        factors = _factors(spec, units)
        if factors is None:
            return None
        copied = copy and points < COPY_POINTS_MAX
        plan.tables.setdefault(spec.table, []).append(
            PlannedMetric(position, spec, points, factors, first_date, last_date, copied)
        )
    if not plan.tables:
        return None
    if copy:
        cursor.execute(f"SELECT to_regclass('pg_temp.{_METRICS_TABLE}') IS NULL")
        if cursor.fetchone()[0]:
            for ddl in _TEMP_TABLES:  # once per connection: ALTER on every payload would churn the catalog
                cursor.execute(ddl)
        cursor.execute(f"DELETE FROM {_METRICS_TABLE}")
        small = sorted(m.position for metrics in plan.tables.values() for m in metrics if m.copied)
        if small:
            path = f"strict $.data.metrics[{', '.join(str(int(p)) for p in small)}]"
            cursor.execute(_COPY_SQL, {"ingestion_id": ingestion_id, "positions": small, "path": path})
    return plan


def expected_keys(
    cursor: Any, ingestion_id: str, latest: datetime
) -> tuple[dict[str, list[datetime]], dict[str, list[str]], list[int], int] | None:
    """The distinct keys of the payload's simple metrics per table, the columns filled at each, positions, points.

    Per table: the keys in order, and for each key a '0'/'1' string of the table's checked
    columns (:attr:`~recovery_lib.schema.MetricTable.checked`) the payload fills there. None
    when the parser must read the whole payload (as for :func:`plan_payload`, or any point it
    would reject). Read-only: no temporary table, one statement per table, under a savepoint.

        >>> keys, filled, positions, points = expected_keys(cursor, ingestion_id, latest)
    """
    plan = plan_payload(cursor, ingestion_id, latest, copy=False)
    if plan is None:
        return None

    def listed() -> tuple[dict[str, list[datetime]], dict[str, list[str]]]:
        keys: dict[str, list[datetime]] = {}
        filled: dict[str, list[str]] = {}
        for name, metrics in plan.tables.items():
            cursor.execute(
                f"SELECT coalesce(bool_and(key IS NOT NULL AND once), true), "
                f"array_agg(key ORDER BY key) FILTER (WHERE key IS NOT NULL), "
                f"array_agg(filled ORDER BY key) FILTER (WHERE key IS NOT NULL) "
                f"FROM ({_grouped_keys(METRIC_TABLES[name], metrics)}) g",
                statement_params(plan),
            )
            canonical, found, masks = cursor.fetchone()
            if not canonical:
                raise NotForSql(f"{name}: a refused point, or a key twice within one metric")
            keys[name] = [key.astimezone(UTC) for key in found or []]
            filled[name] = list(masks or [])
        return keys, filled

    result = run_guarded(cursor, "sql_keys", listed)
    return None if result is None else (result[0], result[1], plan.positions, plan.points)


def counted_keys(
    cursor: Any, ingestion_id: str, latest: datetime, user_id: str
) -> tuple[dict[str, tuple[int, int, int]], list[int], int] | None:
    """Like :func:`expected_keys`, but counted against ``user_id``'s rows in the server, never listed.

    Per table ``(keys, present, missing_values)``: the keys go nowhere (a million of them cost
    seconds to send to Python and back), for a caller that needs only the counts (the dry run).

        >>> counts, positions, points = counted_keys(cursor, ingestion_id, latest, user_id)
    """
    plan = plan_payload(cursor, ingestion_id, latest, copy=False)
    if plan is None:
        return None

    def counted() -> dict[str, tuple[int, int, int]]:
        found: dict[str, tuple[int, int, int]] = {}
        for name, metrics in plan.tables.items():
            t = METRIC_TABLES[name]
            cursor.execute(
                f"SELECT coalesce(bool_and(g.key IS NOT NULL AND g.once), true), count(g.key), count(m.user_id), "
                f"coalesce(sum({missing_values_sql(t, 'g.filled', 'm')}), 0) "
                f"FROM ({_grouped_keys(t, metrics)}) g "
                f"LEFT JOIN {t.sql_name} m ON m.user_id = %(user_id)s AND m.{t.key} = g.key",
                statement_params(plan, user_id=user_id),
            )
            canonical, keys, present, missing = cursor.fetchone()
            if not canonical:
                raise NotForSql(f"{name}: a refused point, or a key twice within one metric")
            found[name] = (int(keys), int(present), int(missing))
        return found

    result = run_guarded(cursor, "sql_keys", counted)
    return None if result is None else (result, plan.positions, plan.points)


def _grouped_keys(t: MetricTable, metrics: Sequence[PlannedMetric]) -> str:
    """One row per key of ``metrics``: ``key``, ``once`` and ``filled`` ('0'/'1' per checked column of ``t``).

    A NULL key (a refused point) or a key twice within one metric (``once`` false) sends the
    payload to the parser.
    """
    columns = t.checked
    union = " UNION ALL ".join(f"({points_select(m, columns)})" for m in metrics)
    flags = ", ".join(f"CASE WHEN bool_or({c} IS NOT NULL) THEN '1' ELSE '0' END" for c in columns)
    return (f"SELECT key, count(*) = count(DISTINCT position) AS once, concat({flags}) AS filled "
            f"FROM ({union}) s GROUP BY key")


def run_guarded(cursor: Any, name: str, work: Callable[[], T]) -> T | None:
    """``work()`` under savepoint ``name``; None after rolling back if the payload is not for SQL.

    Not for SQL: :class:`NotForSql`, or a database error of :data:`FALLBACK_SQLSTATE_CLASSES`.
    Anything else (a lost connection, a bug) propagates.
    """
    cursor.execute("SET LOCAL DateStyle = 'ISO, MDY'")  # points_select compares dates with timestamp::text
    cursor.execute(f"SAVEPOINT {name}")
    try:
        result = work()
    except Exception as exc:
        if not (isinstance(exc, NotForSql) or is_fallback_error(exc)):
            raise
        cursor.execute(f"ROLLBACK TO SAVEPOINT {name}")
        return None
    cursor.execute(f"RELEASE SAVEPOINT {name}")
    return result


def statement_params(plan: SqlPlan, **more: Any) -> dict[str, Any]:
    """The parameters every statement built by :func:`points_select` needs."""
    return {"ingestion_id": plan.ingestion_id, "latest": plan.latest, "date_offsets": _DATE_OFFSETS_ARRAY, **more}


def _factors(spec: MetricSpec, units: object) -> dict[str, Conversion] | None:
    factors = {}
    for f in spec.fields:
        if f.kind is None:
            continue
        found = conversion(f.kind, f.default_units if units is None else units, f.unit or "")
        if found is None:
            return None  # the parser rejects every point of it (invalid_point, units)
        factors[f.column] = found
    return factors


def _float(value: float) -> str:
    """A float8 literal that is exactly ``value`` (repr round-trips; quoted, so inf works too)."""
    return f"'{value!r}'::float8"


def is_fallback_error(exc: BaseException) -> bool:
    """A database error that sends the payload to the parser (not a lost connection, not a bug)."""
    code = getattr(exc, "pgcode", None) or ""
    return code[:2] in FALLBACK_SQLSTATE_CLASSES


def _raw(f: Field) -> str:
    """The first of the field's keys present and not null, as jsonb (``point.get`` in the parser)."""
    picks = [f"NULLIF(p.value->'{key}', 'null'::jsonb)" for key in f.keys]
    return picks[0] if len(picks) == 1 else f"COALESCE({', '.join(picks)})"


def points_select(metric: PlannedMetric, columns: Sequence[str]) -> str:
    """One row per point of ``metric``: position, key (NULL when a check fails) and ``columns``.

    Each point's values are extracted once (the OFFSET 0 subquery is not flattened into the
    expressions that use them), then checked.
    """
    position = int(metric.position)
    # The instant is read once (a cast costs more than every other check): a string that is no date
    # at all fails the cast and the statement, which sends the payload to the parser like a NULL key.
    values = ["p.value->>'date' AS d", "(p.value->>'date')::timestamptz AS k"]
    checks = [
        "octet_length(x.d) = 25",
        "right(x.d, 6) = ANY(%(date_offsets)s::text[])",
        "left(x.d, 19) = x.d::timestamp::text",  # the offset is ignored by ::timestamp; ISO DateStyle
        "x.k BETWEEN '1970-01-01T00:00:00Z' AND %(latest)s",
    ]
    filled: dict[str, str] = {}
    for number, f in enumerate(metric.spec.fields):
        # A string, bool or {"qty", "units"} object fails the cast: the parser handles those.
        value = f"({_raw(f)})::float8"
        if f.column in metric.factors:
            # The parser's catalogue.units.apply: value * scale, plus the offset when there is one.
            scale, offset = metric.factors[f.column]
            value = f"({value} * {_float(scale)}" + (f" + {_float(offset)})" if offset else ")")
        values.append(f"{value} AS v{number}")
        limits = f"x.v{number} BETWEEN {_float(f.limits[0])} AND {_float(f.limits[1])}"
        # A present number never casts to NULL, so NULL here means absent (or JSON null).
        checks.append(limits if f.required else f"(x.v{number} IS NULL OR {limits})")
        filled[f.column] = f"x.v{number}"
    values.append("CASE WHEN jsonb_typeof(p.value->'source') = 'string' THEN p.value->>'source' END AS source")
    filled["source_device"] = "x.source"
    selected = [f"{position} AS position", f"CASE WHEN {' AND '.join(checks)} THEN x.k END AS key"]
    selected += [f"{filled.get(c, 'NULL::float8')} AS {c}" for c in columns]
    return f"SELECT {', '.join(selected)} FROM (SELECT {', '.join(values)} {metric.points_from()} OFFSET 0) x"

