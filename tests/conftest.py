"""Every test talks to a real PostgreSQL.

``TEST_DATABASE_URL`` points at any server; without it one throwaway embedded server is started
for the session. Each test that asks for ``engine`` gets a freshly created, empty schema.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from recovery_lib import db, schema


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    url = os.environ.get("TEST_DATABASE_URL", "").strip()
    if url:
        yield url
        return
    folder = tempfile.mkdtemp(prefix="recovery-test-pg-")
    # atexit runs last-in first-out: registered before the server's own cleanup (which stops it
    # and deletes data/), this removes the then empty folder after it.
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    yield db.embedded_url(os.path.join(folder, "data"), cleanup_mode="delete")


@pytest.fixture()
def engine(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    """An engine on a clean schema; DATABASE_URL is set so library code and subprocesses use it."""
    monkeypatch.setenv("DATABASE_URL", database_url)
    eng = db.get_engine(database_url)
    reset_schema(eng)
    yield eng


def reset_schema(eng: Engine) -> None:
    with eng.begin() as conn:
        # Terminate leftovers of earlier tests (killed subprocesses) that could hold locks.
        conn.execute(
            sa.text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                "AND application_name = 'health-export-recovery' AND state <> 'idle'"
            )
        )
    schema.drop_all(eng)
    schema.init_db(eng)
