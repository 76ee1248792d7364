"""On the Health Export API's own database, ``db init`` adds a schema of its own and nothing else.

The API's tables (our DDL of a subset of its ``database/schema.sql``: tests/api_metric_schema.py)
keep every definition: columns, constraints, indexes, triggers, enum types, compared in
pg_catalog before and after. The tool's bookkeeping goes into the schema ``recovery`` and is found
there through the session's ``search_path``; the catalogue is mapped onto what the API has (its
``workouts`` is the catalogue's ``workout_metrics``) and what it lacks is ``unsupported_by_schema``.
On this project's own database nothing changes: everything stays in ``public``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from api_metric_schema import catalog_definitions
from helpers import add_ingestion, add_user

from recovery_lib import db, recovery, schema, target
from recovery_lib.options import VerifyOptions
from recovery_lib.schema import METRIC_TABLES
from recovery_lib.verification import verify

T0 = datetime(2024, 2, 6, 8, 0, tzinfo=UTC)
PARAM_LIMIT_ERROR = [{"error": "number of parameters must be between 0 and 65535"}]


def _date(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S +0000")


def api_payload() -> dict:
    """50 heart-rate points (Min/Max: fields the API lacks), a walking heart rate under the API's 60
    (chk_walking_hr_range), a VO2 max over its 65 (chk_vo2_max_range), blood pressure, a night, a
    workout type the API's enum has and one it has not, and a metric the API has no table for."""
    minute = [T0 + timedelta(minutes=i) for i in range(50)]
    return {"data": {"metrics": [
        {"name": "heart_rate", "units": "count/min",
         "data": [{"date": _date(at), "Min": 50, "Avg": 60 + i % 20, "Max": 90} for i, at in enumerate(minute)]},
        {"name": "walking_heart_rate_average", "units": "count/min",
         "data": [{"date": _date(minute[10 + i]), "qty": qty} for i, qty in enumerate((95, 45, 101))]},
        {"name": "vo2_max", "units": "ml/(kg·min)", "data": [{"date": _date(T0 + timedelta(hours=5)), "qty": 70}]},
        {"name": "blood_pressure", "units": "mmHg",
         "data": [{"date": _date(minute[i]), "systolic": 120 + i, "diastolic": 80} for i in range(2)]},
        {"name": "sleep_analysis", "units": "hr",
         "data": [{"date": "2024-02-06 00:00:00 +0000", "core": 4, "deep": 1.5, "rem": 2, "awake": 0.25,
                   "inBed": 8, "sleepStart": "2024-02-05 23:00:00 +0000", "sleepEnd": "2024-02-06 07:00:00 +0000"}]},
        {"name": "future_metric", "units": "count", "data": [{"date": _date(minute[0]), "qty": 3}]},
    ], "workouts": [
        {"name": "running", "start": "2024-02-06 06:00:00 +0000", "end": "2024-02-06 06:30:00 +0000"},
        {"name": "Outdoor Run", "start": "2024-02-06 17:00:00 +0000", "end": "2024-02-06 17:30:00 +0000"},
    ]}}


API_REFUSALS = sorted([
    ("heart_rate_metrics", "chk_vo2_max_range", "vo2_max", 0),
    ("heart_rate_metrics", "chk_walking_hr_range", "walking_heart_rate_average", 1),
    ("workout_metrics", "invalid_text_representation (workout_type)", "workouts", 1),
])


def refusals(item: dict) -> list[tuple]:
    return sorted((r["table"], r["constraint"], r["metric"], r["index"]) for r in item["refusals"])


def api_counts(engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {name: conn.execute(sa.text(f"SELECT count(*) FROM {name}")).scalar_one()
                for name in ("heart_rate_metrics", "blood_pressure_metrics", "sleep_metrics", "workouts")}


def _schemas_of(engine, names):
    with engine.connect() as conn:
        return dict(conn.execute(sa.text(
            "SELECT tablename, schemaname FROM pg_tables WHERE tablename = ANY(:n)"), {"n": list(names)}).all())


def test_db_init_on_the_api_database_creates_its_own_schema_and_nothing_else(api_db):
    before = catalog_definitions(api_db)

    created = schema.init_db(api_db)
    again = schema.init_db(api_db)

    assert created == ["recovery.recovery_log", "recovery.recovery_journal", "recovery.recovery_undo",
                       "recovery.reconciliation_cache", "recovery.constraint_rejections"]
    assert again == []
    assert catalog_definitions(api_db) == before  # no table, column, constraint, index, trigger, enum added
    assert _schemas_of(api_db, ("recovery_log", "reconciliation_cache")) == {
        "recovery_log": "recovery", "reconciliation_cache": "recovery"}


def test_the_bookkeeping_is_found_in_its_schema_by_every_new_connection(api_db):
    schema.init_db(api_db)
    fresh = sa.create_engine(api_db.url)  # not from the cache: the search path is set on connect
    sa.event.listen(fresh, "connect", db.bookkeeping_first)
    try:
        with fresh.begin() as conn:
            def schema_of(name: str) -> str:
                return conn.execute(sa.text("SELECT relnamespace::regnamespace::text FROM pg_class "
                                            "WHERE oid = to_regclass(:n)"), {"n": name}).scalar()

            assert schema_of("recovery_log") == "recovery" and schema_of("constraint_rejections") == "recovery"
            assert schema_of("heart_rate_metrics") == "public"
    finally:
        fresh.dispose()


def test_the_catalogue_is_mapped_onto_the_api_tables_and_what_they_lack_is_named(api_db):
    schema.init_db(api_db)
    with api_db.connect() as conn:
        fit = target.inspect(conn)

    found = fit.to_dict()
    assert found["existing_database"] is True and found["bookkeeping_schema"] == "recovery"
    assert found["tables"]["workout_metrics"] == "workouts"
    assert found["tables"]["heart_rate_metrics"] == "heart_rate_metrics"
    assert found["tables"]["other_metrics"] is None  # the API has no table for unknown metrics
    unsupported = {(u["table"], u["field"]) for u in found["unsupported_by_schema"]}
    assert {("heart_rate_metrics", "heart_rate_min"), ("heart_rate_metrics", "heart_rate_max"),
            ("activity_metrics", "apple_stand_hours"), ("other_metrics", None)} <= unsupported
    assert ("heart_rate_metrics", "heart_rate") not in unsupported
    by_field = {(u["table"], u["field"]): u["metrics"] for u in found["unsupported_by_schema"]}
    assert by_field[("heart_rate_metrics", "heart_rate_min")] == ["heart_rate"]  # per metric
    assert ("workout_metrics", "workout_type") not in unsupported
    assert all(u["category"] == "unsupported_by_schema" for u in found["unsupported_by_schema"])


def test_on_this_projects_own_database_everything_stays_in_public_and_nothing_is_unsupported(engine):
    assert schema.init_db(engine) == []
    with engine.connect() as conn:
        fit = target.inspect(conn)
        assert not schema.is_existing_database(conn)
    assert fit.unsupported() == [] and fit.bookkeeping_schema == "public"
    assert set(_schemas_of(engine, ["recovery_log", *METRIC_TABLES]).values()) == {"public"}


@pytest.mark.parametrize("method", ["sql", "copy", "insert"])
def test_recover_on_the_api_database_lands_what_it_can_hold_and_names_the_rest(api_db, method):
    before = catalog_definitions(api_db)
    schema.init_db(api_db)
    user = add_user(api_db)
    add_ingestion(api_db, user, api_payload(), errors=PARAM_LIMIT_ERROR)

    preview = recovery.preview(api_db, insert_method=method, progress=False).to_dict()
    assert api_counts(api_db) == {"heart_rate_metrics": 0, "blood_pressure_metrics": 0, "sleep_metrics": 0,
                                      "workouts": 0}
    report = recovery.run_recovery(api_db, insert_method=method, progress=False).to_dict()
    checked = verify(api_db, VerifyOptions.validated(since="2024-01-01")).to_dict()

    item = report["ingestions"][0]
    assert refusals(item) == refusals(preview["ingestions"][0]) == API_REFUSALS
    assert api_counts(api_db) == {"heart_rate_metrics": 50, "blood_pressure_metrics": 2, "sleep_metrics": 1,
                                      "workouts": 1}
    accounting = item["accounting"]
    assert accounting["balanced"] and accounting["rows_missing"] == 0
    assert accounting["rejected"] == {"constraint_violation": 3}
    assert accounting["unsupported"] == {"future_metric: unsupported_by_schema": 1}
    assert accounting["unsupported_fields"] == {"heart_rate.heart_rate_min": 50, "heart_rate.heart_rate_max": 50}
    assert checked["missing_metrics_total"] == 0 and checked["missing_values_total"] == 0
    assert checked["accounting"]["rejected"] == {"constraint_violation": 3}
    assert checked["accounting"]["unsupported"] == {"future_metric: unsupported_by_schema": 1}
    assert {(u["table"], u["field"]) for u in checked["target"]["unsupported_by_schema"]} >= {
        ("heart_rate_metrics", "heart_rate_min"), ("other_metrics", None)}
    assert catalog_definitions(api_db) == before  # db init and the recovery changed no definition


def test_review_undo_and_notices_in_a_fresh_process_read_the_api_tables(api_db, tmp_path):
    """A kernel or command started after the recovery has the catalogue's own tables bound until it
    binds the target: the review, the undo and the notices must read the API's tables all the same."""
    from recovery_lib import notices, review

    schema.init_db(api_db)
    user = add_user(api_db)
    add_ingestion(api_db, user, api_payload(), errors=PARAM_LIMIT_ERROR)
    run_id = recovery.run_recovery(api_db, progress=False).run_id
    restored = api_counts(api_db)

    schema.bind_metric_tables(None)  # as in a fresh process
    week = review.build_review(api_db, weeks=1, runs_dir=tmp_path).to_dict()["totals"]
    assert (week["data_loss"], week["rows_still_missing"]) == (1, 0)

    schema.bind_metric_tables(None)
    told = notices.of_run(api_db, run_id).to_dict()
    assert sum(r["rows"] for u in told["users"] for r in u["restored"]) == sum(restored.values())

    schema.bind_metric_tables(None)
    checked = recovery.undo_run(api_db, run_id=run_id, dry_run=True).to_dict()
    assert (checked["refused"], checked["would_undo"]) == (None, 1)

    schema.bind_metric_tables(None)
    undone = recovery.undo_run(api_db, run_id=run_id).to_dict()
    assert (undone["refused"], undone["undone"]) == (None, 1)
    assert api_counts(api_db) == dict.fromkeys(restored, 0)


def test_the_monitor_and_its_textfile_name_what_the_api_tables_cannot_hold(api_db, tmp_path, capsys):
    from recovery_lib.cli import main
    from recovery_lib.monitor import build_monitoring_report

    schema.init_db(api_db)
    add_ingestion(api_db, add_user(api_db), api_payload(), errors=PARAM_LIMIT_ERROR)
    schema.bind_metric_tables(None)  # as in a fresh process

    monitor = build_monitoring_report(api_db, hours=24)
    found = monitor.to_dict()["target"]
    assert (found["existing_database"], found["bookkeeping_schema"]) == (True, "recovery")
    assert {("heart_rate_metrics", "heart_rate_min"), ("other_metrics", None)} <= {
        (u["table"], u["field"]) for u in found["unsupported_by_schema"]}
    assert "unsupported_by_schema" in monitor.headline()

    textfile = tmp_path / "health_export.prom"
    assert main(["monitor", "--hours", "24", "--prom-textfile", str(textfile)]) == 0
    shown = capsys.readouterr().out
    assert "TARGET (bookkeeping in schema recovery)" in shown
    assert "unsupported_by_schema: heart_rate_metrics.heart_rate_min  (heart_rate)" in shown
    text = textfile.read_text()
    assert 'health_export_target_info{bookkeeping_schema="recovery",existing_database="true"} 1.0' in text
    assert 'health_export_unsupported_by_schema{field="heart_rate_min",table="heart_rate_metrics"} 1.0' in text


def test_summary_counts_the_api_tables_rows(api_db, capsys):
    from recovery_lib.cli import main

    schema.init_db(api_db)
    add_ingestion(api_db, add_user(api_db), api_payload(), errors=PARAM_LIMIT_ERROR)
    recovery.run_recovery(api_db, progress=False)
    schema.bind_metric_tables(None)  # as in a fresh process

    assert main(["summary"]) == 0
    shown = capsys.readouterr().out
    assert "  heart_rate_metrics: 50\n" in shown and "  workout_metrics: 1\n" in shown  # the API's workouts
    assert "other_metrics" not in shown  # no such table there
    assert "recovery_log: 1" in shown
