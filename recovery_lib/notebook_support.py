"""What the runbook notebooks share: parameter validation per notebook, setup, gluing the report.

The notebooks hold no business logic; each one calls, in its first code cell::

    from recovery_lib.notebook_support import setup_notebook, validate_parameters
    setup_notebook()
    params = validate_parameters("recover", user_id=user_id, statuses=statuses, ...)

and, once its report exists, ``data = glue_report("recovery_report", report.to_dict())``.
The runner (:mod:`recovery_lib.runner`) calls the same :func:`validate_parameters` before it
starts a kernel, so a bad parameter is refused twice: by the CLI (exit 2, nothing executed)
and by the notebook itself when papermill is used directly.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import logging
import math
import os
import sys
import uuid
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from recovery_lib import params as p
from recovery_lib.params import ParameterError

# The scrap each runbook notebook glues; the runner extracts it to <run>.json.
REPORT_SCRAPS: dict[str, str] = {
    "monitor": "monitoring_report",
    "preview": "preview_report",
    "recover": "recovery_report",
    "verify": "verification_report",
}
RUNBOOK_ORDER: tuple[str, ...] = ("monitor", "preview", "recover", "verify")
MIN_SECRET_LENGTH = 4  # shorter passwords are not scrubbed (see database_secrets)


# --- parameter validation -----------------------------------------------------------------------


def validate_monitor_params(
    hours: Any = 24,
    deep_check: Any = True,
    data_loss_critical_pct: Any = 10,
    data_loss_warning_pct: Any = 5,
    failure_critical_pct: Any = 20,
    failure_warning_pct: Any = 10,
    min_user_success_pct: Any = 80,
) -> dict[str, Any]:
    """The keyword arguments of ``monitor.build_monitoring_report``, validated by the monitor's own checks."""
    from recovery_lib import alerts

    thresholds = alerts.Thresholds.validated(
        data_loss_critical_pct=data_loss_critical_pct,
        data_loss_warning_pct=data_loss_warning_pct,
        failure_critical_pct=failure_critical_pct,
        failure_warning_pct=failure_warning_pct,
        min_user_success_pct=min_user_success_pct,
    )
    return {
        "hours": p.validate_hours(hours),
        "deep_check": p.validate_bool(deep_check, name="deep_check"),
        **thresholds.to_dict(),
    }


def validate_recover_params(
    user_id: Any = None,
    statuses: Any = ("error", "partial_success"),
    batch_size: Any = 100,
    verify: Any = True,
    max_concurrent_jobs: Any = 5,
    dry_run: Any = False,
) -> dict[str, Any]:
    """The keyword arguments of ``recovery.run_recovery``, validated by the recovery engine."""
    from recovery_lib import recovery

    options = recovery.validate_recovery_params(
        user_id=user_id,
        statuses=statuses,
        batch_size=batch_size,
        verify=verify,
        max_concurrent_jobs=max_concurrent_jobs,
        dry_run=dry_run,
    )
    return {
        "user_id": options.user_id,
        "statuses": list(options.statuses),
        "batch_size": options.batch_size,
        "verify": options.verify,
        "max_concurrent_jobs": options.max_concurrent_jobs,
        "dry_run": options.dry_run,
    }


def validate_preview_params(
    user_id: Any = None,
    statuses: Any = ("error", "partial_success"),
    batch_size: Any = 100,
    verify: Any = True,
    max_concurrent_jobs: Any = 5,
) -> dict[str, Any]:
    """The keyword arguments of ``recovery.preview`` (a dry run: never writes), validated."""
    checked = validate_recover_params(user_id, statuses, batch_size, verify, max_concurrent_jobs, True)
    checked.pop("dry_run", None)
    return checked


def validate_verify_params(since: Any = "24h", user_id: Any = None) -> dict[str, Any]:
    """The keyword arguments of ``verification.verify``: ``since`` becomes a UTC datetime."""
    return {"since": p.validate_since(since), "user_id": p.validate_user_id(user_id)}


VALIDATORS: dict[str, Callable[..., dict[str, Any]]] = {
    "monitor": validate_monitor_params,
    "preview": validate_preview_params,
    "recover": validate_recover_params,
    "verify": validate_verify_params,
}


def validate_parameters(notebook: str, **values: Any) -> dict[str, Any]:
    """Validate every parameter of a runbook notebook; raise :class:`ParameterError` on the first bad one.

    Unknown names are refused too (papermill itself only warns about them).
    """
    validator = VALIDATORS.get(notebook)
    if validator is None:
        raise ParameterError(f"unknown notebook {notebook!r}; runbook notebooks: {', '.join(VALIDATORS)}")
    known = validator.__code__.co_varnames[: validator.__code__.co_argcount]
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ParameterError(
            f"unknown parameter {', '.join(unknown)} for {notebook}; known: {', '.join(known)}"
        )
    return validator(**values)


# --- kernel setup -------------------------------------------------------------------------------


class SecretFilter(logging.Filter):
    """Replace the database password in every log record (defence in depth: it should never be there)."""

    def filter(self, record: logging.LogRecord) -> bool:
        secrets = database_secrets()
        if secrets:
            message = record.getMessage()
            clean = scrub_text(message, secrets)
            if clean != message:
                record.msg, record.args = clean, None
        return True


def database_secrets(url: str | None = None) -> list[str]:
    """The password of ``url`` (default ``DATABASE_URL``), raw and URL-quoted; empty when there is none."""
    from urllib.parse import quote, quote_plus

    from sqlalchemy.engine import make_url

    text = url if url is not None else os.environ.get("DATABASE_URL", "")
    if not text.strip():
        return []
    try:
        password = make_url(text.strip()).password
    except Exception:  # noqa: BLE001 - an unparseable URL: nothing reliable to scrub
        return []
    if not password or len(str(password)) < MIN_SECRET_LENGTH:
        # Scrubbing a one- to three-character string would mangle every output it occurs in.
        return []
    forms = {str(password), quote(str(password), safe=""), quote_plus(str(password))}
    return sorted(forms, key=len, reverse=True)


def scrub_value(value: Any, secrets: list[str]) -> Any:
    """``value`` (JSON-like: dicts, lists, strings) with every secret in every string replaced by ``***``."""
    if isinstance(value, str):
        return scrub_text(value, secrets)
    if isinstance(value, dict):
        return {scrub_text(str(k), secrets): scrub_value(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub_value(v, secrets) for v in value]
    return value


def scrub_text(text: str, secrets: list[str] | None = None) -> str:
    """``text`` with every secret replaced by ``***``."""
    for secret in database_secrets() if secrets is None else secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def setup_notebook(level: int = logging.INFO) -> None:
    """Configure a runbook kernel: archival plotly renderer, logging to stderr (password-scrubbed), pandas."""
    from recovery_lib import charts

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
