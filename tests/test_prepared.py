"""Prepared statements: the small merges a recovery repeats per payload, parsed and planned once per session.

``prepared.execute(cursor, sql, params)`` must behave exactly like ``cursor.execute(sql, params)``:
the same results and the same errors, whatever the session did before (commits, rollbacks, a
statement the server would not prepare).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from psycopg2 import errors as pg_errors
from sqlalchemy.engine import Engine

from recovery_lib import prepared


@pytest.fixture()
def dbapi(engine: Engine) -> Iterator[Any]:
    """A DB-API connection of its own (a new session: nothing prepared yet)."""
    raw = engine.raw_connection()
    try:
        yield raw.driver_connection
    finally:
        raw.rollback()
        raw.invalidate()  # its session ends: what it prepared goes with it


def _prepared_in(cursor: Any) -> list[str]:
    cursor.execute("SELECT statement FROM pg_prepared_statements ORDER BY prepare_time")
    return [row[0] for row in cursor.fetchall()]


def test_named_parameters_become_positional_ones_and_a_doubled_percent_a_single_one() -> None:
    assert prepared.positional("SELECT %(a)s, %(b)s, %(a)s, '100%%'") == ("SELECT $1, $2, $1, '100%'", ("a", "b"))
    assert prepared.positional("SELECT 1") == ("SELECT 1", ())


def test_a_statement_is_prepared_once_per_session_then_executed_by_name(dbapi: Any) -> None:
    sql = "SELECT %(n)s::int * 2, %(label)s::text"
    with dbapi.cursor() as cur:
        for n in (1, 2, 3):
            prepared.execute(cur, sql, {"n": n, "label": "x%"})
            assert cur.fetchone() == (2 * n, "x%")
        statements = _prepared_in(cur)
    assert len(statements) == 1
    assert "$1::int * 2, $2::text" in statements[0]


def test_what_a_session_prepared_outlives_a_rollback(dbapi: Any) -> None:
    sql = "SELECT %(n)s::int + 1"
    with dbapi.cursor() as cur:
        prepared.execute(cur, sql, {"n": 1})
        dbapi.rollback()
        prepared.execute(cur, sql, {"n": 41})
        assert cur.fetchone() == (42,)
        assert len(_prepared_in(cur)) == 1


def test_a_statement_the_server_will_not_prepare_runs_unprepared_and_the_transaction_goes_on(dbapi: Any) -> None:
    # Two parameters of unknown type: "operator is not unique" when prepared, fine once bound.
    sql = "SELECT %(a)s + %(b)s"
    with dbapi.cursor() as cur:
        cur.execute("CREATE TEMP TABLE kept (n int)")
        prepared.execute(cur, sql, {"a": 1, "b": 2})
        assert cur.fetchone() == (3,)
        prepared.execute(cur, sql, {"a": 20, "b": 22})  # not tried again
        assert cur.fetchone() == (42,)
        cur.execute("SELECT count(*) FROM kept")  # the transaction was not aborted
        assert cur.fetchone() == (0,)
        assert _prepared_in(cur) == []


def test_an_executed_statement_raises_the_error_its_plain_execution_would(dbapi: Any) -> None:
    sql = "SELECT 1 / %(n)s::int"
    with dbapi.cursor() as cur:
        prepared.execute(cur, sql, {"n": 1})
        with pytest.raises(pg_errors.DivisionByZero):
            prepared.execute(cur, sql, {"n": 0})


def test_sessions_are_kept_apart(engine: Engine) -> None:
    sql = "SELECT %(n)s::int"
    first, second = engine.raw_connection(), engine.raw_connection()
    try:
        for raw in (first, second):
            with raw.driver_connection.cursor() as cur:
                prepared.execute(cur, sql, {"n": 7})
                assert cur.fetchone() == (7,)
                assert len(_prepared_in(cur)) == 1  # each session prepared it for itself
    finally:
        for raw in (first, second):
            raw.rollback()
            raw.invalidate()


def test_a_session_keeps_at_most_its_share_of_statements(dbapi: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prepared, "MAX_PER_SESSION", 2)
    with dbapi.cursor() as cur:
        for n in range(4):
            prepared.execute(cur, f"SELECT {n} + %(n)s::int", {"n": n})
            assert cur.fetchone() == (2 * n,)
        assert len(_prepared_in(cur)) == 2


def test_the_workers_sessions_plan_a_prepared_statement_once(dbapi: Any) -> None:
    prepared.generic_plans(dbapi)
    with dbapi.cursor() as cur:
        cur.execute("SHOW plan_cache_mode")
        assert cur.fetchone() == ("force_generic_plan",)
        sql = "SELECT count(*) FROM generate_series(1, %(n)s::int)"
        for n in range(1, 4):
            prepared.execute(cur, sql, {"n": n})
            assert cur.fetchone() == (n,)
        cur.execute("SELECT generic_plans, custom_plans FROM pg_prepared_statements")
        assert cur.fetchone() == (3, 0)
