"""One ingestion, one transaction: claim it, write its missing rows, count, set its status.

``recovery.py`` is the orchestration around this (discovery, workers, user locks, retries);
this module is what happens to one candidate: :func:`recover_one` (claim, checksum,
:func:`merge_payload`, status and log) and :func:`preview_one` (the same, READ ONLY).
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from recovery_lib import batching, fetch, payload, payload_sql, reconcile, sql_insert
from recovery_lib.batching import BatchConfig
from recovery_lib.checksums import PAYLOAD_SHA256_SQL, checksum_matches
from recovery_lib.report import IngestionOutcome, RecoveryReport, TableReport
from recovery_lib.schema import METRIC_TABLES

if TYPE_CHECKING:
    from recovery_lib.discovery import Candidate
    from recovery_lib.recovery import RecoveryOptions


def merge_payload(
    conn: Connection,
    candidate: Candidate,
    outcome: IngestionOutcome,
    config: BatchConfig,
    method: str,
    now: datetime,
) -> tuple[str, str] | None:
    """Insert the payload's missing rows; fill ``outcome.tables``; return (category, message) on failure.

    ``method``: ``sql`` (simple metrics written by PostgreSQL, see :mod:`sql_insert`; the rest
    like ``copy``), ``copy`` (the parser's rows through COPY staging) or ``insert`` (multi-row
    INSERT chunks).
    """
    parser = payload.PayloadParser(now=now)
    try:
        if method == "insert":
            _insert_path(conn, candidate.user_id, parser, fetch.stream_items(conn, candidate.ingestion_id),
                         outcome, config)
        else:
            shaped = fetch.structure_ok(conn, candidate.ingestion_id)
            written = _sql_path(conn, candidate, parser.latest) if method == "sql" and shaped else None
            items = fetch.stream_items(conn, candidate.ingestion_id, skip_points=written[1] if written else [],
                                       known_structure_ok=shaped)
            _copy_path(conn, candidate.user_id, parser, items, outcome, config)
            if written:
                outcome.tables.update(written[0])
                outcome.sql_tables = sorted(written[0])
    except payload.PayloadError as exc:
        outcome.tables = {}
        return exc.category, exc.message
    outcome.rejection_counts = dict(parser.rejection_counts)
    outcome.rejected_points = sum(parser.rejection_counts.values())
    missing = sum(t.missing_after for t in outcome.tables.values())
    if missing:
        return "reconciliation", f"{missing} expected rows still missing after the insert"
    if outcome.rejected_points:
        summary = ", ".join(f"{n} {category}" for category, n in sorted(outcome.rejection_counts.items()))
        return "rejected_points", f"{outcome.rejected_points} points could not be stored ({summary})"
    return None


def _sql_path(
    conn: Connection, candidate: Candidate, latest: datetime
) -> tuple[dict[str, TableReport], list[int]] | None:
    """The tables SQL wrote and the metric positions it covered; None leaves everything to the parser.

    Call only on a payload whose structure ``fetch.structure_ok`` accepted.
    """
    cursor = conn.connection.dbapi_connection.cursor()
    try:
        plan = payload_sql.plan_payload(cursor, candidate.ingestion_id, latest)
        reports = sql_insert.insert_planned(cursor, plan, candidate.user_id) if plan else None
    finally:
        cursor.close()
    return (reports, plan.positions) if plan and reports is not None else None


def _copy_path(
    conn: Connection, user_id: str, parser: payload.PayloadParser, items: Any,
    outcome: IngestionOutcome, config: BatchConfig,
) -> None:
    cursor = conn.connection.dbapi_connection.cursor()
    buffers: dict[str, list[tuple[int, datetime, dict[str, Any]]]] = {name: [] for name in METRIC_TABLES}
    limits = {name: config.chunk_size(name) for name in METRIC_TABLES}  # looked up once, not per row
    staged: Counter[str] = Counter()

    def stage(name: str) -> None:
        if not buffers[name]:
            return
        if name not in staged:  # only the tables that get rows (with the SQL path: sleep, workouts)
            cursor.execute(batching.staging_ddl(METRIC_TABLES[name]))
        staged[name] += batching.copy_rows(cursor, METRIC_TABLES[name], buffers[name])
        buffers[name].clear()

    for seq, row in enumerate(parser.rows(items)):
        buffer = buffers[row.table]
        buffer.append((seq, row.key, row.values))
        if len(buffer) >= limits[row.table]:
            stage(row.table)
    for name in METRIC_TABLES:
        stage(name)
    for name, table in METRIC_TABLES.items():
        if not staged[name]:
            outcome.tables[name] = TableReport()
            continue
        cursor.execute(batching.staged_counts_sql(table), {"user_id": user_id})
        expected, before = cursor.fetchone()
        cursor.execute(batching.merge_sql(table), {"user_id": user_id})
        inserted, filled = cursor.fetchone()
        cursor.execute(batching.staged_counts_sql(table), {"user_id": user_id})
        _, after = cursor.fetchone()
        outcome.tables[name] = TableReport(expected, before, inserted, filled, after)
    cursor.close()


def _insert_path(
    conn: Connection, user_id: str, parser: payload.PayloadParser, items: Any,
    outcome: IngestionOutcome, config: BatchConfig,
) -> None:
    merged = payload.merge_rows(parser.rows(items))
    cursor = conn.connection.dbapi_connection.cursor()
    for name, table in METRIC_TABLES.items():
        rows = merged.get(name, {})
        keys = sorted(rows)
        before = reconcile.count_present(conn, user_id, name, keys) if keys else 0
        inserted, filled = batching.insert_rows(cursor, table, user_id, rows, config.chunk_size(name))
        after = reconcile.count_present(conn, user_id, name, keys) if keys else 0
        outcome.tables[name] = TableReport(len(keys), before, inserted, filled, after)
    cursor.close()


# --- one ingestion, one transaction -------------------------------------------------------------


def claim(conn: Connection, candidate: Candidate, options: RecoveryOptions, lock: bool) -> Any:
    claimable = list(options.statuses) + (["processed"] if candidate.reason == "silent_loss" else [])
    return conn.execute(
        sa.text(
            # Hashing reads the whole payload: skip it when verification is off.
            f"SELECT user_id::text AS user_id, processing_status, payload_hash, "
            f"{PAYLOAD_SHA256_SQL if options.verify else 'NULL'} AS sha "
            "FROM raw_ingestions WHERE id = :id AND processing_status = ANY(:claimable)"
            + (" FOR UPDATE SKIP LOCKED" if lock else "")
        ),
        {"id": candidate.ingestion_id, "claimable": claimable},
    ).first()


def new_outcome(candidate: Candidate, worker: str, outcome: str) -> IngestionOutcome:
    return IngestionOutcome(
        ingestion_id=candidate.ingestion_id, user_id=candidate.user_id, status_before=candidate.status,
        reason=candidate.reason, outcome=outcome, worker=worker, error_category=candidate.error_category,
    )


def _checksum_state(options: RecoveryOptions, stored: str | None, computed: str) -> str:
    if not options.verify:
        return "skipped"
    match = checksum_matches(stored, computed)
    return "missing" if match is None else ("verified" if match else "mismatched")


def preview_one(
    conn: Connection, candidate: Candidate, options: RecoveryOptions, config: BatchConfig,
    report: RecoveryReport, worker: str,
) -> IngestionOutcome:
    with conn.begin() as tx:
        conn.execute(sa.text("SET TRANSACTION READ ONLY"))
        outcome = new_outcome(candidate, worker, "would_recover")
        claim_row = claim(conn, candidate, options, lock=False)
        if claim_row is None:
            outcome.outcome, outcome.failure_message = "skipped", "status changed since discovery"
            return outcome
        outcome.checksum = _checksum_state(options, claim_row.payload_hash, claim_row.sha)
        if outcome.checksum == "mismatched":
            outcome.outcome, outcome.failure_category = "would_fail", "checksum_mismatch"
            return outcome
        expectation = reconcile.expected_keys(
            conn, candidate.ingestion_id, now=report.started_at, use_sql=options.insert_method == "sql",
            payload_size=candidate.payload_size_bytes,
        )
        outcome.rejected_points, outcome.rejection_counts = expectation.rejected_points, expectation.rejection_counts
        for name, keys in expectation.keys.items():
            present = reconcile.count_present(conn, candidate.user_id, name, keys) if keys else 0
            outcome.tables[name] = TableReport(expected=len(keys), present_before=present, present_after=present)
        if expectation.parse_error:
            outcome.outcome, outcome.failure_category = "would_fail", expectation.parse_error
        elif expectation.rejected_points:
            outcome.outcome, outcome.failure_category = "would_fail", "rejected_points"
        tx.rollback()
    return outcome


def recover_one(
    conn: Connection, candidate: Candidate, options: RecoveryOptions, config: BatchConfig,
    report: RecoveryReport, worker: str,
) -> IngestionOutcome:
    with conn.begin():
        outcome = new_outcome(candidate, worker, "recovered")
        claim_row = claim(conn, candidate, options, lock=True)
        if claim_row is None:
            outcome.outcome = "skipped"
            outcome.failure_message = "claimed by another run, or its status changed since discovery"
            return outcome
        outcome.checksum = _checksum_state(options, claim_row.payload_hash, claim_row.sha)
        if outcome.checksum == "mismatched":
            _fail(outcome, "checksum_mismatch",
                  "payload_hash does not match the SHA-256 of the stored payload; rerun with verify off to "
                  "recover it anyway")
        else:
            failure = merge_payload(conn, candidate, outcome, config, options.insert_method, report.started_at)
            if failure:
                _fail(outcome, *failure)
        _finish(conn, outcome, report.run_id)
    return outcome


def _fail(outcome: IngestionOutcome, category: str, message: str) -> None:
    outcome.outcome, outcome.failure_category, outcome.failure_message = "recovery_failed", category, message


def _finish(conn: Connection, outcome: IngestionOutcome, run_id: str) -> None:
    note = None
    if outcome.outcome == "recovery_failed":
        note = {
            "source": "recovery", "run_id": run_id, "at": datetime.now(UTC).isoformat(),
            "category": outcome.failure_category, "message": outcome.failure_message,
            "rejections": outcome.rejection_counts or None,
        }
    # Append to processing_errors, never overwrite: the original error explains the loss.
    conn.execute(
        sa.text(
            "UPDATE raw_ingestions SET processing_status = :status, processed_at = now(), "
            "processing_errors = CASE WHEN CAST(:note AS jsonb) IS NULL THEN processing_errors "
            "WHEN processing_errors IS NULL THEN jsonb_build_array(CAST(:note AS jsonb)) "
            "WHEN jsonb_typeof(processing_errors) = 'array' "
            "THEN processing_errors || jsonb_build_array(CAST(:note AS jsonb)) "
            "ELSE jsonb_build_array(processing_errors, CAST(:note AS jsonb)) END WHERE id = :id"
        ),
        {"status": outcome.outcome, "note": None if note is None else _json(note), "id": outcome.ingestion_id},
    )
    conn.execute(
        sa.text(
            "INSERT INTO recovery_log (run_id, worker, ingestion_id, outcome, rows_inserted) "
            "VALUES (:run, :worker, :id, :outcome, :rows)"
        ),
        {"run": run_id, "worker": outcome.worker, "id": outcome.ingestion_id, "outcome": outcome.outcome,
         "rows": outcome.rows_inserted},
    )


def _json(value: Any) -> str:
    import json

    return json.dumps(value, default=str)
