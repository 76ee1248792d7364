"""The Health Export API's own ingestion tables, and ingestions stored exactly the way the API stores them.

``create_api_tables`` builds ``users``, ``api_keys``, ``processing_jobs`` and ``raw_ingestions`` as
``database/schema.sql`` of ``Ladvien/self-sensored`` defines them (column types, defaults, enums,
foreign keys ``ON DELETE CASCADE``, the indexes): this project's ``init_db`` then finds them and
adds its own tables beside them. ``uuid_generate_v4()`` comes from ``uuid-ossp`` there; the embedded
test server has no contrib extensions, so a function of that name stands in (``gen_random_uuid``).

The ``store_*`` functions write one ingestion in each of the API's stored forms with the hash the
API computes: the SHA-256 of the bytes it received (a wrapped, placeholder or corrupted body; the
exporter's body), or of its own ``serde_json::to_string`` of the internal form (built here with the
field order of the chosen build).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from recovery_lib.catalogue.internal import HEAD, Build
from recovery_lib.payload.serde import object_text

API_DDL = """
CREATE OR REPLACE FUNCTION uuid_generate_v4() RETURNS uuid LANGUAGE sql VOLATILE AS 'SELECT gen_random_uuid()';
CREATE TYPE job_status AS ENUM ('pending', 'processing', 'completed', 'failed');
CREATE TYPE job_type AS ENUM ('ingest_batch', 'data_export', 'data_cleanup');
CREATE TABLE users (
    id UUID PRIMARY KEY DEFAULT uuid_generate_v4(),
    email VARCHAR(255) UNIQUE NOT NULL,
    apple_health_id VARCHAR(255) UNIQUE,
    created_at TIMESTAMPTZ DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMPTZ DEFAULT CURRENT_TIMESTAMP,
    is_active BOOLEAN DEFAULT true,
    metadata JSONB DEFAULT '{}'::jsonb
);
CREATE TABLE api_keys (
    id UUID PRIMARY KEY DEFAULT uuid_generate_v4(),
    user_id UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    key_hash VARCHAR(255) UNIQUE NOT NULL,
    name VARCHAR(255),
    created_at TIMESTAMPTZ DEFAULT CURRENT_TIMESTAMP,
    expires_at TIMESTAMPTZ,
    last_used_at TIMESTAMPTZ,
    is_active BOOLEAN DEFAULT true,
    permissions JSONB DEFAULT '["read", "write"]'::jsonb,
    rate_limit_per_hour INTEGER DEFAULT 1000
);
CREATE TABLE processing_jobs (
    id UUID PRIMARY KEY DEFAULT uuid_generate_v4(),
    user_id UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    api_key_id UUID NOT NULL REFERENCES api_keys(id) ON DELETE CASCADE,
    raw_ingestion_id UUID,
    status job_status NOT NULL DEFAULT 'pending',
    job_type job_type NOT NULL,
    priority INTEGER NOT NULL DEFAULT 5,
    total_metrics INTEGER DEFAULT 0,
    processed_metrics INTEGER DEFAULT 0,
    failed_metrics INTEGER DEFAULT 0,
    progress_percentage DECIMAL(5,2) DEFAULT 0.0,
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    started_at TIMESTAMPTZ,
    completed_at TIMESTAMPTZ,
    error_message TEXT,
    retry_count INTEGER DEFAULT 0,
    config JSONB DEFAULT '{}',
    result_summary JSONB
);
CREATE TABLE raw_ingestions (
    id UUID PRIMARY KEY DEFAULT uuid_generate_v4(),
    user_id UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    processing_job_id UUID REFERENCES processing_jobs(id) ON DELETE SET NULL,
    payload_hash VARCHAR(64) NOT NULL,
    payload_size_bytes INTEGER NOT NULL,
    raw_payload JSONB NOT NULL,
    processing_status VARCHAR(50) DEFAULT 'pending',
    processing_errors JSONB,
    processed_at TIMESTAMPTZ,
    created_at TIMESTAMPTZ DEFAULT CURRENT_TIMESTAMP
);
ALTER TABLE processing_jobs ADD CONSTRAINT fk_processing_jobs_raw_ingestion
    FOREIGN KEY (raw_ingestion_id) REFERENCES raw_ingestions(id) ON DELETE CASCADE;
CREATE INDEX idx_raw_ingestions_user_id ON raw_ingestions(user_id);
CREATE INDEX idx_raw_ingestions_created_at ON raw_ingestions(created_at);
CREATE INDEX idx_raw_ingestions_processing_status ON raw_ingestions(processing_status);
"""
API_TABLES = ("users", "api_keys", "processing_jobs", "raw_ingestions")
PLACEHOLDER_NOTE = "Raw payload too large for JSON storage - processing in background"



def drop_api_tables(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE IF EXISTS processing_jobs, api_keys CASCADE"))
        conn.execute(sa.text("DROP TYPE IF EXISTS job_status, job_type"))


def create_api_tables(engine: Engine) -> None:
    """The API's ingestion tables on an empty database (this project's own are dropped first)."""
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE IF EXISTS raw_ingestions, users CASCADE"))
    drop_api_tables(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql(API_DDL)


def definitions(engine: Engine, tables: tuple[str, ...] = API_TABLES) -> dict[str, list[tuple]]:
    """What defines ``tables`` (in ``public``) as pg_catalog holds it: columns (type, default, nullability),
    constraints, indexes, triggers; and every table of ``public`` and every enum type."""
    names = list(tables)
    with engine.connect() as conn:
        def rows(sql: str) -> list[tuple]:
            return [tuple(r) for r in conn.execute(sa.text(sql), {"names": names}).all()]

        return {
            "columns": rows(
                "SELECT c.relname, a.attnum, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, "
                "pg_get_expr(d.adbin, d.adrelid) FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
                "JOIN pg_namespace n ON n.oid = c.relnamespace LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid "
                "AND d.adnum = a.attnum WHERE n.nspname = 'public' AND c.relname = ANY(:names) AND a.attnum > 0 "
                "AND NOT a.attisdropped ORDER BY 1, 2"),
            "constraints": rows(
                "SELECT c.relname, k.conname, pg_get_constraintdef(k.oid) FROM pg_constraint k "
                "JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = 'public' AND c.relname = ANY(:names) ORDER BY 1, 2"),
            "indexes": rows(
                "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' "
                "AND tablename = ANY(:names) ORDER BY 1, 2"),
            "triggers": rows(
                "SELECT c.relname, t.tgname, pg_get_triggerdef(t.oid) FROM pg_trigger t "
                "JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = 'public' AND c.relname = ANY(:names) ORDER BY 1, 2"),
            "tables": rows(
                "SELECT schemaname, tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1, 2"),
            "types": rows(
                "SELECT t.typname, e.enumsortorder, e.enumlabel FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid "
                "ORDER BY 1, 2"),
        }


# --- the internal form, as the API serialises it --------------------------------------------------------


def metric(tag: str, build: Build = HEAD, **values: Any) -> dict[str, Any]:
    """One object of data.metrics as ``build`` writes it: every field present, None unless given."""
    fields = dict.fromkeys(name for name, _ in build.metrics[tag])
    fields.update(id=str(uuid.uuid4()), user_id=str(uuid.uuid4()), created_at="2025-09-20T14:07:31.402918733Z")
    unknown = set(values) - set(fields)
    assert not unknown, f"{tag} of {build.name} has no field {unknown}"
    return {"type": tag, **fields, **values}


def workout(build: Build = HEAD, **values: Any) -> dict[str, Any]:
    """One entry of data.workouts as ``build`` writes it."""
    fields = dict.fromkeys(name for name, _ in build.workouts)
    fields.update(id=str(uuid.uuid4()), user_id=str(uuid.uuid4()), created_at="2025-09-20T14:07:31.403266Z")
    return {**fields, **values}


def serialise(payload: dict[str, Any], build: Build = HEAD) -> bytes:
    """``serde_json::to_string(&IngestPayload)`` of ``payload`` with ``build``'s field order."""
    data = payload["data"]
    metrics = ",".join(object_text(m, build.metrics[m["type"]], m["type"])[0] for m in data.get("metrics", []))
    workouts = ",".join(object_text(w, build.workouts, None)[0] for w in data.get("workouts", []))
    return ('{"data":{"metrics":[' + metrics + '],"workouts":[' + workouts + "]}}").encode("utf-8")


# --- writing ingestions ---------------------------------------------------------------------------------


def _insert(engine: Engine, user_id: str, stored_text: str, payload_hash: str, size: int, *, status: str,
            errors: Any, created_at: datetime | None) -> str:
    ingestion_id = str(uuid.uuid4())
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO raw_ingestions (id, user_id, payload_hash, payload_size_bytes, raw_payload, "
                "processing_status, processing_errors, processed_at, created_at) VALUES (:id, :u, :h, :size, "
                "CAST(:payload AS jsonb), :status, CAST(:errors AS jsonb), :at, :at)"
            ),
            {"id": ingestion_id, "u": user_id, "h": payload_hash, "size": size, "payload": stored_text,
             "status": status, "errors": None if errors is None else json.dumps(errors),
             "at": created_at or datetime.now(UTC) - timedelta(hours=1)},
        )
    return ingestion_id


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def store_internal(engine: Engine, user_id: str, payload: dict[str, Any], *, build: Build = HEAD,
                   status: str = "error", errors: Any = None, created_at: datetime | None = None) -> str:
    """Form (a): the parsed payload, hashed as the API's own serialisation of it (``build``'s field order)."""
    text = serialise(payload, build)
    return _insert(engine, user_id, text.decode("utf-8"), sha256(text), len(text), status=status, errors=errors,
                   created_at=created_at)


def store_wrapped(engine: Engine, user_id: str, body: bytes, *, status: str = "parsing", errors: Any = None,
                  created_at: datetime | None = None) -> str:
    """Form (b): the received body kept as text (lossily decoded, as the API does), hashed as received."""
    value = {"raw_payload": body.decode("utf-8", "replace"), "needs_parsing": True,
             "received_at": "2025-09-20T14:07:31.402918733Z", "size_bytes": len(body)}
    return _insert(engine, user_id, json.dumps(value), sha256(body), len(body), status=status, errors=errors,
                   created_at=created_at)


def store_placeholder(engine: Engine, user_id: str, size: int = 14_680_064, *, status: str = "parsing",
                      errors: Any = None, created_at: datetime | None = None) -> str:
    """Form (c): only a placeholder; the hash is of a body the database never saw."""
    value = {"large_payload": True, "needs_parsing": True, "received_at": "2025-09-20T14:07:31.402918733Z",
             "size_bytes": size, "note": PLACEHOLDER_NOTE}
    return _insert(engine, user_id, json.dumps(value), sha256(f"a body of {size} bytes".encode()), size,
                   status=status, errors=errors, created_at=created_at)


def store_corrupted(engine: Engine, user_id: str, body: bytes, parse_error: str, *, status: str = "error",
                    created_at: datetime | None = None) -> str:
    """Form (d): a body the API could not parse, with the ``processing_errors`` list it writes."""
    value = {"raw_text": body.decode("utf-8", "replace"), "parse_error": parse_error, "corrupted": True,
             "timestamp": "2025-09-20T14:07:31.402918733Z"}
    errors = [{"error_type": "json_parse_error", "error_message": parse_error, "severity": "critical",
               "timestamp": "2025-09-20T14:07:31.402961517Z"}]
    return _insert(engine, user_id, json.dumps(value), sha256(body), len(body), status=status, errors=errors,
                   created_at=created_at)


def store_exporter_body(engine: Engine, user_id: str, payload: dict[str, Any], *, status: str = "error",
                        errors: Any = None, created_at: datetime | None = None) -> str:
    """The exporter's body stored as jsonb (the API's MQTT path), hashed as the bytes it was sent as."""
    body = json.dumps(payload, indent=2).encode("utf-8")
    return _insert(engine, user_id, body.decode("utf-8"), sha256(body), len(body), status=status, errors=errors,
                   created_at=created_at)


def hae_body(start: datetime, points: int, *, metric_name: str = "step_count", units: str = "count") -> dict:
    """A Health Auto Export body with ``points`` points of one metric, a minute apart."""
    data = [{"date": (start + timedelta(minutes=i)).strftime("%Y-%m-%d %H:%M:%S +0000"), "qty": 100 + i,
             "source": "Example Phone"} for i in range(points)]
    return {"data": {"metrics": [{"name": metric_name, "units": units, "data": data}], "workouts": []}}
