"""The row oracle for workouts (their own row, series and route) and the data arrays beside ``metrics``.

Read from docs/payload-format.md with the catalogue's facts, like :mod:`recovery_lib.simulate.rows`:
a workout's row (energies in kcal, distance in meters, version 1 defaults kcal and km, a heart rate
of 0 absent); each point of a series or the route a row keyed by (its date, the workout's start),
the points of one minute merged; each entry of a data array a row keyed by its start, with the tag
(a symptom's or medicine's name) where its table has one, and cycle tracking's name choosing the
column (and table) its value fills.

    >>> rows = new_rows()
    >>> workout_rows(rows, {"name": "Walk", "start": "2024-09-21 07:00:00 +1000", "avgHeartRate": 0})
    >>> [row["avg_heart_rate"] for row in rows["workout_metrics"].values()]
    [None]
"""

from __future__ import annotations

from typing import Any

from recovery_lib.catalogue.arrays import ROUTE_FIELDS, WORKOUT_ROUTE, WORKOUT_SAMPLES, WORKOUT_SERIES
from recovery_lib.catalogue.model import ArraySpec
from recovery_lib.simulate.cells import Rows, json_text, new_rows, put, quantity, read_fields, to_column, with_source
from recovery_lib.simulate.dates import read

__all__ = ["array_rows", "new_rows", "workout_rows"]

# (column, version 2 field, version 1 field, version 1 units field, unit kind, default units, column unit)
_QUANTITIES = (
    ("active_energy_kcal", "activeEnergyBurned", "activeEnergy", "activeEnergyUnits", "energy", "kcal", "kcal"),
    ("total_energy_kcal", "totalEnergy", "totalEnergy", "totalEnergyUnits", "energy", "kcal", "kcal"),
    ("distance_meters", "distance", "distance", "distanceUnits", "length", "km", "m"),
)


def workout_rows(rows: Rows, w: dict[str, Any]) -> None:
    """The workout's row, then a row per point of its series and route."""
    started = read(w["start"])
    values: dict[str, Any] = {"workout_type": w.get("name"), "ended_at": read(w["end"]) if w.get("end") else None}
    for column, v2, v1, units_field, kind, default, target in _QUANTITIES:
        field = v2 if w.get(v2) is not None else v1
        raw = w.get(field)
        if raw is None or isinstance(raw, list):
            continue  # a list is version 2's timed series of that name, not the workout's total
        number, own = quantity(raw)
        units = own if own is not None else w.get(units_field)
        values[column] = to_column(float(number), kind, units if units is not None else default, target)
    rates = w.get("heartRate") or {}
    for column, nested, flat in (("avg_heart_rate", "avg", "avgHeartRate"), ("max_heart_rate", "max", "maxHeartRate")):
        raw = rates.get(nested) if rates.get(nested) is not None else w.get(flat)
        if raw is not None and quantity(raw)[0] != 0:  # 0: an export without a watch, no heart rate
            values[column] = float(quantity(raw)[0])
    put(rows, "workout_metrics", started, with_source(values, w))
    series = [(name, fields, "date", WORKOUT_SAMPLES) for name, fields in WORKOUT_SERIES.items()]
    for name, fields, date_field, table in (*series, ("route", ROUTE_FIELDS, "timestamp", WORKOUT_ROUTE)):
        points = w.get(name)
        if not isinstance(points, list):
            continue  # version 1's activeEnergy is the workout's total, not a series
        for point in points:
            found = read_fields(fields, point, point.get("units"))
            if found:
                put(rows, table, (read(point[date_field]), started), with_source(found, point))


def array_rows(rows: Rows, spec: ArraySpec, entries: list[dict[str, Any]]) -> None:
    """A row per entry of a data array (cycle tracking: in the table and column its name picks)."""
    for entry in entries:
        key: Any = read(next(entry[k] for k in spec.key if entry.get(k) is not None))
        values: dict[str, Any] = {column: read(entry[name]) for name, column in spec.dates
                                  if entry.get(name) is not None}
        table = spec.table
        if spec.dispatch:
            table, column = spec.dispatch[entry["name"]]
            value = entry["value"]
            values[column] = value if isinstance(value, str) else json_text(value)
            if table != spec.table:
                values = {column: values[column]}  # the array's own fields (a cycle start) go with the flow only
        if table == spec.table:
            values.update(read_fields(spec.fields, entry, entry.get("units")) or {})
        if spec.tag_key is not None:
            key = (key, entry[spec.tag_key])
        assert table is not None
        put(rows, table, key, with_source(values, entry))
