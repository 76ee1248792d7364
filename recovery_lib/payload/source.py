"""Payload sources: a raw payload (text, file or decoded object) as the item stream the parser reads.

Items, in payload order::

    ("metric", position, name, units)   # start of data.metrics[position]; name/units raw
    ("point", index, point)             # one element of that metric's data list, raw
    ("end",)                            # end of that metric
    ("workout", index, obj)             # one element of data.workouts, raw
    ("array", name)                     # start of another list under data (stateOfMind, ecg, ...)
    ("entry", index, obj)               # one element of it, raw
    ("array_end",)                      # its end
    ("other", name)                     # a value under data that is not a list (named, unsupported)
    ("record", index, obj, list)        # the API's internal form: data.metrics[index] or data.workouts[index]

Text (``bytes``, ``str``, binary or text file objects) is streamed with ijson's event parser, so
memory is bounded by one metric point, not the payload. Already decoded objects (``dict`` as
psycopg2 returns ``jsonb``) are walked. Numbers read from text come out as ``int`` or ``float``
(ijson's ``Decimal`` is converted), exactly as ``json.loads`` would give them.

    >>> list(iter_items(b'{"data": {"metrics": [{"name": "step_count", "data": [{"qty": 5}]}]}}'))
    [('metric', 0, 'step_count', None), ('point', 0, {'qty': 5}), ('end',)]

Two caveats the streaming needs:

* **NaN / Infinity, and very long numbers.** ijson (3.6, every backend) rejects these
  non-standard literals and has no option to allow them (ICRAR/ijson#33), but the contract wants
  them as ``non_finite`` point rejections; it also fails on an integer longer than Python's
  4,300-digit limit. When ijson fails on text that contains ``NaN`` or ``Infinity`` bytes, or on
  such a number, the text is parsed again with :func:`recovery_lib.safe_json.loads` (which
  accepts them, at any depth) and that object is walked, skipping the items already yielded.
  Only then is the whole payload in memory; a file object must be seekable for this (else the
  payload is ``not_json``, or ``number_out_of_range`` for the long number). Duplicate JSON keys could make the two walks
  disagree; the exporter does not write them.
* **Key order.** A metric's ``name``/``units`` must be known before its points. The exporter
  writes them first, but ``jsonb::text`` sorts keys (``"data"`` before ``"name"``). Then the
  headers of every metric are read in one extra streaming pass over the payload (text in memory
  or a seekable file), or, for a stream that cannot be re-read, that metric's points are buffered.
  When ``name`` came first and the metric ignores units, the pass is skipped and ``units`` is
  reported as ``None``.
"""

from __future__ import annotations

import io
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from decimal import Decimal
from typing import IO, Any

import ijson

from recovery_lib import catalogue, safe_json
from recovery_lib.errors import NumberTooLong, PayloadError, StructureError
from recovery_lib.payload.events import Headers, Item, walk
from recovery_lib.payload.forms import is_internal

_NOT_JSON = ("not_json", "the payload is not valid JSON")
_STRING_SCALAR = ("invalid_structure", "the payload is a string that is not JSON text, not an object")

# --------------------------------------------------------------------------- object sources


def iter_object_items(payload: Any) -> Iterator[Item]:
    """Items of an already decoded payload (``dict``; anything else is ``invalid_structure``).

    A Python ``str`` here is a decoded JSON string scalar, so it is ``invalid_structure``; use
    :func:`iter_items` for JSON text. A payload in the API's internal form
    (:func:`~recovery_lib.payload.forms.is_internal`) gives ``record`` items. JSON *text* is read
    as the exporter's form (the stored reader has the server expand an internal-form text).
    """
    if not isinstance(payload, dict):
        raise PayloadError("invalid_structure", f"the payload is a {_kind(payload)}, not an object")
    if "data" not in payload:
        raise PayloadError("invalid_structure", "the payload has no 'data' object")
    data = payload["data"]
    if not isinstance(data, dict):
        raise PayloadError("invalid_structure", f"'data' is a {_kind(data)}, not an object")
    internal = is_internal(data)
    for key, value in data.items():
        if internal and key in ("metrics", "workouts"):
            if not isinstance(value, list):
                raise PayloadError("invalid_structure", f"'{key}' is a {_kind(value)}, not a list")
            for index, record in enumerate(value):
                yield ("record", index, record, key)
        elif key == "metrics":
            if not isinstance(value, list):
                raise PayloadError("invalid_structure", f"'metrics' is a {_kind(value)}, not a list")
            for position, metric in enumerate(value):
                if not isinstance(metric, dict):
                    kind = _kind(metric)
                    raise PayloadError("invalid_structure", f"metric {position} is a {kind}, not an object")
                points = metric.get("data", [])
                if not isinstance(points, list):
                    raise PayloadError("invalid_structure", f"'data' of metric {position} is not a list")
                yield ("metric", position, metric.get("name"), metric.get("units"))
                for index, point in enumerate(points):
                    yield ("point", index, point)
                yield ("end",)
        elif key == "workouts":
            if not isinstance(value, list):
                raise PayloadError("invalid_structure", f"'workouts' is a {_kind(value)}, not a list")
            for index, workout in enumerate(value):
                yield ("workout", index, workout)
        elif isinstance(value, list):
            yield ("array", key)
            for index, entry in enumerate(value):
                yield ("entry", index, entry)
            yield ("array_end",)
        elif key in catalogue.ARRAYS:
            raise PayloadError("invalid_structure", f"'{key}' is a {_kind(value)}, not a list")
        else:
            yield ("other", key)


def _kind(value: Any) -> str:
    """A JSON type name for structure messages (the type, never the value)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float | Decimal):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "list"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


# --------------------------------------------------------------------------- text sources


def iter_items(source: str | bytes | bytearray | memoryview | IO[bytes] | IO[str] | Any) -> Iterator[Item]:
    """Stream items from JSON text (``bytes``/``str``/file object) or walk a decoded object.

    Raises :class:`PayloadError`: ``not_json`` for text that is not JSON, ``invalid_structure``
    for JSON of the wrong shape (top level not an object, no ``data`` object, ``metrics`` or
    ``workouts`` not a list, a metric not an object, a metric's ``data`` not a list). Items
    before the failure may already have been yielded.

    A ``str`` is read as JSON text; one that is not JSON is taken for what psycopg2 returns for a
    ``jsonb`` string scalar, so it is ``invalid_structure``, never ``not_json`` (a jsonb value is
    always valid JSON). For values decoded from the database :func:`iter_object_items` is exact:
    there a ``str`` is always a string scalar, even one that looks like JSON.

        >>> with open("payload.json", "rb") as f:   # doctest: +SKIP
        ...     for item in iter_items(f): ...
    """
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
        yield from _stream(io.BytesIO(data), lambda: data, _reader_of(data))
    elif isinstance(source, str):
        # A str is JSON text, or a decoded jsonb string scalar (psycopg2 returns those as str):
        # when it is not JSON text it can only be the latter, so it is the wrong shape, not bad JSON.
        encoded = source.encode("utf-8", "surrogatepass")
        yield from _stream(io.BytesIO(encoded), lambda: encoded, _reader_of(encoded), _STRING_SCALAR)
    elif hasattr(source, "read"):
        yield from _stream_file(source)
    else:
        yield from iter_object_items(source)


def _reader_of(data: bytes) -> Callable[[], AbstractContextManager[Any]]:
    @contextmanager
    def open_again() -> Iterator[Any]:
        yield io.BytesIO(data)

    return open_again


def _stream_file(file: Any) -> Iterator[Item]:
    binary: Any = _Utf8Reader(file) if isinstance(file.read(0), str) else file
    try:
        start = file.tell() if file.seekable() else None
    except (OSError, AttributeError, ValueError):
        start = None
    if start is None:
        yield from _stream(binary, None, None)
        return

    def reread() -> bytes:
        file.seek(start)
        content = file.read()
        return content.encode("utf-8", "surrogatepass") if isinstance(content, str) else content

    @contextmanager
    def open_again() -> Iterator[Any]:
        # The header pass reads from the start, then puts the position back where the main
        # parser left it: that one reads sequentially, so it continues unharmed.
        resume = file.tell()
        file.seek(start)
        try:
            yield binary
        finally:
            file.seek(resume)

    yield from _stream(binary, reread, open_again)


class _Utf8Reader:
    """A text file as the bytes ijson wants."""

    def __init__(self, file: IO[str]):
        self._file = file

    def read(self, size: int = -1) -> bytes:
        return self._file.read(size).encode("utf-8", "surrogatepass")


_DIGITS = b"0123456789"


class _DigitGuard:
    """A byte stream that refuses a run of digits longer than Python converts to ``int``.

    ijson's C backend fails on such a number with its state broken (a later call can crash the
    interpreter), so the stream stops first with :class:`NumberTooLong`. Checked per chunk in C
    (a regex, ``strip``), carrying a run across chunk boundaries.
    """

    def __init__(self, stream: Any, limit: int):
        self._stream, self._limit, self._run = stream, limit, 0
        self._long = re.compile(rb"(?<![0-9])[0-9]{%d}" % (limit + 1))

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        if data:
            lead = len(data) - len(data.lstrip(_DIGITS))
            if self._run + lead > self._limit or self._long.search(data):
                raise NumberTooLong("a number longer than Python converts")
            tail = len(data) - len(data.rstrip(_DIGITS))
            self._run = self._run + len(data) if tail == len(data) else tail
        return data


def _guarded(stream: Any) -> Any:
    limit = sys.get_int_max_str_digits()
    return _DigitGuard(stream, limit) if limit else stream


def _stream(
    stream: Any,
    reread: Callable[[], bytes] | None,
    open_again: Callable[[], AbstractContextManager[Any]] | None,
    not_json: tuple[str, str] = _NOT_JSON,
) -> Iterator[Item]:
    """Run the event walker; on a JSON error fall back to ``json.loads`` for NaN/Infinity.

    ``reread`` gives the whole text for that fallback, ``open_again`` a fresh stream for the
    header pass; ``None`` when the source cannot be read twice. ``not_json`` is the
    error for text that is not JSON (for a ``str``, see :func:`iter_items`).
    """
    events = ijson.basic_parse(_guarded(stream))
    if open_again is not None:
        reopen = open_again

        @contextmanager
        def open_again_guarded() -> Iterator[Any]:
            with reopen() as again:
                yield _guarded(again)

        open_again = open_again_guarded
    yielded = 0
    try:
        try:
            for item in walk(events, Headers(open_again)):
                yielded += 1
                yield item
            for _ in events:  # trailing text after the object is not JSON either
                pass
        except StructureError as exc:
            for _ in events:  # wrong shape, but is it JSON at all? not_json wins
                pass
            raise PayloadError("invalid_structure", str(exc)) from None
    except (ijson.JSONError, NumberTooLong, ValueError, SystemError) as exc:
        # NumberTooLong: the guard stopped before ijson met an integer longer than Python converts
        # (ValueError/SystemError: in case one still reaches it); UnicodeDecodeError is a
        # ValueError too, but means what a JSONError means.
        too_long = not isinstance(exc, ijson.JSONError | UnicodeDecodeError)
        text = reread() if reread is not None else None
        if text is None:
            if too_long:
                raise PayloadError("number_out_of_range", "a number has more digits than a stream can be read "
                                   "with; give the payload as text or a seekable file") from None
            raise PayloadError(*not_json) from None
        if not too_long and b"NaN" not in text and b"Infinity" not in text:
            raise PayloadError(*not_json) from None
        try:
            decoded = safe_json.loads(text)
        except ValueError:
            raise PayloadError(*not_json) from None
        for number, item in enumerate(iter_object_items(decoded)):
            if number >= yielded:
                yield item
