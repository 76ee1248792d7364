"""Workouts: one row per workout, version 2 (``{qty, units}`` objects) or version 1 (flat numbers).

    >>> key, values = convert_workout({"name": "Walk", "start": "2024-09-21 07:00:00 +1000",
    ...                                "distance": {"qty": 3.2, "units": "km"}}, LATEST_ALLOWED_NEVER)
    >>> values["distance_meters"]
    3200.0
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from recovery_lib.errors import Reject
from recovery_lib.payload.fields import Converted, unit_conversion
from recovery_lib.payload.values import (
    HEART_RATE,
    LATEST_ALLOWED_NEVER,
    WORKOUT_DISTANCE,
    WORKOUT_ENERGY,
    check_range,
    parse_date,
    quantity,
    text,
)

__all__ = ["LATEST_ALLOWED_NEVER", "convert_workout"]

_TARGET = {"energy": "kcal", "length": "m"}


# (column, v2 key, v1 key, v1 units key, kind, default units, limits)
_WORKOUT_QUANTITIES = (
    (
        "active_energy_kcal",
        "activeEnergyBurned",
        "activeEnergy",
        "activeEnergyUnits",
        "energy",
        "kcal",
        WORKOUT_ENERGY,
    ),
    ("total_energy_kcal", "totalEnergy", "totalEnergy", "totalEnergyUnits", "energy", "kcal", WORKOUT_ENERGY),
    ("distance_meters", "distance", "distance", "distanceUnits", "length", "km", WORKOUT_DISTANCE),
)


def convert_workout(obj: dict[str, Any], latest: datetime) -> Converted:
    """``(started_at, values)`` of a workout, version 2 (``{qty, units}`` objects) or 1 (flat numbers).

    Both versions are read field by field, so a mix of the two is read as well. Energy defaults
    to kcal and distance to km when no units are given (the version 1 defaults).
    """
    key = parse_date(obj.get("start"), "start", latest)
    values: dict[str, object] = {}
    name = text(obj.get("name"))
    if name is not None:
        values["workout_type"] = name
    if obj.get("end") is not None:
        end = parse_date(obj["end"], "end", latest)
        if end < key:
            raise Reject("invalid_date", "end")
        values["ended_at"] = end
    for column, v2_key, v1_key, units_key, kind, default, limits in _WORKOUT_QUANTITIES:
        field = v2_key if obj.get(v2_key) is not None else v1_key
        raw = obj.get(field)
        if raw is None or type(raw) is list:
            continue  # a list is version 2's timed series of that name, not the workout's total
        value, own_units = quantity(raw, field)
        units = own_units if own_units is not None else obj.get(units_key)
        values[column] = check_range(unit_conversion(kind, units, default, _TARGET[kind], value), limits, field)
    rates = obj.get("heartRate")
    if rates is not None and type(rates) is not dict:
        raise Reject("non_numeric", "heartRate")
    for column, nested, flat in (
        ("avg_heart_rate", "avg", "avgHeartRate"),
        ("max_heart_rate", "max", "maxHeartRate"),
    ):
        field, raw = f"heartRate.{nested}", (rates or {}).get(nested)
        if raw is None:
            field, raw = flat, obj.get(flat)
        if raw is None:
            continue
        rate = quantity(raw, field)[0]
        if rate == 0:
            continue  # how exports without a watch say "no heart rate": absent, the workout is kept
        values[column] = check_range(rate, HEART_RATE, field)
    return key, values
