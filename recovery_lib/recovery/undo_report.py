"""The undo report: what ``recover undo RUN_ID`` reverted (or would, or refused), as plain JSON-able data.

Counts, ids, table names, keys (timestamps) and row ids of conflicting rows: never a value.

    >>> report.headline()
    'undid run 9f2c41d0: 17 of 17 ingestions, 1204 rows deleted, 3 values cleared, 17 statuses restored'
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from recovery_lib.files import create_new_json


def headline(data: Mapping[str, Any]) -> str:
    """The line an operator reads first, from an undo report's ``to_dict()``."""
    run = str(data.get("run_id") or "?")[:8]
    counts = (f"{data.get('rows_deleted_total', 0)} rows deleted, {data.get('values_cleared_total', 0)} values "
              f"cleared, {data.get('statuses_restored', 0)} statuses restored")
    if data.get("refused"):
        return f"undo of run {run} refused: {data['refused']}"
    if data.get("dry_run"):
        return (f"dry run: undo of run {run} would revert {data.get('would_undo', 0)} of "
                f"{data.get('ingestions_total', 0)} ingestions: {counts} ({data.get('already_undone', 0)} "
                "already undone)")
    return (f"undid run {run}: {data.get('undone', 0)} of {data.get('ingestions_total', 0)} ingestions, {counts}"
            f" ({data.get('already_undone', 0)} already undone)")


@dataclass
class UndoneIngestion:
    """What the undo did (or would do, or refused) to one ingestion of the run."""

    ingestion_id: str
    user_id: str
    outcome: str  # undone | would_undo | already_undone | refused
    status_from: str | None = None  # the status the run left
    status_to: str | None = None  # the status it found (restored)
    rows_deleted: int = 0
    values_cleared: int = 0
    rows_gone: int = 0  # rows the run inserted that someone deleted since (nothing to undo)
    tables: dict[str, dict[str, int]] = field(default_factory=dict)  # rows_deleted, values_cleared
    conflicts: list[dict[str, Any]] = field(default_factory=list)  # up to 20 per journal line
    conflicts_total: int = 0
    message: str | None = None

    def count(self, table: str, what: str, n: int) -> None:
        if n:
            entry = self.tables.setdefault(table, {"rows_deleted": 0, "values_cleared": 0})
            entry[what] += n

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class UndoReport:
    undo_id: str
    run_id: str
    started_at: datetime
    dry_run: bool
    database: str  # masked URL
    finished_at: datetime | None = None
    ingestions: list[UndoneIngestion] = field(default_factory=list)
    refused: str | None = None  # why nothing (more) was undone, if so

    def _count(self, outcome: str) -> int:
        return sum(1 for i in self.ingestions if i.outcome == outcome)

    def to_dict(self) -> dict[str, Any]:
        tables: dict[str, dict[str, int]] = {}
        for item in self.ingestions:
            for name, counts in item.tables.items():
                total = tables.setdefault(name, {"rows_deleted": 0, "values_cleared": 0})
                for key, n in counts.items():
                    total[key] += n
        done = [i for i in self.ingestions if i.outcome in ("undone", "would_undo")]
        end = self.finished_at or datetime.now(UTC)
        return {
            "undo_id": self.undo_id,
            "run_id": self.run_id,
            "dry_run": self.dry_run,
            "database": self.database,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "duration_seconds": round(max((end - self.started_at).total_seconds(), 0.0), 3),
            "refused": self.refused,
            "ingestions_total": len(self.ingestions),
            "undone": self._count("undone"),
            "would_undo": self._count("would_undo"),
            "already_undone": self._count("already_undone"),
            "refused_ingestions": self._count("refused"),
            "rows_deleted_total": sum(i.rows_deleted for i in done),
            "values_cleared_total": sum(i.values_cleared for i in done),
            "rows_gone_total": sum(i.rows_gone for i in done),
            "statuses_restored": sum(1 for i in done if i.status_to is not None),
            "conflicts_total": sum(i.conflicts_total for i in self.ingestions),
            "tables": dict(sorted(tables.items())),
            "ingestions": [i.to_dict() for i in self.ingestions],
        }

    def headline(self) -> str:
        return headline(self.to_dict())

    def write(self, directory: Path | str) -> Path:
        """Write the report as JSON (mode 0600) into ``directory``; two in the same second both stay."""
        name = f"undo_report_{self.run_id[:8]}_{self.started_at.astimezone(UTC):%Y%m%d_%H%M%S}.json"
        return create_new_json(directory, name, f"{name[:-5]}_{self.undo_id[:8]}.json", self.to_dict())
