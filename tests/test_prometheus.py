"""Prometheus integration: metric values, the atomic textfile, promtool on the rules and on the textfile
the CLI writes from a real database, and the Pushgateway push (success, credentials, failure)."""

from __future__ import annotations

import base64
import http.server
import logging
import shutil
import subprocess
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import prometheus_client
import pytest
from monitor_helpers import NOW, Ing, seed
from prometheus_client.parser import text_string_to_metric_families

from recovery_lib.cli import main
from recovery_lib.monitor import build_monitoring_report
from recovery_lib.monitor import prometheus as prom
from recovery_lib.schema import METRIC_TABLES

ROOT = Path(__file__).resolve().parent.parent
MONITORING = ROOT / "monitoring"


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool is not installed: run `make promtool` (installs the Debian package 'prometheus'), "
            "or `apt-get install --no-install-recommends prometheus`"
        )
    return path


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def exposition(report) -> dict:
    return samples(prometheus_client.generate_latest(prom.registry_from_report(report)).decode())


# -- values -----------------------------------------------------------------------------------------


def test_metric_values_follow_the_report(engine):
    seed(
        engine,
        [
            Ing(status="processed", points=3),
            Ing(status="processed", points=3, lost=2),  # silent loss
            Ing(status="error", points=2, lost=2),
            Ing(status="partial_success", points=1),
            Ing(status="recovered", delay_seconds=600, age_hours=2),
            Ing(status="recovered", delay_seconds=60, age_hours=100),  # outside the window: all-time counters
            Ing(status="recovery_failed", age_hours=3),
            Ing(status="pending", lost=1),
        ],
    )
    report = build_monitoring_report(engine, hours=24, now=NOW)
    m = exposition(report)
    assert m[("health_export_recovery_processed_total", (("status", "success"),))] == 2
    assert m[("health_export_recovery_failed_total", (("status", "error"),))] == 1
    assert m[("health_export_data_loss_detected_total", ())] == 2
    assert m[("health_export_processing_failure_rate", ())] == pytest.approx(3 / 6)
    assert m[("health_export_data_loss_rate", ())] == pytest.approx(2 / 6)
    assert m[("health_export_recovery_candidates_pending", ())] == 3  # error + partial + silent loss
    last = NOW - timedelta(hours=2) + timedelta(seconds=600)
    assert m[("health_export_last_successful_recovery_timestamp_seconds", ())] == last.timestamp()
    for table in METRIC_TABLES:
        expected = 4 if table == "heart_rate_metrics" else 0
        assert m[("health_export_missing_metrics", (("table", table),))] == expected
    assert m[("health_export_monitor_deep_check", ())] == 1
    assert m[("health_export_monitor_window_seconds", ())] == 24 * 3600
    assert m[("health_export_monitor_last_run_timestamp_seconds", ())] == NOW.timestamp()
    assert m[("health_export_monitor_alerts", (("level", "critical"),))] == 2
    # The report's dict gives the same metrics as the report (the notebook has only the dict).
    assert exposition(report.to_dict()) == m


def test_loss_metrics_are_absent_without_the_deep_check(engine):
    seed(engine, [Ing(status="processed", lost=1), Ing(status="error")])
    m = exposition(build_monitoring_report(engine, hours=24, deep_check=False, now=NOW))
    names = {name for name, _ in m}
    assert not names & {
        "health_export_data_loss_rate",
        "health_export_data_loss_detected_total",
        "health_export_missing_metrics",
    }
    assert m[("health_export_monitor_deep_check", ())] == 0
    assert m[("health_export_processing_failure_rate", ())] == 0.5
    assert m[("health_export_last_successful_recovery_timestamp_seconds", ())] == 0  # never recovered
    assert m[("health_export_recovery_processed_total", (("status", "success"),))] == 0



def test_the_target_section_is_exported_per_table_and_field(engine):
    """On the API's database the monitor names what its tables cannot hold (the report's ``target``)."""
    report = build_monitoring_report(engine, hours=24, now=NOW).to_dict()
    own = exposition(report)
    assert own[("health_export_target_info", (("bookkeeping_schema", "public"), ("existing_database", "false")))] == 1
    assert not any(name == "health_export_unsupported_by_schema" for name, _ in own)

    report["target"] = {"existing_database": True, "bookkeeping_schema": "recovery", "tables": {},
                        "unsupported_by_schema": [
                            {"category": "unsupported_by_schema", "table": "heart_rate_metrics",
                             "field": "heart_rate_min", "metrics": ["heart_rate"]},
                            {"category": "unsupported_by_schema", "table": "other_metrics", "field": None,
                             "metrics": []}]}
    m = exposition(report)
    assert m[("health_export_target_info", (("bookkeeping_schema", "recovery"), ("existing_database", "true")))] == 1
    lacking = {labels: value for (name, labels), value in m.items() if name == "health_export_unsupported_by_schema"}
    assert lacking == {(("field", "heart_rate_min"), ("table", "heart_rate_metrics")): 1,
                       (("field", ""), ("table", "other_metrics")): 1}
    text = prometheus_client.generate_latest(prom.registry_from_report(report)).decode()
    result = subprocess.run([promtool(), "check", "metrics"], input=text, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr

# -- textfile -------------------------------------------------------------------------------------


def test_textfile_is_written_atomically(engine, tmp_path, monkeypatch):
    seed(engine, [Ing(status="error")])
    registry = prom.registry_from_report(build_monitoring_report(engine, hours=24, now=NOW))
    target = tmp_path / "textfile" / "health_export.prom"
    assert prom.write_textfile(target, registry) == target
    first = target.read_text()
    assert first == prometheus_client.generate_latest(registry).decode()
    assert [p.name for p in target.parent.iterdir()] == ["health_export.prom"]

    # A failure while writing leaves the previous file whole and no temporary file behind.
    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(prometheus_client.exposition, "generate_latest", broken)
    with pytest.raises(OSError):
        prom.write_textfile(target, registry)
    assert target.read_text() == first
    assert [p.name for p in target.parent.iterdir()] == ["health_export.prom"]


# -- promtool -------------------------------------------------------------------------------------


def test_alert_rules_pass_promtool_check():
    result = subprocess.run(
        [promtool(), "check", "rules", str(MONITORING / "alerts.yml")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 4 rules found" in result.stdout


def test_alert_rule_unit_tests_pass():
    result = subprocess.run(
        [promtool(), "test", "rules", str(MONITORING / "alerts_test.yml")],
        capture_output=True,
        text=True,
        cwd=MONITORING,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_thresholds_match_the_monitor_defaults():
    """The rule thresholds (ratios) are the monitor's default percentages."""
    import yaml

    rules = yaml.safe_load((MONITORING / "alerts.yml").read_text())["groups"][0]["rules"]
    found = {(r["alert"], r["labels"]["severity"]): r["expr"] for r in rules}
    assert found == {
        ("HealthDataLossDetected", "warning"): "health_export_data_loss_rate > 0.05",
        ("HealthDataLossDetected", "critical"): "health_export_data_loss_rate > 0.10",
        ("HighRecoveryFailureRate", "warning"): "health_export_processing_failure_rate > 0.10",
        ("HighRecoveryFailureRate", "critical"): "health_export_processing_failure_rate > 0.20",
    }
    assert all(r.get("for") and {"summary", "description"} <= set(r["annotations"]) for r in rules)


def test_cli_textfile_from_a_simulated_incident_passes_promtool(engine, tmp_path, capsys):
    from recovery_lib.simulate import simulate

    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    truth = simulate(engine, users=3, payloads=12, seed=11, now=now, large_points=300)
    textfile = tmp_path / "health_export.prom"
    assert (
        main(
            [
                "monitor",
                "--hours",
                "24",
                "--prom-textfile",
                str(textfile),
                "--json",
                str(tmp_path / "report.json"),
            ]
        )
        == 0
    )
    assert "OVERALL STATISTICS" in capsys.readouterr().out

    result = subprocess.run(
        [promtool(), "check", "metrics"], input=textfile.read_text(), capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr

    m = samples(textfile.read_text())
    loss = len(truth.loss_ingestions)
    non_pending = sum(n for status, n in truth.status_counts.items() if status != "pending")
    assert loss > 0
    assert m[("health_export_data_loss_detected_total", ())] == loss
    assert m[("health_export_data_loss_rate", ())] == pytest.approx(loss / non_pending)
    for table, missing in truth.missing_by_table.items():
        assert m[("health_export_missing_metrics", (("table", table),))] == missing
    assert list(tmp_path.glob("*.prom*")) == [textfile]


# -- Pushgateway ----------------------------------------------------------------------------------


@pytest.fixture()
def pushgateway() -> Iterator[tuple[str, list[dict]]]:
    received: list[dict] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_PUT(self):  # noqa: N802 - the http.server API
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            received.append(
                {
                    "method": "PUT",
                    "path": self.path,
                    "auth": self.headers.get("Authorization"),
                    "body": body.decode(),
                }
            )
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}", received
    server.shutdown()
    server.server_close()


def _registry():
    report = {
        "window_hours": 6,
        "generated_at": NOW.isoformat(),
        "non_pending": 10,
        "processing_errors": 1,
        "partial_success": 0,
        "recovery_failed": 0,
        "data_loss_detected": 1,
        "loss_by_table": {t: 0 for t in METRIC_TABLES},
        "alerts": [],
    }
    return prom.registry_from_report(report)


def test_push_sends_the_metrics_with_basic_auth_and_never_logs_the_password(pushgateway, caplog):
    address, received = pushgateway
    caplog.set_level(logging.INFO, logger="recovery_lib.monitor.prometheus")
    assert prom.push(_registry(), f"http://ops:s3cret-pw@{address}") is True
    [request] = received
    assert request["path"] == "/metrics/job/health_export_monitor"
    assert request["auth"] == "Basic " + base64.b64encode(b"ops:s3cret-pw").decode()
    assert "health_export_processing_failure_rate 0.1" in request["body"]
    assert "s3cret-pw" not in caplog.text and "ops:" not in caplog.text
    assert f"http://{address}" in caplog.text


def test_push_failure_is_logged_not_raised(caplog):
    caplog.set_level(logging.WARNING, logger="recovery_lib.monitor.prometheus")
    assert prom.push(_registry(), "http://ops:s3cret-pw@127.0.0.1:1", timeout=2) is False
    assert "could not push metrics" in caplog.text and "s3cret-pw" not in caplog.text


def test_cli_pushes_when_the_environment_names_a_gateway(engine, pushgateway, monkeypatch, capsys):
    address, received = pushgateway
    seed(engine, [Ing(status="error", age_hours=0.5)], now=datetime.now(UTC))
    monkeypatch.setenv("PROMETHEUS_PUSHGATEWAY", address)
    assert main(["monitor", "--hours", "1", "--no-deep-check"]) == 0
    [request] = received
    assert "health_export_processing_failure_rate 1.0" in request["body"]
    assert main(["monitor", "--hours", "1", "--no-deep-check", "--no-push"]) == 0
    assert len(received) == 1
    # An unreachable gateway does not fail the monitor.
    monkeypatch.setenv("PROMETHEUS_PUSHGATEWAY", "http://127.0.0.1:1")
    assert main(["monitor", "--hours", "1", "--no-deep-check"]) == 0
