"""JSON text as Python values, for every value jsonb can store: no depth limit, numbers of any size.

PostgreSQL keeps jsonb nested about 5,000 levels deep and numbers with all their digits
(``1e5000`` is stored, and rendered, as a 1 and 5,000 zeros). ``json.loads`` raises
``RecursionError`` near 1,000 levels and ``ValueError`` for an integer of more than 4,300 digits
(``sys.set_int_max_str_digits``), so one such value would stop whatever reads it. :func:`loads`
tries ``json.loads`` first (the fast path, and the same values for everything it can read) and
otherwise decodes iteratively: any depth, and an integer too long for ``int`` as a ``Decimal``
(the value rules call it ``out_of_range``, as they do an integer no float can hold).

Every jsonb value psycopg2 hands to the package is decoded with it (:func:`register`, called by
:mod:`recovery_lib.db`), and so are the points the stored-payload reader fetches as text.

    >>> loads("[" * 5000 + "]" * 5000) is not None
    True
    >>> loads("1" + "0" * 5000) > 10 ** 308
    True
"""

from __future__ import annotations

import json
import math
import re
import sys
from decimal import Decimal
from json.decoder import scanstring
from typing import Any

_WHITESPACE = re.compile(r"[ \t\n\r]*")
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?")
# json.loads reads these too (NaN and the infinities are not JSON, but Python writes them).
_LITERALS = (("true", True), ("false", False), ("null", None), ("NaN", math.nan), ("Infinity", math.inf),
             ("-Infinity", -math.inf))


def loads(text: str | bytes | bytearray) -> Any:
    """``json.loads(text)``, except that depth and integer length never make it fail.

    Raises ``ValueError`` (``json.JSONDecodeError``) only for text that is not JSON.
    """
    if isinstance(text, bytes | bytearray):
        text = bytes(text).decode(json.detect_encoding(text), "surrogatepass")
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise
    except (RecursionError, ValueError):  # too deep; the only other ValueError is an integer too long
        return _decode(text)


def register() -> None:
    """Make psycopg2 decode ``json`` and ``jsonb`` with :func:`loads`, for every connection of the process."""
    import psycopg2.extras

    psycopg2.extras.register_default_json(globally=True, loads=loads)
    psycopg2.extras.register_default_jsonb(globally=True, loads=loads)


def _skip(text: str, index: int) -> int:
    return _WHITESPACE.match(text, index).end()  # type: ignore[union-attr]  # matches the empty string


def _key(text: str, index: int) -> tuple[str, int]:
    """An object key and its colon, starting at ``index``; the index after them (and whitespace)."""
    if not text.startswith('"', index):
        raise json.JSONDecodeError("Expecting property name enclosed in double quotes", text, index)
    key, index = scanstring(text, index + 1, True)
    index = _skip(text, index)
    if not text.startswith(":", index):
        raise json.JSONDecodeError("Expecting ':' delimiter", text, index)
    return key, _skip(text, index + 1)


def _number(literal: str, fraction: str | None, exponent: str | None) -> Any:
    if fraction or exponent:
        return float(literal)  # as json.loads: 1e5000 is inf, 1e-5000 is 0.0
    limit = sys.get_int_max_str_digits()
    if limit and len(literal.lstrip("-")) > limit:
        return Decimal(literal)
    return int(literal)


def _decode(text: str) -> Any:
    """The iterative decoder: a stack of open containers instead of recursion."""
    end = len(text)
    stack: list[Any] = []  # open containers, innermost last
    keys: list[Any] = []  # per open container: the key its next value goes to (None for lists)
    index = _skip(text, 0)
    while True:
        char = text[index:index + 1]
        if char == "{" or char == "[":
            index = _skip(text, index + 1)
            closer = "}" if char == "{" else "]"
            if text.startswith(closer, index):
                value: Any = {} if char == "{" else []
                index += 1
            else:
                stack.append({} if char == "{" else [])
                if char == "{":
                    key, index = _key(text, index)
                    keys.append(key)
                else:
                    keys.append(None)
                continue
        elif char == '"':
            value, index = scanstring(text, index + 1, True)
        else:
            match = _NUMBER.match(text, index)
            if match:
                value, index = _number(match.group(), match.group(1), match.group(2)), match.end()
            else:
                for literal, constant in _LITERALS:
                    if text.startswith(literal, index):
                        value, index = constant, index + len(literal)
                        break
                else:
                    raise json.JSONDecodeError("Expecting value", text, index)
        # Put the value into its container; close every container that ends here.
        while True:
            index = _skip(text, index)
            if not stack:
                if index != end:
                    raise json.JSONDecodeError("Extra data", text, index)
                return value
            top = stack[-1]
            if type(top) is list:
                top.append(value)
            else:
                top[keys[-1]] = value
            char = text[index:index + 1]
            if char == ",":
                index = _skip(text, index + 1)
                if type(top) is dict:
                    keys[-1], index = _key(text, index)
                break
            if char != ("]" if type(top) is list else "}"):
                raise json.JSONDecodeError("Expecting ',' delimiter", text, index)
            index += 1
            value = stack.pop()
            keys.pop()
