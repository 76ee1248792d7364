"""What each generated user's body did: deterministic values of (user, metric, instant).

Every value is a pure function of (user, metric, instant), never of the payload or of the
incident's random stream, so two payloads of one user that overlap in time carry identical
points, and the same key is filled identically whichever payload inserted it. Times are whole
epoch minutes; grids (hourly activity, daily resting heart rate) follow the user's local time.
:mod:`recovery_lib.simulate.payloads` writes these values in the exporter's JSON shapes.

    >>> heart_rate(profile, 28_000_000)["Avg"]
    63.0
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from recovery_lib.catalogue.units import conversion
from recovery_lib.simulate.profiles import UserProfile

DAY = 1440  # minutes
# (name, km per minute): what anyone records
WORKOUT_TYPES = (
    ("Outdoor Run", 0.16),
    ("Outdoor Walk", 0.09),
    ("Outdoor Cycling", 0.38),
    ("Hiking", 0.07),
    ("Traditional Strength Training", 0.0),
    ("Yoga", 0.0),
    ("High Intensity Interval Training", 0.0),
)
# and what athletes also do (the sports whose metrics only they send)
ATHLETE_TYPES = (*WORKOUT_TYPES, ("Pool Swim", 0.035), ("Downhill Skiing", 0.3), ("Underwater Diving", 0.0))
OUTDOOR = frozenset({"Outdoor Run", "Outdoor Walk", "Outdoor Cycling", "Hiking", "Downhill Skiing"})

def rand(user_id: str, metric: str, t: int) -> tuple[float, float, float, float]:
    """Four uniforms in [0, 1) that depend only on (user, metric, instant)."""
    digest = hashlib.blake2b(f"{user_id}|{metric}|{t}".encode(), digest_size=16).digest()
    return tuple(x / 2**32 for x in struct.unpack(">4I", digest))  # type: ignore[return-value]


def local_hour(t: int, offset: int) -> int:
    return ((t + offset) // 60) % 24


def grid(start: int, end: int, step: int, offset: int, phase: int = 0) -> range:
    """Instants in [start, end) whose local time is ``phase`` modulo ``step`` minutes."""
    first = start + ((phase - start - offset) % step)
    return range(first, end, step)


def shown(value: float, kind: str | None, unit: str, column_unit: str) -> float:
    """A value in the column's unit as the phone shows it in ``unit`` (the conversion's inverse), rounded."""
    if kind is not None:
        found = conversion(kind, unit, column_unit)
        assert found is not None, (kind, unit)
        scale, offset = found
        value = (value - offset) / scale
    return round(value, 4) if abs(value) >= 0.1 else float(f"{value:.4g}")


def heart_rate(p: UserProfile, t: int) -> dict[str, float]:
    r = rand(p.user_id, "heart_rate", t)
    h = local_hour(t, p.offset)
    avg = p.hr_base - 5 + 7 * r[0] if h < 6 else p.hr_base + 6 + 24 * r[0] ** 2
    if r[1] > 0.985:  # a climb of stairs, a sprint for the bus
        avg += 35
    avg = round(avg, 2)
    return {"Min": round(avg - 1 - 8 * r[2]), "Avg": avg, "Max": round(avg + 1 + 16 * r[3])}


def activity(p: UserProfile, t: int) -> dict[str, float]:
    """Every activity metric of the local hour starting at ``t`` (absent ones left out)."""
    h = local_hour(t, p.offset)
    day = 7 <= h < 22
    r = rand(p.user_id, "step_count", t)
    steps = int(150 + 2200 * r[0] ** 2) if day else (int(60 * r[0]) if r[1] > 0.7 else 0)
    km = steps * p.stride_km
    active = steps * 0.042 + (4 + 22 * r[2] if day else 1 + 2 * r[2])
    out: dict[str, float] = {
        "step_count": steps,
        "walking_running_distance": shown(km * 1000, "length", p.distance_unit, "m"),
        "active_energy": shown(active, "energy", p.energy_unit, "kcal"),
        "basal_energy_burned": shown(61 + 15 * r[3], "energy", p.energy_unit, "kcal"),
    }
    f = rand(p.user_id, "flights_climbed", t)
    if p.has_flights and day and f[0] > 0.75:
        out["flights_climbed"] = int(1 + 9 * f[1])
    e = rand(p.user_id, "apple_exercise_time", t)
    if day and e[0] > 0.8:
        out["apple_exercise_time"] = shown(int(1 + 45 * e[1]), "time", p.time_unit, "min")
    s = rand(p.user_id, "apple_stand_time", t)
    if day and s[0] > 0.3:
        out["apple_stand_time"] = shown(int(1 + 14 * s[1]), "time", p.time_unit, "min")
    return out


def daily(start: int, end: int, offset: int) -> range:
    """Local day numbers that may hold an instant of [start, end) (one day of slack each side)."""
    return range((start + offset) // DAY - 1, (end + offset) // DAY + 1)


def hrv_times(p: UserProfile, start: int, end: int) -> list[int]:
    times: set[int] = set()
    for d in daily(start, end, p.offset):
        count = 2 + int(3 * rand(p.user_id, "hrv_count", d)[0])
        for i in range(count):
            # Multiples of 5 minutes: they land on the heart-rate grid and merge into its rows.
            times.add(d * DAY - p.offset + 5 * int(288 * rand(p.user_id, "hrv_time", d * 8 + i)[0]))
    return sorted(t for t in times if start <= t < end)


def bp_times(p: UserProfile, start: int, end: int) -> list[int]:
    times = []
    for d in daily(start, end, p.offset):
        r = rand(p.user_id, "bp_times", d)
        base = d * DAY - p.offset
        if r[0] < 0.8:
            times.append(base + 7 * 60 + 5 * int(12 * r[1]))
        if r[2] < 0.3:
            times.append(base + 20 * 60 + 5 * int(24 * r[3]))
    return sorted(t for t in times if start <= t < end)


def blood_pressure(p: UserProfile, t: int) -> dict[str, int]:
    r = rand(p.user_id, "blood_pressure", t)
    systolic = int(106 + 32 * r[0])
    return {"systolic": systolic, "diastolic": int(64 + 24 * r[1]), "pulse": int(55 + 30 * r[2])}


@dataclass(frozen=True)
class Night:
    start: int  # first start of the session (In Bed, or the first stage)
    end: int
    segments: tuple[tuple[str, int, int], ...]  # (value, start, end), In Bed first when present


def night_of(p: UserProfile, d: int) -> Night:
    """The sleep that begins on local day ``d`` (22:00 to 00:30) as stage segments."""
    r = rand(p.user_id, "sleep", d)
    in_bed = d * DAY - p.offset + 22 * 60 + int(150 * r[0])
    t = in_bed + 5 + int(20 * r[1])
    target = 330 + int(170 * r[2])
    asleep, i, stages = 0, 0, []
    while asleep < target:
        s = rand(p.user_id, "sleep_seg", in_bed * 100 + i)
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
        return Night(in_bed, end, (("In Bed", in_bed, end), *stages))
    return Night(stages[0][1], stages[-1][2], tuple(stages))


def nights(p: UserProfile, start: int, end: int) -> Iterator[Night]:
    """Whole sessions only: a payload never carries half a night."""
    for d in daily(start, end, p.offset):
        night = night_of(p, d)
        if start <= night.start and night.end <= end:
            yield night


def workouts(p: UserProfile, start: int, end: int) -> Iterator[tuple[int, int, str, float]]:
    """(start, end, name, km per minute) of the workouts wholly inside [start, end)."""
    types = ATHLETE_TYPES if p.kit == "athlete" else WORKOUT_TYPES
    for d in daily(start, end, p.offset):
        r = rand(p.user_id, "workouts", d)
        base = d * DAY - p.offset
        slots = []
        if r[0] < 0.55:
            slots.append(base + 6 * 60 + 5 * int(24 * r[1]))
        if r[0] > 0.4:
            slots.append(base + 17 * 60 + 30 + 5 * int(30 * r[2]))
        for k, begin in enumerate(slots):
            name, speed = types[int(len(types) * ((r[3] + 0.37 * k) % 1))]
            w = rand(p.user_id, "workout", begin)
            finish = begin + 20 + int(70 * w[0])
            if start <= begin and finish <= end:
                yield begin, finish, name, speed
