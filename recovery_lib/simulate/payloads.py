"""Realistic Health Auto Export payloads for the incident generator.

Every value is a pure function of (user, metric, instant), never of the payload or of the
incident's random stream, so two payloads of one user that overlap in time carry identical
points, and the same key is filled identically whichever payload inserted it. Times are whole
epoch minutes; grids (hourly activity, daily resting heart rate) follow the user's local time.

    >>> profile = make_profile(0, "0d5f3c0e-0000-4000-8000-000000000000", random.Random(1))
    >>> payload = build_payload(profile, PayloadSpec(start=28_000_000, end=28_000_240, hr_step=5))
    >>> len(payload["data"]["metrics"][0]["data"])   # active_energy: one point per hour
    4

The rows these payloads imply are computed by :mod:`recovery_lib.simulate.rows`; the users and
what a payload covers are :mod:`recovery_lib.simulate.profiles`.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import timedelta, timezone
from typing import Any

from recovery_lib.simulate import values as body
from recovery_lib.simulate.profiles import PayloadSpec, UserProfile
from recovery_lib.simulate.rows import ACTIVITY_METRICS
from recovery_lib.simulate.values import DAY

# ---------------------------------------------------------------------------------------------
# Payloads


def _metric(name: str, units: str, data: list[dict[str, Any]]) -> dict[str, Any]:
    return {"name": name, "units": units, "data": data}


def build_payload(p: UserProfile, spec: PayloadSpec) -> dict[str, Any]:
    """The Health Auto Export JSON for ``spec`` (metrics sorted by name, as the app does)."""
    tz = timezone(timedelta(minutes=p.offset if spec.display_offset is None else spec.display_offset))
    start, end = spec.start, spec.end
    hours = list(body.grid(start, end, 60, p.offset))
    metrics: dict[str, dict[str, Any]] = {}

    hourly = {t: body.activity(p, t) for t in hours}
    units = {"energy": p.energy_unit, "time": p.time_unit, "distance": p.distance_unit, "count": "count"}
    for name, (_, family) in ACTIVITY_METRICS.items():
        data = [
            {"qty": values[name], "date": body.fmt(t, tz), "source": p.activity_source}
            for t, values in hourly.items()
            if name in values
        ]
        if data:
            metrics[name] = _metric(name, units[family], data)

    metrics["heart_rate"] = _metric(
        "heart_rate",
        "count/min",
        [
            {**body.heart_rate(p, t), "date": body.fmt(t, tz), "source": p.watch}
            for t in body.grid(start, end, spec.hr_step, p.offset)
        ],
    )
    resting = []
    for t in body.grid(start, end, DAY, p.offset):
        r = body.rand(p.user_id, "resting_heart_rate", t)
        resting.append({"qty": round(p.hr_base - 3 + 6 * r[0], 1), "date": body.fmt(t, tz), "source": p.watch})
    metrics["resting_heart_rate"] = _metric("resting_heart_rate", "count/min", resting)
    if p.has_hrv:
        hrv = [
            {"qty": round(22 + 70 * body.rand(p.user_id, "hrv", t)[0], 3), "date": body.fmt(t, tz), "source": p.watch}
            for t in body.hrv_times(p, start, end)
        ]
        metrics["heart_rate_variability"] = _metric("heart_rate_variability", "ms", hrv)

    bp_times = body.bp_times(p, start, end) if p.bp_form != "none" else []
    if p.bp_form == "combined":
        data = []
        for t in bp_times:
            v = body.blood_pressure(p, t)
            point: dict[str, Any] = {"systolic": v["systolic"], "diastolic": v["diastolic"]}
            if p.bp_pulse:
                point["pulse"] = v["pulse"]
            data.append({**point, "date": body.fmt(t, tz), "source": p.bp_device})
        metrics["blood_pressure"] = _metric("blood_pressure", "mmHg", data)
    elif p.bp_form == "split":  # the older export: one metric per reading, matched by date
        for part in ("systolic", "diastolic"):
            data = [
                {"qty": body.blood_pressure(p, t)[part], "date": body.fmt(t, tz), "source": p.bp_device}
                for t in bp_times
            ]
            metrics[f"blood_pressure_{part}"] = _metric(f"blood_pressure_{part}", "mmHg", data)

    metrics["sleep_analysis"] = _metric("sleep_analysis", "hr", _sleep_points(p, start, end, tz))
    workouts = [_workout(p, w, tz) for w in body.workouts(p, start, end)]
    return {"data": {"metrics": [metrics[k] for k in sorted(metrics)], "workouts": workouts}}


def _sleep_points(p: UserProfile, start: int, end: int, tz: timezone) -> list[dict[str, Any]]:
    points: list[dict[str, Any]] = []
    for night in body.nights(p, start, end):
        if p.sleep_form == "unaggregated":
            for value, a, b in night.segments:
                qty = round((b - a) / 60, 4)
                points.append(
                    {
                        "startDate": body.fmt(a, tz),
                        "endDate": body.fmt(b, tz),
                        "value": value,
                        "qty": qty,
                        "source": p.watch,
                    }
                )
            continue
        minutes = {"Core": 0, "Deep": 0, "REM": 0, "Awake": 0}
        for value, a, b in night.segments:
            if value in minutes:
                minutes[value] += b - a
        stages = [s for s in night.segments if s[0] != "In Bed"]
        total = minutes["Core"] + minutes["Deep"] + minutes["REM"]
        points.append(
            {
                "date": body.fmt(night.end - (night.end + p.offset) % DAY, tz),  # the morning's local day
                "totalSleep": round(total / 60, 4),
                "asleep": 0,
                "core": round(minutes["Core"] / 60, 4),
                "deep": round(minutes["Deep"] / 60, 4),
                "rem": round(minutes["REM"] / 60, 4),
                "awake": round(minutes["Awake"] / 60, 4),
                "inBed": round((night.end - night.start) / 60, 4),
                "sleepStart": body.fmt(stages[0][1], tz),
                "sleepEnd": body.fmt(stages[-1][2], tz),
                "inBedStart": body.fmt(night.start, tz),
                "inBedEnd": body.fmt(night.end, tz),
                "source": p.watch,
            }
        )
    return points


def _workout(p: UserProfile, w: tuple[int, int, str, float], tz: timezone) -> dict[str, Any]:
    begin, finish, name, speed = w
    r = body.rand(p.user_id, "workout", begin)
    minutes = finish - begin
    active = minutes * (5 + 7 * r[1])
    total = active + minutes * 1.2
    km = round(minutes * speed * (0.85 + 0.3 * r[2]), 3)
    avg_hr = round(104 + 52 * r[2], 1)
    max_hr = round(avg_hr + 10 + 28 * r[3])
    e_unit, d_unit = p.energy_unit, p.distance_unit
    if p.workout_version == 1:
        flat: dict[str, Any] = {
            "name": name,
            "start": body.fmt(begin, tz),
            "end": body.fmt(finish, tz),
            "duration": minutes * 60,
            "activeEnergy": body.convert(active, e_unit, "energy"),
            "activeEnergyUnits": e_unit,
            "totalEnergy": body.convert(total, e_unit, "energy"),
            "totalEnergyUnits": e_unit,
            "avgHeartRate": avg_hr,
            "maxHeartRate": max_hr,
        }
        if speed:
            flat["distance"] = body.convert(km * 1000, d_unit, "distance")
            flat["distanceUnits"] = d_unit
        return flat
    obj: dict[str, Any] = {
        "id": str(
            uuid.UUID(bytes=hashlib.blake2b(f"{p.user_id}|id|{begin}".encode(), digest_size=16).digest())
        ),
        "name": name,
        "start": body.fmt(begin, tz),
        "end": body.fmt(finish, tz),
        "duration": minutes * 60,
        "activeEnergyBurned": {"qty": body.convert(active, e_unit, "energy"), "units": e_unit},
    }
    if r[3] < 0.6:
        obj["totalEnergy"] = {"qty": body.convert(total, e_unit, "energy"), "units": e_unit}
    if speed:
        obj["distance"] = {"qty": body.convert(km * 1000, d_unit, "distance"), "units": d_unit}
    if p.workout_hr_object:
        obj["heartRate"] = {
            "min": {"qty": round(avg_hr - 25), "units": "bpm"},
            "avg": {"qty": avg_hr, "units": "bpm"},
            "max": {"qty": max_hr, "units": "bpm"},
        }
    else:
        obj["avgHeartRate"] = {"qty": avg_hr, "units": "bpm"}
        obj["maxHeartRate"] = {"qty": max_hr, "units": "bpm"}
    return obj


CORRUPT_VARIANTS: tuple[tuple[str, str], ...] = (
    ("invalid_structure", "metrics_not_a_list"),
    ("non_numeric", "string_quantities"),
    ("invalid_structure", "data_is_a_list"),
    ("invalid_structure", "string_scalar"),
    ("empty_payload", "empty_lists"),
    ("invalid_structure", "metric_not_an_object"),
)


def corrupt_payload(variant: str, p: UserProfile, spec: PayloadSpec) -> tuple[Any, str]:
    """A payload that can never become rows, and the error the original tool recorded."""
    if variant == "metrics_not_a_list":
        return {"data": {"metrics": "not-a-list", "workouts": []}}, (
            "payload rejected: invalid structure: data.metrics must be a list"
        )
    if variant == "data_is_a_list":
        return {"data": []}, "payload rejected: invalid structure: data must be an object"
    if variant == "string_scalar":
        return "Health Auto Export: automation failed", (
            "payload rejected: invalid structure: expected a JSON object at the top level, got a string"
        )
    if variant == "empty_lists":
        return {
            "data": {"metrics": [], "workouts": []}
        }, "validation failed: payload holds no metrics or workouts"
    good = build_payload(p, spec)["data"]["metrics"]
    if variant == "metric_not_an_object":
        steps = next(m for m in good if m["name"] == "step_count")
        return {"data": {"metrics": [steps, "heart_rate"]}}, (
            "payload rejected: invalid structure: data.metrics[1] must be an object"
        )
    # string_quantities: a locale bug wrote every quantity as text ("1 234", "72,5").
    metrics = []
    for m in good:
        if m["name"] in ("step_count", "active_energy", "resting_heart_rate", "heart_rate_variability"):
            data = [{**pt, "qty": f"{pt['qty']:,}".replace(",", " ").replace(".", ",")} for pt in m["data"]]
            metrics.append({**m, "data": data})
    return {"data": {"metrics": metrics, "workouts": []}}, (
        "validation failed: every point rejected: non-numeric value where a number belongs"
    )


def count_points(payload: Any) -> int:
    """Data points in a payload: metric points plus workouts (0 where the structure is broken)."""
    if not isinstance(payload, dict) or not isinstance(payload.get("data"), dict):
        return 0
    data = payload["data"]
    total = len(data["workouts"]) if isinstance(data.get("workouts"), list) else 0
    if isinstance(data.get("metrics"), list):
        total += sum(len(m["data"]) for m in data["metrics"] if isinstance(m, dict))
    return total
