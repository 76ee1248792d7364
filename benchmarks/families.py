"""The benchmark payloads' other families: every table beside the original five gets its share of rows.

Written as text like :mod:`benchmarks.data` (no ``json.dumps`` of a tree) and counted by
construction: instants are distinct within a metric, and metrics that share a table and instant
(a smart scale's weight, BMI and body fat; a meal's nutrients) are one row. Per day, about 50
rows of tables the SQL fast path writes (body, temperature, respiratory, nutrition, environment,
audio, mindfulness, a fall now and then) and about 25 the parser writes (glucose, insulin, hygiene, state of mind,
cycle tracking, medications, symptoms, ECG, heart-rate notifications, an unknown metric name), plus
the series and route of version 2 workouts (:func:`workout_series`, about 90 rows a workout):
heart rate at one point a minute stays nearly 90% of the rows, as in real exports.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

DAY = 86_400
HOUR = 3_600
MINUTE = 60
ECG_SAMPLES = 512
_NUTRIENTS = (  # (name, units, low, high) per meal
    ("protein", "g", 15, 50), ("carbohydrates", "g", 30, 110), ("total_fat", "g", 12, 45), ("fiber", "g", 3, 12),
    ("dietary_sugar", "g", 5, 40), ("sodium", "mg", 400, 1300), ("caffeine", "mg", 0, 120),
    ("potassium", "mg", 400, 1100),
)


@dataclass
class Extra:
    """The other families of one payload: metrics (name -> units, points), arrays, rows per table."""

    metrics: dict[str, tuple[str, list[str]]] = field(default_factory=dict)
    arrays: dict[str, list[str]] = field(default_factory=dict)
    rows: Counter[str] = field(default_factory=Counter)

    def add(self, name: str, units: str, point: str) -> None:
        self.metrics.setdefault(name, (units, []))[1].append(point)

    @property
    def points(self) -> int:
        return sum(len(p) for _, p in self.metrics.values()) + sum(len(a) for a in self.arrays.values())


def other_families(start: int, end: int, fmt: Callable[[int], str], rnd: Callable[[], float], *, imperial: bool,
                   energy_unit: str, source: str, local_hour: Callable[[int], int]) -> Extra:
    """Every other family's points of [start, end) (epoch seconds, whole hours), one user's export."""
    extra = Extra()
    src = json.dumps(source, ensure_ascii=False)
    kj = energy_unit == "kJ"

    def at(t: int, body: str) -> str:
        return f'{{{body}, "date": "{fmt(t)}", "source": {src}}}'

    for t in range(start, end, HOUR):  # hourly: audio every hour, daylight in the local daytime
        extra.add("environmental_audio_exposure", "dBASPL", at(t, f'"qty": {45 + 33 * rnd():.1f}'))
        extra.rows["audio_exposure_metrics"] += 1
        if 8 <= local_hour(t) < 19 and rnd() < 0.6:
            extra.add("time_in_daylight", "min", at(t, f'"qty": {int(2 + 38 * rnd())}'))
            extra.rows["environmental_metrics"] += 1
    for d in range(math.ceil((end - start) / DAY)):
        base = start + d * DAY

        def inside(offset: int, base: int = base) -> int | None:
            return base + offset if base + offset < end else None

        _sql_families(extra, base // DAY, inside, at, rnd, imperial, kj)
        _parser_families(extra, base // DAY, inside, fmt, at, rnd, src)  # by calendar day: cycles span payloads
    return extra


def _sql_families(extra: Extra, d: int, inside: Callable[[int], int | None], at: Callable[[int, str], str],
                  rnd: Callable[[], float], imperial: bool, kj: bool) -> None:
    """Day ``d`` (days since 1970) of the families the SQL fast path writes."""
    if d % 7 == 3 and (t := inside(14 * HOUR)) is not None:
        extra.add("number_of_times_fallen", "count", at(t, '"qty": 1'))
        extra.rows["safety_event_metrics"] += 1
    if (t := inside(7 * HOUR + 5 * MINUTE)) is not None:  # a smart scale: one wide row
        weight = 62 + 20 * rnd()
        extra.add("weight_body_mass", "lb" if imperial else "kg",
                  at(t, f'"qty": {weight / 0.45359237 if imperial else weight:.2f}'))
        extra.add("body_mass_index", "count", at(t, f'"qty": {19 + 9 * rnd():.1f}'))
        extra.add("body_fat_percentage", "%", at(t, f'"qty": {15 + 15 * rnd():.1f}'))
        extra.rows["body_measurements"] += 1
    if (t := inside(6 * HOUR)) is not None:
        celsius = 34.6 + 1.4 * rnd()
        extra.add("apple_sleeping_wrist_temperature", "degF" if imperial else "degC",
                  at(t, f'"qty": {celsius * 9 / 5 + 32 if imperial else celsius:.2f}'))
        extra.rows["temperature_metrics"] += 1
    if (t := inside(7 * HOUR + 30 * MINUTE)) is not None:
        extra.add("mindful_minutes", "min", at(t, f'"qty": {int(5 + 15 * rnd())}'))
        extra.rows["mindfulness_metrics"] += 1
    breaths = (HOUR, 2 * HOUR + 30 * MINUTE, 4 * HOUR)
    oxygen = (HOUR, 9 * HOUR, 13 * HOUR, 18 * HOUR)  # the first shares its row with a breathing rate
    for offset in breaths:
        if (t := inside(offset)) is not None:
            extra.add("respiratory_rate", "count/min", at(t, f'"qty": {12 + 6 * rnd():.1f}'))
    for offset in oxygen:
        if (t := inside(offset)) is not None:
            extra.add("blood_oxygen_saturation", "%", at(t, f'"qty": {94 + 5 * rnd():.1f}'))
    extra.rows["respiratory_metrics"] += sum(inside(o) is not None for o in set(breaths) | set(oxygen))
    for meal in (8 * HOUR, 12 * HOUR + 30 * MINUTE, 19 * HOUR):  # a meal's nutrients: one wide row
        if (t := inside(meal)) is None:
            continue
        kcal = 350 + 550 * rnd()
        extra.add("dietary_energy", "kJ" if kj else "kcal", at(t, f'"qty": {kcal * 4.184 if kj else kcal:.1f}'))
        extra.add("dietary_water", "mL", at(t, f'"qty": {250 + 450 * rnd():.0f}'))
        for name, units, low, high in _NUTRIENTS:
            extra.add(name, units, at(t, f'"qty": {low + (high - low) * rnd():.2f}'))
        extra.rows["nutrition_metrics"] += 1


def _parser_families(extra: Extra, d: int, inside: Callable[[int], int | None], fmt: Callable[[int], str],
                     at: Callable[[int, str], str], rnd: Callable[[], float], src: str) -> None:
    """Day ``d`` (days since 1970) of the families the parser writes (text fields, data arrays, an unknown name)."""
    for meal in (7 * HOUR + 50 * MINUTE, 12 * HOUR + 20 * MINUTE, 18 * HOUR + 50 * MINUTE):
        if (t := inside(meal)) is not None:
            extra.add("blood_glucose", "mg/dL", at(t, f'"qty": {85 + 60 * rnd():.0f}, "mealTime": "Before Meal"'))
            extra.rows["blood_glucose_metrics"] += 1
        if (t := inside(meal + 5 * MINUTE)) is not None:
            extra.add("insulin_delivery", "IU", at(t, f'"qty": {2 + 6 * rnd():.1f}, "reason": "Bolus"'))
            extra.rows["metabolic_metrics"] += 1
    for offset in (7 * HOUR + 10 * MINUTE, 22 * HOUR + 10 * MINUTE):
        if (t := inside(offset)) is not None:
            extra.add("toothbrushing", "s", at(t, f'"qty": {90 + int(60 * rnd())}, "value": "Complete"'))
            extra.rows["hygiene_events"] += 1
    if (t := inside(7 * HOUR + 15 * MINUTE)) is not None:
        extra.add("sleep_score", "count", at(t, f'"qty": {int(58 + 36 * rnd())}'))  # unknown: other_metrics
        extra.rows["other_metrics"] += 1

    def entry(name: str, table: str, body: str) -> None:
        extra.arrays.setdefault(name, []).append(f"{{{body}}}")
        extra.rows[table] += 1

    if (t := inside(21 * HOUR)) is not None:
        valence = 2 * rnd() - 1
        entry("stateOfMind", "mental_health_metrics",
              f'"start": "{fmt(t)}", "end": "{fmt(t + MINUTE)}", "kind": "dailyMood", "valence": {valence:.3f}, '
              f'"valenceClassification": "{"pleasant" if valence > 0 else "unpleasant"}", "labels": ["Calm"], '
              '"associations": ["Work"]')
    if d % 28 < 5 and (t := inside(0)) is not None:
        entry("cycleTracking", "menstrual_health", f'"start": "{fmt(t)}", "end": "{fmt(t + DAY)}", '
              f'"name": "Menstrual Flow", "value": "Medium", "isCycleStart": {str(d % 28 == 0).lower()}')
    if 11 <= d % 28 <= 14 and (t := inside(8 * HOUR)) is not None:
        entry("cycleTracking", "fertility_tracking",
              f'"start": "{fmt(t)}", "name": "Ovulation Test Result", "value": "Negative"')
    for dose, names in ((8 * HOUR + 5 * MINUTE, ("Metformin 500 mg Tablet", "Lisinopril 10 mg Tablet")),
                        (20 * HOUR + 5 * MINUTE, ("Metformin 500 mg Tablet",))):
        if (t := inside(dose)) is not None:
            for name in names:  # two medicines at one instant: the name completes the key
                entry("medications", "medications",
                      f'"displayText": "{name}", "start": "{fmt(t)}", "end": "{fmt(t)}", "form": "Tablet", '
                      '"status": "Taken", "isArchived": false, "dosage": 1, "units": "tablet", '
                      '"codings": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "861007"}]')
    if d % 3 == 1 and (t := inside(10 * HOUR)) is not None:
        for name in ("Headache", "Fatigue"):
            entry("symptoms", "symptoms", f'"start": "{fmt(t)}", "end": "{fmt(t + HOUR)}", "name": "{name}", '
                  '"severity": "Mild", "userEntered": true')
    if d % 4 == 2 and (t := inside(9 * HOUR + 30 * MINUTE)) is not None:
        samples = ", ".join(f'{{"date": {t + k / ECG_SAMPLES:.4f}, "voltage": {400 * math.sin(k / 9):.1f}, '
                            '"units": "µV"}' for k in range(ECG_SAMPLES))
        entry("ecg", "ecg_recordings",
              f'"start": "{fmt(t)}", "end": "{fmt(t + 30)}", "classification": "Sinus Rhythm", '
              f'"averageHeartRate": {60 + int(20 * rnd())}, "samplingFrequency": 512, '
              f'"numberOfVoltageMeasurements": {ECG_SAMPLES}, "voltageMeasurements": [{samples}], "source": {src}')
    if d % 5 == 3 and (t := inside(14 * HOUR)) is not None:
        entry("heartRateNotifications", "heart_rate_events",
              f'"start": "{fmt(t)}", "end": "{fmt(t + 600)}", "type": "High Heart Rate", "threshold": 120, '
              f'"heartRate": [{{"date": "{fmt(t)}", "qty": {122 + int(20 * rnd())}, "units": "count/min"}}]')


def workout_series(begin: int, minutes: int, fmt: Callable[[int], str], rnd: Callable[[], float], energy: float,
                   energy_unit: str, outdoor: bool, watch: str) -> tuple[str, dict[str, int]]:
    """A version 2 workout's per-minute ``heartRateData`` and ``activeEnergy`` (one row a minute) and,
    outdoors, its ``route``: the JSON members to add to the workout object, and rows per table."""
    hr, kcal, route = [], [], []
    for k in range(minutes):
        date = fmt(begin + k * MINUTE)
        avg = 100 + 60 * rnd()
        hr.append(f'{{"date": "{date}", "Min": {avg - 4:.0f}, "Avg": {avg:.1f}, "Max": {avg + 5:.0f}, '
                  f'"units": "count/min", "source": {watch}}}')
        kcal.append(f'{{"date": "{date}", "qty": {(4 + 8 * rnd()) * energy:.3f}, "units": "{energy_unit}", '
                    f'"source": {watch}}}')
        if outdoor:
            route.append(f'{{"latitude": {52.52 + 0.01 * math.sin(k / 12):.6f}, '
                         f'"longitude": {13.405 + 0.01 * math.cos(k / 12):.6f}, "altitude": {34 + 5 * rnd():.1f}, '
                         f'"speed": {2 + 2 * rnd():.2f}, "horizontalAccuracy": {3 + 5 * rnd():.1f}, '
                         f'"timestamp": "{date}"}}')
    members = f', "heartRateData": [{", ".join(hr)}], "activeEnergy": [{", ".join(kcal)}]'
    rows = {"workout_samples": minutes}
    if outdoor:
        members += f', "route": [{", ".join(route)}]'
        rows["workout_route_points"] = minutes
    return members, rows


def points_of_series(rows: dict[str, Any]) -> int:
    """Points the series of :func:`workout_series` hold: two series a minute, and a route point outdoors."""
    return 2 * rows.get("workout_samples", 0) + rows.get("workout_route_points", 0)
