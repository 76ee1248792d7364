"""The metric -> table.column mapping of docs/payload-format.md, one converter per point shape.

Each converter takes one raw point (a ``dict``) and returns ``(key, values)``: the natural-key
timestamp (UTC) and the columns the point fills. A point that cannot become a row raises
:class:`~recovery_lib.errors.Reject`; fields are checked in the order the table lists
them, so the first problem names the category and field.

    >>> convert_simple(METRICS["step_count"], {"date": "2024-02-06 14:30:00 -0800", "qty": 812},
    ...                None, LATEST_ALLOWED_NEVER)[1]
    {'step_count': 812.0}
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from recovery_lib.payload.values import (
    ACTIVITY,
    DIASTOLIC,
    EFFICIENCY,
    HEART_RATE,
    HRV,
    LATEST_ALLOWED_NEVER,
    MINUTES,
    PULSE,
    SYSTOLIC,
    WORKOUT_DISTANCE,
    WORKOUT_ENERGY,
    Reject,
    check_range,
    parse_date,
    quantity,
    text,
    unit_factor,
)
from recovery_lib.schema import activity_metrics as _activity
from recovery_lib.schema import blood_pressure_metrics as _blood_pressure
from recovery_lib.schema import heart_rate_metrics as _heart_rate
from recovery_lib.schema import sleep_metrics as _sleep
from recovery_lib.schema import workout_metrics as _workout

__all__ = [
    "LATEST_ALLOWED_NEVER",
    "METRICS",
    "SLEEP_STAGES",
    "SLEEP_TABLE",
    "WORKOUT_TABLE",
    "Field",
    "MetricSpec",
    "Segment",
    "convert_segment",
    "convert_simple",
    "convert_sleep",
    "convert_workout",
    "is_segment",
    "sessions",
]

Converted = tuple[datetime, dict[str, object]]  # (natural key, columns filled)

HEART_RATE_TABLE = _heart_rate.name
BLOOD_PRESSURE_TABLE = _blood_pressure.name
ACTIVITY_TABLE = _activity.name
SLEEP_TABLE = _sleep.name
WORKOUT_TABLE = _workout.name


@dataclass(frozen=True)
class Field:
    """One value of a point: the first of ``keys`` that is present (not null) fills ``column``."""

    keys: tuple[str, ...]
    column: str
    limits: tuple[float, float]
    required: bool = True
    unit_kind: str | None = None  # 'length' | 'energy' | 'time': converted with the metric's units
    default_units: str | None = None  # when the metric has no units: the table's own unit


@dataclass(frozen=True)
class MetricSpec:
    """How one metric name maps to a table: plain fields, or the sleep shapes (``kind='sleep'``)."""

    name: str
    table: str
    fields: tuple[Field, ...] = ()
    kind: str = "simple"

    @property
    def uses_units(self) -> bool:
        return self.kind == "sleep" or any(f.unit_kind for f in self.fields)


def _qty(
    column: str, limits: tuple[float, float], unit_kind: str | None = None, default: str | None = None
) -> tuple[Field, ...]:
    return (Field(("qty",), column, limits, True, unit_kind, default),)


METRICS: dict[str, MetricSpec] = {
    spec.name: spec
    for spec in (
        MetricSpec(
            "heart_rate",
            HEART_RATE_TABLE,
            (
                Field(("Avg", "qty"), "heart_rate", HEART_RATE),
                Field(("Min",), "heart_rate_min", HEART_RATE, required=False),
                Field(("Max",), "heart_rate_max", HEART_RATE, required=False),
            ),
        ),
        MetricSpec("resting_heart_rate", HEART_RATE_TABLE, _qty("resting_heart_rate", HEART_RATE)),
        MetricSpec("heart_rate_variability", HEART_RATE_TABLE, _qty("heart_rate_variability", HRV)),
        MetricSpec(
            "blood_pressure",
            BLOOD_PRESSURE_TABLE,
            (
                Field(("systolic",), "systolic", SYSTOLIC),
                Field(("diastolic",), "diastolic", DIASTOLIC),
                Field(("pulse",), "pulse", PULSE, required=False),
            ),
        ),
        MetricSpec("blood_pressure_systolic", BLOOD_PRESSURE_TABLE, _qty("systolic", SYSTOLIC)),
        MetricSpec("blood_pressure_diastolic", BLOOD_PRESSURE_TABLE, _qty("diastolic", DIASTOLIC)),
        MetricSpec("step_count", ACTIVITY_TABLE, _qty("step_count", ACTIVITY)),
        MetricSpec(
            "walking_running_distance", ACTIVITY_TABLE, _qty("distance_meters", ACTIVITY, "length", "m")
        ),
        MetricSpec("flights_climbed", ACTIVITY_TABLE, _qty("flights_climbed", ACTIVITY)),
        MetricSpec(
            "active_energy", ACTIVITY_TABLE, _qty("active_energy_burned_kcal", ACTIVITY, "energy", "kcal")
        ),
        MetricSpec(
            "basal_energy_burned",
            ACTIVITY_TABLE,
            _qty("basal_energy_burned_kcal", ACTIVITY, "energy", "kcal"),
        ),
        MetricSpec(
            "apple_exercise_time", ACTIVITY_TABLE, _qty("apple_exercise_time_minutes", MINUTES, "time", "min")
        ),
        MetricSpec(
            "apple_stand_time", ACTIVITY_TABLE, _qty("apple_stand_time_minutes", MINUTES, "time", "min")
        ),
        MetricSpec("sleep_analysis", SLEEP_TABLE, kind="sleep"),
    )
}


def _factor(kind: str, units: object, default: str) -> float:
    factor = unit_factor(kind, default if units is None else units)
    if factor is None:
        # Unknown units: storing the number at a guessed scale would be silently wrong.
        raise Reject("invalid_point", "units")
    return factor


def convert_simple(spec: MetricSpec, point: dict[str, Any], units: object, latest: datetime) -> Converted:
    """``(recorded_at, values)`` of a heart rate, blood pressure or activity point."""
    key = parse_date(point.get("date"), "date", latest)
    values: dict[str, object] = {}
    for field in spec.fields:
        used = field.keys[0]
        raw = None
        for name in field.keys:
            raw = point.get(name)
            if raw is not None:
                used = name
                break
        if raw is None:
            if field.required:
                raise Reject("missing_value", used)
            continue
        value, own_units = quantity(raw, used)
        if field.unit_kind is not None:
            value *= _factor(
                field.unit_kind, units if own_units is None else own_units, field.default_units or ""
            )
        values[field.column] = check_range(value, field.limits, used)
    return key, values


# --------------------------------------------------------------------------- sleep

# Aggregated point field -> column (None: read for duration/efficiency only).
_SLEEP_FIELDS = (
    ("totalSleep", None),
    ("asleep", None),
    ("core", "light_sleep_minutes"),
    ("deep", "deep_sleep_minutes"),
    ("rem", "rem_sleep_minutes"),
    ("awake", "awake_minutes"),
    ("inBed", None),
)
# Unaggregated stage -> column; None counts toward nothing but the session's span.
SLEEP_STAGES: dict[str, str | None] = {
    "Core": "light_sleep_minutes",
    "Deep": "deep_sleep_minutes",
    "REM": "rem_sleep_minutes",
    "Awake": "awake_minutes",
    "Asleep": None,
    "In Bed": None,
}
_ASLEEP_STAGES = frozenset({"Core", "Deep", "REM", "Asleep"})
SESSION_GAP = timedelta(minutes=60)


def is_segment(point: dict[str, Any]) -> bool:
    """An unaggregated sleep point (one stage) rather than an aggregated night."""
    return ("startDate" in point or "value" in point) and "sleepStart" not in point


def convert_sleep(point: dict[str, Any], units: object, latest: datetime) -> Converted:
    """``(sleep_start, values)`` of an aggregated sleep point; durations in the metric's units (hours)."""
    if point.get("sleepStart") is not None:
        key = parse_date(point["sleepStart"], "sleepStart", latest)
    elif point.get("date") is not None:
        key = parse_date(point["date"], "date", latest)
    else:
        raise Reject("missing_date", "sleepStart")
    values: dict[str, object] = {}
    if point.get("sleepEnd") is not None:
        end = parse_date(point["sleepEnd"], "sleepEnd", latest)
        if end < key:
            raise Reject("invalid_date", "sleepEnd")
        values["sleep_end"] = end
    if point.get("totalSleep") is None and point.get("asleep") is None:
        raise Reject("missing_value", "totalSleep")
    minutes: dict[str, float] = {}
    for name, column in _SLEEP_FIELDS:
        raw = point.get(name)
        if raw is None:
            continue
        value, own_units = quantity(raw, name)
        value *= _factor("time", units if own_units is None else own_units, "hr")
        minutes[name] = check_range(value, MINUTES, name)
        if column is not None:
            values[column] = minutes[name]
    duration = minutes["totalSleep"] if "totalSleep" in minutes else minutes["asleep"]
    values["duration_minutes"] = duration
    if minutes.get("inBed", 0.0) > 0:
        # Derived, so held to the rules of a given value: a tiny inBed makes it infinite, a short one > 100 %.
        values["efficiency"] = check_range(100.0 * duration / minutes["inBed"], EFFICIENCY, "inBed")
    return key, values


def convert_segment(point: dict[str, Any], latest: datetime) -> tuple[datetime, datetime, str]:
    """``(start, end, stage)`` of one unaggregated sleep segment."""
    start = parse_date(point.get("startDate"), "startDate", latest)
    end = parse_date(point.get("endDate"), "endDate", latest)
    if end < start:
        raise Reject("invalid_date", "endDate")
    if (end - start).total_seconds() / 60 > MINUTES[1]:
        raise Reject("out_of_range", "endDate")
    stage = point.get("value")
    if stage is None:
        raise Reject("missing_value", "value")
    if not isinstance(stage, str) or stage not in SLEEP_STAGES:
        raise Reject("invalid_point", "value")
    return start, end, stage


@dataclass(frozen=True, slots=True)
class Segment:
    start: datetime
    end: datetime
    stage: str
    source: str | None
    index: int


def sessions(segments: list[Segment]) -> list[tuple[list[Segment], dict[str, object] | Reject]]:
    """Group segments into sessions (docs: "Sleep", unaggregated) with each session's row values.

    Sorted by start (payload order breaks ties); a segment joins the session while it starts at
    most 60 minutes after the latest end so far. A session whose derived values break the value
    rules (overlapping segments: more than 100 % efficiency, more than 1440 minutes of a stage)
    comes with the :class:`Reject` instead of values.
    """
    groups: list[list[Segment]] = []
    latest_end: datetime | None = None
    for segment in sorted(segments, key=lambda s: s.start):
        if latest_end is None or segment.start - latest_end > SESSION_GAP:
            groups.append([])
            latest_end = segment.end
        groups[-1].append(segment)
        latest_end = max(latest_end, segment.end)
    result = []
    for group in groups:
        start = group[0].start
        end = max(s.end for s in group)
        stage_minutes = dict.fromkeys(
            ("light_sleep_minutes", "deep_sleep_minutes", "rem_sleep_minutes", "awake_minutes"), 0.0
        )
        duration = 0.0
        for segment in group:
            minutes = (segment.end - segment.start).total_seconds() / 60
            column = SLEEP_STAGES[segment.stage]
            if column is not None:
                stage_minutes[column] += minutes
            if segment.stage in _ASLEEP_STAGES:
                duration += minutes
        values: dict[str, object] = {"sleep_end": end, "duration_minutes": duration, **stage_minutes}
        span = (end - start).total_seconds() / 60
        if span > 0:
            values["efficiency"] = 100.0 * duration / span
        problem = _derived_problem(values)
        if problem is not None:
            result.append((group, problem))
            continue
        source = next((s.source for s in group if s.source is not None), None)
        if source is not None:
            values["source_device"] = source
        result.append((group, values))
    return result


def _derived_problem(values: dict[str, object]) -> Reject | None:
    """A session's derived values under the rules of given ones (overlapping segments can break them)."""
    for column, value in values.items():
        limits = EFFICIENCY if column == "efficiency" else MINUTES if column.endswith("minutes") else None
        if limits is not None:
            try:
                check_range(value, limits, column)  # type: ignore[arg-type]
            except Reject as problem:
                return problem
    return None


# --------------------------------------------------------------------------- workouts

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
        if raw is None:
            continue
        value, own_units = quantity(raw, field)
        units = own_units if own_units is not None else obj.get(units_key)
        values[column] = check_range(value * _factor(kind, units, default), limits, field)
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
        values[column] = check_range(quantity(raw, field)[0], HEART_RATE, field)
    return key, values
