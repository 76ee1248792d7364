"""The metric catalogue: every metric and data array Health Auto Export sends, and where each lands.

One place for what varies per metric (table, column, unit and its conversions, plausible limits,
point shape, the spellings of other app versions). The parser, the SQL fast path, the schema,
the mapping table in docs/payload-format.md and the incident generator all read it; adding a
metric is one entry in :mod:`.vitals`, :mod:`.activity` or :mod:`.nutrition`.

    >>> lookup("walking_heart_rate").name          # an older spelling finds its entry
    'walking_heart_rate_average'
    >>> lookup("stair_speed:_up").table
    'activity_metrics'
    >>> lookup("a_metric_from_a_future_app") is None
    True

Who owns what::

    model.py      the vocabulary: TableSpec, MetricSpec, ArraySpec, Field
    units.py      units by kind and their conversions
    tables.py     the tables of every family
    vitals.py, activity.py, nutrition.py    the metrics of data.metrics
    arrays.py     stateOfMind, medications, symptoms, cycleTracking, ecg, heartRateNotifications;
                  a workout's timed series and route
    internal.py   the API's internal form: type tag -> table, the fields of every build (api_builds.json)
"""

from __future__ import annotations

from recovery_lib.catalogue import internal
from recovery_lib.catalogue.activity import ACTIVITIES
from recovery_lib.catalogue.arrays import ARRAYS, ROUTE_FIELDS, WORKOUT_ROUTE, WORKOUT_SAMPLES, WORKOUT_SERIES
from recovery_lib.catalogue.model import TEXT, TIMESTAMP, ArraySpec, Column, Field, MetricSpec, TableSpec
from recovery_lib.catalogue.nutrition import NUTRITION
from recovery_lib.catalogue.tables import FAMILIES, GENERIC_TABLE, TABLES
from recovery_lib.catalogue.vitals import VITALS

__all__ = [
    "ARRAYS",
    "FAMILIES",
    "GENERIC_TABLE",
    "METRICS",
    "SLEEP",
    "TABLES",
    "WORKOUTS",
    "ArraySpec",
    "Column",
    "Field",
    "MetricSpec",
    "TableSpec",
    "lookup",
    "table_columns",
    "unit_metric_names",
]

SLEEP = MetricSpec("sleep_analysis", "sleep_metrics", shape="sleep", note="aggregated nights or stage segments")
WORKOUTS = "workouts"  # the name workouts are counted and rejected under

METRICS: dict[str, MetricSpec] = {spec.name: spec for spec in (*VITALS, *ACTIVITIES, *NUTRITION, SLEEP)}
_ALIASES: dict[str, str] = {alias: spec.name for spec in METRICS.values() for alias in spec.aliases}


def _check() -> None:
    """The catalogue's own consistency: names unique, every table known, units convertible."""
    from recovery_lib.catalogue import units

    clash = set(_ALIASES) & set(METRICS)
    assert not clash, f"aliases that are also names: {sorted(clash)}"
    for spec in METRICS.values():
        assert spec.table in TABLES, f"{spec.name}: unknown table {spec.table}"
        for f in spec.fields:
            if f.kind is not None:
                assert f.unit is not None and units.conversion(f.kind, f.unit, f.unit) == (1.0, 0.0), spec.name
    for array in ARRAYS.values():
        for table, _ in array.dispatch.values():
            assert table in TABLES, f"{array.name}: unknown table {table}"
        assert array.table is None or array.table in TABLES, array.name


_check()


def lookup(name: object) -> MetricSpec | None:
    """The entry of a metric name or one of its aliases; None for a name the catalogue does not know."""
    if not isinstance(name, str):
        return None
    return METRICS.get(name) or METRICS.get(_ALIASES.get(name, ""))


def unit_metric_names() -> frozenset[str]:
    """Every name and alias of a metric whose conversion reads the metric-level ``units``."""
    return frozenset(n for spec in METRICS.values() if spec.uses_units for n in (spec.name, *spec.aliases))


def _filled_columns(table: str) -> list[Column]:
    """Columns that metrics and arrays fill in ``table``, in catalogue order."""
    found: list[Column] = []

    def add(name: str, kind: str) -> None:
        found.append(Column(name, kind))

    for spec in METRICS.values():
        if spec.table == table:
            for f in spec.fields:
                add(f.column, f.type)
    for array in ARRAYS.values():
        if array.table == table:
            for _, column in array.dates:
                add(column, TIMESTAMP)
            for f in array.fields:
                add(f.column, f.type)
        for t, column in array.dispatch.values():
            if t == table:
                add(column, TEXT)
    if table == WORKOUT_SAMPLES:
        for fields in WORKOUT_SERIES.values():
            for f in fields:
                add(f.column, f.type)
    if table == WORKOUT_ROUTE:
        for f in ROUTE_FIELDS:
            add(f.column, f.type)
    return found


def table_columns(table: str, *, internal_form: bool = True) -> tuple[Column, ...]:
    """Every value column of ``table`` (not the key or tag): its own, then those filled, then the source,
    then (unless ``internal_form`` is False) the columns only the API's internal form fills (:mod:`.internal`)."""
    spec = TABLES[table]
    own = [c for c in spec.columns if c.name != "source_device"]
    seen: dict[str, Column] = {}
    for column in (*own, *_filled_columns(table), *(c for c in spec.columns if c.name == "source_device")):
        previous = seen.setdefault(column.name, column)
        assert previous.type == column.type, f"{table}.{column.name} is both {previous.type} and {column.type}"
    for column in internal.columns(table) if internal_form else ():
        # A column the catalogue has keeps its type (a cycle-tracking text the API sends as a bool).
        seen.setdefault(column.name, column)
    return tuple(seen.values())
