"""The exporter's dates, both ways: written as a phone shows them, read back by the row oracle.

Phones write ``yyyy-MM-dd HH:mm:ss Z`` (``2024-02-06 14:30:00 -0800``); a phone set to 12-hour
time writes the hour without padding and am/pm after a narrow no-break space
(``2024-09-21 7:57:00\u202fam +1000``). Times here are epoch minutes (a fraction for seconds).
:func:`read` is the oracle's own reading of exactly these two forms (it is not the parser's and
validates nothing).

    >>> fmt(28_000_000, zone(600), clock12=True)
    '2023-03-28 8:40:00\u202fpm +1000'
    >>> read('2023-03-28 8:40:00\u202fpm +1000') == read('2023-03-28 20:40:00 +1000')
    True
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta, timezone

NARROW_NO_BREAK_SPACE = "\u202f"  # what iOS puts before am/pm
_DAY = 86_400


@functools.lru_cache(maxsize=64)
def zone(offset_minutes: int) -> timezone:
    return timezone(timedelta(minutes=offset_minutes))


@functools.lru_cache(maxsize=4096)
def _day(day: int) -> str:
    return datetime.fromtimestamp(day * _DAY, UTC).strftime("%Y-%m-%d")


@functools.lru_cache(maxsize=64)
def _zone_text(tz: timezone) -> tuple[int, str]:
    offset = int(tz.utcoffset(None).total_seconds())
    sign = "-" if offset < 0 else "+"
    return offset, f"{sign}{abs(offset) // 3600:02d}{abs(offset) % 3600 // 60:02d}"


def fmt(t: float, tz: timezone, *, clock12: bool = False) -> str:
    """Epoch minute ``t`` as the phone writes it in zone ``tz`` (whole seconds)."""
    offset, text = _zone_text(tz)
    day, second = divmod(round(t * 60) + offset, _DAY)
    hour, rest = divmod(second, 3600)
    minute, second = divmod(rest, 60)
    if not clock12:
        return f"{_day(day)} {hour:02d}:{minute:02d}:{second:02d} {text}"
    meridiem = "am" if hour < 12 else "pm"
    return f"{_day(day)} {hour % 12 or 12}:{minute:02d}:{second:02d}{NARROW_NO_BREAK_SPACE}{meridiem} {text}"


def read(text: str) -> datetime:
    """A date written by :func:`fmt` as an aware datetime (in the offset it shows)."""
    if NARROW_NO_BREAK_SPACE not in text:
        return datetime.fromisoformat(text)  # Python 3.11 reads "2024-02-06 14:30:00 -0800" as it is
    day, clock, offset = text.split(" ")  # the narrow no-break space is not a space here
    clock, _, meridiem = clock.partition(NARROW_NO_BREAK_SPACE)
    hour, minute, second = (int(x) for x in clock.split(":"))
    hour = hour % 12 + (12 if meridiem == "pm" else 0)
    return datetime.fromisoformat(f"{day} {hour:02d}:{minute:02d}:{second:02d} {offset}")
