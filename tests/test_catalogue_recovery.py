"""A payload holding every catalogue name, every data array and one unknown name recovers completely.

Every point is accounted for (stored, kept generically under its unknown name, rejected or
unsupported: here only the first two), with each of the three insert methods, and verify and the
monitor agree with the recovery report.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from helpers import add_ingestion, add_user

from recovery_lib import catalogue, recovery, verification
from recovery_lib.catalogue.model import FLOAT, TEXT
from recovery_lib.discovery import discover
from recovery_lib.monitor import build_monitoring_report

START = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)


def at(minutes: float) -> str:
    return (START + timedelta(minutes=minutes)).strftime("%Y-%m-%d %H:%M:%S +0000")


def _value(field: catalogue.Field) -> Any:
    if field.type == FLOAT:
        low, high = field.limits
        return round(low + (high - low) / 3, 3) if high - low < 1e6 else low + 42.0
    return "Complete" if field.type == TEXT else {"kept": ["whole", 1]}


def every_metric() -> list[dict[str, Any]]:
    """One metric object per catalogue name, in its units, a point each at its own minute."""
    found = []
    for n, spec in enumerate(catalogue.METRICS.values()):
        if spec.shape == "sleep":
            point = {"sleepStart": at(n), "sleepEnd": at(n + 400), "asleep": 0, "core": 3.0, "deep": 1.0,
                     "rem": 1.5, "inBed": 6.0, "source": "Watch"}
            found.append({"name": spec.name, "units": "hr", "data": [point]})
            continue
        point: dict[str, Any] = {"date": at(n), "source": "Watch"}
        for field in spec.fields:
            point[field.keys[0]] = _value(field)
        units = next((f.unit for f in spec.fields if f.kind), None)
        found.append({"name": spec.name, **({"units": units} if units else {}), "data": [point]})
    return found


ENTRIES = {
    "stateOfMind": {"start": at(0), "end": at(0), "kind": "daily_mood", "valence": 0.25, "labels": ["calm"],
                    "associations": ["work"], "valenceClassification": "slightly_pleasant"},
    "medications": {"displayText": "Metformin 500 mg Tablet", "start": at(1), "end": at(1), "form": "Tablet",
                    "status": "Taken", "isArchived": False, "dosage": 1, "units": "tablet",
                    "codings": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "000"}]},
    "symptoms": {"start": at(2), "end": at(30), "name": "Headache", "severity": "Mild", "userEntered": True,
                 "source": "Health"},
    "cycleTracking": {"start": at(3), "name": "Menstrual Flow", "value": "Light", "isCycleStart": True},
    "ecg": {"start": at(4), "end": at(4.5), "classification": "Sinus Rhythm", "averageHeartRate": 64,
            "numberOfVoltageMeasurements": 3, "samplingFrequency": 512, "source": "Watch",
            "voltageMeasurements": [{"date": at(4), "voltage": -0.0001, "units": "V"}] * 3},
    "heartRateNotifications": {"start": at(5), "end": at(15), "threshold": 120,
                               "heartRate": [{"hr": 131, "units": "bpm"}]},
}
WORKOUT = {
    "id": "0B6F6C1E-2D7A-4C55-9A0B-1C2D3E4F5A6B", "name": "Outdoor Run", "start": at(60), "end": at(90),
    "activeEnergyBurned": {"qty": 300, "units": "kcal"}, "distance": {"qty": 5, "units": "km"},
    "heartRateData": [{"date": at(61), "Min": 120, "Avg": 140, "Max": 160, "units": "count/min"}],
    "heartRateRecovery": [{"date": at(91), "Min": 100, "Avg": 100, "Max": 100, "units": "count/min"}],
    "activeEnergy": [{"date": at(61), "qty": 10, "units": "kcal"}],
    "stepCount": [{"date": at(61), "qty": 150, "units": "count"}],
    "route": [{"latitude": 52.5, "longitude": 13.4, "altitude": 34, "timestamp": at(61)}],
}
UNKNOWN = {"name": "a_metric_from_a_future_app", "units": "zorks", "data": [{"date": at(7), "qty": 3}]}


def full_payload() -> dict[str, Any]:
    return {"data": {"metrics": [*every_metric(), UNKNOWN], "workouts": [WORKOUT],
                     **{name: [entry] for name, entry in ENTRIES.items()}}}


def test_the_fixture_holds_every_catalogue_name_and_array() -> None:
    payload = full_payload()["data"]
    assert {m["name"] for m in payload["metrics"]} >= set(catalogue.METRICS)
    assert set(catalogue.ARRAYS) <= set(payload)


@pytest.mark.parametrize("method", ["sql", "copy", "insert"])
def test_every_catalogue_name_every_array_and_one_unknown_name_recover_completely(engine, method) -> None:
    user = add_user(engine)
    ingestion = add_ingestion(engine, user, full_payload(), errors=[{"error": "parameter limit"}])
    points = len(catalogue.METRICS) + 1 + 1 + len(ENTRIES) + 5  # metrics, unknown, workout, entries, its series

    report = recovery.run_recovery(engine, progress=False, insert_method=method).to_dict()

    [outcome] = report["ingestions"]
    assert outcome["outcome"] == "recovered", outcome["failure_message"]
    accounting = outcome["accounting"]
    assert accounting["points"] == points
    assert accounting["generic"] == {"a_metric_from_a_future_app": 1}
    assert (accounting["stored"], accounting["rejected"], accounting["unsupported"]) == (points - 1, {}, {})
    assert accounting["balanced"] and accounting["complete"] and accounting["rows_missing"] == 0
    tables_with_rows = {name for name, t in outcome["tables"].items() if t["present_after"]}
    assert tables_with_rows == set(catalogue.TABLES), set(catalogue.TABLES) - tables_with_rows
    assert "unknown metrics kept: a_metric_from_a_future_app (1)" in recovery.report.headline(report)
    assert report["accounting"]["points"] == points

    checked = verification.verify(engine, since="24h")
    assert checked.ok and checked.missing_metrics_total == 0
    assert checked.accounting.to_dict() == {**accounting}
    monitor = build_monitoring_report(engine, hours=24).to_dict()
    assert monitor["data_loss_detected"] == 0 and monitor["accounting"] == accounting
    assert discover_silent_loss(engine, ingestion) == []


def discover_silent_loss(engine, ingestion: str) -> list[str]:
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE raw_ingestions SET processing_status = 'processed' WHERE id = %(id)s",
                             {"id": ingestion})
        return [c.ingestion_id for c in discover(conn) if c.reason == "silent_loss"]


def test_the_same_payload_marked_processed_without_its_rows_is_found_as_silent_loss(engine) -> None:
    user = add_user(engine)
    ingestion = add_ingestion(engine, user, full_payload(), status="processed")
    with engine.begin() as conn:
        [candidate] = [c for c in discover(conn) if c.reason == "silent_loss"]
    assert candidate.ingestion_id == ingestion
    monitor = build_monitoring_report(engine, hours=24).to_dict()
    assert monitor["data_loss_detected"] == 1 and monitor["accounting"]["rows_missing"] > 0


def test_an_unknown_array_is_named_and_keeps_the_ingestion_from_counting_as_recovered(engine) -> None:
    user = add_user(engine)
    payload = full_payload()
    payload["data"]["aNewArrayOfAFutureApp"] = [{"start": at(0)}, {"start": at(1)}]
    add_ingestion(engine, user, payload)

    [outcome] = recovery.run_recovery(engine, progress=False).to_dict()["ingestions"]

    assert outcome["outcome"] == "recovery_failed" and outcome["failure_category"] == "unsupported_points"
    assert outcome["accounting"]["unsupported"] == {"aNewArrayOfAFutureApp": 2}
    assert "2 points have no table to go to (2 of aNewArrayOfAFutureApp)" in outcome["failure_message"]
    checked = verification.verify(engine, since="24h")
    assert not checked.ok and checked.unsupported[0]["unsupported"] == {"aNewArrayOfAFutureApp": 2}
