"""The parser's books: the rows it yields and every point it could not store, named and counted.

Point accounting, which the property tests hold the parser to, and every report shows::

    points_seen == points_used + points_generic + points_rejected + points_unsupported

``points_used``: points that went into at least one row of a catalogue table (an unaggregated
sleep segment counts when its session row is emitted); ``points_generic``: points of a metric the
catalogue does not know, kept in ``other_metrics`` (by name in ``generic_points``);
``points_rejected``: points with a rejection (``missing_name`` is a metric-level rejection and not
counted there); ``points_unsupported``: points with no place to go, by name in ``unsupported``
(the points of a metric without a name, an unknown metric's point without a ``qty``, a data array
the catalogue does not know, a cycle-tracking entry of a name it has no column for).

    >>> Rejection("non_numeric", "heart_rate", 12, "Avg").message()
    'heart_rate[12].Avg: non_numeric'
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

# Bump when the mapping (or what the reconciliation cache records) changes: the cache is keyed on it.
# 6: the API's internal form read (issue 13); 5: rounded sleep stages a hair over inBed make 100 %;
# 4: the cache keyed on the stored value's SHA-256 with the columns each key fills; 3: the catalogue.
PARSER_VERSION: int = 6
SUMMARY_REJECTIONS = 50
MAX_NAME = 100  # a payload's own name (an unknown metric, an array) is cut to this in the books


@dataclass(frozen=True, slots=True)
class Rejection:
    """One point that could not become a row.

    >>> Rejection("non_numeric", "heart_rate", 12, "Avg").message()
    'heart_rate[12].Avg: non_numeric'
    """

    category: str
    metric: str  # metric name, 'workouts', 'workouts[3].heartRateData', an array, or '<unnamed>' for missing_name
    index: int  # position in that metric's data list (of the metric, for missing_name)
    field: str | None = None

    def to_dict(self) -> dict[str, object]:
        return {"category": self.category, "metric": self.metric, "index": self.index, "field": self.field}

    def message(self) -> str:
        where = f"{self.metric}[{self.index}]" + (f".{self.field}" if self.field else "")
        return f"{where}: {self.category}"


@dataclass(frozen=True, slots=True)
class PartialRow:
    """The columns one point fills in one row of ``table``.

    ``values`` never holds ``user_id`` or the key column; datetimes in it (``sleep_end``,
    ``ended_at``) are UTC like ``key``.
    """

    table: str
    key: Any  # the instant of the natural key, or (instant, tag) for a tagged table
    values: dict[str, object]
    metric: str
    index: int


class Books:
    """Counters and rejections of one payload (see the module docstring)."""

    def __init__(
        self, *, now: datetime | None = None, track_duplicates: bool = True, max_kept_rejections: int = 1000
    ):
        now = datetime.now(UTC) if now is None else now
        self.now = now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)
        self.latest = self.now + timedelta(days=1)
        self.track_duplicates = track_duplicates
        self.max_kept_rejections = max_kept_rejections
        self.rejections: list[Rejection] = []
        self.rejection_counts: collections.Counter[str] = collections.Counter()
        self.generic_points: collections.Counter[str] = collections.Counter()  # unknown name -> points kept
        self.unsupported: collections.Counter[str] = collections.Counter()  # name -> points with no place
        # metric.column -> values dropped: a field the target database has no column for (not a point)
        self.unsupported_fields: collections.Counter[str] = collections.Counter()
        self.points_seen = 0
        self.points_used = 0
        self.points_generic = 0
        self.points_rejected = 0
        self.points_unsupported = 0
        self.rows_emitted = 0
        self.metrics_seen = 0
        self.workouts_seen = 0
        self.entries_seen = 0

    def _reject(self, category: str, metric: str, index: int, field: str | None) -> None:
        self.rejection_counts[category] += 1
        if category != "missing_name":
            self.points_rejected += 1
        if len(self.rejections) < self.max_kept_rejections:
            self.rejections.append(Rejection(category, metric, index, field))

    def _unsupported(self, name: str) -> None:
        self.points_unsupported += 1
        self.unsupported[name[:MAX_NAME]] += 1

    def stored(self, generic_name: str | None = None) -> None:
        """One point went into a row (of ``other_metrics`` when it has a generic name)."""
        if generic_name is None:
            self.points_used += 1
        else:
            self.points_generic += 1
            self.generic_points[generic_name[:MAX_NAME]] += 1
        self.rows_emitted += 1

    def summary(self) -> dict[str, object]:
        """Counts and the first rejections, JSON-able; no values (metric names are the payload's)."""
        return {
            "parser_version": PARSER_VERSION,
            "points_seen": self.points_seen,
            "points_used": self.points_used,
            "points_generic": self.points_generic,
            "points_rejected": self.points_rejected,
            "points_unsupported": self.points_unsupported,
            "rows_emitted": self.rows_emitted,
            "rejection_counts": dict(self.rejection_counts),
            "generic_points": dict(self.generic_points),
            "unsupported": dict(self.unsupported),
            "unsupported_fields": dict(self.unsupported_fields),
            "rejections": [r.to_dict() for r in self.rejections[:SUMMARY_REJECTIONS]],
        }
