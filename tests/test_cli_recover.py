"""``python -m recovery_lib recover|reprocess-failed|verify`` as an operator runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime

import pytest
from helpers import add_ingestion, add_user, hr_payload, statuses

from recovery_lib.cli import main

UNREACHABLE = "postgresql://nobody:secret-pw@127.0.0.1:1/none"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["recover", "--user-id", "42"], "user_id must be a UUID"),
        (["recover", "--status", "done"], "statuses must be one or more of"),
        (["recover", "--batch-size", "0"], "batch_size must be a whole number from 1"),
        (["recover", "--batch-size", "lots"], "batch_size must be a whole number"),
        (["reprocess-failed", "--user-id", "x"], "user_id must be a UUID"),
        (["verify", "--since", "yesterday-ish"], "since must be an ISO date/time"),
    ],
)
def test_invalid_arguments_exit_2_before_connecting(argv, message, monkeypatch, capsys):
    monkeypatch.setenv("DATABASE_URL", UNREACHABLE)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "secret-pw" not in err


def test_invalid_batch_configuration_exits_2(monkeypatch, capsys):
    monkeypatch.setenv("DATABASE_URL", UNREACHABLE)
    monkeypatch.setenv("BATCH_SLEEP_CHUNK_SIZE", "100000")
    assert main(["recover"]) == 2
    assert "Invalid batch configuration: sleep_metrics" in capsys.readouterr().err


def test_recover_then_verify_from_the_command_line(engine, tmp_path, capsys):
    user = add_user(engine)
    ingestion = add_ingestion(engine, user, hr_payload(datetime(2024, 2, 6, tzinfo=UTC), 30),
                              errors=[{"error": "number of parameters must be between 0 and 65535"}])
    assert main(["recover", "--dry-run", "--no-progress", "--report-dir", str(tmp_path / "dry")]) == 0
    assert "DRY RUN" in capsys.readouterr().out
    assert statuses(engine)[ingestion] == "error"

    assert main(["recover", "--no-progress", "--report-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "recovered 1" in out and "inserted 30" in out
    [report] = tmp_path.glob("data_recovery_report_*.json")
    assert json.loads(report.read_text())["rows_inserted_total"] == 30

    assert main(["verify", "--json", str(tmp_path / "verify.json")]) == 0
    assert json.loads((tmp_path / "verify.json").read_text())["missing_metrics_total"] == 0


def test_module_entry_point_runs(engine):
    result = subprocess.run([sys.executable, "-m", "recovery_lib", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "recover" in result.stdout
