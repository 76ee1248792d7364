"""The incident plan: every decision of a generated incident, made from the seed before the database is touched.

Everything follows from ``seed`` and ``now``: the same pair gives the same ids, payloads,
statuses and rows (:mod:`recovery_lib.simulate.store` then writes the plan and measures it).

    >>> plan = plan_incident(users=10, payloads=40, seed=42)
    >>> plan.ingestions[0].outcome
    'processed'

Outcomes: ``processed`` (all rows), ``error`` (no rows), ``partial_success`` (some tables),
``silent_loss`` (status processed, no error, tables missing), ``corrupt`` (status error, can never
become rows) and ``pending`` (not processed yet). Large payloads always land in a lost outcome.
"""

from __future__ import annotations

import json
import math
import random
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from recovery_lib import catalogue
from recovery_lib.schema import METRIC_TABLES
from recovery_lib.simulate.payloads import CORRUPT_VARIANTS, build_payload, corrupt_payload, points_per_hour
from recovery_lib.simulate.profiles import PayloadSpec, UserProfile, epoch_minutes, make_profile
from recovery_lib.simulate.rows import Rows, rows_from_payload
from recovery_lib.simulate.truth import OUTCOMES

STATUS_OF_OUTCOME = {
    "processed": "processed",
    "silent_loss": "processed",
    "error": "error",
    "corrupt": "error",
    "partial_success": "partial_success",
    "pending": "pending",
}
LOST_OUTCOMES = ("error", "partial_success", "silent_loss")

PARAMETER_LIMIT_ERROR = (
    "psycopg2.errors.ProgramLimitExceeded: number of parameters must be between 0 and 65535"
)
CONNECTION_ERROR = (
    "psycopg2.OperationalError: server closed the connection unexpectedly\n"
    "\tThis probably means the server terminated abnormally\n"
    "\tbefore or while processing the request."
)
TIMEOUT_ERROR = "psycopg2.errors.QueryCanceled: canceling statement due to statement timeout"

# The order the original tool wrote tables in; a partial success stopped at heart rate, the table
# whose one-statement insert broke the limit, and lost it and everything after it (every family
# the catalogue added since: body, nutrition, the data arrays, workout series, other_metrics).
_FIRST = ("activity_metrics", "sleep_metrics", "heart_rate_metrics", "blood_pressure_metrics", "workout_metrics")
_WRITE_ORDER = (*_FIRST, *(t for t in METRIC_TABLES if t not in _FIRST))
_ARRAY_TABLES = tuple(dict.fromkeys(
    t for a in catalogue.ARRAYS.values() for t in (a.table, *(table for table, _ in a.dispatch.values())) if t))
# What an ordinary silent loss lost besides heart rate, in turn: one group of tables (those with rows).
_SILENT_GROUPS: tuple[tuple[str, ...], ...] = (
    ("sleep_metrics",),
    _ARRAY_TABLES,
    ("workout_metrics", "workout_samples", "workout_route_points"),
    ("blood_pressure_metrics", "nutrition_metrics", "body_measurements", "other_metrics"),
    ("respiratory_metrics", "temperature_metrics", "blood_glucose_metrics", "metabolic_metrics"),
)


# ---------------------------------------------------------------------------------------------
# The plan: every decision, made from the seed before the database is touched


@dataclass
class PlannedIngestion:
    """One raw ingestion as decided: its payload, its rows, and what the original tool did with it."""

    id: str
    profile: UserProfile
    created_at: datetime
    outcome: str
    large: bool = False
    error: str | None = None  # the text of the original tool's error
    dropped_tables: list[str] = field(default_factory=list)
    corrupt_variant: tuple[str, str] | None = None
    hash_mismatch: bool = False
    overlaps_with: str | None = None
    spec: PayloadSpec | None = None
    processed_at: datetime | None = None
    payload: Any = None
    text: str = ""
    rows: Rows = field(default_factory=dict)

    @property
    def status(self) -> str:
        return STATUS_OF_OUTCOME[self.outcome]

    @property
    def written_tables(self) -> list[str]:
        """Tables whose rows the original tool inserted for this payload."""
        if self.outcome in ("processed", "partial_success", "silent_loss"):
            return [t for t in METRIC_TABLES if t not in self.dropped_tables]
        return []

    @property
    def processing_errors(self) -> list[dict[str, str]] | None:
        if self.error is None or self.processed_at is None:
            return None
        return [{"error": self.error, "at": self.processed_at.isoformat()}]


@dataclass
class IncidentPlan:
    """Everything :func:`write_plan` stores; pure data, identical for the same arguments."""

    seed: int
    now: datetime
    profiles: list[UserProfile]
    ingestions: list[PlannedIngestion]  # in created_at order


def _outcome_counts(n: int) -> dict[str, int]:
    """How many of each outcome for ``n`` payloads; every one appears from 6 payloads up."""
    if n < 6:
        # An incident first: even one payload is a lost, large one.
        order = ("error", "processed", "silent_loss", "partial_success", "corrupt", "pending")
        return {o: int(i < n) for i, o in enumerate(order)}
    counts = {
        "pending": 1 if n < 20 else 2,
        "corrupt": max(1, round(n * 0.075)),
        "error": max(1, round(n * 0.15)),
        "partial_success": max(1, round(n * 0.1)),
        "silent_loss": max(1, round(n * 0.1)),
    }
    counts["processed"] = n - sum(counts.values())
    return counts


def _now(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    return now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def plan_incident(
    *,
    users: int = 10,
    payloads: int = 40,
    seed: int = 42,
    now: datetime | None = None,
    large_points: int = 20_000,
    hash_mismatches: int = 0,
) -> IncidentPlan:
    """Decide everything (ids, owners, outcomes, time ranges, payload JSON, rows) without a database."""
    if users < 1 or payloads < 1:
        raise ValueError(f"users and payloads must be at least 1, got users={users}, payloads={payloads}")
    if large_points < 100:
        raise ValueError(f"large_points must be at least 100, got {large_points}")
    now = _now(now)
    rng = random.Random(seed)
    user_ids = [_uuid(rng) for _ in range(users)]
    profiles = [make_profile(i, uid, rng, users=users) for i, uid in enumerate(user_ids)]
    ids = [_uuid(rng) for _ in range(payloads)]
    # Within the last 20 hours (a 24-hour monitor window sees them), at least 10 minutes old.
    created = sorted(now - timedelta(seconds=rng.randint(600, 20 * 3600)) for _ in range(payloads))
    owners = [i % users for i in range(payloads)]
    rng.shuffle(owners)

    counts = _outcome_counts(payloads)
    # Pending ones are the newest: the original tool had not reached them yet.
    outcomes = [o for o in OUTCOMES if o != "pending" for _ in range(counts[o])]
    rng.shuffle(outcomes)
    outcomes += ["pending"] * counts["pending"]
    plan = [
        PlannedIngestion(id=ids[i], profile=profiles[owners[i]], created_at=created[i], outcome=outcomes[i])
        for i in range(payloads)
    ]
    _assign_failures(plan)
    _assign_ranges(plan, large_points, rng)
    for ing in plan:
        _build(ing, rng)
    _pick_second_table(plan)
    # Last, so that the number of mismatches changes nothing else of the incident.
    _assign_hash_mismatches(plan, hash_mismatches, rng)
    return IncidentPlan(seed=seed, now=now, profiles=profiles, ingestions=plan)


def _assign_failures(plan: list[PlannedIngestion]) -> None:
    """Errors, dropped tables, large sizes and corrupt variants, cycling through their kinds."""
    seen: Counter[str] = Counter()
    for ing in plan:
        k = seen[ing.outcome]
        seen[ing.outcome] += 1
        if ing.outcome == "error":
            # Mostly the parameter limit (those payloads are large); one connection reset, one timeout.
            ing.error = {1: CONNECTION_ERROR, 3: TIMEOUT_ERROR}.get(k, PARAMETER_LIMIT_ERROR)
            ing.large = ing.error == PARAMETER_LIMIT_ERROR
            ing.dropped_tables = list(METRIC_TABLES)
        elif ing.outcome == "partial_success":
            ing.error = PARAMETER_LIMIT_ERROR
            ing.large = True
            stop = _WRITE_ORDER.index("heart_rate_metrics")
            # Half stopped at the failing table; half went on after it and lost only heart rate.
            ing.dropped_tables = list(_WRITE_ORDER[stop:]) if k % 2 == 0 else ["heart_rate_metrics"]
        elif ing.outcome == "silent_loss":
            # The original tool swallowed the error and marked the payload processed.
            # Large ones lost the table over the limit; the others also a second table (chosen
            # once the rows are known, see _pick_second_table).
            ing.large = k % 2 == 0
            ing.dropped_tables = ["heart_rate_metrics"]
        elif ing.outcome == "corrupt":
            ing.corrupt_variant = CORRUPT_VARIANTS[k % len(CORRUPT_VARIANTS)]


def _assign_hash_mismatches(plan: list[PlannedIngestion], count: int, rng: random.Random) -> None:
    """Wrong stored hashes go to recoverable ingestions: errors first, then partial and silent loss."""
    if count < 0:
        raise ValueError(f"hash_mismatches must be 0 or more, got {count}")
    chosen: list[PlannedIngestion] = []
    for outcome in LOST_OUTCOMES:
        pool = [i for i in plan if i.outcome == outcome]
        chosen += rng.sample(pool, min(len(pool), count - len(chosen)))
    if len(chosen) < count:
        raise ValueError(
            f"hash_mismatches={count} but only {len(chosen)} recoverable ingestions "
            "(error, partial_success, silent_loss) exist; use more payloads"
        )
    for ing in chosen:
        ing.hash_mismatch = True


def _assign_ranges(plan: list[PlannedIngestion], large_points: int, rng: random.Random) -> None:
    """Time ranges per user: consecutive windows of history ending before the user's first upload,
    about 20% of them reaching back into the previous payload's window (real exports overlap)."""
    by_user: dict[str, list[PlannedIngestion]] = {}
    for ing in plan:
        if ing.outcome != "corrupt":
            by_user.setdefault(ing.profile.user_id, []).append(ing)
    spans: dict[str, tuple[int, int]] = {}  # id -> (hours, heart-rate step)
    for ing in plan:
        if ing.outcome == "corrupt":
            continue
        if ing.large:
            spans[ing.id] = (max(4, round(large_points / points_per_hour(ing.profile, 1))), 1)
        else:
            target = math.exp(rng.uniform(math.log(200), math.log(3000)))
            step = rng.choice((1, 5, 5))
            spans[ing.id] = (max(4, round(target / points_per_hour(ing.profile, step))), step)

    # Prefer overlaps that make the truth interesting: a lost payload whose keys another,
    # processed payload partly supplies.
    candidates = []
    for seq in by_user.values():
        for prev, ing in zip(seq, seq[1:], strict=False):
            pair = {prev.outcome, ing.outcome}
            mixed = "processed" in pair and bool(pair & set(LOST_OUTCOMES))
            candidates.append((0 if mixed else 1, rng.random(), prev, ing))
    wanted = round(0.2 * sum(len(seq) for seq in by_user.values()))
    for _, _, prev, ing in sorted(candidates, key=lambda c: (c[0], c[1]))[:wanted]:
        ing.overlaps_with = prev.id

    for seq in by_user.values():
        windows, cursor, prev_hours = [], 0, 0
        for ing in seq:
            hours, step = spans[ing.id]
            overlap = 0
            if ing.overlaps_with:
                # At most 40% of either window, so every payload keeps keys no other payload has.
                overlap = max(1, int(rng.uniform(0.25, 0.4) * min(hours, prev_hours)))
            start = cursor - overlap * 60
            cursor = start + hours * 60
            windows.append((ing, start, step))
            prev_hours = hours
        anchor = epoch_minutes(min(i.created_at for i in seq)) // 60 * 60
        for ing, start, step in windows:
            hours = spans[ing.id][0]
            shown = (
                ing.profile.dst_offset if ing.profile.dst_offset is not None and rng.random() < 0.2 else None
            )
            begin = start + anchor - cursor
            ing.spec = PayloadSpec(start=begin, end=begin + hours * 60, hr_step=step, display_offset=shown)
    for ing in plan:
        if ing.outcome == "corrupt":
            end = epoch_minutes(ing.created_at) // 60 * 60
            ing.spec = PayloadSpec(start=end - 6 * 60, end=end, hr_step=5)


def _pick_second_table(plan: list[PlannedIngestion]) -> None:
    """Silent losses of ordinary payloads lost heart rate and the tables of one more group that has rows."""
    silent = [i for i in plan if i.outcome == "silent_loss" and not i.large]
    groups = _SILENT_GROUPS
    for k, ing in enumerate(silent):
        rotated = groups[k % len(groups) :] + groups[: k % len(groups)]
        extra = next((g for g in rotated if any(ing.rows[t] for t in g)), ())
        ing.dropped_tables += [t for t in extra if ing.rows[t] and t not in ing.dropped_tables]


def _build(ing: PlannedIngestion, rng: random.Random) -> None:
    assert ing.spec is not None
    if ing.corrupt_variant:
        ing.payload, ing.error = corrupt_payload(ing.corrupt_variant[1], ing.profile, ing.spec)
    else:
        ing.payload = build_payload(ing.profile, ing.spec)
    ing.rows = rows_from_payload(ing.payload)
    ing.text = json.dumps(ing.payload, ensure_ascii=False)
    if ing.outcome != "pending":
        # Large payloads and timeouts took the original tool longer before it gave up.
        slow = ing.large or ing.error == TIMEOUT_ERROR
        ing.processed_at = ing.created_at + timedelta(
            seconds=rng.uniform(30, 300) if slow else rng.uniform(1, 20)
        )
