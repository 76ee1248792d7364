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

from recovery_lib import db
from recovery_lib.error_patterns import categorize_processing_errors
from recovery_lib.schema import METRIC_TABLES
from recovery_lib.simulate import (
    OUTCOMES,
    PARAMETER_LIMIT,
    IncidentExistsError,
    IncidentTruth,
    database_summary,
    measure,
    plan_incident,
    reset_tables,
    simulate,
    truth_from_file,
    write_plan,
)

NOW = datetime(2024, 2, 6, 15, 0, tzinfo=UTC)
SMALL = {"users": 3, "payloads": 12, "seed": 7, "now": NOW, "large_points": 13_000, "hash_mismatches": 1}
TINY = {"users": 2, "payloads": 6, "now": NOW, "large_points": 2_000}
DATE = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} [+-]\d{4}$")

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
        if "plan" not in _cache:
            _cache["plan"] = plan_incident(**SMALL)  # pure: planned once
        reset_schema(eng)
        write_plan(eng, _cache["plan"])
        truth = _cache["truth"] = measure(eng, _cache["plan"])
    return truth


@pytest.fixture()
def db_engine(database_url: str) -> Engine:
    """The engine without resetting the schema (for tests that read the incident)."""
    return db.get_engine(database_url)


# ---------------------------------------------------------------------------------------------
# An independent reading of the doc: keys only


def _date(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S %z")


_TABLE_OF = {
    "heart_rate": "heart_rate_metrics",
    "resting_heart_rate": "heart_rate_metrics",
    "heart_rate_variability": "heart_rate_metrics",
    "blood_pressure": "blood_pressure_metrics",
    "blood_pressure_systolic": "blood_pressure_metrics",
    "blood_pressure_diastolic": "blood_pressure_metrics",
    **dict.fromkeys(
        (
            "step_count",
            "walking_running_distance",
            "flights_climbed",
            "active_energy",
            "basal_energy_burned",
            "apple_exercise_time",
            "apple_stand_time",
        ),
        "activity_metrics",
    ),
}


def _numeric(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def expected_keys(payload: Any) -> dict[str, set[datetime]]:
    keys: dict[str, set[datetime]] = {t: set() for t in METRIC_TABLES}
    if not isinstance(payload, dict) or not isinstance(payload.get("data"), dict):
        return keys
    metrics = payload["data"].get("metrics", [])
    if not isinstance(metrics, list) or not all(isinstance(m, dict) for m in metrics):
        return keys
    for m in metrics:
        if m["name"] == "sleep_analysis":
            segments = sorted(
                (_date(p["startDate"]), _date(p["endDate"])) for p in m["data"] if "startDate" in p
            )
            end = None
            for start, stop in segments:
                if end is None or start > end + timedelta(minutes=60):
                    keys["sleep_metrics"].add(start)
                    end = stop
                end = max(end, stop)
            keys["sleep_metrics"].update(_date(p["sleepStart"]) for p in m["data"] if "sleepStart" in p)
            continue
        for p in m["data"]:
            values = [p[f] for f in ("qty", "Avg", "systolic") if f in p]
            if values and all(_numeric(v) for v in values):
                keys[_TABLE_OF[m["name"]]].add(_date(p["date"]))
    for w in payload["data"].get("workouts", []):
        keys["workout_metrics"].add(_date(w["start"]))
    return keys


def stored_payloads(engine) -> dict[str, tuple[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT id::text, user_id::text, raw_payload FROM raw_ingestions")).all()
    return {r[0]: (r[1], r[2]) for r in rows}


def present_count(conn, table: str, user_id: str, keys: set[datetime]) -> int:
    if not keys:
        return 0
    key = METRIC_TABLES[table].key  # table and column names are the schema's constants
    query = sa.text(
        f"SELECT count(*) FROM {table} WHERE user_id = :u AND {key} = ANY(CAST(:k AS timestamptz[]))"
    )
    return conn.execute(query, {"u": user_id, "k": sorted(keys)}).scalar_one()


def all_points(payload: Any):
    """(metric name, units, point) of every metric point, and ('workouts', None, w)."""
    for m in payload["data"].get("metrics", []):
        for p in m["data"]:
            yield m["name"], m.get("units"), p
    for w in payload["data"].get("workouts", []):
        yield "workouts", None, w


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
    plan = plan_incident(users=10, payloads=40, seed=42, now=NOW, large_points=13_000)
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


def test_dates_use_the_documented_format(incident, db_engine):
    offsets = set()
    for _, payload in stored_payloads(db_engine).values():
        if not isinstance(payload, dict) or not isinstance(payload.get("data"), dict):
            continue
        if not isinstance(payload["data"].get("metrics"), list):
            continue
        for name, _, p in all_points(payload):
            if not isinstance(p, dict):
                continue
            for field in (
                "date",
                "startDate",
                "endDate",
                "sleepStart",
                "sleepEnd",
                "inBedStart",
                "inBedEnd",
                "start",
                "end",
            ):
                if field in p:
                    assert DATE.match(p[field]), (name, field, p[field])
                    assert _date(p[field]) <= NOW
                    offsets.add(p[field][-5:])
    assert len(offsets) >= 3


_LIMITS = {
    "heart_rate": (20, 300),
    "hrv": (0, 500),
    "systolic": (40, 300),
    "diastolic": (20, 200),
    "pulse": (20, 300),
    "activity": (0, 1e7),
    "minutes": (0, 1440),
    "energy": (0, 20_000),
    "distance": (0, 1e6),
}
_TO_TABLE_UNIT = {"km": 1000, "mi": 1609.344, "m": 1, "kJ": 1 / 4.184, "kcal": 1, "hr": 60, "min": 1}


def _checked_values(name: str, units: str | None, p: dict) -> list[tuple[str, float]]:
    f = _TO_TABLE_UNIT.get(units or "", 1)
    if name == "heart_rate":
        return [("heart_rate", p[k]) for k in ("Min", "Avg", "Max")]
    if name == "resting_heart_rate":
        return [("heart_rate", p["qty"])]
    if name == "heart_rate_variability":
        return [("hrv", p["qty"])]
    if name == "blood_pressure":
        return [(k, p[k]) for k in ("systolic", "diastolic", "pulse") if k in p]
    if name.startswith("blood_pressure_"):
        return [(name.removeprefix("blood_pressure_"), p["qty"])]
    if name in ("apple_exercise_time", "apple_stand_time"):
        return [("minutes", p["qty"] * f)]
    if name == "sleep_analysis":
        fields = ("totalSleep", "core", "deep", "rem", "awake", "inBed", "qty")
        return [("minutes", p[k] * 60) for k in fields if k in p]
    if name == "workouts":
        out = [("heart_rate", p[k]) for k in ("avgHeartRate", "maxHeartRate") if _numeric(p.get(k))]
        for k in ("activeEnergyBurned", "totalEnergy"):
            if isinstance(p.get(k), dict):
                out.append(("energy", p[k]["qty"] * _TO_TABLE_UNIT[p[k]["units"]]))
        for k in ("activeEnergy", "totalEnergy"):
            if _numeric(p.get(k)):
                out.append(("energy", p[k] * _TO_TABLE_UNIT[p[k + "Units"]]))
        dist = p.get("distance")
        if isinstance(dist, dict):
            out.append(("distance", dist["qty"] * _TO_TABLE_UNIT[dist["units"]]))
        elif _numeric(dist):
            out.append(("distance", dist * _TO_TABLE_UNIT[p["distanceUnits"]]))
        for part in ("avg", "max"):
            if isinstance(p.get("heartRate"), dict):
                out.append(("heart_rate", p["heartRate"][part]["qty"]))
        return out
    return [("activity", p["qty"] * f)]


def test_values_are_within_the_documented_plausibility_limits(incident, db_engine):
    checked = 0
    for ing_id, (_, payload) in stored_payloads(db_engine).items():
        outcome = next(i.outcome for i in incident.ingestions if i.id == ing_id)
        if outcome == "corrupt":
            continue
        for name, units, p in all_points(payload):
            for kind, value in _checked_values(name, units, p):
                low, high = _LIMITS[kind]
                assert _numeric(value) and low <= value <= high, (name, kind, value)
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


def test_payloads_cover_every_shape(incident, db_engine):
    names, units, workout_forms, sources = set(), set(), set(), set()
    for _, payload in stored_payloads(db_engine).values():
        if not isinstance(payload, dict) or not isinstance(payload.get("data"), dict):
            continue
        if not isinstance(payload["data"].get("metrics"), list):
            continue
        for name, unit, p in all_points(payload):
            names.add(name)
            units.add(unit)
            sources.add(p.get("source"))
            if name == "workouts":
                workout_forms.add("v2" if "activeEnergyBurned" in p else "v1")
            if name == "sleep_analysis":
                workout_forms.add("sleep-segments" if "startDate" in p else "sleep-aggregated")
    assert {
        "heart_rate",
        "resting_heart_rate",
        "blood_pressure",
        "blood_pressure_systolic",
        "step_count",
        "walking_running_distance",
        "active_energy",
        "basal_energy_burned",
        "sleep_analysis",
        "workouts",
    } <= names
    assert {"km", "mi", "kJ", "kcal", "min", "hr"} <= units
    assert {"v1", "v2", "sleep-segments", "sleep-aggregated"} <= workout_forms
    assert any(s and not s.isascii() for s in sources)


def test_corrupt_payloads_are_structurally_invalid_or_non_numeric():
    plan = plan_incident(users=2, payloads=60, seed=3, now=NOW, large_points=2_000)
    corrupt = [i for i in plan.ingestions if i.outcome == "corrupt"]
    assert {i.corrupt_variant[0] for i in corrupt} >= {"invalid_structure", "non_numeric"}
    for ing in corrupt:
        assert all(not rows for rows in ing.rows.values())
        assert all(not keys for keys in expected_keys(ing.payload).values())


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
