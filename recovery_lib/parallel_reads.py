"""Stored rows read by helper sessions in parallel, each reading only the row version its caller listed.

A caller that listed ingestions (with their ``xmin`` as ``version``) and must now read each one
(parse its payload: Python and the server by turns) hands the reading to ``readers`` sessions of
its engine. Each reads in a snapshot of its own (REPEATABLE READ, READ ONLY) and takes only the
rows whose version there is the one listed: a row changed or deleted since, or not committed yet
(the caller's own transaction wrote it), is left to the caller, and so is everything after a
helper fails. Whatever is not in the result, the caller reads itself, in its own transaction.

    >>> found = read_listed(conn, rows, lambda c, row: expected_keys(c, row.id), readers=2, minimum=8)
    >>> [found.get(row.id) or expected_keys(conn, row.id) for row in rows]
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from sqlalchemy.engine import Connection

from recovery_lib.db import run

T = TypeVar("T")
_log = logging.getLogger(__name__)


def read_listed(
    conn: Connection, rows: Sequence[Any], read: Callable[[Connection, Any], T], *, readers: int, minimum: int,
) -> dict[str, T]:
    """``read(helper, row)`` per row (``row.id``, ``row.version``), keyed by id; {} below ``minimum`` rows."""
    if len(rows) < minimum or any(getattr(r, "version", None) is None for r in rows):
        return {}
    pending = list(reversed(rows))  # popped from the end: in the caller's order
    found: dict[str, T] = {}

    def work() -> None:
        try:
            with conn.engine.connect() as helper:
                run(helper, "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                versions = dict(run(helper, "SELECT id::text, xmin::text FROM raw_ingestions "
                                    "WHERE id = ANY(%(ids)s::uuid[])", {"ids": [r.id for r in rows]}).all())
                while True:
                    try:
                        row = pending.pop()
                    except IndexError:
                        return
                    if versions.get(row.id) == row.version:
                        found[row.id] = read(helper, row)
        except Exception:  # noqa: BLE001 - the caller reads what is left, and raises what it raises
            _log.debug("a helper session stopped reading", exc_info=True)

    threads = [threading.Thread(target=work, name=f"reader-{n}", daemon=True) for n in range(readers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return found
