"""The runner: execute a runbook notebook with papermill into ``runs/`` and record the outcome.

For ``run_notebook("recover", {"user_id": "..."})`` the runner:

1. reads the notebook's declared parameters (papermill ``inspect_notebook``), converts the given
   values (strings from the command line) to the declared types, refuses unknown names and
   builds the notebook's validated options - all before a kernel starts
   (:mod:`recovery_lib.runbook.parameters`; :class:`~recovery_lib.errors.ParameterError`, CLI exit 2);
2. executes ``notebooks/recover.ipynb`` into ``runs/YYYYMMDDTHHMMSSZ_recover[_<user_id>][_<worker>].ipynb``
   (UTC), saving after every cell; the database URL reaches the kernel only through the
   inherited environment (``DATABASE_URL``), never as a parameter. The kernel talks over unix
   sockets of its own (:mod:`recovery_lib.runbook.kernels`: no TCP port, so runs started at
   the same moment cannot collide). A kernel that fails to start is started again, up to
   ``kernel_start_attempts`` times, and every failed start is recorded; a notebook whose
   first cell was sent to the kernel is never run again;
3. decides the outcome itself: papermill's exception, but also any error output, any code cell
   that never ran (``sys.exit(0)``, a timeout, a dead kernel) and a missing report scrap count as
   failure. A failed notebook is kept and the failing cell named;
4. removes the database password from the executed notebook should it ever appear (it should
   not: the notebooks print only masked URLs), then extracts the glued report to
   ``<stem>.json`` and renders a self-contained ``<stem>.html`` (plotly.js inlined, no CDN;
   :mod:`recovery_lib.runbook.evidence`);
5. makes ``runs/`` mode 0700 and every file in it 0600, and appends one hash-chained line to
   ``runs/index.jsonl`` (see :mod:`recovery_lib.runbook.audit`), success or failure, with the
   kernel start attempts and the caller's ``origin`` (e.g. a scheduler's run id and try).
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
from recovery_lib.runbook.evidence import (
    cells_started,
    extract_report,
    find_failure,
    render_html,
    reserve_stem,
    scrub_file,
)
from recovery_lib.runbook.kernel import jsonable
from recovery_lib.runbook.notebooks import REPORT_SCRAPS
from recovery_lib.runbook.parameters import NOTEBOOKS_DIR, notebook_path, prepare_parameters

_log = logging.getLogger(__name__)

KERNEL_START_ATTEMPTS = 3
KERNEL_RETRY_DELAYS = (1.0, 3.0)  # seconds before the second and third kernel start


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
    kernel_start_attempts: int = 1


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
    kernel_manager_class: type | None = None,
    cwd: Path | str | None = None,
    kernel_start_attempts: int = KERNEL_START_ATTEMPTS,
    origin: Mapping[str, Any] | None = None,
) -> RunResult:
    """Execute one notebook into ``runs_dir`` and record it; see the module docstring.

    ``notebook`` is a runbook name (``monitor``, ``preview``, ``recover``, ``verify``, ``review``) or a path to
    an ``.ipynb``. ``parameters`` may hold strings (converted to the declared types) or values.
    ``timeout`` limits each cell, in seconds. Raises :class:`ParameterError` (nothing executed,
    nothing recorded) for an unknown notebook, an unknown parameter name or an invalid value, and
    :class:`KernelSetupError` when the kernels' socket folder is unusable.
    ``kernel_manager_class`` defaults to :class:`~recovery_lib.runbook.kernels.IPCKernelManager`,
    ``cwd`` (the kernel's working folder) to the project root; ``origin`` is recorded as given in
    the index line (plain JSON values; never a secret).

        >>> result = run_notebook("monitor", {"hours": "6"})
        >>> result.ok, result.report_path
        (True, PosixPath('runs/20260101T120000Z_monitor.json'))
    """
    path = notebook_path(notebook, notebooks_dir)
    name = path.stem
    # A notebook that reads the runs archive (review) reads the one this run is written into.
    prepared = prepare_parameters(name, path, parameters, implied={"runs_dir": str(Path(runs_dir).resolve())})
    if kernel_manager_class is None:
        from recovery_lib.runbook import kernels

        kernels.runtime_dir()  # KernelSetupError now, before anything is reserved or recorded
        kernel_manager_class = kernels.IPCKernelManager
    scrap_name = report_scrap or REPORT_SCRAPS.get(name)
    runs = private_dir(runs_dir)
    started = datetime.now(UTC)
    stem = reserve_stem(runs, name, prepared.user_id, started, worker=prepared.worker)
    out = runs / f"{stem}.ipynb"
    secrets = database_secrets()
    _log.info("executing %s into %s", path.name, out)

    failed_cell: int | None = None
    start_errors: list[str] = []
    clock = time.monotonic()
    while True:
        error, papermill_error, interrupted = _execute(
            path, out, prepared.overrides, progress_bar=progress_bar, log_output=log_output,
            start_timeout=start_timeout, timeout=timeout, kernel_manager_class=kernel_manager_class,
            cwd=Path(cwd) if cwd is not None else PROJECT_ROOT,
        )
        retry = error is not None and not papermill_error and not interrupted and not cells_started(out)
        if not retry or len(start_errors) + 1 >= kernel_start_attempts:
            break
        # Nothing reached the kernel, so nothing ran: starting again cannot do anything twice.
        start_errors.append(scrub_text(error, secrets))
        delay = KERNEL_RETRY_DELAYS[min(len(start_errors), len(KERNEL_RETRY_DELAYS)) - 1]
        _log.warning("%s: the kernel did not start (%s); starting it again in %.0f s", name, error, delay)
        time.sleep(delay)
    duration = time.monotonic() - clock
    never_started = error is not None and not papermill_error and not interrupted and not cells_started(out)
    if never_started:
        error = f"the kernel did not start after {len(start_errors) + 1} attempt(s): {error}"

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
            failed_cell, why = (None, None) if never_started else find_failure(nbformat.read(out, as_version=4))
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
            "kernel_start_attempts": len(start_errors) + 1,
            "kernel_start_errors": start_errors,
            "origin": jsonable(dict(origin)) if origin else None,
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
        kernel_start_attempts=len(start_errors) + 1,
    )


def _execute(
    path: Path, out: Path, overrides: dict[str, Any], *, progress_bar: bool, log_output: bool,
    start_timeout: float, timeout: float | None, kernel_manager_class: type, cwd: Path,
) -> tuple[str | None, bool, bool]:
    """One papermill execution: (error, whether papermill named a failing cell, whether interrupted)."""
    old_umask = os.umask(0o077)  # the kernel and papermill write private files too
    try:
        import papermill as pm
        from papermill.exceptions import PapermillExecutionError

        pm.execute_notebook(
            str(path),
            str(out),
            parameters=overrides,
            request_save_on_cell_execute=True,
            progress_bar=progress_bar,
            log_output=log_output,
            start_timeout=start_timeout,
            execution_timeout=timeout,
            cwd=str(cwd),
            kernel_manager_class=kernel_manager_class,
        )
    except PapermillExecutionError as exc:
        # exc.cell_index counts cells before papermill added its error banners; the kept
        # notebook is searched again below so the index points into the file on disk.
        return f"In [{exc.exec_count}] raised {exc.ename}: {exc.evalue}", True, False
    except KeyboardInterrupt:
        return "interrupted by the operator (Ctrl-C)", False, True
    except Exception as exc:  # noqa: BLE001 - timeout, dead kernel, kernel start failure: recorded
        first_line = next((line for line in str(exc).splitlines() if line.strip()), "")
        return f"{type(exc).__name__}: {first_line}".strip(), False, False
    finally:
        os.umask(old_umask)
    return None, False, False


def _relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(PROJECT_ROOT))
    except ValueError:
        return str(path)
