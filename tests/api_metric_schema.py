"""A database built the way the Health Export API builds its own: its ingestion tables and five metric tables.

Our own DDL of a subset of ``database/schema.sql`` (Ladvien/self-sensored): the same table and
column names, types (INTEGER heart rates and minutes, NUMERIC percentages, enums), CHECK
constraints with their names, UNIQUE keys and ``ON DELETE CASCADE``. ``uuid_generate_v4()`` comes
from ``uuid-ossp`` there; the embedded test server has no contrib extensions, so a function of that
name stands in. :func:`catalog_definitions` dumps what ``db init`` and a recovery must never change.
"""

from __future__ import annotations

import api_schema
from sqlalchemy.engine import Engine

from recovery_lib import schema

# The API's ingestion tables (tests/api_schema.py) and five of its metric tables.
METRIC_TABLES = ("heart_rate_metrics", "blood_pressure_metrics", "sleep_metrics", "activity_metrics", "workouts")
API_TABLES = (*api_schema.API_TABLES, *METRIC_TABLES)

API_DDL = api_schema.API_DDL + """
CREATE TYPE activity_context AS ENUM ('resting', 'walking', 'running', 'cycling', 'exercise', 'sleeping',
    'sedentary', 'active', 'post_meal', 'stressed', 'recovery');
CREATE TYPE workout_type AS ENUM ('american_football', 'archery', 'australian_football', 'badminton', 'baseball',
    'basketball', 'bowling', 'boxing', 'climbing', 'cross_training', 'curling', 'cycling', 'dance',
    'dance_inspired_training', 'elliptical', 'equestrian_sports', 'fencing', 'fishing',
    'functional_strength_training', 'golf', 'gymnastics', 'handball', 'hiking', 'hockey', 'hunting', 'lacrosse',
    'martial_arts', 'mind_and_body', 'mixed_metabolic_cardio_training', 'paddle_sports', 'play',
    'preparation_and_recovery', 'racquetball', 'rowing', 'rugby', 'running', 'sailing', 'skating_sports',
    'snow_sports', 'soccer', 'softball', 'squash', 'stair_climbing', 'surfing_sports', 'swimming', 'table_tennis',
    'tennis', 'track_and_field', 'traditional_strength_training', 'volleyball', 'walking', 'water_fitness',
    'water_polo', 'water_sports', 'wrestling', 'yoga', 'barre', 'core_training', 'cross_country_skiing',
    'downhill_skiing', 'flexibility', 'hiit', 'jump_rope', 'kickboxing', 'pilates', 'snowboarding', 'stairs',
    'step_training', 'wheelchair_walk_pace', 'wheelchair_run_pace', 'tai_chi', 'mixed_cardio', 'hand_cycling',
    'disc_sports', 'fitness_gaming', 'strength_training', 'sports', 'other');
CREATE TABLE heart_rate_metrics (
    id UUID PRIMARY KEY DEFAULT uuid_generate_v4(),
    user_id UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    recorded_at TIMESTAMPTZ NOT NULL,
    heart_rate INTEGER,
    resting_heart_rate INTEGER,
    heart_rate_variability DOUBLE PRECISION,
    walking_heart_rate_average INTEGER,
    heart_rate_recovery_one_minute INTEGER,
    atrial_fibrillation_burden_percentage NUMERIC(5,2),
    vo2_max_ml_kg_min NUMERIC(5,2),
    context activity_context,
    source_device VARCHAR(255),
    created_at TIMESTAMPTZ DEFAULT CURRENT_TIMESTAMP,
    UNIQUE(user_id, recorded_at),
    CONSTRAINT chk_walking_hr_range CHECK (walking_heart_rate_average IS NULL
        OR walking_heart_rate_average BETWEEN 60 AND 200),
    CONSTRAINT chk_hr_recovery_range CHECK (heart_rate_recovery_one_minute IS NULL
        OR heart_rate_recovery_one_minute BETWEEN 0 AND 100),
    CONSTRAINT chk_afib_burden_range CHECK (atrial_fibrillation_burden_percentage IS NULL
        OR atrial_fibrillation_burden_percentage BETWEEN 0.00 AND 100.00),
    CONSTRAINT chk_vo2_max_range CHECK (vo2_max_ml_kg_min IS NULL OR vo2_max_ml_kg_min BETWEEN 14.00 AND 65.00)
);
CREATE INDEX idx_heart_rate_user_recorded ON heart_rate_metrics(user_id, recorded_at DESC);
CREATE TABLE blood_pressure_metrics (
    id UUID PRIMARY KEY DEFAULT uuid_generate_v4(),
    user_id UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    recorded_at TIMESTAMPTZ NOT NULL,
    systolic INTEGER NOT NULL,
    diastolic INTEGER NOT NULL,
    pulse INTEGER,
    source_device VARCHAR(255),
    created_at TIMESTAMPTZ DEFAULT CURRENT_TIMESTAMP,
    UNIQUE(user_id, recorded_at)
);
CREATE TABLE sleep_metrics (
    id UUID PRIMARY KEY DEFAULT uuid_generate_v4(),
    user_id UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    sleep_start TIMESTAMPTZ NOT NULL,
    sleep_end TIMESTAMPTZ NOT NULL,
    duration_minutes INTEGER,
    deep_sleep_minutes INTEGER,
    rem_sleep_minutes INTEGER,
    light_sleep_minutes INTEGER,
    awake_minutes INTEGER,
    efficiency DOUBLE PRECISION,
    source_device VARCHAR(255),
    created_at TIMESTAMPTZ DEFAULT CURRENT_TIMESTAMP,
    UNIQUE(user_id, sleep_start)
);
CREATE TABLE activity_metrics (
    id UUID PRIMARY KEY DEFAULT uuid_generate_v4(),
    user_id UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    recorded_at TIMESTAMPTZ NOT NULL,
    step_count INTEGER,
    distance_meters DOUBLE PRECISION,
    flights_climbed INTEGER,
    active_energy_burned_kcal DOUBLE PRECISION,
    basal_energy_burned_kcal DOUBLE PRECISION,
    distance_cycling_meters DOUBLE PRECISION CHECK (distance_cycling_meters IS NULL OR distance_cycling_meters >= 0.0),
    push_count INTEGER CHECK (push_count IS NULL OR push_count >= 0),
    apple_exercise_time_minutes INTEGER CHECK (apple_exercise_time_minutes IS NULL OR apple_exercise_time_minutes >= 0),
    apple_stand_hour_achieved BOOLEAN DEFAULT false,
    walking_asymmetry_percent DOUBLE PRECISION CHECK (walking_asymmetry_percent IS NULL
        OR (walking_asymmetry_percent >= 0.0 AND walking_asymmetry_percent <= 100.0)),
    source_device VARCHAR(255),
    created_at TIMESTAMPTZ DEFAULT CURRENT_TIMESTAMP,
    UNIQUE(user_id, recorded_at)
);
CREATE TABLE workouts (
    id UUID PRIMARY KEY DEFAULT uuid_generate_v4(),
    user_id UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    workout_type workout_type NOT NULL,
    started_at TIMESTAMPTZ NOT NULL,
    ended_at TIMESTAMPTZ NOT NULL,
    total_energy_kcal DOUBLE PRECISION,
    active_energy_kcal DOUBLE PRECISION,
    distance_meters DOUBLE PRECISION,
    avg_heart_rate INTEGER,
    max_heart_rate INTEGER,
    source_device VARCHAR(255),
    created_at TIMESTAMPTZ DEFAULT CURRENT_TIMESTAMP,
    UNIQUE(user_id, started_at)
);
CREATE INDEX idx_workouts_user_started ON workouts(user_id, started_at DESC);
"""


def create_api_database(engine: Engine) -> None:
    """Replace this project's tables in ``public`` by the API's tables above."""
    schema.drop_all(engine)
    drop_api_database(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql(API_DDL)


def drop_api_database(engine: Engine) -> None:
    """Drop the API's objects and this tool's schema (``public`` itself and its privileges stay)."""
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP SCHEMA IF EXISTS recovery CASCADE")
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {', '.join(reversed(API_TABLES))} CASCADE")
        conn.exec_driver_sql("DROP TYPE IF EXISTS activity_context, workout_type, job_status, job_type")
        conn.exec_driver_sql("DROP FUNCTION IF EXISTS uuid_generate_v4()")


def catalog_definitions(engine: Engine) -> dict[str, list[tuple]]:
    """The API tables' definitions as pg_catalog holds them (tests/api_schema.py's, over the metric tables too)."""
    return api_schema.definitions(engine, API_TABLES)
