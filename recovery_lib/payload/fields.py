"""Reading a point's fields as the catalogue describes them: numbers (converted, in range), texts, JSON.

One reader for every shape made of fields: a simple metric's point, a data-array entry, a
workout's series point, a route point. A field that cannot be read raises
:class:`~recovery_lib.errors.Reject` naming the category and the payload field, never the value.

    >>> from recovery_lib.catalogue import lookup
    >>> convert_simple(lookup("step_count"), {"date": "2024-02-06 14:30:00 -0800", "qty": 812},
    ...                None, LATEST_ALLOWED_NEVER)[1]
    {'step_count': 812.0}
    >>> convert_simple(lookup("walking_speed"), {"date": "2024-02-06 14:30:00 -0800", "qty": 3.6},
    ...                "km/hr", LATEST_ALLOWED_NEVER)[1]
    {'walking_speed_m_per_s': 1.0}
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from recovery_lib.catalogue.model import FLOAT, TEXT, Field, MetricSpec
from recovery_lib.catalogue.units import apply, conversion
from recovery_lib.errors import Reject
from recovery_lib.payload.values import LATEST_ALLOWED_NEVER, check_range, parse_date, quantity

__all__ = ["LATEST_ALLOWED_NEVER", "convert_generic", "convert_simple", "json_text", "read_fields", "unit_conversion"]

Converted = tuple[Any, dict[str, object]]  # (natural key, columns filled)


def json_text(value: object, field: str) -> str:
    """A JSON value as the text stored in a jsonb column; NaN or infinity is ``non_finite``."""
    try:
        return json.dumps(value, ensure_ascii=False, allow_nan=False)
    except ValueError:
        raise Reject("non_finite", field) from None


def unit_conversion(kind: str, units: object, default: str, target: str, value: float) -> float:
    """``value`` in ``units`` (``default`` when None) as ``target``; unknown units are ``invalid_point``."""
    found = conversion(kind, default if units is None else units, target)
    if found is None:
        # Unknown units: storing the number at a guessed scale would be silently wrong.
        raise Reject("invalid_point", "units")
    return apply(value, found)


def _number(f: Field, raw: object, used: str, units: object) -> float | None:
    value, own_units = quantity(raw, used)
    if f.zero_is_absent and value == 0:
        return None  # how exports without a sensor say "no data": absent, not a rejection
    if f.kind is not None:
        given = own_units if own_units is not None else units
        value = unit_conversion(f.kind, given, f.default_units or "", f.unit or "", value)
    return check_range(value, f.limits, used)


def read_fields(fields: Iterable[Field], point: dict[str, Any], units: object) -> dict[str, object]:
    """The columns ``fields`` fill from ``point``; fields are checked in order, the first problem wins."""
    values: dict[str, object] = {}
    for f in fields:
        used, raw = f.keys[0], None
        for name in f.keys:
            raw = point.get(name)
            if raw is not None:
                used = name
                break
        if raw is None:
            if f.required:
                raise Reject("missing_value", used)
            continue
        if f.type == FLOAT:
            number = _number(f, raw, used, units)
            if number is not None:
                values[f.column] = number
        elif f.type == TEXT:
            if isinstance(raw, str):
                values[f.column] = raw
        else:
            values[f.column] = json_text(raw, used)
    return values


def convert_simple(spec: MetricSpec, point: dict[str, Any], units: object, latest: datetime) -> Converted:
    """``(recorded_at, values)`` of a point of a simple metric (any family)."""
    key = parse_date(point.get("date"), "date", latest)
    values = read_fields(spec.fields, point, units)
    if not values:
        # Every field optional (sexual activity's three counts) and none there: nothing to store.
        raise Reject("missing_value", spec.fields[0].keys[0])
    return key, values


def convert_generic(name: str, point: dict[str, Any], units: object, latest: datetime) -> Converted:
    """``((recorded_at, name), values)`` of a point of a metric the catalogue does not know.

    Kept in ``other_metrics`` when it has a numeric ``qty`` (bare or ``{"qty", "units"}``): a new app
    version's metric is stored and named, never lost; any other shape is ``unsupported_point``.
    """
    key = parse_date(point.get("date"), "date", latest)
    raw = point.get("qty")
    if raw is None:
        raise Reject("unsupported_point", "qty")
    value, own_units = quantity(raw, "qty")
    given = own_units if own_units is not None else units
    values: dict[str, object] = {"qty": value}  # finite: quantity() refuses NaN and infinities
    if isinstance(given, str):
        values["units"] = given
    return (key, name), values
