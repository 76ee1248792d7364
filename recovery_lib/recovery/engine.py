"""The recovery engine: discovery, then workers taking one user's ingestions at a time, with retries.

Re-inserts lost metrics exactly once and marks each ingestion ``recovered`` or
``recovery_failed``. Each ingestion is recovered in its own transaction
(:mod:`recovery_lib.recovery.ingestion`): claim it
(``FOR UPDATE SKIP LOCKED``, so two runs, on one machine or two, never process the same
ingestion), check its checksum, write the missing rows (fill, never overwrite), count, set the
status, log who did it, commit. A crash anywhere rolls back that one ingestion; a rerun picks it
up again. Rows already present are left untouched, so a rerun inserts nothing. This module is
the orchestration: discovery, worker threads, one user at a time, retries on lost connections.

    >>> options = RecoveryOptions.validated(user_id="550e8400-e29b-41d4-a716-446655440000")
    >>> report = run_recovery(get_engine(), options)
    >>> report = preview(get_engine())          # dry run: READ ONLY, writes nothing
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from recovery_lib import backups, db, discovery, notices, prepared, target
from recovery_lib.db import describe_error, is_connection_lost, run
from recovery_lib.discovery import Candidate
from recovery_lib.errors import RecoveryAborted
from recovery_lib.options import RecoveryOptions
from recovery_lib.recovery import ingestion, schedule
from recovery_lib.recovery.report import IngestionOutcome, RecoveryReport
from recovery_lib.redact import mask_url
from recovery_lib.store import user_key

_log = logging.getLogger(__name__)

RETRY_DELAYS = (0.5, 1.0, 2.0)  # seconds between attempts after a lost connection
_USER_LOCK = "SELECT pg_try_advisory_lock(hashtextextended(%(k)s, 0))"
_USER_UNLOCK = "SELECT pg_advisory_unlock(hashtextextended(%(k)s, 0))"


def preview(
    engine: Engine | None = None, options: RecoveryOptions | None = None, /, *, progress: bool = True,
    on_ingestion: Callable[[IngestionOutcome], None] | None = None, **values: Any,
) -> RecoveryReport:
    """The dry run: what :func:`run_recovery` would do, computed in READ ONLY transactions."""
    if options is None:
        options = RecoveryOptions.validated(**{**values, "dry_run": True})
    elif not options.dry_run:
        raise ValueError("preview() takes dry-run options; use run_recovery() to recover")
    return run_recovery(engine, options, progress=progress, on_ingestion=on_ingestion)


def run_recovery(
    engine: Engine | None = None,
    options: RecoveryOptions | None = None,
    /,
    *,
    report_dir: Path | str | None = None,
    progress: bool = True,
    on_ingestion: Callable[[IngestionOutcome], None] | None = None,
    **values: Any,
) -> RecoveryReport:
    """Recover (or, with ``options.dry_run``, preview) every candidate; return the report.

    ``options`` comes validated from the caller; without it the keyword ``values`` (``user_id``,
    ``statuses``, ...) are validated into one by :meth:`RecoveryOptions.validated`, before the
    database is touched.
    """
    if options is None:
        options = RecoveryOptions.validated(**values)
    elif values:
        raise TypeError(f"give either options or parameter values, not both: {', '.join(sorted(values))}")
    engine = engine or db.get_engine()
    options = options.for_server(engine.url)  # the number of workers, when none was asked for
    run_id = uuid.uuid4().hex
    report = RecoveryReport(
        run_id=run_id, started_at=datetime.now(UTC), parameters=options.to_dict(),
        dry_run=options.dry_run, database=mask_url(engine.url),
    )
    # The guide's first pre-recovery step: are backups current? Reported (and warned about), never a stop.
    report.backups = backups.check(engine).to_dict()
    with engine.begin() as conn:  # what of the catalogue the target can hold (unsupported_by_schema)
        report.target = target.bind(conn).to_dict()
    candidates = _discover_with_retries(engine, options, report)
    if options.pins is not None:
        candidates = _previewed(candidates, options, report)
    report.discovered = len(candidates)
    _log.info("run %s: %d candidates (%s)", run_id[:8], len(candidates), "dry run" if options.dry_run else "recover")
    try:
        _process_all(engine, candidates, options, report, progress, on_ingestion)
    finally:
        report.finished_at = datetime.now(UTC)
        # Beside the report; a notebook run (no report of its own here) puts them in its runs folder.
        notices_dir = report_dir if report_dir is not None else options.runs_dir
        if notices_dir is not None and not options.dry_run:
            _write_notices(engine, report, notices_dir)
        if report_dir is not None:
            path = report.write(report_dir)
            _log.info("report written to %s", path)
    if report.aborted:
        raise RecoveryAborted(report.aborted, report)
    return report


def _write_notices(engine: Engine, report: RecoveryReport, directory: Path | str) -> None:
    """The users' restoration notices beside the report (:mod:`recovery_lib.notices`); a failure is only logged."""
    try:
        paths = notices.of_run(engine, report.run_id).write(directory)
    except DBAPIError as exc:
        _log.warning("restoration notices not written (%s); rebuild them with: python -m recovery_lib notices %s",
                     describe_error(exc), report.run_id)
        return
    report.notices = [str(p) for p in paths]
    _log.info("restoration notices written to %s", ", ".join(report.notices))


def _discover_with_retries(engine: Engine, options: RecoveryOptions, report: RecoveryReport) -> list[Candidate]:
    last_error = ""
    for attempt, delay in enumerate((0.0, *RETRY_DELAYS), start=1):
        if delay:
            time.sleep(delay)
        try:
            with engine.connect() as conn, conn.begin():
                if options.dry_run:
                    run(conn, "SET TRANSACTION READ ONLY")
                return discovery.discover(
                    conn, statuses=options.statuses, user_id=options.user_id,
                    include_silent_loss=options.include_silent_loss,
                )
        except DBAPIError as exc:
            if not is_connection_lost(exc, reconnecting=attempt > 1):
                raise
            last_error = describe_error(exc)
            _log.warning("discovery: database connection lost (attempt %d of %d)", attempt, len(RETRY_DELAYS) + 1)
    report.finished_at = datetime.now(UTC)
    report.aborted = (
        f"database connection lost {len(RETRY_DELAYS) + 1} times in a row while discovering candidates "
        f"(last: {last_error}); nothing was written. Check the database, then rerun."
    )
    raise RecoveryAborted(report.aborted, report)


def _previewed(candidates: list[Candidate], options: RecoveryOptions, report: RecoveryReport) -> list[Candidate]:
    """Only the candidates the given preview saw (each is refused later if its stored value changed)."""
    pins = options.pins or {}
    kept = [c for c in candidates if c.ingestion_id in pins]
    report.preview = {
        "report": options.preview_report, "run_id": options.preview_run_id, "previewed": len(pins),
        "candidates_not_previewed": len(candidates) - len(kept),
        # Previewed but no candidate now: recovered since, or the run's statuses differ from the preview's.
        "previewed_not_candidates": sorted(set(pins) - {c.ingestion_id for c in kept}),
    }
    return kept


def _by_user(candidates: Sequence[Candidate]) -> list[tuple[str, list[Candidate]]]:
    """Candidates grouped by user, each group oldest first (groups in order of their oldest)."""
    groups: dict[str, list[Candidate]] = {}
    for candidate in candidates:
        groups.setdefault(candidate.user_id, []).append(candidate)
    return list(groups.items())


def _try_user_lock(conn: Connection, user_id: str) -> bool:
    # A session-level advisory lock: released by pg_advisory_unlock, or by the server when the
    # session dies, so a killed run never leaves a user locked.
    got = bool(run(conn, _USER_LOCK, {"k": f"health-export-recovery:user:{user_id}"}).scalar())
    conn.commit()
    return got


def _release_user_lock(conn: Connection, user_id: str) -> None:
    run(conn, _USER_UNLOCK, {"k": f"health-export-recovery:user:{user_id}"})
    conn.commit()


def _process_all(
    engine: Engine,
    candidates: Sequence[Candidate],
    options: RecoveryOptions,
    report: RecoveryReport,
    progress: bool,
    on_ingestion: Callable[[IngestionOutcome], None] | None,
) -> None:
    from tqdm.auto import tqdm

    jobs = min(options.max_concurrent_jobs, max(len(candidates), 1))
    # A run-local pool sized for the workers; the URL object keeps the credentials out of strings.
    pool = sa.create_engine(
        engine.url, pool_size=jobs, max_overflow=1, pool_pre_ping=True,
        connect_args={"application_name": "health-export-recovery"},
    )
    sa.event.listen(pool, "connect", db.bookkeeping_first)  # the bookkeeping's schema, as every engine's
    sa.event.listen(pool, "connect", prepared.generic_plans)  # the workers' small merges, planned once
    if not options.dry_run:
        with engine.connect() as conn:
            reason = user_key.blocker(conn)
        report.foreign_key_checks = user_key.PER_INGESTION if reason is None else f"row by row: {reason}"
        if reason is None:
            sa.event.listen(pool, "connect", user_key.skip_row_checks)
    stop = threading.Event()
    lock = threading.Lock()
    bar = tqdm(total=len(candidates), desc="dry run" if options.dry_run else "recovering", unit="ingestion",
               disable=not progress)
    # Who did it, in recovery_log: host, process and run (a label first when several runs share the work).
    worker_base = f"{socket.gethostname()}:{os.getpid()}:{report.run_id[:8]}"
    if options.worker:
        worker_base = f"{options.worker}@{worker_base}"
    log_every = max(options.batch_size, 1)

    def record(outcome: IngestionOutcome) -> None:
        with lock:
            report.ingestions.append(outcome)
            done = len(report.ingestions)
            bar.update(1)
            if done % log_every == 0 or done == len(candidates):
                _log.info("run %s: %d/%d ingestions done", report.run_id[:8], done, len(candidates))
        if on_ingestion:
            on_ingestion(outcome)

    def work(number: int, todo: queue.Queue[tuple[str, list[Candidate]]]) -> None:
        worker = f"{worker_base}:w{number}"
        conn: Connection | None = None
        try:
            while not stop.is_set():
                try:
                    user_id, group = todo.get_nowait()
                except queue.Empty:
                    return
                # One user's ingestions are recovered by one worker of one run at a time, oldest
                # first: where two payloads disagree about a value, the older one wins whatever
                # the number of workers, runs or crashes.
                holder: dict[str, Connection | None] = {"conn": None}

                def hold(c: Connection, user_id: str = user_id, holder: dict = holder) -> bool:
                    if options.dry_run or holder["conn"] is c:
                        return True
                    if not _try_user_lock(c, user_id):
                        return False
                    holder["conn"] = c
                    return True

                try:
                    skipped_one = False
                    for candidate in group:
                        if stop.is_set():
                            return
                        if skipped_one:
                            # An older ingestion of this user was left to another run (or its
                            # status was unsure): a newer one recovered now would win over it.
                            outcome = ingestion.new_outcome(candidate, worker, "skipped")
                            outcome.failure_message = "an older ingestion of this user was skipped; rerun"
                            record(outcome)
                            continue
                        try:
                            outcome, conn = _with_retries(pool, conn, candidate, options, report, worker, hold)
                        except Exception as exc:  # noqa: BLE001 - any other failure stops the run, cleanly
                            report.aborted = f"stopped at ingestion {candidate.ingestion_id}: {describe_error(exc)}"
                            stop.set()
                            return
                        if outcome is None:
                            stop.set()
                            return
                        record(outcome)
                        # One refused as changed since the preview is left out like one the preview
                        # did not see: it holds back nothing newer.
                        skipped_one = (outcome.outcome == "skipped" and not options.dry_run
                                       and outcome.failure_category != ingestion.CHANGED_SINCE_PREVIEW)
                finally:
                    held = holder["conn"]
                    if held is not None and held is conn and not held.closed and not held.invalidated:
                        try:
                            _release_user_lock(held, user_id)
                        except DBAPIError:
                            pass  # the session is gone, and its lock with it
        finally:
            if conn is not None:
                conn.close()

    try:
        # Rounds of about batch_size ingestions (whole users); workers share each round's queue.
        groups = _by_user(candidates)
        while groups and not stop.is_set():
            todo: queue.Queue[tuple[str, list[Candidate]]] = queue.Queue()
            taken = 0
            round_groups = []
            while groups and (taken == 0 or taken + len(groups[0][1]) <= options.batch_size):
                round_groups.append(groups.pop(0))
                taken += len(round_groups[-1][1])
            # Largest users first, the smallest in between (recovery_lib.recovery.schedule).
            for user_id, group in schedule.order(round_groups):
                todo.put((user_id, group))
            threads = [threading.Thread(target=work, args=(n, todo), daemon=True)
                       for n in range(min(jobs, todo.qsize()))]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
    finally:
        bar.close()
        pool.dispose()


def _with_retries(
    pool: Engine, conn: Connection | None, candidate: Candidate, options: RecoveryOptions,
    report: RecoveryReport, worker: str,
    hold: Callable[[Connection], bool] | None = None,
) -> tuple[IngestionOutcome | None, Connection | None]:
    """Process one candidate; on a lost connection retry with backoff, then give up on the run.

    ``hold(conn)`` takes the user's lock on a (new) connection; False means another run has it.
    """
    last_error = ""
    committing: IngestionOutcome | None = None  # an attempt whose COMMIT was sent when the connection went
    for attempt, delay in enumerate((0.0, *RETRY_DELAYS), start=1):
        if delay:
            time.sleep(delay)
        try:
            if conn is None or conn.closed or conn.invalidated:
                conn = pool.connect()
            if committing is not None:
                # Whether that COMMIT went through is what the database says: our own log line.
                logged = ingestion.logged_outcome(conn, report.run_id, candidate.ingestion_id)
                if logged is not None:
                    committing.outcome, committing.attempts = logged, attempt - 1
                    return committing, conn
                committing = None
            if hold is not None and not hold(conn):
                outcome = ingestion.new_outcome(candidate, worker, "skipped")
                outcome.failure_message = "another run is recovering this user's ingestions"
                return outcome, conn
            step = ingestion.preview_one if options.dry_run else ingestion.recover_one
            outcome = step(conn, candidate, options, report, worker)
            outcome.attempts = attempt
            return outcome, conn
        except DBAPIError as exc:
            # Discovery reached the server before any worker connects: a refusal now is a restart.
            if not is_connection_lost(exc, reconnecting=True):
                raise
            committing = getattr(exc, "committing", None) or committing
            last_error = describe_error(exc)
            _log.warning(
                "ingestion %s: database connection lost (attempt %d of %d)",
                candidate.ingestion_id, attempt, len(RETRY_DELAYS) + 1,
            )
            if conn is not None:
                conn.invalidate()
                conn.close()
            conn = None
    report.aborted = (
        f"database connection lost {len(RETRY_DELAYS) + 1} times in a row while recovering ingestion "
        f"{candidate.ingestion_id} (last: {last_error}); nothing of that ingestion was written. "
        "Check the database, then rerun: "
        "finished ingestions are kept and will not be processed twice."
    )
    return None, conn
