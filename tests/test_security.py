"""Security: no secret and no health value leaves the tool, and each mode runs with the least privileges.

* The database password, carried in ``DATABASE_URL``, appears in no output, log line (``-v``: DEBUG)
  or file the commands write, also when the connection fails.
* Health values (marker numbers and strings planted in payloads) appear in no output, log line,
  report, ``processing_errors`` note or ``recovery_log`` row; they only land in the metric tables.
* Real roles with exactly the grants of docs/SAFETY.md: ``rr_readonly`` previews, verifies and
  monitors; ``rr_recover`` recovers; ``rr_readonly`` cannot recover, says why, and changes nothing.

The embedded server trusts local connections, so a password is not checked; it is still the secret
the URL carries and the tool must protect.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import stat
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest
import sqlalchemy as sa
from helpers import add_ingestion, add_user, fingerprint, statuses
from sqlalchemy.engine import Engine, make_url

from recovery_lib import reconcile
from recovery_lib.schema import METRIC_TABLES
from recovery_lib.simulate import simulate

ROOT = Path(__file__).resolve().parent.parent
METRIC_TABLE_NAMES = ", ".join(METRIC_TABLES)

# The grants of docs/SAFETY.md, statement for statement ({db} is the database name).
READONLY_GRANTS = [
    "CREATE ROLE rr_readonly LOGIN",
    "GRANT CONNECT ON DATABASE {db} TO rr_readonly",
    "GRANT USAGE ON SCHEMA public TO rr_readonly",
    "GRANT SELECT ON ALL TABLES IN SCHEMA public TO rr_readonly",
]
RECOVER_GRANTS = [
    "CREATE ROLE rr_recover LOGIN",
    "GRANT CONNECT, TEMPORARY ON DATABASE {db} TO rr_recover",
    "GRANT USAGE ON SCHEMA public TO rr_recover",
    "GRANT SELECT ON raw_ingestions, reconciliation_cache TO rr_recover",
    "GRANT UPDATE (processing_status, processing_errors, processed_at) ON raw_ingestions TO rr_recover",
    f"GRANT SELECT, INSERT, UPDATE ON {METRIC_TABLE_NAMES} TO rr_recover",
    "GRANT INSERT ON recovery_log TO rr_recover",
]
RECOVER_CACHE_GRANT = "GRANT INSERT ON reconciliation_cache TO rr_recover"  # optional


def cli(url: str, *args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.run([sys.executable, "-m", "recovery_lib", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "DATABASE_URL": url}, timeout=timeout)


def role_url(engine: Engine, role: str, password: str | None = None) -> str:
    return engine.url.set(username=role, password=password).render_as_string(hide_password=False)


def drop_role(conn: sa.Connection, role: str) -> None:
    if conn.execute(sa.text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role}).first():
        conn.execute(sa.text(f"DROP OWNED BY {role}"))
        conn.execute(sa.text(f"DROP ROLE {role}"))


def everything_written(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def leaks(needles: list[str], outputs: dict[str, str], files: dict[str, bytes]) -> list[str]:
    found = []
    for needle in needles:
        for name, text in outputs.items():
            if needle in text:
                found.append(f"{needle!r} in {name}")
        for name, data in files.items():
            if needle.encode() in data:
                found.append(f"{needle!r} in file {name}")
    return found


# --- no secret leaves -----------------------------------------------------------------------------


@pytest.mark.slow
def test_password_appears_in_no_output_log_or_file_of_8_commands_and_8_failures(engine, tmp_path):
    password = f"Pw-{secrets.token_hex(10)}:/@%"  # characters a URL must escape, too
    role = f"rt_{secrets.token_hex(4)}"
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE ROLE {role} LOGIN SUPERUSER PASSWORD '{password}'"))
    try:
        url = role_url(engine, role, password)
        spelled = sorted({password, quote(password, safe=""), quote_plus(password), quote(password)})
        assert any(s in url for s in spelled), "the URL must carry the password for this test to mean anything"
        work = tmp_path / "work"
        outputs: dict[str, str] = {}
        codes: dict[str, int] = {}
        commands = {
            "simulate": ["-v", "simulate", "--users", "3", "--payloads", "12", "--large-points", "500", "--seed", "3",
                         "--reset", "--truth", "truth.json"],
            "preview": ["-v", "recover", "--dry-run", "--report-dir", "reports"],
            "recover": ["-v", "recover", "--report-dir", "reports"],  # with the progress bar
            "rerun": ["-v", "recover", "--no-progress", "--report-dir", "reports"],
            "verify": ["-v", "verify", "--json", "verify.json"],
            "monitor": ["-v", "monitor", "--json", "monitor.json", "--prom-textfile", "metrics.prom", "--no-push"],
            "summary": ["-v", "summary"],
            "db url": ["db", "url"],
        }
        for name, argv in commands.items():
            result = cli(url, *argv, cwd=work)
            outputs[f"{name} stdout"], outputs[f"{name} stderr"] = result.stdout, result.stderr
            codes[name] = result.returncode
        assert codes["simulate"] == codes["preview"] == codes["recover"] == codes["rerun"] == 0, outputs
        assert f"{role}:***@" in outputs["recover stdout"], "the URL is shown, masked"
        assert len(list((work / "reports").glob("data_recovery_report_*.json"))) == 3
        assert (work / "monitor.json").exists() and (work / "metrics.prom").exists()

        # Connections that fail, each with the password in the URL.
        database = engine.url.database
        failing = {
            "wrong database": role_url(engine, role, password).replace(f"/{database}?", "/no_such_db_x?"),
            "nobody listening": f"postgresql://{role}:{quote(password, safe='')}@127.0.0.1:1/{database}",
            "port not a number": f"postgresql://{role}:{quote(password, safe='')}@127.0.0.1:port/{database}",
        }
        assert "no_such_db_x" in failing["wrong database"]
        every = (["-v", "recover", "--no-progress", "--report-dir", "reports"], ["verify"], ["monitor", "--no-push"],
                 ["summary"])
        for what, bad_url in failing.items():
            for argv in every if what == "wrong database" else every[::2]:
                result = cli(bad_url, *argv, cwd=tmp_path / "failing")
                key = f"{what}: {argv[-1] if argv[0] != '-v' else argv[1]}"
                outputs[f"{key} stdout"], outputs[f"{key} stderr"] = result.stdout, result.stderr
                assert result.returncode != 0, f"{key} should fail"
        assert "no_such_db_x" in outputs["wrong database: recover stderr"], "the failure is explained"

        found = leaks(spelled, outputs, everything_written(tmp_path))
        assert found == [], "the password leaked:\n" + "\n".join(found)
    finally:
        with engine.begin() as conn:
            drop_role(conn, role)


# --- no health value leaves -----------------------------------------------------------------------

VALUE_MARKERS = {
    "valid heart rate Avg": 123.456789,
    "valid heart rate Min": 61.2345678,
    "valid heart rate Max": 187.654321,
    "valid systolic": 171.828182,
    "valid diastolic": 91.4142135,
    "valid steps": 31337.31337,
    "out of range heart rate": 98765.4321,
    "out of range Min": 4242.424242,
    "negative steps": -5150.5150,
}
TEXT_MARKERS = {
    "non-numeric Avg": "MARKER-7f3a",
    "unparseable date": "MARKER-DATE-9b2e",
    "source device": "MARKER-SRC-4c1d",
    "metrics not a list": "MARKER-STRUCT-5e6f",
    "payload a string": "MARKER-SCALAR-0a1b 123.456789",
}


def marker_payloads() -> tuple[dict, dict]:
    day = datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)

    def at(minutes: int) -> str:
        return (day + timedelta(minutes=minutes)).strftime("%Y-%m-%d %H:%M:%S +0000")

    v, t = VALUE_MARKERS, TEXT_MARKERS
    mixed = {"data": {"metrics": [
        {"name": "heart_rate", "units": "count/min", "data": [
            {"date": at(0), "Avg": v["valid heart rate Avg"], "Min": v["valid heart rate Min"],
             "Max": v["valid heart rate Max"], "source": t["source device"]},
            {"date": at(1), "Avg": v["out of range heart rate"]},
            {"date": at(2), "Avg": t["non-numeric Avg"]},
            {"date": t["unparseable date"], "Avg": 70},
            {"date": at(4), "Avg": 70, "Min": v["out of range Min"]},
        ]},
        {"name": "blood_pressure", "units": "mmHg", "data": [
            {"date": at(0), "systolic": v["valid systolic"], "diastolic": v["valid diastolic"]}]},
        {"name": "step_count", "units": "count", "data": [
            {"date": at(0), "qty": v["valid steps"]}, {"date": at(60), "qty": v["negative steps"]}]},
    ]}}
    clean = {"data": {"metrics": [{"name": "heart_rate", "units": "count/min", "data": [
        {"date": at(100 + i), "Avg": v["valid heart rate Avg"], "source": t["source device"]} for i in range(3)]}]}}
    return mixed, clean


@pytest.mark.slow
def test_health_values_appear_in_no_output_log_report_or_note(engine, tmp_path):
    mixed, clean = marker_payloads()
    first, second, third = (add_user(engine) for _ in range(3))
    add_ingestion(engine, first, mixed, errors=[{"error": "number of parameters must be between 0 and 65535"}])
    silent = add_ingestion(engine, second, clean, status="processed")  # silent loss: its rows are missing
    add_ingestion(engine, third, {"data": {"metrics": TEXT_MARKERS["metrics not a list"]}},
                  errors=[{"error": "invalid JSON structure"}])
    add_ingestion(engine, third, TEXT_MARKERS["payload a string"], errors=[{"error": "JSON decode error"}])
    url = engine.url.render_as_string(hide_password=False)

    outputs: dict[str, str] = {}
    for name, argv in {
        "preview": ["-v", "recover", "--dry-run", "--no-progress", "--report-dir", "reports"],
        "recover": ["-v", "recover", "--no-progress", "--report-dir", "reports"],
        "verify": ["-v", "verify", "--json", "verify.json"],
        "monitor": ["-v", "monitor", "--json", "monitor.json", "--prom-textfile", "metrics.prom", "--no-push"],
    }.items():
        result = cli(url, *argv, cwd=tmp_path)
        outputs[f"{name} stdout"], outputs[f"{name} stderr"] = result.stdout, result.stderr
        assert result.returncode in (0, 1), result.stderr[-3000:]
    with engine.connect() as conn:
        outputs["processing_errors"] = "\n".join(
            str(e) for e in conn.execute(sa.text("SELECT processing_errors::text FROM raw_ingestions")).scalars())
        outputs["recovery_log"] = "\n".join(
            str(r) for r in conn.execute(sa.text("SELECT * FROM recovery_log")).all())
        stored = conn.execute(sa.text(
            "SELECT heart_rate, heart_rate_min, heart_rate_max, source_device FROM heart_rate_metrics "
            "WHERE user_id = :u"), {"u": first}).one()

    # The control: the markers went through the tool (valid ones landed, the run saw the others).
    assert stored == (VALUE_MARKERS["valid heart rate Avg"], VALUE_MARKERS["valid heart rate Min"],
                      VALUE_MARKERS["valid heart rate Max"], TEXT_MARKERS["source device"])
    assert statuses(engine)[silent] == "recovered"
    report = json.loads(next((tmp_path / "reports").glob("data_recovery_report_*.json")).read_text())
    assert report["rejected_points_total"] == 5 and report["failure_categories"] == {
        "rejected_points": 1, "invalid_structure": 2}

    needles = [repr(v) for v in VALUE_MARKERS.values()] + [str(v) for v in VALUE_MARKERS.values()]
    needles += list(TEXT_MARKERS.values()) + ["MARKER"]
    found = leaks(sorted(set(needles)), outputs, everything_written(tmp_path))
    assert found == [], "health values leaked:\n" + "\n".join(found)


# --- least privilege ------------------------------------------------------------------------------


@pytest.fixture()
def roles(engine: Engine) -> Iterator[dict[str, str]]:
    """rr_readonly and rr_recover with exactly the documented grants; PUBLIC's defaults taken away meanwhile."""
    database = engine.url.database
    with engine.begin() as conn:
        for role in ("rr_readonly", "rr_recover"):
            drop_role(conn, role)
        # Without this, every role could create temp tables and use the schema through PUBLIC.
        conn.execute(sa.text(f"REVOKE TEMPORARY ON DATABASE {database} FROM PUBLIC"))
        conn.execute(sa.text("REVOKE USAGE ON SCHEMA public FROM PUBLIC"))
        for statement in READONLY_GRANTS + RECOVER_GRANTS:
            conn.execute(sa.text(statement.format(db=database)))
    try:
        yield {role: role_url(engine, role) for role in ("rr_readonly", "rr_recover")}
    finally:
        with engine.begin() as conn:
            for role in ("rr_readonly", "rr_recover"):
                drop_role(conn, role)
            conn.execute(sa.text(f"GRANT TEMPORARY ON DATABASE {database} TO PUBLIC"))
            conn.execute(sa.text("GRANT USAGE ON SCHEMA public TO PUBLIC"))


def small_incident(engine: Engine) -> None:
    simulate(engine, users=3, payloads=12, large_points=500, seed=11)


def assert_all_recovered(engine: Engine) -> None:
    results = reconcile.reconcile_window(engine, use_cache=False)
    assert all(r.missing_total == 0 for r in results if r.status == "recovered")
    assert not [s for s in statuses(engine).values() if s in ("error", "partial_success")]


def test_readonly_role_previews_verifies_and_monitors_changing_nothing(engine, roles, tmp_path):
    small_incident(engine)
    before = fingerprint(engine)
    url = roles["rr_readonly"]
    engine.dispose()
    started = [  # the three read-only commands at once, as an on-call engineer might
        subprocess.Popen([sys.executable, "-m", "recovery_lib", *argv], cwd=tmp_path, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "DATABASE_URL": url})
        for argv in (["recover", "--dry-run", "--no-progress", "--report-dir", "reports"],
                     ["verify", "--json", "verify.json"], ["monitor", "--json", "monitor.json", "--no-push"])
    ]
    outputs = [p.communicate(timeout=300) for p in started]
    preview, verify, monitor = (subprocess.CompletedProcess(p.args, p.returncode, *out)
                                for p, out in zip(started, outputs, strict=True))

    assert preview.returncode == 0 and "DRY RUN" in preview.stdout, preview.stderr[-3000:]
    assert verify.returncode == 1 and json.loads((tmp_path / "verify.json").read_text())["missing_metrics_total"] > 0
    assert monitor.returncode == 0, monitor.stderr[-3000:]
    for result in (preview, verify, monitor):
        assert "permission denied" not in result.stderr and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert fingerprint(engine) == before


@pytest.mark.parametrize("cache_insert", [False, True], ids=["cache_read_only", "cache_insert_granted"])
def test_recover_role_recovers_everything(engine, roles, tmp_path, cache_insert):
    small_incident(engine)
    if cache_insert:
        with engine.begin() as conn:
            conn.execute(sa.text(RECOVER_CACHE_GRANT))
    url = roles["rr_recover"]

    result = cli(url, "recover", "--no-progress", "--report-dir", "reports", cwd=tmp_path)

    assert result.returncode == 0, result.stderr[-3000:]
    assert "permission denied" not in result.stderr and "Traceback" not in result.stderr, result.stderr[-3000:]
    report = json.loads(next((tmp_path / "reports").glob("data_recovery_report_*.json")).read_text())
    assert report["recovered"] > 0 and report["missing_after_total"] == 0
    assert_all_recovered(engine)
    with engine.connect() as conn:
        cached = conn.execute(sa.text("SELECT count(*) FROM reconciliation_cache")).scalar_one()
    assert (cached > 0) == cache_insert
    again = cli(url, "verify", cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr[-3000:]


def test_readonly_role_cannot_recover_says_why_and_changes_nothing(engine, roles, tmp_path):
    small_incident(engine)
    before = fingerprint(engine)

    result = cli(roles["rr_readonly"], "recover", "--no-progress", "--report-dir", "reports", cwd=tmp_path)

    assert fingerprint(engine) == before
    assert "permission denied for table" in result.stderr, result.stderr[-3000:]
    assert result.returncode != 0, f"recover without write privileges exited 0; it printed:\n{result.stdout}"
    assert "Traceback" not in result.stderr and "Exception in thread" not in result.stderr, result.stderr[-3000:]


@pytest.mark.parametrize(
    "statement",
    [
        "DELETE FROM heart_rate_metrics",
        "TRUNCATE activity_metrics",
        "UPDATE raw_ingestions SET raw_payload = '{}'",
        "UPDATE raw_ingestions SET user_id = user_id",
        "DELETE FROM raw_ingestions",
        "INSERT INTO users (id, email) VALUES (gen_random_uuid(), 'x@example.test')",
        "DELETE FROM recovery_log",
        "UPDATE recovery_log SET outcome = 'recovered'",
        "DROP TABLE sleep_metrics",
        "CREATE TABLE public.intruder (id int)",
    ],
)
def test_recover_role_cannot_destroy_or_rewrite_data(engine, roles, statement):
    as_recover = sa.create_engine(roles["rr_recover"])
    try:
        with pytest.raises(sa.exc.ProgrammingError, match="permission denied|must be owner"):
            with as_recover.begin() as conn:
                conn.execute(sa.text(statement))
    finally:
        as_recover.dispose()


def test_documented_grants_are_the_tested_grants():
    documents = [p for p in (ROOT / "docs" / "SAFETY.md", ROOT / "README.md") if p.exists()]
    text = " ".join(re.sub(r"\s+", " ", p.read_text()) for p in documents)
    missing = [s for s in READONLY_GRANTS + RECOVER_GRANTS + [RECOVER_CACHE_GRANT]
               if s.format(db="health") + ";" not in text]
    assert missing == [], f"not documented (as run here) in {[p.name for p in documents]}: {missing}"


def test_the_documented_recover_grant_names_every_metric_table() -> None:
    """docs/SAFETY.md's GRANT on the metric tables is the one this file applies: every table of the catalogue."""
    text = (ROOT / "docs" / "SAFETY.md").read_text(encoding="utf-8")
    grant = text.split("GRANT SELECT, INSERT, UPDATE ON", 1)[1].split("TO rr_recover", 1)[0]
    listed = {name.strip() for name in grant.replace("\n", " ").split(",")}
    assert listed == set(METRIC_TABLES)

# --- every form libpq takes a password in ----------------------------------------------------------


def test_every_form_of_a_password_libpq_accepts_is_masked_and_scrubbed(monkeypatch):
    from recovery_lib.redact import database_secrets, mask_url

    monkeypatch.delenv("PGPASSWORD", raising=False)
    secret = f"Qp-{secrets.token_hex(6)}"
    forms = {
        "userinfo": f"postgresql://app:{secret}@db.internal/health",
        "query parameter": f"postgresql://app@/health?host=/tmp/sock&password={secret}",
        "query parameter, escaped": f"postgresql://app@db/health?password={quote(secret + ' x', safe='')}",
        "key=value DSN": f"host=db.internal dbname=health user=app password={secret} sslmode=require",
        "key=value DSN, quoted": f"host=db dbname=health password = '{secret} x\\' y' user=app",
    }
    for name, url in forms.items():
        masked = mask_url(url)
        assert secret not in masked and "***" in masked, f"{name}: {masked}"
        assert secret in " ".join(database_secrets(url)), f"{name}: the scrubbers do not know the password"
    assert mask_url(make_url(forms["query parameter"])).endswith("password=***")

    monkeypatch.setenv("PGPASSWORD", secret)
    assert secret in database_secrets("postgresql://app@db/health")


@pytest.mark.slow
def test_a_password_given_as_a_url_query_parameter_appears_in_no_output_report_or_notebook(engine, tmp_path):
    secret = f"Qp-{secrets.token_hex(10)}"
    url = engine.url.update_query_dict({"password": secret}).render_as_string(hide_password=False)
    assert secret in url
    simulate(engine, users=2, payloads=6, large_points=200, seed=5, now=datetime.now(UTC))
    work = tmp_path / "work"
    outputs = {}
    for name, argv in {
        "db url": ["db", "url"],
        "recover": ["-v", "recover", "--no-progress", "--report-dir", "reports"],
        "verify": ["verify", "--json", "verify.json"],
        "run verify": ["run", "verify", "--runs-dir", "runs", "--no-progress", "-p", "since", "7d"],
    }.items():
        result = cli(url, *argv, cwd=work)
        outputs[f"{name} stdout"], outputs[f"{name} stderr"] = result.stdout, result.stderr
    assert "password=***" in outputs["db url stdout"] and "password=***" in outputs["recover stdout"]
    [report] = (work / "reports").glob("data_recovery_report_*.json")
    assert "password=***" in json.loads(report.read_text())["database"]
    assert any((work / "runs").glob("*.html")) and any((work / "runs").glob("*.ipynb"))
    found = leaks([secret], outputs, everything_written(tmp_path))
    assert found == [], "the password leaked:\n" + "\n".join(found)


def test_verify_json_is_written_with_mode_0600_whatever_the_umask(engine, tmp_path, capsys):
    from recovery_lib.cli import main

    previous = os.umask(0)
    try:
        assert main(["verify", "--json", str(tmp_path / "verify.json")]) == 0
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "verify.json").stat().st_mode) == 0o600
