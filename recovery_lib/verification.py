"""After a recovery: reconcile again and show what is still missing (it should be nothing).

    >>> report = verify(get_engine(), since="24h")
    >>> report.missing_metrics_total
    0
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from recovery_lib import db, params, reconcile
from recovery_lib.errors import error_texts


@dataclass
class VerificationReport:
    since: datetime
    user_id: str | None
    database: str
    ingestions_checked: int = 0
    missing_by_table: dict[str, int] = field(default_factory=dict)
    status_counts: dict[str, int] = field(default_factory=dict)
    still_missing: list[dict[str, Any]] = field(default_factory=list)  # ingestions with rows missing
    recovery_failed: list[dict[str, Any]] = field(default_factory=list)
    generated_at: str = ""

    @property
    def missing_metrics_total(self) -> int:
        return sum(self.missing_by_table.values())

    @property
    def ok(self) -> bool:
        return self.missing_metrics_total == 0

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
            "status_counts": dict(self.status_counts),
            "still_missing": self.still_missing,
            "recovery_failed": self.recovery_failed,
            "ok": self.ok,
        }


def verify(engine: Engine | None = None, *, since: Any = None, user_id: Any = None) -> VerificationReport:
    """Reconcile every non-pending ingestion created since ``since`` (default: 24 hours)."""
    since_at = params.validate_since(since)
    user = params.validate_user_id(user_id)
    engine = engine or db.get_engine()
    report = VerificationReport(since=since_at, user_id=user, database=db.mask_url(engine.url))
    with engine.begin() as conn:
        report.generated_at = conn.execute(sa.text("SELECT now()")).scalar_one().isoformat()
        statuses = ["processed", "partial_success", "error", "recovered", "recovery_failed"]
        results = reconcile.reconcile_window(conn, since=since_at, user_id=user, statuses=statuses)
        report.ingestions_checked = len(results)
        report.missing_by_table = reconcile.missing_by_table(results)
        report.still_missing = [r.to_dict() for r in results if r.missing_total > 0]
        filters, values = ["created_at >= :since"], {"since": since_at}
        if user:
            filters.append("user_id = :user_id")
            values["user_id"] = user
        where = " AND ".join(filters)
        report.status_counts = {
            status: n
            for status, n in conn.execute(
                sa.text(f"SELECT processing_status, count(*) FROM raw_ingestions WHERE {where} GROUP BY 1 ORDER BY 1"),
                values,
            )
        }
        failed = conn.execute(
            sa.text(
                "SELECT id::text, user_id::text, processing_errors FROM raw_ingestions "
                f"WHERE {where} AND processing_status = 'recovery_failed' ORDER BY created_at, id"
            ),
            values,
        )
        for ingestion_id, owner, errors in failed:
            notes = [e for e in (errors if isinstance(errors, list) else [errors]) if isinstance(e, dict)]
            recovery_notes = [n for n in notes if n.get("source") == "recovery"]
            report.recovery_failed.append(
                {
                    "ingestion_id": ingestion_id,
                    "user_id": owner,
                    "category": recovery_notes[-1].get("category") if recovery_notes else None,
                    "reasons": [t for n in recovery_notes for t in error_texts(n)],
                }
            )
    return report
