"""The payload parser against docs/payload-format.md, one shape at a time (no database needed)."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta

import pytest

from recovery_lib.catalogue import METRICS
from recovery_lib.payload import (
    PARSER_VERSION,
    ParsedPayload,
    PartialRow,
    PayloadError,
    PayloadParser,
    Rejection,
    iter_items,
    iter_object_items,
    iter_rows,
    merge_rows,
    parse_payload,
)
from recovery_lib.payload import events as payload_events
from recovery_lib.schema import METRIC_TABLES

NOW = datetime(2024, 3, 1, tzinfo=UTC)
T = "2024-02-06 14:30:00 -0800"  # = 2024-02-06 22:30 UTC
T_UTC = datetime(2024, 2, 6, 22, 30, tzinfo=UTC)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def envelope(*metrics: dict, workouts: list | None = None) -> dict:
    data: dict = {"metrics": list(metrics)}
    if workouts is not None:
        data["workouts"] = workouts
    return {"data": data}


def metric(name: str, *points: dict, units: str | None = None) -> dict:
    """A metric in the exporter's key order: name, units, data."""
    m: dict = {"name": name}
    if units is not None:
        m["units"] = units
    m["data"] = list(points)
    return m


def parse(doc: object) -> ParsedPayload:
    return parse_payload(doc, now=NOW)


def only_row(parsed: ParsedPayload, table: str) -> dict[str, object]:
    assert parsed.counts()[table] == 1, parsed.counts()
    return next(iter(parsed.rows[table].values()))


# --------------------------------------------------------------------------- heart rate


def test_heart_rate_min_avg_max_fill_three_columns():
    doc = envelope(metric("heart_rate", {"date": T, "Min": 61, "Avg": 72.5, "Max": 90, "source": "Watch"}))
    parsed = parse(doc)
    assert parsed.rows["heart_rate_metrics"] == {
        T_UTC: {"heart_rate": 72.5, "heart_rate_min": 61.0, "heart_rate_max": 90.0, "source_device": "Watch"}
    }


def test_heart_rate_accepts_qty_instead_of_avg_and_min_max_are_optional():
    row = only_row(parse(envelope(metric("heart_rate", {"date": T, "qty": 64}))), "heart_rate_metrics")
    assert row == {"heart_rate": 64.0}


def test_resting_heart_rate_and_hrv_merge_with_heart_rate_at_one_time():
    doc = envelope(
        metric("heart_rate", {"date": T, "Avg": 70}),
        metric("resting_heart_rate", {"date": T, "qty": 55}),
        metric("heart_rate_variability", {"date": T, "qty": 48.2}, units="ms"),
    )
    row = only_row(parse(doc), "heart_rate_metrics")
    assert row == {"heart_rate": 70.0, "resting_heart_rate": 55.0, "heart_rate_variability": 48.2}


# --------------------------------------------------------------------------- blood pressure


def test_blood_pressure_with_pulse_is_one_row():
    doc = envelope(metric("blood_pressure", {"date": T, "systolic": 121, "diastolic": 79, "pulse": 66}))
    assert only_row(parse(doc), "blood_pressure_metrics") == {
        "systolic": 121.0,
        "diastolic": 79.0,
        "pulse": 66.0,
    }


def test_split_blood_pressure_pairs_are_matched_by_date():
    later = "2024-02-06 20:00:00 -0800"
    doc = envelope(
        metric("blood_pressure_systolic", {"date": T, "qty": 118}, {"date": later, "qty": 131}, units="mmHg"),
        metric("blood_pressure_diastolic", {"date": later, "qty": 85}, {"date": T, "qty": 76}, units="mmHg"),
    )
    parsed = parse(doc)
    assert parsed.rows["blood_pressure_metrics"] == {
        T_UTC: {"systolic": 118.0, "diastolic": 76.0},
        utc("2024-02-07T04:00:00"): {"systolic": 131.0, "diastolic": 85.0},
    }


def test_split_blood_pressure_partial_rows_hold_one_column_each():
    doc = envelope(
        metric("blood_pressure_systolic", {"date": T, "qty": 118}),
        metric("blood_pressure_diastolic", {"date": T, "qty": 76}),
    )
    rows = list(iter_rows(doc, PayloadParser(now=NOW)))
    assert [r.values for r in rows] == [{"systolic": 118.0}, {"diastolic": 76.0}]
    assert {r.table for r in rows} == {"blood_pressure_metrics"}


# --------------------------------------------------------------------------- activity and units


@pytest.mark.parametrize(
    ("units", "qty", "meters"),
    [("km", 1.5, 1500.0), ("mi", 2, 3218.688), ("m", 420, 420.0), (None, 420, 420.0)],
    ids=["km", "mi", "m", "no-units-means-meters"],
)
def test_distance_is_converted_to_meters(units, qty, meters):
    doc = envelope(metric("walking_running_distance", {"date": T, "qty": qty}, units=units))
    assert only_row(parse(doc), "activity_metrics") == {"distance_meters": pytest.approx(meters)}


@pytest.mark.parametrize(
    ("name", "column"),
    [("active_energy", "active_energy_burned_kcal"), ("basal_energy_burned", "basal_energy_burned_kcal")],
)
@pytest.mark.parametrize(("units", "kcal"), [("kcal", 418.4), ("kJ", 100.0), (None, 418.4)])
def test_energy_is_converted_to_kcal(name, column, units, kcal):
    doc = envelope(metric(name, {"date": T, "qty": 418.4}, units=units))
    assert only_row(parse(doc), "activity_metrics") == {column: pytest.approx(kcal)}


@pytest.mark.parametrize(
    ("name", "column"),
    [
        ("apple_exercise_time", "apple_exercise_time_minutes"),
        ("apple_stand_time", "apple_stand_time_minutes"),
    ],
)
@pytest.mark.parametrize(("units", "qty", "minutes"), [("hr", 0.5, 30.0), ("min", 12, 12.0), ("s", 90, 1.5)])
def test_times_are_converted_to_minutes(name, column, units, qty, minutes):
    doc = envelope(metric(name, {"date": T, "qty": qty}, units=units))
    assert only_row(parse(doc), "activity_metrics") == {column: pytest.approx(minutes)}


def test_units_are_matched_case_insensitively():
    doc = envelope(metric("active_energy", {"date": T, "qty": 4.184}, units="KJ"))
    assert only_row(parse(doc), "activity_metrics") == {"active_energy_burned_kcal": pytest.approx(1.0)}


def test_a_qty_object_brings_its_own_units():
    doc = envelope(
        metric("walking_running_distance", {"date": T, "qty": {"qty": 2, "units": "km"}}, units="m")
    )
    assert only_row(parse(doc), "activity_metrics") == {"distance_meters": 2000.0}


def test_step_count_and_flights_climbed_are_stored_as_given():
    doc = envelope(
        metric("step_count", {"date": T, "qty": 812}, units="count"),
        metric("flights_climbed", {"date": T, "qty": 3}, units="count"),
    )
    assert only_row(parse(doc), "activity_metrics") == {"step_count": 812.0, "flights_climbed": 3.0}


def test_wide_merge_three_metrics_at_one_time_make_one_activity_row():
    doc = envelope(
        metric("step_count", {"date": T, "qty": 812, "source": "iPhone"}, units="count"),
        metric("walking_running_distance", {"date": T, "qty": 0.6}, units="km"),
        metric("active_energy", {"date": T, "qty": 41.84}, units="kJ"),
    )
    parsed = parse(doc)
    assert parsed.counts()["activity_metrics"] == 1
    assert parsed.rows["activity_metrics"][T_UTC] == {
        "step_count": 812.0,
        "distance_meters": pytest.approx(600.0),
        "active_energy_burned_kcal": pytest.approx(10.0),
        "source_device": "iPhone",
    }
    assert parsed.parser.rows_emitted == 3  # three partial rows, one merged row


# --------------------------------------------------------------------------- dates


@pytest.mark.parametrize(
    "date",
    [
        "2024-02-06 14:30:00 -0800",
        "2024-02-06T14:30:00-08:00",
        "2024-02-06T22:30:00Z",
        "2024-02-06T22:30:00+00:00",
        "2024-02-07 04:00:00 +0530",
    ],
)
def test_dates_in_every_accepted_form_become_the_same_utc_instant(date):
    rows = list(iter_rows(envelope(metric("step_count", {"date": date, "qty": 1})), PayloadParser(now=NOW)))
    assert rows[0].key == T_UTC
    assert rows[0].key.utcoffset() == timedelta(0)


def test_fractional_seconds_are_kept_in_the_key():
    rows = list(iter_rows(envelope(metric("step_count", {"date": "2024-02-06T22:30:00.250Z", "qty": 1}))))
    assert rows[0].key == T_UTC + timedelta(milliseconds=250)


# --------------------------------------------------------------------------- sleep


def test_aggregated_sleep_is_one_row_in_minutes_with_efficiency():
    point = {
        "date": "2024-02-07 00:00:00 +0100",
        "totalSleep": 7.5,
        "asleep": 0,
        "core": 4,
        "deep": 1.5,
        "rem": 2,
        "awake": 0.25,
        "inBed": 8,
        "sleepStart": "2024-02-06 23:00:00 +0100",
        "sleepEnd": "2024-02-07 07:00:00 +0100",
        "source": "Zoë's Watch",
    }
    parsed = parse(envelope(metric("sleep_analysis", point, units="hr")))
    assert parsed.rows["sleep_metrics"] == {
        utc("2024-02-06T22:00:00"): {
            "sleep_end": utc("2024-02-07T06:00:00"),
            "duration_minutes": 450.0,
            "light_sleep_minutes": 240.0,
            "deep_sleep_minutes": 90.0,
            "rem_sleep_minutes": 120.0,
            "awake_minutes": 15.0,
            "efficiency": pytest.approx(93.75),
            "source_device": "Zoë's Watch",
        }
    }


def test_aggregated_sleep_without_total_uses_asleep_and_date_as_start():
    point = {"date": "2024-02-07 00:00:00 +0000", "asleep": 6, "inBed": 0}
    row = only_row(parse(envelope(metric("sleep_analysis", point))), "sleep_metrics")
    assert row == {"duration_minutes": 360.0}  # no sleepEnd, no efficiency when inBed is 0
    assert parse(envelope(metric("sleep_analysis", point))).expected_keys()["sleep_metrics"] == {
        utc("2024-02-07T00:00:00")
    }


def test_aggregated_sleep_in_minutes_when_the_metric_says_min():
    point = {"sleepStart": "2024-02-06 23:00:00 +0000", "totalSleep": 420, "inBed": 480}
    row = only_row(parse(envelope(metric("sleep_analysis", point, units="min"))), "sleep_metrics")
    assert row == {"duration_minutes": 420.0, "efficiency": pytest.approx(87.5)}


def segment(start: str, end: str, value: str, source: str | None = "Watch") -> dict:
    point = {
        "startDate": f"2024-02-{start} +0000",
        "endDate": f"2024-02-{end} +0000",
        "value": value,
        "qty": 0,
    }
    if source is not None:
        point["source"] = source
    return point


def test_unaggregated_sleep_segments_are_grouped_into_one_session():
    doc = envelope(
        metric(
            "sleep_analysis",
            segment("06 22:30:00", "07 06:30:00", "In Bed"),
            segment("06 23:00:00", "07 01:00:00", "Core"),
            segment("07 01:00:00", "07 02:00:00", "Deep"),
            segment("07 02:00:00", "07 02:30:00", "Awake"),
            segment("07 03:00:00", "07 04:00:00", "REM"),  # 30 min gap: same session
            segment("07 04:00:00", "07 05:00:00", "Asleep"),
        )
    )
    parsed = parse(doc)
    assert parsed.rows["sleep_metrics"] == {
        utc("2024-02-06T22:30:00"): {
            "sleep_end": utc("2024-02-07T06:30:00"),  # In Bed widens the session
            "duration_minutes": 300.0,  # Core 120 + Deep 60 + REM 60 + Asleep 60
            "light_sleep_minutes": 120.0,
            "deep_sleep_minutes": 60.0,
            "rem_sleep_minutes": 60.0,
            "awake_minutes": 30.0,
            "efficiency": pytest.approx(100 * 300 / 480),
            "source_device": "Watch",
        }
    }
    assert parsed.parser.points_used == 6


def test_unaggregated_sleep_splits_sessions_on_a_gap_over_an_hour_in_any_order():
    doc = envelope(
        metric(
            "sleep_analysis",
            segment("07 14:01:00", "07 14:31:00", "Core"),  # nap: starts 61 min after the latest end
            segment("06 23:00:00", "07 03:00:00", "Core"),
            segment("07 04:00:00", "07 13:00:00", "Deep", source=None),  # exactly 60 min: joins
        )
    )
    parsed = parse(doc)
    sleep = parsed.rows["sleep_metrics"]
    assert sorted(sleep) == [utc("2024-02-06T23:00:00"), utc("2024-02-07T14:01:00")]
    night = sleep[utc("2024-02-06T23:00:00")]
    assert night["sleep_end"] == utc("2024-02-07T13:00:00")
    assert night["duration_minutes"] == 240.0 + 540.0
    nap = sleep[utc("2024-02-07T14:01:00")]
    assert nap["duration_minutes"] == 30.0 and nap["efficiency"] == pytest.approx(100.0)


def test_a_session_row_carries_the_index_of_its_first_segment():
    doc = envelope(
        metric(
            "sleep_analysis",
            segment("07 01:00:00", "07 02:00:00", "Deep"),
            segment("06 23:00:00", "07 01:00:00", "Core"),
        )
    )
    rows = list(iter_rows(doc, PayloadParser(now=NOW)))
    assert [(r.table, r.metric, r.index) for r in rows] == [("sleep_metrics", "sleep_analysis", 1)]


# --------------------------------------------------------------------------- workouts


def test_workout_version_2_with_qty_objects_and_heart_rate_object():
    workout = {
        "id": "6a1f",
        "name": "Outdoor Run",
        "start": "2024-02-06 07:00:00 -0800",
        "end": "2024-02-06 07:45:00 -0800",
        "activeEnergyBurned": {"qty": 1673.6, "units": "kJ"},
        "totalEnergy": {"qty": 480, "units": "kcal"},
        "distance": {"qty": 5, "units": "mi"},
        "heartRate": {"min": {"qty": 98}, "avg": {"qty": 151.5, "units": "bpm"}, "max": {"qty": 178}},
        "source": "Björn's Watch",
    }
    parsed = parse(envelope(workouts=[workout]))
    assert parsed.rows["workout_metrics"] == {
        utc("2024-02-06T15:00:00"): {
            "workout_type": "Outdoor Run",
            "ended_at": utc("2024-02-06T15:45:00"),
            "active_energy_kcal": pytest.approx(400.0),
            "total_energy_kcal": 480.0,
            "distance_meters": pytest.approx(8046.72),
            "avg_heart_rate": 151.5,
            "max_heart_rate": 178.0,
            "source_device": "Björn's Watch",
        }
    }


def test_workout_version_2_with_avg_and_max_heart_rate_objects():
    workout = {
        "name": "Yoga",
        "start": "2024-02-06T07:00:00Z",
        "activeEnergyBurned": {"qty": 90, "units": "kcal"},
        "avgHeartRate": {"qty": 101},
        "maxHeartRate": {"qty": 122, "units": "bpm"},
    }
    row = only_row(parse(envelope(workouts=[workout])), "workout_metrics")
    assert row == {
        "workout_type": "Yoga",
        "active_energy_kcal": 90.0,
        "avg_heart_rate": 101.0,
        "max_heart_rate": 122.0,
    }


def test_workout_version_1_flat_fields_default_to_kcal_and_km():
    workout = {
        "name": "Outdoor Walk",
        "start": "2024-02-06 07:00:00 +0000",
        "end": "2024-02-06 08:00:00 +0000",
        "activeEnergy": 200,
        "totalEnergy": 1046,
        "totalEnergyUnits": "kJ",
        "distance": 4.2,
        "avgHeartRate": 110,
        "maxHeartRate": 131,
    }
    row = only_row(parse(envelope(workouts=[workout])), "workout_metrics")
    assert row == {
        "workout_type": "Outdoor Walk",
        "ended_at": utc("2024-02-06T08:00:00"),
        "active_energy_kcal": 200.0,
        "total_energy_kcal": pytest.approx(250.0),
        "distance_meters": pytest.approx(4200.0),
        "avg_heart_rate": 110.0,
        "max_heart_rate": 131.0,
    }


def test_workout_version_1_distance_units():
    workout = {"start": "2024-02-06T07:00:00Z", "distance": 3000, "distanceUnits": "m"}
    assert only_row(parse(envelope(workouts=[workout])), "workout_metrics") == {"distance_meters": 3000.0}


def test_a_payload_of_workouts_only_is_not_empty():
    parsed = parse({"data": {"workouts": [{"name": "Hiking", "start": "2024-02-06T07:00:00Z"}]}})
    counts = parsed.counts()
    assert set(counts) == set(METRIC_TABLES)
    assert {table: n for table, n in counts.items() if n} == {"workout_metrics": 1}


# --------------------------------------------------------------------------- unknown metrics, merge rule


def test_unknown_metrics_are_kept_in_other_metrics_and_named_with_their_point_counts():
    """A new app version's metric is stored generically, never dropped: qty, units, source, by name."""
    doc = envelope(
        metric("future_metric", {"date": T, "qty": 250, "source": "Ring"}, {"date": T, "qty": "junk"}, units="mg"),
        metric("future_metric", {"date": "2024-02-06 15:30:00 -0800", "qty": {"qty": 2, "units": "g"}}, units="mg"),
        metric("步数", {"date": T, "qty": 1}),
        metric("shaped_unlike_qty", {"date": T, "Avg": 3}),
        metric("step_count", {"date": T, "qty": 10}),
    )
    parsed = parse(doc)
    parser = parsed.parser
    assert dict(parser.generic_points) == {"future_metric": 2, "步数": 1}
    assert dict(parser.unsupported) == {"shaped_unlike_qty": 1}
    assert parser.rejection_counts == {"non_numeric": 1}
    assert (parser.points_seen, parser.points_generic, parser.points_used) == (6, 3, 1)
    assert parsed.rows["other_metrics"] == {
        (T_UTC, "future_metric"): {"qty": 250.0, "units": "mg", "source_device": "Ring"},
        (T_UTC + timedelta(hours=1), "future_metric"): {"qty": 2.0, "units": "g"},
        (T_UTC, "步数"): {"qty": 1.0},
    }
    assert parsed.counts()["activity_metrics"] == 1


def test_merge_keeps_the_first_value_of_a_column_in_payload_order():
    doc = envelope(
        metric("heart_rate", {"date": T, "Avg": 70, "source": "Watch"}),
        metric("resting_heart_rate", {"date": T, "qty": 55, "source": "iPhone"}),
    )
    assert only_row(parse(doc), "heart_rate_metrics")["source_device"] == "Watch"


def test_merge_rows_first_wins_per_column_and_fills_the_rest():
    rows = [
        PartialRow("activity_metrics", T_UTC, {"step_count": 1.0}, "step_count", 0),
        PartialRow("activity_metrics", T_UTC, {"step_count": 2.0, "flights_climbed": 3.0}, "step_count", 1),
    ]
    merged = merge_rows(rows)
    assert merged["activity_metrics"] == {T_UTC: {"step_count": 1.0, "flights_climbed": 3.0}}
    assert set(merged) == set(METRIC_TABLES)


def test_without_duplicate_tracking_repeated_points_merge_first_wins():
    doc = envelope(metric("step_count", {"date": T, "qty": 1}, {"date": T, "qty": 2}))
    parser = PayloadParser(now=NOW, track_duplicates=False)
    merged = merge_rows(parser.rows(iter_items(doc)))
    assert merged["activity_metrics"] == {T_UTC: {"step_count": 1.0}}
    assert parser.rejection_counts == {}


def test_a_metric_listed_twice_is_still_one_metric_for_duplicates():
    doc = envelope(metric("step_count", {"date": T, "qty": 1}), metric("step_count", {"date": T, "qty": 2}))
    parsed = parse(doc)
    assert parsed.parser.rejections == [Rejection("duplicate_point", "step_count", 0)]
    assert parsed.rows["activity_metrics"] == {T_UTC: {"step_count": 1.0}}


def test_the_same_key_in_two_metrics_is_not_a_duplicate():
    doc = envelope(
        metric("step_count", {"date": T, "qty": 1}), metric("flights_climbed", {"date": T, "qty": 2})
    )
    assert parse(doc).parser.rejection_counts == {}


# --------------------------------------------------------------------------- rows and books


def test_partial_rows_only_name_columns_of_their_table_and_never_the_key_or_user():
    for spec in METRICS.values():
        table = METRIC_TABLES[spec.table]
        for field in spec.fields:
            assert field.column in table.values, (spec.name, field.column)
    doc = envelope(
        metric("heart_rate", {"date": T, "Min": 60, "Avg": 70, "Max": 80, "source": "w"}),
        metric("blood_pressure", {"date": T, "systolic": 120, "diastolic": 80, "pulse": 70}),
        metric("sleep_analysis", {"sleepStart": T, "sleepEnd": T, "totalSleep": 1, "inBed": 1}),
        metric("sleep_analysis", segment("06 22:00:00", "06 23:00:00", "Core")),
        workouts=[
            {"name": "Run", "start": T, "end": T, "activeEnergy": 1, "distance": 1, "avgHeartRate": 100}
        ],
    )
    rows = list(iter_rows(doc, PayloadParser(now=NOW)))
    assert len(rows) == 5
    for row in rows:
        assert set(row.values) <= set(METRIC_TABLES[row.table].values), row
        assert "user_id" not in row.values and METRIC_TABLES[row.table].key not in row.values
        assert row.key.tzinfo is not None and row.key.utcoffset() == timedelta(0)


def test_the_source_knows_which_metrics_read_units():
    assert payload_events.UNIT_METRICS == {
        name for spec in METRICS.values() if spec.uses_units for name in (spec.name, *spec.aliases)
    }
    assert "apple_stand_time" in payload_events.UNIT_METRICS and "step_count" not in payload_events.UNIT_METRICS


def test_summary_is_json_and_counts_every_point():
    doc = envelope(
        metric("step_count", {"date": T, "qty": 1}, {"date": T, "qty": "x"}, "junk"),
        metric("unknown_thing", {"date": T}),
    )
    parser = PayloadParser(now=NOW)
    list(parser.rows(iter_items(doc)))
    summary = json.loads(json.dumps(parser.summary()))
    assert summary["points_seen"] == 4
    assert (summary["points_used"], summary["points_rejected"], summary["points_unsupported"]) == (1, 2, 1)
    assert summary["rejection_counts"] == {"non_numeric": 1, "invalid_point": 1}
    assert summary["unsupported"] == {"unknown_thing": 1} and summary["generic_points"] == {}
    assert summary["rejections"][0] == {
        "category": "non_numeric",
        "metric": "step_count",
        "index": 1,
        "field": "qty",
    }
    assert summary["parser_version"] == PARSER_VERSION


def test_rejection_message_names_where_and_what_but_not_the_value():
    assert Rejection("non_numeric", "heart_rate", 12, "Avg").message() == "heart_rate[12].Avg: non_numeric"
    assert Rejection("invalid_point", "workouts", 3).message() == "workouts[3]: invalid_point"
    assert Rejection("missing_name", "<unnamed>", 2, "name").to_dict() == {
        "category": "missing_name",
        "metric": "<unnamed>",
        "index": 2,
        "field": "name",
    }


def test_only_the_first_rejections_are_kept_but_all_are_counted():
    points = [{"date": T, "qty": "x"} for _ in range(30)]
    parser = PayloadParser(now=NOW, max_kept_rejections=5)
    list(parser.rows(iter_items(envelope(metric("step_count", *points)))))
    assert len(parser.rejections) == 5 and parser.rejection_counts["non_numeric"] == 30
    assert len(parser.summary()["rejections"]) == 5


def test_parser_version_is_an_int():
    assert isinstance(PARSER_VERSION, int) and PARSER_VERSION >= 1


def test_payload_error_carries_category_and_message():
    with pytest.raises(PayloadError) as caught:
        parse(b"{")
    assert caught.value.category == "not_json"
    assert str(caught.value) == f"not_json: {caught.value.message}"


# --------------------------------------------------------------------------- sources


SMALL = envelope(
    metric("step_count", {"date": T, "qty": 5}, units="count"),
    workouts=[{"name": "Run", "start": T}],
)
SMALL_ITEMS = [
    ("metric", 0, "step_count", "count"),
    ("point", 0, {"date": T, "qty": 5}),
    ("end",),
    ("workout", 0, {"name": "Run", "start": T}),
]


def test_iter_items_streams_from_bytes():
    assert list(iter_items(json.dumps(SMALL).encode())) == SMALL_ITEMS


def test_iter_items_streams_from_a_binary_file(tmp_path):
    path = tmp_path / "payload.json"
    path.write_text(json.dumps(SMALL), encoding="utf-8")
    with path.open("rb") as f:
        assert list(iter_items(f)) == SMALL_ITEMS


def test_iter_items_streams_from_a_text_file_and_a_str():
    assert list(iter_items(io.StringIO(json.dumps(SMALL)))) == SMALL_ITEMS
    assert list(iter_items(json.dumps(SMALL))) == SMALL_ITEMS


def test_iter_items_walks_a_decoded_object():
    assert list(iter_items(SMALL)) == SMALL_ITEMS
    assert list(iter_object_items(SMALL)) == SMALL_ITEMS


def test_numbers_from_text_are_ints_and_floats_not_decimals():
    items = list(iter_items(b'{"data": {"workouts": [{"a": 1, "b": 2.5, "c": [0.1]}]}}'))
    assert items == [("workout", 0, {"a": 1, "b": 2.5, "c": [0.1]})]
    assert type(items[0][2]["b"]) is float and type(items[0][2]["c"][0]) is float


def test_units_after_data_are_not_waited_for_when_the_metric_ignores_units():
    doc = b'{"data": {"metrics": [{"name": "step_count", "data": [{"qty": 1}], "units": "count"}]}}'
    assert list(iter_items(doc))[0] == ("metric", 0, "step_count", None)


def test_empty_metrics_still_announce_themselves():
    doc = b'{"data": {"metrics": [{"name": "step_count", "units": "count", "data": []}, {"name": "x"}]}}'
    assert list(iter_items(doc)) == [
        ("metric", 0, "step_count", "count"),
        ("end",),
        ("metric", 1, "x", None),
        ("end",),
    ]


class _OneWayStream(io.RawIOBase):
    """A non-seekable byte stream (a pipe, a socket)."""

    def __init__(self, data: bytes):
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        chunk = self._data.read(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)


# jsonb::text sorts keys, so "data" comes before "name" and "units".
JSONB_ORDER = (
    b'{"data": {"metrics": [{"data": [{"qty": 1.5, "date": "2024-02-06 14:30:00 -0800"}],'
    b' "name": "walking_running_distance", "units": "km"}]}}'
)
JSONB_ITEMS = [
    ("metric", 0, "walking_running_distance", "km"),
    ("point", 0, {"qty": 1.5, "date": T}),
    ("end",),
]


def test_metric_headers_after_data_are_found_in_bytes_and_seekable_files(tmp_path):
    assert list(iter_items(JSONB_ORDER)) == JSONB_ITEMS
    path = tmp_path / "jsonb.json"
    path.write_bytes(JSONB_ORDER)
    with path.open("rb") as f:
        assert list(iter_items(f)) == JSONB_ITEMS


def test_metric_headers_after_data_in_a_one_way_stream_buffer_that_metric():
    assert list(iter_items(io.BufferedReader(_OneWayStream(JSONB_ORDER)))) == JSONB_ITEMS
    parsed = parse(io.BufferedReader(_OneWayStream(JSONB_ORDER)))
    assert parsed.rows["activity_metrics"] == {T_UTC: {"distance_meters": 1500.0}}


def test_nan_in_text_falls_back_to_json_loads_and_keeps_the_items_already_streamed(tmp_path):
    text = (
        b'{"data": {"metrics": [{"name": "step_count", "data": [{"date": "2024-02-06T22:30:00Z", "qty": 1}]},'
        b' {"name": "heart_rate", "data": [{"date": "2024-02-06T22:30:00Z", "Avg": NaN},'
        b' {"date": "2024-02-06T22:31:00Z", "Avg": 70}]}]}}'
    )
    expected = [
        ("metric", 0, "step_count", None),
        ("point", 0, {"date": "2024-02-06T22:30:00Z", "qty": 1}),
        ("end",),
        ("metric", 1, "heart_rate", None),
        ("point", 0, {"date": "2024-02-06T22:30:00Z", "Avg": pytest.approx(float("nan"), nan_ok=True)}),
        ("point", 1, {"date": "2024-02-06T22:31:00Z", "Avg": 70}),
        ("end",),
    ]
    assert list(iter_items(text)) == expected
    path = tmp_path / "nan.json"
    path.write_bytes(text)
    with path.open("rb") as f:
        assert list(iter_items(f)) == expected
    with pytest.raises(PayloadError) as caught:  # a one-way stream cannot be read again
        list(iter_items(io.BufferedReader(_OneWayStream(text))))
    assert caught.value.category == "not_json"


def test_parse_payload_reads_a_file_object(tmp_path):
    path = tmp_path / "payload.json"
    path.write_text(json.dumps(SMALL), encoding="utf-8")
    with path.open("rb") as f:
        parsed = parse_payload(f, now=NOW)
    assert parsed.counts()["activity_metrics"] == 1 and parsed.counts()["workout_metrics"] == 1
    assert parsed.expected_keys()["workout_metrics"] == {T_UTC}


def test_iter_rows_uses_the_given_parser():
    parser = PayloadParser(now=NOW)
    rows = list(iter_rows(json.dumps(SMALL).encode(), parser))
    assert len(rows) == 2 and parser.rows_emitted == 2 and parser.points_seen == 2


def test_future_dates_are_judged_against_now():
    doc = envelope(metric("step_count", {"date": "2024-03-01T23:59:00Z", "qty": 1}))
    assert parse_payload(doc, now=NOW).counts()["activity_metrics"] == 1  # within one day
    later = envelope(metric("step_count", {"date": "2024-03-02T00:00:01Z", "qty": 1}))
    assert parse_payload(later, now=NOW).parser.rejection_counts == {"date_out_of_range": 1}
