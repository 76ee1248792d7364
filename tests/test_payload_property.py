"""Property tests: whatever the payload, the parser fails only with PayloadError and accounts for every point.

Payload-like structures are generated (known metric names and junk, points mixing valid and
invalid values, random JSON junk) and fed both as Python objects and as JSON text.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recovery_lib.catalogue import ARRAYS, METRICS, lookup
from recovery_lib.payload import PartialRow, PayloadError, PayloadParser, iter_items
from recovery_lib.payload.entries import series_of
from recovery_lib.payload.sleep import is_segment

NOW = datetime(2024, 3, 1, tzinfo=UTC)
SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# No lone surrogates: JSON text of them is not valid UTF-8, so the two forms could not agree.
TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)

JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    TEXT,
)
JSON_JUNK = st.recursive(
    JSON_SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(TEXT, inner, max_size=4)),
    max_leaves=10,
)

DATES = st.one_of(
    st.sampled_from(
        [
            "2024-02-06 14:30:00 -0800",
            "2024-02-06 14:35:00 -0800",
            "2024-02-06T22:30:00Z",
            "2024-02-06T23:45:00.5+01:00",
            "2024-02-07 06:00:00 +0000",
            "2024-02-06 14:30:00",  # naive
            "2024-02-06 2:30:00\u202fpm -0800",  # a phone set to 12-hour time
            "1969-07-20 20:17:00 +0000",
            "2999-01-01 00:00:00 +0000",
            "not a date",
            "",
        ]
    ),
    st.datetimes(
        min_value=datetime(1960, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.sampled_from([UTC, None])
    ).map(lambda d: d.isoformat()),
    JSON_SCALARS,
)
NUMBERS = st.one_of(
    st.floats(min_value=-50, max_value=2000, allow_nan=False),
    st.integers(min_value=-10, max_value=400),
    st.sampled_from([math.nan, math.inf, -math.inf, 10**400, True, "72", None]),
    st.fixed_dictionaries(
        {"qty": st.integers(0, 300)}, optional={"units": st.sampled_from(["km", "kJ", "x"])}
    ),
    JSON_JUNK,
)
UNITS = st.one_of(
    st.sampled_from(["km", "mi", "m", "kcal", "kJ", "hr", "min", "s", "count", "furlong"]), JSON_SCALARS
)
DATE_KEYS = ("date", "sleepStart", "sleepEnd", "startDate", "endDate", "start", "end")
NUMBER_KEYS = (
    *("qty", "Avg", "Min", "Max", "systolic", "diastolic", "pulse"),
    *("totalSleep", "asleep", "core", "deep", "rem", "awake", "inBed"),
    *(
        "activeEnergy",
        "activeEnergyBurned",
        "totalEnergy",
        "distance",
        "avgHeartRate",
        "maxHeartRate",
        "heartRate",
    ),
)
POINT_VALUES: dict[str, st.SearchStrategy[Any]] = {
    **dict.fromkeys(DATE_KEYS, DATES),
    **dict.fromkeys(NUMBER_KEYS, NUMBERS),
    "value": st.one_of(
        st.sampled_from(["Core", "Deep", "REM", "Awake", "Asleep", "In Bed", "Nap"]), JSON_SCALARS
    ),
    "source": st.one_of(TEXT, JSON_SCALARS),
    "name": st.one_of(TEXT, JSON_SCALARS),
    "distanceUnits": UNITS,
    "activeEnergyUnits": UNITS,
}


GOOD_DATES = st.datetimes(
    min_value=datetime(2020, 1, 1), max_value=datetime(2024, 2, 1), timezones=st.just(UTC)
).map(lambda d: d.strftime("%Y-%m-%d %H:%M:%S %z"))
GOOD_NUMBERS = st.integers(min_value=40, max_value=200) | st.floats(min_value=40, max_value=200)
SMALL_NUMBERS = st.floats(min_value=0, max_value=12)
# A sleep segment's startDate/endDate: minutes apart, so that most segments are valid.
SEGMENT_TIMES = st.tuples(
    st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2024, 1, 3), timezones=st.just(UTC)),
    st.integers(min_value=0, max_value=240),
).map(lambda t: (t[0].isoformat(), (t[0] + timedelta(minutes=t[1])).isoformat()))
# Points each metric shape expects, all valid: mutations below make some of them invalid.
TEMPLATES: list[dict[str, st.SearchStrategy[Any]]] = [
    {"date": GOOD_DATES, "qty": GOOD_NUMBERS},
    {"date": GOOD_DATES, "Min": GOOD_NUMBERS, "Avg": GOOD_NUMBERS, "Max": GOOD_NUMBERS},
    {"date": GOOD_DATES, "systolic": GOOD_NUMBERS, "diastolic": GOOD_NUMBERS, "pulse": GOOD_NUMBERS},
    {"sleepStart": GOOD_DATES, "totalSleep": SMALL_NUMBERS, "deep": SMALL_NUMBERS, "inBed": SMALL_NUMBERS},
    {"value": st.sampled_from(["Core", "Deep", "REM", "In Bed"]), "segment": SEGMENT_TIMES},
    {"start": GOOD_DATES, "name": TEXT, "activeEnergy": GOOD_NUMBERS, "distance": SMALL_NUMBERS},
    {
        "start": GOOD_DATES,
        "activeEnergyBurned": st.fixed_dictionaries({"qty": GOOD_NUMBERS, "units": st.just("kJ")}),
    },
]


SHAPES = {"heart_rate": [0, 1], "blood_pressure": [2], "sleep_analysis": [3, 4, 4], "workouts": [5, 6]}


def templates_for(name: object) -> list[dict[str, st.SearchStrategy[Any]]]:
    """The point shapes a metric (or ``'workouts'``) expects; every shape for junk names."""
    if not isinstance(name, str) or (name not in METRICS and name not in SHAPES):
        return TEMPLATES
    return [TEMPLATES[i] for i in SHAPES.get(name, [0])]


@st.composite
def points(draw: st.DrawFn, name: object = None) -> Any:
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return draw(JSON_JUNK)
    point: dict[str, Any] = {}
    if kind >= 4:  # mostly a valid point of the metric's shape, maybe spoiled below
        template = draw(st.sampled_from(templates_for(name)))
        point = {key: draw(values) for key, values in template.items()}
        if "segment" in point:
            point["startDate"], point["endDate"] = point.pop("segment")
    for key in draw(st.lists(st.sampled_from(sorted(POINT_VALUES)), max_size=3 if point else 7, unique=True)):
        if point and draw(st.integers(0, 3)) == 0:
            point.pop(key, None)
        else:
            point[key] = draw(POINT_VALUES[key])
    return point


METRIC_NAMES = st.integers(0, 7).flatmap(
    lambda n: (
        st.sampled_from(["future_metric", "心拍数", "", "walking_heart_rate", "stair_speed:_up"])
        if n == 0
        else JSON_JUNK
        if n == 1
        else st.sampled_from(sorted(METRICS))
    )
)


@st.composite
def metrics(draw: st.DrawFn) -> Any:
    if draw(st.integers(0, 30)) == 0:
        return draw(JSON_JUNK)  # usually an invalid_structure payload
    name = draw(METRIC_NAMES)
    metric: dict[str, Any] = {}
    for key in draw(st.permutations(["name", "units", "data"])):  # any key order, as jsonb::text gives
        if key == "name" and draw(st.integers(0, 30)):
            metric["name"] = name
        elif key == "units" and draw(st.booleans()):
            metric["units"] = draw(UNITS)
        elif key == "data" and draw(st.integers(0, 30)):
            metric["data"] = draw(st.lists(points(name), max_size=8))
    return metric


def canonical(name: object) -> object:
    spec = lookup(name)
    return spec.name if spec else name


# Entries of the data arrays beside metrics: mostly of a known array's shape, some junk.
ARRAY_NAMES = st.sampled_from([*sorted(ARRAYS), "aFutureArray"])
ENTRIES = st.one_of(
    st.fixed_dictionaries(
        {"start": GOOD_DATES},
        optional={"end": GOOD_DATES, "name": st.sampled_from(["Headache", "Menstrual Flow", "Flujo Menstrual"]),
                  "displayText": TEXT, "value": TEXT, "valence": st.floats(-1, 1), "severity": TEXT,
                  "averageHeartRate": GOOD_NUMBERS, "labels": st.lists(TEXT, max_size=2)},
    ),
    JSON_JUNK,
)


@st.composite
def payloads(draw: st.DrawFn) -> Any:
    shape = draw(st.integers(0, 19))
    if shape == 0:
        return draw(JSON_JUNK)
    data: dict[str, Any] = {}
    if draw(st.integers(0, 9)):
        data["metrics"] = draw(
            st.lists(
                # one metric object per canonical name: two spellings of one metric are one metric
                metrics(), max_size=6, unique_by=lambda m: repr(canonical(m.get("name"))) if isinstance(m, dict) else ""
            )
        )
    if draw(st.booleans()):
        data["workouts"] = draw(st.lists(points("workouts"), max_size=5))
    for name in draw(st.lists(ARRAY_NAMES, max_size=3, unique=True)):
        data[name] = draw(st.lists(ENTRIES, max_size=4)) if draw(st.integers(0, 5)) else draw(JSON_JUNK)
    if shape == 1:
        return {"data": draw(JSON_JUNK)}
    return {"data": data}


def parse(source: object) -> tuple[PayloadParser, list[PartialRow], str | None]:
    parser = PayloadParser(now=NOW, max_kept_rejections=10**6)
    rows: list[PartialRow] = []
    try:
        for row in parser.rows(iter_items(source)):
            rows.append(row)
    except PayloadError as exc:
        return parser, rows, exc.category
    return parser, rows, None


def expected_points(doc: Any) -> list[tuple[str | None, bool, int, Any]]:
    """(metric name, known, index, point) for every point of a well-formed payload; name None when unnamed."""
    found: list[tuple[str | None, bool, int, Any]] = []
    data = doc["data"]
    for metric in data.get("metrics", []):
        name = metric.get("name")
        spec = lookup(name)
        named = isinstance(name, str) and bool(name.strip())
        for index, point in enumerate(metric.get("data", [])):
            found.append((spec.name if spec else name if named else None, spec is not None, index, point))
    for index, workout in enumerate(data.get("workouts", [])):
        found.append(("workouts", True, index, workout))
        if isinstance(workout, dict):
            for series, points, _, _ in series_of(workout):
                found += [(f"workouts[{index}].{series}", True, n, p) for n, p in enumerate(points)]
    for key, value in data.items():
        if key in ("metrics", "workouts"):
            continue
        if isinstance(value, list):
            found += [(key, key in ARRAYS, index, entry) for index, entry in enumerate(value)]
        else:
            found.append((f"data.{key}", False, 0, value))  # a value under data that is not a list
    return found


def check_accounting(doc: Any, parser: PayloadParser, rows: list[PartialRow]) -> None:
    """Every point is exactly one of: in a row, rejected, or counted unsupported (by name)."""
    assert parser.points_seen == (parser.points_used + parser.points_generic + parser.points_rejected
                                  + parser.points_unsupported)
    assert sum(parser.rejection_counts.values()) == len(parser.rejections)
    assert parser.points_rejected == len(parser.rejections) - parser.rejection_counts["missing_name"]
    assert parser.rows_emitted == len(rows)
    assert sum(parser.generic_points.values()) == parser.points_generic
    assert sum(parser.unsupported.values()) == parser.points_unsupported
    points = expected_points(doc)
    assert parser.points_seen == len(points)
    row_ids = {(r.metric, r.index) for r in rows}
    rejected_ids = [(r.metric, r.index) for r in parser.rejections if r.category != "missing_name"]
    assert len(rejected_ids) == len(set(rejected_ids)), "a point is rejected at most once"
    unsupported: dict[str, int] = {}
    for name, known, index, point in points:
        if name is None:
            unsupported["<unnamed>"] = unsupported.get("<unnamed>", 0) + 1
            continue
        in_rows, in_rejections = (name, index) in row_ids, (name, index) in set(rejected_ids)
        assert not (in_rows and in_rejections), (name, index)
        if name == "sleep_analysis" and isinstance(point, dict) and is_segment(point):
            continue  # a segment's row carries its session's first index; points_used counts it
        if not (in_rows or in_rejections) and (not known or name in ARRAYS):
            # an unknown metric's point without a qty, an unknown array's entry, a cycle name with no column
            unsupported[name[:100]] = unsupported.get(name[:100], 0) + 1
            continue
        assert in_rows or in_rejections, (name, index, point)
    assert dict(parser.unsupported) == unsupported


@SETTINGS
@given(payloads())
def test_any_payload_object_either_fails_cleanly_or_accounts_for_every_point(doc):
    parser, rows, error = parse(doc)
    if error is None:
        check_accounting(doc, parser, rows)
    json.dumps(parser.summary())


@SETTINGS
@given(payloads())
def test_json_text_of_a_payload_parses_like_the_object(doc):
    by_object = parse(doc)
    text = json.dumps(doc, allow_nan=True).encode()
    parser, rows, error = parse(text)
    assert error == by_object[2]
    if error is None:
        check_accounting(json.loads(text), parser, rows)
        assert [(r.table, r.key, r.metric, r.index) for r in rows] == [
            (r.table, r.key, r.metric, r.index) for r in by_object[1]
        ]
        assert parser.rejections == by_object[0].rejections


@SETTINGS
@given(st.binary(max_size=200) | TEXT.map(str.encode))
def test_arbitrary_bytes_fail_only_with_payload_error(blob):
    parse(blob)


@SETTINGS
@given(JSON_JUNK)
def test_arbitrary_json_values_fail_only_with_payload_error(value):
    assert parse(value)[2] is not None or isinstance(value, dict)
    parse(json.dumps(value, allow_nan=True))


# --- values jsonb stores that Python's own decoder cannot read -----------------------------------

HOSTILE_TEXT = {
    "deep list": "[" * 2_500 + "]" * 2_500,
    "deep object": '{"a": ' * 1_500 + "1" + "}" * 1_500,
    "huge number": "1" + "0" * 5_000,  # 1e5000 as jsonb renders it
    "huge negative number": "-" + "7" * 4_400,
}


@st.composite
def hostile_payload_texts(draw: st.DrawFn) -> str:
    """JSON text of a generated payload with deep nesting and huge numbers put in points, units and workouts."""
    doc = draw(payloads())
    tokens: dict[str, str] = {}

    def hostile() -> str:
        token = f"@@hostile-{len(tokens)}@@"
        tokens[token] = draw(st.sampled_from(sorted(HOSTILE_TEXT)))
        return token

    data = doc.get("data") if isinstance(doc, dict) else None
    if isinstance(data, dict):
        groups = [m.get("data") for m in data.get("metrics", []) if isinstance(m, dict)] if isinstance(
            data.get("metrics"), list) else []
        for metric in data.get("metrics", []) if isinstance(data.get("metrics"), list) else []:
            if isinstance(metric, dict) and draw(st.integers(0, 4)) == 0:
                metric["units"] = hostile()
        for group in [*groups, data.get("workouts")]:
            for point in group if isinstance(group, list) else []:
                if isinstance(point, dict) and draw(st.integers(0, 2)) == 0:
                    point[draw(st.sampled_from([*sorted(POINT_VALUES), "note"]))] = hostile()
        if draw(st.booleans()):
            data["extra"] = hostile()
    text = json.dumps(doc, allow_nan=True)
    for token, kind in tokens.items():
        text = text.replace(json.dumps(token), HOSTILE_TEXT[kind])
    return text


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hostile_payload_texts())
def test_deep_nesting_and_huge_numbers_parse_the_same_as_text_and_as_decoded_jsonb(text):
    from recovery_lib.safe_json import loads

    decoded = loads(text)  # what the stored-payload reader hands the parser
    by_object = parse(decoded)
    parser, rows, error = parse(text.encode())
    assert error == by_object[2]
    if error is None:
        check_accounting(decoded, parser, rows)
        assert [(r.table, r.key, r.metric, r.index) for r in rows] == [
            (r.table, r.key, r.metric, r.index) for r in by_object[1]
        ]
        assert parser.rejections == by_object[0].rejections


# --- the reconciliation cache, whatever the API's payload_hash -----------------------------------

HASHES = st.sampled_from(["", "   ", "garbage", "dup", None])  # None: the real SHA-256 of the stored value


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 2), HASHES, st.integers(0, 1), st.booleans()), min_size=2, max_size=6))
def test_reconciliation_with_the_cache_equals_without_whatever_the_payload_hash(engine, plan):
    import sqlalchemy as sa
    from conftest import reset_schema
    from helpers import add_ingestion, add_user, hr_payload

    from recovery_lib import reconcile
    from recovery_lib.payload import parse_payload

    reset_schema(engine)
    users = [add_user(engine), add_user(engine)]
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)
    for number, (which, api_hash, owner, stored) in enumerate(plan):
        payload = hr_payload(start + timedelta(hours=which), 3)
        add_ingestion(engine, users[owner], payload, status="processed", payload_hash=api_hash,
                      created_at=start + timedelta(minutes=number))
        if stored:  # this ingestion's rows were written (a shared instant: the first writer's)
            with engine.begin() as conn:
                for key, values in parse_payload(payload).rows["heart_rate_metrics"].items():
                    conn.execute(sa.text(
                        "INSERT INTO heart_rate_metrics (user_id, recorded_at, heart_rate, heart_rate_min, "
                        "heart_rate_max, source_device) VALUES (:u, :k, :heart_rate, :heart_rate_min, "
                        ":heart_rate_max, :source_device) ON CONFLICT DO NOTHING"),
                        {"u": users[owner], "k": key, **values})

    def measured(use_cache: bool) -> dict[str, tuple[int, int]]:
        return {r.ingestion_id: (r.missing_total, r.missing_values_total)
                for r in reconcile.reconcile_window(engine, use_cache=use_cache)}

    exact = measured(False)
    assert measured(True) == exact  # writes the cache
    assert measured(True) == exact  # reads it
