"""The weekly review report (plain JSON-able data), its headline and its terminal layout.

Built by :func:`recovery_lib.review.build.build_review`, which says where each figure comes from.
Counts, ids, categories, durations and sizes only: never a health value, never a connection URL.
Weeks are ISO weeks in UTC (Monday 00:00); the current one is ``partial``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


def headline(data: Mapping[str, Any]) -> str:
    """The line an operator reads first, from a report's ``to_dict()``."""
    t = data.get("totals") or {}
    suggestions = len(data.get("suggestions") or [])
    weeks = data.get("weeks", 0)
    return (
        f"{weeks} week{'s' if weeks != 1 else ''}: {t.get('ingestions', 0)} ingestions, "
        f"data loss in {t.get('data_loss', 0)} "
        f"({t.get('rows_still_missing', 0)} rows still missing), {t.get('recovered', 0)} recovered in "
        f"{t.get('recovery_runs', 0)} runs ({t.get('rows_restored', 0)} rows restored), "
        f"{suggestions} suggestion{'s' if suggestions != 1 else ''}"
    )


def week_row(start: datetime, *, partial: bool) -> dict[str, Any]:
    """An empty week: every figure 0 (or None where nothing was measured), filled by the builder."""
    year, week, _ = start.isocalendar()
    return {
        "week": f"{year}-W{week:02d}", "week_start": start.isoformat(), "partial": partial,
        "ingestions": 0, "statuses": {}, "payload_bytes": 0, "largest_payload_bytes": None,
        "data_loss": 0, "still_missing_ingestions": 0, "rows_still_missing": 0, "error_categories": {},
        "recovered": 0, "recovery_failed": 0, "rows_restored": 0, "recovery_runs": 0,
        "recovery_hours_p50": None, "recovery_hours_p90": None,
        "monitor_runs": 0, "alerts_fired": {},
    }


@dataclass
class ReviewReport:
    weeks: int
    generated_at: datetime
    window_start: datetime
    database: str  # masked URL
    by_week: list[dict[str, Any]] = field(default_factory=list)
    error_categories: dict[str, int] = field(default_factory=dict)
    failure_reasons: list[dict[str, Any]] = field(default_factory=list)
    rows_restored_by_table: dict[str, int] = field(default_factory=dict)  # from the archived recover reports
    recovery_time: dict[str, Any] = field(default_factory=dict)
    thresholds: list[dict[str, Any]] = field(default_factory=list)
    recovery_runs: list[dict[str, Any]] = field(default_factory=list)
    archive: dict[str, Any] = field(default_factory=dict)
    suggestions: list[str] = field(default_factory=list)

    def totals(self) -> dict[str, int]:
        keys = ("ingestions", "data_loss", "still_missing_ingestions", "rows_still_missing", "recovered",
                "recovery_failed", "rows_restored", "monitor_runs")
        totals = {key: sum(int(w.get(key) or 0) for w in self.by_week) for key in keys}
        totals["recovery_runs"] = len(self.recovery_runs)
        totals["rows_restored_archived"] = sum(self.rows_restored_by_table.values())
        return totals

    def to_dict(self) -> dict[str, Any]:
        return {
            "weeks": self.weeks,
            "generated_at": self.generated_at.isoformat(),
            "window_start": self.window_start.isoformat(),
            "database": self.database,
            "totals": self.totals(),
            "by_week": [dict(w) for w in self.by_week],
            "error_categories": dict(self.error_categories),
            "failure_reasons": [dict(r) for r in self.failure_reasons],
            "rows_restored_by_table": dict(self.rows_restored_by_table),
            "recovery_time": dict(self.recovery_time),
            "thresholds": [dict(t) for t in self.thresholds],
            "recovery_runs": [dict(r) for r in self.recovery_runs],
            "archive": dict(self.archive),
            "suggestions": list(self.suggestions),
        }

    def headline(self) -> str:
        return headline(self.to_dict())


# -- terminal report ------------------------------------------------------------------------------


def _table(header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> list[str]:
    cells = [tuple("-" if v is None else str(v) for v in row) for row in (header, *rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return ["  ".join(c.rjust(widths[i]) if i else c.ljust(widths[i]) for i, c in enumerate(row)).rstrip()
            for row in cells]


def format_text_review(data: Mapping[str, Any]) -> str:
    """The review as plain text: weeks, failure reasons, rows restored, recovery time, thresholds, suggestions."""
    lines = [f"WEEKLY REVIEW since {str(data.get('window_start'))[:10]}: {headline(data)}", ""]
    lines += _table(
        ("week", "ingestions", "data loss", "still missing", "recovered", "failed", "rows restored", "p50 h",
         "monitor runs"),
        [(w["week"] + ("*" if w.get("partial") else ""), w["ingestions"], w["data_loss"], w["rows_still_missing"],
          w["recovered"], w["recovery_failed"], w["rows_restored"], w["recovery_hours_p50"], w["monitor_runs"])
         for w in data.get("by_week") or []],
    )
    lines.append("(* the current week, still running)")
    if data.get("failure_reasons"):
        lines += ["", "RECOVERY FAILURE REASONS"]
        lines += _table(("category", "failures", "ingestions", "still failing"),
                        [(r["category"], r["failures"], r["ingestions"], r["still_failing"])
                         for r in data["failure_reasons"]])
    restored = data.get("rows_restored_by_table") or {}
    if any(restored.values()):
        lines += ["", "ROWS RESTORED PER TABLE (archived recover runs)"]
        lines += _table(("table", "rows"), [(name, n) for name, n in restored.items()])
    time = data.get("recovery_time") or {}
    if time.get("recovered"):
        lines += ["", f"INGESTION TO RECOVERY: {time['recovered']} ingestions, median {time['p50_hours']} h, "
                      f"90th percentile {time['p90_hours']} h, longest {time['longest_hours']} h"]
    lines += ["", "ALERT THRESHOLDS (archived monitor runs)"]
    lines += _table(("threshold", "value", "measured runs", "fired"),
                    [(t["threshold"], t["value"], t["measured_runs"], t["fired_runs"])
                     for t in data.get("thresholds") or []])
    lines += ["", "SUGGESTIONS"] + [f"{i}. {s}" for i, s in enumerate(data.get("suggestions") or [], 1)]
    if not data.get("suggestions"):
        lines.append("(none)")
    return "\n".join(lines) + "\n"
