"""Value validators: one rule per kind of parameter (a UUID, statuses, a count, a percentage, a time).

Papermill passes parameters as given (an unknown ``-p`` name is only a warning, dates arrive as
strings), so every value is checked here before anything touches the database;
:mod:`recovery_lib.options` composes these into the options of each run.

    >>> validate_user_id("550e8400-e29b-41d4-a716-446655440000")
    '550e8400-e29b-41d4-a716-446655440000'
    >>> validate_batch_size(0)
    Traceback (most recent call last):
    ...
    recovery_lib.errors.ParameterError: batch_size must be a whole number from 1 to 10000, got 0
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from recovery_lib.errors import ParameterError
from recovery_lib.schema import STATUSES

__all__ = [
    "ParameterError",
    "parse_instant",
    "validate_batch_size",
    "validate_bool",
    "validate_folder",
    "validate_hours",
    "validate_max_concurrent_jobs",
    "validate_percent",
    "validate_preview_report",
    "validate_since",
    "validate_statuses",
    "validate_user_id",
    "validate_weeks",
    "validate_run_id",
]

MAX_BATCH_SIZE = 10_000
MAX_CONCURRENT_JOBS = 64
MAX_HOURS = 24 * 366
MAX_WEEKS = 520  # ten years of weekly reviews


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def validate_user_id(value: Any, *, name: str = "user_id") -> str | None:
    """A canonical lower-case UUID string, or None for 'all users'."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "all")):
        return None
    try:
        return str(uuid.UUID(str(value).strip()))
    except (ValueError, AttributeError, TypeError):
        raise ParameterError(
            f"{name} must be a UUID like 550e8400-e29b-41d4-a716-446655440000 (or None for all users), "
            f"got {_shown(value)}"
        ) from None


_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}")


def validate_worker(value: Any, *, name: str = "worker") -> str | None:
    """A short label (letters, digits, ``_.-``, at most 32) naming one of several runs, or None."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none")):
        return None
    text = str(value).strip() if isinstance(value, (str, int)) and not isinstance(value, bool) else None
    if text is None or not _LABEL.fullmatch(text):
        raise ParameterError(
            f"{name} must be a short label like w2 (letters, digits, '_', '.', '-'; at most 32), got {_shown(value)}"
        )
    return text


def validate_statuses(value: Any, *, name: str = "statuses") -> list[str]:
    """A non-empty list of known processing statuses; accepts a list, JSON list or comma list."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except ValueError:
                raise ParameterError(f"{name} must be a list of statuses, got {_shown(value)}") from None
        else:
            value = [part.strip() for part in text.split(",") if part.strip()]
    if not isinstance(value, Iterable) or isinstance(value, (bytes, dict)):
        raise ParameterError(f"{name} must be a list of statuses from {', '.join(STATUSES)}")
    statuses = [str(v).strip() for v in value]
    unknown = [s for s in statuses if s not in STATUSES]
    if unknown or not statuses:
        raise ParameterError(
            f"{name} must be one or more of {', '.join(STATUSES)}; "
            + (f"unknown: {', '.join(_shown(u) for u in unknown)}" if unknown else "got an empty list")
        )
    return list(dict.fromkeys(statuses))


def _whole_number(value: Any, name: str, low: int, high: int) -> int:
    if isinstance(value, bool):
        raise ParameterError(f"{name} must be a whole number from {low} to {high}, got {_shown(value)}")
    try:
        number = int(str(value).strip()) if not isinstance(value, int) else value
    except ValueError:
        raise ParameterError(f"{name} must be a whole number from {low} to {high}, got {_shown(value)}") from None
    if isinstance(value, float) and not value.is_integer():
        raise ParameterError(f"{name} must be a whole number from {low} to {high}, got {_shown(value)}")
    if not low <= number <= high:
        raise ParameterError(f"{name} must be a whole number from {low} to {high}, got {number}")
    return number


def validate_batch_size(value: Any, *, name: str = "batch_size") -> int:
    """Ingestions fetched per round: 1 to 10,000."""
    return _whole_number(value, name, 1, MAX_BATCH_SIZE)


def validate_max_concurrent_jobs(value: Any, *, name: str = "max_concurrent_jobs") -> int:
    """Parallel recovery workers: 1 to 64."""
    return _whole_number(value, name, 1, MAX_CONCURRENT_JOBS)


MAX_FANOUT_WORKERS = 64


def validate_workers(value: Any, *, name: str = "workers") -> int:
    """Recover notebooks run at once by a scheduler, on one host or many: 1 to 64."""
    return _whole_number(value, name, 1, MAX_FANOUT_WORKERS)


def validate_hours(value: Any, *, name: str = "hours") -> int:
    """A monitoring window in whole hours: 1 to 8784 (a leap year)."""
    return _whole_number(value, name, 1, MAX_HOURS)


_RUN_ID = re.compile(r"[0-9a-f]{8,64}")


def validate_run_id(value: Any, *, name: str = "run_id") -> str:
    """A recovery run's id (32 hex digits), or its first 8 or more digits as the CLI summary prints them."""
    text = str(value).strip().lower() if isinstance(value, str) else ""
    if not _RUN_ID.fullmatch(text):
        raise ParameterError(
            f"{name} must be a recovery run id: 8 to 64 hex digits like 9f2c41d07a3b4e5f (the 'run' of a "
            f"recover summary or report), got {_shown(value)}"
        )
    return text


def validate_weeks(value: Any, *, name: str = "weeks") -> int:
    """A review period in whole ISO weeks, the current one included: 1 to 520."""
    return _whole_number(value, name, 1, MAX_WEEKS)


def validate_folder(value: Any, *, name: str) -> str:
    """A folder as text: not empty, no NUL character (it need not exist yet)."""
    if not isinstance(value, (str, os.PathLike)) or not str(value).strip() or "\0" in str(value):
        raise ParameterError(f"{name} must be a folder path, got {_shown(value)}")
    return str(value).strip()


def validate_percent(value: Any, *, name: str) -> float:
    """A threshold in percent, 0 to 100."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ParameterError(f"{name} must be a percentage from 0 to 100, got {_shown(value)}") from None
    if not 0 <= number <= 100:
        raise ParameterError(f"{name} must be a percentage from 0 to 100, got {number:g}")
    return number


def validate_bool(value: Any, *, name: str) -> bool:
    """True/False, also from the strings papermill or a shell may pass."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise ParameterError(f"{name} must be True or False, got {_shown(value)}")


_DURATION = re.compile(r"^\s*(\d+)\s*(h|hours?|d|days?)\s*$", re.I)


def validate_since(value: Any, *, name: str = "since", now: datetime | None = None) -> datetime:
    """A UTC instant from an ISO-8601 date/time, a duration like ``24h`` / ``7d``, or hours as a number."""
    now = now or datetime.now(UTC)
    if value is None:
        return now - timedelta(hours=24)
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return now - timedelta(hours=validate_hours(value, name=name))
    text = str(value).strip()
    match = _DURATION.match(text)
    if match:
        amount = int(match.group(1)) * (24 if match.group(2).lower().startswith("d") else 1)
        return now - timedelta(hours=validate_hours(amount, name=name))
    parsed = parse_instant(text)
    if parsed is None:
        raise ParameterError(
            f"{name} must be an ISO date/time (2024-02-06 or 2024-02-06T14:30:00Z) or a duration like 24h or 7d, "
            f"got {_shown(value)}"
        )
    return parsed


def parse_instant(text: str) -> datetime | None:
    """An ISO-8601 date/time (``Z`` allowed; no zone means UTC), or None.

    >>> parse_instant("2024-02-06T14:30:00Z")
    datetime.datetime(2024, 2, 6, 14, 30, tzinfo=datetime.timezone.utc)
    """
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def validate_preview_report(value: Any, *, name: str = "preview_report") -> tuple[str, str, dict[str, str]] | None:
    """A preview's report file (the JSON a dry run writes): ``(path, run_id, {ingestion id: stored SHA-256})``.

    None for no report. The file must be a dry run's report whose ingestions carry the SHA-256 of
    the stored value the preview saw (``stored_sha256``); the ingestions it skipped are not pinned.
    """
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none")):
        return None
    path = str(value).strip() if isinstance(value, (str, os.PathLike)) else None
    if not path or "\0" in path:
        raise ParameterError(f"{name} must be the path of a preview's report (.json), got {_shown(value)}")
    try:
        with open(path, encoding="utf-8") as file:
            report = json.load(file)
    except OSError as exc:
        raise ParameterError(f"{name}: cannot read {path}: {exc.strerror or exc}") from None
    except ValueError:
        raise ParameterError(f"{name}: {path} is not JSON (a preview's report is)") from None
    entries = report.get("ingestions") if isinstance(report, dict) else None
    if not isinstance(report, dict) or report.get("dry_run") is not True or not isinstance(entries, list):
        raise ParameterError(f"{name}: {path} is not the report of a preview (a dry run's report with ingestions)")
    pins: dict[str, str] = {}
    for entry in entries:
        if not isinstance(entry, dict) or entry.get("outcome") == "skipped":
            continue
        ingestion = validate_user_id(entry.get("ingestion_id"), name=f"{name}: an ingestion_id")
        sha = entry.get("stored_sha256")
        if ingestion is None or not (isinstance(sha, str) and _SHA256.match(sha)):
            raise ParameterError(f"{name}: {path} has an ingestion without its id and stored_sha256 (a preview "
                                 "made before checksums were recorded? preview again)")
        pins[ingestion] = sha
    return path, str(report.get("run_id") or ""), pins
