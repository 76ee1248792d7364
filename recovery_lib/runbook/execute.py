"""The runner: execute a runbook notebook with papermill into ``runs/`` and record the outcome.

For ``run_notebook("recover", {"user_id": "..."})`` the runner:

1. reads the notebook's declared parameters (papermill ``inspect_notebook``), converts the given
   values (strings from the command line) to the declared types, refuses unknown names and
   builds the notebook's validated options - all before a kernel starts
   (:mod:`recovery_lib.runbook.parameters`; :class:`~recovery_lib.errors.ParameterError`, CLI exit 2);
2. executes ``notebooks/recover.ipynb`` into ``runs/YYYYMMDDTHHMMSSZ_recover[_<user_id>].ipynb``
   (UTC), saving after every cell; the database URL reaches the kernel only through the
   inherited environment (``DATABASE_URL``), never as a parameter;
3. decides the outcome itself: papermill's exception, but also any error output, any code cell
   that never ran (``sys.exit(0)``, a timeout, a dead kernel) and a missing report scrap count as
   failure. A failed notebook is kept and the failing cell named;
4. removes the database password from the executed notebook should it ever appear (it should
   not: the notebooks print only masked URLs), then extracts the glued report to
   ``<stem>.json`` and renders a self-contained ``<stem>.html`` (plotly.js inlined, no CDN;
   :mod:`recovery_lib.runbook.evidence`);
5. makes ``runs/`` mode 0700 and every file in it 0600, and appends one hash-chained line to
   ``runs/index.jsonl`` (see :mod:`recovery_lib.runbook.audit`), success or failure.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nbformat

from recovery_lib.db import PROJECT_ROOT
from recovery_lib.files import private_dir, write_private
from recovery_lib.redact import database_secrets, scrub_text, scrub_value
from recovery_lib.runbook import audit
from recovery_lib.runbook.audit import DEFAULT_RUNS_DIR, INDEX_NAME
from recovery_lib.runbook.evidence import extract_report, find_failure, render_html, reserve_stem, scrub_file
from recovery_lib.runbook.kernel import jsonable
from recovery_lib.runbook.notebooks import REPORT_SCRAPS
from recovery_lib.runbook.parameters import NOTEBOOKS_DIR, notebook_path, prepare_parameters

_log = logging.getLogger(__name__)


@dataclass
class RunResult:
    """What one execution produced. ``ok`` is the runner's verdict, not papermill's."""

    name: str
    ok: bool
    notebook: Path | None
    report_path: Path | None = None
    html_path: Path | None = None
    report: dict[str, Any] | None = None
    error: str | None = None
    failed_cell: int | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    scrubbed: list[str] = field(default_factory=list)  # files a secret had to be removed from
    record: dict[str, Any] = field(default_factory=dict)  # the index line


# --- the run ------------------------------------------------------------------------------------


def run_notebook(
    notebook: str | Path,
    parameters: Mapping[str, Any] | None = None,
    *,
    runs_dir: Path | str = DEFAULT_RUNS_DIR,
    timeout: float | None = None,
    notebooks_dir: Path = NOTEBOOKS_DIR,
    report_scrap: str | None = None,
    progress_bar: bool = False,
    log_output: bool = False,
    start_timeout: float = 60,
) -> RunResult:
    """Execute one notebook into ``runs_dir`` and record it; see the module docstring.

    ``notebook`` is a runbook name (``monitor``, ``preview``, ``recover``, ``verify``, ``review``,
    ``undo``) or a path to an ``.ipynb``. ``parameters`` may hold strings (converted to the declared
    types) or values. ``timeout`` limits each cell, in seconds. Raises :class:`ParameterError`
    (nothing executed, nothing recorded) for an unknown notebook, an unknown parameter name or an
    invalid value.

        >>> result = run_notebook("monitor", {"hours": "6"})
        >>> result.ok, result.report_path
        (True, PosixPath('runs/20260101T120000Z_monitor.json'))
    """
    path = notebook_path(notebook, notebooks_dir)
    name = path.stem
    # A notebook that reads the runs archive (review) reads the one this run is written into.
    prepared = prepare_parameters(name, path, parameters, implied={"runs_dir": str(Path(runs_dir).resolve())})
    scrap_name = report_scrap or REPORT_SCRAPS.get(name)
    runs = private_dir(runs_dir)
    started = datetime.now(UTC)
    stem = reserve_stem(runs, name, prepared.user_id, started)
    out = runs / f"{stem}.ipynb"
    secrets = database_secrets()
    _log.info("executing %s into %s", path.name, out)

    error: str | None = None
    papermill_error = interrupted = False
    failed_cell: int | None = None
    clock = time.monotonic()
    old_umask = os.umask(0o077)  # the kernel and papermill write private files too
    try:
        import papermill as pm
        from papermill.exceptions import PapermillExecutionError

        try:
            pm.execute_notebook(
                str(path),
                str(out),
                parameters=prepared.overrides,
                request_save_on_cell_execute=True,
                progress_bar=progress_bar,
                log_output=log_output,
                start_timeout=start_timeout,
                execution_timeout=timeout,
                cwd=str(PROJECT_ROOT),
            )
        except PapermillExecutionError as exc:
            # exc.cell_index counts cells before papermill added its error banners; the kept
            # notebook is searched again below so the index points into the file on disk.
            error = f"In [{exc.exec_count}] raised {exc.ename}: {exc.evalue}"
            papermill_error = True
        except KeyboardInterrupt:
            error, interrupted = "interrupted by the operator (Ctrl-C)", True
        except Exception as exc:  # noqa: BLE001 - timeout, dead kernel, kernel start failure: recorded
            first_line = next((line for line in str(exc).splitlines() if line.strip()), "")
            error = f"{type(exc).__name__}: {first_line}".strip()
    finally:
        os.umask(old_umask)
    duration = time.monotonic() - clock

    scrubbed: list[str] = []
    notebook_exists = out.exists() and out.stat().st_size > 0
    if not notebook_exists:
        out.unlink(missing_ok=True)
    else:
        os.chmod(out, 0o600)
        try:
            if scrub_file(out, secrets):
                scrubbed.append(out.name)
                _log.warning("the database password appeared in %s and was replaced by ***", out.name)
            failed_cell, why = find_failure(nbformat.read(out, as_version=4))
        except Exception as exc:  # noqa: BLE001 - e.g. a notebook cut short by a killed kernel
            if secrets:
                write_private(out, scrub_text(out.read_text(encoding="utf-8", errors="replace"), secrets))
            failed_cell, why = None, f"the executed notebook cannot be read ({type(exc).__name__}: {exc})"
        if why is not None:
            error = why if error is None or papermill_error else f"{error}; {why}"

    html_path: Path | None = None
    if notebook_exists:
        try:
            html_path = render_html(out, runs / f"{stem}.html")
        except Exception as exc:  # noqa: BLE001 - the notebook is the evidence; HTML is a convenience
            _log.warning("could not render %s as HTML: %s", out.name, exc)

    report: dict[str, Any] | None = None
    report_path: Path | None = None
    if notebook_exists and error is None:
        found, report = extract_report(out, scrap_name)
        if report is None and scrap_name is not None:
            error = f"the notebook finished but glued no report {found!r}"
        elif report is not None:
            text = json.dumps(report, indent=2, ensure_ascii=False)
            report_path = write_private(runs / f"{stem}.json", text)
    if error is not None:
        error = scrub_text(error, secrets)

    ok = error is None
    record = audit.append_record(
        runs / INDEX_NAME,
        scrub_value({
            "time": started.isoformat(timespec="seconds"),
            "notebook": name,
            "source": _relative(path),
            "parameters": jsonable(prepared.effective),
            "outcome": "ok" if ok else "failed",
            "error": error,
            "failed_cell": failed_cell,
            "duration_seconds": round(duration, 3),
            "executed_notebook": out.name if notebook_exists else None,
            "executed_notebook_sha256": audit.sha256_file(out) if notebook_exists else None,
            "report": report_path.name if report_path else None,
            "report_sha256": audit.sha256_file(report_path) if report_path else None,
            "html": html_path.name if html_path else None,
            "html_sha256": audit.sha256_file(html_path) if html_path else None,
        }, secrets),
    )
    if interrupted:  # recorded above; now let the caller stop
        raise KeyboardInterrupt(f"{name} interrupted; kept {out if notebook_exists else 'nothing'}")
    return RunResult(
        name=name,
        ok=ok,
        notebook=out if notebook_exists else None,
        report_path=report_path,
        html_path=html_path,
        report=report,
        error=error,
        failed_cell=failed_cell,
        parameters=prepared.effective,
        scrubbed=scrubbed,
        record=record,
    )


def _relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(PROJECT_ROOT))
    except ValueError:
        return str(path)
