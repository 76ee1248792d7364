"""The incident in the database: store a plan as the API would have, then measure what is there.

Raw payloads are stored; metric rows are inserted only for the parts the original tool managed
to write, then :class:`~recovery_lib.simulate.truth.IncidentTruth` is measured by querying the
database, so it states what is really there. This module stands in for the API's own writes:
its SQL inserts ``raw_ingestions`` and metric rows the way the API did.

    >>> write_plan(engine, plan)
    >>> truth = measure(engine, plan)
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Connection, Engine

from recovery_lib import schema
from recovery_lib.catalogue import GENERIC_TABLE
from recovery_lib.checksums import PAYLOAD_SHA256_SQL
from recovery_lib.db import run
from recovery_lib.errors import IncidentExistsError
from recovery_lib.schema import METRIC_TABLES
from recovery_lib.simulate.cells import Key
from recovery_lib.simulate.payloads import count_points, points_by_family
from recovery_lib.simulate.plan import IncidentPlan, plan_incident
from recovery_lib.simulate.rows import Rows
from recovery_lib.simulate.truth import IncidentTruth, IngestionTruth

# Rows x columns per statement when this generator writes rows: safely under the limit.
PARAMS_PER_STATEMENT = 60_000


def max_params_single_insert(rows: Rows) -> int:
    """The most bind parameters a one-statement multi-row insert of one table of ``rows`` needs."""
    return max((len(rows[t]) * len(METRIC_TABLES[t].columns) for t in METRIC_TABLES), default=0)


def insert_rows(conn: Connection, table_name: str, user_id: str, rows: list[dict[str, Any]]) -> None:
    """Multi-row inserts of one table, chunked under the parameter limit; existing keys are kept.

    JSON columns hold JSON text in the rows (as the parser gives them); they are bound as values.
    """
    spec = METRIC_TABLES[table_name]
    per_statement = max(1, (PARAMS_PER_STATEMENT - 1) // len(spec.columns))  # rows x columns < 60,000
    as_json = [c for c in spec.values if isinstance(spec.table.c[c].type, JSONB)]
    for i in range(0, len(rows), per_statement):
        chunk = []
        for row in rows[i : i + per_statement]:
            bound = {"user_id": user_id, **row}
            for column in as_json:
                if bound[column] is not None:
                    bound[column] = json.loads(bound[column])
            chunk.append(bound)
        stmt = pg_insert(spec.table).values(chunk).on_conflict_do_nothing(
            index_elements=["user_id", *spec.natural_key])
        conn.execute(stmt)


_INSERT_INGESTION = (
    "INSERT INTO raw_ingestions (id, user_id, payload_hash, payload_size_bytes, raw_payload, "
    "processing_status, processing_errors, processed_at, created_at) VALUES (%(id)s, %(user_id)s, '', %(size)s, "
    "%(raw)s::jsonb, %(status)s, %(errors)s::jsonb, %(processed_at)s, %(created_at)s)"
)
# The hash of the payload as stored: PostgreSQL's canonical jsonb text, not the text sent.
_SET_HASHES = f"UPDATE raw_ingestions SET payload_hash = {PAYLOAD_SHA256_SQL} WHERE id = ANY(%(ids)s::uuid[])"


def _holds_incident(conn: Connection) -> bool:
    query = "SELECT EXISTS (SELECT 1 FROM raw_ingestions) OR EXISTS (SELECT 1 FROM users)"
    return bool(run(conn, query).scalar_one())


def incident_exists(engine: Engine) -> bool:
    """True when users or raw_ingestions hold rows (a generator run would refuse)."""
    with engine.connect() as conn:
        return _holds_incident(conn)


def write_plan(engine: Engine, plan: IncidentPlan) -> None:
    """Store users, raw ingestions and the rows the original tool managed to write, in one transaction."""
    with engine.begin() as conn:
        # One generator at a time; and never on top of another incident.
        run(conn, "SELECT pg_advisory_xact_lock(hashtext('health-export-recovery:simulate'))")
        if _holds_incident(conn):
            raise IncidentExistsError(
                "the database already holds users or raw_ingestions: refusing to add a second incident "
                "(reset first: `python -m recovery_lib simulate --reset ...`)"
            )
        conn.execute(sa.insert(schema.users), [{"id": p.user_id, "email": p.email} for p in plan.profiles])
        for ing in plan.ingestions:
            errors = ing.processing_errors
            run(
                conn,
                _INSERT_INGESTION,
                {
                    "id": ing.id,
                    "user_id": ing.profile.user_id,
                    "size": len(ing.text.encode("utf-8")),
                    "raw": ing.text,
                    "status": ing.status,
                    "errors": json.dumps(errors) if errors is not None else None,
                    "processed_at": ing.processed_at,
                    "created_at": ing.created_at,
                },
            )
        run(conn, _SET_HASHES, {"ids": [i.id for i in plan.ingestions if not i.hash_mismatch]})
        for ing in plan.ingestions:
            if ing.hash_mismatch:
                # The original tool hashed its own re-serialisation (key order as sent), not the
                # stored jsonb text: a plausible 64-hex value that does not match.
                wrong = hashlib.sha256(ing.text.encode("utf-8")).hexdigest()
                run(conn, "UPDATE raw_ingestions SET payload_hash = %(h)s WHERE id = %(id)s",
                    {"h": wrong, "id": ing.id})
        # Rows in the order the original tool processed the payloads; a key written earlier stays.
        for ing in sorted(plan.ingestions, key=lambda i: i.processed_at or plan.now):
            for table in ing.written_tables:
                insert_rows(conn, table, ing.profile.user_id, list(ing.rows[table].values()))


def _present(conn: Connection, table_name: str, user_id: str, keys: list[Key]) -> set[Key]:
    """Which of ``keys`` the table holds for ``user_id`` (``(instant, tag)`` keys for a tagged table)."""
    spec = METRIC_TABLES[table_name]
    t = spec.table
    column = t.c[spec.key]
    if spec.tag is None:
        keys_param = sa.bindparam("keys", keys, type_=ARRAY(sa.DateTime(timezone=True)))
        stmt = sa.select(column).where(t.c.user_id == user_id, column == sa.any_(keys_param))
        return set(conn.execute(stmt).scalars())
    tag_type = "timestamptz" if isinstance(t.c[spec.tag].type, sa.DateTime) else "text"
    # Identifiers from the schema; the keys are bound as two parallel arrays.
    found = run(conn, f"SELECT m.{spec.key}, m.{spec.tag} FROM {spec.name} m "
                      f"JOIN unnest(%(at)s::timestamptz[], %(tags)s::{tag_type}[]) AS k(at, tag) "
                      f"ON m.{spec.key} = k.at AND m.{spec.tag} = k.tag WHERE m.user_id = %(user_id)s",
                {"at": [k[0] for k in keys], "tags": [k[1] for k in keys], "user_id": user_id})  # type: ignore[index]
    return {(at, tag) for at, tag in found}


def measure(engine: Engine, plan: IncidentPlan, *, settings: dict[str, int] | None = None) -> IncidentTruth:
    """The truth, with ``present_rows`` looked up in the database for every expected key."""
    ingestions = []
    lost: set[tuple[str, str, Key]] = set()
    with engine.connect() as conn:
        for ing in plan.ingestions:
            expected = {t: len(ing.rows[t]) for t in METRIC_TABLES}
            present = {}
            for t in METRIC_TABLES:
                found = _present(conn, t, ing.profile.user_id, list(ing.rows[t])) if ing.rows[t] else set()
                present[t] = len(found)
                if ing.outcome != "pending":
                    lost.update((ing.profile.user_id, t, k) for k in ing.rows[t] if k not in found)
            ingestions.append(
                IngestionTruth(
                    id=ing.id,
                    user_id=ing.profile.user_id,
                    status=ing.status,
                    outcome=ing.outcome,
                    created_at=ing.created_at.isoformat(),
                    points=count_points(ing.payload),
                    points_by_family=points_by_family(ing.payload),
                    generic_points=generic_points(ing.rows),
                    large=ing.large,
                    payload_size_bytes=len(ing.text.encode("utf-8")),
                    expected_rows=expected,
                    present_rows=present,
                    missing_rows={t: expected[t] - present[t] for t in METRIC_TABLES},
                    max_params_single_insert=max_params_single_insert(ing.rows),
                    hash_mismatch=ing.hash_mismatch,
                    corrupt_category=ing.corrupt_variant[0] if ing.corrupt_variant else None,
                    dropped_tables=[t for t in METRIC_TABLES if expected[t] and t not in ing.written_tables],
                    overlaps_with=ing.overlaps_with,
                )
            )
        rows_by_table = {
            t: int(conn.execute(sa.select(sa.func.count()).select_from(METRIC_TABLES[t].table)).scalar_one())
            for t in METRIC_TABLES
        }
    by_table = Counter(t for _, t, _ in lost)
    return IncidentTruth(
        seed=plan.seed,
        now=plan.now,
        users=[p.user_id for p in plan.profiles],
        ingestions=ingestions,
        settings=settings or {},
        rows_by_table=rows_by_table,
        recoverable_missing_rows_total=len(lost),
        recoverable_missing_by_table={t: by_table[t] for t in METRIC_TABLES},
    )


def generic_points(rows: Rows) -> dict[str, int]:
    """Points kept in ``other_metrics`` per unknown metric name (one row per point)."""
    return dict(sorted(Counter(name for _, name in rows[GENERIC_TABLE]).items()))


def simulate(
    engine: Engine,
    *,
    users: int = 10,
    payloads: int = 40,
    seed: int = 42,
    now: datetime | None = None,
    large_points: int = 20_000,
    hash_mismatches: int = 0,
) -> IncidentTruth:
    """Generate the incident into an empty schema and return its measured ground truth.

    Raises :class:`IncidentExistsError` when users or raw_ingestions already hold rows, and
    ``ValueError`` for impossible settings (e.g. more hash mismatches than recoverable payloads).
    """
    settings = {
        "users": users,
        "payloads": payloads,
        "large_points": large_points,
        "hash_mismatches": hash_mismatches,
    }
    plan = plan_incident(**settings, seed=seed, now=now)
    write_plan(engine, plan)
    return measure(engine, plan, settings=settings)


def reset_tables(engine: Engine) -> list[str]:
    """Empty every table this project owns (users, raw_ingestions, metric tables, recovery_log,
    reconciliation_cache); return their names."""
    names = [t.name for t in schema.metadata.sorted_tables]
    with engine.begin() as conn:
        quote = conn.dialect.identifier_preparer.quote
        # Identifiers cannot be bind parameters; these names are the schema's own constants.
        run(conn, f"TRUNCATE {', '.join(quote(n) for n in names)} RESTART IDENTITY")
    return names
