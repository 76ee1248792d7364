"""Run options, validated once: the names, defaults and rules of every parameter, in one place.

The runner, the notebooks and the CLI each build one of these from what a person typed, before
anything touches the database, and hand it down; the library functions take the object and
never validate again. A bad value raises :class:`~recovery_lib.errors.ParameterError` naming
the parameter and what is allowed.

    >>> RecoveryOptions.validated(user_id="550e8400-e29b-41d4-a716-446655440000", batch_size="200").batch_size
    200
    >>> MonitorOptions.validated(hours=6).thresholds.data_loss_critical_pct
    10.0
    >>> ReviewOptions.validated(weeks="8").weeks
    8
    >>> FanOutOptions.validated(workers="3").worker_parameters()[2]["worker"]
    'w2'

The notebooks' ``parameters`` cells repeat these defaults as literals (papermill needs literals
there); ``tests/test_options.py`` holds them to the defaults below.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime
from types import MappingProxyType
from typing import Any

from recovery_lib import params as p
from recovery_lib.batching import BatchConfig
from recovery_lib.db import shares_this_host
from recovery_lib.errors import ParameterError

DEFAULT_STATUSES = ("error", "partial_success")
INSERT_METHODS = ("sql", "copy", "insert")  # see recovery.writes.merge_payload


DEFAULT_JOBS = 5


def host_cores() -> int:
    """The CPUs this process may run on (a container's or taskset's limit, not the machine's)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def default_jobs(url: Any) -> int:
    """Workers when none are asked for: 5, or this machine's cores + 1 when fewer and the server runs here.

    A server on this machine (the embedded default, a Unix socket, a loopback address) shares its
    cores with the workers. More busy backends than cores slow each other down: four large
    inserts at once on two cores took 25-30% longer than the same four two at a time (a backend
    holding a WAL or buffer lock loses its core to another). The one worker over the cores keeps
    them busy while another is in Python between statements.
    """
    return min(DEFAULT_JOBS, host_cores() + 1) if shares_this_host(url) else DEFAULT_JOBS


def _refuse_unknown(kind: str, values: Mapping[str, Any], known: set[str]) -> None:
    unknown = sorted(set(values) - known)
    if unknown:
        raise ParameterError(f"unknown parameter {', '.join(unknown)} for {kind}; known: {', '.join(sorted(known))}")


# --- recovery and its dry run -------------------------------------------------------------------


@dataclass(frozen=True)
class RecoveryOptions:
    """What a recovery (or, with ``dry_run``, a preview) does; build it with :meth:`validated`."""

    user_id: str | None = None  # one user's UUID, or None for every user
    statuses: tuple[str, ...] = DEFAULT_STATUSES  # processing statuses to recover
    batch_size: int = 100  # ingestions per round
    verify: bool = True  # compare each payload's checksum before recovering it
    max_concurrent_jobs: int | None = None  # parallel workers; None: default_jobs() for the run's server
    dry_run: bool = False  # compute everything, write nothing
    include_silent_loss: bool = True  # also reconcile 'processed' ingestions (silent loss)
    insert_method: str = "sql"  # sql | copy | insert
    runs_dir: str | None = None  # a notebook run's runs folder: the restoration notices go there (CLI: --report-dir)
    require_verified: bool = False  # an unverifiable checksum fails the ingestion (checksum_unverifiable)
    preview_report: str | None = None  # a preview's report: recover only what it previewed, unchanged
    worker: str | None = None  # this run's label among several at once (run name, recovery_log, report)
    batch_config: BatchConfig = field(default_factory=BatchConfig.default, compare=False)
    # From preview_report: ingestion id -> the SHA-256 of the stored value the preview saw; its run id.
    pins: Mapping[str, str] | None = field(default=None, compare=False)
    preview_run_id: str | None = field(default=None, compare=False)

    #: Parameters an environment variable can set when the caller leaves them None.
    ENVIRONMENT = {
        "batch_size": "RECOVERY_BATCH_SIZE",
        "max_concurrent_jobs": "RECOVERY_MAX_CONCURRENT_JOBS",
        "verify": "RECOVERY_VERIFICATION_ENABLED",
    }

    @classmethod
    def validated(
        cls, *, env: Mapping[str, str] | None = None, batch_config: BatchConfig | None = None, **values: Any
    ) -> RecoveryOptions:
        """Check every parameter; a value left out or None takes its environment variable, else the default.

        Environment: ``RECOVERY_BATCH_SIZE`` (100), ``RECOVERY_MAX_CONCURRENT_JOBS`` (:func:`default_jobs`),
        ``RECOVERY_VERIFICATION_ENABLED`` (true), and the chunk sizes of
        :meth:`BatchConfig.from_env <recovery_lib.batching.BatchConfig.from_env>` (checked too:
        :class:`~recovery_lib.errors.BatchConfigError`). Explicit arguments win.
        """
        env = os.environ if env is None else env
        names = {f.name for f in fields(cls)} - {"batch_config", "pins", "preview_run_id"}
        _refuse_unknown("recovery", values, names)
        defaults = cls()

        def given(name: str) -> tuple[Any, str]:
            """The value to check and the name to show when it is wrong (the variable it came from)."""
            value = values.get(name)
            variable = cls.ENVIRONMENT.get(name)
            if value is None and variable and env.get(variable, "").strip():
                return env[variable], variable
            return (getattr(defaults, name) if value is None else value), name

        insert_method = values.get("insert_method") or defaults.insert_method
        if insert_method not in INSERT_METHODS:
            raise ParameterError(
                f"insert_method must be one of {', '.join(map(repr, INSERT_METHODS))}, got {insert_method!r}"
            )
        statuses = values.get("statuses")
        batch_size, batch_size_name = given("batch_size")
        verify, verify_name = given("verify")
        jobs, jobs_name = given("max_concurrent_jobs")
        preview = p.validate_preview_report(values.get("preview_report"))
        return cls(
            user_id=p.validate_user_id(values.get("user_id")),
            statuses=tuple(p.validate_statuses(list(DEFAULT_STATUSES) if statuses is None else statuses)),
            batch_size=p.validate_batch_size(batch_size, name=batch_size_name),
            verify=p.validate_bool(verify, name=verify_name),
            max_concurrent_jobs=None if jobs is None else p.validate_max_concurrent_jobs(jobs, name=jobs_name),
            dry_run=p.validate_bool(values.get("dry_run", False) or False, name="dry_run"),
            include_silent_loss=p.validate_bool(
                True if values.get("include_silent_loss") is None else values["include_silent_loss"],
                name="include_silent_loss",
            ),
            insert_method=insert_method,
            runs_dir=None if values.get("runs_dir") is None else p.validate_folder(values["runs_dir"], name="runs_dir"),
            require_verified=p.validate_bool(values.get("require_verified") or False, name="require_verified"),
            preview_report=preview[0] if preview else None,
            worker=p.validate_worker(values.get("worker")),
            batch_config=(batch_config or BatchConfig.from_env(env)).validate(),
            pins=MappingProxyType(preview[2]) if preview else None,
            preview_run_id=preview[1] if preview else None,
        )

    def for_server(self, url: Any) -> RecoveryOptions:
        """These options with ``max_concurrent_jobs`` decided for the server at ``url`` (a number given stays).

            >>> RecoveryOptions().for_server("postgresql://db.internal/health").max_concurrent_jobs
            5
        """
        if self.max_concurrent_jobs is not None:
            return self
        return replace(self, max_concurrent_jobs=default_jobs(url))

    def to_dict(self) -> dict[str, Any]:
        """Every option as JSON-able data (the report's ``parameters``)."""
        return {
            "user_id": self.user_id, "statuses": list(self.statuses), "batch_size": self.batch_size,
            "verify": self.verify, "max_concurrent_jobs": self.max_concurrent_jobs, "dry_run": self.dry_run,
            "include_silent_loss": self.include_silent_loss, "insert_method": self.insert_method,
            "runs_dir": self.runs_dir,
            "require_verified": self.require_verified, "preview_report": self.preview_report,
            "preview_run_id": self.preview_run_id,
            "previewed_ingestions": None if self.pins is None else len(self.pins),
            "worker": self.worker, "batch_config": self.batch_config.to_dict(),
        }


# --- the monitor ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Thresholds:
    """Alert thresholds in percent (0-100); see :mod:`recovery_lib.monitor.alerts` for the boundaries."""

    data_loss_critical_pct: float = 10.0
    data_loss_warning_pct: float = 5.0
    failure_critical_pct: float = 20.0
    failure_warning_pct: float = 10.0
    min_user_success_pct: float = 80.0

    @classmethod
    def validated(cls, **values: Any) -> Thresholds:
        """Thresholds from raw values (strings from papermill or a shell are fine).

        Raises :class:`ParameterError` naming the parameter when a value is not a percentage
        or a warning threshold is above its critical one.
        """
        defaults = asdict(cls())
        _refuse_unknown("the monitor's thresholds", values, set(defaults))
        checked = {
            name: p.validate_percent(default if values.get(name) is None else values[name], name=name)
            for name, default in defaults.items()
        }
        for kind in ("data_loss", "failure"):
            warning, critical = checked[f"{kind}_warning_pct"], checked[f"{kind}_critical_pct"]
            if warning > critical:
                raise ParameterError(
                    f"{kind}_warning_pct ({warning:g}) must not be above {kind}_critical_pct ({critical:g})"
                )
        return cls(**checked)

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class MonitorOptions:
    """What the processing monitor looks at; build it with :meth:`validated`."""

    hours: int = 24  # the window, in hours
    deep_check: bool = True  # reconcile payloads against rows (finds silent loss)
    thresholds: Thresholds = field(default_factory=Thresholds)

    @classmethod
    def validated(cls, **values: Any) -> MonitorOptions:
        """``hours``, ``deep_check`` and the threshold percentages, checked; None takes the default."""
        defaults = cls()
        thresholds = {k: v for k, v in values.items() if k not in ("hours", "deep_check")}
        return cls(
            hours=p.validate_hours(defaults.hours if values.get("hours") is None else values["hours"]),
            deep_check=p.validate_bool(
                defaults.deep_check if values.get("deep_check") is None else values["deep_check"], name="deep_check"
            ),
            thresholds=Thresholds.validated(**thresholds),
        )

    def to_dict(self) -> dict[str, Any]:
        return {"hours": self.hours, "deep_check": self.deep_check, **self.thresholds.to_dict()}


# --- verification --------------------------------------------------------------------------------


@dataclass(frozen=True)
class VerifyOptions:
    """What ``verify`` reconciles: ingestions created since ``since`` (UTC), optionally one user's."""

    since: datetime
    user_id: str | None = None

    DEFAULT_SINCE = "24h"

    @classmethod
    def validated(cls, *, since: Any = None, user_id: Any = None, now: datetime | None = None) -> VerifyOptions:
        """``since`` as an ISO date/time or a duration like ``24h`` / ``7d`` (default 24 hours)."""
        return cls(
            since=p.validate_since(cls.DEFAULT_SINCE if since is None else since, now=now),
            user_id=p.validate_user_id(user_id),
        )

    def to_dict(self) -> dict[str, Any]:
        return {"since": self.since.isoformat(), "user_id": self.user_id}


# --- the weekly review ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ReviewOptions:
    """What the weekly review looks back over: the last ``weeks`` ISO weeks (this one included)."""

    weeks: int = 4
    runs_dir: str = "runs"  # the runs archive it reads; a relative path is from the project root

    @classmethod
    def validated(cls, *, weeks: Any = None, runs_dir: Any = None) -> ReviewOptions:
        """``weeks`` 1 to 520 and the runs folder, checked; None takes the default."""
        defaults = cls()
        return cls(
            weeks=p.validate_weeks(defaults.weeks if weeks is None else weeks),
            runs_dir=p.validate_folder(defaults.runs_dir if runs_dir is None else runs_dir, name="runs_dir"),
        )

    def to_dict(self) -> dict[str, Any]:
        return {"weeks": self.weeks, "runs_dir": self.runs_dir}


# --- undoing a recovery run ----------------------------------------------------------------------


@dataclass(frozen=True)
class UndoOptions:
    """Which recovery run ``recover undo`` reverts, and whether it only says what it would do."""

    run_id: str = ""  # the run's id, or its first 8+ hex digits
    dry_run: bool = False  # compute and check everything, write nothing

    @classmethod
    def validated(cls, *, run_id: Any = None, dry_run: Any = None) -> UndoOptions:
        """``run_id`` is required (8 to 64 hex digits); ``dry_run`` True or False."""
        return cls(
            run_id=p.validate_run_id(run_id),
            dry_run=p.validate_bool(False if dry_run is None else dry_run, name="dry_run"),
        )

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "dry_run": self.dry_run}


# --- the users' restoration notices --------------------------------------------------------------


@dataclass(frozen=True)
class NoticesOptions:
    """Which recovery run's restoration notices ``notices RUN_ID`` rebuilds, and where it writes them."""

    run_id: str = ""  # the run's id, or its first 8+ hex digits
    out_dir: str = "."  # restoration_notices_<run>.csv and .json go here

    @classmethod
    def validated(cls, *, run_id: Any = None, out_dir: Any = None) -> NoticesOptions:
        """``run_id`` is required (8 to 64 hex digits); ``out_dir`` a folder (it need not exist yet)."""
        return cls(
            run_id=p.validate_run_id(run_id),
            out_dir=p.validate_folder(cls().out_dir if out_dir is None else out_dir, name="out_dir"),
        )

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "out_dir": self.out_dir}


# --- the runbook fanned out by a scheduler --------------------------------------------------------


@dataclass(frozen=True)
class FanOutOptions:
    """One scale-out run: monitor, preview, ``workers`` recover notebooks at once, verify.

    Every worker gets the same scope (``recovery``) and its own label ``w0``, ``w1``...; they
    split the work through the database alone (claims, per-user locks), so any number of them,
    on any number of hosts, recover each ingestion once.
    """

    workers: int = 3
    recovery: RecoveryOptions = field(default_factory=RecoveryOptions)
    monitor: MonitorOptions = field(default_factory=MonitorOptions)
    since: str = VerifyOptions.DEFAULT_SINCE  # verify's window, as given (a duration counts from verify's start)

    @classmethod
    def validated(
        cls, *, workers: Any = None, hours: Any = None, since: Any = None, env: Mapping[str, str] | None = None,
        **recovery: Any,
    ) -> FanOutOptions:
        """``workers`` (1 to 64), the monitor's ``hours``, verify's ``since``, and the recovery's parameters."""
        _refuse_unknown("a fan-out", recovery, {"user_id", "statuses", "batch_size", "verify", "max_concurrent_jobs"})
        since = str(VerifyOptions.DEFAULT_SINCE if since is None else since).strip()
        checked = RecoveryOptions.validated(env=env, **recovery)
        VerifyOptions.validated(since=since)  # refused now, not after the workers ran
        return cls(
            workers=p.validate_workers(cls.workers if workers is None else workers),
            recovery=checked,
            monitor=MonitorOptions.validated(hours=hours),
            since=since,
        )

    def monitor_parameters(self) -> dict[str, Any]:
        return {"hours": self.monitor.hours}

    def preview_parameters(self) -> dict[str, Any]:
        r = self.recovery
        return {"user_id": r.user_id, "statuses": list(r.statuses), "batch_size": r.batch_size, "verify": r.verify,
                "max_concurrent_jobs": r.max_concurrent_jobs}

    def worker_parameters(self) -> list[dict[str, Any]]:
        """The recover notebook's parameters, one dict per worker (plain values: they travel as XCom)."""
        return [{**self.preview_parameters(), "worker": f"w{i}"} for i in range(self.workers)]

    def verify_parameters(self) -> dict[str, Any]:
        return {"since": self.since, "user_id": self.recovery.user_id}

    def to_dict(self) -> dict[str, Any]:
        return {"workers": self.workers, "hours": self.monitor.hours, "since": self.since,
                **self.preview_parameters()}
