"""Reading the API's internal form: one tagged object of ``data.metrics`` (or of ``data.workouts``) -> one row.

The object's keys are its table's column names (:mod:`recovery_lib.catalogue.internal`): the key
column (``recorded_at``, ``sleep_start``, ``started_at``; a symptom's ``symptom_type`` too) makes the
natural key, every other column is read by the column's type and, where a catalogue field fills that
column, checked against the field's limits (the values are in the column's unit already: the API
converts nothing). ``id``, ``user_id`` and ``created_at`` are the API's bookkeeping and are not read.
A key that is no column of the table is returned by name: the parser counts it as an unsupported
point, so a value is never dropped in silence.

    >>> table, key, values, unknown = convert_record(
    ...     {"type": "HeartRate", "recorded_at": "2025-09-20T14:05:00Z", "heart_rate": 68, "context": "resting"},
    ...     None, LATEST_ALLOWED_NEVER)
    >>> table, key.isoformat(), values, unknown
    ('heart_rate_metrics', '2025-09-20T14:05:00+00:00', {'heart_rate': 68.0, 'context': 'resting'}, [])

Rejections (never the value): ``missing_date`` / ``invalid_date`` / ``date_out_of_range`` for the
key, ``non_numeric`` / ``out_of_range`` / ``non_finite`` for numbers, ``invalid_point`` for a value
of the wrong JSON type (a number where a text or a yes/no belongs), ``missing_value`` when the
object fills no column at all. An end before its start (``sleep_end``, ``ended_at``) is
``invalid_date``.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from recovery_lib import catalogue
from recovery_lib.catalogue import internal
from recovery_lib.catalogue.model import BOOL, FLOAT, TEXT, TIMESTAMP, Field
from recovery_lib.errors import Reject
from recovery_lib.payload.fields import json_text
from recovery_lib.payload.values import LATEST_ALLOWED_NEVER, check_range, number, parse_date

__all__ = ["LATEST_ALLOWED_NEVER", "COLUMN_INDEX", "convert_record"]

Record = tuple[str, Any, dict[str, object], list[str]]  # (table, key, values, keys with no column)

_TABLES = tuple(dict.fromkeys(internal.TYPE_TABLES.values()))
#: table -> {column: catalogue type} of every value column (the key and tag left out).
_COLUMNS: dict[str, dict[str, str]] = {
    table: {c.name: c.type for c in catalogue.table_columns(table)} for table in _TABLES
}
#: table -> {column: position} of the columns that measure something (not the texts that describe it:
#: ``source_device``, ``temperature_source``, ...): the parser tracks which ones a key already got, as
#: bits of an int, so that two objects filling the same measurement at one key are a duplicate.
COLUMN_INDEX: dict[str, dict[str, int]] = {
    table: {column: n for n, column in enumerate(c for c, kind in columns.items() if kind != TEXT)}
    for table, columns in _COLUMNS.items()
}
_ENDS = {"sleep_metrics": "sleep_end", "workout_metrics": "ended_at"}


def _limits() -> dict[tuple[str, str], Field]:
    """(table, column) -> the first catalogue field that fills it (its limits are in the column's unit)."""
    found: dict[tuple[str, str], Field] = {}
    for spec in catalogue.METRICS.values():
        for f in spec.fields:
            found.setdefault((spec.table, f.column), f)
    for array in catalogue.ARRAYS.values():
        for f in array.fields:
            if array.table is not None:
                found.setdefault((array.table, f.column), f)
    return found


_FIELDS = _limits()


def _number(table: str, column: str, raw: object) -> float:
    if type(raw) is str and internal.FIELDS.get(table, {}).get(column) == "decimal":
        # rust_decimal writes a Decimal as a JSON string that keeps its scale ("2.50").
        try:
            raw = Decimal(raw)
        except InvalidOperation:
            raise Reject("non_numeric", column) from None
    value = number(raw, column)
    f = _FIELDS.get((table, column))
    return check_range(value, f.limits, column) if f is not None and f.type == FLOAT else value


def _value(table: str, column: str, kind: str, raw: object, latest: datetime) -> object:
    """One column's value by the column's type; None stays absent."""
    if kind == FLOAT:
        return _number(table, column, raw)
    if kind == TEXT:
        if isinstance(raw, str):
            return raw
        if type(raw) is bool:  # a cycle-tracking column the API fills with a yes/no
            return "true" if raw else "false"
        raise Reject("invalid_point", column)
    if kind == BOOL:
        if type(raw) is bool:
            return raw
        raise Reject("invalid_point", column)
    if kind == TIMESTAMP:
        return parse_date(raw, column, latest)
    return json_text(raw, column)


def convert_record(obj: dict[str, Any], tag: str | None, latest: datetime) -> Record:
    """``(table, key, values, unknown keys)`` of one object; ``tag`` None reads it from the object's ``type``.

    The tag must be one of :data:`recovery_lib.catalogue.internal.TYPE_TABLES` (the caller checks).
    """
    table = internal.TYPE_TABLES[tag if tag is not None else obj[internal.TAG_KEY]]
    key_column, *tag_column = internal.KEY_COLUMNS[table]
    instant = parse_date(obj.get(key_column), key_column, latest)
    key: Any = instant
    if tag_column:
        label = obj.get(tag_column[0])
        if label is None:
            raise Reject("missing_value", tag_column[0])
        if not isinstance(label, str):
            raise Reject("invalid_point", tag_column[0])
        key = (instant, label)
    columns = _COLUMNS[table]
    values: dict[str, object] = {}
    unknown: list[str] = []
    for name, raw in obj.items():
        if name == key_column or name in tag_column or name in internal.IGNORED or name == internal.TAG_KEY:
            continue
        kind = columns.get(name)
        if kind is None:
            if raw is not None:
                unknown.append(name)
            continue
        if raw is not None:
            values[name] = _value(table, name, kind, raw, latest)
    end_column = _ENDS.get(table)
    end = values.get(end_column) if end_column else None
    if isinstance(end, datetime) and end < instant:
        raise Reject("invalid_date", end_column)
    if not values:
        raise Reject("missing_value", next(iter(columns)))
    return table, key, values, unknown
