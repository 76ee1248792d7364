"""Chunk sizes stay under PostgreSQL's 65,535-parameter limit; merging inserts fill, never overwrite."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from recovery_lib import batching, db
from recovery_lib.batching import PG_MAX_PARAMS, BatchConfig
from recovery_lib.errors import BatchConfigError
from recovery_lib.schema import METRIC_TABLES
from recovery_lib.store import metric_rows
from recovery_lib.store.journal import JournalContext

T0 = datetime(2024, 2, 6, 22, 30, tzinfo=UTC)
# Every merge journals what it wrote: these tests write as one (made-up) run and ingestion.
JOURNAL = JournalContext("test-run", str(uuid.uuid4()))


def test_default_chunks_stay_under_the_limit_with_margin():
    config = BatchConfig.default().validate()
    for table in METRIC_TABLES:
        params = config.chunk_size(table) * BatchConfig.params_per_row(table)
        assert params <= PG_MAX_PARAMS * batching.SAFETY_MARGIN


def test_params_per_row_counts_every_insertable_column():
    assert BatchConfig.params_per_row("heart_rate_metrics") == len(METRIC_TABLES["heart_rate_metrics"].columns)
    assert BatchConfig.params_per_row("activity_metrics") == len(METRIC_TABLES["activity_metrics"].columns) > 30


def test_from_env_reads_each_table_variable():
    config = BatchConfig.from_env({"BATCH_HEART_RATE_CHUNK_SIZE": "500", "BATCH_WORKOUT_CHUNK_SIZE": " 42 "})
    assert config.chunk_size("heart_rate_metrics") == 500
    assert config.chunk_size("workout_metrics") == 42
    assert config.chunk_size("sleep_metrics") == BatchConfig.default_chunk_size("sleep_metrics")


def test_validate_names_table_chunk_params_and_maximum():
    config = BatchConfig.from_env({"BATCH_ACTIVITY_CHUNK_SIZE": "10000"})
    with pytest.raises(BatchConfigError) as error:
        config.validate()
    message = str(error.value)
    assert message.startswith("Invalid batch configuration: ")
    per_row = BatchConfig.params_per_row("activity_metrics")
    assert "activity_metrics" in message and "10000" in message and f"{per_row} params per row" in message
    assert "65535" in message and str(BatchConfig.max_chunk_size("activity_metrics")) in message


@pytest.mark.parametrize("raw", ["0", "-5"])
def test_validate_refuses_non_positive_chunks(raw):
    with pytest.raises(BatchConfigError, match="sleep_metrics: chunk size .* must be at least 1"):
        BatchConfig.from_env({"BATCH_SLEEP_CHUNK_SIZE": raw}).validate()


def test_from_env_refuses_a_non_number():
    with pytest.raises(BatchConfigError, match="BATCH_SLEEP_CHUNK_SIZE='many' is not a whole number"):
        BatchConfig.from_env({"BATCH_SLEEP_CHUNK_SIZE": "many"})


def test_chunks_splits_in_order():
    assert [list(c) for c in batching.chunks([1, 2, 3, 4, 5], 2)] == [[1, 2], [3, 4], [5]]


@pytest.fixture()
def user(engine):
    user_id = str(uuid.uuid4())
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO users (id, email) VALUES (:id, :email)"),
                     {"id": user_id, "email": f"{user_id}@example.test"})
    return user_id


def _activity(engine, user_id):
    with engine.connect() as conn:
        return conn.execute(
            sa.text("SELECT recorded_at, step_count, distance_meters, source_device FROM activity_metrics "
                    "WHERE user_id = :u ORDER BY recorded_at"), {"u": user_id}
        ).all()


def _copy_merge(engine, user_id, rows, columns=None):
    table = METRIC_TABLES["activity_metrics"]
    with engine.begin() as conn:
        cursor = conn.connection.dbapi_connection.cursor()
        metric_rows.empty_staging(cursor, table)
        metric_rows.copy_rows(cursor, table, [(seq, key, values, "m", seq) for seq, key, values in rows], columns)
        cursor.execute(metric_rows.merge_sql(table), {"user_id": user_id, **JOURNAL.params(table.name)})
        return cursor.fetchone()


def test_copy_merge_inserts_then_fills_without_overwriting(engine, user):
    assert _copy_merge(engine, user, [(0, T0, {"step_count": 100.0, "source_device": "iPhone"})]) == (1, 0)
    # Same key again: step_count exists (kept), distance is new (filled), nothing inserted.
    assert _copy_merge(engine, user, [(0, T0, {"step_count": 999.0, "distance_meters": 80.0})]) == (0, 1)
    assert _activity(engine, user) == [(T0, 100.0, 80.0, "iPhone")]


def test_copy_sends_only_the_columns_it_is_given_and_the_others_stay_null(engine, user):
    rows = [(0, T0, {"step_count": 100.0}), (1, T0 + timedelta(minutes=1), {"distance_meters": 80.0})]
    assert _copy_merge(engine, user, rows, columns=["step_count", "distance_meters"]) == (2, 0)
    assert _activity(engine, user) == [(T0, 100.0, None, None), (T0 + timedelta(minutes=1), None, 80.0, None)]


def test_copy_merge_rerun_changes_nothing(engine, user):
    rows = [(i, T0 + timedelta(minutes=i), {"step_count": float(i)}) for i in range(50)]
    assert _copy_merge(engine, user, rows) == (50, 0)
    assert _copy_merge(engine, user, rows) == (0, 0)
    assert len(_activity(engine, user)) == 50


def test_copy_merge_first_value_in_payload_order_wins_within_a_payload(engine, user):
    rows = [(0, T0, {"step_count": 1.0}), (1, T0, {"step_count": 2.0, "distance_meters": 5.0})]
    assert _copy_merge(engine, user, rows) == (1, 0)
    assert _activity(engine, user) == [(T0, 1.0, 5.0, None)]


def test_copy_escapes_text_safely(engine, user):
    source = "Émilie's\twatch\\n \N{WATCH}\nline"
    _copy_merge(engine, user, [(0, T0, {"step_count": 1.0, "source_device": source})])
    assert _activity(engine, user)[0].source_device == source


def _staged(conn, table):
    """The staging table's row count and file: a TRUNCATE gives it a new file."""
    return tuple(conn.execute(sa.text(
        f"SELECT (SELECT count(*) FROM {metric_rows.staging_name(table)}), "
        f"pg_relation_filenode('pg_temp.{metric_rows.staging_name(table)}')")).one())


def test_a_staging_table_holds_only_the_rows_of_its_own_transaction(engine):
    """Staged rows outlive the commit (no truncation at every commit); the next transaction empties them first."""
    table = METRIC_TABLES["activity_metrics"]
    with engine.connect() as conn:
        cursor = conn.connection.dbapi_connection.cursor()
        with conn.begin():
            metric_rows.empty_staging(cursor, table)
            metric_rows.copy_rows(cursor, table, [(i, T0 + timedelta(minutes=i), {"step_count": 1.0}, "m", i)
                                                  for i in range(3)])
        count, file = _staged(conn, table)
        conn.commit()
        assert count == 3
        with conn.begin():
            metric_rows.empty_staging(cursor, table, exists=True)
            assert _staged(conn, table) == (0, file)  # a DELETE: the same file
            metric_rows.copy_rows(cursor, table, [(0, T0, {"step_count": 2.0}, "m", 0)])
            assert _staged(conn, table)[0] == 1


def test_a_staging_table_is_truncated_once_its_session_staged_many_rows(engine, monkeypatch):
    monkeypatch.setattr(metric_rows, "TRUNCATE_AFTER_ROWS", 5)
    table = METRIC_TABLES["activity_metrics"]
    rows = [(i, T0 + timedelta(minutes=i), {"step_count": 1.0}, "m", i) for i in range(6)]
    with engine.connect() as conn:
        cursor = conn.connection.dbapi_connection.cursor()
        with conn.begin():
            metric_rows.empty_staging(cursor, table)
            metric_rows.copy_rows(cursor, table, rows)
        file = _staged(conn, table)[1]
        conn.commit()
        with conn.begin():
            conn.exec_driver_sql("SET TRANSACTION READ ONLY")
            metric_rows.empty_staging(cursor, table, exists=True)  # read only: a DELETE, not a TRUNCATE
            assert _staged(conn, table) == (0, file)
        with conn.begin():
            metric_rows.empty_staging(cursor, table, exists=True)
            count, new_file = _staged(conn, table)
        assert count == 0 and new_file != file
        with conn.begin():
            metric_rows.copy_rows(cursor, table, rows[:2])
            metric_rows.empty_staging(cursor, table, exists=True)  # 2 rows since the TRUNCATE: a DELETE
            assert _staged(conn, table) == (0, new_file)


def test_insert_rows_chunks_under_the_limit_and_is_idempotent(engine, user):
    table = METRIC_TABLES["heart_rate_metrics"]
    rows = {T0 + timedelta(seconds=i): {"heart_rate": 60.0 + i % 40} for i in range(9000)}
    chunk = BatchConfig.default().chunk_size("heart_rate_metrics")
    assert len(rows) * BatchConfig.params_per_row("heart_rate_metrics") > PG_MAX_PARAMS
    with engine.begin() as conn:
        cursor = conn.connection.dbapi_connection.cursor()
        assert metric_rows.insert_rows(cursor, table, user, rows, chunk, JOURNAL) == (9000, 0)
        assert metric_rows.insert_rows(cursor, table, user, rows, chunk, JOURNAL) == (0, 0)
        count = conn.execute(sa.text("SELECT count(*) FROM heart_rate_metrics")).scalar()
    assert count == 9000


def test_insert_rows_refuses_a_chunk_over_the_limit(engine, user):
    table = METRIC_TABLES["heart_rate_metrics"]
    with engine.begin() as conn, pytest.raises(BatchConfigError, match="exceeds 65535"):
        metric_rows.insert_rows(conn.connection.dbapi_connection.cursor(), table, user, {T0: {}}, 9000, JOURNAL)


def test_staging_types_match_the_target_columns(engine, user):
    """Timestamps other than the key (sleep_end, ended_at) and text columns stage with their own types."""
    table = METRIC_TABLES["workout_metrics"]
    end = T0 + timedelta(minutes=45)
    with engine.begin() as conn:
        cursor = conn.connection.dbapi_connection.cursor()
        metric_rows.empty_staging(cursor, table)
        metric_rows.copy_rows(cursor, table, [(0, T0, {"ended_at": end, "workout_type": "Outdoor Run",
                                                     "distance_meters": 5000.0}, "workouts", 0)])
        cursor.execute(metric_rows.merge_sql(table), {"user_id": user, **JOURNAL.params(table.name)})
        row = conn.execute(sa.text("SELECT ended_at, workout_type, distance_meters FROM workout_metrics")).one()
    assert tuple(row) == (end, "Outdoor Run", 5000.0)


def test_an_array_sent_as_one_text_reads_back_as_the_same_values(engine):
    """Keys and tags go to the server as one array text each: every value comes back as it was."""
    texts = ['a "quoted" word', "back\\slash", "{braces}, commas", "NULL", "", " spaced ", "Émilie's \N{WATCH}", None]
    instants = [T0, T0 + timedelta(microseconds=1), datetime(1999, 12, 31, 23, 59, 59, tzinfo=UTC), None]
    with engine.connect() as conn:
        got = conn.exec_driver_sql("SELECT %(t)s::text[], %(k)s::timestamptz[]", {
            "t": db.array_literal(texts), "k": db.array_literal(instants)}).one()
    assert list(got[0]) == texts
    assert list(got[1]) == instants
    assert db.array_literal([]) == "{}"


def test_count_present_counts_tagged_keys_sent_as_array_texts(engine, user):
    table = METRIC_TABLES["other_metrics"]
    rows = [(0, (T0, 'sleep "score"'), {"qty": 1.0}), (1, (T0, "a,b"), {"qty": 2.0})]
    with engine.begin() as conn:
        cursor = conn.connection.dbapi_connection.cursor()
        metric_rows.empty_staging(cursor, table)
        metric_rows.copy_rows(cursor, table, [(seq, key, values, "m", seq) for seq, key, values in rows])
        cursor.execute(metric_rows.merge_sql(table), {"user_id": user, **JOURNAL.params(table.name)})
    with engine.connect() as conn:
        keys = [(T0, 'sleep "score"'), (T0, "a,b"), (T0, "a"), (T0 + timedelta(minutes=1), "a,b")]
        assert metric_rows.count_present(conn, user, "other_metrics", keys) == 2
