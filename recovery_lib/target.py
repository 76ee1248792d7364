"""The target database: whose it is, where this tool's bookkeeping lives, and what of the catalogue it can hold.

Two kinds of database:

* **this project's own** (empty, or made by ``db init``): every table in ``public``, as always;
* **an existing one** (the Health Export API's own database): its metric tables were there
  before this tool, and none of its bookkeeping is in ``public``. ``db init`` then creates the
  schema :data:`BOOKKEEPING_SCHEMA` with ``recovery_log``, ``reconciliation_cache`` and
  ``constraint_rejections`` in it, and nothing else: the API's tables keep their definitions.
  Every connection puts that schema first in its ``search_path`` (:mod:`recovery_lib.db`), so
  the bookkeeping resolves there and the API's tables in ``public``.

:func:`inspect` maps each catalogue table and field to what the target has (the guide's names
and the API's both recognised: the API's ``workouts`` is the catalogue's ``workout_metrics``)
and names each one the target cannot hold as ``unsupported_by_schema``.

    >>> fit = inspect(conn)
    >>> fit.unsupported()[0]["table"], fit.unsupported()[0]["field"], fit.unsupported()[0]["metrics"]
    ('heart_rate_metrics', 'heart_rate_min', ['heart_rate'])
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy.engine import Connection

from recovery_lib import catalogue, schema
from recovery_lib.db import run
from recovery_lib.schema import API_NAMES, BOOKKEEPING_SCHEMA, is_existing_database

UNSUPPORTED = "unsupported_by_schema"


@dataclass
class TableFit:
    """One catalogue table on the target: the table that holds it (None: none) and the fields it lacks."""

    target: str | None
    missing: list[str] = field(default_factory=list)


@dataclass
class Fit:
    """What the target can hold of the catalogue, and where the bookkeeping is."""

    existing_database: bool  # made by someone else (the API): this tool adds only its own schema
    bookkeeping_schema: str
    tables: dict[str, TableFit]

    def unsupported(self) -> list[dict[str, Any]]:
        """Every catalogue table or field the target cannot hold (a table: ``field`` None), with the metrics
        (``data.metrics`` names) whose points would go there."""
        found = []
        for name, fit in self.tables.items():
            if fit.target is None:
                found.append({"category": UNSUPPORTED, "table": name, "field": None, "metrics": _metrics_of(name)})
            found += [{"category": UNSUPPORTED, "table": name, "field": column, "metrics": _metrics_of(name, column)}
                      for column in fit.missing]
        return found

    def to_dict(self) -> dict[str, Any]:
        return {
            "existing_database": self.existing_database,
            "bookkeeping_schema": self.bookkeeping_schema,
            "tables": {name: fit.target for name, fit in self.tables.items()},
            "unsupported_by_schema": self.unsupported(),
        }


def _metrics_of(table: str, column: str | None = None) -> list[str]:
    """The catalogue metrics that fill ``table`` (or its ``column``)."""
    return sorted(spec.name for spec in catalogue.METRICS.values() if spec.table == table and (
        column is None or any(f.column == column for f in spec.fields)))


def _enums(conn: Connection) -> dict[tuple[str, str], str]:
    """``(table, column) -> enum type`` of the columns in ``public`` typed by an enum."""
    rows = run(
        conn,
        "SELECT c.relname, a.attname, format_type(a.atttypid, NULL) FROM pg_attribute a "
        "JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
        "JOIN pg_type t ON t.oid = a.atttypid WHERE n.nspname = 'public' AND t.typtype = 'e' AND a.attnum > 0",
    ).all()
    return {(table, column): kind for table, column, kind in rows}


def bind(conn: Connection) -> Fit:
    """Inspect the target and point every module at what it has (the catalogue's own tables on this project's).

    On an existing database a table the target lacks is absent (its points are unsupported), a
    field it lacks is dropped (and named), the API's names are used in SQL, enum columns are cast.
    """
    fit = inspect(conn)
    if not fit.existing_database:
        schema.bind_metric_tables(None)
        return fit
    enums = _enums(conn)
    bound = {}
    for name, table in schema.CATALOGUE_TABLES.items():
        found = fit.tables[name]
        if found.target is None:
            bound[name] = replace(table, present=False, values=())
            continue
        values = tuple(c for c in table.values if c not in found.missing)
        casts = tuple((c, enums[(found.target, c)]) for c in values if (found.target, c) in enums)
        bound[name] = replace(table, values=values, relation=found.target, casts=casts)
    schema.bind_metric_tables(bound)
    return fit


def _columns(conn: Connection, namespace: str) -> dict[str, set[str]]:
    rows = run(
        conn,
        "SELECT c.relname, a.attname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped "
        "WHERE n.nspname = %(schema)s AND c.relkind IN ('r', 'p')",
        {"schema": namespace},
    ).all()
    found: dict[str, set[str]] = {}
    for table, column in rows:
        found.setdefault(table, set()).add(column)
    return found


def inspect(conn: Connection) -> Fit:
    """Map the catalogue onto the target's tables and columns (read-only)."""
    public = _columns(conn, "public")
    existing = is_existing_database(conn)  # schema.py's: init_db decides by it too
    tables = {}
    for name, table in schema.CATALOGUE_TABLES.items():
        target = next((n for n in (name, API_NAMES.get(name)) if n and n in public), None)
        key = set(table.natural_key) | {"user_id"}
        if target is None or not key <= public[target]:
            tables[name] = TableFit(None)  # no table, or one whose natural key is not the catalogue's
            continue
        tables[name] = TableFit(target, [c for c in table.values if c not in public[target]])
    return Fit(existing, BOOKKEEPING_SCHEMA if existing else "public", tables)


def target_line(data: dict[str, Any] | None) -> str:
    """``; target lacks 3 tables and 4 fields ...`` from a report's ``target`` section, or ''."""
    unsupported = (data or {}).get("unsupported_by_schema") or []
    if not unsupported:
        return ""
    tables = sum(1 for u in unsupported if u.get("field") is None)
    return f"; target lacks {tables} tables and {len(unsupported) - tables} fields of the catalogue ({UNSUPPORTED})"
