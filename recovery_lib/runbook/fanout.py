"""The runbook fanned out by a scheduler: one step per task, N recover workers, one archive per run.

``dags/health_export_recovery.py`` (Apache Airflow) is a thin layer over these; nothing here
imports Airflow. Each step is a notebook run through the project's own runner
(:func:`recovery_lib.runbook.execute.run_notebook`), so a scheduled run keeps every piece of
evidence a manual one has: parameters checked before a kernel starts, the executed notebook,
its report, HTML and a line in the hash-chained index, passwords scrubbed, failed tries kept.

* :func:`fanout_dir`: the run's archive, ``<runs>/fanout/<scheduler run id>/`` (``runs/`` is
  ``$RECOVERY_RUNS_DIR`` or the project's ``runs/``), with its own ``index.jsonl``;
* :func:`run_step`: one notebook; returns a small summary (counts, never payloads or the
  database URL: it travels through the scheduler's metadata database) and raises
  :class:`~recovery_lib.errors.StepFailed` when the runner's verdict is a failure, so the
  scheduler retries or stops;
* :func:`finish`: verify, then the archive check: the chain intact and an ``ok`` recover run
  of every worker.

The workers share nothing but the database: each runs ``recover.ipynb`` over the whole scope
with its label (``w0``, ``w1``...), and the claims (``FOR UPDATE SKIP LOCKED``) and per-user
locks decide who recovers what. A retried worker (its try failed) is safe for the same reason.

    >>> runs = fanout_dir("manual__2026-01-01T00:00:00+00:00")
    >>> run_step("recover", {"worker": "w1"}, runs, origin={"map_index": 1})["recovered"]
    12
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from recovery_lib.errors import StepFailed
from recovery_lib.redact import protect_handlers
from recovery_lib.runbook import audit
from recovery_lib.runbook.audit import DEFAULT_RUNS_DIR, INDEX_NAME
from recovery_lib.runbook.notebooks import headline

RUNS_ENV = "RECOVERY_RUNS_DIR"
# Report figures a summary carries (scalars only; reports list every ingestion, which can be 100,000).
SUMMARY_KEYS = (
    "run_id", "candidates", "recovered", "recovery_failed", "skipped", "rows_inserted_total",
    "missing_before_total", "missing_after_total", "data_loss_detected", "missing_metrics_total",
    "ingestions_checked", "ok",
)
_SAFE = re.compile(r"[^\w.-]+")


def fanout_dir(run_id: str, runs_root: Path | str | None = None) -> Path:
    """``<runs>/fanout/<run id made file-name safe>``: one scheduler run's archive."""
    root = Path(runs_root or os.environ.get(RUNS_ENV, "").strip() or DEFAULT_RUNS_DIR)
    name = _SAFE.sub("-", run_id).strip("-.") or "run"
    return root / "fanout" / name


def summary(result: Any) -> dict[str, Any]:
    """What a step hands to the next one: verdict, headline, file names, a few figures."""
    report = result.report if isinstance(result.report, dict) else {}
    return {
        "notebook": result.name,
        "ok": result.ok,
        "error": result.error,
        "headline": headline(result.name, report) if result.ok else "",
        "worker": result.parameters.get("worker"),
        "executed_notebook": result.notebook.name if result.notebook else None,
        "record_hash": result.record.get("hash"),
        "kernel_start_attempts": result.kernel_start_attempts,
        "figures": {key: report[key] for key in SUMMARY_KEYS if isinstance(report.get(key), (int, float, str, bool))},
    }


def run_step(
    notebook: str, parameters: Mapping[str, Any], runs_dir: Path, *, origin: Mapping[str, Any] | None = None,
    timeout: float | None = None,
) -> dict[str, Any]:
    """Run one notebook into ``runs_dir``; its summary, or :class:`StepFailed` (the run is kept)."""
    from recovery_lib.runbook.execute import run_notebook  # papermill: only where a notebook runs

    protect_handlers()  # the scheduler's log handlers get the password filter too
    result = run_notebook(notebook, dict(parameters), runs_dir=runs_dir, origin=origin, timeout=timeout,
                          log_output=True)
    done = summary(result)
    if not result.ok:
        raise StepFailed(f"{result.name} failed: {result.error} (kept {result.notebook})", done)
    print(f"{result.name}: OK - {done['headline']}  [{done['executed_notebook']}]")
    return done


def check_archive(runs_dir: Path, workers: Sequence[str]) -> list[str]:
    """Problems of a fan-out's archive: a broken chain, a worker without an ``ok`` recover run."""
    index = runs_dir / INDEX_NAME
    problems = audit.verify_index(index)
    if problems:
        return problems
    done = {
        (record.get("parameters") or {}).get("worker")
        for record in audit.read_index(index)
        if record.get("notebook") == "recover" and record.get("outcome") == "ok"
    }
    return [f"worker {w}: no successful recover run in {runs_dir}" for w in workers if w not in done]


def finish(
    parameters: Mapping[str, Any], runs_dir: Path, workers: Sequence[str], *,
    origin: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Verify, then check the archive; :class:`StepFailed` if rows are missing or the evidence is not whole."""
    verified = run_step("verify", parameters, runs_dir, origin=origin)
    problems = check_archive(runs_dir, workers)
    if verified["figures"].get("ok") is False:
        problems.insert(0, f"verify: {verified['headline']}")
    if problems:
        raise StepFailed("; ".join(problems), verified)
    return {**verified, "workers": list(workers), "index_records": len(audit.read_index(runs_dir / INDEX_NAME))}
