"""Rows the target refuses (CHECK, integer range, NOT NULL) are named rejections; the rest of the ingestion lands.

The metric tables here get constraints of the kind the API's schema has (``ALTER TABLE ... ADD
CONSTRAINT``, a smallint column, a NOT NULL column), and a payload hides a few offending points
among many good ones. Each method (``sql``, ``copy``, ``insert``) must land the good rows, name
each refused point (table, constraint, metric, index; never its value), agree with the others,
leave verify with nothing missing, change nothing when run again, and find the refused rows by
bisecting the failing merge, not by writing the payload row by row.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from conftest import reset_schema
from helpers import add_ingestion, add_user, fingerprint, metric_rows, statuses

from recovery_lib import recovery
from recovery_lib.options import VerifyOptions
from recovery_lib.recovery.report import headline
from recovery_lib.verification import headline as verify_headline
from recovery_lib.verification import verify

T0 = datetime(2024, 2, 6, 8, 0, tzinfo=UTC)
PARAM_LIMIT_ERROR = [{"error": "number of parameters must be between 0 and 65535"}]
POINTS = 400
TOO_FAST = {37: 250, 141: 260, 333: 240}  # heart-rate index -> an Avg the parser takes and the CHECK refuses
TOO_MANY_FLIGHTS = 40_000  # over smallint's 32,767
SECRET_VALUES = ("250", "260", "240", "40000")


def refusing_target(engine) -> None:
    """Constraints like the API's: a range CHECK, a narrow integer column, a NOT NULL column."""
    with engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE heart_rate_metrics ADD CONSTRAINT chk_heart_rate_range "
                             "CHECK (heart_rate IS NULL OR heart_rate BETWEEN 30 AND 220)"))
        conn.execute(sa.text("ALTER TABLE heart_rate_metrics ALTER COLUMN heart_rate SET NOT NULL"))
        conn.execute(sa.text("ALTER TABLE activity_metrics ALTER COLUMN flights_climbed TYPE smallint"))


def _date(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S +0000")


def offending_payload() -> dict:
    """400 heart-rate points (3 too fast), resting heart rate (one alone at its instant: heart_rate NULL),
    flights climbed (one over smallint) and steps at the same instants."""
    heart = [{"date": _date(T0 + timedelta(minutes=i)), "Avg": TOO_FAST.get(i, 60 + i % 30), "source": "Watch"}
             for i in range(POINTS)]
    resting = [{"date": _date(T0 + timedelta(minutes=5)), "qty": 52},  # shares heart_rate's row 5
               {"date": _date(T0 + timedelta(minutes=5, seconds=30)), "qty": 51}]  # alone: NOT NULL refuses it
    hours = [T0 + timedelta(hours=h) for h in range(6)]
    flights = [{"date": _date(at), "qty": TOO_MANY_FLIGHTS if h == 4 else 3 + h} for h, at in enumerate(hours)]
    steps = [{"date": _date(at), "qty": 1000 + h} for h, at in enumerate(hours)]
    return {"data": {"metrics": [
        {"name": "heart_rate", "units": "count/min", "data": heart},
        {"name": "resting_heart_rate", "units": "count/min", "data": resting},
        {"name": "flights_climbed", "units": "count", "data": flights},
        {"name": "step_count", "units": "count", "data": steps},
    ]}}


EXPECTED_REFUSALS = sorted(
    [("heart_rate_metrics", "chk_heart_rate_range", "heart_rate", i) for i in TOO_FAST]
    + [("heart_rate_metrics", "not_null (heart_rate)", "resting_heart_rate", 1),
       ("activity_metrics", "numeric_value_out_of_range (flights_climbed)", "flights_climbed", 4)]
)


def refusals(item: dict) -> list[tuple]:
    return sorted((r["table"], r["constraint"], r["metric"], r["index"]) for r in item["refusals"])


def run(engine, method: str) -> dict:
    return recovery.run_recovery(engine, insert_method=method, progress=False).to_dict()


@pytest.mark.parametrize("method", ["sql", "copy", "insert"])
def test_refused_rows_are_named_and_the_rest_of_the_ingestion_lands(engine, method):
    refusing_target(engine)
    user = add_user(engine)
    ingestion = add_ingestion(engine, user, offending_payload(), errors=PARAM_LIMIT_ERROR)

    report = run(engine, method)

    item = report["ingestions"][0]
    assert refusals(item) == EXPECTED_REFUSALS
    assert item["rejection_counts"] == {"constraint_violation": 5}
    assert item["outcome"] == "recovery_failed" and item["failure_category"] == "rejected_points"
    assert statuses(engine)[ingestion] == "recovery_failed"
    # Every good row landed: 397 heart-rate rows (row 5 with its resting value), 6 activity rows
    # (the hour whose flights were refused keeps its steps).
    rows = metric_rows(engine)
    assert len(rows["heart_rate_metrics"]) == POINTS - len(TOO_FAST)
    assert len(rows["activity_metrics"]) == 6
    with engine.connect() as conn:
        no_flights = sa.text("SELECT count(*) FROM activity_metrics WHERE flights_climbed IS NULL")
        assert conn.execute(no_flights).scalar() == 1
        assert conn.execute(sa.text("SELECT count(resting_heart_rate) FROM heart_rate_metrics")).scalar() == 1
    # The identity stays exact: the refused points are rejected, not stored, and no row is missing.
    accounting = item["accounting"]
    assert accounting["balanced"] and accounting["rows_missing"] == 0
    assert accounting["rejected"] == {"constraint_violation": 5}
    assert accounting["points"] == POINTS + 2 + 6 + 6
    assert item["tables"]["heart_rate_metrics"]["missing_after"] == 0
    # Found by bisection: about 2 log2(401) = 17 merges per refused row (66 here), not one per row (407).
    assert 0 < item["constraint_search_statements"] <= 5 * 2 * 9 < POINTS / 4
    # No value anywhere: not in the report, not in the note left in processing_errors.
    with engine.connect() as conn:
        note = conn.execute(sa.text("SELECT processing_errors::text FROM raw_ingestions")).scalar_one()
    assert "refused by the target's constraints: 5 points" in headline(report)
    assert all(set(r) == {"category", "table", "constraint", "metric", "index"} for r in item["refusals"])
    timings = ("started_at", "finished_at", "duration_seconds", "rows_per_second")
    stable = json.dumps({k: v for k, v in report.items() if k not in timings})
    for text in (stable, note, headline(report)):
        assert not any(re.search(rf"\b{value}\b", text) for value in SECRET_VALUES), text


@pytest.mark.parametrize("method", ["sql", "copy", "insert"])
def test_verify_counts_refused_points_as_rejected_and_a_rerun_changes_nothing(engine, method):
    refusing_target(engine)
    user = add_user(engine)
    add_ingestion(engine, user, offending_payload(), errors=PARAM_LIMIT_ERROR)
    run(engine, method)
    before, rows = fingerprint(engine), metric_rows(engine)

    rerun = run(engine, method)  # the default statuses: nothing to do
    assert rerun["candidates"] == 0 and fingerprint(engine) == before
    # Asked to retry it, the same points are refused again and nothing is written twice.
    again = recovery.run_recovery(engine, insert_method=method, statuses=["recovery_failed"], progress=False).to_dict()
    checked = verify(engine, VerifyOptions.validated(since="30d")).to_dict()

    assert again["rows_inserted_total"] == 0 and refusals(again["ingestions"][0]) == EXPECTED_REFUSALS
    assert metric_rows(engine) == rows
    assert checked["missing_metrics_total"] == 0 and checked["missing_values_total"] == 0
    assert checked["accounting"]["rejected"] == {"constraint_violation": 5}
    assert checked["accounting"]["balanced"]
    assert "refused by the target's constraints: 5 points" in verify_headline(checked)


def test_the_three_methods_land_the_same_rows(engine):
    results = {}
    for method in ("sql", "copy", "insert"):
        reset_schema(engine)
        refusing_target(engine)
        user = add_user(engine)
        add_ingestion(engine, user, offending_payload(), errors=PARAM_LIMIT_ERROR)
        report = run(engine, method)
        rows = {name: [row[1:] for row in found] for name, found in metric_rows(engine).items()}  # without user_id
        results[method] = (rows, refusals(report["ingestions"][0]), report["ingestions"][0]["accounting"])
    assert results["sql"] == results["copy"] == results["insert"]


def test_preview_names_the_refused_rows_and_writes_nothing(engine):
    refusing_target(engine)
    user = add_user(engine)
    add_ingestion(engine, user, offending_payload(), errors=PARAM_LIMIT_ERROR)
    before = fingerprint(engine)

    preview = recovery.preview(engine, progress=False).to_dict()

    assert fingerprint(engine) == before
    item = preview["ingestions"][0]
    assert item["constraints_checked"] is True
    assert refusals(item) == EXPECTED_REFUSALS
    assert item["outcome"] == "would_fail" and item["failure_category"] == "rejected_points"
    assert item["accounting"]["rejected"] == {"constraint_violation": 5} and item["accounting"]["balanced"]
    assert preview["missing_before_total"] == POINTS - len(TOO_FAST) + 6
    real = run(engine, "sql")
    assert real["rows_inserted_total"] == preview["missing_before_total"]


def _sequences(engine) -> dict[str, tuple]:
    """Every sequence's position: a rolled-back INSERT still moves its table's id sequence."""
    with engine.connect() as conn:
        names = conn.execute(sa.text("SELECT sequencename FROM pg_sequences WHERE schemaname = 'public'")).scalars()
        return {n: tuple(conn.execute(sa.text(f'SELECT last_value, is_called FROM "{n}"')).one()) for n in names}


def test_on_a_target_that_refuses_nothing_the_catalogue_takes_the_preview_tries_no_write(engine):
    """This project's own tables hold every value the parser accepts (no CHECK, no NOT NULL value
    column, the catalogue's own types): there is nothing to learn, so no trial write, and the
    preview's transaction is read only, as for a role that may not write."""
    user = add_user(engine)
    add_ingestion(engine, user, offending_payload(), errors=PARAM_LIMIT_ERROR)
    before = _sequences(engine)

    preview = recovery.preview(engine, progress=False).to_dict()

    assert _sequences(engine) == before
    item = preview["ingestions"][0]
    assert item["constraints_checked"] is True and item["refusals"] == []
    assert item["outcome"] == "would_recover"


def test_a_target_whose_tables_can_refuse_gets_the_trial_write(engine):
    refusing_target(engine)
    user = add_user(engine)
    add_ingestion(engine, user, offending_payload(), errors=PARAM_LIMIT_ERROR)
    before = _sequences(engine)

    recovery.preview(engine, progress=False)

    assert _sequences(engine) != before  # the writes were tried, and rolled back (fingerprints: above)
