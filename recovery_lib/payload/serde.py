"""The API's own serialisation of its internal form, re-derived: the bytes it hashed into ``payload_hash``.

The API hashes ``serde_json::to_string(&IngestPayload)`` (``src/handlers/ingest.rs``): compact JSON,
``{"data":{"metrics":[...],"workouts":[...]}}``, each metric ``{"type":"<variant>",`` then every field
of its struct in declaration order (``null`` for ``None``), a workout of ``workouts`` the same without
``type``. jsonb keeps the values and the array order but not the key order or the number layout,
so the text is rebuilt from the stored value with each build's field order
(:data:`recovery_lib.catalogue.internal.BUILDS`), every value formatted by its Rust type:

* ``f64``: the shortest digits that read back as the same double (what ryu prints), laid out as
  ryu does: ``72.0`` (an integral value keeps ``.0``), ``0.31``, ``0.00001``, ``1e-7``, ``1e16``,
  ``1.2345678901234568e17`` (fixed notation from 1e-5 up to below 1e16);
* ``f32`` the same with the shortest digits of the single;
* integers as integers, ``true``/``false``, strings (ids, dates, enums, decimals) re-escaped as
  serde escapes (``"``, ``\\``, control characters; nothing else), ``Vec<String>`` as a list.

A value a field's type cannot hold (a string in an ``f64``, 68.5 in an ``i16``) means that build
did not write it. A zero float is ambiguous: jsonb has no negative zero, and ``-0.0`` was as
likely as ``0.0``.

    >>> f64_text(72.0), f64_text(1e-7), f64_text(1e16), f64_text(0.31)
    ('72.0', '1e-7', '1e16', '0.31')
    >>> renderer = Renderer()
    >>> renderer.feed("metrics", {"type": "BloodPressure", "id": "x", "user_id": "y", "recorded_at": "z",
    ...                           "systolic": 118, "diastolic": 76, "pulse": None, "source_device": None,
    ...                           "created_at": "w"})
    >>> [build.name for build in renderer.alive()][:2]     # every build since 7eda72e writes it so
    ['7eda72e', '686488f']
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from recovery_lib.catalogue.internal import BUILDS, TAG_KEY, Build, inner_type

LISTS = ("metrics", "workouts")  # IngestData's fields: every build this renders has exactly these


class NotRenderable(Exception):
    """The value cannot come from a field of that Rust type (so not from that build)."""


def _layout(negative: bool, digits: str, exponent: int) -> str:
    """ryu's layout of ``0.<digits> * 10**(exponent + len(digits))`` (digits without trailing zeros)."""
    sign = "-" if negative else ""
    length = len(digits)
    point = length + exponent  # 10**(point - 1) <= |value| < 10**point
    if 0 <= exponent and point <= 16:
        return f"{sign}{digits}{'0' * exponent}.0"
    if 0 < point <= 16:
        return f"{sign}{digits[:point]}.{digits[point:]}"
    if -5 < point <= 0:
        return f"{sign}0.{'0' * -point}{digits}"
    mantissa = digits if length == 1 else f"{digits[0]}.{digits[1:]}"
    return f"{sign}{mantissa}e{point - 1}"


def _shortest(text: str) -> tuple[bool, str, int]:
    """(negative, significant digits, exponent) of a decimal text, trailing zeros dropped."""
    sign, digits, exponent = Decimal(text).as_tuple()
    shown = "".join(map(str, digits)).lstrip("0")
    stripped = shown.rstrip("0")
    return bool(sign), stripped, int(exponent) + len(shown) - len(stripped)


def f64_text(value: float) -> str:
    """How serde_json (ryu) prints a double; NaN and infinities, which it prints as null, are ``null``."""
    if not math.isfinite(value):
        return "null"
    if value == 0:
        return "-0.0" if math.copysign(1.0, value) < 0 else "0.0"
    return _layout(*_shortest(repr(value)))  # repr: the shortest digits that read back the same


def f32_text(value: float) -> str:
    """How serde_json (ryu) prints a single: the fewest digits that read back as the same f32."""
    if not math.isfinite(value):
        return "null"
    single = struct.unpack("f", struct.pack("f", value))[0]
    if single == 0:
        return "-0.0" if math.copysign(1.0, single) < 0 else "0.0"
    for precision in range(1, 10):
        text = f"{single:.{precision}g}"
        if struct.unpack("f", struct.pack("f", float(text)))[0] == single:
            return _layout(*_shortest(text))
    return _layout(*_shortest(repr(single)))


def string_text(value: str) -> str:
    # json.dumps without ASCII escaping escapes what serde_json escapes: '"', '\\' and U+0000-U+001F
    # (as \b \t \n \f \r or \u00xx in lower case); '/' and everything else is written as it is.
    return json.dumps(value, ensure_ascii=False)


def value_text(value: Any, rust_type: str) -> tuple[str, bool]:
    """``(text, ambiguous)`` of one field's value; :class:`NotRenderable` when the type cannot hold it."""
    optional = rust_type.startswith("Option<")
    inner = inner_type(rust_type)
    if value is None:
        if optional:
            return "null", False
        raise NotRenderable(rust_type)
    if inner in ("f64", "f32"):
        if type(value) not in (int, float):
            raise NotRenderable(rust_type)
        try:
            number = float(value)
        except OverflowError:  # an integer past any double (jsonb keeps every digit)
            raise NotRenderable(rust_type) from None
        return (f64_text if inner == "f64" else f32_text)(number), number == 0
    if inner in ("i16", "i32", "i64", "usize"):
        if type(value) is int:
            return str(value), False
        if type(value) is float and value.is_integer():
            return str(int(value)), False
        raise NotRenderable(rust_type)
    if inner == "bool":
        if type(value) is not bool:
            raise NotRenderable(rust_type)
        return ("true" if value else "false"), False
    if inner == "Vec<String>":
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise NotRenderable(rust_type)
        return "[" + ",".join(string_text(item) for item in value) + "]", False
    if not isinstance(value, str):  # ids, dates, enums, decimals, texts: serde writes strings
        raise NotRenderable(rust_type)
    return string_text(value), False


def object_text(obj: dict[str, Any], fields: Sequence[tuple[str, str]], tag: str | None) -> tuple[str, bool]:
    """``(text, ambiguous)`` of one object with ``fields`` (``tag``: the metric's ``type``, first)."""
    expected = len(fields) + (tag is not None)
    if len(obj) != expected or any(name not in obj for name, _ in fields):
        raise NotRenderable("the keys are not this build's fields")
    parts = [f'"{TAG_KEY}":{string_text(tag)}'] if tag is not None else []
    ambiguous = False
    for name, rust_type in fields:
        text, unsure = value_text(obj[name], rust_type)
        parts.append(f"{string_text(name)}:{text}")
        ambiguous = ambiguous or unsure
    return "{" + ",".join(parts) + "}", ambiguous


@dataclass
class _Attempt:
    """One build's rendering in progress."""

    build: Build
    hasher: Any
    size: int = 0
    list_name: str | None = None
    first: bool = True

    def write(self, text: str) -> None:
        data = text.encode("utf-8")
        self.hasher.update(data)
        self.size += len(data)


@dataclass(frozen=True)
class Rendering:
    """One build's finished rendering: the SHA-256 (hex) and length of the text it would have hashed."""

    build: Build
    sha256: str
    size: int


class Renderer:
    """Renders one payload's objects, streamed, for every build that can have written them.

    Feed the objects of ``metrics``, then of ``workouts`` (:meth:`feed`), then :meth:`finish`. A
    build whose fields do not fit an object drops out; memory is one object, whatever the payload.
    """

    def __init__(self, builds: Iterable[Build] = BUILDS):
        self._attempts = [_Attempt(b, hashlib.sha256()) for b in builds if b.lists == LISTS]
        self.ambiguous = False  # a zero float: the original may have been -0.0

    def alive(self) -> list[Build]:
        return [a.build for a in self._attempts]

    def _enter(self, attempt: _Attempt, list_name: str) -> None:
        """Write the text between lists up to ``list_name`` (lists come in IngestData's order)."""
        while attempt.list_name != list_name:
            position = -1 if attempt.list_name is None else LISTS.index(attempt.list_name)
            following = LISTS[position + 1]
            attempt.write('{"data":{' if attempt.list_name is None else "],")
            attempt.write(f"{string_text(following)}:[")
            attempt.list_name, attempt.first = following, True

    def feed(self, list_name: str, obj: Any) -> None:
        """One object of ``metrics`` or ``workouts`` (objects of metrics come before workouts)."""
        texts: dict[tuple[tuple[str, str], ...], tuple[str, bool] | None] = {}  # one rendering per field list
        kept = []
        for attempt in self._attempts:
            if attempt.list_name is not None and LISTS.index(list_name) < LISTS.index(attempt.list_name):
                continue  # out of order: no build writes a metric after the workouts
            tag = obj.get(TAG_KEY) if list_name == "metrics" and isinstance(obj, dict) else None
            fields = attempt.build.workouts if list_name == "workouts" else attempt.build.metrics.get(str(tag))
            if fields is None or not isinstance(obj, dict):
                continue
            if fields not in texts:
                try:
                    texts[fields] = object_text(obj, fields, tag)
                except NotRenderable:
                    texts[fields] = None
            rendered = texts[fields]
            if rendered is None:
                continue
            self._enter(attempt, list_name)
            attempt.write(("" if attempt.first else ",") + rendered[0])
            attempt.first = False
            self.ambiguous = self.ambiguous or rendered[1]
            kept.append(attempt)
        self._attempts = kept

    def finish(self) -> list[Rendering]:
        """Every build still standing, with the SHA-256 of its text."""
        done = []
        for attempt in self._attempts:
            self._enter(attempt, LISTS[-1])
            attempt.write("]}}")
            done.append(Rendering(attempt.build, attempt.hasher.hexdigest(), attempt.size))
        self._attempts = []
        return done
