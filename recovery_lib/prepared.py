"""Server-side prepared statements for the small statements a recovery repeats for every payload.

A payload's small tables (a day's weight, three meals, two medicines) cost more to parse and plan
than to write: a merge of a few rows into a wide table took 1.7-7 ms as a statement and 0.5-4 ms
as the ``EXECUTE`` of the same statement prepared (``make bench`` #1 runs about 25 of them per
payload). :func:`execute` prepares a statement the first time a session runs its text and
executes it by name afterwards; it is ``cursor.execute(sql, params)`` otherwise.

    >>> execute(cursor, merge_sql, {"user_id": user_id, **journal.params(table.name)})
    >>> inserted, filled = cursor.fetchone()

Only for statements whose work is small whatever the plan: a plan is kept for the session and may
be a generic one, chosen once for every later set of parameters and row counts, so a statement over
a staging table of 100,000 rows keeps ``cursor.execute`` (its planning costs nothing beside its rows).

What a session prepared lives as long as the session: PostgreSQL keeps it across ``COMMIT``,
``ROLLBACK`` and ``ROLLBACK TO SAVEPOINT``, and drops it with the connection. The tool already needs
a session of its own per connection (its temporary staging tables, its advisory locks), so a
pooler in transaction mode was never an option.
"""

from __future__ import annotations

import itertools
import re
import threading
import weakref
from typing import Any

# Statements one session keeps prepared; beyond them a text runs unprepared (a run sees a few
# dozen: one merge per table, a few per table for the payloads' sets of metrics).
MAX_PER_SESSION = 100
# A merge of at most this many staged rows is run prepared (recovery.writes); a larger one keeps a
# plan of its own, made for its rows.
MAX_ROWS = 2_000
_PLACEHOLDER = re.compile(r"%\((\w+)\)s|%%")
_names = itertools.count(1)


# Per connection, what its session prepared: text -> (name, parameter names), None if refused.
_Prepared = dict[str, tuple[str, tuple[str, ...]] | None]
_sessions: weakref.WeakKeyDictionary[Any, _Prepared] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def generic_plans(dbapi_connection: Any, _record: Any = None) -> None:
    """Make the session plan its prepared statements once, for any parameters (a pool's ``connect`` listener).

    By default PostgreSQL plans a prepared statement again for each of its first five executions;
    a worker's connection runs each merge a few dozen times, for a few rows each time.
    """
    with dbapi_connection.cursor() as cur:
        cur.execute("SET plan_cache_mode = force_generic_plan")
    dbapi_connection.commit()


def positional(sql: str) -> tuple[str, tuple[str, ...]]:
    """``sql`` in the driver's ``%(name)s`` style as PostgreSQL's ``$n`` text, and the names in ``$n`` order.

    >>> positional("SELECT %(a)s, %(b)s, %(a)s, '100%%'")
    ("SELECT $1, $2, $1, '100%'", ('a', 'b'))
    """
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        name = match.group(1)
        if name is None:
            return "%"  # the driver's escape of a literal percent sign
        if name not in names:
            names.append(name)
        return f"${names.index(name) + 1}"

    return _PLACEHOLDER.sub(number, sql), tuple(names)


def execute(cursor: Any, sql: str, params: dict[str, Any]) -> None:
    """Run ``sql`` with ``params`` on a DB-API (psycopg2) cursor, prepared in its session after the first time."""
    with _lock:
        session = _sessions.setdefault(cursor.connection, {})
    prepared = session.get(sql, False)
    if prepared is False:
        prepared = _prepare(cursor, session, sql)
    if prepared is None:
        cursor.execute(sql, params)
        return
    name, names = prepared
    values = [params[n] for n in names]
    cursor.execute(f"EXECUTE {name} ({', '.join(['%s'] * len(values))})" if values else f"EXECUTE {name}", values)


def _prepare(cursor: Any, session: _Prepared, sql: str) -> tuple[str, tuple[str, ...]] | None:
    if len(session) >= MAX_PER_SESSION:
        return None
    text, names = positional(sql)
    name = f"recovery_stmt_{next(_names)}"
    # Under a savepoint: a statement the server will not prepare (a parameter whose type it cannot
    # infer) then runs unprepared instead of aborting the caller's transaction.
    cursor.execute("SAVEPOINT recovery_prepare")
    try:
        cursor.execute(f"PREPARE {name} AS {text}")
    except Exception as exc:
        if getattr(exc, "pgcode", None) is None:
            raise  # not the server's refusal: the connection, a bug
        cursor.execute("ROLLBACK TO SAVEPOINT recovery_prepare")
        session[sql] = None
        return None
    cursor.execute("RELEASE SAVEPOINT recovery_prepare")
    session[sql] = (name, names)
    return name, names
