"""The incident generator: a real database filled with the bind-parameter incident, and its truth.

Who owns what::

    plan.py       every decision from the seed (ids, owners, outcomes, time ranges), no database
    profiles.py   the users: how each one's phone and watch export (shapes cycle by index)
    values.py     what each user's body did: deterministic values of (user, metric, instant)
    habits.py     every other catalogue metric, and names the catalogue does not know yet
    dates.py      the exporter's dates, written and read back
    payloads.py   those values in the exporter's JSON shapes (and the corrupt variants)
    workouts.py   workouts, version 1 and 2 with timed series and route
    entries.py    the data arrays beside metrics (state of mind, medications, ECG, ...)
    cells.py, rows.py, rows_entries.py   the independent row oracle: the rows a payload implies
    store.py      the plan written as the API would have, then measured
    truth.py      the ground truth (counts only, never a health value)

    >>> from recovery_lib.simulate import simulate
    >>> truth = simulate(get_engine(), users=10, payloads=40, seed=42)
    >>> print(truth.summary_text())

Outcomes: ``processed`` (all rows), ``error`` (no rows), ``partial_success`` (some tables),
``silent_loss`` (status processed, no error, tables missing), ``corrupt`` (status error, can never
become rows) and ``pending`` (not processed yet). Large payloads always land in a lost outcome.
"""

from recovery_lib.errors import IncidentExistsError
from recovery_lib.simulate.plan import IncidentPlan, plan_incident
from recovery_lib.simulate.store import incident_exists, measure, reset_tables, simulate, write_plan
from recovery_lib.simulate.truth import (
    OUTCOMES,
    PARAMETER_LIMIT,
    DatabaseSummary,
    IncidentTruth,
    IngestionTruth,
    database_summary,
    truth_from_file,
)

__all__ = [
    "OUTCOMES",
    "PARAMETER_LIMIT",
    "DatabaseSummary",
    "IncidentExistsError",
    "IncidentPlan",
    "IncidentTruth",
    "IngestionTruth",
    "database_summary",
    "incident_exists",
    "measure",
    "plan_incident",
    "reset_tables",
    "simulate",
    "truth_from_file",
    "write_plan",
]
