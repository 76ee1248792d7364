"""Seeded benchmark data, fast: Health Auto Export payloads built as text, loaded with COPY.

Two builders, both in the format of docs/payload-format.md (metric names, point shapes, dates like
``2024-02-06 14:30:00 -0800``):

* :func:`build_payload` writes one payload's JSON text with string joins (no ``json.dumps`` of a
  tree) and returns how many rows each table should receive. It is what the recovery, dry-run and
  memory benchmarks use; :func:`load_ingestions` stores such payloads with ``COPY`` and computes
  ``payload_hash`` in SQL exactly as the API and the checksum check define it.
* :func:`build_monitor_dataset` generates a whole month of ingestions and their metric rows inside
  PostgreSQL (``INSERT ... SELECT ... generate_series``), payload text and rows from the same
  formulas, so the monitor's deep check can reconcile them.

Everything follows from the seed; the only outside input is "now", to which the data is anchored
(the parser refuses dates more than a day in the future, the monitor looks back from now).
"""

from __future__ import annotations

import functools
import json
import math
import random
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from benchmarks.families import other_families, points_of_series, workout_series
from recovery_lib.checksums import PAYLOAD_SHA256_SQL
from recovery_lib.schema import METRIC_TABLES

PARAMETER_LIMIT_ERROR = "psycopg2.errors.ProgramLimitExceeded: number of parameters must be between 0 and 65535"
DAY = 86_400
HOUR = 3_600

_NAMES = ("Émilie", "Jürgen", "Zoë", "Siobhán", "Mateo", "Ana", "Kenji", "Olivia", "Björn", "Priya")
_OFFSETS = (-480, 60, 0, -300, 330, 540, -420, 600, -180, 120)  # minutes east of UTC
_BP_DEVICES = ("OMRON connect", "Withings BPM Connect", "QardioArm")
_WORKOUTS = ("Outdoor Run", "Outdoor Walk", "Outdoor Cycling", "Hiking", "Traditional Strength Training", "Yoga")
_OUTDOOR = frozenset(_WORKOUTS[:4])


# ---------------------------------------------------------------------------------------------
# Users


@dataclass(frozen=True)
class Profile:
    """One user's export settings (they change the point shapes, units and sources)."""

    index: int
    user_id: str
    email: str
    offset: int  # minutes east of UTC, used in every date of this user's payloads
    watch: str
    phone: str
    bp_device: str
    sleep_form: str  # 'aggregated' | 'unaggregated'
    bp_form: str  # 'combined' | 'split'
    workout_version: int  # 1 flat fields | 2 {qty, units} objects
    distance_unit: str
    energy_unit: str
    time_unit: str


def make_profiles(count: int, rng: random.Random, prefix: str = "bench") -> list[Profile]:
    profiles = []
    for i in range(count):
        name = _NAMES[i % len(_NAMES)]
        profiles.append(
            Profile(
                index=i,
                user_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                email=f"{prefix}-user{i:05d}@example.test",
                offset=_OFFSETS[i % len(_OFFSETS)],
                watch=f"{name}’s Apple Watch",
                phone=f"{name}’s iPhone",
                bp_device=_BP_DEVICES[i % len(_BP_DEVICES)],
                sleep_form=("aggregated", "unaggregated")[i % 2],
                bp_form=("combined", "split")[(i // 2) % 2],
                workout_version=(2, 1)[(i // 3) % 2],
                distance_unit=("km", "mi")[i % 2],
                energy_unit=("kcal", "kJ")[(i // 2) % 2],
                time_unit=("min", "hr")[(i // 4) % 2],
            )
        )
    return profiles


def insert_users(engine: Engine, profiles: Iterable[Profile]) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO users (id, email) VALUES (:id, :email)"),
            [{"id": p.user_id, "email": p.email} for p in profiles],
        )


# ---------------------------------------------------------------------------------------------
# Payload text


class _Dates:
    """Epoch seconds -> ``'2024-02-06 14:30:00 -0800'`` in one user's offset, fast (day prefix cached)."""

    def __init__(self, offset_minutes: int):
        self.shift = offset_minutes * 60
        sign = "-" if offset_minutes < 0 else "+"
        self.zone = f"{sign}{abs(offset_minutes) // 60:02d}{abs(offset_minutes) % 60:02d}"
        self.days: dict[int, str] = {}

    def __call__(self, t: int) -> str:
        day, sec = divmod(t + self.shift, DAY)
        prefix = self.days.get(day)
        if prefix is None:
            prefix = self.days[day] = datetime.fromtimestamp(day * DAY, UTC).strftime("%Y-%m-%d")
        h, rem = divmod(sec, HOUR)
        m, s = divmod(rem, 60)
        return f"{prefix} {h:02d}:{m:02d}:{s:02d} {self.zone}"


_KM = {"km": 1.0, "mi": 1 / 1.609344}
_KCAL = {"kcal": 1.0, "kJ": 4.184}
_MIN = {"min": 1.0, "hr": 1 / 60}


@dataclass
class BuiltPayload:
    """One payload's JSON text and what it implies."""

    text: str
    points: int
    rows: dict[str, int]
    start: int  # epoch seconds, inclusive
    end: int  # epoch seconds, exclusive

    @property
    def row_total(self) -> int:
        return sum(self.rows.values())

    @functools.cached_property
    def size(self) -> int:
        """Bytes of UTF-8 JSON text: what the API stores as payload_size_bytes."""
        return len(self.text.encode("utf-8"))


def build_payload(p: Profile, start: int, end: int, rng: random.Random, *, hr_step: int = 60) -> BuiltPayload:
    """The payload of ``p`` covering epoch seconds [start, end); ``start`` and ``end`` on whole hours.

    Rows per table follow by construction: one heart-rate row per ``hr_step`` (resting heart rate
    and HRV land on that grid and merge into it), one activity row per hour (seven metrics merged),
    blood pressure twice a day, one sleep session and one workout per day when wholly inside (version
    2 with a row a minute of series and, outdoors, of route), and every other family's rows
    (:mod:`benchmarks.families`).
    """
    assert start % HOUR == 0 and end % HOUR == 0 and end > start and DAY % hr_step == 0 and 300 % hr_step == 0
    fmt = _Dates(p.offset)
    watch, phone, bp_src = json.dumps(p.watch, ensure_ascii=False), json.dumps(p.phone, ensure_ascii=False), (
        json.dumps(p.bp_device, ensure_ascii=False)
    )
    rnd = rng.random
    metrics: dict[str, list[str]] = {}
    units: dict[str, str] = {}
    rows = dict.fromkeys(METRIC_TABLES, 0)
    points = 0

    # Heart rate: the dense grid; resting heart rate once a day and HRV three times a day on it.
    hr = []
    for t in range(start, end, hr_step):
        avg = 58 + 30 * rnd() * rnd()
        lo = int(avg - 1 - 6 * rnd())
        hr.append(
            f'{{"Min": {lo}, "Avg": {avg:.1f}, "Max": {int(avg + 1 + 12 * rnd())}, "date": "{fmt(t)}", '
            f'"source": {watch}}}'
        )
    metrics["heart_rate"], units["heart_rate"] = hr, "count/min"
    rows["heart_rate_metrics"] = len(hr)
    days = range(0, math.ceil((end - start) / DAY))
    metrics["resting_heart_rate"] = [
        f'{{"qty": {52 + 10 * rnd():.1f}, "date": "{fmt(start + d * DAY)}", "source": {watch}}}' for d in days
    ]
    units["resting_heart_rate"] = "count/min"
    metrics["heart_rate_variability"] = [
        f'{{"qty": {20 + 70 * rnd():.3f}, "date": "{fmt(t)}", "source": {watch}}}'
        for d in days
        for t in (start + d * DAY + 3 * HOUR, start + d * DAY + 10 * HOUR + 1800, start + d * DAY + 15 * HOUR)
        if t < end
    ]
    units["heart_rate_variability"] = "ms"

    # Activity: seven metrics on the hourly grid, merged into one row per hour.
    act: dict[str, list[str]] = {
        n: [] for n in ("step_count", "walking_running_distance", "active_energy", "basal_energy_burned",
                        "flights_climbed", "apple_exercise_time", "apple_stand_time")
    }
    for t in range(start, end, HOUR):
        date = fmt(t)
        local_hour = ((t + p.offset * 60) // HOUR) % 24
        daytime = 7 <= local_hour < 22
        steps = int(150 + 2200 * rnd() ** 2) if daytime else int(60 * rnd())
        src = phone if rnd() < 0.5 else watch
        tail = f', "date": "{date}", "source": {src}}}'
        act["step_count"].append(f'{{"qty": {steps}{tail}')
        act["walking_running_distance"].append(
            f'{{"qty": {steps * 0.00075 * _KM[p.distance_unit]:.4f}{tail}'
        )
        act["active_energy"].append(f'{{"qty": {(steps * 0.042 + 3 * rnd()) * _KCAL[p.energy_unit]:.3f}{tail}')
        act["basal_energy_burned"].append(f'{{"qty": {(61 + 15 * rnd()) * _KCAL[p.energy_unit]:.3f}{tail}')
        if daytime and rnd() < 0.3:
            act["flights_climbed"].append(f'{{"qty": {1 + int(9 * rnd())}{tail}')
        if daytime and rnd() < 0.25:
            act["apple_exercise_time"].append(f'{{"qty": {(1 + int(40 * rnd())) * _MIN[p.time_unit]:.4f}{tail}')
        if daytime and rnd() < 0.7:
            act["apple_stand_time"].append(f'{{"qty": {(1 + int(14 * rnd())) * _MIN[p.time_unit]:.4f}{tail}')
    rows["activity_metrics"] = (end - start) // HOUR
    act_units = {
        "step_count": "count", "walking_running_distance": p.distance_unit, "active_energy": p.energy_unit,
        "basal_energy_burned": p.energy_unit, "flights_climbed": "count", "apple_exercise_time": p.time_unit,
        "apple_stand_time": p.time_unit,
    }
    for name, data in act.items():
        if data:
            metrics[name], units[name] = data, act_units[name]

    # Blood pressure: morning and evening readings, combined or the older split form.
    bp_times = [t for d in days for t in (start + d * DAY + 7 * HOUR + 180, start + d * DAY + 20 * HOUR + 420)
                if t < end]
    readings = [(t, 105 + int(30 * rnd()), 64 + int(22 * rnd()), 55 + int(30 * rnd())) for t in bp_times]
    if p.bp_form == "combined":
        metrics["blood_pressure"] = [
            f'{{"systolic": {s}, "diastolic": {di}, "pulse": {pu}, "date": "{fmt(t)}", "source": {bp_src}}}'
            for t, s, di, pu in readings
        ]
        units["blood_pressure"] = "mmHg"
    else:
        for part, pos in (("systolic", 1), ("diastolic", 2)):
            metrics[f"blood_pressure_{part}"] = [
                f'{{"qty": {r[pos]}, "date": "{fmt(r[0])}", "source": {bp_src}}}' for r in readings
            ]
            units[f"blood_pressure_{part}"] = "mmHg"
    rows["blood_pressure_metrics"] = len(readings)

    # Sleep: one night per day, wholly inside the window.
    sleep: list[str] = []
    for d in days:
        in_bed = start + d * DAY + 22 * HOUR + 60 * int(50 * rnd())
        wake = in_bed + 60 * int(390 + 120 * rnd())
        if wake > end:
            continue
        rows["sleep_metrics"] += 1
        sleep.extend(_sleep_points(p, fmt, in_bed, wake, rnd, watch))
    metrics["sleep_analysis"], units["sleep_analysis"] = sleep, "hr"

    # Workouts: one a day, wholly inside the window; version 2 with its series and route.
    workouts: list[str] = []
    for d in days:
        begin = start + d * DAY + 17 * HOUR + 60 * int(60 * rnd())
        minutes = 25 + int(65 * rnd())
        if begin + minutes * 60 > end:
            continue
        text, series_rows = _workout(p, fmt, begin, minutes, rnd, watch)
        workouts.append(text)
        points += points_of_series(series_rows)
        for name, n in series_rows.items():
            rows[name] += n
    rows["workout_metrics"] = len(workouts)

    # Every other family (body, nutrition, the data arrays, an unknown name, ...).
    extra = other_families(start, end, fmt, rnd, imperial=p.distance_unit == "mi", energy_unit=p.energy_unit,
                           source=p.watch, local_hour=lambda t: ((t + p.offset * 60) // HOUR) % 24)
    for name, (unit, data) in extra.metrics.items():
        metrics[name], units[name] = data, unit
    for name, n in extra.rows.items():
        rows[name] += n

    parts = []
    for name in sorted(metrics):
        data = metrics[name]
        points += len(data)
        parts.append(f'{{"name": "{name}", "units": "{units[name]}", "data": [' + ", ".join(data) + "]}")
    points += len(workouts) + sum(len(entries) for entries in extra.arrays.values())
    arrays = "".join(f', "{name}": [' + ", ".join(entries) + "]" for name, entries in extra.arrays.items())
    text = ('{"data": {"metrics": [' + ", ".join(parts) + '], "workouts": [' + ", ".join(workouts) + "]"
            + arrays + "}}")
    return BuiltPayload(text, points, rows, start, end)


def _sleep_points(p: Profile, fmt: _Dates, in_bed: int, wake: int, rnd: Any, watch: str) -> list[str]:
    if p.sleep_form == "unaggregated":
        segs = [("In Bed", in_bed, wake)]
        t = in_bed + 600
        stages = ("Core", "Deep", "Core", "REM", "Awake")
        i = 0
        while t < wake - 900:
            length = min(60 * int(8 + 30 * rnd()), wake - 300 - t)
            if length <= 0:
                break
            segs.append((stages[i % len(stages)], t, t + length))
            t += length
            i += 1
        return [
            f'{{"startDate": "{fmt(a)}", "endDate": "{fmt(b)}", "value": "{v}", "qty": {(b - a) / 3600:.4f}, '
            f'"source": {watch}}}'
            for v, a, b in segs
        ]
    asleep_start, asleep_end = in_bed + 600, wake - 300
    total = (asleep_end - asleep_start) / 3600
    deep, rem = total * (0.12 + 0.08 * rnd()), total * (0.18 + 0.08 * rnd())
    awake = 0.1 + 0.3 * rnd()
    core = max(total - deep - rem, 0.0)
    return [
        f'{{"date": "{fmt(wake - (wake + p.offset * 60) % DAY)}", "totalSleep": {total:.4f}, "asleep": 0, '
        f'"core": {core:.4f}, "deep": {deep:.4f}, "rem": {rem:.4f}, "awake": {awake:.4f}, '
        f'"inBed": {(wake - in_bed) / 3600:.4f}, "sleepStart": "{fmt(asleep_start)}", '
        f'"sleepEnd": "{fmt(asleep_end)}", "inBedStart": "{fmt(in_bed)}", "inBedEnd": "{fmt(wake)}", '
        f'"source": {watch}}}'
    ]


def _workout(p: Profile, fmt: _Dates, begin: int, minutes: int, rnd: Any, watch: str) -> tuple[str, dict[str, int]]:
    name = _WORKOUTS[int(len(_WORKOUTS) * rnd())]
    active = minutes * (5 + 7 * rnd())
    total = active + minutes * 1.2
    km = minutes * 0.12 * (0.8 + 0.4 * rnd())
    avg_hr = 104 + 50 * rnd()
    max_hr = avg_hr + 10 + 25 * rnd()
    e, dist = _KCAL[p.energy_unit], km * _KM[p.distance_unit]
    head = (f'"name": "{name}", "start": "{fmt(begin)}", "end": "{fmt(begin + minutes * 60)}", '
            f'"duration": {minutes * 60}')
    if p.workout_version == 1:
        return (
            f'{{{head}, "activeEnergy": {active * e:.3f}, "activeEnergyUnits": "{p.energy_unit}", '
            f'"totalEnergy": {total * e:.3f}, "totalEnergyUnits": "{p.energy_unit}", "distance": {dist:.3f}, '
            f'"distanceUnits": "{p.distance_unit}", "avgHeartRate": {avg_hr:.1f}, "maxHeartRate": {max_hr:.0f}, '
            f'"source": {watch}}}'
        ), {}
    series, rows = workout_series(begin, minutes, fmt, rnd, e, p.energy_unit, name in _OUTDOOR, watch)
    return (
        f'{{"id": "{uuid.UUID(int=int(rnd() * 2**64) << 64 | begin, version=4)}", {head}, '
        f'"activeEnergyBurned": {{"qty": {active * e:.3f}, "units": "{p.energy_unit}"}}, '
        f'"totalEnergy": {{"qty": {total * e:.3f}, "units": "{p.energy_unit}"}}, '
        f'"distance": {{"qty": {dist:.3f}, "units": "{p.distance_unit}"}}, '
        f'"heartRate": {{"min": {{"qty": {avg_hr - 25:.0f}, "units": "bpm"}}, '
        f'"avg": {{"qty": {avg_hr:.1f}, "units": "bpm"}}, "max": {{"qty": {max_hr:.0f}, "units": "bpm"}}}}, '
        f'"source": {watch}{series}}}'
    ), rows


def build_payload_of_size(p: Profile, target_bytes: int, end: int, rng: random.Random, *, hr_step: int = 60) -> (
    BuiltPayload
):
    """A payload of at least ``target_bytes`` of JSON ending at ``end`` (whole hour): one long export."""
    probe = build_payload(p, end - DAY, end, random.Random(0), hr_step=hr_step)
    per_hour = probe.size / 24
    hours = math.ceil(target_bytes / per_hour) + 1
    while True:
        built = build_payload(p, end - hours * HOUR, end, rng, hr_step=hr_step)
        if built.size >= target_bytes:
            return built
        hours += math.ceil((target_bytes - built.size) / per_hour) + 1


# ---------------------------------------------------------------------------------------------
# Loading


@dataclass
class Ingestion:
    """One raw_ingestions row to store."""

    id: str
    user_id: str
    payload: BuiltPayload
    status: str
    created_at: datetime
    errors: list[dict[str, Any]] | None = None
    processed_at: datetime | None = None
    present_tables: tuple[str, ...] = ()  # tables whose rows the original tool did write


class _Chunks:
    """A read()-able file over byte chunks: COPY streams them without one big concatenation."""

    def __init__(self, chunks: Iterator[bytes]):
        self._chunks, self._buffer = chunks, b""

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buffer) < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._buffer += chunk
        if size < 0:
            out, self._buffer = self._buffer, b""
        else:
            out, self._buffer = self._buffer[:size], self._buffer[size:]
        return out

    def readline(self, size: int = -1) -> bytes:  # psycopg2 only calls read(); here for completeness
        return self.read(size)


def _copy_field(value: Any) -> str:
    if value is None:
        return "\\N"
    text = value.isoformat() if isinstance(value, datetime) else str(value)
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def load_ingestions(engine: Engine, ingestions: list[Ingestion]) -> None:
    """COPY the raw ingestions, then set ``payload_hash`` to the SHA-256 of the stored jsonb text."""

    def lines() -> Iterator[bytes]:
        for ing in ingestions:
            head = "\t".join(
                _copy_field(v)
                for v in (ing.id, ing.user_id, "", ing.payload.size, ing.status,
                          json.dumps(ing.errors) if ing.errors is not None else None,
                          ing.processed_at, ing.created_at)
            )
            yield head.encode() + b"\t"
            # The payload last: escaped for COPY text format (our JSON has no raw tabs or newlines).
            yield ing.payload.text.replace("\\", "\\\\").encode("utf-8")
            yield b"\n"

    raw = engine.raw_connection()
    try:
        with raw.cursor() as cur:
            cur.copy_expert(
                "COPY raw_ingestions (id, user_id, payload_hash, payload_size_bytes, processing_status, "
                "processing_errors, processed_at, created_at, raw_payload) FROM STDIN",
                _Chunks(lines()),
                size=1 << 20,
            )
            cur.execute(
                f"UPDATE raw_ingestions SET payload_hash = {PAYLOAD_SHA256_SQL} WHERE id = ANY(%s::uuid[])",
                ([i.id for i in ingestions],),
            )
        raw.commit()
    finally:
        raw.close()


def write_present_rows(engine: Engine, ingestions: list[Ingestion], now: datetime) -> dict[str, int]:
    """Insert the rows the original tool managed to write (``present_tables``), parsed by the library."""
    from recovery_lib import payload

    written = dict.fromkeys(METRIC_TABLES, 0)
    raw = engine.raw_connection()
    try:
        with raw.cursor() as cur:
            for ing in ingestions:
                if not ing.present_tables:
                    continue
                parsed = payload.parse_payload(ing.payload.text, now=now)
                for name in ing.present_tables:
                    t = METRIC_TABLES[name]
                    body = "".join(
                        "\t".join([ing.user_id, *(_copy_field(k) for k in (key if t.tag else (key,))),
                                   *(_copy_field(vals.get(c)) for c in t.values)])
                        + "\n"
                        for key, vals in parsed.rows.get(name, {}).items()
                    )
                    if body:
                        cur.copy_expert(
                            f"COPY {name} (user_id, {', '.join(t.natural_key)}, {', '.join(t.values)}) FROM STDIN",
                            _Chunks(iter([body.encode()])),
                        )
                        written[name] += body.count("\n")
        raw.commit()
    finally:
        raw.close()
    return written


# ---------------------------------------------------------------------------------------------
# The recovery incident (benchmarks 1 and 5)


@dataclass
class Incident:
    profiles: list[Profile]
    ingestions: list[Ingestion]
    missing_by_table: dict[str, int] = field(default_factory=dict)  # rows recovery should insert
    present_by_table: dict[str, int] = field(default_factory=dict)
    large_points: list[int] = field(default_factory=list)

    @property
    def missing_total(self) -> int:
        return sum(self.missing_by_table.values())

    @property
    def points(self) -> int:
        return sum(i.payload.points for i in self.ingestions)

    @property
    def json_bytes(self) -> int:
        return sum(i.payload.size for i in self.ingestions)

    def _lossy(self) -> list[Ingestion]:
        return [i for i in self.ingestions if set(i.present_tables) != set(METRIC_TABLES)]

    @property
    def candidate_points(self) -> int:
        """Points of the payloads with missing rows (what the recovery fetches and parses)."""
        return sum(i.payload.points for i in self._lossy())

    @property
    def candidate_bytes(self) -> int:
        return sum(i.payload.size for i in self._lossy())


def build_incident(
    *, target_rows: int, large_payloads: int, large_points: int, users: int, seed: int, now: datetime,
    complete_payloads: int = 0,
) -> Incident:
    """The parameter-limit incident: ``large_payloads`` exports of about ``large_points`` points each
    (status ``error``), then ordinary exports until ``target_rows`` rows are missing: 70% ``error``,
    20% ``partial_success`` (activity and sleep written), 10% ``processed`` that lost heart rate
    (silent loss); plus ``complete_payloads`` fully written ``processed`` ones (nothing to recover,
    but discovery's silent-loss scan must reconcile them)."""
    rng = random.Random(seed)
    profiles = make_profiles(users, rng)
    anchor = int(now.timestamp()) // HOUR * HOUR - 2 * DAY  # every window ends at least two days ago
    cursor = {p.user_id: anchor for p in profiles}  # each user's history is built backwards
    ingestions: list[Ingestion] = []
    incident = Incident(profiles, ingestions)
    missing = dict.fromkeys(METRIC_TABLES, 0)
    present = dict.fromkeys(METRIC_TABLES, 0)
    created = now - timedelta(hours=20)

    def add(p: Profile, hours: int, status: str, present_tables: tuple[str, ...], hr_step: int = 60) -> None:
        nonlocal created
        end = cursor[p.user_id]
        built = build_payload(p, end - hours * HOUR, end, rng, hr_step=hr_step)
        cursor[p.user_id] = end - hours * HOUR
        created += timedelta(seconds=rng.uniform(1, 20))
        errors = None
        if status in ("error", "partial_success"):
            errors = [{"error": PARAMETER_LIMIT_ERROR, "at": (created + timedelta(seconds=45)).isoformat()}]
        ingestions.append(
            Ingestion(
                id=str(uuid.UUID(int=rng.getrandbits(128), version=4)), user_id=p.user_id, payload=built,
                status=status, created_at=created, errors=errors, processed_at=created + timedelta(seconds=45),
                present_tables=present_tables,
            )
        )
        for name, n in built.rows.items():
            (present if name in present_tables else missing)[name] += n

    for k in range(large_payloads):
        p = profiles[k % users]
        hours = max(24, math.ceil(large_points / 67.7))  # about 67.7 points per hour at 1-minute heart rate
        add(p, hours, "error", ())
        incident.large_points.append(ingestions[-1].payload.points)
    everything = tuple(METRIC_TABLES)
    for k in range(complete_payloads):
        add(profiles[k % users], rng.choice((6, 12, 24)), "processed", everything, hr_step=300)
    k = 0
    while sum(missing.values()) < target_rows:
        p = profiles[k % users]
        kind = rng.random()
        if kind < 0.7:
            add(p, 24 * rng.choice((1, 2, 3)), "error", ())
        elif kind < 0.9:
            add(p, 24 * rng.choice((1, 2, 3)), "partial_success", ("activity_metrics", "sleep_metrics"))
        else:
            add(p, 24 * rng.choice((1, 2)), "processed", tuple(t for t in everything if t != "heart_rate_metrics"))
        k += 1
    ingestions.sort(key=lambda i: i.created_at)
    incident.missing_by_table, incident.present_by_table = missing, present
    return incident


# ---------------------------------------------------------------------------------------------
# The monitoring dataset (benchmark 3), generated inside PostgreSQL

MONITOR_PAYLOADS_PER_USER = 100
MONITOR_DAYS = 30
# One export per user every 432 minutes (30 days / 100); its window is the 432 minutes before it.
MONITOR_WINDOW_S = MONITOR_DAYS * DAY // MONITOR_PAYLOADS_PER_USER
# Points (= rows) per payload and table: heart rate every 288 s, activity hourly, three blood
# pressure readings, two (short) sleep sessions and two workouts.
MONITOR_POINTS = {
    "heart_rate_metrics": 90,
    "activity_metrics": 7,
    "blood_pressure_metrics": 3,
    "sleep_metrics": 2,
    "workout_metrics": 2,
}
# Which tables the original tool wrote, per outcome (partial successes stopped at heart rate).
MONITOR_WRITTEN = {
    "processed": tuple(METRIC_TABLES),
    "silent_loss": tuple(t for t in METRIC_TABLES if t != "heart_rate_metrics"),
    "partial_success": ("activity_metrics", "sleep_metrics"),
    "error": (),
    "pending": (),
}

_PLAN_SQL = """
CREATE TABLE bench_plan AS
SELECT x.*, CASE WHEN x.created_at > :now - interval '20 min' THEN 'pending'
                 WHEN x.r < 20 THEN 'error' WHEN x.r < 30 THEN 'partial_success'
                 WHEN x.r < 40 THEN 'silent_loss' ELSE 'processed' END AS outcome
FROM (
  SELECT i.u * {per_user} + i.j AS n, i.u, i.j, usr.user_id, usr.zone, usr.shift, w.start,
         w.start + make_interval(secs => {window} + 60 + (i.u * 7919 + i.j * 104729) % 240) AS created_at,
         abs(hashint8(i.u::bigint * 1000003 + i.j + :seed)) % 1000 AS r
  FROM generate_series(0, :users - 1) i_u(u)
  CROSS JOIN LATERAL (SELECT i_u.u AS u, j FROM generate_series(0, {per_user} - 1) j) i
  JOIN bench_users usr ON usr.u = i.u
  CROSS JOIN LATERAL (SELECT CAST(:t0 AS timestamptz)
                             + make_interval(secs => i.j * {window} + i.u * :spread) AS start) w
) x
"""

# Epoch-second grids relative to the window start, and values as deterministic functions of
# (n, k): the payload text and the metric rows use the same expressions.
_HR = "p.start + make_interval(secs => k * 288)"
_ACT = "p.start + make_interval(secs => k * 3600)"
_BP = "p.start + make_interval(secs => 420 + k * 8400)"
_SLEEP = "p.start + make_interval(secs => 1800 + k * 12000)"
_WORKOUT = "p.start + make_interval(secs => 780 + k * 12000)"


def _date(expr: str) -> str:
    """SQL for the exporter's date text of ``expr`` in the user's zone."""
    return f"(to_char(({expr}) AT TIME ZONE 'UTC' + p.shift, 'YYYY-MM-DD HH24:MI:SS') || ' ' || p.zone)"


_SQL_AVG = "round((600 + (p.n * 31 + k * 17) % 400) / 10.0, 1)"
_SQL_MIN = "(55 + (p.n + k) % 5)"
_SQL_MAX = "(100 + (p.n * 7 + k) % 20)"
_SQL_STEPS = "((p.n * 13 + k * 101) % 2400)"
_SQL_SYS = "(110 + (p.n + k * 3) % 30)"
_SQL_DIA = "(70 + (p.n + k) % 15)"
_SQL_SLEEP_MIN = "(150 + (p.n + k) % 30)"  # asleep minutes of a session (sessions last 180 minutes)
_SQL_WORK_MIN = "(30 + (p.n + k) % 30)"

_PAYLOAD_SQL = f"""
INSERT INTO raw_ingestions (id, user_id, payload_hash, payload_size_bytes, raw_payload, processing_status,
                            processing_errors, processed_at, created_at)
SELECT md5('bench-ingestion-' || p.n)::uuid, p.user_id, '', octet_length(t.body), t.body::jsonb,
       CASE p.outcome WHEN 'silent_loss' THEN 'processed' ELSE p.outcome END,
       CASE WHEN p.outcome IN ('error', 'partial_success')
            THEN jsonb_build_array(jsonb_build_object('error', :error, 'at', p.created_at + interval '40 s')) END,
       CASE WHEN p.outcome <> 'pending' THEN p.created_at + interval '40 s' END,
       p.created_at
FROM bench_plan p
CROSS JOIN LATERAL (SELECT
  '{{"data": {{"metrics": [{{"name": "blood_pressure", "units": "mmHg", "data": ['
  || (SELECT string_agg('{{"systolic": ' || {_SQL_SYS} || ', "diastolic": ' || {_SQL_DIA} || ', "date": "'
                        || {_date(_BP)} || '", "source": "OMRON connect"}}', ', ' ORDER BY k)
      FROM generate_series(0, 2) k)
  || ']}}, {{"name": "heart_rate", "units": "count/min", "data": ['
  || (SELECT string_agg('{{"Min": ' || {_SQL_MIN} || ', "Avg": ' || {_SQL_AVG} || ', "Max": ' || {_SQL_MAX}
                        || ', "date": "' || {_date(_HR)} || '", "source": "Apple Watch"}}', ', ' ORDER BY k)
      FROM generate_series(0, 89) k)
  || ']}}, {{"name": "sleep_analysis", "units": "hr", "data": ['
  || (SELECT string_agg('{{"date": "' || {_date(_SLEEP)} || '", "totalSleep": ' || round({_SQL_SLEEP_MIN} / 60.0, 4)
                        || ', "deep": 0.5, "rem": 0.75, "core": ' || round(({_SQL_SLEEP_MIN} - 75) / 60.0, 4)
                        || ', "awake": 0.2, "inBed": 3, "sleepStart": "' || {_date(_SLEEP)} || '", "sleepEnd": "'
                        || {_date(_SLEEP + " + interval '180 min'")} || '", "source": "Apple Watch"}}', ', '
                        ORDER BY k) FROM generate_series(0, 1) k)
  || ']}}, {{"name": "step_count", "units": "count", "data": ['
  || (SELECT string_agg('{{"qty": ' || {_SQL_STEPS} || ', "date": "' || {_date(_ACT)} || '", "source": "iPhone"}}',
                        ', ' ORDER BY k) FROM generate_series(0, 6) k)
  || ']}}], "workouts": ['
  || (SELECT string_agg('{{"name": "Outdoor Run", "start": "' || {_date(_WORKOUT)} || '", "end": "'
                        || {_date(_WORKOUT + " + make_interval(mins => " + _SQL_WORK_MIN + ")")}
                        || '", "activeEnergyBurned": {{"qty": ' || {_SQL_WORK_MIN} * 9
                        || ', "units": "kcal"}}, "distance": {{"qty": ' || round({_SQL_WORK_MIN} * 0.16, 2)
                        || ', "units": "km"}}, "source": "Apple Watch"}}', ', ' ORDER BY k)
      FROM generate_series(0, 1) k)
  || ']}}}}' AS body) t
WHERE p.n % :parts = :part
"""

_ROWS_SQL = {
    "heart_rate_metrics": f"""
INSERT INTO heart_rate_metrics (user_id, recorded_at, heart_rate, heart_rate_min, heart_rate_max, source_device)
SELECT p.user_id, {_HR}, {_SQL_AVG}, {_SQL_MIN}, {_SQL_MAX}, 'Apple Watch'
FROM bench_plan p, generate_series(0, 89) k WHERE p.outcome IN :outcomes AND p.n % :parts = :part""",
    "activity_metrics": f"""
INSERT INTO activity_metrics (user_id, recorded_at, step_count, source_device)
SELECT p.user_id, {_ACT}, {_SQL_STEPS}, 'iPhone'
FROM bench_plan p, generate_series(0, 6) k WHERE p.outcome IN :outcomes AND p.n % :parts = :part""",
    "blood_pressure_metrics": f"""
INSERT INTO blood_pressure_metrics (user_id, recorded_at, systolic, diastolic, source_device)
SELECT p.user_id, {_BP}, {_SQL_SYS}, {_SQL_DIA}, 'OMRON connect'
FROM bench_plan p, generate_series(0, 2) k WHERE p.outcome IN :outcomes AND p.n % :parts = :part""",
    "sleep_metrics": f"""
INSERT INTO sleep_metrics (user_id, sleep_start, sleep_end, duration_minutes, deep_sleep_minutes,
                           rem_sleep_minutes, light_sleep_minutes, awake_minutes, efficiency, source_device)
SELECT p.user_id, {_SLEEP}, {_SLEEP} + interval '180 min', {_SQL_SLEEP_MIN}, 30, 45, {_SQL_SLEEP_MIN} - 75, 12,
       100.0 * {_SQL_SLEEP_MIN} / 180, 'Apple Watch'
FROM bench_plan p, generate_series(0, 1) k WHERE p.outcome IN :outcomes AND p.n % :parts = :part""",
    "workout_metrics": f"""
INSERT INTO workout_metrics (user_id, workout_type, started_at, ended_at, active_energy_kcal, distance_meters,
                             source_device)
SELECT p.user_id, 'Outdoor Run', {_WORKOUT}, {_WORKOUT} + make_interval(mins => {_SQL_WORK_MIN}), {_SQL_WORK_MIN} * 9,
       round({_SQL_WORK_MIN} * 0.16, 2) * 1000, 'Apple Watch'
FROM bench_plan p, generate_series(0, 1) k WHERE p.outcome IN :outcomes AND p.n % :parts = :part""",
}


@dataclass
class MonitorDataset:
    users: int
    ingestions: int
    rows_by_table: dict[str, int]
    outcomes: dict[str, int]
    window_outcomes: dict[str, int]  # of the ingestions created in the 24 hours before now
    in_last_24h: int
    first_created: datetime
    last_created: datetime
    payload_bytes: int
    seconds: dict[str, float]

    @property
    def rows_total(self) -> int:
        return sum(self.rows_by_table.values())

    def expected_loss(self) -> tuple[int, int, int]:
        """(ingestions with missing rows, of them silent, missing rows) in the 24-hour window."""
        lost = silent = rows = 0
        for outcome, n in self.window_outcomes.items():
            missing = sum(k for t, k in MONITOR_POINTS.items() if t not in MONITOR_WRITTEN[outcome])
            if outcome != "pending" and missing:
                lost += n
                silent += n if outcome == "silent_loss" else 0
                rows += n * missing
        return lost, silent, rows


def build_monitor_dataset(engine: Engine, *, users: int, seed: int, now: datetime, workers: int = 2) -> (
    MonitorDataset
):
    """``users`` x 100 ingestions spread evenly over the 30 days before ``now`` and their rows.

    Each user exports every 432 minutes; users are staggered by ``30 days / 100 / users`` so the
    ingestions arrive evenly (a 24-hour window holds 1/30 of them). Outcomes are drawn per ingestion
    from a hash of the seed: 2% error, 1% partial_success, 1% silent loss (processed, heart rate
    missing), 96% processed; those created in the last 20 minutes are pending. Work is split
    into ``workers`` parts run on parallel connections.
    """
    import concurrent.futures
    import time

    seconds: dict[str, float] = {}
    spread = max(1, round(MONITOR_WINDOW_S / users))  # whole seconds between two users' exports
    # The newest exports arrive about ten minutes before now; the oldest 30 days earlier.
    # User u's export j covers [t0 + j * window + u * spread, + window) and arrives 1-5 minutes after.
    t0 = (now - timedelta(seconds=(MONITOR_PAYLOADS_PER_USER + 1) * MONITOR_WINDOW_S + 900)).replace(microsecond=0)
    rng = random.Random(seed)
    clock = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE IF EXISTS bench_users, bench_plan"))
        conn.execute(sa.text("CREATE TABLE bench_users (u int PRIMARY KEY, user_id uuid, zone text, shift interval)"))
        values = []
        for u in range(users):
            offset = _OFFSETS[u % len(_OFFSETS)]
            sign = "-" if offset < 0 else "+"
            values.append({
                "u": u, "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                "zone": f"{sign}{abs(offset) // 60:02d}{abs(offset) % 60:02d}", "shift": timedelta(minutes=offset),
            })
        conn.execute(sa.text("INSERT INTO bench_users VALUES (:u, :id, :zone, :shift)"), values)
        conn.execute(sa.text(
            "INSERT INTO users (id, email) SELECT user_id, 'monitor-user' || u || '@example.test' FROM bench_users"
        ))
        conn.execute(
            sa.text(_PLAN_SQL.format(per_user=MONITOR_PAYLOADS_PER_USER, window=MONITOR_WINDOW_S)),
            {"users": users, "t0": t0, "spread": spread, "seed": seed, "now": now},
        )
        conn.execute(sa.text("CREATE INDEX ON bench_plan (n)"))
        conn.execute(sa.text("ANALYZE bench_plan"))
    seconds["plan"] = time.perf_counter() - clock

    def run(statement: str, params: dict[str, Any], part: int) -> None:
        with engine.begin() as conn:
            conn.execute(sa.text("SET LOCAL synchronous_commit = off"))
            conn.execute(sa.text(statement), {**params, "parts": workers, "part": part})

    def parallel(statement: str, params: dict[str, Any]) -> None:
        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
            for future in [pool.submit(run, statement, params, part) for part in range(workers)]:
                future.result()

    clock = time.perf_counter()
    parallel(_PAYLOAD_SQL, {"error": PARAMETER_LIMIT_ERROR})
    seconds["payloads"] = time.perf_counter() - clock
    clock = time.perf_counter()
    parallel(f"UPDATE raw_ingestions SET payload_hash = {PAYLOAD_SHA256_SQL} WHERE payload_hash = '' "
             "AND abs(hashtext(id::text)) % :parts = :part", {})
    seconds["hashes"] = time.perf_counter() - clock
    clock = time.perf_counter()
    for name, statement in _ROWS_SQL.items():
        outcomes = tuple(o for o, tables in MONITOR_WRITTEN.items() if name in tables)
        parallel(statement.replace(":outcomes", "(" + ", ".join(f"'{o}'" for o in outcomes) + ")"), {})
    seconds["rows"] = time.perf_counter() - clock
    clock = time.perf_counter()
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT")
        for name in ("raw_ingestions", *METRIC_TABLES):
            conn.execute(sa.text(f"VACUUM ANALYZE {name}"))
    seconds["vacuum"] = time.perf_counter() - clock
    with engine.begin() as conn:
        outcomes = dict(conn.execute(sa.text("SELECT outcome, count(*) FROM bench_plan GROUP BY 1")).all())
        in_window = dict(conn.execute(sa.text("SELECT outcome, count(*) FROM bench_plan WHERE created_at >= :since "
                                              "GROUP BY 1"), {"since": now - timedelta(hours=24)}).all())
        rows = {t: int(conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one()) for t in METRIC_TABLES}
        stats = conn.execute(sa.text(
            "SELECT count(*), count(*) FILTER (WHERE created_at >= :since), min(created_at), max(created_at), "
            "sum(payload_size_bytes) FROM raw_ingestions"), {"since": now - timedelta(hours=24)}).one()
        conn.execute(sa.text("DROP TABLE bench_users, bench_plan"))
    return MonitorDataset(
        users=users, ingestions=int(stats[0]), rows_by_table=rows, outcomes={k: int(v) for k, v in outcomes.items()},
        window_outcomes={k: int(v) for k, v in in_window.items()},
        in_last_24h=int(stats[1]), first_created=stats[2], last_created=stats[3], payload_bytes=int(stats[4]),
        seconds=seconds,
    )
