"""Bad input inside a real recovery run, and bad parameters refused before any connection.

One incident holds good payloads and every kind of broken one (each ingestion its own user, so
each one's rows can be counted alone). One ``python -m recovery_lib recover`` run goes over all of
them: each broken ingestion must end ``recovery_failed`` with its category appended after the
original error (which is kept), or ``recovered`` where nothing was actually wrong; every good
ingestion must be recovered with exactly its rows; the run must exit 0.

Bad parameters must be refused with exit code 2 and a message naming the parameter and what is
allowed, before any connection: ``DATABASE_URL`` points at a TCP listener of the test that counts
the connections it receives (a connection attempt would be seen there, and would end differently).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import reset_schema
from helpers import add_user, hr_payload

from recovery_lib import db
from recovery_lib.checksums import PAYLOAD_SHA256_SQL
from recovery_lib.cli import main
from recovery_lib.schema import METRIC_TABLES

T0 = datetime(2024, 2, 6, 8, 0, tzinfo=UTC)
ORIGINAL = [{"error": "psycopg2.errors.ProgramLimitExceeded: number of parameters must be between 0 and 65535"}]
BIG = 200_000  # points in one metric of one payload
HUGE = "1" + "0" * 400 + ".5"  # a JSON number no float can hold
SOURCE = "Åpple Wätch 🫀 «Ünïcödé» \t tab\nnew line \\N back\\slash \\. end"


def at(minutes: float) -> str:
    return (T0 + timedelta(minutes=minutes)).strftime("%Y-%m-%d %H:%M:%S +0000")


def hr(points: list[dict[str, Any]], name: Any = "heart_rate") -> dict[str, Any]:
    metric: dict[str, Any] = {"units": "count/min", "data": points}
    if name is not None:
        metric["name"] = name
    return metric


def envelope(*metrics: dict[str, Any]) -> dict[str, Any]:
    return {"data": {"metrics": list(metrics)}}


def good_points(n: int, start: float = 0) -> list[dict[str, Any]]:
    return [{"date": at(start + i), "Min": 50 + i % 5, "Avg": 60 + i % 30, "Max": 90 + i % 40} for i in range(n)]


def nested(depth: int) -> Any:
    value: Any = "junk"
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


@dataclass
class Case:
    """One stored ingestion and what the run must make of it."""

    payload: Any  # a Python value, or raw JSON text when ``raw`` (for what json.dumps cannot write)
    outcome: str  # recovered | recovery_failed
    rows: dict[str, int] = field(default_factory=dict)  # rows of this ingestion's user afterwards
    category: str | None = None  # of the recovery note; None when recovered
    rejections: dict[str, int] | None = None  # for category rejected_points
    status: str = "error"
    errors: Any = field(default_factory=lambda: ORIGINAL)
    raw: bool = False
    existing_hr: int = 0  # heart rate rows of the first points already stored before the run


CASES: dict[str, Case] = {
    # --- good -------------------------------------------------------------------------------------
    "good_heart_rate": Case(envelope(hr(good_points(50))), "recovered", {"heart_rate_metrics": 50}),
    "good_mixed_tables": Case(
        envelope(
            hr(good_points(10)),
            {"name": "blood_pressure", "units": "mmHg",
             "data": [{"date": at(i), "systolic": 118 + i, "diastolic": 76, "pulse": 61} for i in range(4)]},
            {"name": "step_count", "units": "count", "data": [{"date": at(60 * i), "qty": 100 * i} for i in range(6)]},
            {"name": "walking_running_distance", "units": "km",
             "data": [{"date": at(60 * i), "qty": 0.1 * i} for i in range(6)]},
        ),
        "recovered", {"heart_rate_metrics": 10, "blood_pressure_metrics": 4, "activity_metrics": 6},
    ),
    "good_partial_success_with_rows_present": Case(
        envelope(hr(good_points(20))), "recovered", {"heart_rate_metrics": 20}, status="partial_success",
        existing_hr=5,
    ),
    "good_with_errors_as_a_plain_string": Case(
        envelope(hr(good_points(7))), "recovered", {"heart_rate_metrics": 7}, errors="connection reset by peer",
    ),
    # --- nothing actually wrong -------------------------------------------------------------------
    "unicode_names_and_sources": Case(
        envelope(
            {"name": "心率_🫀_fréquence", "units": "bpm", "data": [{"date": at(0), "qty": 70}]},
            hr([{**p, "source": SOURCE} for p in good_points(5)]),
        ),
        "recovered", {"heart_rate_metrics": 5, "other_metrics": 1},  # the unknown name is kept, named
    ),
    "metric_of_200000_points": Case(
        hr_payload(T0 - timedelta(minutes=BIG), BIG), "recovered", {"heart_rate_metrics": BIG},
    ),
    # A value under data the catalogue has no place for is named as unsupported: the rows land, the
    # ingestion is not complete (beside data, outside the export's envelope, is not the payload's).
    "deeply_nested_junk_beside_the_data": Case(
        {"data": {"metrics": [hr(good_points(3))], "junk": nested(150)}, "more_junk": nested(150)},
        "recovery_failed", {"heart_rate_metrics": 3}, "unsupported_points",
    ),
    # --- payload-level failures -------------------------------------------------------------------
    "not_json_string_scalar": Case("{broken json, kept as a string by the API", "recovery_failed",
                                   category="invalid_structure"),
    "json_array_top_level": Case([envelope(hr(good_points(3)))], "recovery_failed", category="invalid_structure"),
    "missing_data": Case({"metrics": [hr(good_points(3))]}, "recovery_failed", category="invalid_structure"),
    "data_is_null": Case({"data": None}, "recovery_failed", category="invalid_structure"),
    "metrics_not_a_list": Case({"data": {"metrics": {"name": "heart_rate", "data": good_points(3)}}},
                               "recovery_failed", category="invalid_structure", status="partial_success"),
    "deeply_nested_junk_as_a_metric": Case({"data": {"metrics": [nested(200)]}}, "recovery_failed",
                                           category="invalid_structure"),
    "empty_object": Case({}, "recovery_failed", category="invalid_structure", errors=None),
    "empty_data": Case({"data": {}}, "recovery_failed", category="empty_payload"),
    # --- point-level failures: the good points land, the ingestion is failed with the counts ------
    "metric_without_name": Case(
        envelope(hr(good_points(3), name=None), hr(good_points(4, start=100))), "recovery_failed",
        {"heart_rate_metrics": 4}, "rejected_points", {"missing_name": 1},
    ),
    "points_without_date": Case(
        envelope(hr([{"Avg": 70}, {"date": None, "Avg": 71}, *good_points(3)])), "recovery_failed",
        {"heart_rate_metrics": 3}, "rejected_points", {"missing_date": 2},
    ),
    "unparseable_dates": Case(
        envelope(hr([{"date": d, "Avg": 70} for d in (
            "yesterday", "2024-13-45 25:61:00 +0000", "2024-02-06 14:30:00", "06/02/2024 14:30", 1707229800, "",
        )] + good_points(2, start=10))),
        "recovery_failed", {"heart_rate_metrics": 2}, "rejected_points", {"invalid_date": 6},
    ),
    "dates_before_1970_and_far_future": Case(
        envelope(hr([{"date": d, "Avg": 70} for d in (
            "1969-12-31 23:59:59 +0000", "1900-01-01 00:00:00 +0000", "0001-01-01 00:00:00 +0100",
            "2999-01-01 00:00:00 +0000", "9999-12-31 23:59:59 -1400",
        )] + good_points(2, start=10))),
        "recovery_failed", {"heart_rate_metrics": 2}, "rejected_points", {"date_out_of_range": 5},
    ),
    "strings_where_numbers_belong": Case(
        envelope(
            hr([{"date": at(i), "Avg": v} for i, v in enumerate(("72", "seventy", True, [72], {"qty": "72"}))]
               + good_points(2, start=10)),
            {"name": "step_count", "units": "count", "data": [{"date": at(0), "qty": "1 234"}]},
        ),
        "recovery_failed", {"heart_rate_metrics": 2}, "rejected_points", {"non_numeric": 6},
    ),
    "nan_like_strings": Case(
        envelope(hr([{"date": at(i), "Avg": v} for i, v in enumerate(("NaN", "Infinity", "-Infinity", "nan"))]
                    + good_points(2, start=10))),
        "recovery_failed", {"heart_rate_metrics": 2}, "rejected_points", {"non_numeric": 4},
    ),
    # jsonb keeps any number: 1e400 reads back as a huge int, 10^400 + 0.5 as an infinite float.
    "numbers_too_big_for_a_float": Case(
        '{"data": {"metrics": [{"name": "heart_rate", "units": "count/min", "data": ['
        f'{{"date": "{at(0)}", "Avg": 1e400}}, {{"date": "{at(1)}", "Avg": {HUGE}}}, '
        f'{{"date": "{at(2)}", "Avg": -{HUGE}}}, {{"date": "{at(3)}", "Avg": 70, "Max": {HUGE}}}, '
        f'{{"date": "{at(4)}", "Avg": 71}}]}}]}}}}',
        "recovery_failed", {"heart_rate_metrics": 1}, "rejected_points", {"out_of_range": 1, "non_finite": 3},
        raw=True,
    ),
    "negative_and_absurd_values": Case(
        envelope(
            hr([{"date": at(0), "Avg": 10_000}, {"date": at(1), "Avg": -5}, {"date": at(2), "Avg": 0},
                {"date": at(3), "Avg": 70, "Min": -70}, {"date": at(4), "Avg": 70, "Max": 1e300},
                *good_points(2, start=10)]),
            {"name": "step_count", "units": "count", "data": [{"date": at(0), "qty": -1}, {"date": at(60), "qty": 1e12},
                                                               {"date": at(120), "qty": 500}]},
        ),
        "recovery_failed", {"heart_rate_metrics": 2, "activity_metrics": 1}, "rejected_points", {"out_of_range": 7},
    ),
    "duplicated_points_first_wins": Case(
        envelope(hr([{"date": at(0), "Avg": 61}, {"date": at(1), "Avg": 62}, {"date": at(0), "Avg": 99},
                     {"date": "2024-02-06 00:00:00 -0800", "Avg": 98}, {"date": at(1), "Avg": 97}])),
        "recovery_failed", {"heart_rate_metrics": 2}, "rejected_points", {"duplicate_point": 3},
    ),
    "points_that_are_not_objects": Case(
        envelope(hr(["72", None, 72, [at(0), 72], nested(100), *good_points(1, start=10)])),
        "recovery_failed", {"heart_rate_metrics": 1}, "rejected_points", {"invalid_point": 5},
    ),
    "deeply_nested_junk_as_a_value": Case(
        envelope(hr([{"date": at(0), "Avg": nested(200)}, {"date": at(1), "Avg": 70, "Min": nested(50)},
                     *good_points(1, start=10)])),
        "recovery_failed", {"heart_rate_metrics": 1}, "rejected_points", {"non_numeric": 2},
    ),
}


def store(engine, user: str, case: Case, created_at: datetime) -> str:
    text = case.payload if case.raw else json.dumps(case.payload, ensure_ascii=False)
    with engine.begin() as conn:
        ingestion = conn.execute(
            sa.text(
                "INSERT INTO raw_ingestions (id, user_id, payload_hash, payload_size_bytes, raw_payload, "
                "processing_status, processing_errors, processed_at, created_at) VALUES (gen_random_uuid(), :u, '', "
                ":size, CAST(:payload AS jsonb), :status, CAST(:errors AS jsonb), :at, :at) RETURNING id::text"
            ),
            {"u": user, "size": len(text.encode()), "payload": text, "status": case.status, "at": created_at,
             "errors": None if case.errors is None else json.dumps(case.errors)},
        ).scalar_one()
        conn.execute(sa.text(f"UPDATE raw_ingestions SET payload_hash = {PAYLOAD_SHA256_SQL} WHERE id = :id"),
                     {"id": ingestion})
        if case.existing_hr:
            conn.execute(
                sa.text("INSERT INTO heart_rate_metrics (user_id, recorded_at, heart_rate) "
                        "SELECT :u, CAST(:t AS timestamptz) + make_interval(mins => g), 60 + g "
                        "FROM generate_series(0, :n - 1) g"),
                {"u": user, "t": T0, "n": case.existing_hr},
            )
    return ingestion


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str
    seconds: float
    report: dict[str, Any]
    ids: dict[str, str]  # case -> ingestion id
    users: dict[str, str]  # case -> user id
    status: dict[str, str]  # ingestion -> status
    errors: dict[str, Any]  # ingestion -> processing_errors
    rows: dict[str, dict[str, int]]  # user -> table -> rows
    hr_values: dict[str, list[tuple]]  # user -> (recorded_at, heart_rate, source_device) ordered


@pytest.fixture(scope="module")
def bad_run(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    engine = db.get_engine(database_url)
    reset_schema(engine)
    ids, users = {}, {}
    for n, (name, case) in enumerate(CASES.items()):
        users[name] = add_user(engine)
        ids[name] = store(engine, users[name], case, T0 + timedelta(seconds=n))
    folder = tmp_path_factory.mktemp("bad-input")
    engine.dispose()
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "recovery_lib", "recover", "--no-progress", "--report-dir", str(folder)],
        cwd=folder, env={**os.environ, "DATABASE_URL": engine.url.render_as_string(hide_password=False)},
        capture_output=True, text=True, timeout=600,
    )
    seconds = time.monotonic() - started
    reports = list(folder.glob("data_recovery_report_*.json"))
    with engine.connect() as conn:
        status = dict(conn.execute(sa.text("SELECT id::text, processing_status FROM raw_ingestions")).all())
        errors = dict(conn.execute(sa.text("SELECT id::text, processing_errors FROM raw_ingestions")).all())
        rows: dict[str, dict[str, int]] = {u: dict.fromkeys(METRIC_TABLES, 0) for u in users.values()}
        for table in METRIC_TABLES:
            for user, n in conn.execute(sa.text(f"SELECT user_id::text, count(*) FROM {table} GROUP BY 1")):
                rows[user][table] = n
        hr_values: dict[str, list[tuple]] = {}
        for user, recorded, value, source in conn.execute(sa.text(
                "SELECT user_id::text, recorded_at, heart_rate, source_device FROM heart_rate_metrics "
                "WHERE user_id <> ALL(CAST(:big AS uuid[])) ORDER BY user_id, recorded_at"),
                {"big": [users["metric_of_200000_points"]]}):
            hr_values.setdefault(user, []).append((recorded, value, source))
    yield Run(result.returncode, result.stdout, result.stderr, seconds,
              json.loads(reports[0].read_text()) if len(reports) == 1 else {}, ids, users, status, errors, rows,
              hr_values)
    reset_schema(engine)


def test_the_run_over_26_bad_and_good_payloads_exits_0_and_accounts_for_each(bad_run: Run):
    assert len(CASES) == 26
    assert bad_run.code == 0, bad_run.stderr[-3000:]
    assert "Traceback" not in bad_run.stderr and "Exception in thread" not in bad_run.stderr, bad_run.stderr[-3000:]
    report = bad_run.report
    assert report, "the run wrote no report"
    assert report["candidates"] == len(CASES)
    assert sorted(i["ingestion_id"] for i in report["ingestions"]) == sorted(bad_run.ids.values())
    expected_failures: dict[str, int] = {}
    for case in CASES.values():
        if case.category:
            expected_failures[case.category] = expected_failures.get(case.category, 0) + 1
    assert report["failure_categories"] == expected_failures
    assert report["recovered"] == sum(c.outcome == "recovered" for c in CASES.values())
    assert report["missing_after_total"] == 0


@pytest.mark.parametrize("name", list(CASES))
def test_each_payload_gets_its_outcome_category_and_exactly_its_rows(bad_run: Run, name: str):
    case = CASES[name]
    ingestion, user = bad_run.ids[name], bad_run.users[name]
    assert bad_run.status[ingestion] == case.outcome
    assert bad_run.rows[user] == {t: case.rows.get(t, 0) for t in METRIC_TABLES}

    errors = bad_run.errors[ingestion]
    notes = [e for e in errors if isinstance(e, dict) and e.get("source") == "recovery"] if isinstance(
        errors, list) else []
    if case.outcome == "recovered":
        assert notes == []
        assert errors == case.errors, "a recovered ingestion keeps its original errors untouched"
        return
    [note] = notes
    assert note["category"] == case.category
    assert errors[-1] == note, "the recovery note is appended last"
    original = case.errors if isinstance(case.errors, list) else ([] if case.errors is None else [case.errors])
    assert errors[:-1] == original, "the original error is kept, before the note"
    if case.rejections is not None:
        assert note["rejections"] == case.rejections
        assert str(sum(case.rejections.values())) in note["message"]


def test_values_stored_are_the_first_of_duplicates_and_unicode_sources_are_kept_exactly(bad_run: Run):
    duplicated = bad_run.hr_values[bad_run.users["duplicated_points_first_wins"]]
    assert [(r[0], r[1]) for r in duplicated] == [(T0, 61.0), (T0 + timedelta(minutes=1), 62.0)]
    unicode = bad_run.hr_values[bad_run.users["unicode_names_and_sources"]]
    assert [r[2] for r in unicode] == [SOURCE] * 5
    good = bad_run.hr_values[bad_run.users["good_heart_rate"]]
    assert [r[1] for r in good] == [float(p["Avg"]) for p in good_points(50)]


def test_the_200000_point_metric_is_recovered_within_a_minute(bad_run: Run):
    assert bad_run.status[bad_run.ids["metric_of_200000_points"]] == "recovered"
    print(f"\nthe whole run, with {BIG:,} points in one metric, took {bad_run.seconds:.1f} s")
    assert bad_run.seconds < 60


# --- parameters: refused before any connection ----------------------------------------------------

SECRET = "trap-password-5d1c"


class ConnectionTrap:
    """A TCP listener standing in for the database: counts every connection, closes it at once."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(0.02)
        self.port = self.server.getsockname()[1]
        self.accepted = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"postgresql://trap:{SECRET}@127.0.0.1:{self.port}/trapdb"

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                client, _ = self.server.accept()
            except TimeoutError:
                continue
            self.accepted += 1
            client.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        self.server.close()


@pytest.fixture()
def trap(monkeypatch: pytest.MonkeyPatch) -> Iterator[ConnectionTrap]:
    listener = ConnectionTrap()
    monkeypatch.setenv("DATABASE_URL", listener.url)
    for name in ("RECOVERY_BATCH_SIZE", "RECOVERY_MAX_CONCURRENT_JOBS", "RECOVERY_VERIFICATION_ENABLED"):
        monkeypatch.delenv(name, raising=False)
    yield listener
    listener.close()


def exit_code(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:  # argparse's own refusals
        return int(exc.code or 0)


BAD_ARGUMENTS = [
    (["recover", "--user-id", "'; DROP TABLE users; --"], "user_id must be a UUID"),
    (["recover", "--user-id", "550e8400-e29b-41d4-a716-44665544000g"], "user_id must be a UUID"),
    (["recover", "--status", "error' OR '1'='1"], "statuses must be one or more of pending, processed"),
    (["recover", "--status", "error;DELETE FROM raw_ingestions"], "statuses must be one or more of"),
    (["recover", "--status", "ERROR"], "unknown: 'ERROR'"),
    (["recover", "--status", "error", "recovering"], "unknown: 'recovering'"),
    (["recover", "--batch-size", "-5"], "batch_size must be a whole number from 1 to 10000, got -5"),
    (["recover", "--batch-size", "1000000000"], "batch_size must be a whole number from 1 to 10000, got 1000000000"),
    (["recover", "--batch-size", "2.5"], "batch_size must be a whole number from 1 to 10000"),
    (["recover", "--dry-run", "--batch-size", "0"], "batch_size must be a whole number from 1 to 10000, got 0"),
    (["recover", "--max-concurrent-jobs", "0"], "max_concurrent_jobs must be a whole number from 1 to 64, got 0"),
    (["recover", "--max-concurrent-jobs", "-2"], "max_concurrent_jobs must be a whole number from 1 to 64, got -2"),
    (["recover", "--max-concurrent-jobs", "65"], "max_concurrent_jobs must be a whole number from 1 to 64, got 65"),
    (["recover", "--insert-method", "drop"], "invalid choice: 'drop'"),
    (["reprocess-failed", "--batch-size", "0"], "batch_size must be a whole number from 1 to 10000, got 0"),
    (["verify", "--user-id", "1 OR 1=1"], "user_id must be a UUID"),
    (["verify", "--since", "0h"], "since must be a whole number from 1 to 8784, got 0"),
    (["monitor", "--hours", "0"], "hours must be a whole number from 1 to 8784, got 0"),
    (["monitor", "--hours", "-3"], "hours must be a whole number from 1 to 8784, got -3"),
    (["monitor", "--hours", "8785"], "hours must be a whole number from 1 to 8784, got 8785"),
    (["monitor", "--hours", "24; DROP TABLE users"], "hours must be a whole number from 1 to 8784"),
    (["monitor", "--data-loss-critical-pct", "150"], "must be a percentage from 0 to 100"),
]


@pytest.mark.parametrize(("argv", "message"), BAD_ARGUMENTS, ids=[" ".join(a) for a, _ in BAD_ARGUMENTS])
def test_bad_argument_exits_2_naming_it_before_any_connection(trap, capsys, argv, message):
    assert exit_code(argv) == 2
    err = capsys.readouterr().err
    assert message in err
    assert trap.accepted == 0, "a connection was attempted before the parameters were checked"
    assert SECRET not in err


BAD_ENVIRONMENT = [
    ({"RECOVERY_BATCH_SIZE": "0"}, "RECOVERY_BATCH_SIZE must be a whole number from 1 to 10000, got 0"),
    ({"RECOVERY_BATCH_SIZE": "many"}, "RECOVERY_BATCH_SIZE must be a whole number from 1 to 10000"),
    ({"RECOVERY_MAX_CONCURRENT_JOBS": "0"}, "RECOVERY_MAX_CONCURRENT_JOBS must be a whole number from 1 to 64"),
    ({"RECOVERY_VERIFICATION_ENABLED": "maybe"}, "RECOVERY_VERIFICATION_ENABLED must be True or False"),
    ({"BATCH_HEART_RATE_CHUNK_SIZE": "lots"}, "BATCH_HEART_RATE_CHUNK_SIZE='lots' is not a whole number"),
    ({"BATCH_WORKOUT_CHUNK_SIZE": "0"}, "BATCH_WORKOUT_CHUNK_SIZE"),
]


@pytest.mark.parametrize(("env", "message"), BAD_ENVIRONMENT, ids=[next(iter(e.items()))[0] + "=" + next(
    iter(e.values())) for e, _ in BAD_ENVIRONMENT])
def test_bad_environment_setting_exits_2_naming_the_variable_before_any_connection(
    trap, capsys, monkeypatch, env, message
):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert exit_code(["recover", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert trap.accepted == 0


def test_the_trap_does_see_a_connection_attempt(trap, capsys):
    """The control: a valid command does try to connect, and fails differently (not 2)."""
    code = exit_code(["monitor", "--hours", "1", "--no-push"])
    assert code == 1 and trap.accepted >= 1
    assert SECRET not in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [(["monitor", "--hours", "0"], "hours must be a whole number from 1 to 8784, got 0"),
     (["recover", "--batch-size", "-1"], "batch_size must be a whole number from 1 to 10000, got -1")],
    ids=["monitor --hours 0", "recover --batch-size -1"],
)
def test_bad_argument_exit_code_2_from_the_real_command(tmp_path: Path, argv, message):
    unreachable = f"postgresql://nobody:{SECRET}@127.0.0.1:1/none"
    result = subprocess.run([sys.executable, "-m", "recovery_lib", *argv], cwd=tmp_path, capture_output=True,
                            text=True, env={**os.environ, "DATABASE_URL": unreachable}, timeout=60)
    assert result.returncode == 2
    assert message in result.stderr
    assert "connect" not in result.stderr.lower() and SECRET not in result.stderr
