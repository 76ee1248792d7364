"""Builders for the monitor's tests: ingestions with chosen status, age, delay, size, errors and loss."""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

NOW = datetime(2024, 2, 6, 12, 0, tzinfo=UTC)
POINTS_BASE = datetime(2024, 1, 1, tzinfo=UTC)


@dataclass
class Ing:
    """One raw ingestion to store. ``lost`` of its ``points`` heart-rate rows are left out."""

    user: int = 0  # index into the users created by :func:`seed`
    status: str | None = "processed"
    age_hours: float = 1.0  # created_at = NOW - age_hours
    delay_seconds: float | None = None  # processed_at = created_at + delay (None: processed_at NULL)
    size: int | None = None  # payload_size_bytes (default: the JSON's length)
    errors: Any = None  # processing_errors (jsonb)
    points: int = 1
    lost: int = 0


def seed(
    engine: Engine, ingestions: list[Ing], *, users: int = 1, now: datetime = NOW
) -> tuple[list[str], list[str]]:
    """Store users and ingestions (and the rows that were not lost); return (user ids, ingestion ids).

    Every payload's points sit on their own minutes, so payloads never share a natural key.
    """
    user_ids = [str(uuid.UUID(int=0xA000 + i, version=4)) for i in range(users)]
    raw, rows, ids = [], [], []
    minute = 0
    for ing in ingestions:
        data = []
        for p in range(ing.points):
            at = POINTS_BASE + timedelta(minutes=minute)
            minute += 1
            data.append({"date": at.strftime("%Y-%m-%d %H:%M:%S +0000"), "Min": 60, "Avg": 70, "Max": 80})
            if p >= ing.lost:
                rows.append({"u": user_ids[ing.user], "at": at})
        text = json.dumps({"data": {"metrics": [{"name": "heart_rate", "units": "count/min", "data": data}]}})
        created = now - timedelta(hours=ing.age_hours)
        ingestion_id = str(uuid.uuid4())
        ids.append(ingestion_id)
        raw.append(
            {
                "id": ingestion_id,
                "u": user_ids[ing.user],
                "hash": hashlib.sha256(text.encode()).hexdigest(),
                "size": ing.size if ing.size is not None else len(text),
                "payload": text,
                "status": ing.status,
                "errors": None if ing.errors is None else json.dumps(ing.errors),
                "created": created,
                "processed": None
                if ing.delay_seconds is None
                else created + timedelta(seconds=ing.delay_seconds),
            }
        )
    with engine.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO users (id, email) VALUES (:id, :e)"),
            [{"id": u, "e": f"{u}@example.test"} for u in user_ids],
        )
        if raw:
            conn.execute(
                sa.text(
                    "INSERT INTO raw_ingestions (id, user_id, payload_hash, payload_size_bytes, raw_payload, "
                    "processing_status, processing_errors, processed_at, created_at) VALUES (:id, :u, :hash, "
                    ":size, CAST(:payload AS jsonb), :status, CAST(:errors AS jsonb), :processed, :created)"
                ),
                raw,
            )
        if rows:
            conn.execute(
                sa.text(
                    "INSERT INTO heart_rate_metrics (user_id, recorded_at, heart_rate_min, heart_rate, "
                    "heart_rate_max) VALUES (:u, :at, 60, 70, 80)"
                ),
                rows,
            )
    return user_ids, ids
