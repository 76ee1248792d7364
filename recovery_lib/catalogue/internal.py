"""The API's internal form as data: which table each ``type`` tag fills, and every field of every build.

The Health Export API (``Ladvien/self-sensored``) stores a parsed upload in ``raw_ingestions`` as
its own serialisation of ``IngestPayload``: ``{"data": {"metrics": [...], "workouts": [...]}}``,
each metric one row of its table, tagged ``{"type": "HeartRate", ...}``, its other keys the table's
own column names. ``api_builds.json`` (next to this module) holds the serialised shape of every
build that changed it: for each ``type`` and for ``WorkoutData``, the fields in struct order with
their Rust types. The reader (:mod:`recovery_lib.payload.internal`) takes its columns from here;
the checksum renderer (:mod:`recovery_lib.payload.serde`) its field order.

    >>> TYPE_TABLES["HeartRate"], TYPE_TABLES["Workout"]
    ('heart_rate_metrics', 'workout_metrics')
    >>> FIELDS["heart_rate_metrics"]["context"]
    'text'
    >>> [b.commit[:7] for b in BUILDS][-1]
    'd9ebdd0'

The columns the API has and the catalogue's metrics do not fill (``context``, ``measurement_source``,
a glucose reading's ``measurement_context``, ...) are columns of the catalogue's tables too
(:func:`columns`), so a value of the internal form always has a place. Only builds whose rows can be
in today's ``raw_ingestions`` (from commit 7eda72e, in force when the table got its current columns)
contribute columns; every build is kept for the checksum.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from recovery_lib.catalogue.model import BOOL, FLOAT, JSON, TEXT, TIMESTAMP, Column

#: The variant tag of ``HealthMetric`` -> the catalogue table its rows belong to.
TYPE_TABLES: dict[str, str] = {
    "HeartRate": "heart_rate_metrics",
    "BloodPressure": "blood_pressure_metrics",
    "Sleep": "sleep_metrics",
    "Activity": "activity_metrics",
    "BodyMeasurement": "body_measurements",
    "Temperature": "temperature_metrics",
    "BloodGlucose": "blood_glucose_metrics",
    "Metabolic": "metabolic_metrics",
    "Respiratory": "respiratory_metrics",
    "Nutrition": "nutrition_metrics",
    "Workout": "workout_metrics",  # the API's `workouts`; an entry of the workouts list is one too
    "Environmental": "environmental_metrics",
    "AudioExposure": "audio_exposure_metrics",
    "SafetyEvent": "safety_event_metrics",
    "Mindfulness": "mindfulness_metrics",
    "MentalHealth": "mental_health_metrics",
    "Menstrual": "menstrual_health",
    "Fertility": "fertility_tracking",
    "Symptom": "symptoms",
    "Hygiene": "hygiene_events",
}
WORKOUT_TAG = "Workout"  # what an entry of data.workouts is read as (it carries no type key)
TAG_KEY = "type"
#: The API's own bookkeeping in every object: a fresh id, the uploading user, the time of the upload.
IGNORED: frozenset[str] = frozenset({"id", "user_id", "created_at"})

# Rust type (Option<...> removed) -> the kind of JSON value serde writes for it.
_KINDS = {
    "f64": "float", "f32": "float", "i16": "int", "i32": "int", "i64": "int", "usize": "int",
    "bool": "bool", "String": "text", "uuid::Uuid": "text", "Decimal": "decimal",
    "DateTime<Utc>": "timestamp", "chrono::NaiveDate": "text", "Vec<String>": "json",
}
# The kind -> the catalogue's column type (integers and decimals are numbers; enums and ids are text).
_COLUMN_TYPES = {"float": FLOAT, "int": FLOAT, "decimal": FLOAT, "bool": BOOL, "text": TEXT,
                 "timestamp": TIMESTAMP, "json": JSON}


def inner_type(rust_type: str) -> str:
    """``Option<i16>`` -> ``i16``."""
    return rust_type[7:-1] if rust_type.startswith("Option<") else rust_type


def kind_of(rust_type: str) -> str:
    """The JSON kind serde writes for a Rust type; an enum of the API (``WorkoutType``, ...) is text."""
    return _KINDS.get(inner_type(rust_type), "text")


@dataclass(frozen=True)
class Build:
    """One serialised shape of ``IngestPayload``: the lists under ``data`` and each object's fields."""

    commit: str
    date: str  # the commit's author date (ISO 8601)
    current_layout: bool  # its rows can be in today's raw_ingestions
    lists: tuple[str, ...]  # the keys of data, in order
    metrics: dict[str, tuple[tuple[str, str], ...]]  # type tag -> ((field, Rust type), ...) after "type"
    workouts: tuple[tuple[str, str], ...]  # WorkoutData's fields

    @property
    def name(self) -> str:
        return self.commit[:7]


def _load() -> tuple[Build, ...]:
    data = json.loads((Path(__file__).with_name("api_builds.json")).read_text(encoding="utf-8"))
    shapes = data["shapes"]

    def fields(shape: str, number: int) -> tuple[tuple[str, str], ...]:
        return tuple((name, rust) for name, rust in shapes[shape][number])

    return tuple(
        Build(b["commit"], b["date"], b["current_layout"], tuple(b["lists"]),
              {tag: fields(tag, number) for tag, number in b["metrics"].items()}, fields("WorkoutData", b["workouts"]))
        for b in data["builds"]
    )


BUILDS: tuple[Build, ...] = _load()
HEAD: Build = BUILDS[-1]


def _key_columns() -> dict[str, tuple[str, ...]]:
    from recovery_lib.catalogue.tables import TABLES

    return {table: tuple(c for c in (TABLES[table].key, TABLES[table].tag) if c) for table in TYPE_TABLES.values()}


def _fields() -> dict[str, dict[str, str]]:
    """table -> {column: kind} of every field a current-layout build writes (keys and bookkeeping left out)."""
    keys = _key_columns()
    found: dict[str, dict[str, str]] = {table: {} for table in TYPE_TABLES.values()}
    for build in BUILDS:
        if not build.current_layout:
            continue
        shapes = [(tag, fields) for tag, fields in build.metrics.items() if tag in TYPE_TABLES]
        for tag, fields in [*shapes, (WORKOUT_TAG, build.workouts)]:
            table = TYPE_TABLES[tag]
            for name, rust in fields:
                if name not in IGNORED and name not in keys[table]:
                    found[table].setdefault(name, kind_of(rust))
    return found


FIELDS: dict[str, dict[str, str]] = _fields()
KEY_COLUMNS: dict[str, tuple[str, ...]] = _key_columns()


def columns(table: str) -> tuple[Column, ...]:
    """The columns the internal form fills in ``table`` (its catalogue types), in the API's field order."""
    return tuple(Column(name, _COLUMN_TYPES[kind]) for name, kind in FIELDS.get(table, {}).items())
