"""The row oracle's cells: a payload value as its column holds it, and partial rows merged into rows.

Read from docs/payload-format.md, not from the parser: numbers are floats (bare, or the
``qty`` of a ``{"qty", "units"}`` object), converted from the metric's or the point's own units
to the column's with the catalogue's unit table (``value * scale``, ``+ offset`` for
temperatures); a 0 where the catalogue says it means "no data" is absent; texts are kept when
they are strings; JSON values are stored as their JSON text. Points on one table and natural key
merge into one row, each column filled once: the first value in payload order wins.

    >>> to_column(98.6, "temperature", "degF", "degC")
    37.0
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from recovery_lib.catalogue.model import FLOAT, TEXT, Field
from recovery_lib.catalogue.units import UNITS
from recovery_lib.schema import METRIC_TABLES

Key = datetime | tuple[datetime, Any]  # the instant, or (instant, tag) for a tagged table
Rows = dict[str, dict[Key, dict[str, Any]]]  # table -> natural key -> every column of the row


def new_rows() -> Rows:
    return {name: {} for name in METRIC_TABLES}


_EMPTY = {name: dict.fromkeys(spec.values) for name, spec in METRIC_TABLES.items()}


def put(rows: Rows, table: str, key: Key, values: dict[str, Any]) -> None:
    """Merge into the row of ``key``: each column is filled once (the first value wins)."""
    row = rows[table].get(key)
    if row is None:
        spec = METRIC_TABLES[table]
        row = rows[table][key] = {**_EMPTY[table], **values}
        if spec.tag:
            row[spec.key], row[spec.tag] = key  # type: ignore[misc]
        else:
            row[spec.key] = key
        return
    for column, value in values.items():
        if row[column] is None and value is not None:
            row[column] = value


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def to_column(value: float, kind: str, unit: str, column_unit: str) -> float:
    """``value`` in ``unit`` as the column's unit, from the catalogue's table of units."""
    table = UNITS[kind]
    source, target = table[unit.strip().lower()], table[column_unit.strip().lower()]
    scale, offset = source[0] / target[0], (source[1] - target[1]) / target[0]
    return value * scale + offset if offset else value * scale


def quantity(raw: Any) -> tuple[Any, Any]:
    """``(number, own units)`` of a bare number or a ``{"qty", "units"}`` object."""
    if isinstance(raw, dict):
        return raw.get("qty"), raw.get("units")
    return raw, None


def json_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def read_fields(fields: Iterable[Field], point: dict[str, Any], units: Any) -> dict[str, Any] | None:
    """The columns ``fields`` fill from ``point``; None when a number is not one (the point is rejected)."""
    values: dict[str, Any] = {}
    for f in fields:
        for name in f.keys:
            raw = point.get(name)
            if raw is not None:
                break
        else:
            if f.required:
                return None
            continue
        if f.type == FLOAT:
            number, own = (raw.get("qty"), raw.get("units")) if type(raw) is dict else (raw, None)
            if type(number) is not float and not is_number(number):
                return None
            if f.zero_is_absent and number == 0:
                continue
            number = float(number)
            if f.kind is not None:
                given = own if own is not None else units
                number = to_column(number, f.kind, given if given is not None else f.default_units or "",
                                   f.unit or "")
            values[f.column] = number
        elif f.type == TEXT:
            if isinstance(raw, str):
                values[f.column] = raw
        else:
            values[f.column] = json_text(raw)
    return values


def with_source(values: dict[str, Any], point: dict[str, Any]) -> dict[str, Any]:
    """``values`` and the point's ``source`` (when it is text) as ``source_device``."""
    if isinstance(point.get("source"), str):
        values["source_device"] = point["source"]
    return values
