"""``recover undo RUN_ID`` reverts exactly what one recovery run wrote, and refuses what it cannot.

Against the real PostgreSQL: a simulated incident is recovered, undone, recovered again. The
tables compared are every table of the schema except the tool's bookkeeping (``recovery_log``,
``recovery_journal``, ``recovery_undo``: they record the runs and the undo; ``reconciliation_cache``:
discovery fills it) and, in ``raw_ingestions``, ``processing_errors``, to which the recovery's
and the undo's notes are appended (never removed: the history stays). Status and ``processed_at``
are compared exactly.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from helpers import add_ingestion, add_user, fingerprint, metric_rows, statuses
from sqlalchemy.engine import Engine

from recovery_lib import simulate
from recovery_lib.cli import main
from recovery_lib.errors import UndoRefused
from recovery_lib.recovery import run_recovery, undo_run

NOW = datetime(2025, 6, 1, 12, tzinfo=UTC)
INCIDENT = {"users": 3, "payloads": 12, "seed": 7, "now": NOW, "large_points": 3_000}
BOOKKEEPING = {"recovery_log", "recovery_journal", "recovery_undo", "reconciliation_cache", "raw_ingestions"}
T0 = datetime(2024, 2, 6, 8, 0, tzinfo=UTC)


def tables(engine: Engine) -> dict:
    """Every table's fingerprint but the bookkeeping, and raw_ingestions without its notes."""
    prints = {name: value for name, value in fingerprint(engine).items() if name not in BOOKKEEPING}
    with engine.connect() as conn:
        prints["raw_ingestions"] = conn.execute(sa.text(
            "SELECT count(*), md5(string_agg(concat_ws('|', id, user_id, payload_hash, payload_size_bytes, "
            "md5(raw_payload::text), processing_status, processed_at, created_at), ',' ORDER BY id))"
            " FROM raw_ingestions")).one()
    return prints


def notes(engine: Engine) -> dict[str, list]:
    with engine.connect() as conn:
        return {i: (e if isinstance(e, list) else [e]) for i, e in conn.execute(
            sa.text("SELECT id::text, processing_errors FROM raw_ingestions")).all()}


def activity(engine: Engine, user_id: str) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(
            "SELECT recorded_at, step_count, distance_meters FROM activity_metrics WHERE user_id = :u "
            "ORDER BY recorded_at"), {"u": user_id})]


def activity_payload(points: list[tuple[datetime, str, float]]) -> dict:
    """A payload of activity metrics: (instant, metric name, quantity)."""
    metrics: dict[str, list] = {}
    for at, name, qty in points:
        metrics.setdefault(name, []).append({"date": at.strftime("%Y-%m-%d %H:%M:%S +0000"), "qty": qty})
    units = {"step_count": "count", "walking_running_distance": "m"}
    return {"data": {"metrics": [{"name": n, "units": units[n], "data": d} for n, d in metrics.items()]}}


@pytest.fixture()
def incident(engine: Engine) -> Engine:
    simulate.simulate(engine, **INCIDENT)
    return engine


@pytest.mark.parametrize("method", ["sql", "copy", "insert"])
def test_recover_undo_gives_the_tables_of_before_and_recovering_again_gives_the_first_recovery(incident, method):
    before, notes_before = tables(incident), notes(incident)
    first = run_recovery(incident, insert_method=method, progress=False)
    assert first.to_dict()["rows_inserted_total"] > 0
    recovered_rows, recovered_statuses = metric_rows(incident), statuses(incident)

    undone = undo_run(incident, run_id=first.run_id).to_dict()

    assert tables(incident) == before
    assert undone["undone"] == undone["ingestions_total"] == len(first.ingestions)
    assert undone["rows_deleted_total"] == first.to_dict()["rows_inserted_total"]
    assert undone["statuses_restored"] == len(first.ingestions) and undone["refused"] is None
    for ingestion_id, after in notes(incident).items():
        kept = notes_before[ingestion_id] if notes_before[ingestion_id] != [None] else []
        if ingestion_id in {i.ingestion_id for i in first.ingestions}:
            assert after[: len(kept)] == kept, "the original error and earlier notes stay"
            assert after[-1]["source"] == "undo" and after[-1]["run_id"] == first.run_id
        else:
            assert after == notes_before[ingestion_id]

    again = run_recovery(incident, insert_method=method, progress=False)
    assert metric_rows(incident) == recovered_rows
    assert statuses(incident) == recovered_statuses
    assert again.to_dict()["rows_inserted_total"] == first.to_dict()["rows_inserted_total"]


@pytest.mark.parametrize("method", ["sql", "copy", "insert"])
def test_every_row_a_run_inserted_carries_a_version_its_journal_names(incident, method):
    """The undo deletes a row only while it is a version the run left: its insert line, or a later fill
    of the same run (the next metric of the table filling the row), must name the row's xmin exactly."""
    from recovery_lib.schema import METRIC_TABLES

    report = run_recovery(incident, insert_method=method, progress=False)
    checked = unnamed = 0
    with incident.connect() as conn:
        for t in METRIC_TABLES.values():
            tag = f" AND m.{t.tag}::text = k.tag" if t.tag else ""
            n, bad = conn.execute(sa.text(
                f"SELECT count(*), count(*) FILTER (WHERE NOT EXISTS (SELECT 1 FROM recovery_journal o "
                "WHERE o.run_id = j.run_id AND o.table_name = j.table_name AND o.user_id = j.user_id "
                "AND o.row_xid = m.xmin::text::bigint AND k.at = ANY(o.keys))) "
                f"FROM recovery_journal j CROSS JOIN LATERAL unnest(j.keys, j.tags) AS k(at, tag) "
                f"JOIN {t.sql_name} m ON m.user_id = j.user_id AND m.{t.key} = k.at{tag} "
                "WHERE j.run_id = :run AND j.action = 'insert' AND j.table_name = :table"),
                {"run": report.run_id, "table": t.name}).one()
            checked, unnamed = checked + n, unnamed + bad
    assert checked == report.to_dict()["rows_inserted_total"] > 0
    assert unnamed == 0


def test_undo_dry_run_changes_nothing_and_predicts_the_undo(incident):
    first = run_recovery(incident, progress=False)
    everything = fingerprint(incident)
    predicted = undo_run(incident, run_id=first.run_id, dry_run=True).to_dict()
    assert fingerprint(incident) == everything
    done = undo_run(incident, run_id=first.run_id).to_dict()
    assert predicted["would_undo"] == done["undone"] > 0
    for figure in ("rows_deleted_total", "values_cleared_total", "statuses_restored", "tables"):
        assert predicted[figure] == done[figure]


def test_undo_twice_changes_nothing_the_second_time(incident):
    first = run_recovery(incident, progress=False)
    undo_run(incident, run_id=first.run_id)
    everything = fingerprint(incident)
    second = undo_run(incident, run_id=first.run_id[:8]).to_dict()
    assert fingerprint(incident) == everything
    assert second["undone"] == 0 and second["already_undone"] == len(first.ingestions)


def test_undo_sets_back_only_the_columns_the_run_filled(engine):
    """A wide row the API wrote keeps its own value; the distance the run filled becomes NULL again."""
    user = add_user(engine)
    add_ingestion(engine, user, activity_payload([(T0, "step_count", 120.0)]), status="processed")
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO activity_metrics (user_id, recorded_at, step_count) VALUES (:u, :t, 120)"),
                     {"u": user, "t": T0})
    lost = activity_payload([(T0, "walking_running_distance", 85.0), (T0 + timedelta(minutes=1), "step_count", 30.0)])
    add_ingestion(engine, user, lost, created_at=datetime.now(UTC) - timedelta(minutes=30))
    before = tables(engine)

    report = run_recovery(engine, progress=False).to_dict()
    assert report["rows_inserted_total"] == 1 and report["rows_filled_total"] == 1
    assert activity(engine, user) == [(T0, 120.0, 85.0), (T0 + timedelta(minutes=1), 30.0, None)]

    undone = undo_run(engine, run_id=report["run_id"]).to_dict()
    assert activity(engine, user) == [(T0, 120.0, None)]
    assert (undone["rows_deleted_total"], undone["values_cleared_total"]) == (1, 1)
    assert tables(engine) == before


def _two_runs_on_one_row(engine: Engine) -> tuple[str, str, str]:
    """Run A inserts a row (steps); run B, on a later payload, fills its distance. Returns (user, A, B)."""
    user = add_user(engine)
    add_ingestion(engine, user, activity_payload([(T0, "step_count", 50.0)]),
                  created_at=datetime.now(UTC) - timedelta(hours=2))
    run_a = run_recovery(engine, progress=False).run_id
    add_ingestion(engine, user, activity_payload([(T0, "walking_running_distance", 40.0)]),
                  created_at=datetime.now(UTC) - timedelta(hours=1))
    run_b = run_recovery(engine, progress=False)
    assert run_b.to_dict()["rows_filled_total"] == 1
    return user, run_a, run_b.run_id


def test_undo_refuses_naming_the_row_a_later_run_filled_then_works_once_that_run_is_undone(engine):
    user, run_a, run_b = _two_runs_on_one_row(engine)
    with engine.begin() as conn:
        row_id = conn.execute(sa.text("SELECT id FROM activity_metrics WHERE user_id = :u"), {"u": user}).scalar()
    everything = fingerprint(engine)

    with pytest.raises(UndoRefused) as refused:
        undo_run(engine, run_id=run_a)
    assert fingerprint(engine) == everything, "a refused undo writes nothing"
    [item] = [i for i in refused.value.report.to_dict()["ingestions"] if i["outcome"] == "refused"]
    assert item["conflicts"] == [{"table": "activity_metrics", "row_id": row_id, "user_id": user,
                                  "key": item["conflicts"][0]["key"], "changed_by": f"run {run_b}"}]
    assert datetime.fromisoformat(item["conflicts"][0]["key"]) == T0

    undo_run(engine, run_id=run_b)
    assert activity(engine, user) == [(T0, 50.0, None)]
    undo_run(engine, run_id=run_a)
    assert activity(engine, user) == []
    assert set(statuses(engine).values()) == {"error"}


def test_undo_refuses_a_row_changed_outside_the_tool_and_a_status_changed_since(engine, tmp_path, capsys):
    user = add_user(engine)
    ingestion = add_ingestion(engine, user, activity_payload([(T0, "step_count", 50.0), (T0 + timedelta(minutes=1),
                                                                                         "step_count", 60.0)]))
    run_id = run_recovery(engine, progress=False).run_id
    with engine.begin() as conn:  # someone corrects a value by hand
        row_id = conn.execute(sa.text("UPDATE activity_metrics SET step_count = 51 WHERE user_id = :u "
                                      "AND recorded_at = :t RETURNING id"), {"u": user, "t": T0}).scalar()
    everything = fingerprint(engine)
    assert main(["recover", "undo", run_id, "--report-dir", str(tmp_path)]) == 1
    out, err = capsys.readouterr()
    assert f"refused ingestion {ingestion}" in out
    assert f"activity_metrics row id {row_id}" in out and "a writer outside the recovery tool" in out
    assert "refused" in err and fingerprint(engine) == everything
    [report] = tmp_path.glob(f"undo_report_{run_id[:8]}_*.json")
    assert report.stat().st_mode & 0o777 == 0o600
    assert json.loads(report.read_text())["refused"]

    with engine.begin() as conn:  # the value back as the run wrote it is no longer "as the run left it"
        conn.execute(sa.text("UPDATE activity_metrics SET step_count = 50 WHERE id = :i"), {"i": row_id})
        conn.execute(sa.text("UPDATE raw_ingestions SET processing_status = 'processed' WHERE id = :i"),
                     {"i": ingestion})
    with pytest.raises(UndoRefused) as refused:
        undo_run(engine, run_id=run_id)
    [item] = refused.value.report.to_dict()["ingestions"]
    assert "status is now 'processed'" in item["message"] and "outside the recovery tool" in item["message"]


def test_undo_refuses_an_unknown_run_a_bad_id_and_a_run_from_before_the_journal(engine, capsys):
    assert main(["recover", "undo", "not-a-run"]) == 2
    assert "run_id must be a recovery run id" in capsys.readouterr().err
    assert main(["recover", "undo", "0123456789abcdef"]) == 1
    assert "no recovery run with that id" in capsys.readouterr().err
    user = add_user(engine)
    add_ingestion(engine, user, activity_payload([(T0, "step_count", 50.0)]))
    run_id = run_recovery(engine, progress=False).run_id
    with engine.begin() as conn:  # as a database recovered by an older version of the tool has it
        conn.execute(sa.text("UPDATE recovery_log SET status_before = NULL"))
    with pytest.raises(UndoRefused, match="before the journal existed"):
        undo_run(engine, run_id=run_id)


def test_undo_cli_dry_run_prints_what_it_would_do_and_writes_its_report(incident, tmp_path, capsys):
    first = run_recovery(incident, progress=False)
    everything = fingerprint(incident)
    assert main(["recover", "undo", first.run_id, "--dry-run", "--report-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"dry run: undo of run {first.run_id[:8]} would revert {len(first.ingestions)} of")
    assert fingerprint(incident) == everything
    [report] = tmp_path.glob("undo_report_*.json")
    assert json.loads(report.read_text())["dry_run"] is True and report.stat().st_mode & 0o777 == 0o600


def test_the_undo_notebook_previews_reverts_and_refuses_naming_the_row_through_the_runner(incident, tmp_path):
    from recovery_lib.runbook import audit
    from recovery_lib.runbook import execute as runner
    from recovery_lib.runbook.notebooks import headline

    before = tables(incident)
    first = run_recovery(incident, progress=False)
    recovered, runs = tables(incident), tmp_path / "runs"

    preview = runner.run_notebook("undo", {"run_id": first.run_id[:8], "dry_run": "True"}, runs_dir=runs)
    assert preview.ok, preview.error
    assert preview.report["dry_run"] is True and preview.report["would_undo"] == len(first.ingestions)
    assert tables(incident) == recovered

    undo = runner.run_notebook("undo", {"run_id": first.run_id}, runs_dir=runs)
    assert undo.ok, undo.error
    assert undo.report["undone"] == len(first.ingestions)
    assert undo.report["rows_deleted_total"] == first.to_dict()["rows_inserted_total"] > 0
    assert headline("undo", undo.report).startswith(f"undid run {first.run_id[:8]}: {len(first.ingestions)} of")
    assert tables(incident) == before

    second = run_recovery(incident, progress=False)
    with incident.begin() as conn:  # someone corrects a value by hand after the second recovery
        row_id = conn.execute(sa.text(
            "UPDATE heart_rate_metrics SET heart_rate = heart_rate + 1 WHERE id = "
            "(SELECT min(id) FROM heart_rate_metrics WHERE created_at >= :t) RETURNING id"),
            {"t": second.started_at}).scalar()
    everything = fingerprint(incident)
    refused = runner.run_notebook("undo", {"run_id": second.run_id}, runs_dir=runs)
    assert not refused.ok and "UndoRefused" in refused.error
    shown = refused.notebook.read_text()
    assert f"undo of run {second.run_id[:8]} refused" in shown and "a writer outside the recovery tool" in shown
    assert str(row_id) in shown and fingerprint(incident) == everything
    assert [r["outcome"] for r in audit.read_index(runs / "index.jsonl")] == ["ok", "ok", "failed"]


# --- crash safety ---------------------------------------------------------------------------------


def _start_undo(engine: Engine, run_id: str, cwd: Path) -> subprocess.Popen:
    engine.dispose()
    return subprocess.Popen(
        [sys.executable, "-m", "recovery_lib", "recover", "undo", run_id, "--report-dir", str(cwd)], cwd=cwd,
        env={**os.environ, "DATABASE_URL": engine.url.render_as_string(hide_password=False)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _waiting(engine: Engine) -> bool:
    with engine.begin() as conn:
        return bool(conn.execute(sa.text(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'health-export-recovery' "
            "AND wait_event_type = 'Lock' AND datname = current_database()")).scalar())


def _wait_gone(engine: Engine) -> None:
    """Until the killed run's busy backends have noticed and ended (a backend finds out when it next answers)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with engine.begin() as conn:
            if not conn.execute(sa.text(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'health-export-recovery' "
                    "AND datname = current_database() AND state <> 'idle'")).scalar():
                return
        time.sleep(0.05)
    with engine.begin() as conn:
        left = conn.execute(sa.text("SELECT pid, state, wait_event_type, wait_event, left(query, 80) "
                                    "FROM pg_stat_activity WHERE application_name = 'health-export-recovery'")).all()
    raise AssertionError(f"the killed undo's backends are still there after 30 s: {left}")


@pytest.mark.slow
def test_undo_killed_mid_ingestion_and_between_ingestions_then_rerun_completes(incident, tmp_path):
    before = tables(incident)
    first = run_recovery(incident, progress=False)
    recovered = tables(incident)
    admin = sa.create_engine(incident.url, connect_args={"application_name": "fault-injector"})
    try:
        # 1. Stopped at the last statement of the first ingestion's undo (recovery_undo is locked), killed:
        # nothing of that ingestion's undo is left.
        with admin.connect() as holder:
            holder.execute(sa.text("BEGIN; LOCK TABLE recovery_undo IN SHARE MODE"))
            proc = _start_undo(incident, first.run_id, tmp_path)
            deadline = time.monotonic() + 60
            while not _waiting(admin) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert _waiting(admin), "the undo never reached its log"
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
            holder.execute(sa.text("ROLLBACK"))
        _wait_gone(admin)
        assert tables(incident) == recovered
        # 2. Stopped between ingestions (the user lock of the last user it reaches is held), killed:
        # the ingestions before are undone, whole, the others untouched.
        with admin.connect() as conn:
            order = [r.user_id for r in conn.execute(sa.text(
                "SELECT i.user_id::text AS user_id FROM recovery_log l JOIN raw_ingestions i ON i.id = l.ingestion_id "
                "WHERE l.run_id = :r ORDER BY l.finished_at DESC, l.id DESC"), {"r": first.run_id})]
        last_user = max(set(order), key=order.index)
        assert order.index(last_user) > 0
        with admin.connect() as holder:
            holder.execute(sa.text("SELECT pg_advisory_lock(hashtextextended(:k, 0))"),
                           {"k": f"health-export-recovery:user:{last_user}"})
            holder.commit()
            proc = _start_undo(incident, first.run_id, tmp_path)
            deadline = time.monotonic() + 60
            while not _waiting(admin) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert _waiting(admin), "the undo never reached the locked user"
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
            holder.execute(sa.text("SELECT pg_advisory_unlock_all()"))
            holder.commit()
        with admin.connect() as conn:
            undone = conn.execute(sa.text("SELECT count(*), count(DISTINCT ingestion_id) FROM recovery_undo")).one()
        assert undone[0] == undone[1] == order.index(last_user), "the ingestions before the lock, each once"
        assert tables(incident) not in (before, recovered)
        _wait_gone(admin)
        proc = _start_undo(incident, first.run_id, tmp_path)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-3000:]
        assert tables(incident) == before
        with admin.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM recovery_undo")).scalar() == len(first.ingestions)
    finally:
        admin.dispose()
