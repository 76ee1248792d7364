"""Issue 13 end to end: the default runbook on the Health Export API's own database, as an operator runs it.

The scenario. One user's incident on a database built the way the API builds its own (its
ingestion and metric tables, enums and CHECK constraints: tests/api_metric_schema.py), with
every ingestion stored in one of the API's forms and hashed the way the API hashes it:

* the **internal form** (HeartRate, BloodPressure, Sleep, Activity and Workout objects);
* an exporter body **wrapped in a string**, whose walking heart rate of 45 and VO2 max of 70 the
  API's CHECK constraints refuse, and whose heart-rate Min/Max the API has no column for;
* a **corrupted wrapper** whose ``raw_text`` is valid JSON after all, with a workout type the
  API's enum lacks; and a **truncated** one, which is not JSON;
* two **placeholders** (the body never reached the database): one in status ``error``, one in
  ``parsing`` (the default recovery does not take it; verify and the monitor still name it);
* an exporter body **stored as jsonb** with a metric the API has no table for.

The operator previews (``recover --dry-run``), someone edits a previewed payload and its hash
(so only the preview can tell), the operator recovers what was previewed (``--from-preview``),
verifies, recovers the rest with the plain default, verifies again. The rows expected are written
out by hand below (the oracle is not the parser), and the API's table definitions never change.
The notebooks run the same incident through the runner, monitor and review included.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from api_metric_schema import catalog_definitions
from api_schema import (
    metric,
    serialise,
    sha256,
    store_corrupted,
    store_exporter_body,
    store_internal,
    store_placeholder,
    store_wrapped,
)
from helpers import add_user, statuses

from recovery_lib import schema
from recovery_lib.cli import main

T0 = datetime(2025, 9, 20, 6, 0, tzinfo=UTC)
D1, D2, D3 = (T0 + timedelta(days=n) for n in (1, 2, 3))
MINUTE, HOUR = timedelta(minutes=1), timedelta(hours=1)


def iso(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def hae(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S +0000")


def internal(heart_rate: int) -> dict:
    return {"data": {"metrics": [
        metric("HeartRate", recorded_at=iso(T0), heart_rate=heart_rate, resting_heart_rate=58),
        metric("BloodPressure", recorded_at=iso(T0 + HOUR), systolic=118, diastolic=76),
        metric("Sleep", sleep_start=iso(T0 - 7 * HOUR), sleep_end=iso(T0), duration_minutes=420),
        metric("Activity", recorded_at=iso(T0), step_count=412),
        metric("Workout", workout_type="walking", started_at=iso(T0 + 3 * HOUR), ended_at=iso(T0 + 4 * HOUR)),
    ], "workouts": []}}


WRAPPED = {"data": {"metrics": [
    {"name": "heart_rate", "units": "count/min",
     "data": [{"date": hae(D1 + i * MINUTE), "Min": 50, "Avg": 60 + i, "Max": 90} for i in range(3)]},
    {"name": "walking_heart_rate_average", "units": "count/min",
     "data": [{"date": hae(D1 + 10 * MINUTE), "qty": 95}, {"date": hae(D1 + 11 * MINUTE), "qty": 45}]},
    {"name": "vo2_max", "units": "ml/(kg·min)", "data": [{"date": hae(D1 + 5 * HOUR), "qty": 70}]},
], "workouts": []}}
CORRUPTED_BUT_JSON = {"data": {"metrics": [
    {"name": "step_count", "units": "count",
     "data": [{"date": hae(D2 + i * MINUTE), "qty": 100 + i} for i in range(2)]},
], "workouts": [
    {"name": "running", "start": hae(D2 + 6 * HOUR), "end": hae(D2 + 6.5 * HOUR)},
    {"name": "Outdoor Run", "start": hae(D2 + 17 * HOUR), "end": hae(D2 + 17.5 * HOUR)},
]}}
EXPORTER_JSONB = {"data": {"metrics": [
    {"name": "resting_heart_rate", "units": "count/min",
     "data": [{"date": hae(D3 + i * MINUTE), "qty": 55 + i} for i in range(2)]},
    {"name": "future_metric", "units": "count", "data": [{"date": hae(D3), "qty": 3}]},
], "workouts": []}}

# The oracle, by hand: per API table, the rows (key, a few value columns) the incident implies.
ROWS_SQL = {
    "heart_rate_metrics": "SELECT recorded_at, heart_rate, resting_heart_rate, walking_heart_rate_average "
                          "FROM heart_rate_metrics",
    "blood_pressure_metrics": "SELECT recorded_at, systolic, diastolic FROM blood_pressure_metrics",
    "sleep_metrics": "SELECT sleep_start, sleep_end, duration_minutes FROM sleep_metrics",
    "activity_metrics": "SELECT recorded_at, step_count FROM activity_metrics",
    "workouts": "SELECT started_at, workout_type::text FROM workouts",
}
INTERNAL_ROWS = {  # with the heart rate as edited after the preview (72, not 68)
    "heart_rate_metrics": {(T0, 72, 58, None)},
    "blood_pressure_metrics": {(T0 + HOUR, 118, 76)},
    "sleep_metrics": {(T0 - 7 * HOUR, T0, 420)},
    "activity_metrics": {(T0, 412)},
    "workouts": {(T0 + 3 * HOUR, "walking")},
}
OTHER_ROWS = {  # the walking heart rate of 45, the VO2 max and the 'Outdoor Run' are refused: no row
    "heart_rate_metrics": {(D1, 60, None, None), (D1 + MINUTE, 61, None, None), (D1 + 2 * MINUTE, 62, None, None),
                           (D1 + 10 * MINUTE, None, None, 95), (D3, None, 55, None), (D3 + MINUTE, None, 56, None)},
    "blood_pressure_metrics": set(),
    "sleep_metrics": set(),
    "activity_metrics": {(D2, 100), (D2 + MINUTE, 101)},
    "workouts": {(D2 + 6 * HOUR, "running")},
}
EVERY_ROW = {name: INTERNAL_ROWS[name] | OTHER_ROWS[name] for name in ROWS_SQL}
REFUSALS = {
    "wrapped": [("heart_rate_metrics", "chk_vo2_max_range", "vo2_max", 0),
                ("heart_rate_metrics", "chk_walking_hr_range", "walking_heart_rate_average", 1)],
    "corrupted": [("workout_metrics", "invalid_text_representation (workout_type)", "workouts", 1)],
}


def api_rows(engine) -> dict[str, set[tuple]]:
    with engine.connect() as conn:
        return {name: {tuple(r) for r in conn.execute(sa.text(sql))} for name, sql in ROWS_SQL.items()}


def store_incident(engine) -> dict[str, str]:
    """The incident above, each ingestion stored as the API stores that form, oldest first; its ids by name."""
    user = add_user(engine)
    at = iter(datetime.now(UTC) - timedelta(hours=2) + n * MINUTE for n in range(7))
    return {
        "internal": store_internal(engine, user, internal(heart_rate=68), created_at=next(at)),
        "wrapped": store_wrapped(engine, user, json.dumps(WRAPPED).encode(), status="error", created_at=next(at)),
        "corrupted": store_corrupted(engine, user, json.dumps(CORRUPTED_BUT_JSON).encode(),
                                     "Invalid JSON format. iOS error: iOS format parsing failed at 'data'",
                                     created_at=next(at)),
        "truncated": store_corrupted(engine, user, json.dumps(WRAPPED).encode()[:90],
                                     "Malformed JSON detected: Unmatched braces: 4 unclosed", created_at=next(at)),
        "placeholder": store_placeholder(engine, user, status="error", created_at=next(at)),
        "parsing": store_placeholder(engine, user, status="parsing", created_at=next(at)),
        "jsonb": store_exporter_body(engine, user, EXPORTER_JSONB, created_at=next(at)),
    }


def edit_after_preview(engine, ingestion_id: str) -> None:
    """Someone changes the internal form's heart rate, and its hash as the API would compute it."""
    text = serialise(internal(heart_rate=72))
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE raw_ingestions SET raw_payload = CAST(:p AS jsonb), payload_hash = :h "
                             "WHERE id = :id"), {"p": text.decode(), "h": sha256(text), "id": ingestion_id})


def refusals_of(item: dict) -> list[tuple]:
    return sorted((r["table"], r["constraint"], r["metric"], r["index"]) for r in item["refusals"])


def by_name(ids: dict[str, str], report: dict) -> dict[str, dict]:
    items = {i["ingestion_id"]: i for i in report["ingestions"]}
    return {name: items[ingestion_id] for name, ingestion_id in ids.items() if ingestion_id in items}


def report_file(folder: Path) -> Path:
    [path] = folder.glob("data_recovery_report_*.json")
    return path


def one_report(folder: Path) -> dict:
    return json.loads(report_file(folder).read_text())


# --- the command line ------------------------------------------------------------------------------------


def test_the_default_runbook_on_the_api_database_from_the_command_line(api_db, tmp_path):
    before = catalog_definitions(api_db)
    assert main(["db", "init"]) == 0
    ids = store_incident(api_db)

    assert main(["recover", "--dry-run", "--no-progress", "--report-dir", str(tmp_path / "preview")]) == 0
    preview = one_report(tmp_path / "preview")
    edit_after_preview(api_db, ids["internal"])
    assert main(["recover", "--from-preview", str(report_file(tmp_path / "preview")), "--no-progress",
                 "--report-dir", str(tmp_path / "r1")]) == 0
    first = one_report(tmp_path / "r1")

    items = by_name(ids, first)
    assert set(items) == set(ids) - {"parsing"}  # the default statuses: not the placeholder in 'parsing'
    # The edited one is left as found and holds back none of the user's newer ingestions.
    assert {name: (i["outcome"], i["failure_category"]) for name, i in items.items()} == {
        "internal": ("skipped", "changed_since_preview"),
        "wrapped": ("recovery_failed", "rejected_points"),
        "corrupted": ("recovery_failed", "rejected_points"),
        "truncated": ("recovery_failed", "not_json"),
        "placeholder": ("recovery_failed", "body_not_stored"),
        "jsonb": ("recovery_failed", "unsupported_points"),
    }
    assert {name: refusals_of(i) for name, i in items.items() if i["refusals"]} == REFUSALS
    assert {name: refusals_of(i) for name, i in by_name(ids, preview).items() if i["refusals"]} == REFUSALS
    assert [b["ingestion_id"] for b in first["bodies_not_stored"]] == [ids["placeholder"]]
    assert {name: i["checksum"] for name, i in items.items()} == {
        "internal": "verified", "wrapped": "verified", "corrupted": "verified", "truncated": "verified",
        "placeholder": "unverifiable", "jsonb": "unverifiable"}
    assert api_rows(api_db) == OTHER_ROWS
    assert statuses(api_db)[ids["internal"]] == "error"  # untouched: the next recovery takes it
    assert statuses(api_db)[ids["parsing"]] == "parsing"

    assert main(["verify", "--since", "30d", "--json", str(tmp_path / "v1.json")]) == 1
    checked = json.loads((tmp_path / "v1.json").read_text())
    assert [s["ingestion_id"] for s in checked["still_missing"]] == [ids["internal"]]
    assert checked["missing_metrics_total"] == 5  # the edited one's rows, one per table
    assert checked["accounting"]["rejected"] == {"constraint_violation": 3}
    assert checked["accounting"]["unsupported"] == {"future_metric: unsupported_by_schema": 1}
    assert {b["ingestion_id"]: b["lost"] for b in checked["bodies_not_stored"]} == {
        ids["placeholder"]: True, ids["parsing"]: True}
    assert checked["unrecoverable_loss"] == 2

    assert main(["recover", "--no-progress", "--report-dir", str(tmp_path / "r2")]) == 0
    second = by_name(ids, one_report(tmp_path / "r2"))
    assert (second["internal"]["outcome"], second["internal"]["checksum"]) == ("recovered", "verified")
    assert api_rows(api_db) == EVERY_ROW

    assert main(["verify", "--since", "30d", "--json", str(tmp_path / "v2.json")]) == 1  # the lost bodies
    checked = json.loads((tmp_path / "v2.json").read_text())
    assert checked["missing_metrics_total"] == checked["missing_values_total"] == 0
    assert checked["still_missing"] == []
    assert sorted((f["ingestion_id"], f["category"]) for f in checked["recovery_failed"]) == sorted([
        (ids["wrapped"], "rejected_points"), (ids["corrupted"], "rejected_points"), (ids["truncated"], "not_json"),
        (ids["placeholder"], "body_not_stored"), (ids["jsonb"], "unsupported_points")])
    assert checked["unrecoverable_loss"] == 2
    assert catalog_definitions(api_db) == before


# --- the notebooks ---------------------------------------------------------------------------------------


def test_the_runbook_notebooks_on_the_api_database_agree_with_each_other(api_db, tmp_path):
    from recovery_lib.runbook.execute import RunResult, run_notebook

    def run(name: str, **parameters) -> RunResult:
        result = run_notebook(name, parameters, runs_dir=tmp_path / "runs", progress_bar=False)
        assert result.ok, (name, result.error)
        return result

    before = catalog_definitions(api_db)
    schema.init_db(api_db)
    ids = store_incident(api_db)

    preview = run("preview")
    edit_after_preview(api_db, ids["internal"])
    recovered = run("recover", preview_report=str(preview.report_path)).report
    checked = run("verify", since="30d").report
    monitored = run("monitor", hours=24).report
    reviewed = run("review", weeks=1, runs_dir=str(tmp_path / "runs")).report
    undo = run("undo", run_id=recovered["run_id"], dry_run=True).report

    items = by_name(ids, recovered)
    assert (items["internal"]["outcome"], items["internal"]["failure_category"]) == ("skipped",
                                                                                    "changed_since_preview")
    assert {name: refusals_of(i) for name, i in items.items() if i["refusals"]} == REFUSALS
    assert {name: refusals_of(i) for name, i in by_name(ids, preview.report).items() if i["refusals"]} == REFUSALS
    assert api_rows(api_db) == OTHER_ROWS
    # Rows: what the recovery inserted is what verify and the monitor no longer miss.
    assert recovered["rows_inserted_total"] == sum(len(rows) for rows in OTHER_ROWS.values())
    assert checked["missing_metrics_total"] == monitored["missing_metrics_total"] == 5  # the edited one's
    # Refusals and unsupported points: the same accounting in all three.
    for report in (recovered, checked, monitored):
        assert report["accounting"]["rejected"] == {"constraint_violation": 3}
        assert report["accounting"]["unsupported"] == {"future_metric: unsupported_by_schema": 1}
    # Placeholders: the one recovered named, both (the one in 'parsing' too) unrecoverable loss.
    assert [b["ingestion_id"] for b in recovered["bodies_not_stored"]] == [ids["placeholder"]]
    assert checked["unrecoverable_loss"] == monitored["unrecoverable_loss"] == 2
    assert monitored["bodies_not_stored"] == 2
    assert any("2 payloads were never stored" in r for r in monitored["recovery_recommendations"])
    # The target section: what the API's tables cannot hold, the same in every report.
    assert preview.report["target"] == recovered["target"] == checked["target"] == monitored["target"]
    assert {("heart_rate_metrics", "heart_rate_min"), ("other_metrics", None)} <= {
        (u["table"], u["field"]) for u in monitored["target"]["unsupported_by_schema"]}
    # The review: the week's loss, the edited one's rows still missing; the recovery's rows restored.
    week = reviewed["totals"]
    assert (week["rows_still_missing"], week["still_missing_ingestions"]) == (5, 1)
    assert week["rows_restored"] == recovered["rows_inserted_total"]
    assert reviewed["rows_restored_by_table"] == {name: t["inserted"] for name, t in recovered["tables"].items()}
    # The undo would revert every ingestion the run finished (not the one it left as found).
    assert (undo["refused"], undo["would_undo"]) == (None, len(items) - 1)
    assert undo["rows_deleted_total"] == recovered["rows_inserted_total"]
    assert catalog_definitions(api_db) == before
