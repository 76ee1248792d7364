"""The processing monitor on a real PostgreSQL: statistics, loss, alerts and their boundaries,
user impact, error patterns (from errors PostgreSQL really raises), recommendations, trends, text."""

from __future__ import annotations

import ctypes
import ctypes.util
import glob
import json
import os
import uuid
from datetime import UTC, datetime, timedelta

import psycopg2
import pytest
import sqlalchemy as sa
from monitor_helpers import NOW, Ing, seed
from sqlalchemy.engine import make_url

from recovery_lib.cli import main
from recovery_lib.error_patterns import ERROR_CATEGORIES, categorize_error
from recovery_lib.errors import ParameterError
from recovery_lib.monitor import alerts as al
from recovery_lib.monitor import build_monitoring_report, format_text_report
from recovery_lib.schema import METRIC_TABLES

UNREACHABLE = "postgresql://nobody:secret-pw@127.0.0.1:1/none"
PARAM_LIMIT = [{"error": "number of parameters must be between 0 and 65535"}]


def report_of(engine, **kwargs):
    kwargs.setdefault("now", NOW)
    return build_monitoring_report(engine, **kwargs)


# -- statistics -----------------------------------------------------------------------------------


def test_statistics_are_counted_in_the_window(engine):
    seed(
        engine,
        [
            Ing(status="processed", delay_seconds=10, size=1_000),
            Ing(status="processed", delay_seconds=20, size=2_000),
            Ing(status="processed", delay_seconds=30, size=3_000),
            Ing(status="error", delay_seconds=60, size=90_000_000, errors=PARAM_LIMIT),
            Ing(status="error", delay_seconds=80, size=4_000, errors="connection reset by peer"),
            Ing(status="partial_success", delay_seconds=100, size=5_000),
            Ing(status="pending", size=500),
            Ing(status=None, size=600),  # NULL status is pending
            Ing(status="recovered", delay_seconds=10_000, size=7_000),  # its processed_at is the recovery's
            Ing(status="recovery_failed", delay_seconds=9_000, size=8_000),
            Ing(status="error", age_hours=30, size=100_000_000, delay_seconds=1),  # outside the 24 h window
        ],
    )
    r = report_of(engine, hours=24, deep_check=False)
    assert (
        r.total_raw_ingestions,
        r.processed_successfully,
        r.processing_errors,
        r.partial_success,
        r.pending_processing,
        r.recovered,
        r.recovery_failed,
    ) == (10, 3, 2, 1, 2, 1, 1)
    assert r.average_processing_delay_seconds == pytest.approx((10 + 20 + 30 + 60 + 80 + 100) / 6)
    assert (r.largest_payload_bytes, r.smallest_payload_bytes) == (90_000_000, 500)
    assert r.failure_rate_pct == 50.0  # (2 error + 1 partial + 1 recovery_failed) / 8 non-pending
    assert r.data_loss_detected is None and r.data_loss_rate_pct is None and r.loss_by_table is None
    assert r.recovered_all_time == 1 and r.recovery_failed_all_time == 1
    assert r.last_successful_recovery_at == NOW - timedelta(hours=1) + timedelta(seconds=10_000)
    assert sorted(r.payload_sizes) == sorted(
        [1_000, 2_000, 3_000, 90_000_000, 4_000, 5_000, 500, 600, 7_000, 8_000]
    )
    wider = report_of(engine, hours=48, deep_check=False)
    assert wider.total_raw_ingestions == 11 and wider.largest_payload_bytes == 100_000_000


def test_empty_window(engine):
    r = report_of(engine, hours=6)
    assert r.total_raw_ingestions == 0 and r.failure_rate_pct == 0.0 and r.data_loss_rate_pct == 0.0
    assert r.average_processing_delay_seconds is None and r.largest_payload_bytes is None
    assert r.alerts == [] and r.user_impact == []
    assert r.recovery_recommendations == [
        "No action needed: no data loss, failures or pending payloads in the last 6h."
    ]
    assert len(r.trends) == 7 and all(b.ingestions == 0 for b in r.trends)


def test_to_dict_is_plain_json_with_the_documented_keys(engine):
    seed(engine, [Ing(status="processed", delay_seconds=5), Ing(status="error", errors=PARAM_LIMIT)])
    data = report_of(engine, hours=24, deep_check=False).to_dict()
    required = {
        "total_raw_ingestions",
        "processed_successfully",
        "processing_errors",
        "partial_success",
        "pending_processing",
        "recovered",
        "recovery_failed",
        "data_loss_detected",
        "user_impact",
        "error_pattern_analysis",
        "recovery_recommendations",
        "alerts",
        "window_hours",
        "generated_at",
        "missing_metrics_total",
        "loss_by_table",
        "trends",
        "payload_sizes",
        "thresholds",
        "deep_check",
        "average_processing_delay_seconds",
        "largest_payload_bytes",
        "smallest_payload_bytes",
        "failure_rate_pct",
        "data_loss_rate_pct",
    }
    assert required <= set(data)
    assert json.loads(json.dumps(data, allow_nan=False)) == data  # only JSON types, no NaN

    def walk(value):
        assert isinstance(value, (str, int, float, bool, type(None), list, dict)), type(value)
        for child in value.values() if isinstance(value, dict) else value if isinstance(value, list) else ():
            walk(child)

    walk(data)
    assert data["generated_at"] == NOW.isoformat()
    assert data["thresholds"] == {
        "data_loss_critical_pct": 10.0,
        "data_loss_warning_pct": 5.0,
        "failure_critical_pct": 20.0,
        "failure_warning_pct": 10.0,
        "min_user_success_pct": 80.0,
    }


def test_deep_check_finds_loss_whatever_the_status(engine):
    seed(
        engine,
        [
            Ing(status="processed", points=3),  # complete
            Ing(status="processed", points=3, lost=2),  # silent loss
            Ing(status="error", points=2, lost=2, errors=PARAM_LIMIT),
            Ing(status="partial_success", points=4, lost=1),
            Ing(status="recovered", points=2),
            Ing(status="pending", points=5, lost=5),  # not lost, only late
        ],
    )
    r = report_of(engine, hours=24)
    assert r.data_loss_detected == 3 and r.silent_data_loss == 1
    assert r.missing_metrics_total == 5
    assert r.loss_by_table == {name: (5 if name == "heart_rate_metrics" else 0) for name in METRIC_TABLES}
    assert r.data_loss_rate_pct == 60.0  # 3 of 5 non-pending
    assert r.recovery_candidates_pending == 3  # error + partial_success + the silent loss
    # The second run answers from the reconciliation cache, with the same figures.
    again = report_of(engine, hours=24).to_dict()
    assert again == r.to_dict()


def test_deep_check_reconciles_the_window_once(engine, monkeypatch):
    """One reconcile_window call per report (it caches per payload hash); pending payloads are not parsed."""
    from recovery_lib import reconcile

    calls = []
    real = reconcile.reconcile_window

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(reconcile, "reconcile_window", spy)
    seed(engine, [Ing(status="processed", lost=1), Ing(status="error"), Ing(status="pending")])
    report_of(engine, hours=24)
    assert len(calls) == 1
    assert calls[0]["since"] == NOW - timedelta(hours=24) and "pending" not in calls[0]["statuses"]


def test_monitor_is_read_only_and_runs_with_select_only(engine):
    seed(engine, [Ing(status="processed", points=2, lost=1), Ing(status="error", errors=PARAM_LIMIT)])
    role = f"monitor_ro_{uuid.uuid4().hex[:8]}"
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE ROLE {role}"))
        conn.execute(sa.text(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}"))
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(f"SET LOCAL ROLE {role}"))
            r = build_monitoring_report(conn, hours=24, now=NOW)
            assert conn.execute(sa.text("SELECT count(*) FROM reconciliation_cache")).scalar_one() == 0
        assert r.data_loss_detected == 1 and r.processing_errors == 1
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f"DROP OWNED BY {role}"))
            conn.execute(sa.text(f"DROP ROLE {role}"))


# -- alert boundaries: strictly above a rate threshold fires, at it does not ------------------------


@pytest.mark.parametrize(
    ("total", "lost", "expected"),
    [
        (21, 1, None),  # 4.76%: just under the 5% warning
        (20, 1, None),  # 5%: at the warning threshold
        (19, 1, "warning"),  # 5.26%: just over
        (21, 2, "warning"),  # 9.52%: just under the 10% critical
        (20, 2, "warning"),  # 10%: at the critical threshold
        (19, 2, "critical"),  # 10.53%: just over
    ],
)
def test_data_loss_alert_boundaries(engine, total, lost, expected):
    seed(engine, [Ing(status="processed", points=1, lost=int(i < lost)) for i in range(total)])
    r = report_of(engine, hours=24)
    assert r.data_loss_detected == lost
    levels = [a.level for a in r.alerts if a.name == "data_loss_rate"]
    assert levels == ([expected] if expected else [])
    if expected:
        [alert] = [a for a in r.alerts if a.name == "data_loss_rate"]
        assert alert.value == pytest.approx(100 * lost / total, abs=1e-4)
        assert alert.threshold == (10.0 if expected == "critical" else 5.0)


@pytest.mark.parametrize(
    ("total", "failed", "expected"),
    [
        (21, 2, None),  # 9.52%: just under the 10% warning
        (20, 2, None),  # 10%: at it
        (19, 2, "warning"),  # 10.53%
        (21, 4, "warning"),  # 19.05%: just under the 20% critical
        (20, 4, "warning"),  # 20%: at it
        (19, 4, "critical"),  # 21.05%
    ],
)
def test_failure_alert_boundaries(engine, total, failed, expected):
    # Spread over 5 users so no single user falls under the success threshold... except by design below.
    seed(
        engine,
        [Ing(status="error" if i < failed else "processed", user=i % 5) for i in range(total)],
        users=5,
    )
    r = report_of(engine, hours=24, deep_check=False, min_user_success_pct=0)
    assert [a.level for a in r.alerts if a.name == "failure_rate"] == ([expected] if expected else [])


@pytest.mark.parametrize(
    ("successes", "total", "alert"),
    [(39, 49, True), (4, 5, False), (33, 41, False)],  # 79.59% (just under 80), 80% (at), 80.49% (over)
)
def test_user_success_threshold_boundaries(engine, successes, total, alert):
    seed(engine, [Ing(status="processed" if i < successes else "error") for i in range(total)])
    r = report_of(engine, hours=24, deep_check=False, failure_critical_pct=100, failure_warning_pct=100)
    user_alerts = [a for a in r.alerts if a.name == "user_needs_action"]
    [user] = r.user_impact
    assert user.success_rate_pct == pytest.approx(100 * successes / total, abs=1e-4)
    if alert:
        assert [(a.level, a.user_id) for a in user_alerts] == [("warning", user.user_id)]
        assert user.user_id in user_alerts[0].message
        assert user.recommended_action == al.ACTION_HIGH
    else:
        assert user_alerts == [] and user.recommended_action == al.ACTION_MEDIUM


@pytest.mark.parametrize(
    ("part", "whole", "threshold", "above", "below"),
    [
        (49, 1000, 5, False, True),
        (50, 1000, 5, False, False),
        (51, 1000, 5, True, False),
        (2, 20, 10, False, False),  # exactly 10%: 2/20 is not 10.000000000000002
        (1, 3, 33.33, True, False),
        (1, 3, 33.34, False, True),
        (0, 0, 0, False, False),  # nothing processed: no rate, nothing fires
        (1, 1, 100, False, False),
        (0, 5, 0, False, False),
    ],
)
def test_rate_comparisons_are_exact_and_strict(part, whole, threshold, above, below):
    assert al.above(part, whole, threshold) is above
    assert al.below(part, whole, threshold) is below


def test_rate_alerts_pick_one_level():
    t = al.Thresholds()
    assert [(a.name, a.level) for a in al.rate_alerts(t, losses=11, failures=21, non_pending=100)] == [
        ("data_loss_rate", "critical"),
        ("failure_rate", "critical"),
    ]
    assert [(a.name, a.level) for a in al.rate_alerts(t, losses=6, failures=11, non_pending=100)] == [
        ("data_loss_rate", "warning"),
        ("failure_rate", "warning"),
    ]
    assert al.rate_alerts(t, losses=None, failures=0, non_pending=100) == []
    assert al.rate_alerts(t, losses=100, failures=100, non_pending=0) == []


# -- user impact ----------------------------------------------------------------------------------


def test_user_impact_numbers_and_order(engine):
    users, ids = seed(
        engine,
        [
            # user 0: one good, one silent loss, one lost error, one pending -> HIGH
            Ing(user=0, status="processed", points=2, delay_seconds=0, age_hours=10),
            Ing(user=0, status="processed", points=2, lost=1, size=5_000, delay_seconds=0, age_hours=2),
            Ing(user=0, status="error", points=1, lost=1, size=9_000, errors=PARAM_LIMIT),
            Ing(user=0, status="pending", points=1, lost=1),
            # user 1: 9 good, 1 error -> 90% -> MEDIUM
            *[Ing(user=1, status="processed", delay_seconds=0, age_hours=3) for _ in range(9)],
            Ing(user=1, status="error", size=1_234, lost=1),
            # user 2: all good -> OK
            Ing(user=2, status="processed", delay_seconds=60, age_hours=6),
            # user 3: only an error now, a success three days ago (outside the window) -> days 3.0
            Ing(user=3, status="processed", delay_seconds=0, age_hours=72),
            Ing(user=3, status="error", lost=1, size=77),
            # user 4: never succeeded
            Ing(user=4, status="recovery_failed", lost=1, size=88),
        ],
        users=5,
    )
    r = report_of(engine, hours=24)
    by_user = {u.user_id: u for u in r.user_impact}
    u0 = by_user[users[0]]
    assert (
        u0.payloads,
        u0.pending_payloads,
        u0.non_pending_payloads,
        u0.failed_payloads,
        u0.loss_payloads,
        u0.missing_metrics,
    ) == (4, 1, 3, 1, 2, 2)
    assert u0.data_loss_pct == pytest.approx(66.6667) and u0.success_rate_pct == pytest.approx(33.3333)
    assert u0.largest_failed_payload_bytes == 9_000  # the larger of the lost/failed ones
    assert u0.days_since_last_success == pytest.approx(
        10 / 24, abs=0.01
    )  # the silently lost one is no success
    assert u0.recommended_action == al.ACTION_HIGH
    u1 = by_user[users[1]]
    assert (u1.failed_payloads, u1.loss_payloads, u1.success_rate_pct, u1.recommended_action) == (
        1,
        1,
        90.0,
        al.ACTION_MEDIUM,
    )
    assert u1.largest_failed_payload_bytes == 1_234
    u2 = by_user[users[2]]
    assert (
        u2.success_rate_pct,
        u2.data_loss_pct,
        u2.largest_failed_payload_bytes,
        u2.recommended_action,
    ) == (100.0, 0.0, None, al.ACTION_OK)
    assert u2.days_since_last_success == pytest.approx((6 * 3600 - 60) / 86400, abs=0.01)
    assert by_user[users[3]].days_since_last_success == pytest.approx(3.0)
    assert by_user[users[4]].days_since_last_success is None
    assert by_user[users[4]].success_rate_pct == 0.0
    order = [u.recommended_action for u in r.user_impact]
    assert order == sorted(order, key=al.ACTION_ORDER.__getitem__)
    assert r.user_impact[-1].user_id == users[2]
    assert {a.user_id for a in r.alerts if a.name == "user_needs_action"} == {users[0], users[3], users[4]}


# -- error patterns from errors PostgreSQL really raises --------------------------------------------


def _libpq() -> ctypes.CDLL:
    """The libpq psycopg2 ships with (or the system's)."""
    here = os.path.dirname(os.path.dirname(psycopg2.__file__))
    found = glob.glob(os.path.join(here, "psycopg2_binary.libs", "libpq*.so*")) or [
        ctypes.util.find_library("pq")
    ]
    assert found[0], "no libpq found"
    lib = ctypes.CDLL(found[0])
    lib.PQconnectdb.restype = ctypes.c_void_p
    lib.PQconnectdb.argtypes = [ctypes.c_char_p]
    lib.PQstatus.argtypes = [ctypes.c_void_p]
    lib.PQerrorMessage.restype = ctypes.c_char_p
    lib.PQerrorMessage.argtypes = [ctypes.c_void_p]
    lib.PQprepare.restype = ctypes.c_void_p
    lib.PQprepare.argtypes = [
        ctypes.c_void_p,
        ctypes.c_char_p,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_void_p,
    ]
    for name in ("PQexecParams", "PQexecPrepared"):
        fn = getattr(lib, name)
        fn.restype = ctypes.c_void_p
    lib.PQexecParams.argtypes = [
        ctypes.c_void_p,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_void_p,
        ctypes.POINTER(ctypes.c_char_p),
        ctypes.c_void_p,
        ctypes.c_void_p,
        ctypes.c_int,
    ]
    lib.PQexecPrepared.argtypes = [
        ctypes.c_void_p,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.POINTER(ctypes.c_char_p),
        ctypes.c_void_p,
        ctypes.c_void_p,
        ctypes.c_int,
    ]
    lib.PQresultStatus.argtypes = [ctypes.c_void_p]
    lib.PQresultErrorMessage.restype = ctypes.c_char_p
    lib.PQresultErrorMessage.argtypes = [ctypes.c_void_p]
    lib.PQclear.argtypes = [ctypes.c_void_p]
    lib.PQfinish.argtypes = [ctypes.c_void_p]
    return lib


@pytest.fixture()
def libpq_conn(engine):
    lib = _libpq()
    dsn = make_url(engine.url).set(drivername="postgresql").render_as_string(hide_password=False)
    conn = lib.PQconnectdb(dsn.encode())
    assert lib.PQstatus(conn) == 0, lib.PQerrorMessage(conn).decode()
    yield lib, conn
    lib.PQfinish(conn)


# The original tool's insert: 23,334 heart-rate rows x 3 columns = 70,002 bind parameters.
ROWS, COLS = 23_334, 3
BIG_INSERT = "INSERT INTO heart_rate_metrics (user_id, recorded_at, heart_rate) VALUES " + ", ".join(
    f"(${i * COLS + 1}, ${i * COLS + 2}, ${i * COLS + 3})" for i in range(ROWS)
)


def test_libpq_refuses_more_than_65535_parameters(libpq_conn):
    """libpq (what psycopg 3 and most drivers build on) refuses the statement itself."""
    lib, conn = libpq_conn
    values = (ctypes.c_char_p * (ROWS * COLS))()
    assert lib.PQexecParams(conn, BIG_INSERT.encode(), ROWS * COLS, None, values, None, None, 0) in (None, 0)
    message = lib.PQerrorMessage(conn).decode()
    assert "number of parameters must be between 0 and 65535" in message
    assert categorize_error(message) == "parameter_limit"


def test_server_error_when_a_driver_wraps_the_parameter_count(libpq_conn):
    """The server accepts a 70,002-parameter statement; a driver writing the count as 16 bits sends 4,466."""
    lib, conn = libpq_conn
    prepared = lib.PQprepare(conn, b"", BIG_INSERT.encode(), 0, None)
    assert lib.PQresultStatus(prepared) == 1, lib.PQresultErrorMessage(prepared).decode()  # PGRES_COMMAND_OK
    lib.PQclear(prepared)
    wrapped = (ROWS * COLS) % 65536
    values = (ctypes.c_char_p * wrapped)()
    result = lib.PQexecPrepared(conn, b"", wrapped, values, None, None, 0)
    message = lib.PQresultErrorMessage(result).decode()
    lib.PQclear(result)
    assert (
        f'bind message supplies {wrapped} parameters, but prepared statement "" requires {ROWS * COLS}'
        in message
    )
    if categorize_error(message) != "parameter_limit":
        pytest.xfail(
            f"recovery_lib/errors.py categorises the server's {message.strip()!r} as "
            f"{categorize_error(message)!r}, not 'parameter_limit'"
        )


def _real_errors(engine) -> dict[str, str]:
    """Error texts provoked on the server, by the category they must get."""
    users, _ = seed(engine, [])
    texts = {}
    with engine.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO heart_rate_metrics (user_id, recorded_at) VALUES (:u, :t)"),
            {"u": users[0], "t": NOW},
        )
    with pytest.raises(sa.exc.IntegrityError) as caught, engine.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO heart_rate_metrics (user_id, recorded_at) VALUES (:u, :t)"),
            {"u": users[0], "t": NOW},
        )
    texts["duplicate_key"] = str(caught.value.orig)

    victim = engine.connect()
    pid = victim.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
    with engine.begin() as killer:
        assert killer.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar_one()
    with pytest.raises(sa.exc.OperationalError) as caught:
        victim.execute(sa.text("SELECT 1"))
    victim.invalidate()
    victim.close()
    texts["connection"] = str(caught.value.orig)

    with pytest.raises(sa.exc.OperationalError) as caught, engine.begin() as conn:
        conn.execute(sa.text("SET LOCAL statement_timeout = '50ms'"))
        conn.execute(sa.text("SELECT pg_sleep(2)"))
    texts["timeout"] = str(caught.value.orig)

    with pytest.raises(sa.exc.DataError) as caught, engine.begin() as conn:
        conn.execute(sa.text("SELECT CAST(:v AS jsonb)"), {"v": '{"data": {"metrics": ['})
    texts["parse"] = str(caught.value.orig)

    with pytest.raises(sa.exc.DataError) as caught, engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO heart_rate_metrics (user_id, recorded_at, heart_rate) "
                "VALUES (:u, :t, CAST(:v AS double precision))"
            ),
            {"u": users[0], "t": NOW + timedelta(minutes=1), "v": "seventy"},
        )
    texts["validation"] = str(caught.value.orig)
    return texts


def test_real_postgresql_errors_are_categorised_and_counted(engine, libpq_conn):
    lib, conn = libpq_conn
    values = (ctypes.c_char_p * (ROWS * COLS))()
    lib.PQexecParams(conn, BIG_INSERT.encode(), ROWS * COLS, None, values, None, None, 0)
    texts = {"parameter_limit": lib.PQerrorMessage(conn).decode().strip(), **_real_errors(engine)}
    assert "duplicate key value violates unique constraint" in texts["duplicate_key"]
    # psycopg2 reports either the server's FATAL or libpq's view of the closed socket.
    assert (
        "terminating connection due to administrator command" in texts["connection"]
        or "server closed the connection unexpectedly" in texts["connection"]
    )
    assert "canceling statement due to statement timeout" in texts["timeout"]
    for category, text in texts.items():
        assert categorize_error(text) == category, (category, text)

    # Stored as the API stores them (string, list of dicts, dict), plus a recovery's own entry.
    stored = [
        Ing(status="error", errors=texts["parameter_limit"]),
        Ing(status="error", errors=[{"error": texts["parameter_limit"], "at": NOW.isoformat()}]),
        Ing(
            status="error",
            errors=[
                {"error": texts["parameter_limit"]},
                {"source": "recovery", "category": "checksum_mismatch", "error": "x"},
            ],
        ),
        Ing(status="partial_success", errors={"message": texts["duplicate_key"]}),
        Ing(status="error", errors=[{"error": texts["connection"]}]),
        Ing(status="error", errors=[{"error": texts["timeout"]}]),
        Ing(status="error", errors=[{"error": texts["parse"]}]),
        Ing(status="error", errors=[{"error": texts["validation"]}]),
        Ing(status="error", errors=[{"error": "something nobody anticipated"}]),
        Ing(status="error", errors=[{"error": texts["timeout"]}], age_hours=48),  # outside the window
        Ing(status="processed"),
    ]
    with engine.begin() as c:
        c.execute(sa.text("DELETE FROM heart_rate_metrics"))
        c.execute(sa.text("DELETE FROM users"))
    seed(engine, stored)
    patterns = report_of(engine, hours=24, deep_check=False).error_pattern_analysis
    assert list(patterns) == list(ERROR_CATEGORIES)
    assert patterns == {
        "parameter_limit": 3,
        "duplicate_key": 1,
        "timeout": 1,
        "connection": 1,
        "memory": 0,
        "parse": 1,
        "validation": 1,
        "other": 1,
    }


# -- recommendations: present exactly when their condition holds -----------------------------------

RECOMMENDATION_PREFIXES = {
    "loss": "Data loss detected in ",
    "param": "PostgreSQL parameter limit violations detected ",
    "failed": " failed processing (status error or partial_success)",
    "users": " a scheduled recovery (see USER IMPACT",
    "pending": " still pending processing",
    "recovery_failed": " failed; inspect recovery_failed reasons in verify.ipynb.",
    "unparseable": " cannot be parsed at all",
    "none": "No action needed",
}


def _kinds(recommendations: list[str]) -> set[str]:
    found = {kind for kind, text in RECOMMENDATION_PREFIXES.items() for r in recommendations if text in r}
    assert len(found) == len(recommendations), recommendations  # every sentence is one known kind
    return found


@pytest.mark.parametrize(
    ("ingestions", "kinds"),
    [
        ([Ing(status="processed")], {"none"}),
        ([Ing(status="processed"), Ing(status="pending", lost=1)], {"pending"}),
        ([*[Ing(status="processed") for _ in range(9)], Ing(status="processed", lost=1)], {"loss"}),
        ([*[Ing(status="processed") for _ in range(9)], Ing(status="error", errors="boom")], {"failed"}),
        (
            [*[Ing(status="processed") for _ in range(9)], Ing(status="error", lost=1, errors=PARAM_LIMIT)],
            {"loss", "param", "failed"},
        ),
        (
            [*[Ing(status="processed") for _ in range(9)], Ing(status="recovery_failed", errors="boom")],
            {"recovery_failed"},
        ),
        ([Ing(status="processed"), Ing(status="error", lost=1, errors="boom")], {"loss", "failed", "users"}),
        (
            [*[Ing(status="processed") for _ in range(9)], Ing(status="recovered", errors=PARAM_LIMIT)],
            {"param"},
        ),
    ],
)
def test_recommendations_exactly_when_their_condition_holds(engine, ingestions, kinds):
    seed(engine, ingestions)
    r = report_of(engine, hours=24)
    assert _kinds(r.recovery_recommendations) == kinds


def test_recommendation_wording(engine):
    seed(
        engine,
        [
            *[Ing(status="error", errors=PARAM_LIMIT, lost=1) for _ in range(3)],
            Ing(status="processed", points=2, lost=2),
            Ing(status="pending"),
            Ing(status="pending"),
        ],
    )
    recs = report_of(engine, hours=24).recovery_recommendations
    assert "Data loss detected in 4 payloads (5 metric rows missing). Run data recovery immediately." in recs
    assert "PostgreSQL parameter limit violations detected (3 cases). Review batch chunk sizes." in recs
    assert any(r.startswith("2 payloads are still pending processing") for r in recs)


def test_unparseable_payload_is_recommended_for_a_manual_look(engine):
    _, [bad] = seed(engine, [Ing(status="error", errors=[{"error": "invalid structure"}])])
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE raw_ingestions SET raw_payload = '[1, 2]'::jsonb, payload_hash = 'x' WHERE id = :id"
            ),
            {"id": bad},
        )
    r = report_of(engine, hours=24)
    assert r.unparseable_payloads == 1 and r.data_loss_detected == 0
    assert _kinds(r.recovery_recommendations) == {"failed", "unparseable", "users"}


def test_no_deep_check_does_not_claim_no_loss(engine):
    seed(engine, [Ing(status="processed", lost=1)])
    r = report_of(engine, hours=24, deep_check=False)
    assert r.recovery_recommendations == [
        "No action needed: no failures or pending payloads in the last 24h (data loss not measured: the deep "
        "check was off)."
    ]


# -- trends and sizes -----------------------------------------------------------------------------


def test_hourly_trends(engine):
    seed(
        engine,
        [
            Ing(status="processed", age_hours=0.5),  # 11:30 -> bucket 11:00
            Ing(status="error", age_hours=0.75, lost=1),  # 11:15
            Ing(status="processed", age_hours=2.5, lost=1),  # 09:30
            Ing(status="pending", age_hours=2.6),  # 09:24
        ],
    )
    r = report_of(engine, hours=6)
    assert r.trend_granularity == "hour"
    trends = [b.to_dict() for b in r.trends]
    assert [b["bucket_start"] for b in trends] == [
        (NOW - timedelta(hours=h)).isoformat() for h in range(6, -1, -1)
    ]
    by_start = {b["bucket_start"]: b for b in trends}
    eleven = by_start[(NOW - timedelta(hours=1)).isoformat()]
    assert (eleven["ingestions"], eleven["failures"], eleven["data_loss"], eleven["data_loss_rate_pct"]) == (
        2,
        1,
        1,
        50.0,
    )
    nine = by_start[(NOW - timedelta(hours=3)).isoformat()]
    assert (nine["ingestions"], nine["failures"], nine["data_loss"], nine["data_loss_rate_pct"]) == (
        2,
        0,
        1,
        100.0,
    )  # the pending one is not counted in the rate
    assert sum(b["ingestions"] for b in trends) == 4


def test_daily_trends_beyond_48_hours(engine):
    seed(engine, [Ing(status="processed", age_hours=1), Ing(status="error", age_hours=60)])
    r = report_of(engine, hours=72, deep_check=False)
    assert r.trend_granularity == "day"
    starts = [b.bucket_start for b in r.trends]
    assert starts == [datetime(2024, 2, d, tzinfo=UTC) for d in (3, 4, 5, 6)]
    assert [(b.ingestions, b.failures, b.data_loss) for b in r.trends] == [
        (0, 0, None),
        (1, 1, None),
        (0, 0, None),
        (1, 0, None),
    ]


def test_payload_sizes_are_capped(engine):
    users, _ = seed(engine, [])
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO raw_ingestions (id, user_id, payload_hash, payload_size_bytes, raw_payload, "
                "processing_status, created_at) SELECT gen_random_uuid(), :u, md5(g::text), g, '{}'::jsonb, "
                "'pending', :at FROM generate_series(1, 10050) g"
            ),
            {"u": users[0], "at": NOW - timedelta(hours=1)},
        )
    r = report_of(engine, hours=24)
    assert len(r.payload_sizes) == 10_000 and r.payload_sizes_sampled
    assert len(set(r.payload_sizes)) == 10_000 and set(r.payload_sizes) <= set(range(1, 10051))
    assert (r.largest_payload_bytes, r.smallest_payload_bytes) == (10050, 1)


# -- text report ----------------------------------------------------------------------------------


def test_text_report_sections_and_alignment(engine):
    users, _ = seed(
        engine,
        [
            Ing(user=0, status="processed"),
            Ing(user=0, status="error", lost=1, errors=PARAM_LIMIT, size=2_500_000),
            Ing(user=1, status="processed"),
            Ing(user=1, status="processed"),
        ],
        users=2,
    )
    text = format_text_report(report_of(engine, hours=24))
    heads = ["OVERALL STATISTICS", "USER IMPACT", "ERROR PATTERNS", "RECOVERY RECOMMENDATIONS", "ALERTS"]
    positions = [text.index(h) for h in heads]
    assert positions == sorted(positions)
    assert "Total raw ingestions:" in text and "parameter_limit:" in text
    assert "[CRITICAL] data_loss_rate" in text and users[0] in text and "2.4 MB" in text
    assert "HIGH: Schedule user recovery" in text
    # The user table's columns line up: each row has its user id at the start, numbers right-aligned.
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("user_id"))
    rows = [line for line in lines if line.startswith(tuple(users))]
    assert len(rows) == 2
    end_of_payloads = header.index("payloads") + len("payloads")
    assert all(row[end_of_payloads - 1].isdigit() for row in rows)
    stats = [line for line in lines if line.startswith(("Total raw ingestions:", "Recovered:"))]
    assert len({len(line) for line in stats}) == 1  # values right-aligned in one column


# -- parameters -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"hours": 0}, "hours must be a whole number from 1"),
        ({"hours": -1}, "hours must be a whole number from 1"),
        ({"hours": "a day"}, "hours must be a whole number"),
        ({"deep_check": "maybe"}, "deep_check must be True or False"),
        ({"data_loss_critical_pct": 101}, "data_loss_critical_pct must be a percentage"),
        ({"min_user_success_pct": -5}, "min_user_success_pct must be a percentage"),
        ({"failure_warning_pct": 30}, "failure_warning_pct (30) must not be above failure_critical_pct (20)"),
    ],
)
def test_bad_parameters_are_refused_before_any_query(kwargs, message):
    unreachable = sa.create_engine(UNREACHABLE.replace("postgresql", "postgresql+psycopg2"))
    with pytest.raises(ParameterError) as caught:
        build_monitoring_report(unreachable, **kwargs)
    assert message in str(caught.value)


def test_thresholds_accept_strings_as_papermill_passes_them():
    t = al.Thresholds.validated(data_loss_critical_pct="12.5", min_user_success_pct="90")
    assert (t.data_loss_critical_pct, t.min_user_success_pct, t.failure_critical_pct) == (12.5, 90.0, 20.0)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["monitor", "--hours", "0"], "hours must be a whole number from 1"),
        (["monitor", "--hours", "-1"], "hours must be a whole number from 1"),
        (["monitor", "--hours", "six"], "hours must be a whole number"),
        (["monitor", "--data-loss-warning-pct", "150"], "data_loss_warning_pct must be a percentage"),
        (["monitor", "--data-loss-warning-pct", "20"], "data_loss_warning_pct (20) must not be above"),
    ],
)
def test_cli_bad_parameters_exit_2_before_connecting(argv, message, monkeypatch, capsys):
    monkeypatch.setenv("DATABASE_URL", UNREACHABLE)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "secret-pw" not in err


def test_cli_unreachable_database_exits_1_without_the_password(monkeypatch, capsys):
    monkeypatch.setenv("DATABASE_URL", UNREACHABLE)
    assert main(["monitor", "--hours", "6", "--no-deep-check"]) == 1
    err = capsys.readouterr().err
    assert "cannot read the database" in err and "secret-pw" not in err and "***" in err


def test_cli_fail_on(engine, capsys, tmp_path):
    seed(
        engine,
        [Ing(status="error", age_hours=0.5, errors=PARAM_LIMIT), Ing(status="processed", age_hours=0.5)],
        now=datetime.now(UTC),
    )
    assert main(["monitor", "--hours", "2", "--no-deep-check", "--json", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    assert "OVERALL STATISTICS" in out and "[CRITICAL] failure_rate" in out
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["window_hours"] == 2 and data["processing_errors"] == 1 and data["deep_check"] is False
    assert main(["monitor", "--hours", "2", "--no-deep-check", "--fail-on", "critical"]) == 1
    assert (
        main(
            [
                "monitor",
                "--hours",
                "2",
                "--no-deep-check",
                "--fail-on",
                "critical",
                "--failure-critical-pct",
                "50",
                "--failure-warning-pct",
                "40",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "monitor",
                "--hours",
                "2",
                "--no-deep-check",
                "--fail-on",
                "warning",
                "--failure-critical-pct",
                "50",
                "--failure-warning-pct",
                "40",
            ]
        )
        == 1
    )


# -- ground truth from the incident generator -----------------------------------------------------


def test_report_matches_the_simulated_incident(engine):
    from collections import Counter

    from recovery_lib.simulate import simulate

    truth = simulate(engine, users=4, payloads=18, seed=3, now=NOW, large_points=300)
    r = report_of(engine, hours=24)
    status = truth.status_counts
    assert (
        r.total_raw_ingestions,
        r.processed_successfully,
        r.processing_errors,
        r.partial_success,
        r.pending_processing,
    ) == (
        len(truth.ingestions),
        status.get("processed", 0),
        status.get("error", 0),
        status.get("partial_success", 0),
        status.get("pending", 0),
    )
    assert r.data_loss_detected == len(truth.loss_ingestions) > 0
    assert r.silent_data_loss == len(truth.silent_loss_ingestions) > 0
    assert r.loss_by_table == truth.missing_by_table
    assert r.missing_metrics_total == sum(truth.missing_by_table.values())
    lost_per_user = Counter(i.user_id for i in truth.ingestions if i.id in set(truth.loss_ingestions))
    assert {u.user_id: u.loss_payloads for u in r.user_impact} == {
        u: lost_per_user.get(u, 0) for u in truth.users
    }
    assert sum(b.data_loss or 0 for b in r.trends) == len(truth.loss_ingestions)
    assert sum(b.ingestions for b in r.trends) == len(truth.ingestions)
    assert r.to_dict()["data_loss_rate_pct"] == pytest.approx(
        100 * len(truth.loss_ingestions) / (len(truth.ingestions) - status.get("pending", 0)), abs=1e-4
    )
