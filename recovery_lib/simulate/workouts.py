"""Workouts as the exporter writes them: version 2 with timed series and a GPS route, version 1 flat.

Version 2 (``{qty, units}`` objects) carries per-minute series (``heartRateData`` with
Min/Avg/Max, ``heartRateRecovery`` for three minutes after the end, ``activeEnergy``, and per
sport ``stepCount``, ``walkingAndRunningDistance``, ``cycling*``, ``swim*``, ``basalEnergy``
indoors) and, outdoors, a ``route`` of one point a minute. Version 1 is flat (bare numbers and
unit strings); a walk or hike recorded by the phone alone has heart rate 0, and a ride may carry
a route with the old ``lat``/``lon`` names. Every value is a pure function of (user, series,
minute), so overlapping payloads agree.

    >>> obj = workout(profile, (28_000_000, 28_000_045, "Outdoor Run", 0.16), zone(600), False)
    >>> len(obj["heartRateData"]), len(obj["route"])      # doctest: +SKIP
    (45, 45)
"""

from __future__ import annotations

import hashlib
import math
import uuid
from datetime import timezone
from typing import Any

from recovery_lib.simulate.dates import fmt
from recovery_lib.simulate.profiles import UserProfile
from recovery_lib.simulate.values import OUTDOOR, rand, shown

RECOVERY_MINUTES = 3
_ON_FOOT = frozenset({"Outdoor Run", "Outdoor Walk", "Hiking"})
_INDOOR = frozenset({"Traditional Strength Training", "Yoga", "High Intensity Interval Training"})
_PHONE_ONLY = frozenset({"Outdoor Walk", "Hiking"})  # version 1: recorded by the phone, no heart rate
# Where each user trains (latitude, longitude, altitude in m), by index.
_PLACES = ((52.52, 13.405, 34.0), (-33.87, 151.21, 20.0), (37.77, -122.42, 16.0), (48.86, 2.35, 35.0),
           (35.68, 139.69, 40.0))


def _totals(p: UserProfile, w: tuple[int, int, str, float]) -> tuple[float, float, float, float, float]:
    """(active kcal, total kcal, km, average and maximum heart rate) of a workout."""
    begin, finish, _, speed = w
    r = rand(p.user_id, "workout", begin)
    minutes = finish - begin
    active = minutes * (5 + 7 * r[1])
    avg_hr = round(104 + 52 * r[2], 1)
    return active, active + minutes * 1.2, round(minutes * speed * (0.85 + 0.3 * r[2]), 3), avg_hr, round(
        avg_hr + 10 + 28 * r[3])


def workout(p: UserProfile, w: tuple[int, int, str, float], tz: timezone, clock12: bool) -> dict[str, Any]:
    """The workout object of ``w`` = (start, end, name, km per minute) in this user's export version."""
    return _version_1(p, w, tz, clock12) if p.workout_version == 1 else _version_2(p, w, tz, clock12)


def _version_1(p: UserProfile, w: tuple[int, int, str, float], tz: timezone, clock12: bool) -> dict[str, Any]:
    begin, finish, name, speed = w
    active, total, km, avg_hr, max_hr = _totals(p, w)
    e_unit, d_unit = p.energy_unit, p.distance_unit
    phone_only = name in _PHONE_ONLY
    flat: dict[str, Any] = {
        "name": name,
        "start": fmt(begin, tz, clock12=clock12),
        "end": fmt(finish, tz, clock12=clock12),
        "duration": (finish - begin) * 60,
        "activeEnergy": shown(active, "energy", e_unit, "kcal"),
        "activeEnergyUnits": e_unit,
        "totalEnergy": shown(total, "energy", e_unit, "kcal"),
        "totalEnergyUnits": e_unit,
        # Without the watch the exporter writes 0 for "no heart rate".
        "avgHeartRate": 0 if phone_only else avg_hr,
        "maxHeartRate": 0 if phone_only else max_hr,
    }
    if speed:
        flat["distance"] = shown(km * 1000, "length", d_unit, "m")
        flat["distanceUnits"] = d_unit
    if name == "Outdoor Cycling":
        flat["route"] = [{**_place(p, begin, t, "lat", "lon"), "timestamp": fmt(t, tz, clock12=clock12)}
                         for t in range(begin, finish, 2)]
    return flat


def _place(p: UserProfile, begin: int, t: int, lat: str = "latitude", lon: str = "longitude") -> dict[str, float]:
    """Where the user is at minute ``t`` of the workout that began at ``begin`` (a loop around home)."""
    home_lat, home_lon, altitude = _PLACES[p.index % len(_PLACES)]
    angle = (t - begin) / 12
    r = rand(p.user_id, "route", t)
    return {lat: round(home_lat + 0.01 * math.sin(angle), 6), lon: round(home_lon + 0.01 * math.cos(angle), 6),
            "altitude": round(altitude + 12 * math.sin(angle / 2) + r[0], 2)}


def _route_point(p: UserProfile, begin: int, t: int, speed: float, tz: timezone, clock12: bool) -> dict[str, Any]:
    r = rand(p.user_id, "route", t)
    return {
        **_place(p, begin, t),
        "course": round((math.degrees((t - begin) / 12) + 90) % 360, 2),
        "courseAccuracy": round(5 + 20 * r[1], 2),
        "horizontalAccuracy": round(2 + 8 * r[2], 2),
        "verticalAccuracy": round(1 + 5 * r[3], 2),
        "speed": round(speed * 1000 / 60 * (0.8 + 0.4 * r[1]), 3),
        "speedAccuracy": round(0.2 + 0.5 * r[2], 3),
        "timestamp": fmt(t, tz, clock12=clock12),
    }


def _series(p: UserProfile, w: tuple[int, int, str, float], tz: timezone, clock12: bool) -> dict[str, list[Any]]:
    """The per-minute series of a version 2 workout."""
    begin, finish, name, speed = w
    source = p.watch
    e_unit, d_unit, s_unit = p.energy_unit, p.distance_unit, p.units["speed"]
    series: dict[str, list[Any]] = {"heartRateData": [], "heartRateRecovery": [], "activeEnergy": []}
    for t in range(begin, finish):
        r = rand(p.user_id, "workout_minute", t)
        date = fmt(t, tz, clock12=clock12)
        avg = round(98 + 70 * min(1.0, (t - begin + 3) / 12) * (0.8 + 0.2 * r[0]), 1)
        series["heartRateData"].append({"date": date, "Min": round(avg - 2 - 6 * r[1]), "Avg": avg,
                                        "Max": round(avg + 2 + 8 * r[2]), "units": "count/min", "source": source})
        kcal = 4 + 9 * r[3] if name not in _INDOOR else 3 + 5 * r[3]
        series["activeEnergy"].append({"date": date, "qty": shown(kcal, "energy", e_unit, "kcal"), "units": e_unit,
                                       "source": source})
        if name in _ON_FOOT:
            series.setdefault("stepCount", []).append(
                {"date": date, "qty": round(95 + 80 * r[1]), "units": "count", "source": source})
            series.setdefault("walkingAndRunningDistance", []).append(
                {"date": date, "qty": shown(speed * 1000 * (0.85 + 0.3 * r[2]), "length", d_unit, "m"),
                 "units": d_unit, "source": source})
        elif name == "Outdoor Cycling":
            metres = speed * 1000 * (0.8 + 0.4 * r[2])
            series.setdefault("cyclingDistance", []).append(
                {"date": date, "qty": shown(metres, "length", d_unit, "m"), "units": d_unit, "source": source})
            series.setdefault("cyclingCadence", []).append(
                {"date": date, "qty": round(72 + 20 * r[0]), "units": "count/min", "source": source})
            series.setdefault("cyclingPower", []).append(
                {"date": date, "qty": round(130 + 110 * r[1]), "units": "W", "source": source})
            series.setdefault("cyclingSpeed", []).append(
                {"date": date, "qty": shown(metres * 60 / 1000, "speed", s_unit, "km/h"), "units": s_unit,
                 "source": source})
        elif name == "Pool Swim":
            pool = p.units["pool"]
            series.setdefault("swimDistance", []).append(
                {"date": date, "qty": shown(25 + 25 * int(2 * r[1]), "length", pool, "m"), "units": pool,
                 "source": source})
            series.setdefault("swimStroke", []).append(
                {"date": date, "qty": round(18 + 14 * r[2]), "units": "count", "source": source})
        elif name in _INDOOR:
            series.setdefault("basalEnergy", []).append(
                {"date": date, "qty": shown(1.0 + 0.3 * r[2], "energy", e_unit, "kcal"), "units": e_unit,
                 "source": source})
    last = series["heartRateData"][-1]["Avg"]
    for k in range(1, RECOVERY_MINUTES + 1):
        t = finish + k
        r = rand(p.user_id, "workout_recovery", t)
        avg = round(last - 12 * k * (0.8 + 0.4 * r[0]), 1)
        series["heartRateRecovery"].append({"date": fmt(t, tz, clock12=clock12), "Min": round(avg - 3),
                                            "Avg": avg, "Max": round(avg + 3), "units": "count/min"})
    if name in OUTDOOR:
        series["route"] = [_route_point(p, begin, t, speed, tz, clock12) for t in range(begin, finish)]
    return series


def _version_2(p: UserProfile, w: tuple[int, int, str, float], tz: timezone, clock12: bool) -> dict[str, Any]:
    begin, finish, name, speed = w
    r = rand(p.user_id, "workout", begin)
    active, total, km, avg_hr, max_hr = _totals(p, w)
    e_unit, d_unit = p.energy_unit, p.distance_unit
    obj: dict[str, Any] = {
        "id": str(uuid.UUID(bytes=hashlib.blake2b(f"{p.user_id}|id|{begin}".encode(), digest_size=16).digest())),
        "name": name,
        "start": fmt(begin, tz, clock12=clock12),
        "end": fmt(finish, tz, clock12=clock12),
        "duration": (finish - begin) * 60,
        "location": "Outdoor" if name in OUTDOOR else "Indoor",
        "activeEnergyBurned": {"qty": shown(active, "energy", e_unit, "kcal"), "units": e_unit},
    }
    if r[3] < 0.6:
        obj["totalEnergy"] = {"qty": shown(total, "energy", e_unit, "kcal"), "units": e_unit}
    if speed:
        obj["distance"] = {"qty": shown(km * 1000, "length", d_unit, "m"), "units": d_unit}
    if p.workout_hr_object:
        obj["heartRate"] = {
            "min": {"qty": round(avg_hr - 25), "units": "bpm"},
            "avg": {"qty": avg_hr, "units": "bpm"},
            "max": {"qty": max_hr, "units": "bpm"},
        }
    else:
        obj["avgHeartRate"] = {"qty": avg_hr, "units": "bpm"}
        obj["maxHeartRate"] = {"qty": max_hr, "units": "bpm"}
    obj.update(_series(p, w, tz, clock12))
    return obj
