"""One error categoriser, shared by discovery, recovery and the monitor.

    >>> categorize_error("number of parameters must be between 0 and 65535")
    'parameter_limit'
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
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


NOTES_KEY = "recovery_notes"  # where recovery adds its notes to an object (the API's) processing_errors
# Keys of an error object whose text says what went wrong, most specific first.
_TEXT_KEYS = ("message", "error_message", "error", "detail", "reason")


def split_notes(processing_errors: Any) -> tuple[list[Any], list[dict[str, Any]]]:
    """``(original errors, recovery's notes)`` of a ``processing_errors`` value, whichever its shape.

    A list: its elements, those recovery appended (``{"source": "recovery", ...}``) apart. An
    object (what the Health Export API writes): itself without ``recovery_notes``, and those notes.
    Anything else is one original error.

    >>> split_notes({"errors": [], "recovery_notes": [{"source": "recovery", "category": "x"}]})
    ([{'errors': []}], [{'source': 'recovery', 'category': 'x'}])
    """
    if processing_errors is None:
        return [], []
    if isinstance(processing_errors, list):
        notes = [i for i in processing_errors if isinstance(i, dict) and i.get("source") == "recovery"]
        return [i for i in processing_errors if not (isinstance(i, dict) and i.get("source") == "recovery")], notes
    if isinstance(processing_errors, dict) and NOTES_KEY in processing_errors:
        notes = processing_errors[NOTES_KEY]
        original = {k: v for k, v in processing_errors.items() if k != NOTES_KEY}
        kept = [n for n in notes if isinstance(n, dict)] if isinstance(notes, list) else []
        return [original], kept
    return [processing_errors], []


@dataclass(frozen=True)
class _Fallback:
    """Pushed after the nested errors of an error object without a message: when they gave no text,
    the object's status reason (the API's silent loss) or, without ``errors``, the object itself."""

    before: int  # texts found before the nested errors
    reason: str | None
    value: dict[str, Any] | None  # written out when nothing else speaks for it


def error_texts(processing_errors: Any) -> list[str]:
    """Flatten a ``processing_errors`` value (jsonb: string, list, dict or nested) into texts.

    Entries this tool appended (dicts with a ``category``) keep that category as a prefix so
    they are categorised as what they were, not re-guessed from the wording. Recovery's notes
    beside an object's keys (``recovery_notes``) are not the object's error. An object without a
    message speaks through its ``errors`` and ``validation_errors`` (the API's object), else its
    status reason, else itself; a clean run's object (``errors`` empty) gives nothing. Iterative,
    so a value nested thousands deep (jsonb stores such) cannot hit the recursion limit.
    """
    texts: list[str] = []
    todo: list[Any] = [processing_errors]  # a stack: the last item is the next in order
    while todo:
        item = todo.pop()
        if item is None:
            continue
        if isinstance(item, _Fallback):
            if len(texts) == item.before:
                if item.reason is not None:
                    texts.append(item.reason)
                elif item.value is not None:
                    texts.append(_dumps(item.value))
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
            if NOTES_KEY in item:
                item = {k: v for k, v in item.items() if k != NOTES_KEY}
            text = next((item[k] for k in _TEXT_KEYS if isinstance(item.get(k), str)), None)
            if text is not None:
                texts.append(text)
                continue
            summary = item.get("analysis_summary")
            reason = summary.get("status_reason") if isinstance(summary, dict) else None
            todo.append(_Fallback(len(texts), reason if isinstance(reason, str) else None,
                                  None if "errors" in item else item))
            nested = [e for key in ("errors", "validation_errors") if isinstance(item.get(key), list)
                      for e in item[key]]
            todo.extend(reversed(nested))
        else:
            texts.append(str(item))
    return texts


def _dumps(value: dict[str, Any]) -> str:
    try:
        return json.dumps(value, sort_keys=True, default=str)
    except (RecursionError, ValueError, TypeError):  # nested too deep to write back; unsortable keys
        return "nested error object"


def is_clean(processing_errors: Any) -> bool:
    """An object that records a run without errors (the API's ``{"processing_metadata": ..., "errors": []}``)."""
    original, notes = split_notes(processing_errors)
    return (not notes and len(original) == 1 and isinstance(original[0], dict)
            and not error_texts(original[0]))


def categorize_processing_errors(processing_errors: Any) -> str:
    """The category of an ingestion's ``processing_errors``: that of its first original error.

    Notes recovery added (``{"source": "recovery", ...}`` in a list, ``recovery_notes`` of an
    object) are skipped when the original error is present, so a failed recovery does not hide why
    the payload was lost.
    """
    original, notes = split_notes(processing_errors)
    for item in [i for i in original if error_texts(i)] or notes:
        if isinstance(item, dict) and item.get("category") in ERROR_CATEGORIES:
            return str(item["category"])
        for text in error_texts(item):
            return categorize_error(text)
    return "other"
