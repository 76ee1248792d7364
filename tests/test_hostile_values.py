"""Valid jsonb that Python's own decoder cannot read does not stop a run, and the three methods agree.

PostgreSQL stores jsonb nested about 5,000 levels deep and numbers of any size (``1e5000`` keeps
all 5,001 digits), while ``json.loads`` raises ``RecursionError`` near 1,000 levels and
``ValueError`` past 4,300 digits. Such values, in a point, a metric header, a workout or in
``processing_errors``, are read like any other: an ignored field stays ignored, a value where a
number belongs is named by the value rules (``non_numeric``, ``out_of_range``), and discovery,
recovery (``sql``, ``copy``, ``insert``), verify and the monitor all give the same answer.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from helpers import add_user, metric_rows
from sqlalchemy.engine import Engine

from recovery_lib import discovery, reconcile, recovery, verification
from recovery_lib.checksums import PAYLOAD_SHA256_SQL
from recovery_lib.monitor import build_monitoring_report
from recovery_lib.payload import parse_payload

DEPTH = 3_000  # past Python's recursion limit, within what jsonb stores
HUGE = "1" + "0" * 5_000  # what jsonb keeps of 1e5000: every digit
T0 = datetime(2024, 2, 6, 8, 0, tzinfo=UTC)


def deep(depth: int = DEPTH) -> str:
    return "[" * depth + "]" * depth


def at(minutes: int) -> str:
    return (T0 + timedelta(minutes=minutes)).strftime("%Y-%m-%d %H:%M:%S +0000")


def hr_point(minutes: int, avg: str = "70", extra: str = "") -> str:
    return f'{{"date": "{at(minutes)}", "Avg": {avg}, "source": "Watch"{extra}}}'


def payload(metrics: list[str], workouts: list[str] | None = None) -> str:
    body = f'"metrics": [{", ".join(metrics)}]'
    if workouts is not None:
        body += f', "workouts": [{", ".join(workouts)}]'
    return f'{{"data": {{{body}}}}}'


def metric(name: str, points: list[str], units: str = '"count/min"') -> str:
    return f'{{"name": "{name}", "units": {units}, "data": [{", ".join(points)}]}}'


def add_text_ingestion(engine: Engine, user_id: str, text: str, *, minutes: int, status: str = "error",
                       errors_text: str | None = None) -> str:
    """Store JSON text as it is (json.dumps could not even write these values)."""
    ingestion_id = str(uuid.uuid4())
    with engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO raw_ingestions (id, user_id, payload_hash, payload_size_bytes, raw_payload, "
            "processing_status, processing_errors, processed_at, created_at) VALUES (:id, :u, '', :size, "
            "CAST(:payload AS jsonb), :status, CAST(:errors AS jsonb), :at, :at)"),
            {"id": ingestion_id, "u": user_id, "size": len(text), "payload": text, "status": status,
             "errors": errors_text, "at": T0 + timedelta(minutes=minutes)})
        conn.execute(sa.text(f"UPDATE raw_ingestions SET payload_hash = {PAYLOAD_SHA256_SQL} WHERE id = :id"),
                     {"id": ingestion_id})
    return ingestion_id


# name -> (payload text, processing_errors text, expected outcome, expected rejections)
CASES = {
    "deep junk in an ignored field": (
        payload([metric("heart_rate", [hr_point(0, extra=f', "note": {deep()}'), hr_point(1)])]),
        '[{"error": "number of parameters must be between 0 and 65535"}]', "recovered", {}),
    "deep value where a number belongs": (
        payload([metric("heart_rate", [hr_point(10, avg=deep()), hr_point(11)])]),
        None, "recovery_failed", {"non_numeric": 1}),
    "huge number where a number belongs": (
        payload([metric("step_count", [f'{{"date": "{at(20)}", "qty": {HUGE}}}',
                                       f'{{"date": "{at(21)}", "qty": 5}}'], units='"count"')]),
        None, "recovery_failed", {"out_of_range": 1}),
    "huge number as a metric's units": (
        payload([metric("walking_running_distance", [f'{{"date": "{at(30)}", "qty": 5}}'], units=HUGE),
                 metric("heart_rate", [hr_point(31)])]),
        None, "recovery_failed", {"invalid_point": 1}),
    "deep workout and a huge number in a workout": (
        payload([metric("heart_rate", [hr_point(40)])],
                workouts=[deep(), f'{{"name": "Run", "start": "{at(41)}", "avgHeartRate": {HUGE}}}']),
        None, "recovery_failed", {"invalid_point": 1, "out_of_range": 1}),
    "deep and huge processing_errors": (
        payload([metric("heart_rate", [hr_point(50)])]),
        f'[{{"message": "timeout", "detail": {HUGE}}}, {deep()}, {HUGE}, {{"error": {deep()}}}]', "recovered", {}),
    "an ordinary payload after them": (
        payload([metric("heart_rate", [hr_point(60), hr_point(61)])]), None, "recovered", {}),
}


def hostile_incident(engine: Engine) -> tuple[str, dict[str, str]]:
    user = add_user(engine)
    ids = {}
    for minutes, (name, (text, errors, _, _)) in enumerate(CASES.items()):
        ids[name] = add_text_ingestion(engine, user, text, minutes=minutes, errors_text=errors)
    return user, ids


def test_the_safe_decoder_reads_what_json_loads_cannot_and_the_same_as_json_loads_otherwise():
    from recovery_lib.safe_json import loads

    nested = loads(deep(5_000))
    depth = 0
    while nested:
        nested, depth = nested[0], depth + 1
    assert depth == 4_999  # the innermost list is empty
    assert str(loads(HUGE)) == HUGE
    assert loads(f'{{"a": [{HUGE}, -{HUGE}], "b": "x\\u00e9", "c": 1.5e-3, "d": [true, false, null]}}')["d"] == [
        True, False, None]
    for text in ('{"a": [1, 2.5, "x", {"y": null}], "b": -0.0}', "[]", '"s"', "NaN", "[Infinity, -Infinity]"):
        assert json.dumps(loads(text)) == json.dumps(json.loads(text))
    with pytest.raises(ValueError):
        loads("[1, 2")


@pytest.mark.parametrize("method", ["sql", "copy", "insert"])
def test_hostile_values_get_categorised_outcomes_the_run_goes_on_and_the_methods_agree(engine, method):
    _, ids = hostile_incident(engine)
    with engine.connect() as conn:
        candidates = {c.ingestion_id: c for c in discovery.discover(conn)}
    assert set(candidates) == set(ids.values())
    assert candidates[ids["deep and huge processing_errors"]].error_category == "timeout"

    report = recovery.run_recovery(engine, progress=False, insert_method=method)

    outcomes = {i.ingestion_id: i for i in report.ingestions}
    for name, (_, _, outcome, rejections) in CASES.items():
        got = outcomes[ids[name]]
        assert (got.outcome, got.rejection_counts) == (outcome, rejections), name
    rows = metric_rows(engine)
    assert len(rows["heart_rate_metrics"]) == 8 and len(rows["activity_metrics"]) == 1
    assert len(rows["workout_metrics"]) == 0
    assert verification.verify(engine, since=(T0 - timedelta(days=1)).isoformat()).ok


def test_silent_loss_with_hostile_values_is_found_by_discovery_verify_and_the_monitor(engine):
    user = add_user(engine)
    text = payload([metric("heart_rate", [hr_point(0, extra=f', "note": {deep()}'), hr_point(1, avg=HUGE),
                                          hr_point(2, avg=deep())])],
                   workouts=[deep()])
    lost = add_text_ingestion(engine, user, text, minutes=0, status="processed",
                              errors_text=f'[{deep()}, {HUGE}]')

    with engine.connect() as conn:
        [candidate] = discovery.discover(conn)
    assert (candidate.ingestion_id, candidate.reason) == (lost, "silent_loss")
    for use_cache in (True, False):
        [result] = reconcile.reconcile_window(engine, use_cache=use_cache)
        assert (result.missing_total, result.rejected_points) == (1, 3)
    checked = verification.verify(engine, since=(T0 - timedelta(days=1)).isoformat())
    assert checked.missing_metrics_total == 1 and not checked.ok
    monitored = build_monitoring_report(engine, hours=24, now=T0 + timedelta(hours=1))
    assert monitored.data_loss_detected == 1 and monitored.missing_metrics_total == 1


def test_the_text_parser_reads_deep_nesting_and_huge_numbers_like_the_database_path():
    text = payload([metric("heart_rate", [hr_point(0, extra=f', "note": {deep()}'), hr_point(1, avg=HUGE),
                                          hr_point(2, avg=deep())])])
    parsed = parse_payload(text.encode(), now=T0)
    assert parsed.counts()["heart_rate_metrics"] == 1
    assert dict(parsed.parser.rejection_counts) == {"out_of_range": 1, "non_numeric": 1}
    again = parse_payload(text.replace(f'"Avg": {HUGE}', '"Avg": NaN'), now=T0)  # the NaN fallback path
    assert dict(again.parser.rejection_counts) == {"non_finite": 1, "non_numeric": 1}


# --- derived values obey the value rules -----------------------------------------------------------


def sleep(*points: dict) -> dict:
    return {"data": {"metrics": [{"name": "sleep_analysis", "units": "hr", "data": list(points)}]}}


def night(**fields: object) -> dict:
    return {"sleepStart": "2024-02-05 23:00:00 +0000", "sleepEnd": "2024-02-06 07:00:00 +0000", **fields}


@pytest.mark.parametrize(("fields", "efficiency"), [
    ({"totalSleep": 7.5, "inBed": 1e-320}, None),  # 100 x 450 / 6e-319 minutes: infinite
    ({"totalSleep": 7.5, "inBed": 0.5}, None),  # 1500 %
    ({"totalSleep": 7.5, "inBed": 8.0}, 93.75),
    ({"totalSleep": 8.0, "inBed": 8.0}, 100.0),
])
def test_aggregated_sleep_efficiency_obeys_the_finite_and_range_rules(fields, efficiency):
    parsed = parse_payload(sleep(night(**fields)), now=T0)
    rows = list(parsed.rows["sleep_metrics"].values())
    if efficiency is None:
        assert rows == [] and [r.to_dict() for r in parsed.parser.rejections] == [
            {"category": "out_of_range", "metric": "sleep_analysis", "index": 0, "field": "inBed"}]
    else:
        assert [r["efficiency"] for r in rows] == [pytest.approx(efficiency)]


def test_a_sleep_session_whose_derived_values_break_the_rules_is_rejected_segment_by_segment():
    # Two overlapping Core segments: 600 minutes asleep in a 300-minute session, 200 % efficiency.
    overlapping = [{"startDate": "2024-02-05 23:00:00 +0000", "endDate": "2024-02-06 04:00:00 +0000", "value": v}
                   for v in ("Core", "Deep")]
    ordinary = [{"startDate": "2024-02-06 22:00:00 +0000", "endDate": "2024-02-07 02:00:00 +0000", "value": "Core"},
                {"startDate": "2024-02-07 02:00:00 +0000", "endDate": "2024-02-07 04:00:00 +0000", "value": "Awake"}]
    parsed = parse_payload(sleep(*overlapping, *ordinary), now=T0 + timedelta(days=3))

    [(start, row)] = parsed.rows["sleep_metrics"].items()
    assert start.isoformat() == "2024-02-06T22:00:00+00:00" and row["efficiency"] == pytest.approx(200 / 3)
    assert [(r.category, r.index, r.field) for r in parsed.parser.rejections] == [
        ("out_of_range", 0, "efficiency"), ("out_of_range", 1, "efficiency")]
    assert parsed.parser.points_seen == parsed.parser.points_used + parsed.parser.points_rejected
