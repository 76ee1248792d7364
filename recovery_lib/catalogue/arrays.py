"""Catalogue entries: the data arrays beside ``metrics`` and a workout's own timed series and route.

Health Auto Export sends, besides ``data.metrics`` and ``data.workouts``: ``stateOfMind``,
``medications``, ``symptoms``, ``cycleTracking``, ``ecg`` and ``heartRateNotifications`` (one
entry per event, dated by ``start``). A version 2 workout carries timed series
(``heartRateData``, ``heartRateRecovery``, ``activeEnergy``, ``stepCount``, ...) and a GPS
``route``; each point becomes a row keyed by its time and the workout's start.

Names, values and classifications of these entries are the phone's language (``Ritmo Sinusal``,
``Flujo Menstrual``): they are stored as given, never translated.
"""

from __future__ import annotations

from recovery_lib.catalogue.model import ArraySpec, Field, blob, number, text
from recovery_lib.catalogue.vitals import HEART_RATE

ARRAYS: dict[str, ArraySpec] = {
    a.name: a
    for a in (
        ArraySpec(
            "stateOfMind", "mental_health_metrics",
            fields=(text("kind", "state_of_mind_kind"),
                    number("valence", "state_of_mind_valence", (-1.0, 1.0)),
                    blob("valenceClassification", "state_of_mind_valence_classification"),
                    blob("labels", "state_of_mind_labels"),
                    blob("associations", "state_of_mind_associations")),
            dates=(("end", "ended_at"),),
            note="valence -1 (very unpleasant) to 1 (very pleasant)",
        ),
        ArraySpec(
            "medications", "medications", tag_key="displayText",
            fields=(text("nickname", "nickname"), text("form", "form"), text("status", "status"),
                    blob("isArchived", "is_archived"), number("dosage", "dosage", (0.0, 1e6), required=False),
                    number("scheduledDosage", "scheduled_dosage", (0.0, 1e6), required=False),
                    text("units", "dosage_units"), blob("codings", "codings")),
            dates=(("end", "ended_at"), ("scheduledDate", "scheduled_at")),
            note="one row per dose, keyed by its time and the medication's name",
        ),
        ArraySpec(
            "symptoms", "symptoms", tag_key="name",
            fields=(text("severity", "severity"), blob("userEntered", "user_entered")),
            dates=(("end", "ended_at"),),
            note="one row per symptom and start",
        ),
        ArraySpec(
            "cycleTracking", "menstrual_health",
            dispatch={
                "Menstrual Flow": ("menstrual_health", "menstrual_flow"),
                "Spotting": ("menstrual_health", "spotting"),
                "Intermenstrual Bleeding": ("menstrual_health", "intermenstrual_bleeding"),
                "Cervical Mucus Quality": ("fertility_tracking", "cervical_mucus_quality"),
                "Ovulation Test Result": ("fertility_tracking", "ovulation_test_result"),
                "Pregnancy Test Result": ("fertility_tracking", "pregnancy_test_result"),
                "Progesterone Test Result": ("fertility_tracking", "progesterone_test_result"),
                "Sexual Activity": ("fertility_tracking", "sexual_activity"),
                "Lactation": ("fertility_tracking", "lactation"),
                "Contraceptive": ("fertility_tracking", "contraceptive"),
            },
            fields=(blob("isCycleStart", "cycle_start"),),
            note="the entry's name picks the column its value fills (isCycleStart goes with the flow); "
                 "other names are named, unsupported",
        ),
        ArraySpec(
            "ecg", "ecg_recordings",
            fields=(text("classification", "classification"), text("severity", "severity"),
                    number("averageHeartRate", "average_heart_rate", (0.0, 400.0), required=False),
                    number("samplingFrequency", "sampling_frequency_hz", (0.0, 1e5), required=False),
                    number("numberOfVoltageMeasurements", "voltage_count", (0.0, 1e8), required=False),
                    blob("voltageMeasurements", "voltage_measurements")),
            dates=(("end", "ended_at"),),
            note="the voltage samples are kept whole, as one JSON value",
        ),
        ArraySpec(
            "heartRateNotifications", "heart_rate_events",
            fields=(text(("type", "notificationType", "kind", "name"), "notification_type"),
                    number("threshold", "threshold", HEART_RATE, required=False),
                    blob("heartRate", "heart_rate_samples"),
                    blob("heartRateVariation", "heart_rate_variation_samples")),
            dates=(("end", "ended_at"),),
        ),
    )
}

# A workout's timed series: array name -> fields of each point (dated by "date"), in workout_samples.
_HR = (
    number(("Avg", "qty"), "heart_rate", HEART_RATE, zero_is_absent=True),
    number("Min", "heart_rate_min", HEART_RATE, required=False, zero_is_absent=True),
    number("Max", "heart_rate_max", HEART_RATE, required=False, zero_is_absent=True),
)
_RECOVERY = tuple(Field(f.keys, f"recovery_{f.column}", f.type, f.limits, f.required, zero_is_absent=True)
                  for f in _HR)
_SERIES = (0.0, 1e7)


def _series(column: str, kind: str | None = None, unit: str | None = None) -> tuple[Field, ...]:
    return (number("qty", column, _SERIES, kind=kind, unit=unit),)


WORKOUT_SERIES: dict[str, tuple[Field, ...]] = {
    "heartRateData": _HR,
    "heartRateRecovery": _RECOVERY,
    "activeEnergy": _series("active_energy_kcal", "energy", "kcal"),
    "basalEnergy": _series("basal_energy_kcal", "energy", "kcal"),
    "stepCount": _series("step_count"),
    "walkingAndRunningDistance": _series("distance_meters", "length", "m"),
    "cyclingDistance": _series("cycling_distance_meters", "length", "m"),
    "cyclingCadence": _series("cycling_cadence_rpm"),
    "cyclingPower": _series("cycling_power_watts", "power", "W"),
    "cyclingSpeed": _series("cycling_speed_kmh", "speed", "km/h"),
    "swimDistance": _series("swim_distance_meters", "length", "m"),
    "swimStroke": _series("swim_strokes"),
}
WORKOUT_SAMPLES = "workout_samples"

# A route point (version 2 names first, then version 1's), dated by "timestamp".
ROUTE_FIELDS: tuple[Field, ...] = (
    number(("latitude", "lat"), "latitude", (-90.0, 90.0)),
    number(("longitude", "lon"), "longitude", (-180.0, 180.0)),
    number("altitude", "altitude_m", (-1000.0, 10000.0), required=False),
    number("course", "course_deg", (-1.0, 360.0), required=False),
    number("courseAccuracy", "course_accuracy_deg", (-1.0, 360.0), required=False),
    number("horizontalAccuracy", "horizontal_accuracy_m", (-1.0, 1e5), required=False),
    number("verticalAccuracy", "vertical_accuracy_m", (-1.0, 1e5), required=False),
    number("speed", "speed_m_per_s", (-1.0, 1000.0), required=False),
    number("speedAccuracy", "speed_accuracy_m_per_s", (-1.0, 1000.0), required=False),
)
WORKOUT_ROUTE = "workout_route_points"
