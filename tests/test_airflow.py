"""The scale-out DAG on Apache Airflow, end to end: ``make airflow-test`` (tests/airflow_e2e.py).

Slow (its own venv from constraints-airflow.txt on first use, two PostgreSQL servers, the
api-server, six notebooks): deselect locally with ``-m 'not slow'``; CI runs it with the suite.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from recovery_lib.db import PROJECT_ROOT


@pytest.mark.slow
def test_three_workers_on_airflow_recover_each_ingestion_once_and_verify_finds_nothing_missing(tmp_path: Path) -> None:
    result = tmp_path / "airflow-e2e.json"
    done = subprocess.run(["make", "--no-print-directory", "airflow-test", f"ARGS=--result {result}"],
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=3600)
    assert done.returncode == 0, done.stdout[-12000:] + done.stderr[-4000:]
    facts = json.loads(result.read_text())
    assert facts["dag_run"] == "success" and set(facts["tasks"].values()) == {"success"}
    # Every candidate ingestion was processed, and by exactly one worker.
    assert facts["recovery_log_ingestions"] == facts["recovery_log_rows"] == facts["candidates"] > 0
    assert facts["ingestions_logged_twice"] == 0 and facts["still_to_recover"] == 0
    assert len(facts["work_per_worker"]) > 1, facts["work_per_worker"]
    assert facts["verify_missing"] == 0
    # The archive: each worker's notebook, an intact chain, kernels over IPC only.
    assert len(facts["worker_notebooks"]) == 3 and facts["audit_problems"] == []
    assert facts["tcp_kernel_warnings"] == 0 and facts["kernel_files_left"] == []
