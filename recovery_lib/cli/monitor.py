"""``monitor``: the processing monitor in the terminal, with a Prometheus textfile and JSON report.

    python -m recovery_lib monitor --hours 6 --prom-textfile /var/lib/node_exporter/health_export.prom

Exit codes: 0 normally (alerts are reported, not failures), 1 when ``--fail-on`` is given and an
alert of that level (or worse) fires, or when the database cannot be read; 2 for a bad argument,
before any connection is made. With ``PROMETHEUS_PUSHGATEWAY`` set the metrics are also pushed;
a push failure is logged and does not change the exit code.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from recovery_lib.errors import ParameterError
from recovery_lib.options import MonitorOptions, Thresholds

_log = logging.getLogger("recovery_lib.cli")

FAIL_ON = {"never": (), "warning": ("warning", "critical"), "critical": ("critical",)}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "monitor", help="processing statistics, data loss, user impact and alerts for the last N hours"
    )
    parser.add_argument("--hours", default=str(MonitorOptions.hours), help="window in hours, 1 to 8784 (default 24)")
    parser.add_argument(
        "--no-deep-check",
        action="store_true",
        help="skip reconciling payloads against rows (no data loss figures; faster)",
    )
    parser.add_argument(
        "--prom-textfile",
        metavar="PATH",
        help="write Prometheus metrics here (atomically) for the node-exporter textfile collector",
    )
    parser.add_argument("--json", metavar="FILE", help="write the full report as JSON ('-' for stdout)")
    parser.add_argument(
        "--no-push", action="store_true", help="do not push even if $PROMETHEUS_PUSHGATEWAY is set"
    )
    parser.add_argument(
        "--fail-on",
        choices=tuple(FAIL_ON),
        default="never",
        help="exit 1 when an alert of this level or worse fires (default never)",
    )
    defaults = Thresholds()
    for name, what in (
        ("data_loss_critical_pct", "data loss rate above which the alert is critical"),
        ("data_loss_warning_pct", "data loss rate above which the alert is a warning"),
        ("failure_critical_pct", "failure rate above which the alert is critical"),
        ("failure_warning_pct", "failure rate above which the alert is a warning"),
        ("min_user_success_pct", "a user below this success rate needs action"),
    ):
        default = getattr(defaults, name)
        parser.add_argument(
            f"--{name.replace('_', '-')}", default=f"{default:g}", metavar="PCT", help=f"{what} (default {default:g})"
        )
    parser.set_defaults(func=_monitor)


def _options(args: argparse.Namespace) -> MonitorOptions:
    """The monitor's options from the arguments, validated (raises ParameterError)."""
    return MonitorOptions.validated(
        hours=args.hours,
        deep_check=not args.no_deep_check,
        data_loss_critical_pct=args.data_loss_critical_pct,
        data_loss_warning_pct=args.data_loss_warning_pct,
        failure_critical_pct=args.failure_critical_pct,
        failure_warning_pct=args.failure_warning_pct,
        min_user_success_pct=args.min_user_success_pct,
    )


def _write_json(target: str, data: dict[str, Any]) -> None:
    text = json.dumps(data, indent=2, allow_nan=False)
    if target == "-":
        print(text)
        return
    path = Path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text + "\n")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _monitor(args: argparse.Namespace) -> int:
    try:
        options = _options(args)
    except ParameterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    import sqlalchemy as sa

    from recovery_lib import db
    from recovery_lib.monitor import build_monitoring_report, format_text_report
    from recovery_lib.monitor import prometheus as prom
    from recovery_lib.redact import mask_url

    try:
        report = build_monitoring_report(db.get_engine(), options)
    except sa.exc.OperationalError as exc:
        first_line = str(exc.orig or exc).strip().splitlines()[0] if str(exc.orig or exc).strip() else ""
        print(
            f"error: cannot read the database {mask_url(db.database_url())}: {first_line}", file=sys.stderr
        )
        return 1

    data = report.to_dict()
    # With --json - the JSON owns stdout and the text report goes to stderr.
    print(format_text_report(report), end="", file=sys.stderr if args.json == "-" else sys.stdout)
    if args.json:
        _write_json(args.json, data)
    registry = prom.registry_from_report(data)
    if args.prom_textfile:
        path = prom.write_textfile(args.prom_textfile, registry)
        _log.info("Prometheus metrics written to %s", path)
    if not args.no_push:
        prom.push_from_env(registry)

    fired = [a for a in report.alerts if a.level in FAIL_ON[args.fail_on]]
    if fired:
        print(f"--fail-on {args.fail_on}: {len(fired)} alert(s) at that level", file=sys.stderr)
        return 1
    return 0
