"""Thresholds, alerts, per-user actions and recommendations of the processing monitor.

Pure functions over counts (no database): :mod:`recovery_lib.monitor.build` gathers the counts and
calls these, and the tests check every boundary here without a server.

Boundaries: a rate alert fires when the rate is **strictly greater** than its threshold (a data
loss rate of exactly 10% with a 10% critical threshold is a warning, not critical), and a user
needs action when their success rate is **strictly below** ``min_user_success_pct`` (exactly
80% with the default threshold is fine). Rates are compared as exact fractions, so 2 losses in
20 ingestions is exactly 10%, never 10.000000000000002%.

    >>> t = Thresholds.validated(data_loss_critical_pct=10)
    >>> [a.level for a in rate_alerts(t, losses=3, failures=0, non_pending=20)]
    ['critical']
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from fractions import Fraction
from typing import Any

from recovery_lib.options import Thresholds

__all__ = ["Alert", "Thresholds", "rate_alerts", "recommendations", "sort_alerts", "user_action", "user_alert"]

CRITICAL = "critical"
WARNING = "warning"
LEVELS = (CRITICAL, WARNING)

ACTION_HIGH = "HIGH: Schedule user recovery"
ACTION_MEDIUM = "MEDIUM: Monitor user"
ACTION_OK = "OK"
ACTION_ORDER = {ACTION_HIGH: 0, ACTION_MEDIUM: 1, ACTION_OK: 2}


@dataclass
class Alert:
    name: str  # 'data_loss_rate' | 'failure_rate' | 'user_needs_action'
    level: str  # 'critical' | 'warning'
    value: float  # the measured percentage
    threshold: float  # the percentage it was compared with
    message: str
    user_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if self.user_id is None:
            del data["user_id"]
        return data


def percent(part: int, whole: int) -> float:
    """``part`` of ``whole`` in percent, rounded to 4 decimals; 0.0 when ``whole`` is 0."""
    return round(100.0 * part / whole, 4) if whole else 0.0


def _exact(threshold: float) -> Fraction:
    # str() first: the threshold 10.1 means 10.1, not the nearest binary float.
    return Fraction(str(threshold))


def above(part: int, whole: int, threshold_pct: float) -> bool:
    """True when ``part / whole`` in percent is strictly greater than ``threshold_pct``."""
    return whole > 0 and Fraction(100 * part, whole) > _exact(threshold_pct)


def below(part: int, whole: int, threshold_pct: float) -> bool:
    """True when ``part / whole`` in percent is strictly less than ``threshold_pct``."""
    return whole > 0 and Fraction(100 * part, whole) < _exact(threshold_pct)


def _rate_alert(
    name: str, label: str, part: int, whole: int, critical: float, warning: float
) -> Alert | None:
    if above(part, whole, critical):
        level, threshold = CRITICAL, critical
    elif above(part, whole, warning):
        level, threshold = WARNING, warning
    else:
        return None
    value = percent(part, whole)
    return Alert(
        name,
        level,
        value,
        threshold,
        f"{label} rate {value:.2f}% ({part} of {whole} non-pending payloads) is above {threshold:g}%",
    )


def rate_alerts(t: Thresholds, *, losses: int | None, failures: int, non_pending: int) -> list[Alert]:
    """The data loss and failure rate alerts (at most one level each); ``losses`` None = not measured."""
    found = []
    if losses is not None:
        found.append(
            _rate_alert(
                "data_loss_rate",
                "Data loss",
                losses,
                non_pending,
                t.data_loss_critical_pct,
                t.data_loss_warning_pct,
            )
        )
    found.append(
        _rate_alert(
            "failure_rate",
            "Processing failure",
            failures,
            non_pending,
            t.failure_critical_pct,
            t.failure_warning_pct,
        )
    )
    return [a for a in found if a is not None]


def user_success(successes: int, non_pending: int) -> float | None:
    """A user's success rate in percent; None when none of their payloads was processed yet."""
    return percent(successes, non_pending) if non_pending else None


def user_action(*, failed: int, losses: int, successes: int, non_pending: int, t: Thresholds) -> str:
    """``HIGH`` when something failed or was lost and the success rate is below the threshold,
    ``MEDIUM`` when something failed or was lost, else ``OK``."""
    if failed or losses:
        return ACTION_HIGH if below(successes, non_pending, t.min_user_success_pct) else ACTION_MEDIUM
    return ACTION_OK


def user_alert(user_id: str, *, successes: int, non_pending: int, t: Thresholds) -> Alert | None:
    """A warning for a user whose success rate is strictly below ``min_user_success_pct``."""
    if not below(successes, non_pending, t.min_user_success_pct):
        return None
    value = percent(successes, non_pending)
    return Alert(
        "user_needs_action",
        WARNING,
        value,
        t.min_user_success_pct,
        f"User {user_id}: success rate {value:.2f}% ({successes} of {non_pending} non-pending payloads) "
        f"is below {t.min_user_success_pct:g}%",
        user_id=user_id,
    )


def sort_alerts(alerts: list[Alert]) -> list[Alert]:
    """Critical first, then by name and user."""
    return sorted(alerts, key=lambda a: (LEVELS.index(a.level), a.name, a.user_id or ""))


def _n(count: int, singular: str, plural: str | None = None) -> str:
    return f"{count:,} {singular if count == 1 else (plural or singular + 's')}"


def recommendations(
    *,
    hours: int,
    data_loss_detected: int | None,
    missing_metrics_total: int | None,
    error_patterns: dict[str, int],
    failed_processing: int,
    pending: int,
    recovery_failed: int,
    unparseable: int,
    users_needing_recovery: int,
    unrecoverable: int = 0,
) -> list[str]:
    """Plain sentences, each present exactly when its condition holds (see the code: one ``if`` each);
    ``"No action needed ..."`` alone when none holds."""
    found = []
    if data_loss_detected:
        found.append(
            f"Data loss detected in {_n(data_loss_detected, 'payload')} "
            f"({_n(missing_metrics_total or 0, 'metric row')} missing). Run data recovery immediately."
        )
    if error_patterns.get("parameter_limit"):
        found.append(
            "PostgreSQL parameter limit violations detected "
            f"({_n(error_patterns['parameter_limit'], 'case')}). Review batch chunk sizes."
        )
    if failed_processing:
        found.append(
            f"{_n(failed_processing, 'payload')} failed processing (status error or partial_success); "
            "preview and recover them (preview.ipynb, recover.ipynb)."
        )
    if users_needing_recovery:
        found.append(
            f"{_n(users_needing_recovery, 'user needs', 'users need')} a scheduled recovery "
            "(see USER IMPACT, action HIGH)."
        )
    if pending:
        found.append(
            f"{_n(pending, 'payload is', 'payloads are')} still pending processing; "
            "check that the ingestion worker is running."
        )
    if recovery_failed:
        found.append(
            f"{_n(recovery_failed, 'recovery', 'recoveries')} failed; "
            "inspect recovery_failed reasons in verify.ipynb."
        )
    if unparseable:
        found.append(
            f"{_n(unparseable, 'payload')} cannot be parsed at all: no automatic recovery is possible, "
            f"inspect {'it' if unparseable == 1 else 'them'} by hand."
        )
    if unrecoverable:
        found.append(
            f"{_n(unrecoverable, 'payload was', 'payloads were')} never stored (only a placeholder: the API keeps "
            "no body over 10 MiB) and not processed: not recoverable from this database; the client must resend "
            f"{'it' if unrecoverable == 1 else 'them'}."
        )
    if not found:
        if data_loss_detected is None:
            found.append(
                f"No action needed: no failures or pending payloads in the last {hours}h "
                "(data loss not measured: the deep check was off)."
            )
        else:
            found.append(
                f"No action needed: no data loss, failures or pending payloads in the last {hours}h."
            )
    return found
