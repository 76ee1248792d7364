"""Chunk sizes under PostgreSQL's bind-parameter limit: how many rows one statement may carry.

PostgreSQL refuses a statement with more than 65,535 bind parameters; the original API built one
multi-row INSERT per payload and lost every large payload. Each table here gets a chunk size
derived from its parameters per row, configurable through the environment and validated.

    >>> config = BatchConfig.from_env()
    >>> config.validate()                     # raises BatchConfigError naming the table
    >>> config.params_per_row("heart_rate_metrics")
    8

The statements that use these sizes (multi-row INSERT, COPY staging, the merge) are in
:mod:`recovery_lib.store.metric_rows`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from recovery_lib.catalogue.tables import TABLES
from recovery_lib.errors import BatchConfigError
from recovery_lib.schema import METRIC_TABLES

PG_MAX_PARAMS = 65_535
SAFETY_MARGIN = 0.9  # headroom for the few statement-level parameters and future columns

# The variable that sets each table's chunk size (the incident guide's five names, then BATCH_<TABLE>_...).
ENV_VARS: dict[str, str] = {name: spec.chunk_variable for name, spec in TABLES.items()}


@dataclass(frozen=True)
class BatchConfig:
    """Rows per statement for each metric table."""

    chunk_sizes: Mapping[str, int] = field(default_factory=dict)

    @staticmethod
    def params_per_row(table: str) -> int:
        """Bind parameters one row needs in a multi-row INSERT (every column the payload can fill)."""
        return len(METRIC_TABLES[table].columns)

    @classmethod
    def max_chunk_size(cls, table: str) -> int:
        """The largest chunk that stays under the limit: 65,535 // params per row."""
        return PG_MAX_PARAMS // cls.params_per_row(table)

    @classmethod
    def default_chunk_size(cls, table: str) -> int:
        return math.floor(cls.max_chunk_size(table) * SAFETY_MARGIN)

    @classmethod
    def default(cls) -> BatchConfig:
        return cls({table: cls.default_chunk_size(table) for table in METRIC_TABLES})

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> BatchConfig:
        """Defaults, overridden by ``BATCH_<TABLE>_CHUNK_SIZE`` variables (validated by :meth:`validate`)."""
        env = os.environ if env is None else env
        sizes: dict[str, Any] = {}
        for table, var in ENV_VARS.items():
            raw = env.get(var, "").strip()
            if not raw:
                sizes[table] = cls.default_chunk_size(table)
                continue
            try:
                sizes[table] = int(raw)
            except ValueError:
                raise BatchConfigError(
                    f"Invalid batch configuration: {var}={raw!r} is not a whole number "
                    f"(allowed: 1 to {cls.max_chunk_size(table)} for {table})"
                ) from None
        return cls(sizes)

    def chunk_size(self, table: str) -> int:
        return int(self.chunk_sizes.get(table, self.default_chunk_size(table)))

    def problems(self) -> list[str]:
        found = []
        for table in METRIC_TABLES:
            size, per_row, limit = self.chunk_size(table), self.params_per_row(table), self.max_chunk_size(table)
            if size < 1:
                found.append(f"{table}: chunk size {size} ({ENV_VARS[table]}) must be at least 1")
            elif size * per_row > PG_MAX_PARAMS:
                found.append(
                    f"{table}: chunk size {size} ({ENV_VARS[table]}) x {per_row} params per row = "
                    f"{size * per_row} parameters, "
                    f"over PostgreSQL's maximum of {PG_MAX_PARAMS} (largest allowed chunk: {limit})"
                )
        return found

    def validate(self) -> BatchConfig:
        """Return self, or raise ``BatchConfigError('Invalid batch configuration: ...')``."""
        found = self.problems()
        if found:
            raise BatchConfigError("Invalid batch configuration: " + "; ".join(found))
        return self

    def to_dict(self) -> dict[str, int]:
        return {table: self.chunk_size(table) for table in METRIC_TABLES}


def chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    """``chunks([1, 2, 3], 2)`` -> ``[1, 2]``, ``[3]``."""
    for start in range(0, len(items), size):
        yield items[start : start + size]
