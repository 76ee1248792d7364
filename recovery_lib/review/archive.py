"""The runs archive as the weekly review reads it: the index's records of a period and their glued reports.

Each line of ``runs/index.jsonl`` (:mod:`recovery_lib.runbook.audit`) names the run's ``.json``
report and its SHA-256. A report is used only when its file still has that hash: one edited or
removed since is left out and named (``audit verify`` says more). Monitor reports carry the alerts
that fired and the thresholds they used; recover reports the rows inserted per table.

    >>> archive = read_archive(Path("runs"), since=datetime(2026, 2, 2, tzinfo=UTC))
    >>> [run.notebook for run in archive.runs]
    ['monitor', 'preview', 'recover', 'verify']
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from recovery_lib.db import PROJECT_ROOT
from recovery_lib.runbook.audit import INDEX_NAME, read_index, sha256_file


def resolve_runs_dir(runs_dir: str | Path) -> Path:
    """The runs folder: a relative path is taken from the project root (where the runner writes ``runs/``)."""
    path = Path(runs_dir).expanduser()
    return path if path.is_absolute() else PROJECT_ROOT / path


@dataclass
class ArchivedRun:
    """One execution of a runbook notebook in the period, with its report when it can be trusted."""

    notebook: str
    time: datetime
    outcome: str  # ok | failed
    report: dict[str, Any] | None = None


@dataclass
class Archive:
    folder: Path
    index_found: bool = False
    runs: list[ArchivedRun] = field(default_factory=list)
    reports_changed: list[str] = field(default_factory=list)  # SHA-256 differs from the index
    reports_missing: list[str] = field(default_factory=list)

    def reports(self, notebook: str) -> list[ArchivedRun]:
        """The successful runs of ``notebook`` whose report is there and unchanged, oldest first."""
        return [r for r in self.runs if r.notebook == notebook and r.outcome == "ok" and r.report is not None]

    def to_dict(self) -> dict[str, Any]:
        return {
            "folder": str(self.folder),
            "index_found": self.index_found,
            "runs": len(self.runs),
            "runs_by_notebook": dict(sorted(Counter(r.notebook for r in self.runs).items())),
            "failed_runs": sum(1 for r in self.runs if r.outcome != "ok"),
            "reports_changed": list(self.reports_changed),
            "reports_missing": list(self.reports_missing),
        }


def _time(text: Any) -> datetime | None:
    try:
        moment = datetime.fromisoformat(str(text))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _report(folder: Path, record: dict[str, Any], archive: Archive) -> dict[str, Any] | None:
    name = record.get("report")
    if not name:
        return None
    path = folder / str(name)
    if not path.is_file():
        archive.reports_missing.append(str(name))
        return None
    if sha256_file(path) != record.get("report_sha256"):
        archive.reports_changed.append(str(name))
        return None
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        archive.reports_changed.append(str(name))
        return None
    return value if isinstance(value, dict) else None


def read_archive(runs_dir: str | Path, *, since: datetime) -> Archive:
    """Every run recorded in ``runs_dir/index.jsonl`` that started at or after ``since``, oldest first."""
    folder = resolve_runs_dir(runs_dir)
    index = folder / INDEX_NAME
    archive = Archive(folder=folder, index_found=index.is_file())
    for record in read_index(index):
        moment = _time(record.get("time"))
        if moment is None or moment < since:
            continue
        outcome = "ok" if record.get("outcome") == "ok" else "failed"
        report = _report(folder, record, archive) if outcome == "ok" else None
        archive.runs.append(ArchivedRun(str(record.get("notebook")), moment.astimezone(UTC), outcome, report))
    archive.runs.sort(key=lambda r: r.time)
    return archive
