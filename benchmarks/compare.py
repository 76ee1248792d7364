"""Compare the recovery of two or more code versions on one incident: ``python -m benchmarks.compare REV REV``.

A developer tool, not one of the six benchmarks: it answers "is this change faster?" on a machine
whose speed moves by tens of percent within an hour, where two ``make bench`` runs cannot tell a
10 % change from noise. The benchmark-1 incident is built once and kept as a template database;
then the versions take turns (``--reps`` rounds), each recovering a fresh ``CREATE DATABASE ...
TEMPLATE`` copy in a child process that imports that version's ``recovery_lib`` (a detached git
worktree per revision, removed at the end). Per run: wall time, the server's CPU (its exited
processes, as in benchmark 6: embedded server only) and the child's CPU; then the medians.

    .venv/bin/python -m benchmarks.compare --scale 0.25 --reps 3 HEAD~1 HEAD
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import Server, log
from benchmarks.bench_scaling import build_template, children_cpu, copy_of, postgres_cpu

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = "bench_compare_template"
# The child: one run_recovery with its defaults but the number of jobs, on the database given
# through the engine the tool itself makes (db.get_engine).
CHILD = """
import sys, time
import recovery_lib
from recovery_lib import recovery
from recovery_lib.db import get_engine
from recovery_lib.options import RecoveryOptions
assert recovery_lib.__file__.startswith(sys.argv[3]), ("not the checkout's recovery_lib", recovery_lib.__file__)
engine = get_engine(sys.argv[1])
started = time.perf_counter()
report = recovery.run_recovery(engine, RecoveryOptions.validated(max_concurrent_jobs=int(sys.argv[2])), progress=False)
print(time.perf_counter() - started, report.to_dict()["rows_inserted_total"])
engine.dispose()
"""


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.compare", description=__doc__.splitlines()[0])
    parser.add_argument("revisions", nargs="+", help="git revisions to compare (e.g. main HEAD)")
    parser.add_argument("--scale", type=float, default=0.25, help="benchmark 1's size factor (default 0.25)")
    parser.add_argument("--jobs", type=int, default=5, help="max_concurrent_jobs of each recovery (default 5)")
    parser.add_argument("--reps", type=int, default=3, help="rounds; each version runs once per round (default 3)")
    args = parser.parse_args(argv)
    if not 0 < args.scale <= 4 or args.jobs < 1 or args.reps < 1:
        parser.error("--scale must be in (0, 4], --jobs and --reps at least 1")
    return args


def _one_run(server: Server, checkout: Path, jobs: int, name: str) -> tuple[float, float, float]:
    """Wall seconds, server CPU seconds and child CPU seconds of one recovery of a fresh copy."""
    url = copy_of(server, TEMPLATE, name)
    server_before, child_before = postgres_cpu(server), children_cpu()
    done = subprocess.run([sys.executable, "-c", CHILD, url, str(jobs), str(checkout)], capture_output=True, text=True,
                          cwd=checkout, env={**os.environ, "PYTHONPATH": str(checkout)})
    time.sleep(0.3)  # the server processes of the child's connections exit after it
    server_after, child_after = postgres_cpu(server), children_cpu()
    server.drop(name)
    if done.returncode:
        raise SystemExit(f"the recovery of {checkout} failed:\n{done.stderr[-3000:]}")
    used = (server_after - server_before) if server_before is not None and server_after is not None else float("nan")
    return float(done.stdout.split()[0]), used, child_after - child_before


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    results: dict[str, list[tuple[float, float, float]]] = {rev: [] for rev in args.revisions}
    with tempfile.TemporaryDirectory(prefix="recovery-compare-") as folder:
        checkouts: dict[str, Path] = {}
        server: Server | None = None
        try:
            for n, rev in enumerate(args.revisions):
                subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "--quiet",
                                str(Path(folder) / f"v{n}"), rev], check=True)
                checkouts[rev] = Path(folder) / f"v{n}"
            server = Server()
            build_template(server, TEMPLATE, args.scale)
            for round_ in range(args.reps):
                for n, rev in enumerate(args.revisions):
                    run = _one_run(server, checkouts[rev], args.jobs, f"bench_compare_{round_}_{n}")
                    results[rev].append(run)
                    log(f"{rev}: wall {run[0]:.2f} s, server CPU {run[1]:.2f} s, worker CPU {run[2]:.2f} s")
            server.drop(TEMPLATE)
        finally:
            if server is not None:
                server.close()
            for checkout in checkouts.values():
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(checkout)], check=False)
    print(f"scale {args.scale}, {args.jobs} jobs, {args.reps} rounds; medians:")
    for rev, runs in results.items():
        wall, used, child = (statistics.median(run[i] for run in runs) for i in range(3))
        print(f"  {rev:20s} wall {wall:7.2f} s   server CPU {used:7.2f} s   worker CPU {child:6.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
