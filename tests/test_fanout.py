"""The scale-out steps without a scheduler: N workers' parameters, one step, verify and the archive check.

The DAG (dags/health_export_recovery.py) is a thin layer over recovery_lib.runbook.fanout; here
the steps run as Airflow would call them, on a real PostgreSQL, with two recover workers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from recovery_lib.errors import ParameterError, StepFailed
from recovery_lib.options import FanOutOptions
from recovery_lib.runbook import audit, fanout


def test_every_worker_gets_the_same_scope_and_its_own_label() -> None:
    options = FanOutOptions.validated(workers="3", user_id="550E8400-E29B-41D4-A716-446655440000",
                                      statuses="error", max_concurrent_jobs=2, since="7d", env={})
    plans = options.worker_parameters()
    assert [p.pop("worker") for p in plans] == ["w0", "w1", "w2"]
    assert plans == [options.preview_parameters()] * 3
    assert plans[0] == {"user_id": "550e8400-e29b-41d4-a716-446655440000", "statuses": ["error"],
                        "batch_size": 100, "verify": True, "max_concurrent_jobs": 2}
    assert options.verify_parameters() == {"since": "7d", "user_id": "550e8400-e29b-41d4-a716-446655440000"}


@pytest.mark.parametrize(("values", "message"), [
    ({"workers": 0}, "workers must be a whole number from 1 to 64"),
    ({"workers": 65}, "workers must be a whole number from 1 to 64"),
    ({"since": "soon"}, "since must be an ISO date/time"),
    ({"dry_run": True}, "unknown parameter dry_run for a fan-out"),
    ({"batch_size": 0}, "batch_size must be a whole number"),
])
def test_a_bad_fan_out_parameter_is_refused_before_anything_runs(values: dict[str, Any], message: str) -> None:
    with pytest.raises(ParameterError, match=message):
        FanOutOptions.validated(env={}, **values)


def test_each_scheduler_run_gets_an_archive_with_a_file_name_safe_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(fanout.RUNS_ENV, str(tmp_path))
    assert fanout.fanout_dir("manual__2026-12-01T09:41:54.281830+00:00") == (
        tmp_path / "fanout" / "manual__2026-12-01T09-41-54.281830-00-00"
    )
    assert fanout.fanout_dir("../../etc").parent == tmp_path / "fanout"


def test_two_workers_recover_then_verify_checks_the_rows_and_every_workers_run(
    engine: Any, tmp_path: Path
) -> None:
    from recovery_lib import simulate

    truth = simulate.simulate(engine, users=4, payloads=12, seed=5)
    runs = tmp_path / "fanout" / "run-1"
    options = FanOutOptions.validated(workers=2, max_concurrent_jobs=1, env={})
    done = [fanout.run_step("recover", plan, runs, origin={"map_index": i})
            for i, plan in enumerate(options.worker_parameters())]
    assert [d["worker"] for d in done] == ["w0", "w1"] and all(d["ok"] for d in done)
    # The second worker finds the first one's ingestions claimed: nothing is done twice.
    assert done[1]["figures"]["recovered"] == 0
    assert sum(d["figures"]["rows_inserted_total"] for d in done) == truth.recoverable_missing_rows_total
    with engine.connect() as conn:
        assert conn.execute(sa.text(
            "SELECT count(*) FROM (SELECT ingestion_id FROM recovery_log GROUP BY 1 HAVING count(*) > 1) x"
        )).scalar() == 0

    finished = fanout.finish(options.verify_parameters(), runs, ["w0", "w1"])
    assert finished["figures"]["missing_metrics_total"] == 0 and finished["index_records"] == 3
    records = audit.read_index(runs / audit.INDEX_NAME)
    assert [r["origin"] for r in records[:2]] == [{"map_index": 0}, {"map_index": 1}]
    # A worker that never succeeded is named, and fails the run.
    assert fanout.check_archive(runs, ["w0", "w1", "w2"]) == [f"worker w2: no successful recover run in {runs}"]
    with pytest.raises(StepFailed, match="worker w2: no successful recover run"):
        fanout.finish(options.verify_parameters(), runs, ["w0", "w1", "w2"])


def test_a_failing_step_raises_with_its_summary_and_keeps_the_notebook(tmp_path: Path) -> None:
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    path = tmp_path / "broken.ipynb"
    nb = new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    nb.cells = [new_code_cell("x = 1", metadata={"tags": ["parameters"]}), new_code_cell("raise ValueError('boom')")]
    nbformat.write(nb, path)
    with pytest.raises(StepFailed, match=r"^broken failed: cell \d .*raised ValueError: boom \(kept ") as failed:
        fanout.run_step(str(path), {}, tmp_path / "runs")
    summary = failed.value.summary
    assert summary["ok"] is False and (tmp_path / "runs" / summary["executed_notebook"]).exists()
