"""Benchmark 4: what running the monitor as a runbook notebook costs over calling it directly.

Data: a small incident from ``recovery_lib.simulate`` (a few users, a few dozen payloads). The same
24-hour report is built twice directly (``monitor.build_monitoring_report``, after one warm-up run
that fills the reconciliation cache) and twice through ``runner.run_notebook("monitor", ...)``:
papermill starts a kernel, executes notebooks/monitor.ipynb (which imports the library, connects,
builds the same report, draws the charts), saves the executed notebook, and the runner then
renders HTML, extracts the report and appends the audit record. The kernel reaches the database
through ``DATABASE_URL`` in its inherited environment. Target: overhead < 5 s.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from typing import Any

NUMBER = 4
TITLE = "Runbook overhead (papermill) vs direct call"
TARGET_OVERHEAD = 5.0
RUNS = 3  # medians: the first kernel start also pays cold imports


def run(ctx: Any) -> Any:
    from benchmarks import BenchResult, log
    from recovery_lib import monitor, simulate
    from recovery_lib.runbook import execute as runner

    result = BenchResult(NUMBER, TITLE)
    with ctx.server.database("runbook") as engine:
        log("bench 4: simulating a small incident")
        start = time.perf_counter()
        truth = simulate.simulate(engine, users=4, payloads=30, seed=11)
        result.add("data", len(truth.ingestions), "ingestions",
                   f"recovery_lib.simulate users=4 payloads=30 seed=11 ({time.perf_counter() - start:.1f} s)")

        monitor.build_monitoring_report(engine, hours=24)  # warm-up: imports, parse cache
        direct = []
        for _ in range(RUNS):
            start = time.perf_counter()
            monitor.build_monitoring_report(engine, hours=24)
            direct.append(time.perf_counter() - start)

        url = ctx.server.url_text("bench_runbook")
        saved = os.environ.get("DATABASE_URL")
        os.environ["DATABASE_URL"] = url  # the kernel inherits it; never a notebook parameter
        wall, papermill = [], []
        try:
            with tempfile.TemporaryDirectory(prefix="bench-runs-") as runs_dir:
                for n in range(RUNS):
                    log(f"bench 4: run_notebook('monitor') {n + 1}/{RUNS}")
                    start = time.perf_counter()
                    outcome = runner.run_notebook("monitor", {"hours": 24}, runs_dir=runs_dir)
                    wall.append(time.perf_counter() - start)
                    if not outcome.ok:
                        raise RuntimeError(f"the monitor notebook failed: {outcome.error}")
                    papermill.append(float(outcome.record.get("duration_seconds") or 0.0))
        finally:
            if saved is None:
                os.environ.pop("DATABASE_URL", None)
            else:
                os.environ["DATABASE_URL"] = saved

    d, w, p = statistics.median(direct), statistics.median(wall), statistics.median(papermill)
    overhead = w - d
    result.add("direct build_monitoring_report", d, "s", "median of " + ", ".join(f"{x:.2f}" for x in direct))
    result.add("run_notebook('monitor') wall time", w, "s", "median of " + ", ".join(f"{x:.2f}" for x in wall))
    result.add("  of which papermill execution", p, "s", "kernel start + cells + saving after each cell")
    result.add("  of which HTML, report, audit", w - p, "s", "nbconvert HTML (plotly inlined), scrap, index line")
    result.add("runbook / direct", w / d if d else None, "x")
    result.add("runbook overhead", overhead, "s")
    result.target(f"runbook overhead < {TARGET_OVERHEAD:.0f} s", f"{overhead:.2f} s", overhead < TARGET_OVERHEAD)
    return result
