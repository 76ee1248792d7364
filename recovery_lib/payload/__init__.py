"""Payloads: from raw Health Auto Export JSON to the metric rows it should have produced.

Who owns what (the data flows top to bottom)::

    source.py / events.py   text, file or decoded object -> items (streaming, bounded memory)
    stored.py               a payload stored in raw_ingestions -> items (server-side cursor)
    parser.py               items -> PartialRow objects and named Rejections (the reference)
    metrics.py / values.py  the metric mapping, and the value rules (dates, numbers, units, limits)
    sql_plan.py             the simple metrics' rules compiled to SQL over the stored jsonb
    sql_write.py            the SQL fast path's INSERT ... SELECT statements

The names most callers need are importable from here:

    >>> from recovery_lib.payload import parse_payload
    >>> parse_payload(b'{"data": {"metrics": [{"name": "step_count", "units": "count",'
    ...               b' "data": [{"date": "2024-02-06 14:30:00 -0800", "qty": 812}]}]}}').counts()["activity_metrics"]
    1
"""

from recovery_lib.errors import PayloadError
from recovery_lib.payload.parser import (
    PARSER_VERSION,
    ParsedPayload,
    PartialRow,
    PayloadParser,
    Rejection,
    iter_rows,
    merge_rows,
    parse_payload,
)
from recovery_lib.payload.source import iter_items, iter_object_items

__all__ = [
    "PARSER_VERSION",
    "ParsedPayload",
    "PartialRow",
    "PayloadError",
    "PayloadParser",
    "Rejection",
    "iter_items",
    "iter_object_items",
    "iter_rows",
    "merge_rows",
    "parse_payload",
]
