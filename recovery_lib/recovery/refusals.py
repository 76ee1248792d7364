"""Rows the target refuses (a CHECK, an integer range, an enum value, NOT NULL): found by bisection, named.

A table's merge runs under a savepoint. When the target refuses it (SQLSTATE class 22, a value
its column type cannot take, or 23, a constraint), :class:`Search` rolls back and bisects the
table's keys: each half is merged under its own savepoint, a half that fails is split again,
until one key is left; that key's points are then merged one by one in payload order (the
first value still wins), and each point the target refuses becomes a :class:`Refusal`. So a
refused row costs about ``2 log2 n`` statements, not one statement per row, and every row the
target accepts lands. ``statements`` counts the merges tried after the first refusal.

A refusal names the table, the constraint (its name; ``not_null (column)``; or the condition and
the point's columns for a value its type refuses, ``numeric_value_out_of_range (steps)``), the
metric and the point's index: never the value (PostgreSQL's message may quote it, so it is not
kept).

    >>> search = Search(cursor, "heart_rate_metrics")
    >>> inserted, filled = search.merge(keys, merge_range, points_at, merge_point)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from psycopg2 import errorcodes

from recovery_lib.accounting import CONSTRAINT_VIOLATION
from recovery_lib.schema import METRIC_TABLES

REFUSED_SQLSTATE_CLASSES = ("22", "23")
NOT_NULL = "23502"
INVALID_TEXT = "22P02"  # invalid_text_representation: an enum's unknown label, among others
CATEGORY = CONSTRAINT_VIOLATION
Counts = tuple[int, int]  # rows inserted, rows filled
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Point:
    """One point of a key, as the search tries it: ``ref`` is the write path's own handle (a seq, a row)."""

    ref: Any
    metric: str
    index: int
    columns: tuple[str, ...]  # the checked columns it fills


@dataclass(frozen=True, slots=True)
class Refusal:
    """One point the target refused. ``key`` is kept for the books (reconciliation), not reported."""

    table: str
    constraint: str
    metric: str
    index: int
    key: Any
    columns: tuple[str, ...]
    whole_row: bool  # no point of its key was written

    def to_dict(self) -> dict[str, object]:
        return {"category": CATEGORY, "table": self.table, "constraint": self.constraint, "metric": self.metric,
                "index": self.index}


def is_refusal(exc: BaseException) -> bool:
    """A database error by which the target refuses a row (not a lost connection, not a bug)."""
    code = getattr(exc, "pgcode", None) or ""
    return code[:2] in REFUSED_SQLSTATE_CLASSES


def constraint_name(exc: BaseException, columns: Sequence[str], enums: Sequence[str] = ()) -> str:
    """What refused the point, from the error's fields (never its message, which may quote the value).

    ``enums``: the table's enum columns; a label an enum lacks names those the point fills.
    """
    diag = getattr(exc, "diag", None)
    code = getattr(exc, "pgcode", None) or ""
    if code == INVALID_TEXT and any(c in enums for c in columns):
        columns = [c for c in columns if c in enums]
    if code == NOT_NULL and getattr(diag, "column_name", None):
        return f"not_null ({diag.column_name})"
    if getattr(diag, "constraint_name", None):
        return str(diag.constraint_name)
    condition = (errorcodes.lookup(code) if code else "refused").lower()
    return f"{condition} ({', '.join(columns)})" if columns else condition


_REFUSED = RuntimeError("the merge of all keys was refused")  # stands for the caller's refused first merge


@dataclass
class Search:
    """The merges of one table under savepoints, and the refusals found (see the module docstring)."""

    cursor: Any
    table: str
    refusals: list[Refusal] = field(default_factory=list)
    statements: int = 0  # merges tried after the first refusal
    whole_keys: list[Any] = field(default_factory=list)  # keys none of whose points was written

    def attempt(self, work: Callable[[], T]) -> T | BaseException:
        """``work()`` under a savepoint; the target's refusal (rolled back) instead of its result."""
        self.cursor.execute("SAVEPOINT refusal_search")
        try:
            counts = work()
        except Exception as exc:
            if not is_refusal(exc):
                raise
            self.cursor.execute("ROLLBACK TO SAVEPOINT refusal_search")
            return exc
        self.cursor.execute("RELEASE SAVEPOINT refusal_search")
        return counts

    def merge(
        self, size: int, merge_range: Callable[[int, int], Counts], points_at: Callable[[int], list[tuple[Any, Point]]],
        merge_point: Callable[[Point], Counts], *, refused_whole: bool = False,
    ) -> Counts:
        """Merge keys ``0 .. size-1`` (in the write path's order); what the target refuses is left out and named.

        ``merge_range(lo, n)`` merges ``n`` keys from ``lo``; ``points_at(i)`` lists key ``i``'s points
        as ``(key, Point)`` in payload order; ``merge_point`` merges one point alone.
        ``refused_whole``: the caller's own merge of all keys was just refused (:meth:`attempt`): split at once.
        """
        inserted = filled = 0
        pending = [(0, size)] if size else []
        first = True
        while pending:
            lo, n = pending.pop()
            if first and refused_whole:
                got: Counts | BaseException = _REFUSED
            else:
                got = self.attempt(lambda lo=lo, n=n: merge_range(lo, n))
                self.statements += 0 if first else 1
            first = False
            if not isinstance(got, BaseException):
                inserted, filled = inserted + got[0], filled + got[1]
            elif n == 1:
                more = self._split_key(points_at(lo), merge_point)
                inserted, filled = inserted + more[0], filled + more[1]
            else:
                half = n // 2
                pending += [(lo + half, n - half), (lo, half)]  # the lower half is tried first
        return inserted, filled

    def _split_key(self, points: list[tuple[Any, Point]], merge_point: Callable[[Point], Counts]) -> Counts:
        inserted = filled = 0
        refused: list[tuple[Any, Point, BaseException]] = []
        for key, point in points:
            got = self.attempt(lambda point=point: merge_point(point))
            self.statements += 1
            if isinstance(got, BaseException):
                refused.append((key, point, got))
            else:
                inserted, filled = inserted + got[0], filled + got[1]
        whole = len(refused) == len(points)
        enums = [column for column, _ in METRIC_TABLES[self.table].casts]
        for key, point, exc in refused:
            self.refusals.append(Refusal(self.table, constraint_name(exc, point.columns, enums), point.metric,
                                         point.index, key, point.columns, whole))
        if whole and points:
            self.whole_keys.append(points[0][0])
        return inserted, filled
