"""Undoing a recovery run: revert exactly what its journal says it wrote, one ingestion per transaction.

``undo_run(engine, UndoOptions.validated(run_id="9f2c41d0"))``:

1. finds the run in ``recovery_log`` (its full id, or a unique prefix of 8+ hex digits) and
   refuses a run logged before the journal existed;
2. checks every ingestion of the run in one READ ONLY transaction: its status must still be the
   one the run set, and every row the run inserted or filled must still be as the run left it
   (:mod:`recovery_lib.store.undo`: PostgreSQL's row version, no value compared or stored).
   Anything changed since refuses the whole undo before it writes, naming the rows (table, row
   id, key) and who changed them (a later run: undo that one first; or a writer outside the tool);
3. then, newest ingestion first, each in its own transaction (user lock, the ingestion locked,
   its rows locked and checked again): deletes the rows the run inserted, sets the columns it
   filled back to NULL, restores the status and ``processed_at`` it found, appends the undo to
   ``processing_errors`` and logs it in ``recovery_undo``. A crash loses that one ingestion's undo;
   a rerun skips the ingestions already undone, so undoing twice changes nothing.

``dry_run`` does steps 1-2 only and writes nothing.

    >>> report = undo_run(get_engine(), UndoOptions.validated(run_id="9f2c41d0", dry_run=True))
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Connection, Engine

from recovery_lib import db, target
from recovery_lib.db import run
from recovery_lib.errors import UndoRefused, UnknownRunError
from recovery_lib.options import UndoOptions
from recovery_lib.recovery.undo_report import UndoneIngestion, UndoReport
from recovery_lib.redact import mask_url
from recovery_lib.store import ingestions, journal
from recovery_lib.store import undo as undo_sql

_log = logging.getLogger(__name__)
_USER_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended(%(k)s, 0))"  # the key recovery's workers take


def undo_run(
    engine: Engine | None = None, options: UndoOptions | None = None, /, *,
    report_dir: Path | str | None = None, **values: Any,
) -> UndoReport:
    """Undo (or, with ``options.dry_run``, check the undo of) one recovery run; see the module docstring.

    Raises :class:`~recovery_lib.errors.UndoRefused` (with the report) when it will not undo.
    """
    options = options or UndoOptions.validated(**values)
    engine = engine or db.get_engine()
    try:
        with engine.connect() as conn:
            run_id = journal.one_run(conn, options.run_id)
            target.bind(conn)  # the journal names catalogue tables: on the API's database they are its own
    except UnknownRunError as exc:
        raise UndoRefused(str(exc)) from None
    report = UndoReport(undo_id=uuid.uuid4().hex, run_id=run_id, started_at=datetime.now(UTC),
                        dry_run=options.dry_run, database=mask_url(engine.url))
    try:
        rows = _check(engine, report)
        if not options.dry_run:
            _apply(engine, report, rows)
    finally:
        report.finished_at = datetime.now(UTC)
        if report_dir is not None:
            _log.info("undo report written to %s", report.write(report_dir))
    return report


def _check(engine: Engine, report: UndoReport) -> list[Any]:
    """Step 2: every ingestion examined read-only; refuse (raise) when anything changed since."""
    with engine.connect() as conn, conn.begin():
        run(conn, "SET TRANSACTION READ ONLY")
        rows = undo_sql.ingestions_of(conn, report.run_id)
        if any(r.status_before is None for r in rows):
            report.refused = ("the run was recorded before the journal existed (recovery_log has no status "
                              "before): what it wrote cannot be told apart, so nothing is undone")
            raise UndoRefused(report.refused, report)
        xids = undo_sql.run_xids(conn, report.run_id)
        report.ingestions = [_examine(conn, report.run_id, r, xids, lock=False)[0] for r in rows]
    refused = [i for i in report.ingestions if i.outcome == "refused"]
    if refused:
        report.refused = (
            f"{len(refused)} of {len(rows)} ingestions changed since the run ({sum(i.conflicts_total for i in refused)}"
            " rows, see ingestions[].conflicts, and statuses): nothing was undone. Undo the later runs named "
            "there first; a change from outside the recovery tool must be resolved by hand."
        )
        raise UndoRefused(report.refused, report)
    return rows


def _apply(engine: Engine, report: UndoReport, rows: list[Any]) -> None:
    """Step 3: newest ingestion first, one transaction each."""
    with engine.connect() as conn:
        xids = undo_sql.run_xids(conn, report.run_id)
        conn.rollback()
        for index, row in enumerate(rows):
            if report.ingestions[index].outcome == "already_undone":
                continue
            with conn.begin():
                run(conn, _USER_LOCK, {"k": f"health-export-recovery:user:{row.user_id}"})
                item, entries = _examine(conn, report.run_id, row, xids, lock=True)
                report.ingestions[index] = item
                if item.outcome == "would_undo":
                    _revert(conn, report, row, item, entries, xids)
            if item.outcome == "refused":
                report.refused = (f"ingestion {row.ingestion_id} changed while the undo ran; the ingestions before "
                                  "it are undone, the rest is not: rerun once it is resolved")
                raise UndoRefused(report.refused, report)


def _revert(conn: Connection, report: UndoReport, row: Any, item: UndoneIngestion,
            entries: list[undo_sql.Entry], xids: list[int]) -> None:
    deleted = cleared = 0
    for entry in entries:
        if entry.action == "insert":
            n = undo_sql.delete_entry(conn, entry, report.run_id, xids)
            deleted += n
        else:
            n = undo_sql.unfill_entry(conn, entry, report.run_id, xids) * len(entry.columns)
            cleared += n
    if (deleted, cleared) != (item.rows_deleted, item.values_cleared):
        # The rows were locked and checked in this transaction: anything else is a bug, not a race.
        raise RuntimeError(f"undo of ingestion {row.ingestion_id}: checked {item.rows_deleted} rows and "
                           f"{item.values_cleared} values, reverted {deleted} and {cleared}")
    note = {
        "source": "undo", "run_id": report.run_id, "undo_id": report.undo_id, "at": datetime.now(UTC).isoformat(),
        "message": (f"recovery run {report.run_id} undone: {deleted} rows deleted, {cleared} values cleared, "
                    f"status {row.outcome} set back to {row.status_before}"),
    }
    ingestions.restore_status(conn, row.ingestion_id, row.status_before, row.processed_at_before, note)
    undo_sql.log_undo(conn, undo_id=report.undo_id, run_id=report.run_id, ingestion_id=row.ingestion_id,
                      rows_deleted=deleted, values_cleared=cleared, status_restored=row.status_before)
    item.outcome = "undone"


def _examine(conn: Connection, run_id: str, row: Any, xids: list[int], *, lock: bool
             ) -> tuple[UndoneIngestion, list[undo_sql.Entry]]:
    """What undoing one ingestion would do, and what stands in the way (``refused``)."""
    item = UndoneIngestion(row.ingestion_id, row.user_id, "would_undo", status_from=row.outcome,
                           status_to=row.status_before)
    if undo_sql.is_undone(conn, run_id, row.ingestion_id):
        item.outcome, item.status_from, item.status_to = "already_undone", None, None
        return item, []
    now = ingestions.status_of(conn, row.ingestion_id, lock=lock)
    if now is None or (now.processing_status, now.processed_at) != (row.outcome, row.finished_at):
        later = undo_sql.later_outcome(conn, run_id, row.ingestion_id)
        who = (f"run {later.run_id} recovered it again ({later.outcome})" if later
               else "changed outside the recovery tool")
        item.outcome = "refused"
        item.message = ("the ingestion no longer exists" if now is None else
                        f"its status is now {now.processing_status!r} ({who}), not {row.outcome!r} as the run left it")
    entries = undo_sql.entries(conn, run_id, row.ingestion_id)
    versions: set[int] = set()
    for entry in entries:
        found = undo_sql.check_entry(conn, entry, run_id, xids, lock=lock)
        if entry.action == "insert":
            item.rows_deleted += found.present - found.conflicts
            item.rows_gone += entry.rows - found.present
            item.count(entry.table.name, "rows_deleted", found.present - found.conflicts)
        else:
            item.values_cleared += found.clearable * len(entry.columns)
            item.count(entry.table.name, "values_cleared", found.clearable * len(entry.columns))
        if found.conflicts:
            item.outcome = "refused"
            item.conflicts_total += found.conflicts
            for sample in found.sample or []:
                versions.add(int(sample["xid"]))
                item.conflicts.append({"table": entry.table.name, "row_id": sample["id"], "user_id": entry.user_id,
                                       "key": sample["at"], "xid": int(sample["xid"])})
    if item.conflicts:
        writers = undo_sql.writers_of(conn, sorted(versions))
        for conflict in item.conflicts:
            writer = writers.get(conflict.pop("xid"))
            conflict["changed_by"] = f"run {writer}" if writer else "a writer outside the recovery tool"
        item.message = "; ".join(filter(None, [item.message, f"{item.conflicts_total} rows changed since the run"]))
    return item, entries
