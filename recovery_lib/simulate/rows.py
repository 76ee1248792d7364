"""The rows a generated payload implies, exactly as docs/payload-format.md maps them.

This reads only the shapes :mod:`recovery_lib.simulate.payloads` writes (it is not a general
parser and does not validate): units converted with the doc's factors, metrics on one table and
instant merged into one row (each column filled once, the first value wins), unaggregated sleep
grouped into sessions (a new session when a segment starts more than 60 minutes after the latest
end so far). The generator's ground truth is built from it.

    >>> rows = rows_from_payload({"data": {"metrics": [{"name": "step_count", "units": "count",
    ...     "data": [{"qty": 42, "date": "2024-02-06 14:00:00 -0800"}]}]}})
    >>> [(k.isoformat(), r["step_count"]) for k, r in rows["activity_metrics"].items()]
    [('2024-02-06T14:00:00-08:00', 42)]
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from recovery_lib.schema import METRIC_TABLES

# Unit factors of the doc: to meters, to kcal, to minutes.
DISTANCE_FACTORS = {"km": 1000.0, "mi": 1609.344, "m": 1.0}
ENERGY_FACTORS = {"kcal": 1.0, "kJ": 1 / 4.184}
TIME_FACTORS = {"min": 1.0, "hr": 60.0, "s": 1 / 60}
UNIT_FAMILIES = {"distance": DISTANCE_FACTORS, "energy": ENERGY_FACTORS, "time": TIME_FACTORS}

# Activity metrics: name -> (column, unit family). They share the hourly grid (wide rows).
ACTIVITY_METRICS = {
    "active_energy": ("active_energy_burned_kcal", "energy"),
    "apple_exercise_time": ("apple_exercise_time_minutes", "time"),
    "apple_stand_time": ("apple_stand_time_minutes", "time"),
    "basal_energy_burned": ("basal_energy_burned_kcal", "energy"),
    "flights_climbed": ("flights_climbed", "count"),
    "step_count": ("step_count", "count"),
    "walking_running_distance": ("distance_meters", "distance"),
}
HEART_QTY_METRICS = {
    "resting_heart_rate": "resting_heart_rate",
    "heart_rate_variability": "heart_rate_variability",
}

Rows = dict[str, dict[datetime, dict[str, Any]]]  # table -> natural-key instant -> column values


Rows = dict[str, dict[datetime, dict[str, Any]]]


def parse_date(text: str) -> datetime:
    """``'2024-02-06 14:30:00 -0800'`` -> an aware datetime."""
    return datetime.fromisoformat(text[:19] + text[20:])


def _put(rows: Rows, table: str, key: datetime, values: dict[str, Any]) -> None:
    """Merge into the row of ``key``: each column is filled once (the first value wins)."""
    row = rows[table].get(key)
    if row is None:
        row = dict.fromkeys(METRIC_TABLES[table].values)
        row[METRIC_TABLES[table].key] = key
        rows[table][key] = row
    for column, value in values.items():
        if row[column] is None and value is not None:
            row[column] = value


def rows_from_payload(payload: Any) -> Rows:
    """Every row a generated payload implies, by table and natural-key instant.

    Corrupt payloads (broken structure, text where numbers belong) imply no rows at all.
    """
    rows: Rows = {name: {} for name in METRIC_TABLES}
    if not isinstance(payload, dict) or not isinstance(payload.get("data"), dict):
        return rows
    data = payload["data"]
    metrics = data.get("metrics") or []
    if not isinstance(metrics, list) or not all(isinstance(m, dict) for m in metrics):
        return rows
    for m in metrics:
        if m["name"] == "sleep_analysis":
            _sleep_metric(rows, m)
            continue
        for pt in m["data"]:
            _metric_point(rows, m["name"], m.get("units"), pt)
    for w in data.get("workouts") or []:
        _workout_row(rows, w)
    return rows


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _metric_point(rows: Rows, name: str, unit: str | None, pt: dict[str, Any]) -> None:
    source = pt.get("source")
    key = parse_date(pt["date"])
    if name == "heart_rate":
        if not all(_is_number(pt.get(f)) for f in ("Min", "Avg", "Max")):
            return
        values = {"heart_rate_min": pt["Min"], "heart_rate": pt["Avg"], "heart_rate_max": pt["Max"]}
        _put(rows, "heart_rate_metrics", key, {**values, "source_device": source})
    elif name == "blood_pressure":
        values = {"systolic": pt["systolic"], "diastolic": pt["diastolic"], "pulse": pt.get("pulse")}
        _put(rows, "blood_pressure_metrics", key, {**values, "source_device": source})
    elif not _is_number(pt.get("qty")):
        return  # the corrupt payloads' text quantities: rejected as non_numeric
    elif name in ("blood_pressure_systolic", "blood_pressure_diastolic"):
        column = name.removeprefix("blood_pressure_")
        _put(rows, "blood_pressure_metrics", key, {column: pt["qty"], "source_device": source})
    elif name in HEART_QTY_METRICS:
        _put(rows, "heart_rate_metrics", key, {HEART_QTY_METRICS[name]: pt["qty"], "source_device": source})
    elif name in ACTIVITY_METRICS:
        column, family = ACTIVITY_METRICS[name]
        factors = UNIT_FAMILIES.get(family)
        value = pt["qty"] * factors[unit] if factors and unit else pt["qty"]
        _put(rows, "activity_metrics", key, {column: value, "source_device": source})


def _sleep_metric(rows: Rows, metric: dict[str, Any]) -> None:
    """Aggregated points are one row each; unaggregated stages are grouped into sessions."""
    to_minutes = TIME_FACTORS[metric["units"]] if metric.get("units") else 60.0  # default: hours
    segments = []
    for pt in metric["data"]:
        if "startDate" in pt:
            segments.append(
                (parse_date(pt["startDate"]), parse_date(pt["endDate"]), pt["value"], pt.get("source"))
            )
            continue
        total = pt.get("totalSleep") if pt.get("totalSleep") is not None else pt.get("asleep")

        def minutes(field: str, pt: dict[str, Any] = pt) -> float | None:
            return pt[field] * to_minutes if pt.get(field) is not None else None

        in_bed = pt.get("inBed")
        _put(
            rows,
            "sleep_metrics",
            parse_date(pt.get("sleepStart") or pt["date"]),
            {
                "sleep_end": parse_date(pt["sleepEnd"]) if pt.get("sleepEnd") else None,
                "duration_minutes": total * to_minutes if total is not None else None,
                "deep_sleep_minutes": minutes("deep"),
                "rem_sleep_minutes": minutes("rem"),
                "light_sleep_minutes": minutes("core"),
                "awake_minutes": minutes("awake"),
                "efficiency": 100 * total / in_bed if total is not None and in_bed else None,
                "source_device": pt.get("source"),
            },
        )
    sessions: list[list[tuple[datetime, datetime, str, Any]]] = []
    latest_end = datetime.min.replace(tzinfo=UTC)
    for seg in sorted(segments, key=lambda s: s[0]):
        if not sessions or seg[0] > latest_end + timedelta(minutes=60):
            sessions.append([])
            latest_end = seg[1]
        sessions[-1].append(seg)
        latest_end = max(latest_end, seg[1])
    for session in sessions:
        start, end = session[0][0], max(s[1] for s in session)
        stage = {"Core": 0.0, "Deep": 0.0, "REM": 0.0, "Awake": 0.0, "Asleep": 0.0}
        for a, b, value, _ in session:
            if value in stage:  # In Bed only widens the session
                stage[value] += (b - a).total_seconds() / 60
        duration = stage["Core"] + stage["Deep"] + stage["REM"] + stage["Asleep"]
        span = (end - start).total_seconds() / 60
        _put(
            rows,
            "sleep_metrics",
            start,
            {
                "sleep_end": end,
                "duration_minutes": duration,
                "deep_sleep_minutes": stage["Deep"],
                "rem_sleep_minutes": stage["REM"],
                "light_sleep_minutes": stage["Core"],
                "awake_minutes": stage["Awake"],
                "efficiency": 100 * duration / span if span > 0 else None,
                "source_device": session[0][3],
            },
        )


def _qty(value: Any) -> Any:
    return value.get("qty") if isinstance(value, dict) else value


def _workout_row(rows: Rows, w: dict[str, Any]) -> None:
    if "activeEnergyBurned" in w:  # version 2: {qty, units} objects
        active, active_unit = _qty(w["activeEnergyBurned"]), w["activeEnergyBurned"].get("units")
        total_obj = w.get("totalEnergy") or {}
        total, total_unit = total_obj.get("qty"), total_obj.get("units")
        dist_obj = w.get("distance") or {}
        distance, distance_unit = dist_obj.get("qty"), dist_obj.get("units")
        hr = w.get("heartRate") or {}
        avg_hr = _qty(hr.get("avg")) if hr else _qty(w.get("avgHeartRate"))
        max_hr = _qty(hr.get("max")) if hr else _qty(w.get("maxHeartRate"))
    else:  # version 1: bare numbers and unit strings
        active, active_unit = w.get("activeEnergy"), w.get("activeEnergyUnits")
        total, total_unit = w.get("totalEnergy"), w.get("totalEnergyUnits")
        distance, distance_unit = w.get("distance"), w.get("distanceUnits")
        avg_hr, max_hr = w.get("avgHeartRate"), w.get("maxHeartRate")
    _put(
        rows,
        "workout_metrics",
        parse_date(w["start"]),
        {
            "workout_type": w["name"],
            "ended_at": parse_date(w["end"]),
            "total_energy_kcal": total * ENERGY_FACTORS[total_unit or "kcal"] if total is not None else None,
            "active_energy_kcal": active * ENERGY_FACTORS[active_unit or "kcal"]
            if active is not None
            else None,
            "distance_meters": distance * DISTANCE_FACTORS[distance_unit or "km"]
            if distance is not None
            else None,
            "avg_heart_rate": avg_hr,
            "max_heart_rate": max_hr,
            "source_device": w.get("source"),
        },
    )
