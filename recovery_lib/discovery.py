"""Discovery: which ingestions need recovery, in the order recovery takes them.

Candidates are ingestions whose ``processing_status`` is one of ``statuses`` (default ``error``
and ``partial_success``) and, found by reconciliation rather than by status, ingestions marked
``processed`` whose rows or values are missing (silent loss: a row missing, or a value the
payload has whose column is NULL in the stored row).

    >>> with engine.begin() as conn:
    ...     candidates = discover(conn, statuses=["error", "partial_success"])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import Connection

from recovery_lib import reconcile
from recovery_lib.error_patterns import categorize_processing_errors
from recovery_lib.options import DEFAULT_STATUSES
from recovery_lib.store import ingestions


@dataclass(frozen=True)
class Candidate:
    ingestion_id: str
    user_id: str
    status: str
    created_at: datetime | None
    payload_size_bytes: int
    error_category: str | None  # of the original processing error; None for silent loss
    reason: str  # 'status' or 'silent_loss'
    missing_values: int | None = None  # values lost inside existing rows, when reconciled (silent loss)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["created_at"] = self.created_at.isoformat() if self.created_at else None
        return data


def discover(
    conn: Connection,
    *,
    statuses: Sequence[str] = DEFAULT_STATUSES,
    user_id: str | None = None,
    include_silent_loss: bool = True,
) -> list[Candidate]:
    """Candidates in the order recovery takes them (oldest first)."""
    found = [
        Candidate(
            r.id, r.user_id, r.status, r.created_at, r.payload_size_bytes,
            categorize_processing_errors(r.processing_errors) if r.processing_errors is not None else None,
            "status",
        )
        for r in ingestions.candidates(conn, statuses=statuses, user_id=user_id)
    ]
    if include_silent_loss and "processed" not in statuses:
        for result in reconcile.reconcile_window(conn, user_id=user_id, statuses=["processed"]):
            if result.lost_anything:
                found.append(
                    Candidate(
                        result.ingestion_id, result.user_id, result.status, result.created_at,
                        result.payload_size_bytes, None, "silent_loss", result.missing_values_total,
                    )
                )
        # The order of the SQL's ORDER BY created_at, id: NULLs last, ids as uuids (their text sorts alike).
        found.sort(key=lambda c: (c.created_at is None, c.created_at or datetime.min.replace(tzinfo=UTC),
                                  c.ingestion_id))
    return found
