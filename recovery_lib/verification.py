"""Verification: after a recovery, reconcile again and show what is still missing (it should be nothing).

    >>> report = verify(get_engine(), VerifyOptions.validated(since="24h"))
    >>> report.missing_metrics_total, report.headline()
    (0, '52 ingestions checked, 0 rows missing, 0 values missing, 3 recovery_failed')
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from recovery_lib import db, reconcile, target
from recovery_lib.accounting import Accounting, total
from recovery_lib.error_patterns import error_texts, split_notes
from recovery_lib.files import write_json
from recovery_lib.options import VerifyOptions
from recovery_lib.redact import mask_url
from recovery_lib.schema import SUCCESS, VERIFIED_STATUSES
from recovery_lib.store import ingestions
from recovery_lib.target import target_line


def headline(data: Mapping[str, Any]) -> str:
    """The line an operator reads first, from a report's ``to_dict()``."""
    names = Accounting.of_dict(data.get("accounting")).names_line()
    lost = data.get("unrecoverable_loss") or 0
    return (
        f"{data.get('ingestions_checked', 0)} ingestions checked, {data.get('missing_metrics_total', 0)} rows missing, "
        f"{data.get('missing_values_total', 0)} values missing, "
        f"{len(data.get('recovery_failed') or [])} recovery_failed" + (f"; {names}" if names else "")
        + target_line(data.get("target"))
        + (f"; {lost} bodies never stored (unrecoverable loss: the client must resend)" if lost else "")
    )


@dataclass
class VerificationReport:
    since: datetime
    user_id: str | None
    database: str  # masked URL
    ingestions_checked: int = 0
    missing_by_table: dict[str, int] = field(default_factory=dict)
    missing_values_by_table: dict[str, int] = field(default_factory=dict)  # NULL where the payload has a value
    status_counts: dict[str, int] = field(default_factory=dict)
    still_missing: list[dict[str, Any]] = field(default_factory=list)  # ingestions with rows or values missing
    recovery_failed: list[dict[str, Any]] = field(default_factory=list)
    generated_at: str = ""
    accounting: Accounting = field(default_factory=Accounting)
    unsupported: list[dict[str, Any]] = field(default_factory=list)  # ingestions with points that have no table
    target: dict[str, Any] | None = None  # recovery_lib.target.Fit.to_dict(): tables and fields it cannot hold
    # Placeholders (any status): the body never reached the database. ``lost`` unless the API itself
    # processed it (its background task then had the body); lost ones are unrecoverable loss.
    bodies_not_stored: list[dict[str, Any]] = field(default_factory=list)

    @property
    def missing_metrics_total(self) -> int:
        return sum(self.missing_by_table.values())

    @property
    def missing_values_total(self) -> int:
        return sum(self.missing_values_by_table.values())

    @property
    def unrecoverable_loss(self) -> int:
        """Ingestions whose body was never stored and never processed: only the client can send them again."""
        return sum(1 for b in self.bodies_not_stored if b["lost"])

    @property
    def ok(self) -> bool:
        """Nothing missing, no point without a place, no body lost: every ingestion checked is complete."""
        return (self.missing_metrics_total == 0 and self.missing_values_total == 0 and not self.unsupported
                and not self.unrecoverable_loss)

    def to_dict(self) -> dict[str, Any]:
        return {
            "since": self.since.isoformat(),
            "user_id": self.user_id,
            "database": self.database,
            "generated_at": self.generated_at,
            "ingestions_checked": self.ingestions_checked,
            "missing_metrics_total": self.missing_metrics_total,
            "missing_by_table": dict(self.missing_by_table),
            **{f"missing_{name}": n for name, n in self.missing_by_table.items()},
            "missing_values_total": self.missing_values_total,
            "missing_values_by_table": dict(self.missing_values_by_table),
            "status_counts": dict(self.status_counts),
            "still_missing": self.still_missing,
            "recovery_failed": self.recovery_failed,
            "accounting": self.accounting.to_dict(),
            "unsupported": self.unsupported,
            "target": self.target,
            "bodies_not_stored": self.bodies_not_stored,
            "unrecoverable_loss": self.unrecoverable_loss,
            "ok": self.ok,
        }

    def headline(self) -> str:
        return headline(self.to_dict())

    def write(self, path: Path | str) -> Path:
        """The report as JSON in ``path`` (mode 0600)."""
        return write_json(path, self.to_dict())


def verify(engine: Engine | None = None, options: VerifyOptions | None = None, /, **values: Any) -> VerificationReport:
    """Reconcile every non-pending ingestion created since ``options.since`` (default: 24 hours).

    Without ``options`` the keyword ``values`` (``since``, ``user_id``) are validated into one.
    """
    options = options or VerifyOptions.validated(**values)
    engine = engine or db.get_engine()
    report = VerificationReport(since=options.since, user_id=options.user_id, database=mask_url(engine.url))
    scope = {"since": options.since, "user_id": options.user_id}
    with engine.begin() as conn:
        report.generated_at = db.run(conn, "SELECT now()").scalar_one().isoformat()
        report.target = target.bind(conn).to_dict()
        results = reconcile.reconcile_window(conn, **scope, statuses=list(VERIFIED_STATUSES))
        report.ingestions_checked = len(results)
        report.missing_by_table = reconcile.missing_by_table(results)
        report.missing_values_by_table = reconcile.missing_by_table(results, values=True)
        report.still_missing = [r.to_dict() for r in results if r.lost_anything]
        report.accounting = total(r.accounting for r in results)
        report.unsupported = [
            {"ingestion_id": r.ingestion_id, "user_id": r.user_id, "unsupported": dict(r.accounting.unsupported)}
            for r in results if r.accounting.unsupported
        ]
        report.status_counts = ingestions.status_counts(conn, **scope)
        report.bodies_not_stored = [
            {"ingestion_id": r.id, "user_id": r.user_id, "status": r.status, "payload_size_bytes": r.payload_size_bytes,
             "lost": r.status not in SUCCESS}
            for r in ingestions.placeholders(conn, **scope)
        ]
        for ingestion_id, owner, errors in ingestions.recovery_failures(conn, **scope):
            recovery_notes = split_notes(errors)[1]
            report.recovery_failed.append(
                {
                    "ingestion_id": ingestion_id,
                    "user_id": owner,
                    "category": recovery_notes[-1].get("category") if recovery_notes else None,
                    "reasons": [t for n in recovery_notes for t in error_texts(n)],
                }
            )
    return report
