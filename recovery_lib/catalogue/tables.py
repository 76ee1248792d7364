"""The tables of every family, named as in the Health Export API's public schema where it has one.

``Ladvien/self-sensored`` (``database/schema.sql``) names ``heart_rate_metrics``,
``blood_pressure_metrics``, ``sleep_metrics``, ``activity_metrics``, ``body_measurements``,
``temperature_metrics``, ``blood_glucose_metrics``, ``metabolic_metrics``, ``respiratory_metrics``,
``nutrition_metrics``, ``environmental_metrics``, ``audio_exposure_metrics``,
``safety_event_metrics``, ``mindfulness_metrics``, ``mental_health_metrics``, ``menstrual_health``,
``fertility_tracking``, ``symptoms``, ``hygiene_events`` and ``heart_rate_events``; the incident
guide's ``workout_metrics`` keeps its name (the API calls it ``workouts``). Medications, ECG
recordings, a workout's timed samples and its route points (the API keeps a route as one line per
workout, ``workout_routes``), and the generic ``other_metrics`` have no table there and are named
here.

    >>> TABLES["symptoms"].tag
    'symptom_type'
"""

from __future__ import annotations

from dataclasses import replace

from recovery_lib.catalogue.model import FLOAT, TEXT, TIMESTAMP, Column, TableSpec

_SOURCE = Column("source_device", TEXT)


def _with_source(spec: TableSpec) -> TableSpec:
    """Every table ends with its source column (most payload entries name the device that measured)."""
    return replace(spec, columns=(*spec.columns, _SOURCE))


TABLES: dict[str, TableSpec] = {
    t.name: _with_source(t)
    for t in (
        TableSpec("heart_rate_metrics", "heart rate", chunk_env="BATCH_HEART_RATE_CHUNK_SIZE"),
        TableSpec("blood_pressure_metrics", "blood pressure", chunk_env="BATCH_BLOOD_PRESSURE_CHUNK_SIZE"),
        TableSpec(
            "sleep_metrics", "sleep", key="sleep_start", chunk_env="BATCH_SLEEP_CHUNK_SIZE",
            columns=(Column("sleep_end", TIMESTAMP), Column("duration_minutes"), Column("deep_sleep_minutes"),
                     Column("rem_sleep_minutes"), Column("light_sleep_minutes"), Column("awake_minutes"),
                     Column("efficiency")),
        ),
        TableSpec("activity_metrics", "activity", chunk_env="BATCH_ACTIVITY_CHUNK_SIZE"),
        TableSpec(
            "workout_metrics", "workouts", key="started_at", chunk_env="BATCH_WORKOUT_CHUNK_SIZE",
            columns=(Column("workout_type", TEXT), Column("ended_at", TIMESTAMP), Column("total_energy_kcal"),
                     Column("active_energy_kcal"), Column("distance_meters"), Column("avg_heart_rate"),
                     Column("max_heart_rate")),
        ),
        TableSpec("body_measurements", "body measurements"),
        TableSpec("temperature_metrics", "temperature"),
        TableSpec("blood_glucose_metrics", "blood glucose and insulin"),
        TableSpec("metabolic_metrics", "blood glucose and insulin"),
        TableSpec("respiratory_metrics", "respiratory"),
        TableSpec("nutrition_metrics", "nutrition"),
        TableSpec("environmental_metrics", "environmental"),
        TableSpec("audio_exposure_metrics", "audio exposure"),
        TableSpec("safety_event_metrics", "safety events"),
        TableSpec("mindfulness_metrics", "mindfulness"),
        TableSpec("hygiene_events", "hygiene"),
        TableSpec("mental_health_metrics", "mental health"),
        TableSpec("menstrual_health", "menstrual, fertility and sexual activity"),
        TableSpec("fertility_tracking", "menstrual, fertility and sexual activity"),
        TableSpec("symptoms", "symptoms", tag="symptom_type"),
        TableSpec("medications", "medications", key="taken_at", tag="medication"),
        TableSpec("ecg_recordings", "ECG", key="started_at"),
        TableSpec("heart_rate_events", "heart-rate notifications", key="event_occurred_at"),
        TableSpec("workout_samples", "workouts", tag="workout_started_at", tag_type=TIMESTAMP),
        TableSpec("workout_route_points", "workouts", tag="workout_started_at", tag_type=TIMESTAMP),
        TableSpec(
            "other_metrics", "other (generic)", tag="metric_name",
            columns=(Column("qty", FLOAT), Column("units", TEXT)),
        ),
    )
}

GENERIC_TABLE = "other_metrics"
FAMILIES: tuple[str, ...] = tuple(dict.fromkeys(t.family for t in TABLES.values()))
