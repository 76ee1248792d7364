"""The stored forms of ``raw_ingestions.raw_payload``: their names, and how a decoded value shows its form.

What the Health Export API writes (``Ladvien/self-sensored``, ``src/handlers/ingest.rs``), told apart
by the top-level keys (the server does it for stored values: :func:`recovery_lib.payload.stored.inspect`):

=============  =============================================================  ==========================
form           stored value                                                   read from
=============  =============================================================  ==========================
``hae``        the Health Auto Export body itself (this project's generator,  the value
               the API's MQTT path and its oldest builds)
``internal``   the API's parsed payload: ``{"data": {"metrics": [{"type":     the value, one object
               "HeartRate", "recorded_at": ..., <column>: ...}], "workouts":   per row
               [...]}}``
``wrapped``    a large upload kept as text: ``{"raw_payload": "<body>",        the text, as JSON
               "needs_parsing": true, "received_at", "size_bytes"}``
``placeholder``  the largest uploads: ``{"large_payload": true, "needs_      nothing: the body was
               parsing": true, "size_bytes", "note"}``                          never stored
``corrupted``  a body the API could not parse: ``{"raw_text": "<body>",        the text, when it is
               "parse_error", "corrupted": true, "timestamp"}``                JSON after all
=============  =============================================================  ==========================

A wrapped or corrupted body is itself a Health Auto Export body or one in the internal form (the
API accepts both); its own form is the *inner* form.

    >>> form_of({"data": {"metrics": [{"type": "HeartRate", "recorded_at": "2025-09-20T14:05:00Z"}]}})
    'internal'
    >>> form_of({"large_payload": True, "needs_parsing": True, "size_bytes": 14680064})
    'placeholder'
"""

from __future__ import annotations

from typing import Any

HAE, INTERNAL, WRAPPED, PLACEHOLDER, CORRUPTED = "hae", "internal", "wrapped", "placeholder", "corrupted"
FORMS: tuple[str, ...] = (HAE, INTERNAL, WRAPPED, PLACEHOLDER, CORRUPTED)
#: The forms that hold the body as text, and the key of that text.
TEXT_KEYS: dict[str, str] = {WRAPPED: "raw_payload", CORRUPTED: "raw_text"}
BODY_NOT_STORED = "body_not_stored"  # the category of a placeholder: not recoverable from this database


def _first(value: Any) -> Any:
    return value[0] if isinstance(value, list) and value else None


def is_internal(data: Any) -> bool:
    """Whether ``data`` (the value under ``data``) is the API's internal form.

    Its first metric is tagged (``type``) and unnamed; with no metric, its first workout has the
    internal ``workout_type`` and no ``name``. A payload is one form throughout.
    """
    if not isinstance(data, dict):
        return False
    metric = _first(data.get("metrics"))
    if isinstance(metric, dict):
        return "type" in metric and "name" not in metric
    workout = _first(data.get("workouts"))
    return isinstance(workout, dict) and "workout_type" in workout and "name" not in workout


def form_of(value: Any) -> str:
    """The form of a decoded stored value (see the module docstring); anything unusual is ``hae``
    (the parser then names what is wrong with it)."""
    if not isinstance(value, dict) or "data" in value:
        return INTERNAL if isinstance(value, dict) and is_internal(value["data"]) else HAE
    if "large_payload" in value:
        return PLACEHOLDER
    for form, key in TEXT_KEYS.items():
        if isinstance(value.get(key), str):
            return form
    return HAE
