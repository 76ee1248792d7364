"""Plotly figures built from report dicts, and the renderer that keeps them readable in archives.

Every function takes the plain report dict a notebook glued (``report.to_dict()``) and returns a
``plotly.graph_objects.Figure``; an empty report gives a figure that says "no data" rather than
an error, so a quiet day never fails the runbook.

Renderer decision (:func:`setup_renderer`)
------------------------------------------
Executed notebooks in ``runs/`` are evidence: they must still show their charts when opened a
year later, offline, in JupyterLab or as the exported HTML, with no kernel. Plotly 7.1 in a
kernel defaults to ``plotly_mimetype``: JupyterLab 4 renders it offline (the extension ships in
the plotly wheel) but nbconvert's HTML drops the chart. ``notebook`` alone is blank in JupyterLab
(untrusted HTML output never runs its scripts). CDN renderers are blank offline.

So every figure is emitted as BOTH mimetypes: ``plotly_mimetype+notebook_archive``.

* ``application/vnd.plotly.v1+json`` - what JupyterLab renders, offline, from the figure JSON.
* ``text/html`` - what nbconvert keeps in the HTML export. ``notebook_archive`` is plotly's
  ``notebook`` renderer (``connected=False``: plotly.js is inlined, never fetched) with one change:
  the per-figure MathJax ``<script src="https://cdnjs...">`` plotly adds is removed, so no output
  refers to the network. Charts here use no LaTeX.

plotly.js (v4, about 4.8 MB minified) is injected ONCE per notebook, as a separate ``text/html``
output just before the first figure (the renderer's ``activate()`` runs once per kernel); each
figure's own HTML then only calls ``window.Plotly``. Measured cost (demo incident, 10 users):
executed notebooks 5.04-5.15 MB each (4.8 MB of plotly.js + 5-40 KB of JSON per figure, stored
twice: mimetype and HTML), HTML exports 5.12-5.16 MB each (:func:`recovery_lib.runbook.evidence.render_html`
inlines everything and drops nbconvert's require.js/MathJax/mermaid CDN tags). A full runbook
(4 notebooks + 4 HTML) is about 41 MB. A notebook without any chart carries no plotly.js.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

import plotly.graph_objects as go
import plotly.io as pio
from plotly.io._base_renderers import NotebookRenderer

ARCHIVE_RENDERER = "notebook_archive"
DEFAULT_RENDERER = f"plotly_mimetype+{ARCHIVE_RENDERER}"

_REMOTE_SCRIPT = re.compile(r"<script[^>]*\bsrc=\"https?://[^\"]*\"[^>]*>\s*</script>", re.I)


class ArchiveNotebookRenderer(NotebookRenderer):
    """plotly's offline ``notebook`` renderer without the MathJax CDN script tag."""

    def __init__(self) -> None:
        super().__init__(connected=False)

    def to_mimebundle(self, fig_dict: Any) -> dict[str, str]:
        bundle = super().to_mimebundle(fig_dict)
        bundle["text/html"] = _REMOTE_SCRIPT.sub("", bundle["text/html"])
        return bundle


def setup_renderer(default: str = DEFAULT_RENDERER) -> str:
    """Register ``notebook_archive`` and make ``default`` the default renderer; return it."""
    if ARCHIVE_RENDERER not in pio.renderers:
        pio.renderers[ARCHIVE_RENDERER] = ArchiveNotebookRenderer()
    pio.renderers.default = default
    return default


# --- helpers ------------------------------------------------------------------------------------

_LAYOUT = dict(template="plotly_white", height=380, margin=dict(l=60, r=20, t=60, b=60))


def _figure(title: str, **layout: Any) -> go.Figure:
    fig = go.Figure()
    fig.update_layout(title=title, **{**_LAYOUT, **layout})
    return fig


def _no_data(fig: go.Figure, text: str = "no data in this report") -> go.Figure:
    fig.add_annotation(text=text, showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5,
                       font=dict(size=16, color="grey"))
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return fig


def _rows(report: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    value = report.get(key) or []
    return [row for row in value if isinstance(row, Mapping)]


def _counts(value: Any) -> dict[str, float]:
    if not isinstance(value, Mapping):
        return {}
    return {str(k): float(v or 0) for k, v in value.items()}


def _num(value: Any) -> float:
    try:
        return float(value or 0)
    except (TypeError, ValueError):
        return 0.0


def _bar(fig: go.Figure, x: Iterable[Any], y: Iterable[Any], name: str, color: str | None = None) -> None:
    fig.add_trace(go.Bar(x=list(x), y=list(y), name=name, marker_color=color,
                         text=list(y), textposition="auto"))


# --- monitor ------------------------------------------------------------------------------------


def trend_figure(report: Mapping[str, Any]) -> go.Figure:
    """Monitoring: ingestions, failures and payloads with data loss per time bucket."""
    fig = _figure("Ingestions and failures over time", barmode="group",
                  xaxis_title="bucket start (UTC)", yaxis_title="payloads")
    trends = _rows(report, "trends")
    if not trends:
        return _no_data(fig)
    x = [row.get("bucket_start") for row in trends]
    fig.add_trace(go.Bar(x=x, y=[_num(r.get("ingestions")) for r in trends], name="ingestions",
                         marker_color="#4C78A8"))
    fig.add_trace(go.Bar(x=x, y=[_num(r.get("failures")) for r in trends], name="failures",
                         marker_color="#E45756"))
    fig.add_trace(go.Bar(x=x, y=[_num(r.get("data_loss")) for r in trends], name="with data loss",
                         marker_color="#F58518"))
    return fig


def loss_rate_figure(report: Mapping[str, Any]) -> go.Figure:
    """Monitoring: share of payloads with data loss per bucket, with the alert thresholds."""
    fig = _figure("Data loss rate over time", xaxis_title="bucket start (UTC)",
                  yaxis_title="payloads with data loss (%)")
    trends = _rows(report, "trends")
    if not trends:
        return _no_data(fig)
    fig.add_trace(go.Scatter(x=[r.get("bucket_start") for r in trends],
                             y=[_num(r.get("data_loss_rate_pct")) for r in trends],
                             mode="lines+markers", name="data loss rate", line=dict(color="#E45756")))
    for alert in _rows(report, "alerts"):
        if "loss" in str(alert.get("name", "")) and alert.get("threshold") is not None:
            fig.add_hline(y=_num(alert["threshold"]), line_dash="dot", line_color="grey",
                          annotation_text=f"{alert.get('name')} ({alert.get('level')})")
    return fig


def payload_size_figure(report: Mapping[str, Any]) -> go.Figure:
    """Monitoring: distribution of raw payload sizes in KiB."""
    fig = _figure("Payload size distribution", xaxis_title="payload size (KiB)", yaxis_title="payloads")
    sizes = [_num(s) / 1024 for s in report.get("payload_sizes") or []]
    if not sizes:
        return _no_data(fig)
    fig.add_trace(go.Histogram(x=sizes, nbinsx=30, marker_color="#4C78A8", name="payloads"))
    return fig


def loss_by_table_figure(report: Mapping[str, Any], key: str = "loss_by_table",
                         title: str = "Missing rows by metric table") -> go.Figure:
    """Monitoring / verification: rows missing per metric table."""
    fig = _figure(title, xaxis_title="metric table", yaxis_title="missing rows")
    counts = _counts(report.get(key))
    if not counts or not any(counts.values()):
        return _no_data(fig, "no missing rows")
    _bar(fig, counts, counts.values(), "missing rows", "#E45756")
    return fig


# --- preview / recover --------------------------------------------------------------------------


def _tables(report: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    tables = report.get("tables") or {}
    return {str(k): v for k, v in tables.items() if isinstance(v, Mapping)}


def missing_before(table: Mapping[str, Any]) -> float:
    """Rows a payload expects that were not in the table before recovery."""
    if table.get("missing_before") is not None:
        return _num(table["missing_before"])
    return max(_num(table.get("expected")) - _num(table.get("present_before")), 0.0)


def preview_tables_figure(report: Mapping[str, Any]) -> go.Figure:
    """Preview: expected rows per table, split into already present and missing (to insert)."""
    fig = _figure("What recovery would restore, per metric table", barmode="stack",
                  xaxis_title="metric table", yaxis_title="rows expected from candidate payloads")
    tables = _tables(report)
    if not tables:
        return _no_data(fig, "no candidate ingestions")
    names = list(tables)
    _bar(fig, names, [_num(tables[n].get("present_before")) for n in names], "already present", "#54A24B")
    _bar(fig, names, [missing_before(tables[n]) for n in names], "missing (would insert)", "#E45756")
    return fig


def users_figure(report: Mapping[str, Any]) -> go.Figure:
    """Preview / recovery: missing rows per user before (and after) recovery."""
    fig = _figure("Missing rows per user", barmode="group", xaxis_title="user", yaxis_title="rows")
    users = _rows(report, "users")
    if not users:
        return _no_data(fig, "no affected users")
    labels = [str(u.get("user_id", ""))[:8] for u in users]
    _bar(fig, labels, [_num(u.get("missing_before")) for u in users], "missing before", "#E45756")
    if any(u.get("missing_after") is not None for u in users) and not report.get("dry_run"):
        _bar(fig, labels, [_num(u.get("missing_after")) for u in users], "missing after", "#54A24B")
    return fig


def before_after_figure(report: Mapping[str, Any]) -> go.Figure:
    """Recovery: per table, rows missing before, rows inserted, rows still missing after."""
    fig = _figure("Recovery per metric table: before and after", barmode="group",
                  xaxis_title="metric table", yaxis_title="rows")
    tables = _tables(report)
    if not tables:
        return _no_data(fig, "no candidate ingestions")
    names = list(tables)
    _bar(fig, names, [missing_before(tables[n]) for n in names], "missing before", "#E45756")
    _bar(fig, names, [_num(tables[n].get("inserted")) for n in names], "inserted", "#4C78A8")
    _bar(fig, names, [_num(tables[n].get("missing_after")) for n in names], "missing after", "#54A24B")
    return fig


def outcomes_figure(report: Mapping[str, Any]) -> go.Figure:
    """Recovery: how many candidate ingestions were recovered, failed or skipped."""
    fig = _figure("Outcome per candidate ingestion", xaxis_title="outcome", yaxis_title="ingestions")
    counts = {k: _num(report.get(k)) for k in ("recovered", "recovery_failed", "skipped")}
    if not any(counts.values()):
        return _no_data(fig, "no candidate ingestions")
    _bar(fig, counts, counts.values(), "ingestions", "#4C78A8")
    return fig


# --- verify -------------------------------------------------------------------------------------


def status_counts_figure(report: Mapping[str, Any]) -> go.Figure:
    """Verification / monitoring: raw ingestions per processing status."""
    fig = _figure("Raw ingestions per processing status", xaxis_title="status", yaxis_title="ingestions")
    counts = _counts(report.get("status_counts"))
    if not counts:
        return _no_data(fig, "no ingestions in the window")
    colors = ["#E45756" if k in ("error", "partial_success", "recovery_failed") else "#54A24B" for k in counts]
    fig.add_trace(go.Bar(x=list(counts), y=list(counts.values()), marker_color=colors,
                         text=list(counts.values()), textposition="auto", name="ingestions"))
    return fig


# --- weekly review ------------------------------------------------------------------------------


def _weeks(report: Mapping[str, Any]) -> tuple[list[Mapping[str, Any]], list[str]]:
    weeks = _rows(report, "by_week")
    return weeks, [f"{w.get('week')}{' (so far)' if w.get('partial') else ''}" for w in weeks]


def review_weekly_figure(report: Mapping[str, Any]) -> go.Figure:
    """Review: ingestions, ingestions with data loss and ingestions recovered, per ISO week."""
    fig = _figure("Ingestions, data loss and recoveries per week", barmode="group", xaxis_title="ISO week (UTC)",
                  yaxis_title="ingestions")
    weeks, labels = _weeks(report)
    if not weeks:
        return _no_data(fig)
    for key, name, color in (("ingestions", "ingestions", "#4C78A8"), ("data_loss", "with data loss", "#E45756"),
                             ("recovered", "recovered", "#54A24B"), ("recovery_failed", "recovery failed", "#F58518")):
        _bar(fig, labels, [_num(w.get(key)) for w in weeks], name, color)
    return fig


def review_errors_figure(report: Mapping[str, Any]) -> go.Figure:
    """Review: ingestions per original error category, per ISO week (stacked)."""
    fig = _figure("Error categories per week", barmode="stack", xaxis_title="ISO week (UTC)",
                  yaxis_title="ingestions with an error")
    weeks, labels = _weeks(report)
    categories = sorted({c for w in weeks for c in _counts(w.get("error_categories"))})
    if not categories:
        return _no_data(fig, "no processing errors in the period")
    for category in categories:
        fig.add_trace(go.Bar(x=labels, y=[_counts(w.get("error_categories")).get(category, 0.0) for w in weeks],
                             name=category))
    return fig


def review_recovery_time_figure(report: Mapping[str, Any]) -> go.Figure:
    """Review: hours from ingestion to its first recovery (median and 90th percentile) per ISO week."""
    fig = _figure("Time from ingestion to recovery", xaxis_title="ISO week of the recovery (UTC)", yaxis_title="hours")
    weeks, labels = _weeks(report)
    if not any(w.get("recovery_hours_p50") is not None for w in weeks):
        return _no_data(fig, "no recovery in the period")
    for key, name, color in (("recovery_hours_p50", "median", "#4C78A8"), ("recovery_hours_p90", "90th percentile",
                                                                             "#E45756")):
        fig.add_trace(go.Scatter(x=labels, y=[w.get(key) for w in weeks], mode="lines+markers", name=name,
                                 line=dict(color=color), connectgaps=False))
    return fig


def review_alerts_figure(report: Mapping[str, Any]) -> go.Figure:
    """Review: archived monitor runs per week and in how many each alert fired."""
    fig = _figure("Monitor runs and alerts fired per week", barmode="group", xaxis_title="ISO week (UTC)",
                  yaxis_title="monitor runs")
    weeks, labels = _weeks(report)
    if not any(_num(w.get("monitor_runs")) for w in weeks):
        return _no_data(fig, "no monitor run in the runs archive for the period")
    _bar(fig, labels, [_num(w.get("monitor_runs")) for w in weeks], "monitor runs", "#BAB0AC")
    for name, color in (("data_loss_rate", "#E45756"), ("failure_rate", "#F58518"), ("user_needs_action", "#72B7B2")):
        _bar(fig, labels, [_counts(w.get("alerts_fired")).get(name, 0.0) for w in weeks], f"{name} fired", color)
    return fig


def review_restored_figure(report: Mapping[str, Any]) -> go.Figure:
    """Review: rows restored per metric table by the archived recover runs of the period."""
    fig = _figure("Rows restored per metric table (archived recover runs)", xaxis_title="metric table",
                  yaxis_title="rows inserted")
    counts = _counts(report.get("rows_restored_by_table"))
    if not any(counts.values()):
        return _no_data(fig, "no rows restored by an archived recover run")
    _bar(fig, counts, counts.values(), "rows restored", "#54A24B")
    return fig


def review_failures_figure(report: Mapping[str, Any]) -> go.Figure:
    """Review: failed recoveries per reason (category), and how many of those ingestions still fail."""
    fig = _figure("Recovery failure reasons", barmode="group", xaxis_title="reason", yaxis_title="count")
    reasons = _rows(report, "failure_reasons")
    if not reasons:
        return _no_data(fig, "no failed recovery in the period")
    names = [str(r.get("category")) for r in reasons]
    _bar(fig, names, [_num(r.get("failures")) for r in reasons], "failed recoveries", "#E45756")
    _bar(fig, names, [_num(r.get("still_failing")) for r in reasons], "ingestions still failing", "#F58518")
    return fig
