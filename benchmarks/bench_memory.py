"""Benchmark 2: peak memory of the recovery process on one huge payload (and on a 20 MB one).

Each measurement is a fresh child process (``python -m benchmarks.bench_memory --child``) that
runs ``recovery.run_recovery`` for the one user owning that ingestion and reports its own peak RSS
(``getrusage(RUSAGE_SELF).ru_maxrss``) at the end. A third child recovers a user with nothing to
recover: the fixed cost of the interpreter, the libraries and a connection.

The huge payload is as large as jsonb allows: up to 200 MB of JSON text (``payload_size_bytes``);
its binary jsonb form must stay under PostgreSQL's 256 MiB (268,435,455 bytes) container limit,
so it is built again 15 % smaller until it loads (the mix of families sets the binary/text ratio).
Target: peak RSS < 250 MB for it.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from datetime import UTC, datetime
from typing import Any

NUMBER = 2
TITLE = "Peak memory recovering huge payloads"
HUGE_BYTES = 200_000_000
MEDIUM_BYTES = 20_000_000
TARGET_MB = 250
JSONB_LIMIT = 268_435_455
SEED = 7


def run(ctx: Any) -> Any:
    import psycopg2.errors
    import sqlalchemy as sa

    from benchmarks import BenchResult, Clock, data, log
    from recovery_lib.checksums import PAYLOAD_SHA256_SQL

    result = BenchResult(NUMBER, TITLE)
    clock = Clock()
    huge_bytes = int(HUGE_BYTES * ctx.scale)
    medium_bytes = int(MEDIUM_BYTES * ctx.scale)
    now = datetime.now(UTC)
    rng = random.Random(SEED)
    profiles = data.make_profiles(3, rng, prefix="memory")
    end = int(now.timestamp()) // data.HOUR * data.HOUR - 2 * data.DAY
    with ctx.server.database("memory") as engine:
        data.insert_users(engine, profiles)
        sizes = {}
        for label, profile, target in (("huge", profiles[0], huge_bytes), ("medium", profiles[1], medium_bytes)):
            while True:
                log(f"bench 2: building the {label} payload ({target / 1e6:,.0f} MB)")
                with clock(f"build {label}"):
                    built = data.build_payload_of_size(profile, target, end, rng)
                    ingestion = data.Ingestion(
                        id=f"00000000-0000-4000-8000-00000000000{len(sizes) + 1}", user_id=profile.user_id,
                        payload=built, status="error", created_at=now, processed_at=now,
                        errors=[{"error": data.PARAMETER_LIMIT_ERROR, "at": now.isoformat()}],
                    )
                try:
                    with clock(f"load {label}"):
                        data.load_ingestions(engine, [ingestion])
                    break
                except psycopg2.errors.ProgramLimitExceeded:
                    # Many small objects make the binary form larger than 1.3x the text: shrink to fit.
                    if target < MEDIUM_BYTES:
                        raise
                    target = int(target * 0.85)
            sizes[label] = (ingestion, built.points, built.row_total)
            del built
        with engine.connect() as conn:
            stored = {
                r.id: r for r in conn.execute(sa.text(
                    "SELECT id::text AS id, payload_size_bytes AS size, pg_column_size(raw_payload) AS on_disk, "
                    # concatenation yields a fresh, uncompressed jsonb: its size is what the limit applies to
                    "pg_column_size(raw_payload || '{}'::jsonb) AS jsonb_bytes, "
                    f"payload_hash = {PAYLOAD_SHA256_SQL} AS hash_ok FROM raw_ingestions"))
            }
        result.add("data generation + load", sum(clock.phases.values()), "s", ", ".join(
            f"{k} {v:.1f} s" for k, v in clock.phases.items()))

        url = ctx.server.url_text("bench_memory")
        baseline = _child(url, profiles[2].user_id)
        result.add("baseline child (nothing to recover)", baseline["maxrss_mb"], "MB",
                   f"ru_maxrss (VmHWM {baseline['hwm_mb']:,.0f} MB): interpreter, libraries, connection, discovery")
        huge_rss = None
        for label in ("medium", "huge"):
            ingestion, points, rows = sizes[label]
            row = stored[ingestion.id]
            log(f"bench 2: child recovering the {label} payload ({row.size / 1e6:,.0f} MB, {points:,} points)")
            got = _child(url, ingestion.user_id)
            result.add(f"{label} payload: payload_size_bytes", row.size, "bytes",
                       f"{row.size / 1e6:,.1f} MB JSON text, {points:,} points, {rows:,} rows; jsonb "
                       f"{row.jsonb_bytes / 1e6:,.0f} MB ({100 * row.jsonb_bytes / JSONB_LIMIT:.0f}% of the limit), "
                       f"{row.on_disk / 1e6:,.0f} MB compressed on disk; checksum {'ok' if row.hash_ok else 'WRONG'}")
            result.add(f"{label} payload: peak RSS", got["maxrss_mb"], "MB",
                       f"ru_maxrss; VmHWM {got['hwm_mb']:,.0f} MB; recovered {got['rows_inserted']:,} rows in "
                       f"{got['seconds']:.1f} s ({got['rows_inserted'] / got['seconds']:,.0f} rows/s), "
                       f"outcome {got['outcome']}")
            if label == "huge":
                huge_rss = got["maxrss_mb"]
                if got["rows_inserted"] != rows:
                    result.note(f"huge payload: {got['rows_inserted']:,} rows inserted, {rows:,} expected")
        judged = huge_bytes >= HUGE_BYTES
        result.target(f"peak RSS < {TARGET_MB} MB on the {huge_bytes / 1e6:,.0f} MB payload", f"{huge_rss:,.0f} MB",
                      huge_rss < TARGET_MB if judged and huge_rss is not None else None,
                      "" if judged else f"payload scaled down to {huge_bytes / 1e6:,.0f} MB; judged at scale 1 only")
        result.note(
            "The jsonb of the huge payload is about 1.3x its text, so 200 MB of text is close to what one jsonb "
            f"value can hold ({JSONB_LIMIT:,} bytes); the server expands it and writes the simple metrics, "
            "the client streams the rest (sleep, workouts)."
        )
    return result


# Linux carries a process's pre-exec peak RSS into ru_maxrss across exec(), and a child forked from
# this (large) benchmark process starts with this process's RSS. So the child is started by a tiny
# launcher process: its fork brings only the launcher's few MB, and ru_maxrss is the child's own.
_LAUNCHER = "import subprocess, sys; sys.exit(subprocess.call(sys.argv[1:]))"


def _child(url: str, user_id: str) -> dict[str, Any]:
    env = {**os.environ, "BENCH_CHILD_URL": url}
    proc = subprocess.run(
        [sys.executable, "-c", _LAUNCHER, sys.executable, "-m", "benchmarks.bench_memory", "--child", user_id],
        env=env, capture_output=True, text=True, check=False,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"memory child failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return json.loads(lines[-1])


def child(user_id: str) -> None:
    """Recover one user's ingestions; print peak RSS and what was done as one JSON line."""
    import resource

    import sqlalchemy as sa

    from recovery_lib import recovery

    engine = sa.create_engine(os.environ["BENCH_CHILD_URL"].replace("postgresql://", "postgresql+psycopg2://", 1))
    start = time.perf_counter()
    report = recovery.run_recovery(engine, user_id=user_id, progress=False)
    seconds = time.perf_counter() - start
    outcomes = sorted({i.outcome for i in report.ingestions})
    engine.dispose()
    maxrss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kilobytes on Linux
    hwm_kb = None
    with open("/proc/self/status", encoding="ascii") as status:  # the kernel's peak RSS of this process image
        for line in status:
            if line.startswith("VmHWM:"):
                hwm_kb = int(line.split()[1])
    print(json.dumps({
        "maxrss_mb": maxrss_kb / 1024, "hwm_mb": hwm_kb / 1024 if hwm_kb else None, "seconds": seconds,
        "outcome": ",".join(outcomes) or "nothing to do",
        "rows_inserted": sum(i.rows_inserted for i in report.ingestions),
    }))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        child(sys.argv[2])
    else:
        sys.exit("usage: python -m benchmarks.bench_memory --child USER_ID (run by benchmark 2)")
