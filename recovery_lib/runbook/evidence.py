"""The evidence a run leaves in ``runs/``: a claimed name, the scrubbed notebook, its HTML, its report.

* :func:`reserve_stem` claims ``YYYYMMDDTHHMMSSZ_<name>[_<user_id>][_<worker>]`` (the ``.ipynb`` is created
  empty, mode 0600, so two runs never share a name);
* :func:`scrub_file` removes the database password from a file should it ever appear;
* :func:`render_html` writes a self-contained HTML export (plotly.js inlined, no CDN);
* :func:`find_failure` names the first failing or unexecuted cell (papermill leaves no banner
  for a timeout, a dead kernel or ``sys.exit``); :func:`extract_report` reads the glued report;
* :func:`cells_started` tells whether any cell was sent to the kernel (then a run is never
  repeated: its cells may have written to the database).

    >>> stem = reserve_stem(Path("runs"), "recover", "550e8400-e29b-41d4-a716-446655440000")
"""

from __future__ import annotations

import json
import os
import re
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nbformat

from recovery_lib.files import write_private
from recovery_lib.redact import scrub_text, scrub_value
from recovery_lib.runbook.kernel import jsonable

_SAFE = re.compile(r"[^\w.-]")


def reserve_stem(
    runs_dir: Path, name: str, user_id: str | None = None, now: datetime | None = None, *, worker: str | None = None
) -> str:
    """A fresh ``YYYYMMDDTHHMMSSZ_<name>[_<user_id>][_<worker>]`` (``-1``, ``-2``... within the same second).

    The ``.ipynb`` is created empty with mode 0600 to claim the name.
    """
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    base = f"{stamp}_{_SAFE.sub('-', name)}"
    for label in (user_id, worker):
        if label:
            base += f"_{_SAFE.sub('-', str(label))}"
    for attempt in range(1000):
        stem = base if attempt == 0 else f"{base}-{attempt}"
        try:
            os.close(os.open(runs_dir / f"{stem}.ipynb", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
            return stem
        except FileExistsError:
            continue
    raise RuntimeError(f"could not find a free run name for {base} in {runs_dir}")


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


def cells_started(notebook: Path) -> bool:
    """Whether papermill sent any code cell of ``notebook`` to the kernel (True when unreadable).

    Papermill saves a cell with its ``start_time`` before it sends the cell, so a notebook whose
    kernel never came up has no start time and no execution count on any cell (its final save
    marks every pending cell ``completed``, so the status tells nothing).
    """
    if not notebook.exists() or notebook.stat().st_size == 0:
        return False
    try:
        nb = nbformat.read(notebook, as_version=4)
    except Exception:  # noqa: BLE001 - cannot tell: assume it ran, never run it twice
        return True
    for cell in nb.cells:
        if cell.get("cell_type") != "code":
            continue
        started = cell.get("metadata", {}).get("papermill", {}).get("start_time")
        if cell.get("execution_count") is not None or started is not None:
            return True
    return False


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
