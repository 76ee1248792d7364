"""ijson's event stream as payload items: the streaming half of :mod:`recovery_lib.payload.source`.

Walks ``ijson.basic_parse`` events with a small state machine; only one point (or workout) is
built at a time, iteratively, so deeply nested junk cannot hit the recursion limit. Raises
:class:`StructureError` for valid JSON of the wrong shape; JSON errors propagate from ijson.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from decimal import Decimal
from typing import Any

import ijson

from recovery_lib import catalogue
from recovery_lib.errors import NumberTooLong, StructureError

Item = tuple[Any, ...]

# Names whose conversion reads the metric-level ``units`` (every name the catalogue does not know
# too: its units are stored beside the value); when ``name`` precedes ``data`` but ``units`` may
# follow, only these need the header pass.
UNIT_METRICS = catalogue.unit_metric_names()


def _needs_units(name: object) -> bool:
    return isinstance(name, str) and (name in UNIT_METRICS or catalogue.lookup(name) is None)


_START = ("start_map", "start_array")
_END = ("end_map", "end_array")
# ijson event -> the JSON type name in structure messages (the words payload.source._kind uses).
_EVENT_KINDS = {
    "start_map": "object",
    "start_array": "list",
    "string": "string",
    "number": "number",
    "integer": "number",
    "double": "number",
    "boolean": "boolean",
    "null": "null",
}


class Headers:
    """``(name, units)`` of every metric, read lazily in one extra pass when key order needs it."""

    def __init__(self, open_again: Callable[[], AbstractContextManager[Any]] | None):
        self._open_again = open_again
        self._table: list[tuple[Any, Any]] | None = None

    @property
    def available(self) -> bool:
        return self._open_again is not None

    def get(self, position: int) -> tuple[Any, Any] | None:
        if self._table is None and self._open_again is not None:
            self._table = []
            with self._open_again() as stream:
                self._scan(stream)
        table = self._table or []
        return table[position] if position < len(table) else None

    def _scan(self, stream: Any) -> None:
        assert self._table is not None
        try:
            nxt = ijson.basic_parse(stream).__next__
            for _ in _descend_to_metrics(nxt):
                name = units = None
                while True:
                    event, key = nxt()
                    if event == "end_map":
                        break
                    event, value = nxt()
                    if key == "name":
                        name = _build(nxt, event, value)
                    elif key == "units":
                        units = _build(nxt, event, value)
                    else:
                        _skip(nxt, event)
                self._table.append((name, units))
        except (ijson.JSONError, UnicodeDecodeError, NumberTooLong):
            pass  # the main walk reports the problem; metrics not found here are buffered


def _descend_to_metrics(nxt: Callable[[], tuple[str, Any]]) -> Iterator[None]:
    """Header pass: yield once at the start of each metric object (positioned after its start_map)."""
    if nxt()[0] != "start_map":
        return
    while True:
        event, key = nxt()
        if event == "end_map":
            return
        event, value = nxt()
        if key != "data" or event != "start_map":
            _skip(nxt, event)
            continue
        while True:
            event, key = nxt()
            if event == "end_map":
                break
            event, value = nxt()
            if key != "metrics" or event != "start_array":
                _skip(nxt, event)
                continue
            while True:
                event, value = nxt()
                if event == "end_array":
                    break
                if event != "start_map":
                    return
                yield None


def walk(events: Iterator[tuple[str, Any]], headers: Headers) -> Iterator[Item]:
    nxt = events.__next__
    event, value = nxt()
    if event != "start_map":
        raise StructureError(f"the payload is a {_EVENT_KINDS.get(event, event)}, not an object")
    saw_data = False
    while True:
        event, key = nxt()
        if event == "end_map":
            break
        event, value = nxt()
        if key == "data":
            if event != "start_map":
                raise StructureError(f"'data' is a {_EVENT_KINDS.get(event, event)}, not an object")
            saw_data = True
            yield from _walk_data(nxt, headers)
        else:
            _skip(nxt, event)
    if not saw_data:
        raise StructureError("the payload has no 'data' object")


def _walk_data(nxt: Callable[[], tuple[str, Any]], headers: Headers) -> Iterator[Item]:
    while True:
        event, key = nxt()
        if event == "end_map":
            return
        event, value = nxt()
        if key == "metrics":
            if event != "start_array":
                raise StructureError(f"'metrics' is a {_EVENT_KINDS.get(event, event)}, not a list")
            position = 0
            while True:
                event, value = nxt()
                if event == "end_array":
                    break
                if event != "start_map":
                    raise StructureError(
                        f"metric {position} is a {_EVENT_KINDS.get(event, event)}, not an object"
                    )
                yield from _walk_metric(nxt, position, headers)
                position += 1
        elif key == "workouts":
            if event != "start_array":
                raise StructureError(f"'workouts' is a {_EVENT_KINDS.get(event, event)}, not a list")
            index = 0
            while True:
                event, value = nxt()
                if event == "end_array":
                    break
                yield ("workout", index, _build(nxt, event, value))
                index += 1
        elif event == "start_array":
            yield ("array", key)
            index = 0
            while True:
                event, value = nxt()
                if event == "end_array":
                    break
                yield ("entry", index, _build(nxt, event, value))
                index += 1
            yield ("array_end",)
        elif key in catalogue.ARRAYS:
            raise StructureError(f"'{key}' is a {_EVENT_KINDS.get(event, event)}, not a list")
        else:
            _skip(nxt, event)
            yield ("other", key)


def _walk_metric(nxt: Callable[[], tuple[str, Any]], position: int, headers: Headers) -> Iterator[Item]:
    name: Any = None
    units: Any = None
    seen_name = seen_units = announced = False
    buffered: list[Any] | None = None
    index = 0
    while True:
        event, key = nxt()
        if event == "end_map":
            break
        event, value = nxt()
        if key == "name" and not announced:
            name, seen_name = _build(nxt, event, value), True
        elif key == "units" and not announced:
            units, seen_units = _build(nxt, event, value), True
        elif key == "data":
            if event != "start_array":
                raise StructureError(f"'data' of metric {position} is not a list")
            if not announced and buffered is None:
                if seen_name and (seen_units or not _needs_units(name)):
                    announced = True
                else:
                    header = headers.get(position) if headers.available else None
                    if header is not None:
                        (name, units), announced = header, True
                    else:
                        buffered = []
                if announced:
                    yield ("metric", position, name, units)
            while True:
                event, value = nxt()
                if event == "end_array":
                    break
                point = _build(nxt, event, value)
                if buffered is None:
                    yield ("point", index, point)
                else:
                    buffered.append(point)
                index += 1
        else:
            _skip(nxt, event)
    if not announced:
        yield ("metric", position, name, units)
        for number, point in enumerate(buffered or ()):
            yield ("point", number, point)
    yield ("end",)


def _build(nxt: Callable[[], tuple[str, Any]], event: str, value: Any) -> Any:
    """The Python value starting at ``event``, with ijson's ``Decimal`` numbers as floats.

    Points are flat objects, so an object's own members are read in a tight loop; anything nested
    goes to :func:`_build_nested`, which keeps its own stack (no recursion, whatever the depth).
    """
    if event != "start_map":
        if event == "start_array":
            return _build_nested(nxt, [])
        return float(value) if type(value) is Decimal else value
    current: dict[Any, Any] = {}
    while True:
        event, key = nxt()
        if event == "end_map":
            return current
        event, value = nxt()
        if event == "start_map":
            current[key] = _build_nested(nxt, {})
        elif event == "start_array":
            current[key] = _build_nested(nxt, [])
        else:
            current[key] = float(value) if type(value) is Decimal else value


def _build_nested(nxt: Callable[[], tuple[str, Any]], current: Any) -> Any:
    """Fill the container ``current`` (just opened) until it closes."""
    stack: list[Any] = []
    key: Any = None
    while True:
        event, value = nxt()
        if event == "map_key":
            key = value
            continue
        if event in _END:
            if not stack:
                return current
            current = stack.pop()
            continue
        if event == "start_map" or event == "start_array":
            child: Any = {} if event == "start_map" else []
        else:
            child = float(value) if type(value) is Decimal else value
        if type(current) is dict:
            current[key] = child
        else:
            current.append(child)
        if event == "start_map" or event == "start_array":
            stack.append(current)
            current = child


def _skip(nxt: Callable[[], tuple[str, Any]], event: str) -> None:
    """Consume the value starting at ``event`` without building it."""
    if event not in _START:
        return
    depth = 1
    while depth:
        event = nxt()[0]
        if event in _START:
            depth += 1
        elif event in _END:
            depth -= 1
