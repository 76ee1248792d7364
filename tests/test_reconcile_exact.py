"""Reconciliation that cannot be fooled: not by the API's payload_hash, not by the clock, not by half rows.

* The expected-keys cache is keyed on the SHA-256 the server computes from the stored value, so a
  blank, garbage or repeated ``payload_hash`` never makes two payloads share an entry.
* Whatever depends on the clock (a point more than a day ahead is not expected yet) is not cached,
  so its loss is found once its day comes.
* Values count as well as rows: a value the payload has whose column is NULL in the stored row is
  a missing value (``missing_values``), found by discovery, verify, the monitor and the reports.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
import sqlalchemy as sa
from helpers import add_ingestion, add_user, hr_payload
from sqlalchemy.engine import Engine

from recovery_lib import discovery, parallel_reads, reconcile, recovery, verification
from recovery_lib.monitor import build_monitoring_report
from recovery_lib.monitor.prometheus import registry_from_report, write_textfile
from recovery_lib.payload import parse_payload
from recovery_lib.schema import METRIC_TABLES
from recovery_lib.store import ingestions

NOW = datetime.now(UTC).replace(microsecond=0)
T0 = NOW - timedelta(days=3)


def store_rows(engine: Engine, user_id: str, payload: dict, *, only: dict[str, set[str]] | None = None) -> None:
    """The payload's rows as the API would have written them; ``only``: per table, the columns written."""
    parsed = parse_payload(payload, now=NOW)
    with engine.begin() as conn:
        for name, rows in parsed.rows.items():
            table = METRIC_TABLES[name]
            for key, values in rows.items():
                kept = {c: v for c, v in values.items() if only is None or c in only.get(name, set(values))}
                columns = ["user_id", table.key, *kept]
                conn.execute(sa.text(f"INSERT INTO {name} ({', '.join(columns)}) VALUES "
                                     f"({', '.join(':' + c for c in columns)})"),
                             {"user_id": user_id, table.key: key, **kept})


def missing(engine: Engine, *, use_cache: bool = True, now: datetime | None = None) -> dict[str, tuple[int, int]]:
    """Per ingestion: (rows missing, values missing)."""
    return {r.ingestion_id: (r.missing_total, r.missing_values_total)
            for r in reconcile.reconcile_window(engine, use_cache=use_cache, now=now)}


def candidates(engine: Engine) -> dict[str, str]:
    with engine.connect() as conn:
        return {c.ingestion_id: c.reason for c in discovery.discover(conn)}


def since() -> str:
    return (T0 - timedelta(days=1)).isoformat()


# --- the cache key ---------------------------------------------------------------------------------


@pytest.mark.parametrize("api_hash", ["", "   ", "garbage", "0" * 64], ids=["blank", "spaces", "garbage", "zeros"])
def test_two_payloads_with_the_same_blank_or_garbage_hash_are_reconciled_each_on_its_own(engine, api_hash):
    user = add_user(engine)
    complete_payload, lost_payload = hr_payload(T0, 5), hr_payload(T0 + timedelta(hours=2), 5)
    complete = add_ingestion(engine, user, complete_payload, status="processed", payload_hash=api_hash,
                             created_at=T0)
    store_rows(engine, user, complete_payload)
    lost = add_ingestion(engine, user, lost_payload, status="processed", payload_hash=api_hash,
                         created_at=T0 + timedelta(hours=3))

    for run in ("writes the cache", "reads the cache"):
        assert missing(engine) == {complete: (0, 0), lost: (5, 0)}, run
    assert missing(engine, use_cache=False) == {complete: (0, 0), lost: (5, 0)}
    assert candidates(engine) == {lost: "silent_loss"}
    checked = verification.verify(engine, since=since())
    assert (checked.ok, checked.missing_metrics_total) == (False, 5)

    report = recovery.run_recovery(engine, progress=False, verify=False)
    assert [(i.ingestion_id, i.rows_inserted) for i in report.ingestions] == [(lost, 5)]
    assert verification.verify(engine, since=since()).ok


def test_the_same_hash_on_two_users_flags_the_user_whose_rows_are_missing(engine):
    owner_a, owner_b = add_user(engine), add_user(engine)
    payload_a, payload_b = hr_payload(T0, 5), hr_payload(T0 + timedelta(hours=2), 5)
    complete = add_ingestion(engine, owner_a, payload_a, status="processed", payload_hash="dup", created_at=T0)
    store_rows(engine, owner_a, payload_a)
    lost = add_ingestion(engine, owner_b, payload_b, status="processed", payload_hash="dup",
                         created_at=T0 + timedelta(hours=3))
    assert missing(engine) == {complete: (0, 0), lost: (5, 0)}
    assert candidates(engine) == {lost: "silent_loss"}

    report = recovery.run_recovery(engine, progress=False, verify=False)
    assert [(i.ingestion_id, i.user_id, i.rows_inserted) for i in report.ingestions] == [(lost, owner_b, 5)]
    for _ in range(2):
        assert verification.verify(engine, since=since()).ok


def test_one_stored_value_for_two_users_shares_a_cache_entry_but_each_user_is_checked(engine):
    owner_a, owner_b = add_user(engine), add_user(engine)
    same = hr_payload(T0, 5)
    complete = add_ingestion(engine, owner_a, same, status="processed", created_at=T0)
    store_rows(engine, owner_a, same)
    lost = add_ingestion(engine, owner_b, same, status="processed", created_at=T0 + timedelta(hours=1))
    assert missing(engine) == {complete: (0, 0), lost: (5, 0)}
    with engine.connect() as conn:
        entries = conn.execute(sa.text("SELECT count(DISTINCT payload_sha256) FROM reconciliation_cache")).scalar()
    assert entries == 1


# --- the clock -------------------------------------------------------------------------------------


def test_a_point_more_than_a_day_ahead_is_expected_once_its_day_comes(engine):
    user = add_user(engine)
    now = datetime.now(UTC)
    present, ahead = now - timedelta(hours=1), now + timedelta(days=2)
    payload = {"data": {"metrics": [{"name": "heart_rate", "units": "count/min", "data": [
        {"date": moment.strftime("%Y-%m-%d %H:%M:%S +0000"), "Avg": 70} for moment in (present, ahead)]}]}}
    ingestion = add_ingestion(engine, user, payload, status="processed", created_at=now - timedelta(minutes=30))
    store_rows(engine, user, {"data": {"metrics": [{**payload["data"]["metrics"][0],
                                                    "data": payload["data"]["metrics"][0]["data"][:1]}]}})

    [today] = reconcile.reconcile_window(engine, now=now)
    assert (today.missing_total, today.rejected_points) == (0, 1)  # the point ahead is not expected yet
    assert missing(engine, now=now + timedelta(days=3)) == {ingestion: (1, 0)}
    assert missing(engine, now=now + timedelta(days=3), use_cache=False) == {ingestion: (1, 0)}


# --- values, not only rows -------------------------------------------------------------------------


def half_rows_incident(engine: Engine, *, large: bool) -> tuple[str, str]:
    """Steps and distance at one instant, heart rate Avg/Min/Max at another; stored: steps, and Avg only."""
    user = add_user(engine)
    k = T0.strftime("%Y-%m-%d %H:%M:%S +0000")
    payload = hr_payload(T0 + timedelta(days=1), 1_200 if large else 3)  # complete rows around them
    payload["data"]["metrics"][0]["data"].append({"date": k, "Avg": 71, "Min": 52, "Max": 133})
    payload["data"]["metrics"] += [
        {"name": "step_count", "units": "count", "data": [{"date": k, "qty": 100}]},
        {"name": "walking_running_distance", "units": "km", "data": [{"date": k, "qty": 0.08}]},
    ]
    ingestion = add_ingestion(engine, user, payload, status="processed", created_at=T0 + timedelta(days=1, hours=2))
    store_rows(engine, user, payload, only={"activity_metrics": {"step_count", "source_device"}})
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE heart_rate_metrics SET heart_rate_min = NULL, heart_rate_max = NULL "
                             "WHERE recorded_at = :k"), {"k": T0})
    return user, ingestion


@pytest.mark.parametrize("large", [False, True], ids=["parsed", "listed_in_sql"])
def test_values_missing_inside_existing_rows_are_found_everywhere_and_recovered(engine, tmp_path, large):
    user, ingestion = half_rows_incident(engine, large=large)
    assert (_payload_size(engine, ingestion) >= reconcile.SQL_KEYS_MIN_BYTES) == large

    for use_cache in (True, True, False):
        [result] = reconcile.reconcile_window(engine, use_cache=use_cache)
        assert (result.missing_total, result.missing_values_total) == (0, 3)
        assert {n: t.missing_values for n, t in result.tables.items() if t.missing_values} == {
            "heart_rate_metrics": 2, "activity_metrics": 1}
    assert candidates(engine) == {ingestion: "silent_loss"}

    checked = verification.verify(engine, since=since())
    assert not checked.ok and checked.to_dict()["missing_values_total"] == 3
    assert "3 values missing" in checked.headline()
    monitored = build_monitoring_report(engine, hours=24 * 5)
    assert monitored.data_loss_detected == 1 and monitored.silent_data_loss == 1
    assert monitored.to_dict()["missing_values_total"] == 3
    textfile = tmp_path / "metrics.prom"
    write_textfile(textfile, registry_from_report(monitored))
    assert 'health_export_missing_values{table="heart_rate_metrics"} 2.0' in textfile.read_text()

    preview = recovery.preview(engine, progress=False).to_dict()
    assert preview["missing_values_before_total"] == 3 and preview["missing_before_total"] == 0
    report = recovery.run_recovery(engine, progress=False).to_dict()
    assert report["recovered"] == 1 and report["missing_values_before_total"] == 3
    assert report["rows_filled_total"] == 2 and report["rows_inserted_total"] == 0

    assert verification.verify(engine, since=since()).ok
    with engine.connect() as conn:
        activity = conn.execute(sa.text("SELECT step_count, distance_meters FROM activity_metrics WHERE "
                                        "user_id = :u"), {"u": user}).one()
        heart = conn.execute(sa.text("SELECT heart_rate, heart_rate_min, heart_rate_max FROM heart_rate_metrics "
                                     "WHERE user_id = :u AND recorded_at = :k"), {"u": user, "k": T0}).one()
    assert tuple(activity) == (100.0, 80.0) and tuple(heart) == (71.0, 52.0, 133.0)
    assert candidates(engine) == {}


def _payload_size(engine: Engine, ingestion: str) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT payload_size_bytes FROM raw_ingestions WHERE id = :i"),
                            {"i": ingestion}).scalar_one()


# --- discovery's order -----------------------------------------------------------------------------


def test_discovery_orders_a_null_created_at_like_its_sql_order_by(engine):
    user = add_user(engine)
    dated_error = add_ingestion(engine, user, hr_payload(T0, 3), created_at=T0)
    undated_error = add_ingestion(engine, user, hr_payload(T0 + timedelta(hours=1), 3))
    undated_lost = add_ingestion(engine, user, hr_payload(T0 + timedelta(hours=2), 3), status="processed")
    dated_lost = add_ingestion(engine, user, hr_payload(T0 + timedelta(hours=3), 3), status="processed",
                               created_at=T0 + timedelta(minutes=1))
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE raw_ingestions SET created_at = NULL WHERE id = ANY(CAST(:ids AS uuid[]))"),
                     {"ids": [undated_error, undated_lost]})
        in_sql_order = conn.execute(sa.text("SELECT id::text FROM raw_ingestions ORDER BY created_at, id")).scalars()
        in_sql_order = list(in_sql_order)
    assert set(in_sql_order[-2:]) == {undated_error, undated_lost}  # ascending order puts NULLs last
    assert [c for c in in_sql_order if c in (dated_error, dated_lost)] == [dated_error, dated_lost]
    assert list(candidates(engine)) == in_sql_order


# --- many payloads: read by helper sessions, each in a snapshot of its own ------------------------------


def many_processed(engine: Engine, count: int) -> tuple[str, list[str]]:
    """One user with ``count`` processed payloads, every other one with its rows lost."""
    user = add_user(engine)
    ids = []
    for n in range(count):
        payload = hr_payload(T0 + timedelta(hours=n), 30)
        ids.append(add_ingestion(engine, user, payload, status="processed"))
        if n % 2:
            store_rows(engine, user, payload)
    return user, ids


def test_many_payloads_are_read_by_helpers_and_reconcile_as_one_reader_does(engine, monkeypatch):
    many_processed(engine, 12)
    read_by: list[str] = []
    original = reconcile.expected_keys

    def spy(conn, ingestion_id, **kwargs):
        read_by.append(threading.current_thread().name)
        return original(conn, ingestion_id, **kwargs)

    monkeypatch.setattr(reconcile, "expected_keys", spy)
    helped = reconcile.reconcile_window(engine, statuses=["processed"], use_cache=False)
    assert read_by == ["MainThread"] * 12  # without the cache's row versions: the caller alone

    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM reconciliation_cache"))
    read_by.clear()
    parallel = reconcile.reconcile_window(engine, statuses=["processed"])
    assert len(read_by) == 12 and "MainThread" not in read_by
    assert [(r.ingestion_id, r.tables, r.accounting.to_dict()) for r in parallel] == [
        (r.ingestion_id, r.tables, r.accounting.to_dict()) for r in helped]
    assert sum(1 for r in parallel if r.lost_anything) == 6


def test_a_payload_the_helpers_cannot_see_as_listed_is_read_by_the_caller(engine):
    """Changed since it was listed, or not committed yet: a helper's snapshot has another version of it."""
    user, ids = many_processed(engine, 10)
    with engine.begin() as conn:
        rows = ingestions.by_ids(conn, ids, with_sha=True)
    stale = [SimpleNamespace(**{**row._mapping, "version": "1" if row.id == ids[3] else row.version}) for row in rows]
    with engine.connect() as conn:
        found = parallel_reads.read_listed(conn, stale, lambda c, r: r.id, readers=2, minimum=1)
    assert set(found) == set(ids) - {ids[3]}


    def lost(conn, row):
        raise RuntimeError("connection lost")

    with engine.connect() as conn:  # a failed helper leaves all the rest to the caller
        assert parallel_reads.read_listed(conn, rows, lost, readers=2, minimum=1) == {}
