"""Every test talks to a real PostgreSQL.

``TEST_DATABASE_URL`` points at any server; without it one throwaway embedded server is started
for the session. Each test that asks for ``engine`` gets a freshly created, empty schema.
``runbook`` is the four runbook notebooks executed once per session on a simulated incident,
read by the notebook tests and the browser tests alike.
"""

from __future__ import annotations

import atexit
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from helpers import Runbook, fingerprint
from sqlalchemy.engine import Engine, make_url

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


@pytest.fixture(scope="session")
def runbook(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runbook]:
    """monitor -> preview -> recover -> verify through the runner, with a password in DATABASE_URL."""
    from recovery_lib import simulate
    from recovery_lib.runbook import execute as runner

    engine = db.get_engine(database_url)
    schema.drop_all(engine)
    schema.init_db(engine)
    truth = simulate.simulate(engine, users=3, payloads=12, seed=7).to_dict()
    role, password = f"runbook_{secrets.token_hex(4)}", f"pw-{secrets.token_hex(12)}"
    with engine.begin() as conn:
        # The embedded test server trusts local connections, so the password is never checked; it
        # is in the URL so that any leak of the URL into a produced file would show.
        conn.execute(sa.text(f"CREATE ROLE {role} LOGIN SUPERUSER PASSWORD '{password}'"))
    url = make_url(database_url).set(username=role, password=password).render_as_string(hide_password=False)
    runs = tmp_path_factory.mktemp("runbook") / "runs"
    results: dict[str, runner.RunResult] = {}
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("DATABASE_URL", url)
            results["monitor"] = runner.run_notebook("monitor", {}, runs_dir=runs)
            before = fingerprint(engine)
            results["preview"] = runner.run_notebook("preview", {}, runs_dir=runs)
            after = fingerprint(engine)
            results["recover"] = runner.run_notebook("recover", {"worker": "w7"}, runs_dir=runs)
            with engine.connect() as conn:
                workers = conn.execute(sa.text("SELECT DISTINCT worker FROM recovery_log")).scalars().all()
            results["verify"] = runner.run_notebook("verify", {"since": "24h"}, runs_dir=runs)
            results["review"] = runner.run_notebook("review", {}, runs_dir=runs)  # reads the archive above
        yield Runbook(truth, results, before, after, runs, password, workers)
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = :r"),
                         {"r": role})
            conn.execute(sa.text(f"DROP ROLE IF EXISTS {role}"))


@pytest.fixture()
def api_engine(engine: Engine) -> Iterator[Engine]:
    """An engine on a database whose ingestion tables are the Health Export API's own (its DDL: users,
    api_keys, processing_jobs, raw_ingestions); ``init_db`` adds this project's tables beside them."""
    import api_schema

    schema.drop_all(engine)
    api_schema.create_api_tables(engine)
    schema.init_db(engine)
    yield engine
    api_schema.drop_api_tables(engine)  # processing_jobs refers to raw_ingestions: the next reset drops the rest


@pytest.fixture()
def api_db(engine: Engine) -> Iterator[Engine]:
    """An engine on a database built the way the Health Export API builds its own, metric tables included
    (tests/api_metric_schema.py): this project's tables are not there."""
    import api_metric_schema

    api_metric_schema.create_api_database(engine)
    yield engine
    schema.bind_metric_tables(None)  # this process's next tests run on this project's own tables
    api_metric_schema.drop_api_database(engine)
