"""Shapes real exports have, beyond the documented ones (each seen in exports written by people outside this project).

Fixtures are written here in the same form as those exports: a phone set to 12-hour time, version 1
workouts from a phone without a watch, aggregated sleep from app 6.6.2 and older, unaggregated sleep
with the stage spellings real exports use.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from recovery_lib.payload import ParsedPayload, parse_payload

NOW = datetime(2024, 10, 1, tzinfo=UTC)
NNBSP = "\u202f"  # NARROW NO-BREAK SPACE: what iOS (ICU 72+) puts before am/pm
NBSP = "\u00a0"


def parse(doc: object) -> ParsedPayload:
    return parse_payload(doc, now=NOW)


def envelope(*metrics: dict, workouts: list | None = None) -> dict:
    data: dict = {"metrics": list(metrics)}
    if workouts is not None:
        data["workouts"] = workouts
    return {"data": data}


def metric(name: str, units: str, *points: dict) -> dict:
    return {"name": name, "units": units, "data": list(points)}


# --------------------------------------------------------------------------- 12-hour dates


@pytest.mark.parametrize("space", [" ", NBSP, NNBSP], ids=["space", "no-break space", "narrow no-break space"])
@pytest.mark.parametrize(("meridiem", "hour_24"), [("am", 7), ("pm", 19), ("AM", 7), ("PM", 19)])
def test_a_phone_set_to_12_hour_time_gives_the_same_instant(space: str, meridiem: str, hour_24: int) -> None:
    date = f"2024-09-21 7:57:00{space}{meridiem} +1000"
    parsed = parse(envelope(metric("step_count", "count", {"date": date, "qty": 120, "source": "iPhone"})))
    assert parsed.parser.rejection_counts == {}
    [key] = parsed.rows["activity_metrics"]
    assert key == datetime(2024, 9, 21, hour_24, 57, tzinfo=timezone(timedelta(hours=10)))


@pytest.mark.parametrize(("clock", "utc_hour"), [("12:05:00 am", 14), ("12:05:00 pm", 2)])
def test_twelve_oclock_is_midnight_in_am_and_noon_in_pm(clock: str, utc_hour: int) -> None:
    parsed = parse(envelope(metric("step_count", "count", {"date": f"2024-09-21 {clock} +1000", "qty": 1})))
    [key] = parsed.rows["activity_metrics"]
    assert key.hour == utc_hour and key.minute == 5


@pytest.mark.parametrize("date", ["2024-09-21 13:57:00 pm +1000", "2024-09-21 0:57:00 am +1000",
                                  "2024-09-21 7:57:00 xm +1000", "2024-09-21 7:57:00 am"])
def test_a_12_hour_date_that_is_not_one_is_still_invalid(date: str) -> None:
    parsed = parse(envelope(metric("step_count", "count", {"date": date, "qty": 1})))
    assert parsed.parser.rejection_counts == {"invalid_date": 1}


def test_12_hour_dates_in_workouts_and_sleep_too() -> None:
    workout = {"name": "Outdoor Walk", "start": f"2024-09-21 7:26:43{NNBSP}am +1000",
               "end": f"2024-09-21 8:01:10{NNBSP}am +1000", "activeEnergyBurned": {"qty": 120, "units": "kcal"}}
    sleep = {"date": "2024-09-21 00:00:00 +1000", "sleepStart": f"2024-09-20 10:40:00{NNBSP}pm +1000",
             "sleepEnd": f"2024-09-21 6:35:00{NNBSP}am +1000", "totalSleep": 7.5, "inBed": 7.9}
    parsed = parse(envelope(metric("sleep_analysis", "hr", sleep), workouts=[workout]))
    assert parsed.parser.rejection_counts == {}
    assert list(parsed.rows["workout_metrics"]) == [datetime(2024, 9, 20, 21, 26, 43, tzinfo=UTC)]
    assert list(parsed.rows["sleep_metrics"]) == [datetime(2024, 9, 20, 12, 40, tzinfo=UTC)]


# --------------------------------------------------------------------------- version 1 workouts without a watch


def test_a_v1_workout_with_zero_heart_rate_keeps_its_energy_and_distance() -> None:
    """Without a watch the exporter writes avgHeartRate/maxHeartRate 0: no heart rate, not a rejection."""
    workout = {
        "name": "Outdoor Walk", "start": "2024-09-21 07:00:00 +1000", "end": "2024-09-21 07:40:00 +1000",
        "activeEnergy": {"qty": 151.5, "units": "kcal"}, "distance": {"qty": 3.2, "units": "km"},
        "avgHeartRate": {"qty": 0, "units": "bpm"}, "maxHeartRate": {"qty": 0, "units": "bpm"},
        "heartRateData": [], "heartRateRecovery": [], "route": [],
    }
    flat = {"name": "Yoga", "start": "2024-09-22 07:00:00 +1000", "end": "2024-09-22 07:30:00 +1000",
            "activeEnergy": 80, "activeEnergyUnits": "kcal", "avgHeartRate": 0, "maxHeartRate": 0}
    parsed = parse(envelope(workouts=[workout, flat]))
    assert parsed.parser.rejection_counts == {}
    rows = parsed.rows["workout_metrics"]
    walk = rows[datetime(2024, 9, 20, 21, 0, tzinfo=UTC)]
    assert walk["active_energy_kcal"] == 151.5 and walk["distance_meters"] == 3200.0
    assert "avg_heart_rate" not in walk and "max_heart_rate" not in walk
    yoga = rows[datetime(2024, 9, 21, 21, 0, tzinfo=UTC)]
    assert yoga["active_energy_kcal"] == 80.0 and "avg_heart_rate" not in yoga


def test_a_heart_rate_of_zero_in_a_v2_heart_rate_object_is_absent_too() -> None:
    workout = {"name": "Pool Swim", "start": "2024-09-21 07:00:00 +1000", "end": "2024-09-21 07:40:00 +1000",
               "heartRate": {"min": {"qty": 0, "units": "bpm"}, "avg": {"qty": 0, "units": "bpm"},
                             "max": {"qty": 0, "units": "bpm"}}}
    parsed = parse(envelope(workouts=[workout]))
    assert parsed.parser.rejection_counts == {}
    [row] = parsed.rows["workout_metrics"].values()
    assert row == {"workout_type": "Pool Swim", "ended_at": datetime(2024, 9, 20, 21, 40, tzinfo=UTC)}


def test_a_nonzero_heart_rate_below_the_limit_is_still_out_of_range() -> None:
    workout = {"name": "Walk", "start": "2024-09-21 07:00:00 +1000", "avgHeartRate": 5}
    assert parse(envelope(workouts=[workout])).parser.rejection_counts == {"out_of_range": 1}


# --------------------------------------------------------------------------- aggregated sleep across app versions


def test_sleep_from_app_6_6_2_adds_the_stages_up_when_there_is_no_total() -> None:
    """6.6.2 sends asleep 0 (unclassified sleep) beside core/deep/rem and no totalSleep."""
    point = {"date": "2024-09-21", "sleepStart": "2024-09-20 23:10:00 +1000", "sleepEnd": "2024-09-21 05:25:00 +1000",
             "asleep": 0, "core": 3.25, "deep": 0.85, "rem": 1.3167, "awake": 0.1, "inBed": 6.25,
             "source": "Kai's iPhone|Kai’s Apple Watch"}
    [row] = parse(envelope(metric("sleep_analysis", "hr", point))).rows["sleep_metrics"].values()
    assert row["duration_minutes"] == pytest.approx((3.25 + 0.85 + 1.3167) * 60)
    assert round(row["duration_minutes"]) == 325
    assert row["efficiency"] == pytest.approx(100 * 325.0 / 375, abs=0.01)
    assert row["source_device"] == "Kai's iPhone|Kai’s Apple Watch"


def test_stages_rounded_to_four_decimals_a_hair_above_in_bed_keep_the_session_at_100_percent() -> None:
    """The app rounds each stage to 1/10,000 h: asleep all night, the stages can add up to 0.006 min over inBed."""
    point = {"date": "2024-01-20", "sleepStart": "2024-01-19 22:10:00 +0900", "sleepEnd": "2024-01-20 06:39:00 +0900",
             "asleep": 0, "core": 4.7667, "deep": 2.0667, "rem": 1.65, "awake": 0, "inBed": 8.4833}
    [row] = parse(envelope(metric("sleep_analysis", "hr", point))).rows["sleep_metrics"].values()
    assert row["duration_minutes"] == pytest.approx(509.004)
    assert row["efficiency"] == 100.0


def test_stages_well_above_in_bed_are_still_out_of_range() -> None:
    point = {"sleepStart": "2024-01-19 22:10:00 +0900", "asleep": 0, "core": 5.0, "deep": 2.0, "rem": 2.0,
             "inBed": 8.0}
    assert parse(envelope(metric("sleep_analysis", "hr", point))).parser.rejection_counts == {"out_of_range": 1}


def test_sleep_before_6_6_2_keeps_asleep_as_the_duration_and_its_sources() -> None:
    point = {"date": "2024-01-02", "asleep": 6.5, "inBed": 7.25, "sleepStart": "2024-01-01 23:00:00 +1000",
             "sleepEnd": "2024-01-02 06:15:00 +1000", "sleepSource": "Kai’s Apple Watch", "inBedSource": "iPhone"}
    [row] = parse(envelope(metric("sleep_analysis", "hr", point))).rows["sleep_metrics"].values()
    assert row["duration_minutes"] == 390.0
    assert row["efficiency"] == pytest.approx(100 * 6.5 / 7.25)
    assert row["source_device"] == "Kai’s Apple Watch"


def test_in_bed_source_is_kept_when_there_is_no_sleep_source() -> None:
    point = {"date": "2024-01-02", "asleep": 6.0, "inBed": 7.0, "sleepStart": "2024-01-01 23:00:00 +1000",
             "inBedSource": "iPhone"}
    [row] = parse(envelope(metric("sleep_analysis", "hr", point))).rows["sleep_metrics"].values()
    assert row["source_device"] == "iPhone"


def test_a_total_sleep_given_wins_over_the_sum_of_stages() -> None:
    point = {"sleepStart": "2024-09-20 23:00:00 +1000", "totalSleep": 6.0, "asleep": 0, "core": 3.0,
             "deep": 1.0, "rem": 1.0, "inBed": 8.0}
    [row] = parse(envelope(metric("sleep_analysis", "hr", point))).rows["sleep_metrics"].values()
    assert row["duration_minutes"] == 360.0


def test_sleep_with_neither_a_total_nor_any_sleep_stage_is_missing_its_value() -> None:
    point = {"sleepStart": "2024-09-20 23:00:00 +1000", "awake": 0.2, "inBed": 8.0}
    assert parse(envelope(metric("sleep_analysis", "hr", point))).parser.rejection_counts == {"missing_value": 1}


# --------------------------------------------------------------------------- unaggregated sleep stages


def segment(stage: str, start: str, end: str) -> dict:
    return {"startDate": f"2024-09-20 {start} +1000", "endDate": f"2024-09-20 {end} +1000", "value": stage,
            "qty": 0.5, "source": "Watch"}


@pytest.mark.parametrize("in_bed", ["In Bed", "InBed"])
def test_in_bed_is_read_with_or_without_its_space_and_only_widens_the_session(in_bed: str) -> None:
    doc = envelope(metric("sleep_analysis", "hr", segment(in_bed, "22:00:00", "23:00:00"),
                          segment("Core", "22:30:00", "22:50:00")))
    parsed = parse(doc)
    assert parsed.parser.rejection_counts == {}
    [(start, row)] = parsed.rows["sleep_metrics"].items()
    assert start == datetime(2024, 9, 20, 12, 0, tzinfo=UTC)
    assert row["duration_minutes"] == 20.0 and row["efficiency"] == pytest.approx(100 * 20 / 60)


def test_unspecified_sleep_counts_as_asleep() -> None:
    doc = envelope(metric("sleep_analysis", "hr", segment("Unspecified", "22:00:00", "23:00:00")))
    parsed = parse(doc)
    assert parsed.parser.rejection_counts == {}
    [row] = parsed.rows["sleep_metrics"].values()
    assert row["duration_minutes"] == 60.0
