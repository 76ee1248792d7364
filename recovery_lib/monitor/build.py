"""The processing monitor: how ingestion went in the last N hours, what was lost, who is affected.

Read-only: it runs plain ``SELECT`` statements (status, size and delay figures are SQL aggregates,
:mod:`recovery_lib.store.ingestions`)
and one exact reconciliation of the window (:func:`recovery_lib.reconcile.reconcile_window`),
which fills its expected-keys cache only where the role may write. So a role with nothing but
``SELECT`` can run it.

Definitions (``non-pending`` = every status but ``pending``; a NULL status counts as pending):

* window: ingestions with ``created_at >= now - hours``.
* ``data_loss_detected``: non-pending ingestions in the window whose reconciliation shows
  missing rows or missing values (a value the payload has, NULL in the stored row), whatever
  their status (a ``processed`` one with missing rows is silent loss).
  None when the deep check is off, as are the other loss figures.
* ``failure_rate_pct``: (error + partial_success + recovery_failed) / non-pending.
* ``data_loss_rate_pct``: data_loss_detected / non-pending.
* a user's success rate: their processed + recovered payloads **without missing rows** over
  their non-pending ones (a ``processed`` payload that lost rows is not a success; with the
  deep check off, status alone decides).
* ``unrecoverable_loss``: ingestions of the window (any status) of which only a placeholder is
  stored (the API's form for uploads over 10 MiB) and that the API did not process: the body is in
  no table and not in the database at all; only the client can send it again. Not part of
  ``data_loss_detected`` (what a recovery can restore).
* ``average_processing_delay_seconds``: mean of ``processed_at - created_at`` over payloads the
  ingestion worker finished (processed, partial_success, error); recovered ones are left out,
  their ``processed_at`` is the recovery's time.

Alert boundaries are strict (see :mod:`recovery_lib.monitor.alerts`): a rate equal to its threshold
does not fire.

    >>> report = build_monitoring_report(get_engine(), MonitorOptions.validated(hours=6))
    >>> print(format_text_report(report))
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.engine import Connection, Engine

from recovery_lib import target
from recovery_lib.accounting import Accounting
from recovery_lib.db import run
from recovery_lib.error_patterns import ERROR_CATEGORIES, categorize_processing_errors, is_clean
from recovery_lib.monitor import alerts as al
from recovery_lib.monitor.report import MonitoringReport, TrendBucket, UserImpact, format_text_report
from recovery_lib.options import MonitorOptions
from recovery_lib.payload.forms import BODY_NOT_STORED
from recovery_lib.schema import METRIC_TABLES, NON_PENDING, SUCCESS
from recovery_lib.store import ingestions

__all__ = [
    "MonitoringReport",
    "TrendBucket",
    "UserImpact",
    "build_monitoring_report",
    "format_text_report",
]

_log = logging.getLogger(__name__)

PAYLOAD_SIZES_CAP = 10_000
HOURLY_UP_TO = 48  # windows up to 48 h are bucketed by hour, longer ones by day


def _truncate(moment: datetime, unit: str) -> datetime:
    moment = moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return moment.replace(hour=0) if unit == "day" else moment


@dataclass
class _Loss:
    """What the deep check found, per ingestion of the window that lost rows."""

    lost: dict[str, Any] = field(default_factory=dict)  # ingestion id -> IngestionReconciliation
    by_table: dict[str, int] = field(default_factory=lambda: {name: 0 for name in METRIC_TABLES})
    values_by_table: dict[str, int] = field(default_factory=lambda: {name: 0 for name in METRIC_TABLES})
    unparseable: int = 0
    accounting: Accounting = field(default_factory=Accounting)


def _deep_check(conn: Connection, since: datetime) -> _Loss:
    from recovery_lib import reconcile  # the parser is only needed for the deep check

    loss = _Loss()
    for result in reconcile.reconcile_window(conn, since=since, statuses=list(NON_PENDING)):
        if result.parse_error == BODY_NOT_STORED:
            continue  # a placeholder: counted as unrecoverable loss (ingestions.placeholders), not here
        if result.parse_error is not None:
            loss.unparseable += 1
        loss.accounting.add(result.accounting)
        missing = {name: max(counts.missing, 0) for name, counts in result.tables.items()}
        # Loss: rows missing, values missing inside rows, or points with no place to go.
        if sum(missing.values()) > 0 or result.missing_values_total > 0 or result.accounting.unsupported:
            loss.lost[result.ingestion_id] = result
            for name, count in missing.items():
                loss.by_table[name] = loss.by_table.get(name, 0) + count
            for name, counts in result.tables.items():
                loss.values_by_table[name] = loss.values_by_table.get(name, 0) + counts.missing_values
    return loss


def build_monitoring_report(
    conn_or_engine: Connection | Engine,
    options: MonitorOptions | None = None,
    /,
    *,
    now: datetime | None = None,
    **values: Any,
) -> MonitoringReport:
    """Gather the monitoring report for the last ``options.hours``.

    Without ``options`` the keyword ``values`` (``hours``, ``deep_check``, the threshold
    percentages) are validated into one first: :class:`~recovery_lib.errors.ParameterError` for a
    bad value, before any query.
    """
    options = options or MonitorOptions.validated(**values)
    if now is not None and now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    if isinstance(conn_or_engine, Engine):
        with conn_or_engine.begin() as conn:
            return _build(conn, options, now)
    return _build(conn_or_engine, options, now)


def _build(conn: Connection, options: MonitorOptions, now: datetime | None) -> MonitoringReport:
    hours, deep_check, thresholds = options.hours, options.deep_check, options.thresholds
    fit = target.bind(conn)  # the deep check reads the target's own tables (the API's, on its database)
    now = (now or run(conn, "SELECT now()").scalar_one()).astimezone(UTC)
    since = now - timedelta(hours=hours)
    report = MonitoringReport(hours, now, since, deep_check, thresholds)
    report.target = fit.to_dict()

    s = ingestions.window_stats(conn, since)
    report.total_raw_ingestions = s.total
    report.processed_successfully = s.processed
    report.processing_errors = s.error
    report.partial_success = s.partial_success
    report.pending_processing = s.pending
    report.recovered = s.recovered
    report.recovery_failed = s.recovery_failed
    report.non_pending = s.non_pending
    report.average_processing_delay_seconds = None if s.avg_delay is None else round(float(s.avg_delay), 3)
    report.largest_payload_bytes, report.smallest_payload_bytes = s.largest, s.smallest

    placeholders = ingestions.placeholders(conn, since=since)
    report.bodies_not_stored = len(placeholders)
    report.unrecoverable_loss = sum(1 for p in placeholders if p.status not in SUCCESS)

    a = ingestions.all_time_recoveries(conn)
    report.recovered_all_time, report.recovery_failed_all_time = a.recovered, a.recovery_failed
    report.last_successful_recovery_at = a.last_recovery.astimezone(UTC) if a.last_recovery else None

    loss = _deep_check(conn, since) if deep_check and s.non_pending else _Loss()
    if deep_check:
        report.data_loss_detected = len(loss.lost)
        report.silent_data_loss = sum(1 for r in loss.lost.values() if r.status == "processed")
        report.unparseable_payloads = loss.unparseable
        report.loss_by_table = dict(loss.by_table)
        report.missing_metrics_total = sum(loss.by_table.values())
        report.accounting = loss.accounting
        report.missing_values_by_table = dict(loss.values_by_table)
        report.missing_values_total = sum(loss.values_by_table.values())

    report.user_impact = _user_impact(conn, since, now, loss if deep_check else None, thresholds)
    report.error_pattern_analysis = _error_patterns(conn, since)
    report.trend_granularity = "hour" if hours <= HOURLY_UP_TO else "day"
    report.trends = _trends(conn, since, now, report.trend_granularity, loss if deep_check else None)
    report.payload_sizes = ingestions.payload_sizes(conn, since, PAYLOAD_SIZES_CAP)
    report.payload_sizes_sampled = report.total_raw_ingestions > PAYLOAD_SIZES_CAP

    report.alerts = al.sort_alerts(
        al.rate_alerts(
            thresholds,
            losses=report.data_loss_detected,
            failures=report.failed_total,
            non_pending=s.non_pending,
        )
        + [
            alert
            for u in report.user_impact
            if (
                alert := al.user_alert(
                    u.user_id,
                    successes=u.successful_payloads,
                    non_pending=u.non_pending_payloads,
                    t=thresholds,
                )
            )
        ]
    )
    report.recovery_recommendations = al.recommendations(
        hours=hours,
        data_loss_detected=report.data_loss_detected,
        missing_metrics_total=report.missing_metrics_total,
        error_patterns=report.error_pattern_analysis,
        failed_processing=report.processing_errors + report.partial_success,
        pending=report.pending_processing,
        recovery_failed=report.recovery_failed,
        unparseable=report.unparseable_payloads or 0,
        unrecoverable=report.unrecoverable_loss,
        users_needing_recovery=sum(1 for u in report.user_impact if u.recommended_action == al.ACTION_HIGH),
    )
    _log.info(
        "monitor: %d ingestions in %dh, %s with data loss, %d alert(s)",
        report.total_raw_ingestions,
        hours,
        "?" if report.data_loss_detected is None else report.data_loss_detected,
        len(report.alerts),
    )
    return report


def _user_impact(
    conn: Connection, since: datetime, now: datetime, loss: _Loss | None, t: al.Thresholds
) -> list[UserImpact]:
    rows = ingestions.user_stats(conn, since)
    lost_by_user: dict[str, list[Any]] = defaultdict(list)
    for result in loss.lost.values() if loss else ():
        lost_by_user[result.user_id].append(result)
    last_success = (
        ingestions.last_successes(conn, [r.user_id for r in rows], list(loss.lost) if loss else [])
        if rows
        else {}
    )
    impacts = []
    for r in rows:
        lost = lost_by_user.get(r.user_id, [])
        # A processed (or recovered) payload that lost rows is not a success.
        successes = r.successes - sum(1 for x in lost if x.status in SUCCESS)
        largest_failed = max([r.largest_failed or 0, *(x.payload_size_bytes for x in lost)]) or None
        last = last_success.get(r.user_id)
        impacts.append(
            UserImpact(
                user_id=r.user_id,
                payloads=r.payloads,
                pending_payloads=r.pending,
                non_pending_payloads=r.non_pending,
                successful_payloads=successes,
                failed_payloads=r.failed,
                loss_payloads=len(lost) if loss else None,
                missing_metrics=sum(x.missing_total for x in lost) if loss else None,
                data_loss_pct=al.percent(len(lost), r.non_pending) if loss else None,
                success_rate_pct=al.user_success(successes, r.non_pending),
                largest_failed_payload_bytes=largest_failed,
                days_since_last_success=round(max((now - last).total_seconds(), 0) / 86400, 2)
                if last
                else None,
                recommended_action=al.user_action(
                    failed=r.failed, losses=len(lost), successes=successes, non_pending=r.non_pending, t=t
                ),
            )
        )
    return sorted(
        impacts,
        key=lambda u: (
            al.ACTION_ORDER[u.recommended_action],
            -(u.loss_payloads or 0),
            -u.failed_payloads,
            u.success_rate_pct if u.success_rate_pct is not None else 101.0,
            u.user_id,
        ),
    )


def _error_patterns(conn: Connection, since: datetime) -> dict[str, int]:
    counts: Counter[str] = Counter({name: 0 for name in ERROR_CATEGORIES})
    for errors, count in ingestions.error_values(conn, since):
        if not is_clean(errors):  # the API records every clean run as {"processing_metadata": ..., "errors": []}
            counts[categorize_processing_errors(errors)] += count
    return {name: counts[name] for name in ERROR_CATEGORIES}


def _trends(
    conn: Connection, since: datetime, now: datetime, unit: str, loss: _Loss | None
) -> list[TrendBucket]:
    step = timedelta(hours=1) if unit == "hour" else timedelta(days=1)
    buckets: dict[datetime, TrendBucket] = {}
    moment, last = _truncate(since, unit), _truncate(now, unit)
    while moment <= last:
        buckets[moment] = TrendBucket(moment, 0, 0, 0, 0 if loss else None)
        moment += step
    for row in ingestions.trend_rows(conn, since, unit):
        start = row.bucket.astimezone(UTC)
        bucket = buckets.setdefault(start, TrendBucket(start, 0, 0, 0, 0 if loss else None))
        bucket.ingestions, bucket.non_pending, bucket.failures = row.ingestions, row.non_pending, row.failures
    for result in loss.lost.values() if loss else ():
        if result.created_at is not None:
            start = _truncate(result.created_at, unit)
            bucket = buckets.setdefault(start, TrendBucket(start, 0, 0, 0, 0))
            bucket.data_loss = (bucket.data_loss or 0) + 1
    return [buckets[key] for key in sorted(buckets)]
