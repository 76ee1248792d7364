"""Catalogue entries: heart, blood pressure, body, temperature, respiratory, glucose, metabolic, skin.

One entry per metric name the app exports; ``aliases`` are the other spellings seen across app
versions and ingesters (the vendor's ``MetricName.ts`` list, real payloads, CSV headers). Limits
are plausible physical ranges in the column's unit (a value outside is ``out_of_range``); a target
database may be stricter (its CHECK constraints are its own business, see issue 13).
"""

from __future__ import annotations

from recovery_lib.catalogue.model import MetricSpec, number, text

HEART_RATE = (20.0, 300.0)
HRV = (0.0, 500.0)
SYSTOLIC = (40.0, 300.0)
DIASTOLIC = (20.0, 200.0)
PULSE = (20.0, 300.0)
PERCENT = (0.0, 100.0)  # percentages are stored as given (exports send 0-100; a few 0-1 fractions)


def qty(name: str, table: str, column: str, limits: tuple[float, float], *, kind: str | None = None,
        unit: str | None = None, aliases: tuple[str, ...] = (), note: str = "") -> MetricSpec:
    """A metric whose points carry one number, ``qty``."""
    return MetricSpec(name, table, (number("qty", column, limits, kind=kind, unit=unit),), aliases=aliases, note=note)


HR, BP, BODY, TEMP, RESP = (
    "heart_rate_metrics", "blood_pressure_metrics", "body_measurements", "temperature_metrics", "respiratory_metrics",
)

VITALS: tuple[MetricSpec, ...] = (
    # --- heart
    MetricSpec("heart_rate", HR, (
        number(("Avg", "qty"), "heart_rate", HEART_RATE),
        number("Min", "heart_rate_min", HEART_RATE, required=False),
        number("Max", "heart_rate_max", HEART_RATE, required=False),
    ), note="Min/Avg/Max when summarised, a bare qty per sample otherwise"),
    qty("resting_heart_rate", HR, "resting_heart_rate", HEART_RATE),
    qty("heart_rate_variability", HR, "heart_rate_variability", HRV, aliases=("heart_rate_variability_sdnn",),
        note="SDNN in ms"),
    qty("walking_heart_rate_average", HR, "walking_heart_rate_average", HEART_RATE,
        aliases=("walking_heart_rate",)),
    qty("cardio_recovery", HR, "heart_rate_recovery_one_minute", (0.0, 250.0),
        aliases=("heart_rate_recovery_one_minute",), note="drop in beats per minute one minute after exercise"),
    qty("atrial_fibrillation_burden", HR, "atrial_fibrillation_burden_percentage", PERCENT),
    qty("vo2_max", HR, "vo2_max_ml_kg_min", (1.0, 100.0), aliases=("vo2max",), note="ml/(kg·min)"),
    # --- blood pressure
    MetricSpec("blood_pressure", BP, (
        number("systolic", "systolic", SYSTOLIC),
        number("diastolic", "diastolic", DIASTOLIC),
        number("pulse", "pulse", PULSE, required=False),
    )),
    qty("blood_pressure_systolic", BP, "systolic", SYSTOLIC, note="the older split form: matched by date"),
    qty("blood_pressure_diastolic", BP, "diastolic", DIASTOLIC, note="the older split form: matched by date"),
    # --- body measurements
    qty("weight_body_mass", BODY, "body_weight_kg", (0.5, 700.0), kind="mass", unit="kg",
        aliases=("body_mass", "weight", "body_weight", "weight_&_body_mass")),
    qty("height", BODY, "height_cm", (20.0, 300.0), kind="length", unit="cm"),
    qty("body_mass_index", BODY, "body_mass_index", (5.0, 150.0)),
    qty("body_fat_percentage", BODY, "body_fat_percentage", PERCENT),
    qty("lean_body_mass", BODY, "lean_body_mass_kg", (0.5, 500.0), kind="mass", unit="kg"),
    qty("waist_circumference", BODY, "waist_circumference_cm", (10.0, 400.0), kind="length", unit="cm"),
    # --- temperature (degrees Celsius)
    qty("body_temperature", TEMP, "body_temperature", (20.0, 46.0), kind="temperature", unit="degC"),
    qty("basal_body_temperature", TEMP, "basal_body_temperature", (20.0, 46.0), kind="temperature", unit="degC"),
    qty("apple_sleeping_wrist_temperature", TEMP, "apple_sleeping_wrist_temperature", (15.0, 46.0),
        kind="temperature", unit="degC", aliases=("sleeping_wrist_temperature", "wrist_temperature")),
    qty("under_water_temperature", TEMP, "water_temperature", (-5.0, 60.0), kind="temperature", unit="degC",
        aliases=("underwater_temperature", "water_temperature")),
    # --- respiratory
    qty("respiratory_rate", RESP, "respiratory_rate", (1.0, 150.0), note="breaths per minute"),
    qty("blood_oxygen_saturation", RESP, "oxygen_saturation", PERCENT, aliases=("oxygen_saturation",)),
    qty("forced_vital_capacity", RESP, "forced_vital_capacity", (0.0, 15.0), kind="volume", unit="L"),
    qty("forced_expiratory_volume", RESP, "forced_expiratory_volume_1", (0.0, 15.0), kind="volume", unit="L",
        aliases=("forced_expiratory_volume_1",)),
    qty("peak_expiratory_flow_rate", RESP, "peak_expiratory_flow_rate", (0.0, 1500.0), kind="flow", unit="L/min"),
    qty("inhaler_usage", RESP, "inhaler_usage", (0.0, 1000.0)),
    qty("breathing_disturbances", RESP, "breathing_disturbances", (0.0, 1000.0), note="events per hour of sleep"),
    qty("peripheral_perfusion_index", RESP, "peripheral_perfusion_index", PERCENT),
    # --- blood glucose, insulin, alcohol
    MetricSpec("blood_glucose", "blood_glucose_metrics", (
        number("qty", "blood_glucose_mg_dl", (1.0, 2000.0), kind="glucose", unit="mg/dL"),
        text("mealTime", "meal_time"),
    ), note="mealTime: Before Meal, After Meal or Unspecified"),
    MetricSpec("insulin_delivery", "metabolic_metrics", (
        number("qty", "insulin_delivery_units", (0.0, 500.0), kind="insulin", unit="IU"),
        text("reason", "insulin_delivery_reason"),
    ), note="reason: Bolus or Basal"),
    qty("blood_alcohol_content", "metabolic_metrics", "blood_alcohol_content", PERCENT),
    qty("number_of_alcoholic_beverages", "metabolic_metrics", "alcoholic_beverages", (0.0, 1000.0),
        aliases=("alcohol_consumption",)),
    # --- skin conductance (no table of its own in the API; beside the state of mind)
    qty("electrodermal_activity", "mental_health_metrics", "electrodermal_activity_us", (0.0, 1e4),
        note="microsiemens"),
)
