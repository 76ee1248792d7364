"""The weekly review: recovery statistics, error patterns and alert thresholds over the last N ISO weeks.

The guide's weekly rhythm ("analyze recovery statistics trends, review error pattern analysis,
update alert thresholds if needed, plan capacity and performance improvements"). Read-only (apart
from the reconciliation's parse cache, like the monitor), from three sources:

* ``raw_ingestions`` per ISO week of ``created_at``: ingestions, their status now, payload bytes,
  the category of their original error;
* ``recovery_log`` per ISO week of ``finished_at``: recoveries and failures, rows inserted, runs,
  the time from ``created_at`` to the first recovery (median, 90th percentile), and each failed
  recovery's reason (the category of the note that run appended to ``processing_errors``);
* the runs archive (``runs/index.jsonl`` and the glued reports, :mod:`recovery_lib.review.archive`):
  how often each monitor threshold fired (:mod:`recovery_lib.review.thresholds`) and the rows
  restored per metric table by archived recover runs (``recovery_log`` holds only a total per
  ingestion, which also counts runs of the ``recover`` command outside the archive).

"Data loss" of a week: its ingestions that a recovery wrote rows for, or that still miss rows now
(exact reconciliation of the period). Where two payloads lost the same rows, the one recovered
second wrote nothing and is not counted.

    >>> report = build_review(get_engine(), ReviewOptions.validated(weeks=4))
    >>> report.headline()
    '4 weeks: 1203 ingestions, data loss in 41 (0 rows still missing), 41 recovered in 3 runs (...)'
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.engine import Connection, Engine

from recovery_lib import reconcile, target
from recovery_lib.db import run
from recovery_lib.error_patterns import categorize_processing_errors, is_clean
from recovery_lib.options import ReviewOptions
from recovery_lib.redact import mask_url
from recovery_lib.review import thresholds as th
from recovery_lib.review.archive import Archive, read_archive
from recovery_lib.review.report import ReviewReport, week_row
from recovery_lib.schema import METRIC_TABLES, NON_PENDING
from recovery_lib.store import ingestions, recovery_log


def week_start(moment: datetime) -> datetime:
    """Monday 00:00 UTC of ``moment``'s ISO week."""
    day = moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return day - timedelta(days=day.weekday())


def _hours(seconds: Any) -> float | None:
    return None if seconds is None else round(float(seconds) / 3600, 2)


def build_review(
    conn_or_engine: Connection | Engine, options: ReviewOptions | None = None, /, *,
    now: datetime | None = None, **values: Any,
) -> ReviewReport:
    """The review of the last ``options.weeks`` ISO weeks (the current one included).

    Without ``options`` the keyword ``values`` (``weeks``, ``runs_dir``) are validated into one
    first: :class:`~recovery_lib.errors.ParameterError` for a bad value, before any query.
    """
    options = options or ReviewOptions.validated(**values)
    if isinstance(conn_or_engine, Engine):
        with conn_or_engine.begin() as conn:
            return _build(conn, options, now, mask_url(conn_or_engine.url))
    return _build(conn_or_engine, options, now, mask_url(conn_or_engine.engine.url))


def _build(conn: Connection, options: ReviewOptions, now: datetime | None, database: str) -> ReviewReport:
    target.bind(conn)  # the reconciliation reads the target's own tables (the API's, on its database)
    now = (now or run(conn, "SELECT now()").scalar_one()).astimezone(UTC)
    current = week_start(now)
    since = current - timedelta(weeks=options.weeks - 1)
    report = ReviewReport(options.weeks, now, since, database)
    weeks = {since + timedelta(weeks=n): week_row(since + timedelta(weeks=n), partial=n == options.weeks - 1)
             for n in range(options.weeks)}

    def week(moment: datetime) -> dict[str, Any] | None:
        return weeks.get(week_start(moment))

    for r in ingestions.weekly_rows(conn, since):
        if (w := week(r.week)) is not None:
            w["ingestions"], w["payload_bytes"], w["largest_payload_bytes"] = (
                r.ingestions, int(r.payload_bytes), r.largest_payload_bytes)
            w["statuses"] = {s: getattr(r, s) for s in ("processed", "partial_success", "error", "pending",
                                                        "recovered", "recovery_failed") if getattr(r, s)}
    totals: Counter[str] = Counter()
    for r in ingestions.weekly_error_values(conn, since):
        if is_clean(r.processing_errors):  # the API's record of a clean run is no error
            continue
        category = categorize_processing_errors(r.processing_errors)
        totals[category] += r.ingestions
        if (w := week(r.week)) is not None:
            w["error_categories"][category] = w["error_categories"].get(category, 0) + r.ingestions
    report.error_categories = dict(totals.most_common())

    _loss(conn, since, week)
    _recoveries(conn, since, week, report)
    archive = read_archive(options.runs_dir, since=since)
    report.archive = archive.to_dict()
    _archived(archive, week, report)
    report.by_week = [weeks[key] for key in sorted(weeks)]
    report.suggestions = _suggestions(report)
    return report


def _loss(conn: Connection, since: datetime, week: Any) -> None:
    lost: dict[str, datetime] = {r.ingestion_id: r.created_at for r in recovery_log.restored_ingestions(conn, since)}
    for result in reconcile.reconcile_window(conn, since=since, statuses=list(NON_PENDING)):
        missing = sum(max(t.missing, 0) for t in result.tables.values())
        if missing > 0 and result.created_at is not None and (w := week(result.created_at)) is not None:
            lost[result.ingestion_id] = result.created_at
            w["still_missing_ingestions"] += 1
            w["rows_still_missing"] += missing
    for created_at in lost.values():
        if (w := week(created_at)) is not None:
            w["data_loss"] += 1


def _recoveries(conn: Connection, since: datetime, week: Any, report: ReviewReport) -> None:
    for r in recovery_log.weekly(conn, since):
        if (w := week(r.week)) is not None:
            w["recovered"], w["recovery_failed"] = r.recovered, r.recovery_failed
            w["rows_restored"], w["recovery_runs"] = int(r.rows_inserted), r.runs
    for r in recovery_log.recovery_delays(conn, since):
        figures = {"recovered": r.recovered, "p50_hours": _hours(r.p50_seconds), "p90_hours": _hours(r.p90_seconds),
                   "longest_hours": _hours(r.longest_seconds)}
        if r.week is None:
            report.recovery_time = figures
        elif (w := week(r.week)) is not None:
            w["recovery_hours_p50"], w["recovery_hours_p90"] = figures["p50_hours"], figures["p90_hours"]
    if not report.recovery_time:
        report.recovery_time = {"recovered": 0, "p50_hours": None, "p90_hours": None, "longest_hours": None}
    report.failure_reasons = [
        {"category": r.category, "failures": r.failures, "ingestions": r.ingestions, "still_failing": r.still_failing}
        for r in recovery_log.failure_reasons(conn, since)
    ]
    report.recovery_runs = [
        {"run_id": r.run_id, "first_finished": r.first_finished.astimezone(UTC).isoformat(),
         "last_finished": r.last_finished.astimezone(UTC).isoformat(), "recovered": r.recovered,
         "recovery_failed": r.recovery_failed, "rows_inserted": int(r.rows_inserted), "workers": r.workers,
         "archived": False, "duration_seconds": None, "rows_per_second": None}
        for r in recovery_log.runs(conn, since)
    ]


def _archived(archive: Archive, week: Any, report: ReviewReport) -> None:
    monitors = archive.reports("monitor")
    for run_ in monitors:
        if (w := week(run_.time)) is not None:
            w["monitor_runs"] += 1
            for name, hit in th.alert_counts(run_.report or {}).items():
                w["alerts_fired"][name] = w["alerts_fired"].get(name, 0) + hit
    report.thresholds = th.threshold_usage([r.report or {} for r in monitors], weeks=report.weeks)
    restored = dict.fromkeys(METRIC_TABLES, 0)
    by_run = {r["run_id"]: r for r in report.recovery_runs}
    for run_ in archive.reports("recover"):
        data = run_.report or {}
        listed = by_run.get(str(data.get("run_id")))
        if data.get("dry_run") or listed is None:
            continue  # only runs recovery_log knows: not a dry run, not a run on a database since reset
        for name, table in (data.get("tables") or {}).items():
            restored[name] = restored.get(name, 0) + int((table or {}).get("inserted") or 0)
        listed.update(archived=True, duration_seconds=data.get("duration_seconds"),
                      rows_per_second=data.get("rows_per_second"))
    report.rows_restored_by_table = restored


def _n(count: int, singular: str, plural: str) -> str:
    return f"{count} {singular if count == 1 else plural}"


def _suggestions(report: ReviewReport) -> list[str]:
    totals = report.totals()
    found = []
    if totals["rows_still_missing"]:
        found.append(f"{_n(totals['still_missing_ingestions'], 'ingestion', 'ingestions')} of the period still "
                     f"{'misses' if totals['still_missing_ingestions'] == 1 else 'miss'} "
                     f"{totals['rows_still_missing']} rows: preview and recover (run preview, run recover)")
    for reason in report.failure_reasons:
        if reason["still_failing"]:
            found.append(f"{_n(reason['still_failing'], 'ingestion still fails', 'ingestions still fail')} "
                         f"recovery with {reason['category']}: read the reasons in verify.ipynb, fix the cause, "
                         "recover again")
    for row in report.thresholds:
        if row["suggestion"]:
            found.append(row["suggestion"])
    found += th.general_notes(totals["monitor_runs"], report.thresholds)
    unarchived = totals["rows_restored"] - totals["rows_restored_archived"]
    if unarchived > 0:
        found.append(f"{unarchived} of the {totals['rows_restored']} rows restored were written by runs outside the "
                     "runs archive (the recover command): run recoveries through the runbook to keep the evidence")
    return found
