"""``run NOTEBOOK -p name value ...`` (one runbook notebook) and ``demo`` (the runbook on a simulated incident)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

from recovery_lib.notebook_support import RUNBOOK_ORDER as RUNBOOK
from recovery_lib.params import ParameterError


def register(subparsers: argparse._SubParsersAction) -> None:
    # From audit, not runner: runner imports papermill/nbformat, too slow for every CLI start.
    from recovery_lib.audit import DEFAULT_RUNS_DIR

    run = subparsers.add_parser(
        "run",
        help="execute a runbook notebook with papermill into runs/ (report .json, .html, audit line)",
        description=(
            "Execute notebooks/NOTEBOOK.ipynb into runs/YYYYMMDDTHHMMSSZ_NOTEBOOK[_USER].ipynb, extract its "
            "report to .json, render .html and append a line to runs/index.jsonl. Exit 0: done; 1: the "
            "notebook failed (kept, failing cell shown); 2: bad or unknown parameter (nothing executed)."
        ),
    )
    run.add_argument("notebook", metavar="NOTEBOOK", help=f"one of {', '.join(RUNBOOK)} (or a path to an .ipynb)")
    run.add_argument(
        "-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
        help="a notebook parameter, e.g. -p hours 6 -p statuses '[\"error\"]' (repeatable)",
    )
    run.add_argument("--runs-dir", type=Path, default=DEFAULT_RUNS_DIR, help="where runs go (default: runs/)")
    run.add_argument("--timeout", type=float, default=None, metavar="SECONDS", help="limit per cell (default: none)")
    run.add_argument("--no-progress", action="store_true", help="no progress bar over the notebook's cells")
    run.set_defaults(func=_run)

    demo = subparsers.add_parser(
        "demo",
        help="simulate an incident in the embedded database and run monitor, preview, recover, verify on it",
        description=(
            "Reset this project's tables, generate an incident with a known ground truth, then execute the "
            "four runbook notebooks through the runner and compare what they found with the truth. "
            "Refuses to reset a database given by DATABASE_URL unless --reset is passed."
        ),
    )
    demo.add_argument("--seed", type=int, default=42, help="random seed of the simulated incident (default 42)")
    demo.add_argument("--users", type=_positive, default=10, help="simulated users (default 10)")
    demo.add_argument("--payloads", type=_positive, default=40, help="payloads per user (default 40)")
    demo.add_argument("--reset", action="store_true", help="allow erasing the tables of the DATABASE_URL database")
    demo.add_argument("--runs-dir", type=Path, default=DEFAULT_RUNS_DIR, help="where runs go (default: runs/)")
    demo.set_defaults(func=_demo)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _protect_logs(args: argparse.Namespace) -> None:
    """Scrub the database password from every log line this process writes; quiet papermill unless -v."""
    from recovery_lib.notebook_support import SecretFilter

    if not getattr(args, "verbose", False):
        logging.getLogger("papermill").setLevel(logging.WARNING)
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, SecretFilter) for f in handler.filters):
            handler.addFilter(SecretFilter())


def headline(name: str, report: dict[str, Any] | None) -> str:
    """One line with the numbers an operator looks at first."""
    r = report or {}
    if name == "monitor":
        alerts = [a for a in r.get("alerts") or [] if a.get("level") in ("critical", "warning")]
        return (
            f"{r.get('total_raw_ingestions', 0)} ingestions in {r.get('window_hours')} h; "
            f"data loss in {r.get('data_loss_detected', 0)} ({r.get('missing_metrics_total', 0)} rows missing); "
            f"{len(alerts)} alert(s)"
        )
    if name == "preview":
        return (
            f"dry run: {r.get('candidates', 0)} candidate ingestions, would recover {r.get('recovered', 0)}, "
            f"{r.get('missing_before_total', 0)} rows missing, would fail {r.get('recovery_failed', 0)}"
        )
    if name == "recover":
        return (
            f"recovered {r.get('recovered', 0)} of {r.get('candidates', 0)} ingestions, "
            f"{r.get('rows_inserted_total', 0)} rows inserted, {r.get('recovery_failed', 0)} failed, "
            f"{r.get('missing_after_total', 0)} rows still missing"
        )
    if name == "verify":
        return (
            f"{r.get('ingestions_checked', 0)} ingestions checked, {r.get('missing_metrics_total', 0)} rows missing, "
            f"{len(r.get('recovery_failed') or [])} recovery_failed"
        )
    return ""


def _print_result(result: Any) -> None:
    stream = sys.stdout if result.ok else sys.stderr
    if result.ok:
        print(f"{result.name}: OK - {headline(result.name, result.report)}".rstrip(" -"), file=stream)
    else:
        print(f"{result.name}: FAILED - {result.error}", file=stream)
        if result.notebook is not None:
            print(f"  the executed notebook is kept, open it at the failing cell: {result.notebook}", file=stream)
    for label, path in (("notebook", result.notebook), ("report", result.report_path), ("html", result.html_path)):
        if path is not None:
            print(f"  {label:8} {path}", file=stream)


def _run(args: argparse.Namespace) -> int:
    from recovery_lib import runner

    _protect_logs(args)
    given: dict[str, str] = {}
    for name, value in args.parameter:
        if name in given:
            print(f"parameter {name} given twice", file=sys.stderr)
            return 2
        given[name] = value
    try:
        result = runner.run_notebook(
            args.notebook, given, runs_dir=args.runs_dir, timeout=args.timeout, progress_bar=not args.no_progress
        )
    except ParameterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        print(f"\n{exc} (recorded in the index)", file=sys.stderr)
        return 130
    _print_result(result)
    if result.ok and isinstance(result.report, dict) and result.report.get("ok") is False:
        # The notebook ran, and its report says the data is not whole: exit like `verify` does.
        print(f"{result.name}: the report says not ok (rows are still missing)", file=sys.stderr)
        return 1
    return 0 if result.ok else 1


# --- demo ---------------------------------------------------------------------------------------


def _count(value: Any) -> int:
    if isinstance(value, (list, tuple, set, dict)):
        return len(value)
    return int(value or 0)


def compare_with_truth(truth: dict[str, Any], reports: dict[str, dict[str, Any]]) -> list[tuple[str, Any, Any, bool]]:
    """(what, found, truth, equal) for the demo's headline numbers."""
    monitor, recover, verify = reports.get("monitor", {}), reports.get("recover", {}), reports.get("verify", {})
    loss_ingestions = _count(truth.get("loss_ingestions"))
    missing_rows = int(truth.get("missing_rows_total") or 0)
    recoverable = int(truth.get("recoverable_missing_rows_total") or 0)
    checks = [
        ("ingestions with data loss (monitor)", monitor.get("data_loss_detected"), loss_ingestions),
        ("rows missing (monitor)", monitor.get("missing_metrics_total"), missing_rows),
        ("rows recovered (recover)", recover.get("rows_inserted_total"), recoverable),
        ("rows missing after (verify)", verify.get("missing_metrics_total"), 0),
    ]
    return [(what, found, expected, found == expected) for what, found, expected in checks]


def _demo(args: argparse.Namespace) -> int:
    from recovery_lib import db, runner, schema, simulate

    _protect_logs(args)
    if os.environ.get("DATABASE_URL", "").strip() and not args.reset:
        print(
            f"DATABASE_URL is set ({db.mask_url(os.environ['DATABASE_URL'].strip())}): the demo erases every table "
            "of this project in that database.\nUnset DATABASE_URL to use the embedded demo database, or pass "
            "--reset to erase and reuse this one.",
            file=sys.stderr,
        )
        return 2
    url = db.database_url()
    # The kernels inherit the environment: give them the embedded server's URL (it has no password)
    # so they connect to the same server instead of each attaching to it again.
    os.environ["DATABASE_URL"] = url
    engine = db.get_engine(url)
    print(f"database: {db.mask_url(engine.url)}")
    schema.init_db(engine)
    emptied = simulate.reset_tables(engine)
    print(f"emptied {len(emptied)} tables")
    incident = simulate.simulate(engine, users=args.users, payloads=args.payloads, seed=args.seed)
    truth = incident.to_dict()
    print(incident.summary_text())

    results = {}
    for name in RUNBOOK:
        print(f"\n== {name} ==", flush=True)
        result = runner.run_notebook(name, {}, runs_dir=args.runs_dir, progress_bar=False)
        results[name] = result
        _print_result(result)
        if not result.ok:
            print(f"\ndemo stopped: {name} failed; the executed notebook is kept at {result.notebook}", file=sys.stderr)
            return 1

    print("\n== summary ==")
    print(f"runs folder: {Path(args.runs_dir).resolve()} (audit: python -m recovery_lib audit verify)")
    for name, result in results.items():
        print(f"  {name:8} notebook {result.notebook.name}  report {result.report_path.name}  "
              f"html {result.html_path.name if result.html_path else '-'}")
    checks = compare_with_truth(truth, {n: r.report or {} for n, r in results.items()})
    for what, found, expected, equal in checks:
        print(f"  {what:40} {found!s:>8}   ground truth {expected!s:>8}   {'match' if equal else 'MISMATCH'}")
    if not all(equal for *_, equal in checks):
        print("\nthe runbook's numbers do not match the simulated ground truth", file=sys.stderr)
        return 1
    print("\nall numbers match the ground truth: every lost row was found, recovered and verified")
    return 0
