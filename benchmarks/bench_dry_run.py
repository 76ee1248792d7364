"""Benchmark 5: the dry run (``recovery.preview``) on the benchmark-1 incident, before it is recovered.

The preview discovers the candidates, verifies each checksum, lists each payload's keys and counts which
of its keys exist, all in READ ONLY transactions. Its time is compared with the recovery of the
same incident (benchmark 1 measures that right after, on the same database).
"""

from __future__ import annotations

import time
from typing import Any

from benchmarks import BenchResult, log

NUMBER = 5
TITLE = "Dry run: recovery.preview on the benchmark-1 incident"


def measure_preview(engine: Any, incident: Any) -> tuple[BenchResult, float]:
    """Run the preview once, record its figures; return the result and the seconds it took."""
    from recovery_lib import recovery

    result = BenchResult(NUMBER, TITLE)
    log("bench 5: preview (dry run) of the incident")
    start = time.perf_counter()
    report = recovery.preview(engine, progress=False).to_dict()
    seconds = time.perf_counter() - start
    result.seconds = seconds
    missing = report["missing_before_total"]
    result.add("preview time", seconds, "s")
    result.add("candidates", report["candidates"], "ingestions", "by reason: " + ", ".join(
        f"{k} {v}" for k, v in sorted(report["candidates_by_reason"].items())))
    result.add("would recover", report["recovered"], "ingestions")
    result.add("would fail", report["recovery_failed"], "ingestions")
    result.add("rows expected", report["rows_expected_total"], "rows")
    result.add("rows missing (found by the preview)", missing, "rows",
               "matches the generator" if missing == incident.missing_total
               else f"generator says {incident.missing_total:,}")
    result.add("preview rate", missing / seconds if seconds else None, "missing rows/s")
    return result, seconds


def finish(result: BenchResult, preview_seconds: float, recovery_seconds: float) -> None:
    """Add the ratio to the recovery of the same incident."""
    ratio = preview_seconds / recovery_seconds if recovery_seconds else None
    result.add("recovery time (benchmark 1)", recovery_seconds, "s")
    result.add("preview / recovery", ratio, "x", "time ratio; below 1 means the dry run is cheaper")
    result.note(
        "The dry run lists every payload's keys (PostgreSQL for the simple metrics, the parser for the "
        "rest) and counts which exist, but writes nothing; it is read-only, so a second preview repeats it."
    )
