"""This project's schema as SQLAlchemy Core: users, raw_ingestions, a table per catalogue family, bookkeeping.

The metric tables are built from the catalogue (:mod:`recovery_lib.catalogue`): names and
columns follow the Health Export API's public schema where it has them; the natural key is
``(user_id, key)`` or ``(user_id, key, tag)``. ``init_db`` creates what is missing, and adds to
an older database the tables and columns it lacks; it never drops or changes what exists.

    >>> init_db(get_engine())   # idempotent: a second call changes nothing
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.engine import Connection, Engine

from recovery_lib import catalogue
from recovery_lib.catalogue.model import BOOL, FLOAT, JSON, TEXT, TIMESTAMP, TableSpec

metadata = sa.MetaData()

# This tool's statuses, then the Health Export API's others (api-db: ``parsing``, ``validation`` and
# ``processing`` are the stages of an upload over 10 MiB, ``failed`` its failure, ``ready`` an MQTT
# message): any of them can be recovered (``--status parsing``).
OWN_STATUSES = ("pending", "processed", "partial_success", "error", "recovered", "recovery_failed")
API_STATUSES = ("parsing", "validation", "processing", "failed", "ready")
STATUSES = (*OWN_STATUSES, *API_STATUSES)
# Groups of statuses (a NULL status counts as pending); the API's stages are in none of them.
NON_PENDING = tuple(s for s in OWN_STATUSES if s != "pending")
FAILED = ("error", "partial_success", "recovery_failed")
SUCCESS = ("processed", "recovered")
WORKER_DONE = ("processed", "partial_success", "error")  # statuses the ingestion worker itself sets
VERIFIED_STATUSES = ("processed", "partial_success", "error", "recovered", "recovery_failed")  # verify checks these

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

_TYPES = {FLOAT: sa.Double, TEXT: sa.Text, TIMESTAMP: sa.DateTime(timezone=True), JSON: JSONB, BOOL: sa.Boolean}
# The constraint names databases created before the catalogue already have.
_CONSTRAINTS = {
    "heart_rate_metrics": "uq_heart_rate_user_time",
    "blood_pressure_metrics": "uq_blood_pressure_user_time",
    "sleep_metrics": "uq_sleep_user_start",
    "activity_metrics": "uq_activity_user_time",
    "workout_metrics": "uq_workout_user_start",
}


def _metric_table(spec: TableSpec) -> sa.Table:
    """The table of one catalogue entry: id, user, natural key (time and tag), its columns, created_at."""
    key = [sa.Column(spec.key, sa.DateTime(timezone=True), nullable=False)]
    if spec.tag:
        key.append(sa.Column(spec.tag, _TYPES[spec.tag_type], nullable=False))
    return sa.Table(
        spec.name,
        metadata,
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("user_id", UUID(as_uuid=False), sa.ForeignKey("users.id"), nullable=False),
        *key,
        *(sa.Column(c.name, _TYPES[c.type]) for c in catalogue.table_columns(spec.name)),
        _created_at(),
        sa.UniqueConstraint("user_id", *(c.name for c in key),
                            name=_CONSTRAINTS.get(spec.name, f"uq_{spec.name}_natural_key")),
    )


for _spec in catalogue.TABLES.values():
    _metric_table(_spec)

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
    # What the run found, so that `recover undo` can set it back (NULL: logged before the journal).
    sa.Column("status_before", sa.String(50)),
    sa.Column("processed_at_before", sa.DateTime(timezone=True)),
    sa.Index("ix_recovery_log_ingestion", "ingestion_id"),
    sa.Index("ix_recovery_log_run", "run_id"),
)

# The journal of what each recovery run wrote, in the ingestion's own transaction: one line per
# write statement and kind (rows inserted; NULL columns filled, per set of columns), with the keys
# as arrays and the row version (xmin) the statement left. `recover undo` reverts exactly that, and
# journals the columns it set back to NULL ('unfill', with the row version each row returns to).
# Keys and column names only: never a value. SQL: recovery_lib/store/journal.py.
recovery_journal = sa.Table(
    "recovery_journal",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("ingestion_id", UUID(as_uuid=False), nullable=False),
    sa.Column("table_name", sa.String(64), nullable=False),
    sa.Column("user_id", UUID(as_uuid=False), nullable=False),
    sa.Column("action", sa.String(16), nullable=False),  # insert | fill | unfill
    sa.Column("columns", sa.ARRAY(sa.Text)),  # fill and unfill: the columns
    sa.Column("keys", sa.ARRAY(sa.DateTime(timezone=True)), nullable=False),
    sa.Column("tags", sa.ARRAY(sa.Text)),  # a tagged table's tags as text, parallel to keys
    sa.Column("row_xid", sa.BigInteger, nullable=False),  # the rows' xmin after the statement
    # fill: each row's xmin before it was filled; unfill: the row version it is back to.
    sa.Column("prev_xids", sa.ARRAY(sa.BigInteger)),
    sa.Column("journaled_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    sa.Index("ix_recovery_journal_run", "run_id", "ingestion_id"),
    sa.Index("ix_recovery_journal_xid", "row_xid"),
)

# One line per ingestion an undo finished: `recover undo` is then idempotent and crash-safe.
recovery_undo = sa.Table(
    "recovery_undo",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("undo_id", sa.String(64), nullable=False),
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("ingestion_id", UUID(as_uuid=False), nullable=False),
    sa.Column("rows_deleted", sa.Integer, nullable=False, server_default="0"),
    sa.Column("values_cleared", sa.Integer, nullable=False, server_default="0"),
    sa.Column("status_restored", sa.String(50)),
    sa.Column("finished_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    sa.UniqueConstraint("run_id", "ingestion_id", name="uq_recovery_undo_run_ingestion"),
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
    # The tags of a tagged table's keys, as text, parallel to expected_keys (NULL for other tables).
    sa.Column("expected_tags", sa.ARRAY(sa.Text)),
    sa.Column("filled_columns", sa.ARRAY(sa.Text), nullable=False, server_default="{}"),
    sa.Column("rejected_points", sa.Integer, nullable=False, server_default="0"),
    # Where the payload's points went (recovery_lib.accounting; counts and names only, no values).
    sa.Column("accounting", JSONB),
    sa.Column("computed_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
)
# The points the target refused (a CHECK, an integer range, an enum, NOT NULL): named rejections
# ``constraint_violation``, one line per point of the ingestion's last recovery (or, rolled back,
# its preview). Reconciliation reads them so a refused point counts as rejected, not as missing.
# Keys and names only, never a value.
constraint_rejections = sa.Table(
    "constraint_rejections",
    metadata,
    sa.Column("ingestion_id", UUID(as_uuid=False), primary_key=True),
    sa.Column("table_name", sa.String(64), primary_key=True),
    sa.Column("metric", sa.Text, primary_key=True),
    sa.Column("point_index", sa.Integer, primary_key=True),
    sa.Column("key_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("key_tag", sa.Text),  # a tagged table's tag, as text
    sa.Column("constraint_name", sa.Text, nullable=False),
    sa.Column("columns", sa.ARRAY(sa.Text), nullable=False, server_default="{}"),  # the columns the point fills
    sa.Column("whole_row", sa.Boolean, nullable=False),  # no point of its key was written
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("recorded_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
)
# This tool's own tables: on an existing database (the API's) they live in a schema of their own.
BOOKKEEPING_SCHEMA = "recovery"
BOOKKEEPING_TABLES = (recovery_log, recovery_journal, recovery_undo, reconciliation_cache, constraint_rejections)
# The catalogue's table -> the Health Export API's name, where they differ (database/schema.sql).
API_NAMES = {"workout_metrics": "workouts"}

# What init_db changes in a reconciliation_cache created by an earlier version (its grants stay).
# The cache is internal: these changes are not reported as added columns.
_CACHE_RENAME = "ALTER TABLE reconciliation_cache RENAME COLUMN payload_hash TO payload_sha256"
_CACHE_ADDITIONS = (
    "ALTER TABLE reconciliation_cache ADD COLUMN IF NOT EXISTS filled_columns text[] NOT NULL DEFAULT '{}'",
    "ALTER TABLE reconciliation_cache ADD COLUMN IF NOT EXISTS expected_tags text[]",
    "ALTER TABLE reconciliation_cache ADD COLUMN IF NOT EXISTS accounting jsonb",
)


@dataclass(frozen=True)
class MetricTable:
    """What the engine needs to know of one metric table."""

    name: str
    key: str  # the timestamp column of the natural key
    values: tuple[str, ...]  # every other column the payload can fill
    tag: str | None = None  # the column completing the natural key (user_id, key, tag), if any
    # Bound to an existing database (recovery_lib.target.bind): the table holding it there ('' = name),
    # whether there is one, and the columns whose type needs an explicit cast from text (enums).
    relation: str = ""
    present: bool = True
    casts: tuple[tuple[str, str], ...] = ()

    @property
    def sql_name(self) -> str:
        """The table's name in SQL on the target (the API's ``workouts`` for ``workout_metrics``)."""
        return self.relation or self.name

    def cast(self, column: str) -> str:
        """``::type`` for a column the target types as an enum, else ''."""
        return next((f"::{kind}" for name, kind in self.casts if name == column), "")

    @property
    def table(self) -> sa.Table:
        return metadata.tables[self.name]

    @property
    def natural_key(self) -> tuple[str, ...]:
        """The natural key's columns after ``user_id``: ``(key,)`` or ``(key, tag)``."""
        return (self.key, self.tag) if self.tag else (self.key,)

    @property
    def columns(self) -> tuple[str, ...]:
        return ("user_id", *self.natural_key, *self.values)

    @property
    def checked(self) -> tuple[str, ...]:
        """The columns reconciliation compares: every value but ``source_device``.

        The source is filled only together with a value (store.metric_rows.update_clause), so a
        NULL source beside values that are all present is nothing a recovery could fill.
        """
        return tuple(c for c in self.values if c != "source_device")



METRIC_TABLES: dict[str, MetricTable] = {
    spec.name: MetricTable(spec.name, spec.key, tuple(c.name for c in catalogue.table_columns(spec.name)), spec.tag)
    for spec in catalogue.TABLES.values()
}
CATALOGUE_TABLES: dict[str, MetricTable] = dict(METRIC_TABLES)  # as the catalogue defines them, never rebound


def bind_metric_tables(bound: dict[str, MetricTable] | None) -> None:
    """Point every module at the target's tables (``None``: the catalogue's own, this project's database).

    In place: modules hold ``METRIC_TABLES`` itself. One target per process at a time.
    """
    METRIC_TABLES.update(bound or CATALOGUE_TABLES)


def catalogue_bound() -> bool:
    """Whether the metric tables are the catalogue's own (the SQL fast path and the cache assume it)."""
    return all(METRIC_TABLES[name] is table for name, table in CATALOGUE_TABLES.items())


def _relations(conn: Connection, schema: str) -> set[str]:
    return set(conn.exec_driver_sql(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %(schema)s AND c.relkind IN ('r', 'p')", {"schema": schema},
    ).scalars())


def is_existing_database(conn: Connection) -> bool:
    """Whether the metric tables were made by someone else (the API): there are some, and no bookkeeping beside them.

    A database with the API's ``users`` and ``raw_ingestions`` only is still this project's to
    complete (``db init`` adds the metric tables), as it always was.
    """
    if "recovery_log" in _relations(conn, BOOKKEEPING_SCHEMA):
        return True
    public = _relations(conn, "public")
    return "recovery_log" not in public and bool((set(METRIC_TABLES) | set(API_NAMES.values())) & public)


def _init_bookkeeping(conn: Connection) -> list[str]:
    """On an existing database: this tool's own schema and its bookkeeping tables, nothing else."""
    conn.exec_driver_sql(f"CREATE SCHEMA IF NOT EXISTS {BOOKKEEPING_SCHEMA}")
    conn.exec_driver_sql(f"SET LOCAL search_path = {BOOKKEEPING_SCHEMA}")
    present = _relations(conn, BOOKKEEPING_SCHEMA)
    created = []
    for table in BOOKKEEPING_TABLES:
        if table.name not in present:
            table.create(conn)
            created.append(f"{BOOKKEEPING_SCHEMA}.{table.name}")
    return created


def init_db(engine: Engine) -> list[str]:
    """Create every table and index that is missing, add missing columns; return what was created.

    Safe to run any number of times: existing tables, columns and rows are left alone. The names
    returned are tables (``activity_metrics``) and added columns (``activity_metrics.walking_speed_m_per_s``).
    On an existing database (:func:`is_existing_database`: the API's own) it creates only the schema
    :data:`BOOKKEEPING_SCHEMA` and the bookkeeping tables in it (``recovery.recovery_log``, ...).
    """
    with engine.begin() as conn:
        # Serialise concurrent `db init` calls (two CI jobs, two operators).
        conn.exec_driver_sql("SELECT pg_advisory_xact_lock(hashtext('health-export-recovery:init'))")
        if is_existing_database(conn):
            return _init_bookkeeping(conn)
        conn.exec_driver_sql("SET LOCAL search_path = public")  # this project's own tables: all in public
        existing = set(sa.inspect(conn).get_table_names())
        if reconciliation_cache.name in existing:
            columns = {c["name"] for c in sa.inspect(conn).get_columns(reconciliation_cache.name)}
            if "payload_hash" in columns:
                conn.exec_driver_sql(_CACHE_RENAME)
            for statement in _CACHE_ADDITIONS:
                conn.exec_driver_sql(statement)
        metadata.create_all(conn, checkfirst=True)
        inspector = sa.inspect(conn)  # a fresh one: the migrations above changed columns
        added = []
        for name in sorted(existing & set(metadata.tables)):
            present = {c["name"] for c in inspector.get_columns(name)}
            for column in metadata.tables[name].columns:
                if column.name not in present:
                    # Identifiers from the schema, never from input; a new column is nullable.
                    kind = column.type.compile(dialect=conn.dialect)
                    conn.exec_driver_sql(f'ALTER TABLE "{name}" ADD COLUMN IF NOT EXISTS "{column.name}" {kind}')
                    added.append(f"{name}.{column.name}")
    return [name for name in metadata.tables if name not in existing] + added


def drop_all(engine: Engine) -> None:
    """Drop every table this project owns (tests and benchmarks only)."""
    with engine.begin() as conn:
        metadata.drop_all(conn, checkfirst=True)
