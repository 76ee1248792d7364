"""The weekly review: per ISO week from raw_ingestions and recovery_log, thresholds from the runs archive.

One incident with known dates: parameter-limit errors received 3, 10 and 40 days ago (the last one
before the 3-week window), a payload recovery cannot read, all recovered now by a real run; then
a payload marked processed whose rows never arrived. The archive holds real monitor reports
(built on that incident), recorded with ``audit.append_record`` as the runner does.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from helpers import add_ingestion, add_user, hr_payload
from sqlalchemy.engine import Engine

from recovery_lib import recovery
from recovery_lib.cli import main
from recovery_lib.monitor import build_monitoring_report
from recovery_lib.review import build_review, headline
from recovery_lib.review import thresholds as th
from recovery_lib.review.build import week_start
from recovery_lib.runbook import audit

LIMIT = [{"error": "number of parameters must be between 0 and 65535"}]
POINTS = 30


def record_report(runs: Path, notebook: str, report: dict[str, Any], n: int) -> Path:
    """A report file and its index line, as the runner writes them."""
    runs.mkdir(parents=True, exist_ok=True)
    path = runs / f"20260101T1200{n:02d}Z_{notebook}.json"
    path.write_text(json.dumps(report), encoding="utf-8")
    audit.append_record(runs / audit.INDEX_NAME, {
        "time": datetime.now(UTC).isoformat(timespec="seconds"), "notebook": notebook, "outcome": "ok",
        "report": path.name, "report_sha256": audit.sha256_file(path),
    })
    return path


@pytest.fixture()
def incident(engine: Engine, tmp_path: Path) -> dict[str, Any]:
    now = datetime.now(UTC)
    user = add_user(engine)
    created = {age: now - timedelta(days=age) for age in (3, 10, 40)}
    ids = {age: add_ingestion(engine, user, hr_payload(at - timedelta(hours=2), POINTS), errors=LIMIT, created_at=at)
           for age, at in created.items()}
    broken = add_ingestion(engine, user, {"data": {"metrics": "not a list"}}, errors=LIMIT,
                           created_at=now - timedelta(days=2))
    runs = tmp_path / "runs"
    monitor = build_monitoring_report(engine, hours=24 * 60, data_loss_critical_pct=100,
                                      data_loss_warning_pct=100).to_dict()
    for n in range(3):
        record_report(runs, "monitor", monitor, n)
    tampered = record_report(runs, "monitor", monitor, 3)
    tampered.write_text(json.dumps({**monitor, "alerts": []}), encoding="utf-8")  # edited after recording

    recovered = recovery.run_recovery(engine, progress=False).to_dict()
    record_report(runs, "recover", recovered, 4)
    silent = add_ingestion(engine, user, hr_payload(now - timedelta(days=1, hours=2), POINTS), status="processed",
                           created_at=now - timedelta(days=1))
    return {"created": created, "ids": ids, "broken": broken, "silent": silent, "runs": runs, "monitor": monitor,
            "recovered": recovered, "now": now}


def test_each_iso_week_counts_its_ingestions_losses_and_recoveries(engine: Engine, incident: dict[str, Any]) -> None:
    data = build_review(engine, weeks=3, runs_dir=str(incident["runs"])).to_dict()
    current = week_start(incident["now"])
    assert [w["week_start"] for w in data["by_week"]] == [
        (current - timedelta(weeks=n)).isoformat() for n in (2, 1, 0)]
    assert [w["partial"] for w in data["by_week"]] == [False, False, True]
    assert data["by_week"][-1]["week"] == "{}-W{:02d}".format(*current.isocalendar()[:2])

    weeks = {w["week_start"]: w for w in data["by_week"]}

    def of(moment: datetime) -> dict[str, Any]:
        return weeks[week_start(moment).isoformat()]

    now = incident["now"]
    # by week received: the 40-day-old ingestion is before the window
    assert sum(w["ingestions"] for w in data["by_week"]) == 4
    assert of(incident["created"][10])["statuses"].get("recovered", 0) >= 1
    assert data["error_categories"] == {"parameter_limit": 3}
    lost = [incident["created"][3], incident["created"][10], now - timedelta(days=1)]
    for week in data["by_week"]:
        assert week["data_loss"] == sum(1 for at in lost if week_start(at).isoformat() == week["week_start"])
    assert of(now - timedelta(days=1))["rows_still_missing"] == POINTS
    assert data["totals"]["still_missing_ingestions"] == 1

    # by week finished: every recovery ran now, the 40-day-old one included
    recovered = incident["recovered"]
    assert (data["by_week"][-1]["recovered"], data["by_week"][-1]["recovery_failed"]) == (3, 1)
    assert data["totals"]["rows_restored"] == recovered["rows_inserted_total"] == 3 * POINTS
    assert data["failure_reasons"] == [{"category": next(iter(recovered["failure_categories"])), "failures": 1,
                                        "ingestions": 1, "still_failing": 1}]
    # hours from created_at to the recovery: about 72, 240 and 960
    time = data["recovery_time"]
    assert time["recovered"] == 3
    assert time["p50_hours"] == pytest.approx(240, abs=0.2)
    assert time["p90_hours"] == pytest.approx(240 + 0.8 * 720, abs=0.2)
    assert time["longest_hours"] == pytest.approx(960, abs=0.2)


def test_the_archive_gives_rows_per_table_and_how_often_each_threshold_fired(
    engine: Engine, incident: dict[str, Any]
) -> None:
    data = build_review(engine, weeks=3, runs_dir=str(incident["runs"])).to_dict()
    archive = data["archive"]
    assert archive["runs_by_notebook"] == {"monitor": 4, "recover": 1}
    assert archive["reports_changed"] == ["20260101T120003Z_monitor.json"]  # left out, named
    assert data["totals"]["monitor_runs"] == 3
    assert data["rows_restored_by_table"]["heart_rate_metrics"] == 3 * POINTS
    [run] = data["recovery_runs"]
    assert run["archived"] is True and run["rows_inserted"] == 3 * POINTS

    rows = {row["threshold"]: row for row in data["thresholds"]}
    assert rows["data_loss_critical_pct"]["values_used"] == [100.0]
    assert rows["data_loss_critical_pct"]["fired_runs"] == 0
    assert rows["data_loss_warning_pct"]["suggestion"].startswith(
        "data_loss_warning_pct (100%) never fired in 3 monitor runs over 3 weeks (highest data loss rate ")
    assert rows["failure_critical_pct"]["fired_runs"] == 3 == rows["failure_critical_pct"]["measured_runs"]
    assert rows["failure_critical_pct"]["suggestion"].startswith(
        "failure_critical_pct (20%) fired in every one of 3 monitor runs over 3 weeks (lowest failure rate 100%)")
    assert rows["min_user_success_pct"]["suggestion"].endswith("consider lowering it below the usual level, or fix "
                                                               "the cause")
    for row in rows.values():
        assert row["suggestion"] in data["suggestions"] or row["suggestion"] is None
    assert data["by_week"][-1]["alerts_fired"] == {"data_loss_rate": 0, "failure_rate": 3, "user_needs_action": 3}
    assert data["suggestions"][0].startswith("1 ingestion of the period still misses 30 rows")


def test_thresholds_need_three_runs_before_a_suggestion() -> None:
    fired = {"alerts": [{"name": "failure_rate", "level": "warning"}], "failure_rate_pct": 15.0, "non_pending": 20,
             "thresholds": {"failure_warning_pct": 10.0}}
    [row] = [r for r in th.threshold_usage([fired, fired], weeks=1) if r["threshold"] == "failure_warning_pct"]
    assert (row["fired_runs"], row["suggestion"]) == (2, None)
    assert th.general_notes(2, [row])[0].startswith("only 2 monitor run(s) in the archive for this period")
    [row] = [r for r in th.threshold_usage([fired] * 3, weeks=1) if r["threshold"] == "failure_warning_pct"]
    assert row["suggestion"] == (
        "failure_warning_pct (10%) fired in every one of 3 monitor runs over 1 week (lowest failure rate 15%): "
        "consider raising it above the usual level, or fix the cause")
    # a warning threshold is crossed too when the critical alert fires; the critical one only then
    critical = {**fired, "alerts": [{"name": "failure_rate", "level": "critical"}]}
    assert th.fired(th.RULES[3], critical) and not th.fired(th.RULES[2], fired)


def test_an_empty_period_and_a_missing_archive_are_a_quiet_review(engine: Engine, tmp_path: Path) -> None:
    data = build_review(engine, weeks=1, runs_dir=str(tmp_path / "nothing")).to_dict()
    assert data["archive"]["index_found"] is False and len(data["by_week"]) == 1
    assert headline(data) == ("1 week: 0 ingestions, data loss in 0 (0 rows still missing), 0 recovered in 0 runs "
                              "(0 rows restored), 1 suggestion")


def test_review_command_prints_the_review_and_writes_its_json(
    engine: Engine, incident: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "review.json"
    assert main(["review", "--weeks", "3", "--runs-dir", str(incident["runs"]), "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    written = json.loads(out.read_text())
    assert printed.startswith(f"WEEKLY REVIEW since {written['window_start'][:10]}: {headline(written)}")
    assert "RECOVERY FAILURE REASONS" in printed and "ALERT THRESHOLDS" in printed


@pytest.mark.parametrize(("argv", "message"), [
    (["review", "--weeks", "0"], "weeks must be a whole number from 1 to 520, got 0"),
    (["review", "--weeks", "a month"], "weeks must be a whole number from 1 to 520"),
    (["run", "review", "-p", "weeks", "600"], "weeks must be a whole number from 1 to 520, got 600"),
])
def test_a_bad_review_parameter_exits_2_before_connecting(
    argv: list[str], message: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody:pw@127.0.0.1:1/none")
    assert main([*argv, *(["--runs-dir", str(tmp_path)] if argv[0] == "run" else [])]) == 2
    assert message in capsys.readouterr().err


def test_a_role_that_may_only_select_can_run_the_review(engine: Engine, incident: dict[str, Any]) -> None:
    import sqlalchemy as sa

    role = "rr_review_readonly"
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP ROLE IF EXISTS {role}"))
        conn.execute(sa.text(f"CREATE ROLE {role} LOGIN"))
        conn.execute(sa.text(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}"))
    readonly = sa.create_engine(engine.url.set(username=role, password=None))
    try:
        as_role = build_review(readonly, weeks=3, runs_dir=str(incident["runs"])).to_dict()
    finally:
        readonly.dispose()
        with engine.begin() as conn:
            conn.execute(sa.text(f"DROP OWNED BY {role}"))
            conn.execute(sa.text(f"DROP ROLE {role}"))
    as_owner = build_review(engine, weeks=3, runs_dir=str(incident["runs"])).to_dict()
    assert {k: v for k, v in as_role.items() if k not in ("generated_at", "database")} == {
        k: v for k, v in as_owner.items() if k not in ("generated_at", "database")}
