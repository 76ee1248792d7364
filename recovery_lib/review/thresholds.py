"""How often each monitor alert threshold fired over the review period, and when to change one (pure).

Read from the archived monitor reports: each holds the ``thresholds`` it used, the ``alerts`` that
fired (``name``, ``level``) and the rates it measured. A threshold "fired" in a run when its alert
fired at its level or worse (a data loss rate above the critical threshold is above the warning
threshold too, though the monitor reports one alert per rate). Rates the run did not measure
(data loss with the deep check off) do not count.

Suggestions need at least :data:`MIN_RUNS` measuring runs: a threshold that never fired may be set
too loose, one that fired in every run too tight (or the cause is not fixed).

    >>> rows = threshold_usage([monitor_report, ...], weeks=4)
    >>> rows[0]["suggestion"]
    'data_loss_warning_pct (5%) never fired in 28 monitor runs over 4 weeks (highest data loss rate 1.2%): ...'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

MIN_RUNS = 3
ALERTS = ("data_loss_rate", "failure_rate", "user_needs_action")


@dataclass(frozen=True)
class Rule:
    threshold: str  # the monitor parameter
    alert: str  # the alert it decides
    levels: tuple[str, ...]  # the alert levels at which this threshold counts as crossed
    measure: str  # what the run measured, for the suggestion
    fires_when: str  # 'above' (rates) or 'below' (a user's success rate)


RULES = (
    Rule("data_loss_critical_pct", "data_loss_rate", ("critical",), "data loss rate", "above"),
    Rule("data_loss_warning_pct", "data_loss_rate", ("warning", "critical"), "data loss rate", "above"),
    Rule("failure_critical_pct", "failure_rate", ("critical",), "failure rate", "above"),
    Rule("failure_warning_pct", "failure_rate", ("warning", "critical"), "failure rate", "above"),
    Rule("min_user_success_pct", "user_needs_action", ("warning", "critical"), "user success rate", "below"),
)


def _measured(rule: Rule, report: Mapping[str, Any]) -> float | None:
    """The figure the rule compares in this run (None: not measured)."""
    if rule.alert == "data_loss_rate":
        value = report.get("data_loss_rate_pct")
    elif rule.alert == "failure_rate":
        value = report.get("failure_rate_pct") if report.get("non_pending") else None
    else:
        rates = [u.get("success_rate_pct") for u in report.get("user_impact") or [] if isinstance(u, Mapping)]
        rates = [r for r in rates if r is not None]
        value = min(rates) if rates else None
    return float(value) if isinstance(value, (int, float)) else None


def fired(rule: Rule, report: Mapping[str, Any]) -> bool:
    return any(
        isinstance(a, Mapping) and a.get("name") == rule.alert and a.get("level") in rule.levels
        for a in report.get("alerts") or []
    )


def alert_counts(report: Mapping[str, Any]) -> dict[str, int]:
    """Per alert name: 1 when it fired in this run (any level), else 0."""
    names = {a.get("name") for a in report.get("alerts") or [] if isinstance(a, Mapping)}
    return {name: int(name in names) for name in ALERTS}


def _suggestion(rule: Rule, value: float | None, runs: int, hits: int, seen: list[float], weeks: int) -> str | None:
    if runs < MIN_RUNS or value is None:
        return None
    period = f"{runs} monitor runs over {weeks} week{'s' if weeks != 1 else ''}"
    looser, tighter = ("lowering", "raising") if rule.fires_when == "above" else ("raising", "lowering")
    if hits == 0:
        extreme = max(seen) if rule.fires_when == "above" else min(seen)
        word = "highest" if rule.fires_when == "above" else "lowest"
        return (f"{rule.threshold} ({value:g}%) never fired in {period} ({word} {rule.measure} {extreme:g}%): "
                f"consider {looser} it if smaller changes matter to you")
    if hits == runs:
        extreme = min(seen) if rule.fires_when == "above" else max(seen)
        word = "lowest" if rule.fires_when == "above" else "highest"
        return (f"{rule.threshold} ({value:g}%) fired in every one of {period} ({word} {rule.measure} {extreme:g}%): "
                f"consider {tighter} it {rule.fires_when} the usual level, or fix the cause")
    return None


def threshold_usage(reports: Sequence[Mapping[str, Any]], *, weeks: int) -> list[dict[str, Any]]:
    """One row per threshold: values used, runs that measured it, runs it fired in, the suggestion."""
    rows = []
    for rule in RULES:
        measuring = [(r, m) for r in reports if (m := _measured(rule, r)) is not None]
        values = [float(v) for r in reports if isinstance(v := (r.get("thresholds") or {}).get(rule.threshold),
                                                          (int, float))]
        current = values[-1] if values else None
        hits = sum(1 for r, _ in measuring if fired(rule, r))
        seen = [m for _, m in measuring]
        rows.append({
            "threshold": rule.threshold,
            "alert": rule.alert,
            "value": current,
            "values_used": sorted(set(values)),
            "monitor_runs": len(reports),
            "measured_runs": len(measuring),
            "fired_runs": hits,
            "fired_pct": round(100.0 * hits / len(measuring), 1) if measuring else None,
            "highest_measured": max(seen) if seen else None,
            "lowest_measured": min(seen) if seen else None,
            "suggestion": _suggestion(rule, current, len(measuring), hits, seen, weeks),
        })
    return rows


def general_notes(monitor_runs: int, rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """What keeps the thresholds from being judged at all (too few runs, never measured)."""
    if monitor_runs < MIN_RUNS:
        return [f"only {monitor_runs} monitor run(s) in the archive for this period: too few to judge the alert "
                "thresholds (run the monitor daily: python -m recovery_lib run monitor)"]
    if not any(r["measured_runs"] for r in rows if r["alert"] == "data_loss_rate"):
        return ["no monitor run measured data loss (the deep check was off): the data loss thresholds went unused"]
    return []
