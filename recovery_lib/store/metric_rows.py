"""SQL of the metric tables: which keys exist, and the merge that fills them (never overwriting).

Every statement on a metric table lives here, except the SQL fast path's ``INSERT ... SELECT``
from the stored jsonb (:mod:`recovery_lib.payload.sql_write`), which shares :func:`update_clause`.

One merge rule for every way of writing rows: fill NULL columns, never overwrite a value, the
first value in payload order wins inside a payload. :func:`merge_sql` merges a COPY staging table
(no bind parameters per row); :func:`insert_rows` sends multi-row INSERTs in chunks under the
65,535-parameter limit (:class:`~recovery_lib.batching.BatchConfig` sizes them).

A row's natural key is ``(user_id, key)``, or ``(user_id, key, tag)`` for tables whose points of
one instant differ by a tag (``symptoms``: the symptom; ``other_metrics``: the metric name). In
Python a key is then the tuple ``(instant, tag)``; everywhere else an instant.

    >>> count_present(conn, user_id, "heart_rate_metrics", keys)
    120
"""

from __future__ import annotations

import io
import weakref
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Connection

from recovery_lib.batching import PG_MAX_PARAMS, chunks
from recovery_lib.db import array_literal, run
from recovery_lib.errors import BatchConfigError
from recovery_lib.schema import METRIC_TABLES, MetricTable
from recovery_lib.store.journal import JournalContext, journaled

UNNEST_CHUNK = 50_000
# A staging table keeps its rows across commits, so each transaction empties it before its first
# COPY (:func:`empty_staging`). ON COMMIT DELETE ROWS would be simpler, but at every commit that
# touched any temporary table it truncates all such tables of the session (heap, TOAST table and
# its index each): about 5 ms a payload once a worker has staged into twenty of them. A DELETE
# costs a few rows; the pages of deleted rows come back with a TRUNCATE once a session has staged
# this many rows into a table since its last one.
TRUNCATE_AFTER_ROWS = 10_000
_staged_since_truncate: weakref.WeakKeyDictionary[Any, Counter[str]] = weakref.WeakKeyDictionary()


@dataclass
class TableReport:
    """What writing one payload's rows did to one table (or would do, in a dry run)."""

    expected: int = 0
    present_before: int = 0
    inserted: int = 0
    filled: int = 0  # existing wide rows that gained a column value
    present_after: int = 0

    @property
    def missing_before(self) -> int:
        return self.expected - self.present_before

    @property
    def missing_after(self) -> int:
        return self.expected - self.present_after

    def add(self, other: TableReport) -> None:
        for name in ("expected", "present_before", "inserted", "filled", "present_after"):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def to_dict(self) -> dict[str, int]:
        return {**asdict(self), "missing_before": self.missing_before, "missing_after": self.missing_after}


Key = datetime | tuple[datetime, Any]


def _key_parts(t: MetricTable, keys: Sequence[Key]) -> dict[str, list[Any]]:
    """The keys as parallel arrays to unnest (each one array text): instants, and tags for a tagged table."""
    if t.tag is None:
        return {"keys": array_literal(keys)}
    return {"keys": array_literal(k[0] for k in keys), "tags": array_literal(k[1] for k in keys)}


def _unnest(t: MetricTable, *extra: str) -> tuple[str, str]:
    """``unnest(...) AS k(...)`` of :func:`_key_parts` (and the ``extra`` text arrays) and the join on ``m``."""
    arrays = ["%(keys)s::timestamptz[]"]
    names = ["at"]
    match = f"m.{t.key} = k.at"
    if t.tag is not None:
        tag_type = "timestamptz" if pg_type(t, t.tag) == "timestamptz" else "text"
        arrays.append(f"%(tags)s::{tag_type}[]")
        names.append("tag")
        match += f" AND m.{t.tag} = k.tag"
    for name in extra:
        arrays.append(f"%({name})s::text[]")
        names.append(name)
    return f"unnest({', '.join(arrays)}) AS k({', '.join(names)})", match


def count_present(conn: Connection, user_id: str, table: str, keys: Sequence[Key]) -> int:
    """How many of ``keys`` exist in ``table`` for ``user_id`` (read-only; chunked)."""
    t = METRIC_TABLES[table]
    source, match = _unnest(t)
    present = 0
    for start in range(0, len(keys), UNNEST_CHUNK):
        present += run(
            conn,
            f"SELECT count(*) FROM {source} "
            f"WHERE EXISTS (SELECT 1 FROM {t.sql_name} m WHERE m.user_id = %(user_id)s AND {match})",
            {**_key_parts(t, keys[start : start + UNNEST_CHUNK]), "user_id": user_id},
        ).scalar_one()
    return present


def missing_values_sql(t: MetricTable, filled: str, row: str) -> str:
    """How many of the checked columns ``filled`` (a '0'/'1' string) names are NULL in ``row``.

    ``row`` is the alias of a LEFT JOINed metric row: an absent row counts as a missing row, not
    as missing values.
    """
    terms = " + ".join(
        f"(substr({filled}, {number}, 1) = '1' AND {row}.{column} IS NULL)::int"
        for number, column in enumerate(t.checked, start=1)
    )
    return f"CASE WHEN {row}.user_id IS NULL THEN 0 ELSE {terms or '0'} END"


def present_and_missing_values(
    conn: Connection, user_id: str, table: str, keys: Sequence[Key], filled: Sequence[str]
) -> tuple[int, int]:
    """How many of ``keys`` exist for ``user_id``, and how many values ``filled`` names are NULL in them.

    ``filled[i]``: which checked columns the payload fills at ``keys[i]`` ('0'/'1' per column of
    :attr:`~recovery_lib.schema.MetricTable.checked`). Read-only; chunked.
    """
    t = METRIC_TABLES[table]
    source, match = _unnest(t, "filled")
    present = missing = 0
    for start in range(0, len(keys), UNNEST_CHUNK):
        got_present, got_missing = run(
            conn,
            f"SELECT count(m.user_id), coalesce(sum({missing_values_sql(t, 'k.filled', 'm')}), 0) "
            f"FROM {source} LEFT JOIN {t.sql_name} m ON m.user_id = %(user_id)s AND {match}",
            {**_key_parts(t, keys[start : start + UNNEST_CHUNK]), "user_id": user_id,
             "filled": array_literal(filled[start : start + UNNEST_CHUNK])},
        ).one()
        present += int(got_present)
        missing += int(got_missing)
    return present, missing


def update_clause(t: MetricTable) -> tuple[str, str]:
    """SET and WHERE of the merge's ON CONFLICT: fill NULL columns, never overwrite a value.

    ``source_device`` says where the row's values came from, so a NULL source is filled only
    together with a value that is filled: the source of a value that lost (the stored one stays)
    must not be written beside it.
    """
    checked = t.checked
    # Touch a row only when it gains a value: a rerun then writes nothing at all.
    changed = " OR ".join(f"(t.{c} IS NULL AND EXCLUDED.{c} IS NOT NULL)" for c in checked)
    sets = [f"{c} = COALESCE(t.{c}, EXCLUDED.{c})" for c in checked]
    if "source_device" in t.values:
        sets.append(f"source_device = COALESCE(t.source_device, CASE WHEN {changed} THEN EXCLUDED.source_device END)")
    return ", ".join(sets), changed


def conflict_target(t: MetricTable) -> str:
    """``(user_id, key[, tag])``: what ON CONFLICT names."""
    return f"(user_id, {', '.join(t.natural_key)})"


def staging_name(t: MetricTable) -> str:
    return f"stage_{t.name}"


def _staged_key(t: MetricTable) -> list[str]:
    """The staging table's key columns: ``key``, and ``tag`` for a tagged table."""
    return ["key", "tag"] if t.tag else ["key"]


def staging_ddl(t: MetricTable) -> str:
    tag = f", tag {pg_type(t, t.tag)} NOT NULL" if t.tag else ""
    cols = ", ".join(f"{c} {pg_type(t, c)}" for c in t.values)
    # metric and idx name each staged point, should the target refuse its row (recovery.refusals).
    return (
        f"CREATE TEMP TABLE IF NOT EXISTS {staging_name(t)} "
        f"(seq bigint NOT NULL, key timestamptz NOT NULL{tag}, {cols}, metric text, idx int)"
    )


def empty_staging(cursor: Any, t: MetricTable, *, exists: bool | None = None) -> None:
    """Make the staging table ready for this transaction's rows: created, or emptied of earlier ones.

    Call it in every transaction before the first COPY into the table (:func:`copy_rows`).
    ``exists``: whether this session has the table (None: look it up).

        >>> empty_staging(cursor, METRIC_TABLES["activity_metrics"], exists=False)   # CREATE TEMP TABLE
    """
    if exists is None:
        cursor.execute("SELECT to_regclass(%(name)s) IS NOT NULL", {"name": f"pg_temp.{staging_name(t)}"})
        exists = cursor.fetchone()[0]
    since = _staged_since_truncate.setdefault(cursor.connection, Counter())
    if not exists:
        cursor.execute(staging_ddl(t))
        since[t.name] = 0
        return
    if since[t.name] >= TRUNCATE_AFTER_ROWS:
        cursor.execute("SELECT current_setting('transaction_read_only') = 'off'")
        if cursor.fetchone()[0]:  # a read-only transaction may DELETE from a temporary table, not TRUNCATE it
            cursor.execute(f"TRUNCATE {staging_name(t)}")
            since[t.name] = 0
            return
    cursor.execute(f"DELETE FROM {staging_name(t)}")


# The staging tables this session already has (a temporary table lives as long as its connection).
STAGED_TABLES_SQL = ("SELECT relname FROM pg_class "
                     "WHERE relnamespace = pg_my_temp_schema() AND left(relname, 6) = 'stage_'")


def pg_type(t: MetricTable, column: str) -> str:
    col_type = t.table.c[column].type
    if isinstance(col_type, sa.DateTime):
        return "timestamptz"
    if isinstance(col_type, sa.Text):
        return "text"
    if isinstance(col_type, JSONB):
        return "jsonb"
    if isinstance(col_type, sa.Boolean):
        return "boolean"
    return "double precision"


def _key_range(t: MetricTable) -> str:
    """The staged keys ``%(lo)s`` to ``%(lo)s + %(n)s - 1`` in key order (the refusal search's halves)."""
    staged = ", ".join(_staged_key(t))
    return (f"({staged}) IN (SELECT {staged} FROM (SELECT DISTINCT {staged} FROM {staging_name(t)}) d "
            f"ORDER BY {staged} OFFSET %(lo)s LIMIT %(n)s)")


def merge_sql(t: MetricTable, part: str | None = None, *, columns: Sequence[str] | None = None,
              counted: bool = False) -> str:
    """INSERT the staged rows of one ingestion, journaled; returns one row ``(inserted, filled)``.

    ``part``: all staged rows (None), a range of keys (``range``: ``%(lo)s``, ``%(n)s``) or one
    staged point (``seq``: ``%(seq)s``), for :mod:`recovery_lib.recovery.refusals`.
    ``columns``: the value columns some staged row fills (None: any may); the others are inserted
    as NULL and left out of the update and the journal, which would only compare NULL with NULL
    there (and a wide table's every column costs planning). ``counted``: the row is
    ``(keys, inserted, filled)``, the staged keys counted by the same statement; every key
    not inserted was then present before (see :func:`recovery_lib.store.journal.journaled`).
    Parameters: ``user_id`` and the journal's (:meth:`recovery_lib.store.journal.JournalContext.params`).
    """
    written = replace(t, values=tuple(c for c in t.values if c in columns)) if columns is not None else t
    if not written.checked:
        written = t  # the update needs a column to compare; with none filled, any serves
    picks = ", ".join(
        f"(array_agg({c} ORDER BY seq) FILTER (WHERE {c} IS NOT NULL))[1]{t.cast(c)}" if c in written.values
        else f"NULL::{pg_type(t, c)}{t.cast(c)}"
        for c in t.values
    )
    sets, changed = update_clause(written)
    staged = ", ".join(_staged_key(t))
    where = {None: "", "range": f" WHERE {_key_range(t)}", "seq": " WHERE seq = %(seq)s"}[part]
    rows = f"{staged}, {picks} FROM {staging_name(t)}{where} GROUP BY {staged}"
    insert = f"INSERT INTO {t.sql_name} AS t (user_id, {', '.join(t.natural_key)}, {', '.join(t.values)}) "
    conflict = f"ON CONFLICT {conflict_target(t)} DO UPDATE SET {sets} WHERE {changed}"
    if counted:
        return journaled(written, f"{insert}SELECT %(user_id)s, * FROM src ORDER BY {staged} {conflict}",
                         source=f"SELECT {rows}")
    return journaled(written, f"{insert}SELECT %(user_id)s, {rows} ORDER BY {staged} {conflict}")


def staged_points_sql(t: MetricTable) -> str:
    """The staged points of key number ``%(lo)s`` (key order): key, tag, seq, metric, idx, then one
    flag per checked column (whether the point fills it), in payload order."""
    tag = "tag" if t.tag else "NULL"
    flags = ", ".join(f"{c} IS NOT NULL" for c in t.checked) or "true"
    return (f"SELECT key, {tag}, seq, metric, idx, {flags} FROM {staging_name(t)} "
            f"WHERE {_key_range(t)} ORDER BY seq")


def staged_counts_sql(t: MetricTable) -> str:
    """Distinct staged keys, and how many of them exist for the user."""
    match = " AND ".join(f"m.{column} = s.{staged}" for column, staged in zip(t.natural_key, _staged_key(t),
                                                                                strict=True))
    return (
        f"SELECT count(*), count(m.{t.key}) FROM (SELECT DISTINCT {', '.join(_staged_key(t))} "
        f"FROM {staging_name(t)}) s LEFT JOIN {t.sql_name} m ON m.user_id = %(user_id)s AND {match}"
    )


def _copy_text(value: Any) -> str:
    if value is None:
        return "\\N"
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, float):
        return repr(value)
    text = str(value)
    return (
        text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    )


def key_columns(t: MetricTable, key: Key) -> list[Any]:
    """A Python key as the values of the natural key's columns after ``user_id``."""
    return [key[0], key[1]] if t.tag else [key]


def copy_rows(
    cursor: Any, t: MetricTable, rows: Iterable[tuple[int, Key, Mapping[str, Any], str, int]],
    columns: Collection[str] | None = None,
) -> int:
    """COPY ``(seq, key, values, metric, index)`` rows into the table's staging table; returns rows written.

    ``columns``: as for :func:`merge_sql`, the value columns some row fills (None: any may); only
    those are sent, the staging table's others stay NULL (a wide table's row fills a few of its columns).
    JSON values arrive as JSON text (the parser serialises them), like every other text.
    """
    sent = t.values if columns is None else tuple(c for c in t.values if c in columns)
    buffer = io.StringIO()
    count = 0
    for seq, key, values, metric, index in rows:
        parts = [_copy_text(part) for part in key_columns(t, key)]
        buffer.write("\t".join([str(seq), *parts, *(_copy_text(values.get(c)) for c in sent),
                                _copy_text(metric), str(index)]) + "\n")
        count += 1
    if count:
        buffer.seek(0)
        listed = ", ".join(["seq", *_staged_key(t), *sent, "metric", "idx"])
        cursor.copy_expert(f"COPY {staging_name(t)} ({listed}) FROM STDIN", buffer)
        _staged_since_truncate.setdefault(cursor.connection, Counter())[t.name] += count
    return count


def insert_rows(
    cursor: Any, t: MetricTable, user_id: str, rows: Mapping[Key, Mapping[str, Any]], chunk_size: int,
    journal: JournalContext,
) -> tuple[int, int]:
    """Multi-row INSERT ... ON CONFLICT of already-merged rows, ``chunk_size`` rows a statement, journaled.

    Returns ``(inserted, filled)``. The chunk size must keep rows x params per row under the
    limit; :class:`BatchConfig` guarantees that.
    """
    columns = t.columns
    extra = len(journal.params(t.name)) + 1  # the journal's parameters and user_id
    if chunk_size * len(columns) + extra > PG_MAX_PARAMS:
        raise BatchConfigError(
            f"Invalid batch configuration: {t.name}: chunk size {chunk_size} x {len(columns)} params per row "
            f"exceeds {PG_MAX_PARAMS}"
        )
    sets, changed = update_clause(t)
    inserted = filled = 0
    items = sorted(rows.items(), key=lambda item: item[0])
    for part in chunks(items, chunk_size):
        params: dict[str, Any] = {"user_id": user_id, **journal.params(t.name)}
        tuples = []
        for row, (key, values) in enumerate(part):
            names = []
            for column, value in zip(columns, [user_id, *key_columns(t, key), *(values.get(c) for c in t.values)],
                                     strict=True):
                params[f"r{row}_{column}"] = value
                names.append(f"%(r{row}_{column})s")
            tuples.append(f"({', '.join(names)})")
        sql = journaled(t, (
            f"INSERT INTO {t.sql_name} AS t ({', '.join(columns)}) VALUES "
            + ", ".join(tuples)
            + f" ON CONFLICT {conflict_target(t)} DO UPDATE SET {sets} WHERE {changed}"
        ))
        cursor.execute(sql, params)
        got_inserted, got_filled = cursor.fetchone()
        inserted += got_inserted
        filled += got_filled
    return inserted, filled
