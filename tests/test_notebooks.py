"""The runbook notebooks (four daily, one weekly): stored clean, validated first, end to end on an incident.

The end-to-end set executes monitor -> preview -> recover -> verify, then the weekly review over
what they left, once (the session fixture ``runbook`` of conftest.py, shared with
tests/test_archive_browser.py), through the runner, with a DATABASE_URL that carries a password,
and every assertion reads that one set.
"""

from __future__ import annotations

import re
import stat
from pathlib import Path
from typing import Any

import nbformat
import pytest
from helpers import Runbook, fingerprint

from recovery_lib.cli import main
from recovery_lib.runbook import audit, charts, parameters
from recovery_lib.runbook import execute as runner
from recovery_lib.runbook.demo import compare_with_truth
from recovery_lib.runbook.notebooks import ALL_NOTEBOOKS, REPORT_SCRAPS, RUNBOOK_ORDER
from recovery_lib.runbook.notebooks import NOTEBOOKS as RUNBOOK_NOTEBOOKS

NOTEBOOKS = parameters.NOTEBOOKS_DIR
PLOTLY_JSON = "application/vnd.plotly.v1+json"
REMOTE_SCRIPT = re.compile(r"<script[^>]*\bsrc=\\?[\"']?https?://", re.I)
PLOTLY_JS_MARKER = "window.Plotly = Plotly"  # the last statement of the plotly.js bundle


def load(name: str) -> Any:
    return nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)


# --- (a) the stored notebooks ---------------------------------------------------------------------


def test_the_runbook_is_four_daily_notebooks_and_the_weekly_review() -> None:
    assert RUNBOOK_ORDER == ("monitor", "preview", "recover", "verify") and ALL_NOTEBOOKS == (*RUNBOOK_ORDER, "review")
    assert sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb")) == sorted(ALL_NOTEBOOKS)
    assert set(REPORT_SCRAPS) == set(RUNBOOK_NOTEBOOKS) == set(ALL_NOTEBOOKS)


@pytest.mark.parametrize("name", ALL_NOTEBOOKS)
def test_notebook_is_stored_without_outputs(name: str) -> None:
    nb = load(name)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec.name == "python3"
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, cell.source[:60]
            assert len(cell.source.splitlines()) <= 15, f"cell too long: {cell.source[:60]}"
    assert "papermill" not in nb.metadata


@pytest.mark.parametrize("name", ALL_NOTEBOOKS)
def test_notebook_starts_with_instructions(name: str) -> None:
    first = load(name).cells[0]
    assert first.cell_type == "markdown"
    for text in ("When to run", "Next", f"python -m recovery_lib run {name}", f"papermill notebooks/{name}.ipynb"):
        assert text in first.source, f"{name}: first cell lacks {text!r}"


@pytest.mark.parametrize("name", ALL_NOTEBOOKS)
def test_first_code_cell_after_parameters_validates_every_parameter(name: str) -> None:
    nb = load(name)
    tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged parameters"
    validation = next(c for c in nb.cells[tagged[0] + 1:] if c.cell_type == "code")
    declared = parameters.declared_parameters(NOTEBOOKS / f"{name}.ipynb")
    # the notebook and the runner build the options with the same call: options_for(name, ...)
    assert re.search(rf'options_for\(\s*"{name}"', validation.source)
    for parameter in declared:
        assert f"{parameter}={parameter}" in validation.source, f"{name}: {parameter} not validated"
    assert "engine" not in validation.source and "get_engine" not in validation.source
    # no parameter is typed in a way papermill cannot see (int | None is invisible to inspect_notebook)
    assert all(p.type_name in ("int", "float", "bool", "str", "list") for p in declared.values())


@pytest.mark.parametrize("name", ALL_NOTEBOOKS)
def test_notebook_glues_its_report_and_never_shows_a_raw_url(name: str) -> None:
    sources = "\n".join(c.source for c in load(name).cells if c.cell_type == "code")
    assert f'glue_report("{REPORT_SCRAPS[name]}"' in sources
    assert "os.environ" not in sources and "database_url(" not in sources and "engine.url)" in sources
    assert "mask_url(" in sources


def test_charts_accept_empty_and_partial_reports() -> None:
    figures = [
        charts.trend_figure, charts.loss_rate_figure, charts.payload_size_figure, charts.loss_by_table_figure,
        charts.preview_tables_figure, charts.users_figure, charts.before_after_figure, charts.outcomes_figure,
        charts.status_counts_figure, charts.review_weekly_figure, charts.review_errors_figure,
        charts.review_recovery_time_figure, charts.review_alerts_figure, charts.review_restored_figure,
        charts.review_failures_figure,
    ]
    sample = {
        "trends": [{"bucket_start": "2026-01-01T00:00:00+00:00", "ingestions": 3, "failures": 1, "data_loss": 1,
                    "data_loss_rate_pct": 33.3}],
        "alerts": [{"name": "data_loss_rate", "level": "critical", "value": 33.3, "threshold": 10}],
        "payload_sizes": [1000, 250000], "loss_by_table": {"heart_rate_metrics": 4},
        "tables": {"heart_rate_metrics": {"expected": 10, "present_before": 6, "missing_before": 4, "inserted": 4,
                                          "missing_after": 0}},
        "users": [{"user_id": "550e8400-e29b-41d4-a716-446655440000", "missing_before": 4, "missing_after": 0}],
        "recovered": 1, "status_counts": {"processed": 2, "error": 1},
        "by_week": [{"week": "2026-W10", "partial": True, "ingestions": 5, "data_loss": 1, "recovered": 1,
                     "error_categories": {"parameter_limit": 1}, "recovery_hours_p50": 3.5, "monitor_runs": 2,
                     "alerts_fired": {"data_loss_rate": 1}}],
        "rows_restored_by_table": {"heart_rate_metrics": 4},
        "failure_reasons": [{"category": "invalid_structure", "failures": 1, "still_failing": 1}],
    }
    for make in figures:
        assert make({}).to_dict()["layout"]["annotations"], make.__name__  # "no data" note
        assert make(sample).to_dict()["data"], make.__name__


def test_archive_renderer_emits_no_remote_script() -> None:
    charts.setup_renderer()
    fig = charts.trend_figure({"trends": [{"bucket_start": "2026-01-01", "ingestions": 1, "failures": 0}]})
    html = charts.ArchiveNotebookRenderer().to_mimebundle(fig.to_dict())["text/html"]
    assert "Plotly.newPlot" in html and not REMOTE_SCRIPT.search(html)


# --- (b) + (d) end to end -------------------------------------------------------------------------


def test_every_notebook_ran(runbook: Runbook) -> None:
    for name in ALL_NOTEBOOKS:
        result = runbook.results[name]
        assert result.ok, f"{name}: {result.error}"
        assert result.report and result.report_path and result.html_path


def test_monitor_finds_the_generated_loss(runbook: Runbook) -> None:
    monitor = runbook.report("monitor")
    assert monitor["data_loss_detected"] == len(runbook.truth["loss_ingestions"]) > 0
    assert monitor["missing_metrics_total"] == runbook.truth["missing_rows_total"] > 0


def test_preview_writes_nothing_and_predicts_the_recovery(runbook: Runbook) -> None:
    assert runbook.after_preview == runbook.before_preview
    preview, recover = runbook.report("preview"), runbook.report("recover")
    assert preview["dry_run"] is True and preview["rows_inserted_total"] == 0
    assert preview["missing_before_total"] == recover["missing_before_total"]
    assert preview["candidates"] == recover["candidates"]


def test_recovery_inserts_exactly_the_missing_rows(runbook: Runbook) -> None:
    recover = runbook.report("recover")
    assert recover["dry_run"] is False
    assert recover["rows_inserted_total"] == runbook.truth["recoverable_missing_rows_total"] > 0
    assert recover["missing_after_total"] == 0


def test_verification_finds_nothing_missing(runbook: Runbook) -> None:
    verify = runbook.report("verify")
    assert verify["missing_metrics_total"] == 0
    corrupt = runbook.truth["outcome_counts"].get("corrupt", 0)
    assert len(verify["recovery_failed"]) == corrupt
    assert all(item["reasons"] for item in verify["recovery_failed"])


def test_the_demo_finds_every_headline_number_of_the_truth(runbook: Runbook) -> None:
    """What `make demo` prints: rows, and every recovered payload accounted for, its unknown names too."""
    checks = compare_with_truth(runbook.truth, {name: runbook.report(name) for name in ALL_NOTEBOOKS})
    assert [what for what, *_, equal in checks if not equal] == []
    found = {what: value for what, value, *_ in checks}
    assert found["recovered, accounting complete (recover)"] == len(runbook.truth["loss_ingestions"]) > 0
    assert "sleep_score" in found["unknown names kept (recover)"]


def test_the_demo_notices_a_recovered_payload_whose_accounting_is_not_complete(runbook: Runbook) -> None:
    reports = {name: runbook.report(name) for name in ALL_NOTEBOOKS}
    recover = reports["recover"]
    [first, *_] = [i for i in recover["ingestions"] if i["outcome"] == "recovered"]
    broken = {**first, "accounting": {**first["accounting"], "complete": False, "unsupported": {"aNewArray": 1}}}
    reports["recover"] = {**recover, "ingestions": [broken if i is first else i for i in recover["ingestions"]]}
    failed = [what for what, *_, equal in compare_with_truth(runbook.truth, reports) if not equal]
    assert failed == ["recovered, accounting complete (recover)"]


def test_the_review_sums_up_what_the_runbook_left(runbook: Runbook) -> None:
    review, recover = runbook.report("review"), runbook.report("recover")
    assert review["archive"]["folder"] == str(runbook.runs.resolve())  # the runner's own archive
    assert review["archive"]["runs_by_notebook"] == {"monitor": 1, "preview": 1, "recover": 1, "verify": 1}
    assert review["totals"]["rows_restored"] == recover["rows_inserted_total"] == runbook.truth[
        "recoverable_missing_rows_total"]
    assert review["rows_restored_by_table"] == {name: t["inserted"] for name, t in recover["tables"].items()}
    assert review["totals"]["rows_still_missing"] == 0 and review["totals"]["monitor_runs"] == 1
    [run] = review["recovery_runs"]
    assert run["run_id"] == recover["run_id"] and run["archived"] is True
    assert run["recovered"] == recover["recovered"] and run["recovery_failed"] == recover["recovery_failed"]
    assert sum(r["failures"] for r in review["failure_reasons"]) == recover["recovery_failed"]
    assert any("too few to judge the alert thresholds" in s for s in review["suggestions"])
    assert review["by_week"][-1]["partial"] is True and len(review["by_week"]) == 4


def test_reports_files_modes_and_audit_index(runbook: Runbook) -> None:
    import json

    import scrapbook as sb

    assert stat.S_IMODE(runbook.runs.stat().st_mode) == 0o700
    for path in runbook.runs.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name
    for name in ALL_NOTEBOOKS:
        result = runbook.results[name]
        label = "_w7" if name == "recover" else ""  # the recover run was given -p worker w7
        assert re.fullmatch(rf"\d{{8}}T\d{{6}}Z_{name}{label}(-\d+)?", result.notebook.stem)
        scraps = sb.read_notebook(str(result.notebook)).scraps
        assert json.loads(result.report_path.read_text()) == scraps[REPORT_SCRAPS[name]].data == result.report
    assert audit.verify_index(runbook.runs / "index.jsonl") == []
    records = audit.read_index(runbook.runs / "index.jsonl")
    assert [r["notebook"] for r in records] == list(ALL_NOTEBOOKS)
    assert all(r["outcome"] == "ok" for r in records)


def test_a_worker_label_names_the_run_the_report_and_the_recovery_log(runbook: Runbook) -> None:
    recover = runbook.results["recover"]
    assert recover.notebook.stem.endswith("_recover_w7")
    assert recover.report["parameters"]["worker"] == "w7"
    workers = runbook.recovery_log_workers
    assert workers and all(w.startswith("w7@") for w in workers), workers


def test_charts_survive_archiving(runbook: Runbook) -> None:
    """Mimetype JSON for JupyterLab + inlined plotly.js HTML for nbconvert; nothing fetched from a CDN."""
    for name in ALL_NOTEBOOKS:
        result = runbook.results[name]
        nb = nbformat.read(result.notebook, as_version=4)
        outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
        html = [str(o.get("data", {}).get("text/html", "")) for o in outputs]
        assert any(PLOTLY_JSON in o.get("data", {}) for o in outputs), name
        assert sum(PLOTLY_JS_MARKER in h for h in html) == 1, f"{name}: plotly.js must be inlined exactly once"
        assert not any(REMOTE_SCRIPT.search(h) for h in html), name
        exported = result.html_path.read_text()
        assert PLOTLY_JS_MARKER in exported and "Plotly.newPlot" in exported, name
        # plotly.js is defined before the first figure calls it
        assert exported.index(PLOTLY_JS_MARKER) < exported.index("window.PLOTLYENV=window.PLOTLYENV"), name
        assert not REMOTE_SCRIPT.search(exported), name


def test_password_never_reaches_a_produced_file(runbook: Runbook) -> None:
    assert all(not result.scrubbed for result in runbook.results.values()), "the runner had to scrub a password"
    produced = list(runbook.runs.iterdir())
    assert len(produced) == 16  # 5 x (ipynb, json, html) + index.jsonl
    for path in produced:
        assert runbook.password.encode() not in path.read_bytes(), path.name
    # the URL with the password was in use: the notebooks showed it masked
    assert ":***@" in runbook.results["monitor"].notebook.read_text()


# --- (c) bad parameters -----------------------------------------------------------------------------

BAD = [
    ("user_id", "not-a-uuid", "not-a-uuid"),
    ("batch_size", "0", 0),
    ("statuses", '["bogus"]', ["bogus"]),
]


@pytest.fixture()
def incident(engine: Any) -> Any:
    from recovery_lib import simulate

    simulate.simulate(engine, users=2, payloads=4, seed=3)
    return engine


@pytest.mark.parametrize(("parameter", "text", "value"), BAD)
def test_bad_parameter_is_refused_by_the_runner_without_a_kernel(
    incident: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    parameter: str, text: str, value: Any,
) -> None:
    import papermill

    def no_kernel(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a kernel was started")

    monkeypatch.setattr(papermill, "execute_notebook", no_kernel)
    before = fingerprint(incident)
    runs = tmp_path / "runs"
    for name in ("recover", "preview"):
        assert main(["run", name, "-p", parameter, text, "--runs-dir", str(runs), "--no-progress"]) == 2
        assert re.search(rf"\b{parameter} must be\b", capsys.readouterr().err)
    assert fingerprint(incident) == before
    assert not runs.exists() or not any(runs.iterdir())


def test_run_verify_exits_1_while_rows_are_missing_and_0_once_recovered(
    incident: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = str(tmp_path / "runs")
    assert main(["run", "verify", "-p", "since", "30d", "--runs-dir", runs, "--no-progress"]) == 1
    assert "rows are still missing" in capsys.readouterr().err

    assert main(["recover", "--no-progress", "--report-dir", str(tmp_path)]) == 0
    assert main(["run", "verify", "-p", "since", "30d", "--runs-dir", runs, "--no-progress"]) == 0


def test_unknown_parameter_of_a_runbook_notebook_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "monitor", "-p", "hourz", "6", "--runs-dir", str(tmp_path / "runs")]) == 2
    assert "unknown parameter hourz" in capsys.readouterr().err
    assert main(["run", "verify", "-p", "since", "yesterday-ish", "--runs-dir", str(tmp_path / "runs")]) == 2
    assert "since must be" in capsys.readouterr().err


@pytest.mark.parametrize(("parameter", "text", "value"), BAD)
def test_bad_parameter_fails_the_validation_cell_under_raw_papermill(
    incident: Any, tmp_path: Path, parameter: str, text: str, value: Any
) -> None:
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    before = fingerprint(incident)
    out = tmp_path / "out.ipynb"
    with pytest.raises(PapermillExecutionError) as failure:
        pm.execute_notebook(str(NOTEBOOKS / "recover.ipynb"), str(out), parameters={parameter: value},
                            progress_bar=False, cwd=str(runner.PROJECT_ROOT))
    assert failure.value.ename == "ParameterError"
    assert failure.value.evalue.startswith(f"{parameter} must be")
    assert "options_for(" in failure.value.source
    nb = nbformat.read(out, as_version=4)
    injected = next(i for i, c in enumerate(nb.cells) if "injected-parameters" in c.metadata.get("tags", []))
    failed = next(i for i, c in enumerate(nb.cells) if any(o.output_type == "error" for o in c.get("outputs", [])))
    # the first code cell after the injected parameters (papermill adds markdown error banners)
    assert failed == next(i for i in range(injected + 1, len(nb.cells)) if nb.cells[i].cell_type == "code")
    assert fingerprint(incident) == before


# --- demo -------------------------------------------------------------------------------------------


def test_demo_refuses_to_reset_a_database_url_without_reset(
    incident: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = fingerprint(incident)
    assert main(["demo", "--runs-dir", str(tmp_path / "runs")]) == 2
    assert "--reset" in capsys.readouterr().err
    assert fingerprint(incident) == before


def test_demo_runs_the_whole_runbook_and_matches_the_truth(
    engine: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = tmp_path / "runs"
    code = main(["demo", "--reset", "--seed", "5", "--users", "2", "--payloads", "6", "--runs-dir", str(runs)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "MISMATCH" not in out and "all numbers match the ground truth" in out
    for name in ALL_NOTEBOOKS:
        assert len(list(runs.glob(f"*_{name}.ipynb"))) == len(list(runs.glob(f"*_{name}.json"))) == 1
    assert audit.verify_index(runs / "index.jsonl") == []
