"""The accounting identity of a payload: where every point went, and whether the payload is complete.

Every report (recovery, preview, verify, monitor, the Prometheus textfile) shows, per ingestion
and summed over the run::

    points == stored + generic + rejected + unsupported

``stored``: points in a catalogue table's row; ``generic``: points of metrics the catalogue does not
know, kept in ``other_metrics`` (by metric name); ``rejected``: named rejections (by category);
``unsupported``: points with no place to go (by name). In rows, ``expected == present + missing``.
An ingestion is **complete** when nothing is missing and nothing is unsupported: only then is it
``recovered``; its unknown names are in every headline with their point counts.

    >>> a = Accounting(points=10, stored=7, generic={"future_metric": 2}, rejected={"invalid_date": 1})
    >>> a.balanced, a.complete
    (True, True)
    >>> Accounting(points=3, stored=2, unsupported={"futureArray": 1}).complete
    False
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

CONSTRAINT_VIOLATION = "constraint_violation"  # the rejection of a point the target's constraints refused


def _add(into: dict[str, int], more: Mapping[str, int]) -> None:
    for name, count in more.items():
        into[name] = into.get(name, 0) + int(count)


@dataclass
class Accounting:
    """Where the points of one payload (or of many, summed) went; rows expected, present, missing."""

    points: int = 0
    stored: int = 0
    generic: dict[str, int] = field(default_factory=dict)  # unknown metric name -> points kept
    rejected: dict[str, int] = field(default_factory=dict)  # category -> points (missing_name: metrics)
    unsupported: dict[str, int] = field(default_factory=dict)  # name -> points with no place
    rows_expected: int = 0
    rows_present: int = 0
    # metric.column -> values the target has no column for (unsupported_by_schema; not points: not in the identity)
    unsupported_fields: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of_parser(cls, summary: Mapping[str, Any]) -> Accounting:
        """From a parser's ``summary()`` (the rows still to be counted against the database)."""
        return cls(
            points=int(summary.get("points_seen", 0)),
            stored=int(summary.get("points_used", 0)),
            generic=dict(summary.get("generic_points") or {}),
            rejected=dict(summary.get("rejection_counts") or {}),
            unsupported=dict(summary.get("unsupported") or {}),
            unsupported_fields=dict(summary.get("unsupported_fields") or {}),
        )

    @classmethod
    def of_dict(cls, data: Mapping[str, Any] | None) -> Accounting:
        data = data or {}
        return cls(
            points=int(data.get("points", 0)), stored=int(data.get("stored", 0)),
            generic=dict(data.get("generic") or {}), rejected=dict(data.get("rejected") or {}),
            unsupported=dict(data.get("unsupported") or {}),
            rows_expected=int(data.get("rows_expected", 0)), rows_present=int(data.get("rows_present", 0)),
            unsupported_fields=dict(data.get("unsupported_fields") or {}),
        )

    @property
    def rows_missing(self) -> int:
        return self.rows_expected - self.rows_present

    @property
    def rejected_points(self) -> int:
        """Rejected points (``missing_name`` rejects a metric, whose points are counted unsupported)."""
        return sum(n for category, n in self.rejected.items() if category != "missing_name")

    @property
    def balanced(self) -> bool:
        """The identity holds: every point is stored, generic, rejected or unsupported, once."""
        return self.points == self.stored + sum(self.generic.values()) + self.rejected_points + sum(
            self.unsupported.values())

    @property
    def complete(self) -> bool:
        """Every point accounted for and every row present: what ``recovered`` requires (with no rejection)."""
        return self.balanced and self.rows_missing == 0 and not self.unsupported

    def add(self, other: Accounting) -> None:
        self.points += other.points
        self.stored += other.stored
        _add(self.generic, other.generic)
        _add(self.rejected, other.rejected)
        _add(self.unsupported, other.unsupported)
        _add(self.unsupported_fields, other.unsupported_fields)
        self.rows_expected += other.rows_expected
        self.rows_present += other.rows_present

    def to_dict(self) -> dict[str, Any]:
        return {
            "points": self.points, "stored": self.stored, "generic": dict(self.generic),
            "rejected": dict(self.rejected), "unsupported": dict(self.unsupported),
            "rows_expected": self.rows_expected, "rows_present": self.rows_present,
            "rows_missing": self.rows_missing, "balanced": self.balanced, "complete": self.complete,
            "unsupported_fields": dict(self.unsupported_fields),
        }

    def names_line(self) -> str:
        """``unknown metrics kept: future_metric (2); unsupported: futureArray (1)``, or ''.

        Points the target refused (``constraint_violation``) are named too: they are not in the
        tables although the payload had them.
        """
        parts = []
        if self.generic:
            parts.append("unknown metrics kept: " + ", ".join(f"{n} ({c})" for n, c in sorted(self.generic.items())))
        if self.unsupported:
            parts.append("unsupported: " + ", ".join(f"{n} ({c})" for n, c in sorted(self.unsupported.items())))
        if self.unsupported_fields:
            parts.append("fields the target lacks (unsupported_by_schema): " + ", ".join(
                f"{n} ({c})" for n, c in sorted(self.unsupported_fields.items())))
        if self.rejected.get(CONSTRAINT_VIOLATION):
            parts.append(f"refused by the target's constraints: {self.rejected[CONSTRAINT_VIOLATION]} points")
        return "; ".join(parts)


def total(accountings: Iterable[Accounting]) -> Accounting:
    """The sum of several payloads' accounting."""
    found = Accounting()
    for one in accountings:
        found.add(one)
    return found
