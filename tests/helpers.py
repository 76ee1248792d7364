"""Small builders shared by the tests: users, ingestions from Python payloads, table fingerprints, the
executed runbook (the ``runbook`` fixture of conftest.py)."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from recovery_lib.checksums import PAYLOAD_SHA256_SQL

if TYPE_CHECKING:  # the runner imports nbformat (seconds): only for the tests that execute notebooks
    from recovery_lib.runbook.execute import RunResult


@dataclass
class Runbook:
    """The four runbook notebooks executed on one simulated incident, and what was measured around them."""

    truth: dict[str, Any]
    results: dict[str, RunResult]
    before_preview: dict[str, Any]
    after_preview: dict[str, Any]
    runs: Path
    password: str
    # Who recovery_log says did the work, read right after recover (later tests reset the tables).
    recovery_log_workers: list[str]

    def report(self, name: str) -> dict[str, Any]:
        return self.results[name].report or {}


def add_user(engine: Engine) -> str:
    user_id = str(uuid.uuid4())
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO users (id, email) VALUES (:id, :e)"),
                     {"id": user_id, "e": f"{user_id}@example.test"})
    return user_id


def add_ingestion(
    engine: Engine,
    user_id: str,
    payload: Any,
    *,
    status: str = "error",
    errors: Any = None,
    payload_hash: str | None = None,
    created_at: datetime | None = None,
) -> str:
    """Store ``payload`` as the API would; the hash is the SHA-256 of the stored payload unless given."""
    ingestion_id = str(uuid.uuid4())
    text = json.dumps(payload)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO raw_ingestions (id, user_id, payload_hash, payload_size_bytes, raw_payload, "
                "processing_status, processing_errors, processed_at, created_at) VALUES (:id, :u, 'pending-hash', "
                ":size, CAST(:payload AS jsonb), :status, CAST(:errors AS jsonb), :at, :at)"
            ),
            {"id": ingestion_id, "u": user_id, "size": len(text.encode()), "payload": text, "status": status,
             "errors": None if errors is None else json.dumps(errors),
             "at": created_at or datetime.now(UTC) - timedelta(hours=1)},
        )
        if payload_hash is None:
            conn.execute(sa.text(f"UPDATE raw_ingestions SET payload_hash = {PAYLOAD_SHA256_SQL} WHERE id = :id"),
                         {"id": ingestion_id})
        else:
            conn.execute(sa.text("UPDATE raw_ingestions SET payload_hash = :h WHERE id = :id"),
                         {"h": payload_hash, "id": ingestion_id})
    return ingestion_id


def fingerprint(engine: Engine) -> dict[str, tuple[int, str | None]]:
    """Row count and md5 of the ordered contents of every table in the public schema."""
    with engine.connect() as conn:
        names = conn.execute(
            sa.text("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")
        ).scalars().all()
        return {
            name: tuple(conn.execute(
                sa.text(f'SELECT count(*), md5(string_agg(t::text, \'|\' ORDER BY t::text)) FROM "{name}" t')
            ).one())
            for name in names
        }


def statuses(engine: Engine) -> dict[str, str]:
    with engine.connect() as conn:
        return dict(conn.execute(sa.text("SELECT id::text, processing_status FROM raw_ingestions")).all())


def metric_rows(engine: Engine) -> dict[str, list[tuple]]:
    """Every metric table's rows without id/created_at, sorted: comparable across runs."""
    from recovery_lib.schema import METRIC_TABLES

    out = {}
    with engine.connect() as conn:
        for name, table in METRIC_TABLES.items():
            cols = ", ".join(table.columns)
            out[name] = [tuple(r) for r in conn.execute(sa.text(f"SELECT {cols} FROM {name} ORDER BY {cols}"))]
    return out


def hr_payload(start: datetime, points: int, *, step_seconds: int = 60, source: str = "Apple Watch") -> dict:
    """A Health Auto Export payload with ``points`` heart-rate points (Min/Avg/Max)."""
    data = []
    for i in range(points):
        at = start + timedelta(seconds=i * step_seconds)
        data.append({"date": at.strftime("%Y-%m-%d %H:%M:%S +0000"), "Min": 55 + i % 10, "Avg": 65 + i % 20,
                     "Max": 90 + i % 30, "source": source})
    return {"data": {"metrics": [{"name": "heart_rate", "units": "count/min", "data": data}]}}
