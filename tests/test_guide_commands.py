"""The incident guide's own commands: ``data_recovery``, ``processing_monitor 6``, ``reprocess_failed``.

Each is a console script (pyproject ``[project.scripts]``) and a thin alias of a real command: the
entry-point functions are called here with argv lists like the scripts get, and the installed
scripts themselves are run from the interpreter's ``bin`` folder (``pip install -e .`` puts them
there; ``make setup`` does that).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from datetime import UTC, datetime, timedelta
from importlib import import_module
from pathlib import Path

import pytest
from helpers import add_ingestion, add_user, fingerprint, hr_payload, statuses
from sqlalchemy.engine import Engine

from recovery_lib.cli import guide
from recovery_lib.db import PROJECT_ROOT

UNREACHABLE = "postgresql://nobody:secret-pw@127.0.0.1:1/none"
LIMIT = [{"error": "number of parameters must be between 0 and 65535"}]
GUIDE_SCRIPTS = {"data_recovery": "recover", "processing_monitor": "monitor", "reprocess_failed": "reprocess-failed"}


def incident(engine: Engine) -> dict[str, str]:
    """Two users: an error and a partial_success for the first, an error for the second."""
    start = datetime.now(UTC) - timedelta(days=1)
    first, second = add_user(engine), add_user(engine)
    return {
        "first_error": add_ingestion(engine, first, hr_payload(start, 20), errors=LIMIT),
        "first_partial": add_ingestion(engine, first, hr_payload(start + timedelta(hours=1), 20),
                                       status="partial_success", errors=LIMIT),
        "second_error": add_ingestion(engine, second, hr_payload(start + timedelta(hours=2), 20), errors=LIMIT),
        "first": first, "second": second,
    }


def only_report(folder: Path) -> dict:
    [path] = folder.glob("data_recovery_report_*.json")
    return json.loads(path.read_text())


def test_pyproject_installs_the_three_guide_commands_as_these_functions() -> None:
    scripts = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    for name in GUIDE_SCRIPTS:
        module, _, function = scripts[name].partition(":")
        assert getattr(import_module(module), function) is getattr(guide, name)


def test_the_guide_argv_becomes_the_real_command_line() -> None:
    assert guide.forward("recover", ["--dry-run", "-v", "--batch-size", "200"]) == [
        "-v", "recover", "--dry-run", "--batch-size", "200"]
    assert guide.forward("reprocess-failed", []) == ["reprocess-failed"]


def test_data_recovery_dry_run_writes_nothing_but_its_report_in_the_current_folder(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    incident(engine)
    before = fingerprint(engine)
    monkeypatch.chdir(tmp_path)  # like the original tool, the JSON export lands where it is run
    assert guide.data_recovery(["--dry-run", "--no-progress"]) == 0
    assert "DRY RUN (nothing written)" in capsys.readouterr().out
    assert fingerprint(engine) == before
    report = only_report(tmp_path)
    assert report["dry_run"] is True and report["candidates"] == 3


def test_data_recovery_with_the_guide_flags_recovers_that_user_and_status_only(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = incident(engine)
    monkeypatch.chdir(tmp_path)
    argv = ["--batch-size", "200", "--user-id", ids["first"], "--no-verify", "--status", "error", "--no-progress"]
    assert guide.data_recovery(argv) == 0
    report = only_report(tmp_path)
    assert {k: report["parameters"][k] for k in ("batch_size", "user_id", "verify", "statuses")} == {
        "batch_size": 200, "user_id": ids["first"], "verify": False, "statuses": ["error"]}
    assert report["checksums"]["skipped"] == 1
    now = statuses(engine)
    assert (now[ids["first_error"]], now[ids["first_partial"]], now[ids["second_error"]]) == (
        "recovered", "partial_success", "error")


def test_reprocess_failed_takes_status_error_only(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = incident(engine)
    monkeypatch.chdir(tmp_path)
    assert guide.reprocess_failed([]) == 0
    now = statuses(engine)
    assert (now[ids["first_error"]], now[ids["first_partial"]], now[ids["second_error"]]) == (
        "recovered", "partial_success", "recovered")
    assert only_report(tmp_path)["parameters"]["include_silent_loss"] is False


@pytest.mark.parametrize(("argv", "hours"), [(["6"], 6), ([], 24), (["168", "--no-deep-check"], 168)])
def test_processing_monitor_takes_the_hours_as_its_first_argument(
    engine: Engine, tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], hours: int
) -> None:
    incident(engine)
    out = tmp_path / "monitor.json"
    assert guide.processing_monitor([*argv, "--json", str(out)]) == 0
    assert f"HEALTH EXPORT PROCESSING MONITOR: last {hours}h" in capsys.readouterr().out
    assert json.loads(out.read_text())["window_hours"] == hours


@pytest.mark.parametrize(("script", "argv", "message"), [
    ("processing_monitor", ["0"], "hours must be a whole number from 1 to 8784, got 0"),
    ("processing_monitor", ["-5"], "hours must be a whole number from 1 to 8784, got -5"),
    ("processing_monitor", ["six"], "hours must be a whole number from 1 to 8784, got 'six'"),
    ("data_recovery", ["--user-id", "42"], "user_id must be a UUID"),
    ("data_recovery", ["--batch-size", "0"], "batch_size must be a whole number from 1"),
    ("data_recovery", ["--status", "done"], "statuses must be one or more of"),
])
def test_a_bad_guide_argument_exits_2_naming_it_before_connecting(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], script: str, argv: list[str], message: str
) -> None:
    monkeypatch.setenv("DATABASE_URL", UNREACHABLE)  # a connection attempt would exit 1, not 2
    assert getattr(guide, script)(argv) == 2
    assert message in capsys.readouterr().err


def _installed(name: str) -> Path:
    path = Path(sys.executable).parent / name
    assert path.exists(), f"{path} is not installed: reinstall the package (pip install -e . / make setup)"
    return path


@pytest.mark.parametrize(("script", "flag"), [
    ("data_recovery", "--dry-run"), ("processing_monitor", "--hours"), ("reprocess_failed", "--user-id"),
])
def test_the_installed_scripts_answer_help_with_their_command(script: str, flag: str) -> None:
    done = subprocess.run([str(_installed(script)), "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"python -m recovery_lib {GUIDE_SCRIPTS[script]}" in done.stdout and flag in done.stdout


def test_the_installed_processing_monitor_6_reads_the_database(engine: Engine, tmp_path: Path) -> None:
    incident(engine)
    out = tmp_path / "monitor.json"
    done = subprocess.run(
        [str(_installed("processing_monitor")), "6", "--no-deep-check", "--json", str(out)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
        env={**os.environ, "DATABASE_URL": str(engine.url.render_as_string(hide_password=False))},
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(out.read_text())["window_hours"] == 6 and "last 6h" in done.stdout
