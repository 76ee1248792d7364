"""The monitoring report (plain JSON-able data), its headline and its terminal layout.

Built by :func:`recovery_lib.monitor.build.build_monitoring_report`; see that module for what each
figure means. ``to_dict()`` holds counts, ids, sizes and categories only: never a health value,
never a connection URL; datetimes are ISO strings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from recovery_lib.accounting import Accounting
from recovery_lib.monitor import alerts as al
from recovery_lib.options import Thresholds
from recovery_lib.target import target_line


def headline(data: Mapping[str, Any]) -> str:
    """The line an operator reads first, from a report's ``to_dict()``."""
    fired = [a for a in data.get("alerts") or [] if a.get("level") in al.LEVELS]
    names = Accounting.of_dict(data.get("accounting")).names_line()
    lost = data.get("unrecoverable_loss") or 0
    return (
        f"{data.get('total_raw_ingestions', 0)} ingestions in {data.get('window_hours')} h; "
        f"data loss in {data.get('data_loss_detected', 0)} ({data.get('missing_metrics_total', 0)} rows missing); "
        f"{len(fired)} alert(s)" + (f"; {names}" if names else "") + target_line(data.get("target"))
        + (f"; {lost} bodies never stored (unrecoverable: the client must resend)" if lost else "")
    )


@dataclass
class UserImpact:
    user_id: str
    payloads: int
    pending_payloads: int
    non_pending_payloads: int
    successful_payloads: int  # processed or recovered, and (with the deep check) no rows missing
    failed_payloads: int  # error, partial_success, recovery_failed
    loss_payloads: int | None  # non-pending payloads with missing rows; None without deep check
    missing_metrics: int | None
    data_loss_pct: float | None
    success_rate_pct: float | None  # None when nothing of theirs was processed yet
    largest_failed_payload_bytes: int | None  # over failed and lost payloads
    days_since_last_success: float | None  # None if never (all time, not just the window)
    recommended_action: str

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class TrendBucket:
    bucket_start: datetime
    ingestions: int
    non_pending: int
    failures: int
    data_loss: int | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "bucket_start": self.bucket_start.isoformat(),
            "ingestions": self.ingestions,
            "failures": self.failures,
            "failure_rate_pct": al.percent(self.failures, self.non_pending),
            "data_loss": self.data_loss,
            "data_loss_rate_pct": None
            if self.data_loss is None
            else al.percent(self.data_loss, self.non_pending),
        }


@dataclass
class MonitoringReport:
    window_hours: int
    generated_at: datetime
    window_start: datetime
    deep_check: bool
    thresholds: Thresholds
    total_raw_ingestions: int = 0
    processed_successfully: int = 0
    processing_errors: int = 0
    partial_success: int = 0
    pending_processing: int = 0
    recovered: int = 0
    recovery_failed: int = 0
    non_pending: int = 0
    data_loss_detected: int | None = None
    silent_data_loss: int | None = None  # status 'processed' yet rows missing
    unparseable_payloads: int | None = None
    bodies_not_stored: int = 0  # placeholders in the window: the body never reached the database
    unrecoverable_loss: int = 0  # of those, the ones the API did not process either (lost for good)
    missing_metrics_total: int | None = None
    loss_by_table: dict[str, int] | None = None
    accounting: Accounting | None = None  # where the window's points went (deep check only)
    missing_values_total: int | None = None  # values NULL in stored rows although the payload has them
    missing_values_by_table: dict[str, int] | None = None
    average_processing_delay_seconds: float | None = None
    largest_payload_bytes: int | None = None
    smallest_payload_bytes: int | None = None
    # current state of the whole table, for the Prometheus counters
    recovered_all_time: int = 0
    recovery_failed_all_time: int = 0
    last_successful_recovery_at: datetime | None = None
    user_impact: list[UserImpact] = field(default_factory=list)
    error_pattern_analysis: dict[str, int] = field(default_factory=dict)
    recovery_recommendations: list[str] = field(default_factory=list)
    alerts: list[al.Alert] = field(default_factory=list)
    trends: list[TrendBucket] = field(default_factory=list)
    trend_granularity: str = "hour"
    payload_sizes: list[int] = field(default_factory=list)
    payload_sizes_sampled: bool = False
    target: dict[str, Any] | None = None  # recovery_lib.target.Fit.to_dict(): tables and fields it cannot hold

    @property
    def failed_total(self) -> int:
        return self.processing_errors + self.partial_success + self.recovery_failed

    @property
    def failure_rate_pct(self) -> float:
        return al.percent(self.failed_total, self.non_pending)

    @property
    def data_loss_rate_pct(self) -> float | None:
        return (
            None if self.data_loss_detected is None else al.percent(self.data_loss_detected, self.non_pending)
        )

    @property
    def recovery_candidates_pending(self) -> int:
        """error + partial_success + processed-with-missing-rows in the window."""
        return self.processing_errors + self.partial_success + (self.silent_data_loss or 0)

    def headline(self) -> str:
        return headline(self.to_dict())

    def to_dict(self) -> dict[str, Any]:
        def iso(value: datetime | None) -> str | None:
            return value.isoformat() if value else None

        return {
            "window_hours": self.window_hours,
            "generated_at": iso(self.generated_at),
            "window_start": iso(self.window_start),
            "deep_check": self.deep_check,
            "thresholds": self.thresholds.to_dict(),
            "total_raw_ingestions": self.total_raw_ingestions,
            "processed_successfully": self.processed_successfully,
            "processing_errors": self.processing_errors,
            "partial_success": self.partial_success,
            "pending_processing": self.pending_processing,
            "recovered": self.recovered,
            "recovery_failed": self.recovery_failed,
            "non_pending": self.non_pending,
            "data_loss_detected": self.data_loss_detected,
            "silent_data_loss": self.silent_data_loss,
            "unparseable_payloads": self.unparseable_payloads,
            "bodies_not_stored": self.bodies_not_stored,
            "unrecoverable_loss": self.unrecoverable_loss,
            "missing_metrics_total": self.missing_metrics_total,
            "loss_by_table": dict(self.loss_by_table) if self.loss_by_table is not None else None,
            "accounting": self.accounting.to_dict() if self.accounting is not None else None,
            "missing_values_total": self.missing_values_total,
            "missing_values_by_table": (
                dict(self.missing_values_by_table) if self.missing_values_by_table is not None else None
            ),
            "average_processing_delay_seconds": self.average_processing_delay_seconds,
            "largest_payload_bytes": self.largest_payload_bytes,
            "smallest_payload_bytes": self.smallest_payload_bytes,
            "failure_rate_pct": self.failure_rate_pct,
            "data_loss_rate_pct": self.data_loss_rate_pct,
            "recovery_candidates_pending": self.recovery_candidates_pending,
            "recovered_all_time": self.recovered_all_time,
            "recovery_failed_all_time": self.recovery_failed_all_time,
            "last_successful_recovery_at": iso(self.last_successful_recovery_at),
            "user_impact": [u.to_dict() for u in self.user_impact],
            "error_pattern_analysis": dict(self.error_pattern_analysis),
            "recovery_recommendations": list(self.recovery_recommendations),
            "alerts": [a.to_dict() for a in self.alerts],
            "trend_granularity": self.trend_granularity,
            "trends": [b.to_dict() for b in self.trends],
            "payload_sizes": list(self.payload_sizes),
            "payload_sizes_sampled": self.payload_sizes_sampled,
            "target": self.target,
        }


# -- terminal report ------------------------------------------------------------------------------

TEXT_USERS_SHOWN = 25


def _bytes(value: int | None) -> str:
    if value is None:
        return "-"
    size = float(value)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{value} B"  # pragma: no cover


def _num(value: int | float | None, suffix: str = "") -> str:
    if value is None:
        return "n/a"
    return f"{value:,}{suffix}" if isinstance(value, int) else f"{value:,.2f}{suffix}"


def _section(title: str) -> list[str]:
    return ["", title, "-" * len(title)]


def format_text_report(report: MonitoringReport) -> str:
    """The report as the incident guide's terminal layout (plain text, aligned columns)."""
    fmt = "%Y-%m-%d %H:%M UTC"
    title = (
        f"HEALTH EXPORT PROCESSING MONITOR: last {report.window_hours}h "
        f"({report.window_start:{fmt}} to {report.generated_at:{fmt}})"
    )
    lines = ["=" * len(title), title, "=" * len(title)]

    off = "(deep check off)"
    deep = report.data_loss_detected is not None
    stats: list[tuple[str, str, str]] = [
        ("Total raw ingestions", _num(report.total_raw_ingestions), ""),
        ("Processed successfully", _num(report.processed_successfully), "(status processed)"),
        ("Processing errors", _num(report.processing_errors), ""),
        ("Partial success", _num(report.partial_success), ""),
        ("Pending processing", _num(report.pending_processing), ""),
        ("Recovered", _num(report.recovered), ""),
        ("Recovery failed", _num(report.recovery_failed), ""),
        (
            "Data loss detected",
            _num(report.data_loss_detected),
            f"({_num(report.data_loss_rate_pct, '%')} of {report.non_pending:,} non-pending)"
            if deep
            else off,
        ),
        ("  of which status processed", _num(report.silent_data_loss), "(silent loss)" if deep else off),
        ("Unrecoverable loss", _num(report.unrecoverable_loss),
         f"(bodies never stored: {report.bodies_not_stored:,} placeholders; the client must resend)"),
        ("Missing metric rows", _num(report.missing_metrics_total), "" if deep else off),
        ("Missing values in existing rows", _num(report.missing_values_total), "" if deep else off),
    ]
    for table, missing in (report.loss_by_table or {}).items():
        if missing:
            stats.append((f"  {table}", _num(missing), ""))
    stats += [
        (
            "Failure rate",
            _num(report.failure_rate_pct, "%"),
            "(error + partial_success + recovery_failed of non-pending)",
        ),
        ("Average processing delay", _num(report.average_processing_delay_seconds, " s"), ""),
        ("Largest payload", _bytes(report.largest_payload_bytes), ""),
        ("Smallest payload", _bytes(report.smallest_payload_bytes), ""),
    ]
    width = max(len(label) for label, _, _ in stats) + 1
    value_width = max(12, *(len(value) for _, value, _ in stats))
    lines += _section("OVERALL STATISTICS")
    lines += [
        f"{label + ':':<{width}} {value:>{value_width}}  {note}".rstrip() for label, value, note in stats
    ]

    found = report.target or {}
    if found.get("existing_database") or found.get("unsupported_by_schema"):
        lines += _section(f"TARGET (bookkeeping in schema {found.get('bookkeeping_schema')})")
        lines += [f"unsupported_by_schema: {u['table']}" + (f".{u['field']}" if u.get("field") else " (no table)")
                  + (f"  ({', '.join(u['metrics'])})" if u.get("metrics") else "")
                  for u in found.get("unsupported_by_schema") or []] or ["(the target holds every catalogue field)"]

    users = report.user_impact
    shown = users[:TEXT_USERS_SHOWN]
    lines += _section(f"USER IMPACT ({len(users)} user{'s' if len(users) != 1 else ''} in the window)")
    if not users:
        lines.append("(no ingestions in the window)")
    else:
        header = (
            "user_id",
            "payloads",
            "failed",
            "lost",
            "loss %",
            "success %",
            "largest failed",
            "days since ok",
            "action",
        )
        rows = [
            (
                u.user_id,
                _num(u.payloads),
                _num(u.failed_payloads),
                _num(u.loss_payloads),
                _num(u.data_loss_pct),
                _num(u.success_rate_pct),
                _bytes(u.largest_failed_payload_bytes),
                "never" if u.days_since_last_success is None else f"{u.days_since_last_success:.2f}",
                u.recommended_action,
            )
            for u in shown
        ]
        widths = [max(len(str(row[i])) for row in (header, *rows)) for i in range(len(header))]
        for row in (header, *rows):
            cells = [
                f"{cell:<{widths[i]}}" if i in (0, len(header) - 1) else f"{cell:>{widths[i]}}"
                for i, cell in enumerate(row)
            ]
            lines.append("  ".join(cells).rstrip())
        if len(users) > len(shown):
            lines.append(f"... and {len(users) - len(shown)} more (all users are in the JSON report)")

    lines += _section("ERROR PATTERNS")
    total_errors = sum(report.error_pattern_analysis.values())
    if not total_errors:
        lines.append("(no processing errors recorded in the window)")
    width = max((len(name) for name in report.error_pattern_analysis), default=0) + 2
    for name, count in sorted(report.error_pattern_analysis.items(), key=lambda kv: (-kv[1], kv[0])):
        if count:
            lines.append(f"{name + ':':<{width}} {count:>8,}  ({al.percent(count, total_errors):.1f}%)")

    lines += _section("RECOVERY RECOMMENDATIONS")
    lines += [f"{i}. {text}" for i, text in enumerate(report.recovery_recommendations, 1)]

    lines += _section("ALERTS")
    if not report.alerts:
        lines.append("(none)")
    lines += [f"[{a.level.upper():<8}] {a.name}: {a.message}" for a in report.alerts]
    return "\n".join(lines) + "\n"
