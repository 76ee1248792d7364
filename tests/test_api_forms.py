"""Every form the Health Export API stores in ``raw_payload`` is read, on the API's own ingestion tables.

The API (``Ladvien/self-sensored``) stores its parsed payload (the internal form: one tagged object
per row, keyed by the table's column names), a large body kept as text, a placeholder for the
largest (the body is not in the database at all), and a body it could not parse. Recovery reads
each; a placeholder is named as ``body_not_stored`` (the client must resend); verify and the
monitor count it as unrecoverable loss; the API's ``processing_errors`` object keeps its keys.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import api_schema
import pytest
import sqlalchemy as sa
from api_schema import (
    hae_body,
    metric,
    store_corrupted,
    store_exporter_body,
    store_internal,
    store_placeholder,
    store_wrapped,
    workout,
)
from helpers import add_ingestion, add_user, fingerprint, metric_rows, statuses

from recovery_lib import recovery, verification
from recovery_lib.cli import main
from recovery_lib.error_patterns import categorize_processing_errors
from recovery_lib.monitor import build_monitoring_report
from recovery_lib.payload import parse_payload, stored
from recovery_lib.payload.forms import form_of
from recovery_lib.schema import METRIC_TABLES
from recovery_lib.store import recovery_log

T0 = datetime(2025, 9, 20, 6, 0, tzinfo=UTC)


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def internal_payload(start: datetime = T0) -> dict[str, Any]:
    """What the API stores after converting an upload: heart rate, activity (two objects at one
    instant, as its iOS conversion writes them), blood pressure, temperature, sleep, a symptom and
    workouts in both lists."""
    return {"data": {"metrics": [
        metric("HeartRate", recorded_at=iso(start), heart_rate=68, resting_heart_rate=68, context="resting",
               vo2_max_ml_kg_min="45.50", source_device="Example Watch"),
        metric("Activity", recorded_at=iso(start), step_count=412, source_device="Example Phone"),
        metric("Activity", recorded_at=iso(start), distance_meters=310.5, apple_stand_hour_achieved=True,
               source_device="Example Phone"),
        metric("BloodPressure", recorded_at=iso(start + timedelta(hours=1)), systolic=118, diastolic=76,
               source_device="Auto Health Export iOS"),
        metric("Temperature", recorded_at=iso(start), body_temperature=36.6, temperature_source="iOS"),
        metric("Sleep", sleep_start=iso(start - timedelta(hours=7)), sleep_end=iso(start), duration_minutes=420,
               deep_sleep_minutes=80, efficiency=91.5),
        metric("Symptom", recorded_at=iso(start), symptom_type="headache", severity="mild", duration_minutes=30),
        metric("Workout", workout_type="walking", started_at=iso(start + timedelta(hours=3)),
               ended_at=iso(start + timedelta(hours=4)), total_energy_kcal=250.0),
    ], "workouts": [
        workout(workout_type="running", started_at=iso(start + timedelta(hours=1)),
                ended_at=iso(start + timedelta(hours=1, minutes=35)), total_energy_kcal=402.5, avg_heart_rate=151),
    ]}}


def rows_of(user_id: str, *payloads: Any) -> dict[str, list[tuple]]:
    """The rows these payloads imply, merged (first value wins), as the database returns them."""
    merged: dict[str, dict[Any, dict[str, object]]] = {name: {} for name in METRIC_TABLES}
    for payload in payloads:
        for table, rows in parse_payload(payload).rows.items():
            for key, values in rows.items():
                target = merged[table].setdefault(key, {})
                for column, value in values.items():
                    target.setdefault(column, value)
    out = {}
    for name, table in METRIC_TABLES.items():
        found = []
        for key, values in merged[name].items():
            parts = [key[0], key[1]] if table.tag else [key]
            found.append(tuple([user_id, *parts, *(values.get(c) for c in table.values)]))
        out[name] = sorted(found, key=repr)
    return out


def sorted_rows(rows: dict[str, list[tuple]]) -> dict[str, list[tuple]]:
    """The database's rows, ids as text, in a fixed order."""
    return {name: sorted(((str(r[0]), *r[1:]) for r in found), key=repr) for name, found in rows.items()}


# --- reading the internal form (no database) ------------------------------------------------------------


def test_the_internal_form_is_one_row_per_object_read_by_its_tables_columns():
    parsed = parse_payload(internal_payload())

    counts = {name: n for name, n in parsed.counts().items() if n}
    assert counts == {"heart_rate_metrics": 1, "activity_metrics": 1, "blood_pressure_metrics": 1,
                      "temperature_metrics": 1, "sleep_metrics": 1, "symptoms": 1, "workout_metrics": 2}
    assert parsed.rows["heart_rate_metrics"][T0] == {
        "heart_rate": 68.0, "resting_heart_rate": 68.0, "context": "resting", "vo2_max_ml_kg_min": 45.5,
        "source_device": "Example Watch"}
    # The two activity objects of one instant are one row, each filling its own columns.
    assert parsed.rows["activity_metrics"][T0] == {
        "step_count": 412.0, "distance_meters": 310.5, "apple_stand_hour_achieved": True,
        "source_device": "Example Phone"}
    assert parsed.rows["temperature_metrics"][T0]["temperature_source"] == "iOS"
    assert parsed.rows["symptoms"][(T0, "headache")] == {"severity": "mild", "duration_minutes": 30.0}
    assert set(parsed.rows["workout_metrics"]) == {T0 + timedelta(hours=1), T0 + timedelta(hours=3)}
    summary = parsed.parser.summary()
    assert summary["points_seen"] == summary["points_used"] == 9 and summary["rejection_counts"] == {}


def test_the_example_row_of_the_api_reads_whole():
    with open(f"{api_schema.__file__.rsplit('/', 1)[0]}/data/api/a.json", encoding="utf-8") as f:
        example = json.load(f)
    parsed = parse_payload(example)
    assert sum(parsed.counts().values()) == 6 and parsed.parser.summary()["unsupported"] == {}


@pytest.mark.parametrize(
    ("obj", "category", "field"),
    [
        (metric("HeartRate", recorded_at=iso(T0), heart_rate=400), "out_of_range", "heart_rate"),
        (metric("HeartRate", recorded_at=iso(T0), heart_rate="72"), "non_numeric", "heart_rate"),
        (metric("HeartRate", recorded_at=iso(T0), vo2_max_ml_kg_min="fast"), "non_numeric", "vo2_max_ml_kg_min"),
        (metric("HeartRate", recorded_at=iso(T0), heart_rate=70, context=5), "invalid_point", "context"),
        (metric("Activity", recorded_at=iso(T0), apple_stand_hour_achieved="yes"), "invalid_point",
         "apple_stand_hour_achieved"),
        (metric("HeartRate", heart_rate=70), "missing_date", "recorded_at"),
        (metric("HeartRate", recorded_at="2025-09-20 06:00", heart_rate=70), "invalid_date", "recorded_at"),
        (metric("Sleep", sleep_start=iso(T0), sleep_end=iso(T0 - timedelta(hours=1))), "invalid_date", "sleep_end"),
        (metric("Symptom", recorded_at=iso(T0), severity="mild"), "missing_value", "symptom_type"),
        (metric("HeartRate", recorded_at=iso(T0)), "missing_value", "heart_rate"),
        ({"recorded_at": iso(T0), "heart_rate": 70}, "invalid_point", "type"),
    ],
)
def test_an_internal_object_that_cannot_be_a_row_is_rejected_by_name(obj, category, field):
    parsed = parse_payload({"data": {"metrics": [metric("HeartRate", recorded_at=iso(T0), heart_rate=60), obj]}})
    [rejection] = parsed.parser.rejections
    assert (rejection.category, rejection.field, rejection.index) == (category, field, 1)
    assert parsed.counts()["heart_rate_metrics"] == 1
    summary = parsed.parser.summary()
    assert summary["points_seen"] == summary["points_used"] + summary["points_rejected"] == 2


def test_what_has_no_column_is_counted_and_named_never_dropped_in_silence():
    parsed = parse_payload({"data": {"metrics": [
        metric("HeartRate", recorded_at=iso(T0), heart_rate=60) | {"mood_today": "fine"},
        {"type": "Mobility", "recorded_at": iso(T0), "walking_speed": 1.2},
        metric("HeartRate", recorded_at=iso(T0), heart_rate=61),  # the same measurement again: the first wins
    ]}})
    summary = parsed.parser.summary()
    assert summary["unsupported"] == {"HeartRate.mood_today": 1, "Mobility": 1}
    assert summary["rejection_counts"] == {"duplicate_point": 1}
    assert parsed.rows["heart_rate_metrics"][T0] == {"heart_rate": 60.0}
    assert summary["points_seen"] == summary["points_used"] + summary["points_rejected"] + sum(
        summary["unsupported"].values()) == 4


def test_a_stored_value_shows_its_form_by_its_top_level_keys():
    assert form_of(internal_payload()) == "internal"
    assert form_of({"data": {"workouts": [workout(workout_type="running")]}}) == "internal"
    assert form_of(hae_body(T0, 2)) == "hae"
    assert form_of({"raw_payload": "{}", "needs_parsing": True, "size_bytes": 2}) == "wrapped"
    assert form_of({"large_payload": True, "needs_parsing": True, "size_bytes": 14_680_064}) == "placeholder"
    assert form_of({"raw_text": "{", "parse_error": "x", "corrupted": True}) == "corrupted"
    assert form_of("a string") == form_of({"something": "else"}) == "hae"  # the parser names what is wrong


# Shapes at the edges of each rule: the server's reading (stored.inspect) must agree with form_of.
EDGE_SHAPES = [
    {"data": {"metrics": [], "workouts": [{"workout_type": "running"}]}},
    {"data": {"metrics": [None], "workouts": [{"workout_type": "running"}]}},
    {"data": {"metrics": ["text"], "workouts": [{"workout_type": "running"}]}},
    {"data": {"metrics": [{"name": "heart_rate"}], "workouts": [{"workout_type": "running"}]}},
    {"data": {"metrics": [{"type": "heart_rate", "name": "heart_rate"}]}},
    {"data": {"metrics": {"0": {"type": "heart_rate"}}}},
    {"data": {"workouts": {"workout_type": "running"}}},
    {"data": {"workouts": [{"workout_type": "running", "name": "Run"}]}},
    {"data": [{"metrics": [{"type": "heart_rate"}]}]},
    {"data": None},
    {"data": {}},
    {"raw_payload": 5},
    {"raw_text": ["{"]},
    {"large_payload": False},
    [{"data": {"metrics": [{"type": "heart_rate"}]}}],
    [1, 2],
    3,
]


def test_the_server_reads_the_form_of_every_stored_value_as_form_of_does(engine):
    user = add_user(engine)
    values = [internal_payload(), {"data": {"workouts": [workout(workout_type="running")]}}, hae_body(T0, 2),
              {"raw_payload": "{}"}, {"large_payload": True}, {"raw_text": "{"}, *EDGE_SHAPES]
    ids = [add_ingestion(engine, user, value) for value in values]
    with engine.connect() as conn:
        found = [stored.inspect(conn, ingestion_id).form for ingestion_id in ids]
    assert found == [form_of(value) for value in values]
    assert found[:6] == ["internal", "internal", "hae", "wrapped", "placeholder", "corrupted"]


# --- recovering each form from the API's tables ---------------------------------------------------------


def store_every_form(engine) -> tuple[str, dict[str, str], list[Any]]:
    """One user, one ingestion of each form; returns the user, the ids by form and the recoverable bodies."""
    user = add_user(engine)
    internal = internal_payload()
    wrapped = hae_body(T0 + timedelta(days=1), 30, metric_name="heart_rate", units="count/min")
    corrupted_ok = hae_body(T0 + timedelta(days=2), 20)
    exporter = hae_body(T0 + timedelta(days=3), 10, metric_name="resting_heart_rate", units="count/min")
    truncated = json.dumps(hae_body(T0 + timedelta(days=4), 5)).encode()[:70]
    ids = {
        "internal": store_internal(engine, user, internal),
        "wrapped": store_wrapped(engine, user, json.dumps(wrapped).encode() + b"\n", status="error"),
        "corrupted": store_corrupted(engine, user, json.dumps(corrupted_ok).encode(),
                                     "Invalid JSON format. iOS error: iOS format parsing failed at 'data'"),
        "truncated": store_corrupted(engine, user, truncated, "Malformed JSON detected: Unmatched braces: 4 unclosed"),
        "placeholder": store_placeholder(engine, user, status="error"),
        "hae": store_exporter_body(engine, user, exporter),
    }
    return user, ids, [internal, wrapped, corrupted_ok, exporter]


@pytest.mark.parametrize("method", ["sql", "copy", "insert"])
def test_recover_reads_every_stored_form_on_the_apis_tables(api_engine, method):
    before = api_schema.definitions(api_engine)
    user, ids, bodies = store_every_form(api_engine)

    report = recovery.run_recovery(api_engine, insert_method=method, progress=False).to_dict()

    outcomes = {i["ingestion_id"]: i for i in report["ingestions"]}
    by_form = {form: outcomes[ingestion_id] for form, ingestion_id in ids.items()}
    assert {form: o["form"] for form, o in by_form.items()} == {
        "internal": "internal", "wrapped": "wrapped", "corrupted": "corrupted", "truncated": "corrupted",
        "placeholder": "placeholder", "hae": "hae"}
    assert statuses(api_engine) == {
        ids["internal"]: "recovered", ids["wrapped"]: "recovered", ids["corrupted"]: "recovered",
        ids["hae"]: "recovered", ids["truncated"]: "recovery_failed", ids["placeholder"]: "recovery_failed"}
    assert by_form["truncated"]["failure_category"] == "not_json"
    assert by_form["placeholder"]["failure_category"] == "body_not_stored"
    assert "client must resend" in by_form["placeholder"]["failure_message"]
    assert report["bodies_not_stored"] == [
        {"ingestion_id": ids["placeholder"], "user_id": user, "status_before": "error"}]
    assert "1 bodies never stored" in recovery.report.headline(report)
    # Exactly the rows the bodies imply, written by each method alike.
    assert sorted_rows(metric_rows(api_engine)) == rows_of(user, *bodies)
    assert report["missing_after_total"] == 0
    for outcome in report["ingestions"]:
        assert outcome["accounting"]["balanced"], outcome["form"]
    # The API's own tables are as its DDL made them.
    assert api_schema.definitions(api_engine) == before

    again = recovery.run_recovery(api_engine, insert_method=method, progress=False).to_dict()
    assert again["candidates"] == 0


def test_the_preview_predicts_every_form_and_writes_nothing(api_engine):
    _, ids, _ = store_every_form(api_engine)
    before = fingerprint(api_engine)

    preview = recovery.preview(api_engine, progress=False).to_dict()

    assert fingerprint(api_engine) == before
    outcomes = {i["ingestion_id"]: (i["outcome"], i["failure_category"]) for i in preview["ingestions"]}
    assert outcomes[ids["placeholder"]] == ("would_fail", "body_not_stored")
    assert outcomes[ids["truncated"]] == ("would_fail", "not_json")
    assert outcomes[ids["internal"]] == outcomes[ids["wrapped"]] == ("would_recover", None)
    assert preview["missing_before_total"] == 8 + 30 + 20 + 10


def test_a_text_body_jsonb_refuses_is_read_by_the_client_which_names_what_is_wrong(api_engine):
    user = add_user(api_engine)
    body = json.dumps(hae_body(T0, 3)).replace('"qty": 101', '"qty": NaN').encode()
    ingestion = store_wrapped(api_engine, user, body, status="error")

    report = recovery.run_recovery(api_engine, progress=False).to_dict()

    [outcome] = report["ingestions"]
    assert (outcome["failure_category"], outcome["rejection_counts"]) == ("rejected_points", {"non_finite": 1})
    assert outcome["tables"]["activity_metrics"]["inserted"] == 2
    assert statuses(api_engine)[ingestion] == "recovery_failed"


def test_any_status_can_be_targeted_and_the_default_statuses_stay(api_engine, tmp_path):
    user = add_user(api_engine)
    parsing = store_wrapped(api_engine, user, json.dumps(hae_body(T0, 5)).encode())  # status parsing

    assert main(["recover", "--no-progress", "--report-dir", str(tmp_path)]) == 0
    assert statuses(api_engine)[parsing] == "parsing"

    assert main(["recover", "--status", "parsing", "failed", "--no-progress", "--report-dir", str(tmp_path)]) == 0
    assert statuses(api_engine)[parsing] == "recovered"


# --- the API's processing_errors object -----------------------------------------------------------------

API_ERROR_OBJECT = {
    "processing_metadata": {"expected_count": 2, "actual_count": 1, "failed_count": 1, "silent_failures": 0,
                            "loss_percentage": 50.0, "has_silent_failures": False, "significant_loss": True,
                            "postgresql_param_limit_violation": False, "processing_time_ms": 41,
                            "retry_attempts": 0, "memory_peak_mb": None},
    "errors": [{"metric_type": "Sleep", "error_message": "Non-retryable error: error returned from database: "
                                                         "column \"sleep_efficiency\" does not exist"}],
    "data_loss_detected": True,
    "analysis_summary": {"status_reason": "Significant data loss detected"},
}


def test_the_apis_processing_errors_object_keeps_every_key_with_recovery_notes_beside(api_engine):
    user = add_user(api_engine)
    payload = {"data": {"metrics": [
        metric("Sleep", sleep_start=iso(T0 - timedelta(hours=7)), sleep_end=iso(T0), duration_minutes=420),
        metric("HeartRate", recorded_at=iso(T0), heart_rate=999),  # the catalogue refuses it: recovery_failed
    ], "workouts": []}}
    ingestion = store_internal(api_engine, user, payload, status="partial_success", errors=API_ERROR_OBJECT)

    report = recovery.run_recovery(api_engine, progress=False).to_dict()

    assert report["recovery_failed"] == 1 and report["tables"]["sleep_metrics"]["inserted"] == 1
    with api_engine.connect() as conn:
        errors = conn.execute(sa.text("SELECT processing_errors FROM raw_ingestions WHERE id = :id"),
                              {"id": ingestion}).scalar_one()
    assert {k: v for k, v in errors.items() if k != "recovery_notes"} == API_ERROR_OBJECT
    [note] = errors["recovery_notes"]
    assert (note["source"], note["category"]) == ("recovery", "rejected_points")
    # The original error still says why the payload was lost; verify and the review read the note.
    assert categorize_processing_errors(errors) == categorize_processing_errors(API_ERROR_OBJECT)
    checked = verification.verify(api_engine, since="30d").to_dict()
    assert [(f["ingestion_id"], f["category"]) for f in checked["recovery_failed"]] == [
        (ingestion, "rejected_points")]
    with api_engine.connect() as conn:
        reasons = recovery_log.failure_reasons(conn, datetime.now(UTC) - timedelta(days=1))
    assert [(r.category, r.failures) for r in reasons] == [("rejected_points", 1)]

    # A second failed run adds its note beside the first.
    recovery.run_recovery(api_engine, statuses=["recovery_failed"], progress=False)
    with api_engine.connect() as conn:
        errors = conn.execute(sa.text("SELECT processing_errors FROM raw_ingestions WHERE id = :id"),
                              {"id": ingestion}).scalar_one()
    assert len(errors["recovery_notes"]) == 2 and errors["errors"] == API_ERROR_OBJECT["errors"]


def test_a_clean_runs_object_is_no_error_pattern(api_engine):
    user = add_user(api_engine)
    clean = {"processing_metadata": API_ERROR_OBJECT["processing_metadata"], "errors": []}
    store_internal(api_engine, user, internal_payload(), status="processed", errors=clean)
    store_internal(api_engine, user, internal_payload(T0 + timedelta(days=1)), status="error",
                   errors=API_ERROR_OBJECT)

    report = build_monitoring_report(api_engine, hours=24).to_dict()

    assert sum(report["error_pattern_analysis"].values()) == 1


# --- placeholders: unrecoverable loss, said so ----------------------------------------------------------


def test_placeholders_are_unrecoverable_loss_in_verify_and_the_monitor(api_engine):
    user = add_user(api_engine)
    stuck = store_placeholder(api_engine, user, status="parsing")  # the background task died with the body
    failed = store_placeholder(api_engine, user, status="failed",
                               errors={"stage": "parsing", "error": "EOF while parsing", "timestamp": "x"})
    done = store_placeholder(api_engine, user, status="processed")  # the API's background task stored it
    store_internal(api_engine, user, internal_payload(), status="processed")

    checked = verification.verify(api_engine, since="24h")
    data = checked.to_dict()
    assert {b["ingestion_id"]: b["lost"] for b in data["bodies_not_stored"]} == {stuck: True, failed: True,
                                                                               done: False}
    assert data["unrecoverable_loss"] == 2 and checked.ok is False
    assert "2 bodies never stored (unrecoverable loss: the client must resend)" in checked.headline()

    monitor = build_monitoring_report(api_engine, hours=24)
    figures = monitor.to_dict()
    assert (figures["bodies_not_stored"], figures["unrecoverable_loss"]) == (3, 2)
    assert figures["unparseable_payloads"] == 0  # a placeholder is not a payload to inspect by hand
    [sentence] = [r for r in figures["recovery_recommendations"] if "never stored" in r]
    assert "not recoverable from this database; the client must resend them" in sentence
    assert "2 bodies never stored" in monitor.headline()


def test_verify_agrees_after_recovering_every_form(api_engine):
    """After the default recovery nothing recoverable is missing; what is left is named: the body that
    is not JSON (recovery_failed) and the placeholder (unrecoverable loss, so verify is not ok)."""
    _, ids, _ = store_every_form(api_engine)
    recovery.run_recovery(api_engine, progress=False)

    checked = verification.verify(api_engine, since="24h")

    data = checked.to_dict()
    assert data["missing_metrics_total"] == 0 and data["still_missing"] == []
    assert sorted((f["ingestion_id"], f["category"]) for f in data["recovery_failed"]) == sorted(
        [(ids["truncated"], "not_json"), (ids["placeholder"], "body_not_stored")])
    assert [(b["ingestion_id"], b["lost"]) for b in data["bodies_not_stored"]] == [(ids["placeholder"], True)]
    assert data["unrecoverable_loss"] == 1 and checked.ok is False
