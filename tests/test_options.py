"""Parameters are named, defaulted and validated in one place: recovery_lib.options.

The notebooks' parameters cells repeat the defaults as literals (papermill needs literals);
these tests hold the cells to the options, and show what validation accepts and refuses.
"""

from __future__ import annotations

import pytest

from recovery_lib.errors import ParameterError
from recovery_lib.options import (
    MonitorOptions,
    NoticesOptions,
    RecoveryOptions,
    ReviewOptions,
    Thresholds,
    UndoOptions,
    VerifyOptions,
)
from recovery_lib.runbook import parameters
from recovery_lib.runbook.notebooks import ALL_NOTEBOOKS, STORED_NOTEBOOKS, options_for

DEFAULTS = {
    "monitor": {"hours": MonitorOptions().hours, "deep_check": MonitorOptions().deep_check,
                **Thresholds().to_dict()},
    "preview": {name: getattr(RecoveryOptions(), name) for name in
                ("user_id", "statuses", "batch_size", "verify", "max_concurrent_jobs", "require_verified")},
    "recover": {name: getattr(RecoveryOptions(), name) for name in
                ("user_id", "statuses", "batch_size", "verify", "max_concurrent_jobs", "dry_run", "require_verified",
                 "preview_report", "worker", "runs_dir")},
    "verify": {"since": VerifyOptions.DEFAULT_SINCE, "user_id": None},
    "review": {"weeks": ReviewOptions().weeks, "runs_dir": ReviewOptions().runs_dir},
    "undo": {"run_id": None, "dry_run": UndoOptions().dry_run},  # run_id is required: no default
}


@pytest.mark.parametrize("name", STORED_NOTEBOOKS)
def test_notebook_parameter_cells_hold_the_options_defaults(name: str) -> None:
    declared = parameters.declared_parameters(parameters.NOTEBOOKS_DIR / f"{name}.ipynb")
    assert set(declared) == set(DEFAULTS[name])
    for parameter, expected in DEFAULTS[name].items():
        default = declared[parameter].default
        if isinstance(expected, tuple):
            default = tuple(default)
        assert default == expected, f"{name}: {parameter} defaults to {default!r}, the options to {expected!r}"


@pytest.mark.parametrize("name", ALL_NOTEBOOKS)
def test_the_defaults_of_each_notebook_validate(name: str) -> None:
    declared = parameters.declared_parameters(parameters.NOTEBOOKS_DIR / f"{name}.ipynb")
    options = options_for(name, **{p: d.default for p, d in declared.items()})
    assert options.to_dict()


def test_the_undo_notebook_needs_a_run_id_and_says_so_before_any_database_access() -> None:
    declared = parameters.declared_parameters(parameters.NOTEBOOKS_DIR / "undo.ipynb")
    with pytest.raises(ParameterError, match="run_id must be a recovery run id"):
        options_for("undo", **{p: d.default for p, d in declared.items()})
    assert options_for("undo", run_id="9F2C41D0", dry_run=True).to_dict() == {"run_id": "9f2c41d0", "dry_run": True}


def test_recovery_options_validate_once_and_name_the_parameter() -> None:
    options = RecoveryOptions.validated(user_id=" 550E8400-E29B-41D4-A716-446655440000 ", batch_size="200",
                                        statuses="error,recovery_failed", env={})
    assert options.user_id == "550e8400-e29b-41d4-a716-446655440000"
    assert (options.batch_size, options.statuses) == (200, ("error", "recovery_failed"))
    with pytest.raises(ParameterError, match="batch_size must be a whole number from 1 to 10000, got 0"):
        RecoveryOptions.validated(batch_size=0, env={})
    with pytest.raises(ParameterError, match="RECOVERY_BATCH_SIZE must be a whole number"):
        RecoveryOptions.validated(env={"RECOVERY_BATCH_SIZE": "lots"})
    with pytest.raises(ParameterError, match="unknown parameter batchsize for recovery"):
        RecoveryOptions.validated(batchsize=10)


def test_a_worker_label_is_short_and_plain() -> None:
    assert RecoveryOptions.validated(worker="w2", env={}).worker == "w2"
    assert RecoveryOptions.validated(worker=None, env={}).worker is None
    for bad in ("w 2", "../w2", "x" * 33, "w2;drop"):
        with pytest.raises(ParameterError, match="worker must be a short label like w2"):
            RecoveryOptions.validated(worker=bad, env={})


def test_preview_options_are_always_a_dry_run() -> None:
    assert options_for("preview", user_id=None).dry_run is True
    with pytest.raises(TypeError):
        options_for("preview", dry_run=False)


def test_monitor_and_verify_options() -> None:
    options = MonitorOptions.validated(hours="6", deep_check="false", data_loss_critical_pct="12.5")
    assert (options.hours, options.deep_check, options.thresholds.data_loss_critical_pct) == (6, False, 12.5)
    with pytest.raises(ParameterError, match="data_loss_warning_pct \\(20\\) must not be above"):
        MonitorOptions.validated(data_loss_warning_pct=20)
    assert VerifyOptions.validated(since="2024-02-06T14:30:00Z").since.isoformat() == "2024-02-06T14:30:00+00:00"
    with pytest.raises(ParameterError, match="since must be an ISO date/time"):
        VerifyOptions.validated(since="yesterday-ish")


def test_review_options() -> None:
    assert ReviewOptions.validated(weeks="8", runs_dir=" /srv/runs ").to_dict() == {"weeks": 8, "runs_dir": "/srv/runs"}
    assert ReviewOptions.validated().to_dict() == {"weeks": 4, "runs_dir": "runs"}
    for bad in (0, 521, "four", 2.5, True):
        with pytest.raises(ParameterError, match="weeks must be a whole number from 1 to 520"):
            ReviewOptions.validated(weeks=bad)
    with pytest.raises(ParameterError, match="runs_dir must be a folder path"):
        ReviewOptions.validated(runs_dir="  ")


def test_undo_and_notices_options_name_a_run_by_its_id_or_a_prefix() -> None:
    assert UndoOptions.validated(run_id=" 9F2C41D0 ").to_dict() == {"run_id": "9f2c41d0", "dry_run": False}
    assert UndoOptions.validated(run_id="9f2c41d07a3b4e5f", dry_run="true").dry_run is True
    assert NoticesOptions.validated(run_id="9f2c41d0").to_dict() == {"run_id": "9f2c41d0", "out_dir": "."}
    assert NoticesOptions.validated(run_id="9f2c41d0", out_dir=" notices ").out_dir == "notices"
    for make in (UndoOptions.validated, NoticesOptions.validated):
        for bad in (None, "", "9f2c41d", "run 9f2c41d0", "9f2c41d0'; --"):
            with pytest.raises(ParameterError, match="run_id must be a recovery run id"):
                make(run_id=bad)
    with pytest.raises(ParameterError, match="out_dir must be a folder path"):
        NoticesOptions.validated(run_id="9f2c41d0", out_dir=" ")
