"""The payload parser: raw Health Auto Export JSON -> the metric rows it should have produced.

Implements docs/payload-format.md. A *source* turns the payload into items (see
:mod:`recovery_lib.payload.source`); :class:`PayloadParser` turns items into :class:`PartialRow`
objects (one per point, holding only the columns that point fills) and records every point it
cannot use as a :class:`Rejection` (category, metric, index, field: never the value).

    >>> parsed = parse_payload(b'{"data": {"metrics": [{"name": "step_count", "units": "count",'
    ...                        b' "data": [{"date": "2024-02-06 14:30:00 -0800", "qty": 812}]}]}}')
    >>> parsed.counts()["activity_metrics"]
    1

Every point is accounted for (:mod:`recovery_lib.payload.books`): stored in a row, kept in
``other_metrics`` under its unknown name, rejected with a named category, or named as unsupported.
Workouts count as points of ``workouts``, each point of a workout's series or route as a point of
``workouts[i].<series>``, each entry of a data array (``stateOfMind``, ``ecg``, ...) as a point of
that array, each object of the API's internal form (``{"type": "HeartRate", ...}``, one row each)
as a point of its type.

The decisions the contract leaves open are in docs/payload-format.md ("Decisions the contract
leaves open").
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from recovery_lib import catalogue
from recovery_lib.catalogue import internal
from recovery_lib.catalogue.model import ArraySpec, MetricSpec
from recovery_lib.errors import PayloadError, Reject
from recovery_lib.payload.books import MAX_NAME, PARSER_VERSION, Books, PartialRow, Rejection
from recovery_lib.payload.entries import convert_entry, convert_series_point, series_of
from recovery_lib.payload.fields import convert_generic, convert_simple
from recovery_lib.payload.internal import COLUMN_INDEX, convert_record
from recovery_lib.payload.sleep import Segment, convert_segment, convert_sleep, is_segment, sessions
from recovery_lib.payload.source import iter_items, iter_object_items
from recovery_lib.payload.values import EPOCH
from recovery_lib.payload.values import text as _text
from recovery_lib.payload.workouts import convert_workout
from recovery_lib.schema import METRIC_TABLES, catalogue_bound

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


WORKOUTS = catalogue.WORKOUTS
WORKOUT_TABLE = "workout_metrics"
UNNAMED = "<unnamed>"
GENERIC_TABLE = "other_metrics"
UNSUPPORTED_BY_SCHEMA = "unsupported_by_schema"  # a catalogue field the target database has no column for
_ONE_US = timedelta(microseconds=1)


class PayloadParser(Books):
    """Turns items into :class:`PartialRow` objects and keeps the books on every point.

    One parser per payload. Memory: the duplicate keys (one int per row) and the current metric's
    unaggregated sleep segments; everything else streams.

        >>> parser = PayloadParser()
        >>> rows = list(parser.rows(iter_items(payload_bytes)))   # doctest: +SKIP
        >>> parser.summary()["rejection_counts"]                   # doctest: +SKIP
    """

    def rows(self, items: Iterable[tuple[Any, ...]]) -> Iterator[PartialRow]:
        """Drive ``items``: yield the rows the target can hold, record rejections (see :meth:`_rows`).

        Bound to an existing database (:func:`recovery_lib.target.bind`), a row of a table it lacks,
        or whose fields it lacks all, is a point ``unsupported`` under ``<metric>: unsupported_by_schema``;
        a field it lacks is dropped and counted in ``unsupported_fields`` (``metric.column``). A row is
        one point there: sleep, the one row of many segments, has its table in the API's schema.
        """
        if catalogue_bound():
            yield from self._rows(items)
            return
        for row in self._rows(items):
            table = METRIC_TABLES[row.table]
            kept = {c: v for c, v in row.values.items() if c in table.values}
            if table.present and any(c != "source_device" for c in kept):
                for column in row.values.keys() - kept.keys():  # the point is stored, not these fields
                    self.unsupported_fields[f"{row.metric}.{column}"[:MAX_NAME]] += 1
                yield row if len(kept) == len(row.values) else PartialRow(row.table, row.key, kept, row.metric,
                                                                          row.index)
                continue
            if row.table == GENERIC_TABLE:  # counted as generic when it was emitted
                self.points_generic -= 1
                name = row.metric[:MAX_NAME]
                self.generic_points[name] -= 1
                if self.generic_points[name] <= 0:
                    del self.generic_points[name]
            else:
                self.points_used -= 1
            self.rows_emitted -= 1
            self._unsupported(f"{row.metric}: {UNSUPPORTED_BY_SCHEMA}")

    def _rows(self, items: Iterable[tuple[Any, ...]]) -> Iterator[PartialRow]:
        """Drive ``items``: yield rows, record rejections.

        Raises :class:`PayloadError` (``empty_payload``) at the end when there was no metric and
        no workout at all; errors of the source propagate as they are.
        """
        spec: MetricSpec | None = None
        name = ""
        shape = ""
        units: object = None
        keys_by_metric: dict[str, set[int]] = {}  # duplicate tracking, per metric name, whole payload
        seen: set[int] = set()
        segments: list[Segment] = []
        array: ArraySpec | None = None
        array_name = ""
        filled: dict[tuple[str, Any], int] = {}  # internal form: the columns each key got, as bits
        latest = self.latest
        track = self.track_duplicates
        for item in items:
            kind = item[0]
            if kind == "point":
                index, point = item[1], item[2]
                self.points_seen += 1
                if spec is None:
                    self._unsupported(UNNAMED)  # a metric without a usable name: rejected once, above
                    continue
                if type(point) is not dict:
                    self._reject("invalid_point", name, index, None)
                    continue
                try:
                    if shape == "simple":
                        key, values = convert_simple(spec, point, units, latest)
                    elif shape == "sleep":
                        if is_segment(point):
                            start, end, stage = convert_segment(point, latest)
                            segments.append(Segment(start, end, stage, _text(point.get("source")), index))
                            continue
                        key, values = convert_sleep(point, units, latest)
                    else:
                        key, values = convert_generic(name, point, units, latest)
                except Reject as problem:
                    if problem.category == "unsupported_point":
                        self._unsupported(name)
                    else:
                        self._reject(problem.category, name, index, problem.field)
                    continue
                if track:
                    # A generic row's key is (instant, name): the name is the metric's, so the instant decides.
                    stamp = ((key[0] if shape == "generic" else key) - EPOCH) // _ONE_US
                    if stamp in seen:
                        self._reject("duplicate_point", name, index, None)
                        continue
                    seen.add(stamp)
                source = point.get("source")
                if type(source) is str:
                    values["source_device"] = source
                self.stored(name if shape == "generic" else None)
                yield PartialRow(spec.table, key, values, name, index)
            elif kind == "metric":
                yield from self._flush_sessions(name, segments, seen)
                spec, name, units = self._start_metric(item[1], item[2]), "", item[3]
                if spec is not None:
                    name, shape = spec.name, spec.shape
                seen = keys_by_metric.setdefault(name, set()) if spec is not None else set()
                segments = []
            elif kind == "end":
                yield from self._flush_sessions(name, segments, seen)
                spec, segments = None, []
            elif kind == "workout":
                yield from self._workout(item[1], item[2], keys_by_metric.setdefault(WORKOUTS, set()))
            elif kind == "record":
                yield from self._record(item[1], item[2], item[3], filled)
            elif kind == "entry":
                seen_in_array = keys_by_metric.setdefault(f"array:{array_name}", set())
                yield from self._entry(array, array_name, item[1], item[2], seen_in_array)
            elif kind == "array":
                array_name = str(item[1])
                array = catalogue.ARRAYS.get(array_name)
            elif kind == "array_end":
                array, array_name = None, ""
            elif kind == "other":
                self.points_seen += 1
                self._unsupported(f"data.{item[1]}")  # a value under data that is not a list
            else:
                raise ValueError(f"unknown item kind {kind!r}")
        yield from self._flush_sessions(name, segments, seen)
        if not self.metrics_seen and not self.workouts_seen and not self.entries_seen:
            raise PayloadError("empty_payload", "the payload has no metrics, no workouts and no other entries")

    def _start_metric(self, position: int, name: object) -> MetricSpec | None:
        """The catalogue entry of a metric (an older spelling finds its entry), a generic one for an
        unknown name, None for a metric without a usable name."""
        self.metrics_seen += 1
        if not isinstance(name, str) or not name.strip():
            self._reject("missing_name", UNNAMED, position, "name")
            return None
        return catalogue.lookup(name) or MetricSpec(name, catalogue.GENERIC_TABLE, shape="generic")

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
            yield PartialRow(catalogue.SLEEP.table, start, values, name, group[0].index)
        segments.clear()

    def _new_key(self, seen: set[Any], key: Any, table: str = "") -> bool:
        """False (and nothing recorded) when ``key`` repeats within its metric, array or series."""
        if not self.track_duplicates:
            return True
        instant, tag = (key if type(key) is tuple else (key, None))
        stamp = (table, (instant - EPOCH) // _ONE_US, tag)
        if stamp in seen:
            return False
        seen.add(stamp)
        return True

    def _workout(self, index: int, obj: object, keys: set[Any]) -> Iterator[PartialRow]:
        """The workout's row, then the rows of its series and route (each point its own)."""
        self.workouts_seen += 1
        self.points_seen += 1
        started: datetime | None = None
        if type(obj) is not dict:
            self._reject("invalid_point", WORKOUTS, index, None)
            return
        try:
            key, values = convert_workout(obj, self.latest)
        except Reject as problem:
            self._reject(problem.category, WORKOUTS, index, problem.field)
        else:
            if self._new_key(keys, key):
                source = _text(obj.get("source"))
                if source is not None:
                    values["source_device"] = source
                self.stored()
                started = key
                yield PartialRow(WORKOUT_TABLE, key, values, WORKOUTS, index)
            else:
                self._reject("duplicate_point", WORKOUTS, index, None)
        for series, points, fields, date_field in series_of(obj):
            where, seen = f"{WORKOUTS}[{index}].{series}", set()
            for number, point in enumerate(points):
                self.points_seen += 1
                if started is None:
                    self._reject("workout_rejected", where, number, None)  # no workout to key it by
                    continue
                if type(point) is not dict:
                    self._reject("invalid_point", where, number, None)
                    continue
                try:
                    table, point_key, point_values = convert_series_point(
                        series, point, fields, date_field, started, self.latest)
                except Reject as problem:
                    self._reject(problem.category, where, number, problem.field)
                    continue
                if not self._new_key(seen, point_key):
                    self._reject("duplicate_point", where, number, None)
                    continue
                self.stored()
                yield PartialRow(table, point_key, point_values, where, number)

    def _record(self, index: int, obj: object, list_name: str, filled: dict[tuple[str, Any], int]
                ) -> Iterator[PartialRow]:
        """The row of one object of the API's internal form (see :mod:`recovery_lib.payload.internal`).

        Objects of one key merge into one row (each fills its own columns, like the metrics of an
        export; the first text wins); an object that fills a measurement an earlier one of its key
        filled is a ``duplicate_point`` (the API kept the first too). A key that is no column counts
        as one more point, unsupported, named ``<type>.<key>``.
        """
        self.points_seen += 1
        if list_name == "workouts":
            self.workouts_seen += 1
            tag: object = internal.WORKOUT_TAG
        else:
            self.metrics_seen += 1
            tag = obj.get(internal.TAG_KEY) if type(obj) is dict else None
        where = tag if isinstance(tag, str) else list_name
        if type(obj) is not dict:
            self._reject("invalid_point", where, index, None)
            return
        if not isinstance(tag, str) or not tag:
            self._reject("invalid_point", where, index, internal.TAG_KEY)
            return
        if tag not in internal.TYPE_TABLES:
            self._unsupported(tag)  # a variant the catalogue has no table for (an unknown build's)
            return
        try:
            table, key, values, unknown = convert_record(obj, tag, self.latest)
        except Reject as problem:
            self._reject(problem.category, tag, index, problem.field)
            return
        if self.track_duplicates:
            positions = COLUMN_INDEX[table]
            bits = sum(1 << positions[column] for column in values if column in positions)
            stamp = (table, key)
            if filled.get(stamp, 0) & bits:
                self._reject("duplicate_point", tag, index, None)
                return
            filled[stamp] = filled.get(stamp, 0) | bits
        for name in unknown:
            self.points_seen += 1
            self._unsupported(f"{tag}.{name}")
        self.stored()
        yield PartialRow(table, key, values, tag, index)

    def _entry(
        self, spec: ArraySpec | None, name: str, index: int, entry: object, seen: set[Any]
    ) -> Iterator[PartialRow]:
        """The row of one entry of a data array beside ``metrics``."""
        self.entries_seen += 1
        self.points_seen += 1
        if spec is None:
            self._unsupported(name)  # an array the catalogue does not know (a new app version's)
            return
        if type(entry) is not dict:
            self._reject("invalid_point", name, index, None)
            return
        try:
            [(table, key, values)] = convert_entry(spec, entry, self.latest)
        except Reject as problem:
            if problem.category == "unsupported_point":
                self._unsupported(name)
            else:
                self._reject(problem.category, name, index, problem.field)
            return
        if not self._new_key(seen, key, table):
            self._reject("duplicate_point", name, index, None)
            return
        self.stored()
        yield PartialRow(table, key, values, name, index)


def iter_rows(source: Any, parser: PayloadParser | None = None) -> Iterator[PartialRow]:
    """:func:`iter_items` fed to ``parser`` (a fresh one by default): the streaming entry point."""
    return (parser or PayloadParser()).rows(iter_items(source))


def merge_rows(rows: Iterable[PartialRow]) -> dict[str, dict[Any, dict[str, object]]]:
    """Merge partial rows per (table, key); a column two rows fill keeps the first value (as the DB merge)."""
    merged: dict[str, dict[Any, dict[str, object]]] = {table: {} for table in METRIC_TABLES}
    for row in rows:
        target = merged.setdefault(row.table, {}).setdefault(row.key, {})
        for column, value in row.values.items():
            target.setdefault(column, value)
    return merged


@dataclass
class ParsedPayload:
    """A whole payload's rows, merged: ``rows[table][key] = {column: value}``."""

    rows: dict[str, dict[Any, dict[str, object]]]
    parser: PayloadParser = field(repr=False)

    def expected_keys(self) -> dict[str, set[Any]]:
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
