"""Backups checked: is WAL archiving on, and when did the server last archive a segment?

The guide's first pre-recovery step is "ensure database backups are current". A recovery writes
into the metric tables; should it need undoing beyond what this tool records, a point-in-time
restore needs WAL archiving. :func:`check` asks the server itself (``pg_stat_archiver`` and the
archiving settings, readable by any role: :mod:`recovery_lib.store.server`); preview and recover
put the result in their report's ``backups`` section, and the recovery headline warns when
archiving is off, not configured, failing, has never archived, or last archived more than
:data:`MAX_AGE_HOURS` ago.

What it cannot see: base backups (pg_basebackup, a provider's snapshots) and whether the archive
destination keeps what it receives. A quiet server with ``archive_timeout = 0`` archives nothing
until a segment fills, so "stale" there can mean "idle"; the warning says so.

The archive command itself is never copied into a report (it may hold paths or credentials):
only whether one is set.

    >>> status = check(get_engine())
    >>> status.state, status.warning()
    ('off', 'WAL archiving is off (archive_mode = off): no point-in-time backup covers this recovery')
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from recovery_lib.db import describe_error, run
from recovery_lib.store import server

_log = logging.getLogger(__name__)

MAX_AGE_HOURS = 24  # the last archived segment may be this old before the headline warns
STATES = ("ok", "off", "standby", "not_configured", "failing", "never", "stale", "unknown")


def age_text(hours: float) -> str:
    """``42 min``, ``5.5 h`` or ``3 d``."""
    if hours < 1:
        return f"{max(hours * 60, 0):.0f} min"
    return f"{hours:.1f} h" if hours < 48 else f"{hours / 24:.0f} d"


def _hours(later: datetime | None, earlier: datetime | None) -> float | None:
    if later is None or earlier is None:
        return None
    return round((later - earlier).total_seconds() / 3600, 3)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


@dataclass(frozen=True)
class BackupStatus:
    """What the server said about WAL archiving, and when (``checked_at`` is the server's clock)."""

    checked_at: datetime | None = None
    archive_mode: str | None = None  # off | on | always
    archiver_configured: bool | None = None  # archive_command or archive_library set; None: cannot tell
    archive_timeout_seconds: int | None = None
    in_recovery: bool | None = None  # a standby
    archived_count: int | None = None
    last_archived_wal: str | None = None
    last_archived_time: datetime | None = None
    failed_count: int | None = None
    last_failed_wal: str | None = None
    last_failed_time: datetime | None = None
    stats_reset: datetime | None = None
    error: str | None = None  # why it could not be checked

    @property
    def last_archived_age_hours(self) -> float | None:
        return _hours(self.checked_at, self.last_archived_time)

    @property
    def state(self) -> str:
        """One of :data:`STATES`; ``ok`` is the only one without a warning."""
        if self.error is not None or self.archive_mode is None:
            return "unknown"
        if self.archive_mode == "off":
            return "off"
        if self.archive_mode == "on" and self.in_recovery:
            return "standby"  # archive_mode = on archives on the primary only
        if self.archiver_configured is False:
            return "not_configured"
        failed, archived = self.last_failed_time, self.last_archived_time
        if failed and (archived is None or failed > archived):
            return "failing"
        if self.last_archived_time is None:
            return "never"
        age = self.last_archived_age_hours
        return "stale" if age is not None and age > MAX_AGE_HOURS else "ok"

    def warning(self) -> str | None:
        """The sentence the headline carries, or None when archiving is on and recent."""
        state = self.state
        if state == "unknown":
            return f"could not check WAL archiving ({self.error or 'no answer'}): make sure backups are current"
        if state == "off":
            return "WAL archiving is off (archive_mode = off): no point-in-time backup covers this recovery"
        if state == "standby":
            return "this server is a standby and archives nothing (archive_mode = on): check the primary's backups"
        if state == "not_configured":
            return "archive_mode is on but neither archive_command nor archive_library is set: nothing is archived"
        if state == "failing":
            failed = _hours(self.checked_at, self.last_failed_time)
            last = self.last_archived_age_hours
            success = f"last success {age_text(last)} ago" if last is not None else "no success since the reset"
            return f"WAL archiving is failing: last failure {age_text(failed or 0)} ago, {success}"
        if state == "never":
            since = f" since {self.stats_reset:%Y-%m-%d %H:%M} UTC" if self.stats_reset else ""
            return f"WAL archiving is on but has archived nothing{since}: check archive_command and the archive"
        if state == "stale":
            idle = " (archive_timeout is 0: a quiet server archives nothing until a segment fills)" if (
                self.archive_timeout_seconds == 0) else ""
            return (
                f"last WAL segment archived {age_text(self.last_archived_age_hours or 0)} ago, "
                f"more than {MAX_AGE_HOURS} h{idle}"
            )
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "warning": self.warning(),
            "checked_at": _iso(self.checked_at),
            "archive_mode": self.archive_mode,
            "archiver_configured": self.archiver_configured,
            "archive_timeout_seconds": self.archive_timeout_seconds,
            "in_recovery": self.in_recovery,
            "archived_count": self.archived_count,
            "last_archived_wal": self.last_archived_wal,
            "last_archived_time": _iso(self.last_archived_time),
            "last_archived_age_hours": self.last_archived_age_hours,
            "failed_count": self.failed_count,
            "last_failed_wal": self.last_failed_wal,
            "last_failed_time": _iso(self.last_failed_time),
            "stats_reset": _iso(self.stats_reset),
            "max_age_hours": MAX_AGE_HOURS,
            "error": self.error,
        }


def _configured(command: str | None, library: str | None) -> bool | None:
    if command is None and library is None:
        return None  # neither setting visible: cannot tell
    return (command or "").strip() not in ("", "(disabled)") or bool((library or "").strip())


def _utc(value: datetime | None) -> datetime | None:
    return value.astimezone(UTC) if value is not None else None


def from_row(row: Any, *, now: datetime | None = None) -> BackupStatus:
    """The status of one :func:`recovery_lib.store.server.archiver` row; ``now`` replaces the server's clock."""
    timeout = str(row.archive_timeout).strip() if row.archive_timeout is not None else ""
    return BackupStatus(
        checked_at=_utc(now or row.checked_at),
        archive_mode=row.archive_mode,
        archiver_configured=_configured(row.archive_command, row.archive_library),
        archive_timeout_seconds=int(timeout) if timeout.isdigit() else None,
        in_recovery=bool(row.in_recovery),
        archived_count=row.archived_count,
        last_archived_wal=row.last_archived_wal,
        last_archived_time=_utc(row.last_archived_time),
        failed_count=row.failed_count,
        last_failed_wal=row.last_failed_wal,
        last_failed_time=_utc(row.last_failed_time),
        stats_reset=_utc(row.stats_reset),
    )


def check(engine: Engine, *, now: datetime | None = None) -> BackupStatus:
    """Ask the server, in a READ ONLY transaction; a database error becomes state ``unknown``, never an exception."""
    try:
        with engine.connect() as conn, conn.begin():
            run(conn, "SET TRANSACTION READ ONLY")
            return from_row(server.archiver(conn), now=now)
    except DBAPIError as exc:
        _log.debug("backups: could not read pg_stat_archiver: %s", describe_error(exc))
        return BackupStatus(error=describe_error(exc))


def describe(data: Mapping[str, Any] | None) -> str:
    """One line from a ``to_dict()`` (or None: not checked): the warning, or what is fine."""
    if not data:
        return "not checked"
    if data.get("warning"):
        return f"WARNING: {data['warning']}"
    age = data.get("last_archived_age_hours")
    return (
        f"WAL archiving {data.get('archive_mode')}, last segment archived "
        f"{age_text(age) if age is not None else '?'} ago ({data.get('archived_count')} since the statistics reset)"
    )
