"""The payload parser: raw Health Auto Export JSON -> the metric rows it should have produced.

Implements docs/payload-format.md. A *source* turns the payload into items (see
:mod:`recovery_lib.payload.source`); :class:`PayloadParser` turns items into :class:`PartialRow`
objects (one per point, holding only the columns that point fills) and records every point it
cannot use as a :class:`Rejection` (category, metric, index, field: never the value).

    >>> parsed = parse_payload(b'{"data": {"metrics": [{"name": "step_count", "units": "count",'
    ...                        b' "data": [{"date": "2024-02-06 14:30:00 -0800", "qty": 812}]}]}}')
    >>> parsed.counts()["activity_metrics"]
    1

Point accounting, which the property tests hold the parser to::

    points_seen == points_used + points_rejected + points_ignored

``points_used``: points that went into at least one row (an unaggregated sleep segment counts when
its session row is emitted); ``points_rejected``: points with a rejection (``missing_name`` is a
metric-level rejection and not counted there); ``points_ignored``: points of unknown or unnamed
metrics. Workouts count as points of the metric ``workouts``.

Decisions the contract leaves open:

* Numbers are strict: a numeric string (``"72"``) is ``non_numeric`` like any other string, and a
  bool is not a number. A ``{"qty": ..., "units": ...}`` object counts as its ``qty`` in those units.
* ``"metrics": null`` (or ``workouts``, or a metric's ``data``) is ``invalid_structure``: only an
  absent key means an empty list.

* ``invalid_point`` also covers a point this contract cannot read: unknown units (``field='units'``)
  and an unknown sleep stage (``field='value'``). A value stored at a guessed scale would be wrong.
* An end before its start (``sleepEnd``, a segment's ``endDate``, a workout's ``end``) is
  ``invalid_date``; a sleep segment longer than 1440 minutes is ``out_of_range``.
* Aggregated sleep needs ``totalSleep`` or ``asleep`` (else ``missing_value``); ``efficiency`` uses
  whichever of the two gave the duration.
* Unaggregated sleep sessions are emitted at the end of their metric (they need grouping). Their row
  carries the index of the session's first segment in start order; stage columns without segments
  are 0. A session whose start repeats an aggregated point of the same metric rejects each of its
  segments as ``duplicate_point``.
* Duplicates are tracked per metric name over the whole payload (a metric listed twice is still one
  metric), by the key in whole microseconds: a ``timestamptz`` keeps sub-second precision, so
  14:30:00.2 and 14:30:00.5 are different rows. That is one int per row-producing point.
* A naive ``now`` is taken as UTC.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from recovery_lib.errors import PayloadError, Reject
from recovery_lib.payload.metrics import (
    METRICS,
    SLEEP_TABLE,
    WORKOUT_TABLE,
    MetricSpec,
    Segment,
    convert_segment,
    convert_simple,
    convert_sleep,
    convert_workout,
    is_segment,
    sessions,
)
from recovery_lib.payload.source import iter_items, iter_object_items
from recovery_lib.payload.values import EPOCH
from recovery_lib.payload.values import text as _text
from recovery_lib.schema import METRIC_TABLES

__all__ = [
    "PARSER_VERSION",
    "ParsedPayload",
    "PartialRow",
    "PayloadError",
    "PayloadParser",
    "Rejection",
    "iter_items",
    "iter_object_items",
    "iter_rows",
    "merge_rows",
    "parse_payload",
]

# Bump when the mapping (or what the reconciliation cache records) changes: the cache is keyed on it.
# 2: the cache is keyed on the stored value's SHA-256 and records the columns filled per key.
PARSER_VERSION: int = 2

WORKOUTS = "workouts"
UNNAMED = "<unnamed>"
SUMMARY_REJECTIONS = 50
_ONE_US = timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class Rejection:
    """One point that could not become a row.

    >>> Rejection("non_numeric", "heart_rate", 12, "Avg").message()
    'heart_rate[12].Avg: non_numeric'
    """

    category: str
    metric: str  # metric name, 'workouts', or '<unnamed>' for missing_name
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
    key: datetime
    values: dict[str, object]
    metric: str
    index: int


class PayloadParser:
    """Turns items into :class:`PartialRow` objects and keeps the books on every point.

    One parser per payload. Memory: the duplicate keys (one int per row) and the current metric's
    unaggregated sleep segments; everything else streams.

        >>> parser = PayloadParser()
        >>> rows = list(parser.rows(iter_items(payload_bytes)))   # doctest: +SKIP
        >>> parser.summary()["rejection_counts"]                   # doctest: +SKIP
    """

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
        self.unknown_metrics: collections.Counter[str] = collections.Counter()
        self.points_seen = 0
        self.points_used = 0
        self.points_rejected = 0
        self.points_ignored = 0
        self.rows_emitted = 0
        self.metrics_seen = 0
        self.workouts_seen = 0

    def _reject(self, category: str, metric: str, index: int, field: str | None) -> None:
        self.rejection_counts[category] += 1
        if category != "missing_name":
            self.points_rejected += 1
        if len(self.rejections) < self.max_kept_rejections:
            self.rejections.append(Rejection(category, metric, index, field))

    def rows(self, items: Iterable[tuple[Any, ...]]) -> Iterator[PartialRow]:
        """Drive ``items``: yield rows, record rejections.

        Raises :class:`PayloadError` (``empty_payload``) at the end when there was no metric and
        no workout at all; errors of the source propagate as they are.
        """
        spec: MetricSpec | None = None
        name = ""
        units: object = None
        keys_by_metric: dict[str, set[int]] = {}  # duplicate tracking, per metric name, whole payload
        seen: set[int] = set()
        segments: list[Segment] = []
        latest = self.latest
        track = self.track_duplicates
        for item in items:
            kind = item[0]
            if kind == "point":
                index, point = item[1], item[2]
                self.points_seen += 1
                if spec is None:
                    self.points_ignored += 1
                    continue
                if type(point) is not dict:
                    self._reject("invalid_point", name, index, None)
                    continue
                try:
                    if spec.kind == "sleep":
                        if is_segment(point):
                            start, end, stage = convert_segment(point, latest)
                            segments.append(Segment(start, end, stage, _text(point.get("source")), index))
                            continue
                        key, values = convert_sleep(point, units, latest)
                    else:
                        key, values = convert_simple(spec, point, units, latest)
                except Reject as problem:
                    self._reject(problem.category, name, index, problem.field)
                    continue
                if track:
                    stamp = (key - EPOCH) // _ONE_US
                    if stamp in seen:
                        self._reject("duplicate_point", name, index, None)
                        continue
                    seen.add(stamp)
                source = point.get("source")
                if type(source) is str:
                    values["source_device"] = source
                self.points_used += 1
                self.rows_emitted += 1
                yield PartialRow(spec.table, key, values, name, index)
            elif kind == "metric":
                yield from self._flush_sessions(name, segments, seen)
                spec, name, units = self._start_metric(item[1], item[2]), "", item[3]
                if spec is not None:
                    name = spec.name
                seen = keys_by_metric.setdefault(name, set()) if spec is not None else set()
                segments = []
            elif kind == "end":
                yield from self._flush_sessions(name, segments, seen)
                spec, segments = None, []
            elif kind == "workout":
                row = self._workout(item[1], item[2], keys_by_metric.setdefault(WORKOUTS, set()))
                if row is not None:
                    yield row
            else:
                raise ValueError(f"unknown item kind {kind!r}")
        yield from self._flush_sessions(name, segments, seen)
        if not self.metrics_seen and not self.workouts_seen:
            raise PayloadError("empty_payload", "the payload has no metrics and no workouts")

    def _start_metric(self, position: int, name: object) -> MetricSpec | None:
        self.metrics_seen += 1
        if not isinstance(name, str) or not name.strip():
            self._reject("missing_name", UNNAMED, position, "name")
            return None
        spec = METRICS.get(name)
        if spec is None:
            self.unknown_metrics[name] += 1
        return spec

    def _flush_sessions(self, name: str, segments: list[Segment], seen: set[int]) -> Iterator[PartialRow]:
        if not segments:
            return
        for group, values in sessions(segments):
            if isinstance(values, Reject):
                for segment in group:
                    self._reject(values.category, name, segment.index, values.field)
                continue
            start = group[0].start
            stamp = (start - EPOCH) // _ONE_US
            if self.track_duplicates and stamp in seen:
                for segment in group:
                    self._reject("duplicate_point", name, segment.index, None)
                continue
            seen.add(stamp)
            self.points_used += len(group)
            self.rows_emitted += 1
            yield PartialRow(SLEEP_TABLE, start, values, name, group[0].index)
        segments.clear()

    def _workout(self, index: int, obj: object, keys: set[int]) -> PartialRow | None:
        self.workouts_seen += 1
        self.points_seen += 1
        if type(obj) is not dict:
            self._reject("invalid_point", WORKOUTS, index, None)
            return None
        try:
            key, values = convert_workout(obj, self.latest)
        except Reject as problem:
            self._reject(problem.category, WORKOUTS, index, problem.field)
            return None
        if self.track_duplicates:
            stamp = (key - EPOCH) // _ONE_US
            if stamp in keys:
                self._reject("duplicate_point", WORKOUTS, index, None)
                return None
            keys.add(stamp)
        source = _text(obj.get("source"))
        if source is not None:
            values["source_device"] = source
        self.points_used += 1
        self.rows_emitted += 1
        return PartialRow(WORKOUT_TABLE, key, values, WORKOUTS, index)

    def summary(self) -> dict[str, object]:
        """Counts and the first rejections, JSON-able; no values (metric names are the payload's)."""
        return {
            "parser_version": PARSER_VERSION,
            "points_seen": self.points_seen,
            "points_used": self.points_used,
            "points_rejected": self.points_rejected,
            "points_ignored": self.points_ignored,
            "rows_emitted": self.rows_emitted,
            "rejection_counts": dict(self.rejection_counts),
            "unknown_metrics": dict(self.unknown_metrics),
            "rejections": [r.to_dict() for r in self.rejections[:SUMMARY_REJECTIONS]],
        }


def iter_rows(source: Any, parser: PayloadParser | None = None) -> Iterator[PartialRow]:
    """:func:`iter_items` fed to ``parser`` (a fresh one by default): the streaming entry point."""
    return (parser or PayloadParser()).rows(iter_items(source))


def merge_rows(rows: Iterable[PartialRow]) -> dict[str, dict[datetime, dict[str, object]]]:
    """Merge partial rows per (table, key); a column two rows fill keeps the first value (as the DB merge)."""
    merged: dict[str, dict[datetime, dict[str, object]]] = {table: {} for table in METRIC_TABLES}
    for row in rows:
        target = merged.setdefault(row.table, {}).setdefault(row.key, {})
        for column, value in row.values.items():
            target.setdefault(column, value)
    return merged


@dataclass
class ParsedPayload:
    """A whole payload's rows, merged: ``rows[table][key] = {column: value}``."""

    rows: dict[str, dict[datetime, dict[str, object]]]
    parser: PayloadParser = field(repr=False)

    def expected_keys(self) -> dict[str, set[datetime]]:
        """Natural keys per table (every metric table present)."""
        return {table: set(self.rows.get(table, {})) for table in METRIC_TABLES}

    def counts(self) -> dict[str, int]:
        """Distinct keys per table (every metric table present, 0 allowed)."""
        return {table: len(self.rows.get(table, {})) for table in METRIC_TABLES}


def parse_payload(source: Any, *, now: datetime | None = None) -> ParsedPayload:
    """Parse and merge a whole payload (tests, dry runs): text, file object or decoded object.

    >>> parse_payload({"data": {"workouts": []}}).counts()["workout_metrics"]
    Traceback (most recent call last):
    ...
    recovery_lib.errors.PayloadError: empty_payload: the payload has no metrics and no workouts
    """
    parser = PayloadParser(now=now)
    return ParsedPayload(merge_rows(parser.rows(iter_items(source))), parser)
