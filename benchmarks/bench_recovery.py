"""Benchmark 1: recovery throughput, against a bare COPY of exactly the same rows.

The incident (scale 1): 1,000,000+ missing rows over every table of the catalogue (heart rate
about 90% of them, as in real exports; :mod:`benchmarks.families` adds the other families and
the series and route of version 2 workouts), in four exports of 100,000+ points each and about
150 ordinary ones (error, partial_success, silent loss), plus fully written payloads that
discovery must reconcile and leave alone. Measured:

* ``recovery.run_recovery`` end to end (discovery, claim, checksum, SQL inserts of the simple
  metrics, streamed parse of the rest: sleep, workouts and their series, text fields, the data
  arrays, unknown names; COPY staging, merge, counts, status update, log), default options: rows
  inserted per second;
* the baseline: the very rows the recovery inserted, read back into memory as COPY text first,
  then ``COPY ... FROM STDIN`` into empty copies of the tables (``LIKE ... INCLUDING ALL``: same
  columns, defaults, identity, primary key and unique index); only the COPY and commit are timed;
* the naive approach on a 20,000-row subset: one ``INSERT`` statement per row, one commit at the end.

The recovery and its COPY are measured in :data:`ROUNDS` rounds: the first on the loaded incident,
the others on fresh ``CREATE DATABASE ... TEMPLATE`` copies of it taken before the first, the COPY
in turn after and before the recovery; the rates and their ratio are the medians of the rounds,
and each round's ratio is shown.

Target: recovery at least 0.5x the bare COPY rate.
"""

from __future__ import annotations

import io
import os
import statistics
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from benchmarks import BenchResult, Clock, Context, log

NUMBER = 1
TITLE = "Recovery throughput vs bare COPY of the same rows"
TARGET_RATIO = 0.5
NAIVE_ROWS = 20_000
SEED = 20240206
# Recovery + COPY pairs, each on the incident as loaded: the machine's speed moves by 10-20 %
# between two runs a minute apart, so one pair's ratio says little; the median of three says more.
ROUNDS = 3


def incident_settings(scale: float) -> dict[str, Any]:
    return {
        "target_rows": int(max(20_000, 1_000_000 * scale)),
        "large_payloads": 4,
        "large_points": int(max(3_000, 125_000 * scale)),
        "users": max(4, round(20 * min(scale, 1))),
        "complete_payloads": max(5, round(60 * min(scale, 1))),
        "seed": SEED,
    }


@dataclass
class Round:
    """One measured pair: a recovery of the incident as loaded, and the bare COPY of its rows."""

    seconds: float
    inserted: int
    missing_after: int
    copy_rows: int
    copy_seconds: float
    report: dict[str, Any]
    client_cpu: float
    server_cpu: float | None

    @property
    def rate(self) -> float:
        return self.inserted / self.seconds

    @property
    def copy_rate(self) -> float:
        return self.copy_rows / self.copy_seconds

    @property
    def ratio(self) -> float:
        return self.rate / self.copy_rate


def run(ctx: Context, *, recovery: bool, dry_run: bool) -> list[BenchResult]:
    """Benchmarks 1 and/or 5 on one incident (the dry run must see it before it is recovered)."""
    from benchmarks import bench_dry_run, data
    from recovery_lib.schema import METRIC_TABLES

    started = time.perf_counter()
    result = BenchResult(NUMBER, TITLE)
    clock = Clock()
    settings = incident_settings(ctx.scale)
    now = datetime.now(UTC)
    with ctx.server.database("recovery") as engine:
        log(f"bench 1: building the incident ({settings['target_rows']:,} missing rows)")
        with clock("generate"):
            incident = data.build_incident(now=now, **settings)
        with clock("load"):
            data.insert_users(engine, incident.profiles)
            data.load_ingestions(engine, incident.ingestions)
            present = data.write_present_rows(engine, incident.ingestions, now)
            with engine.connect() as conn:
                conn.execution_options(isolation_level="AUTOCOMMIT")
                conn.execute(sa.text("VACUUM ANALYZE"))
        assert present == incident.present_by_table, (present, incident.present_by_table)
        statuses: dict[str, int] = {}
        for ing in incident.ingestions:
            kind = ing.status
            if kind == "processed":
                kind = "processed (complete)" if len(ing.present_tables) == len(METRIC_TABLES) else "silent loss"
            statuses[kind] = statuses.get(kind, 0) + 1
        result.add("incident: missing rows", incident.missing_total, "rows", ", ".join(
            f"{t.removesuffix('_metrics')} {n:,}" for t, n in incident.missing_by_table.items()))
        result.add("incident: ingestions", len(incident.ingestions), "", ", ".join(
            f"{s} {n}" for s, n in sorted(statuses.items())))
        result.add("incident: points / JSON", incident.points, "points", f"{incident.json_bytes / 1e6:,.0f} MB of JSON")
        result.add("incident: largest payloads", max(incident.large_points), "points",
                   "the four large exports: " + ", ".join(f"{n:,}" for n in incident.large_points))
        result.add("data generation + load", clock["generate"] + clock["load"], "s",
                   f"build {clock['generate']:.1f} s, COPY + hash + present rows {clock['load']:.1f} s")

        results = []
        preview_seconds = None
        if dry_run:
            preview_result, preview_seconds = bench_dry_run.measure_preview(engine, incident)
            results.append(preview_result)
        rounds = ROUNDS if recovery else 1
        template = _keep_incident(ctx, engine) if rounds > 1 else None

        before = _max_ids(engine)
        first = _recover(ctx, engine, 1)
        if dry_run:
            bench_dry_run.finish(results[0], preview_seconds or 0.0, first.seconds)
        if not recovery:
            return results
        texts = _copy_texts(engine, before)
        first.copy_rows, first.copy_seconds = _copy_baseline(engine, texts)
        try:
            measured = [first, *(_another_round(ctx, template, texts, n) for n in range(2, rounds + 1) if template)]
        finally:
            if template and not ctx.keep:
                ctx.server.drop(template)
        _add_rounds(result, ctx, incident, measured)

        fk_rows, fk_seconds = _copy_baseline(engine, texts, foreign_key=True)
        result.add("bare COPY + foreign key", fk_rows / fk_seconds, "rows/s",
                   "for information: the same COPY into copies that also reference users(id), as the real tables")
        log("bench 1: naive one-INSERT-per-row subset")
        inserted = first.inserted
        rate = statistics.median(r.rate for r in measured)
        naive_rows, naive_seconds = _naive(engine, before, min(NAIVE_ROWS, inserted), inserted)
        result.add("naive INSERT per row", naive_rows / naive_seconds, "rows/s",
                   f"{naive_rows:,} rows in {naive_seconds:.1f} s, one commit at the end")
        result.add("recovery / naive", rate / (naive_rows / naive_seconds), "x")
        del texts
        result.seconds = time.perf_counter() - started - (preview_seconds or 0.0)
        result.note(
            "Recovery runs with its defaults (max_concurrent_jobs, batch_size, checksum verification on). The "
            f"baseline COPY gets the same {first.copy_rows:,} rows pre-rendered as text and writes them into "
            f"{len(METRIC_TABLES)} empty tables with the same indexes but no foreign key to users. "
            f"{len(measured)} rounds, each a recovery of the incident as loaded (round 1) or of a fresh copy of it "
            "and a COPY of its rows "
            "(in turn before and after it, so that a machine speeding up or slowing down favours neither); "
            "the rates and the ratio are the rounds' medians."
        )
        results.insert(0, result)
        return results


def _keep_incident(ctx: Context, engine: Any) -> str:
    """A template copy of the loaded incident for the later rounds (the caller drops it after them)."""
    from benchmarks.bench_scaling import copy_of

    engine.dispose()  # CREATE DATABASE ... TEMPLATE needs the source without sessions
    url = copy_of(ctx.server, "bench_recovery", "bench_recovery_incident")
    return str(sa.engine.make_url(url).database)


def _recover(ctx: Context, engine: Any, number: int) -> Round:
    """One timed ``run_recovery`` with its defaults, and the CPU it took (COPY figures filled in later)."""
    from benchmarks.bench_scaling import postgres_cpu
    from recovery_lib import recovery as engine_recovery

    log(f"bench 1: round {number}: run_recovery")
    cpu_before, pg_before = os.times(), postgres_cpu(ctx.server)
    start = time.perf_counter()
    report = engine_recovery.run_recovery(engine, progress=False).to_dict()
    seconds = time.perf_counter() - start
    cpu_after = os.times()
    time.sleep(0.5)  # the run's sessions have closed; their backends are counted once they have exited
    pg_after = postgres_cpu(ctx.server)
    client = cpu_after.user - cpu_before.user + cpu_after.system - cpu_before.system
    server = None if pg_before is None or pg_after is None else pg_after - pg_before
    return Round(seconds, report["rows_inserted_total"], report["missing_after_total"], 0, 0.0, report, client,
                 server)


def _another_round(ctx: Context, template: str, texts: dict[str, bytes], number: int) -> Round:
    """Round ``number`` on a fresh copy of the incident; the even ones COPY before they recover."""
    from benchmarks.bench_scaling import copy_of

    name = f"bench_recovery_round{number}"
    engine = ctx.server.engine(copy_of(ctx.server, template, name))
    try:
        if number % 2 == 0:
            copy_rows, copy_seconds = _copy_baseline(engine, texts)
            measured = _recover(ctx, engine, number)
        else:
            measured = _recover(ctx, engine, number)
            copy_rows, copy_seconds = _copy_baseline(engine, texts)
        measured.copy_rows, measured.copy_seconds = copy_rows, copy_seconds
        return measured
    finally:
        engine.dispose()
        if not ctx.keep:
            ctx.server.drop(name)


def _add_rounds(result: BenchResult, ctx: Context, incident: Any, rounds: list[Round]) -> None:
    """The figures of the rounds: the first one's detail, then the medians the target is judged on."""
    first = rounds[0]
    report = first.report
    result.add("recovery time", statistics.median(r.seconds for r in rounds), "s",
               f"median of {len(rounds)}; {report['candidates']} candidates, {report['recovered']} recovered, "
               f"{report['recovery_failed']} failed; jobs {report['parameters']['max_concurrent_jobs']}")
    # The machine's speed varies from run to run (by 40% here); CPU seconds say where the time went.
    server = "" if first.server_cpu is None else f", PostgreSQL {first.server_cpu:.1f} s"
    result.add("recovery CPU", first.client_cpu, "s",
               f"round 1: this process (the workers){server} (its sessions that ended)")
    wrong = [f"round {n}: {r.inserted:,}" for n, r in enumerate(rounds, 1) if r.inserted != incident.missing_total]
    result.add("rows inserted", first.inserted, "rows", "equals the missing rows, in every round" if not wrong
               else f"MISMATCH: {incident.missing_total:,} were missing; " + ", ".join(wrong))
    result.add("missing after recovery", max(r.missing_after for r in rounds), "rows", "the most of any round")
    by_sql = sum(t["inserted"] for o in report["ingestions"] for name, t in o["tables"].items()
                 if name in o.get("sql_tables", []))
    result.add("rows written by SQL", by_sql, "rows",
               f"insert_method {report['parameters']['insert_method']}: "
               f"{sum(1 for o in report['ingestions'] if o.get('sql_tables'))} of {len(report['ingestions'])} "
               "ingestions had their simple metrics written by PostgreSQL; the parser wrote the rest")
    rate = statistics.median(r.rate for r in rounds)
    seconds = first.inserted / rate
    points, size = incident.candidate_points, incident.candidate_bytes
    result.add("recovery rate", rate, "rows/s", f"median; {points / seconds:,.0f} points/s, "
               f"{size / 1e6 / seconds:.1f} MB JSON/s (of the payloads with missing rows)")
    copy_rate = statistics.median(r.copy_rate for r in rounds)
    result.add("bare COPY time", statistics.median(r.copy_seconds for r in rounds), "s",
               f"median; {first.copy_rows:,} rows into empty LIKE copies")
    result.add("bare COPY rate", copy_rate, "rows/s", "median")
    ratio = statistics.median(r.ratio for r in rounds)
    result.add("rounds: recovery / bare COPY", len(rounds), "rounds", ", ".join(
        f"{r.ratio:.2f}x ({r.rate:,.0f} vs {r.copy_rate:,.0f})" for r in rounds))
    result.add("recovery / bare COPY", ratio, "x", f"median of the rounds; target >= {TARGET_RATIO}x")
    measured = f"{ratio:.2f}x (median of {len(rounds)}: " + ", ".join(f"{r.ratio:.2f}" for r in rounds) + ")"
    judged = ctx.scale >= 1 and not wrong and all(r.copy_rows == r.inserted for r in rounds)
    result.target(f"recovery >= {TARGET_RATIO}x bare COPY", measured, ratio >= TARGET_RATIO if judged else None,
                  "" if ctx.scale >= 1 else f"at scale {ctx.scale}: judged at scale 1 only")


def _max_ids(engine: Any) -> dict[str, int]:
    from recovery_lib.schema import METRIC_TABLES

    with engine.connect() as conn:
        return {t: int(conn.execute(sa.text(f"SELECT coalesce(max(id), 0) FROM {t}")).scalar_one())
                for t in METRIC_TABLES}


def _columns(name: str) -> list[str]:
    from recovery_lib.schema import METRIC_TABLES

    return list(METRIC_TABLES[name].columns)


def _selected(name: str) -> str:
    """The columns as a SELECT list; jsonb as its text, so that psycopg2 hands it back as a JSON document
    (decoded, a JSON string would come back as a Python str and be sent again as text that is not JSON)."""
    from sqlalchemy.dialects.postgresql import JSONB

    from recovery_lib.schema import METRIC_TABLES

    table = METRIC_TABLES[name].table
    return ", ".join(f"{c}::text" if isinstance(table.c[c].type, JSONB) else c for c in _columns(name))


def _copy_texts(engine: Any, before: dict[str, int]) -> dict[str, bytes]:
    """The rows the recovery inserted (id above ``before``), as COPY text in memory, in insertion order."""
    texts: dict[str, bytes] = {}
    raw = engine.raw_connection()
    try:
        with raw.cursor() as cur:
            for name, last in before.items():
                cols = ", ".join(_columns(name))
                out = io.BytesIO()
                cur.copy_expert(f"COPY (SELECT {cols} FROM {name} WHERE id > {int(last)} ORDER BY id) TO STDOUT", out)
                texts[name] = out.getvalue()
        raw.commit()
    finally:
        raw.close()
    return texts


def _copy_baseline(engine: Any, texts: dict[str, bytes], *, foreign_key: bool = False) -> tuple[int, float]:
    """COPY the prepared text into empty ``LIKE ... INCLUDING ALL`` copies; only COPY and commit are timed."""
    raw = engine.raw_connection()
    try:
        with raw.cursor() as cur:
            for name in texts:
                cur.execute(f"DROP TABLE IF EXISTS bench_copy_{name}")
                cur.execute(f"CREATE TABLE bench_copy_{name} (LIKE {name} INCLUDING ALL)")
                if foreign_key:
                    cur.execute(f"ALTER TABLE bench_copy_{name} ADD FOREIGN KEY (user_id) REFERENCES users (id)")
        raw.commit()
        rows = sum(t.count(b"\n") for t in texts.values())
        with raw.cursor() as cur:
            start = time.perf_counter()
            for name, text in texts.items():
                cur.copy_expert(f"COPY bench_copy_{name} ({', '.join(_columns(name))}) FROM STDIN", io.BytesIO(text))
            raw.commit()
            seconds = time.perf_counter() - start
        with raw.cursor() as cur:
            for name in texts:
                cur.execute(f"DROP TABLE bench_copy_{name}")
        raw.commit()
    finally:
        raw.close()
    return rows, seconds


def _naive(engine: Any, before: dict[str, int], wanted: int, total: int) -> tuple[int, float]:
    """One INSERT statement per row (psycopg2 ``execute`` each), committed once at the end."""
    subsets: dict[str, list[tuple]] = {}
    raw = engine.raw_connection()
    try:
        with raw.cursor() as cur:
            for name, last in before.items():
                cur.execute(f"SELECT count(*) FROM {name} WHERE id > %s", (last,))
                share = cur.fetchone()[0]
                take = max(1, round(wanted * share / total)) if share else 0
                cur.execute(f"SELECT {_selected(name)} FROM {name} WHERE id > %s ORDER BY id LIMIT %s",
                            (last, take))
                subsets[name] = cur.fetchall()
                cur.execute(f"DROP TABLE IF EXISTS bench_naive_{name}")
                cur.execute(f"CREATE TABLE bench_naive_{name} (LIKE {name} INCLUDING ALL)")
        raw.commit()
        rows = sum(len(v) for v in subsets.values())
        with raw.cursor() as cur:
            start = time.perf_counter()
            for name, subset in subsets.items():
                cols = _columns(name)
                sql = f"INSERT INTO bench_naive_{name} ({', '.join(cols)}) VALUES ({', '.join(['%s'] * len(cols))})"
                for row in subset:
                    cur.execute(sql, row)
            raw.commit()
            seconds = time.perf_counter() - start
        with raw.cursor() as cur:
            for name in subsets:
                cur.execute(f"DROP TABLE bench_naive_{name}")
        raw.commit()
    finally:
        raw.close()
    return rows, seconds
