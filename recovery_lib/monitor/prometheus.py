"""The monitor's figures as Prometheus metrics: a node-exporter textfile and an optional Pushgateway push.

Metrics (the alert rules in ``monitoring/alerts.yml`` use the gauges):

* ``health_export_recovery_processed_total{status="success"}`` (counter): ingestions recovered
* ``health_export_recovery_failed_total{status="error"}`` (counter): ingestions recovery_failed
* ``health_export_data_loss_detected_total`` (counter): ingestions of the window with rows or values missing
* ``health_export_processing_failure_rate`` (gauge, 0-1): error + partial_success + recovery_failed
  over non-pending ingestions of the window
* ``health_export_data_loss_rate`` (gauge, 0-1): ingestions with loss over non-pending ones
* ``health_export_recovery_candidates_pending`` (gauge): error + partial_success + processed
  with rows missing, in the window
* ``health_export_unrecoverable_loss`` (gauge): ingestions of the window stored only as a
  placeholder and never processed (the body is not in the database; the client must resend)
* ``health_export_last_successful_recovery_timestamp_seconds`` (gauge): latest ``processed_at``
  of a recovered ingestion; 0 if none
* ``health_export_missing_metrics{table="..."}`` (gauge): rows missing per metric table (window)
* ``health_export_points{kind="stored|generic|rejected|unsupported"}`` (gauge): where the window's
  points went (the accounting identity: the four add up to every point)
* ``health_export_unknown_metric_names`` (gauge): metric names the catalogue does not know
* ``health_export_missing_values{table="..."}`` (gauge): values missing inside existing rows per
  table (window): the payload has the value, the stored row has NULL
* ``health_export_monitor_*`` (gauges): when the monitor ran, its window, whether the deep check
  ran, ingestions by status, alerts by level
* ``health_export_target_info{bookkeeping_schema, existing_database}`` (gauge, 1): the target
  database (the API's own: ``existing_database="true"``) and where this tool's bookkeeping is
* ``health_export_unsupported_by_schema{table, field}`` (gauge, 1 each): every catalogue table
  (``field=""``) or field the target's tables cannot hold (``unsupported_by_schema``)

The ``_total`` counters are read from the database on each run, so they show the current state,
not events this process counted: ``recovered`` and ``recovery_failed`` are all-time counts of
ingestions in that status (a retried ``recovery_failed`` that then succeeds moves from one to
the other), and ``data_loss_detected`` counts the ingestions of the monitoring window that
currently miss rows, so it drops after a recovery. Prometheus treats a drop as a counter reset;
alert on the gauges, not on ``rate()`` of these. The loss figures are left out (absent, not 0)
when the monitor ran without the deep check, so "not measured" never reads as "no loss".

    >>> write_textfile("/var/lib/node_exporter/textfile/health_export.prom", registry_from_report(report))
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from prometheus_client import CollectorRegistry, push_to_gateway, write_to_textfile
from prometheus_client.exposition import basic_auth_handler, default_handler
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

_log = logging.getLogger(__name__)

PUSHGATEWAY_ENV = "PROMETHEUS_PUSHGATEWAY"
DEFAULT_JOB = "health_export_monitor"
PREFIX = "health_export_"


def _as_dict(report: Any) -> Mapping[str, Any]:
    return report.to_dict() if hasattr(report, "to_dict") else report


def _timestamp(iso: str | None) -> float:
    return datetime.fromisoformat(iso).timestamp() if iso else 0.0


class ReportCollector(Collector):
    """Yields the metric families of one monitoring report (a fixed snapshot)."""

    def __init__(self, report: Any) -> None:
        self._data = dict(_as_dict(report))

    def collect(self) -> Iterator[Metric]:
        d = self._data
        non_pending = d.get("non_pending") or 0
        deep = d.get("data_loss_detected") is not None

        processed = CounterMetricFamily(
            f"{PREFIX}recovery_processed",
            "Raw ingestions in status recovered (all time, read from the database).",
            labels=["status"],
        )
        processed.add_metric(["success"], d.get("recovered_all_time", 0))
        yield processed

        failed = CounterMetricFamily(
            f"{PREFIX}recovery_failed",
            "Raw ingestions in status recovery_failed (all time, read from the database).",
            labels=["status"],
        )
        failed.add_metric(["error"], d.get("recovery_failed_all_time", 0))
        yield failed

        failures = d.get("processing_errors", 0) + d.get("partial_success", 0) + d.get("recovery_failed", 0)
        yield GaugeMetricFamily(
            f"{PREFIX}processing_failure_rate",
            "Share (0-1) of processed ingestions in the window with status error, partial_success or "
            "recovery_failed.",
            value=failures / non_pending if non_pending else 0.0,
        )
        yield GaugeMetricFamily(
            f"{PREFIX}recovery_candidates_pending",
            "Ingestions in the window that need recovery: error, partial_success, "
            "and processed with rows missing.",
            value=d.get("recovery_candidates_pending", 0),
        )
        yield GaugeMetricFamily(
            f"{PREFIX}unrecoverable_loss",
            "Ingestions in the window of which only a placeholder is stored and that were never processed: "
            "not recoverable from the database, the client must resend them.",
            value=d.get("unrecoverable_loss", 0),
        )
        yield GaugeMetricFamily(
            f"{PREFIX}last_successful_recovery_timestamp_seconds",
            "Unix time of the latest processed_at of a recovered ingestion; 0 if none.",
            value=_timestamp(d.get("last_successful_recovery_at")),
        )
        if deep:
            yield CounterMetricFamily(
                f"{PREFIX}data_loss_detected",
                "Ingestions in the monitoring window whose rows or values are missing "
                "(current state; drops after recovery).",
                value=d["data_loss_detected"],
            )
            yield GaugeMetricFamily(
                f"{PREFIX}data_loss_rate",
                "Share (0-1) of processed ingestions in the window with missing rows.",
                value=d["data_loss_detected"] / non_pending if non_pending else 0.0,
            )
            missing = GaugeMetricFamily(
                f"{PREFIX}missing_metrics",
                "Metric rows missing per table in the monitoring window.",
                labels=["table"],
            )
            for table, count in sorted((d.get("loss_by_table") or {}).items()):
                missing.add_metric([table], count)
            yield missing
            accounting = d.get("accounting") or {}
            points = GaugeMetricFamily(
                f"{PREFIX}points",
                "Points of the window's payloads by where they went: stored, generic (unknown metric names, "
                "kept in other_metrics), rejected, unsupported (no table); stored + generic + rejected + "
                "unsupported = all points.",
                labels=["kind"],
            )
            rejected = sum(n for c, n in (accounting.get("rejected") or {}).items() if c != "missing_name")
            for kind, value in (("stored", accounting.get("stored", 0)),
                                ("generic", sum((accounting.get("generic") or {}).values())),
                                ("rejected", rejected),
                                ("unsupported", sum((accounting.get("unsupported") or {}).values()))):
                points.add_metric([kind], value)
            yield points
            yield GaugeMetricFamily(
                f"{PREFIX}unknown_metric_names",
                "Distinct metric names in the window the catalogue does not know (kept in other_metrics).",
                value=len(accounting.get("generic") or {}),
            )
            values = GaugeMetricFamily(
                f"{PREFIX}missing_values",
                "Values NULL in existing rows although the payload has them, per table, in the monitoring window.",
                labels=["table"],
            )
            for table, count in sorted((d.get("missing_values_by_table") or {}).items()):
                values.add_metric([table], count)
            yield values

        yield GaugeMetricFamily(
            f"{PREFIX}monitor_last_run_timestamp_seconds",
            "Unix time the monitor report was generated.",
            value=_timestamp(d.get("generated_at")),
        )
        yield GaugeMetricFamily(
            f"{PREFIX}monitor_window_seconds",
            "Length of the monitoring window in seconds.",
            value=d.get("window_hours", 0) * 3600,
        )
        yield GaugeMetricFamily(
            f"{PREFIX}monitor_deep_check",
            "1 when the monitor reconciled payloads against rows (loss measured).",
            value=1 if deep else 0,
        )
        ingestions = GaugeMetricFamily(
            f"{PREFIX}monitor_ingestions",
            "Raw ingestions in the monitoring window by processing status.",
            labels=["status"],
        )
        for status, key in (
            ("pending", "pending_processing"),
            ("processed", "processed_successfully"),
            ("partial_success", "partial_success"),
            ("error", "processing_errors"),
            ("recovered", "recovered"),
            ("recovery_failed", "recovery_failed"),
        ):
            ingestions.add_metric([status], d.get(key, 0))
        yield ingestions
        alerts = GaugeMetricFamily(
            f"{PREFIX}monitor_alerts",
            "Alerts the monitor raised in its last run, by level.",
            labels=["level"],
        )
        for level in ("critical", "warning"):
            alerts.add_metric([level], sum(1 for a in d.get("alerts", []) if a.get("level") == level))
        yield alerts
        yield from _target(d.get("target"))


def _target(found: Mapping[str, Any] | None) -> Iterator[Metric]:
    """The report's ``target`` section (absent in a report from before it existed: nothing)."""
    if not found:
        return
    info = GaugeMetricFamily(
        f"{PREFIX}target_info",
        "The target database: existing_database true when its tables were made by someone else (the API), "
        "bookkeeping_schema where this tool's own tables are.",
        labels=["bookkeeping_schema", "existing_database"],
    )
    info.add_metric([str(found.get("bookkeeping_schema")), str(bool(found.get("existing_database"))).lower()], 1)
    yield info
    unsupported = found.get("unsupported_by_schema") or []
    if unsupported:
        lacking = GaugeMetricFamily(
            f"{PREFIX}unsupported_by_schema",
            "1 for each catalogue table (field empty) or field the target's tables cannot hold: its points are "
            "named unsupported_by_schema, never stored.",
            labels=["table", "field"],
        )
        for item in unsupported:
            lacking.add_metric([str(item.get("table")), str(item.get("field") or "")], 1)
        yield lacking


def registry_from_report(report: Any) -> CollectorRegistry:
    """A fresh registry holding the report's metrics (``report``: a MonitoringReport or its ``to_dict()``)."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(ReportCollector(report))
    return registry


def write_textfile(path: str | os.PathLike[str], registry: CollectorRegistry) -> Path:
    """Write the registry for the node-exporter textfile collector, atomically.

    ``prometheus_client.write_to_textfile`` writes ``<path>.<pid>.<thread>`` in the same
    directory and renames it over ``path``, so a scrape never sees half a file (the collector
    reads only ``*.prom``). The directory is created if missing.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    write_to_textfile(str(target), registry)
    return target


def safe_url(url: str) -> str:
    """``url`` without user and password, fit for a log line."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if parts.port:
            host = f"{host}:{parts.port}"
        return urlunsplit((parts.scheme, host, parts.path, "", ""))
    except ValueError:
        return "<unparseable URL>"


def push(
    registry: CollectorRegistry, gateway_url: str, job: str = DEFAULT_JOB, *, timeout: float = 10
) -> bool:
    """Push the registry to a Pushgateway (``PUT``, replacing the job's group); True on success.

    Credentials in the URL (``https://user:pass@host``) are sent as basic auth, never logged. A
    failure is logged as a warning and returns False: monitoring keeps working without the gateway.
    """
    if "://" not in gateway_url:
        gateway_url = f"http://{gateway_url}"
    shown = safe_url(gateway_url)
    try:
        parts = urlsplit(gateway_url)
        username, password = parts.username, parts.password
        handler = default_handler
        if username is not None:

            def handler(url: str, method: str, timeout: float | None, headers: list, data: bytes):  # type: ignore[no-redef]
                return basic_auth_handler(url, method, timeout, headers, data, username, password)

        push_to_gateway(safe_url(gateway_url), job=job, registry=registry, timeout=timeout, handler=handler)
    except Exception as exc:  # noqa: BLE001 - any failure to push must not stop the monitor
        reason = type(exc).__name__
        detail = str(getattr(exc, "reason", "") or getattr(exc, "code", "") or "")
        _log.warning("could not push metrics to the Pushgateway at %s: %s %s", shown, reason, detail[:200])
        return False
    _log.info("pushed metrics to the Pushgateway at %s (job %s)", shown, job)
    return True


def push_from_env(registry: CollectorRegistry, job: str = DEFAULT_JOB) -> bool | None:
    """Push when ``PROMETHEUS_PUSHGATEWAY`` is set; None when it is not."""
    url = os.environ.get(PUSHGATEWAY_ENV, "").strip()
    if not url:
        return None
    return push(registry, url, job)
