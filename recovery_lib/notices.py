"""User restoration notices: per user of a recovery run, what was restored and what still fails, in plain words.

For each user: per metric family the rows restored (inserted or completed) with the first and
last timestamp, and each ingestion of the run that still fails with its reason as a sentence a
user can read. Built from the database alone (``recovery_journal``, ``recovery_log``,
``raw_ingestions``), so ``recover`` writes them beside its report and ``notices RUN_ID`` rebuilds
them later, identically. Counts, families, timestamps and ids: never a health value, never a
payload's content, never the operator's error text (only its category, put in plain words).

    >>> notices = for_run(engine, NoticesOptions.validated(run_id="768d15a0"))
    >>> notices.write(Path("reports"))    # restoration_notices_<run_id>.csv and .json, mode 0600
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Connection, Engine

from recovery_lib import catalogue, db
from recovery_lib.files import write_json, write_private
from recovery_lib.options import NoticesOptions
from recovery_lib.store import journal

# Why an ingestion still fails, as the user is told (keyed by the failure category of the note).
REASONS: dict[str, str] = {
    "checksum_mismatch": "The stored copy of this export does not match its checksum, so it was not restored "
                         "automatically; an operator is checking it.",
    "not_json": "This export could not be read: the file that arrived is damaged.",
    "invalid_structure": "This export is not in the form Health Auto Export writes, so it could not be read.",
    "empty_payload": "This export contained no health data to restore.",
    "rejected_points": "Some readings in this export could not be stored (for example a date that cannot be read "
                       "or a value outside plausible limits); everything else in it was restored.",
    "unsupported_points": "Some readings in this export are of a kind this service cannot store yet; everything "
                          "else in it was restored.",
    "reconciliation": "Some readings of this export are still missing after the restore; an operator is looking "
                      "into it.",
    "number_out_of_range": "This export holds a number far too long to be a reading, so it could not be read "
                           "automatically; an operator is checking it.",
    "statement_timeout": "This export is so large that its restore ran out of time; it will be tried again with "
                         "more time.",
    "query_canceled": "The restore of this export was stopped before it finished; it will be tried again.",
}
UNKNOWN_REASON = "The restore of this export did not complete; an operator is looking into it."
NOT_JOURNALED = "all metrics (restored before per-family records were kept)"
CSV_COLUMNS = ("run_id", "user_id", "kind", "family", "rows", "first_timestamp", "last_timestamp",
               "ingestion_id", "received_at", "reason")


def reason_in_plain_words(category: str | None) -> str:
    return REASONS.get(category or "", UNKNOWN_REASON)


def _iso(value: Any) -> str | None:
    return value.astimezone(UTC).isoformat() if isinstance(value, datetime) else value


@dataclass
class RestorationNotices:
    """The notices of one recovery run, one entry per user it touched."""

    run_id: str
    generated_at: datetime
    users: list[dict[str, Any]] = field(default_factory=list)
    journaled: bool = True  # False: the run predates the journal (rows per user only, no families)

    def to_dict(self) -> dict[str, Any]:
        restored = [r for u in self.users for r in u["restored"]]
        return {
            "run_id": self.run_id,
            "generated_at": self.generated_at.isoformat(),
            "journaled": self.journaled,
            "users_total": len(self.users),
            "rows_restored_total": sum(r["rows"] for r in restored),
            "families": sorted({r["family"] for r in restored}),
            "still_failing_total": sum(len(u["still_failing"]) for u in self.users),
            "undone_ingestions_total": sum(u["undone_ingestions"] for u in self.users),
            "users": self.users,
        }

    def headline(self) -> str:
        return headline(self.to_dict())

    def write(self, directory: Path | str) -> tuple[Path, Path]:
        """``restoration_notices_<run_id>.csv`` and ``.json`` in ``directory`` (0600; a rebuild replaces them)."""
        return write_notices(directory, self.to_dict())


def headline(data: Mapping[str, Any]) -> str:
    undone = data.get("undone_ingestions_total", 0)
    return (
        f"restoration notices of run {str(data.get('run_id', '?'))[:8]}: {data.get('users_total', 0)} users, "
        f"{data.get('rows_restored_total', 0)} rows restored in {len(data.get('families', []))} metric families, "
        f"{data.get('still_failing_total', 0)} ingestions still failing"
        + (f", {undone} ingestions undone since" if undone else "")
    )


def csv_text(data: Mapping[str, Any]) -> str:
    """The notices as CSV: one line per (user, family) restored and per ingestion still failing."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for user in data.get("users", []):
        base = {"run_id": data.get("run_id"), "user_id": user["user_id"]}
        for r in user["restored"]:
            writer.writerow({**base, "kind": "restored", "family": r["family"], "rows": r["rows"],
                             "first_timestamp": r["first"], "last_timestamp": r["last"]})
        for f in user["still_failing"]:
            writer.writerow({**base, "kind": "still_failing", "ingestion_id": f["ingestion_id"],
                             "received_at": f["received_at"], "reason": f["reason"]})
    return out.getvalue()


def write_notices(directory: Path | str, data: Mapping[str, Any]) -> tuple[Path, Path]:
    """Write notices (a :meth:`RestorationNotices.to_dict`) as CSV and JSON into ``directory``, mode 0600."""
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"restoration_notices_{data['run_id']}"
    return (write_private(folder / f"{stem}.csv", csv_text(data)), write_json(folder / f"{stem}.json", dict(data)))


def build(conn: Connection, run_id: str) -> RestorationNotices:
    """The notices of ``run_id`` (a full id), from the database."""
    notices = RestorationNotices(run_id=run_id, generated_at=datetime.now(UTC))
    users: dict[str, dict[str, Any]] = {}

    def user(user_id: str) -> dict[str, Any]:
        return users.setdefault(user_id, {"user_id": user_id, "restored": [], "still_failing": [],
                                          "undone_ingestions": 0})

    outcomes = journal.run_outcomes(conn, run_id)
    families: dict[tuple[str, str], dict[str, Any]] = {}
    for r in journal.restored_per_family(conn, run_id):
        family = catalogue.TABLES[r.table_name].family if r.table_name in catalogue.TABLES else r.table_name
        item = families.setdefault((r.user_id, family), {"family": family, "rows": 0, "first": None, "last": None})
        item["rows"] += r.rows
        item["first"] = min(filter(None, [item["first"], r.first_at]))
        item["last"] = max(filter(None, [item["last"], r.last_at]))
    # A run that inserted rows but journaled none predates the journal: only recovery_log's totals are known.
    notices.journaled = journal.journaled_rows(conn, run_id) > 0 or not any(o.rows_inserted for o in outcomes)
    if not notices.journaled:
        for o in outcomes:
            if o.rows_inserted and not o.undo_id:
                rows = families.setdefault((o.user_id, NOT_JOURNALED),
                                           {"family": NOT_JOURNALED, "rows": 0, "first": None, "last": None})
                rows["rows"] += o.rows_inserted
    for (user_id, _), item in sorted(families.items()):
        user(user_id)["restored"].append({**item, "first": _iso(item["first"]), "last": _iso(item["last"])})
    for o in outcomes:
        entry = user(o.user_id)
        if o.undo_id:
            entry["undone_ingestions"] += 1
        elif o.outcome == "recovery_failed" and o.status_now == "recovery_failed":
            entry["still_failing"].append({"ingestion_id": o.ingestion_id, "received_at": _iso(o.received_at),
                                           "reason": reason_in_plain_words(o.category)})
    notices.users = [users[k] for k in sorted(users)]
    return notices


def of_run(engine: Engine, run_id: str) -> RestorationNotices:
    """The notices of the run with the full id ``run_id`` (a report's); a run that finished no ingestion has none."""
    with engine.connect() as conn:
        return build(conn, run_id)


def for_run(
    engine: Engine | None = None, options: NoticesOptions | None = None, /, **values: Any
) -> RestorationNotices:
    """The notices of the run ``options.run_id`` names (its id or a unique prefix), from the database.

    Without ``options`` the keyword ``values`` (``run_id``, ``out_dir``) are validated into one.
    Raises :class:`~recovery_lib.errors.UnknownRunError` when no run, or several, match.
    """
    options = options or NoticesOptions.validated(**values)
    with (engine or db.get_engine()).connect() as conn:
        return build(conn, journal.one_run(conn, options.run_id))
