"""What each user records besides heart rate, blood pressure, activity and sleep: the rest of the catalogue.

One :class:`Habit` per way a metric is measured: who (every user, or a kit: ``clinic``,
``athlete``, ``wellness``), when (hourly, by day, a few times a day, at night, at meals, weekly,
or in the hours of a sport), and the plausible range in the column's unit (always well inside
the catalogue's limits). Values are pure functions of (user, metric, instant), like every value
of the generator (:mod:`recovery_lib.simulate.values`). A metric may have several habits (insulin:
a bolus at meals, a basal dose at night); their instants never collide.

    >>> points = list(metric_points(profile, "respiratory_rate", 28_000_000, 28_002_880))
    >>> points[0][1]                                      # doctest: +SKIP
    {'qty': 17.9}

Unknown future metric names (a newer app's ``sleep_score``) are habits too: their name is not in
the catalogue, so the parser keeps them in ``other_metrics``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from recovery_lib.simulate.profiles import UserProfile
from recovery_lib.simulate.values import DAY, daily, local_hour, rand, workouts

RUN, CYCLE, SWIM, SNOW, DIVE = "Outdoor Run", "Outdoor Cycling", "Pool Swim", "Downhill Skiing", "Underwater Diving"
ALL, CLINIC, ATHLETE, WELLNESS = None, ("clinic",), ("athlete",), ("wellness",)
MEALS = (8 * 60, 12 * 60 + 30, 19 * 60 + 15)  # local minutes of breakfast, lunch and dinner


@dataclass(frozen=True)
class Habit:
    """One way one metric is recorded.

    ``when``: ``hourly`` (every local hour), ``daytime`` (hours 7 to 21), ``sport`` (the hours a
    workout of ``sports`` overlaps), ``daily`` (once a day near local minute ``at``), ``weekly``
    (once a week near ``at``), ``few`` (up to ``count`` times between 7:00 and 22:00), ``night``
    (``count`` times between 0:30 and 6:00), ``meals`` (at each meal, ``at`` minutes from it).
    ``chance``: of each slot being recorded. ``clock``: habits sharing one are recorded at the same
    instants (a smart scale's weight, BMI and body fat). ``spread``: values stay within this
    fraction of a per-user level instead of spanning the range (a weight, a height).
    ``unit``: a kind of :attr:`UserProfile.units` (the phone's unit), or the label shown as is.
    ``shape``: the point's fields (``qty``; ``glucose`` with a meal time; ``insulin`` with its
    reason ``text``; ``hygiene`` with its completion; ``sexual`` with the protection used).
    """

    name: str
    kits: tuple[str, ...] | None
    when: str
    low: float
    high: float
    unit: str = ""
    digits: int = 1
    at: int = 0
    chance: float = 1.0
    count: int = 1
    clock: str | None = None
    spread: float = 0.0
    sports: tuple[str, ...] = ()
    shape: str = "qty"
    text: str = ""


def _h(name: str, kits: tuple[str, ...] | None, when: str, low: float, high: float, unit: str = "", **more: object
       ) -> Habit:
    return Habit(name, kits, when, low, high, unit, **more)  # type: ignore[arg-type]


# Per-meal amounts in the column's unit: (metric name, low, high); the shown unit is the column's
# except where the phone's own unit applies (energy, water, vitamin D).
_NUTRIENTS = (
    ("dietary_energy", 350, 900, "energy"), ("dietary_water", 0.25, 0.7, "volume"), ("dietary_sugar", 5, 40, "g"),
    ("vitamin_d", 40, 300, "vitamin_d"), ("biotin", 5, 15, "mcg"), ("caffeine", 0, 120, "mg"),
    ("calcium", 100, 400, "mg"), ("carbohydrates", 30, 110, "g"), ("chloride", 300, 900, "mg"),
    ("cholesterol", 20, 200, "mg"), ("chromium", 5, 30, "mcg"), ("copper", 0.2, 0.6, "mg"),
    ("fiber", 3, 12, "g"), ("folate", 50, 200, "mcg"), ("iodine", 20, 60, "mcg"), ("iron", 2, 6, "mg"),
    ("magnesium", 60, 150, "mg"), ("manganese", 0.5, 1.5, "mg"), ("molybdenum", 10, 30, "mcg"),
    ("monounsaturated_fat", 5, 20, "g"), ("niacin", 3, 8, "mg"), ("pantothenic_acid", 1, 3, "mg"),
    ("phosphorus", 200, 500, "mg"), ("polyunsaturated_fat", 3, 12, "g"), ("potassium", 400, 1100, "mg"),
    ("protein", 15, 50, "g"), ("riboflavin", 0.3, 0.8, "mg"), ("saturated_fat", 4, 18, "g"),
    ("selenium", 15, 40, "mcg"), ("sodium", 400, 1300, "mg"), ("thiamin", 0.3, 0.8, "mg"),
    ("total_fat", 12, 45, "g"), ("vitamin_a", 150, 400, "mcg"), ("vitamin_b6", 0.3, 0.9, "mg"),
    ("vitamin_b12", 0.5, 2.5, "mcg"), ("vitamin_c", 10, 60, "mg"), ("vitamin_e", 2, 6, "mg"),
    ("vitamin_k", 20, 80, "mcg"), ("zinc", 2, 6, "mg"),
)

HABITS: tuple[Habit, ...] = (
    # --- heart (besides the heart-rate grid, resting heart rate and HRV)
    _h("walking_heart_rate_average", ALL, "daily", 92, 124, "count/min", at=20 * 60),
    _h("cardio_recovery", ATHLETE, "daily", 18, 42, "count/min", at=19 * 60, chance=0.6),
    _h("atrial_fibrillation_burden", CLINIC, "weekly", 0.5, 4, "%", at=9 * 60),
    _h("vo2_max", ATHLETE, "daily", 38, 55, "ml/(kg·min)", at=18 * 60, chance=0.5, spread=0.03),
    # --- body measurements: a smart scale in the morning, a tape now and then
    _h("weight_body_mass", CLINIC + WELLNESS, "daily", 55, 95, "mass", at=7 * 60, chance=0.7, clock="scale",
       spread=0.015, digits=2),
    _h("body_mass_index", WELLNESS, "daily", 19, 29, "count", at=7 * 60, chance=0.7, clock="scale", spread=0.015),
    _h("body_fat_percentage", WELLNESS, "daily", 15, 32, "%", at=7 * 60, chance=0.7, clock="scale", spread=0.03),
    _h("lean_body_mass", WELLNESS, "daily", 45, 65, "mass", at=7 * 60, chance=0.7, clock="scale", spread=0.015,
       digits=2),
    _h("height", WELLNESS, "weekly", 155, 190, "short_length", at=7 * 60, spread=0.001),
    _h("waist_circumference", WELLNESS, "weekly", 72, 100, "short_length", at=7 * 60 + 30, spread=0.02),
    # --- temperature
    _h("body_temperature", CLINIC, "few", 36.1, 37.4, "temperature", count=2, chance=0.4, digits=2),
    _h("basal_body_temperature", WELLNESS, "daily", 36.1, 36.9, "temperature", at=6 * 60 + 30, digits=2),
    _h("apple_sleeping_wrist_temperature", ALL, "daily", 34.6, 36.0, "temperature", at=6 * 60, chance=0.9,
       digits=2),
    _h("under_water_temperature", ATHLETE, "sport", 18, 27, "temperature", sports=(SWIM, DIVE), digits=2),
    # --- respiratory
    _h("respiratory_rate", ALL, "night", 12, 18, "count/min", count=3),
    _h("blood_oxygen_saturation", ALL, "few", 94, 99.5, "%", count=3, chance=0.8),
    _h("forced_vital_capacity", CLINIC, "weekly", 3.2, 4.8, "volume", at=10 * 60, clock="spirometer", digits=3),
    _h("forced_expiratory_volume", CLINIC, "weekly", 2.6, 3.9, "volume", at=10 * 60, clock="spirometer",
       digits=3),
    _h("peak_expiratory_flow_rate", CLINIC, "daily", 380, 560, "flow", at=8 * 60 + 30, digits=0),
    _h("inhaler_usage", CLINIC, "few", 1, 2, "count", count=2, chance=0.4, digits=0),
    _h("breathing_disturbances", ALL, "daily", 0.5, 6, "count", at=6 * 60 + 15, chance=0.9),
    _h("peripheral_perfusion_index", CLINIC, "few", 0.5, 5, "%", count=1, digits=2),
    # --- blood glucose, insulin, alcohol, skin
    _h("blood_glucose", CLINIC, "meals", 82, 130, "glucose", at=-10, shape="glucose", text="Before Meal"),
    _h("blood_glucose", CLINIC, "meals", 110, 175, "glucose", at=95, chance=0.6, shape="glucose",
       text="After Meal"),
    _h("insulin_delivery", CLINIC, "meals", 2, 8, "IU", at=-5, shape="insulin", text="Bolus"),
    _h("insulin_delivery", CLINIC, "daily", 10, 18, "IU", at=22 * 60, shape="insulin", text="Basal"),
    _h("blood_alcohol_content", WELLNESS, "weekly", 0.01, 0.06, "%", at=23 * 60, chance=0.5, digits=3),
    _h("number_of_alcoholic_beverages", WELLNESS, "daily", 1, 3, "count", at=21 * 60, chance=0.35, digits=0),
    _h("electrodermal_activity", WELLNESS, "few", 1, 8, "µS", count=2, digits=2),
    # --- activity beyond the hourly steps, distance, energy, flights, exercise and stand
    _h("apple_move_time", CLINIC, "daytime", 1, 20, "time", chance=0.6, digits=0),
    _h("apple_stand_hour", ALL, "daytime", 1, 1, "count", chance=0.7, digits=0),
    _h("physical_effort", ALL, "daytime", 1.2, 4.5, "kcal/hr·kg", chance=0.8),
    _h("wheelchair_distance", CLINIC, "daytime", 100, 900, "length", chance=0.3, clock="wheelchair"),
    _h("wheelchair_push_count", CLINIC, "daytime", 100, 900, "count", chance=0.3, clock="wheelchair", digits=0),
    _h("walking_speed", ALL, "few", 1.0, 1.6, "speed", count=3, clock="gait", digits=3),
    _h("walking_step_length", ALL, "few", 60, 80, "short_length", count=3, clock="gait"),
    _h("walking_asymmetry_percentage", ALL, "few", 0, 6, "%", count=3, clock="gait"),
    _h("walking_double_support_percentage", ALL, "few", 24, 34, "%", count=3, clock="gait"),
    _h("six_minute_walking_test_distance", CLINIC, "weekly", 420, 610, "length", at=11 * 60),
    _h("stair_speed_up", ALL, "few", 0.3, 0.6, "speed", count=1, chance=0.5, clock="stairs", digits=3),
    _h("stair_speed_down", ALL, "few", 0.35, 0.7, "speed", count=1, chance=0.5, clock="stairs", digits=3),
    _h("cycling_distance", ATHLETE, "sport", 3000, 18000, "length", sports=(CYCLE,)),
    _h("cycling_speed", ATHLETE, "sport", 18, 32, "speed", sports=(CYCLE,)),
    _h("cycling_power", ATHLETE, "sport", 120, 240, "power", sports=(CYCLE,), digits=0),
    _h("cycling_cadence", ATHLETE, "sport", 70, 95, "count/min", sports=(CYCLE,), digits=0),
    _h("cycling_functional_threshold_power", ATHLETE, "weekly", 200, 260, "power", at=10 * 60, spread=0.02,
       digits=0),
    _h("swimming_distance", ATHLETE, "sport", 400, 1800, "pool", sports=(SWIM,)),
    _h("swim_stroke_count", ATHLETE, "sport", 200, 900, "count", sports=(SWIM,), digits=0),
    _h("downhill_snow_sports", ATHLETE, "sport", 2000, 9000, "length", sports=(SNOW,)),
    _h("under_water_depth", ATHLETE, "sport", 3, 18, "stride", sports=(DIVE,), digits=2),
    _h("running_ground_contact_time", ATHLETE, "sport", 220, 290, "duration_ms", sports=(RUN,), digits=0),
    _h("running_vertical_oscillation", ATHLETE, "sport", 7, 10, "short_length", sports=(RUN,), digits=2),
    _h("running_stride_length", ATHLETE, "sport", 0.9, 1.4, "stride", sports=(RUN,), digits=3),
    _h("running_power", ATHLETE, "sport", 220, 320, "power", sports=(RUN,), digits=0),
    _h("running_speed", ATHLETE, "sport", 2.6, 3.6, "speed", sports=(RUN,), digits=3),
    # --- environment, audio
    _h("time_in_daylight", ALL, "daytime", 2, 40, "time", chance=0.6, digits=0),
    _h("uv_exposure", WELLNESS, "daytime", 0, 8, "count", chance=0.4, digits=0),
    _h("environmental_audio_exposure", ALL, "hourly", 45, 78, "dBASPL", chance=0.8),
    _h("headphone_audio_exposure", ALL, "daytime", 55, 80, "dBASPL", chance=0.3),
    # --- mindfulness, safety, hygiene, sexual activity
    _h("mindful_minutes", WELLNESS, "daily", 5, 20, "time", at=7 * 60 + 30, chance=0.6, digits=0),
    _h("number_of_times_fallen", CLINIC, "weekly", 1, 1, "count", at=14 * 60, digits=0),
    _h("handwashing", WELLNESS, "few", 12, 40, "s", count=4, shape="hygiene", digits=0),
    _h("toothbrushing", WELLNESS, "daily", 90, 150, "s", at=7 * 60 + 10, shape="hygiene", digits=0),
    _h("toothbrushing", WELLNESS, "daily", 90, 150, "s", at=22 * 60 + 15, chance=0.8, shape="hygiene",
       digits=0),
    _h("sexual_activity", WELLNESS, "weekly", 1, 1, "count", at=23 * 60, chance=0.6, shape="sexual", digits=0),
    # --- nutrition, logged with each meal (one wide row per meal)
    *(_h(name, WELLNESS, "meals", low, high, unit, at=20, chance=0.9, clock="meal", digits=2)
      for name, low, high, unit in _NUTRIENTS),
    # --- names a newer app sends that the catalogue does not know (kept in other_metrics)
    _h("sleep_score", None, "daily", 58, 94, "count", at=7 * 60 + 5, digits=0),
    _h("workout_effort_score", ATHLETE, "daily", 3, 9, "count", at=20 * 60 + 30, chance=0.7, digits=0),
)
UNKNOWN_METRICS = ("sleep_score", "workout_effort_score")


def _records(p: UserProfile, h: Habit) -> bool:
    if h.name == "sleep_score":
        return p.index % 2 == 0  # the users whose app is new enough to send it
    return h.kits is None or p.kit in h.kits


def habits_of(p: UserProfile) -> list[Habit]:
    """The habits of this user, in catalogue order."""
    return [h for h in HABITS if _records(p, h)]


def _clock(h: Habit) -> str:
    return h.clock or f"{h.name}|{h.when}|{h.at}"


def _slots(p: UserProfile, h: Habit, start: int, end: int) -> Iterator[int]:
    """The instants of [start, end) this habit fills (before its chance), in order."""
    clock, offset = _clock(h), p.offset
    if h.when in ("hourly", "daytime", "sport"):
        first = start + ((-start - offset) % 60)
        for t in range(first, end, 60):
            if h.when == "daytime" and not 7 <= local_hour(t, offset) < 22:
                continue
            if h.when == "sport" and not any(
                w[2] in h.sports and w[0] < t + 60 and w[1] > t for w in workouts(p, t - 120, t + 180)
            ):
                continue
            yield t
        return
    for d in daily(start, end, offset):
        base = d * DAY - offset
        r = rand(p.user_id, clock, d)
        if h.when == "daily":
            times = [base + h.at + 5 * int(12 * r[0])]
        elif h.when == "weekly":
            times = [base + h.at + 5 * int(12 * r[0])] if (d + p.index) % 7 == 0 else []
        elif h.when == "meals":
            times = [base + meal + h.at + 5 * int(6 * r[k]) for k, meal in enumerate(MEALS)]
        elif h.when == "night":
            times = [base + 30 + k * (300 // h.count) + 5 * int(10 * r[k]) for k in range(h.count)]
        else:  # few: distinct 5-minute slots between 7:00 and 22:00
            times = sorted({base + 7 * 60 + 5 * int(180 * rand(p.user_id, clock, d * 8 + k)[0])
                            for k in range(h.count)})
        yield from (t for t in times if start <= t < end)


def _chosen(p: UserProfile, h: Habit, t: int) -> bool:
    return h.chance >= 1 or rand(p.user_id, f"{_clock(h)}|chance", t)[0] < h.chance


def _value(p: UserProfile, h: Habit, t: int) -> float:
    r = rand(p.user_id, h.name, t)
    if h.spread:
        level = h.low + (h.high - h.low) * rand(p.user_id, h.name, 0)[0]
        value = level * (1 + h.spread * (2 * r[0] - 1))
    else:
        value = h.low + (h.high - h.low) * r[0]
    return float(round(value)) if h.digits == 0 else round(value, h.digits)


def habit_points(p: UserProfile, h: Habit, start: int, end: int) -> Iterator[tuple[int, dict[str, object]]]:
    """``(instant, fields)`` of one habit in [start, end); numbers in the column's unit."""
    for t in _slots(p, h, start, end):
        if not _chosen(p, h, t):
            continue
        value = _value(p, h, t)
        if h.shape == "glucose":
            yield t, {"qty": value, "mealTime": h.text}
        elif h.shape == "insulin":
            yield t, {"qty": value, "reason": h.text}
        elif h.shape == "hygiene":
            yield t, {"qty": value, "value": "Complete" if value >= 20 else "Incomplete"}
        elif h.shape == "sexual":
            r = rand(p.user_id, "sexual_activity|kind", t)[0]
            yield t, {("Protection Used", "Protection Not Used", "Unspecified")[int(3 * r)]: value}
        else:
            yield t, {"qty": value}


def metric_points(p: UserProfile, name: str, start: int, end: int) -> list[tuple[int, dict[str, object]]]:
    """Every point of metric ``name`` this user records in [start, end), all its habits together, by time."""
    points = [pt for h in habits_of(p) if h.name == name for pt in habit_points(p, h, start, end)]
    return sorted(points, key=lambda pt: pt[0])


def habit_names(p: UserProfile) -> list[str]:
    """The metric names this user's habits fill (catalogue names and the unknown ones), in order."""
    return list(dict.fromkeys(h.name for h in habits_of(p)))


def unit_of(p: UserProfile, name: str) -> str:
    """The unit this user's phone shows for ``name`` (a kind of the profile's units, or a label)."""
    unit = next(h.unit for h in HABITS if h.name == name)
    return p.units.get(unit, unit)


def points_per_day(p: UserProfile) -> float:
    """About how many points these habits send per day (to size payloads)."""
    per_slot = {"hourly": 24.0, "daytime": 15.0, "sport": 0.4, "daily": 1.0, "weekly": 1 / 7, "meals": 3.0,
                "night": 1.0, "few": 1.0}
    total = 0.0
    for h in habits_of(p):
        count = h.count if h.when in ("few", "night") else 1
        total += per_slot[h.when] * count * h.chance
    return total
