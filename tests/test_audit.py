"""runs/index.jsonl: the hash chain detects edited, deleted and reordered records and changed files."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from recovery_lib.cli import main
from recovery_lib.runbook import audit


def _run_files(runs: Path, stem: str) -> dict[str, str]:
    fields = {}
    for ext, field in (("ipynb", "executed_notebook"), ("json", "report"), ("html", "html")):
        path = runs / f"{stem}.{ext}"
        path.write_text(f"{stem} {ext}\n")
        fields[field] = path.name
        fields[f"{field}_sha256"] = audit.sha256_file(path)
    return fields


@pytest.fixture()
def index(tmp_path: Path) -> Path:
    runs = tmp_path / "runs"
    runs.mkdir()
    path = runs / "index.jsonl"
    for n, name in enumerate(["monitor", "preview", "recover", "verify"]):
        record = {"time": f"2026-01-01T00:00:0{n}+00:00", "notebook": name, "parameters": {"n": n}, "outcome": "ok"}
        audit.append_record(path, record | _run_files(runs, f"20260101T00000{n}Z_{name}"))
    return path


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def _write(path: Path, lines: list[str]) -> None:
    path.write_text("".join(line + "\n" for line in lines))


def test_intact_chain_verifies(index: Path) -> None:
    assert audit.verify_index(index) == []
    records = audit.read_index(index)
    assert [r["notebook"] for r in records] == ["monitor", "preview", "recover", "verify"]
    assert records[0]["prev_hash"] == "0" * 64
    for before, line, record in zip(_lines(index), _lines(index)[1:], records[1:], strict=False):
        assert record["prev_hash"] == audit.sha256_text(before)
        assert json.loads(line)["hash"] == record["hash"]
    assert oct(index.stat().st_mode & 0o777) == "0o600"


def test_edited_record_is_detected(index: Path) -> None:
    lines = _lines(index)
    record = json.loads(lines[1])
    record["parameters"] = {"n": 99}
    lines[1] = json.dumps(record, sort_keys=True)
    _write(index, lines)
    problems = audit.verify_index(index)
    assert any("line 2" in p and "edited" in p for p in problems), problems
    assert any("line 3" in p and "prev_hash" in p for p in problems), problems


def test_edited_record_with_recomputed_hash_breaks_the_next_link(index: Path) -> None:
    lines = _lines(index)
    record = json.loads(lines[1])
    record["outcome"] = "failed"
    record["hash"] = hashlib.sha256(audit.canonical(record)).hexdigest()
    lines[1] = json.dumps(record, sort_keys=True)
    _write(index, lines)
    problems = audit.verify_index(index)
    assert problems and all("line 3" in p for p in problems), problems


def test_deleted_record_is_detected(index: Path) -> None:
    lines = _lines(index)
    _write(index, lines[:1] + lines[2:])
    problems = audit.verify_index(index)
    assert any("line 2" in p and "prev_hash" in p for p in problems), problems
    assert any("not recorded" in p and "preview" in p for p in problems), problems


def test_deleted_first_record_is_detected(index: Path) -> None:
    _write(index, _lines(index)[1:])
    assert any("line 1" in p and "prev_hash" in p for p in audit.verify_index(index))


def test_deleted_last_record_is_detected_through_its_files(index: Path) -> None:
    _write(index, _lines(index)[:-1])
    problems = audit.verify_index(index)
    assert any("verify" in p and "not recorded" in p for p in problems), problems


def test_reordered_records_are_detected(index: Path) -> None:
    lines = _lines(index)
    lines[1], lines[2] = lines[2], lines[1]
    _write(index, lines)
    problems = audit.verify_index(index)
    assert any("prev_hash" in p for p in problems), problems


def test_changed_or_missing_run_file_is_detected(index: Path) -> None:
    runs = index.parent
    report = next(runs.glob("*_recover.json"))
    report.write_text('{"rows_inserted_total": 0}')
    (next(runs.glob("*_monitor.html"))).unlink()
    problems = audit.verify_index(index)
    assert any("report" in p and "recover" in p and "changed" in p for p in problems), problems
    assert any("html" in p and "monitor" in p and "missing" in p for p in problems), problems


def test_garbage_line_is_detected(index: Path) -> None:
    lines = _lines(index)
    lines[2] = lines[2][:40]
    _write(index, lines)
    problems = audit.verify_index(index)
    assert any("line 3" in p and "JSON" in p for p in problems), problems
    assert any("line 4" in p for p in problems), problems


def test_missing_index_is_a_problem_and_empty_is_fine(tmp_path: Path) -> None:
    assert audit.verify_index(tmp_path / "index.jsonl")
    (tmp_path / "index.jsonl").write_text("")
    assert audit.verify_index(tmp_path / "index.jsonl") == []


def test_audit_verify_command(index: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "verify", "--index", str(index)]) == 0
    assert "OK" in capsys.readouterr().out
    lines = _lines(index)
    _write(index, [lines[0], lines[2], lines[1], lines[3]])
    assert main(["audit", "verify", "--index", str(index)]) == 1
    assert "prev_hash" in capsys.readouterr().err
