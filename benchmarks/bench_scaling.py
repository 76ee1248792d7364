"""Benchmark 6: recovery throughput with 1, 2 and 4 worker processes, and through the Airflow fan-out.

The incident is benchmark 1's (same settings, same seed), loaded once into a template database;
each measurement recovers a fresh copy of it (``CREATE DATABASE ... TEMPLATE``). A worker is
one ``python -m recovery_lib recover --max-concurrent-jobs 1`` process; N of them start at
once on the same database and split the work only through it (claims, one user at a time),
as N scheduled workers on N hosts would. Measured per N: wall time from the first start to
the last exit, rows inserted per second, the ratio to one worker, and where the CPU went:
the workers' own CPU time (``RUSAGE_CHILDREN``) and PostgreSQL's (the CPU time of the server
processes that served the run, which the postmaster collects when they exit, read from
``/proc``; an embedded server only). Also one process with ``DEFAULT_JOBS`` (5) threads, for
reference: the default for a server on another machine (one on this machine gets at most its
cores + 1, as in benchmark 1).

With ``.venv-airflow`` present (``make airflow-setup``), the same incident once more through
``tests/airflow_e2e.py``: the DAG with ``AIRFLOW_WORKERS`` mapped recover tasks on the
LocalExecutor. Reported: the whole DAG run, and the fan-out from the first recover task's start
to the last one's end (kernel starts included), as throughput and ratio to one process.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from benchmarks import BenchResult, Context, Server, log
from recovery_lib.options import DEFAULT_JOBS

NUMBER = 6
TITLE = "Scaling: 1, 2 and 4 worker processes, and the Airflow fan-out"
PROCESSES = (1, 2, 4)
AIRFLOW_WORKERS = 4
ROOT = Path(__file__).resolve().parent.parent
AIRFLOW_PY = ROOT / ".venv-airflow" / "bin" / "python"
TEMPLATE = "bench_scaling_template"


def postgres_cpu(server: Any) -> float | None:
    """CPU seconds of the server's exited processes (postmaster's cutime + cstime), or None."""
    if not server.embedded or not server.folder:
        return None
    try:
        pid = int((Path(server.folder) / "data" / "postmaster.pid").read_text().split()[0])
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, ValueError, IndexError):
        return None
    # fields[0] is the state (field 3); cutime and cstime are fields 16 and 17.
    return (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")


def _machine_busy() -> tuple[float, float]:
    """(busy, total) CPU jiffies of the whole machine so far (/proc/stat), every process included."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return float(sum(fields) - idle), float(sum(fields))


def children_cpu() -> float:
    """CPU seconds of this process's waited-for children so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def copy_of(server: Server, template: str, name: str) -> str:
    """A fresh copy of ``template``; its URL as text (with the password, for the children)."""
    with server._admin.connect() as conn:  # noqa: SLF001 - the harness's admin engine
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(sa.text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
    server.created.append(name)
    return server.url_text(name)


def build_template(server: Server, template: str, scale: float) -> Any:
    """Benchmark 1's incident at ``scale`` (same settings and seed) in a new database ``template``, analysed."""
    from benchmarks import data
    from benchmarks.bench_recovery import incident_settings
    from recovery_lib import schema

    settings = incident_settings(scale)
    with server._admin.connect() as conn:  # noqa: SLF001
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{template}" WITH (FORCE)'))
        conn.execute(sa.text(f'CREATE DATABASE "{template}"'))
    server.created.append(template)
    engine = server.engine(server.url_of(template))
    try:
        log(f"building the benchmark-1 incident ({settings['target_rows']:,} missing rows) in {template}")
        schema.init_db(engine)
        now = datetime.now(UTC)
        incident = data.build_incident(now=now, **settings)
        data.insert_users(engine, incident.profiles)
        data.load_ingestions(engine, incident.ingestions)
        data.write_present_rows(engine, incident.ingestions, now)
        with engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT")
            conn.execute(sa.text("VACUUM ANALYZE"))
    finally:
        engine.dispose()
    return incident


def _measure(ctx: Context, processes: int, threads: int, label: str) -> dict[str, Any]:
    url = copy_of(ctx.server, TEMPLATE, f"bench_scaling_{label}")
    cpu_before, pg_before, machine_before = children_cpu(), postgres_cpu(ctx.server), _machine_busy()
    with tempfile.TemporaryDirectory(prefix="bench-scaling-") as reports:
        env = {**os.environ, "DATABASE_URL": url}
        command = [sys.executable, "-m", "recovery_lib", "recover", "--no-progress", "--max-concurrent-jobs",
                   str(threads)]
        start = time.perf_counter()
        procs = [subprocess.Popen([*command, "--report-dir", f"{reports}/{n}"], env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True) for n in range(processes)]
        errors = [proc.communicate()[1] for proc in procs]
        seconds = time.perf_counter() - start
        machine_after = _machine_busy()
        failed = [e[-400:] for p, e in zip(procs, errors, strict=True) if p.returncode != 0]
        if failed:
            raise RuntimeError(f"a recover process failed: {failed[0]}")
        done = [json.loads(p.read_text()) for p in Path(reports).glob("*/data_recovery_report_*.json")]
    time.sleep(0.5)  # the server processes of the runs exit just after their clients
    pg_after = postgres_cpu(ctx.server)
    ctx.server.drop(f"bench_scaling_{label}")
    return {
        "seconds": seconds,
        "rows": sum(r["rows_inserted_total"] for r in done),
        "recovered": sum(r["recovered"] for r in done),
        "busy": sum(1 for r in done if r["recovered"] or r["recovery_failed"]),
        "python_cpu": children_cpu() - cpu_before,
        "postgres_cpu": None if pg_before is None or pg_after is None else pg_after - pg_before,
        # all processes, this run's and anyone else's: near 100% means the cores were the limit
        "machine_busy": (machine_after[0] - machine_before[0]) / max(machine_after[1] - machine_before[1], 1.0),
    }


def _cpu_note(m: dict[str, Any]) -> str:
    pg = m["postgres_cpu"]
    total = m["python_cpu"] + (pg or 0.0)
    text = f"CPU {m['python_cpu']:.1f} s in the workers"
    if pg is not None:
        text += f", {pg:.1f} s in PostgreSQL ({pg / total:.0%})" if total else ""
    return text + (f"; {total / m['seconds']:.2f} of {os.cpu_count()} cores for this run, machine "
                   f"{m['machine_busy']:.0%} busy")


def run(ctx: Context) -> BenchResult:
    result = BenchResult(NUMBER, TITLE)
    incident = build_template(ctx.server, TEMPLATE, ctx.scale)
    result.add("incident", incident.missing_total, "rows missing",
               f"{len(incident.ingestions)} ingestions of {len(incident.profiles)} users (benchmark 1's, same seed)")

    measured: dict[int, dict[str, Any]] = {}
    for n in PROCESSES:
        log(f"bench 6: {n} recover process(es), 1 thread each")
        measured[n] = m = _measure(ctx, n, 1, f"p{n}")
        if m["rows"] != measured[1]["rows"]:  # the same incident: the same rows, whoever inserts them
            raise RuntimeError(f"{n} processes inserted {m['rows']} rows, one process {measured[1]['rows']}")
        rate = m["rows"] / m["seconds"]
        ratio = rate / (measured[1]["rows"] / measured[1]["seconds"])
        result.add(f"{n} worker process{'es' if n > 1 else ''}", rate, "rows/s",
                   f"{m['seconds']:.1f} s, {ratio:.2f}x one worker, {m['busy']} of {n} recovered some; "
                   f"{_cpu_note(m)}")
    log(f"bench 6: 1 process, {DEFAULT_JOBS} threads (the default for a remote server)")
    default = _measure(ctx, 1, DEFAULT_JOBS, f"t{DEFAULT_JOBS}")
    result.add(f"1 process, {DEFAULT_JOBS} threads (remote default)", default["rows"] / default["seconds"], "rows/s",
               f"{default['seconds']:.1f} s, {measured[1]['seconds'] / default['seconds']:.2f}x one worker; "
               f"{_cpu_note(default)}")
    base = measured[1]["rows"] / measured[1]["seconds"]
    _airflow(ctx, result, measured[1]["rows"], base)
    best = max(measured, key=lambda n: measured[n]["rows"] / measured[n]["seconds"])
    result.note(f"fastest with {best} process(es); beyond the cores ({os.cpu_count()}) more workers add "
                "contention, not throughput (see the cores busy and PostgreSQL's share of the CPU)")
    return result


def _airflow(ctx: Context, result: BenchResult, rows: int, base_rate: float) -> None:
    if not AIRFLOW_PY.exists():
        result.add("Airflow fan-out", None, "", "skipped: no .venv-airflow (make airflow-setup)")
        return
    url = copy_of(ctx.server, TEMPLATE, "bench_scaling_airflow")
    log(f"bench 6: the Airflow DAG, {AIRFLOW_WORKERS} mapped recover workers (about 3-5 minutes)")
    with tempfile.TemporaryDirectory(prefix="bench-airflow-") as folder:
        out = Path(folder) / "result.json"
        done = subprocess.run(
            [str(AIRFLOW_PY), str(ROOT / "tests" / "airflow_e2e.py"), "--data-url", url, "--workers",
             str(AIRFLOW_WORKERS), "--threads", "1", "--expect-rows", str(rows), "--result", str(out)],
            capture_output=True, text=True, timeout=3600,
        )
        facts = json.loads(out.read_text()) if out.exists() else {}
    ctx.server.drop("bench_scaling_airflow")
    if done.returncode != 0 or not facts:
        result.add("Airflow fan-out", None, "", "FAILED: " + (done.stdout + done.stderr)[-300:].replace("\n", " "))
        return
    span = facts["fan_out_seconds"]
    result.add(f"Airflow fan-out, {AIRFLOW_WORKERS} workers", rows / span, "rows/s",
               f"first recover task start to last end {span:.1f} s (kernel starts included), "
               f"{rows / span / base_rate:.2f}x one process; work per worker {facts['work_per_worker']}")
    result.add("Airflow DAG run, end to end", facts["dags_test_seconds"], "s",
               "airflow dags test --use-executor: monitor, preview, the workers, verify (6+ notebooks)")
