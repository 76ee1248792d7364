"""The processing monitor: how ingestion went in the last N hours, what was lost, who is affected.

Who owns what::

    build.py        gathers the figures (SQL aggregates and one exact reconciliation of the window)
    report.py       the monitoring report (JSON-able), its headline and its terminal layout
    alerts.py       thresholds, alerts, per-user actions, recommendations (pure functions)
    prometheus.py   the figures as Prometheus metrics: textfile and Pushgateway

    >>> from recovery_lib.monitor import build_monitoring_report, format_text_report
    >>> print(format_text_report(build_monitoring_report(engine, MonitorOptions.validated(hours=6))))
"""

from recovery_lib.monitor.build import build_monitoring_report
from recovery_lib.monitor.report import MonitoringReport, format_text_report

__all__ = ["MonitoringReport", "build_monitoring_report", "format_text_report"]
