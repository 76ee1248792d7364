"""The archive in a real browser: what the runbook wrote to runs/ shows every chart, offline.

The four runbook notebooks are executed once per session on a simulated incident (``runbook``,
conftest.py). Every archived ``.html`` is then opened as ``file://`` in headless Chromium with no
network, and the executed recover notebook in JupyterLab 4 with no kernel: each plotly chart the
file holds must be drawn (its ``svg.main-svg`` in the rendered DOM, with the title and the number
of traces of its figure), and neither the pages nor Chromium may ask for anything beyond the file
or the local server (tests/browser_helpers.py says how that is enforced and detected,
tests/chart_checks.py how charts are counted). A page that loads plotly.js from a CDN is the
negative control: caught, and nothing drawn.

Needs Debian's ``chromium`` (``make test`` installs it); missing, the tests fail and say how to
install it.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from browser_helpers import (
    CHROMIUM,
    Chromium,
    PageLog,
    chromium,
    left_machine,
    netlog_urls,
    netns_available,
    outside,
    warn_not_isolated,
)
from chart_checks import LAB_JS, graph_divs, notebook_figures, render_file
from helpers import Runbook
from lab_helpers import Lab, jupyter_lab

from recovery_lib.runbook.notebooks import ALL_NOTEBOOKS

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def chromium_installed() -> Path:
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} is missing: run `make chromium` (installs the Debian package 'chromium'), "
                    "or `apt-get install --no-install-recommends chromium`")
    if not netns_available():
        warn_not_isolated()
    return CHROMIUM


@pytest.fixture(scope="module", autouse=True)
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """Started first, so that its ~5 s start overlaps the runbook's execution when that comes next."""
    with jupyter_lab(tmp_path_factory.mktemp("lab")) as server:
        yield server


def drawn_figures(charts: dict[str, Any]) -> list[tuple[str, int]]:
    return [(chart["title"], chart["traces"]) for chart in charts["drawn"]]


# --- every archived HTML page, offline ----------------------------------------------------------


@dataclass
class Archive:
    pages: dict[str, tuple[dict[str, Any], PageLog]]  # notebook name -> (charts, what the page asked)
    netlog: list[str]  # every URL and DNS name Chromium handled while it rendered them all


@pytest.fixture(scope="module")
def archive(chromium_installed: Path, runbook: Runbook) -> Archive:
    pages = {}
    with chromium() as browser:
        for name in ALL_NOTEBOOKS:
            pages[name] = render_file(browser, runbook.results[name].html_path)
        browser.close()  # completes the net log
        return Archive(pages, netlog_urls(browser.netlog))


def test_the_archive_holds_one_html_page_per_notebook(runbook: Runbook) -> None:
    assert sorted(runbook.runs.glob("*.html")) == sorted(runbook.results[n].html_path for n in ALL_NOTEBOOKS)


@pytest.mark.parametrize("name", ALL_NOTEBOOKS)
def test_archived_page_draws_every_chart_of_its_notebook_offline(runbook: Runbook, archive: Archive,
                                                                 name: str) -> None:
    result = runbook.results[name]
    figures = notebook_figures(result.notebook)
    assert figures, f"{name}: the notebook shows no chart"
    assert len(graph_divs(result.html_path)) == len(figures), "one graph div in the HTML per figure"

    charts, page = archive.pages[name]

    assert charts["divs"] == len(figures), charts
    assert drawn_figures(charts) == [(f.title, f.traces) for f in figures], f"{name}: not every chart drew"
    assert page.exceptions == []
    assert outside(page.requests) == [], f"{name}: the page asked for something that is not in the file"


def test_chromium_asked_nothing_of_the_network_while_rendering_the_archive(archive: Archive) -> None:
    # the net log sees Chromium's own requests too (the negative control below shows it catches one)
    assert left_machine(archive.netlog) == []


def test_negative_control_a_page_loading_plotly_from_a_cdn_is_caught_and_draws_nothing(
    chromium_installed: Path, tmp_path: Path
) -> None:
    import plotly.graph_objects as go

    control = tmp_path / "cdn.html"
    go.Figure(go.Bar(x=["a", "b"], y=[1, 2]), layout={"title": "cdn control"}).write_html(
        control, include_plotlyjs="cdn", full_html=True)
    with chromium() as browser:
        charts, page = render_file(browser, control)
        browser.close()
        netlog = left_machine(netlog_urls(browser.netlog))

    assert charts["divs"] == 1
    # seen in the page and in the net log
    assert [u for u in outside(page.requests) if u.startswith("https://cdn.plot.ly/")], page.requests
    assert [u for u in netlog if u.startswith("https://cdn.plot.ly/")] and "dns://cdn.plot.ly" in netlog, netlog
    if netns_available():  # and it could not leave, so nothing drew (without a namespace it may have loaded)
        assert [e for u, e in page.failed.items() if "cdn.plot.ly" in u and e.startswith("net::ERR_")], page.failed
        assert charts["drawn"] == [], charts
        assert any("Plotly is not defined" in e for e in page.exceptions), page.exceptions


# --- the executed recover notebook in JupyterLab 4 ----------------------------------------------


def test_executed_recover_notebook_draws_its_charts_in_jupyterlab_without_a_kernel(
    chromium_installed: Path, runbook: Runbook, lab: Lab
) -> None:
    executed = runbook.results["recover"].notebook
    figures = notebook_figures(executed)
    assert figures, "the recover notebook shows no chart"
    shutil.copy(executed, lab.root / executed.name)  # as the runner wrote it: unsigned, so untrusted
    url = lab.wait_ready()
    token = f"?token={lab.token}"

    with chromium(lab.browser_prefix()) as browser:
        session, state = open_in_lab(browser, f"{url}/lab/tree/{executed.name}{token}", len(figures))
        kernels = browser.evaluate(session, f"fetch('/api/kernels{token}').then(r => r.json())", await_promise=True)
        page = browser.logs[session]
        browser.close()
        netlog = netlog_urls(browser.netlog)

    assert state.get("ready"), f"no notebook panel: {state}"
    assert state["plots"] == len(figures), state
    assert sorted(drawn_figures(state)) == sorted((f.title, f.traces) for f in figures), "not every chart drew"
    assert kernels == [], "rendering must not need a kernel"
    assert state["trusted_outputs"] == 0, "the runner's notebook is unsigned: lab must not trust it"
    assert outside(page.requests, (url, url.replace("http", "ws", 1))) == [], "the page went past the server"
    assert left_machine(netlog) == [], "chromium asked the network"


def open_in_lab(browser: Chromium, url: str, charts: int) -> tuple[str, dict[str, Any]]:
    """The page's session, and what the notebook shows once ``charts`` plotly outputs drew (or 60 s passed)."""
    session = browser.open(url)
    return session, browser.poll(session, LAB_JS, lambda v, _: v.get("ready") and v["plots"] >= charts
                                 and len(v["drawn"]) == v["plots"], timeout=60)
