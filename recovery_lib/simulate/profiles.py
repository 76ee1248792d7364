"""The generated users: how each one's phone and watch export, and what one payload covers.

    >>> profile = make_profile(0, "0d5f3c0e-0000-4000-8000-000000000000", random.Random(1))
    >>> profile.email
    'user00@example.test'
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


def epoch_minutes(moment: datetime) -> int:
    """Whole minutes since 1970 (UTC) of an aware datetime."""
    return int(moment.astimezone(UTC).timestamp()) // 60
