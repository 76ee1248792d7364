"""Chunk sizes under PostgreSQL's bind-parameter limit, and idempotent merging inserts.

PostgreSQL refuses a statement with more than 65,535 bind parameters; the original API built one
multi-row INSERT per payload and lost every large payload. Each table here gets a chunk size
derived from its parameters per row, configurable through the environment and validated.

    >>> config = BatchConfig.from_env()
    >>> config.validate()                     # raises BatchConfigError naming the table
    >>> config.params_per_row("heart_rate_metrics")
    8

Two insert paths share one merge rule (fill NULL columns, never overwrite a value, first value in
payload order wins inside a payload): :func:`copy_and_merge` (COPY into a temporary staging table,
then one INSERT ... SELECT ... ON CONFLICT; no bind parameters per row, the default) and
:func:`insert_rows` (multi-row INSERT ... ON CONFLICT in chunks under the limit).
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from recovery_lib.schema import METRIC_TABLES, MetricTable

PG_MAX_PARAMS = 65_535
SAFETY_MARGIN = 0.9  # headroom for the few statement-level parameters and future columns

ENV_VARS: dict[str, str] = {
    "heart_rate_metrics": "BATCH_HEART_RATE_CHUNK_SIZE",
    "blood_pressure_metrics": "BATCH_BLOOD_PRESSURE_CHUNK_SIZE",
    "sleep_metrics": "BATCH_SLEEP_CHUNK_SIZE",
    "activity_metrics": "BATCH_ACTIVITY_CHUNK_SIZE",
    "workout_metrics": "BATCH_WORKOUT_CHUNK_SIZE",
}


class BatchConfigError(ValueError):
    """A chunk size that could exceed the parameter limit, or is not a positive whole number."""


@dataclass(frozen=True)
class BatchConfig:
    """Rows per statement for each metric table."""

    chunk_sizes: Mapping[str, int] = field(default_factory=dict)

    @staticmethod
    def params_per_row(table: str) -> int:
        """Bind parameters one row needs in a multi-row INSERT (every column the payload can fill)."""
        return len(METRIC_TABLES[table].columns)

    @classmethod
    def max_chunk_size(cls, table: str) -> int:
        """The largest chunk that stays under the limit: 65,535 // params per row."""
        return PG_MAX_PARAMS // cls.params_per_row(table)

    @classmethod
    def default_chunk_size(cls, table: str) -> int:
        return math.floor(cls.max_chunk_size(table) * SAFETY_MARGIN)

    @classmethod
    def default(cls) -> BatchConfig:
        return cls({table: cls.default_chunk_size(table) for table in METRIC_TABLES})

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> BatchConfig:
        """Defaults, overridden by ``BATCH_<TABLE>_CHUNK_SIZE`` variables (validated by :meth:`validate`)."""
        env = os.environ if env is None else env
        sizes: dict[str, Any] = {}
        for table, var in ENV_VARS.items():
            raw = env.get(var, "").strip()
            if not raw:
                sizes[table] = cls.default_chunk_size(table)
                continue
            try:
                sizes[table] = int(raw)
            except ValueError:
                raise BatchConfigError(
                    f"Invalid batch configuration: {var}={raw!r} is not a whole number "
                    f"(allowed: 1 to {cls.max_chunk_size(table)} for {table})"
                ) from None
        return cls(sizes)

    def chunk_size(self, table: str) -> int:
        return int(self.chunk_sizes.get(table, self.default_chunk_size(table)))

    def problems(self) -> list[str]:
        found = []
        for table in METRIC_TABLES:
            size, per_row, limit = self.chunk_size(table), self.params_per_row(table), self.max_chunk_size(table)
            if size < 1:
                found.append(f"{table}: chunk size {size} ({ENV_VARS[table]}) must be at least 1")
            elif size * per_row > PG_MAX_PARAMS:
                found.append(
                    f"{table}: chunk size {size} ({ENV_VARS[table]}) x {per_row} params per row = "
                    f"{size * per_row} parameters, "
                    f"over PostgreSQL's maximum of {PG_MAX_PARAMS} (largest allowed chunk: {limit})"
                )
        return found

    def validate(self) -> BatchConfig:
        """Return self, or raise ``BatchConfigError('Invalid batch configuration: ...')``."""
        found = self.problems()
        if found:
            raise BatchConfigError("Invalid batch configuration: " + "; ".join(found))
        return self

    def to_dict(self) -> dict[str, int]:
        return {table: self.chunk_size(table) for table in METRIC_TABLES}


def chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    """``chunks([1, 2, 3], 2)`` -> ``[1, 2]``, ``[3]``."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


# --- SQL. All statements of the metric table family live here. -------------------------------


def update_clause(t: MetricTable) -> tuple[str, str]:
    """SET and WHERE of the merge's ON CONFLICT: fill NULL columns, never overwrite a value."""
    sets = ", ".join(f"{c} = COALESCE(t.{c}, EXCLUDED.{c})" for c in t.values)
    # Touch a row only when it gains a value: a rerun then writes nothing at all.
    changed = " OR ".join(f"(t.{c} IS NULL AND EXCLUDED.{c} IS NOT NULL)" for c in t.values)
    return sets, changed


def staging_name(t: MetricTable) -> str:
    return f"stage_{t.name}"


def staging_ddl(t: MetricTable) -> str:
    cols = ", ".join(
        f"{c} {_pg_type(t, c)}" for c in t.values
    )
    return (
        f"CREATE TEMP TABLE IF NOT EXISTS {staging_name(t)} "
        f"(seq bigint NOT NULL, key timestamptz NOT NULL, {cols}) ON COMMIT DELETE ROWS"
    )


def _pg_type(t: MetricTable, column: str) -> str:
    col_type = t.table.c[column].type
    if isinstance(col_type, sa.DateTime):
        return "timestamptz"
    if isinstance(col_type, sa.Text):
        return "text"
    return "double precision"


def merge_sql(t: MetricTable) -> str:
    """INSERT the staged rows of one ingestion; returns one row per inserted or filled row."""
    picks = ", ".join(
        f"(array_agg({c} ORDER BY seq) FILTER (WHERE {c} IS NOT NULL))[1]" for c in t.values
    )
    sets, changed = update_clause(t)
    return (
        f"WITH merged AS (INSERT INTO {t.name} AS t (user_id, {t.key}, {', '.join(t.values)}) "
        f"SELECT %(user_id)s, key, {picks} FROM {staging_name(t)} GROUP BY key ORDER BY key "
        f"ON CONFLICT (user_id, {t.key}) DO UPDATE SET {sets} WHERE {changed} "
        f"RETURNING (xmax = 0) AS inserted) "
        f"SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM merged"
    )


def staged_counts_sql(t: MetricTable) -> str:
    """Distinct staged keys, and how many of them exist for the user."""
    return (
        f"SELECT count(*), count(m.{t.key}) FROM (SELECT DISTINCT key FROM {staging_name(t)}) s "
        f"LEFT JOIN {t.name} m ON m.user_id = %(user_id)s AND m.{t.key} = s.key"
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


def copy_rows(cursor: Any, t: MetricTable, rows: Iterable[tuple[int, datetime, Mapping[str, Any]]]) -> int:
    """COPY ``(seq, key, values)`` rows into the table's staging table; returns rows written."""
    buffer = io.StringIO()
    count = 0
    for seq, key, values in rows:
        buffer.write(
            "\t".join([str(seq), key.isoformat(), *(_copy_text(values.get(c)) for c in t.values)]) + "\n"
        )
        count += 1
    if count:
        buffer.seek(0)
        cursor.copy_expert(f"COPY {staging_name(t)} (seq, key, {', '.join(t.values)}) FROM STDIN", buffer)
    return count


def insert_rows(
    cursor: Any, t: MetricTable, user_id: str, rows: Mapping[datetime, Mapping[str, Any]], chunk_size: int
) -> tuple[int, int]:
    """Multi-row INSERT ... ON CONFLICT of already-merged rows, ``chunk_size`` rows a statement.

    Returns ``(inserted, filled)``. The chunk size must keep rows x params per row under the
    limit; :class:`BatchConfig` guarantees that.
    """
    columns = t.columns
    if chunk_size * len(columns) > PG_MAX_PARAMS:
        raise BatchConfigError(
            f"Invalid batch configuration: {t.name}: chunk size {chunk_size} x {len(columns)} params per row "
            f"exceeds {PG_MAX_PARAMS}"
        )
    sets, changed = update_clause(t)
    placeholder = "(" + ", ".join(["%s"] * len(columns)) + ")"
    inserted = filled = 0
    items = sorted(rows.items())
    for part in chunks(items, chunk_size):
        params: list[Any] = []
        for key, values in part:
            params.extend([user_id, key, *(values.get(c) for c in t.values)])
        sql = (
            f"WITH merged AS (INSERT INTO {t.name} AS t ({', '.join(columns)}) VALUES "
            + ", ".join([placeholder] * len(part))
            + f" ON CONFLICT (user_id, {t.key}) DO UPDATE SET {sets} WHERE {changed} "
            "RETURNING (xmax = 0) AS inserted) "
            "SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM merged"
        )
        cursor.execute(sql, params)
        got_inserted, got_filled = cursor.fetchone()
        inserted += got_inserted
        filled += got_filled
    return inserted, filled
