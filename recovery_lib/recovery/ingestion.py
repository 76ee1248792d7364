"""One ingestion, one transaction: claim it, write its missing rows, count, set its status, log it.

:func:`recover_one` claims the candidate (``FOR UPDATE SKIP LOCKED``), checks its checksum,
writes the missing rows (:func:`~recovery_lib.recovery.writes.merge_payload`), sets
``recovered`` or ``recovery_failed`` and logs the worker, then commits; :func:`preview_one` does
the same reading in a READ ONLY transaction and writes nothing. The orchestration around them
(discovery, workers, user locks, retries) is :mod:`recovery_lib.recovery.engine`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Connection

from recovery_lib import reconcile
from recovery_lib.checksums import checksum_matches
from recovery_lib.db import run
from recovery_lib.recovery.report import IngestionOutcome, RecoveryReport
from recovery_lib.recovery.writes import merge_payload
from recovery_lib.store import ingestions, recovery_log
from recovery_lib.store.metric_rows import TableReport, count_present

if TYPE_CHECKING:
    from recovery_lib.discovery import Candidate
    from recovery_lib.options import RecoveryOptions


def claim(conn: Connection, candidate: Candidate, options: RecoveryOptions, lock: bool) -> Any:
    """The candidate's row if it is still to be recovered (see :func:`recovery_lib.store.ingestions.claim`)."""
    claimable = list(options.statuses) + (["processed"] if candidate.reason == "silent_loss" else [])
    # Hashing reads the whole payload: skip it when verification is off.
    return ingestions.claim(conn, candidate.ingestion_id, claimable=claimable, with_checksum=options.verify,
                            lock=lock)


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
    conn: Connection, candidate: Candidate, options: RecoveryOptions, report: RecoveryReport, worker: str,
) -> IngestionOutcome:
    with conn.begin() as tx:
        run(conn, "SET TRANSACTION READ ONLY")
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
            present = count_present(conn, candidate.user_id, name, keys) if keys else 0
            outcome.tables[name] = TableReport(expected=len(keys), present_before=present, present_after=present)
        outcome.set_accounting(expectation.accounting)
        if expectation.parse_error:
            outcome.outcome, outcome.failure_category = "would_fail", expectation.parse_error
        elif expectation.rejected_points:
            outcome.outcome, outcome.failure_category = "would_fail", "rejected_points"
        elif expectation.accounting.unsupported:
            outcome.outcome, outcome.failure_category = "would_fail", "unsupported_points"
        tx.rollback()
    return outcome


def recover_one(
    conn: Connection, candidate: Candidate, options: RecoveryOptions, report: RecoveryReport, worker: str,
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
            failure = merge_payload(
                conn, candidate, outcome, options.batch_config, options.insert_method, report.started_at,
                report.run_id,
            )
            if failure:
                _fail(outcome, *failure)
        _finish(conn, outcome, report.run_id, claim_row)
    return outcome


def _fail(outcome: IngestionOutcome, category: str, message: str) -> None:
    outcome.outcome, outcome.failure_category, outcome.failure_message = "recovery_failed", category, message


def _finish(conn: Connection, outcome: IngestionOutcome, run_id: str, claim_row: Any) -> None:
    note = None
    if outcome.outcome == "recovery_failed":
        note = {
            "source": "recovery", "run_id": run_id, "at": datetime.now(UTC).isoformat(),
            "category": outcome.failure_category, "message": outcome.failure_message,
            "rejections": outcome.rejection_counts or None,
        }
    ingestions.set_outcome(conn, outcome.ingestion_id, outcome.outcome, note)
    recovery_log.log_outcome(conn, run_id=run_id, worker=outcome.worker, ingestion_id=outcome.ingestion_id,
                             outcome=outcome.outcome, rows=outcome.rows_inserted,
                             status_before=claim_row.processing_status, processed_at_before=claim_row.processed_at)
