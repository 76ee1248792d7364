"""Recovery: re-insert what reconciliation found missing, exactly once, and say what happened.

Who owns what::

    engine.py      discovery, rounds, worker threads, one user at a time, retries
    ingestion.py   one ingestion's transaction: claim, checksum, write, status, log
    writes.py      writing one payload's rows three ways (sql, copy, insert), with exact counts
    report.py      the recovery report (JSON-able) and its headline
    undo.py        undoing a run: revert exactly what its journal says, one ingestion per transaction
    undo_report.py the undo report and its headline

The options come validated from :class:`recovery_lib.options.RecoveryOptions`:

    >>> from recovery_lib.recovery import run_recovery
    >>> report = run_recovery(engine, RecoveryOptions.validated(user_id="550e8400-e29b-41d4-a716-446655440000"))
    >>> print(report.headline())
"""

from recovery_lib.errors import RecoveryAborted, UndoRefused
from recovery_lib.recovery.engine import preview, run_recovery
from recovery_lib.recovery.undo import undo_run

__all__ = ["RecoveryAborted", "UndoRefused", "preview", "run_recovery", "undo_run"]
