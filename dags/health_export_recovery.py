"""Apache Airflow 3 DAG: the recovery runbook as monitor -> preview -> N recover workers -> verify.

Each task runs one runbook notebook through the project's runner
(``recovery_lib.runbook.fanout.run_step``), on whatever host the executor picks: LocalExecutor
on one machine, Celery, Edge or Kubernetes workers on many. The workers split the work only
through PostgreSQL (claims with ``FOR UPDATE SKIP LOCKED``, one user at a time), so the DAG is
the same for one host and for forty; nothing but small summaries passes through XCom, and
each worker reads its payloads from the database itself (``DATABASE_URL`` in its environment).

Start a run with 8 workers (README, "Scale out"):

    airflow dags trigger health_export_recovery -c '{"workers": 8}'

Every task's notebook, report, HTML and index line go to
``$RECOVERY_RUNS_DIR/fanout/<run id>/`` (default: the checkout's ``runs/``), named by notebook
and worker (``..._recover_w3.ipynb``); verify fails the run while rows are missing or the
archive lacks a worker's successful run.
"""

from __future__ import annotations

import os
import socket
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG, Param, get_current_context, task

POOL = os.environ.get("RECOVERY_AIRFLOW_POOL", "recovery_notebooks")
WORKER_TIMEOUT = timedelta(hours=int(os.environ.get("RECOVERY_WORKER_TIMEOUT_HOURS", "12")))

PARAMS = {
    "workers": Param(3, type="integer", minimum=1, maximum=64, description="recover notebooks run at once (N)"),
    "user_id": Param(None, type=["null", "string"], description="one user's UUID, or null for every user"),
    "statuses": Param(["error", "partial_success"], type="array", description="processing statuses to recover"),
    "batch_size": Param(100, type="integer", minimum=1, maximum=10000, description="ingestions per round"),
    "verify": Param(True, type="boolean", description="check each payload's SHA-256 first"),
    "max_concurrent_jobs": Param(5, type="integer", minimum=1, maximum=64, description="threads per worker"),
    "hours": Param(24, type="integer", minimum=1, description="the monitor's window"),
    "since": Param("24h", type="string", description="verify's window: a duration like 7d or an ISO date"),
}


def _options(context: Any) -> Any:
    from recovery_lib.options import FanOutOptions

    return FanOutOptions.validated(**dict(context["params"]))


def _archive(context: Any) -> Any:
    from recovery_lib.runbook.fanout import fanout_dir

    return fanout_dir(context["run_id"])


def _origin(context: Any) -> dict[str, Any]:
    """The scheduler's names for this try, recorded in the run's index line."""
    ti = context["ti"]
    return {"scheduler": "airflow", "dag_id": ti.dag_id, "run_id": context["run_id"], "task_id": ti.task_id,
            "map_index": ti.map_index, "try_number": ti.try_number, "host": socket.gethostname()}


with DAG(
    dag_id="health_export_recovery",
    description="Recover lost health metrics with N workers claiming work from PostgreSQL, then verify",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    params=PARAMS,
    default_args={"pool": POOL},
    tags=["health-export-recovery"],
) as dag:

    @task
    def monitor() -> dict[str, Any]:
        context = get_current_context()
        from recovery_lib.runbook.fanout import run_step

        return run_step("monitor", _options(context).monitor_parameters(), _archive(context), origin=_origin(context))

    @task
    def preview() -> list[dict[str, Any]]:
        """The dry run of the whole scope, then one parameter set per worker (the fan-out)."""
        context = get_current_context()
        from recovery_lib.runbook.fanout import run_step

        options = _options(context)
        run_step("preview", options.preview_parameters(), _archive(context), origin=_origin(context))
        return options.worker_parameters()

    # Retries are safe: a failed try committed only whole ingestions, and the next try's claims
    # skip them. The runner keeps the failed try's notebook and index line.
    @task(retries=2, retry_delay=timedelta(seconds=20), execution_timeout=WORKER_TIMEOUT,
          map_index_template="{{ worker_label }}")
    def recover(parameters: dict[str, Any]) -> dict[str, Any]:
        context = get_current_context()
        context["worker_label"] = parameters["worker"]  # type: ignore[typeddict-unknown-key]
        from recovery_lib.runbook.fanout import run_step

        return run_step("recover", parameters, _archive(context), origin=_origin(context))

    @task
    def verify(results: list[dict[str, Any]]) -> dict[str, Any]:
        context = get_current_context()
        from recovery_lib.runbook.fanout import finish

        for result in results:
            print(f"{result['worker']}: {result['headline']}  [{result['executed_notebook']}]")
        options = _options(context)
        workers = [p["worker"] for p in options.worker_parameters()]
        return finish(options.verify_parameters(), _archive(context), workers, origin=_origin(context))

    plans = preview()
    monitor() >> plans
    verify(recover.expand(parameters=plans))
