"""The whole runbook on a generated incident, checked against the generator's ground truth.

What ``make demo`` runs: empty this project's tables, generate an incident with a known truth,
execute monitor -> preview -> recover -> verify through the runner, then the weekly review over
what they left, and compare the headline figures with the truth.

    >>> result = run_demo(url, users=10, payloads=40, seed=42, runs_dir=Path("runs"), say=print)
    >>> result.ok
    True
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recovery_lib import db, schema, simulate
from recovery_lib.redact import mask_url
from recovery_lib.runbook.execute import RunResult, run_notebook
from recovery_lib.runbook.notebooks import ALL_NOTEBOOKS


def _count(value: Any) -> int:
    if isinstance(value, (list, tuple, set, dict)):
        return len(value)
    return int(value or 0)


def _names(counts: dict[str, int]) -> str:
    """``sleep_score 12, workout_effort_score 3`` (sorted by name), or ``none``."""
    return ", ".join(f"{name} {n}" for name, n in sorted(counts.items()) if n) or "none"


def _lost_ingestions_truth(truth: dict[str, Any]) -> tuple[int, dict[str, int]]:
    """Data points and unknown-name points of the ingestions that lost rows, by the truth."""
    lost = set(truth.get("loss_ingestions") or [])
    points, generic = 0, {}
    for ing in truth.get("ingestions") or []:
        if ing.get("id") in lost:
            points += int(ing.get("points") or 0)
            for name, n in (ing.get("generic_points") or {}).items():
                generic[name] = generic.get(name, 0) + int(n)
    return points, generic


def compare_with_truth(truth: dict[str, Any], reports: dict[str, dict[str, Any]]) -> list[tuple[str, Any, Any, bool]]:
    """(what, found, truth, equal) for the demo's headline numbers.

    Beside the rows: every recovered ingestion's accounting is complete (each of its points stored,
    kept under an unknown name, or rejected by name), and its points and unknown names are the truth's.
    """
    monitor, recover, verify = reports.get("monitor", {}), reports.get("recover", {}), reports.get("verify", {})
    review = (reports.get("review") or {}).get("totals") or {}
    loss_ingestions = _count(truth.get("loss_ingestions"))
    missing_rows = int(truth.get("missing_rows_total") or 0)
    recoverable = int(truth.get("recoverable_missing_rows_total") or 0)
    recovered = [i for i in recover.get("ingestions") or [] if i.get("outcome") == "recovered"]
    accountings = [i.get("accounting") or {} for i in recovered]
    generic: dict[str, int] = {}
    for accounting in accountings:
        for name, n in (accounting.get("generic") or {}).items():
            generic[name] = generic.get(name, 0) + int(n)
    lost_points, lost_generic = _lost_ingestions_truth(truth)
    checks = [
        ("ingestions with data loss (monitor)", monitor.get("data_loss_detected"), loss_ingestions),
        ("rows missing (monitor)", monitor.get("missing_metrics_total"), missing_rows),
        ("rows recovered (recover)", recover.get("rows_inserted_total"), recoverable),
        ("recovered, accounting complete (recover)", sum(bool(a.get("complete")) for a in accountings),
         loss_ingestions),
        ("points of recovered payloads (recover)", sum(int(a.get("points") or 0) for a in accountings), lost_points),
        ("unknown names kept (recover)", _names(generic), _names(lost_generic)),
        ("rows missing after (verify)", verify.get("missing_metrics_total"), 0),
        ("rows restored (review)", review.get("rows_restored"), recoverable),
        ("rows still missing (review)", review.get("rows_still_missing"), 0),
    ]
    return [(what, found, expected, found == expected) for what, found, expected in checks]


@dataclass
class DemoResult:
    truth: dict[str, Any]
    results: dict[str, RunResult] = field(default_factory=dict)
    checks: list[tuple[str, Any, Any, bool]] = field(default_factory=list)
    failed: str | None = None  # the notebook that failed, if one did

    @property
    def ok(self) -> bool:
        return self.failed is None and all(equal for *_, equal in self.checks)


def run_demo(
    url: str,
    *,
    users: int,
    payloads: int,
    seed: int,
    runs_dir: Path,
    say: Callable[[str], None] = print,
    on_result: Callable[[RunResult], None] | None = None,
) -> DemoResult:
    """Reset the tables of ``url``, simulate an incident, run the runbook and the review, compare with the truth.

    ``say`` gets the progress lines; ``on_result`` each notebook's result as it finishes. Stops at
    the first notebook that fails (``result.failed`` names it).
    """
    # The kernels inherit the environment: give them this server's URL so they connect to the
    # same server instead of each attaching to (or starting) the embedded one again.
    os.environ["DATABASE_URL"] = url
    engine = db.get_engine(url)
    say(f"database: {mask_url(engine.url)}")
    schema.init_db(engine)
    say(f"emptied {len(simulate.reset_tables(engine))} tables")
    incident = simulate.simulate(engine, users=users, payloads=payloads, seed=seed)
    result = DemoResult(truth=incident.to_dict())
    say(incident.summary_text())
    for name in ALL_NOTEBOOKS:  # the daily runbook, then the weekly review over what it left
        say(f"\n== {name} ==")
        run = run_notebook(name, {}, runs_dir=runs_dir, progress_bar=False)
        result.results[name] = run
        if on_result:
            on_result(run)
        if not run.ok:
            result.failed = name
            return result
    result.checks = compare_with_truth(result.truth, {n: r.report or {} for n, r in result.results.items()})
    return result
