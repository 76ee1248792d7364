"""SQL of ``recovery_log``: one line per ingestion a recovery run finished, and who finished it.

Concurrent runs prove with it that each ingestion was handled by exactly one of them; the weekly
review reads it back (recoveries per ISO week of ``finished_at``, per run, failure reasons, the
time from ingestion to recovery).

    >>> log_outcome(conn, run_id="9f2c...", worker="host:123:9f2c:w0", ingestion_id=..., outcome="recovered", rows=12)
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection, Row

from recovery_lib.db import run
from recovery_lib.store.ingestions import notes_sql


def log_outcome(conn: Connection, *, run_id: str, worker: str | None, ingestion_id: str, outcome: str,
                rows: int, status_before: str | None = None, processed_at_before: datetime | None = None) -> None:
    """Record, in the ingestion's own transaction, that ``worker`` of ``run_id`` finished it.

    ``status_before`` and ``processed_at_before`` are what the run found: ``recover undo`` sets them back.
    """
    run(
        conn,
        "INSERT INTO recovery_log (run_id, worker, ingestion_id, outcome, rows_inserted, status_before, "
        "processed_at_before) VALUES (%(run)s, %(worker)s, %(id)s, %(outcome)s, %(rows)s, %(before)s, %(at)s)",
        {"run": run_id, "worker": worker, "id": ingestion_id, "outcome": outcome, "rows": rows,
         "before": status_before, "at": processed_at_before},
    )


# --- the weekly review --------------------------------------------------------------------------

_WEEKLY_SQL = """
SELECT date_trunc('week', finished_at, 'UTC') AS week,
       count(*) FILTER (WHERE outcome = 'recovered') AS recovered,
       count(*) FILTER (WHERE outcome = 'recovery_failed') AS recovery_failed,
       coalesce(sum(rows_inserted), 0) AS rows_inserted,
       count(DISTINCT run_id) AS runs
FROM recovery_log WHERE finished_at >= %(since)s GROUP BY 1 ORDER BY 1
"""

_RUNS_SQL = """
SELECT run_id, min(finished_at) AS first_finished, max(finished_at) AS last_finished,
       count(*) FILTER (WHERE outcome = 'recovered') AS recovered,
       count(*) FILTER (WHERE outcome = 'recovery_failed') AS recovery_failed,
       coalesce(sum(rows_inserted), 0) AS rows_inserted,
       count(DISTINCT worker) AS workers
FROM recovery_log WHERE finished_at >= %(since)s GROUP BY run_id ORDER BY 2, 1
"""

# The first successful recovery of each ingestion, against when the API received it.
_DELAYS_SQL = """
WITH first AS (
    SELECT ingestion_id, min(finished_at) AS recovered_at FROM recovery_log
    WHERE outcome = 'recovered' GROUP BY ingestion_id
), delays AS (
    SELECT f.recovered_at, EXTRACT(EPOCH FROM f.recovered_at - i.created_at)::float8 AS seconds
    FROM first f JOIN raw_ingestions i ON i.id = f.ingestion_id
    WHERE f.recovered_at >= %(since)s
)
SELECT date_trunc('week', recovered_at, 'UTC') AS week, count(*) AS recovered,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY seconds) AS p50_seconds,
       percentile_cont(0.9) WITHIN GROUP (ORDER BY seconds) AS p90_seconds,
       max(seconds) AS longest_seconds
FROM delays GROUP BY GROUPING SETS ((1), ()) ORDER BY 1 NULLS LAST
"""

# Each failed recovery with the category of the note that run added to processing_errors (a list
# of them, or the API's object with its recovery_notes).
_FAILURE_REASONS_SQL = f"""
SELECT coalesce(n.note ->> 'category', 'unrecorded') AS category,
       count(*) AS failures,
       count(DISTINCT l.ingestion_id) AS ingestions,
       count(DISTINCT l.ingestion_id) FILTER (WHERE i.processing_status = 'recovery_failed') AS still_failing
FROM recovery_log l
JOIN raw_ingestions i ON i.id = l.ingestion_id
LEFT JOIN LATERAL (
    SELECT e AS note
    FROM jsonb_array_elements({notes_sql("i.processing_errors")}) e
    WHERE e ->> 'source' = 'recovery' AND e ->> 'run_id' = l.run_id
    LIMIT 1
) n ON true
WHERE l.outcome = 'recovery_failed' AND l.finished_at >= %(since)s
GROUP BY 1 ORDER BY 2 DESC, 1
"""

_RESTORED_SQL = """
SELECT DISTINCT l.ingestion_id::text AS ingestion_id, i.created_at
FROM recovery_log l JOIN raw_ingestions i ON i.id = l.ingestion_id
WHERE i.created_at >= %(since)s AND l.rows_inserted > 0
"""


def weekly(conn: Connection, since: datetime) -> list[Row[Any]]:
    """Per ISO week (UTC) of ``finished_at``: recovered, recovery_failed, rows inserted, runs."""
    return run(conn, _WEEKLY_SQL, {"since": since}).all()


def runs(conn: Connection, since: datetime) -> list[Row[Any]]:
    """Per run that finished an ingestion since ``since``: first/last finish, outcomes, rows, workers."""
    return run(conn, _RUNS_SQL, {"since": since}).all()


def recovery_delays(conn: Connection, since: datetime) -> list[Row[Any]]:
    """Seconds from ``created_at`` to the first recovery, per week of the recovery; the last row (week NULL) is all."""
    return run(conn, _DELAYS_SQL, {"since": since}).all()


def failure_reasons(conn: Connection, since: datetime) -> list[Row[Any]]:
    """Failed recoveries since ``since`` per category: failures, ingestions, ingestions still failing."""
    return run(conn, _FAILURE_REASONS_SQL, {"since": since}).all()


def restored_ingestions(conn: Connection, since: datetime) -> list[Row[Any]]:
    """``(ingestion_id, created_at)`` of ingestions created since ``since`` that a recovery wrote rows for."""
    return run(conn, _RESTORED_SQL, {"since": since}).all()


def outcome_of(conn: Connection, *, run_id: str, ingestion_id: str) -> str | None:
    """The outcome ``run_id`` logged for ``ingestion_id``; None when it has not (or its transaction did not commit)."""
    return run(
        conn,
        "SELECT outcome FROM recovery_log WHERE run_id = %(run)s AND ingestion_id = %(id)s ORDER BY id DESC LIMIT 1",
        {"run": run_id, "id": ingestion_id},
    ).scalar()
