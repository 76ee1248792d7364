"""Catalogue entries: activity (rings, distances per sport, mobility, running and cycling, diving),
environment, audio exposure, mindfulness, safety events, hygiene, sexual activity.

Activity is one wide table: several metrics at one instant fill one row (steps, distance and
energy of one hour). Speeds, lengths and durations are converted to the column's unit.
"""

from __future__ import annotations

from recovery_lib.catalogue.model import MetricSpec, number, text
from recovery_lib.catalogue.vitals import PERCENT, qty

ACTIVITY = (0.0, 1e7)  # one bucket of a sum (steps, meters, kcal): a day's worth and then some
MINUTES = (0.0, 1440.0)
SPEED = (0.0, 100.0)  # m/s
POWER = (0.0, 3000.0)  # W
A = "activity_metrics"

ACTIVITIES: tuple[MetricSpec, ...] = (
    # --- rings and energy
    qty("step_count", A, "step_count", ACTIVITY),
    qty("walking_running_distance", A, "distance_meters", ACTIVITY, kind="length", unit="m",
        aliases=("distance_walking_running", "walking_+_running_distance")),
    qty("flights_climbed", A, "flights_climbed", ACTIVITY),
    qty("active_energy", A, "active_energy_burned_kcal", ACTIVITY, kind="energy", unit="kcal"),
    qty("basal_energy_burned", A, "basal_energy_burned_kcal", ACTIVITY, kind="energy", unit="kcal",
        aliases=("resting_energy",)),
    qty("apple_exercise_time", A, "apple_exercise_time_minutes", MINUTES, kind="time", unit="min"),
    qty("apple_stand_time", A, "apple_stand_time_minutes", MINUTES, kind="time", unit="min"),
    qty("apple_move_time", A, "apple_move_time_minutes", MINUTES, kind="time", unit="min"),
    qty("apple_stand_hour", A, "apple_stand_hours", (0.0, 1e5), note="hours with a stand, a count per bucket"),
    qty("physical_effort", A, "physical_effort_kcal_hr_kg", (0.0, 100.0), note="kcal/hr·kg (MET)"),
    # --- distances per sport, counts
    qty("cycling_distance", A, "distance_cycling_meters", ACTIVITY, kind="length", unit="m"),
    qty("swimming_distance", A, "distance_swimming_meters", ACTIVITY, kind="length", unit="m"),
    qty("wheelchair_distance", A, "distance_wheelchair_meters", ACTIVITY, kind="length", unit="m"),
    qty("downhill_snow_sports", A, "distance_downhill_snow_sports_meters", ACTIVITY, kind="length", unit="m",
        aliases=("distance_downhill_snow_sports",)),
    qty("wheelchair_push_count", A, "push_count", ACTIVITY, aliases=("push_count",)),
    qty("swim_stroke_count", A, "swimming_stroke_count", ACTIVITY, aliases=("swimming_stroke_count",)),
    # --- mobility
    qty("walking_speed", A, "walking_speed_m_per_s", SPEED, kind="speed", unit="m/s"),
    qty("walking_step_length", A, "walking_step_length_cm", (0.0, 500.0), kind="length", unit="cm"),
    qty("walking_asymmetry_percentage", A, "walking_asymmetry_percent", PERCENT),
    qty("walking_double_support_percentage", A, "walking_double_support_percent", PERCENT),
    qty("six_minute_walking_test_distance", A, "six_minute_walk_test_distance_m", (0.0, 10000.0), kind="length",
        unit="m", aliases=("six-minute_walking_test_distance", "six_minute_walk_test_distance")),
    qty("stair_speed_up", A, "stair_ascent_speed_m_per_s", SPEED, kind="speed", unit="m/s",
        aliases=("stair_speed:_up", "stair_ascent_speed")),
    qty("stair_speed_down", A, "stair_descent_speed_m_per_s", SPEED, kind="speed", unit="m/s",
        aliases=("stair_speed:_down", "stair_descent_speed")),
    # --- running and cycling dynamics
    qty("running_ground_contact_time", A, "ground_contact_time_ms", (0.0, 10000.0), kind="duration_ms", unit="ms"),
    qty("running_vertical_oscillation", A, "vertical_oscillation_cm", (0.0, 200.0), kind="length", unit="cm"),
    qty("running_stride_length", A, "running_stride_length_m", (0.0, 10.0), kind="length", unit="m"),
    qty("running_power", A, "running_power_watts", POWER, kind="power", unit="W"),
    qty("running_speed", A, "running_speed_m_per_s", SPEED, kind="speed", unit="m/s"),
    qty("cycling_speed", A, "cycling_speed_kmh", (0.0, 300.0), kind="speed", unit="km/h"),
    qty("cycling_power", A, "cycling_power_watts", POWER, kind="power", unit="W"),
    qty("cycling_cadence", A, "cycling_cadence_rpm", (0.0, 400.0)),
    qty("cycling_functional_threshold_power", A, "functional_threshold_power_watts", POWER, kind="power", unit="W"),
    # --- diving
    qty("under_water_depth", A, "underwater_depth_meters", (0.0, 1000.0), kind="length", unit="m",
        aliases=("underwater_depth",)),
    # --- environment and audio
    qty("time_in_daylight", "environmental_metrics", "time_in_daylight_minutes", (0.0, 1e5), kind="time", unit="min"),
    qty("uv_exposure", "environmental_metrics", "uv_index", (0.0, 50.0), aliases=("uv_index",)),
    qty("environmental_audio_exposure", "audio_exposure_metrics", "environmental_audio_exposure_db", (0.0, 200.0),
        aliases=("environmental_audio",), note="dBASPL"),
    qty("headphone_audio_exposure", "audio_exposure_metrics", "headphone_audio_exposure_db", (0.0, 200.0),
        aliases=("headphone_audio",), note="dBASPL"),
    # --- mindfulness, safety, hygiene, sexual activity
    qty("mindful_minutes", "mindfulness_metrics", "session_duration_minutes", (0.0, 1e5), kind="time", unit="min",
        aliases=("mindful_session",)),
    qty("number_of_times_fallen", "safety_event_metrics", "fall_count", (0.0, 1e4),
        aliases=("number_of_time_fallen",)),
    MetricSpec("handwashing", "hygiene_events", (
        number("qty", "handwashing", (0.0, 1e6)),
        text("value", "handwashing_value"),
    ), note="value: Complete or Incomplete"),
    MetricSpec("toothbrushing", "hygiene_events", (
        number("qty", "toothbrushing", (0.0, 1e6)),
        text("value", "toothbrushing_value"),
    ), note="value: Complete or Incomplete"),
    MetricSpec("sexual_activity", "fertility_tracking", (
        number("Unspecified", "sexual_activity_unspecified", (0.0, 1e4), required=False),
        number("Protection Used", "sexual_activity_protection_used", (0.0, 1e4), required=False),
        number("Protection Not Used", "sexual_activity_protection_not_used", (0.0, 1e4), required=False),
    ), note="counts per bucket; at least one of the three"),
)
