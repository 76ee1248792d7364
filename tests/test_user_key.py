"""The foreign key to users, checked once per ingestion: only where nothing else hangs on triggers.

The workers' sessions skip per-row triggers (``session_replication_role = replica``) and each
ingestion's transaction locks its user row instead. Anything of the target's own that a trigger
would run keeps the per-row checks, and the report says which way the run went and why.
"""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg2
import pytest
import sqlalchemy as sa
from helpers import add_ingestion, add_user, hr_payload, statuses

from recovery_lib import recovery
from recovery_lib.store import user_key

T0 = datetime(2024, 2, 6, 8, 0, tzinfo=UTC)
ERRORS = [{"error": "number of parameters must be between 0 and 65535"}]


def recover(engine) -> dict:
    return recovery.run_recovery(engine, progress=False).to_dict()


def blocker(engine) -> str | None:
    with engine.connect() as conn:
        return user_key.blocker(conn)


def test_on_the_projects_own_schema_and_the_apis_the_key_is_checked_once_per_ingestion(engine, api_engine):
    assert blocker(engine) is None
    assert blocker(api_engine) is None  # raw_ingestions' key to processing_jobs: a column never updated
    user = add_user(api_engine)
    ingestion = add_ingestion(api_engine, user, hr_payload(T0, 3_000), errors=ERRORS)

    report = recover(api_engine)

    assert report["foreign_key_checks"] == user_key.PER_INGESTION
    assert report["recovered"] == 1 and report["tables"]["heart_rate_metrics"]["inserted"] == 3_000
    assert statuses(api_engine)[ingestion] == "recovered"


def test_a_trigger_of_the_targets_own_keeps_the_row_checks_and_fires_for_every_row(engine):
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE hr_audit (n bigint NOT NULL)"))
        conn.execute(sa.text(
            "CREATE FUNCTION count_hr() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN INSERT INTO hr_audit VALUES (1); RETURN NEW; END $$"))
        conn.execute(sa.text(
            "CREATE TRIGGER hr_audited AFTER INSERT ON heart_rate_metrics FOR EACH ROW EXECUTE FUNCTION count_hr()"))
    user = add_user(engine)
    add_ingestion(engine, user, hr_payload(T0, 500), errors=ERRORS)

    report = recover(engine)

    assert report["foreign_key_checks"] == (
        "row by row: heart_rate_metrics has a trigger other than a foreign key's (hr_audited)")
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM hr_audit")).scalar_one() == 500


def test_another_foreign_key_on_a_written_table_keeps_the_row_checks(engine):
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE devices (id text PRIMARY KEY)"))
        conn.execute(sa.text(
            "ALTER TABLE heart_rate_metrics ADD CONSTRAINT hr_device "
            "FOREIGN KEY (source_device) REFERENCES devices(id)"))
    assert blocker(engine) == "heart_rate_metrics has a foreign key other than user_id -> users(id) (hr_device)"


def test_a_deferrable_unique_key_keeps_the_row_checks(engine):
    """Its recheck is a trigger too: replica mode would skip it."""
    with engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE activity_metrics ADD CONSTRAINT steps_once "
                             "UNIQUE (user_id, recorded_at, step_count) DEFERRABLE INITIALLY DEFERRED"))
    assert blocker(engine).startswith(
        "activity_metrics has a trigger other than a foreign key's (Unique_ConstraintTrigger_")


def test_a_rule_keeps_the_row_checks(engine):
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE RULE no_bp_deletes AS ON DELETE TO blood_pressure_metrics DO INSTEAD NOTHING"))
    assert blocker(engine) == "blood_pressure_metrics has a rule (no_bp_deletes)"


def test_a_role_that_may_not_skip_triggers_keeps_the_row_checks(engine):
    with engine.begin() as conn:
        conn.execute(sa.text("DROP ROLE IF EXISTS recovery_plain"))
        conn.execute(sa.text("CREATE ROLE recovery_plain"))
        conn.execute(sa.text("GRANT SELECT ON ALL TABLES IN SCHEMA public TO recovery_plain"))
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SET ROLE recovery_plain"))
            assert user_key.blocker(conn) == "the role may not set session_replication_role (42501)"
            conn.rollback()
        raw = engine.raw_connection()
        try:
            with raw.cursor() as cur:
                cur.execute("SET ROLE recovery_plain")
            raw.commit()
            user_key.skip_row_checks(raw.dbapi_connection)
            with raw.cursor() as cur:  # refused, rolled back, and the session goes on as before
                cur.execute("SHOW session_replication_role")
                assert cur.fetchone()[0] == "origin"
        finally:
            raw.invalidate()
        with engine.begin() as conn:  # allowed to skip the triggers, but not to lock a user row
            conn.execute(sa.text("GRANT SET ON PARAMETER session_replication_role TO recovery_plain"))
        with engine.connect() as conn:
            conn.execute(sa.text("SET ROLE recovery_plain"))
            assert user_key.blocker(conn) == "the role may not lock rows of users (UPDATE on users) (42501)"
            conn.rollback()
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text("REVOKE SET ON PARAMETER session_replication_role FROM recovery_plain"))
            conn.execute(sa.text("DROP OWNED BY recovery_plain"))
            conn.execute(sa.text("DROP ROLE recovery_plain"))


def test_the_user_row_is_locked_once_and_a_missing_user_still_fails_its_rows(engine):
    user = add_user(engine)
    pool = sa.create_engine(engine.url, poolclass=sa.pool.NullPool)
    sa.event.listen(pool, "connect", user_key.skip_row_checks)
    with pool.connect() as conn:
        assert user_key.skips_row_checks(conn)
        user_key.lock_user(conn, user)
        # Another session cannot delete or rekey the user until this transaction ends.
        with engine.connect() as other:
            other.execute(sa.text("SET lock_timeout = '100ms'"))
            with pytest.raises(sa.exc.OperationalError, match="lock timeout"):
                other.execute(sa.text("SELECT 1 FROM users WHERE id = :u FOR UPDATE"), {"u": user})
        conn.rollback()

        nobody = "00000000-0000-4000-8000-000000000000"
        user_key.lock_user(conn, nobody)
        assert conn.execute(sa.text("SHOW session_replication_role")).scalar_one() == "origin"
        with pytest.raises(sa.exc.IntegrityError) as refused:
            conn.execute(sa.text("INSERT INTO heart_rate_metrics (user_id, recorded_at, heart_rate) "
                                 "VALUES (:u, now(), 60)"), {"u": nobody})
        assert isinstance(refused.value.orig, psycopg2.errors.ForeignKeyViolation)
        conn.rollback()
        assert conn.execute(sa.text("SHOW session_replication_role")).scalar_one() == "replica"
    pool.dispose()
