"""SQL of the server's own state: WAL archiving settings and ``pg_stat_archiver`` (are backups current?).

Any role can read both: ``pg_stat_archiver`` needs no grant, and ``pg_settings`` shows the
archiving settings to every role (PostgreSQL 13 to 18; ``archive_library`` exists from 15 on and
is simply absent before, ``archive_command`` reads ``(disabled)`` while ``archive_mode`` is off).

    >>> row = archiver(conn)
    >>> row.archive_mode, row.last_archived_time
    ('on', datetime.datetime(2026, 1, 1, 11, 58, tzinfo=datetime.timezone.utc))
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Connection, Row

from recovery_lib.db import run

# One row: the server's clock, whether it is a standby, the archiver's counters and the settings
# that decide whether it archives. A setting this server does not have comes back NULL.
_ARCHIVER_SQL = """
SELECT now() AS checked_at,
       pg_is_in_recovery() AS in_recovery,
       a.archived_count, a.last_archived_wal, a.last_archived_time,
       a.failed_count, a.last_failed_wal, a.last_failed_time, a.stats_reset,
       (SELECT setting FROM pg_settings WHERE name = 'archive_mode') AS archive_mode,
       (SELECT setting FROM pg_settings WHERE name = 'archive_command') AS archive_command,
       (SELECT setting FROM pg_settings WHERE name = 'archive_library') AS archive_library,
       (SELECT setting FROM pg_settings WHERE name = 'archive_timeout') AS archive_timeout
FROM pg_stat_archiver a
"""


def archiver(conn: Connection) -> Row[Any]:
    """The WAL archiver's state and settings, read from the server (see the module docstring)."""
    return run(conn, _ARCHIVER_SQL).one()
