"""``recover`` (or ``--dry-run``), ``recover undo RUN_ID`` and ``reprocess-failed`` (the legacy path)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from sqlalchemy.exc import DBAPIError

from recovery_lib.errors import BatchConfigError, ParameterError
from recovery_lib.options import INSERT_METHODS


def register(subparsers: argparse._SubParsersAction) -> None:
    recover = subparsers.add_parser("recover", help="re-insert lost metrics (exactly once), or preview with --dry-run")
    recover.add_argument("--dry-run", action="store_true", help="compute everything in a READ ONLY transaction")
    recover.add_argument("--batch-size", help="ingestions fetched per round (RECOVERY_BATCH_SIZE, default 100)")
    recover.add_argument("--max-concurrent-jobs", help="parallel workers (RECOVERY_MAX_CONCURRENT_JOBS; "
                         "default 5, or cores + 1 when fewer and the server runs here)")
    recover.add_argument("--user-id", help="only this user's ingestions (a UUID)")
    recover.add_argument("--no-verify", action="store_true", help="skip the payload checksum comparison")
    recover.add_argument(
        "--require-verified", action="store_true",
        help="fail an ingestion whose checksum is unverifiable (no rendering reproduces payload_hash)")
    recover.add_argument(
        "--from-preview", metavar="PATH",
        help="a preview's report (recover --dry-run's data_recovery_report_*.json, or run preview's .json): "
             "recover only what it previewed, refusing any ingestion whose stored payload changed since")
    recover.add_argument(
        "--status", nargs="+", metavar="S", help="statuses to recover (default: error partial_success)")
    recover.add_argument("--no-silent-loss", action="store_true", help="skip reconciling 'processed' ingestions")
    recover.add_argument(
        "--insert-method", choices=INSERT_METHODS, default="sql",
        help="sql: PostgreSQL writes the simple metrics from the jsonb, the parser the rest (default); "
             "copy: the parser's rows through COPY staging; insert: multi-row INSERT chunks")
    recover.add_argument("--report-dir", default=".", help="where data_recovery_report_*.json is written")
    recover.add_argument("--no-progress", action="store_true", help="no progress bar")
    recover.set_defaults(func=_recover)
    actions = recover.add_subparsers(dest="recover_action", metavar="ACTION")
    undo = actions.add_parser(
        "undo", help="revert exactly what a recovery run wrote (rows, filled columns, statuses), from its journal")
    undo.add_argument("run_id", metavar="RUN_ID", help="the run's id (the report's run_id, or its first 8+ digits)")
    undo.add_argument("--dry-run", action="store_true", help="check and count everything, write nothing")
    undo.add_argument("--report-dir", default=".", help="where undo_report_<run>_*.json is written")
    undo.set_defaults(func=_undo)

    legacy = subparsers.add_parser(
        "reprocess-failed", help="legacy path: re-run status 'error' ingestions, no silent-loss reconciliation"
    )
    legacy.add_argument("--user-id", help="only this user's ingestions (a UUID)")
    legacy.add_argument("--batch-size", help="ingestions fetched per round (default 100)")
    legacy.add_argument("--report-dir", default=".", help="where the report is written")
    legacy.set_defaults(func=_reprocess_failed)


def _summary(report: dict[str, Any]) -> str:
    from recovery_lib.backups import describe

    mode = "DRY RUN (nothing written)" if report["dry_run"] else "RECOVERY"
    lines = [
        f"{mode} run {report['run_id']} on {report['database']}",
        f"  candidates {report['candidates']}: recovered {report['recovered']}, "
        f"failed {report['recovery_failed']}, skipped {report['skipped']}",
        f"  rows missing before {report['missing_before_total']}, inserted {report['rows_inserted_total']}, "
        f"missing after {report['missing_after_total']}",
        f"  backups: {describe(report.get('backups'))}",
    ]
    for name, t in report["tables"].items():
        lines.append(f"    {name:<24} expected {t['expected']:>8} missing {t['missing_before']:>8} "
                     f"inserted {t['inserted']:>8}")
    checks = ", ".join(f"{n} {verdict}" for verdict, n in report["checksums"].items() if n)
    lines.append(f"  checksums: {checks or 'none'}" + (
        f" (matched: {', '.join(report['checksum_renderings'])})" if report["checksum_renderings"] else ""))
    if report["failure_categories"]:
        lines.append(f"  failures by category: {report['failure_categories']}")
    for body in report["bodies_not_stored"]:
        lines.append(f"  body never stored (placeholder; the client must resend): ingestion {body['ingestion_id']}")
    return "\n".join(lines)


def _run(args: argparse.Namespace, **values: Any) -> int:
    from recovery_lib import db, recovery
    from recovery_lib.options import RecoveryOptions
    from recovery_lib.redact import mask_url

    try:
        options = RecoveryOptions.validated(user_id=args.user_id, batch_size=args.batch_size, **values)
    except (ParameterError, BatchConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        report = recovery.run_recovery(
            None, options, report_dir=args.report_dir, progress=not getattr(args, "no_progress", False)
        )
    except recovery.RecoveryAborted as exc:
        print(f"error: recovery stopped: {exc}", file=sys.stderr)
        print(_summary(exc.report.to_dict()))
        return 1
    except DBAPIError as exc:
        print(f"error: {db.describe_error(exc)} (database: {mask_url(db.database_url())}); "
              "finished ingestions are kept, nothing half-written: fix the cause and rerun", file=sys.stderr)
        return 1
    print(_summary(report.to_dict()))
    if report.notices:
        print("  restoration notices: " + ", ".join(report.notices))
    return 0


def _recover(args: argparse.Namespace) -> int:
    return _run(
        args, statuses=args.status, verify=False if args.no_verify else None,
        max_concurrent_jobs=args.max_concurrent_jobs, dry_run=args.dry_run,
        include_silent_loss=not args.no_silent_loss, insert_method=args.insert_method,
        require_verified=args.require_verified, preview_report=args.from_preview,
    )


def _undo(args: argparse.Namespace) -> int:
    from recovery_lib import db, recovery
    from recovery_lib.options import UndoOptions
    from recovery_lib.redact import mask_url

    try:
        options = UndoOptions.validated(run_id=args.run_id, dry_run=args.dry_run)
    except ParameterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        report = recovery.undo_run(None, options, report_dir=args.report_dir)
    except recovery.UndoRefused as exc:
        print(f"error: undo refused: {exc}", file=sys.stderr)
        if exc.report is not None:
            print(_undo_summary(exc.report.to_dict()))
        return 1
    except DBAPIError as exc:
        print(f"error: {db.describe_error(exc)} (database: {mask_url(db.database_url())}); "
              "undone ingestions are kept, nothing half-undone: fix the cause and rerun", file=sys.stderr)
        return 1
    print(_undo_summary(report.to_dict()))
    return 0


def _undo_summary(report: dict[str, Any]) -> str:
    from recovery_lib.recovery.undo_report import headline

    lines = [headline(report)]
    for name, t in report["tables"].items():
        lines.append(f"    {name:<24} rows deleted {t['rows_deleted']:>8} values cleared {t['values_cleared']:>6}")
    for item in report["ingestions"]:
        if item["outcome"] != "refused":
            continue
        lines.append(f"  refused ingestion {item['ingestion_id']} (user {item['user_id']}): {item['message']}")
        for c in item["conflicts"]:
            lines.append(f"    {c['table']} row id {c['row_id']} at {c['key']}: changed by {c['changed_by']}")
    return "\n".join(lines)


def _reprocess_failed(args: argparse.Namespace) -> int:
    return _run(args, statuses=["error"], include_silent_loss=False, max_concurrent_jobs=1)
