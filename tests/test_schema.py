"""The schema: fixed names and keys, created idempotently on a real server."""

import sqlalchemy as sa

from recovery_lib import schema
from recovery_lib.redact import mask_url


def test_init_db_creates_every_table(engine):
    names = set(sa.inspect(engine).get_table_names())
    assert {"users", "raw_ingestions", *schema.METRIC_TABLES} <= names


def test_init_db_twice_is_a_no_op(engine):
    def snapshot():
        with engine.connect() as conn:
            return conn.execute(
                sa.text(
                    "SELECT table_name, column_name, data_type FROM information_schema.columns "
                    "WHERE table_schema = 'public' ORDER BY 1, 2"
                )
            ).all(), conn.execute(
                sa.text("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1")
            ).all()

    before = snapshot()
    assert schema.init_db(engine) == []
    assert snapshot() == before


def test_natural_keys_are_unique_constraints(engine):
    inspector = sa.inspect(engine)
    for name, table in schema.METRIC_TABLES.items():
        uniques = [tuple(u["column_names"]) for u in inspector.get_unique_constraints(name)]
        assert ("user_id", *table.natural_key) in uniques, name


def test_indexes_for_discovery_exist(engine):
    indexes = {tuple(i["column_names"]) for i in sa.inspect(engine).get_indexes("raw_ingestions")}
    assert ("processing_status", "created_at") in indexes
    assert ("user_id", "created_at") in indexes


def test_mask_url_hides_the_password():
    masked = mask_url("postgresql://app:s3cret-pw@db.example:5432/health")
    assert "s3cret-pw" not in masked
    assert masked == "postgresql://app:***@db.example:5432/health"


def test_cli_db_url_masks_password(capsys, monkeypatch):
    from recovery_lib.cli import main

    monkeypatch.setenv("DATABASE_URL", "postgresql://app:hunter2@localhost/health")
    assert main(["db", "url"]) == 0
    out = capsys.readouterr().out
    assert "hunter2" not in out and "***" in out


def test_init_db_moves_an_earlier_reconciliation_cache_to_the_stored_value_key_keeping_its_grants(engine):
    # The cache as an earlier version created it: keyed on the API's payload_hash, no filled columns.
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE reconciliation_cache"))
        conn.execute(sa.text(
            "CREATE TABLE reconciliation_cache (payload_hash varchar(64), parser_version int, table_name varchar(64), "
            "expected_keys timestamptz[] NOT NULL, rejected_points int NOT NULL DEFAULT 0, "
            "computed_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (payload_hash, parser_version, table_name))"))
        conn.execute(sa.text("INSERT INTO reconciliation_cache (payload_hash, parser_version, table_name, "
                             "expected_keys) VALUES ('abc', 1, 'heart_rate_metrics', '{}')"))
        conn.execute(sa.text("GRANT SELECT ON reconciliation_cache TO PUBLIC"))

    assert schema.init_db(engine) == []
    assert schema.init_db(engine) == []  # and again: nothing left to change
    columns = {c["name"] for c in sa.inspect(engine).get_columns("reconciliation_cache")}
    assert {"payload_sha256", "filled_columns"} <= columns and "payload_hash" not in columns
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT has_table_privilege('public', 'reconciliation_cache', 'SELECT')")).scalar()
        assert conn.execute(sa.text("SELECT parser_version, filled_columns FROM reconciliation_cache")).one() == (1, [])
