"""The incident generator: deterministic, realistic, and its ground truth matches the database.

The truth is re-derived here independently: natural keys are read back from the stored
``raw_payload`` with a small key extractor written from docs/payload-format.md, and present
rows are counted with plain SQL.
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import reset_schema
from sqlalchemy.engine import Engine

from recovery_lib import catalogue, db
from recovery_lib.catalogue.arrays import ROUTE_FIELDS, WORKOUT_SERIES
from recovery_lib.catalogue.units import convert
from recovery_lib.error_patterns import categorize_processing_errors
from recovery_lib.payload import PayloadError, parse_payload
from recovery_lib.schema import METRIC_TABLES
from recovery_lib.simulate import (
    OUTCOMES,
    PARAMETER_LIMIT,
    IncidentExistsError,
    IncidentPlan,
    IncidentTruth,
    database_summary,
    measure,
    plan_incident,
    reset_tables,
    simulate,
    truth_from_file,
    write_plan,
)
from recovery_lib.simulate.payloads import count_points
from recovery_lib.simulate.store import generic_points

NOW = datetime(2024, 2, 6, 15, 0, tzinfo=UTC)
SMALL = {"users": 3, "payloads": 12, "seed": 7, "now": NOW, "large_points": 13_000, "hash_mismatches": 1}
TINY = {"users": 2, "payloads": 6, "now": NOW, "large_points": 2_000}
DATE = re.compile(r"^\d{4}-\d{2}-\d{2} (\d{2}:\d{2}:\d{2} |\d{1,2}:\d{2}:\d{2}\u202f[ap]m )[+-]\d{4}$")

_cache: dict[str, Any] = {}


def _holds(engine, truth: IncidentTruth) -> bool:
    with engine.connect() as conn:
        ids = set(conn.execute(sa.text("SELECT id::text FROM raw_ingestions")).scalars())
        counts = {t: conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one() for t in METRIC_TABLES}
    return ids == {i.id for i in truth.ingestions} and counts == truth.rows_by_table


@pytest.fixture()
def incident(database_url: str, monkeypatch: pytest.MonkeyPatch) -> IncidentTruth:
    """The SMALL incident, written once and reused while the database still holds it (tests that
    take the ``engine`` fixture empty the schema; the next user of this fixture writes it again)."""
    monkeypatch.setenv("DATABASE_URL", database_url)
    eng = db.get_engine(database_url)
    truth = _cache.get("truth")
    if truth is None or not _holds(eng, truth):
        reset_schema(eng)
        write_plan(eng, small_plan())
        truth = _cache["truth"] = measure(eng, small_plan())
    return truth


def default_plan() -> IncidentPlan:
    """The demo's incident (10 users, 40 payloads, seed 42), planned once: pure, no database."""
    if "default" not in _cache:
        _cache["default"] = plan_incident(users=10, payloads=40, seed=42, now=NOW, large_points=13_000)
    return _cache["default"]


def small_plan() -> IncidentPlan:
    if "plan" not in _cache:
        _cache["plan"] = plan_incident(**SMALL)
    return _cache["plan"]


@pytest.fixture()
def db_engine(database_url: str) -> Engine:
    """The engine without resetting the schema (for tests that read the incident)."""
    return db.get_engine(database_url)


# ---------------------------------------------------------------------------------------------
# An independent reading of the doc: keys only (the catalogue says which table a name fills)

_TWELVE_HOUR = re.compile(r"(\d{4}-\d{2}-\d{2}) (\d{1,2}):(\d{2}):(\d{2})\u202f(am|pm) ([+-]\d{4})$")


def _date(text: str) -> datetime:
    found = _TWELVE_HOUR.match(text)
    if found:
        day, hour, minute, second, meridiem, offset = found.groups()
        hour = int(hour) % 12 + (12 if meridiem == "pm" else 0)
        text = f"{day} {hour:02d}:{minute}:{second} {offset}"
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S %z")


def _numeric(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


Key = Any  # an instant, or (instant, tag) for a tagged table


def _metric_keys(keys: dict[str, set[Key]], m: dict) -> None:
    spec = catalogue.lookup(m["name"])
    if spec is not None and spec.shape == "sleep":
        segments = sorted((_date(p["startDate"]), _date(p["endDate"])) for p in m["data"] if "startDate" in p)
        end = None
        for start, stop in segments:
            if end is None or start > end + timedelta(minutes=60):
                keys["sleep_metrics"].add(start)
                end = stop
            end = max(end, stop)
        keys["sleep_metrics"].update(_date(p["sleepStart"]) for p in m["data"] if "sleepStart" in p)
        return
    for p in m["data"]:
        values = [p[f] for f in ("qty", "Avg", "systolic") if f in p]
        if values and not all(_numeric(v) for v in values):
            continue  # the corrupt payloads' text quantities
        if spec is None:
            keys[catalogue.GENERIC_TABLE].add((_date(p["date"]), m["name"]))
        else:
            keys[spec.table].add(_date(p["date"]))


def expected_keys(payload: Any) -> dict[str, set[Key]]:
    keys: dict[str, set[Key]] = {t: set() for t in METRIC_TABLES}
    if not isinstance(payload, dict) or not isinstance(payload.get("data"), dict):
        return keys
    metrics = payload["data"].get("metrics", [])
    if not isinstance(metrics, list) or not all(isinstance(m, dict) for m in metrics):
        return keys
    for m in metrics:
        _metric_keys(keys, m)
    for w in payload["data"].get("workouts", []):
        start = _date(w["start"])
        keys["workout_metrics"].add(start)
        for name, points in w.items():
            if name in WORKOUT_SERIES and isinstance(points, list):
                keys["workout_samples"].update((_date(p["date"]), start) for p in points)
        keys["workout_route_points"].update((_date(p["timestamp"]), start) for p in w.get("route", []))
    for name, entries in payload["data"].items():
        array = catalogue.ARRAYS.get(name)
        for e in entries if array else ():
            table = array.dispatch[e["name"]][0] if array.dispatch else array.table
            at = _date(e["start"])
            keys[table].add((at, e[array.tag_key]) if array.tag_key else at)
    return keys


def stored_payloads(engine) -> dict[str, tuple[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT id::text, user_id::text, raw_payload FROM raw_ingestions")).all()
    return {r[0]: (r[1], r[2]) for r in rows}


def present_count(conn, table: str, user_id: str, keys: set[Key]) -> int:
    if not keys:
        return 0
    t = METRIC_TABLES[table]  # table and column names are the schema's constants
    if t.tag is None:
        query = sa.text(
            f"SELECT count(*) FROM {table} WHERE user_id = :u AND {t.key} = ANY(CAST(:k AS timestamptz[]))"
        )
        return conn.execute(query, {"u": user_id, "k": sorted(keys)}).scalar_one()
    tag_type = "timestamptz" if table.startswith("workout_") else "text"
    query = sa.text(
        f"SELECT count(*) FROM {table} m JOIN unnest(CAST(:k AS timestamptz[]), CAST(:g AS {tag_type}[])) "
        f"AS x(k, g) ON m.{t.key} = x.k AND m.{t.tag} = x.g WHERE m.user_id = :u"
    )
    return conn.execute(query, {"u": user_id, "k": [k for k, _ in keys], "g": [g for _, g in keys]}).scalar_one()


def all_points(payload: Any):
    """(metric name, units, point) of every metric point, ('workouts', None, w) with (series name,
    units, point) of each series and route point after it, and (array name, None, entry)."""
    for m in payload["data"].get("metrics", []):
        for p in m["data"]:
            yield m["name"], m.get("units"), p
    for w in payload["data"].get("workouts", []):
        yield "workouts", None, w
        for name, points in w.items():
            if isinstance(points, list):
                for p in points:
                    yield name, p.get("units"), p
    for name, entries in payload["data"].items():
        if name in catalogue.ARRAYS:
            for e in entries:
                yield name, None, e


# ---------------------------------------------------------------------------------------------
# Determinism


def _db_snapshot(engine) -> dict[str, Any]:
    with engine.connect() as conn:
        ingestions = conn.execute(
            sa.text(
                "SELECT id, user_id, payload_hash, payload_size_bytes, md5(raw_payload::text), "
                "processing_status, "
                "processing_errors::text, processed_at, created_at FROM raw_ingestions ORDER BY id"
            )
        ).all()
        users = conn.execute(sa.text("SELECT id, email FROM users ORDER BY id")).all()
        tables = {}
        for name, spec in METRIC_TABLES.items():
            cols = ", ".join(spec.columns)
            tables[name] = conn.execute(
                sa.text(
                    f"SELECT md5(string_agg(t::text, '|' ORDER BY t::text)) "
                    f"FROM (SELECT {cols} FROM {name}) t"
                )
            ).scalar_one()
    return {"ingestions": ingestions, "users": users, "tables": tables}


def test_same_seed_twice_gives_the_same_incident(engine):
    first = simulate(engine, **TINY, seed=11)
    snapshot = _db_snapshot(engine)
    reset_tables(engine)
    second = simulate(engine, **TINY, seed=11)
    assert second.to_dict() == first.to_dict()
    assert _db_snapshot(engine) == snapshot
    assert len(snapshot["ingestions"]) == 6 and snapshot["tables"]["heart_rate_metrics"]


def test_hash_mismatches_change_nothing_else():
    plain, flagged = plan_incident(**TINY, seed=4), plan_incident(**TINY, seed=4, hash_mismatches=1)
    assert [i.text for i in plain.ingestions] == [i.text for i in flagged.ingestions]
    assert [i.hash_mismatch for i in flagged.ingestions].count(True) == 1


def test_another_seed_gives_another_incident():
    a, b, c = plan_incident(**TINY, seed=1), plan_incident(**TINY, seed=1), plan_incident(**TINY, seed=2)
    assert [i.text for i in a.ingestions] == [i.text for i in b.ingestions]
    assert [(i.id, i.status, i.created_at) for i in a.ingestions] == [
        (i.id, i.status, i.created_at) for i in b.ingestions
    ]
    assert not {i.id for i in a.ingestions} & {i.id for i in c.ingestions}
    assert [i.text for i in a.ingestions] != [i.text for i in c.ingestions]


# ---------------------------------------------------------------------------------------------
# Ground truth against the database


def test_truth_matches_the_database(db_engine, incident):
    payloads = stored_payloads(db_engine)
    assert set(payloads) == {i.id for i in incident.ingestions}
    with db_engine.connect() as conn:
        for ing in incident.ingestions:
            user_id, payload = payloads[ing.id]
            assert user_id == ing.user_id
            keys = expected_keys(payload)
            assert ing.expected_rows == {t: len(k) for t, k in keys.items()}, ing.outcome
            present = {t: present_count(conn, t, user_id, k) for t, k in keys.items()}
            assert ing.present_rows == present, ing.outcome
            assert ing.missing_rows == {t: len(keys[t]) - present[t] for t in METRIC_TABLES}
        counts = {t: conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one() for t in METRIC_TABLES}
        statuses = dict(
            conn.execute(sa.text("SELECT processing_status, count(*) FROM raw_ingestions GROUP BY 1")).all()
        )
    assert incident.rows_by_table == counts
    assert incident.status_counts == statuses
    assert incident.missing_rows_total == sum(incident.missing_by_table.values())
    assert incident.recoverable_missing_rows_total <= incident.missing_rows_total


def test_outcomes_lose_what_they_say(incident):
    for ing in incident.ingestions:
        if ing.outcome == "processed":
            assert ing.missing_total == 0 and ing.status == "processed"
        elif ing.outcome in ("error", "partial_success", "silent_loss"):
            assert ing.missing_total > 0, ing
        elif ing.outcome == "corrupt":
            assert sum(ing.expected_rows.values()) == 0 and ing.status == "error"
        if ing.outcome == "partial_success":
            # Some tables made it, some did not.
            assert any(ing.present_rows[t] == ing.expected_rows[t] > 0 for t in METRIC_TABLES)
            assert ing.missing_rows["heart_rate_metrics"] > 0
    assert set(incident.loss_ingestions) == {
        i.id for i in incident.ingestions if i.outcome in ("error", "partial_success", "silent_loss")
    }
    assert incident.silent_loss_ingestions == [
        i.id for i in incident.ingestions if i.outcome == "silent_loss"
    ]


def test_every_outcome_appears_with_default_like_settings(incident):
    assert set(incident.outcome_counts) == set(OUTCOMES)
    plan = default_plan()
    outcomes = [i.outcome for i in plan.ingestions]
    assert set(outcomes) == set(OUTCOMES)
    assert 1 <= outcomes.count("pending") <= 2
    large = [i for i in plan.ingestions if i.large]
    assert len(large) >= 40 // 10
    assert {i.outcome for i in large} <= {"error", "partial_success", "silent_loss"}


def test_payloads_that_break_the_parameter_limit_exist_and_lost_rows(incident):
    large = [i for i in incident.ingestions if i.large]
    assert large
    for ing in large:
        assert ing.points >= 12_000
        assert ing.max_params_single_insert > PARAMETER_LIMIT
        assert ing.max_params_single_insert == ing.expected_rows["heart_rate_metrics"] * len(
            METRIC_TABLES["heart_rate_metrics"].columns)
        assert ing.missing_rows["heart_rate_metrics"] > 0
    for ing in incident.ingestions:
        if not ing.large:
            assert ing.max_params_single_insert < PARAMETER_LIMIT and ing.points <= 4_000


def test_overlapping_payloads_agree_and_supply_each_others_keys(db_engine, incident):
    payloads = stored_payloads(db_engine)
    overlapping = [i for i in incident.ingestions if i.overlaps_with]
    assert overlapping
    for ing in overlapping:
        points: dict[tuple[str, datetime], dict] = {}
        shared = 0
        for other in (ing.overlaps_with, ing.id):
            for name, _, p in all_points(payloads[other][1]):
                if name == "heart_rate":
                    key = (name, _date(p["date"]))
                    value = {k: v for k, v in p.items() if k != "date"}  # the offset shown may differ
                    shared += key in points
                    assert points.setdefault(key, value) == value
        assert shared > 0
    # Somewhere a table the original tool never wrote for a payload still has some of its keys,
    # thanks to another payload: the truth counts what is in the database.
    assert any(i.present_rows[t] > 0 for i in incident.ingestions for t in i.dropped_tables)


def test_activity_metrics_share_timestamps(db_engine, incident):
    with db_engine.connect() as conn:
        wide = conn.execute(
            sa.text(
                "SELECT count(*) FROM activity_metrics WHERE step_count IS NOT NULL "
                "AND distance_meters IS NOT NULL "
                "AND active_energy_burned_kcal IS NOT NULL AND basal_energy_burned_kcal IS NOT NULL"
            )
        ).scalar_one()
        merged_hr = conn.execute(
            sa.text(
                "SELECT count(*) FROM heart_rate_metrics "
                "WHERE heart_rate IS NOT NULL AND resting_heart_rate IS NOT NULL"
            )
        ).scalar_one()
    assert wide > 50 and merged_hr > 0


# ---------------------------------------------------------------------------------------------
# Stored ingestions


def test_payload_hash_is_sha256_of_the_stored_jsonb_except_mismatches(db_engine, incident):
    with db_engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT id::text, processing_status, payload_size_bytes, "
                "payload_hash = encode(sha256(convert_to(raw_payload::text, 'UTF8')), 'hex'), payload_hash "
                "FROM raw_ingestions"
            )
        ).all()
    by_id = {i.id: i for i in incident.ingestions}
    for ingestion_id, status, size, matches, stored in rows:
        assert re.fullmatch(r"[0-9a-f]{64}", stored)
        assert matches != by_id[ingestion_id].hash_mismatch
        assert size == by_id[ingestion_id].payload_size_bytes > 0
        if by_id[ingestion_id].hash_mismatch:
            assert status == "error"
    assert sum(i.hash_mismatch for i in incident.ingestions) == 1


def test_statuses_errors_and_times(db_engine, incident):
    with db_engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT id::text, processing_status, processing_errors, processed_at, created_at "
                "FROM raw_ingestions"
            )
        ).all()
    by_id = {i.id: i for i in incident.ingestions}
    for ingestion_id, status, errors, processed_at, created_at in rows:
        ing = by_id[ingestion_id]
        assert NOW - timedelta(hours=20) <= created_at <= NOW
        if ing.outcome == "pending":
            assert processed_at is None and errors is None
            continue
        assert created_at < processed_at <= created_at + timedelta(minutes=10)
        if ing.outcome in ("processed", "silent_loss"):
            assert status == "processed" and errors is None
            continue
        assert isinstance(errors, list) and len(errors) == 1 and set(errors[0]) == {"error", "at"}
        category = categorize_processing_errors(errors)
        if ing.outcome == "corrupt":
            assert category in ("parse", "validation")
        elif ing.large:
            assert category == "parameter_limit"
        else:
            assert category in ("connection", "timeout")


DATE_FIELDS = ("date", "startDate", "endDate", "sleepStart", "sleepEnd", "inBedStart", "inBedEnd", "start", "end",
               "timestamp", "scheduledDate")


def test_dates_use_the_documented_format(incident, db_engine):
    offsets, twelve_hour = set(), 0
    for _, payload in stored_payloads(db_engine).values():
        if not isinstance(payload, dict) or not isinstance(payload.get("data"), dict):
            continue
        if not isinstance(payload["data"].get("metrics"), list):
            continue
        for name, _, p in all_points(payload):
            if not isinstance(p, dict):
                continue
            for field in DATE_FIELDS:
                if field in p:
                    assert DATE.match(p[field]), (name, field, p[field])
                    assert _date(p[field]) <= NOW + timedelta(minutes=5)
                    offsets.add(p[field][-5:])
                    twelve_hour += "\u202f" in p[field]
    assert len(offsets) >= 3
    assert twelve_hour > 1000  # a phone set to 12-hour time: "2024-09-21 7:57:00\u202fam +1000"


def _in_unit(f: catalogue.Field, raw: Any, units: Any) -> float:
    """A numeric field's value in the column's unit (catalogue.units does the converting here)."""
    value, own = (raw["qty"], raw.get("units")) if isinstance(raw, dict) else (raw, None)
    if f.kind is None:
        return value
    given = own if own is not None else units
    return convert(value, f.kind, given if given is not None else f.default_units, f.unit)


def _fields_of(name: str) -> tuple[catalogue.Field, ...]:
    if name in catalogue.ARRAYS:
        return catalogue.ARRAYS[name].fields
    if name in WORKOUT_SERIES:
        return WORKOUT_SERIES[name]
    if name == "route":
        return ROUTE_FIELDS
    spec = catalogue.lookup(name)
    return spec.fields if spec else ()


def _checked_values(name: str, units: str | None, p: dict) -> list[tuple[tuple[float, float], float]]:
    """(limits, value in the column's unit) of every number of a point."""
    if name == "sleep_analysis":
        fields = ("totalSleep", "asleep", "core", "deep", "rem", "awake", "inBed", "qty")
        return [((0, 1440), p[k] * 60) for k in fields if k in p]
    if name == "workouts":
        energy, distance, heart_rate = (0, 20_000), (0, 1e6), (20, 300)
        out = [(heart_rate, p[k]) for k in ("avgHeartRate", "maxHeartRate") if _numeric(p.get(k)) and p[k]]
        for k in ("activeEnergyBurned", "totalEnergy", "activeEnergy"):
            if isinstance(p.get(k), dict):
                out.append((energy, convert(p[k]["qty"], "energy", p[k]["units"], "kcal")))
            elif _numeric(p.get(k)):
                out.append((energy, convert(p[k], "energy", p[k + "Units"], "kcal")))
        dist = p.get("distance")
        if isinstance(dist, dict):
            out.append((distance, convert(dist["qty"], "length", dist["units"], "m")))
        elif _numeric(dist):
            out.append((distance, convert(dist, "length", p["distanceUnits"], "m")))
        for part in ("avg", "max"):
            if isinstance(p.get("heartRate"), dict):
                out.append((heart_rate, p["heartRate"][part]["qty"]))
        return out
    return [(f.limits, _in_unit(f, p[key], units)) for f in _fields_of(name) if f.type == "float"
            for key in f.keys[:1] if key in p]


def test_values_are_within_the_catalogue_plausibility_limits(incident, db_engine):
    checked = 0
    for ing_id, (_, payload) in stored_payloads(db_engine).items():
        outcome = next(i.outcome for i in incident.ingestions if i.id == ing_id)
        if outcome == "corrupt":
            continue
        for name, units, p in all_points(payload):
            for (low, high), value in _checked_values(name, units, p):
                assert _numeric(value) and low <= value <= high, (name, value)
                checked += 1
    assert checked > 30_000
    with db_engine.connect() as conn:
        hr = conn.execute(
            sa.text(
                "SELECT min(heart_rate_min), max(heart_rate_max), max(heart_rate_variability) "
                "FROM heart_rate_metrics"
            )
        ).one()
        sleep = conn.execute(
            sa.text("SELECT max(duration_minutes), max(efficiency) FROM sleep_metrics")
        ).one()
    assert hr[0] >= 20 and hr[1] <= 300 and hr[2] <= 500
    assert sleep[0] <= 1440 and 0 < sleep[1] <= 100


def _shapes(payloads: list[Any]) -> tuple[set[str], set[Any], set[str], set[Any]]:
    """Metric names (as spelled), units, forms (workout versions, sleep forms, series, arrays) and sources."""
    names, units, forms, sources = set(), set(), set(), set()
    for payload in payloads:
        if not isinstance(payload, dict) or not isinstance(payload.get("data"), dict):
            continue
        if not isinstance(payload["data"].get("metrics"), list):
            continue
        forms.update(k for k in payload["data"] if k in catalogue.ARRAYS)
        for name, unit, p in all_points(payload):
            names.add(name)
            units.add(unit)
            sources.add(p.get("source"))
            if name == "workouts":
                forms.add("v2" if "activeEnergyBurned" in p else "v1")
                forms.update(k for k, v in p.items() if isinstance(v, list) and v)
                if p.get("avgHeartRate") == 0:
                    forms.add("v1 heart rate 0")
            if name == "sleep_analysis":
                if "startDate" in p:
                    forms.add(f"sleep segment {p['value']}")
                else:
                    forms.add("sleep 6.6.2 with total" if "totalSleep" in p else
                              "sleep 6.6.2 without total" if "core" in p else "sleep before 6.6.2")
    return names, units, forms, sources


def test_payloads_cover_every_shape(incident, db_engine):
    names, units, forms, sources = _shapes([payload for _, payload in stored_payloads(db_engine).values()])
    assert {
        "heart_rate",
        "resting_heart_rate",
        "blood_pressure",
        "blood_pressure_systolic",
        "step_count",
        "active_energy",
        "sleep_analysis",
        "workouts",
        "walking_heart_rate",  # an older spelling of walking_heart_rate_average
        "stair_speed:_up",  # and of stair_speed_up
        "sleep_score",  # a name the catalogue does not know (yet)
    } <= names
    assert {"km", "mi", "kJ", "kcal", "min", "hr", "degF", "degC", "lb", "kg", "mmol<180.1558800000541>/L"} <= units
    assert {"v1", "v2", "sleep segment In Bed", "sleep 6.6.2 with total", "sleep 6.6.2 without total"} <= forms
    assert {"heartRateData", "heartRateRecovery", "activeEnergy", "route", "v1 heart rate 0"} <= forms
    assert set(catalogue.ARRAYS) <= forms
    assert any(s and not s.isascii() for s in sources)


def test_corrupt_payloads_are_structurally_invalid_or_non_numeric():
    plan = plan_incident(users=2, payloads=60, seed=3, now=NOW, large_points=2_000)
    corrupt = [i for i in plan.ingestions if i.outcome == "corrupt"]
    assert {i.corrupt_variant[0] for i in corrupt} >= {"invalid_structure", "non_numeric"}
    for ing in corrupt:
        assert all(not rows for rows in ing.rows.values())
        assert all(not keys for keys in expected_keys(ing.payload).values())


# ---------------------------------------------------------------------------------------------
# The whole catalogue: every family, the data arrays, unknown names, and the oracle is the parser's twin


def _payload_metric_names(plan: IncidentPlan) -> list[str]:
    return [m["name"] for ing in plan.ingestions if ing.outcome != "corrupt"
            for m in ing.payload["data"]["metrics"]]


def test_a_default_incident_fills_every_catalogue_table_with_every_name_array_and_unknown_name():
    plan = default_plan()
    tables = {t for ing in plan.ingestions for t, rows in ing.rows.items() if rows}
    assert tables == set(catalogue.TABLES)
    spelled = set(_payload_metric_names(plan))
    assert {catalogue.lookup(n).name for n in spelled if catalogue.lookup(n)} == set(catalogue.METRICS)
    aliases = {n for n in spelled if catalogue.lookup(n) and catalogue.lookup(n).name != n}
    assert {"walking_heart_rate", "stair_speed:_up", "heart_rate_variability_sdnn"} <= aliases and len(aliases) > 40
    unknown = {n for n in spelled if catalogue.lookup(n) is None}
    assert unknown == {"sleep_score", "workout_effort_score"}
    arrays = {k for ing in plan.ingestions if ing.outcome != "corrupt" for k in ing.payload["data"]}
    assert arrays == {"metrics", "workouts", *catalogue.ARRAYS}
    names, units, forms, _ = _shapes([ing.payload for ing in plan.ingestions])
    assert {"sleep before 6.6.2", "sleep segment InBed", "sleep segment Unspecified"} <= forms
    assert {"cyclingPower", "swimStroke", "basalEnergy", "stepCount", "walkingAndRunningDistance"} <= forms
    assert {"mmol/L", "mg/dL", "fl_oz_us", "mL", "mi/hr", "km/hr", "in", "cm", "yd", "ft"} <= units


def test_a_small_incident_already_fills_every_table_of_the_database(incident):
    assert {t for t, n in incident.rows_by_table.items() if n} == set(METRIC_TABLES)


def _filled(rows: dict[str, dict[Any, dict[str, Any]]]) -> dict[str, dict[Any, dict[str, Any]]]:
    """Rows as the parser gives them: only the columns filled, without the natural key's columns."""
    return {
        t: {k: {c: v for c, v in row.items() if v is not None and c not in METRIC_TABLES[t].natural_key}
            for k, row in found.items()}
        for t, found in rows.items()
    }


@pytest.mark.parametrize("plan", [small_plan, default_plan], ids=["small", "default"])
def test_the_oracle_gives_exactly_the_parsers_rows_for_every_generated_payload(plan):
    checked = 0
    for ing in plan().ingestions:
        try:
            parsed = parse_payload(ing.text, now=NOW)
        except PayloadError:
            assert ing.outcome == "corrupt" and not any(ing.rows.values())
            continue
        books = parsed.parser.summary()
        if ing.outcome == "corrupt":
            assert not any(parsed.rows.values()) and books["rejection_counts"]
            continue
        oracle = _filled(ing.rows)
        for table in METRIC_TABLES:
            assert oracle[table] == parsed.rows[table], (ing.profile.index, table)
        assert books["rejection_counts"] == {} and books["unsupported"] == {}, ing.profile.index
        assert books["points_seen"] == count_points(ing.payload) == books["points_used"] + books["points_generic"]
        assert books["generic_points"] == generic_points(ing.rows)
        checked += sum(len(rows) for rows in oracle.values())
    assert checked > 30_000


def test_the_truth_counts_each_family_and_they_add_up(incident):
    for ing in incident.ingestions:
        assert sum(ing.points_by_family.values()) == ing.points
        assert set(ing.points_by_family) <= set(catalogue.FAMILIES)
        generic = ing.expected_rows[catalogue.GENERIC_TABLE]
        assert sum(ing.generic_points.values()) == generic
    assert sum(incident.points_by_family.values()) == sum(i.points for i in incident.ingestions)
    assert sum(incident.missing_by_family.values()) == incident.missing_rows_total
    assert incident.expected_by_family == {
        family: sum(i.expected_rows[t] for i in incident.ingestions for t in METRIC_TABLES
                    if catalogue.TABLES[t].family == family)
        for family in catalogue.FAMILIES
    }
    assert set(incident.generic_points) == {"sleep_score", "workout_effort_score"}
    text = incident.summary_text()
    assert "by family" in text and "nutrition" in text and "sleep_score" in text


def test_the_original_tool_lost_the_new_families_too(incident):
    original = {"heart_rate_metrics", "blood_pressure_metrics", "sleep_metrics", "activity_metrics",
                "workout_metrics"}
    dropped = {t for i in incident.ingestions for t in i.dropped_tables}
    assert len(dropped - original) >= 15
    lost = {family for family, n in incident.missing_by_family.items() if n}
    assert {"nutrition", "ECG", "medications", "workouts", "other (generic)", "mental health"} <= lost


# ---------------------------------------------------------------------------------------------
# Truth file, refusal, CLI


def test_truth_is_json_without_health_values(incident, tmp_path):
    path = incident.write(tmp_path / "truth.json")
    data = truth_from_file(path)
    assert data == json.loads(json.dumps(incident.to_dict()))
    assert data["missing_rows_total"] > 0 and data["loss_ingestions"]
    entry = data["ingestions"][0]
    assert set(entry["expected_rows"]) == set(METRIC_TABLES)
    for key in ("id", "user_id", "status", "outcome", "points", "large", "present_rows", "missing_rows"):
        assert key in entry
    assert "Avg" not in path.read_text() and "qty" not in path.read_text()
    text = incident.summary_text()
    assert "65,535" in text and "silent loss" in text


def test_refuses_a_second_incident(db_engine, incident):
    with pytest.raises(IncidentExistsError):
        simulate(db_engine, **TINY)


def test_too_many_hash_mismatches_is_a_value_error():
    with pytest.raises(ValueError, match="hash_mismatches"):
        plan_incident(**TINY, hash_mismatches=50)


def test_cli_simulate_truth_refusal_reset_and_summary(engine, tmp_path, capsys):
    from recovery_lib.cli import main

    truth_path = tmp_path / "out" / "truth.json"
    args = ["simulate", "--users", "2", "--payloads", "6", "--seed", "5", "--large-points", "2000"]
    assert main([*args, "--truth", str(truth_path)]) == 0
    out = capsys.readouterr().out
    assert "silent loss" in out and truth_path.exists()
    truth = truth_from_file(truth_path)
    assert len(truth["ingestions"]) == 6

    assert main(args) == 2
    assert "--reset" in capsys.readouterr().err

    assert main([*args, "--reset", "--seed", "6"]) == 0
    capsys.readouterr()
    assert database_summary(engine).users == 2
    assert main(["summary"]) == 0
    out = capsys.readouterr().out
    assert "raw_ingestions: 6" in out and "heart_rate_metrics" in out

    with pytest.raises(SystemExit) as exc:
        main(["simulate", "--payloads", "0"])
    assert exc.value.code == 2
