"""Realistic Health Auto Export payloads for the incident generator.

Every value is a pure function of (user, metric, instant), never of the payload or of the
incident's random stream, so two payloads of one user that overlap in time carry identical
points, and the same key is filled identically whichever payload inserted it. Times are whole
epoch minutes; grids (hourly activity, daily resting heart rate) follow the user's local time.

A payload holds ``data.metrics`` (heart rate, blood pressure, activity, sleep, and every metric
the user's :mod:`habits <recovery_lib.simulate.habits>` record, in the phone's units and, on some
phones, under an older spelling), ``data.workouts`` (:mod:`recovery_lib.simulate.workouts`) and
the data arrays (:mod:`recovery_lib.simulate.entries`).

    >>> profile = make_profile(0, "0d5f3c0e-0000-4000-8000-000000000000", random.Random(1))
    >>> payload = build_payload(profile, PayloadSpec(start=28_000_000, end=28_000_240, hr_step=5))
    >>> sorted(payload["data"])[:2]
    ['metrics', 'workouts']

The rows these payloads imply are computed by :mod:`recovery_lib.simulate.rows`; the users and
what a payload covers are :mod:`recovery_lib.simulate.profiles`.
"""

from __future__ import annotations

from datetime import timezone
from typing import Any

from recovery_lib import catalogue
from recovery_lib.catalogue.arrays import WORKOUT_SERIES
from recovery_lib.catalogue.model import FLOAT
from recovery_lib.simulate import habits
from recovery_lib.simulate import values as body
from recovery_lib.simulate.dates import fmt, zone
from recovery_lib.simulate.entries import entries
from recovery_lib.simulate.profiles import PayloadSpec, UserProfile
from recovery_lib.simulate.values import DAY
from recovery_lib.simulate.workouts import workout

# The activity metrics of the hourly grid (values.activity) and the unit kind each is shown in.
ACTIVITY_UNITS = {
    "active_energy": "energy", "apple_exercise_time": "time", "apple_stand_time": "time",
    "basal_energy_burned": "energy", "flights_climbed": "count", "step_count": "count",
    "walking_running_distance": "distance",
}

# ---------------------------------------------------------------------------------------------
# Payloads


def shown_name(p: UserProfile, name: str) -> str:
    """The spelling this user's app version uses for a catalogue metric (its own, or an older one)."""
    spec = catalogue.lookup(name)
    if not p.aliases or spec is None or not spec.aliases:
        return name
    return spec.aliases[(p.index // 2) % len(spec.aliases)]


def _metric(p: UserProfile, name: str, units: str, data: list[dict[str, Any]]) -> dict[str, Any]:
    return {"name": shown_name(p, name), "units": units, "data": data}


def _habit_metric(p: UserProfile, name: str, start: int, end: int, tz: timezone) -> dict[str, Any] | None:
    """A metric of the user's habits in the phone's units, or None when nothing was recorded."""
    units = habits.unit_of(p, name)
    spec = catalogue.lookup(name)
    kinds = {f.keys[0]: f for f in spec.fields if f.type == FLOAT} if spec else {}
    # Food and water are logged on the phone; everything else comes from the watch.
    source = p.phone if spec is not None and spec.table == "nutrition_metrics" else p.watch
    data = []
    for t, fields in habits.metric_points(p, name, start, end):
        point: dict[str, Any] = {}
        for key, value in fields.items():
            f = kinds.get(key)
            if f is not None and f.kind is not None:
                value = body.shown(value, f.kind, units, f.unit or "")  # type: ignore[arg-type]
            point[key] = value
        data.append({**point, "date": fmt(t, tz, clock12=p.clock12), "source": source})
    return _metric(p, name, units, data) if data else None


def build_payload(p: UserProfile, spec: PayloadSpec) -> dict[str, Any]:
    """The Health Auto Export JSON for ``spec`` (metrics sorted by name, as the app does)."""
    tz = zone(p.offset if spec.display_offset is None else spec.display_offset)
    start, end, clock12 = spec.start, spec.end, p.clock12

    def date(t: int) -> str:
        return fmt(t, tz, clock12=clock12)

    hours = list(body.grid(start, end, 60, p.offset))
    metrics: dict[str, dict[str, Any]] = {}

    hourly = {t: body.activity(p, t) for t in hours}
    units = {"energy": p.energy_unit, "time": p.time_unit, "distance": p.distance_unit, "count": "count"}
    for name, family in ACTIVITY_UNITS.items():
        data = [
            {"qty": values[name], "date": date(t), "source": p.activity_source}
            for t, values in hourly.items()
            if name in values
        ]
        if data:
            metrics[name] = _metric(p, name, units[family], data)

    metrics["heart_rate"] = _metric(p, "heart_rate", "count/min", [
        {**body.heart_rate(p, t), "date": date(t), "source": p.watch}
        for t in body.grid(start, end, spec.hr_step, p.offset)
    ])
    resting = []
    for t in body.grid(start, end, DAY, p.offset):
        r = body.rand(p.user_id, "resting_heart_rate", t)
        resting.append({"qty": round(p.hr_base - 3 + 6 * r[0], 1), "date": date(t), "source": p.watch})
    metrics["resting_heart_rate"] = _metric(p, "resting_heart_rate", "count/min", resting)
    if p.has_hrv:
        hrv = [
            {"qty": round(22 + 70 * body.rand(p.user_id, "hrv", t)[0], 3), "date": date(t), "source": p.watch}
            for t in body.hrv_times(p, start, end)
        ]
        metrics["heart_rate_variability"] = _metric(p, "heart_rate_variability", "ms", hrv)

    bp_times = body.bp_times(p, start, end) if p.bp_form != "none" else []
    if p.bp_form == "combined":
        data = []
        for t in bp_times:
            v = body.blood_pressure(p, t)
            point: dict[str, Any] = {"systolic": v["systolic"], "diastolic": v["diastolic"]}
            if p.bp_pulse:
                point["pulse"] = v["pulse"]
            data.append({**point, "date": date(t), "source": p.bp_device})
        metrics["blood_pressure"] = _metric(p, "blood_pressure", "mmHg", data)
    elif p.bp_form == "split":  # the older export: one metric per reading, matched by date
        for part in ("systolic", "diastolic"):
            data = [
                {"qty": body.blood_pressure(p, t)[part], "date": date(t), "source": p.bp_device}
                for t in bp_times
            ]
            metrics[f"blood_pressure_{part}"] = _metric(p, f"blood_pressure_{part}", "mmHg", data)

    for name in habits.habit_names(p):
        found = _habit_metric(p, name, start, end, tz)
        if found is not None:
            metrics[name] = found
    metrics["sleep_analysis"] = _metric(p, "sleep_analysis", "hr", _sleep_points(p, start, end, tz))
    data_: dict[str, Any] = {
        "metrics": sorted(metrics.values(), key=lambda m: m["name"]),
        "workouts": [workout(p, w, tz, clock12) for w in body.workouts(p, start, end)],
    }
    data_.update(entries(p, start, end, tz, clock12))
    return {"data": data_}


def points_per_hour(p: UserProfile, hr_step: int) -> float:
    """About how many points one hour of this user's export holds (to size payloads)."""
    rate = 60 / hr_step + 4 + 0.45 + 0.13 + (0.16 if p.has_flights else 0)
    rate += (3 / 24 if p.has_hrv else 0) + 1 / 24 + 0.8 / 24
    rate += {"combined": 1.1 / 24, "split": 2.2 / 24, "none": 0}[p.bp_form]
    rate += (22 if p.sleep_form == "unaggregated" else 1) / 24
    rate += habits.points_per_day(p) / 24
    # About 1.15 workouts a day of 55 minutes: version 2 sends 3 to 5 series and a route a minute.
    rate += 1.15 * (55 * 4.3 if p.workout_version == 2 else 8) / 24
    rate += {"clinic": 5.0, "athlete": 0.0, "wellness": 3.5}[p.kit] / 24  # the data arrays' entries
    return rate


def _sleep_points(p: UserProfile, start: int, end: int, tz: timezone) -> list[dict[str, Any]]:
    """The nights wholly inside [start, end) in this user's app version's sleep form."""
    points: list[dict[str, Any]] = []

    def date(t: int) -> str:
        return fmt(t, tz, clock12=p.clock12)

    for night in body.nights(p, start, end):
        if p.sleep_form == "unaggregated":
            for value, a, b in night.segments:
                if p.sleep_spelling == "InBed":  # app 6.6.2: no space, unclassified sleep as Unspecified
                    value = {"In Bed": "InBed", "Core": "Unspecified" if (a // 7) % 5 == 0 else "Core"}.get(
                        value, value)
                points.append({"startDate": date(a), "endDate": date(b), "value": value,
                               "qty": round((b - a) / 60, 4), "source": p.watch})
            continue
        minutes = {"Core": 0, "Deep": 0, "REM": 0, "Awake": 0}
        for value, a, b in night.segments:
            if value in minutes:
                minutes[value] += b - a
        stages = [s for s in night.segments if s[0] != "In Bed"]
        total = minutes["Core"] + minutes["Deep"] + minutes["REM"]
        point: dict[str, Any] = {
            "date": date(night.end - (night.end + p.offset) % DAY),  # the morning's local day
            "inBed": round((night.end - night.start) / 60, 4),
            "sleepStart": date(stages[0][1]),
            "sleepEnd": date(stages[-1][2]),
        }
        if p.sleep_form == "aggregated_legacy":  # before 6.6.2: asleep is the total, a source per part
            point.update({"asleep": round(total / 60, 4), "inBedStart": date(night.start),
                          "inBedEnd": date(night.end), "sleepSource": p.watch, "inBedSource": p.phone})
        else:
            point.update({"asleep": 0, "core": round(minutes["Core"] / 60, 4), "deep": round(minutes["Deep"] / 60, 4),
                          "rem": round(minutes["REM"] / 60, 4), "awake": round(minutes["Awake"] / 60, 4),
                          "inBedStart": date(night.start), "inBedEnd": date(night.end),
                          "source": f"{p.phone}|{p.watch}" if p.sleep_form == "aggregated_662" else p.watch})
            if p.sleep_form == "aggregated":
                point["totalSleep"] = round(total / 60, 4)
        points.append(point)
    return points


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
        steps = next(m for m in good if _canonical(m["name"]) == "step_count")
        return {"data": {"metrics": [steps, "heart_rate"]}}, (
            "payload rejected: invalid structure: data.metrics[1] must be an object"
        )
    # string_quantities: a locale bug wrote every quantity as text ("1 234", "72,5").
    metrics = []
    for m in good:
        if _canonical(m["name"]) in ("step_count", "active_energy", "resting_heart_rate", "heart_rate_variability"):
            data = [{**pt, "qty": f"{pt['qty']:,}".replace(",", " ").replace(".", ",")} for pt in m["data"]]
            metrics.append({**m, "data": data})
    return {"data": {"metrics": metrics, "workouts": []}}, (
        "validation failed: every point rejected: non-numeric value where a number belongs"
    )


def _canonical(name: str) -> str:
    spec = catalogue.lookup(name)
    return spec.name if spec else name


def _family_of_metric(name: object) -> str:
    spec = catalogue.lookup(name)
    return catalogue.TABLES[spec.table if spec else catalogue.GENERIC_TABLE].family


def points_by_family(payload: Any) -> dict[str, int]:
    """Data points per catalogue family, counted as the parser counts them: each metric point, each
    workout and each point of its series and route, each entry of a data array (none where the
    structure is broken)."""
    found: dict[str, int] = {}

    def add(family: str, n: int) -> None:
        if n:
            found[family] = found.get(family, 0) + n

    if not isinstance(payload, dict) or not isinstance(payload.get("data"), dict):
        return found
    for key, value in payload["data"].items():
        if not isinstance(value, list):
            continue
        if key == "metrics":
            for m in value:
                if isinstance(m, dict):
                    add(_family_of_metric(m.get("name")), len(m.get("data", [])))
        elif key == "workouts":
            family = catalogue.TABLES["workout_metrics"].family
            for w in value:
                add(family, 1 + sum(len(w[name]) for name in (*WORKOUT_SERIES, "route")
                                    if isinstance(w.get(name), list)))
        else:
            array = catalogue.ARRAYS.get(key)
            add(catalogue.TABLES[array.table if array and array.table else catalogue.GENERIC_TABLE].family,
                len(value))
    return found


def count_points(payload: Any) -> int:
    """Data points in a payload (see :func:`points_by_family`)."""
    return sum(points_by_family(payload).values())
