"""Realistic Health Auto Export payloads for the incident generator.

Every value is a pure function of (user, metric, instant), never of the payload or of the
incident's random stream, so two payloads of one user that overlap in time carry identical
points, and the same key is filled identically whichever payload inserted it. Times are whole
epoch minutes; grids (hourly activity, daily resting heart rate) follow the user's local time.

    >>> profile = make_profile(0, "0d5f3c0e-0000-4000-8000-000000000000", random.Random(1))
    >>> payload = build_payload(profile, PayloadSpec(start=28_000_000, end=28_000_240, hr_step=5))
    >>> len(payload["data"]["metrics"][0]["data"])   # active_energy: one point per hour
    4

The rows these payloads imply are computed by :mod:`recovery_lib.simulate_rows`.
"""

from __future__ import annotations

import hashlib
import random
import struct
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from recovery_lib.simulate_rows import ACTIVITY_METRICS, UNIT_FAMILIES

DATE_FORMAT = "%Y-%m-%d %H:%M:%S %z"  # the documented yyyy-MM-dd HH:mm:ss Z
DAY = 1440  # minutes

# Who the users are: unicode in names is deliberate (sources are stored as text).
_FIRST_NAMES = ("Émilie", "Jürgen", "Zoë", "Siobhán", "Mateo", "Ana", "Kenji", "Olivia", "Björn", "Priya")
_OFFSETS = (-480, 60, 0, -300, 330, 540, -420, 600, -180, 120)  # minutes east of UTC
_DST_ZONES = {-480, -420, -300, 0, 60, 120}  # zones whose phones switch offset by an hour
_BP_DEVICES = ("OMRON connect", "Withings BPM Connect", "QardioArm")
_WORKOUT_TYPES = (
    ("Outdoor Run", 0.16),
    ("Outdoor Walk", 0.09),
    ("Outdoor Cycling", 0.38),
    ("Hiking", 0.07),
    ("Traditional Strength Training", 0.0),
    ("Yoga", 0.0),
    ("High Intensity Interval Training", 0.0),
)


@dataclass(frozen=True)
class UserProfile:
    """How one user's phone and watch export: fixed for all their payloads."""

    index: int
    user_id: str
    email: str
    offset: int  # minutes east of UTC; grids follow this local time
    dst_offset: int | None  # an alternative display offset (summer time), or None
    hr_base: float
    watch: str
    phone: str
    activity_source: str
    bp_device: str
    sleep_form: str  # 'aggregated' or 'unaggregated'
    bp_form: str  # 'combined', 'split' or 'none'
    bp_pulse: bool
    workout_version: int  # 1 (flat fields) or 2 ({qty, units} objects)
    workout_hr_object: bool  # v2: heartRate {avg, max, min} rather than avgHeartRate/maxHeartRate
    distance_unit: str
    energy_unit: str
    time_unit: str
    stride_km: float
    has_hrv: bool
    has_flights: bool


@dataclass(frozen=True)
class PayloadSpec:
    """What one payload covers: epoch minutes [start, end), heart-rate spacing, shown offset."""

    start: int
    end: int
    hr_step: int = 5
    display_offset: int | None = None  # None: the user's own offset


def email_for(index: int, users: int) -> str:
    """``user07@example.test``: zero-padded to the width of the largest index."""
    return f"user{index:0{max(2, len(str(users - 1)))}d}@example.test"


def make_profile(index: int, user_id: str, rng: random.Random, *, users: int = 10) -> UserProfile:
    """One user's export settings; the forms (sleep, blood pressure, workouts) cycle by index so
    that even three users cover every shape."""
    name = _FIRST_NAMES[index % len(_FIRST_NAMES)]
    offset = _OFFSETS[(index + rng.randrange(len(_OFFSETS))) % len(_OFFSETS)]
    # The first user's watch always carries a unicode name: sources are stored as text.
    watch = f"{name}’s Apple Watch" if index == 0 else rng.choice((f"{name}’s Apple Watch", "Apple Watch"))
    phone = rng.choice((f"{name}’s iPhone", "iPhone"))
    return UserProfile(
        index=index,
        user_id=user_id,
        email=email_for(index, users),
        offset=offset,
        dst_offset=offset + 60 if offset in _DST_ZONES else None,
        hr_base=round(rng.uniform(54, 72), 1),
        watch=watch,
        phone=phone,
        activity_source=rng.choice((watch, phone)),
        bp_device=rng.choice(_BP_DEVICES),
        sleep_form=("aggregated", "unaggregated")[index % 2],
        bp_form=("combined", "split", "none")[index % 3],
        bp_pulse=rng.random() < 0.5,
        workout_version=(2, 1)[index % 2],
        workout_hr_object=rng.random() < 0.6,
        distance_unit=("km", "mi")[(index // 2) % 2],
        energy_unit=("kcal", "kJ", "kcal")[index % 3],
        time_unit=("min", "min", "hr")[(index + 1) % 3],
        stride_km=round(rng.uniform(0.00068, 0.00082), 6),
        has_hrv=rng.random() < 0.85,
        has_flights=rng.random() < 0.8,
    )


def points_per_hour(profile: UserProfile, hr_step: int) -> float:
    """About how many points one hour of this user's export holds (to size payloads)."""
    rate = 60 / hr_step + 4 + 0.45 + 0.13 + (0.16 if profile.has_flights else 0)
    rate += (3 / 24 if profile.has_hrv else 0) + 1 / 24 + 0.8 / 24
    rate += {"combined": 1.1 / 24, "split": 2.2 / 24, "none": 0}[profile.bp_form]
    rate += (1 if profile.sleep_form == "aggregated" else 22) / 24
    return rate


# ---------------------------------------------------------------------------------------------
# Deterministic values


def _rand(user_id: str, metric: str, t: int) -> tuple[float, float, float, float]:
    """Four uniforms in [0, 1) that depend only on (user, metric, instant)."""
    digest = hashlib.blake2b(f"{user_id}|{metric}|{t}".encode(), digest_size=16).digest()
    return tuple(x / 2**32 for x in struct.unpack(">4I", digest))  # type: ignore[return-value]


def _local_hour(t: int, offset: int) -> int:
    return ((t + offset) // 60) % 24


def _grid(start: int, end: int, step: int, offset: int, phase: int = 0) -> range:
    """Instants in [start, end) whose local time is ``phase`` modulo ``step`` minutes."""
    first = start + ((phase - start - offset) % step)
    return range(first, end, step)


def _fmt(t: int, tz: timezone) -> str:
    return datetime.fromtimestamp(t * 60, tz).strftime(DATE_FORMAT)


def _convert(value: float, unit: str, family: str) -> float:
    """A value in the table's unit expressed in ``unit`` (the inverse of the doc's factors)."""
    factors = UNIT_FAMILIES.get(family)
    if factors is None:
        return value
    return round(value / factors[unit], 4)


def _heart_rate(p: UserProfile, t: int) -> dict[str, float]:
    r = _rand(p.user_id, "heart_rate", t)
    h = _local_hour(t, p.offset)
    avg = p.hr_base - 5 + 7 * r[0] if h < 6 else p.hr_base + 6 + 24 * r[0] ** 2
    if r[1] > 0.985:  # a climb of stairs, a sprint for the bus
        avg += 35
    avg = round(avg, 2)
    return {"Min": round(avg - 1 - 8 * r[2]), "Avg": avg, "Max": round(avg + 1 + 16 * r[3])}


def _activity(p: UserProfile, t: int) -> dict[str, float]:
    """Every activity metric of the local hour starting at ``t`` (absent ones left out)."""
    h = _local_hour(t, p.offset)
    day = 7 <= h < 22
    r = _rand(p.user_id, "step_count", t)
    steps = int(150 + 2200 * r[0] ** 2) if day else (int(60 * r[0]) if r[1] > 0.7 else 0)
    km = steps * p.stride_km
    active = steps * 0.042 + (4 + 22 * r[2] if day else 1 + 2 * r[2])
    out: dict[str, float] = {
        "step_count": steps,
        "walking_running_distance": _convert(km * 1000, p.distance_unit, "distance"),
        "active_energy": _convert(active, p.energy_unit, "energy"),
        "basal_energy_burned": _convert(61 + 15 * r[3], p.energy_unit, "energy"),
    }
    f = _rand(p.user_id, "flights_climbed", t)
    if p.has_flights and day and f[0] > 0.75:
        out["flights_climbed"] = int(1 + 9 * f[1])
    e = _rand(p.user_id, "apple_exercise_time", t)
    if day and e[0] > 0.8:
        out["apple_exercise_time"] = _convert(int(1 + 45 * e[1]), p.time_unit, "time")
    s = _rand(p.user_id, "apple_stand_time", t)
    if day and s[0] > 0.3:
        out["apple_stand_time"] = _convert(int(1 + 14 * s[1]), p.time_unit, "time")
    return out


def _daily(start: int, end: int, offset: int) -> range:
    """Local day numbers that may hold an instant of [start, end) (one day of slack each side)."""
    return range((start + offset) // DAY - 1, (end + offset) // DAY + 1)


def _hrv_times(p: UserProfile, start: int, end: int) -> list[int]:
    times: set[int] = set()
    for d in _daily(start, end, p.offset):
        count = 2 + int(3 * _rand(p.user_id, "hrv_count", d)[0])
        for i in range(count):
            # Multiples of 5 minutes: they land on the heart-rate grid and merge into its rows.
            times.add(d * DAY - p.offset + 5 * int(288 * _rand(p.user_id, "hrv_time", d * 8 + i)[0]))
    return sorted(t for t in times if start <= t < end)


def _bp_times(p: UserProfile, start: int, end: int) -> list[int]:
    times = []
    for d in _daily(start, end, p.offset):
        r = _rand(p.user_id, "bp_times", d)
        base = d * DAY - p.offset
        if r[0] < 0.8:
            times.append(base + 7 * 60 + 5 * int(12 * r[1]))
        if r[2] < 0.3:
            times.append(base + 20 * 60 + 5 * int(24 * r[3]))
    return sorted(t for t in times if start <= t < end)


def _blood_pressure(p: UserProfile, t: int) -> dict[str, int]:
    r = _rand(p.user_id, "blood_pressure", t)
    systolic = int(106 + 32 * r[0])
    return {"systolic": systolic, "diastolic": int(64 + 24 * r[1]), "pulse": int(55 + 30 * r[2])}


@dataclass(frozen=True)
class _Night:
    start: int  # first start of the session (In Bed, or the first stage)
    end: int
    segments: tuple[tuple[str, int, int], ...]  # (value, start, end), In Bed first when present


def _night(p: UserProfile, d: int) -> _Night:
    """The sleep that begins on local day ``d`` (22:00 to 00:30) as stage segments."""
    r = _rand(p.user_id, "sleep", d)
    in_bed = d * DAY - p.offset + 22 * 60 + int(150 * r[0])
    t = in_bed + 5 + int(20 * r[1])
    target = 330 + int(170 * r[2])
    asleep, i, stages = 0, 0, []
    while asleep < target:
        s = _rand(p.user_id, "sleep_seg", in_bed * 100 + i)
        late = asleep > target / 2
        cycle = (
            ("Core", 18 + int(30 * s[0])),
            ("Deep", (6 if late else 14) + int(22 * s[1])),
            ("Core", 8 + int(20 * s[2])),
            ("REM", (16 if late else 8) + int(22 * s[3])),
        )
        for value, minutes in cycle:
            stages.append((value, t, t + minutes))
            t += minutes
            asleep += minutes
        if s[3] > 0.55:  # a short wake-up between cycles
            minutes = 2 + int(12 * s[0])
            stages.append(("Awake", t, t + minutes))
            t += minutes
        i += 1
    end = t + int(10 * r[3])
    if r[3] < 0.7:  # most watches also record the time in bed
        return _Night(in_bed, end, (("In Bed", in_bed, end), *stages))
    return _Night(stages[0][1], stages[-1][2], tuple(stages))


def _nights(p: UserProfile, start: int, end: int) -> Iterator[_Night]:
    """Whole sessions only: a payload never carries half a night."""
    for d in _daily(start, end, p.offset):
        night = _night(p, d)
        if start <= night.start and night.end <= end:
            yield night


def _workouts(p: UserProfile, start: int, end: int) -> Iterator[tuple[int, int, str, float]]:
    """(start, end, name, km per minute) of the workouts wholly inside [start, end)."""
    for d in _daily(start, end, p.offset):
        r = _rand(p.user_id, "workouts", d)
        base = d * DAY - p.offset
        slots = []
        if r[0] < 0.55:
            slots.append(base + 6 * 60 + 5 * int(24 * r[1]))
        if r[0] > 0.4:
            slots.append(base + 17 * 60 + 30 + 5 * int(30 * r[2]))
        for k, begin in enumerate(slots):
            name, speed = _WORKOUT_TYPES[int(len(_WORKOUT_TYPES) * ((r[3] + 0.37 * k) % 1))]
            w = _rand(p.user_id, "workout", begin)
            finish = begin + 20 + int(70 * w[0])
            if start <= begin and finish <= end:
                yield begin, finish, name, speed


# ---------------------------------------------------------------------------------------------
# Payloads


def _metric(name: str, units: str, data: list[dict[str, Any]]) -> dict[str, Any]:
    return {"name": name, "units": units, "data": data}


def build_payload(p: UserProfile, spec: PayloadSpec) -> dict[str, Any]:
    """The Health Auto Export JSON for ``spec`` (metrics sorted by name, as the app does)."""
    tz = timezone(timedelta(minutes=p.offset if spec.display_offset is None else spec.display_offset))
    start, end = spec.start, spec.end
    hours = list(_grid(start, end, 60, p.offset))
    metrics: dict[str, dict[str, Any]] = {}

    hourly = {t: _activity(p, t) for t in hours}
    units = {"energy": p.energy_unit, "time": p.time_unit, "distance": p.distance_unit, "count": "count"}
    for name, (_, family) in ACTIVITY_METRICS.items():
        data = [
            {"qty": values[name], "date": _fmt(t, tz), "source": p.activity_source}
            for t, values in hourly.items()
            if name in values
        ]
        if data:
            metrics[name] = _metric(name, units[family], data)

    metrics["heart_rate"] = _metric(
        "heart_rate",
        "count/min",
        [
            {**_heart_rate(p, t), "date": _fmt(t, tz), "source": p.watch}
            for t in _grid(start, end, spec.hr_step, p.offset)
        ],
    )
    resting = []
    for t in _grid(start, end, DAY, p.offset):
        r = _rand(p.user_id, "resting_heart_rate", t)
        resting.append({"qty": round(p.hr_base - 3 + 6 * r[0], 1), "date": _fmt(t, tz), "source": p.watch})
    metrics["resting_heart_rate"] = _metric("resting_heart_rate", "count/min", resting)
    if p.has_hrv:
        hrv = [
            {"qty": round(22 + 70 * _rand(p.user_id, "hrv", t)[0], 3), "date": _fmt(t, tz), "source": p.watch}
            for t in _hrv_times(p, start, end)
        ]
        metrics["heart_rate_variability"] = _metric("heart_rate_variability", "ms", hrv)

    bp_times = _bp_times(p, start, end) if p.bp_form != "none" else []
    if p.bp_form == "combined":
        data = []
        for t in bp_times:
            v = _blood_pressure(p, t)
            point: dict[str, Any] = {"systolic": v["systolic"], "diastolic": v["diastolic"]}
            if p.bp_pulse:
                point["pulse"] = v["pulse"]
            data.append({**point, "date": _fmt(t, tz), "source": p.bp_device})
        metrics["blood_pressure"] = _metric("blood_pressure", "mmHg", data)
    elif p.bp_form == "split":  # the older export: one metric per reading, matched by date
        for part in ("systolic", "diastolic"):
            data = [
                {"qty": _blood_pressure(p, t)[part], "date": _fmt(t, tz), "source": p.bp_device}
                for t in bp_times
            ]
            metrics[f"blood_pressure_{part}"] = _metric(f"blood_pressure_{part}", "mmHg", data)

    metrics["sleep_analysis"] = _metric("sleep_analysis", "hr", _sleep_points(p, start, end, tz))
    workouts = [_workout(p, w, tz) for w in _workouts(p, start, end)]
    return {"data": {"metrics": [metrics[k] for k in sorted(metrics)], "workouts": workouts}}


def _sleep_points(p: UserProfile, start: int, end: int, tz: timezone) -> list[dict[str, Any]]:
    points: list[dict[str, Any]] = []
    for night in _nights(p, start, end):
        if p.sleep_form == "unaggregated":
            for value, a, b in night.segments:
                qty = round((b - a) / 60, 4)
                points.append(
                    {
                        "startDate": _fmt(a, tz),
                        "endDate": _fmt(b, tz),
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
                "date": _fmt(night.end - (night.end + p.offset) % DAY, tz),  # the morning's local day
                "totalSleep": round(total / 60, 4),
                "asleep": 0,
                "core": round(minutes["Core"] / 60, 4),
                "deep": round(minutes["Deep"] / 60, 4),
                "rem": round(minutes["REM"] / 60, 4),
                "awake": round(minutes["Awake"] / 60, 4),
                "inBed": round((night.end - night.start) / 60, 4),
                "sleepStart": _fmt(stages[0][1], tz),
                "sleepEnd": _fmt(stages[-1][2], tz),
                "inBedStart": _fmt(night.start, tz),
                "inBedEnd": _fmt(night.end, tz),
                "source": p.watch,
            }
        )
    return points


def _workout(p: UserProfile, w: tuple[int, int, str, float], tz: timezone) -> dict[str, Any]:
    begin, finish, name, speed = w
    r = _rand(p.user_id, "workout", begin)
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
            "start": _fmt(begin, tz),
            "end": _fmt(finish, tz),
            "duration": minutes * 60,
            "activeEnergy": _convert(active, e_unit, "energy"),
            "activeEnergyUnits": e_unit,
            "totalEnergy": _convert(total, e_unit, "energy"),
            "totalEnergyUnits": e_unit,
            "avgHeartRate": avg_hr,
            "maxHeartRate": max_hr,
        }
        if speed:
            flat["distance"] = _convert(km * 1000, d_unit, "distance")
            flat["distanceUnits"] = d_unit
        return flat
    obj: dict[str, Any] = {
        "id": str(
            uuid.UUID(bytes=hashlib.blake2b(f"{p.user_id}|id|{begin}".encode(), digest_size=16).digest())
        ),
        "name": name,
        "start": _fmt(begin, tz),
        "end": _fmt(finish, tz),
        "duration": minutes * 60,
        "activeEnergyBurned": {"qty": _convert(active, e_unit, "energy"), "units": e_unit},
    }
    if r[3] < 0.6:
        obj["totalEnergy"] = {"qty": _convert(total, e_unit, "energy"), "units": e_unit}
    if speed:
        obj["distance"] = {"qty": _convert(km * 1000, d_unit, "distance"), "units": d_unit}
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


def epoch_minutes(moment: datetime) -> int:
    """Whole minutes since 1970 (UTC) of an aware datetime."""
    return int(moment.astimezone(UTC).timestamp()) // 60
