"""The Health Export API's tables, as SQLAlchemy Core, and ``init_db`` to create them.

Table names, natural keys and the named columns are fixed: other tools rely on them.

    >>> init_db(get_engine())   # idempotent: a second call changes nothing
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.engine import Engine

metadata = sa.MetaData()

STATUSES = ("pending", "processed", "partial_success", "error", "recovered", "recovery_failed")
# Groups of statuses (a NULL status counts as pending).
NON_PENDING = tuple(s for s in STATUSES if s != "pending")
FAILED = ("error", "partial_success", "recovery_failed")
SUCCESS = ("processed", "recovered")
WORKER_DONE = ("processed", "partial_success", "error")  # statuses the ingestion worker itself sets
VERIFIED_STATUSES = ("processed", "partial_success", "error", "recovered", "recovery_failed")  # verify checks these

Num = sa.Double  # measurements are real numbers; units are in the column names


def _created_at() -> sa.Column:
    return sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False)


users = sa.Table(
    "users",
    metadata,
    sa.Column("id", UUID(as_uuid=False), primary_key=True),
    sa.Column("email", sa.Text, unique=True, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now()),
)

raw_ingestions = sa.Table(
    "raw_ingestions",
    metadata,
    sa.Column("id", UUID(as_uuid=False), primary_key=True),
    sa.Column("user_id", UUID(as_uuid=False), sa.ForeignKey("users.id"), nullable=False),
    sa.Column("payload_hash", sa.String(64), nullable=False),
    sa.Column("payload_size_bytes", sa.Integer, nullable=False),
    sa.Column("raw_payload", JSONB, nullable=False),
    sa.Column("processing_status", sa.String(50), server_default="pending"),
    sa.Column("processing_errors", JSONB),
    sa.Column("processed_at", sa.DateTime(timezone=True)),
    sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now()),
    sa.Index("ix_raw_ingestions_status_created", "processing_status", "created_at"),
    sa.Index("ix_raw_ingestions_user_created", "user_id", "created_at"),
    sa.Index("ix_raw_ingestions_created", "created_at"),
)

heart_rate_metrics = sa.Table(
    "heart_rate_metrics",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("user_id", UUID(as_uuid=False), sa.ForeignKey("users.id"), nullable=False),
    sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("heart_rate", Num),
    sa.Column("heart_rate_min", Num),
    sa.Column("heart_rate_max", Num),
    sa.Column("resting_heart_rate", Num),
    sa.Column("heart_rate_variability", Num),
    sa.Column("source_device", sa.Text),
    _created_at(),
    sa.UniqueConstraint("user_id", "recorded_at", name="uq_heart_rate_user_time"),
)

blood_pressure_metrics = sa.Table(
    "blood_pressure_metrics",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("user_id", UUID(as_uuid=False), sa.ForeignKey("users.id"), nullable=False),
    sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("systolic", Num),
    sa.Column("diastolic", Num),
    sa.Column("pulse", Num),
    sa.Column("source_device", sa.Text),
    _created_at(),
    sa.UniqueConstraint("user_id", "recorded_at", name="uq_blood_pressure_user_time"),
)

sleep_metrics = sa.Table(
    "sleep_metrics",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("user_id", UUID(as_uuid=False), sa.ForeignKey("users.id"), nullable=False),
    sa.Column("sleep_start", sa.DateTime(timezone=True), nullable=False),
    sa.Column("sleep_end", sa.DateTime(timezone=True)),
    sa.Column("duration_minutes", Num),
    sa.Column("deep_sleep_minutes", Num),
    sa.Column("rem_sleep_minutes", Num),
    sa.Column("light_sleep_minutes", Num),
    sa.Column("awake_minutes", Num),
    sa.Column("efficiency", Num),
    sa.Column("source_device", sa.Text),
    _created_at(),
    sa.UniqueConstraint("user_id", "sleep_start", name="uq_sleep_user_start"),
)

activity_metrics = sa.Table(
    "activity_metrics",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("user_id", UUID(as_uuid=False), sa.ForeignKey("users.id"), nullable=False),
    sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("step_count", Num),
    sa.Column("distance_meters", Num),
    sa.Column("flights_climbed", Num),
    sa.Column("active_energy_burned_kcal", Num),
    sa.Column("basal_energy_burned_kcal", Num),
    sa.Column("apple_exercise_time_minutes", Num),
    sa.Column("apple_stand_time_minutes", Num),
    sa.Column("source_device", sa.Text),
    _created_at(),
    sa.UniqueConstraint("user_id", "recorded_at", name="uq_activity_user_time"),
)

workout_metrics = sa.Table(
    "workout_metrics",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("user_id", UUID(as_uuid=False), sa.ForeignKey("users.id"), nullable=False),
    sa.Column("workout_type", sa.Text),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("ended_at", sa.DateTime(timezone=True)),
    sa.Column("total_energy_kcal", Num),
    sa.Column("active_energy_kcal", Num),
    sa.Column("distance_meters", Num),
    sa.Column("avg_heart_rate", Num),
    sa.Column("max_heart_rate", Num),
    sa.Column("source_device", sa.Text),
    _created_at(),
    sa.UniqueConstraint("user_id", "started_at", name="uq_workout_user_start"),
)

# Who recovered what: one line per ingestion a recovery run finished (either outcome), so
# concurrent runs can prove that each ingestion was handled by exactly one of them.
recovery_log = sa.Table(
    "recovery_log",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("worker", sa.String(128), nullable=False),
    sa.Column("ingestion_id", UUID(as_uuid=False), nullable=False),
    sa.Column("outcome", sa.String(50), nullable=False),
    sa.Column("rows_inserted", sa.Integer, nullable=False, server_default="0"),
    sa.Column("finished_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    sa.Index("ix_recovery_log_ingestion", "ingestion_id"),
)

# The deep check caches each payload's expected natural keys, keyed by the SHA-256 the server
# computes from the stored value (checksums.PAYLOAD_SHA256_SQL; never the API's payload_hash,
# which nothing guarantees) and the parser version, so unchanged payloads are not parsed again on
# the next run. filled_columns, one per key: which of the table's checked columns the payload
# fills there, a '0'/'1' string in MetricTable.checked order (values count, not only rows).
reconciliation_cache = sa.Table(
    "reconciliation_cache",
    metadata,
    sa.Column("payload_sha256", sa.String(64), primary_key=True),
    sa.Column("parser_version", sa.Integer, primary_key=True),
    sa.Column("table_name", sa.String(64), primary_key=True),
    sa.Column("expected_keys", sa.ARRAY(sa.DateTime(timezone=True)), nullable=False),
    sa.Column("filled_columns", sa.ARRAY(sa.Text), nullable=False, server_default="{}"),
    sa.Column("rejected_points", sa.Integer, nullable=False, server_default="0"),
    sa.Column("computed_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
)
# What init_db changes in a reconciliation_cache created by an earlier version (its grants stay).
_CACHE_MIGRATIONS = (
    ("payload_hash", "ALTER TABLE reconciliation_cache RENAME COLUMN payload_hash TO payload_sha256"),
    ("filled_columns", "ALTER TABLE reconciliation_cache ADD COLUMN IF NOT EXISTS filled_columns text[] "
                       "NOT NULL DEFAULT '{}'"),
)


@dataclass(frozen=True)
class MetricTable:
    """What the engine needs to know of one metric table."""

    name: str
    key: str  # the timestamp column of the natural key (user_id, key)
    values: tuple[str, ...]  # every other column the payload can fill

    @property
    def table(self) -> sa.Table:
        return metadata.tables[self.name]

    @property
    def columns(self) -> tuple[str, ...]:
        return ("user_id", self.key, *self.values)

    @property
    def checked(self) -> tuple[str, ...]:
        """The columns reconciliation compares: every value but ``source_device``.

        The source is filled only together with a value (store.metric_rows.update_clause), so a
        NULL source beside values that are all present is nothing a recovery could fill.
        """
        return tuple(c for c in self.values if c != "source_device")


def _metric(table: sa.Table, key: str) -> MetricTable:
    skip = {"id", "user_id", key, "created_at"}
    return MetricTable(table.name, key, tuple(c.name for c in table.columns if c.name not in skip))


METRIC_TABLES: dict[str, MetricTable] = {
    t.name: t
    for t in (
        _metric(heart_rate_metrics, "recorded_at"),
        _metric(blood_pressure_metrics, "recorded_at"),
        _metric(sleep_metrics, "sleep_start"),
        _metric(activity_metrics, "recorded_at"),
        _metric(workout_metrics, "started_at"),
    )
}


def init_db(engine: Engine) -> list[str]:
    """Create every table and index that is missing; return the names of tables created.

    Safe to run any number of times: existing tables and their rows are left alone.
    """
    with engine.begin() as conn:
        # Serialise concurrent `db init` calls (two CI jobs, two operators).
        conn.exec_driver_sql("SELECT pg_advisory_xact_lock(hashtext('health-export-recovery:init'))")
        existing = set(sa.inspect(conn).get_table_names())
        if reconciliation_cache.name in existing:
            columns = {c["name"] for c in sa.inspect(conn).get_columns(reconciliation_cache.name)}
            for column, statement in _CACHE_MIGRATIONS:
                if column in columns or column == "filled_columns":
                    conn.exec_driver_sql(statement)
        metadata.create_all(conn, checkfirst=True)
    return [name for name in metadata.tables if name not in existing]


def drop_all(engine: Engine) -> None:
    """Drop every table this project owns (tests and benchmarks only)."""
    with engine.begin() as conn:
        metadata.drop_all(conn, checkfirst=True)
