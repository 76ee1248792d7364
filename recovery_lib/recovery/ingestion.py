"""One ingestion, one transaction: claim it, write its missing rows, count, set its status, log it.

:func:`recover_one` claims the candidate (``FOR UPDATE SKIP LOCKED``), reads its stored form,
judges its checksum (:func:`recovery_lib.checksums.judge`), writes the missing rows
(:func:`~recovery_lib.recovery.writes.merge_payload`), sets ``recovered`` or ``recovery_failed``
and logs the worker, then commits; :func:`preview_one` does the same reading in a READ ONLY
transaction and writes nothing. The orchestration around them (discovery, workers, user locks,
retries) is :mod:`recovery_lib.recovery.engine`.

Refused before any row is written, in this order: a stored value that changed since the preview
the run was given (``changed_since_preview``: left as found, outcome ``skipped``, like a candidate
the preview did not see, so the next preview and recovery take it), a placeholder whose body was
never stored (``body_not_stored``), a ``checksum_mismatch``, and with ``require_verified`` an
unverifiable checksum (``checksum_unverifiable``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import psycopg2
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from recovery_lib import checksums, reconcile
from recovery_lib.accounting import CONSTRAINT_VIOLATION
from recovery_lib.checksums import Verdict
from recovery_lib.db import describe_error, run
from recovery_lib.payload import forms, serde, stored
from recovery_lib.recovery.report import IngestionOutcome, RecoveryReport
from recovery_lib.recovery.writes import merge_payload
from recovery_lib.store import ingestions, recovery_log, rejections, user_key
from recovery_lib.store.metric_rows import TableReport

QUERY_CANCELED = "57014"  # SQLSTATE of a statement stopped by statement_timeout or pg_cancel_backend
CHANGED_SINCE_PREVIEW = "changed_since_preview"

if TYPE_CHECKING:
    from recovery_lib.discovery import Candidate
    from recovery_lib.options import RecoveryOptions


def claim(conn: Connection, candidate: Candidate, options: RecoveryOptions, lock: bool) -> Any:
    """The candidate's row if it is still to be recovered (see :func:`recovery_lib.store.ingestions.claim`)."""
    claimable = list(options.statuses) + (["processed"] if candidate.reason == "silent_loss" else [])
    # Hashing reads the whole payload: only when a verdict, a preview's record or a pin needs it.
    hashed = options.verify or options.dry_run or options.pins is not None
    return ingestions.claim(conn, candidate.ingestion_id, claimable=claimable, with_checksum=hashed, lock=lock)


def new_outcome(candidate: Candidate, worker: str, outcome: str) -> IngestionOutcome:
    return IngestionOutcome(
        ingestion_id=candidate.ingestion_id, user_id=candidate.user_id, status_before=candidate.status,
        reason=candidate.reason, outcome=outcome, worker=worker, error_category=candidate.error_category,
        missing_values_before=candidate.missing_values,
    )


def _verdict(conn: Connection, candidate: Candidate, options: RecoveryOptions, claim_row: Any,
             found: stored.Stored) -> Verdict:
    if not options.verify:
        return Verdict(checksums.SKIPPED, None, claim_row.sha)
    return checksums.judge(
        claim_row.payload_hash, claim_row.sha, found,
        lambda: stored.records(conn, candidate.ingestion_id, serde.LISTS, stored=found),
    )


def _refusal(candidate: Candidate, options: RecoveryOptions, verdict: Verdict, found: stored.Stored
             ) -> tuple[str, str] | None:
    """Why this ingestion must not be written at all, as ``(category, message)``; None when it may."""
    if options.pins is not None and options.pins.get(candidate.ingestion_id) != verdict.stored_sha256:
        return (CHANGED_SINCE_PREVIEW, "the stored payload's SHA-256 differs from the one the preview recorded: "
                "it changed since the preview; preview it again")
    if found.form == forms.PLACEHOLDER:
        return (forms.BODY_NOT_STORED,
                f"only a placeholder is stored: the body ({candidate.payload_size_bytes} bytes) never reached the "
                "database, so it is not recoverable from it; the client must resend it")
    if verdict.state == checksums.MISMATCH:
        return ("checksum_mismatch", f"payload_hash does not match the {verdict.rendering} rendering of the stored "
                "payload, which the tool reproduces exactly: it changed after the API hashed it; rerun with verify "
                "off to recover it anyway")
    if verdict.state == checksums.UNVERIFIABLE and options.require_verified:
        return ("checksum_unverifiable", "payload_hash matches no rendering the tool can reproduce (the original "
                "bytes are gone), and require_verified is on")
    return None


def _inspected(conn: Connection, candidate: Candidate, options: RecoveryOptions, claim_row: Any,
               outcome: IngestionOutcome) -> tuple[stored.Stored, tuple[str, str] | None]:
    """The stored form and checksum verdict, recorded in ``outcome``; and the refusal, if any."""
    found = stored.inspect(conn, candidate.ingestion_id, with_hash=options.verify)
    verdict = _verdict(conn, candidate, options, claim_row, found)
    outcome.form, outcome.checksum = found.form, verdict.state
    outcome.checksum_rendering, outcome.stored_sha256 = verdict.rendering, verdict.stored_sha256
    return found, _refusal(candidate, options, verdict, found)


def preview_one(
    conn: Connection, candidate: Candidate, options: RecoveryOptions, report: RecoveryReport, worker: str,
) -> IngestionOutcome:
    if report.constraints_checkable is None:
        with conn.begin():
            # Refusals are known without writing when the target refuses nothing the catalogue takes.
            may_refuse = rejections.target_may_refuse(conn)
            report.constraints_trial = may_refuse and rejections.trial_allowed(conn)
            report.constraints_checkable = report.constraints_trial or not may_refuse
    with conn.begin() as tx:
        if not report.constraints_trial:
            run(conn, "SET TRANSACTION READ ONLY")
        outcome = new_outcome(candidate, worker, "would_recover")
        claim_row = claim(conn, candidate, options, lock=False)
        if claim_row is None:
            outcome.outcome, outcome.failure_message = "skipped", "status changed since discovery"
            return outcome
        found, refusal = _inspected(conn, candidate, options, claim_row, outcome)
        if refusal:
            outcome.outcome, (outcome.failure_category, outcome.failure_message) = "would_fail", refusal
            return outcome
        outcome.constraints_checked = report.constraints_checkable
        if report.constraints_trial:
            _trial(conn, candidate, options, report, outcome, found)
        expectation = reconcile.expected_keys(
            conn, candidate.ingestion_id, now=report.started_at, use_sql=options.insert_method == "sql",
            payload_size=candidate.payload_size_bytes, found=found, count_for=candidate.user_id,
        )
        counted = reconcile.count_against_rows(conn, candidate.user_id, expectation)
        # The refusals just found (or, read only, the last recovery's) count as rejected, not missing.
        refused = reconcile.apply_refusals(counted, expectation.accounting, rejections.adjustments(
            conn, [candidate.ingestion_id]).get(candidate.ingestion_id, {}))
        outcome.rejection_counts = dict(expectation.rejection_counts)
        if refused:
            outcome.rejection_counts[CONSTRAINT_VIOLATION] = refused
        outcome.rejected_points = expectation.rejected_points + refused
        for name, counts in counted.items():
            outcome.tables[name] = TableReport(expected=counts.expected, present_before=counts.present,
                                               present_after=counts.present)
        outcome.missing_values_before = sum(counts.missing_values for counts in counted.values())
        outcome.set_accounting(expectation.accounting)
        if expectation.parse_error:
            outcome.outcome, outcome.failure_category = "would_fail", expectation.parse_error
        elif outcome.rejected_points:
            outcome.outcome, outcome.failure_category = "would_fail", "rejected_points"
        elif expectation.accounting.unsupported:
            outcome.outcome, outcome.failure_category = "would_fail", "unsupported_points"
        tx.rollback()
    return outcome


def _trial(
    conn: Connection, candidate: Candidate, options: RecoveryOptions, report: RecoveryReport,
    outcome: IngestionOutcome, found: stored.Stored,
) -> None:
    """Write the rows under a savepoint that is rolled back, to learn which ones the target refuses.

    The refusals go into ``constraint_rejections`` within the preview's transaction, which is
    rolled back too: the preview writes nothing.
    """
    scratch = new_outcome(candidate, outcome.worker or "", "would_recover")
    run(conn, "SAVEPOINT preview_trial")
    merge_payload(conn, candidate, scratch, options.batch_config, options.insert_method, report.started_at,
                  report.run_id, found)
    run(conn, "ROLLBACK TO SAVEPOINT preview_trial")
    outcome.refusals = scratch.refusals
    outcome.constraint_search_statements = scratch.constraint_search_statements
    rejections.replace(conn, candidate.ingestion_id, report.run_id, scratch.refusals)


def logged_outcome(conn: Connection, run_id: str, ingestion_id: str) -> str | None:
    """The outcome ``run_id`` logged for the ingestion, if its transaction committed; read after a reconnect."""
    with conn.begin():
        return recovery_log.outcome_of(conn, run_id=run_id, ingestion_id=ingestion_id)


def recover_one(
    conn: Connection, candidate: Candidate, options: RecoveryOptions, report: RecoveryReport, worker: str,
) -> IngestionOutcome:
    outcome = new_outcome(candidate, worker, "recovered")
    try:
        _recover(conn, candidate, options, report, outcome)
    except (DBAPIError, psycopg2.Error) as exc:  # the write paths' raw cursors raise psycopg2's own errors
        if outcome.committing:
            # Lost while committing: the transaction may or may not have committed. The caller
            # asks the database after reconnecting (recovery_log) instead of guessing.
            exc.committing = outcome  # type: ignore[union-attr]
        elif getattr(getattr(exc, "orig", exc), "pgcode", None) == QUERY_CANCELED:
            # statement_timeout (or an operator's pg_cancel_backend) on this payload: everything
            # it wrote is rolled back; it fails by name and the run goes on.
            return _fail_alone(conn, candidate, options, report, worker, describe_error(exc))
        raise
    return outcome


def _fail_alone(
    conn: Connection, candidate: Candidate, options: RecoveryOptions, report: RecoveryReport, worker: str,
    message: str,
) -> IngestionOutcome:
    """Mark the candidate ``recovery_failed`` in a transaction of its own, nothing else written."""
    outcome = new_outcome(candidate, worker, "recovery_failed")
    category = "statement_timeout" if "statement timeout" in message else "query_canceled"
    with conn.begin():
        claim_row = claim(conn, candidate, options, lock=True)
        if claim_row is None:
            outcome.outcome = "skipped"
            outcome.failure_message = "claimed by another run, or its status changed since discovery"
            return outcome
        _fail(outcome, category, f"{message}; rerun with --status recovery_failed (and a longer timeout)")
        _finish(conn, outcome, report.run_id, claim_row)
    return outcome


def _recover(
    conn: Connection, candidate: Candidate, options: RecoveryOptions, report: RecoveryReport,
    outcome: IngestionOutcome,
) -> None:
    with conn.begin():
        claim_row = claim(conn, candidate, options, lock=True)
        if claim_row is None:
            outcome.outcome = "skipped"
            outcome.failure_message = "claimed by another run, or its status changed since discovery"
            return
        found, refusal = _inspected(conn, candidate, options, claim_row, outcome)
        if refusal and refusal[0] == CHANGED_SINCE_PREVIEW:
            # What the operator approved is not what is stored: not a failure of the payload, so its
            # status stays (a recovery_failed one would drop out of the default statuses for good).
            outcome.outcome, (outcome.failure_category, outcome.failure_message) = "skipped", refusal
            return
        if refusal:
            _fail(outcome, *refusal)
        else:
            user_key.lock_user(conn, candidate.user_id)  # the users foreign key of every row it writes
            failure = merge_payload(
                conn, candidate, outcome, options.batch_config, options.insert_method, report.started_at,
                report.run_id, found
            )
            rejections.replace(conn, candidate.ingestion_id, report.run_id, outcome.refusals)
            if failure:
                _fail(outcome, *failure)
        _finish(conn, outcome, report.run_id, claim_row)
        outcome.committing = True  # the block's end sends COMMIT


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
