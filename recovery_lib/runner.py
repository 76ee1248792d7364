"""Execute a runbook notebook with papermill into ``runs/`` and keep the evidence.

For ``run_notebook("recover", {"user_id": "..."})`` the runner:

1. reads the notebook's declared parameters (papermill ``inspect_notebook``), converts the given
   values (strings from the command line) to the declared types, refuses unknown names and
   validates every value with the same library validators the notebook uses - all before a
   kernel starts (:class:`~recovery_lib.params.ParameterError`, CLI exit 2);
2. executes ``notebooks/recover.ipynb`` into ``runs/YYYYMMDDTHHMMSSZ_recover[_<user_id>].ipynb``
   (UTC), saving after every cell; the database URL reaches the kernel only through the
   inherited environment (``DATABASE_URL``), never as a parameter;
3. decides the outcome itself: papermill's exception, but also any error output, any code cell
   that never ran (``sys.exit(0)``, a timeout, a dead kernel) and a missing report scrap count as
   failure. A failed notebook is kept and the failing cell named;
4. removes the database password from the executed notebook should it ever appear (it should
   not: the notebooks print only ``db.mask_url``), then extracts the glued report to
   ``<stem>.json`` and renders a self-contained ``<stem>.html`` (plotly.js inlined, no CDN);
5. makes ``runs/`` mode 0700 and every file in it 0600, and appends one hash-chained line to
   ``runs/index.jsonl`` (see :mod:`recovery_lib.audit`), success or failure.
"""

from __future__ import annotations

import ast
import json
import logging
import os
import re
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nbformat

from recovery_lib import audit
from recovery_lib.audit import DEFAULT_RUNS_DIR, INDEX_NAME
from recovery_lib.db import PROJECT_ROOT
from recovery_lib.notebook_support import (
    REPORT_SCRAPS,
    VALIDATORS,
    database_secrets,
    jsonable,
    scrub_text,
    scrub_value,
    validate_parameters,
)
from recovery_lib.params import ParameterError

NOTEBOOKS_DIR = PROJECT_ROOT / "notebooks"

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NotebookParameter:
    """One assignment of a notebook's ``parameters`` cell."""

    name: str
    type_name: str  # int, float, bool, str, list, dict - or inferred from the default
    default: Any
    help: str = ""


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


# --- notebooks and parameters -------------------------------------------------------------------


def notebook_path(notebook: str | Path, notebooks_dir: Path = NOTEBOOKS_DIR) -> Path:
    """``notebooks/<name>.ipynb`` for a runbook name, or an existing ``.ipynb`` path."""
    candidate = Path(notebook)
    if candidate.suffix == ".ipynb" and candidate.exists():
        return candidate.resolve()
    named = notebooks_dir / f"{notebook}.ipynb"
    if named.exists():
        return named
    known = ", ".join(sorted(p.stem for p in notebooks_dir.glob("*.ipynb"))) or "none"
    raise ParameterError(f"no notebook {str(notebook)!r}; available: {known}")


def _literal(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def declared_parameters(path: Path) -> dict[str, NotebookParameter]:
    """The parameters cell of ``path``, as papermill sees it (an ``int | None`` annotation is invisible)."""
    import papermill as pm

    declared = {}
    for name, info in pm.inspect_notebook(str(path)).items():
        default = _literal(info["default"])
        type_name = str(info["inferred_type_name"]).split("[")[0].strip().lower()
        if type_name in ("none", "optional", "any", ""):
            type_name = {bool: "bool", int: "int", float: "float", list: "list", tuple: "list", dict: "dict"}.get(
                type(default), "str"
            )
        declared[name] = NotebookParameter(name, type_name, default, info.get("help") or "")
    return declared


_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")


def convert_value(name: str, value: Any, type_name: str) -> Any:
    """A command-line string converted to the declared type; other values are returned as given.

    ``None``/``null`` becomes None; lists are JSON (``'["error", "partial_success"]'``) or
    comma-separated (``error,partial_success``).
    """
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text in ("None", "none", "null"):
        return None
    try:
        if type_name == "int":
            number = float(text) if not re.fullmatch(r"[+-]?\d+", text) else int(text)
            if isinstance(number, float) and not number.is_integer():
                raise ValueError
            return int(number)
        if type_name == "float":
            return float(text)
        if type_name == "bool":
            if text.lower() in _TRUE:
                return True
            if text.lower() in _FALSE:
                return False
            raise ValueError
        if type_name in ("list", "tuple"):
            if text.startswith("["):
                parsed = _json_or_literal(text)
                if not isinstance(parsed, list):
                    raise ValueError
                return parsed
            return [part.strip() for part in text.split(",") if part.strip()]
        if type_name == "dict":
            parsed = _json_or_literal(text)
            if not isinstance(parsed, dict):
                raise ValueError
            return parsed
    except ValueError:
        described = {"int": "a whole number", "float": "a number", "bool": "True or False",
                     "list": 'a JSON list like ["a", "b"]', "tuple": 'a JSON list like ["a", "b"]',
                     "dict": "a JSON object"}[type_name]
        raise ParameterError(f"{name} must be {described}, got {value!r}") from None
    return value


def _json_or_literal(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        parsed = _literal(text)
        if parsed is text:
            raise ValueError(text) from None
        return parsed


@dataclass
class PreparedParameters:
    overrides: dict[str, Any]  # what papermill injects (converted values the caller gave)
    effective: dict[str, Any]  # defaults + overrides: what the run used (recorded in the index)
    checked: dict[str, Any]  # validated / normalised (empty for notebooks without a validator)


def prepare_parameters(name: str, path: Path, given: Mapping[str, Any] | None) -> PreparedParameters:
    """Convert, check names and validate; raise ParameterError before anything executes."""
    declared = declared_parameters(path)
    given = dict(given or {})
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise ParameterError(
            f"unknown parameter {', '.join(unknown)} for notebook {name}; "
            f"it takes: {', '.join(declared) or 'no parameters'}"
        )
    overrides = {k: convert_value(k, v, declared[k].type_name) for k, v in given.items()}
    effective = {k: p.default for k, p in declared.items()} | overrides
    checked = validate_parameters(name, **effective) if name in VALIDATORS else {}
    return PreparedParameters(overrides, effective, checked)


# --- files --------------------------------------------------------------------------------------


def ensure_runs_dir(runs_dir: Path) -> Path:
    """``runs_dir`` created if needed and set to mode 0700."""
    runs_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(runs_dir, 0o700)
    return runs_dir


_SAFE = re.compile(r"[^\w.-]")


def reserve_stem(runs_dir: Path, name: str, user_id: str | None = None, now: datetime | None = None) -> str:
    """A fresh ``YYYYMMDDTHHMMSSZ_<name>[_<user_id>]`` (``-1``, ``-2``... within the same second).

    The ``.ipynb`` is created empty with mode 0600 to claim the name.
    """
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    base = f"{stamp}_{_SAFE.sub('-', name)}"
    if user_id:
        base += f"_{_SAFE.sub('-', str(user_id))}"
    for attempt in range(1000):
        stem = base if attempt == 0 else f"{base}-{attempt}"
        try:
            os.close(os.open(runs_dir / f"{stem}.ipynb", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
            return stem
        except FileExistsError:
            continue
    raise RuntimeError(f"could not find a free run name for {base} in {runs_dir}")


def write_private(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` with mode 0600 (whatever the umask)."""
    fd = os.open(path, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(path, 0o600)
    return path


def scrub_file(path: Path, secrets: list[str]) -> bool:
    """Replace every secret in ``path`` by ``***``; True if one was found.

    JSON files (``.ipynb``, ``.json``) are scrubbed string by string, so their structure survives
    whatever characters the secret contains.
    """
    if not secrets or not path.exists():
        return False
    text = path.read_text(encoding="utf-8")
    escaped = {json.dumps(s, ensure_ascii=False)[1:-1] for s in secrets} | {json.dumps(s)[1:-1] for s in secrets}
    if not any(form in text for form in {*secrets, *escaped}):
        return False
    if path.suffix in (".ipynb", ".json"):
        clean = scrub_value(json.loads(text), secrets)
        write_private(path, json.dumps(clean, indent=1, ensure_ascii=False) + "\n")
    else:
        write_private(path, scrub_text(text, secrets))
    return True


# A template that is lab's, minus the three <script src="https://cdn..."> tags (require.js, MathJax,
# mermaid): the runbook needs none of them and an archived HTML file must not reach the network.
_OFFLINE_TEMPLATE = """{%- extends 'index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
"""


def render_html(notebook: Path, html_path: Path) -> Path:
    """A self-contained HTML export of ``notebook`` (mode 0600): inlined plotly.js, no CDN scripts."""
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(
        template_name="lab",
        extra_loaders=[DictLoader({"runbook_offline.html.j2": _OFFLINE_TEMPLATE})],
        template_file="runbook_offline.html.j2",
        embed_images=True,
    )
    with warnings.catch_warnings():
        # scrapbook's scrap outputs have no HTML form; leaving them out is intended.
        warnings.filterwarnings("ignore", message=".*is not able to be represented.*")
        body, _ = exporter.from_notebook_node(nbformat.read(notebook, as_version=4))
    return write_private(html_path, body)


# --- outcome ------------------------------------------------------------------------------------


def _describe_cell(index: int, cell: Any) -> str:
    first = next((line for line in str(cell.get("source", "")).splitlines() if line.strip()), "")
    return f"cell {index} (In [{cell.get('execution_count') or ' '}]: {first.strip()[:80]})"


def find_failure(nb: Any) -> tuple[int | None, str | None]:
    """The first failing or unexecuted code cell of an executed notebook and why, or (None, None)."""
    for index, cell in enumerate(nb.cells):
        if cell.get("cell_type") != "code" or not str(cell.get("source", "")).strip():
            continue
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                evalue = str(output.get("evalue", ""))
                return index, f"{_describe_cell(index, cell)} raised {output.get('ename')}: {evalue}"
        status = cell.get("metadata", {}).get("papermill", {}).get("status")
        if cell.get("execution_count") is None or status in ("running", "failed"):
            return index, (
                f"{_describe_cell(index, cell)} did not finish (stopped early: timeout, dead kernel "
                "or sys.exit)"
            )
    return None, None


def extract_report(notebook: Path, scrap: str | None) -> tuple[str | None, dict[str, Any] | None]:
    """The glued report: scrap ``scrap``, or the notebook's only dict scrap when ``scrap`` is None."""
    import scrapbook as sb

    scraps = sb.read_notebook(str(notebook)).scraps
    if scrap is None:
        dicts = [name for name, s in scraps.items() if isinstance(s.data, dict)]
        if len(dicts) != 1:
            return None, None
        scrap = dicts[0]
    if scrap not in scraps:
        return scrap, None
    data = jsonable(scraps[scrap].data)
    return scrap, data if isinstance(data, dict) else None


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

    ``notebook`` is a runbook name (``monitor``, ``preview``, ``recover``, ``verify``) or a path to
    an ``.ipynb``. ``parameters`` may hold strings (converted to the declared types) or values.
    ``timeout`` limits each cell, in seconds. Raises :class:`ParameterError` (nothing executed,
    nothing recorded) for an unknown notebook, an unknown parameter name or an invalid value.
    """
    path = notebook_path(notebook, notebooks_dir)
    name = path.stem
    prepared = prepare_parameters(name, path, parameters)
    scrap_name = report_scrap or REPORT_SCRAPS.get(name)
    user_id = prepared.checked.get("user_id") if prepared.checked else prepared.effective.get("user_id")

    runs = ensure_runs_dir(Path(runs_dir))
    started = datetime.now(UTC)
    stem = reserve_stem(runs, name, user_id if isinstance(user_id, str) else None, started)
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
