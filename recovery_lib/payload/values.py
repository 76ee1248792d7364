"""Value rules of the payload contract (docs/payload-format.md): dates, numbers, quantities, limits.

Every check raises :class:`~recovery_lib.errors.Reject` with a category and the payload field it concerns; the
value itself never travels with it, so nothing downstream can leak a health value into a
message.

    >>> parse_date("2024-02-06 14:30:00 -0800", "date", LATEST_ALLOWED_NEVER)
    datetime.datetime(2024, 2, 6, 22, 30, tzinfo=datetime.timezone.utc)
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from decimal import Decimal

from recovery_lib.errors import Reject

__all__ = ["Reject", "check_range", "number", "parse_date", "quantity", "text"]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Latest bound for callers that want no "future" check (doctest above, tools); real parses pass now + 1 day.
LATEST_ALLOWED_NEVER = datetime.max.replace(tzinfo=UTC)

# Plausibility limits, inclusive, of what the sleep and workout converters compute (the metrics'
# own limits are in the catalogue).
HEART_RATE = (20.0, 300.0)
MINUTES = (0.0, 1440.0)
EFFICIENCY = (0.0, 100.0)  # a derived percentage (sleep): the same rules as a given value
WORKOUT_ENERGY = (0.0, 20000.0)
WORKOUT_DISTANCE = (0.0, 1e6)


def number(value: object, field: str) -> float:
    """A JSON number as a float, strictly.

    ``None`` is ``missing_value``. Strings are ``non_numeric`` even when they look numeric
    ("72"): the exporter writes numbers as numbers, so a string means something upstream is
    wrong and guessing would hide it. Bools are ``non_numeric`` although Python treats them as
    ints. NaN and infinities (floats, ``Decimal``) are ``non_finite``; an integer too large for a
    float (also one decoded as a ``Decimal`` for its length) is ``out_of_range``.
    """
    kind = type(value)
    if kind is float:
        if math.isfinite(value):  # type: ignore[arg-type]
            return value  # type: ignore[return-value]
        raise Reject("non_finite", field)
    if kind is int:
        try:
            return float(value)  # type: ignore[arg-type]
        except OverflowError:
            raise Reject("out_of_range", field) from None
    if value is None:
        raise Reject("missing_value", field)
    if isinstance(value, bool):
        raise Reject("non_numeric", field)
    if isinstance(value, Decimal | int | float):  # Decimal from ijson and safe_json, subclasses of int/float
        try:
            result = float(value)
        except OverflowError:
            raise Reject("out_of_range", field) from None
        if not math.isfinite(result):
            # A finite Decimal beyond any float (an integer of 5,000 digits) is out of range, like 10**400.
            finite = value.is_finite() if isinstance(value, Decimal) else False
            raise Reject("out_of_range" if finite else "non_finite", field)
        return result
    raise Reject("non_numeric", field)


def quantity(value: object, field: str) -> tuple[float, object]:
    """A number given bare or as a ``{"qty": ..., "units": ...}`` object: ``(number, units or None)``.

    >>> quantity({"qty": 5, "units": "km"}, "distance")
    (5.0, 'km')
    """
    if type(value) is dict:
        if "qty" not in value:
            raise Reject("non_numeric", field)
        return number(value["qty"], field), value.get("units")
    return number(value, field), None


def check_range(value: float, limits: tuple[float, float], field: str) -> float:
    """``value`` when inside ``limits`` (inclusive), else ``out_of_range``."""
    if limits[0] <= value <= limits[1]:
        return value
    raise Reject("out_of_range", field)


# A phone set to 12-hour time: "2024-09-21 7:57:00\u202fam +1000" (iOS puts a narrow no-break space,
# sometimes a no-break space or a plain one, before am/pm; the hour is not zero-padded).
_TWELVE_HOUR = re.compile(
    r"(\d{4}-\d{2}-\d{2}) (\d{1,2})(:\d{2}:\d{2}(?:\.\d+)?)[ \u00a0\u202f]([aApP])[mM] ([+-]\d{2}:?\d{2}|Z)"
)


def _from_twelve_hour(value: str) -> datetime:
    """The instant of a 12-hour date, or ValueError (hour 0 or over 12 is not a 12-hour clock)."""
    match = _TWELVE_HOUR.fullmatch(value)
    if match is None:
        raise ValueError(value)
    day, hour_text, rest, meridiem, offset = match.groups()
    hour = int(hour_text)
    if not 1 <= hour <= 12:
        raise ValueError(value)
    hour = hour % 12 + (12 if meridiem in "pP" else 0)
    return datetime.fromisoformat(f"{day} {hour:02d}{rest} {offset}")


def parse_date(value: object, field: str, latest: datetime) -> datetime:
    """A payload date as a UTC datetime.

    Accepts the exporter's ``yyyy-MM-dd HH:mm:ss Z`` (``2024-02-06 14:30:00 -0800``), the same on
    a phone set to 12-hour time (``2024-09-21 7:57:00\u202fam +1000``, am/pm in either case after
    a space, a no-break space or a narrow no-break space) and ISO 8601
    (``2024-02-06T14:30:00-08:00``, ``...Z``, fractional seconds). A date without an offset is
    ``invalid_date``: guessing a zone would shift the natural key by hours. Before 1970-01-01 UTC
    or after ``latest`` is ``date_out_of_range``.

    >>> parse_date("2024-09-21 7:57:00\u202fpm +1000", "date", LATEST_ALLOWED_NEVER).isoformat()
    '2024-09-21T09:57:00+00:00'
    """
    if value is None:
        raise Reject("missing_date", field)
    if not isinstance(value, str):
        raise Reject("invalid_date", field)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        try:
            parsed = _from_twelve_hour(value)  # only after the common form failed: it costs a regex
        except ValueError:
            raise Reject("invalid_date", field) from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise Reject("invalid_date", field)
    try:
        parsed = parsed.astimezone(UTC)
    except OverflowError:  # year 1 with a positive offset, year 9999 with a negative one
        raise Reject("date_out_of_range", field) from None
    if parsed < EPOCH or parsed > latest:
        raise Reject("date_out_of_range", field)
    return parsed


def text(value: object) -> str | None:
    """A free-text field (``source``, workout ``name``): kept when a string, ignored otherwise."""
    return value if isinstance(value, str) else None
