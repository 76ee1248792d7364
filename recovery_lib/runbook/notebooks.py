"""The runbook's notebooks: their order, the report each glues, its options and its headline.

    >>> RUNBOOK_ORDER                    # daily monitoring and incident response, in order
    ('monitor', 'preview', 'recover', 'verify')
    >>> WEEKLY                           # the weekly review, over what the daily runs left
    ('review',)
    >>> ON_DEMAND                        # only when a recovery run must be taken back
    ('undo',)
    >>> NOTEBOOKS["recover"].scrap
    'recovery_report'
    >>> options_for("recover", user_id=None, batch_size="200").batch_size
    200

A notebook's parameters cell names its parameters; :func:`options_for` turns their values into
the validated options object of :mod:`recovery_lib.options` (the runner calls it before a kernel
starts, the notebook itself in its first cell), and :func:`headline` gives the one line an
operator reads first, from the glued report.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from recovery_lib.options import MonitorOptions, RecoveryOptions, ReviewOptions, UndoOptions, VerifyOptions


@dataclass(frozen=True)
class RunbookNotebook:
    """One notebook of the runbook."""

    name: str
    scrap: str  # the report it glues (the runner extracts it to <run>.json)
    options: Callable[..., Any]  # parameter values -> validated options
    report_module: str  # where its report's headline() lives (imported when needed: start-up stays fast)


def _preview(**values: Any) -> RecoveryOptions:
    # The preview notebook has no dry_run parameter: it is always a dry run.
    return RecoveryOptions.validated(**values, dry_run=True)


NOTEBOOKS: dict[str, RunbookNotebook] = {
    nb.name: nb
    for nb in (
        RunbookNotebook("monitor", "monitoring_report", MonitorOptions.validated, "recovery_lib.monitor.report"),
        RunbookNotebook("preview", "preview_report", _preview, "recovery_lib.recovery.report"),
        RunbookNotebook("recover", "recovery_report", RecoveryOptions.validated, "recovery_lib.recovery.report"),
        RunbookNotebook("verify", "verification_report", VerifyOptions.validated, "recovery_lib.verification"),
        RunbookNotebook("review", "review_report", ReviewOptions.validated, "recovery_lib.review.report"),
        RunbookNotebook("undo", "undo_report", UndoOptions.validated, "recovery_lib.recovery.undo_report"),
    )
}
# The review reads the archive the daily runs leave (runs/ and recovery_log): it is no step of an
# incident, so it is not in the daily order; the demo runs it last.
RUNBOOK_ORDER: tuple[str, ...] = ("monitor", "preview", "recover", "verify")
WEEKLY: tuple[str, ...] = ("review",)
ALL_NOTEBOOKS: tuple[str, ...] = (*RUNBOOK_ORDER, *WEEKLY)  # what the demo runs, in order
# Reverting a recovery run is no routine step: run by hand only, never by the demo.
ON_DEMAND: tuple[str, ...] = ("undo",)
STORED_NOTEBOOKS: tuple[str, ...] = (*ALL_NOTEBOOKS, *ON_DEMAND)  # every notebook in notebooks/
REPORT_SCRAPS: dict[str, str] = {name: nb.scrap for name, nb in NOTEBOOKS.items()}


def options_for(notebook: str, **values: Any) -> Any:
    """The validated options of ``notebook`` from its parameter values (ParameterError on a bad one)."""
    return NOTEBOOKS[notebook].options(**values)


def headline(notebook: str, report: Mapping[str, Any] | None) -> str:
    """The report's headline; empty for a notebook that is not part of the runbook."""
    if notebook not in NOTEBOOKS:
        return ""
    return str(importlib.import_module(NOTEBOOKS[notebook].report_module).headline(report or {}))
