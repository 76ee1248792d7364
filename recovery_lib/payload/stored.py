"""The stored-payload reader: a payload in ``raw_ingestions`` as parser items, without holding it whole.

The server expands the jsonb (``jsonb_array_elements``) and a server-side cursor hands the
points over ``fetch_size`` at a time, so the Python process holds one chunk of points, never the
payload: a 200 MB payload costs the same client memory as a 2 MB one. Payloads whose structure is
unusual (not an object, ``metrics`` not a list, ...) are small in practice; they are fetched whole
and walked by the parser, which then names what is wrong with them.

Every stored form (:mod:`recovery_lib.payload.forms`) is read here: :func:`inspect` tells the form
(the server reads the top-level keys) and where the body is. A body kept as text (wrapped,
corrupted) that is valid JSON is expanded by the server (``(raw_payload->>'raw_payload')::jsonb``)
and streamed like a stored value; one that is not (a truncated upload, ``NaN``, a ``\u0000`` jsonb
refuses) is fetched as text and streamed by ijson (:func:`recovery_lib.payload.source.iter_items`),
which names what is wrong. The internal form's objects arrive as ``("record", index, object,
list)`` items, one per row.

    >>> stored = inspect(conn, ingestion_id)
    >>> for item in stream_items(conn, ingestion_id, stored=stored):
    ...     ...   # ("metric", 0, "heart_rate", "count/min"), ("point", 0, {...}), ("end",), ...
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from recovery_lib import catalogue, safe_json
from recovery_lib.db import is_connection_lost, run
from recovery_lib.errors import PayloadError
from recovery_lib.payload import forms
from recovery_lib.payload.source import iter_items, iter_object_items

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
FROM (SELECT {payload}->'data' AS data FROM raw_ingestions WHERE id = %(id)s OFFSET 0) x
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
# the larger part of the fetch. Paths (#>) copy the list once where ->'data'->'metrics' copies all of
# data first (62 ms instead of 42 for a 16 MB export; 19 instead of 7 for its workouts).
_POINTS_SQL = """
SELECT m.ord,
       CASE WHEN p.ord IS NULL OR p.ord = 1 THEN m.value->'name' END,
       CASE WHEN p.ord IS NULL OR p.ord = 1 THEN m.value->'units' END,
       p.ord, p.value::text
FROM raw_ingestions r
CROSS JOIN LATERAL jsonb_array_elements(coalesce({r.payload} #> '{data,metrics}', '[]'::jsonb))
     WITH ORDINALITY AS m(value, ord)
LEFT JOIN LATERAL jsonb_array_elements(
         CASE WHEN m.ord - 1 = ANY(%(skip)s::int[]) THEN '[]'::jsonb ELSE coalesce(m.value->'data', '[]'::jsonb) END)
     WITH ORDINALITY AS p(value, ord) ON true
WHERE r.id = %(id)s
"""

_WORKOUTS_SQL = """
SELECT w.ord, w.value::text
FROM raw_ingestions r
CROSS JOIN LATERAL jsonb_array_elements(coalesce({r.payload} #> '{data,workouts}', '[]'::jsonb))
     WITH ORDINALITY AS w(value, ord)
WHERE r.id = %(id)s
"""

# The entries of one other list under data (stateOfMind, ecg, ...; the internal form's metrics), in order.
_ENTRIES_SQL = """
SELECT e.ord, e.value::text
FROM raw_ingestions r
CROSS JOIN LATERAL jsonb_array_elements({r.payload} #> ARRAY['data', %(key)s]) WITH ORDINALITY AS e(value, ord)
WHERE r.id = %(id)s
"""

# The entries of every other list under data (%(keys)s, in that order) through one cursor: a cursor
# per list cost four statements each (declare, two fetches, close), most of a small payload's reading.
# As in _POINTS_SQL, the nested loop keeps the lists' order and each list's order. The body is
# decompressed once (the subquery, ``#> '{}'``): ``{r.payload}->'data'`` per list would decompress
# the stored value again for every list, and copy all of data first (136 ms instead of 10 for the
# six lists of a 16 MB export).
_ARRAYS_SQL = """
SELECT a.n, e.ord, e.value::text
FROM raw_ingestions r
CROSS JOIN LATERAL (SELECT {r.payload} #> '{}' AS body OFFSET 0) b
CROSS JOIN LATERAL unnest(%(keys)s::text[]) WITH ORDINALITY AS a(key, n)
CROSS JOIN LATERAL jsonb_array_elements(b.body #> ARRAY['data', a.key]) WITH ORDINALITY AS e(value, ord)
WHERE r.id = %(id)s
"""

# The form of a jsonb value ({payload}) from its top-level keys, for the server: its keys, then one
# jsonpath over the value under data (forms.is_internal, the reference; tests/test_api_forms.py
# holds the two together). The value is decompressed once, by ``#> '{}'`` (the empty path hands
# back the value itself, decompressed): each function given the stored column would decompress it
# again (38 ms instead of 13 for a 16 MB export). The functions are few all the same: jsonb_each or
# a longer path would build the values they return again (jsonb_each: 200 ms for a 16 MB export).
_FIRST_METRIC_IS_OBJECT = '@.data.metrics.type() == "array" && exists(@.data.metrics[0] ? (@.type() == "object"))'
_INTERNAL_PATH = (  # forms.is_internal, in jsonpath
    f'lax $ ? (@.data.type() == "object" && (({_FIRST_METRIC_IS_OBJECT} && '
    'exists(@.data.metrics[0] ? (exists(@."type") && !exists(@."name")))) || '
    f'(!({_FIRST_METRIC_IS_OBJECT}) && @.data.workouts.type() == "array" && '
    'exists(@.data.workouts[0] ? (@.type() == "object" && exists(@."workout_type") && !exists(@."name"))))))'
)
_FORM_SQL = f"""
(SELECT CASE
   WHEN 'data' = ANY(k.keys) THEN CASE WHEN jsonb_path_exists(v.p, '{_INTERNAL_PATH}', silent => true)
     THEN 'internal' ELSE 'hae' END
   WHEN 'large_payload' = ANY(k.keys) THEN 'placeholder'
   WHEN 'raw_payload' = ANY(k.keys) AND jsonb_typeof(v.p->'raw_payload') = 'string' THEN 'wrapped'
   WHEN 'raw_text' = ANY(k.keys) AND jsonb_typeof(v.p->'raw_text') = 'string' THEN 'corrupted'
   ELSE 'hae' END
 FROM (SELECT {{payload}} #> '{{}}' AS p OFFSET 0) v
 CROSS JOIN LATERAL (
     SELECT CASE WHEN (SELECT jsonb_typeof(v.p)) = 'object' THEN ARRAY(SELECT jsonb_object_keys(v.p)) END AS keys) k)
"""

# The stored value's form and, for a body kept as text, that text's length, SHA-256 and whether it
# holds U+FFFD (the API decoded the body lossily: its bytes are not in the text any more).
_INSPECT_SQL = f"""
SELECT f.form, octet_length(convert_to(t.body, 'UTF8')),
       CASE WHEN %(hash)s THEN encode(sha256(convert_to(t.body, 'UTF8')), 'hex') END,
       strpos(t.body, chr(65533)) > 0
FROM raw_ingestions r
CROSS JOIN LATERAL (SELECT {_FORM_SQL.replace("{payload}", "r.raw_payload")} AS form) f
LEFT JOIN LATERAL (
    SELECT CASE f.form WHEN 'wrapped' THEN r.raw_payload->>'raw_payload'
                       WHEN 'corrupted' THEN r.raw_payload->>'raw_text' END AS body OFFSET 0
) t ON true
WHERE r.id = %(id)s
"""

#: Where a body is read from: the stored value, or the text of a wrapped or corrupted one as jsonb.
_PAYLOADS = {
    "value": "{t}raw_payload",
    forms.WRAPPED: "({t}raw_payload->>'raw_payload')::jsonb",
    forms.CORRUPTED: "({t}raw_payload->>'raw_text')::jsonb",
}


def _sql(template: str, source: str) -> str:
    """``template`` reading the body from ``source`` (a key of ``_PAYLOADS``, never input): ``{payload}``
    names the column bare, ``{r.payload}`` on the table aliased ``r``."""
    expression = _PAYLOADS[source]
    return template.replace("{r.payload}", expression.replace("{t}", "r.")).replace(
        "{payload}", expression.replace("{t}", ""))


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
class Stored:
    """What one ingestion stores: its form, the body's own form, and where the body is read from.

    ``source``: ``value`` (the stored jsonb), ``wrapped`` / ``corrupted`` (the server expands the
    text), ``text`` (the client parses the text: it is not valid jsonb), ``none`` (a placeholder).
    ``text_bytes``, ``text_sha256`` and ``text_lossy`` describe a body kept as text.
    """

    form: str
    inner: str  # hae or internal: the form the parser reads (a placeholder's is placeholder)
    source: str
    text_bytes: int | None = None
    text_sha256: str | None = None
    text_lossy: bool = False

    @property
    def sql_ready(self) -> bool:
        """Whether the SQL fast path may read it: the exporter's form, stored as the value."""
        return self.form == forms.HAE and self.source == "value"


VALUE = Stored(forms.HAE, forms.HAE, "value")  # what callers that do not inspect assume


def inspect(conn: Connection, ingestion_id: str, *, with_hash: bool = False) -> Stored:
    """The form of one stored payload and where its body is; ``with_hash``: hash a text body too."""
    with _dbapi(conn).cursor() as cursor:
        cursor.execute(_INSPECT_SQL, {"id": ingestion_id, "hash": with_hash})
        row = cursor.fetchone()
    if row is None:
        raise LookupError(f"ingestion {ingestion_id} does not exist")
    form, size, sha, lossy = row
    if form == forms.PLACEHOLDER:
        return Stored(form, form, "none")
    if form not in forms.TEXT_KEYS:
        return Stored(form, form, "value")
    inner = _expanded_form(conn, ingestion_id, form)
    return Stored(form, inner or forms.HAE, form if inner else "text", size, sha, bool(lossy))


def _expanded_form(conn: Connection, ingestion_id: str, form: str) -> str | None:
    """The form of a text body read as jsonb (hae or internal); None when jsonb refuses the text."""
    sql = "SELECT " + _sql(_FORM_SQL, form) + " FROM raw_ingestions WHERE id = %(id)s"
    try:
        with conn.begin_nested():  # jsonb refusing the text must not end the caller's transaction
            inner = run(conn, sql, {"id": ingestion_id}).scalar()
    except DBAPIError as exc:
        if is_connection_lost(exc):
            raise
        return None
    return forms.INTERNAL if inner == forms.INTERNAL else forms.HAE


def fetch_text(conn: Connection, ingestion_id: str, form: str) -> str:
    """The text a wrapped or corrupted value holds (only for a body that is not valid jsonb)."""
    with _dbapi(conn).cursor() as cursor:
        cursor.execute("SELECT raw_payload->>%(key)s FROM raw_ingestions WHERE id = %(id)s",
                       {"key": forms.TEXT_KEYS[form], "id": ingestion_id})
        row = cursor.fetchone()
    if row is None:
        raise LookupError(f"ingestion {ingestion_id} does not exist")
    return str(row[0])

@dataclass(frozen=True)
class Structure:
    """What the structure check found: whether the payload has the usual shape, and the keys under data."""

    ok: bool
    keys: tuple[tuple[str, str | None], ...] = ()  # (key, JSON type of its value), in the stored order


def structure(conn: Connection, ingestion_id: str, *, stored: Stored = VALUE) -> Structure:
    """Whether the payload has the usual shape (an object with ``data``, lists where lists belong).

    ``stored``: what :func:`inspect` found (the stored value when not given). A body the client
    must parse (``source`` ``text``) or a placeholder has no structure the server can check.
    """
    if stored.source not in _PAYLOADS:
        return Structure(False)
    with _dbapi(conn).cursor() as cursor:
        cursor.execute(_sql(_STRUCTURE_SQL, stored.source), {"id": ingestion_id})
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
    known_structure: Structure | None = None, stored: Stored = VALUE,
) -> Iterator[Item]:
    """Items for :meth:`~recovery_lib.payload.parser.PayloadParser.rows` from one stored payload, streamed.

    ``skip_points``: positions of metrics whose points were read elsewhere (by SQL, see
    :mod:`recovery_lib.payload.sql_plan`); they still arrive as a metric with no points.
    ``known_structure``: :func:`structure` when the caller has it already. The lists under data
    come in the stored order, as a decoded payload would give them. ``stored``: what
    :func:`inspect` found; a placeholder raises :class:`~recovery_lib.errors.PayloadError`
    (``body_not_stored``).
    """
    if stored.source == "none":
        raise PayloadError(forms.BODY_NOT_STORED, "only a placeholder is stored: the body never reached the database")
    if stored.source == "text":
        # Not valid jsonb: ijson reads the text (bytes, so text that is not JSON is not_json).
        yield from iter_items(fetch_text(conn, ingestion_id, stored.form).encode("utf-8", "surrogatepass"))
        return
    found = structure(conn, ingestion_id, stored=stored) if known_structure is None else known_structure
    if not found.ok:
        # Decoded jsonb: a string scalar is a string, not JSON text to parse again.
        yield from iter_object_items(fetch_payload(conn, ingestion_id, stored=stored))
        return
    loads = safe_json.loads  # what psycopg2 decodes jsonb with (db.py), so the items are the same objects
    internal = stored.inner == forms.INTERNAL
    lists = [key for key, kind in found.keys if kind == "array" and key not in ("metrics", "workouts")]
    entries = _Entries(conn, ingestion_id, lists, fetch_size, stored.source)
    for key, kind in found.keys:
        if internal and key in ("metrics", "workouts"):
            for record_ord, record in _server_rows(
                    conn, _sql(_ENTRIES_SQL, stored.source), {"id": ingestion_id, "key": key}, fetch_size):
                yield ("record", record_ord - 1, loads(record), key)
        elif key == "metrics":
            yield from _metric_items(conn, ingestion_id, skip_points, fetch_size, stored.source)
        elif key == "workouts":
            workouts = _sql(_WORKOUTS_SQL, stored.source)
            for workout_ord, workout in _server_rows(conn, workouts, {"id": ingestion_id}, fetch_size):
                yield ("workout", workout_ord - 1, loads(workout))
        elif kind == "array":
            yield ("array", key)
            for entry_ord, entry in entries.of(key):
                yield ("entry", entry_ord - 1, loads(entry))
            yield ("array_end",)
        else:
            yield ("other", key)


class _Entries:
    """The entries of the lists under data, list by list, from one cursor opened at the first list read."""

    def __init__(self, conn: Connection, ingestion_id: str, keys: list[str], fetch_size: int, source: str) -> None:
        self._open = lambda: _server_rows(conn, _sql(_ARRAYS_SQL, source), {"id": ingestion_id, "keys": keys},
                                          fetch_size)
        self._numbers = {key: n for n, key in enumerate(keys, start=1)}
        self._rows: Iterator[tuple] | None = None
        self._next: tuple | None = None

    def of(self, key: str) -> Iterator[tuple[int, str]]:
        """``(ord, entry text)`` of list ``key``; lists are read in the order given, each once."""
        if self._rows is None:
            self._rows = self._open()
            self._next = next(self._rows, None)
        number = self._numbers[key]
        while self._next is not None and self._next[0] == number:
            yield self._next[1], self._next[2]
            self._next = next(self._rows, None)


def _metric_items(
    conn: Connection, ingestion_id: str, skip_points: Sequence[int], fetch_size: int, source: str
) -> Iterator[Item]:
    loads = safe_json.loads
    current: int | None = None
    rows = _server_rows(conn, _sql(_POINTS_SQL, source), {"skip": list(skip_points), "id": ingestion_id}, fetch_size)
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


def records(
    conn: Connection, ingestion_id: str, lists: Sequence[str], *, stored: Stored, fetch_size: int = 5000
) -> Iterator[tuple[str, Any]]:
    """``(list, object)`` of every entry of the lists under ``data`` named in ``lists``, in that order
    (the checksum renders the internal form's objects in its struct order)."""
    entries = _sql(_ENTRIES_SQL, stored.source)
    for key in lists:
        for _, entry in _server_rows(conn, entries, {"id": ingestion_id, "key": key}, fetch_size):
            yield key, safe_json.loads(entry)


def fetch_payload(conn: Connection, ingestion_id: str, *, stored: Stored = VALUE) -> Any:
    """The whole payload (of a text body: the text as jsonb) as Python objects (only for small or
    malformed payloads)."""
    with _dbapi(conn).cursor() as cursor:
        cursor.execute(_sql("SELECT {payload} FROM raw_ingestions WHERE id = %(id)s", stored.source),
                       {"id": ingestion_id})
        row = cursor.fetchone()
    if row is None:
        raise LookupError(f"ingestion {ingestion_id} does not exist")
    return row[0]
