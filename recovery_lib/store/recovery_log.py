"""SQL of ``recovery_log``: one line per ingestion a recovery run finished, and who finished it.

Concurrent runs prove with it that each ingestion was handled by exactly one of them.

    >>> log_outcome(conn, run_id="9f2c...", worker="host:123:9f2c:w0", ingestion_id=..., outcome="recovered", rows=12)
"""

from __future__ import annotations

from sqlalchemy.engine import Connection

from recovery_lib.db import run


def log_outcome(conn: Connection, *, run_id: str, worker: str | None, ingestion_id: str, outcome: str,
                rows: int) -> None:
    """Record, in the ingestion's own transaction, that ``worker`` of ``run_id`` finished it."""
    run(
        conn,
        "INSERT INTO recovery_log (run_id, worker, ingestion_id, outcome, rows_inserted) "
        "VALUES (%(run)s, %(worker)s, %(id)s, %(outcome)s, %(rows)s)",
        {"run": run_id, "worker": worker, "id": ingestion_id, "outcome": outcome, "rows": rows},
    )


def outcome_of(conn: Connection, *, run_id: str, ingestion_id: str) -> str | None:
    """The outcome ``run_id`` logged for ``ingestion_id``; None when it has not (or its transaction did not commit)."""
    return run(
        conn,
        "SELECT outcome FROM recovery_log WHERE run_id = %(run)s AND ingestion_id = %(id)s ORDER BY id DESC LIMIT 1",
        {"run": run_id, "id": ingestion_id},
    ).scalar()
