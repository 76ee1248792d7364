"""The catalogue's vocabulary: what a table, a field, a metric and a data array are, as data.

Every entry of the catalogue is built from these frozen records; nothing here knows a metric.

    >>> f = number("qty", "step_count", (0, 1e7))
    >>> f.column, f.required
    ('step_count', True)
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Column types of this project's own schema (the target database's may differ; see issue 13). BOOL holds
# the yes/no fields of the API's internal form (catalogue/internal.py); no Health Auto Export field has one.
FLOAT, TEXT, TIMESTAMP, JSON, BOOL = "float", "text", "timestamp", "json", "bool"


@dataclass(frozen=True)
class Field:
    """One value of a point: the first of ``keys`` present (not null) fills ``column``.

    Numbers (``type`` float) are checked against ``limits`` in the column's ``unit``; with a unit
    ``kind`` that converts (length, energy, ...) the value is converted from the metric's or the
    point's own units (``default_units`` when neither says). Texts are kept when they are strings.
    JSON fields are kept whole (an ECG's voltage samples) and counted.
    """

    keys: tuple[str, ...]
    column: str
    type: str = FLOAT
    limits: tuple[float, float] = (float("-inf"), float("inf"))
    required: bool = True
    kind: str | None = None  # a unit kind of catalogue.units that converts; None: units are not read
    unit: str | None = None  # the column's unit within ``kind``
    default_units: str | None = None  # assumed when neither the metric nor the point gives units
    zero_is_absent: bool = False  # exporters write 0 for "no data" (a workout's heart rate without a watch)

    @property
    def converts(self) -> bool:
        return self.kind is not None


def number(key: str | tuple[str, ...], column: str, limits: tuple[float, float], *, required: bool = True,
           kind: str | None = None, unit: str | None = None, default: str | None = None,
           zero_is_absent: bool = False) -> Field:
    """A numeric field; with ``kind`` its values are converted to ``unit`` (the default units, if not given)."""
    keys = (key,) if isinstance(key, str) else key
    return Field(keys, column, FLOAT, (float(limits[0]), float(limits[1])), required, kind, unit,
                 default or unit, zero_is_absent)


def text(key: str | tuple[str, ...], column: str, *, required: bool = False) -> Field:
    """A free-text field (a meal time, a stage, a classification): kept when a string."""
    return Field((key,) if isinstance(key, str) else key, column, TEXT, required=required)


def blob(key: str, column: str) -> Field:
    """A JSON value kept whole (voltage samples, labels, codings)."""
    return Field((key,), column, JSON, required=False)


@dataclass(frozen=True)
class Column:
    """A column a table holds besides the fields its metrics fill (sleep's end, a workout's type)."""

    name: str
    type: str = FLOAT


@dataclass(frozen=True)
class TableSpec:
    """One table of this project's schema.

    Natural key: ``(user_id, key)``, or ``(user_id, key, tag)`` when points of one instant differ
    by a tag (a symptom's name, an unknown metric's name, the workout a sample belongs to).
    ``columns`` are the columns a converter fills (sleep, workouts, the generic table); the columns
    the metrics and arrays fill come from their fields, in catalogue order, then ``source_device``.
    """

    name: str
    family: str
    key: str = "recorded_at"
    tag: str | None = None
    tag_type: str = TEXT
    columns: tuple[Column, ...] = ()
    chunk_env: str | None = None  # the BATCH_*_CHUNK_SIZE variable (derived from the name when None)

    @property
    def chunk_variable(self) -> str:
        if self.chunk_env:
            return self.chunk_env
        return f"BATCH_{self.name.removesuffix('_metrics').upper()}_CHUNK_SIZE"


@dataclass(frozen=True)
class MetricSpec:
    """One metric name of ``data.metrics`` and how its points become rows of ``table``.

    ``shape``: ``simple`` (fields read from the point), ``sleep`` (the sleep converter), or
    ``generic`` (an unknown name, stored in ``other_metrics``).
    """

    name: str
    table: str
    fields: tuple[Field, ...] = ()
    shape: str = "simple"
    aliases: tuple[str, ...] = ()
    note: str = ""

    @property
    def uses_units(self) -> bool:
        return self.shape == "sleep" or any(f.converts for f in self.fields)

    @property
    def numeric_only(self) -> bool:
        """Only numbers (no text or JSON field): what the SQL fast path can take."""
        return self.shape == "simple" and all(f.type == FLOAT for f in self.fields)


@dataclass(frozen=True)
class ArraySpec:
    """A data array beside ``metrics`` (``stateOfMind``, ``symptoms``, ``ecg``, ...): one row per entry.

    ``key`` names the entry's date field; ``tag_key`` the field completing the natural key.
    ``dispatch`` (cycle tracking): the entry's ``name`` picks the table and column its ``value`` fills.
    """

    name: str
    table: str | None
    key: tuple[str, ...] = ("start",)
    tag_key: str | None = None
    fields: tuple[Field, ...] = ()
    dates: tuple[tuple[str, str], ...] = ()  # (entry field, column) of further dates (an end)
    dispatch: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (table, column)
    note: str = ""
