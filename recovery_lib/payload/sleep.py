"""Sleep: an aggregated night, or unaggregated stage segments grouped into sessions.

Durations arrive in hours (or the metric's ``units``) and are stored in minutes; see
docs/payload-format.md ("Sleep") for the rules, including what each app version sends.

    >>> key, values = convert_sleep({"sleepStart": "2024-09-20 23:00:00 +1000", "totalSleep": 6.5,
    ...                               "inBed": 7.0}, "hr", LATEST_ALLOWED_NEVER)
    >>> values["duration_minutes"], round(values["efficiency"], 1)
    (390.0, 92.9)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from recovery_lib.errors import Reject
from recovery_lib.payload.fields import Converted, unit_conversion
from recovery_lib.payload.values import (
    EFFICIENCY,
    LATEST_ALLOWED_NEVER,
    MINUTES,
    check_range,
    parse_date,
    quantity,
    text,
)

__all__ = ["LATEST_ALLOWED_NEVER", "SLEEP_STAGES", "Segment", "convert_segment", "convert_sleep", "is_segment",
           "sessions"]


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
# "InBed" (no space) comes from app 6.6.2; "Unspecified" is asleep in a stage the source did not classify.
SLEEP_STAGES: dict[str, str | None] = {
    "Core": "light_sleep_minutes",
    "Deep": "deep_sleep_minutes",
    "REM": "rem_sleep_minutes",
    "Awake": "awake_minutes",
    "Asleep": None,
    "Unspecified": None,
    "In Bed": None,
    "InBed": None,
}
_ASLEEP_STAGES = frozenset({"Core", "Deep", "REM", "Asleep", "Unspecified"})
# Aggregated sleep without totalSleep: its duration is the sum of these (asleep = unclassified sleep).
_SLEEP_PARTS = ("asleep", "core", "deep", "rem")
SESSION_GAP = timedelta(minutes=60)
# Five fields, each rounded to 0.0001 h (0.006 min) by the app, with room to spare.
ROUNDING_MINUTES = 0.05


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
    if all(point.get(name) is None for name in ("totalSleep", *_SLEEP_PARTS)):
        raise Reject("missing_value", "totalSleep")
    minutes: dict[str, float] = {}
    for name, column in _SLEEP_FIELDS:
        raw = point.get(name)
        if raw is None:
            continue
        value, own_units = quantity(raw, name)
        value = unit_conversion("time", units if own_units is None else own_units, "hr", "min", value)
        minutes[name] = check_range(value, MINUTES, name)
        if column is not None:
            values[column] = minutes[name]
    # Before 6.6.2 asleep was the total and no stage was sent; from 6.6.2 asleep is 0 (unclassified)
    # beside core/deep/rem: both are the sum of what was sent.
    if "totalSleep" in minutes:
        duration = minutes["totalSleep"]
    else:
        duration = check_range(sum(minutes.get(p, 0.0) for p in _SLEEP_PARTS), MINUTES, "asleep")
    values["duration_minutes"] = duration
    if minutes.get("inBed", 0.0) > 0:
        # Derived, so held to the rules of a given value: a tiny inBed makes it infinite, a short one > 100 %.
        # The app rounds every field to 1/10,000 h, so a night asleep end to end can add up a hair over inBed.
        asleep = duration if duration - minutes["inBed"] > ROUNDING_MINUTES else min(duration, minutes["inBed"])
        values["efficiency"] = check_range(100.0 * asleep / minutes["inBed"], EFFICIENCY, "inBed")
    # Before 6.6.2 the sources came per part; later a single "source" (which the parser prefers).
    source = text(point.get("sleepSource")) or text(point.get("inBedSource"))
    if source is not None:
        values["source_device"] = source
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
