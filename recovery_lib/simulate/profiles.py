"""The generated users: how each one's phone and watch export, and what one payload covers.

Export shapes cycle through the users by index, each with its own period, so that three users
already cover every table of the catalogue and ten cover every shape: the sleep form of each app
version, blood pressure combined or split, workouts of version 1 or 2, metric units (metric or
imperial, kJ, degF, mmol/L), older metric spellings, phones set to 12-hour time, and which
optional families a user records (their *kit*: clinical, athletic or everyday wellness).

    >>> profile = make_profile(0, "0d5f3c0e-0000-4000-8000-000000000000", random.Random(1))
    >>> profile.email, profile.kit
    ('user00@example.test', 'clinic')
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime

# Who the users are: unicode in names is deliberate (sources are stored as text).
_FIRST_NAMES = ("Émilie", "Jürgen", "Zoë", "Siobhán", "Mateo", "Ana", "Kenji", "Olivia", "Björn", "Priya")
_OFFSETS = (-480, 60, 0, -300, 330, 540, -420, 600, -180, 120)  # minutes east of UTC
_DST_ZONES = {-480, -420, -300, 0, 60, 120}  # zones whose phones switch offset by an hour
_BP_DEVICES = ("OMRON connect", "Withings BPM Connect", "QardioArm")
KITS = ("clinic", "athlete", "wellness")
# 6.6.2 aggregated sleep (totalSleep beside the stages), stage segments, 6.6.2 without a total
# (asleep 0 beside the stages), and the exports before 6.6.2 (asleep is the total, sources per part).
SLEEP_FORMS = ("aggregated", "unaggregated", "aggregated_662", "aggregated_legacy")


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
    sleep_form: str  # one of SLEEP_FORMS
    sleep_spelling: str  # unaggregated stages: 'In Bed' and classified stages, or 'InBed' with Unspecified
    bp_form: str  # 'combined', 'split' or 'none'
    bp_pulse: bool
    workout_version: int  # 1 (flat fields) or 2 ({qty, units} objects, timed series, route)
    workout_hr_object: bool  # v2: heartRate {avg, max, min} rather than avgHeartRate/maxHeartRate
    distance_unit: str
    energy_unit: str
    time_unit: str
    stride_km: float
    has_hrv: bool
    has_flights: bool
    kit: str  # one of KITS: which optional families this user records
    units: dict[str, str]  # unit kind (catalogue.units) -> the unit this phone shows
    aliases: bool  # metrics under an older spelling where the catalogue knows one
    clock12: bool  # a phone set to 12-hour time: "2024-09-21 7:57:00\u202fam +1000"
    language: str  # 'en' or 'es': the names of symptoms and medications are the phone's language


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


def _units(index: int, distance: str, energy: str, time: str) -> dict[str, str]:
    """The units one phone shows, by catalogue unit kind (imperial phones: miles, pounds, degF)."""
    imperial = distance == "mi"
    return {
        "length": distance,  # long distances (walking, cycling, swimming)
        "short_length": "in" if imperial else "cm",  # heights, steps, waists
        "stride": "ft" if imperial else "m",  # strides, dives
        "pool": ("m", "yd")[(index // 3) % 2],  # swimming: a pool's own length unit
        "energy": energy,
        "time": time,
        "mass": "lb" if imperial else "kg",
        "temperature": "degF" if imperial else "degC",
        "speed": "mi/hr" if imperial else ("km/hr", "m/s")[index % 2],
        "volume": ("mL", "fl_oz_us", "L")[(index // 3) % 3],
        "glucose": ("mmol<180.1558800000541>/L", "mg/dL", "mmol/L")[(index // 3) % 3],  # by kit round
        "vitamin_d": ("IU", "mcg")[(index // 3) % 2],
        "duration_ms": "ms",
        "power": "W",
        "flow": "L/min",
        "insulin": "IU",
    }


def make_profile(index: int, user_id: str, rng: random.Random, *, users: int = 10) -> UserProfile:
    """One user's export settings; the forms cycle by index so that a few users cover every shape."""
    name = _FIRST_NAMES[index % len(_FIRST_NAMES)]
    offset = _OFFSETS[(index + rng.randrange(len(_OFFSETS))) % len(_OFFSETS)]
    # The first user's watch always carries a unicode name: sources are stored as text.
    watch = f"{name}’s Apple Watch" if index == 0 else rng.choice((f"{name}’s Apple Watch", "Apple Watch"))
    phone = rng.choice((f"{name}’s iPhone", "iPhone"))
    distance_unit = ("km", "mi")[(index // 2) % 2]
    energy_unit = ("kcal", "kJ", "kcal")[index % 3]
    time_unit = ("min", "min", "hr")[(index + 1) % 3]
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
        sleep_form=SLEEP_FORMS[index % len(SLEEP_FORMS)],
        sleep_spelling=("In Bed", "InBed")[(index // len(SLEEP_FORMS)) % 2],
        bp_form=("combined", "split", "none")[index % 3],
        bp_pulse=rng.random() < 0.5,
        workout_version=(2, 1)[index % 2],
        workout_hr_object=rng.random() < 0.6,
        distance_unit=distance_unit,
        energy_unit=energy_unit,
        time_unit=time_unit,
        stride_km=round(rng.uniform(0.00068, 0.00082), 6),
        has_hrv=rng.random() < 0.85,
        has_flights=rng.random() < 0.8,
        kit=KITS[index % len(KITS)],
        units=_units(index, distance_unit, energy_unit, time_unit),
        aliases=index % 2 == 1,
        clock12=index % 4 == 2,
        language=("en", "en", "es")[(index // 3) % 3],
    )


def epoch_minutes(moment: datetime) -> int:
    """Whole minutes since 1970 (UTC) of an aware datetime."""
    return int(moment.astimezone(UTC).timestamp()) // 60
