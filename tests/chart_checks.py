"""Plotly charts in the archive: how many a file holds (expected, read from the file) and how many a
page drew (in the rendered DOM), in an HTML page or in a notebook open in JupyterLab.

A chart counts as drawn when its graph div holds an ``svg.main-svg`` (plotly draws three per
chart, so the divs are counted, not the svgs), with the title and the trace groups it drew.
"""

from __future__ import annotations

import html.parser
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from browser_helpers import Chromium, PageLog

PLOTLY_MIME = "application/vnd.plotly.v1+json"


class _GraphDivs(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "div" and "plotly-graph-div" in (attributes.get("class") or "").split():
            self.ids.append(attributes.get("id") or "")


def graph_divs(html_path: Path) -> list[str]:
    """Ids of the plotly figures in an HTML file (parsed: plotly writes ``class`` before ``id``)."""
    parser = _GraphDivs()
    parser.feed(html_path.read_text(encoding="utf-8"))
    return parser.ids


@dataclass(frozen=True)
class Figure:
    title: str
    traces: int


def notebook_figures(path: Path) -> list[Figure]:
    """The plotly figures in a notebook's outputs, one per ``application/vnd.plotly.v1+json``."""
    notebook = json.loads(path.read_text(encoding="utf-8"))  # plain json: nbformat costs seconds to import
    figures = []
    for cell in notebook["cells"]:
        for output in cell.get("outputs", []):
            figure = output.get("data", {}).get(PLOTLY_MIME)
            if figure is not None:
                title = figure.get("layout", {}).get("title", {})
                text = title.get("text", "") if isinstance(title, dict) else str(title)
                figures.append(Figure(text, len(figure.get("data", []))))
    return figures


# Each outermost plotly graph div, which drew (its svg.main-svg exists; plotly draws 3 per chart),
# and the title and trace groups drawn.
CHARTS_JS = """(() => {
  const divs = [...document.querySelectorAll('.plotly-graph-div, .js-plotly-plot')]
      .filter((d, i, all) => !all.some(o => o !== d && o.contains(d)));
  const drawn = divs.filter(d => d.querySelector('svg.main-svg'));
  return {
    divs: divs.length,
    drawn: drawn.map(d => ({title: (d.querySelector('.gtitle') || {}).textContent || '',
                            traces: d.querySelectorAll('g.trace').length})),
    plotly: typeof window.Plotly,
    ready: document.readyState,
  };
})()"""


def render_file(browser: Chromium, path: Path, timeout: float = 60) -> tuple[dict[str, Any], PageLog]:
    """``path`` opened as ``file://``: the charts once the page loaded and all drew (or plotly.js is absent)."""
    session = browser.open(path.as_uri())
    charts = browser.poll(
        session, CHARTS_JS,
        lambda v, log: log.loaded and v["ready"] == "complete"
        and (len(v["drawn"]) == v["divs"] or v["plotly"] == "undefined"),  # without plotly.js nothing will draw
        timeout=timeout,
    )
    return charts, browser.logs[session]


# In the visible notebook: plotly's mime renderer outputs (no data-mime-type attribute, unlike lab's
# own renderers), which drew, their titles, and whether any output was treated as trusted.
LAB_JS = """(() => {
  const panel = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)');
  if (!panel) return {ready: false};
  const plots = [...panel.querySelectorAll('.jp-OutputArea-output.jp-RenderedPlotly')];
  const drawn = plots.filter(p => p.querySelector('svg.main-svg'));
  return {
    ready: true,
    cells: panel.querySelectorAll('.jp-Cell').length,
    plots: plots.length,
    drawn: drawn.map(d => ({title: (d.querySelector('.gtitle') || {}).textContent || '',
                            traces: d.querySelectorAll('g.trace').length})),
    trusted_outputs: panel.querySelectorAll('.jp-OutputArea-output.jp-mod-trusted').length,
  };
})()"""
