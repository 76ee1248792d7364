"""The recovery report: what a run (or a dry run) found and did, as plain JSON-able data.

It holds counts, ids, categories and timings: never a health value, never a connection URL
(the ``database`` field is masked).

    >>> report.write(Path("reports"))   # reports/data_recovery_report_20260101_120000.json
    >>> report.headline()
    'recovered 14 of 17 ingestions, 187082 rows inserted, 3 failed, 0 rows still missing'
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from recovery_lib.accounting import Accounting, total
from recovery_lib.checksums import SKIPPED, VERDICTS, VERIFIED
from recovery_lib.files import create_new_json
from recovery_lib.payload.forms import BODY_NOT_STORED
from recovery_lib.recovery.refusals import Refusal
from recovery_lib.schema import METRIC_TABLES
from recovery_lib.store.metric_rows import TableReport
from recovery_lib.target import target_line

__all__ = ["IngestionOutcome", "RecoveryReport", "TableReport", "headline"]


def headline(data: Mapping[str, Any]) -> str:
    """The line an operator reads first, from a report's ``to_dict()`` (a dry run's or a recovery's).

    It names the unknown metric names kept and the unsupported points, with their counts, the
    placeholders (bodies never stored) and the checksums it could not verify, and ends with the
    backups warning when WAL archiving is off, failing or stale (:mod:`recovery_lib.backups`):
    the guide's first pre-recovery step.
    """
    names = Accounting.of_dict(data.get("accounting")).names_line()
    names = f"; {names}" if names else ""
    if data.get("dry_run"):
        line = (
            f"dry run: {data.get('candidates', 0)} candidate ingestions, would recover {data.get('recovered', 0)}, "
            f"{data.get('missing_before_total', 0)} rows missing, {data.get('missing_values_before_total', 0)} values "
            f"missing, would fail {data.get('recovery_failed', 0)}{names}"
        )
    else:
        line = (
            f"recovered {data.get('recovered', 0)} of {data.get('candidates', 0)} ingestions, "
            f"{data.get('rows_inserted_total', 0)} rows inserted, {data.get('recovery_failed', 0)} failed, "
            f"{data.get('missing_after_total', 0)} rows still missing{names}"
        )
    line += target_line(data.get("target"))
    placeholders = len(data.get("bodies_not_stored") or [])
    if placeholders:
        line += f"; {placeholders} bodies never stored (not recoverable from this database: the client must resend)"
    unverifiable = (data.get("checksums") or {}).get("unverifiable", 0)
    if unverifiable:
        line += f"; {unverifiable} checksums unverifiable"
    warning = (data.get("backups") or {}).get("warning")
    return f"{line}; WARNING: {warning}" if warning else line


@dataclass
class IngestionOutcome:
    """What happened to one candidate."""

    ingestion_id: str
    user_id: str
    status_before: str
    reason: str  # 'status' or 'silent_loss'
    outcome: str  # recovered | recovery_failed | skipped | would_recover | would_fail
    worker: str | None = None
    error_category: str | None = None  # of the original processing error
    failure_category: str | None = None  # why recovery failed (or would fail)
    failure_message: str | None = None
    checksum: str | None = None  # recovery_lib.checksums.VERDICTS: verified | mismatch | unverifiable | ...
    checksum_rendering: str | None = None  # the rendering that matched (or was compared): jsonb_text, ...
    stored_sha256: str | None = None  # the server's SHA-256 of the stored value (a recovery compares its preview's)
    form: str | None = None  # the stored form (recovery_lib.payload.forms): hae, internal, wrapped, ...
    tables: dict[str, TableReport] = field(default_factory=dict)
    rejected_points: int = 0
    rejection_counts: dict[str, int] = field(default_factory=dict)
    attempts: int = 1
    sql_tables: list[str] = field(default_factory=list)  # written by PostgreSQL from the jsonb ('sql' method)
    accounting: Accounting = field(default_factory=Accounting)
    # Values NULL in existing rows although the payload has them, as reconciliation found them
    # (discovery for silent loss, the dry run for every candidate); None when not reconciled.
    missing_values_before: int | None = None
    # Points the target refused (recovery.refusals: table, constraint, metric, index; never a value),
    # the merges the search for them tried, and (a preview) whether the target was asked at all.
    refusals: list[Refusal] = field(default_factory=list)
    constraint_search_statements: int = 0
    constraints_checked: bool | None = None
    committing: bool = field(default=False, repr=False)  # its COMMIT was sent (not reported)

    @property
    def rows_inserted(self) -> int:
        return sum(t.inserted for t in self.tables.values())

    def set_accounting(self, parsed: Accounting, sql_points: int = 0) -> None:
        """Where the points went (the parser's books plus the points SQL took) and the rows now present."""
        parsed.points += sql_points
        parsed.stored += sql_points
        parsed.rows_expected = sum(t.expected for t in self.tables.values())
        parsed.rows_present = sum(t.present_after for t in self.tables.values())
        self.accounting = parsed

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("committing")
        data["tables"] = {name: t.to_dict() for name, t in self.tables.items()}
        data["refusals"] = [r.to_dict() for r in self.refusals]  # without the key
        data["rows_inserted"] = self.rows_inserted
        data["accounting"] = self.accounting.to_dict()
        return data


@dataclass
class RecoveryReport:
    run_id: str
    started_at: datetime
    parameters: dict[str, Any]
    dry_run: bool
    database: str  # masked URL
    finished_at: datetime | None = None
    ingestions: list[IngestionOutcome] = field(default_factory=list)
    aborted: str | None = None  # why the run stopped early, if it did
    discovered: int | None = None  # candidates found; more than ingestions when a run stops early
    backups: dict[str, Any] | None = None  # recovery_lib.backups.BackupStatus.to_dict(), checked before discovery
    # A preview: whether this role may try the writes (rolled back) to learn the target's refusals.
    constraints_checkable: bool | None = None
    constraints_trial: bool = False  # and whether it must (the target can refuse what the catalogue takes)
    target: dict[str, Any] | None = None  # recovery_lib.target.Fit.to_dict(): tables and fields it cannot hold
    notices: list[str] = field(default_factory=list)  # the restoration notices written beside the report
    preview: dict[str, Any] | None = None  # the preview this run was limited to (options.preview_report)
    # How the workers checked the foreign key to users: "per_ingestion", or why "row by row: ..."
    # (recovery_lib.store.user_key); None for a dry run, which checks row by row.
    foreign_key_checks: str | None = None

    # -- derived figures ---------------------------------------------------------------------
    def _count(self, *outcomes: str) -> int:
        return sum(1 for i in self.ingestions if i.outcome in outcomes)

    def tables(self) -> dict[str, TableReport]:
        totals = {name: TableReport() for name in METRIC_TABLES}
        for item in self.ingestions:
            for name, table in item.tables.items():
                totals[name].add(table)
        return totals

    @property
    def duration_seconds(self) -> float:
        end = self.finished_at or datetime.now(UTC)
        return max((end - self.started_at).total_seconds(), 0.0)

    def to_dict(self) -> dict[str, Any]:
        tables = self.tables()
        inserted = sum(t.inserted for t in tables.values())
        users: dict[str, dict[str, Any]] = {}
        for item in self.ingestions:
            user = users.setdefault(
                item.user_id,
                {"user_id": item.user_id, "candidates": 0, "recovered": 0, "recovery_failed": 0, "skipped": 0,
                 "rows_inserted": 0, "missing_before": 0, "missing_after": 0},
            )
            user["candidates"] += 1
            key = {"would_recover": "recovered", "would_fail": "recovery_failed"}.get(item.outcome, item.outcome)
            user[key] = user.get(key, 0) + 1
            user["rows_inserted"] += item.rows_inserted
            user["missing_before"] += sum(t.missing_before for t in item.tables.values())
            user["missing_after"] += sum(t.missing_after for t in item.tables.values())
        checksums = Counter(i.checksum or SKIPPED for i in self.ingestions if i.outcome != "skipped")
        matched = Counter(i.checksum_rendering for i in self.ingestions if i.checksum == VERIFIED)
        duration = self.duration_seconds
        return {
            "run_id": self.run_id,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "parameters": self.parameters,
            "dry_run": self.dry_run,
            "database": self.database,
            "aborted": self.aborted,
            "backups": self.backups,
            "target": self.target,
            "preview": self.preview,
            "foreign_key_checks": self.foreign_key_checks,
            "candidates": self.discovered if self.discovered is not None else len(self.ingestions),
            "processed_ingestions": len(self.ingestions),
            "candidates_by_reason": dict(Counter(i.reason for i in self.ingestions)),
            "recovered": self._count("recovered", "would_recover"),
            "recovery_failed": self._count("recovery_failed", "would_fail"),
            "skipped": self._count("skipped"),
            "tables": {name: t.to_dict() for name, t in tables.items()},
            "rows_expected_total": sum(t.expected for t in tables.values()),
            "missing_before_total": sum(t.missing_before for t in tables.values()),
            "missing_values_before_total": sum(i.missing_values_before or 0 for i in self.ingestions),
            "rows_inserted_total": inserted,
            "rows_filled_total": sum(t.filled for t in tables.values()),
            "missing_after_total": sum(t.missing_after for t in tables.values()),
            "error_categories": dict(Counter(i.error_category or "silent_loss" for i in self.ingestions)),
            "failure_categories": dict(
                Counter(i.failure_category for i in self.ingestions if i.failure_category)
            ),
            "rejected_points_total": sum(i.rejected_points for i in self.ingestions),
            "accounting": total(i.accounting for i in self.ingestions if i.outcome != "skipped").to_dict(),
            "users": sorted(users.values(), key=lambda u: (-u["missing_before"], u["user_id"])),
            "checksums": {verdict: checksums.get(verdict, 0) for verdict in VERDICTS},
            "checksum_renderings": dict(sorted(matched.items())),
            "forms": dict(Counter(i.form for i in self.ingestions if i.form)),
            # Placeholders: the body never reached the database; only the client can send it again.
            "bodies_not_stored": [
                {"ingestion_id": i.ingestion_id, "user_id": i.user_id, "status_before": i.status_before}
                for i in self.ingestions if i.failure_category == BODY_NOT_STORED
            ],
            "workers": dict(Counter(i.worker for i in self.ingestions if i.worker)),
            "duration_seconds": round(duration, 3),
            "rows_per_second": round(inserted / duration, 1) if duration > 0 else 0.0,
            "notices": list(self.notices),
            "ingestions": [i.to_dict() for i in self.ingestions],
        }

    def headline(self) -> str:
        return headline(self.to_dict())

    def filename(self) -> str:
        return f"data_recovery_report_{self.started_at.astimezone(UTC):%Y%m%d_%H%M%S}.json"

    def write(self, directory: Path | str) -> Path:
        """Write the report as JSON (mode 0600) into ``directory`` and return its path.

        Another run that started in the same second keeps its file: this one gets the run id too.
        """
        name = self.filename()
        return create_new_json(directory, name, f"{name[:-5]}_{self.run_id[:8]}.json", self.to_dict())
