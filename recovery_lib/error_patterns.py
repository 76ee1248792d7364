"""One error categoriser, shared by discovery, recovery and the monitor.

    >>> categorize_error("number of parameters must be between 0 and 65535")
    'parameter_limit'
"""

from __future__ import annotations

import json
import re
from typing import Any

from recovery_lib import safe_json

# Order matters: the first matching category wins (a timeout during connect is a timeout).
CATEGORIES: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        "parameter_limit",
        re.compile(
            r"number of parameters must be between 0 and 65535|too many (bind )?parameters|"
            r"bind message has \d+ parameter formats|bind message supplies \d+ parameters?, but prepared "
            r"statement .* requires \d+|65535|parameter limit",
            re.I,
        ),
    ),
    (
        "duplicate_key",
        re.compile(r"duplicate key value|unique constraint|uniqueviolation|already exists", re.I),
    ),
    ("timeout", re.compile(r"timeout|timed out|statement_timeout|canceling statement", re.I)),
    (
        "connection",
        re.compile(
            r"connection|server closed|could not connect|terminating connection|broken pipe|"
            r"connection reset|network|operationalerror|admin shutdown",
            re.I,
        ),
    ),
    ("memory", re.compile(r"out of memory|memoryerror|memory exhausted|cannot allocate", re.I)),
    (
        "parse",
        re.compile(r"json|parse|decode|unexpected (token|character)|invalid structure|malformed", re.I),
    ),
    (
        "validation",
        re.compile(
            r"validat|invalid|out of range|not a number|must be|required|missing|check constraint|"
            r"non[- ]numeric|null value",
            re.I,
        ),
    ),
)

ERROR_CATEGORIES: tuple[str, ...] = (*(name for name, _ in CATEGORIES), "other")


def categorize_error(message: str | None) -> str:
    """The category of one error text; ``'other'`` when nothing matches."""
    if not message:
        return "other"
    for name, pattern in CATEGORIES:
        if pattern.search(message):
            return name
    return "other"


def error_texts(processing_errors: Any) -> list[str]:
    """Flatten a ``processing_errors`` value (jsonb: string, list, dict or nested) into texts.

    Entries this tool appended (dicts with a ``category``) keep that category as a prefix so
    they are categorised as what they were, not re-guessed from the wording. Iterative, so a
    value nested thousands deep (jsonb stores such) cannot hit the recursion limit.
    """
    texts: list[str] = []
    todo = [processing_errors]  # a stack: the last item is the next in order
    while todo:
        item = todo.pop()
        if item is None:
            continue
        if isinstance(item, str):
            try:
                decoded = safe_json.loads(item)
            except ValueError:
                decoded = item
            if isinstance(decoded, str | list | dict):
                item = decoded
            if isinstance(item, str):
                texts.append(item)
                continue
        if isinstance(item, list):
            todo.extend(reversed(item))
        elif isinstance(item, dict):
            for key in ("message", "error", "detail", "reason"):
                if isinstance(item.get(key), str):
                    texts.append(item[key])
                    break
            else:
                texts.append(_dumps(item))
        else:
            texts.append(str(item))
    return texts


def _dumps(value: dict[str, Any]) -> str:
    try:
        return json.dumps(value, sort_keys=True, default=str)
    except (RecursionError, ValueError, TypeError):  # nested too deep to write back; unsortable keys
        return "nested error object"


def categorize_processing_errors(processing_errors: Any) -> str:
    """The category of an ingestion's ``processing_errors``: that of its first original error.

    Entries appended by recovery (``{"source": "recovery", ...}``) are skipped when the
    original error is present, so a failed recovery does not hide why the payload was lost.
    """
    items = processing_errors if isinstance(processing_errors, list) else [processing_errors]
    original = [i for i in items if not (isinstance(i, dict) and i.get("source") == "recovery")]
    for item in original or items:
        if isinstance(item, dict) and item.get("category") in ERROR_CATEGORIES:
            return str(item["category"])
        for text in error_texts(item):
            return categorize_error(text)
    return "other"
