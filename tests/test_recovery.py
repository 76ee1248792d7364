"""The recovery engine on a real PostgreSQL: exactly once, idempotent, read-only dry run."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from helpers import add_ingestion, add_user, fingerprint, hr_payload, metric_rows, statuses

from recovery_lib import db, params, recovery
from recovery_lib import options as options_module
from recovery_lib.batching import BatchConfig
from recovery_lib.discovery import discover
from recovery_lib.errors import BatchConfigError
from recovery_lib.options import RecoveryOptions

PARAM_LIMIT_ERROR = [{"error": "number of parameters must be between 0 and 65535"}]
T0 = datetime(2024, 2, 6, 8, 0, tzinfo=UTC)


def run(engine, **kwargs):
    kwargs.setdefault("progress", False)
    return recovery.run_recovery(engine, **kwargs).to_dict()


def count(engine, table: str) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()


@pytest.mark.parametrize("method", ["sql", "copy", "insert"])
def test_recovery_postgresql_parameter_limit(engine, method):
    user = add_user(engine)
    points = 12_000  # 12,000 rows x 8 params = 96,000 > 65,535 in one statement
    assert points * BatchConfig.params_per_row("heart_rate_metrics") > 65_535
    ingestion = add_ingestion(engine, user, hr_payload(T0, points), errors=PARAM_LIMIT_ERROR)

    report = run(engine, insert_method=method)

    assert report["recovered"] == 1 and report["recovery_failed"] == 0
    assert report["error_categories"] == {"parameter_limit": 1}
    assert report["tables"]["heart_rate_metrics"]["inserted"] == points
    assert report["missing_after_total"] == 0
    assert count(engine, "heart_rate_metrics") == points
    assert statuses(engine)[ingestion] == "recovered"


def test_recovery_verification_checksums(engine):
    """The exporter's body stored as jsonb: a hash of the jsonb text verifies; any other hash cannot be
    checked (the bytes it was computed from are gone), so the payload is recovered and the report says
    so, unless require_verified. (A mismatch needs a rendering the tool reproduces: tests/test_checksums.py.)"""
    user = add_user(engine)
    good = add_ingestion(engine, user, hr_payload(T0, 10), errors=PARAM_LIMIT_ERROR)
    other = add_ingestion(engine, user, hr_payload(T0 + timedelta(days=1), 10), errors=PARAM_LIMIT_ERROR,
                          payload_hash="0" * 64)

    strict = run(engine, require_verified=True)
    assert strict["checksums"] == {"verified": 1, "mismatch": 0, "unverifiable": 1, "missing": 0, "skipped": 0}
    assert strict["checksum_renderings"] == {"jsonb_text": 1}
    assert statuses(engine) == {good: "recovered", other: "recovery_failed"}
    assert strict["failure_categories"] == {"checksum_unverifiable": 1}
    with engine.connect() as conn:
        errors = conn.execute(sa.text("SELECT processing_errors FROM raw_ingestions WHERE id = :id"),
                              {"id": other}).scalar_one()
    assert errors[0] == PARAM_LIMIT_ERROR[0], "the original error is kept"
    assert errors[1]["category"] == "checksum_unverifiable" and errors[1]["source"] == "recovery"

    # By default an unverifiable checksum is reported and the payload recovered.
    second = run(engine, statuses=["recovery_failed"])
    assert second["checksums"]["unverifiable"] == 1 and second["recovered"] == 1
    [outcome] = second["ingestions"]
    assert outcome["checksum_rendering"] is None and len(outcome["stored_sha256"]) == 64
    assert statuses(engine)[other] == "recovered"
    assert count(engine, "heart_rate_metrics") == 20


def test_data_loss_monitoring(engine):
    """Silent loss: 'processed' rows whose metrics are missing are found by reconciliation."""
    user = add_user(engine)
    complete = add_ingestion(engine, user, hr_payload(T0, 30), status="processed")
    lossy = add_ingestion(engine, user, hr_payload(T0 + timedelta(hours=5), 30), status="processed")
    # The complete payload's rows exist (every value it has); the lossy one kept 10 of its 30 rows.
    with engine.begin() as conn:
        for start, n in ((T0, 30), (T0 + timedelta(hours=5), 10)):
            conn.execute(
                sa.text("INSERT INTO heart_rate_metrics (user_id, recorded_at, heart_rate, heart_rate_min, "
                        "heart_rate_max) SELECT :u, :t + make_interval(mins => g), 70, 55, 90 "
                        "FROM generate_series(0, :n - 1) g"),
                {"u": user, "t": start, "n": n},
            )
    # Counting the user's rows (the original check) sees 40 rows >= 30: no loss. Per ingestion finds it.
    with engine.begin() as conn:
        found = discover(conn)
    assert [(c.ingestion_id, c.reason) for c in found] == [(lossy, "silent_loss")]

    report = run(engine)
    assert report["candidates_by_reason"] == {"silent_loss": 1}
    assert report["tables"]["heart_rate_metrics"]["missing_before"] == 20
    assert report["rows_inserted_total"] == 20
    assert statuses(engine) == {complete: "processed", lossy: "recovered"}


def test_rerun_inserts_nothing_and_changes_no_status(engine):
    user = add_user(engine)
    for day in range(3):
        add_ingestion(engine, user, hr_payload(T0 + timedelta(days=day), 50), errors=PARAM_LIMIT_ERROR)
    assert run(engine)["rows_inserted_total"] == 150
    before = fingerprint(engine)
    for _ in range(2):
        again = run(engine)
        assert again["candidates"] == 0 and again["rows_inserted_total"] == 0
    assert fingerprint(engine) == before


def test_dry_run_writes_nothing_and_predicts_the_recovery(engine):
    user = add_user(engine)
    add_ingestion(engine, user, hr_payload(T0, 40), errors=PARAM_LIMIT_ERROR)
    add_ingestion(engine, user, {"data": {"metrics": "not-a-list"}}, errors=[{"error": "invalid JSON structure"}])
    before = fingerprint(engine)

    preview = recovery.preview(engine, progress=False).to_dict()

    assert fingerprint(engine) == before
    assert preview["dry_run"] is True
    assert preview["recovered"] == 1 and preview["recovery_failed"] == 1
    assert preview["missing_before_total"] == 40 and preview["rows_inserted_total"] == 0
    real = run(engine)
    assert real["rows_inserted_total"] == preview["missing_before_total"]


def test_corrupt_payload_fails_with_a_category_and_the_rest_recovers(engine):
    user = add_user(engine)
    corrupt = add_ingestion(engine, user, {"data": {"metrics": "not-a-list"}}, errors=[{"error": "parse error"}])
    scalar = add_ingestion(engine, user, "{broken json kept as a string", errors=[{"error": "parse error"}])
    good = add_ingestion(engine, user, hr_payload(T0, 25), errors=PARAM_LIMIT_ERROR)

    report = run(engine)

    assert statuses(engine) == {corrupt: "recovery_failed", scalar: "recovery_failed", good: "recovered"}
    assert report["failure_categories"] == {"invalid_structure": 2}
    assert count(engine, "heart_rate_metrics") == 25


def test_bad_points_are_rejected_by_category_and_good_points_still_land(engine):
    user = add_user(engine)
    payload = hr_payload(T0, 5)
    payload["data"]["metrics"][0]["data"][2]["Avg"] = "seventy"
    payload["data"]["metrics"][0]["data"][3].pop("date")
    ingestion = add_ingestion(engine, user, payload, errors=PARAM_LIMIT_ERROR)

    report = run(engine)

    item = report["ingestions"][0]
    assert item["outcome"] == "recovery_failed" and item["failure_category"] == "rejected_points"
    assert item["rejection_counts"] == {"non_numeric": 1, "missing_date": 1}
    assert count(engine, "heart_rate_metrics") == 3
    assert statuses(engine)[ingestion] == "recovery_failed"


def test_wide_row_merge_keeps_every_field(engine):
    user = add_user(engine)
    at = "2024-02-06 09:00:00 +0000"
    payload = {"data": {"metrics": [
        {"name": "step_count", "units": "count", "data": [{"date": at, "qty": 1200}]},
        {"name": "walking_running_distance", "units": "km", "data": [{"date": at, "qty": 0.9}]},
        {"name": "active_energy", "units": "kJ", "data": [{"date": at, "qty": 418.4}]},
    ]}}
    add_ingestion(engine, user, payload, errors=PARAM_LIMIT_ERROR)
    with engine.begin() as conn:  # the original kept the row, but only its first column
        conn.execute(sa.text("INSERT INTO activity_metrics (user_id, recorded_at, step_count) VALUES (:u, :t, 1200)"),
                     {"u": user, "t": T0 + timedelta(hours=1)})

    report = run(engine)

    assert report["tables"]["activity_metrics"]["filled"] == 1
    with engine.connect() as conn:
        row = conn.execute(sa.text("SELECT step_count, distance_meters, active_energy_burned_kcal "
                                   "FROM activity_metrics")).one()
    assert row.step_count == 1200 and row.distance_meters == pytest.approx(900)
    assert row.active_energy_burned_kcal == pytest.approx(100)


def test_two_concurrent_recoveries_give_the_rows_of_one(engine):
    user = add_user(engine)
    for day in range(12):
        add_ingestion(engine, user, hr_payload(T0 + timedelta(days=day), 400), errors=PARAM_LIMIT_ERROR)
    reports = []

    def go():
        reports.append(run(engine, max_concurrent_jobs=3, batch_size=4))

    threads = [threading.Thread(target=go) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sum(r["recovered"] for r in reports) == 12
    assert sum(r["rows_inserted_total"] for r in reports) == 12 * 400
    assert count(engine, "heart_rate_metrics") == 12 * 400
    with engine.connect() as conn:
        per_ingestion = conn.execute(
            sa.text("SELECT count(*) FROM recovery_log GROUP BY ingestion_id")).scalars().all()
    assert per_ingestion == [1] * 12, "each ingestion processed by exactly one run"
    rows = metric_rows(engine)
    assert len(rows["heart_rate_metrics"]) == len(set(rows["heart_rate_metrics"]))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"user_id": "not-a-uuid"}, "user_id must be a UUID"),
        ({"user_id": "'; DROP TABLE users; --"}, "user_id must be a UUID"),
        ({"statuses": ["bogus"]}, "statuses must be one or more of"),
        ({"statuses": ["error'; DELETE FROM raw_ingestions; --"]}, "unknown"),
        ({"batch_size": 0}, "batch_size must be a whole number from 1 to 10000, got 0"),
        ({"batch_size": -3}, "batch_size must be a whole number"),
        ({"batch_size": 10**9}, "batch_size must be a whole number"),
        ({"max_concurrent_jobs": 0}, "max_concurrent_jobs must be a whole number"),
    ],
)
def test_bad_parameters_stop_before_any_connection(kwargs, message):
    unreachable = sa.create_engine("postgresql+psycopg2://nobody:pw@127.0.0.1:1/none")
    with pytest.raises(params.ParameterError, match=message):
        recovery.run_recovery(unreachable, progress=False, **kwargs)


def test_invalid_batch_configuration_stops_before_touching_data(engine, monkeypatch):
    user = add_user(engine)
    add_ingestion(engine, user, hr_payload(T0, 5), errors=PARAM_LIMIT_ERROR)
    before = fingerprint(engine)
    monkeypatch.setenv("BATCH_HEART_RATE_CHUNK_SIZE", "20000")
    with pytest.raises(BatchConfigError, match="Invalid batch configuration: heart_rate_metrics"):
        run(engine)
    assert fingerprint(engine) == before


def test_environment_configures_defaults_and_arguments_win(monkeypatch):
    monkeypatch.setenv("RECOVERY_BATCH_SIZE", "7")
    monkeypatch.setenv("RECOVERY_MAX_CONCURRENT_JOBS", "2")
    monkeypatch.setenv("RECOVERY_VERIFICATION_ENABLED", "false")
    options = RecoveryOptions.validated()
    assert (options.batch_size, options.max_concurrent_jobs, options.verify) == (7, 2, False)
    assert RecoveryOptions.validated(batch_size=3, verify=True).batch_size == 3


@pytest.mark.parametrize(("url", "here"), [
    ("postgresql://postgres:@/postgres?host=/tmp/pg/data", True),  # the embedded server's socket
    ("postgresql://app@/health", True),  # libpq's default socket
    ("postgresql://app@localhost:5433/health", True),
    ("postgresql://app@[::1]/health", True),
    ("postgresql://app@127.0.0.1/health", True),
    ("postgresql://app@db.internal/health", False),
    ("postgresql://app@/health?host=localhost&host=db.internal", False),  # one of the hosts is elsewhere
])
def test_a_server_shares_this_machine_when_reached_by_a_socket_or_a_loopback_address(url, here, monkeypatch):
    monkeypatch.delenv("PGHOST", raising=False)
    assert db.shares_this_host(url) is here


def test_a_url_without_host_is_where_pghost_says(monkeypatch):
    monkeypatch.setenv("PGHOST", "db.internal")
    assert not db.shares_this_host("postgresql://app@/health")


@pytest.mark.parametrize(("cores", "here", "workers"), [(2, True, 3), (1, True, 2), (16, True, 5), (2, False, 5)])
def test_workers_default_to_five_or_to_the_cores_plus_one_of_a_server_on_this_machine(cores, here, workers,
                                                                                      monkeypatch):
    monkeypatch.setattr(options_module, "host_cores", lambda: cores)
    monkeypatch.delenv("RECOVERY_MAX_CONCURRENT_JOBS", raising=False)
    url = "postgresql://app@/health?host=/tmp/pg" if here else "postgresql://app@db.internal/health"
    assert RecoveryOptions.validated().max_concurrent_jobs is None  # decided when the run knows its server
    assert RecoveryOptions.validated().for_server(url).max_concurrent_jobs == workers
    assert RecoveryOptions.validated(max_concurrent_jobs=4).for_server(url).max_concurrent_jobs == 4
    monkeypatch.setenv("RECOVERY_MAX_CONCURRENT_JOBS", "6")
    assert RecoveryOptions.validated().for_server(url).max_concurrent_jobs == 6


def test_the_report_names_the_number_of_workers_the_run_used(engine, monkeypatch):
    monkeypatch.delenv("RECOVERY_MAX_CONCURRENT_JOBS", raising=False)
    user = add_user(engine)
    add_ingestion(engine, user, hr_payload(T0, 5), errors=PARAM_LIMIT_ERROR)
    report = recovery.run_recovery(engine, progress=False)
    assert report.parameters["max_concurrent_jobs"] == options_module.default_jobs(engine.url)
    assert recovery.run_recovery(engine, progress=False, max_concurrent_jobs=2).parameters["max_concurrent_jobs"] == 2


def test_report_file_is_written_with_a_utc_timestamped_name(engine, tmp_path):
    user = add_user(engine)
    add_ingestion(engine, user, hr_payload(T0, 5), errors=PARAM_LIMIT_ERROR)
    recovery.run_recovery(engine, progress=False, report_dir=tmp_path)
    [path] = list(tmp_path.glob("data_recovery_report_*.json"))
    assert len(path.stem) == len("data_recovery_report_20260101_120000")
    assert oct(path.stat().st_mode & 0o777) == "0o600"


@pytest.mark.parametrize("method", ["sql", "copy", "insert"])
def test_a_filled_null_takes_its_source_from_a_value_that_won(engine, method):
    # Stored by the API: steps at k and a heart rate Avg at j, both without a source.
    user = add_user(engine)
    k, j = T0, T0 + timedelta(minutes=5)
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO activity_metrics (user_id, recorded_at, step_count) VALUES (:u, :k, 100)"),
                     {"u": user, "k": k})
        conn.execute(sa.text("INSERT INTO heart_rate_metrics (user_id, recorded_at, heart_rate) VALUES (:u, :j, 70)"),
                     {"u": user, "j": j})
    stamp = "%Y-%m-%d %H:%M:%S +0000"
    payload = {"data": {"metrics": [
        # At k the payload's steps lose (the stored 100 stays): their source must not be filled in.
        {"name": "step_count", "units": "count", "data": [{"date": k.strftime(stamp), "qty": 999, "source": "Phone"}]},
        # At j its Min fills a NULL: the source comes with the value that won.
        {"name": "heart_rate", "units": "count/min",
         "data": [{"date": j.strftime(stamp), "Avg": 80, "Min": 50, "source": "Watch"}]},
    ]}}
    add_ingestion(engine, user, payload, errors=PARAM_LIMIT_ERROR)

    report = run(engine, insert_method=method)

    assert report["recovered"] == 1
    with engine.connect() as conn:
        activity = conn.execute(sa.text("SELECT step_count, source_device FROM activity_metrics")).one()
        heart = conn.execute(sa.text("SELECT heart_rate, heart_rate_min, source_device FROM heart_rate_metrics")).one()
    assert tuple(activity) == (100.0, None)
    assert tuple(heart) == (70.0, 50.0, "Watch")
    assert report["tables"]["activity_metrics"]["filled"] == 0  # nothing won there: the row is untouched
