"""The rows a generated payload implies, exactly as docs/payload-format.md maps them: the truth's oracle.

This reads only the shapes :mod:`recovery_lib.simulate.payloads` writes (it is not a general
parser and does not validate) and never calls the parser: it reads the catalogue for its facts
(which table and column a metric's field fills, units and their factors) and applies the doc's
rules itself (:mod:`recovery_lib.simulate.cells`): metrics on one table and instant merge into one
row; unaggregated sleep is grouped into sessions (a new session when a segment starts more than
60 minutes after the latest end so far); a name the catalogue does not know is a row of
``other_metrics`` keyed by (instant, name); workouts, their series and route, and the data arrays
are :mod:`recovery_lib.simulate.rows_entries`. The generator's ground truth is built from it;
tests hold it to the parser's rows for every generated payload.

    >>> rows = rows_from_payload({"data": {"metrics": [{"name": "step_count", "units": "count",
    ...     "data": [{"qty": 42, "date": "2024-02-06 14:00:00 -0800"}]}]}})
    >>> [(k.isoformat(), r["step_count"]) for k, r in rows["activity_metrics"].items()]
    [('2024-02-06T14:00:00-08:00', 42.0)]
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from recovery_lib import catalogue
from recovery_lib.catalogue.model import MetricSpec
from recovery_lib.simulate.cells import Key, Rows, is_number, new_rows, put, read_fields, to_column, with_source
from recovery_lib.simulate.dates import read
from recovery_lib.simulate.rows_entries import array_rows, workout_rows

__all__ = ["Key", "Rows", "rows_from_payload"]

SESSION_GAP = timedelta(minutes=60)
# Aggregated sleep: point field -> column (None: read for the duration and efficiency only).
_SLEEP_FIELDS = {"totalSleep": None, "asleep": None, "core": "light_sleep_minutes", "deep": "deep_sleep_minutes",
                 "rem": "rem_sleep_minutes", "awake": "awake_minutes", "inBed": None}
_SLEEP_PARTS = ("asleep", "core", "deep", "rem")  # their sum is the duration when there is no totalSleep
_STAGE_COLUMNS = {"Core": "light_sleep_minutes", "Deep": "deep_sleep_minutes", "REM": "rem_sleep_minutes",
                  "Awake": "awake_minutes"}
_ASLEEP = frozenset({"Core", "Deep", "REM", "Asleep", "Unspecified"})


def rows_from_payload(payload: Any) -> Rows:
    """Every row a generated payload implies, by table and natural key.

    Corrupt payloads (broken structure, text where numbers belong) imply no rows at all.
    """
    rows = new_rows()
    if not isinstance(payload, dict) or not isinstance(payload.get("data"), dict):
        return rows
    data = payload["data"]
    metrics = data.get("metrics") or []
    if not isinstance(metrics, list) or not all(isinstance(m, dict) for m in metrics):
        return rows
    for part, value in data.items():
        if part == "metrics":
            for m in value:
                _metric(rows, m)
        elif part == "workouts":
            for w in value:
                workout_rows(rows, w)
        elif part in catalogue.ARRAYS:
            array_rows(rows, catalogue.ARRAYS[part], value)
    return rows


def _metric(rows: Rows, m: dict[str, Any]) -> None:
    spec = catalogue.lookup(m["name"])
    if spec is None:
        for pt in m["data"]:
            _generic(rows, m["name"], m.get("units"), pt)
    elif spec.shape == "sleep":
        _sleep(rows, m)
    else:
        for pt in m["data"]:
            _simple(rows, spec, m.get("units"), pt)


def _simple(rows: Rows, spec: MetricSpec, units: Any, pt: dict[str, Any]) -> None:
    values = read_fields(spec.fields, pt, units)
    if values:  # None: the corrupt payloads' text quantities, rejected as non_numeric
        put(rows, spec.table, read(pt["date"]), with_source(values, pt))


def _generic(rows: Rows, name: str, units: Any, pt: dict[str, Any]) -> None:
    """A metric the catalogue does not know: its numeric ``qty`` kept under its name."""
    if not is_number(pt.get("qty")):
        return
    values: dict[str, Any] = {"qty": float(pt["qty"])}
    if isinstance(units, str):
        values["units"] = units
    put(rows, catalogue.GENERIC_TABLE, (read(pt["date"]), name), with_source(values, pt))


def _hours_to_minutes(value: float, units: Any) -> float:
    return to_column(float(value), "time", units if units is not None else "hr", "min")


def _sleep(rows: Rows, metric: dict[str, Any]) -> None:
    """Aggregated points are one row each; unaggregated stages are grouped into sessions."""
    units = metric.get("units")
    segments: list[tuple[datetime, datetime, str, Any]] = []
    for pt in metric["data"]:
        if "startDate" in pt:
            segments.append((read(pt["startDate"]), read(pt["endDate"]), pt["value"], pt.get("source")))
            continue
        minutes = {name: _hours_to_minutes(pt[name], units) for name in _SLEEP_FIELDS if pt.get(name) is not None}
        values: dict[str, Any] = {column: minutes[name] for name, column in _SLEEP_FIELDS.items()
                                  if column and name in minutes}
        if pt.get("sleepEnd"):
            values["sleep_end"] = read(pt["sleepEnd"])
        if "totalSleep" in minutes:
            duration = minutes["totalSleep"]
        else:  # before 6.6.2 asleep was the total; from 6.6.2 it is unclassified sleep beside the stages
            duration = sum(minutes.get(name, 0.0) for name in _SLEEP_PARTS)
        values["duration_minutes"] = duration
        if minutes.get("inBed", 0.0) > 0:
            # Stages rounded by the app may add up a hair over inBed: such a night is 100 %.
            values["efficiency"] = min(100.0, 100.0 * duration / minutes["inBed"])
        source = next((pt[k] for k in ("source", "sleepSource", "inBedSource") if isinstance(pt.get(k), str)), None)
        values["source_device"] = source
        put(rows, "sleep_metrics", read(pt.get("sleepStart") or pt["date"]), values)
    sessions: list[list[tuple[datetime, datetime, str, Any]]] = []
    latest_end: datetime | None = None
    for seg in sorted(segments, key=lambda s: s[0]):
        if latest_end is None or seg[0] - latest_end > SESSION_GAP:
            sessions.append([])
            latest_end = seg[1]
        sessions[-1].append(seg)
        latest_end = max(latest_end, seg[1])
    for session in sessions:
        start, end = session[0][0], max(s[1] for s in session)
        stage = dict.fromkeys(_STAGE_COLUMNS.values(), 0.0)
        duration = 0.0
        for a, b, value, _ in session:  # "In Bed" only widens the session
            minutes = (b - a).total_seconds() / 60
            if value in _STAGE_COLUMNS:
                stage[_STAGE_COLUMNS[value]] += minutes
            if value in _ASLEEP:
                duration += minutes
        span = (end - start).total_seconds() / 60
        put(rows, "sleep_metrics", start, {
            "sleep_end": end, "duration_minutes": duration, **stage,
            "efficiency": 100.0 * duration / span if span > 0 else None,
            "source_device": next((s[3] for s in session if s[3] is not None), None),
        })
