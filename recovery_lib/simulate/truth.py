"""The incident generator's ground truth, and a summary of what any database holds.

:class:`IncidentTruth` carries ids, statuses, categories and row counts, never a health value;
``present_rows`` are measured in the database (see :func:`recovery_lib.simulate.store.measure`).

    >>> truth = truth_from_file("runs/truth.json")   # a file written by IncidentTruth.write
    >>> sorted(truth["missing_by_table"])[0]
    'activity_metrics'
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from recovery_lib import catalogue, schema, target
from recovery_lib.files import write_json
from recovery_lib.schema import METRIC_TABLES, STATUSES

PARAMETER_LIMIT = 65_535
OUTCOMES = ("processed", "error", "partial_success", "silent_loss", "corrupt", "pending")


@dataclass
class IngestionTruth:
    """What one ingestion is, what it implies and what of it is in the database (counts only)."""

    id: str
    user_id: str
    status: str
    outcome: str
    created_at: str
    points: int
    large: bool
    payload_size_bytes: int
    expected_rows: dict[str, int]
    present_rows: dict[str, int]
    missing_rows: dict[str, int]
    max_params_single_insert: int
    hash_mismatch: bool
    corrupt_category: str | None
    dropped_tables: list[str]  # tables with expected rows that the original tool never wrote
    overlaps_with: str | None  # an earlier payload of the same user whose time range it shares
    points_by_family: dict[str, int] = field(default_factory=dict)  # catalogue family -> data points
    generic_points: dict[str, int] = field(default_factory=dict)  # unknown metric name -> points kept

    @property
    def missing_total(self) -> int:
        return sum(self.missing_rows.values())


def family_of(table: str) -> str:
    return catalogue.TABLES[table].family


def by_family(per_table: dict[str, int]) -> dict[str, int]:
    """Counts per table summed per catalogue family (every family present, in catalogue order)."""
    found = dict.fromkeys(catalogue.FAMILIES, 0)
    for table, n in per_table.items():
        found[family_of(table)] += n
    return found


def _added(counts: list[dict[str, int]]) -> dict[str, int]:
    found: Counter[str] = Counter()
    for one in counts:
        found.update(one)
    return dict(found)


def _listed(counts: dict[str, int], unit: str = "") -> str:
    """``heart rate 1,234; sleep 12`` (largest first, zeros left out), wrapped at about 100 characters."""
    items = [f"{name} {n:,}{unit}" for name, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if n]
    lines, line = [], ""
    for item in items:
        if line and len(line) + len(item) > 92:
            lines.append(line)
            line = ""
        line += ("; " if line else "") + item
    return "\n    ".join([*lines, line]) if line else "none"


@dataclass
class IncidentTruth:
    """The incident as generated and as measured in the database afterwards.

    >>> truth.missing_by_table["heart_rate_metrics"] > 0
    True
    """

    seed: int
    now: datetime
    users: list[str]
    ingestions: list[IngestionTruth]
    settings: dict[str, int] = field(default_factory=dict)
    rows_by_table: dict[str, int] = field(default_factory=dict)  # rows in each table afterwards
    # Distinct (user, table, key) missing over non-pending ingestions: what a recovery can insert.
    recoverable_missing_rows_total: int = 0
    recoverable_missing_by_table: dict[str, int] = field(default_factory=dict)

    @property
    def missing_rows_total(self) -> int:
        """Rows missing summed per ingestion, pending excluded (a key two payloads lack counts twice)."""
        return sum(i.missing_total for i in self.ingestions if i.outcome != "pending")

    @property
    def missing_by_table(self) -> dict[str, int]:
        return {
            t: sum(i.missing_rows[t] for i in self.ingestions if i.outcome != "pending")
            for t in METRIC_TABLES
        }

    @property
    def missing_by_family(self) -> dict[str, int]:
        return by_family(self.missing_by_table)

    @property
    def expected_by_family(self) -> dict[str, int]:
        """Rows the payloads imply per family, summed per ingestion (pending ones too)."""
        return by_family(_added([i.expected_rows for i in self.ingestions]))

    @property
    def points_by_family(self) -> dict[str, int]:
        """Data points of every payload per family (pending ones too)."""
        return {f: n for f, n in _added([i.points_by_family for i in self.ingestions]).items() if n}

    @property
    def generic_points(self) -> dict[str, int]:
        """Points of metric names the catalogue does not know, kept in other_metrics, per name."""
        return dict(sorted(_added([i.generic_points for i in self.ingestions]).items()))

    @property
    def loss_ingestions(self) -> list[str]:
        """Ingestions with rows missing, pending ones excluded (they are not lost, only late)."""
        return [i.id for i in self.ingestions if i.outcome != "pending" and i.missing_total > 0]

    @property
    def silent_loss_ingestions(self) -> list[str]:
        return [i.id for i in self.ingestions if i.outcome == "silent_loss" and i.missing_total > 0]

    @property
    def status_counts(self) -> dict[str, int]:
        counts = Counter(i.status for i in self.ingestions)
        return {s: counts[s] for s in STATUSES if counts[s]}

    @property
    def outcome_counts(self) -> dict[str, int]:
        counts = Counter(i.outcome for i in self.ingestions)
        return {o: counts[o] for o in OUTCOMES if counts[o]}

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data: ids, counts and categories, never a health value."""
        return {
            "seed": self.seed,
            "now": self.now.isoformat(),
            "settings": dict(self.settings),
            "users": list(self.users),
            "ingestions": [asdict(i) for i in self.ingestions],
            "rows_by_table": dict(self.rows_by_table),
            "missing_rows_total": self.missing_rows_total,
            "missing_by_table": self.missing_by_table,
            "recoverable_missing_rows_total": self.recoverable_missing_rows_total,
            "recoverable_missing_by_table": dict(self.recoverable_missing_by_table),
            "points_by_family": self.points_by_family,
            "expected_by_family": self.expected_by_family,
            "missing_by_family": self.missing_by_family,
            "recoverable_missing_by_family": by_family(self.recoverable_missing_by_table),
            "generic_points": self.generic_points,
            "loss_ingestions": self.loss_ingestions,
            "silent_loss_ingestions": self.silent_loss_ingestions,
            "status_counts": self.status_counts,
            "outcome_counts": self.outcome_counts,
        }

    def write(self, path: str | Path) -> Path:
        """Write :meth:`to_dict` as indented JSON; return the path."""
        return write_json(path, self.to_dict())

    def summary_text(self) -> str:
        """A few lines for a person: what was generated and what is missing."""
        large = [i for i in self.ingestions if i.large]
        lines = [
            f"Simulated incident: seed {self.seed}, now {self.now.isoformat()}",
            f"  users: {len(self.users)}, ingestions: {len(self.ingestions)}, "
            f"data points: {sum(i.points for i in self.ingestions):,}, by family:",
            f"    {_listed(self.points_by_family)}",
            "  status: " + ", ".join(f"{s} {n}" for s, n in self.status_counts.items()),
            "  outcome: " + ", ".join(f"{o} {n}" for o, n in self.outcome_counts.items()),
        ]
        if large:
            needs = sorted(i.max_params_single_insert for i in large)
            over = sum(n > PARAMETER_LIMIT for n in needs)
            lines.append(
                f"  large payloads: {len(large)} ({over} need more than {PARAMETER_LIMIT:,} parameters in a "
                f"one-statement insert; {needs[0]:,} to {needs[-1]:,})"
            )
        lines.append(
            f"  rows missing: {self.missing_rows_total:,} in {len(self.loss_ingestions)} ingestions "
            f"({self.recoverable_missing_rows_total:,} distinct keys to recover), by family:\n"
            f"    {_listed(self.missing_by_family)}"
        )
        generic = self.generic_points
        lines.append(f"  unknown metric names (kept in other_metrics): {_listed(generic, ' points')}")
        lines.append(
            f"  silent loss: {len(self.silent_loss_ingestions)} ingestions say processed but lack rows"
        )
        mismatches = sum(i.hash_mismatch for i in self.ingestions)
        if mismatches:
            lines.append(f"  hash mismatches: {mismatches} stored payload_hash values are wrong")
        return "\n".join(lines)


def truth_from_file(path: str | Path) -> dict[str, Any]:
    """Read a truth file written by :meth:`IncidentTruth.write`."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


@dataclass
class DatabaseSummary:
    """Counts of what the database holds, whatever put it there."""

    users: int
    ingestions_by_status: dict[str, int]
    rows_by_table: dict[str, int]
    recovery_log_rows: int

    def text(self) -> str:
        total = sum(self.ingestions_by_status.values())
        lines = [
            f"users: {self.users:,}",
            f"raw_ingestions: {total:,}"
            + "".join(f"\n  {s}: {n:,}" for s, n in self.ingestions_by_status.items()),
            "metric rows:" + "".join(f"\n  {t}: {n:,}" for t, n in self.rows_by_table.items()),
            f"recovery_log: {self.recovery_log_rows:,}",
        ]
        return "\n".join(lines)


def database_summary(engine: Engine) -> DatabaseSummary:
    """Status counts and rows per table, read from the database."""
    ri = schema.raw_ingestions
    with engine.connect() as conn:
        target.bind(conn)  # on the API's database: its table names, and a table it lacks left out
        by_status = dict(
            conn.execute(
                sa.select(sa.func.coalesce(ri.c.processing_status, "NULL"), sa.func.count())
                .group_by(ri.c.processing_status)
                .order_by(ri.c.processing_status)
            ).all()
        )

        def count(table: sa.Table) -> int:
            return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())

        return DatabaseSummary(
            users=count(schema.users),
            ingestions_by_status={str(k): int(v) for k, v in by_status.items()},
            rows_by_table={t: count(sa.table(spec.sql_name)) for t, spec in METRIC_TABLES.items() if spec.present},
            recovery_log_rows=count(schema.recovery_log),
        )
