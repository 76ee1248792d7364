"""Kernel-side helpers of the runbook notebooks: setup, gluing the report, tables for display.

The notebooks hold no business logic; each one starts with::

    from recovery_lib.options import RecoveryOptions
    from recovery_lib.runbook.kernel import setup_notebook
    setup_notebook()
    options = RecoveryOptions.validated(user_id=user_id, statuses=statuses, ...)

and, once its report exists, ``data = glue_report("recovery_report", report)``. The runner
builds the same options before it starts a kernel, so a bad parameter is refused by the CLI
(exit 2, nothing executed) and by the notebook itself when papermill is used directly.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import logging
import math
import sys
import uuid
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from recovery_lib.redact import SecretFilter


def setup_notebook(level: int = logging.INFO) -> None:
    """Configure a runbook kernel: archival plotly renderer, logging to stderr (password-scrubbed), pandas."""
    # plotly imports nbformat, which imports jsonschema, whose optional IRI format check builds a
    # grammar at import time: 1.6 s of every notebook's 2 s setup. Nothing in a kernel validates
    # an IRI (format checks run only when a FormatChecker is asked for), so it is not imported.
    sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]
    from recovery_lib.runbook import charts

    charts.setup_renderer()
    warnings.filterwarnings("ignore", message=".*IProgress not found.*")  # tqdm.auto without ipywidgets
    root = logging.getLogger()
    if not any(getattr(h, "_recovery_runbook", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handler.addFilter(SecretFilter())
        handler._recovery_runbook = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(level)
    try:
        import pandas as pd

        pd.set_option("display.max_rows", 200)
        pd.set_option("display.max_columns", 50)
        pd.set_option("display.width", 160)
    except ImportError:  # pragma: no cover - pandas is a dependency
        pass


# --- reports ------------------------------------------------------------------------------------


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON types: dict/list/str/int/float/bool/None (NaN and infinities -> None)."""
    if value is None or isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal):
        return jsonable(float(value))
    if isinstance(value, (uuid.UUID, Path)):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return jsonable(dataclasses.asdict(value))
    if hasattr(value, "item") and callable(value.item):  # numpy / pandas scalars
        try:
            return jsonable(value.item())
        except (TypeError, ValueError):
            pass
    if hasattr(value, "tolist") and callable(value.tolist):  # numpy arrays
        return jsonable(value.tolist())
    if value != value:  # pandas NA / NaT
        return None
    return str(value)


def glue_report(name: str, report: Any) -> dict[str, Any]:
    """Glue one plain JSON dict (the report) into the notebook with scrapbook and return it.

    ``report`` may be the dict from ``to_dict()`` or an object with ``to_dict()``. The dict is
    converted to native JSON types first (scrapbook on pandas 3 mangles NaN and numpy scalars).
    """
    import scrapbook as sb

    if hasattr(report, "to_dict") and callable(report.to_dict):
        report = report.to_dict()
    data = jsonable(report)
    if not isinstance(data, dict):
        raise TypeError(f"a report must be a dict, got {type(report).__name__}")
    sb.glue(name, data, encoder="json")
    return data


def frame(rows: Any, columns: list[str] | None = None) -> Any:
    """A DataFrame for display: of a list of dicts, a {key: dict} mapping, or {name: value} (one column).

    ``columns`` picks and orders columns (missing ones are left out); an empty input is fine.
    """
    import pandas as pd

    if isinstance(rows, Mapping) and rows and not any(isinstance(v, Mapping) for v in rows.values()):
        df = pd.DataFrame({"value": pd.Series(dict(rows), dtype=object)})
    elif isinstance(rows, Mapping):
        df = pd.DataFrame.from_dict(dict(rows), orient="index")
    else:
        df = pd.DataFrame(list(rows or []))
    if columns:
        df = df[[c for c in columns if c in df.columns]] if len(df) else pd.DataFrame(columns=columns)
    return df
