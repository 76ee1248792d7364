"""On the Health Export API's own database, ``db init`` adds a schema of its own and nothing else.

The API's tables (our DDL of a subset of its ``database/schema.sql``: tests/api_metric_schema.py)
keep every definition: columns, constraints, indexes, triggers, enum types, compared in
pg_catalog before and after. The tool's bookkeeping goes into the schema ``recovery`` and is found
there through the session's ``search_path``; the catalogue is mapped onto what the API has (its
``workouts`` is the catalogue's ``workout_metrics``) and what it lacks is ``unsupported_by_schema``.
On this project's own database nothing changes: everything stays in ``public``.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from api_metric_schema import catalog_definitions, create_api_database, drop_api_database

from recovery_lib import db, schema, target
from recovery_lib.schema import METRIC_TABLES


@pytest.fixture()
def api_engine(engine):
    create_api_database(engine)
    yield engine
    drop_api_database(engine)


def _schemas_of(engine, names):
    with engine.connect() as conn:
        return dict(conn.execute(sa.text(
            "SELECT tablename, schemaname FROM pg_tables WHERE tablename = ANY(:n)"), {"n": list(names)}).all())


def test_db_init_on_the_api_database_creates_its_own_schema_and_nothing_else(api_engine):
    before = catalog_definitions(api_engine)

    created = schema.init_db(api_engine)
    again = schema.init_db(api_engine)

    assert created == ["recovery.recovery_log", "recovery.reconciliation_cache", "recovery.constraint_rejections"]
    assert again == []
    assert catalog_definitions(api_engine) == before  # no table, column, constraint, index, trigger, enum added
    assert _schemas_of(api_engine, ("recovery_log", "reconciliation_cache")) == {
        "recovery_log": "recovery", "reconciliation_cache": "recovery"}


def test_the_bookkeeping_is_found_in_its_schema_by_every_new_connection(api_engine):
    schema.init_db(api_engine)
    fresh = sa.create_engine(api_engine.url)  # not from the cache: the search path is set on connect
    sa.event.listen(fresh, "connect", db._bookkeeping_first)
    try:
        with fresh.begin() as conn:
            def schema_of(name: str) -> str:
                return conn.execute(sa.text("SELECT relnamespace::regnamespace::text FROM pg_class "
                                            "WHERE oid = to_regclass(:n)"), {"n": name}).scalar()

            assert schema_of("recovery_log") == "recovery" and schema_of("constraint_rejections") == "recovery"
            assert schema_of("heart_rate_metrics") == "public"
    finally:
        fresh.dispose()


def test_the_catalogue_is_mapped_onto_the_api_tables_and_what_they_lack_is_named(api_engine):
    schema.init_db(api_engine)
    with api_engine.connect() as conn:
        fit = target.inspect(conn)

    found = fit.to_dict()
    assert found["existing_database"] is True and found["bookkeeping_schema"] == "recovery"
    assert found["tables"]["workout_metrics"] == "workouts"
    assert found["tables"]["heart_rate_metrics"] == "heart_rate_metrics"
    assert found["tables"]["other_metrics"] is None  # the API has no table for unknown metrics
    unsupported = {(u["table"], u["field"]) for u in found["unsupported_by_schema"]}
    assert {("heart_rate_metrics", "heart_rate_min"), ("heart_rate_metrics", "heart_rate_max"),
            ("activity_metrics", "apple_stand_hours"), ("other_metrics", None)} <= unsupported
    assert ("heart_rate_metrics", "heart_rate") not in unsupported
    by_field = {(u["table"], u["field"]): u["metrics"] for u in found["unsupported_by_schema"]}
    assert by_field[("heart_rate_metrics", "heart_rate_min")] == ["heart_rate"]  # per metric
    assert ("workout_metrics", "workout_type") not in unsupported
    assert all(u["category"] == "unsupported_by_schema" for u in found["unsupported_by_schema"])


def test_on_this_projects_own_database_everything_stays_in_public_and_nothing_is_unsupported(engine):
    assert schema.init_db(engine) == []
    with engine.connect() as conn:
        fit = target.inspect(conn)
        assert not schema.is_existing_database(conn)
    assert fit.unsupported() == [] and fit.bookkeeping_schema == "public"
    assert set(_schemas_of(engine, ["recovery_log", *METRIC_TABLES]).values()) == {"public"}
