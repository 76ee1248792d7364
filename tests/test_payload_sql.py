"""The SQL path (``insert_method="sql"``) against the Python parser (``"copy"``, the reference).

Whatever the payload, both methods must end in the same metric rows, the same statuses and the
same per-ingestion counts and rejections. Each scenario below is therefore run twice, on a fresh
schema each time, once per method, and everything an operator can observe is compared. Tests
also say which path the SQL run took (``sql_tables``), so none of them can pass only because
every payload quietly fell back to the parser.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import reset_schema
from helpers import add_ingestion, add_user, metric_rows, statuses
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine

from recovery_lib import reconcile, recovery
from recovery_lib.catalogue import Field, lookup, table_columns
from recovery_lib.catalogue.model import BOOL, FLOAT, TEXT
from recovery_lib.catalogue.units import UNITS as CATALOGUE_UNITS
from recovery_lib.catalogue.units import conversion
from recovery_lib.payload import PayloadParser
from recovery_lib.payload import sql_plan as payload_sql
from recovery_lib.schema import METRIC_TABLES

PARAM_LIMIT_ERROR = [{"error": "number of parameters must be between 0 and 65535"}]
T = datetime(2024, 2, 6, 20, 0, tzinfo=UTC)
CREATED = datetime(2024, 2, 7, tzinfo=UTC)
SIMPLE_TABLES = ["activity_metrics", "blood_pressure_metrics", "heart_rate_metrics"]
COMPARED = ("outcome", "failure_category", "rejected_points", "rejection_counts", "tables")


def at(minute: float, offset: str = "-0800") -> str:
    """The exporter's date of ``T + minute`` written in ``offset``: ``2024-02-06 12:00:00 -0800``."""
    sign = -1 if offset[0] == "-" else 1
    zone = timezone(sign * timedelta(hours=int(offset[1:3]), minutes=int(offset[3:5])))
    return (T + timedelta(minutes=minute)).astimezone(zone).strftime("%Y-%m-%d %H:%M:%S %z")


def metric(name: object, *points: object, units: object = None) -> dict:
    out: dict[str, Any] = {"name": name}
    if units is not None:
        out["units"] = units
    out["data"] = list(points)
    return out


def envelope(*metrics: dict, workouts: list | None = None) -> dict:
    data: dict[str, Any] = {"metrics": list(metrics)}
    if workouts is not None:
        data["workouts"] = workouts
    return {"data": data}


def hr(minute: float, offset: str = "-0800", **fields: object) -> dict:
    """A heart-rate point; ``fields`` override (or, set to ``...``, remove) the defaults."""
    point = {"date": at(minute, offset), "Avg": 72, "Min": 60, "Max": 80, "source": "Apple Watch", **fields}
    return {k: v for k, v in point.items() if v is not ...}


def qty(minute: float, value: object, offset: str = "-0800", **fields: object) -> dict:
    return {"date": at(minute, offset), "qty": value, **fields}


# --------------------------------------------------------------------------- the harness


@dataclass
class World:
    """One run of a scenario with one insert method: what was created, and what recovery reported."""

    engine: Engine
    method: str
    users: list[str] = field(default_factory=list)
    ingestions: list[str] = field(default_factory=list)
    runs: list[list[dict]] = field(default_factory=list)  # per recovery run: outcomes in ingestion order
    seen: dict[str, Any] = field(default_factory=dict)  # observed() at the end of the scenario

    def user(self) -> str:
        self.users.append(add_user(self.engine))
        return self.users[-1]

    def ingest(self, user: str, payload: Any) -> str:
        # Distinct creation times: recovery takes a user's ingestions oldest first, so the order
        # (and with it "the older payload wins") is the same in both runs.
        created = CREATED + timedelta(minutes=len(self.ingestions))
        self.ingestions.append(add_ingestion(self.engine, user, payload, errors=PARAM_LIMIT_ERROR,
                                             created_at=created))
        return self.ingestions[-1]

    def existing(self, user: str, table: str, minute: float, **values: object) -> None:
        """A row already in ``table`` before recovery, at ``T + minute``."""
        columns = ", ".join(["user_id", "recorded_at", *values])
        marks = ", ".join([":user_id", ":key", *(f":{c}" for c in values)])
        with self.engine.begin() as conn:
            conn.execute(sa.text(f"INSERT INTO {table} ({columns}) VALUES ({marks})"),
                         {"user_id": user, "key": T + timedelta(minutes=minute), **values})

    def recover(self, **kwargs: Any) -> list[dict]:
        report = recovery.run_recovery(self.engine, insert_method=self.method, progress=False, **kwargs).to_dict()
        order = {ingestion: n for n, ingestion in enumerate(self.ingestions)}
        self.runs.append(sorted(report["ingestions"], key=lambda i: order[i["ingestion_id"]]))
        return self.runs[-1]

    def sql_tables(self, run: int = 0) -> list[list[str]]:
        """Per ingestion of recovery run ``run``: the tables PostgreSQL wrote from the jsonb."""
        return [outcome["sql_tables"] for outcome in self.runs[run]]

    def observed(self) -> dict[str, Any]:
        """Rows, statuses and outcomes with ids replaced by their creation order (comparable across runs)."""
        names = {uid: f"user {n}" for n, uid in enumerate(self.users)}
        names.update({iid: f"ingestion {n}" for n, iid in enumerate(self.ingestions)})
        rows = {
            table: sorted(((names[str(r[0])], *r[1:]) for r in found), key=lambda r: (r[0], r[1]))  # (user, key)
            for table, found in metric_rows(self.engine).items()
        }
        return {
            "rows": rows,
            "statuses": {names[i]: s for i, s in statuses(self.engine).items()},
            "runs": [[{"ingestion": names[o["ingestion_id"]], **{k: o[k] for k in COMPARED}} for o in run]
                     for run in self.runs],
        }


Scenario = Callable[[World], None]


def both_methods(engine: Engine, scenario: Scenario) -> tuple[World, World]:
    """Run ``scenario`` with ``copy`` then ``sql``, each on a fresh schema; assert they agree; both worlds."""
    worlds = []
    for method in ("copy", "sql"):
        reset_schema(engine)
        world = World(engine, method)
        scenario(world)
        world.seen = world.observed()
        worlds.append(world)
    copy, sql = worlds
    expected, got = copy.seen, sql.seen
    assert got["rows"] == expected["rows"]
    assert got["statuses"] == expected["statuses"]
    assert got["runs"] == expected["runs"]
    return sql, copy


def one_payload(payload: Any) -> Scenario:
    """One user, one ingestion of ``payload``, one recovery run."""

    def scenario(world: World) -> None:
        world.ingest(world.user(), payload)
        world.recover()

    return scenario


# The columns the assertions below read, by name (the tables have more since the catalogue).
SHOWN = {
    "blood_pressure_metrics": ("systolic", "diastolic", "pulse", "source_device"),
    "heart_rate_metrics": ("heart_rate", "heart_rate_min", "heart_rate_max", "resting_heart_rate",
                           "heart_rate_variability", "source_device"),
    "activity_metrics": ("step_count", "distance_meters", "flights_climbed", "active_energy_burned_kcal",
                         "basal_energy_burned_kcal", "apple_exercise_time_minutes", "apple_stand_time_minutes",
                         "source_device"),
}


def rows_of(world: World, table: str) -> list[tuple]:
    """``(user, key, *SHOWN[table])`` of every row of ``table`` the run left."""
    columns = METRIC_TABLES[table].values
    picks = [columns.index(c) for c in SHOWN[table]]
    return [(r[0], r[1], *(r[2 + i] for i in picks)) for r in world.seen["rows"][table]]


# --------------------------------------------------------------------------- 1. canonical payloads

SLEEP = metric("sleep_analysis", {
    "date": at(600), "sleepStart": at(-240), "sleepEnd": at(210), "totalSleep": 7.25, "asleep": 0, "core": 4.0,
    "deep": 1.25, "rem": 2.0, "awake": 0.3, "inBed": 7.5, "source": "Apple Watch",
}, units="hr")
WORKOUTS = [
    {"name": "Outdoor Run", "start": at(-120), "end": at(-75), "activeEnergyBurned": {"qty": 1800, "units": "kJ"},
     "distance": {"qty": 7.4, "units": "km"}, "heartRate": {"avg": {"qty": 151, "units": "bpm"},
                                                             "max": {"qty": 174, "units": "bpm"}}},
    {"name": "Walking", "start": at(30), "end": at(70), "activeEnergy": 160, "activeEnergyUnits": "kcal",
     "distance": 3.1, "distanceUnits": "km", "avgHeartRate": 98, "maxHeartRate": 117},
]


def canonical_payload(distance_units: str, energy_units: str) -> dict:
    """Every simple metric, with keys shared between metrics of one table, plus sleep and workouts.

    At ``at(0)`` heart_rate and resting_heart_rate meet, blood_pressure meets both split metrics
    (with other values: blood_pressure comes first, so its values win), and the activity metrics
    meet with different sources (the first metric's source wins).
    """
    return envelope(
        metric("heart_rate", hr(0), hr(1, Min=None, Max=...), hr(2, "+0100", Avg=..., qty=64, source="iPhone"),
               units="count/min"),
        metric("resting_heart_rate", qty(0, 58, source="iPhone"), qty(3, 57), units="count/min"),
        metric("heart_rate_variability", qty(1, 45.5, source="Oura"), qty(0, 61), units="ms"),
        metric("blood_pressure", {"date": at(0), "systolic": 121, "diastolic": 79, "pulse": 62, "source": "Omron"},
               {"date": at(60), "systolic": 118, "diastolic": 76}, units="mmHg"),
        metric("blood_pressure_systolic", qty(0, 135, source="Withings"), qty(120, 127), units="mmHg"),
        metric("blood_pressure_diastolic", qty(120, 84, source="Withings"), qty(0, 90), units="mmHg"),
        metric("step_count", qty(0, 812, source="iPhone"), qty(1, 40.5, source="iPhone"), units="count"),
        metric("walking_running_distance", qty(0, 0.61, source="Apple Watch"), qty(5, 1.2), units=distance_units),
        metric("active_energy", qty(0, 418.4, source="Apple Watch"), qty(1, 12.5), units=energy_units),
        metric("basal_energy_burned", qty(0, 70, source="Apple Watch"), qty(9, 1.15), units="kcal"),
        metric("flights_climbed", qty(1, 3), qty(7, 0)),
        metric("apple_exercise_time", qty(0, 1), qty(5, 30), units="min"),
        metric("apple_stand_time", qty(0, 0.5, source="Apple Watch"), qty(11, 0.25), units="hr"),
        SLEEP,
        workouts=WORKOUTS,
    )


@pytest.mark.parametrize(("distance_units", "energy_units"), [("km", "kJ"), ("mi", "kcal")])
def test_canonical_payload_is_written_by_sql_with_the_parsers_rows(engine, distance_units, energy_units):
    sql, _ = both_methods(engine, one_payload(canonical_payload(distance_units, energy_units)))

    assert sql.sql_tables() == [SIMPLE_TABLES]
    [outcome] = sql.runs[0]
    assert outcome["outcome"] == "recovered" and outcome["rejected_points"] == 0
    assert outcome["tables"]["heart_rate_metrics"]["inserted"] == 4  # minutes 0-3 (+0100 is minute 2)
    assert outcome["tables"]["sleep_metrics"]["inserted"] == 1 and outcome["tables"]["workout_metrics"]["inserted"] == 2


def test_first_value_and_first_source_in_payload_order_win_per_column(engine):
    sql, _ = both_methods(engine, one_payload(canonical_payload("km", "kJ")))

    key = T
    bp = {r[1]: r[2:] for r in rows_of(sql, "blood_pressure_metrics")}
    assert bp[key] == (121.0, 79.0, 62.0, "Omron"), "blood_pressure precedes the split metrics"
    assert bp[key + timedelta(minutes=120)] == (127.0, 84.0, None, "Withings"), "split metrics merge by date"
    hr_rows = {r[1]: r[2:] for r in rows_of(sql, "heart_rate_metrics")}
    assert hr_rows[key] == (72.0, 60.0, 80.0, 58.0, 61.0, "Apple Watch")
    activity = {r[1]: r[2:] for r in rows_of(sql, "activity_metrics")}
    steps, meters, flights, active, basal, exercise, stand, source = activity[key]
    assert (steps, source) == (812.0, "iPhone") and meters == pytest.approx(610.0)
    assert active == pytest.approx(100.0) and stand == 30.0 and basal == 70.0 and exercise == 1.0
    assert flights is None


def test_only_sleep_and_workouts_leave_sql_nothing_to_do(engine):
    sql, _ = both_methods(engine, one_payload(envelope(SLEEP, workouts=WORKOUTS)))

    assert sql.sql_tables() == [[]]
    assert sql.runs[0][0]["outcome"] == "recovered"


# --------------------------------------------------------------------------- 2. large metrics


@pytest.mark.parametrize("large_first", [True, False], ids=["large-metric-first", "large-metric-merged"])
def test_metric_of_copy_points_max_points_is_read_in_place_with_the_same_rows(engine, large_first):
    points = payload_sql.COPY_POINTS_MAX
    large = metric("heart_rate", *(hr(i / 4, Min=55 + i % 7, Max=90 + i % 11) for i in range(points)))
    small = metric("resting_heart_rate", *(qty(i * 15, 50 + i % 9) for i in range(0, 40)))
    metrics = [large, small] if large_first else [small, large]

    sql, _ = both_methods(engine, one_payload(envelope(*metrics)))

    assert sql.sql_tables() == [["heart_rate_metrics"]]
    assert sql.runs[0][0]["tables"]["heart_rate_metrics"]["inserted"] == points  # every 15 min is a shared key


def test_bad_last_point_of_a_large_metric_sends_the_payload_to_the_parser(engine):
    data = [hr(i / 4) for i in range(payload_sql.COPY_POINTS_MAX)]
    data[-1]["Avg"] = "72"

    sql, _ = both_methods(engine, one_payload(envelope(metric("heart_rate", *data))))

    assert sql.sql_tables() == [[]]
    assert sql.runs[0][0]["rejection_counts"] == {"non_numeric": 1}


# --------------------------------------------------------------------------- 3. rows already present


def present_rows_payload() -> dict:
    return envelope(
        metric("heart_rate", hr(0), hr(1), hr(2), hr(3, Min=..., Max=...)),
        metric("heart_rate_variability", qty(0, 40), qty(4, 41)),
        metric("blood_pressure", {"date": at(0), "systolic": 120, "diastolic": 80, "pulse": 60}),
        metric("blood_pressure_systolic", qty(5, 130)),
        metric("step_count", qty(0, 100), qty(1, 200), qty(2, 300)),
        metric("walking_running_distance", qty(0, 0.1), qty(2, 0.2), units="km"),
    )


def with_present_rows(world: World) -> str:
    """A user whose tables already hold some of the payload's keys, one unrelated row, and another user."""
    user, other = world.user(), world.user()
    world.existing(user, "heart_rate_metrics", 0, heart_rate=72.0)  # Min, Max, HRV, source to fill
    world.existing(user, "heart_rate_metrics", 1, heart_rate=72.0, heart_rate_min=60.0, heart_rate_max=80.0,
                   source_device="Apple Watch")  # complete: nothing to fill
    world.existing(user, "heart_rate_metrics", 2, heart_rate=99.0)  # other values: never overwritten
    world.existing(user, "heart_rate_metrics", 1.5, heart_rate=70.0)  # in the payload's range, not in it
    world.existing(user, "blood_pressure_metrics", 5, diastolic=85.0)  # the split systolic fills it
    world.existing(user, "activity_metrics", 1, step_count=200.0)
    world.existing(user, "activity_metrics", 2, distance_meters=150.0)  # step_count to fill, distance kept
    world.existing(other, "heart_rate_metrics", 3, heart_rate=50.0)  # another user's row at a payload key
    return user


def test_present_rows_are_filled_never_overwritten_with_the_same_counts(engine):
    def scenario(world: World) -> None:
        user = with_present_rows(world)
        world.ingest(user, present_rows_payload())
        world.recover()

    sql, _ = both_methods(engine, scenario)

    assert sql.sql_tables() == [SIMPLE_TABLES]
    tables = sql.runs[0][0]["tables"]
    assert tables["heart_rate_metrics"] == {"expected": 5, "present_before": 3, "inserted": 2, "filled": 2,
                                            "present_after": 5, "missing_before": 2, "missing_after": 0}
    assert tables["activity_metrics"]["filled"] == 1 and tables["blood_pressure_metrics"]["filled"] == 1
    heart_rate = {r[1]: r[2:] for r in rows_of(sql, "heart_rate_metrics") if r[0] == "user 0"}
    assert heart_rate[T + timedelta(minutes=2)] == (99.0, 60.0, 80.0, None, None, "Apple Watch")
    assert heart_rate[T + timedelta(minutes=1.5)] == (70.0, None, None, None, None, None)


def test_older_payload_wins_across_ingestions_of_one_run(engine):
    def scenario(world: World) -> None:
        user = world.user()
        world.ingest(user, envelope(metric("heart_rate", hr(0, Min=...), hr(1)), metric("step_count", qty(0, 10))))
        world.ingest(user, envelope(metric("heart_rate", hr(0, Avg=90, Min=50), hr(2)),
                                    metric("step_count", qty(0, 99), qty(1, 5))))
        world.recover()

    sql, _ = both_methods(engine, scenario)

    assert sql.sql_tables() == [["activity_metrics", "heart_rate_metrics"]] * 2
    assert rows_of(sql, "heart_rate_metrics")[0][2:5] == (72.0, 50.0, 80.0)


def test_rerunning_an_ingestion_or_its_copy_writes_nothing_with_the_same_counts(engine):
    def scenario(world: World) -> None:
        user = with_present_rows(world)
        world.ingest(user, present_rows_payload())
        world.recover()
        world.recover(statuses=["recovered"])  # the same ingestion again
        world.ingest(user, present_rows_payload())  # the same payload, stored twice
        world.recover()

    sql, _ = both_methods(engine, scenario)

    assert sql.sql_tables(1) == [SIMPLE_TABLES] and sql.sql_tables(2) == [SIMPLE_TABLES]
    for run in sql.runs[1:]:
        tables = run[-1]["tables"]
        assert sum(t["inserted"] + t["filled"] for t in tables.values()) == 0
        assert all(t["present_before"] == t["expected"] for t in tables.values())


def test_present_keys_outside_the_first_and_last_dates_of_unsorted_points(engine):
    """The range probe reads only a metric's first and last dates: keys between are found anyway."""

    def scenario(world: World) -> None:
        user = world.user()
        world.existing(user, "heart_rate_metrics", 0, heart_rate=72.0)  # before the probed range
        world.existing(user, "heart_rate_metrics", 30, resting_heart_rate=55.0)  # the second metric's key
        world.ingest(user, envelope(
            metric("heart_rate", hr(5), hr(0, Min=...), hr(10), hr(30)),
            metric("resting_heart_rate", qty(20, 50), qty(30, 58), qty(5, 51)),
        ))
        world.recover()

    sql, _ = both_methods(engine, scenario)

    assert sql.sql_tables() == [["heart_rate_metrics"]]
    assert sql.runs[0][0]["tables"]["heart_rate_metrics"]["filled"] == 2


# Regression: a key repeated within one metric must be refused by SQL even when its row already
# exists and the key's first occurrence adds nothing to it. ON CONFLICT ... DO UPDATE ... WHERE
# false only locks the row, and locking it again raises no "cannot affect row a second time": a
# metric written by an ON CONFLICT statement of its own (a table's first metric, or the only one
# after it) let the repeat through, where the parser rejects it as duplicate_point.


def test_rerun_of_a_payload_with_a_repeated_key_still_rejects_the_repeat(engine):
    def scenario(world: World) -> None:
        user = world.user()
        world.ingest(user, envelope(metric("heart_rate", hr(0), hr(1), hr(1, Avg=75))))
        world.recover()  # the parser rejects heart_rate[2]: recovery_failed, minutes 0 and 1 stored
        world.recover(statuses=["recovery_failed"])  # the rows are complete now

    sql, _ = both_methods(engine, scenario)

    assert sql.sql_tables(1) == [[]]
    assert sql.runs[1][0]["outcome"] == "recovery_failed"
    assert sql.runs[1][0]["rejection_counts"] == {"duplicate_point": 1}


def test_repeated_key_does_not_fill_what_the_parser_rejects(engine):
    def scenario(world: World) -> None:
        user = world.user()
        world.existing(user, "heart_rate_metrics", 0, heart_rate=72.0, source_device="Apple Watch")
        # The first point adds nothing to the row; the repeat (same instant, other offset) has Min and Max.
        world.ingest(user, envelope(metric("heart_rate", hr(0, Min=..., Max=...), hr(0, "+0100", Max=99))))
        world.recover()

    sql, _ = both_methods(engine, scenario)

    assert sql.sql_tables() == [[]]
    assert rows_of(sql, "heart_rate_metrics")[0][2:5] == (72.0, None, None)


def test_split_systolic_repeated_after_blood_pressure_on_an_empty_table(engine):
    """No row beforehand: blood_pressure writes the systolic column first, so the split metric adds nothing."""
    payload = envelope(
        metric("blood_pressure", {"date": at(0), "systolic": 120, "diastolic": 80}),
        metric("blood_pressure_systolic", qty(0, 130), qty(0, 135, "+0100")),
    )

    sql, _ = both_methods(engine, one_payload(payload))

    assert sql.sql_tables() == [[]]
    assert sql.runs[0][0]["rejection_counts"] == {"duplicate_point": 1}


HR0 = metric("heart_rate", hr(0, Min=..., Max=...))
HRV0 = metric("heart_rate_variability", qty(0, 40))
REPEATED = metric("resting_heart_rate", qty(0, 55), qty(0, 60, "+0100"))  # one instant twice


@pytest.mark.parametrize("metrics", [
    pytest.param([REPEATED, HR0], id="first-of-two"),
    pytest.param([HR0, REPEATED], id="second-of-two"),
    pytest.param([HR0, REPEATED, HRV0], id="second-of-three"),
    pytest.param([HR0, HRV0, REPEATED], id="third-of-three"),
])
def test_repeated_key_is_refused_wherever_the_metric_sits_in_its_table(engine, metrics):
    """The row at the repeated key is already complete: only the duplicate check can refuse the repeat."""

    def scenario(world: World) -> None:
        user = world.user()
        world.existing(user, "heart_rate_metrics", 0, heart_rate=72.0, resting_heart_rate=55.0,
                       heart_rate_variability=40.0, source_device="Apple Watch")
        world.ingest(user, envelope(*metrics))
        world.recover()

    sql, _ = both_methods(engine, scenario)

    assert sql.sql_tables() == [[]]
    assert sql.runs[0][0]["rejection_counts"] == {"duplicate_point": 1}


# ------------------------------------------------------------------ 4. points and payloads off the canonical path

FUTURE = (datetime.now(UTC) + timedelta(days=3)).strftime("%Y-%m-%d %H:%M:%S +0000")

# (point placed second among three good heart-rate points, whether SQL takes the payload)
HEART_RATE_POINTS: list[tuple[str, object, bool]] = [
    ("iso-offset", hr(1, date="2024-02-06T12:01:00-08:00"), False),
    ("iso-z", hr(1, date="2024-02-06T20:01:00Z"), False),
    ("no-offset", hr(1, date="2024-02-06 12:01:00"), False),
    ("fractional-seconds", hr(1, date="2024-02-06 12:01:00.5 -0800"), False),
    ("hour-24", hr(1, date="2024-02-06 24:00:00 -0800"), False),
    ("minute-60", hr(1, date="2024-02-06 12:60:00 -0800"), False),
    ("second-60", hr(1, date="2024-02-06 12:01:60 -0800"), False),
    ("t-separator-space-offset", hr(1, date="2024-02-06T12:01:00 -0800"), False),
    ("single-digit-month", hr(1, date="2024-2-06 12:01:00 -0800"), False),
    ("trailing-space", hr(1, date=at(1) + " "), False),
    ("special-value-epoch", hr(1, date="epoch"), False),
    ("offset-minus-zero", hr(1, date=at(1, "+0000").replace("+", "-")), True),
    ("offset-0545", hr(1, "+0545"), True),
    ("offset-1445", hr(1, "+1445"), True),
    ("offset-minus-1400", hr(1, "-1400"), True),
    ("offset-0520", hr(1, "+0520"), False),  # the parser reads any offset, SQL only quarter hours
    ("offset-1500", hr(1, "+1500"), False),
    ("offset-minutes-60", hr(1, date="2024-02-06 12:01:00 -0860"), False),
    ("offset-16-hours", hr(1, date="2024-02-06 12:01:00 +1600"), False),  # Python reads it, PostgreSQL does not
    ("leap-day", hr(1, date="2024-02-29 12:01:00 -0800"), True),
    ("not-a-leap-day", hr(1, date="2023-02-29 12:01:00 -0800"), False),
    ("february-30", hr(1, date="2024-02-30 12:01:00 -0800"), False),
    ("month-name", hr(1, date="2024-Feb-06 12:01:00 -0800"), False),
    ("before-1970", hr(1, date="1969-12-31 23:59:59 +0000"), False),
    ("exactly-1970", hr(1, date="1970-01-01 00:00:00 +0000"), True),
    ("exactly-1970-in-another-offset", hr(1, date="1969-12-31 16:00:00 -0800"), True),
    ("before-1970-in-another-offset", hr(1, date="1969-12-31 15:59:59 -0800"), False),
    ("future", hr(1, date=FUTURE), False),
    ("date-number", hr(1, date=1707249660), False),
    ("date-null", hr(1, date=None), False),
    ("missing-date", hr(1, date=...), False),
    ("numeric-string", hr(1, Avg="72"), False),
    ("bool", hr(1, Avg=True), False),
    ("qty-object", hr(1, Avg={"qty": 72, "units": "count/min"}), False),  # the parser reads it as 72
    ("list-value", hr(1, Avg=[72]), False),
    ("avg-null", hr(1, Avg=None), False),
    ("avg-missing", hr(1, Avg=...), False),
    ("avg-null-qty-given", hr(1, Avg=None, qty=71), True),
    ("qty-instead-of-avg", hr(1, Avg=..., qty=71), True),
    ("min-null", hr(1, Min=None), True),
    ("min-out-of-range", hr(1, Min=19), False),
    ("min-string", hr(1, Min="60"), False),
    ("heart-rate-19", hr(1, Avg=19), False),
    ("heart-rate-301", hr(1, Avg=301), False),
    ("heart-rate-300.0001", hr(1, Avg=300.0001), False),
    ("heart-rate-20", hr(1, Avg=20), True),
    ("heart-rate-300", hr(1, Avg=300), True),
    ("heart-rate-20.0", hr(1, Avg=20.0, Min=20.0, Max=300.0), True),
    ("negative", hr(1, Avg=-72), False),
    ("1e300", hr(1, Avg=1e300), False),
    # 1e400 as a float is infinity (JSON cannot hold it); as an integer jsonb stores it exactly and
    # the float8 cast overflows, while the parser rejects it as out_of_range.
    ("1e400", hr(1, Avg=10**400), False),
    ("source-number", hr(1, source=7), True),
    ("source-null", hr(1, source=None), True),
    ("extra-keys", hr(1, units="count/min", context="resting"), True),
    ("point-list", [at(1), 72], False),
    ("point-string", "72", False),
    ("point-null", None, False),
    ("point-number", 72, False),
    ("point-empty-object", {}, False),
    ("repeated-date", hr(0, Avg=90), False),
    ("same-instant-other-offset", hr(0, "+0530", Avg=90), False),
]


@pytest.mark.parametrize(("point", "sql_takes_it"), [c[1:] for c in HEART_RATE_POINTS],
                         ids=[c[0] for c in HEART_RATE_POINTS])
def test_heart_rate_point_ends_like_the_parser(engine, point, sql_takes_it):
    payload = envelope(metric("heart_rate", hr(0), point, hr(2), units="count/min"),
                       metric("step_count", qty(0, 10), qty(1, 20)))

    sql, _ = both_methods(engine, one_payload(payload))

    assert sql.sql_tables() == [["activity_metrics", "heart_rate_metrics"] if sql_takes_it else []]


def test_exact_limits_are_accepted_by_sql(engine):
    sql, _ = both_methods(engine, one_payload(envelope(
        metric("heart_rate", hr(0, Avg=20, Min=20, Max=300), hr(1, Avg=300)),
        metric("heart_rate_variability", qty(0, 0), qty(1, 500)),
        metric("blood_pressure", {"date": at(0), "systolic": 40, "diastolic": 20, "pulse": 20},
               {"date": at(1), "systolic": 300, "diastolic": 200, "pulse": 300}),
        metric("step_count", qty(0, 0), qty(1, 10_000_000)),
        metric("apple_stand_time", qty(0, 24), units="hr"),  # 1440 minutes
    )))

    assert sql.sql_tables() == [SIMPLE_TABLES]
    assert sql.runs[0][0]["rejected_points"] == 0


# (metrics of the payload, whether SQL takes it)
PAYLOADS: list[tuple[str, list[dict], bool]] = [
    ("metric-listed-twice", [metric("step_count", qty(0, 1)), metric("step_count", qty(1, 2))], False),
    ("metric-listed-twice-same-key", [metric("step_count", qty(0, 1)), metric("step_count", qty(0, 2))], False),
    ("energy-units-Cal", [metric("active_energy", qty(0, 100), units="Cal")], False),
    ("energy-units-number", [metric("active_energy", qty(0, 100), units=4.184)], False),
    ("energy-units-padded-upper-case", [metric("active_energy", qty(0, 100), units=" KJ ")], True),
    ("energy-units-absent", [metric("active_energy", qty(0, 100))], True),
    ("distance-units-m", [metric("walking_running_distance", qty(0, 100), units="m")], True),
    ("stand-time-seconds", [metric("apple_stand_time", qty(0, 90), units="s")], True),
    ("units-ignored-for-steps", [metric("step_count", qty(0, 5), units="furlong")], True),
    ("qty-object-with-units", [metric("walking_running_distance", qty(0, {"qty": 1, "units": "mi"}), units="km")],
     False),
    ("steps-1e7-plus-one", [metric("step_count", qty(0, 10_000_001))], False),
    ("distance-over-limit-after-conversion", [metric("walking_running_distance", qty(0, 6300), units="mi")], False),
    ("no-data-key", [{"name": "step_count", "units": "count"}, metric("flights_climbed", qty(0, 2))], True),
    ("empty-data", [metric("step_count"), metric("flights_climbed", qty(0, 2))], True),
    ("only-empty-data", [metric("heart_rate")], True),
    ("data-null", [{"name": "step_count", "data": None}, metric("heart_rate", hr(0))], False),  # invalid_structure
    ("unknown-metric", [metric("dietary_water", qty(0, 250)), metric("step_count", qty(0, 5))], True),
    ("unknown-name-of-a-known-metric", [metric("Heart Rate", hr(0)), metric("step_count", qty(0, 5))], True),
    ("metric-without-name", [{"units": "count", "data": [qty(0, 5)]}, metric("step_count", qty(0, 5))], True),
    ("metric-name-number", [metric(7, qty(0, 5)), metric("step_count", qty(0, 5))], True),
    ("blank-metric-name", [metric("  ", qty(0, 5)), metric("step_count", qty(0, 5))], True),
    ("sleep-rejection-only", [metric("step_count", qty(0, 5)), metric("sleep_analysis", {"sleepStart": at(0)})],
     True),
]


@pytest.mark.parametrize(("metrics", "sql_takes_it"), [c[1:] for c in PAYLOADS], ids=[c[0] for c in PAYLOADS])
def test_payload_ends_like_the_parser(engine, metrics, sql_takes_it):
    sql, _ = both_methods(engine, one_payload(envelope(*metrics)))

    assert bool(sql.sql_tables()[0]) is sql_takes_it


def test_negative_zero_is_stored_as_zero_by_both_methods(engine):
    """jsonb numbers have no negative zero: -0.0 is 0 once stored, whichever method reads it back.

    The parser reads the stored jsonb as well (not the API's original text), so both methods see 0
    and store +0.0; the rows compare equal with ``==`` and even by sign.
    """
    payload = envelope(metric("step_count", qty(0, -0.0), qty(1, 3)))
    assert json.dumps(payload).count("-0.0") == 1

    sql, copy = both_methods(engine, one_payload(payload))

    assert sql.sql_tables() == [["activity_metrics"]]
    for world in (sql, copy):
        steps = rows_of(world, "activity_metrics")[0][2]
        assert steps == 0.0 and math.copysign(1.0, steps) == 1.0


# --------------------------------------------------------------------------- 5. any payload

OFFSETS = ["-0800", "+0000", "+0530", "+1345", "-1400"]
# Dates off the canonical path (and "-0000", which is on it but is no offset Python writes).
ODD_DATES = [
    "2024-02-06T20:00:00Z", "2024-02-06T20:00:00 +0000", at(0, "+0520"), at(0, "+0000").replace("+", "-"),
    "2024-02-06 20:00:00", "2024-02-06 24:00:00 +0000", "2024-02-06 20:00:60 +0000", "2024-02-06 20:00:00.25 +0000",
    "1969-12-31 23:59:59 +0000", "2024-02-30 20:00:00 +0000", FUTURE, None, 1707249600,
]
BAD_VALUES = ["72", True, None, {"qty": 72}, [72], 1e300, 10**400, -1, 1e7 + 1, 19]
JUNK_POINTS = ["72", None, [1, 2], 72, {}]
# Every unit the catalogue knows per kind, and a spelling in other case and with spaces.
UNITS = {kind: [*known, f" {next(iter(known)).upper()} "] for kind, known in CATALOGUE_UNITS.items()}
BAD_UNITS = ["Cal", "furlong", 4.184, ""]
SOURCES = st.sampled_from([None, "Apple Watch", "iPhone", 7])
# The metrics SQL takes: every spelling of each (the parser is the reference for all of them).
SIMPLE = payload_sql.SIMPLE_METRICS


def values(f: Field, found: tuple[float, float]) -> st.SearchStrategy[float]:
    """Numbers inside the field's limits once converted: the limits themselves (-0.0 for 0), anything between."""
    scale, offset = found
    low, high = sorted(((f.limits[0] - offset) / scale, (f.limits[1] - offset) / scale))
    limits = [low, high] + ([-0.0, 5e-324] if f.limits[0] == 0 and not offset else [])
    return st.sampled_from(limits) | st.floats(low, high)


@st.composite
def simple_metric(draw: st.DrawFn, name: str, spoiled: bool = False) -> dict:
    """A metric of canonical points at distinct instants; ``spoiled``: made non-canonical in one place."""
    spec = lookup(name)
    kind = next((f.kind for f in spec.fields if f.kind), None)
    units = draw(st.sampled_from([None, *UNITS[kind]])) if kind else draw(st.sampled_from([None, "count"]))
    factors = {f.column: conversion(f.kind, units or f.default_units, f.unit) if f.kind else (1.0, 0.0)
               for f in spec.fields}
    points: list[Any] = []
    for minute in draw(st.lists(st.integers(0, 7), unique=True, max_size=5)):
        point: dict[str, Any] = {"date": at(minute, draw(st.sampled_from(OFFSETS)))}
        for f in spec.fields:
            key = f.keys[-1] if len(f.keys) > 1 and not draw(st.integers(0, 3)) else f.keys[0]  # Avg, or qty
            if f.required or draw(st.booleans()):
                point[key] = draw(values(f, factors[f.column]))
        source = draw(SOURCES)
        if source is not None:
            point["source"] = source
        points.append(point)
    spoil = draw(st.integers(0, 5)) if spoiled and points else -1
    where = draw(st.integers(0, len(points) - 1)) if points else 0
    if spoil == 0:
        points[where]["date"] = draw(st.sampled_from(ODD_DATES))
    elif spoil == 1:
        points[where].pop("date")
    elif spoil == 2:
        points[where][next(k for k in points[where] if k != "date")] = draw(st.sampled_from(BAD_VALUES))
    elif spoil == 3:
        points[where] = draw(st.sampled_from(JUNK_POINTS))
    elif spoil == 4:  # the same instant again, maybe written with another offset
        points.append({**points[where], "date": at(minute_of(points[where]), draw(st.sampled_from(OFFSETS)))})
    elif spoil == 5 and kind:
        units = draw(st.sampled_from(BAD_UNITS))
    return metric(name, *points, units=units)


def minute_of(point: dict) -> int:
    return int((datetime.fromisoformat(point["date"]) - T).total_seconds() // 60)


@st.composite
def payloads(draw: st.DrawFn) -> dict:
    names = draw(st.lists(st.sampled_from(SIMPLE), min_size=1, max_size=5, unique=True))
    spoiled = draw(st.integers(-2 * len(names), len(names) - 1))  # a third of the payloads: one metric
    metrics = [draw(simple_metric(name, n == spoiled)) for n, name in enumerate(names)]
    extra = draw(st.integers(0, 9))
    if extra == 0:  # a metric listed twice
        metrics.append(draw(simple_metric(metrics[0]["name"])))
    elif extra == 1:
        metrics.append(metric("dietary_water", qty(0, 250)))
    elif extra == 2:
        metrics.append({"data": [qty(0, 5)]})
    return envelope(*draw(st.permutations(metrics)))


@st.composite
def present_rows(draw: st.DrawFn) -> list[tuple[str, int, dict[str, object]]]:
    """Rows of the user at some of the payloads' instants, each with a few columns already set."""
    rows = []
    for table, minute in draw(st.lists(st.tuples(st.sampled_from(SIMPLE_TABLES), st.integers(0, 7)), max_size=4,
                                       unique=True)):
        columns = draw(st.lists(st.sampled_from(METRIC_TABLES[table].values), max_size=3, unique=True))
        rows.append((table, minute, {c: _OLD_VALUES[c] if c in _OLD_VALUES else _OLD_BY_TYPE[_TYPES[table][c]]
                                     for c in columns}))
    return rows


# A value already present, by the column's type: the API's internal form gives these tables text and
# yes/no columns too (a heart rate's context, an activity's apple_stand_hour_achieved).
_TYPES = {table: {c.name: c.type for c in table_columns(table)} for table in SIMPLE_TABLES}
_OLD_BY_TYPE: dict[str, object] = {FLOAT: 72.0, TEXT: "old text", BOOL: True}
_OLD_VALUES: dict[str, object] = {"source_device": "Old source"}


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(payload=payloads(), present=present_rows())
def test_any_payload_of_simple_metrics_ends_like_the_parser(engine, payload, present):
    """Recovered once over rows already present, then once more (its rows are all there by then)."""

    def scenario(world: World) -> None:
        user = world.user()
        for table, minute, columns in present:
            world.existing(user, table, minute, **columns)
        world.ingest(user, payload)
        world.recover()
        world.recover(statuses=["recovered", "recovery_failed"])

    sql, _ = both_methods(engine, scenario)
    event("sql path" if sql.sql_tables()[0] else "parser only")


# ------------------------------------------------------------------ 6. expected keys (reconciliation)
# Discovery, the dry run, verify and the monitor's deep check reconcile with
# reconcile.expected_keys, which lets PostgreSQL list the simple metrics' keys when it can do so
# exactly like the parser. The same payloads must give the same expectation either way.

NOW = datetime.now(UTC)


def both_expectations(engine: Engine, payload: Any) -> bool:
    """Assert that expected_keys with and without SQL agree on ``payload``, and so do the counts made
    in the server (the dry run's); whether SQL listed keys."""
    reset_schema(engine)
    user = add_user(engine)
    ingestion = add_ingestion(engine, user, payload, errors=PARAM_LIMIT_ERROR)
    with engine.connect() as conn:
        by_parser = reconcile.expected_keys(conn, ingestion, now=NOW, use_sql=False)
        with_sql = reconcile.expected_keys(conn, ingestion, now=NOW)
        with conn.connection.dbapi_connection.cursor() as cursor:
            listed = payload_sql.expected_keys(cursor, ingestion, PayloadParser(now=NOW).latest)
        assert counts_both_ways(conn, ingestion, user) == reconcile.count_against_rows(conn, user, by_parser)
    assert with_sql == by_parser
    return listed is not None


def counts_both_ways(conn: Any, ingestion: str, user: str) -> dict[str, reconcile.TableCounts]:
    """The counts from the keys SQL lists, which must equal those SQL makes without listing them."""
    listed = reconcile.count_against_rows(conn, user, reconcile.expected_keys(conn, ingestion, now=NOW))
    in_server = reconcile.expected_keys(conn, ingestion, now=NOW, count_for=user)
    assert reconcile.count_against_rows(conn, user, in_server) == listed
    return listed


def test_counted_in_the_server_like_listed_with_rows_and_values_present(engine):
    """The dry run counts the simple metrics' keys against the user's rows in the server: present
    rows, rows missing a value the payload has, another user's row at a payload key."""
    world = World(engine, "sql")
    user = with_present_rows(world)
    ingestion = world.ingest(user, present_rows_payload())

    with engine.connect() as conn:
        counted = reconcile.expected_keys(conn, ingestion, now=NOW, count_for=user)
        by_parser = reconcile.count_against_rows(
            conn, user, reconcile.expected_keys(conn, ingestion, now=NOW, use_sql=False))
        assert counts_both_ways(conn, ingestion, user) == by_parser

    assert set(counted.counted) == {"heart_rate_metrics", "blood_pressure_metrics", "activity_metrics"}
    assert counted.keys["heart_rate_metrics"] == []  # counted, not listed
    # Minute 0 lacks Min, Max and HRV, minute 2 Min and Max (its heart rate is another value, not a missing one).
    assert by_parser["heart_rate_metrics"] == reconcile.TableCounts(expected=5, present=3, missing_values=5)


@pytest.mark.parametrize(("point", "sql_takes_it"), [c[1:] for c in HEART_RATE_POINTS],
                         ids=[c[0] for c in HEART_RATE_POINTS])
def test_heart_rate_point_gives_the_parsers_expected_keys(engine, point, sql_takes_it):
    payload = envelope(metric("heart_rate", hr(0), point, hr(2), units="count/min"),
                       metric("step_count", qty(0, 10), qty(1, 20)), SLEEP, workouts=WORKOUTS)

    assert both_expectations(engine, payload) is sql_takes_it


@pytest.mark.parametrize(("metrics", "sql_takes_it"), [c[1:] for c in PAYLOADS], ids=[c[0] for c in PAYLOADS])
def test_payload_gives_the_parsers_expected_keys(engine, metrics, sql_takes_it):
    assert both_expectations(engine, envelope(*metrics)) is sql_takes_it


def test_keys_shared_by_several_metrics_are_listed_once(engine):
    payload = envelope(metric("heart_rate", hr(0), hr(1)), metric("resting_heart_rate", qty(1, 55), qty(2, 56)),
                       metric("step_count", qty(0, 5)), metric("active_energy", qty(0, 10), units="kcal"))

    assert both_expectations(engine, payload)
    with engine.connect() as conn:
        ingestion = conn.execute(sa.text("SELECT id::text FROM raw_ingestions")).scalar_one()
        keys = reconcile.expected_keys(conn, ingestion, now=NOW).keys
    assert len(keys["heart_rate_metrics"]) == 3 and len(keys["activity_metrics"]) == 1


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(payload=payloads())
def test_any_payload_of_simple_metrics_gives_the_parsers_expected_keys(engine, payload):
    event("sql listed the keys" if both_expectations(engine, payload) else "parser only")
