"""The foreign key to ``users``, checked once per ingestion instead of once per row.

Every row one ingestion's recovery writes has that ingestion's ``user_id``, yet PostgreSQL checks
the foreign key ``user_id -> users(id)`` row by row: an AFTER trigger per row that locks the same
user row again (4.5 us of the 12 us a heart-rate row costs). When nothing else hangs on triggers,
the workers' sessions skip them (``session_replication_role = replica``, which stops every
trigger and rule of the session, the foreign-key checks included) and each ingestion's
transaction takes what the checks would have taken, once: the user row ``FOR KEY SHARE`` (so it
cannot be deleted or rekeyed until the commit). A user that does not exist puts that transaction
back to ``origin``: its rows then fail the check as before.

Equivalent only where those triggers are all there is, so :func:`blocker` looks at every table a
worker writes (the bound metric tables, ``raw_ingestions``, the bookkeeping) and names the first
reason to keep the per-row checks: a trigger (other than a foreign key's) or rule, a partitioned or
inherited table, or a foreign key other than ``user_id -> users(id)`` on a table rows are
inserted into (``raw_ingestions`` is only updated, in columns no foreign key uses). A role that
may not set the parameter (not a superuser, no ``GRANT SET ON PARAMETER``) or may not lock a row
of ``users`` (that needs UPDATE on it) keeps them too.

    >>> reason = blocker(conn)              # None: the workers may check once per ingestion
    >>> sa.event.listen(pool, "connect", skip_row_checks)
    >>> lock_user(conn, user_id)            # in each ingestion's transaction, before its writes
"""

from __future__ import annotations

import logging
import weakref
from typing import Any

from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from recovery_lib.db import run
from recovery_lib.schema import BOOKKEEPING_TABLES, METRIC_TABLES

_log = logging.getLogger(__name__)
# The DBAPI connections whose session skips the per-row checks (set by skip_row_checks).
_skipping: weakref.WeakSet[Any] = weakref.WeakSet()
UPDATED_ONLY = ("raw_ingestions",)
PER_INGESTION = "per_ingestion"  # what a report says when the workers check once per ingestion

# Per written table: its triggers other than foreign keys' (its own, a constraint trigger, a deferrable
# unique key's recheck), its rules, whether it is partitioned or inherited, and each foreign key
# that is not user_id -> users(id) (%(inserted)s: the tables rows are inserted into). The other
# foreign keys' triggers fire only when a key column changes or a referenced row is deleted.
_BLOCKERS_SQL = """
SELECT c.oid::regclass::text AS relation,
       (SELECT min(t.tgname) FROM pg_trigger t LEFT JOIN pg_constraint k ON k.oid = t.tgconstraint
         WHERE t.tgrelid = c.oid AND k.contype IS DISTINCT FROM 'f') AS trigger,
       (SELECT min(r.rulename) FROM pg_rewrite r WHERE r.ev_class = c.oid) AS rule,
       c.relkind = 'p' OR c.relhassubclass OR c.relispartition AS partitioned,
       (SELECT min(f.conname) FROM pg_constraint f WHERE f.conrelid = c.oid AND f.contype = 'f'
          AND c.oid::regclass::text = ANY(%(inserted)s) AND NOT (
              f.confrelid = to_regclass('users') AND f.conkey = ARRAY[(SELECT a.attnum FROM pg_attribute a
                  WHERE a.attrelid = c.oid AND a.attname = 'user_id')]
              AND f.confkey = ARRAY[(SELECT a.attnum FROM pg_attribute a
                  WHERE a.attrelid = f.confrelid AND a.attname = 'id')])) AS other_key
FROM unnest(%(tables)s::text[]) AS w(name)
JOIN pg_class c ON c.oid = to_regclass(w.name)
ORDER BY 1
"""


def written_tables() -> list[str]:
    """The tables a recovery worker writes, as its SQL names them (the metric tables as bound to the target)."""
    metric = [t.sql_name for t in METRIC_TABLES.values() if t.present]
    return [*metric, *UPDATED_ONLY, *(t.name for t in BOOKKEEPING_TABLES)]


def blocker(conn: Connection) -> str | None:
    """Why the workers must keep the per-row foreign-key checks on this target; None when they need not."""
    tables = written_tables()
    inserted = [name for name in tables if name not in UPDATED_ONLY]
    for row in run(conn, _BLOCKERS_SQL, {"tables": tables, "inserted": inserted}).all():
        if row.trigger:
            return f"{row.relation} has a trigger other than a foreign key's ({row.trigger})"
        if row.rule:
            return f"{row.relation} has a rule ({row.rule})"
        if row.partitioned:
            return f"{row.relation} is partitioned or inherited"
        if row.other_key:
            return f"{row.relation} has a foreign key other than user_id -> users(id) ({row.other_key})"
    # The role must be able to do both halves: skip the triggers, and lock a user row itself (a
    # row lock needs UPDATE on users, which the checks, run as the table's owner, did not).
    for sql, what in (("SET LOCAL session_replication_role = replica", "set session_replication_role"),
                      ("SELECT 1 FROM users WHERE false FOR KEY SHARE", "lock rows of users (UPDATE on users)")):
        run(conn, "SAVEPOINT user_key_role")
        try:
            run(conn, sql)
        except DBAPIError as exc:
            run(conn, "ROLLBACK TO SAVEPOINT user_key_role")
            return f"the role may not {what} ({getattr(exc.orig, 'pgcode', None)})"
        run(conn, "ROLLBACK TO SAVEPOINT user_key_role")  # SET LOCAL ends with it: nothing changed
    return None


def skip_row_checks(dbapi_connection: Any, _record: Any = None) -> None:
    """A pool's ``connect`` listener: this session skips per-row triggers, if the role may say so."""
    with dbapi_connection.cursor() as cur:
        try:
            cur.execute("SET session_replication_role = replica")
        except Exception as exc:  # noqa: BLE001 - any refusal means: check row by row, as PostgreSQL does
            dbapi_connection.rollback()
            _log.info("foreign keys checked row by row: the role may not set session_replication_role (%s)",
                      getattr(exc, "pgcode", None) or type(exc).__name__)
            return
    dbapi_connection.commit()
    _skipping.add(dbapi_connection)


def skips_row_checks(conn: Connection) -> bool:
    """Whether ``conn``'s session was set up by :func:`skip_row_checks` (and the role allowed it)."""
    return conn.connection.dbapi_connection in _skipping


def lock_user(conn: Connection, user_id: str) -> None:
    """The foreign-key check of every row this transaction writes for ``user_id``, once (see the module doc).

    A no-op on a session that checks row by row.
    """
    if not skips_row_checks(conn):
        return
    found = run(conn, "SELECT 1 FROM users WHERE id = %(u)s FOR KEY SHARE", {"u": user_id}).first()
    if found is None:
        run(conn, "SET LOCAL session_replication_role = origin")  # the rows fail their checks, as without this
