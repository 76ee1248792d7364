"""The catalogue knows every metric name the app exports, in every spelling seen, and nothing else claims to.

The names below are facts from public sources: the vendor's own server
(HealthyApps/health-auto-export-server, server/src/models/MetricName.ts) and real exports.
"""

from __future__ import annotations

import re

import pytest

from recovery_lib import catalogue
from recovery_lib.catalogue import units
from recovery_lib.db import PROJECT_ROOT

VENDOR_NAMES = """
active_energy basal_energy_burned apple_exercise_time apple_move_time apple_stand_time apple_stand_hour
cycling_distance downhill_snow_sports swimming_distance walking_running_distance wheelchair_distance flights_climbed
wheelchair_push_count swim_stroke_count vo2max physical_effort step_count cycling_cadence
cycling_functional_threshold_power cycling_power cycling_speed running_power running_speed running_ground_contact_time
running_stride_length running_vertical_oscillation height weight_body_mass waist_circumference body_fat_percentage
body_mass_index lean_body_mass heart_rate resting_heart_rate heart_rate_variability cardio_recovery walking_heart_rate
atrial_fibrillation_burden blood_pressure walking_speed walking_step_length walking_asymmetry_percentage
walking_double_support_percentage six_minute_walking_test_distance stair_speed_up stair_speed_down respiratory_rate
forced_expiratory_volume forced_vital_capacity blood_oxygen_saturation peripheral_perfusion_index
peak_expiratory_flow_rate inhaler_usage body_temperature basal_body_temperature under_water_depth
under_water_temperature uv_exposure time_in_daylight environmental_audio headphone_audio mindful_minutes
sexual_activity electrodermal_activity sleep_analysis apple_sleeping_wrist_temperature breathing_disturbances
insulin_delivery blood_glucose blood_alcohol_content handwashing number_of_time_fallen number_of_alcoholic_beverages
toothbrushing dietary_energy dietary_water dietary_sugar cholesterol carbohydrates biotin caffeine calcium chloride
chromium copper fiber folate iodine iron magnesium manganese molybdenum monosaturated_fat niacin pantothenic_acid
polyunsaturated_fat potassium protein riboflavin saturated_fat selenium sodium thiamin total_fat vitamin_a vitamin_b6
vitamin_b12 vitamin_c vitamin_d vitamin_e vitamin_k zinc
""".split()

# One real day of data (24 metrics) in which 14 were stored nowhere before the catalogue.
ONE_REAL_DAY = """
respiratory_rate environmental_audio_exposure walking_heart_rate_average apple_stand_hour time_in_daylight
apple_sleeping_wrist_temperature breathing_disturbances physical_effort stair_speed_up stair_speed_down walking_speed
walking_step_length walking_asymmetry_percentage walking_double_support_percentage
""".split()

SPELLINGS = {
    "environmental_audio": "environmental_audio_exposure",
    "walking_heart_rate": "walking_heart_rate_average",
    "vo2max": "vo2_max",
    "six-minute_walking_test_distance": "six_minute_walking_test_distance",
    "stair_speed:_up": "stair_speed_up",
    "stair_speed:_down": "stair_speed_down",
    "dietary_protein": "protein",
    "dietary_caffeine": "caffeine",
    "monounsaturated_fat": "monounsaturated_fat",
    "monosaturated_fat": "monounsaturated_fat",
    "number_of_times_fallen": "number_of_times_fallen",
    "number_of_time_fallen": "number_of_times_fallen",
}


def test_every_name_the_vendor_lists_has_an_entry() -> None:
    assert len(VENDOR_NAMES) == 112
    missing = [name for name in VENDOR_NAMES if catalogue.lookup(name) is None]
    assert not missing, f"vendor names without an entry: {missing}"


def test_every_metric_of_one_real_day_has_a_table_and_column() -> None:
    for name in ONE_REAL_DAY:
        spec = catalogue.lookup(name)
        assert spec is not None and spec.table in catalogue.TABLES and spec.fields, name


@pytest.mark.parametrize(("spelling", "name"), SPELLINGS.items())
def test_spellings_of_other_app_versions_find_their_entry(spelling: str, name: str) -> None:
    assert catalogue.lookup(spelling).name == name


def test_every_field_column_is_a_column_of_its_table_and_each_alias_names_one_metric() -> None:
    seen: dict[str, str] = {}
    for spec in catalogue.METRICS.values():
        columns = {c.name for c in catalogue.table_columns(spec.table)}
        for f in spec.fields:
            assert f.column in columns, f"{spec.name}: {f.column} not in {spec.table}"
        for name in (spec.name, *spec.aliases):
            assert seen.setdefault(name, spec.name) == spec.name, f"{name} names two metrics"


def test_the_data_arrays_the_app_sends_are_all_in_the_catalogue() -> None:
    assert set(catalogue.ARRAYS) == {"stateOfMind", "medications", "symptoms", "cycleTracking", "ecg",
                                     "heartRateNotifications"}


@pytest.mark.parametrize(("value", "kind", "unit", "target", "expected"), [
    (5.0, "length", "km", "m", 5000.0),
    (1.0, "length", "mi", "m", 1609.344),
    (12.0, "length", "in", "cm", 30.48),
    (418.4, "energy", "kJ", "kcal", 100.0),
    (2.0, "time", "hr", "min", 120.0),
    (98.6, "temperature", "degF", "degC", 37.0),
    (3.6, "speed", "km/hr", "m/s", 1.0),
    (180.0, "mass", "lb", "kg", 81.6466266),
    (5.5, "glucose", "mmol<180.1558800000541>/L", "mg/dL", 99.1001),
    (250.0, "volume", "mL", "L", 0.25),
])
def test_units_convert_to_the_columns_unit(value, kind, unit, target, expected) -> None:
    assert units.convert(value, kind, unit, target) == pytest.approx(expected)


def test_an_unknown_unit_converts_to_nothing() -> None:
    assert units.convert(1.0, "length", "furlong", "m") is None
    assert units.convert(1.0, "length", None, "m") is None


def test_the_mapping_table_in_the_payload_doc_is_the_catalogue() -> None:
    """docs/payload-format.md shows the catalogue; regenerate it with `python -m recovery_lib.catalogue.doc`."""
    from recovery_lib.catalogue import doc

    text = (PROJECT_ROOT / "docs" / "payload-format.md").read_text(encoding="utf-8")
    found = re.search(rf"{re.escape(doc.BEGIN)}\n(.*?){re.escape(doc.END)}", text, re.S)
    assert found, "docs/payload-format.md has no generated catalogue section"
    assert found.group(1) == doc.render(), "docs/payload-format.md and the catalogue disagree: regenerate the doc"
