"""Entries of the data arrays beside ``metrics`` and the points of a workout's series and route.

Each converter returns the rows one entry fills, as ``(table, key, values)``; the key is the
entry's date, or ``(date, tag)`` for a tagged table (a symptom's name, the workout's start). A
problem raises :class:`~recovery_lib.errors.Reject` naming the category and field (never a value).

    >>> from recovery_lib.catalogue import ARRAYS
    >>> [(table, key[1]) for table, key, _ in convert_entry(ARRAYS["symptoms"],
    ...     {"start": "2025-03-02 09:00:00 +1100", "name": "Headache", "severity": "Moderate"},
    ...     LATEST_ALLOWED_NEVER)]
    [('symptoms', 'Headache')]
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from recovery_lib.catalogue.arrays import ROUTE_FIELDS, WORKOUT_ROUTE, WORKOUT_SAMPLES, WORKOUT_SERIES
from recovery_lib.catalogue.model import ArraySpec, Field
from recovery_lib.errors import Reject
from recovery_lib.payload.fields import json_text, read_fields
from recovery_lib.payload.values import LATEST_ALLOWED_NEVER, parse_date

__all__ = ["LATEST_ALLOWED_NEVER", "Row", "convert_entry", "series_of", "convert_series_point"]

Row = tuple[str, Any, dict[str, object]]  # (table, key, values)
SOURCE = "source"


def _first(entry: dict[str, Any], keys: tuple[str, ...]) -> tuple[str, Any]:
    for name in keys:
        if entry.get(name) is not None:
            return name, entry[name]
    return keys[0], None


def _source(entry: dict[str, Any], values: dict[str, object]) -> dict[str, object]:
    source = entry.get(SOURCE)
    if type(source) is str:
        values["source_device"] = source
    return values


def convert_entry(spec: ArraySpec, entry: dict[str, Any], latest: datetime) -> list[Row]:
    """The row one entry of ``spec``'s array fills (cycle tracking: the table its ``name`` picks)."""
    field, raw = _first(entry, spec.key)
    key: Any = parse_date(raw, field, latest)
    values: dict[str, object] = {}
    for name, column in spec.dates:
        if entry.get(name) is not None:
            values[column] = parse_date(entry[name], name, latest)
    table = spec.table
    if spec.dispatch:
        name = entry.get("name")
        target = spec.dispatch.get(name) if isinstance(name, str) else None
        if target is None:
            raise Reject("unsupported_point", "name")  # a name (often in the phone's language) with no column
        table, column = target
        value = entry.get("value")
        if value is None:
            raise Reject("missing_value", "value")
        values[column] = value if isinstance(value, str) else json_text(value, "value")
        if table != spec.table:
            values = {column: values[column]}  # the array's own fields (a cycle start) go with the flow only
    if table == spec.table:
        values.update(read_fields(spec.fields, entry, entry.get("units")))
    if spec.tag_key is not None:
        tag = entry.get(spec.tag_key)
        if not isinstance(tag, str) or not tag.strip():
            raise Reject("missing_value", spec.tag_key)
        key = (key, tag)
    assert table is not None
    return [(table, key, _source(entry, values))]


def series_of(workout: dict[str, Any]) -> Iterator[tuple[str, list[Any], tuple[Field, ...], str]]:
    """``(name, points, fields, date field)`` of each timed series and the route a workout carries."""
    for name, fields in WORKOUT_SERIES.items():
        points = workout.get(name)
        if type(points) is list:
            yield name, points, fields, "date"
    route = workout.get("route")
    if type(route) is list:
        yield "route", route, ROUTE_FIELDS, "timestamp"


def convert_series_point(name: str, point: dict[str, Any], fields: tuple[Field, ...], date_field: str,
                         started_at: datetime, latest: datetime) -> Row:
    """The row of one point of a workout's series (``workout_samples``) or route (``workout_route_points``)."""
    at = parse_date(point.get(date_field), date_field, latest)
    values = read_fields(fields, point, point.get("units"))
    if not values:
        raise Reject("missing_value", fields[0].keys[0])  # a heart rate of 0 everywhere: no data at all
    table = WORKOUT_ROUTE if name == "route" else WORKOUT_SAMPLES
    return table, (at, started_at), _source(point, values)
