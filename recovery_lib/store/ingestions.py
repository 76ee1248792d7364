"""SQL of ``raw_ingestions``: every read of its rows and every status update, in one place.

The payload itself is read by :mod:`recovery_lib.payload.stored` and
:mod:`recovery_lib.payload.sql_plan` (they expand the jsonb); everything else about an ingestion
(which ones, in what state, who claims it, what it became) is here. Statuses and filters are
bound as parameters, never formatted in.

    >>> rows = candidates(conn, statuses=["error"], user_id=None)
    >>> row = claim(conn, ingestion_id, claimable=["error"], with_checksum=True, lock=True)

The weekly review's aggregates (per ISO week of ``created_at``, UTC) are at the end.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection, Row

from recovery_lib.checksums import PAYLOAD_SHA256_SQL
from recovery_lib.db import run
from recovery_lib.error_patterns import NOTES_KEY
from recovery_lib.schema import FAILED, NON_PENDING, SUCCESS, WORKER_DONE

_STATUS = "coalesce(processing_status, 'pending')"
_IDENTITY = (
    "id::text AS id, user_id::text AS user_id, processing_status AS status, created_at, "
    "payload_size_bytes, payload_hash"
)


def _where(clauses: dict[str, str], values: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """``WHERE`` of the fixed ``clauses`` whose value is not None; values bound by name."""
    used = {name: value for name, value in values.items() if value is not None}
    text = " AND ".join(clauses[name] for name in used)
    return (f" WHERE {text}" if text else ""), used


# --- discovery and reconciliation ---------------------------------------------------------------


def candidates(conn: Connection, *, statuses: Sequence[str], user_id: str | None) -> list[Row[Any]]:
    """Ingestions in one of ``statuses`` (optionally one user's), oldest first, with their errors."""
    where, params = _where(
        {"statuses": "processing_status = ANY(%(statuses)s)", "user_id": "user_id = %(user_id)s"},
        {"statuses": list(statuses), "user_id": user_id},
    )
    return run(
        conn,
        f"SELECT {_IDENTITY}, processing_errors FROM raw_ingestions{where} ORDER BY created_at, id",
        params,
    ).all()


def _identity(with_sha: bool) -> str:
    # The server's SHA-256 of the stored value keys the reconciliation cache; hashing reads the
    # whole payload, so only callers that use the cache ask for it.
    # The row version with it: a reader in another snapshot checks that it reads the payload hashed.
    return f"{_IDENTITY}, {PAYLOAD_SHA256_SQL if with_sha else 'NULL::text'} AS sha, " + (
        "xmin::text AS version" if with_sha else "NULL::text AS version")


def by_ids(conn: Connection, ids: Sequence[str], *, with_sha: bool = False) -> list[Row[Any]]:
    """The identity columns of the given ingestions, oldest first (``sha``: see :func:`in_window`)."""
    return run(
        conn,
        f"SELECT {_identity(with_sha)} FROM raw_ingestions WHERE id = ANY(%(ids)s::uuid[]) ORDER BY created_at, id",
        {"ids": list(ids)},
    ).all()


def in_window(
    conn: Connection, *, since: datetime | None, user_id: str | None, statuses: Sequence[str] | None,
    with_sha: bool = False,
) -> list[Row[Any]]:
    """The identity columns of ingestions created since ``since`` (all time if None), filtered, oldest first.

    ``sha``: the server's SHA-256 of the stored payload when ``with_sha``, else NULL.
    """
    where, params = _where(
        {
            "since": "created_at >= %(since)s",
            "user_id": "user_id = %(user_id)s",
            "statuses": "processing_status = ANY(%(statuses)s)",
        },
        {"since": since, "user_id": user_id, "statuses": None if statuses is None else list(statuses)},
    )
    return run(conn, f"SELECT {_identity(with_sha)} FROM raw_ingestions{where} ORDER BY created_at, id",
               params).all()


# --- one ingestion's recovery -------------------------------------------------------------------


def claim(
    conn: Connection, ingestion_id: str, *, claimable: Sequence[str], with_checksum: bool, lock: bool
) -> Row[Any] | None:
    """The ingestion if it is still in a claimable status; locked (``SKIP LOCKED``) when ``lock``.

    None when another transaction holds it or its status changed. ``sha`` is the server's
    SHA-256 of the stored payload when ``with_checksum`` (hashing reads the whole payload).
    """
    return run(
        conn,
        f"SELECT user_id::text AS user_id, processing_status, processed_at, payload_hash, "
        f"{PAYLOAD_SHA256_SQL if with_checksum else 'NULL'} AS sha "
        "FROM raw_ingestions WHERE id = %(id)s AND processing_status = ANY(%(claimable)s)"
        + (" FOR UPDATE SKIP LOCKED" if lock else ""),
        {"id": ingestion_id, "claimable": list(claimable)},
    ).first()


# ``processing_errors`` with %(note)s appended: the original error explains the loss, so it stays.
# A note appended to processing_errors in each of its forms: none, a list, the API's object (its
# keys kept, the notes beside them under NOTES_KEY), anything else wrapped.
_APPEND_NOTE = (
    "CASE WHEN %(note)s::jsonb IS NULL THEN processing_errors "
    "WHEN processing_errors IS NULL OR jsonb_typeof(processing_errors) = 'null' "
    "THEN jsonb_build_array(%(note)s::jsonb) "
    "WHEN jsonb_typeof(processing_errors) = 'array' "
    "THEN processing_errors || jsonb_build_array(%(note)s::jsonb) "
    "WHEN jsonb_typeof(processing_errors) = 'object' AND coalesce(jsonb_typeof("
    f"processing_errors->'{NOTES_KEY}'), 'array') = 'array' "
    f"THEN processing_errors || jsonb_build_object('{NOTES_KEY}', "
    f"coalesce(processing_errors->'{NOTES_KEY}', '[]'::jsonb) || jsonb_build_array(%(note)s::jsonb)) "
    "ELSE jsonb_build_array(processing_errors, %(note)s::jsonb) END"
)


def set_outcome(conn: Connection, ingestion_id: str, status: str, note: dict[str, Any] | None) -> None:
    """Set the status and ``processed_at``; add ``note`` to ``processing_errors``, never overwriting.

    The original error explains the loss, so it stays: a list gets the note appended; an object
    (what the Health Export API writes: ``errors``, ``processing_metadata``, ...) keeps every key
    and gets the note appended to a ``recovery_notes`` list beside them; any other value becomes
    the first element of a list.
    """
    run(
        conn,
        f"UPDATE raw_ingestions SET processing_status = %(status)s, processed_at = now(), "
        f"processing_errors = {_APPEND_NOTE} WHERE id = %(id)s",
        {"status": status, "note": None if note is None else json.dumps(note, default=str), "id": ingestion_id},
    )


# --- undoing a recovery run ---------------------------------------------------------------------


def status_of(conn: Connection, ingestion_id: str, *, lock: bool) -> Row[Any] | None:
    """``(user_id, processing_status, processed_at)`` of the ingestion; locked ``FOR UPDATE`` when ``lock``."""
    return run(
        conn,
        "SELECT user_id::text AS user_id, processing_status, processed_at FROM raw_ingestions "
        "WHERE id = %(id)s" + (" FOR UPDATE" if lock else ""),
        {"id": ingestion_id},
    ).first()


def restore_status(
    conn: Connection, ingestion_id: str, status: str | None, processed_at: datetime | None, note: dict[str, Any]
) -> None:
    """Set status and ``processed_at`` back to what a recovery found; append ``note`` (the undo)."""
    run(
        conn,
        f"UPDATE raw_ingestions SET processing_status = %(status)s, processed_at = %(at)s, "
        f"processing_errors = {_APPEND_NOTE} WHERE id = %(id)s",
        {"status": status, "at": processed_at, "note": json.dumps(note, default=str), "id": ingestion_id},
    )


def notes_sql(column: str) -> str:
    """SQL for the recovery notes of a ``processing_errors`` value as a jsonb array (of every element, for
    a list: the caller filters ``source = 'recovery'``); ``column`` comes from the caller's own SQL."""
    return (f"CASE WHEN jsonb_typeof({column}) = 'array' THEN {column} "
            f"WHEN jsonb_typeof({column}->'{NOTES_KEY}') = 'array' THEN {column}->'{NOTES_KEY}' "
            "ELSE '[]'::jsonb END")


# --- verification -------------------------------------------------------------------------------


def _since_user(since: datetime, user_id: str | None) -> tuple[str, dict[str, Any]]:
    return _where(
        {"since": "created_at >= %(since)s", "user_id": "user_id = %(user_id)s"},
        {"since": since, "user_id": user_id},
    )


def status_counts(conn: Connection, *, since: datetime, user_id: str | None) -> dict[str, int]:
    """Ingestions per status created since ``since``."""
    where, params = _since_user(since, user_id)
    sql = f"SELECT processing_status, count(*) FROM raw_ingestions{where} GROUP BY 1 ORDER BY 1"
    return {status: n for status, n in run(conn, sql, params)}


def recovery_failures(conn: Connection, *, since: datetime, user_id: str | None) -> list[Row[Any]]:
    """``(id, user_id, processing_errors)`` of the ``recovery_failed`` ingestions since ``since``."""
    where, params = _since_user(since, user_id)
    return run(
        conn,
        "SELECT id::text, user_id::text, processing_errors FROM raw_ingestions"
        f"{where} AND processing_status = 'recovery_failed' ORDER BY created_at, id",
        params,
    ).all()


# A placeholder (the API's form for the largest uploads) is a few hundred bytes: the size test reads
# no payload (pg_column_size does not decompress), so only small values have their keys looked at.
_PLACEHOLDERS_SQL = f"""
SELECT id::text AS id, user_id::text AS user_id, {_STATUS} AS status, payload_size_bytes, created_at
FROM raw_ingestions
WHERE created_at >= %(since)s AND pg_column_size(raw_payload) < 4096
  AND raw_payload ? 'large_payload' AND NOT raw_payload ? 'data'{{user}}
ORDER BY created_at, id
"""


def placeholders(conn: Connection, *, since: datetime, user_id: str | None = None) -> list[Row[Any]]:
    """Ingestions created since ``since`` whose stored value is only a placeholder (any status)."""
    sql = _PLACEHOLDERS_SQL.replace("{user}", " AND user_id = %(user_id)s" if user_id else "")
    return run(conn, sql, {"since": since, "user_id": user_id}).all()


# --- the monitor's aggregates -------------------------------------------------------------------

_GROUPS = {"non_pending": list(NON_PENDING), "failed": list(FAILED), "success": list(SUCCESS),
           "worker_done": list(WORKER_DONE)}

_STATS_SQL = f"""
SELECT count(*) AS total,
       count(*) FILTER (WHERE {_STATUS} = 'processed') AS processed,
       count(*) FILTER (WHERE {_STATUS} = 'error') AS error,
       count(*) FILTER (WHERE {_STATUS} = 'partial_success') AS partial_success,
       count(*) FILTER (WHERE {_STATUS} = 'pending') AS pending,
       count(*) FILTER (WHERE {_STATUS} = 'recovered') AS recovered,
       count(*) FILTER (WHERE {_STATUS} = 'recovery_failed') AS recovery_failed,
       count(*) FILTER (WHERE {_STATUS} = ANY(%(non_pending)s)) AS non_pending,
       avg(EXTRACT(EPOCH FROM processed_at - created_at))
           FILTER (WHERE processed_at IS NOT NULL AND {_STATUS} = ANY(%(worker_done)s)) AS avg_delay,
       max(payload_size_bytes) AS largest,
       min(payload_size_bytes) AS smallest
FROM raw_ingestions WHERE created_at >= %(since)s
"""

_ALL_TIME_SQL = """
SELECT count(*) FILTER (WHERE processing_status = 'recovered') AS recovered,
       count(*) FILTER (WHERE processing_status = 'recovery_failed') AS recovery_failed,
       max(processed_at) FILTER (WHERE processing_status = 'recovered') AS last_recovery
FROM raw_ingestions WHERE processing_status IN ('recovered', 'recovery_failed')
"""

_USERS_SQL = f"""
SELECT user_id::text AS user_id,
       count(*) AS payloads,
       count(*) FILTER (WHERE {_STATUS} = 'pending') AS pending,
       count(*) FILTER (WHERE {_STATUS} = ANY(%(non_pending)s)) AS non_pending,
       count(*) FILTER (WHERE {_STATUS} = ANY(%(failed)s)) AS failed,
       count(*) FILTER (WHERE {_STATUS} = ANY(%(success)s)) AS successes,
       max(payload_size_bytes) FILTER (WHERE {_STATUS} = ANY(%(failed)s)) AS largest_failed
FROM raw_ingestions WHERE created_at >= %(since)s GROUP BY user_id
"""

_LAST_SUCCESS_SQL = f"""
SELECT user_id::text, max(coalesce(processed_at, created_at))
FROM raw_ingestions
WHERE user_id = ANY(%(users)s::uuid[]) AND {_STATUS} = ANY(%(success)s) AND NOT (id = ANY(%(lost)s::uuid[]))
GROUP BY user_id
"""

_ERRORS_SQL = """
SELECT processing_errors, count(*) FROM raw_ingestions
WHERE created_at >= %(since)s AND processing_errors IS NOT NULL AND jsonb_typeof(processing_errors) <> 'null'
GROUP BY processing_errors
"""

_TRENDS_SQL = f"""
SELECT date_trunc(%(unit)s, created_at, 'UTC') AS bucket,
       count(*) AS ingestions,
       count(*) FILTER (WHERE {_STATUS} = ANY(%(non_pending)s)) AS non_pending,
       count(*) FILTER (WHERE {_STATUS} = ANY(%(failed)s)) AS failures
FROM raw_ingestions WHERE created_at >= %(since)s GROUP BY 1 ORDER BY 1
"""

# A deterministic pseudo-random sample when the window holds more payloads than the cap.
_SIZES_SQL = """
SELECT payload_size_bytes FROM raw_ingestions WHERE created_at >= %(since)s
ORDER BY hashtext(id::text), id LIMIT %(cap)s
"""


def window_stats(conn: Connection, since: datetime) -> Row[Any]:
    """Counts per status, the mean processing delay and the payload size range of the window."""
    return run(conn, _STATS_SQL, {"since": since, **_GROUPS}).one()


def all_time_recoveries(conn: Connection) -> Row[Any]:
    """``recovered``, ``recovery_failed`` and ``last_recovery`` over the whole table."""
    return run(conn, _ALL_TIME_SQL).one()


def user_stats(conn: Connection, since: datetime) -> list[Row[Any]]:
    """Per user of the window: payloads, pending, non-pending, failed, successes, largest failed."""
    return run(conn, _USERS_SQL, {"since": since, **_GROUPS}).all()


def last_successes(conn: Connection, users: Sequence[str], lost: Sequence[str]) -> dict[str, datetime]:
    """Per user, the latest success of all time, leaving out the ingestions in ``lost``."""
    rows = run(conn, _LAST_SUCCESS_SQL, {"users": list(users), "lost": list(lost), **_GROUPS})
    return dict(rows.all())


def error_values(conn: Connection, since: datetime) -> list[Row[Any]]:
    """Distinct ``processing_errors`` values of the window with how often each occurs."""
    return run(conn, _ERRORS_SQL, {"since": since}).all()


def trend_rows(conn: Connection, since: datetime, unit: str) -> list[Row[Any]]:
    """Ingestions, non-pending and failures per ``unit`` (``hour`` or ``day``) bucket, UTC."""
    return run(conn, _TRENDS_SQL, {"since": since, "unit": unit, **_GROUPS}).all()


def payload_sizes(conn: Connection, since: datetime, cap: int) -> list[int]:
    """Payload sizes of the window; a deterministic sample of ``cap`` when there are more."""
    return [int(size) for (size,) in run(conn, _SIZES_SQL, {"since": since, "cap": cap})]


# --- the weekly review's aggregates -------------------------------------------------------------

_WEEKLY_SQL = f"""
SELECT date_trunc('week', created_at, 'UTC') AS week,
       count(*) AS ingestions,
       count(*) FILTER (WHERE {_STATUS} = 'pending') AS pending,
       count(*) FILTER (WHERE {_STATUS} = 'processed') AS processed,
       count(*) FILTER (WHERE {_STATUS} = 'partial_success') AS partial_success,
       count(*) FILTER (WHERE {_STATUS} = 'error') AS error,
       count(*) FILTER (WHERE {_STATUS} = 'recovered') AS recovered,
       count(*) FILTER (WHERE {_STATUS} = 'recovery_failed') AS recovery_failed,
       coalesce(sum(payload_size_bytes), 0) AS payload_bytes,
       max(payload_size_bytes) AS largest_payload_bytes
FROM raw_ingestions WHERE created_at >= %(since)s GROUP BY 1 ORDER BY 1
"""

_WEEKLY_ERRORS_SQL = """
SELECT date_trunc('week', created_at, 'UTC') AS week, processing_errors, count(*) AS ingestions
FROM raw_ingestions
WHERE created_at >= %(since)s AND processing_errors IS NOT NULL AND jsonb_typeof(processing_errors) <> 'null'
GROUP BY 1, 2
"""


def weekly_rows(conn: Connection, since: datetime) -> list[Row[Any]]:
    """Per ISO week (UTC) of ``created_at`` since ``since``: ingestions, each status now, payload bytes."""
    return run(conn, _WEEKLY_SQL, {"since": since}).all()


def weekly_error_values(conn: Connection, since: datetime) -> list[Row[Any]]:
    """``(week, processing_errors, ingestions)``: each distinct error value per ISO week of ``created_at``."""
    return run(conn, _WEEKLY_ERRORS_SQL, {"since": since}).all()
