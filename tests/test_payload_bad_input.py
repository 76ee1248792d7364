"""Bad payloads, one table: what each one does to the parse (no database needed).

Each case says either which ``PayloadError`` stops the parse, or which point rejections it
records (by category, with counts) and how many partial rows still come out.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest

from recovery_lib.payload import PayloadError, PayloadParser, iter_items

NOW = datetime(2024, 3, 1, tzinfo=UTC)
T = "2024-02-06 14:30:00 -0800"
T2 = "2024-02-06 14:35:00 -0800"
T3 = "2024-02-06 14:40:00 -0800"


def env(*metrics: dict, workouts: list | None = None) -> dict:
    data: dict = {"metrics": list(metrics)}
    if workouts is not None:
        data["workouts"] = workouts
    return {"data": data}


def m(name: object, *points: object, units: str | None = None) -> dict:
    out: dict = {"name": name}
    if units is not None:
        out["units"] = units
    out["data"] = list(points)
    return out


def steps(*quantities: object, date: object = T) -> dict:
    return m("step_count", *({"date": date, "qty": q} for q in quantities))


def hr(**fields: object) -> dict:
    return m("heart_rate", {"date": T, **fields})


def text(doc: object) -> bytes:
    """JSON text of ``doc``; NaN and infinities as the non-standard literals some exporters write."""
    return json.dumps(doc, allow_nan=True).encode()


def nested_list(depth: int) -> list:
    value: list = []
    for _ in range(depth - 1):
        value = [value]
    return value


def big_metric() -> bytes:
    points = ",".join(
        f'{{"date": "2024-02-0{1 + i // 86400} {i // 3600 % 24:02d}:{i // 60 % 60:02d}:{i % 60:02d} +0000",'
        f' "qty": {i % 300}, "source": "iPhone"}}'
        for i in range(200_000)
    )
    return (
        '{"data": {"metrics": [{"name": "step_count", "units": "count", "data": [' + points + "]}]}}"
    ).encode()


@dataclass(frozen=True)
class Case:
    source: object | Callable[[], object]  # a callable builds a large source only when its case runs
    error: str | None = None  # the PayloadError category, or None when the parse completes
    rejected: dict[str, int] = field(default_factory=dict)
    rows: int = 0
    missing_name: int = 0  # metric-level rejections, kept apart from point rejections


CASES: dict[str, Case] = {
    # -- not JSON at all
    "not-json-garbage": Case(b"this is not json", "not_json"),
    "not-json-truncated": Case(b'{"data": {"metrics": [{"name": "step_count", "data": [', "not_json"),
    "not-json-empty-bytes": Case(b"", "not_json"),
    "not-json-trailing-text": Case(b'{"data": {"workouts": []}} and more', "not_json"),
    "not-json-single-quotes": Case(b"{'data': {}}", "not_json"),
    "not-json-invalid-utf8": Case(b'{"data": {"metrics": [{"name": "\xff"}]}}', "not_json"),
    # -- JSON, but not an object with a data object
    "top-level-list": Case(b"[1, 2, 3]", "invalid_structure"),
    "top-level-string": Case(b'"{broken"', "invalid_structure"),
    "top-level-number": Case(b"42", "invalid_structure"),
    "top-level-null": Case(b"null", "invalid_structure"),
    "str-that-is-not-json-text": Case("Health Auto Export: automation failed", "invalid_structure"),
    "object-source-list": Case([{"data": {}}], "invalid_structure"),
    "object-source-none": Case(None, "invalid_structure"),
    "object-source-number": Case(3.5, "invalid_structure"),
    "missing-data": Case({"metrics": []}, "invalid_structure"),
    "data-not-an-object": Case({"data": []}, "invalid_structure"),
    "data-null-in-text": Case(b'{"data": null}', "invalid_structure"),
    "metrics-not-a-list": Case({"data": {"metrics": "not-a-list"}}, "invalid_structure"),
    "metrics-null": Case(b'{"data": {"metrics": null}}', "invalid_structure"),
    "workouts-not-a-list": Case({"data": {"workouts": {"start": T}}}, "invalid_structure"),
    "metric-not-an-object": Case(env(steps(1), "heart_rate"), "invalid_structure"),
    "metric-data-not-a-list": Case(
        env({"name": "step_count", "data": {"date": T, "qty": 1}}), "invalid_structure"
    ),
    "metric-data-not-a-list-in-text": Case(text(env({"name": "step_count", "data": 5})), "invalid_structure"),
    # -- nothing in it
    "empty-object": Case(b"{}", "invalid_structure"),
    "empty-data": Case(b'{"data": {}}', "empty_payload"),
    "empty-metric-list": Case({"data": {"metrics": []}}, "empty_payload"),
    "empty-metric-and-workout-lists": Case({"data": {"metrics": [], "workouts": []}}, "empty_payload"),
    # -- metrics without a usable name: one rejection per metric, points consumed silently
    "metric-without-name": Case(env({"data": [{"date": T, "qty": 1}]}, steps(2)), rows=1, missing_name=1),
    "metric-name-not-a-string": Case(env(m(123, {"date": T, "qty": 1}), m(None)), missing_name=2),
    "metric-name-blank": Case(env(m("  ", {"date": T, "qty": 1})), missing_name=1),
    "metric-name-an-object-in-text": Case(
        text(env(m({"en": "steps"}, {"date": T, "qty": 1}), m(["heart_rate"], units="x"))), missing_name=2
    ),
    # -- points
    "point-not-an-object": Case(
        env(m("step_count", 5, "x", None, [1], {"date": T, "qty": 1})), rejected={"invalid_point": 4}, rows=1
    ),
    "point-without-date": Case(env(m("step_count", {"qty": 1})), rejected={"missing_date": 1}),
    "point-date-null": Case(env(steps(1, date=None)), rejected={"missing_date": 1}),
    "date-words": Case(env(steps(1, date="yesterday")), rejected={"invalid_date": 1}),
    "date-impossible": Case(env(steps(1, date="2024-13-45 25:61:00 +0000")), rejected={"invalid_date": 1}),
    "date-without-offset": Case(env(steps(1, date="2024-02-06 14:30:00")), rejected={"invalid_date": 1}),
    "date-only": Case(env(steps(1, date="2024-02-06")), rejected={"invalid_date": 1}),
    "date-us-format": Case(env(steps(1, date="02/06/2024 2:30 PM -0800")), rejected={"invalid_date": 1}),
    "date-epoch-number": Case(env(steps(1, date=1707258600)), rejected={"invalid_date": 1}),
    "date-empty-string": Case(env(steps(1, date="")), rejected={"invalid_date": 1}),
    "date-before-1970": Case(
        env(steps(1, date="1969-12-31 23:59:59 +0000")), rejected={"date_out_of_range": 1}
    ),
    "date-far-future": Case(
        env(steps(1, date="2999-01-01 00:00:00 +0000")), rejected={"date_out_of_range": 1}
    ),
    "date-year-1-with-offset": Case(
        env(steps(1, date="0001-01-01T00:00:00+01:00")), rejected={"date_out_of_range": 1}
    ),
    "string-where-number-belongs": Case(env(steps("72", "1 234", "72,5")), rejected={"non_numeric": 3}),
    "bool-where-number-belongs": Case(env(steps(True, False)), rejected={"non_numeric": 2}),
    "object-or-list-where-number-belongs": Case(env(steps({"value": 1}, [1])), rejected={"non_numeric": 2}),
    "nan-and-infinity-in-text": Case(
        text(env(steps(math.nan, math.inf, -math.inf, 5))), rejected={"non_finite": 3}, rows=1
    ),
    "nan-and-infinity-as-floats": Case(
        env(steps(math.nan, math.inf, -math.inf, 5)), rejected={"non_finite": 3}, rows=1
    ),
    "float-overflow-in-text": Case(
        b'{"data": {"metrics": [{"name": "step_count", "data": [{"date": "'
        + T.encode()
        + b'", "qty": 1e400}]}]}}',
        rejected={"non_finite": 1},
    ),
    "negative-values": Case(
        env(steps(-5), m("walking_running_distance", {"date": T, "qty": -0.1})), rejected={"out_of_range": 2}
    ),
    "absurd-heart-rate": Case(env(hr(Avg=10000)), rejected={"out_of_range": 1}),
    "heart-rate-min-not-numeric": Case(env(hr(Avg=70, Min="low")), rejected={"non_numeric": 1}),
    "heart-rate-without-avg": Case(env(hr(Min=60, Max=80)), rejected={"missing_value": 1}),
    "huge-integer": Case(env(steps(10**400)), rejected={"out_of_range": 1}),
    "blood-pressure-missing-half": Case(
        env(m("blood_pressure", {"date": T, "systolic": 120}, {"date": T2, "diastolic": 80})),
        rejected={"missing_value": 2},
    ),
    "unknown-units": Case(
        env(m("walking_running_distance", {"date": T, "qty": 1}, units="furlong")),
        rejected={"invalid_point": 1},
    ),
    "duplicated-points": Case(env(steps(1, 2, 3)), rejected={"duplicate_point": 2}, rows=1),
    "sleep-unknown-stage-and-reversed-segment": Case(
        env(
            m(
                "sleep_analysis",
                {"startDate": T, "endDate": T2, "value": "Dozing"},
                {"startDate": T2, "endDate": T, "value": "Core"},
                {"startDate": T, "endDate": T3, "value": "Core"},
            )
        ),
        rejected={"invalid_point": 1, "invalid_date": 1},
        rows=1,
    ),
    # Since app 6.6.2 the stages alone give the duration; only awake and in-bed time give none.
    "sleep-aggregated-without-duration": Case(
        env(m("sleep_analysis", {"sleepStart": T, "awake": 1, "inBed": 8})), rejected={"missing_value": 1}
    ),
    "workout-without-start": Case(
        env(workouts=[{"name": "Run", "end": T}, {"name": "Walk", "start": T}]),
        rejected={"missing_date": 1},
        rows=1,
    ),
    "workout-not-an-object": Case(env(workouts=["Run"]), rejected={"invalid_point": 1}),
    "workout-absurd-energy": Case(
        env(workouts=[{"start": T, "activeEnergy": 1e9}]), rejected={"out_of_range": 1}
    ),
    "deeply-nested-list-in-a-point": Case(env(steps(nested_list(500))), rejected={"non_numeric": 1}),
    "deeply-nested-list-in-text": Case(
        lambda: text(env(steps(nested_list(500)))), rejected={"non_numeric": 1}
    ),
    "extremely-nested-junk-in-text": Case(
        lambda: (
            b'{"data": {"metrics": [{"name": "step_count", "data": [{"date": "'
            + T.encode()
            + b'", "qty": '
            + b"[" * 100_000
            + b"]" * 100_000
            + b"}]}]}}"
        ),
        rejected={"non_numeric": 1},
    ),
    "extremely-nested-junk-in-an-object": Case(
        lambda: env(steps(nested_list(100_000))), rejected={"non_numeric": 1}
    ),
    "unicode-names-and-sources": Case(
        env(
            m("心拍数 ❤️", {"date": T, "qty": 1}),
            m("step_count", {"date": T, "qty": 1, "source": "Émilie’s ⌚ \U0001f3c3"}),
        ),
        rows=2,  # the unknown name is kept in other_metrics, not dropped
    ),
    "non-string-source-is-ignored": Case(
        env(m("step_count", {"date": T, "qty": 1, "source": {"id": 7}})), rows=1
    ),
    "mixed-good-and-bad-points": Case(
        env(
            m(
                "heart_rate",
                {"date": T, "Avg": 70},
                {"date": T2, "Avg": "fast"},
                {"date": T3, "Avg": 71},
                {"Avg": 72},
                {"date": "2024-02-06 15:00:00 -0800", "Avg": 73},
            ),
            m("step_count", 17, {"date": T, "qty": 10}),
        ),
        rejected={"non_numeric": 1, "missing_date": 1, "invalid_point": 1},
        rows=4,
    ),
    "a-200000-point-metric": Case(big_metric, rows=200_000),
}


def run(case: Case) -> tuple[PayloadParser, int]:
    source = case.source() if callable(case.source) else case.source
    parser = PayloadParser(now=NOW)
    rows = sum(1 for _ in parser.rows(iter_items(source)))
    return parser, rows


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_bad_input(case: Case):
    if case.error is not None:
        with pytest.raises(PayloadError) as caught:
            run(case)
        assert caught.value.category == case.error
        return
    parser, rows = run(case)
    counts = dict(parser.rejection_counts)
    assert counts.pop("missing_name", 0) == case.missing_name
    assert counts == case.rejected
    assert rows == case.rows == parser.rows_emitted
    assert parser.points_seen == (parser.points_used + parser.points_generic + parser.points_rejected
                                  + parser.points_unsupported)


def test_the_table_is_large_enough():
    assert len(CASES) >= 30


def test_a_200000_point_metric_parses_in_a_few_seconds():
    source = big_metric()
    # CPU time, not wall time: a busy CI machine must not fail this (about 1 s of CPU here).
    started = time.process_time()
    parser, rows = run(Case(source))
    assert rows == 200_000 and parser.points_seen == 200_000
    assert time.process_time() - started < 3.0


def test_good_points_around_bad_ones_keep_their_indexes():
    case = CASES["mixed-good-and-bad-points"]
    rows = list(PayloadParser(now=NOW).rows(iter_items(case.source)))
    assert [(r.metric, r.index) for r in rows] == [
        ("heart_rate", 0),
        ("heart_rate", 2),
        ("heart_rate", 4),
        ("step_count", 1),
    ]


def test_rejections_name_the_field_at_fault():
    doc = env(
        hr(Avg=70, Min=61, Max="high"),
        m("blood_pressure", {"date": T, "systolic": 500, "diastolic": 80}),
        workouts=[{"start": T, "heartRate": {"avg": {"qty": "x"}}}],
    )
    parser = PayloadParser(now=NOW)
    list(parser.rows(iter_items(doc)))
    assert [r.message() for r in parser.rejections] == [
        "heart_rate[0].Max: non_numeric",
        "blood_pressure[0].systolic: out_of_range",
        "workouts[0].heartRate.avg: non_numeric",
    ]


def test_a_duplicate_keeps_the_first_point():
    rows = list(PayloadParser(now=NOW).rows(iter_items(env(steps(1, 2)))))
    assert [r.values for r in rows] == [{"step_count": 1.0}]


# --------------------------------------------------------------------------- no values in messages

MARKER_NUMBER = 987.654321
MARKER_TEXT = "SECRET-VALUE-42"
MARKERS = ("987.654321", "987.65", "987654321", MARKER_TEXT)

MARKED_PAYLOADS: list[object] = [
    env(
        hr(Avg=MARKER_NUMBER),
        hr(Avg=70, Min=MARKER_TEXT),
        m(
            "step_count",
            {"date": MARKER_TEXT, "qty": 1},
            {"date": T, "qty": MARKER_TEXT, "source": MARKER_TEXT},
            {"date": T2, "qty": [MARKER_TEXT]},
            {"date": T3, "qty": {"qty": MARKER_NUMBER * 1e9}},
        ),
        m("walking_running_distance", {"date": T, "qty": MARKER_NUMBER}, units=MARKER_TEXT),
        m("sleep_analysis", {"startDate": T, "endDate": T2, "value": MARKER_TEXT}),
        m("blood_pressure", {"date": T, "systolic": MARKER_NUMBER, "diastolic": MARKER_TEXT}),
        MARKER_TEXT,
    ),
    env(
        m("step_count", {"date": T, "qty": MARKER_NUMBER * 1e9}),
        workouts=[{"start": MARKER_TEXT}, MARKER_TEXT],
    ),
    {"data": MARKER_TEXT},
    {"data": {"metrics": MARKER_NUMBER}},
    {"data": {"metrics": [{"name": "step_count", "data": MARKER_TEXT}]}},
    MARKER_TEXT,
    MARKER_NUMBER,
]


def _outcome_texts(source: object) -> list[str]:
    parser = PayloadParser(now=NOW)
    try:
        list(parser.rows(iter_items(source)))
    except PayloadError as exc:
        return [str(exc), exc.message, json.dumps(exc.to_dict()), json.dumps(parser.summary())]
    return [r.message() for r in parser.rejections] + [json.dumps(parser.summary())]


@pytest.mark.parametrize("form", ["object", "text", "broken-text"])
@pytest.mark.parametrize("index", range(len(MARKED_PAYLOADS)))
def test_no_message_or_summary_contains_a_value(index: int, form: str):
    doc = MARKED_PAYLOADS[index]
    source: object = doc
    if form == "text":
        source = text(doc)
    elif form == "broken-text":
        source = text(doc)[:-1] + b"," + MARKER_TEXT.encode()  # ijson's error would quote this
    texts = _outcome_texts(source)
    assert texts
    for message in texts:
        for marker in MARKERS:
            assert marker not in message, (marker, message)


def test_the_marker_payload_does_produce_rejections():
    parser = PayloadParser(now=NOW)
    with pytest.raises(PayloadError):  # the last metric is a string: invalid_structure, after the points
        list(parser.rows(iter_items(MARKED_PAYLOADS[0])))
    assert parser.rejection_counts == {
        "out_of_range": 3,
        "non_numeric": 3,
        "invalid_date": 1,
        "invalid_point": 2,
    }
