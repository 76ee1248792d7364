"""The stored-payload reader: a payload in ``raw_ingestions`` as parser items, without holding it whole.

The server expands the jsonb (``jsonb_array_elements``) and a server-side cursor hands the
points over ``fetch_size`` at a time, so the Python process holds one chunk of points, never the
payload: a 200 MB payload costs the same client memory as a 2 MB one. Payloads whose structure is
unusual (not an object, ``metrics`` not a list, ...) are small in practice; they are fetched whole
and walked by the parser, which then names what is wrong with them.

    >>> for item in stream_items(conn, ingestion_id):
    ...     ...   # ("metric", 0, "heart_rate", "count/min"), ("point", 0, {...}), ("end",), ...
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Connection

from recovery_lib import catalogue, safe_json
from recovery_lib.payload.source import iter_object_items

Item = tuple[Any, ...]

# raw_payload is referenced once: each reference to a stored jsonb decompresses all of it again
# (22 ms for a 13 MB export); ->'data' is NULL unless the payload is an object. The metric check
# is a jsonpath: expanding the metrics with jsonb_array_elements copies each one, 100 ms for 13 MB.
# The keys under data come with their order (jsonb's, which every reader of the stored value sees)
# and the JSON type of each value other than metrics and workouts (those are small: one copy each).
_STRUCTURE_SQL = """
SELECT jsonb_typeof(x.data) = 'object'
   AND coalesce(jsonb_typeof(x.data->'metrics'), 'array') = 'array'
   AND coalesce(jsonb_typeof(x.data->'workouts'), 'array') = 'array'
   AND NOT coalesce(jsonb_path_exists(
       x.data, 'strict $.metrics[*] ? (@.type() != "object" || exists(@.data ? (@.type() != "array")))',
       silent => true), false),
   s.keys, s.types
FROM (SELECT raw_payload->'data' AS data FROM raw_ingestions WHERE id = %(id)s OFFSET 0) x
LEFT JOIN LATERAL (
    SELECT array_agg(o.k ORDER BY o.n) AS keys,
           array_agg(CASE WHEN o.k IN ('metrics', 'workouts') THEN 'array' ELSE jsonb_typeof(x.data -> o.k) END
                     ORDER BY o.n) AS types
    FROM jsonb_object_keys(CASE WHEN jsonb_typeof(x.data) = 'object' THEN x.data ELSE '{}'::jsonb END)
         WITH ORDINALITY AS o(k, n)
) s ON true
"""

# One row per metric (with a NULL point for empty ones), then one per point, in payload order:
# the nested loop over WITH ORDINALITY keeps array order without a sort. Only a metric's first
# row carries its name and units (the client reads them only when the metric changes), and points
# come as jsonb text decoded with one safe_json.loads each (any depth, any number): psycopg2's
# jsonb typecaster would decode name, units and point on every row (three decodes per point),
# the larger part of the fetch.
_POINTS_SQL = """
SELECT m.ord,
       CASE WHEN p.ord IS NULL OR p.ord = 1 THEN m.value->'name' END,
       CASE WHEN p.ord IS NULL OR p.ord = 1 THEN m.value->'units' END,
       p.ord, p.value::text
FROM raw_ingestions r
CROSS JOIN LATERAL jsonb_array_elements(coalesce(r.raw_payload->'data'->'metrics', '[]'::jsonb))
     WITH ORDINALITY AS m(value, ord)
LEFT JOIN LATERAL jsonb_array_elements(
         CASE WHEN m.ord - 1 = ANY(%(skip)s::int[]) THEN '[]'::jsonb ELSE coalesce(m.value->'data', '[]'::jsonb) END)
     WITH ORDINALITY AS p(value, ord) ON true
WHERE r.id = %(id)s
"""

_WORKOUTS_SQL = """
SELECT w.ord, w.value::text
FROM raw_ingestions r
CROSS JOIN LATERAL jsonb_array_elements(coalesce(r.raw_payload->'data'->'workouts', '[]'::jsonb))
     WITH ORDINALITY AS w(value, ord)
WHERE r.id = %(id)s
"""

# The entries of one other list under data (stateOfMind, ecg, ...), in order.
_ENTRIES_SQL = """
SELECT e.ord, e.value::text
FROM raw_ingestions r
CROSS JOIN LATERAL jsonb_array_elements(r.raw_payload->'data'->%(key)s) WITH ORDINALITY AS e(value, ord)
WHERE r.id = %(id)s
"""

_counter = itertools.count()


def _dbapi(conn: Connection) -> Any:
    return conn.connection.dbapi_connection


def _server_rows(conn: Connection, sql: str, params: dict[str, Any], fetch_size: int) -> Iterator[tuple]:
    # A named (server-side) cursor lives inside the caller's transaction.
    cursor = _dbapi(conn).cursor(name=f"recovery_fetch_{next(_counter)}")
    cursor.itersize = fetch_size
    try:
        cursor.execute(sql, params)
        yield from cursor
    finally:
        cursor.close()


@dataclass(frozen=True)
class Structure:
    """What the structure check found: whether the payload has the usual shape, and the keys under data."""

    ok: bool
    keys: tuple[tuple[str, str | None], ...] = ()  # (key, JSON type of its value), in the stored order


def structure(conn: Connection, ingestion_id: str) -> Structure:
    """Whether the payload has the usual shape (an object with ``data``, lists where lists belong)."""
    with _dbapi(conn).cursor() as cursor:
        cursor.execute(_STRUCTURE_SQL, {"id": ingestion_id})
        row = cursor.fetchone()
    if row is None:
        raise LookupError(f"ingestion {ingestion_id} does not exist")
    keys = tuple(zip(row[1] or (), row[2] or (), strict=True))
    known_lists = all(kind == "array" for key, kind in keys if key in catalogue.ARRAYS)
    return Structure(bool(row[0]) and known_lists, keys)


def structure_ok(conn: Connection, ingestion_id: str) -> bool:
    """Whether the payload has the usual shape (see :func:`structure`)."""
    return structure(conn, ingestion_id).ok


def stream_items(
    conn: Connection, ingestion_id: str, *, fetch_size: int = 5000, skip_points: Sequence[int] = (),
    known_structure: Structure | None = None,
) -> Iterator[Item]:
    """Items for :meth:`~recovery_lib.payload.parser.PayloadParser.rows` from one stored payload, streamed.

    ``skip_points``: positions of metrics whose points were read elsewhere (by SQL, see
    :mod:`recovery_lib.payload.sql_plan`); they still arrive as a metric with no points.
    ``known_structure``: :func:`structure` when the caller has it already. The lists under data
    come in the stored order, as a decoded payload would give them.
    """
    found = structure(conn, ingestion_id) if known_structure is None else known_structure
    if not found.ok:
        # Decoded jsonb: a string scalar is a string, not JSON text to parse again.
        yield from iter_object_items(fetch_payload(conn, ingestion_id))
        return
    loads = safe_json.loads  # what psycopg2 decodes jsonb with (db.py), so the items are the same objects
    for key, kind in found.keys:
        if key == "metrics":
            yield from _metric_items(conn, ingestion_id, skip_points, fetch_size)
        elif key == "workouts":
            for workout_ord, workout in _server_rows(conn, _WORKOUTS_SQL, {"id": ingestion_id}, fetch_size):
                yield ("workout", workout_ord - 1, loads(workout))
        elif kind == "array":
            yield ("array", key)
            for entry_ord, entry in _server_rows(conn, _ENTRIES_SQL, {"id": ingestion_id, "key": key}, fetch_size):
                yield ("entry", entry_ord - 1, loads(entry))
            yield ("array_end",)
        else:
            yield ("other", key)


def _metric_items(conn: Connection, ingestion_id: str, skip_points: Sequence[int], fetch_size: int) -> Iterator[Item]:
    loads = safe_json.loads
    current: int | None = None
    rows = _server_rows(conn, _POINTS_SQL, {"skip": list(skip_points), "id": ingestion_id}, fetch_size)
    for metric_ord, name, units, point_ord, point in rows:
        if metric_ord != current:
            if current is not None:
                yield ("end",)
            current = metric_ord
            yield ("metric", metric_ord - 1, name, units)
        if point_ord is not None:
            yield ("point", point_ord - 1, loads(point))
    if current is not None:
        yield ("end",)


def fetch_payload(conn: Connection, ingestion_id: str) -> Any:
    """The whole payload as Python objects (only for small or malformed payloads)."""
    with _dbapi(conn).cursor() as cursor:
        cursor.execute("SELECT raw_payload FROM raw_ingestions WHERE id = %(id)s", {"id": ingestion_id})
        row = cursor.fetchone()
    if row is None:
        raise LookupError(f"ingestion {ingestion_id} does not exist")
    return row[0]
