"""Re-insert lost metrics, exactly once, and mark each ingestion ``recovered`` or ``recovery_failed``.

Each ingestion is recovered in its own transaction (:mod:`recovery_lib.recovery_store`): claim it
(``FOR UPDATE SKIP LOCKED``, so two runs, on one machine or two, never process the same
ingestion), check its checksum, write the missing rows (fill, never overwrite), count, set the
status, log who did it, commit. A crash anywhere rolls back that one ingestion; a rerun picks it
up again. Rows already present are left untouched, so a rerun inserts nothing. This module is
the orchestration: discovery, worker threads, one user at a time, retries on lost connections.

    >>> report = run_recovery(get_engine(), user_id="550e8400-e29b-41d4-a716-446655440000")
    >>> report = preview(get_engine())          # dry run: READ ONLY, writes nothing
"""

from __future__ import annotations

import logging
import os
import queue
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from recovery_lib import db, discovery, params, recovery_store
from recovery_lib.batching import BatchConfig
from recovery_lib.discovery import Candidate
from recovery_lib.report import IngestionOutcome, RecoveryReport

_log = logging.getLogger(__name__)

RETRY_DELAYS = (0.5, 1.0, 2.0)  # seconds between attempts after a lost connection
INSERT_METHODS = ("sql", "copy", "insert")  # see recovery_store.merge_payload


class RecoveryAborted(RuntimeError):
    """The run stopped early (e.g. the database stayed unreachable); ``report`` has what was done."""

    def __init__(self, message: str, report: RecoveryReport):
        super().__init__(message)
        self.report = report


@dataclass(frozen=True)
class RecoveryOptions:
    user_id: str | None
    statuses: tuple[str, ...]
    batch_size: int
    verify: bool
    max_concurrent_jobs: int
    dry_run: bool
    include_silent_loss: bool = True
    insert_method: str = "sql"

    def to_dict(self) -> dict[str, Any]:
        return {
            "user_id": self.user_id, "statuses": list(self.statuses), "batch_size": self.batch_size,
            "verify": self.verify, "max_concurrent_jobs": self.max_concurrent_jobs, "dry_run": self.dry_run,
            "include_silent_loss": self.include_silent_loss, "insert_method": self.insert_method,
        }


def validate_recovery_params(
    user_id: Any = None,
    statuses: Any = None,
    batch_size: Any = None,
    verify: Any = None,
    max_concurrent_jobs: Any = None,
    dry_run: Any = False,
    *,
    include_silent_loss: Any = True,
    insert_method: str = "sql",
    env: dict[str, str] | None = None,
) -> RecoveryOptions:
    """Check every parameter (before any connection); None takes the environment's value or the default.

    Environment: ``RECOVERY_BATCH_SIZE`` (100), ``RECOVERY_MAX_CONCURRENT_JOBS`` (5),
    ``RECOVERY_VERIFICATION_ENABLED`` (true). Explicit arguments win.
    """
    env = dict(os.environ) if env is None else env
    if insert_method not in INSERT_METHODS:
        raise params.ParameterError(
            f"insert_method must be one of {', '.join(map(repr, INSERT_METHODS))}, got {insert_method!r}"
        )
    return RecoveryOptions(
        user_id=params.validate_user_id(user_id),
        statuses=tuple(params.validate_statuses(list(discovery.DEFAULT_STATUSES) if statuses is None else statuses)),
        batch_size=params.validate_batch_size(
            env.get("RECOVERY_BATCH_SIZE", 100) if batch_size is None else batch_size,
            name=_source("batch_size", batch_size, "RECOVERY_BATCH_SIZE", env),
        ),
        verify=params.validate_bool(
            env.get("RECOVERY_VERIFICATION_ENABLED", True) if verify is None else verify,
            name=_source("verify", verify, "RECOVERY_VERIFICATION_ENABLED", env),
        ),
        max_concurrent_jobs=params.validate_max_concurrent_jobs(
            env.get("RECOVERY_MAX_CONCURRENT_JOBS", 5) if max_concurrent_jobs is None else max_concurrent_jobs,
            name=_source("max_concurrent_jobs", max_concurrent_jobs, "RECOVERY_MAX_CONCURRENT_JOBS", env),
        ),
        dry_run=params.validate_bool(dry_run, name="dry_run"),
        include_silent_loss=params.validate_bool(include_silent_loss, name="include_silent_loss"),
        insert_method=insert_method,
    )


def _source(name: str, value: Any, variable: str, env: dict[str, str]) -> str:
    """The name to show in an error: the argument, or the environment variable it came from."""
    return variable if value is None and variable in env else name


def preview(engine: Engine, **kwargs: Any) -> RecoveryReport:
    """The dry run: what :func:`run_recovery` would do, computed in READ ONLY transactions."""
    kwargs["dry_run"] = True
    return run_recovery(engine, **kwargs)


def run_recovery(
    engine: Engine | None = None,
    *,
    user_id: Any = None,
    statuses: Any = None,
    batch_size: Any = None,
    verify: Any = None,
    max_concurrent_jobs: Any = None,
    dry_run: Any = False,
    include_silent_loss: Any = True,
    insert_method: str = "sql",
    report_dir: Path | str | None = None,
    progress: bool = True,
    batch_config: BatchConfig | None = None,
    on_ingestion: Callable[[IngestionOutcome], None] | None = None,
) -> RecoveryReport:
    """Recover (or, with ``dry_run``, preview) every candidate; return the report.

    Parameters are validated and the batch configuration checked before the database is touched.
    """
    options = validate_recovery_params(
        user_id, statuses, batch_size, verify, max_concurrent_jobs, dry_run,
        include_silent_loss=include_silent_loss, insert_method=insert_method,
    )
    config = (batch_config or BatchConfig.from_env()).validate()
    engine = engine or db.get_engine()
    run_id = uuid.uuid4().hex
    report = RecoveryReport(
        run_id=run_id, started_at=datetime.now(UTC), parameters=options.to_dict(),
        dry_run=options.dry_run, database=db.mask_url(engine.url),
    )
    report.parameters["batch_config"] = config.to_dict()
    candidates = _discover_with_retries(engine, options, report)
    report.discovered = len(candidates)
    _log.info("run %s: %d candidates (%s)", run_id[:8], len(candidates), "dry run" if options.dry_run else "recover")
    try:
        _process_all(engine, candidates, options, config, report, progress, on_ingestion)
    finally:
        report.finished_at = datetime.now(UTC)
        if report_dir is not None:
            path = report.write(report_dir)
            _log.info("report written to %s", path)
    if report.aborted:
        raise RecoveryAborted(report.aborted, report)
    return report


def _discover_with_retries(engine: Engine, options: RecoveryOptions, report: RecoveryReport) -> list[Candidate]:
    last_error = ""
    for attempt, delay in enumerate((0.0, *RETRY_DELAYS), start=1):
        if delay:
            time.sleep(delay)
        try:
            with engine.connect() as conn, conn.begin():
                if options.dry_run:
                    conn.execute(sa.text("SET TRANSACTION READ ONLY"))
                return discovery.discover(
                    conn, statuses=options.statuses, user_id=options.user_id,
                    include_silent_loss=options.include_silent_loss,
                )
        except DBAPIError as exc:
            if not _is_connection_lost(exc):
                raise
            last_error = describe_error(exc)
            _log.warning("discovery: database connection lost (attempt %d of %d)", attempt, len(RETRY_DELAYS) + 1)
    report.finished_at = datetime.now(UTC)
    report.aborted = (
        f"database connection lost {len(RETRY_DELAYS) + 1} times in a row while discovering candidates "
        f"(last: {last_error}); nothing was written. Check the database, then rerun."
    )
    raise RecoveryAborted(report.aborted, report)


def _by_user(candidates: Sequence[Candidate]) -> list[tuple[str, list[Candidate]]]:
    """Candidates grouped by user, each group oldest first (groups in order of their oldest)."""
    groups: dict[str, list[Candidate]] = {}
    for candidate in candidates:
        groups.setdefault(candidate.user_id, []).append(candidate)
    return list(groups.items())


def _try_user_lock(conn: Connection, user_id: str) -> bool:
    # A session-level advisory lock: released by pg_advisory_unlock, or by the server when the
    # session dies, so a killed run never leaves a user locked.
    got = bool(conn.execute(sa.text("SELECT pg_try_advisory_lock(hashtextextended(:k, 0))"),
                            {"k": f"health-export-recovery:user:{user_id}"}).scalar())
    conn.commit()
    return got


def _release_user_lock(conn: Connection, user_id: str) -> None:
    conn.execute(sa.text("SELECT pg_advisory_unlock(hashtextextended(:k, 0))"),
                 {"k": f"health-export-recovery:user:{user_id}"})
    conn.commit()


def _process_all(
    engine: Engine,
    candidates: Sequence[Candidate],
    options: RecoveryOptions,
    config: BatchConfig,
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
    stop = threading.Event()
    lock = threading.Lock()
    bar = tqdm(total=len(candidates), desc="dry run" if options.dry_run else "recovering", unit="ingestion",
               disable=not progress)
    worker_base = f"{socket.gethostname()}:{os.getpid()}:{report.run_id[:8]}"
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
                    for candidate in group:
                        if stop.is_set():
                            return
                        try:
                            outcome, conn = _with_retries(
                                pool, conn, candidate, options, config, report, worker, hold)
                        except Exception as exc:  # noqa: BLE001 - any other failure stops the run, cleanly
                            report.aborted = f"stopped at ingestion {candidate.ingestion_id}: {describe_error(exc)}"
                            stop.set()
                            return
                        if outcome is None:
                            stop.set()
                            return
                        record(outcome)
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
            # Largest users first: the workers then finish the round together instead of one of
            # them starting a 13 MB export while the others wait at the end of the round.
            for user_id, group in sorted(round_groups, key=lambda g: -sum(c.payload_size_bytes for c in g[1])):
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
    config: BatchConfig, report: RecoveryReport, worker: str,
    hold: Callable[[Connection], bool] | None = None,
) -> tuple[IngestionOutcome | None, Connection | None]:
    """Process one candidate; on a lost connection retry with backoff, then give up on the run.

    ``hold(conn)`` takes the user's lock on a (new) connection; False means another run has it.
    """
    last_error = ""
    for attempt, delay in enumerate((0.0, *RETRY_DELAYS), start=1):
        if delay:
            time.sleep(delay)
        try:
            if conn is None or conn.closed or conn.invalidated:
                conn = pool.connect()
            if hold is not None and not hold(conn):
                outcome = recovery_store.new_outcome(candidate, worker, "skipped")
                outcome.failure_message = "another run is recovering this user's ingestions"
                return outcome, conn
            step = recovery_store.preview_one if options.dry_run else recovery_store.recover_one
            outcome = step(conn, candidate, options, config, report, worker)
            outcome.attempts = attempt
            return outcome, conn
        except DBAPIError as exc:
            if not _is_connection_lost(exc):
                raise
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


def describe_error(exc: BaseException) -> str:
    """A one-line description safe to log and report: the primary message only.

    PostgreSQL puts row contents (health values) in an error's DETAIL ("Failing row contains
    ..."); only the primary message and the SQLSTATE are kept.
    """
    orig = getattr(exc, "orig", None)
    diag = getattr(orig, "diag", None)
    primary = getattr(diag, "message_primary", None)
    if primary:
        return f"{type(orig).__name__} ({getattr(orig, 'pgcode', None) or 'no SQLSTATE'}): {primary}"
    text = str(orig or exc).splitlines()[0] if str(orig or exc) else ""
    return f"{type(orig or exc).__name__}: {text}"[:300]


_LOST = re.compile(
    r"terminat|server closed the connection|connection reset|broken pipe|could not receive data|"
    r"ssl syscall|connection already closed|lost synchronization|no connection to the server",
    re.I,
)
_NOT_TRANSIENT = re.compile(r"does not exist|authentication failed|no password supplied|permission denied", re.I)


def _is_connection_lost(exc: DBAPIError) -> bool:
    """A connection that was up and went away (worth a retry), not one that cannot be made at all."""
    text = str(exc.orig)
    if _NOT_TRANSIENT.search(text):
        return False
    return bool(exc.connection_invalidated or _LOST.search(text))
